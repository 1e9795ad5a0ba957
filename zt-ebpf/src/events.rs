//! Flow events into the EVENTS ring buffer.
//!
//! Allowed flows are reported from their conntrack entry (start, periodic update, end), so
//! established packets cost no event. Denied and audited packets are reported per packet but
//! bounded by a per-source, per-CPU token bucket (DENY_BUDGET) so a flood cannot flood the
//! log; every event that is not written — ring full or budget spent — is counted by kind in
//! EVENT_STATS. The kernel never waits for the reader.

use zt_common::{
    addr::Addr,
    config::Config,
    conntrack::{CtKey, CtValue},
    event::FlowEvent,
    quarantine::{BUDGET_SCALE, Budget},
    stats::{EVENT_LOST_BUDGET, EVENT_LOST_RINGBUF, EVENT_SUBMITTED},
};

use crate::{
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

/// Takes one token from `src`'s bucket; false when the budget is spent.
#[inline(always)]
fn take_budget(src: &Addr, cfg: &Config, now: u64) -> bool {
    let rate = cfg.deny_events_per_sec as u64;
    if rate == 0 {
        return true;
    }
    let burst = cfg.deny_events_burst as u64 * BUDGET_SCALE;
    match DENY_BUDGET.get_ptr_mut(src) {
        Some(b) => {
            // SAFETY: per-CPU value, written only by this CPU.
            let b = unsafe { &mut *b };
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
        None => {
            let b = Budget { last_ns: now, tokens: burst.saturating_sub(BUDGET_SCALE) };
            let _ = DENY_BUDGET.insert(src, &b, 0);
            true
        }
    }
}

/// Reports a denied or audited packet, subject to the source's budget.
#[inline(never)]
pub fn packet_event(kind: u8, pkt: &Packet, d: &Decision, cfg: &Config, now: u64) {
    if !take_budget(&pkt.tuple.src, cfg, now) {
        count_event(kind, EVENT_LOST_BUDGET);
        return;
    }
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
    // SAFETY: helper without arguments.
    let now = unsafe { aya_ebpf::helpers::bpf_ktime_get_coarse_ns() };
    let Some(mut entry) = EVENTS.reserve::<FlowEvent>(0) else {
        count_event(kind, EVENT_LOST_RINGBUF);
        return;
    };
    // SAFETY: `as_mut_ptr` points at a reserved, exclusively owned ring buffer record.
    unsafe { FlowEvent::write_flow(entry.as_mut_ptr(), kind, key, ct, verdict, reason, now) };
    entry.submit(0);
    count_event(kind, EVENT_SUBMITTED);
}
