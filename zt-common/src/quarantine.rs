//! QUARANTINE: addresses cut off from all traffic until an expiry time, and DENY_BUDGET:
//! per-source token buckets that bound deny events.

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct QuarantineValue {
    /// `bpf_ktime_get_ns()` after which the entry no longer applies (0 = never expires).
    pub expires_ns: u64,
}
crate::assert_size!(QuarantineValue, 8);

pub const QUARANTINE_MAX_ENTRIES: u32 = 65536;

/// Per-CPU token bucket for deny events from one source.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Budget {
    pub last_ns: u64,
    /// Tokens scaled by `BUDGET_SCALE` so refills of a fraction of a token accumulate.
    pub tokens: u64,
}
crate::assert_size!(Budget, 16);
pub const BUDGET_SCALE: u64 = 1000;
pub const DENY_BUDGET_MAX_ENTRIES: u32 = 16384;

crate::user_pod!(crate::addr::Addr, QuarantineValue, Budget);
