//! Per-CPU counters: packets and bytes by (verdict, reason), and flow events by outcome.

use crate::reason::{NUM_REASONS, NUM_VERDICTS};

/// One STATS slot (per CPU; userspace sums the CPUs).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}
crate::assert_size!(Counter, 16);
crate::user_pod!(Counter);

/// Number of STATS slots.
pub const STATS_SLOTS: u32 = NUM_VERDICTS * NUM_REASONS;

/// Index of a (verdict, reason) pair in STATS.
#[inline(always)]
pub const fn stats_index(verdict: u8, reason: u8) -> u32 {
    verdict as u32 * NUM_REASONS + reason as u32
}

/// What happened to a flow event the kernel wanted to emit.
pub const EVENT_SUBMITTED: u32 = 0;
/// The ring buffer was full: the event is lost and counted here.
pub const EVENT_LOST_RINGBUF: u32 = 1;
/// The per-source deny budget was exhausted: the event was not emitted (the packet is still
/// counted in STATS).
pub const EVENT_LOST_BUDGET: u32 = 2;
pub const EVENT_OUTCOMES: u32 = 3;

/// Index into EVENT_STATS for an event kind and outcome.
#[inline(always)]
pub const fn event_stats_index(kind: u8, outcome: u32) -> u32 {
    kind as u32 * EVENT_OUTCOMES + outcome
}
/// Number of EVENT_STATS slots.
pub const EVENT_STATS_SLOTS: u32 = crate::event::NUM_KINDS * EVENT_OUTCOMES;
