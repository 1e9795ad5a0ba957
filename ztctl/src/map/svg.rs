//! The map as a self-contained SVG document: no script, no external font or stylesheet, so
//! any browser (or image viewer) shows it offline. The HTML page embeds the same element.
//!
//! Drawing order: background, title and legend, arrows, boxes, arrow labels — labels last so
//! they stay readable where curves cross. Every arrow and box carries a `<title>`, which
//! browsers show on hover.

use std::fmt::Write;

use super::{
    graph::{Graph, NodeKind, Verdict},
    layout::{HEADER_HEIGHT, LABEL_FONT_PX, Layout, MARGIN, NAME_FONT_PX, Point, Route},
};

/// The font of node names; monospace so the layout knows their width.
const NAME_FONT: &str = "DejaVu Sans Mono, Menlo, Consolas, monospace";
const TEXT_FONT: &str = "DejaVu Sans, Helvetica, Arial, sans-serif";

/// Fill and outline of a node's box: blue for the host, light blue for labelled
/// identities, grey for addresses and the world (never a verdict's colour).
fn node_colours(kind: NodeKind) -> (&'static str, &'static str) {
    match kind {
        NodeKind::Host => ("#d0ebff", "#1864ab"),
        NodeKind::Labelled => ("#e7f5ff", "#4dabf7"),
        NodeKind::World => ("#f1f3f5", "#868e96"),
    }
}

/// Arrows are thicker the more flows they carry (logarithmically, 2 to 5 px).
pub fn stroke_width(flows: u64) -> f64 {
    2.0 + ((flows.max(1) as f64).log2() / 2.0).min(3.0)
}

/// `&`, `<`, `>` and quotes escaped for text and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The `<svg>` element of `graph` placed by `layout`; `subtitle` says what the map shows
/// (period and source).
pub fn svg(graph: &Graph, layout: &Layout, subtitle: &str) -> String {
    let (w, h) = (layout.width.ceil(), layout.height.ceil());
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="{TEXT_FONT}">"#
    );
    let _ = writeln!(s, "<title>zt flows map: {}</title>", escape(subtitle));
    s.push_str("<defs>\n");
    for v in Verdict::ALL {
        let _ = writeln!(
            s,
            r#"<marker id="head-{}" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="11" markerHeight="11" markerUnits="userSpaceOnUse" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="{}"/></marker>"#,
            v.name(),
            v.colour()
        );
    }
    s.push_str("</defs>\n");
    let _ = writeln!(s, r##"<rect x="0" y="0" width="{w}" height="{h}" fill="#ffffff"/>"##);
    header(&mut s, graph, subtitle);

    if graph.nodes.is_empty() {
        let _ = writeln!(
            s,
            r##"<text x="{}" y="{}" font-size="16" fill="#495057">No edges were observed in this period.</text>"##,
            MARGIN,
            MARGIN + HEADER_HEIGHT + 20.0
        );
    }
    for (arrow, route) in graph.arrows.iter().zip(&layout.routes) {
        let title = format!(
            "{} → {}: {} ({} edge{})",
            graph.nodes[arrow.from].name,
            graph.nodes[arrow.to].name,
            arrow.label(),
            arrow.edges,
            if arrow.edges == 1 { "" } else { "s" }
        );
        let dashes = arrow.verdict.dashes().map(|d| format!(r#" stroke-dasharray="{d}""#)).unwrap_or_default();
        let _ = writeln!(
            s,
            r#"<g class="arrow {v}"><title>{title} — {v}</title><path d="{}" fill="none" stroke="{c}" stroke-width="{sw:.1}"{dashes} marker-end="url(#head-{v})"/></g>"#,
            path(route),
            v = arrow.verdict.name(),
            c = arrow.verdict.colour(),
            sw = stroke_width(arrow.flows),
            title = escape(&title),
        );
    }
    for (node, r) in graph.nodes.iter().zip(&layout.boxes) {
        let (fill, outline) = node_colours(node.kind);
        let _ = writeln!(
            s,
            r##"<g class="node"><title>{}</title><rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" rx="6" fill="{fill}" stroke="{outline}" stroke-width="1.5"/><text x="{:.1}" y="{:.1}" text-anchor="middle" dominant-baseline="central" font-family="{NAME_FONT}" font-size="{NAME_FONT_PX}" fill="#212529">{}</text></g>"##,
            escape(&node.detail),
            r.x,
            r.y,
            r.width,
            r.height,
            r.x + r.width / 2.0,
            r.y + r.height / 2.0,
            escape(&node.name),
        );
    }
    for (arrow, route) in graph.arrows.iter().zip(&layout.routes) {
        let _ = writeln!(
            s,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" dominant-baseline="central" font-size="{LABEL_FONT_PX}" fill="#343a40" stroke="#ffffff" stroke-width="3" paint-order="stroke">{}</text>"##,
            route.label.x,
            route.label.y,
            escape(&arrow.label()),
        );
    }
    s.push_str("</svg>\n");
    s
}

/// The title, what the map shows, and the legend: one sample line per verdict, drawn like
/// the arrows, with the flows of that verdict.
fn header(s: &mut String, graph: &Graph, subtitle: &str) {
    let _ = writeln!(
        s,
        r##"<text x="{MARGIN}" y="{}" font-size="18" font-weight="bold" fill="#212529">zt flows map</text>"##,
        MARGIN + 8.0
    );
    let _ = writeln!(
        s,
        r##"<text x="{MARGIN}" y="{}" font-size="12" fill="#495057">{}</text>"##,
        MARGIN + 28.0,
        escape(subtitle)
    );
    let y = MARGIN + 54.0;
    let mut x = MARGIN;
    for v in Verdict::ALL {
        let dashes = v.dashes().map(|d| format!(r#" stroke-dasharray="{d}""#)).unwrap_or_default();
        let _ = writeln!(
            s,
            r#"<line x1="{x}" y1="{y}" x2="{}" y2="{y}" stroke="{}" stroke-width="3"{dashes}/>"#,
            x + 36.0,
            v.colour()
        );
        let text = format!("{} ({} flows)", v.name(), graph.flows_by_verdict(v));
        let _ = writeln!(
            s,
            r##"<text x="{}" y="{y}" dominant-baseline="central" font-size="12" fill="#212529">{}</text>"##,
            x + 44.0,
            escape(&text)
        );
        x += 44.0 + text.len() as f64 * 7.0 + 24.0;
    }
}

/// `M x,y C ... C ...`: the route's pieces as one SVG path.
fn path(route: &Route) -> String {
    let pt = |p: Point| format!("{:.1},{:.1}", p.x, p.y);
    let mut d = format!("M{}", pt(route.pieces[0].start));
    for c in &route.pieces {
        d.push_str(&format!(" C{} {} {}", pt(c.control1), pt(c.control2), pt(c.end)));
    }
    d
}

#[cfg(test)]
mod tests {
    use super::super::{graph::tests::edge, layout::layout};
    use super::*;

    fn shop_svg() -> String {
        let g = Graph::build(&[
            edge("ingress", "app=web", "198.18.4.2", Some(80), "allowed", 3),
            edge("ingress", "app=api", "app=web", Some(8089), "audit", 1),
            edge("ingress", "app=db", "app=web", Some(5432), "denied", 1),
        ]);
        svg(&g, &layout(&g), "the last 1h")
    }

    #[test]
    fn every_identity_is_a_box_with_its_name() {
        let s = shop_svg();
        for name in ["app=web", "app=api", "app=db", "198.18.4.2"] {
            assert!(s.contains(&format!(">{name}</text>")), "{name} missing in\n{s}");
        }
        assert_eq!(s.matches("<rect").count(), 1 + 4, "a background and four boxes");
    }

    #[test]
    fn verdicts_differ_in_colour_and_line_pattern() {
        let s = shop_svg();
        let path_of = |v: Verdict| {
            s.lines().find(|l| l.starts_with(&format!(r#"<g class="arrow {}">"#, v.name()))).unwrap().to_string()
        };
        let allowed = path_of(Verdict::Allowed);
        assert!(allowed.contains(r##"stroke="#2f9e44""##) && !allowed.contains("dasharray"), "{allowed}");
        let denied = path_of(Verdict::Denied);
        assert!(denied.contains(r##"stroke="#e03131""##) && denied.contains(r#"stroke-dasharray="9 5""#), "{denied}");
        let audit = path_of(Verdict::Audit);
        assert!(audit.contains(r##"stroke="#f08c00""##) && audit.contains(r#"stroke-dasharray="3 4""#), "{audit}");
        assert!(s.contains(">TCP 5432 · 1 flow</text>"), "{s}");
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(escape(r#"a<b & "c""#), "a&lt;b &amp; &quot;c&quot;");
    }

    #[test]
    fn an_empty_map_says_so() {
        let g = Graph::build(&[]);
        let s = svg(&g, &layout(&g), "the last 1h");
        assert!(s.contains("No edges were observed"), "{s}");
    }
}
