//! Every byte layout shared by the zt kernel programs (zt-ebpf) and userspace (zt-agent).
//!
//! This crate is the single source of truth for map keys and values, the flow event, drop
//! and allow reasons, reserved identities and configuration flags. Each layout is `#[repr(C)]`
//! with an explicit size assertion, so a change on one side that the other side does not
//! follow fails to compile instead of corrupting a map.
//!
//! With the `user` feature every layout also implements `aya::Pod`.
#![no_std]

pub mod addr;
pub mod clock;
pub mod config;
pub mod conntrack;
pub mod denied;
pub mod detect;
pub mod event;
pub mod failsafe;
pub mod fragment;
pub mod identity;
pub mod ipcache;
pub mod policy;
pub mod proto;
pub mod quarantine;
pub mod ratelimit;
pub mod reason;
pub mod stats;

/// Asserts at compile time that a shared layout has the size both sides expect.
#[macro_export]
macro_rules! assert_size {
    ($ty:ty, $size:expr) => {
        const _: () = assert!(core::mem::size_of::<$ty>() == $size);
    };
}

/// Implements `aya::Pod` for shared layouts when built for userspace.
#[macro_export]
macro_rules! user_pod {
    ($($ty:ty),* $(,)?) => {
        $(
            #[cfg(feature = "user")]
            // SAFETY: the type is `#[repr(C)]`, `Copy`, has no padding holes that carry
            // meaning, and every bit pattern is a valid value.
            unsafe impl aya::Pod for $ty {}
        )*
    };
}

/// Names of the maps the kernel programs declare; userspace opens them by these names and
/// pins them under the bpffs directory with the same names.
///
/// A pinned map outlives the agent that made it, so a newer agent may find maps of an
/// older (or newer) layout. A map whose key or value layout changes therefore changes its
/// name (`ZT_QUARANTINE` -> `ZT_QUARANTINE2`): an agent adopts only pins whose name it
/// defines and whose key and value sizes match its own definition, and sets every other
/// `ZT_*` pin aside to migrate what it knows how to read (see zt-agent's
/// `datapath::layout`) — it never reads a map through the wrong layout.
pub mod map_names {
    pub const CONFIG: &str = "ZT_CONFIG";
    pub const IPCACHE_V4: &str = "ZT_IPCACHE_V4";
    pub const IPCACHE_V6: &str = "ZT_IPCACHE_V6";
    pub const POLICY: &str = "ZT_POLICY";
    pub const CONNTRACK: &str = "ZT_CONNTRACK";
    pub const FRAGMENTS: &str = "ZT_FRAGMENTS";
    /// Layout 2 (layout 1 was `ZT_QUARANTINE`: [`crate::quarantine::v1`]).
    pub const QUARANTINE: &str = "ZT_QUARANTINE2";
    pub const STATS: &str = "ZT_STATS";
    pub const EVENT_STATS: &str = "ZT_EVENT_STATS";
    pub const EVENTS: &str = "ZT_EVENTS";
    /// Layout 2 (layout 1, `ZT_DENY_BUDGET`, had no deny-rate window; it is not migrated:
    /// budgets refill within seconds).
    pub const DENY_BUDGET: &str = "ZT_DENY_BUDGET2";
    /// Per-source scan and sweep counters (see `crate::detect`).
    pub const SCAN: &str = "ZT_SCAN";
    /// Per-local-identity fan-out counters.
    pub const FAN_OUT: &str = "ZT_FAN_OUT";
    /// Threshold crossings for the agent's detectors.
    pub const DETECT_EVENTS: &str = "ZT_DETECT_EVENTS";
    /// Sources never rate-limited (`[detect] never`).
    pub const EXEMPT: &str = "ZT_EXEMPT";
    /// The failsafe rules' protocols and ports (a quarantine's pre-check).
    pub const FAILSAFE: &str = "ZT_FAILSAFE";
    /// Rate limits of the ingress rules, one block per generation slot.
    pub const RATE_LIMITS: &str = "ZT_RATE_LIMITS";
    /// Per-source token buckets of the rate limits.
    pub const RATE_BUCKETS: &str = "ZT_RATE_BUCKETS";
    /// TCP connections between an admitted SYN and the handshake's final ACK.
    pub const HALF_OPEN: &str = "ZT_HALF_OPEN";
    /// Recently denied connection attempts; a cache, not pinned.
    pub const DENIED: &str = "ZT_DENIED";
    /// The kernel programs' clock calibration (see `crate::clock`); not pinned.
    pub const CLOCK: &str = "ZT_CLOCK";
    /// The benchmarks' reference flow table; not pinned.
    pub const REFERENCE_FLOWS: &str = "ZT_REF_FLOWS";
    /// Every map, for pin management.
    pub const ALL: &[&str] = &[
        CONFIG,
        IPCACHE_V4,
        IPCACHE_V6,
        POLICY,
        CONNTRACK,
        FRAGMENTS,
        QUARANTINE,
        STATS,
        EVENT_STATS,
        EVENTS,
        DENY_BUDGET,
        SCAN,
        FAN_OUT,
        DETECT_EVENTS,
        EXEMPT,
        FAILSAFE,
        RATE_LIMITS,
        RATE_BUCKETS,
        HALF_OPEN,
    ];
    /// Whether a pin name is zt's: every zt map, of any layout, is named `ZT_*`. Only these
    /// are set aside, migrated or removed, never another program's pins.
    pub fn is_zt_map(name: &str) -> bool {
        name.starts_with("ZT_")
    }
}

/// Names of the kernel programs (the ELF section symbols).
pub mod program_names {
    pub const XDP_INGRESS: &str = "zt_xdp_ingress";
    pub const TC_INGRESS: &str = "zt_tc_ingress";
    pub const TC_EGRESS: &str = "zt_tc_egress";
    /// Empty XDP program returning XDP_PASS: the benchmark baseline, never attached.
    pub const XDP_BASELINE: &str = "zt_xdp_baseline";
    /// Parse + one 5-tuple hash lookup: the benchmarks' physical-limit reference.
    pub const XDP_REFERENCE: &str = "zt_xdp_reference";
    /// Stores jiffies and the coarse clock into CLOCK: run (never attached) by the agent to
    /// calibrate the programs' clock (see `crate::clock`).
    pub const CLOCK_SAMPLE: &str = "zt_clock_sample";
}
