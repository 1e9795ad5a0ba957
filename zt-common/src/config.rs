//! CONFIG: a one-element array holding the active generation and datapath settings.
//!
//! Userspace writes the whole value; the kernel reads `generation` once per packet and uses
//! `generation & 1` as the slot for IPCACHE and POLICY lookups. Flipping the generation is
//! the single store that switches policy atomically.

/// Re-check tracked flows against the current policy when the generation changed since
/// they were admitted (a push that removes an allow stops flows it had admitted).
pub const FLAG_RECHECK_ESTABLISHED: u32 = 1 << 0;
/// The QUARANTINE map has entries; skip its lookups otherwise.
pub const FLAG_QUARANTINE_ACTIVE: u32 = 1 << 1;
/// Emit flow events for allowed new flows and their ends (denies are always reported).
pub const FLAG_EVENTS_ALLOWED: u32 = 1 << 2;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// Active policy generation; 0 means none is loaded.
    pub generation: u32,
    pub flags: u32,
    pub tcp_syn_timeout_s: u32,
    pub tcp_established_timeout_s: u32,
    pub tcp_closing_timeout_s: u32,
    pub udp_timeout_s: u32,
    pub icmp_timeout_s: u32,
    pub other_timeout_s: u32,
    /// Deny events a source may produce per second per CPU, and the burst above that.
    pub deny_events_per_sec: u32,
    pub deny_events_burst: u32,
    /// Long flows report counters at this interval (0 = only at start and end).
    pub flow_update_interval_s: u32,
    /// Detector windows in milliseconds and thresholds (see `crate::detect`); a zero
    /// window or threshold turns that kernel counter off. These were reserved zeros in
    /// earlier agents, so a CONFIG they pinned reads as "detectors off".
    pub port_scan_window_ms: u32,
    pub sweep_window_ms: u32,
    pub fan_out_window_ms: u32,
    /// More than this many distinct ports of one local address (set bits) crosses.
    pub port_scan_ports: u8,
    /// More than this many distinct local addresses on one port crosses.
    pub sweep_hosts: u8,
    /// More than this many distinct peers of one local identity crosses.
    pub fan_out_peers: u8,
    /// A source's denies in one second cross when above `deny_spike_min` and above this
    /// many times its moving baseline.
    pub deny_spike_factor: u8,
    pub deny_spike_min: u32,
}
crate::assert_size!(Config, 64);
crate::user_pod!(Config);

impl Config {
    /// Defaults used when the operator configures nothing.
    pub const DEFAULT: Config = Config {
        generation: 0,
        flags: FLAG_RECHECK_ESTABLISHED | FLAG_EVENTS_ALLOWED,
        tcp_syn_timeout_s: 60,
        tcp_established_timeout_s: 6 * 3600,
        tcp_closing_timeout_s: 10,
        udp_timeout_s: 60,
        icmp_timeout_s: 30,
        other_timeout_s: 60,
        deny_events_per_sec: 10,
        deny_events_burst: 20,
        flow_update_interval_s: 60,
        port_scan_window_ms: 0,
        sweep_window_ms: 0,
        fan_out_window_ms: 0,
        port_scan_ports: 0,
        sweep_hosts: 0,
        fan_out_peers: 0,
        deny_spike_factor: 0,
        deny_spike_min: 0,
    };

    #[inline(always)]
    pub const fn slot(&self) -> u8 {
        (self.generation & 1) as u8
    }
}
