//! An alert: what a detector found and what the agent did about it. The same record is a
//! flow-log line (with `"event": "alert"`) and an entry of `ztctl alerts`; its field names
//! are the contract (docs/detection.md).

use std::{collections::BTreeMap, net::IpAddr};

use serde::{Deserialize, Serialize};

/// The `event` field of every alert line, which tells alerts from flow records in the log.
pub const ALERT_EVENT: &str = "alert";

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Alert {
    /// Always [`ALERT_EVENT`].
    pub event: String,
    /// RFC 3339 time the threshold was crossed.
    pub time: String,
    /// port_scan | sweep | fan_out | new_peer | deny_spike
    pub detector: String,
    /// The offender (for fan_out and new_peer: the local workload's address).
    pub src_ip: Option<IpAddr>,
    pub src_labels: BTreeMap<String, String>,
    /// The scanned address, the new peer, or null when the finding has no one destination.
    pub dst_ip: Option<IpAddr>,
    pub dst_labels: BTreeMap<String, String>,
    /// Distinct destinations (ports, hosts, peers) or denied packets that crossed.
    pub count: u64,
    /// The detector's window in seconds, or null (new_peer).
    pub window: Option<u64>,
    /// What the detector is configured to do: alert | quarantine | rate-limit.
    pub action: String,
    /// How long the source is quarantined, in seconds; null when nothing was enforced.
    pub ttl: Option<u64>,
    /// True when the action was withheld by `[detect] dry_run`.
    pub dry_run: bool,
    /// One sentence for people.
    pub message: String,
}

impl Alert {
    /// The flow-log line (JSON, no newline).
    pub fn to_json_line(&self) -> String {
        serde_json::to_string(self).expect("alerts always serialize")
    }
}
