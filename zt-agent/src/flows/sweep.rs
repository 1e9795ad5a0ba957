//! The conntrack sweep: flows that end by silence (UDP, ICMP, abandoned TCP) never show the
//! kernel a closing packet, so the agent walks CONNTRACK periodically, reports the end of
//! expired flows from their counters, and deletes them. Closed TCP flows whose end the
//! kernel already reported are deleted once their closing timeout passes. HALF_OPEN (TCP
//! handshakes that never completed) is swept the same way, so every started flow that the
//! LRU did not evict is reported as ended.
//!
//! The [`Sweeper`] runs on a thread of its own with its own handle on the pinned map: a
//! walk of a full table (262,144 entries) takes a noticeable fraction of a second, and it
//! must never hold the agent's state lock (which the API and metrics take) nor occupy an
//! async worker (which carries the flow pipeline). The kernel's hash map is safe to walk
//! while packets update it. Each walk also counts the table, so status and metrics read
//! the occupancy from [`Sweeper::occupancy`] instead of walking it again.

use std::{
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use aya::maps::{HashMap, Map, MapData};

use crate::datapath::DatapathError;
use zt_common::{
    config::Config,
    conntrack::{self, CT_END_REPORTED, CtKey, CtValue},
    event::{FlowEvent, KIND_END},
    map_names,
};

/// The END event of the flow stored under `stored`, as the kernel would have written it
/// (source and destination of the packet that opened it).
pub fn end_event(stored: &CtKey, ct: &CtValue, now_ns: u64) -> FlowEvent {
    FlowEvent::of_flow(KIND_END, &ct.opening_key(stored), ct, ct.verdict(), ct.reason, now_ns)
}

/// What one walk found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Swept {
    /// END events of expired flows whose end was not yet reported.
    pub ends: Vec<FlowEvent>,
    /// Entries left in the table after the walk.
    pub remaining: u64,
}

/// Removes expired flows; returns END events for those whose end was not yet reported and
/// how many entries remain.
pub fn sweep(conntrack: &mut HashMap<MapData, CtKey, CtValue>, cfg: &Config, now_ns: u64) -> Swept {
    let mut expired = Vec::new();
    let mut seen = 0u64;
    for item in conntrack.iter() {
        let Ok((key, ct)) = item else { continue };
        seen += 1;
        if conntrack::expired(&ct, key.proto, cfg, now_ns) {
            expired.push((key, ct));
        }
    }
    let mut ends = Vec::new();
    for (key, ct) in expired {
        // Re-read: the flow may have seen a packet since the walk.
        match conntrack.get(&key, 0) {
            Ok(now_ct) if now_ct.last_seen_ns == ct.last_seen_ns => {}
            _ => continue,
        }
        if conntrack.remove(&key).is_ok() {
            seen = seen.saturating_sub(1);
            if ct.flags & CT_END_REPORTED == 0 {
                ends.push(end_event(&key, &ct, now_ns));
            }
        }
    }
    Swept { ends, remaining: seen }
}

/// Entries left in the swept tables as of the last walk.
#[derive(Debug, Default)]
pub struct Occupancy {
    pub conntrack: AtomicU64,
    pub half_open: AtomicU64,
}

/// Opens a pinned table of flows (CONNTRACK or HALF_OPEN) under `pin_dir`.
fn open_flows(pin_dir: &Path, name: &'static str) -> Result<HashMap<MapData, CtKey, CtValue>, DatapathError> {
    let data = MapData::from_pin(pin_dir.join(name)).map_err(DatapathError::map(name))?;
    HashMap::try_from(Map::LruHashMap(data)).map_err(DatapathError::map(name))
}

/// The periodic sweep on its own thread (see the module doc).
pub struct Sweeper {
    stop: Arc<AtomicBool>,
    occupancy: Arc<Occupancy>,
    thread: Option<JoinHandle<()>>,
}

impl Sweeper {
    /// Opens the pinned CONNTRACK and HALF_OPEN under `pin_dir` and sweeps them every
    /// `interval` (the first time at once) with the timeouts of `cfg`, handing each pass's
    /// END events to `report`.
    pub fn start(
        pin_dir: &Path,
        cfg: Config,
        interval: Duration,
        mut report: impl FnMut(Vec<FlowEvent>) + Send + 'static,
    ) -> Result<Sweeper, DatapathError> {
        let mut conntrack = open_flows(pin_dir, map_names::CONNTRACK)?;
        let mut half_open = open_flows(pin_dir, map_names::HALF_OPEN)?;
        let stop = Arc::new(AtomicBool::new(false));
        let occupancy = Arc::new(Occupancy::default());
        let (stop2, occupancy2) = (stop.clone(), occupancy.clone());
        let thread = std::thread::Builder::new()
            .name("zt-sweep".into())
            .spawn(move || {
                while !stop2.load(Ordering::Relaxed) {
                    let mut ends = Vec::new();
                    for (table, count) in
                        [(&mut conntrack, &occupancy2.conntrack), (&mut half_open, &occupancy2.half_open)]
                    {
                        let swept = sweep(table, &cfg, super::clock::monotonic_ns());
                        count.store(swept.remaining, Ordering::Relaxed);
                        ends.extend(swept.ends);
                    }
                    if !ends.is_empty() {
                        report(ends);
                    }
                    // A walk of a full table allocates as it goes; give that back.
                    crate::heap::release();
                    std::thread::park_timeout(interval);
                }
            })
            .map_err(|e| DatapathError::Other(format!("cannot start the conntrack sweep: {e}")))?;
        Ok(Sweeper { stop, occupancy, thread: Some(thread) })
    }

    /// Table entries as of the last walk (updated every interval).
    pub fn occupancy(&self) -> Arc<Occupancy> {
        self.occupancy.clone()
    }
}

impl Drop for Sweeper {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}
