//! POLICY: the compiled policy, an LPM trie keyed by (slot, direction, local identity, peer
//! identity, protocol, port).
//!
//! The kernel does at most four lookups per new flow, most specific first:
//! (local, peer), (local, any), (any, peer), (any, any); within each, the longest
//! protocol/port prefix wins, so an exact port beats a range, a range beats "all ports of the
//! protocol", and that beats "all protocols". Port ranges become a few prefix blocks.
//!
//! The first hit decides. The compiler makes that correct: it closes the rule set under
//! intersection and stores in every key the *merged* verdict of every rule that covers it
//! (deny over allow, failsafe over deny), so the most specific key always carries the full
//! answer. A miss means no generation is loaded and drops with reason `no-policy`; a loaded
//! generation always has a catch-all entry.

/// LPM key data; integers are big-endian so that prefixes compare in field order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PolicyKey {
    pub slot: u8,
    pub direction: u8,
    pub local: [u8; 4],
    pub peer: [u8; 4],
    pub proto: u8,
    pub port: [u8; 2],
}
crate::assert_size!(PolicyKey, 13);

/// Prefix length covering slot, direction, local and peer: "any protocol".
pub const PREFIX_ANY_PROTO: u32 = 80;
/// Prefix length that also covers the protocol: "all ports of this protocol".
pub const PREFIX_PROTO: u32 = 88;
/// Full prefix: one exact port.
pub const PREFIX_PORT: u32 = 104;

impl PolicyKey {
    #[inline(always)]
    pub const fn new(slot: u8, direction: u8, local: u32, peer: u32, proto: u8, port: u16) -> Self {
        Self { slot, direction, local: local.to_be_bytes(), peer: peer.to_be_bytes(), proto, port: port.to_be_bytes() }
    }
}

/// Rule index meaning "no rule" (default-deny, not-isolated, failsafe).
pub const RULE_NONE: u32 = u32::MAX;
/// Policy id meaning "no policy".
pub const POLICY_NONE: u32 = 0;

/// The merged verdict stored for a key.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PolicyValue {
    /// `reason::VERDICT_*`.
    pub verdict: u8,
    /// `reason::*` explaining the verdict (for audit: what enforcement would have said).
    pub reason: u8,
    /// RATE_LIMITS index of the deciding ingress allow rule's rate limit (0 = none); was
    /// padding before rate limits, so pinned values of older agents read as "no limit".
    pub rate_limit: u16,
    /// Agent-assigned id of the deciding policy (`POLICY_NONE` if none).
    pub policy_id: u32,
    /// Index of the deciding rule within that policy's direction (`RULE_NONE` if none).
    pub rule: u32,
}
crate::assert_size!(PolicyValue, 12);

impl PolicyValue {
    #[inline(always)]
    pub const fn new(verdict: u8, reason: u8, policy_id: u32, rule: u32) -> Self {
        Self { verdict, reason, rate_limit: 0, policy_id, rule }
    }
}

impl PolicyValue {
    /// The same verdict charged against rate limit `index`.
    #[inline(always)]
    pub const fn with_rate_limit(self, index: u16) -> Self {
        Self { rate_limit: index, ..self }
    }
}

pub const POLICY_MAX_ENTRIES: u32 = 1 << 20;

crate::user_pod!(PolicyKey, PolicyValue);
