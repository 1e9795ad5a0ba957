//! QUARANTINE: addresses cut off from all traffic until an expiry time, and DENY_BUDGET:
//! per-source token buckets that bound deny events.

/// A quarantined address (layout 2 of the QUARANTINE map, pinned as `ZT_QUARANTINE2`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct QuarantineValue {
    /// CLOCK_MONOTONIC (the programs' clock, `crate::clock`) after which the entry no
    /// longer applies (0 = never expires). The kernel judges expiry against its own clock,
    /// so it holds with no agent running.
    pub expires_ns: u64,
    /// CLOCK_MONOTONIC when the address was quarantined (0 = not known: carried over
    /// from layout 1, which did not record it).
    pub added_ns: u64,
    /// Who quarantined it: [`ORIGIN_MANUAL`] or a detector.
    pub origin: u8,
    pub _pad: [u8; 3],
    /// Written by the kernel programs: the report epoch ([`report_epoch`]) of the last drop
    /// this entry caused that was reported. Drops are counted always and reported at most
    /// once an epoch per entry, so a quarantined flood costs one lookup per packet and no
    /// deny-event budget. (Zero in entries of agents that wrote these bytes as padding:
    /// their next drop is reported.)
    pub reported_epoch: u32,
}
crate::assert_size!(QuarantineValue, 24);

/// Quarantined by an operator (`ztctl quarantine add`).
pub const ORIGIN_MANUAL: u8 = 0;

/// A report epoch is 2^30 ns of the programs' clock (about 1.07 s): a shift, where a second
/// would take a division per packet.
pub const REPORT_EPOCH_SHIFT: u32 = 30;

/// The report epoch of `now_ns` (wraps after about 146 years).
#[inline(always)]
pub const fn report_epoch(now_ns: u64) -> u32 {
    (now_ns >> REPORT_EPOCH_SHIFT) as u32
}

impl QuarantineValue {
    pub const fn new(expires_ns: u64, added_ns: u64, origin: u8) -> Self {
        Self { expires_ns, added_ns, origin, _pad: [0; 3], reported_epoch: 0 }
    }
}

/// Layout 1 of the QUARANTINE map (pinned as `ZT_QUARANTINE` by the first agents): only
/// the expiry. Read only to migrate its entries into layout 2.
pub mod v1 {
    /// The map's pin name in layout 1.
    pub const PIN_NAME: &str = "ZT_QUARANTINE";
    pub const KEY_SIZE: u32 = 16;
    pub const VALUE_SIZE: u32 = 8;
}

pub const QUARANTINE_MAX_ENTRIES: u32 = 65536;

/// Per-CPU state of one source's denials (layout 2 of DENY_BUDGET, pinned as
/// `ZT_DENY_BUDGET2`; layout 1 had only the token bucket): the token bucket for its deny
/// events, and its deny rate for the `deny_spike` detector — denies in the current
/// one-second window against a moving baseline, so a spike is seen however many of its
/// events the bucket withholds.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Budget {
    pub last_ns: u64,
    /// Tokens scaled by `BUDGET_SCALE` so refills of a fraction of a token accumulate.
    pub tokens: u64,
    /// Start of the current rate window (`detect::ms_of`).
    pub window_ms: u32,
    /// Denies in the current window.
    pub denies: u32,
    /// Moving average of denies per window, scaled by `BASELINE_SCALE` (each window
    /// weighs 1/8).
    pub baseline: u32,
    /// Nonzero once this window's spike was reported.
    pub reported: u32,
}
crate::assert_size!(Budget, 32);
pub const BASELINE_SCALE: u32 = 16;
/// Length of a deny-rate window.
pub const SPIKE_WINDOW_MS: u32 = 1000;
pub const BUDGET_SCALE: u64 = 1000;
pub const DENY_BUDGET_MAX_ENTRIES: u32 = 16384;

crate::user_pod!(crate::addr::Addr, QuarantineValue, Budget);
