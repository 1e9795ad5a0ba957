//! EVENTS: the flow event the kernel writes to the ring buffer.
//!
//! Allowed flows produce one `START` when the conntrack entry is created, `UPDATE`s at the
//! configured interval while they last, and one `END` when they close (FIN/RST) or expire.
//! Denied and audited packets produce `DENY` / `AUDIT`, bounded per source by DENY_BUDGET.

use crate::addr::Addr;

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
    /// `bpf_ktime_get_ns()` when the event was produced.
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

/// Ring buffer size in bytes (a power of two, a multiple of the page size).
pub const EVENTS_RING_BYTES: u32 = 1 << 22;

crate::user_pod!(FlowEvent);
