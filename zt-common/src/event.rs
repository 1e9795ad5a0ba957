//! EVENTS: the flow event the kernel writes to the ring buffer.
//!
//! Allowed flows produce one `START` when the conntrack entry is created, `UPDATE`s at the
//! configured interval while they last, and one `END` when they close (FIN/RST) or expire.
//! Denied and audited packets produce `DENY` / `AUDIT`, bounded per source by DENY_BUDGET.

use crate::{
    addr::Addr,
    conntrack::{CtKey, CtValue},
};

pub const KIND_START: u8 = 0;
pub const KIND_UPDATE: u8 = 1;
pub const KIND_END: u8 = 2;
pub const KIND_DENY: u8 = 3;
pub const KIND_AUDIT: u8 = 4;
pub const NUM_KINDS: u32 = 5;

pub const fn kind_name(kind: u8) -> &'static str {
    match kind {
        KIND_START => "start",
        KIND_UPDATE => "update",
        KIND_END => "end",
        KIND_DENY => "deny",
        KIND_AUDIT => "audit",
        _ => "unknown",
    }
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowEvent {
    /// CLOCK_MONOTONIC (the programs' clock, `crate::clock`) when the event was produced.
    pub time_ns: u64,
    /// Forward (originating direction) counters; for DENY/AUDIT, the packet itself.
    pub packets: u64,
    pub bytes: u64,
    /// Reply direction counters.
    pub rev_packets: u64,
    pub rev_bytes: u64,
    pub src: Addr,
    pub dst: Addr,
    pub src_port: u16,
    pub dst_port: u16,
    pub src_identity: u32,
    pub dst_identity: u32,
    pub policy_id: u32,
    pub rule: u32,
    pub ifindex: u32,
    /// Policy generation in force when the verdict was made.
    pub generation: u32,
    pub kind: u8,
    pub verdict: u8,
    pub reason: u8,
    pub direction: u8,
    pub proto: u8,
    pub family: u8,
    /// TCP flags of the packet (DENY/AUDIT) or ICMP type.
    pub tcp_flags: u8,
    pub _pad: u8,
}
crate::assert_size!(FlowEvent, 112);

impl FlowEvent {
    /// Writes a tracked flow's start, update or end, built from its conntrack entry, into
    /// `dst`: the one construction shared by the kernel (starts, updates, FIN/RST ends,
    /// revocations) and the agent's sweep (ends by expiry). `tcp_flags` carries the TCP
    /// state. Field by field, so the kernel writes straight into a reserved ring-buffer
    /// record: a whole event built on the 512-byte BPF stack would not fit beside the
    /// decision core's frames.
    ///
    /// # Safety
    /// `dst` must be valid for writes of a `FlowEvent` (it may be uninitialized).
    #[inline(always)]
    pub unsafe fn write_flow(
        dst: *mut FlowEvent,
        kind: u8,
        key: &CtKey,
        ct: &CtValue,
        verdict: u8,
        reason: u8,
        time_ns: u64,
    ) {
        let generation = if ct.ingress_gen > ct.egress_gen { ct.ingress_gen } else { ct.egress_gen };
        // SAFETY: the caller guarantees `dst` is writable; each field is written once.
        unsafe {
            (&raw mut (*dst).time_ns).write(time_ns);
            (&raw mut (*dst).packets).write(ct.fwd_packets);
            (&raw mut (*dst).bytes).write(ct.fwd_bytes);
            (&raw mut (*dst).rev_packets).write(ct.rev_packets);
            (&raw mut (*dst).rev_bytes).write(ct.rev_bytes);
            (&raw mut (*dst).src).write(key.src);
            (&raw mut (*dst).dst).write(key.dst);
            (&raw mut (*dst).src_port).write(key.src_port);
            (&raw mut (*dst).dst_port).write(key.dst_port);
            (&raw mut (*dst).src_identity).write(ct.src_identity);
            (&raw mut (*dst).dst_identity).write(ct.dst_identity);
            (&raw mut (*dst).policy_id).write(ct.policy_id);
            (&raw mut (*dst).rule).write(ct.rule);
            (&raw mut (*dst).ifindex).write(ct.ifindex);
            (&raw mut (*dst).generation).write(generation);
            (&raw mut (*dst).kind).write(kind);
            (&raw mut (*dst).verdict).write(verdict);
            (&raw mut (*dst).reason).write(reason);
            (&raw mut (*dst).direction).write(ct.direction);
            (&raw mut (*dst).proto).write(key.proto);
            (&raw mut (*dst).family).write(key.family);
            (&raw mut (*dst).tcp_flags).write(ct.state);
            (&raw mut (*dst)._pad).write(0);
        }
    }

    /// [`FlowEvent::write_flow`] into a new value.
    pub fn of_flow(kind: u8, key: &CtKey, ct: &CtValue, verdict: u8, reason: u8, time_ns: u64) -> FlowEvent {
        let mut event = core::mem::MaybeUninit::<FlowEvent>::uninit();
        // SAFETY: `write_flow` initializes every field of the (padding-free) layout.
        unsafe {
            FlowEvent::write_flow(event.as_mut_ptr(), kind, key, ct, verdict, reason, time_ns);
            event.assume_init()
        }
    }
}

/// Ring buffer size in bytes (a power of two, a multiple of the page size).
pub const EVENTS_RING_BYTES: u32 = 1 << 22;

crate::user_pod!(FlowEvent);
