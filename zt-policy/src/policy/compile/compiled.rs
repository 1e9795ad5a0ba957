//! The compiler's output: [`CompiledPolicy`] (ipcache prefixes, POLICY entries, identities,
//! policy names and warnings of one generation) and its [`lookup`](CompiledPolicy::lookup),
//! which answers exactly as the kernel will.

use std::collections::BTreeMap;
use std::sync::Arc;

use ipnet::IpNet;
use serde::Serialize;
use zt_common::identity::ANY;
use zt_common::policy::{PolicyKey, PolicyValue};
use zt_common::ratelimit::RateLimit;

use crate::identity::Labels;
use crate::policy::model::{Mode, Origin};
use crate::policy::ports::PortBlock;

/// One POLICY key before it is given a slot. Identity 0 (`ANY`) is the wildcard.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PolicyEntryKey {
    /// `reason::DIR_INGRESS` or `reason::DIR_EGRESS`.
    pub direction: u8,
    /// The protected identity: destination on ingress, source on egress.
    pub local: u32,
    /// The other side.
    pub peer: u32,
    /// `None`: every protocol.
    pub proto: Option<u8>,
    pub port: u16,
    /// Leading port bits that must match (0..=16).
    pub port_prefix_len: u8,
}

impl PolicyEntryKey {
    pub(super) fn new(direction: u8, local: u32, peer: u32, block: PortBlock) -> Self {
        Self { direction, local, peer, proto: block.proto, port: block.port, port_prefix_len: block.prefix_len }
    }

    /// The protocol/port part as a block (port bits beyond the prefix cleared).
    pub fn block(&self) -> PortBlock {
        match self.proto {
            None => PortBlock::ANY,
            Some(proto) => PortBlock::new(proto, self.port, self.port_prefix_len),
        }
    }

    /// The LPM trie key for generation slot `slot`: (prefix length, key data).
    pub fn to_lpm(&self, slot: u8) -> (u32, PolicyKey) {
        let block = self.block();
        let key = PolicyKey::new(slot, self.direction, self.local, self.peer, block.proto.unwrap_or(0), block.port);
        (block.lpm_prefix_len(), key)
    }
}

/// What flow logs and `ztctl explain` need to know about a compiled policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PolicyInfo {
    /// The `policy_id` in POLICY values: 1-based in name order (0 is "no policy").
    pub id: u32,
    pub name: String,
    pub mode: Mode,
    pub origin: Origin,
    /// Local identities the selector resolved to (`[0]` = every identity).
    pub selected: Vec<u32>,
}

/// The compiler's output: everything the loader writes for one generation.
#[derive(Clone, Debug)]
pub struct CompiledPolicy {
    /// Prefix -> identity for IPCACHE_V4/V6, sorted. Always holds `0.0.0.0/0` and `::/0` ->
    /// world; the agent adds this host's own addresses -> host.
    pub ipcache: Vec<(IpNet, u32)>,
    /// POLICY entries, sorted by key.
    pub entries: Vec<(PolicyEntryKey, PolicyValue)>,
    /// RATE_LIMITS of the generation: a value's `rate_limit` index `i` is `rate_limits[i - 1]`.
    pub rate_limits: Vec<RateLimit>,
    /// Indexed by `id - 1`.
    pub policies: Vec<PolicyInfo>,
    /// Labels of every identity in use, including host and world.
    pub identities: BTreeMap<u32, Arc<Labels>>,
    /// Things that are valid but probably not what the author meant.
    pub warnings: Vec<String>,
}

impl CompiledPolicy {
    /// The verdict the kernel reaches for a new flow, computed the way the kernel does: the
    /// identity pairs (local, peer), (local, any), (any, peer), (any, any) in that order,
    /// longest protocol/port prefix within each, first hit wins. `None` only for a policy
    /// without a catch-all, which `compile` never produces.
    pub fn lookup(&self, direction: u8, local: u32, peer: u32, proto: u8, port: u16) -> Option<PolicyValue> {
        [(local, peer), (local, ANY), (ANY, peer), (ANY, ANY)].into_iter().find_map(|(local, peer)| {
            // The entries are sorted by key, so one identity pair's keys are one run of them.
            let pair = |key: &PolicyEntryKey| (key.direction, key.local, key.peer);
            let start = self.entries.partition_point(|(key, _)| pair(key) < (direction, local, peer));
            let end = self.entries.partition_point(|(key, _)| pair(key) <= (direction, local, peer));
            self.entries[start..end]
                .iter()
                .filter(|(key, _)| key.block().covers(proto, port))
                .max_by_key(|(key, _)| key.block().lpm_prefix_len())
                .map(|&(_, value)| value)
        })
    }

    /// The policy a POLICY value names.
    pub fn policy(&self, id: u32) -> Option<&PolicyInfo> {
        self.policies.get(usize::try_from(id).ok()?.checked_sub(1)?)
    }
}
