//! DETECT: what the kernel counts for the agent's detectors, and the crossings it reports.
//!
//! Detection must see every connection attempt, also when flow events are budgeted per
//! source or lost to a full EVENTS ring — a scan is exactly the traffic that exhausts both.
//! So the kernel counts, per source, the distinct destinations of its new-flow attempts
//! (allowed and denied alike), and reports only the moment a count crosses its threshold,
//! into a ring of its own (DETECT_EVENTS) that flow events never fill. An attempt that
//! cannot be reported (that ring full) is reported again on the source's next attempt, so
//! a crossing is never lost, only delayed.
//!
//! Distinct destinations are kept as hashed bit sets (a set bit per hashed port or
//! address): a source costs a fixed 64 bytes of key and value however many destinations it
//! tries. The number of set bits never exceeds the number of distinct destinations, so a
//! threshold of N fires only after more than N distinct destinations: no false alarm from
//! the estimate, at the price of needing a few more destinations than N once hashes collide
//! (about 17 for N = 15 with 128 bits). The agent limits thresholds to where that stays
//! small ([`MAX_SET_THRESHOLD`]).

use crate::addr::Addr;

/// Detector numbers, in alerts and in the QUARANTINE map's `origin` (0 is manual).
pub const DETECTOR_PORT_SCAN: u8 = 1;
pub const DETECTOR_SWEEP: u8 = 2;
pub const DETECTOR_FAN_OUT: u8 = 3;
pub const DETECTOR_NEW_PEER: u8 = 4;
pub const DETECTOR_DENY_SPIKE: u8 = 5;

/// Config and alert name of a detector.
pub const fn detector_name(detector: u8) -> &'static str {
    match detector {
        DETECTOR_PORT_SCAN => "port_scan",
        DETECTOR_SWEEP => "sweep",
        DETECTOR_FAN_OUT => "fan_out",
        DETECTOR_NEW_PEER => "new_peer",
        DETECTOR_DENY_SPIKE => "deny_spike",
        _ => "unknown",
    }
}

/// Bits in the per-source port and host sets.
pub const SCAN_SET_BITS: u32 = 128;
/// Bits in the per-identity peer set.
pub const FAN_OUT_SET_BITS: u32 = 256;
/// The largest `ports`/`hosts` threshold the 128-bit sets count well (a quarter of a set
/// is where collisions start to cost noticeably more destinations than the threshold).
pub const MAX_SET_THRESHOLD: u32 = 64;
/// The largest fan-out `peers` threshold (half its 256-bit set: about 180 distinct peers
/// then cross a threshold of 128; the default of 50 needs about 57).
pub const MAX_FAN_OUT_THRESHOLD: u32 = 128;

/// Per-source tracker for `port_scan` and `sweep` (map SCAN, keyed by the source address).
///
/// `port_scan` counts the distinct destination ports the source tries on one local address
/// (`target`, the first it tried in the window; retargeted while at most one port is known,
/// so a stray first packet does not blind it); `sweep` counts the distinct local addresses
/// it tries on one port (`sweep_port`, retargeted the same way). Windows are in
/// milliseconds of the kernel's monotonic clock, truncated to 32 bits (wrapping compare).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScanValue {
    pub ports_since_ms: u32,
    pub hosts_since_ms: u32,
    /// Hash of the local address whose ports are counted.
    pub target: u32,
    pub sweep_port: u16,
    /// `1 << detector` for each crossing already reported in the current window.
    pub reported: u8,
    pub _pad: u8,
    pub ports: [u64; 2],
    pub hosts: [u64; 2],
}
crate::assert_size!(ScanValue, 48);

/// Key and value bytes per tracked source: the kernel state a scanner costs.
pub const SCAN_ENTRY_BYTES: u32 = (core::mem::size_of::<Addr>() + core::mem::size_of::<ScanValue>()) as u32;
const _: () = assert!(SCAN_ENTRY_BYTES == 64);
/// Sources tracked at once: 100,000 distinct sources fit with room to spare, and the kernel's
/// 128 bytes per slot (key, value and its hash-table element) stay within 16 MiB.
pub const SCAN_MAX_ENTRIES: u32 = 120 * 1024;

/// Per-local-identity tracker for `fan_out` (map FAN_OUT, keyed by the identity): the
/// distinct peer addresses it opens flows to.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FanOutValue {
    pub since_ms: u32,
    pub reported: u8,
    pub _pad: [u8; 3],
    pub peers: [u64; 4],
}
crate::assert_size!(FanOutValue, 40);
pub const FAN_OUT_MAX_ENTRIES: u32 = 4096;

/// A threshold crossing, written to the DETECT_EVENTS ring.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DetectEvent {
    /// The programs' clock (`crate::clock`) at the attempt that crossed.
    pub time_ns: u64,
    /// The offending source (for `fan_out`: the local source address of the attempt).
    pub src: Addr,
    /// The attempt's destination (for `port_scan`: the scanned local address).
    pub dst: Addr,
    /// Identity of the source in the active generation.
    pub src_identity: u32,
    /// Set bits when it crossed (distinct destinations seen, a lower bound).
    pub count: u32,
    /// The detector's window, in milliseconds.
    pub window_ms: u32,
    /// The attempt's destination port (for `sweep`: the swept port).
    pub port: u16,
    pub detector: u8,
    pub family: u8,
    pub proto: u8,
    pub _pad: [u8; 7],
}
crate::assert_size!(DetectEvent, 64);

/// Ring buffer size for crossings (a power of two, a multiple of the page size): a
/// thousand crossings, reported once per offender and window.
pub const DETECT_RING_BYTES: u32 = 1 << 16;

/// A prefix of the `[detect] never` list (map EXEMPT, an LPM trie): sources that are never
/// rate-limited (the agent never quarantines them either). The family byte comes first so
/// one trie holds both families; IPv4 addresses use the first four bytes of `addr`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ExemptKey {
    pub family: u8,
    pub addr: [u8; 16],
}
crate::assert_size!(ExemptKey, 17);
/// Bits of the key before the address.
pub const EXEMPT_FAMILY_BITS: u32 = 8;
pub const EXEMPT_MAX_ENTRIES: u32 = 1024;

/// The milliseconds clock the windows use.
#[inline(always)]
pub const fn ms_of(ns: u64) -> u32 {
    (ns / 1_000_000) as u32
}

/// Hash of a 16-bit value into `bits` bits (Fibonacci hashing).
#[inline(always)]
pub const fn hash_port(port: u16, bits: u32) -> u32 {
    ((port as u32 ^ 0x5bd1).wrapping_mul(0x9E37_79B1)) >> (32 - bits)
}

/// Hash of an address into `bits` bits.
#[inline(always)]
pub fn hash_addr(a: &Addr, bits: u32) -> u32 {
    fold(a).wrapping_mul(0x9E37_79B1) >> (32 - bits)
}

/// The address folded into 32 bits (for `ScanValue::target`).
#[inline(always)]
pub fn fold(a: &Addr) -> u32 {
    let b = &a.bytes;
    let w = |i: usize| u32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    // Rotations keep an IPv4 address (last 12 bytes zero) and its words apart.
    w(0) ^ w(4).rotate_left(7) ^ w(8).rotate_left(14) ^ w(12).rotate_left(21)
}

crate::user_pod!(ScanValue, FanOutValue, DetectEvent, ExemptKey);
