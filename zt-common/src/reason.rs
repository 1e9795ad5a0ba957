//! Verdicts and the named reasons behind them.
//!
//! Every packet the datapath handles is counted under exactly one (verdict, reason) pair in
//! the STATS map, and flow events carry the same pair. The names are the flow-log contract.

/// The packet passed.
pub const VERDICT_ALLOWED: u8 = 0;
/// The packet was dropped.
pub const VERDICT_DENIED: u8 = 1;
/// Policy in audit mode would have dropped the packet; it passed.
pub const VERDICT_AUDIT: u8 = 2;
pub const NUM_VERDICTS: u32 = 3;

/// Allowed by an allow rule.
pub const POLICY: u8 = 0;
/// Matched a tracked flow (either direction).
pub const ESTABLISHED: u8 = 1;
/// An ICMP error about a tracked flow.
pub const RELATED: u8 = 2;
/// A failsafe rule (e.g. inbound SSH) that no policy can remove.
pub const FAILSAFE: u8 = 3;
/// The local identity is not isolated for this direction.
pub const NOT_ISOLATED: u8 = 4;
/// Not IP (ARP, LLDP, ...): passed without policy.
pub const NON_IP: u8 = 5;
/// The local identity is isolated and no rule allows the traffic.
pub const DEFAULT_DENY: u8 = 6;
/// A deny rule matched.
pub const DENY_RULE: u8 = 7;
/// Headers could not be parsed: truncated, bad lengths or versions.
pub const MALFORMED: u8 = 8;
/// A non-first fragment that followed its first fragment's verdict.
pub const FRAGMENT: u8 = 9;
/// A non-first fragment whose first fragment was never seen.
pub const FRAGMENT_UNKNOWN: u8 = 10;
/// The source or destination is quarantined.
pub const QUARANTINE: u8 = 11;
/// Per-source rate limit exceeded.
pub const RATE_LIMIT: u8 = 12;
/// No policy generation is loaded (the agent has not finished starting).
pub const NO_POLICY: u8 = 13;
/// IPv6 neighbour discovery and multicast listener messages: link infrastructure, like ARP,
/// passed without policy (IPv6 cannot resolve neighbours without them).
pub const NEIGHBOR_DISCOVERY: u8 = 14;
pub const NUM_REASONS: u32 = 15;

/// Flow-log name of a reason.
pub const fn reason_name(reason: u8) -> &'static str {
    match reason {
        POLICY => "policy",
        ESTABLISHED => "established",
        RELATED => "related",
        FAILSAFE => "failsafe",
        NOT_ISOLATED => "not-isolated",
        NON_IP => "non-ip",
        DEFAULT_DENY => "default-deny",
        DENY_RULE => "deny-rule",
        MALFORMED => "malformed",
        FRAGMENT => "fragment",
        FRAGMENT_UNKNOWN => "fragment-unknown",
        QUARANTINE => "quarantine",
        RATE_LIMIT => "rate-limit",
        NO_POLICY => "no-policy",
        NEIGHBOR_DISCOVERY => "neighbor-discovery",
        _ => "unknown",
    }
}

/// Flow-log name of a verdict.
pub const fn verdict_name(verdict: u8) -> &'static str {
    match verdict {
        VERDICT_ALLOWED => "allowed",
        VERDICT_DENIED => "denied",
        VERDICT_AUDIT => "audit",
        _ => "unknown",
    }
}

/// Packet direction relative to the interface the program is attached to.
pub const DIR_INGRESS: u8 = 0;
pub const DIR_EGRESS: u8 = 1;

pub const fn direction_name(dir: u8) -> &'static str {
    if dir == DIR_EGRESS { "egress" } else { "ingress" }
}
