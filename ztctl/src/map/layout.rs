//! Where everything goes: a layered layout computed here, deterministically, so the map
//! needs no script and no network to be drawn, and the same edges always give the same
//! picture.
//!
//! Identities are placed in columns by how far along the direction of their flows they are
//! (those who only open flows on the left, those who only accept them on the right), each
//! column ordered to keep arrows short (barycentre sweeps), boxes sized to their names and
//! stacked with a fixed gap, so no two boxes overlap whatever the graph. Arrows are cubic
//! curves between box sides; arrows between the same two identities are spread apart, and
//! their labels are nudged until no two overlap.

use super::graph::Graph;

/// Node names are drawn in a monospace font, so their width is known here.
pub const NAME_FONT_PX: f64 = 14.0;
const NAME_CHAR_PX: f64 = NAME_FONT_PX * 0.62;
/// Arrow labels (proportional font; the width is an upper estimate).
pub const LABEL_FONT_PX: f64 = 11.0;
const LABEL_CHAR_PX: f64 = LABEL_FONT_PX * 0.62;
const LABEL_HEIGHT: f64 = 14.0;
pub const NODE_HEIGHT: f64 = 34.0;
const NODE_PAD_X: f64 = 14.0;
const NODE_MIN_WIDTH: f64 = 70.0;
/// Vertical space between boxes of a column (arrow labels pass through it).
const NODE_GAP_Y: f64 = 30.0;
/// Horizontal space between columns: room for the curves and their labels.
const COLUMN_GAP: f64 = 250.0;
pub const MARGIN: f64 = 30.0;
/// The title and legend above the graph.
pub const HEADER_HEIGHT: f64 = 80.0;
/// Room right of the last column for curves between boxes of one column.
const SIDE_ROOM: f64 = 90.0;
/// Distance between arrows that join the same two identities.
const PARALLEL_SPREAD: f64 = 9.0;
const BARYCENTRE_SWEEPS: usize = 6;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Point {
    pub x: f64,
    pub y: f64,
}

/// A node's box.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rect {
    pub x: f64,
    pub y: f64,
    pub width: f64,
    pub height: f64,
}

impl Rect {
    fn overlaps(&self, o: &Rect) -> bool {
        self.x < o.x + o.width && o.x < self.x + self.width && self.y < o.y + o.height && o.y < self.y + self.height
    }
}

/// An arrow's curve (a cubic Bézier) and where its label sits.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Route {
    pub start: Point,
    pub control1: Point,
    pub control2: Point,
    pub end: Point,
    /// The label's centre.
    pub label: Point,
}

/// The placed picture: one box per node and one route per arrow, in the graph's order.
#[derive(Clone, Debug, PartialEq)]
pub struct Layout {
    pub width: f64,
    pub height: f64,
    pub boxes: Vec<Rect>,
    pub routes: Vec<Route>,
    /// The column of each node, from the left.
    pub columns: Vec<usize>,
}

/// Lays out `graph`.
pub fn layout(graph: &Graph) -> Layout {
    let n = graph.nodes.len();
    let links: Vec<(usize, usize)> = graph.arrows.iter().filter(|a| a.from != a.to).map(|a| (a.from, a.to)).collect();
    let columns = columns(n, &links);
    let order = order_columns(&columns, &links);

    let widths: Vec<f64> = graph
        .nodes
        .iter()
        .map(|node| (node.name.chars().count() as f64 * NAME_CHAR_PX + 2.0 * NODE_PAD_X).max(NODE_MIN_WIDTH))
        .collect();
    let column_height = |members: &Vec<usize>| members.len() as f64 * (NODE_HEIGHT + NODE_GAP_Y) - NODE_GAP_Y;
    let tallest = order.iter().map(column_height).fold(0.0, f64::max);
    let mut boxes = vec![Rect { x: 0.0, y: 0.0, width: 0.0, height: NODE_HEIGHT }; n];
    let mut x = MARGIN;
    for members in &order {
        let column_width = members.iter().map(|&i| widths[i]).fold(0.0, f64::max);
        let mut y = MARGIN + HEADER_HEIGHT + (tallest - column_height(members)) / 2.0;
        for &i in members {
            boxes[i] = Rect { x: x + (column_width - widths[i]) / 2.0, y, width: widths[i], height: NODE_HEIGHT };
            y += NODE_HEIGHT + NODE_GAP_Y;
        }
        x += column_width + COLUMN_GAP;
    }
    let width = (x - COLUMN_GAP + SIDE_ROOM + MARGIN).max(560.0);
    let height = MARGIN + HEADER_HEIGHT + tallest + NODE_GAP_Y + MARGIN;

    let mut routes = routes(graph, &boxes, &columns);
    place_labels(graph, &mut routes, &boxes);
    Layout { width, height, boxes, routes, columns }
}

/// The column of each node: the longest path of flows leading to it, after turning the
/// arrows that close a cycle around (found by a depth-first walk in node order).
fn columns(n: usize, links: &[(usize, usize)]) -> Vec<usize> {
    let mut out: Vec<Vec<usize>> = vec![Vec::new(); n];
    for &(a, b) in links {
        out[a].push(b);
    }
    for targets in &mut out {
        targets.sort_unstable();
        targets.dedup();
    }
    // 0 unvisited, 1 on the walk's stack, 2 done.
    let mut state = vec![0u8; n];
    let mut acyclic: Vec<(usize, usize)> = Vec::new();
    for root in 0..n {
        if state[root] != 0 {
            continue;
        }
        let mut stack = vec![(root, 0usize)];
        state[root] = 1;
        while let Some(&mut (v, ref mut next)) = stack.last_mut() {
            if let Some(&w) = out[v].get(*next) {
                *next += 1;
                match state[w] {
                    0 => {
                        acyclic.push((v, w));
                        state[w] = 1;
                        stack.push((w, 0));
                    }
                    1 => acyclic.push((w, v)),
                    _ => acyclic.push((v, w)),
                }
            } else {
                state[v] = 2;
                stack.pop();
            }
        }
    }
    // Longest path by relaxation in topological order (Kahn, smallest index first).
    let mut indegree = vec![0usize; n];
    let mut succ: Vec<Vec<usize>> = vec![Vec::new(); n];
    for &(a, b) in &acyclic {
        if a != b {
            succ[a].push(b);
            indegree[b] += 1;
        }
    }
    let mut column = vec![0usize; n];
    let mut ready: std::collections::BTreeSet<usize> = (0..n).filter(|&v| indegree[v] == 0).collect();
    while let Some(v) = ready.pop_first() {
        for &w in &succ[v] {
            column[w] = column[w].max(column[v] + 1);
            indegree[w] -= 1;
            if indegree[w] == 0 {
                ready.insert(w);
            }
        }
    }
    column
}

/// The members of each column, top to bottom: start in node order, then sweep right and
/// left, sorting each column by the mean position of its neighbours in the column before.
fn order_columns(columns: &[usize], links: &[(usize, usize)]) -> Vec<Vec<usize>> {
    let count = columns.iter().max().map_or(0, |m| m + 1);
    let mut order: Vec<Vec<usize>> = vec![Vec::new(); count];
    for (node, &c) in columns.iter().enumerate() {
        order[c].push(node);
    }
    let mut position = vec![0.0; columns.len()];
    let reposition = |order: &Vec<Vec<usize>>, position: &mut Vec<f64>| {
        for members in order {
            for (p, &node) in members.iter().enumerate() {
                position[node] = p as f64;
            }
        }
    };
    reposition(&order, &mut position);
    for sweep in 0..BARYCENTRE_SWEEPS {
        let rightwards = sweep % 2 == 0;
        let sequence: Vec<usize> =
            if rightwards { (1..count).collect() } else { (0..count.saturating_sub(1)).rev().collect() };
        for c in sequence {
            let neighbour_column = if rightwards { c - 1 } else { c + 1 };
            let key = |node: usize| {
                let near: Vec<f64> = links
                    .iter()
                    .filter_map(|&(a, b)| match () {
                        _ if a == node && columns[b] == neighbour_column => Some(position[b]),
                        _ if b == node && columns[a] == neighbour_column => Some(position[a]),
                        _ => None,
                    })
                    .collect();
                if near.is_empty() { position[node] } else { near.iter().sum::<f64>() / near.len() as f64 }
            };
            let mut keyed: Vec<(f64, usize)> = order[c].iter().map(|&node| (key(node), node)).collect();
            keyed.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            order[c] = keyed.into_iter().map(|(_, node)| node).collect();
            reposition(&order, &mut position);
        }
    }
    order
}

fn routes(graph: &Graph, boxes: &[Rect], columns: &[usize]) -> Vec<Route> {
    // Arrows joining the same two identities (either way) are spread around their centre line.
    let pair = |a: usize, b: usize| (a.min(b), a.max(b));
    let mut siblings: std::collections::BTreeMap<(usize, usize), Vec<usize>> = Default::default();
    for (i, a) in graph.arrows.iter().enumerate() {
        siblings.entry(pair(a.from, a.to)).or_default().push(i);
    }
    graph
        .arrows
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let group = &siblings[&pair(a.from, a.to)];
            let rank = group.iter().position(|&j| j == i).unwrap_or(0) as f64;
            let offset = (rank - (group.len() as f64 - 1.0) / 2.0) * PARALLEL_SPREAD;
            let (f, t) = (boxes[a.from], boxes[a.to]);
            let mid_y = |r: Rect| r.y + r.height / 2.0 + offset;
            let route = if a.from == a.to {
                // A loop over the box's right end: the identity talks to itself (two
                // endpoints with the same labels).
                let start = Point { x: f.x + f.width - 24.0, y: f.y };
                let end = Point { x: f.x + f.width, y: f.y + 12.0 };
                let c1 = Point { x: start.x - 6.0 - offset, y: f.y - 34.0 - offset };
                let c2 = Point { x: end.x + 34.0 + offset, y: end.y - 8.0 };
                Route { start, control1: c1, control2: c2, end, label: Point { x: end.x + 18.0, y: f.y - 20.0 } }
            } else if columns[a.from] == columns[a.to] {
                // Within one column: a bulge to the right of both boxes.
                let start = Point { x: f.x + f.width, y: mid_y(f) };
                let end = Point { x: t.x + t.width, y: mid_y(t) };
                let reach = 40.0 + 0.25 * (end.y - start.y).abs() + offset;
                let x = start.x.max(end.x) + reach;
                Route::cubic(start, Point { x, y: start.y }, Point { x, y: end.y }, end)
            } else if columns[a.from] < columns[a.to] {
                let start = Point { x: f.x + f.width, y: mid_y(f) };
                let end = Point { x: t.x, y: mid_y(t) };
                let dx = (end.x - start.x) / 2.0;
                Route::cubic(start, Point { x: start.x + dx, y: start.y }, Point { x: end.x - dx, y: end.y }, end)
            } else {
                let start = Point { x: f.x, y: mid_y(f) };
                let end = Point { x: t.x + t.width, y: mid_y(t) };
                let dx = (start.x - end.x) / 2.0;
                Route::cubic(start, Point { x: start.x - dx, y: start.y }, Point { x: end.x + dx, y: end.y }, end)
            };
            route
        })
        .collect()
}

impl Route {
    /// A curve with its label at its middle.
    fn cubic(start: Point, control1: Point, control2: Point, end: Point) -> Route {
        let mut r = Route { start, control1, control2, end, label: start };
        r.label = r.at(0.5);
        r
    }

    /// The point at `t` (0..=1) along the curve.
    pub fn at(&self, t: f64) -> Point {
        let u = 1.0 - t;
        let (a, b, c, d) = (u * u * u, 3.0 * u * u * t, 3.0 * u * t * t, t * t * t);
        Point {
            x: a * self.start.x + b * self.control1.x + c * self.control2.x + d * self.end.x,
            y: a * self.start.y + b * self.control1.y + c * self.control2.y + d * self.end.y,
        }
    }
}

/// The box a label takes, centred on `at`.
pub fn label_box(text: &str, at: Point) -> Rect {
    let width = text.chars().count() as f64 * LABEL_CHAR_PX + 6.0;
    Rect { x: at.x - width / 2.0, y: at.y - LABEL_HEIGHT / 2.0, width, height: LABEL_HEIGHT }
}

/// Moves labels along their curve, then off it, until none overlaps another label or a box.
fn place_labels(graph: &Graph, routes: &mut [Route], boxes: &[Rect]) {
    const ALONG: [f64; 7] = [0.5, 0.4, 0.6, 0.3, 0.7, 0.25, 0.75];
    const OFF: [f64; 7] = [0.0, -15.0, 15.0, -30.0, 30.0, -45.0, 45.0];
    let mut placed: Vec<Rect> = Vec::new();
    for (arrow, route) in graph.arrows.iter().zip(routes.iter_mut()) {
        let text = arrow.label();
        if arrow.from == arrow.to {
            placed.push(label_box(&text, route.label));
            continue;
        }
        let free = |r: &Rect| !placed.iter().chain(boxes).any(|o| o.overlaps(r));
        let candidates = OFF.iter().flat_map(|&dy| ALONG.iter().map(move |&t| (t, dy)));
        let mut best = None;
        for (t, dy) in candidates {
            let p = route.at(t);
            let at = Point { x: p.x, y: p.y + dy };
            if free(&label_box(&text, at)) {
                best = Some(at);
                break;
            }
        }
        route.label = best.unwrap_or(route.label);
        placed.push(label_box(&text, route.label));
    }
}

#[cfg(test)]
mod tests {
    use super::super::graph::tests::edge;
    use super::*;

    fn shop() -> Graph {
        Graph::build(&[
            edge("ingress", "app=web", "198.18.4.2", Some(80), "allowed", 3),
            edge("ingress", "app=api", "app=web", Some(8080), "allowed", 5),
            edge("ingress", "app=db", "app=api", Some(5432), "allowed", 2),
            edge("ingress", "app=db", "app=web", Some(5432), "denied", 1),
        ])
    }

    #[test]
    fn flows_run_left_to_right_in_columns() {
        let g = shop();
        let l = layout(&g);
        let column = |name: &str| l.columns[g.nodes.iter().position(|n| n.name == name).unwrap()];
        assert_eq!([column("198.18.4.2"), column("app=web"), column("app=api"), column("app=db")], [0, 1, 2, 3]);
    }

    #[test]
    fn a_cycle_still_gets_columns() {
        let g = Graph::build(&[
            edge("egress", "app=a", "app=b", Some(1), "allowed", 1),
            edge("egress", "app=b", "app=a", Some(1), "allowed", 1),
        ]);
        let l = layout(&g);
        let mut columns = l.columns.clone();
        columns.sort();
        assert_eq!(columns, [0, 1]);
    }

    /// 50 identities and 200 edges: a node-heavy map must keep every box apart and inside
    /// the canvas.
    pub fn big() -> Graph {
        let mut edges = Vec::new();
        for i in 0..200u32 {
            let local = format!("app=svc-{}", i % 42);
            let peer = match i % 5 {
                0 => format!("198.18.9.{}", i % 8),
                _ => format!("app=svc-{}", (i * 7 + 3) % 42),
            };
            let verdict = ["allowed", "allowed", "denied", "audit"][i as usize % 4];
            edges.push(edge(
                if i % 3 == 0 { "egress" } else { "ingress" },
                &local,
                &peer,
                Some(1000 + i as u16),
                verdict,
                1 + i as u64,
            ));
        }
        Graph::build(&edges)
    }

    #[test]
    fn fifty_identities_never_overlap_and_fit_the_canvas() {
        let g = big();
        assert_eq!(g.nodes.len(), 50);
        let l = layout(&g);
        for (i, a) in l.boxes.iter().enumerate() {
            assert!(
                a.x >= 0.0 && a.y >= HEADER_HEIGHT && a.x + a.width <= l.width && a.y + a.height <= l.height,
                "{a:?}"
            );
            for b in &l.boxes[i + 1..] {
                assert!(!a.overlaps(b), "{a:?} overlaps {b:?}");
            }
        }
        assert!(l.width < 4000.0 && l.height < 4000.0, "{} x {}", l.width, l.height);
    }

    #[test]
    fn the_layout_is_deterministic() {
        assert_eq!(layout(&big()), layout(&big()));
    }

    #[test]
    fn labels_of_a_small_map_do_not_overlap() {
        let g = shop();
        let l = layout(&g);
        let boxes: Vec<Rect> = g.arrows.iter().zip(&l.routes).map(|(a, r)| label_box(&a.label(), r.label)).collect();
        for (i, a) in boxes.iter().enumerate() {
            for b in &boxes[i + 1..] {
                assert!(!a.overlaps(b), "{a:?} overlaps {b:?}");
            }
            for n in &l.boxes {
                assert!(!a.overlaps(n), "label {a:?} over box {n:?}");
            }
        }
    }
}
