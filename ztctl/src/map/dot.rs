//! The map as a Graphviz `dot` graph, for those who lay out with Graphviz themselves or feed
//! other tools: the same nodes, arrows, colours, line patterns and labels as the SVG.

use std::fmt::Write;

use super::graph::{Graph, NodeKind, Verdict};

/// A quoted dot string.
fn quote(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The `digraph` of `graph`.
pub fn dot(graph: &Graph, subtitle: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "digraph zt_flows {{");
    let _ = writeln!(s, "  label={};", quote(&format!("zt flows map: {subtitle}")));
    let _ = writeln!(s, "  labelloc=t; rankdir=LR;");
    let _ = writeln!(s, "  node [shape=box, style=\"rounded,filled\", fontname=monospace];");
    for (i, n) in graph.nodes.iter().enumerate() {
        let fill = match n.kind {
            NodeKind::Host => "#d0ebff",
            NodeKind::Labelled => "#e7f5ff",
            NodeKind::World => "#f1f3f5",
        };
        let _ = writeln!(s, "  n{i} [label={}, tooltip={}, fillcolor=\"{fill}\"];", quote(&n.name), quote(&n.detail));
    }
    for a in &graph.arrows {
        let style = match a.verdict {
            Verdict::Allowed => "solid",
            Verdict::Audit => "dotted",
            Verdict::Denied => "dashed",
        };
        let _ = writeln!(
            s,
            "  n{} -> n{} [label={}, color=\"{}\", style={style}, penwidth={:.1}];",
            a.from,
            a.to,
            quote(&a.label()),
            a.verdict.colour(),
            super::svg::stroke_width(a.flows) / 1.5
        );
    }
    s.push_str("}\n");
    s
}

#[cfg(test)]
mod tests {
    use super::super::graph::tests::edge;
    use super::*;

    #[test]
    fn nodes_and_arrows_carry_names_colours_and_patterns() {
        let g = Graph::build(&[
            edge("ingress", "app=web", "198.18.4.2", Some(80), "allowed", 1),
            edge("ingress", "app=db", "app=web", Some(5432), "denied", 2),
        ]);
        let d = dot(&g, "the last 1h");
        assert!(d.starts_with("digraph zt_flows {\n"), "{d}");
        assert!(d.contains("n2 [label=\"198.18.4.2\""), "{d}");
        assert!(d.contains("n2 -> n1 [label=\"TCP 80 · 1 flow\", color=\"#2f9e44\", style=solid"), "{d}");
        assert!(d.contains("n1 -> n0 [label=\"TCP 5432 · 2 flows\", color=\"#e03131\", style=dashed"), "{d}");
    }

    #[test]
    fn quotes_are_escaped() {
        assert_eq!(quote(r#"a"b\c"#), r#""a\"b\\c""#);
    }
}
