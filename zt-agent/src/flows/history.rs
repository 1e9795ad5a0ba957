//! Recent flow records in memory, and a live feed of new ones: what `ztctl flows` shows
//! (recent history first, then `--follow`), in the spirit of `hubble observe`.
//!
//! The sink stage pushes every record here before writing it; readers take a copy of the
//! ring and/or subscribe. A slow subscriber misses records (and is told how many by the
//! broadcast channel), it never slows the pipeline.

use std::{collections::VecDeque, sync::Mutex};

use tokio::sync::broadcast;

use super::FlowRecord;

/// Records kept for `ztctl flows` without --follow.
pub const DEFAULT_CAPACITY: usize = 4096;
/// Live records buffered per subscriber before it starts missing some.
const FEED_CAPACITY: usize = 1024;

pub struct FlowHistory {
    ring: Mutex<VecDeque<FlowRecord>>,
    capacity: usize,
    feed: broadcast::Sender<FlowRecord>,
}

impl FlowHistory {
    pub fn new(capacity: usize) -> FlowHistory {
        let (feed, _) = broadcast::channel(FEED_CAPACITY);
        FlowHistory { ring: Mutex::new(VecDeque::with_capacity(capacity)), capacity, feed }
    }

    /// Records a flow record and hands it to live subscribers.
    pub fn push(&self, record: FlowRecord) {
        {
            let mut ring = self.ring.lock().expect("flow history lock");
            if ring.len() == self.capacity {
                ring.pop_front();
            }
            ring.push_back(record.clone());
        }
        // No subscribers is fine.
        let _ = self.feed.send(record);
    }

    /// The kept records, oldest first.
    pub fn recent(&self) -> Vec<FlowRecord> {
        self.ring.lock().expect("flow history lock").iter().cloned().collect()
    }

    /// New records from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<FlowRecord> {
        self.feed.subscribe()
    }
}

impl Default for FlowHistory {
    fn default() -> Self {
        FlowHistory::new(DEFAULT_CAPACITY)
    }
}
