//! The map as one HTML file: the SVG picture inline, a legend that says how to read it, and
//! a table of every observed edge (the details an arrow's label cuts short). No script and
//! nothing fetched: the file opens offline, and can be mailed or attached to a ticket.

use std::fmt::Write;

use super::{
    graph::{Graph, Verdict, labels_text},
    svg::escape,
};

/// The page around `svg`, the picture of `graph`.
pub fn html(graph: &Graph, svg: &str, subtitle: &str) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>zt flows map</title>
<style>
body {{ font-family: "DejaVu Sans", Helvetica, Arial, sans-serif; color: #212529; margin: 16px; }}
.picture {{ overflow: auto; border: 1px solid #dee2e6; }}
table {{ border-collapse: collapse; margin-top: 16px; font-size: 13px; }}
th, td {{ border-bottom: 1px solid #dee2e6; padding: 3px 10px; text-align: left; white-space: nowrap; }}
td.number {{ text-align: right; }}
.legend span {{ display: inline-block; margin-right: 24px; }}
.legend svg {{ vertical-align: middle; margin-right: 6px; }}
</style>
</head>
<body>
<p>{subtitle}: {nodes} identities, {edges} observed edges. An arrow points from the side that opened the flows
to the side that accepted or refused them; hover over an arrow or a box for details.</p>
<p class="legend">"#,
        subtitle = escape(subtitle),
        nodes = graph.nodes.len(),
        edges = graph.edges.len(),
    );
    for v in Verdict::ALL {
        let dashes = v.dashes().map(|d| format!(r#" stroke-dasharray="{d}""#)).unwrap_or_default();
        let meaning = match v {
            Verdict::Allowed => "allowed: solid",
            Verdict::Audit => "audit (would be dropped, passed): dotted",
            Verdict::Denied => "denied: dashed",
        };
        let _ = write!(
            s,
            r#"<span><svg width="40" height="10"><line x1="0" y1="5" x2="40" y2="5" stroke="{}" stroke-width="3"{dashes}/></svg>{meaning}</span>"#,
            v.colour()
        );
    }
    s.push_str("</p>\n<div class=\"picture\">\n");
    s.push_str(svg);
    s.push_str("</div>\n<table>\n<thead><tr><th>verdict</th><th>from</th><th>to</th><th>protocol</th><th>port</th><th>flows</th><th>reason</th><th>policy</th><th>first seen</th><th>last seen</th></tr></thead>\n<tbody>\n");
    for e in &graph.edges {
        let local = labels_text(&e.local_labels);
        let peer = match (e.peer_labels.is_empty(), e.peer_ip) {
            (true, Some(ip)) => ip.to_string(),
            _ => labels_text(&e.peer_labels),
        };
        let (from, to) = if e.direction == "egress" { (local, peer) } else { (peer, local) };
        let _ = writeln!(
            s,
            r#"<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class="number">{}</td><td class="number">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
            escape(&e.verdict),
            escape(&from),
            escape(&to),
            escape(&e.protocol),
            e.port.map_or("-".to_string(), |p| p.to_string()),
            e.flows,
            escape(&e.reason),
            escape(e.policy.as_deref().unwrap_or("-")),
            escape(&e.first_seen),
            escape(&e.last_seen),
        );
    }
    s.push_str("</tbody>\n</table>\n</body>\n</html>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::super::{graph::tests::edge, layout::layout, svg::svg};
    use super::*;

    #[test]
    fn the_page_embeds_the_picture_and_lists_every_edge() {
        let g = Graph::build(&[
            edge("ingress", "app=web", "198.18.4.2", Some(80), "allowed", 3),
            edge("egress", "app=web", "app=api", Some(8080), "denied", 1),
        ]);
        let picture = svg(&g, &layout(&g), "the last 1h");
        let page = html(&g, &picture, "the last 1h");
        assert!(page.contains(&picture));
        assert!(!page.contains("<script"), "no script");
        assert!(!page.contains("http://") || page.matches("http://").count() == 1, "only the SVG namespace");
        assert!(page.contains("<td>198.18.4.2</td><td>app=web</td><td>TCP</td>"), "{page}");
        assert!(page.contains("<td>denied</td><td>app=web</td><td>app=api</td>"), "{page}");
    }
}
