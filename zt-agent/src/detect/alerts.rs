//! The alerts raised, for `ztctl alerts`: the most recent ones in memory, and a live feed
//! for `--follow`. Like the flow history, a slow subscriber misses alerts (and is told how
//! many); it never holds up detection.

use std::{
    collections::VecDeque,
    sync::Mutex,
    time::{Duration, SystemTime},
};

use tokio::sync::broadcast;
use zt_api::alert::Alert;

/// Alerts kept for `ztctl alerts` without --follow.
pub const CAPACITY: usize = 2048;
const FEED_CAPACITY: usize = 256;

pub struct AlertHistory {
    ring: Mutex<VecDeque<(SystemTime, Alert)>>,
    feed: broadcast::Sender<Alert>,
}

impl Default for AlertHistory {
    fn default() -> Self {
        let (feed, _) = broadcast::channel(FEED_CAPACITY);
        AlertHistory { ring: Mutex::new(VecDeque::with_capacity(64)), feed }
    }
}

impl AlertHistory {
    /// Keeps an alert raised at `at` and hands it to live subscribers.
    pub fn push(&self, at: SystemTime, alert: Alert) {
        {
            let mut ring = self.ring.lock().expect("alert history lock");
            if ring.len() == CAPACITY {
                ring.pop_front();
            }
            ring.push_back((at, alert.clone()));
        }
        let _ = self.feed.send(alert);
    }

    /// Alerts raised in the last `since` (all kept ones with `None`), oldest first.
    pub fn recent(&self, since: Option<Duration>) -> Vec<Alert> {
        let cutoff = since.and_then(|d| SystemTime::now().checked_sub(d));
        let ring = self.ring.lock().expect("alert history lock");
        ring.iter().filter(|(at, _)| cutoff.is_none_or(|c| *at >= c)).map(|(_, a)| a.clone()).collect()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Alert> {
        self.feed.subscribe()
    }

    pub fn len(&self) -> usize {
        self.ring.lock().expect("alert history lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
