//! The module layers of zt-agent import downwards only (the diagram is in `src/lib.rs`).
//! This reads the sources and fails on any `crate::<module>` path — in a `use` or inline —
//! that points upwards, so a shortcut across layers is caught by `cargo test`, not review.
//! The compiler (`policy` -> `identity`) is its own crate, zt-policy, which cannot name the
//! agent at all; inside it, `identity` must not import `policy`.

use std::{
    fs,
    path::{Path, PathBuf},
};

/// (module, modules it must never import). `policy` and `identity` are re-exports of the
/// zt-policy crate, which depends on no zt-agent module at all (Cargo enforces that), so
/// they have no row of their own; other modules may still be forbidden to import them.
const FORBIDDEN: &[(&str, &[&str])] = &[
    ("datapath", &["agent", "api", "metrics", "config", "daemon", "flows", "policy", "kubernetes"]),
    ("flows", &["agent", "api", "metrics", "config", "daemon", "detect"]),
    ("detect", &["agent", "api", "metrics", "config", "daemon", "datapath", "policy"]),
    ("host", &["agent", "api", "metrics", "config", "daemon"]),
    ("bpffs", &["agent", "api", "metrics", "config", "daemon"]),
    ("notify", &["agent", "api", "metrics", "config", "daemon"]),
    ("heap", &["agent", "api", "metrics", "config", "daemon", "flows", "datapath", "policy", "detect", "kubernetes"]),
    ("agent", &["api", "metrics", "config", "daemon", "kubernetes"]),
    ("kubernetes", &["api", "metrics", "config", "daemon"]),
    ("api", &["metrics", "config", "daemon", "kubernetes"]),
    ("metrics", &["api", "config", "daemon", "kubernetes"]),
    ("config", &["api", "metrics", "daemon", "kubernetes"]),
];

fn sources(module: &str) -> Vec<PathBuf> {
    sources_in(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), module)
}

fn sources_in(src: &Path, module: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let file = src.join(format!("{module}.rs"));
    if file.is_file() {
        out.push(file);
    }
    let mut dirs = vec![src.join(module)];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = fs::read_dir(&dir) else { continue };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    assert!(!out.is_empty(), "no sources for module {module}");
    out
}

/// The top-level modules a source names through `crate::`, comments left out.
fn imports(text: &str) -> Vec<String> {
    let code: String = text.lines().map(|l| l.find("//").map_or(l, |i| &l[..i])).collect::<Vec<_>>().join("\n");
    let mut found = Vec::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // `crate::{a::b, c::{d, e}}`: the first segment of every top-level item.
            let (mut depth, mut item, mut end) = (1, String::new(), group.len());
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 1 => {
                        end = i;
                        break;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 1 => {
                        found.push(std::mem::take(&mut item));
                        continue;
                    }
                    _ => {}
                }
                if depth == 1 {
                    item.push(c);
                }
            }
            found.push(item);
            rest = &group[end..];
        } else {
            found.push(rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect());
        }
    }
    found
        .iter()
        .map(|i| i.trim().split("::").next().unwrap_or("").trim().to_string())
        .filter(|m| !m.is_empty())
        .collect()
}

#[test]
fn no_module_imports_a_layer_above_it() {
    let mut violations = Vec::new();
    for (module, forbidden) in FORBIDDEN {
        for file in sources(module) {
            let text = fs::read_to_string(&file).unwrap();
            for import in imports(&text) {
                if forbidden.contains(&import.as_str()) {
                    violations.push(format!("{} imports crate::{import}", file.display()));
                }
            }
        }
    }
    assert!(violations.is_empty(), "upward imports (see the layers in src/lib.rs):\n{}", violations.join("\n"));
}

#[test]
fn the_compilers_identity_module_does_not_import_policy() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../zt-policy/src");
    let upward: Vec<String> = sources_in(&src, "identity")
        .into_iter()
        .filter(|file| imports(&fs::read_to_string(file).unwrap()).iter().any(|m| m == "policy"))
        .map(|file| file.display().to_string())
        .collect();
    assert!(upward.is_empty(), "zt-policy's identity imports crate::policy: {upward:?}");
}

#[test]
fn the_import_reader_sees_groups_and_inline_paths() {
    let text = "use crate::{\n    agent::{self, x::{y}},\n    flows, // crate::api in a comment\n};\nlet a = crate::metrics::f();";
    assert_eq!(imports(text), ["agent", "flows", "metrics"]);
}
