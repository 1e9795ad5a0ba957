//! CONNTRACK: stateful flow tracking, an LRU hash keyed by the 5-tuple of a flow in its
//! canonical orientation ([`CtKey::canonical`]), so one lookup finds a flow from a packet of
//! either direction.
//!
//! The entry's `CT_REVERSED` flag says whether the packet that opened the flow carried the
//! key or its reverse ([`CtValue::opening_key`]); a packet is a reply when its orientation
//! is the other one. Entries remember which hook directions admitted the flow, under which
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

    /// Whether this tuple is the reverse of the key its flow is stored under. The canonical
    /// orientation is the one whose source port is the higher — a client's ephemeral port
    /// towards a service, so the packets an ingress filter sees most need no reversing — or,
    /// with equal ports (ICMP echo, 53 to 53), whose source address precedes
    /// ([`Addr::precedes`]); a tuple whose two ends are equal is its own reverse and is
    /// canonical.
    #[inline(always)]
    pub const fn is_reverse(&self) -> bool {
        if self.src_port != self.dst_port { self.src_port < self.dst_port } else { self.dst.precedes(&self.src) }
    }

    /// The key a flow is stored under, whichever direction this tuple goes, and whether
    /// the tuple is the reverse of it ([`CtKey::is_reverse`]).
    #[inline(always)]
    pub const fn canonical(&self) -> (CtKey, bool) {
        if self.is_reverse() { (self.reversed(), true) } else { (*self, false) }
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
/// The packet that opened the flow carried the reverse of the key the entry is stored
/// under (see [`CtKey::canonical`]). Entries written before keys were canonical never have
/// it, and their key is the opening packet's tuple, so [`CtValue::opening_key`] reads them
/// right too.
pub const CT_REVERSED: u8 = 1 << 7;

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

    /// The tuple of the packet that opened the flow stored under `stored`: source and
    /// destination as the flow's events report them.
    #[inline(always)]
    pub const fn opening_key(&self, stored: &CtKey) -> CtKey {
        if self.flags & CT_REVERSED != 0 { stored.reversed() } else { *stored }
    }

    /// Whether a packet whose tuple is `reverse` (from [`CtKey::canonical`]) of the stored
    /// key goes the other way than the packet that opened the flow.
    #[inline(always)]
    pub const fn is_reply(&self, reverse: bool) -> bool {
        reverse != (self.flags & CT_REVERSED != 0)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::FAMILY_V4;

    fn key(src: [u8; 4], dst: [u8; 4], src_port: u16, dst_port: u16) -> CtKey {
        CtKey {
            src: Addr::from_v4(src),
            dst: Addr::from_v4(dst),
            src_port,
            dst_port,
            proto: proto::UDP,
            family: FAMILY_V4,
            _pad: [0; 2],
        }
    }

    #[test]
    fn both_orientations_of_a_flow_share_one_canonical_key_and_exactly_one_is_reversed() {
        let cases = [
            key([198, 18, 0, 1], [198, 18, 0, 2], 40000, 80),
            key([198, 18, 0, 1], [198, 18, 0, 2], 80, 40000),
            // Equal ports: the addresses decide, in every word position.
            key([198, 18, 0, 1], [198, 18, 0, 2], 53, 53),
            key([198, 19, 0, 1], [198, 18, 0, 1], 7, 7),
            CtKey {
                src: Addr::from_words([1, 2, 3, 4]),
                dst: Addr::from_words([1, 2, 3, 5]),
                ..key([0; 4], [0; 4], 9, 9)
            },
            CtKey {
                src: Addr::from_words([1, 2, 4, 0]),
                dst: Addr::from_words([1, 2, 3, 9]),
                ..key([0; 4], [0; 4], 9, 9)
            },
            CtKey {
                src: Addr::from_words([1, 3, 0, 0]),
                dst: Addr::from_words([1, 2, 9, 9]),
                ..key([0; 4], [0; 4], 9, 9)
            },
        ];
        for k in cases {
            let (forward, fwd_reversed) = k.canonical();
            let (backward, back_reversed) = k.reversed().canonical();
            assert_eq!(forward, backward, "{k:?}");
            assert_ne!(fwd_reversed, back_reversed, "{k:?}");
            assert_eq!(if fwd_reversed { k.reversed() } else { k }, forward);
        }
        // A tuple whose ends are equal is its own reverse.
        let same = key([198, 18, 0, 1], [198, 18, 0, 1], 5, 5);
        assert_eq!(same.canonical(), (same, false));
    }

    #[test]
    fn an_entry_gives_back_the_opening_tuple_and_tells_replies_from_forward_packets() {
        let opening = key([198, 18, 0, 9], [198, 18, 0, 2], 40000, 80);
        let (stored, reverse) = opening.canonical();
        assert!(!reverse, "the higher source port is the canonical orientation");
        let ct = CtValue { flags: if reverse { CT_REVERSED } else { 0 }, ..CtValue::default() };
        assert_eq!(ct.opening_key(&stored), opening);
        assert!(!ct.is_reply(opening.canonical().1));
        assert!(ct.is_reply(opening.reversed().canonical().1));
        // An entry written before keys were canonical: stored as its opening tuple.
        let old = CtValue::default();
        assert_eq!(old.opening_key(&opening), opening);
    }
}
