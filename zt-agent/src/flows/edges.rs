//! Observed edges: every decision the flow log reports — the start of an allowed flow, a
//! denied or an audited first packet — aggregated by (direction, local labels, peer labels
//! or, for an unlabelled peer, its address, protocol, destination port, verdict). What
//! `ztctl policy suggest` writes least-privilege policy from, and `ztctl flows map` draws.
//!
//! The sink stage feeds every record it takes, so the table sees what the flow log sees,
//! independently of the 4,096 records of the history. It is bounded (`[flows] edges`): an
//! edge that does not fit is counted in `dropped` (and a metric), never lost silently.
//! Label sets and names are interned, so 100,000 edges between a few hundred identities
//! cost one key and one counter each (measured in `zt-agent/tests/edges_memory.rs`).
//!
//! The table is saved in the state directory every [`SAVE_INTERVAL`] when it changed and
//! when the agent stops, and loaded at start; a file that cannot be read is set aside
//! (renamed `*.corrupt`) with a warning, and the agent starts with an empty table.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    net::IpAddr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};
use zt_api::edge::ObservedEdge;

use super::{FlowRecord, clock};

/// Edges kept at most unless `[flows] edges` says otherwise.
pub const DEFAULT_CAPACITY: usize = 100_000;
/// The largest `[flows] edges` accepted.
pub const MAX_CAPACITY: usize = 10_000_000;
/// How often a changed table is saved.
pub const SAVE_INTERVAL: Duration = Duration::from_secs(30);
/// The file under the state directory.
pub const FILE: &str = "edges.json";

type Labels = BTreeMap<String, String>;

/// The other side of an edge: a labelled identity, or an address without labels.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Peer {
    Labels(Arc<Labels>),
    Ip(IpAddr),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct EdgeKey {
    ingress: bool,
    local: Arc<Labels>,
    peer: Peer,
    protocol: Arc<str>,
    port: Option<u16>,
    verdict: Arc<str>,
}

#[derive(Clone, Debug)]
struct EdgeStats {
    flows: u64,
    /// Milliseconds since the epoch.
    first_ms: u64,
    last_ms: u64,
    reason: Arc<str>,
    policy: Option<Arc<str>>,
}

/// Whether `labels` name no workload: world, a CIDR prefix, or an unresolved address.
/// Policy names such a peer by its address.
pub fn unlabelled(labels: &Labels) -> bool {
    labels.iter().all(|(k, v)| k == "reserved:world" || k.starts_with("cidr:") || (k == "reserved" && v == "unknown"))
}

/// Records that report a decision: the first packet of a flow, allowed, denied or audited.
fn is_decision(record: &FlowRecord) -> bool {
    matches!(record.event.as_str(), "start" | "deny" | "audit")
}

fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// The table itself; [`Edges`] shares it between the sink, the API and the saver.
#[derive(Default)]
pub struct EdgeTable {
    capacity: usize,
    edges: HashMap<EdgeKey, EdgeStats>,
    /// Interned label sets and names: each distinct one is stored once.
    label_sets: HashSet<Arc<Labels>>,
    names: HashSet<Arc<str>>,
    dropped: u64,
    dirty: bool,
}

impl EdgeTable {
    pub fn new(capacity: usize) -> EdgeTable {
        EdgeTable { capacity, ..EdgeTable::default() }
    }

    pub fn len(&self) -> usize {
        self.edges.len()
    }

    pub fn is_empty(&self) -> bool {
        self.edges.is_empty()
    }

    /// Edges that did not fit since the table was created (or loaded).
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    fn labels(&mut self, labels: &Labels) -> Arc<Labels> {
        if let Some(l) = self.label_sets.get(labels) {
            return l.clone();
        }
        let l = Arc::new(labels.clone());
        self.label_sets.insert(l.clone());
        l
    }

    fn name(&mut self, name: &str) -> Arc<str> {
        if let Some(n) = self.names.get(name) {
            return n.clone();
        }
        let n: Arc<str> = Arc::from(name);
        self.names.insert(n.clone());
        n
    }

    /// Adds `record` (if it reports a decision) as seen at `now`.
    pub fn observe(&mut self, record: &FlowRecord, now: SystemTime) {
        if !is_decision(record) {
            return;
        }
        let ingress = record.direction == "ingress";
        let (local, peer, peer_ip) = if ingress {
            (&record.dst_labels, &record.src_labels, record.src_ip)
        } else {
            (&record.src_labels, &record.dst_labels, record.dst_ip)
        };
        let peer = if unlabelled(peer) {
            // A packet too broken to read its addresses names no edge.
            let Some(ip) = peer_ip else { return };
            Peer::Ip(ip)
        } else {
            Peer::Labels(self.labels(peer))
        };
        let key = EdgeKey {
            ingress,
            local: self.labels(local),
            peer,
            protocol: self.name(&record.protocol),
            port: record.dst_port,
            verdict: self.name(&record.verdict),
        };
        let reason = self.name(&record.reason);
        let policy = record.policy.as_deref().map(|p| self.name(p));
        self.add(key, 1, millis(now), millis(now), reason, policy);
    }

    fn add(
        &mut self,
        key: EdgeKey,
        flows: u64,
        first_ms: u64,
        last_ms: u64,
        reason: Arc<str>,
        policy: Option<Arc<str>>,
    ) {
        if let Some(stats) = self.edges.get_mut(&key) {
            stats.flows += flows;
            stats.first_ms = stats.first_ms.min(first_ms);
            if last_ms >= stats.last_ms {
                (stats.last_ms, stats.reason, stats.policy) = (last_ms, reason, policy);
            }
        } else if self.edges.len() >= self.capacity {
            self.dropped += 1;
            return;
        } else {
            self.edges.insert(key, EdgeStats { flows, first_ms, last_ms, reason, policy });
        }
        self.dirty = true;
    }

    /// The `n` sources with the most denied flows over the kept edges, most first (ties by
    /// name): for an ingress edge the peer (its address, or its labels `k=v,...`), for an
    /// egress edge the local identity. A bounded list for the metrics.
    pub fn top_denied_sources(&self, n: usize) -> Vec<(String, u64)> {
        let mut by_source: HashMap<String, u64> = HashMap::new();
        for (k, s) in self.edges.iter().filter(|(k, _)| &*k.verdict == "denied") {
            let source = match (&k.peer, k.ingress) {
                (Peer::Ip(ip), true) => ip.to_string(),
                (Peer::Labels(l), true) => label_text(l),
                (_, false) => label_text(&k.local),
            };
            *by_source.entry(source).or_default() += s.flows;
        }
        let mut top: Vec<(String, u64)> = by_source.into_iter().collect();
        top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        top.truncate(n);
        top
    }

    /// The edges whose most recent flow is at most `since` old at `now` (all without
    /// `since`), ordered by direction, local labels, peer, protocol and port.
    pub fn list(&self, since: Option<Duration>, now: SystemTime) -> Vec<ObservedEdge> {
        let oldest = since.map_or(0, |s| millis(now).saturating_sub(s.as_millis() as u64));
        let mut out: Vec<ObservedEdge> =
            self.edges.iter().filter(|(_, s)| s.last_ms >= oldest).map(|(k, s)| view(k, s)).collect();
        out.sort_by(|a, b| {
            (&a.direction, &a.local_labels, &a.peer_labels, a.peer_ip, &a.protocol, a.port, &a.verdict).cmp(&(
                &b.direction,
                &b.local_labels,
                &b.peer_labels,
                b.peer_ip,
                &b.protocol,
                b.port,
                &b.verdict,
            ))
        });
        out
    }
}

/// `k=v,k2=v2`, or `-` for no labels.
fn label_text(labels: &Labels) -> String {
    if labels.is_empty() {
        return "-".to_string();
    }
    zt_api::labels::text(labels)
}

fn time_of(ms: u64) -> String {
    clock::rfc3339(UNIX_EPOCH + Duration::from_millis(ms))
}

fn view(k: &EdgeKey, s: &EdgeStats) -> ObservedEdge {
    let e = saved(k, s);
    ObservedEdge {
        direction: e.direction,
        local_labels: e.local,
        peer_labels: e.peer_labels,
        peer_ip: e.peer_ip,
        protocol: e.protocol,
        port: e.port,
        verdict: e.verdict,
        reason: e.reason,
        policy: e.policy,
        flows: e.flows,
        first_seen: time_of(e.first_ms),
        last_seen: time_of(e.last_ms),
    }
}

/// The saved form: times as milliseconds, so a round trip is exact.
#[derive(Serialize, Deserialize)]
struct Saved {
    version: u32,
    dropped: u64,
    edges: Vec<SavedEdge>,
}

#[derive(Serialize, Deserialize)]
struct SavedEdge {
    direction: String,
    local: Labels,
    #[serde(default)]
    peer_labels: Labels,
    #[serde(default)]
    peer_ip: Option<IpAddr>,
    protocol: String,
    port: Option<u16>,
    verdict: String,
    reason: String,
    policy: Option<String>,
    flows: u64,
    first_ms: u64,
    last_ms: u64,
}

const SAVED_VERSION: u32 = 1;

/// The shared table and where it is saved.
pub struct Edges {
    table: Mutex<EdgeTable>,
    path: Option<PathBuf>,
}

/// What opening found in the state directory.
#[derive(Debug, PartialEq, Eq)]
pub enum Loaded {
    Nothing,
    Edges(usize),
    /// The file could not be read; it was moved to this path.
    SetAside(PathBuf, String),
}

impl Edges {
    /// A table of at most `capacity` edges, restored from `path` if a file is there.
    pub fn open(capacity: usize, path: Option<PathBuf>) -> (Edges, Loaded) {
        let mut table = EdgeTable::new(capacity);
        let loaded = match &path {
            Some(p) => load(&mut table, p),
            None => Loaded::Nothing,
        };
        table.dirty = false;
        (Edges { table: Mutex::new(table), path }, loaded)
    }

    pub fn observe_all<'a>(&self, records: impl IntoIterator<Item = &'a FlowRecord>, now: SystemTime) {
        let mut t = self.table.lock().expect("edges lock");
        for r in records {
            t.observe(r, now);
        }
    }

    pub fn list(&self, since: Option<Duration>, now: SystemTime) -> (Vec<ObservedEdge>, u64) {
        let t = self.table.lock().expect("edges lock");
        (t.list(since, now), t.dropped)
    }

    /// See [`EdgeTable::top_denied_sources`].
    pub fn top_denied_sources(&self, n: usize) -> Vec<(String, u64)> {
        self.table.lock().expect("edges lock").top_denied_sources(n)
    }

    /// (edges kept, edges dropped), for metrics.
    pub fn counts(&self) -> (usize, u64) {
        let t = self.table.lock().expect("edges lock");
        (t.len(), t.dropped)
    }

    /// Saves the table if it changed since the last save (atomically: a new file renamed
    /// over the old one). The lock is held only to copy the table.
    pub fn save(&self) -> std::io::Result<()> {
        let Some(path) = &self.path else { return Ok(()) };
        let saved = {
            let mut t = self.table.lock().expect("edges lock");
            if !t.dirty {
                return Ok(());
            }
            t.dirty = false;
            Saved {
                version: SAVED_VERSION,
                dropped: t.dropped,
                edges: t.edges.iter().map(|(k, s)| saved(k, s)).collect(),
            }
        };
        let written = crate::state_file::write_json(path, &saved, false);
        if written.is_err() {
            // Try again next time.
            self.table.lock().expect("edges lock").dirty = true;
        }
        written
    }
}

/// An entry as the file keeps it; the API's view is this with readable times.
fn saved(k: &EdgeKey, s: &EdgeStats) -> SavedEdge {
    let (peer_labels, peer_ip) = match &k.peer {
        Peer::Labels(l) => ((**l).clone(), None),
        Peer::Ip(ip) => (BTreeMap::new(), Some(*ip)),
    };
    SavedEdge {
        direction: if k.ingress { "ingress" } else { "egress" }.to_string(),
        local: (*k.local).clone(),
        peer_labels,
        peer_ip,
        protocol: k.protocol.to_string(),
        port: k.port,
        verdict: k.verdict.to_string(),
        reason: s.reason.to_string(),
        policy: s.policy.as_deref().map(str::to_string),
        flows: s.flows,
        first_ms: s.first_ms,
        last_ms: s.last_ms,
    }
}

fn load(table: &mut EdgeTable, path: &Path) -> Loaded {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Loaded::Nothing,
        Err(e) => return set_aside(path, e.to_string()),
    };
    let saved: Saved = match serde_json::from_slice(&bytes) {
        Ok(s) => s,
        Err(e) => return set_aside(path, e.to_string()),
    };
    if saved.version != SAVED_VERSION {
        return set_aside(path, format!("version {} is not {SAVED_VERSION}", saved.version));
    }
    table.dropped = saved.dropped;
    for e in saved.edges {
        let peer = match e.peer_ip {
            Some(ip) => Peer::Ip(ip),
            None => Peer::Labels(table.labels(&e.peer_labels)),
        };
        let key = EdgeKey {
            ingress: e.direction == "ingress",
            local: table.labels(&e.local),
            peer,
            protocol: table.name(&e.protocol),
            port: e.port,
            verdict: table.name(&e.verdict),
        };
        let reason = table.name(&e.reason);
        let policy = e.policy.as_deref().map(|p| table.name(p));
        table.add(key, e.flows, e.first_ms, e.last_ms, reason, policy);
    }
    Loaded::Edges(table.len())
}

/// Moves an unreadable file out of the way, so the next save does not destroy what an
/// operator may want to look at, and the agent starts anyway.
fn set_aside(path: &Path, why: String) -> Loaded {
    let aside = path.with_extension(format!("json.corrupt-{}", millis(SystemTime::now())));
    match std::fs::rename(path, &aside) {
        Ok(()) => Loaded::SetAside(aside, why),
        Err(e) => Loaded::SetAside(path.to_path_buf(), format!("{why}; it could not be moved aside: {e}")),
    }
}

impl Loaded {
    /// The line start-up prints, if any.
    pub fn message(&self, path: &Path) -> Option<String> {
        match self {
            Loaded::Nothing => None,
            Loaded::Edges(n) => Some(format!("zt-agent: {n} observed edges restored from {}", path.display())),
            Loaded::SetAside(aside, why) => Some(format!(
                "zt-agent: warning: the observed edges in {} cannot be read ({why}); the file was set aside as {} and the table starts empty",
                path.display(),
                aside.display()
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(event: &str, verdict: &str, src: &str, src_labels: serde_json::Value, port: u16) -> FlowRecord {
        serde_json::from_value(serde_json::json!({
            "time": "2025-01-02T03:04:05.678Z", "verdict": verdict, "reason": "default-deny", "event": event,
            "direction": "ingress", "iface": "eth0", "protocol": "TCP", "src_ip": src, "src_port": 40000,
            "dst_ip": "198.18.0.2", "dst_port": port, "src_identity": 256, "dst_identity": 1,
            "src_labels": src_labels, "dst_labels": {"app": "server", "reserved:host": ""}, "policy": null,
            "rule": null, "packets": 1, "bytes": 60, "reply_packets": 0, "reply_bytes": 0, "generation": 1
        }))
        .unwrap()
    }

    fn client(event: &str, port: u16) -> FlowRecord {
        record(event, "audit", "198.18.0.1", serde_json::json!({"app": "client"}), port)
    }

    fn world(src: &str, port: u16) -> FlowRecord {
        record("audit", "audit", src, serde_json::json!({"reserved:world": ""}), port)
    }

    fn at(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000 + s)
    }

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("zt-edges-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(FILE)
    }

    #[test]
    fn flows_of_one_edge_are_counted_with_their_first_and_last_time() {
        let mut t = EdgeTable::new(10);
        t.observe(&client("audit", 80), at(0));
        t.observe(&client("audit", 80), at(5));
        t.observe(&client("end", 80), at(9));
        let edges = t.list(None, at(10));
        assert_eq!(edges.len(), 1, "{edges:#?}");
        let e = &edges[0];
        assert_eq!((e.flows, e.direction.as_str(), e.port, e.verdict.as_str()), (2, "ingress", Some(80), "audit"));
        assert_eq!(e.local_labels.get("app").map(String::as_str), Some("server"));
        assert_eq!((e.peer_labels.get("app").map(String::as_str), e.peer_ip), (Some("client"), None));
        assert_eq!(
            (e.first_seen.as_str(), e.last_seen.as_str()),
            ("2023-11-14T22:13:20.000Z", "2023-11-14T22:13:25.000Z")
        );
    }

    #[test]
    fn an_unlabelled_peer_is_named_by_its_address_and_each_address_is_an_edge() {
        let mut t = EdgeTable::new(10);
        t.observe(&world("198.18.9.1", 443), at(0));
        t.observe(&world("198.18.9.2", 443), at(0));
        let edges = t.list(None, at(0));
        assert_eq!(edges.len(), 2);
        assert!(edges.iter().all(|e| e.peer_labels.is_empty()), "{edges:#?}");
        assert_eq!(edges[0].peer_ip, Some("198.18.9.1".parse().unwrap()));
    }

    #[test]
    fn a_full_table_counts_what_it_cannot_keep_and_keeps_counting_what_it_has() {
        let mut t = EdgeTable::new(2);
        for port in [1, 2, 3, 4] {
            t.observe(&client("audit", port), at(0));
        }
        t.observe(&client("audit", 1), at(1));
        assert_eq!((t.len(), t.dropped()), (2, 2));
        let flows: Vec<u64> = t.list(None, at(1)).iter().map(|e| e.flows).collect();
        assert_eq!(flows, [2, 1], "a known edge still counts when the table is full");
    }

    #[test]
    fn top_denied_sources_sum_denied_flows_per_source_most_first() {
        let mut t = EdgeTable::new(100);
        let denied = |src: &str, labels: serde_json::Value, port| record("deny", "denied", src, labels, port);
        // 198.18.9.1: 3 denied flows over two ports; the client (labelled): 2; 198.18.9.2: 1.
        for port in [22, 23, 23] {
            t.observe(&denied("198.18.9.1", serde_json::json!({"reserved:world": ""}), port), at(0));
        }
        for _ in 0..2 {
            t.observe(&denied("198.18.0.1", serde_json::json!({"app": "client"}), 80), at(0));
        }
        t.observe(&denied("198.18.9.2", serde_json::json!({"reserved:world": ""}), 22), at(0));
        // Audited and allowed flows are not denials.
        for _ in 0..5 {
            t.observe(&world("198.18.9.3", 22), at(0));
        }
        assert_eq!(
            t.top_denied_sources(10),
            [("198.18.9.1".to_string(), 3), ("app=client".to_string(), 2), ("198.18.9.2".to_string(), 1)]
        );
        assert_eq!(t.top_denied_sources(1), [("198.18.9.1".to_string(), 3)], "bounded to n");
    }

    #[test]
    fn since_keeps_only_edges_seen_recently() {
        let mut t = EdgeTable::new(10);
        t.observe(&client("audit", 1), at(0));
        t.observe(&client("audit", 2), at(100));
        let ports = |since| t.list(since, at(110)).iter().map(|e| e.port).collect::<Vec<_>>();
        assert_eq!(ports(Some(Duration::from_secs(60))), [Some(2)]);
        assert_eq!(ports(None), [Some(1), Some(2)]);
    }

    #[test]
    fn the_table_survives_a_save_and_a_load_exactly() {
        let path = temp("roundtrip");
        let (edges, loaded) = Edges::open(3, Some(path.clone()));
        assert_eq!(loaded, Loaded::Nothing);
        edges.observe_all([&client("audit", 80), &world("198.18.9.1", 443), &client("start", 22)], at(0));
        edges.observe_all([&client("audit", 80), &client("audit", 81)], at(7));
        edges.save().unwrap();
        let before = edges.list(None, at(8));
        let (again, loaded) = Edges::open(3, Some(path.clone()));
        assert_eq!(loaded, Loaded::Edges(3));
        assert_eq!(again.list(None, at(8)), before);
        assert_eq!(again.counts(), (3, 1), "the dropped count is kept too");
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn a_corrupt_file_is_set_aside_and_the_table_starts_empty() {
        let path = temp("corrupt");
        std::fs::write(&path, b"{\"version\":1,\"edges\":[{").unwrap();
        let (edges, loaded) = Edges::open(10, Some(path.clone()));
        let Loaded::SetAside(aside, why) = &loaded else { panic!("{loaded:?}") };
        assert!(why.contains("EOF"), "{why}");
        assert!(!path.exists() && aside.exists(), "moved to {}", aside.display());
        assert_eq!(std::fs::read(aside).unwrap(), b"{\"version\":1,\"edges\":[{");
        assert!(loaded.message(&path).unwrap().contains("was set aside as"), "{loaded:?}");
        assert_eq!(edges.counts(), (0, 0));
        // The next save writes a fresh file in its place.
        edges.observe_all([&client("audit", 80)], at(0));
        edges.save().unwrap();
        assert_eq!(Edges::open(10, Some(path.clone())).1, Loaded::Edges(1));
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }
}
