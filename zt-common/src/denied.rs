//! DENIED: the verdict of recently denied tuples, so that a repeated packet of the same
//! tuple (a retransmitted SYN, a scan probe, a one-tuple UDP flood, an ACK to a closed
//! port) is dropped after a hash lookup instead of a full policy evaluation. A bare SYN asks
//! before conntrack (it never belongs to a tracked flow); any other packet only after
//! conntrack missed it, so established packets never pay the lookup. A bare SYN's denial
//! is always remembered; any other packet's once its source has spent its deny-event
//! budget (it floods), so a spoofed flood of distinct tuples pays no insert per packet.
//!
//! An entry is only followed while its generation is the active one and at the hook
//! direction that made it: a push that opens the flow takes effect on the next packet. A
//! rate-limit denial is followed only until the source's bucket admits a new flow again
//! (`until_ns`), so a retransmitted SYN of a limited source costs one lookup until then.
//! The map is an LRU of its own, so a flood of spoofed tuples never evicts tracked flows
//! from CONNTRACK; it is not pinned (a cache, rebuilt by the next agent's programs).

/// A remembered denial.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeniedValue {
    /// The generation that denied the attempt.
    pub generation: u32,
    pub policy_id: u32,
    pub rule: u32,
    pub src_identity: u32,
    pub dst_identity: u32,
    /// `reason::*` of the denial.
    pub reason: u8,
    /// Hook direction that denied it (`reason::DIR_*`).
    pub direction: u8,
    pub _pad: [u8; 2],
    /// Before this time (the programs' clock, `crate::clock`) a repeated denial is counted,
    /// not reported: one deny event per tuple per second at most (the per-source budget
    /// applies on top), every suppressed one counted as lost to the budget.
    pub next_event_ns: u64,
    /// 0: followed while the generation is active. Otherwise a rate-limit denial, followed
    /// only before this time, when the source's bucket admits a new flow again.
    pub until_ns: u64,
}
crate::assert_size!(DeniedValue, 40);

pub const DENIED_MAX_ENTRIES: u32 = 16384;
/// A repeated denial of one tuple is reported at most this often.
pub const DENIED_EVENT_INTERVAL_NS: u64 = 1_000_000_000;

crate::user_pod!(DeniedValue);
