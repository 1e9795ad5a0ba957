//! RATE_LIMITS and RATE_BUCKETS: per-source limits on the new flows an ingress allow rule
//! admits (`rateLimit: {newFlowsPerSecond: N, burst: M}` in `zt/v1`).
//!
//! The compiler gives every rate-limited rule of a generation a small index (1-based, 0 =
//! none) and stores the index of the deciding rule in its POLICY values
//! ([`crate::policy::PolicyValue::rate_limit`]). RATE_LIMITS is an array with one block of
//! [`RATE_LIMITS_PER_SLOT`] entries per generation slot, written before the generation
//! switch, so a push changes verdicts and limits with the same CONFIG store.
//!
//! RATE_BUCKETS holds one bucket per (source address, limit index), as a GCRA ("virtual
//! scheduling") bucket: a single time, the *theoretical arrival time* of the next flow.
//! A new flow at `now` is admitted when `max(tat, now) + interval - now <= burst * interval`
//! and then moves `tat` on by one interval; a source never seen starts with a full burst.
//! Nanoseconds and integers only; the kernel does no division.

use crate::addr::Addr;

/// One rule's limit.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RateLimit {
    /// Nanoseconds between two admitted new flows at the sustained rate (1e9 / N).
    pub interval_ns: u64,
    /// New flows per second (N), for display.
    pub per_second: u32,
    /// New flows a source may open at once above the rate (M).
    pub burst: u32,
}
crate::assert_size!(RateLimit, 16);

impl RateLimit {
    /// The limit of `per_second` new flows a second with a burst of `burst`; both at least 1.
    pub const fn new(per_second: u32, burst: u32) -> Self {
        Self { interval_ns: 1_000_000_000 / per_second as u64, per_second, burst }
    }

    /// How far ahead of `now` a bucket's theoretical arrival time may run: a full burst.
    #[inline(always)]
    pub const fn window_ns(&self) -> u64 {
        self.burst as u64 * self.interval_ns
    }
}

/// A bucket's key: the source and the index of the limit it is charged against.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RateKey {
    pub src: Addr,
    pub limit: u16,
    pub _pad: [u8; 2],
}
crate::assert_size!(RateKey, 20);

/// A bucket: the theoretical arrival time (CLOCK_MONOTONIC, the programs' clock: `crate::clock`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RateBucket {
    pub tat_ns: u64,
}
crate::assert_size!(RateBucket, 8);

/// What a bucket says about one new flow at `now`: `Some(new tat)` when admitted, `None`
/// when the source is over its limit. `tat` is `None` for a source without a bucket. One
/// rule for the kernel and the tests.
#[inline(always)]
pub const fn admit(limit: &RateLimit, tat: Option<u64>, now: u64) -> Option<u64> {
    let start = match tat {
        Some(tat) if tat > now => tat,
        _ => now,
    };
    let next = start + limit.interval_ns;
    if next - now <= limit.window_ns() { Some(next) } else { None }
}

/// When a bucket whose theoretical arrival time is `tat` (over its limit) admits a new flow
/// again: the first `now` with `tat + interval - now <= burst * interval`.
#[inline(always)]
pub const fn readmits_at(limit: &RateLimit, tat: u64) -> u64 {
    (tat + limit.interval_ns).saturating_sub(limit.window_ns())
}

/// Rate-limited rules one generation may have (index 1..RATE_LIMITS_PER_SLOT).
pub const RATE_LIMITS_PER_SLOT: u32 = 1024;
/// RATE_LIMITS entries: one block per generation slot.
pub const RATE_LIMITS_ENTRIES: u32 = 2 * RATE_LIMITS_PER_SLOT;
/// Largest `newFlowsPerSecond` and `burst` a policy may ask for.
pub const RATE_MAX: u32 = 1_000_000;

/// RATE_LIMITS index of limit `index` in generation slot `slot`.
#[inline(always)]
pub const fn slot_index(slot: u8, index: u16) -> u32 {
    slot as u32 * RATE_LIMITS_PER_SLOT + index as u32
}

/// Buckets kept (LRU): 65,536 sources x limits, about 5 MiB preallocated. When a spoofed
/// flood churns it, an evicted source merely starts again with a full burst.
pub const RATE_BUCKETS_MAX_ENTRIES: u32 = 65536;

crate::user_pod!(RateLimit, RateKey, RateBucket);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_source_gets_exactly_its_burst_then_the_rate() {
        let limit = RateLimit::new(10, 3);
        let mut tat = None;
        let mut admitted = 0;
        for _ in 0..10 {
            if let Some(next) = admit(&limit, tat, 1_000) {
                tat = Some(next);
                admitted += 1;
            }
        }
        assert_eq!(admitted, 3);
        // One interval later exactly one more.
        let later = 1_000 + limit.interval_ns;
        assert!(admit(&limit, tat, later).is_some());
        let tat = admit(&limit, tat, later);
        assert!(admit(&limit, tat, later).is_none());
    }

    #[test]
    fn an_exhausted_bucket_admits_again_exactly_when_readmits_at_says() {
        let limit = RateLimit::new(10, 3);
        let mut tat = None;
        while let Some(next) = admit(&limit, tat, 5_000) {
            tat = Some(next);
        }
        let at = readmits_at(&limit, tat.unwrap());
        assert!(at > 5_000);
        assert!(admit(&limit, tat, at - 1).is_none(), "not a nanosecond earlier");
        assert!(admit(&limit, tat, at).is_some());
    }
}
