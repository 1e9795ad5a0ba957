//! Per-CPU packet and byte counters by (verdict, reason), and event outcome counters.
//! Per-CPU slots need no atomics: each CPU only ever writes its own copy.

use zt_common::stats::{event_stats_index, stats_index};

use crate::maps::{EVENT_STATS, STATS};

#[inline(always)]
pub fn count(verdict: u8, reason: u8, bytes: u32) {
    if let Some(c) = STATS.get_ptr_mut(stats_index(verdict, reason)) {
        // SAFETY: per-CPU slot, only this CPU writes it while this program runs.
        unsafe {
            (*c).packets += 1;
            (*c).bytes += bytes as u64;
        }
    }
}

#[inline(always)]
pub fn count_event(kind: u8, outcome: u32) {
    if let Some(c) = EVENT_STATS.get_ptr_mut(event_stats_index(kind, outcome)) {
        // SAFETY: as above.
        unsafe { *c += 1 };
    }
}
