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
mod memo;
mod ratelimits;
mod resolve;
mod settings;
mod universe;
mod verdict;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use zt_common::ipcache::IPCACHE_MAX_ENTRIES;
use zt_common::policy::POLICY_MAX_ENTRIES;

pub use compiled::{CompiledPolicy, PolicyEntryKey, PolicyInfo};
pub use memo::{CompileMemo, MIN_SAVING};
pub use ratelimits::MAX_RATE_LIMITS;
pub(crate) use resolve::{PortMatch, Resolved};
pub use settings::{CompileSettings, DefaultDeny, FailsafeRule};

use super::error::CompileError;
use super::model::PolicySet;
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
    compile_resolved(set, settings, allocator, Limits::DEFAULT, None).map(|(compiled, _)| compiled)
}

/// [`compile`], reusing what `memo` kept of the previous compile where its inputs are
/// unchanged (see [`memo`]), and keeping this one's for the next; the result is the same.
pub fn compile_remembering(
    set: &PolicySet,
    settings: &CompileSettings,
    allocator: &mut IdentityAllocator,
    memo: &mut CompileMemo,
) -> Result<CompiledPolicy, CompileError> {
    compile_resolved(set, settings, allocator, Limits::DEFAULT, Some(memo)).map(|(compiled, _)| compiled)
}

/// [`compile`], also returning the resolved rules (the tests' reference evaluator reads them).
pub(crate) fn compile_resolved(
    set: &PolicySet,
    settings: &CompileSettings,
    allocator: &mut IdentityAllocator,
    limits: Limits,
    memo: Option<&mut CompileMemo>,
) -> Result<(CompiledPolicy, Resolved), CompileError> {
    let result = compile_steps(set, settings, allocator, limits, memo.as_deref());
    match (result, memo) {
        (Ok((compiled, resolved, kept)), Some(memo)) => {
            let Kept { prefixes, universe, warnings, policies, cost } = kept;
            if let Some(universe) = universe {
                memo.remember(set, settings, prefixes, universe, warnings, policies, cost);
            }
            Ok((compiled, resolved))
        }
        (Ok((compiled, resolved, _)), None) => Ok((compiled, resolved)),
        (Err(e), memo) => {
            if let Some(memo) = memo {
                memo.clear();
            }
            Err(e)
        }
    }
}

/// What a compile leaves for the next one to reuse.
struct Kept {
    prefixes: std::collections::BTreeSet<IpNet>,
    /// `None` when no memo was given: the compile took it apart.
    universe: Option<std::sync::Arc<Universe>>,
    warnings: Vec<String>,
    policies: resolve::Resolutions,
    cost: std::time::Duration,
}

fn compile_steps(
    set: &PolicySet,
    settings: &CompileSettings,
    allocator: &mut IdentityAllocator,
    limits: Limits,
    memo: Option<&CompileMemo>,
) -> Result<(CompiledPolicy, Resolved, Kept), CompileError> {
    for rule in &settings.failsafe {
        rule.validate()?;
    }
    let started = std::time::Instant::now();
    let prefixes = universe::policy_prefixes(set);
    let mut allocation = Allocation::new(allocator);
    let mut warnings = Vec::new();
    let remembered = memo.and_then(|m| m.universe(set, settings, &prefixes, allocator));
    let reused = remembered.is_some();
    let (universe, universe_warnings) = match remembered {
        Some((universe, kept)) => (universe, kept.to_vec()),
        None => {
            let mut kept = Vec::new();
            let universe = Universe::build(set, settings, &prefixes, &mut allocation, &mut kept)?;
            (std::sync::Arc::new(universe), kept)
        }
    };
    warnings.extend(universe_warnings.iter().cloned());
    let mut reuse =
        |policy: &std::sync::Arc<super::model::Policy>, id: u32| memo.and_then(|m| m.resolution(&universe, policy, id));
    let (resolved, policies, used) = resolve(set, settings, &universe, &mut warnings, &mut reuse, memo.is_some());
    // What computing the universe and the resolutions costs, as measured when they were.
    let cost = match memo.and_then(CompileMemo::cost) {
        Some(cost) if reused => cost,
        _ => started.elapsed(),
    };
    let mut entries = build_entries(atoms(&resolved), limits)?;
    let rate_limits = ratelimits::attach(&resolved, &mut entries)?;

    let added = allocation.finish();
    allocator.commit(added);
    // The universe is taken apart unless a memo keeps it (then it is copied from).
    let taken = if memo.is_none() { std::sync::Arc::try_unwrap(universe) } else { Err(universe) };
    let (ipcache, identities, universe) = match taken {
        Ok(u) => (u.ipcache.into_iter().collect(), u.identities, None),
        Err(u) => {
            (u.ipcache.iter().map(|(net, id)| (*net, *id)).collect(), u.identities.clone(), memo.is_some().then_some(u))
        }
    };
    let compiled = CompiledPolicy { ipcache, entries, rate_limits, policies, identities, warnings };
    let kept = Kept { prefixes, universe, warnings: universe_warnings, policies: used, cost };
    Ok((compiled, resolved, kept))
}
