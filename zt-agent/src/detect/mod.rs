//! Detection: what the agent watches in the traffic it enforces, and the findings it hands
//! to the agent core, which answers them (`agent::detection`: alerts, quarantine).
//!
//! - `crossing`: the kernel's threshold crossings (port_scan, sweep, fan_out, deny_spike),
//!   read from their own ring buffer, so flow-event budgets and a full EVENTS ring never
//!   hide a scan (the counting is in zt-ebpf's `detect`).
//! - `new_peer`: edges between identities learnt from flow records, and the unseen ones
//!   after the learning period.
//! - `alerts`: the alerts raised, kept for `ztctl alerts` and fed to `--follow` readers.
//! - `settings`: the `[detect]` configuration.

pub mod alerts;
pub mod crossing;
pub mod new_peer;
pub mod settings;

use std::{collections::BTreeMap, net::IpAddr, time::Duration, time::SystemTime};

pub use alerts::AlertHistory;
pub use settings::DetectSettings;

/// One detector firing, before the agent decides what to do.
#[derive(Clone, Debug, PartialEq)]
pub struct Finding {
    /// `zt_common::detect::DETECTOR_*`.
    pub detector: u8,
    /// The offender (fan_out, new_peer: the local workload).
    pub src: IpAddr,
    /// The one destination the finding is about, if there is one.
    pub dst: Option<IpAddr>,
    /// Destination port of the attempt that fired (the swept port for sweep).
    pub port: Option<u16>,
    /// Protocol of that attempt, as flow logs name it.
    pub protocol: String,
    /// Distinct destinations or denied packets counted.
    pub count: u64,
    pub window: Option<Duration>,
    pub time: SystemTime,
    /// Labels the finding already knows (new_peer, from its flow record); otherwise the
    /// agent looks the addresses up.
    pub labels: Option<(BTreeMap<String, String>, BTreeMap<String, String>)>,
}
