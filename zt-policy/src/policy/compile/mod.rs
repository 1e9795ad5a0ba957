//! Compile: a validated [`PolicySet`] -> ipcache prefixes + POLICY map entries.
//!
//! Second stage of a push, after `parse`. The compiler is pure: it returns a
//! [`CompiledPolicy`] (or an error) and writes nothing; the datapath loader installs the
//! result as the next generation. It runs in four steps:
//!
//! 1. **Identities** ([`universe`]). Every endpoint label set, and every CIDR prefix a rule
//!    names, gets a number from the [`IdentityAllocator`]; the ipcache maps each prefix to its
//!    number, and the default routes to `world`.
//! 2. **Resolution** ([`resolve`]). Selectors, entities and CIDR peers become sets of
//!    identities (ANY for "everything"), port items become port matches (`PortMatch`,
//!    `ResolvedRule`).
//! 3. **Atoms** ([`verdict`]). Each rule x local x peer x port block is an *atom*: a key
//!    region and what it contributes (an allow, a deny, isolation, failsafe). Isolated locals
//!    get a catch-all atom, and `(any, any, any protocol)` is always present so every lookup
//!    hits.
//! 4. **Closure and merge** ([`closure`], verdicts merged by [`verdict`]). The kernel stops
//!    at the first key it finds, most specific first (`zt_common::policy`). That first key
//!    must carry the verdict of *every* rule that covers the packet, so the key set is closed
//!    under intersection and every key stores the merged verdict of all atoms that cover it.
//!    Why that suffices: let K be the key the kernel hits for packet x and A any atom covering
//!    x. A ∩ K is in the closure and covers x; it is at least as specific as K in identities
//!    (so the kernel tries its identity pair no later than K's) and, with the same pair, at
//!    least as long a prefix. Since K was the first hit, A ∩ K = K, i.e. A covers K, so K's
//!    merged verdict includes A.
//!
//! Keys whose verdict equals that of their LPM parent in the same identity pair are then
//! dropped: removing one leaves the parent as the hit, with the same answer.
//!
//! 5. **Rate limits** ([`ratelimits`]). Rate-limited rules get indexes, and the values
//!    they decide name them.
//!
//! This file holds the driver ([`compile`]) and the size limits; [`settings`] holds what the
//! agent's configuration adds, [`compiled`] the output and its kernel-exact lookup.

mod closure;
mod compiled;
mod ratelimits;
mod resolve;
mod settings;
mod universe;
mod verdict;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use zt_common::ipcache::IPCACHE_MAX_ENTRIES;
use zt_common::policy::{POLICY_MAX_ENTRIES, PolicyValue};

pub use compiled::{CompiledPolicy, PolicyEntryKey, PolicyInfo};
pub use ratelimits::MAX_RATE_LIMITS;
pub(crate) use resolve::{PortMatch, Resolved};
pub use settings::{CompileSettings, DefaultDeny, FailsafeRule};

use super::error::CompileError;
use super::model::PolicySet;
use super::ports::PortBlock;
use crate::identity::{Allocation, IdentityAllocator};
use closure::build_entries;
use resolve::resolve;
use universe::Universe;
use verdict::atoms;

/// Upper bound on keys the closure may produce before merging and pruning; beyond it the
/// push is rejected rather than making the agent spend minutes and gigabytes.
pub const MAX_CLOSURE_KEYS: usize = 2_000_000;
/// POLICY entries one generation may use: the map holds the live and the next generation
/// side by side during a swap.
pub const MAX_POLICY_ENTRIES: usize = (POLICY_MAX_ENTRIES / 2) as usize;
/// ipcache prefixes per address family one generation may use (same reason).
pub const MAX_IPCACHE_PREFIXES: usize = (IPCACHE_MAX_ENTRIES / 2) as usize;

/// The size guards, as one value so tests can trip them without building millions of keys.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub closure_keys: usize,
    pub policy_entries: usize,
}

impl Limits {
    pub(crate) const DEFAULT: Limits = Limits { closure_keys: MAX_CLOSURE_KEYS, policy_entries: MAX_POLICY_ENTRIES };
}

/// `0.0.0.0/0` and `::/0`: always in the ipcache as world, so every address resolves.
pub const DEFAULT_ROUTES: [IpNet; 2] =
    [IpNet::new_assert(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0), IpNet::new_assert(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0)];

/// Compiles a validated policy set. New label sets and CIDR prefixes get identities from
/// `allocator`, which is only updated when compilation succeeds.
pub fn compile(
    set: &PolicySet,
    settings: &CompileSettings,
    allocator: &mut IdentityAllocator,
) -> Result<CompiledPolicy, CompileError> {
    compile_resolved(set, settings, allocator, Limits::DEFAULT).map(|(compiled, _)| compiled)
}

/// [`compile`], also returning the resolved rules (the tests' reference evaluator reads them).
pub(crate) fn compile_resolved(
    set: &PolicySet,
    settings: &CompileSettings,
    allocator: &mut IdentityAllocator,
    limits: Limits,
) -> Result<(CompiledPolicy, Resolved), CompileError> {
    for rule in &settings.failsafe {
        rule.validate()?;
    }
    let mut allocation = Allocation::new(allocator);
    let mut warnings = Vec::new();
    let universe = Universe::build(set, settings, &mut allocation, &mut warnings)?;
    let (resolved, policies) = resolve(set, settings, &universe, &mut warnings);
    let mut entries = build_entries(&atoms(&resolved), limits)?;
    let rate_limits = ratelimits::attach(&resolved, &mut entries)?;

    let mut index: HashMap<(u8, u32, u32), Vec<(PortBlock, PolicyValue)>> = HashMap::new();
    for (key, value) in &entries {
        index.entry((key.direction, key.local, key.peer)).or_default().push((key.block(), *value));
    }
    for blocks in index.values_mut() {
        blocks.sort_by_key(|(block, _)| std::cmp::Reverse(block.lpm_prefix_len()));
    }

    let added = allocation.finish();
    allocator.commit(added);
    let compiled = CompiledPolicy {
        ipcache: universe.ipcache.into_iter().collect(),
        entries,
        rate_limits,
        policies,
        identities: universe.identities,
        warnings,
        index,
    };
    Ok((compiled, resolved))
}
