//! The map's model: observed edges turned into the identities to draw (nodes) and who
//! talked to whom with which verdict (arrows). Everything the writers draw is decided here,
//! once, so the SVG, the HTML page and the dot file always show the same picture.
//!
//! An arrow points from the side that opened the flows to the side that accepted (or
//! refused) them: peer → local for ingress edges, local → peer for egress ones. The edges
//! of one pair of identities with one verdict become one arrow, labelled with their
//! protocols and ports and the sum of their flows.

use std::collections::{BTreeMap, BTreeSet};

use zt_api::{
    edge::ObservedEdge,
    labels::{CIDR_PREFIX, RESERVED_HOST, RESERVED_WORLD, pod_name},
};

/// More unlabelled peer addresses than this are drawn as one `world` node: a few addresses
/// are worth reading, a scan's hundred sources are not.
pub const WORLD_GROUP_ABOVE: usize = 8;

/// What an arrow's edges were judged; the writers draw each differently in colour *and*
/// line pattern, so the map reads without colour too.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Verdict {
    Allowed,
    Audit,
    Denied,
}

impl Verdict {
    pub const ALL: [Verdict; 3] = [Verdict::Allowed, Verdict::Audit, Verdict::Denied];

    /// `allowed`, `audit`, `denied`; anything else the agent may add later is drawn as denied,
    /// the side a reader should look at.
    pub fn parse(text: &str) -> Verdict {
        match text {
            "allowed" => Verdict::Allowed,
            "audit" => Verdict::Audit,
            _ => Verdict::Denied,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Verdict::Allowed => "allowed",
            Verdict::Audit => "audit",
            Verdict::Denied => "denied",
        }
    }

    /// Green, amber, red: `#2f9e44`, `#f08c00`, `#e03131` (the render test looks for them).
    pub fn colour(self) -> &'static str {
        match self {
            Verdict::Allowed => "#2f9e44",
            Verdict::Audit => "#f08c00",
            Verdict::Denied => "#e03131",
        }
    }

    /// SVG `stroke-dasharray`: solid, dotted, dashed.
    pub fn dashes(self) -> Option<&'static str> {
        match self {
            Verdict::Allowed => None,
            Verdict::Audit => Some("3 4"),
            Verdict::Denied => Some("9 5"),
        }
    }
}

/// What an identity is, which decides how its box looks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum NodeKind {
    /// This machine (`reserved:host`).
    Host,
    /// A labelled identity: an Endpoint, a pod, a CIDR.
    Labelled,
    /// An unlabelled peer address, or the `world` they are grouped into.
    World,
}

/// One identity on the map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// What the map calls it: `host`, `app=web`, `shop/web-1`, `198.18.4.2`, `world`.
    pub name: String,
    pub kind: NodeKind,
    /// The full labels (or the addresses grouped into `world`), for hover titles.
    pub detail: String,
}

/// The edges from one identity to another with one verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Arrow {
    /// Indexes into [`Graph::nodes`].
    pub from: usize,
    pub to: usize,
    pub verdict: Verdict,
    /// `TCP 80,443`, `ICMP`: protocols, each with its ports.
    pub services: BTreeMap<String, BTreeSet<u16>>,
    pub flows: u64,
    /// The observed edges drawn as this arrow.
    pub edges: usize,
}

impl Arrow {
    /// `TCP 80,443 · 12 flows`; long port lists are cut (the table and the hover title have
    /// them all).
    pub fn label(&self) -> String {
        const SHOWN: usize = 4;
        let services: Vec<String> = self
            .services
            .iter()
            .map(|(protocol, ports)| {
                if ports.is_empty() {
                    return protocol.clone();
                }
                let mut shown: Vec<String> = ports.iter().take(SHOWN).map(u16::to_string).collect();
                if ports.len() > SHOWN {
                    shown.push(format!("+{}", ports.len() - SHOWN));
                }
                format!("{protocol} {}", shown.join(","))
            })
            .collect();
        let flows = if self.flows == 1 { "1 flow".to_string() } else { format!("{} flows", self.flows) };
        format!("{} · {flows}", services.join("; "))
    }
}

/// The whole picture, in a deterministic order (nodes by name, arrows by their ends).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Graph {
    pub nodes: Vec<Node>,
    pub arrows: Vec<Arrow>,
    /// The observed edges the graph was built from, for tables.
    pub edges: Vec<ObservedEdge>,
}

/// Where an edge's side is drawn, before nodes get their indexes.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    Labels(BTreeMap<String, String>),
    Address(String),
    World,
}

impl Graph {
    /// The graph of `edges`.
    pub fn build(edges: &[ObservedEdge]) -> Graph {
        let addresses: BTreeSet<String> = edges.iter().filter(|e| e.peer_labels.is_empty()).map(peer_address).collect();
        let group_world = addresses.len() > WORLD_GROUP_ABOVE;
        let peer_key = |e: &ObservedEdge| match (e.peer_labels.is_empty(), group_world) {
            (false, _) => Key::Labels(e.peer_labels.clone()),
            (true, false) => Key::Address(peer_address(e)),
            (true, true) => Key::World,
        };

        let mut keys: BTreeMap<Key, Node> = BTreeMap::new();
        for e in edges {
            for key in [Key::Labels(e.local_labels.clone()), peer_key(e)] {
                keys.entry(key.clone()).or_insert_with(|| node(&key, &addresses));
            }
        }
        // Nodes sorted by what the reader sees, then by key so equal names stay apart.
        let mut order: Vec<(Key, Node)> = keys.into_iter().collect();
        order.sort_by(|(ka, a), (kb, b)| (a.kind, &a.name, ka).cmp(&(b.kind, &b.name, kb)));
        let index: BTreeMap<Key, usize> = order.iter().enumerate().map(|(i, (k, _))| (k.clone(), i)).collect();

        let mut arrows: BTreeMap<(usize, usize, Verdict), Arrow> = BTreeMap::new();
        for e in edges {
            let local = index[&Key::Labels(e.local_labels.clone())];
            let peer = index[&peer_key(e)];
            let (from, to) = if e.direction == "egress" { (local, peer) } else { (peer, local) };
            let verdict = Verdict::parse(&e.verdict);
            let arrow = arrows.entry((from, to, verdict)).or_insert_with(|| Arrow {
                from,
                to,
                verdict,
                services: BTreeMap::new(),
                flows: 0,
                edges: 0,
            });
            let ports = arrow.services.entry(e.protocol.clone()).or_default();
            ports.extend(e.port);
            arrow.flows += e.flows;
            arrow.edges += 1;
        }
        let mut sorted_edges = edges.to_vec();
        sorted_edges.sort_by(|a, b| {
            (&a.verdict, &a.local_labels, &a.peer_labels, a.peer_ip, &a.protocol, a.port, &a.direction).cmp(&(
                &b.verdict,
                &b.local_labels,
                &b.peer_labels,
                b.peer_ip,
                &b.protocol,
                b.port,
                &b.direction,
            ))
        });
        Graph {
            nodes: order.into_iter().map(|(_, n)| n).collect(),
            arrows: arrows.into_values().collect(),
            edges: sorted_edges,
        }
    }

    /// Flows of each verdict, for the legend.
    pub fn flows_by_verdict(&self, verdict: Verdict) -> u64 {
        self.arrows.iter().filter(|a| a.verdict == verdict).map(|a| a.flows).sum()
    }
}

/// The address of an unlabelled peer, `unknown` when the agent sent none.
fn peer_address(e: &ObservedEdge) -> String {
    e.peer_ip.map_or_else(|| "unknown".to_string(), |ip| ip.to_string())
}

fn node(key: &Key, addresses: &BTreeSet<String>) -> Node {
    match key {
        Key::Labels(labels) => {
            let detail = labels_text(labels);
            let (name, kind) = name_of(labels);
            Node { name, kind, detail }
        }
        Key::Address(address) => {
            Node { name: address.clone(), kind: NodeKind::World, detail: format!("{address} (no labels)") }
        }
        Key::World => Node {
            name: format!("world ({} addresses)", addresses.len()),
            kind: NodeKind::World,
            detail: addresses.iter().cloned().collect::<Vec<_>>().join(", "),
        },
    }
}

/// The short name of a labelled identity: `host`, `world`, a CIDR, a pod's
/// `namespace/name`, else its own labels (`app=web,tier=front`) without the reserved ones.
pub fn name_of(labels: &BTreeMap<String, String>) -> (String, NodeKind) {
    let is_host = labels.contains_key(RESERVED_HOST) || labels.get("reserved").is_some_and(|v| v == "host");
    if is_host {
        return ("host".into(), NodeKind::Host);
    }
    if labels.contains_key(RESERVED_WORLD) || labels.get("reserved").is_some_and(|v| v == "world") {
        return ("world".into(), NodeKind::World);
    }
    if let Some(cidr) = labels.keys().find_map(|k| k.strip_prefix(CIDR_PREFIX)) {
        return (cidr.to_string(), NodeKind::Labelled);
    }
    if let Some(pod) = pod_name(labels) {
        return (pod, NodeKind::Labelled);
    }
    let own: BTreeMap<String, String> =
        labels.iter().filter(|(k, _)| !k.contains(':')).map(|(k, v)| (k.clone(), v.clone())).collect();
    (labels_text(if own.is_empty() { labels } else { &own }), NodeKind::Labelled)
}

/// `app=web,tier=front`; a label without a value as its key alone.
pub fn labels_text(labels: &BTreeMap<String, String>) -> String {
    if labels.is_empty() {
        return "(no labels)".into();
    }
    zt_api::labels::text(labels)
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// An edge as the agent reports it; `peer` is `k=v` labels or an address.
    pub fn edge(
        direction: &str,
        local: &str,
        peer: &str,
        port: Option<u16>,
        verdict: &str,
        flows: u64,
    ) -> ObservedEdge {
        let labels = |text: &str| -> BTreeMap<String, String> {
            text.split(',')
                .filter(|s| !s.is_empty())
                .map(|kv| match kv.split_once('=') {
                    Some((k, v)) => (k.to_string(), v.to_string()),
                    None => (kv.to_string(), String::new()),
                })
                .collect()
        };
        let peer_ip = peer.parse().ok();
        ObservedEdge {
            direction: direction.into(),
            local_labels: labels(local),
            peer_labels: if peer_ip.is_some() { BTreeMap::new() } else { labels(peer) },
            peer_ip,
            protocol: if port.is_some() { "TCP".into() } else { "ICMP".into() },
            port,
            verdict: verdict.into(),
            reason: if verdict == "denied" { "default-deny".into() } else { "policy".into() },
            policy: Some("p".into()),
            flows,
            first_seen: "2026-11-26T10:00:00.000Z".into(),
            last_seen: "2026-11-26T10:05:00.000Z".into(),
        }
    }

    fn names(g: &Graph) -> Vec<&str> {
        g.nodes.iter().map(|n| n.name.as_str()).collect()
    }

    #[test]
    fn identities_are_named_by_labels_the_host_as_host_and_bare_peers_by_address() {
        let g = Graph::build(&[
            edge("ingress", "app=web", "198.18.4.2", Some(80), "allowed", 3),
            edge("ingress", "app=api", "app=web", Some(8080), "allowed", 5),
            edge("ingress", "reserved:host,role=node", "app=api", Some(22), "denied", 1),
        ]);
        assert_eq!(names(&g), ["host", "app=api", "app=web", "198.18.4.2"]);
        assert_eq!(g.nodes[0].kind, NodeKind::Host);
        assert_eq!(g.nodes[0].detail, "reserved:host,role=node");
    }

    #[test]
    fn pods_cidrs_and_reserved_labels_get_their_short_names() {
        let pod = BTreeMap::from([
            ("k8s:namespace".to_string(), "shop".to_string()),
            ("k8s:pod".to_string(), "web-1".to_string()),
            ("app".to_string(), "web".to_string()),
        ]);
        assert_eq!(name_of(&pod).0, "shop/web-1");
        let cidr = BTreeMap::from([("cidr:10.0.0.0/8".to_string(), String::new())]);
        assert_eq!(name_of(&cidr).0, "10.0.0.0/8");
        let world = BTreeMap::from([("reserved:world".to_string(), String::new())]);
        assert_eq!(name_of(&world), ("world".to_string(), NodeKind::World));
        let host = BTreeMap::from([("reserved".to_string(), "host".to_string())]);
        assert_eq!(name_of(&host), ("host".to_string(), NodeKind::Host));
    }

    #[test]
    fn arrows_point_from_the_opener_and_merge_ports_and_flows_per_verdict() {
        let g = Graph::build(&[
            edge("ingress", "app=api", "app=web", Some(8080), "allowed", 5),
            edge("ingress", "app=api", "app=web", Some(9090), "allowed", 2),
            edge("ingress", "app=api", "app=web", Some(8089), "audit", 1),
            edge("egress", "app=api", "app=db", Some(5432), "allowed", 7),
        ]);
        assert_eq!(names(&g), ["app=api", "app=db", "app=web"]);
        assert_eq!(g.arrows.len(), 3);
        let web_api = &g.arrows.iter().find(|a| a.from == 2 && a.verdict == Verdict::Allowed).unwrap();
        assert_eq!(web_api.to, 0);
        assert_eq!(web_api.label(), "TCP 8080,9090 · 7 flows");
        assert_eq!(web_api.edges, 2);
        let api_db = g.arrows.iter().find(|a| a.to == 1).unwrap();
        assert_eq!((api_db.from, api_db.label()), (0, "TCP 5432 · 7 flows".to_string()));
        assert_eq!(g.flows_by_verdict(Verdict::Audit), 1);
    }

    #[test]
    fn many_unlabelled_peers_become_one_world_node() {
        let edges: Vec<ObservedEdge> = (1..=WORLD_GROUP_ABOVE as u8 + 1)
            .map(|i| edge("ingress", "app=web", &format!("198.18.4.{i}"), Some(80), "denied", 1))
            .collect();
        let g = Graph::build(&edges);
        assert_eq!(names(&g), ["app=web", "world (9 addresses)"]);
        assert_eq!(g.arrows.len(), 1);
        assert_eq!(g.arrows[0].flows, 9);
        assert!(g.nodes[1].detail.starts_with("198.18.4.1, 198.18.4.2"), "{}", g.nodes[1].detail);
        let few = Graph::build(&edges[..WORLD_GROUP_ABOVE]);
        assert_eq!(few.nodes.len(), WORLD_GROUP_ABOVE + 1, "a few addresses are each drawn");
    }

    #[test]
    fn long_port_lists_are_cut_in_the_label() {
        let edges: Vec<ObservedEdge> =
            (1..=6).map(|p| edge("ingress", "app=web", "198.18.4.2", Some(p), "denied", 1)).collect();
        let g = Graph::build(&edges);
        assert_eq!(g.arrows[0].label(), "TCP 1,2,3,4,+2 · 6 flows");
        let icmp = Graph::build(&[edge("ingress", "app=web", "198.18.4.2", None, "allowed", 1)]);
        assert_eq!(icmp.arrows[0].label(), "ICMP · 1 flow");
    }

    #[test]
    fn the_graph_does_not_depend_on_the_order_of_the_edges() {
        let mut edges = vec![
            edge("ingress", "app=web", "198.18.4.2", Some(80), "allowed", 3),
            edge("ingress", "app=api", "app=web", Some(8080), "allowed", 5),
            edge("egress", "app=api", "app=db", Some(5432), "denied", 1),
        ];
        let g = Graph::build(&edges);
        edges.reverse();
        assert_eq!(Graph::build(&edges), g);
    }
}
