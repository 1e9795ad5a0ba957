//! `ztctl flows map` as people see it: the real ztctl draws a known set of edges
//! (`map/shop-edges.json`, offline with `--edges`), headless Chromium renders the SVG and the
//! HTML page from `file://`, and the screenshot is checked — each verdict's colour present
//! beyond the legend's swatches and absent when no edge has that verdict, and every
//! identity's name readable by OCR (tesseract). A blank, wrongly coloured or incomplete map
//! fails. Needs `chromium` and `tesseract` (`cargo xtask setup`); skipped without them on a
//! developer machine, a failure in CI.

use std::path::{Path, PathBuf};

use zt_tests::{
    Scratch,
    browser::{CHROMIUM, Screenshot, screenshot},
    ocr::{TESSERACT, read_text},
    tool::require_tool,
    workspace_binary,
};

/// Every identity of the fixture, as the map names it.
const NAMES: [&str; 5] = ["host", "app=api", "app=db,tier=data", "app=web,tier=frontend", "198.18.4.2"];
/// The verdicts' colours (ztctl's `map::graph::Verdict::colour`) and how close a pixel must be.
const ALLOWED: [u8; 3] = [0x2f, 0x9e, 0x44];
const AUDIT: [u8; 3] = [0xf0, 0x8c, 0x00];
const DENIED: [u8; 3] = [0xe0, 0x31, 0x31];
const TOLERANCE: u8 = 24;
/// The browser window, in CSS pixels: the fixture's map is about 1430 x 260, the HTML page
/// with its table about 700 high.
const WINDOW: (u32, u32) = (1500, 800);

fn tools_present() -> bool {
    require_tool(CHROMIUM, "run `cargo xtask setup` (apt-get install chromium)")
        && require_tool(TESSERACT, "run `cargo xtask setup` (apt-get install tesseract-ocr)")
}

fn fixture() -> serde_json::Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("e2e/map/shop-edges.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The fixture's edges without those of `verdict` (all of them with `None`), as a file.
fn edges_without(scratch: &Scratch, name: &str, verdict: Option<&str>) -> PathBuf {
    let edges: Vec<serde_json::Value> = fixture()["edges"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| verdict.is_some_and(|v| e["verdict"] != v))
        .cloned()
        .collect();
    scratch.write(name, serde_json::to_string(&edges).unwrap()).unwrap()
}

/// Runs the real `ztctl flows map` on `edges`, writing `-o kind` to `out`, and checks what it says.
fn draw(edges: &Path, kind: &str, out: &Path, identities: usize, count: usize) {
    let ztctl = workspace_binary("ztctl").unwrap();
    let result = std::process::Command::new(ztctl)
        .args(["flows", "map", "-o", kind, "--edges"])
        .arg(edges)
        .arg("--output-file")
        .arg(out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&result.stdout);
    assert!(result.status.success(), "ztctl flows map failed: {stdout}{}", String::from_utf8_lossy(&result.stderr));
    assert_eq!(stdout, format!("map written to {} ({identities} identities, {count} edges)\n", out.display()));
}

/// Pixels of each verdict's colour: allowed, audit, denied.
fn colours(shot: &Screenshot) -> [usize; 3] {
    [ALLOWED, AUDIT, DENIED].map(|c| shot.count_near(c, TOLERANCE))
}

/// A screenshot of the map of `edges` in format `kind`.
fn shoot(scratch: &Scratch, kind: &str, edges: &Path, identities: usize, count: usize) -> Screenshot {
    let map = scratch.join(format!("{}.{kind}", edges.file_stem().unwrap().to_string_lossy()));
    draw(edges, kind, &map, identities, count);
    screenshot(&map, WINDOW.0, WINDOW.1, 1, scratch).unwrap()
}

/// What the arrows of `shot` add to `blank` (the title and legend of an empty map), per
/// colour: allowed, audit, denied.
fn arrow_colours(shot: &Screenshot, blank: &Screenshot) -> [usize; 3] {
    assert!(shot.count_ink() > blank.count_ink() + 5000, "the map draws next to nothing beyond its legend");
    let (full, legend) = (colours(shot), colours(blank));
    [0, 1, 2].map(|i| full[i].saturating_sub(legend[i]))
}

/// Each verdict in the expected amounts: the fixture has four allowed arrows (the thickest
/// lines), three denied (dashed) and one audit (dotted).
fn assert_verdict_colours(kind: &str) {
    let scratch = Scratch::new(&format!("map-{kind}")).unwrap();
    let blank = shoot(&scratch, kind, &edges_without(&scratch, "none.json", None), 0, 0);
    let all = scratch.write("all.json", fixture().to_string()).unwrap();
    let [allowed, audit, denied] = arrow_colours(&shoot(&scratch, kind, &all, 5, 9), &blank);
    eprintln!("{kind}: arrows add {allowed} green, {denied} red and {audit} amber pixels");
    assert!(allowed > 1100, "allowed arrows: {allowed} green pixels");
    assert!(denied > 1000, "denied arrows: {denied} red pixels");
    assert!(audit > 80, "the audit arrow: {audit} amber pixels");
    assert!(allowed > denied && denied > audit, "allowed {allowed} > denied {denied} > audit {audit}");

    let no_denied = edges_without(&scratch, "no-denied.json", Some("denied"));
    let [allowed, audit, denied] = arrow_colours(&shoot(&scratch, kind, &no_denied, 5, 6), &blank);
    assert!(denied < 20, "no denied edge, yet {denied} red pixels");
    assert!(allowed > 1100 && audit > 80, "allowed {allowed}, audit {audit}");
}

#[test]
fn the_svg_map_draws_each_verdict_in_its_colour() {
    if !tools_present() {
        return;
    }
    assert_verdict_colours("svg");
}

#[test]
fn the_html_map_draws_each_verdict_in_its_colour() {
    if !tools_present() {
        return;
    }
    assert_verdict_colours("html");
}

/// Text as OCR reads it, without spaces (tesseract spaces `app=db,tier=data` as it likes).
fn readable_text(scratch: &Scratch, page: &Path) -> String {
    let shot = screenshot(page, WINDOW.0, WINDOW.1, 2, scratch).unwrap();
    let text_only = scratch.join(format!("{}-text.png", page.file_stem().unwrap().to_string_lossy()));
    shot.write_dark_text(&text_only).unwrap();
    read_text(&text_only).unwrap().split_whitespace().collect()
}

#[test]
fn every_identity_of_the_svg_map_is_readable() {
    if !tools_present() {
        return;
    }
    let scratch = Scratch::new("map-ocr").unwrap();
    let all = scratch.write("all.json", fixture().to_string()).unwrap();
    let map = scratch.join("map.svg");
    draw(&all, "svg", &map, 5, 9);
    let text = readable_text(&scratch, &map);
    for name in NAMES {
        assert!(text.contains(name), "{name:?} is not readable on the map; OCR read {text:?}");
    }
    assert!(text.contains("TCP5432"), "arrow labels are readable too: {text:?}");
}

#[test]
fn the_html_map_shows_a_readable_table_of_edges() {
    if !tools_present() {
        return;
    }
    let scratch = Scratch::new("map-html-ocr").unwrap();
    let all = scratch.write("all.json", fixture().to_string()).unwrap();
    let page = scratch.join("map.html");
    draw(&all, "html", &page, 5, 9);
    let text = readable_text(&scratch, &page);
    // Words only the table shows (OCR of a sparse picture does not keep a row's cells in
    // order, so each is looked for on its own).
    for cell in
        ["firstseen", "deny-rule", "default-deny", "failsafe", "api-debug-port-audit", "reserved:host,role=node"]
    {
        assert!(text.contains(cell), "the table's {cell:?} is not readable; OCR read {text:?}");
    }
}
