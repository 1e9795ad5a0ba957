//! `ztctl policy suggest`: least-privilege `zt/v1` policy from the edges the agent observed.
//!
//! A pure function from observed edges to YAML text, so it is tested without an agent:
//! one Policy per local identity, selecting it by its labels, with one ingress or egress
//! rule per peer — named by its labels when it has some (the host as `entity: host`), by
//! its address (`/32`, `/128`) otherwise — allowing exactly the ports seen, as ranges only
//! where at least [`DENSE_RUN`] consecutive ports were. Edges of every verdict count: they
//! are what was observed. Every rule carries a comment with the flows and the time span it
//! rests on, so a reviewer sees what each line of the policy is worth.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::IpAddr;

use zt_api::edge::ObservedEdge;

/// Consecutive ports from which a range is written instead of single ports.
pub const DENSE_RUN: usize = 4;

type Labels = BTreeMap<String, String>;

/// What to suggest from.
#[derive(Clone, Debug)]
pub struct SuggestOptions {
    /// Only local identities whose labels include all of these.
    pub selector: Labels,
    /// Leave out (merged) edges with fewer flows.
    pub min_flows: u64,
    /// `audit` or `enforce`: the `spec.mode` of every suggested policy.
    pub mode: String,
}

impl Default for SuggestOptions {
    fn default() -> Self {
        SuggestOptions { selector: Labels::new(), min_flows: 1, mode: "audit".into() }
    }
}

/// Reasons that say nothing about policy: the packet was broken, quarantined or arrived
/// before any policy; the failsafe rules are configuration, always in force.
const NOT_POLICY: &[&str] = &["malformed", "quarantine", "fragment-unknown", "no-policy", "failsafe"];

/// The other side, as a rule names it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Peer {
    Host,
    Selector(Labels),
    Address(IpAddr),
}

/// A protocol and destination port, as a port item names it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Port {
    protocol: String,
    port: Option<u16>,
}

/// What a rule rests on.
#[derive(Clone, Debug, Default)]
struct Evidence {
    flows: u64,
    first: String,
    last: String,
    verdicts: BTreeMap<String, u64>,
}

impl Evidence {
    fn add(&mut self, e: &ObservedEdge) {
        self.flows += e.flows;
        if self.first.is_empty() || e.first_seen < self.first {
            self.first = e.first_seen.clone();
        }
        if e.last_seen > self.last {
            self.last = e.last_seen.clone();
        }
        *self.verdicts.entry(e.verdict.clone()).or_default() += e.flows;
    }

    fn merge(&mut self, other: &Evidence) {
        self.flows += other.flows;
        if self.first.is_empty() || other.first < self.first {
            self.first = other.first.clone();
        }
        if other.last > self.last {
            self.last = other.last.clone();
        }
        for (v, n) in &other.verdicts {
            *self.verdicts.entry(v.clone()).or_default() += n;
        }
    }

    fn comment(&self) -> String {
        let verdicts: Vec<String> = self.verdicts.iter().map(|(v, n)| format!("{n} {v}")).collect();
        format!(
            "{} flow{} ({}), {} .. {}",
            self.flows,
            if self.flows == 1 { "" } else { "s" },
            verdicts.join(", "),
            self.first,
            self.last
        )
    }
}

/// Labels a selector may name: the agent's own (`reserved:host`, `cidr:...`) cannot be.
fn selectable(labels: &Labels) -> Labels {
    labels.iter().filter(|(k, _)| !k.contains(':')).map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn is_host(labels: &Labels) -> bool {
    labels.contains_key("reserved:host")
}

fn peer_of(e: &ObservedEdge) -> Option<Peer> {
    if let Some(ip) = e.peer_ip {
        return Some(Peer::Address(ip));
    }
    if is_host(&e.peer_labels) {
        return Some(Peer::Host);
    }
    let labels = selectable(&e.peer_labels);
    (!labels.is_empty()).then_some(Peer::Selector(labels))
}

/// `zt/v1` port items can name these protocols only.
fn expressible(protocol: &str) -> bool {
    matches!(protocol, "TCP" | "UDP" | "SCTP" | "ICMP" | "ICMPv6")
}

/// One local identity's observations: direction -> peer -> port -> evidence.
type Observed = BTreeMap<String, BTreeMap<Peer, BTreeMap<Port, Evidence>>>;

/// Suggested policy for `edges`, as a YAML stream with comments (empty documents are never
/// written; with nothing to suggest, the text is a comment saying so).
pub fn suggest(edges: &[ObservedEdge], opts: &SuggestOptions) -> String {
    let mut locals: BTreeMap<Labels, Observed> = BTreeMap::new();
    let mut skipped: BTreeSet<String> = BTreeSet::new();
    for e in edges {
        if NOT_POLICY.contains(&e.reason.as_str()) {
            continue;
        }
        if !opts.selector.iter().all(|(k, v)| e.local_labels.get(k) == Some(v)) {
            continue;
        }
        if !expressible(&e.protocol) {
            skipped.insert(format!("protocol {} cannot be named by a port item", e.protocol));
            continue;
        }
        let Some(peer) = peer_of(e) else {
            skipped.insert(format!("a peer with only agent labels {:?}", e.peer_labels));
            continue;
        };
        let port = Port { protocol: e.protocol.clone(), port: e.port };
        locals
            .entry(e.local_labels.clone())
            .or_default()
            .entry(e.direction.clone())
            .or_default()
            .entry(peer)
            .or_default()
            .entry(port)
            .or_default()
            .add(e);
    }
    let mut out = String::new();
    let mut names = BTreeSet::new();
    for (local, mut observed) in locals {
        // Rare edges are left out; a direction or peer left with nothing goes too.
        for peers in observed.values_mut() {
            for ports in peers.values_mut() {
                ports.retain(|_, ev| ev.flows >= opts.min_flows);
            }
            peers.retain(|_, ports| !ports.is_empty());
        }
        observed.retain(|_, peers| !peers.is_empty());
        if observed.is_empty() {
            continue;
        }
        let selector = selectable(&local);
        if selector.is_empty() {
            // Only the host can be local without labels of its own (world and CIDR
            // identities are never local to a policy).
            if is_host(&local) {
                skipped.insert(
                    "this host's traffic: the host has no labels to select it by; run the agent with --labels".into(),
                );
            }
            continue;
        }
        let name = unique(policy_name(&selector), &mut names);
        write_policy(&mut out, &name, &selector, &observed, &opts.mode);
    }
    if out.is_empty() {
        out.push_str("# nothing to suggest: no observed edges match\n");
    }
    for s in skipped {
        let _ = writeln!(out, "# not suggested: {s}");
    }
    out
}

/// `suggested-app-web-tier-frontend`: a valid, readable name from the labels.
fn policy_name(selector: &Labels) -> String {
    let mut name = String::from("suggested");
    for (k, v) in selector {
        for part in [k.as_str(), v.as_str()] {
            let clean: String =
                part.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect();
            let clean = clean.trim_matches('-');
            if !clean.is_empty() {
                name.push('-');
                name.push_str(clean);
            }
        }
    }
    let mut name: String = name.chars().take(240).collect();
    while name.contains("--") {
        name = name.replace("--", "-");
    }
    name.trim_end_matches('-').to_string()
}

fn unique(name: String, taken: &mut BTreeSet<String>) -> String {
    let mut candidate = name.clone();
    let mut n = 2;
    while !taken.insert(candidate.clone()) {
        candidate = format!("{name}-{n}");
        n += 1;
    }
    candidate
}

fn quote(s: &str) -> String {
    serde_json::to_string(s).expect("strings serialize")
}

fn flow_map(labels: &Labels) -> String {
    let items: Vec<String> = labels.iter().map(|(k, v)| format!("{}: {}", quote(k), quote(v))).collect();
    format!("{{{}}}", items.join(", "))
}

fn write_policy(out: &mut String, name: &str, selector: &Labels, observed: &Observed, mode: &str) {
    let _ = writeln!(out, "---\napiVersion: zt/v1\nkind: Policy\nmetadata: {{name: {name}}}\nspec:");
    let _ = writeln!(out, "  selector: {}\n  mode: {mode}", flow_map(selector));
    for direction in ["ingress", "egress"] {
        let Some(peers) = observed.get(direction) else { continue };
        let _ = writeln!(out, "  {direction}:");
        let field = if direction == "ingress" { "from" } else { "to" };
        for (peer, ports) in peers {
            let mut evidence = Evidence::default();
            ports.values().for_each(|ev| evidence.merge(ev));
            let _ = writeln!(out, "    # {}", evidence.comment());
            let peer = match peer {
                Peer::Host => "{entity: host}".to_string(),
                Peer::Selector(l) => format!("{{selector: {}}}", flow_map(l)),
                Peer::Address(ip) => {
                    format!("{{cidr: {}}}", quote(&format!("{ip}/{}", if ip.is_ipv4() { 32 } else { 128 })))
                }
            };
            let _ = writeln!(out, "    - {field}: [{peer}]");
            let _ = writeln!(out, "      ports:");
            for item in port_items(ports.keys()) {
                let _ = writeln!(out, "        - {item}");
            }
        }
    }
}

/// Port items for the ports seen: exact ports, runs of [`DENSE_RUN`] or more as ranges,
/// whole protocols for ICMP and ICMPv6.
fn port_items<'a>(ports: impl Iterator<Item = &'a Port>) -> Vec<String> {
    let mut by_protocol: BTreeMap<&str, Vec<Option<u16>>> = BTreeMap::new();
    for p in ports {
        by_protocol.entry(&p.protocol).or_default().push(p.port);
    }
    let mut items = Vec::new();
    for (protocol, ports) in by_protocol {
        let mut numbers: Vec<u16> = ports.iter().flatten().copied().collect();
        if numbers.is_empty() || ports.contains(&None) {
            items.push(format!("{{protocol: {protocol}}}"));
            continue;
        }
        numbers.sort_unstable();
        numbers.dedup();
        let mut i = 0;
        while i < numbers.len() {
            let mut j = i;
            while j + 1 < numbers.len() && numbers[j + 1] == numbers[j] + 1 {
                j += 1;
            }
            if j - i + 1 >= DENSE_RUN {
                items.push(format!("{{protocol: {protocol}, port: {}, endPort: {}}}", numbers[i], numbers[j]));
            } else {
                items.extend(numbers[i..=j].iter().map(|p| format!("{{protocol: {protocol}, port: {p}}}")));
            }
            i = j + 1;
        }
    }
    items
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn server() -> Labels {
        labels(&[("app", "server"), ("reserved:host", "")])
    }

    fn edge(
        direction: &str,
        peer: Result<Labels, &str>,
        protocol: &str,
        port: Option<u16>,
        flows: u64,
    ) -> ObservedEdge {
        let (peer_labels, peer_ip) = match peer {
            Ok(l) => (l, None),
            Err(ip) => (Labels::new(), Some(ip.parse().unwrap())),
        };
        ObservedEdge {
            direction: direction.into(),
            local_labels: server(),
            peer_labels,
            peer_ip,
            protocol: protocol.into(),
            port,
            verdict: "audit".into(),
            reason: "default-deny".into(),
            policy: None,
            flows,
            first_seen: "2026-11-26T10:00:00.000Z".into(),
            last_seen: "2026-11-26T11:00:00.000Z".into(),
        }
    }

    fn client() -> Result<Labels, &'static str> {
        Ok(labels(&[("app", "client")]))
    }

    fn parsed(text: &str) -> Vec<serde_json::Value> {
        text.split("\n---\n")
            .map(|d| d.trim_start_matches("---\n"))
            .filter(|d| d.lines().any(|l| !l.starts_with('#') && !l.trim().is_empty()))
            .map(|d| serde_norway::from_str(d).unwrap_or_else(|e| panic!("{e}: {d}")))
            .collect()
    }

    /// The suggestion is valid zt/v1 that the agent's compiler accepts.
    fn compiles(text: &str) {
        let set = zt_policy::policy::parse(&[("suggested.yaml", text)]).unwrap_or_else(|e| panic!("{e:#?}\n{text}"));
        let settings = zt_policy::policy::CompileSettings {
            host_labels: zt_policy::identity::Labels::parse("app=server").unwrap(),
            ..Default::default()
        };
        zt_policy::policy::compile(&set, &settings, &mut zt_policy::identity::IdentityAllocator::new())
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
    }

    #[test]
    fn labelled_peers_are_named_by_selector_and_unlabelled_ones_by_their_address() {
        let edges = [
            edge("ingress", client(), "TCP", Some(8080), 3),
            edge("ingress", Err("198.18.9.7"), "TCP", Some(443), 1),
            edge("ingress", Err("fd00::9"), "TCP", Some(443), 1),
            edge("egress", Ok(labels(&[("reserved:host", ""), ("app", "server")])), "UDP", Some(53), 1),
        ];
        let text = suggest(&edges, &SuggestOptions::default());
        compiles(&text);
        let docs = parsed(&text);
        assert_eq!(docs.len(), 1, "{text}");
        let spec = &docs[0]["spec"];
        assert_eq!(docs[0]["metadata"]["name"], "suggested-app-server");
        assert_eq!(spec["selector"], serde_json::json!({"app": "server"}), "reserved labels are not selected by");
        assert_eq!(spec["mode"], "audit");
        let from: Vec<&serde_json::Value> = spec["ingress"].as_array().unwrap().iter().map(|r| &r["from"][0]).collect();
        assert_eq!(
            from,
            [
                &serde_json::json!({"selector": {"app": "client"}}),
                &serde_json::json!({"cidr": "198.18.9.7/32"}),
                &serde_json::json!({"cidr": "fd00::9/128"})
            ]
        );
        assert_eq!(spec["ingress"][0]["ports"], serde_json::json!([{"protocol": "TCP", "port": 8080}]));
        assert_eq!(spec["egress"][0]["to"][0], serde_json::json!({"entity": "host"}));
    }

    #[test]
    fn four_consecutive_ports_become_a_range_and_fewer_stay_single() {
        let mut edges: Vec<ObservedEdge> = (6000..6004).map(|p| edge("ingress", client(), "UDP", Some(p), 1)).collect();
        edges.extend([7000, 7001, 7002, 7010].map(|p| edge("ingress", client(), "UDP", Some(p), 1)));
        edges.push(edge("ingress", client(), "ICMP", None, 2));
        let text = suggest(&edges, &SuggestOptions::default());
        compiles(&text);
        let ports = &parsed(&text)[0]["spec"]["ingress"][0]["ports"];
        assert_eq!(
            ports,
            &serde_json::json!([
                {"protocol": "ICMP"},
                {"protocol": "UDP", "port": 6000, "endPort": 6003},
                {"protocol": "UDP", "port": 7000}, {"protocol": "UDP", "port": 7001},
                {"protocol": "UDP", "port": 7002}, {"protocol": "UDP", "port": 7010}
            ])
        );
    }

    #[test]
    fn every_rule_says_how_many_flows_of_which_verdicts_and_when() {
        let mut allowed = edge("ingress", client(), "TCP", Some(80), 5);
        allowed.verdict = "allowed".into();
        allowed.first_seen = "2026-11-26T09:00:00.000Z".into();
        let edges = [allowed, edge("ingress", client(), "TCP", Some(81), 2)];
        let text = suggest(&edges, &SuggestOptions::default());
        assert!(
            text.contains(
                "    # 7 flows (5 allowed, 2 audit), 2026-11-26T09:00:00.000Z .. 2026-11-26T11:00:00.000Z\n    - from:"
            ),
            "{text}"
        );
    }

    #[test]
    fn selector_restricts_the_suggestion_to_the_local_identities_it_matches() {
        let mut db = edge("ingress", client(), "TCP", Some(5432), 1);
        db.local_labels = labels(&[("app", "db")]);
        let edges = [edge("ingress", client(), "TCP", Some(80), 1), db];
        let opts = SuggestOptions { selector: labels(&[("app", "db")]), ..SuggestOptions::default() };
        let docs = parsed(&suggest(&edges, &opts));
        assert_eq!(docs.len(), 1);
        assert_eq!(docs[0]["spec"]["selector"], serde_json::json!({"app": "db"}));
        assert_eq!(parsed(&suggest(&edges, &SuggestOptions::default())).len(), 2);
    }

    #[test]
    fn min_flows_leaves_out_rare_edges_and_what_is_left_empty() {
        let edges = [edge("ingress", client(), "TCP", Some(80), 10), edge("egress", client(), "TCP", Some(9), 1)];
        let opts = SuggestOptions { min_flows: 5, ..SuggestOptions::default() };
        let text = suggest(&edges, &opts);
        let docs = parsed(&text);
        assert_eq!(docs[0]["spec"]["ingress"][0]["ports"][0]["port"], 80);
        assert!(docs[0]["spec"].get("egress").is_none(), "{text}");
        let none = suggest(&edges, &SuggestOptions { min_flows: 11, ..SuggestOptions::default() });
        assert_eq!(none, "# nothing to suggest: no observed edges match\n");
    }

    #[test]
    fn verdicts_of_one_edge_merge_and_broken_or_failsafe_traffic_is_not_suggested() {
        let mut allowed = edge("ingress", client(), "TCP", Some(80), 4);
        allowed.verdict = "allowed".into();
        let mut ssh = edge("ingress", Err("198.18.9.1"), "TCP", Some(22), 9);
        ssh.reason = "failsafe".into();
        let edges = [allowed, edge("ingress", client(), "TCP", Some(80), 1), ssh];
        let opts = SuggestOptions { min_flows: 5, mode: "enforce".into(), ..SuggestOptions::default() };
        let text = suggest(&edges, &opts);
        compiles(&text);
        let docs = parsed(&text);
        assert_eq!(docs[0]["spec"]["mode"], "enforce");
        assert_eq!(docs[0]["spec"]["ingress"].as_array().unwrap().len(), 1, "{text}");
        assert!(text.contains("# 5 flows (4 allowed, 1 audit)"), "{text}");
    }

    #[test]
    fn a_host_without_labels_is_reported_not_selected_by_everything() {
        let mut e = edge("ingress", client(), "TCP", Some(80), 1);
        e.local_labels = labels(&[("reserved:host", "")]);
        let text = suggest(&[e], &SuggestOptions::default());
        assert!(text.starts_with("# nothing to suggest"), "{text}");
        assert!(text.contains("run the agent with --labels"), "{text}");
    }

    #[test]
    fn names_are_valid_and_unique() {
        assert_eq!(
            policy_name(&labels(&[("app.kubernetes.io/name", "Web_UI")])),
            "suggested-app-kubernetes-io-name-web-ui"
        );
        let mut taken = BTreeSet::new();
        assert_eq!(unique("a".into(), &mut taken), "a");
        assert_eq!(unique("a".into(), &mut taken), "a-2");
    }
}
