//! CONNTRACK: stateful flow tracking, an LRU hash keyed by the 5-tuple of the packet that
//! opened the flow.
//!
//! A packet matches a flow either forwards (its tuple is the key) or as a reply (its reversed
//! tuple is the key). Entries remember which hook directions admitted the flow, under which
//! generation and rule, so a policy push can re-check them. ICMP echo uses the identifier as
//! both ports, so the reply's reversed tuple equals the request's.

use crate::{addr::Addr, config::Config, proto};

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CtKey {
    pub src: Addr,
    pub dst: Addr,
    pub src_port: u16,
    pub dst_port: u16,
    pub proto: u8,
    pub family: u8,
    pub _pad: [u8; 2],
}
crate::assert_size!(CtKey, 40);

impl CtKey {
    /// The key a reply to this flow carries.
    #[inline(always)]
    pub const fn reversed(&self) -> CtKey {
        CtKey {
            src: self.dst,
            dst: self.src,
            src_port: self.dst_port,
            dst_port: self.src_port,
            proto: self.proto,
            family: self.family,
            _pad: [0; 2],
        }
    }
}

/// TCP connection states (other protocols use `OPEN`).
pub const STATE_OPEN: u8 = 0;
pub const STATE_SYN_SENT: u8 = 1;
pub const STATE_ESTABLISHED: u8 = 2;
/// One side sent FIN.
pub const STATE_FIN_WAIT: u8 = 3;
/// Both sides sent FIN, or a RST was seen: the flow has ended.
pub const STATE_CLOSED: u8 = 4;

/// The flow passed only because a policy is in audit mode.
pub const CT_AUDIT: u8 = 1 << 2;
/// The end of this flow has been reported (kernel or agent).
pub const CT_END_REPORTED: u8 = 1 << 3;
/// A reply has been seen.
pub const CT_SEEN_REPLY: u8 = 1 << 4;
/// Forward side sent FIN.
pub const CT_FIN_FWD: u8 = 1 << 5;
/// Reply side sent FIN.
pub const CT_FIN_REV: u8 = 1 << 6;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CtValue {
    /// CLOCK_MONOTONIC (the programs' clock, `crate::clock`) at the first packet.
    pub created_ns: u64,
    pub last_seen_ns: u64,
    /// Last time a flow event (start or update) was emitted.
    pub last_report_ns: u64,
    pub fwd_packets: u64,
    pub fwd_bytes: u64,
    pub rev_packets: u64,
    pub rev_bytes: u64,
    /// Generation under which the ingress hook admitted (or last re-checked) the flow;
    /// 0 = the ingress hook has not admitted it.
    pub ingress_gen: u32,
    /// The same for the egress hook.
    pub egress_gen: u32,
    pub ifindex: u32,
    pub src_identity: u32,
    pub dst_identity: u32,
    pub policy_id: u32,
    pub rule: u32,
    pub state: u8,
    pub flags: u8,
    /// Hook direction of the first packet (`reason::DIR_*`).
    pub direction: u8,
    /// Reason the flow was admitted with (policy, failsafe, not-isolated, ...).
    pub reason: u8,
}
crate::assert_size!(CtValue, 88);

pub const CONNTRACK_MAX_ENTRIES: u32 = 1 << 18;
/// HALF_OPEN: TCP connections whose SYN was admitted but whose handshake has not completed
/// (same key and value as CONNTRACK; an entry moves to CONNTRACK on the first forward
/// packet after the SYN). 65,536 entries, about 12 MiB preallocated.
pub const HALF_OPEN_MAX_ENTRIES: u32 = 1 << 16;

impl CtValue {
    /// The verdict a flow's events carry: a flow admitted only by an audit-mode policy
    /// stays "audit" for its whole life.
    #[inline(always)]
    pub const fn verdict(&self) -> u8 {
        if self.flags & CT_AUDIT != 0 { crate::reason::VERDICT_AUDIT } else { crate::reason::VERDICT_ALLOWED }
    }
}

crate::user_pod!(CtKey, CtValue);

/// How long a flow in `state` may stay silent before it has expired, in seconds. The kernel
/// applies this on lookup and the agent's sweep applies it to report ends: one rule for both.
#[inline(always)]
pub const fn timeout_secs(state: u8, proto_num: u8, cfg: &Config) -> u32 {
    match proto_num {
        proto::TCP => match state {
            STATE_SYN_SENT | STATE_FIN_WAIT => cfg.tcp_syn_timeout_s,
            STATE_CLOSED => cfg.tcp_closing_timeout_s,
            _ => cfg.tcp_established_timeout_s,
        },
        proto::UDP => cfg.udp_timeout_s,
        proto::ICMP | proto::ICMPV6 => cfg.icmp_timeout_s,
        _ => cfg.other_timeout_s,
    }
}

/// Whether a flow last seen at `last_seen_ns` has expired at `now_ns`.
#[inline(always)]
pub const fn expired(ct: &CtValue, proto_num: u8, cfg: &Config, now_ns: u64) -> bool {
    now_ns.saturating_sub(ct.last_seen_ns) > timeout_secs(ct.state, proto_num, cfg) as u64 * 1_000_000_000
}
