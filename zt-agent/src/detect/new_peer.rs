//! `new_peer`: the edges between identities this host has seen — (local labels, peer
//! labels, protocol, port) — learnt from flow records for the learning period, then every
//! unseen edge raises one finding (and is learnt, so it raises only one).
//!
//! Edges are kept as 64-bit hashes (FNV-1a of the edge's canonical text), at most
//! [`MAX_EDGES`] of them (8 bytes each in the set), and saved in the state directory with
//! the time learning began, so a restart neither forgets the baseline nor starts learning
//! again. Labels, not identity numbers, name the ends: numbers are reallocated by pushes.

use std::{
    collections::{BTreeMap, HashSet},
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc, oneshot};
use zt_api::record::FlowRecord;
use zt_common::detect::DETECTOR_NEW_PEER;

use super::{Finding, settings::NewPeer};

/// Edges remembered at most; beyond, new edges are neither learnt nor reported (and a
/// warning says so once).
pub const MAX_EDGES: usize = 1_000_000;
/// How often learnt edges are saved when they changed.
const SAVE_INTERVAL: Duration = Duration::from_secs(30);

#[derive(Serialize, Deserialize, Default)]
struct Saved {
    /// Seconds since the epoch when learning began.
    learning_since: u64,
    edges: Vec<u64>,
}

pub struct NewPeers {
    settings: NewPeer,
    /// Where the learner publishes its memory (metrics).
    gauge: Arc<AtomicU64>,
    path: Option<PathBuf>,
    learning_since: SystemTime,
    edges: HashSet<u64>,
    dirty: bool,
    full: bool,
}

fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3))
}

fn canonical(labels: &BTreeMap<String, String>) -> String {
    labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

impl NewPeers {
    /// The learner, restored from `path` if an earlier agent saved one there.
    pub fn open(settings: NewPeer, path: Option<PathBuf>, gauge: Arc<AtomicU64>) -> NewPeers {
        let saved: Option<Saved> =
            path.as_ref().and_then(|p| std::fs::read(p).ok()).and_then(|bytes| serde_json::from_slice(&bytes).ok());
        let (learning_since, edges) = match saved {
            Some(s) => (UNIX_EPOCH + Duration::from_secs(s.learning_since), s.edges.into_iter().collect()),
            None => (SystemTime::now(), HashSet::new()),
        };
        let learner = NewPeers { settings, gauge, path, learning_since, edges, dirty: true, full: false };
        learner.gauge.store(learner.memory_bytes() as u64, Ordering::Relaxed);
        learner
    }

    /// Whether the learning period is over at `now`.
    pub fn learnt(&self, now: SystemTime) -> bool {
        now.duration_since(self.learning_since).is_ok_and(|d| d >= self.settings.learn)
    }

    pub fn len(&self) -> usize {
        self.edges.len()
    }

    pub fn is_empty(&self) -> bool {
        self.edges.is_empty()
    }

    /// Bytes the edge set holds (its table, not counting the allocator's rounding).
    pub fn memory_bytes(&self) -> usize {
        self.edges.capacity() * (std::mem::size_of::<u64>() + 1)
    }

    /// Learns the edge of `record`; after learning, an unseen edge is a finding.
    pub fn observe(&mut self, record: &FlowRecord, now: SystemTime) -> Option<Finding> {
        if !self.settings.response.enabled || !matches!(record.event.as_str(), "start" | "deny" | "audit") {
            return None;
        }
        let ingress = record.direction == "ingress";
        let (local, peer) =
            if ingress { (&record.dst_labels, &record.src_labels) } else { (&record.src_labels, &record.dst_labels) };
        let port = record.dst_port.map_or(String::new(), |p| p.to_string());
        let edge = fnv1a(&format!(
            "{}|{}|{}|{}|{}",
            canonical(local),
            canonical(peer),
            record.direction,
            record.protocol,
            port
        ));
        if self.edges.contains(&edge) {
            return None;
        }
        if self.edges.len() >= MAX_EDGES {
            if !self.full {
                log::warn!("new_peer: {MAX_EDGES} edges learnt; further new edges are not tracked");
                self.full = true;
            }
            return None;
        }
        self.edges.insert(edge);
        self.gauge.store(self.memory_bytes() as u64, Ordering::Relaxed);
        self.dirty = true;
        if !self.learnt(now) {
            return None;
        }
        Some(Finding {
            detector: DETECTOR_NEW_PEER,
            src: record.src_ip?,
            dst: record.dst_ip,
            port: record.dst_port,
            protocol: record.protocol.clone(),
            count: 1,
            window: None,
            time: now,
            labels: Some((record.src_labels.clone(), record.dst_labels.clone())),
        })
    }

    /// Saves the edges if they changed since the last save.
    pub fn save(&mut self) {
        let Some(path) = &self.path else { return };
        if !self.dirty {
            return;
        }
        let saved = Saved {
            learning_since: self.learning_since.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
            edges: self.edges.iter().copied().collect(),
        };
        let written = crate::state_file::write_json(path, &saved, false);
        match written {
            Ok(()) => self.dirty = false,
            Err(e) => log::warn!("cannot save the learnt edges to {}: {e}", path.display()),
        }
    }
}

/// Feeds every flow record of `records` to the learner until `stop` fires (or the feed
/// closes), sending findings to `tx`; saves the edges periodically and at the end.
pub async fn run(
    mut learner: NewPeers,
    mut records: broadcast::Receiver<FlowRecord>,
    tx: mpsc::Sender<Finding>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut save = tokio::time::interval(SAVE_INTERVAL);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            received = records.recv() => match received {
                Ok(record) => {
                    if let Some(f) = learner.observe(&record, SystemTime::now())
                        && tx.send(f).await.is_err()
                    {
                        break;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    log::debug!("new_peer: {n} flow records passed unseen (the feed ran ahead)");
                }
                Err(broadcast::error::RecvError::Closed) => break,
            },
            _ = save.tick() => learner.save(),
        }
    }
    learner.save();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::settings::{DetectSettings, Response};

    fn record(event: &str, src: &str, dst: &str, port: u16, client: &str) -> FlowRecord {
        serde_json::from_value(serde_json::json!({
            "time": "2025-01-02T03:04:05.678Z", "verdict": "allowed", "reason": "policy", "event": event,
            "direction": "ingress", "iface": "eth0", "protocol": "TCP", "src_ip": src, "src_port": 40000,
            "dst_ip": dst, "dst_port": port, "src_identity": 256, "dst_identity": 1,
            "src_labels": {"app": client}, "dst_labels": {"reserved": "host"}, "policy": "web", "rule": 0,
            "packets": 1, "bytes": 60, "reply_packets": 0, "reply_bytes": 0, "generation": 1
        }))
        .unwrap()
    }

    fn settings(learn: Duration) -> NewPeer {
        NewPeer { learn, ..DetectSettings::default().new_peer }
    }

    #[test]
    fn edges_seen_while_learning_stay_quiet_and_only_unseen_ones_fire_once() {
        let mut l = NewPeers::open(settings(Duration::from_secs(60)), None, Arc::default());
        let t0 = SystemTime::now();
        assert_eq!(l.observe(&record("start", "198.18.0.1", "198.18.0.2", 80, "web"), t0), None);
        // Another client address of the same identity is the same edge.
        assert_eq!(l.observe(&record("start", "198.18.0.9", "198.18.0.2", 80, "web"), t0), None);
        let later = t0 + Duration::from_secs(61);
        assert_eq!(l.observe(&record("start", "198.18.0.9", "198.18.0.2", 80, "web"), later), None, "learnt");
        let f = l.observe(&record("start", "198.18.0.1", "198.18.0.2", 5432, "web"), later).expect("new port");
        assert_eq!((f.detector, f.port, f.count), (DETECTOR_NEW_PEER, Some(5432), 1));
        assert_eq!(f.src, "198.18.0.1".parse::<std::net::IpAddr>().unwrap());
        assert!(l.observe(&record("deny", "198.18.0.1", "198.18.0.2", 5432, "web"), later).is_none(), "only once");
        assert!(l.observe(&record("start", "198.18.0.1", "198.18.0.2", 80, "batch"), later).is_some(), "new peer");
        assert!(
            l.observe(&record("end", "198.18.0.1", "198.18.0.2", 81, "batch"), later).is_none(),
            "ends are no edges"
        );
    }

    #[test]
    fn learnt_edges_and_the_learning_start_survive_a_restart() {
        let path = std::env::temp_dir().join(format!("zt-new-peers-{}.json", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let mut l = NewPeers::open(settings(Duration::ZERO), Some(path.clone()), Arc::default());
        let now = SystemTime::now();
        assert!(l.observe(&record("start", "198.18.0.1", "198.18.0.2", 80, "web"), now).is_some());
        l.save();
        let mut again = NewPeers::open(settings(Duration::ZERO), Some(path.clone()), Arc::default());
        assert_eq!(again.len(), 1);
        assert!(again.observe(&record("start", "198.18.0.1", "198.18.0.2", 80, "web"), now).is_none());
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn a_disabled_detector_learns_nothing() {
        let off = NewPeer {
            response: Response { enabled: false, ..settings(Duration::ZERO).response },
            ..settings(Duration::ZERO)
        };
        let mut l = NewPeers::open(off, None, Arc::default());
        assert!(l.observe(&record("start", "198.18.0.1", "198.18.0.2", 80, "web"), SystemTime::now()).is_none());
        assert!(l.is_empty());
    }
}
