//! Flow events into the EVENTS ring buffer.
//!
//! Allowed flows are reported from their conntrack entry (start, periodic update, end), so
//! established packets cost no event. Denied and audited packets are reported per packet but
//! bounded by a per-source, per-CPU token bucket (DENY_BUDGET) so a flood cannot flood the
//! log; every event that is not written — ring full or budget spent — is counted by kind in
//! EVENT_STATS. The kernel never waits for the reader.

use zt_common::{
    config::Config,
    conntrack::{CtKey, CtValue},
    detect::ms_of,
    event::{FlowEvent, KIND_DENY},
    quarantine::{BASELINE_SCALE, BUDGET_SCALE, Budget, SPIKE_WINDOW_MS},
    stats::{EVENT_LOST_BUDGET, EVENT_LOST_RINGBUF, EVENT_SUBMITTED},
};

use crate::{
    detect,
    maps::{DENY_BUDGET, EVENTS},
    parse::Packet,
    stats::count_event,
};

/// Who decided about a packet, for DENY/AUDIT events.
pub struct Decision {
    pub verdict: u8,
    pub reason: u8,
    pub direction: u8,
    pub ifindex: u32,
    pub src_identity: u32,
    pub dst_identity: u32,
    pub policy_id: u32,
    pub rule: u32,
    pub generation: u32,
}

/// Accounts one denied or audited packet to its source (per CPU): counts a denial towards
/// `deny_spike` (reporting a crossing) and takes one token from the source's event bucket;
/// false when the budget is spent.
#[inline(always)]
fn source_denied(pkt: &Packet, d: &Decision, denial: bool, cfg: &Config, now: u64) -> bool {
    let rate = cfg.deny_events_per_sec as u64;
    let burst = cfg.deny_events_burst as u64 * BUDGET_SCALE;
    let spikes = denial && cfg.deny_spike_min != 0;
    let src = &pkt.tuple.src;
    let Some(b) = DENY_BUDGET.get_ptr_mut(src) else {
        let b = Budget {
            last_ns: now,
            tokens: burst.saturating_sub(BUDGET_SCALE),
            window_ms: ms_of(now),
            denies: if denial { 1 } else { 0 },
            baseline: 0,
            reported: 0,
        };
        let _ = DENY_BUDGET.insert(src, &b, 0);
        return true;
    };
    // SAFETY: per-CPU value, written only by this CPU.
    let b = unsafe { &mut *b };
    if spikes {
        count_denial(pkt, d.src_identity, b, cfg, now);
    }
    if rate == 0 {
        return true;
    }
    // Clamp the idle time so the refill product cannot overflow.
    let mut idle = now.saturating_sub(b.last_ns);
    if idle > 100_000_000_000 {
        idle = 100_000_000_000;
    }
    let mut tokens = b.tokens + idle * rate * BUDGET_SCALE / 1_000_000_000;
    if tokens > burst {
        tokens = burst;
    }
    b.last_ns = now;
    if tokens >= BUDGET_SCALE {
        b.tokens = tokens - BUDGET_SCALE;
        true
    } else {
        b.tokens = tokens;
        false
    }
}

/// A denial served from the cache of recent denials: counted towards `deny_spike` like any
/// other (no event, no budget: the cache reports at most once a second per tuple itself).
#[inline(never)]
pub fn source_repeat_denied(pkt: &Packet, src_identity: u32, cfg: &Config, now: u64) {
    if let Some(b) = DENY_BUDGET.get_ptr_mut(&pkt.tuple.src) {
        // SAFETY: per-CPU value, written only by this CPU.
        let b = unsafe { &mut *b };
        count_denial(pkt, src_identity, b, cfg, now);
    }
}

/// `deny_spike`: this window's denies against the moving baseline of earlier windows
/// (each window weighs 1/8; idle windows decay it, halving about every five).
#[inline(always)]
fn count_denial(pkt: &Packet, src_identity: u32, b: &mut Budget, cfg: &Config, now: u64) {
    let now_ms = ms_of(now);
    let elapsed = now_ms.wrapping_sub(b.window_ms);
    if elapsed >= SPIKE_WINDOW_MS {
        let mut baseline = (b.baseline as u64 * 7 + b.denies as u64 * BASELINE_SCALE as u64) / 8;
        let idle_windows = elapsed / SPIKE_WINDOW_MS - 1;
        if idle_windows > 0 {
            baseline >>= if idle_windows / 5 > 32 { 32 } else { idle_windows / 5 };
        }
        b.baseline = if baseline > u32::MAX as u64 { u32::MAX } else { baseline as u32 };
        b.denies = 0;
        b.reported = 0;
        b.window_ms = now_ms;
    }
    b.denies = b.denies.saturating_add(1);
    if b.reported == 0
        && b.denies > cfg.deny_spike_min
        && b.denies as u64 * BASELINE_SCALE as u64 > cfg.deny_spike_factor as u64 * b.baseline as u64
        && detect::deny_spike(pkt, src_identity, b.denies, now)
    {
        b.reported = 1;
    }
}

/// Reports a denied or audited packet, subject to the source's budget; true when the budget
/// withheld it (the source is denied faster than its budget refills: a flood).
#[inline(never)]
pub fn packet_event(kind: u8, pkt: &Packet, d: &Decision, cfg: &Config, now: u64) -> bool {
    if !source_denied(pkt, d, kind == KIND_DENY, cfg, now) {
        count_event(kind, EVENT_LOST_BUDGET);
        return true;
    }
    report(kind, pkt, d, now);
    false
}

/// Writes a DENY or AUDIT event of one packet into the ring (counting it as submitted, or
/// lost when the ring is full); no budget is asked.
#[inline(always)]
pub fn report(kind: u8, pkt: &Packet, d: &Decision, now: u64) {
    let Some(mut entry) = EVENTS.reserve::<FlowEvent>(0) else {
        count_event(kind, EVENT_LOST_RINGBUF);
        return;
    };
    let e = entry.as_mut_ptr();
    // SAFETY: `e` points at a reserved, exclusively owned ring buffer record; every field
    // is written before submit.
    unsafe {
        (*e).time_ns = now;
        (*e).packets = 1;
        (*e).bytes = pkt.len as u64;
        (*e).rev_packets = 0;
        (*e).rev_bytes = 0;
        (*e).src = pkt.tuple.src;
        (*e).dst = pkt.tuple.dst;
        (*e).src_port = pkt.tuple.src_port;
        (*e).dst_port = pkt.tuple.dst_port;
        (*e).src_identity = d.src_identity;
        (*e).dst_identity = d.dst_identity;
        (*e).policy_id = d.policy_id;
        (*e).rule = d.rule;
        (*e).ifindex = d.ifindex;
        (*e).generation = d.generation;
        (*e).kind = kind;
        (*e).verdict = d.verdict;
        (*e).reason = d.reason;
        (*e).direction = d.direction;
        (*e).proto = pkt.tuple.proto;
        (*e).family = pkt.tuple.family;
        (*e).tcp_flags = pkt.flags;
        (*e)._pad = 0;
    }
    entry.submit(0);
    count_event(kind, EVENT_SUBMITTED);
}

/// Reports a tracked flow's start, update or end from its conntrack entry.
#[inline(never)]
pub fn flow_event(kind: u8, key: &CtKey, ct: &CtValue, verdict: u8, reason: u8) {
    let now = crate::clock::now();
    let Some(mut entry) = EVENTS.reserve::<FlowEvent>(0) else {
        count_event(kind, EVENT_LOST_RINGBUF);
        return;
    };
    // SAFETY: `as_mut_ptr` points at a reserved, exclusively owned ring buffer record.
    unsafe { FlowEvent::write_flow(entry.as_mut_ptr(), kind, key, ct, verdict, reason, now) };
    entry.submit(0);
    count_event(kind, EVENT_SUBMITTED);
}
