//! Where everything goes: a layered layout computed here, deterministically, so the map
//! needs no script and no network to be drawn, and the same edges always give the same
//! picture.
//!
//! Identities are placed in columns by how far along the direction of their flows they are
//! (those who only open flows on the left, those who only accept them on the right), each
//! column ordered to keep arrows short (barycentre sweeps), boxes sized to their names and
//! stacked with a fixed gap, so no two boxes overlap whatever the graph. An arrow between
//! columns further apart passes each column between them through a waypoint, a slot of its
//! own in that column's stack, so it never runs through a box. Arrows are cubic curves
//! between box sides; arrows between the same two identities are spread apart, and their
//! labels are nudged until none covers another or a box.

use std::collections::BTreeMap;

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
/// Vertical space next to a waypoint (an arrow crossing a column).
const WAYPOINT_GAP_Y: f64 = 12.0;
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

/// One cubic Bézier piece of an arrow.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Cubic {
    pub start: Point,
    pub control1: Point,
    pub control2: Point,
    pub end: Point,
}

impl Cubic {
    /// From `start` to `end`, leaving and arriving horizontally (straight when level).
    fn level(start: Point, end: Point) -> Cubic {
        let dx = (end.x - start.x) / 2.0;
        Cubic {
            start,
            control1: Point { x: start.x + dx, y: start.y },
            control2: Point { x: end.x - dx, y: end.y },
            end,
        }
    }

    fn at(&self, t: f64) -> Point {
        let u = 1.0 - t;
        let (a, b, c, d) = (u * u * u, 3.0 * u * u * t, 3.0 * u * t * t, t * t * t);
        Point {
            x: a * self.start.x + b * self.control1.x + c * self.control2.x + d * self.end.x,
            y: a * self.start.y + b * self.control1.y + c * self.control2.y + d * self.end.y,
        }
    }
}

/// An arrow's curve, in pieces, and where its label sits.
#[derive(Clone, Debug, PartialEq)]
pub struct Route {
    pub pieces: Vec<Cubic>,
    /// The label's centre.
    pub label: Point,
}

impl Route {
    /// The point at `t` (0..=1) along the whole curve, each piece an equal share.
    pub fn at(&self, t: f64) -> Point {
        let scaled = t.clamp(0.0, 1.0) * self.pieces.len() as f64;
        let i = (scaled.floor() as usize).min(self.pieces.len() - 1);
        self.pieces[i].at(scaled - i as f64)
    }
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

/// What a column holds: the graph's nodes, and waypoints where an arrow between columns
/// further apart crosses it (in a slot of its own, so it never runs through a box).
struct Items {
    column: Vec<usize>,
    height: Vec<f64>,
    /// Links between items of neighbouring columns, for ordering.
    links: Vec<(usize, usize)>,
    /// For each pair of nodes (smaller index first) joined across more than one column: the
    /// waypoints from the node in the lower column to the other.
    chains: BTreeMap<(usize, usize), Vec<usize>>,
}

/// Lays out `graph`.
pub fn layout(graph: &Graph) -> Layout {
    let n = graph.nodes.len();
    let links: Vec<(usize, usize, u64)> =
        graph.arrows.iter().filter(|a| a.from != a.to).map(|a| (a.from, a.to, a.flows.max(1))).collect();
    let columns = columns(n, &links);
    let items = items(graph, &columns);
    let order = order_columns(&items);

    let widths: Vec<f64> = graph
        .nodes
        .iter()
        .map(|node| (node.name.chars().count() as f64 * NAME_CHAR_PX + 2.0 * NODE_PAD_X).max(NODE_MIN_WIDTH))
        .collect();
    let gap = |a: usize, b: usize| if a < n && b < n { NODE_GAP_Y } else { WAYPOINT_GAP_Y };
    let column_height = |members: &Vec<usize>| {
        members.iter().map(|&i| items.height[i]).sum::<f64>() + members.windows(2).map(|w| gap(w[0], w[1])).sum::<f64>()
    };
    let tallest = order.iter().map(column_height).fold(0.0, f64::max);
    let mut boxes = vec![Rect { x: 0.0, y: 0.0, width: 0.0, height: NODE_HEIGHT }; items.column.len()];
    let mut x = MARGIN;
    for members in &order {
        let column_width = members.iter().filter(|&&i| i < n).map(|&i| widths[i]).fold(0.0, f64::max);
        let mut y = MARGIN + HEADER_HEIGHT + (tallest - column_height(members)) / 2.0;
        for (k, &i) in members.iter().enumerate() {
            if k > 0 {
                y += gap(members[k - 1], i);
            }
            boxes[i] = if i < n {
                Rect { x: x + (column_width - widths[i]) / 2.0, y, width: widths[i], height: NODE_HEIGHT }
            } else {
                // A waypoint spans its whole column.
                Rect { x, y, width: column_width, height: items.height[i] }
            };
            y += items.height[i];
        }
        x += column_width + COLUMN_GAP;
    }
    let width = (x - COLUMN_GAP + SIDE_ROOM + MARGIN).max(560.0);
    let height = MARGIN + HEADER_HEIGHT + tallest + NODE_GAP_Y + MARGIN;

    let mut routes = routes(graph, &boxes, &columns, &items.chains);
    boxes.truncate(n);
    place_labels(graph, &mut routes, &boxes);
    Layout { width, height, boxes, routes, columns }
}

/// The column of each node: the longest path of flows leading to it, once the arrows that
/// close cycles are turned around. Which arrows to turn is the greedy choice of Eades, Lin
/// and Smyth, weighted by flows: the map reads left to right along most of the traffic.
fn columns(n: usize, links: &[(usize, usize, u64)]) -> Vec<usize> {
    // Flows out of and into each node, among the nodes not yet placed in the sequence.
    let (mut out_w, mut in_w) = (vec![0u64; n], vec![0u64; n]);
    let mut touching: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, &(a, b, w)) in links.iter().enumerate() {
        out_w[a] += w;
        in_w[b] += w;
        touching[a].push(i);
        touching[b].push(i);
    }
    let mut alive = vec![true; n];
    let remove = |v: usize, alive: &mut Vec<bool>, out_w: &mut Vec<u64>, in_w: &mut Vec<u64>| {
        alive[v] = false;
        for &i in &touching[v] {
            let (a, b, w) = links[i];
            if a == v && alive[b] {
                in_w[b] -= w;
            } else if b == v && alive[a] {
                out_w[a] -= w;
            }
        }
    };
    let (mut head, mut tail) = (Vec::new(), Vec::new());
    loop {
        // Sinks go last and sources first, as long as there are any; then the node whose
        // flows lead out the most.
        if let Some(v) = (0..n).find(|&v| alive[v] && out_w[v] == 0) {
            remove(v, &mut alive, &mut out_w, &mut in_w);
            tail.push(v);
        } else if let Some(v) = (0..n).find(|&v| alive[v] && in_w[v] == 0) {
            remove(v, &mut alive, &mut out_w, &mut in_w);
            head.push(v);
        } else if let Some(v) =
            (0..n).filter(|&v| alive[v]).max_by_key(|&v| (out_w[v] as i128 - in_w[v] as i128, std::cmp::Reverse(v)))
        {
            remove(v, &mut alive, &mut out_w, &mut in_w);
            head.push(v);
        } else {
            break;
        }
    }
    let mut position = vec![0usize; n];
    for (p, &v) in head.iter().chain(tail.iter().rev()).enumerate() {
        position[v] = p;
    }
    // Longest path, visiting nodes in sequence order (a topological order of the turned
    // graph).
    let mut column = vec![0usize; n];
    let mut sequence: Vec<usize> = (0..n).collect();
    sequence.sort_by_key(|&v| position[v]);
    for &v in &sequence {
        for &(a, b, _) in links {
            let (first, second) = if position[a] < position[b] { (a, b) } else { (b, a) };
            if second == v {
                column[v] = column[v].max(column[first] + 1);
            }
        }
    }
    column
}

/// The nodes, plus a waypoint in every column an arrow crosses between its ends.
fn items(graph: &Graph, columns: &[usize]) -> Items {
    let n = graph.nodes.len();
    let mut items =
        Items { column: columns.to_vec(), height: vec![NODE_HEIGHT; n], links: Vec::new(), chains: BTreeMap::new() };
    let mut pairs: BTreeMap<(usize, usize), usize> = BTreeMap::new();
    for a in graph.arrows.iter().filter(|a| a.from != a.to) {
        *pairs.entry((a.from.min(a.to), a.from.max(a.to))).or_default() += 1;
    }
    for (&(a, b), &arrows) in &pairs {
        let (lo, hi) = if columns[a] <= columns[b] { (a, b) } else { (b, a) };
        if columns[lo] == columns[hi] {
            continue;
        }
        let mut previous = lo;
        let mut chain = Vec::new();
        for c in columns[lo] + 1..columns[hi] {
            let waypoint = items.column.len();
            items.column.push(c);
            items.height.push(arrows as f64 * PARALLEL_SPREAD + 4.0);
            items.links.push((previous, waypoint));
            chain.push(waypoint);
            previous = waypoint;
        }
        items.links.push((previous, hi));
        if !chain.is_empty() {
            items.chains.insert((a, b), chain);
        }
    }
    items
}

/// The members of each column, top to bottom: start in item order, then sweep right and
/// left, sorting each column by the mean position of its neighbours in the column before.
fn order_columns(items: &Items) -> Vec<Vec<usize>> {
    let columns = &items.column;
    let count = columns.iter().max().map_or(0, |m| m + 1);
    let mut order: Vec<Vec<usize>> = vec![Vec::new(); count];
    for (item, &c) in columns.iter().enumerate() {
        order[c].push(item);
    }
    let mut neighbours: Vec<Vec<usize>> = vec![Vec::new(); columns.len()];
    for &(a, b) in &items.links {
        neighbours[a].push(b);
        neighbours[b].push(a);
    }
    let mut position = vec![0.0; columns.len()];
    let reposition = |order: &Vec<Vec<usize>>, position: &mut Vec<f64>| {
        for members in order {
            for (p, &item) in members.iter().enumerate() {
                position[item] = p as f64;
            }
        }
    };
    reposition(&order, &mut position);
    for sweep in 0..BARYCENTRE_SWEEPS {
        let rightwards = sweep % 2 == 0;
        let sequence: Vec<usize> =
            if rightwards { (1..count).collect() } else { (0..count.saturating_sub(1)).rev().collect() };
        for c in sequence {
            let beside = if rightwards { c - 1 } else { c + 1 };
            let key = |item: usize| {
                let near: Vec<f64> =
                    neighbours[item].iter().filter(|&&o| columns[o] == beside).map(|&o| position[o]).collect();
                if near.is_empty() { position[item] } else { near.iter().sum::<f64>() / near.len() as f64 }
            };
            let mut keyed: Vec<(f64, usize)> = order[c].iter().map(|&item| (key(item), item)).collect();
            keyed.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            order[c] = keyed.into_iter().map(|(_, item)| item).collect();
            reposition(&order, &mut position);
        }
    }
    order
}

/// The waypoints an arrow passes, in its direction.
fn waypoints(from: usize, to: usize, columns: &[usize], chains: &BTreeMap<(usize, usize), Vec<usize>>) -> Vec<usize> {
    let mut waypoints = chains.get(&(from.min(to), from.max(to))).cloned().unwrap_or_default();
    if columns[from] > columns[to] {
        // Chains run from the lower column.
        waypoints.reverse();
    }
    waypoints
}

/// Where each arrow leaves its source box and enters its target box (heights): the arrows
/// at one side of a box are spread over its height, in the order of where they come from or
/// go to, so no two share an end and an arrowhead is never hidden under another arrow.
fn ports(
    graph: &Graph,
    boxes: &[Rect],
    columns: &[usize],
    chains: &BTreeMap<(usize, usize), Vec<usize>>,
) -> Vec<(f64, f64)> {
    let centre = |i: usize| boxes[i].y + boxes[i].height / 2.0;
    /// One arrow's end at a side of a box, and the height the arrow heads for from there.
    struct End {
        toward: f64,
        arrow: usize,
        source: bool,
    }
    // (node, right side?) -> the ends there.
    let mut sides: BTreeMap<(usize, bool), Vec<End>> = BTreeMap::new();
    for (i, a) in graph.arrows.iter().enumerate().filter(|(_, a)| a.from != a.to) {
        let via = waypoints(a.from, a.to, columns, chains);
        let toward_from = via.first().map_or(centre(a.to), |&w| centre(w));
        let toward_to = via.last().map_or(centre(a.from), |&w| centre(w));
        let (from_right, to_right) = match columns[a.from].cmp(&columns[a.to]) {
            std::cmp::Ordering::Less => (true, false),
            std::cmp::Ordering::Greater => (false, true),
            std::cmp::Ordering::Equal => (true, true),
        };
        sides.entry((a.from, from_right)).or_default().push(End { toward: toward_from, arrow: i, source: true });
        sides.entry((a.to, to_right)).or_default().push(End { toward: toward_to, arrow: i, source: false });
    }
    let mut ports: Vec<(f64, f64)> = graph.arrows.iter().map(|a| (centre(a.from), centre(a.to))).collect();
    for ((node, _), mut ends) in sides {
        ends.sort_by(|a, b| a.toward.total_cmp(&b.toward).then(a.arrow.cmp(&b.arrow)).then(a.source.cmp(&b.source)));
        let room = boxes[node].height - 10.0;
        let step = if ends.len() > 1 { (room / (ends.len() - 1) as f64).min(PARALLEL_SPREAD) } else { 0.0 };
        for (k, end) in ends.iter().enumerate() {
            let y = centre(node) + (k as f64 - (ends.len() as f64 - 1.0) / 2.0) * step;
            if end.source {
                ports[end.arrow].0 = y;
            } else {
                ports[end.arrow].1 = y;
            }
        }
    }
    ports
}

/// `boxes` holds the nodes' boxes followed by the waypoints' slots.
fn routes(
    graph: &Graph,
    boxes: &[Rect],
    columns: &[usize],
    chains: &BTreeMap<(usize, usize), Vec<usize>>,
) -> Vec<Route> {
    // Arrows joining the same two identities (either way) share the waypoints between them,
    // spread around their centre line.
    let pair = |a: usize, b: usize| (a.min(b), a.max(b));
    let mut siblings: BTreeMap<(usize, usize), Vec<usize>> = BTreeMap::new();
    for (i, a) in graph.arrows.iter().enumerate() {
        siblings.entry(pair(a.from, a.to)).or_default().push(i);
    }
    let ports = ports(graph, boxes, columns, chains);
    graph
        .arrows
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let group = &siblings[&pair(a.from, a.to)];
            let rank = group.iter().position(|&j| j == i).unwrap_or(0) as f64;
            let offset = (rank - (group.len() as f64 - 1.0) / 2.0) * PARALLEL_SPREAD;
            let (f, t) = (boxes[a.from], boxes[a.to]);
            let (from_y, to_y) = ports[i];
            let pieces = if a.from == a.to {
                // A loop over the box's right end: the identity talks to itself (two
                // endpoints with the same labels).
                let start = Point { x: f.x + f.width - 24.0, y: f.y };
                let end = Point { x: f.x + f.width, y: f.y + 12.0 };
                let control1 = Point { x: start.x - 6.0 - offset, y: f.y - 34.0 - offset };
                let control2 = Point { x: end.x + 34.0 + offset, y: end.y - 8.0 };
                vec![Cubic { start, control1, control2, end }]
            } else if columns[a.from] == columns[a.to] {
                // Within one column: a bulge to the right of both boxes.
                let start = Point { x: f.x + f.width, y: from_y };
                let end = Point { x: t.x + t.width, y: to_y };
                let x = start.x.max(end.x) + 40.0 + 0.25 * (end.y - start.y).abs() + offset;
                vec![Cubic { start, control1: Point { x, y: start.y }, control2: Point { x, y: end.y }, end }]
            } else {
                // Between columns, through the waypoints of every column crossed.
                let rightwards = columns[a.from] < columns[a.to];
                let side = |r: Rect, leaving: bool| if rightwards == leaving { r.x + r.width } else { r.x };
                let mut points = vec![Point { x: side(f, true), y: from_y }];
                for w in waypoints(a.from, a.to, columns, chains) {
                    let r = boxes[w];
                    let y = r.y + r.height / 2.0 + offset;
                    points.push(Point { x: side(r, false), y });
                    points.push(Point { x: side(r, true), y });
                }
                points.push(Point { x: side(t, false), y: to_y });
                points.windows(2).map(|p| Cubic::level(p[0], p[1])).collect()
            };
            let mut route = Route { pieces, label: Point { x: 0.0, y: 0.0 } };
            route.label = if a.from == a.to { Point { x: f.x + f.width + 18.0, y: f.y - 20.0 } } else { route.at(0.5) };
            route
        })
        .collect()
}

/// The box a label takes, centred on `at`.
pub fn label_box(text: &str, at: Point) -> Rect {
    let width = text.chars().count() as f64 * LABEL_CHAR_PX + 6.0;
    Rect { x: at.x - width / 2.0, y: at.y - LABEL_HEIGHT / 2.0, width, height: LABEL_HEIGHT }
}

/// Moves labels along their curve, then off it, until none overlaps another label or a box.
fn place_labels(graph: &Graph, routes: &mut [Route], boxes: &[Rect]) {
    const ALONG: [f64; 7] = [0.5, 0.4, 0.6, 0.3, 0.7, 0.2, 0.8];
    const OFF: [f64; 7] = [0.0, -15.0, 15.0, -30.0, 30.0, -45.0, 45.0];
    let mut placed: Vec<Rect> = Vec::new();
    for (arrow, route) in graph.arrows.iter().zip(routes.iter_mut()) {
        let text = arrow.label();
        if arrow.from != arrow.to {
            let free = |r: &Rect| !placed.iter().chain(boxes).any(|o| o.overlaps(r));
            let candidates = OFF.iter().flat_map(|&dy| ALONG.iter().map(move |&t| (t, dy)));
            let spot = candidates
                .map(|(t, dy)| {
                    let p = route.at(t);
                    Point { x: p.x, y: p.y + dy }
                })
                .find(|&at| free(&label_box(&text, at)));
            route.label = spot.unwrap_or(route.label);
        }
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
    fn no_two_arrows_end_at_the_same_point() {
        let g = shop();
        let l = layout(&g);
        let mut ends: Vec<(i64, i64)> = Vec::new();
        for r in &l.routes {
            for p in [r.pieces[0].start, r.pieces.last().unwrap().end] {
                ends.push(((p.x * 10.0) as i64, (p.y * 10.0) as i64));
            }
        }
        let count = ends.len();
        ends.sort();
        ends.dedup();
        assert_eq!(ends.len(), count, "{:?}", l.routes);
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
