//! What a compile keeps for the next one: its universe (step 1) and each policy's
//! resolution (step 2), so a push that changes one rule does not number every endpoint and
//! resolve every selector again.
//!
//! The universe is reused when the next compile's inputs to it are the same: the same
//! settings, endpoints equal one by one (the same parsed value, or an equal one), the same
//! set of CIDR prefixes named by policies, and an allocator that still gives every identity
//! of the universe the labels it had (numbers are never reused, but a compile whose result
//! was discarded may have numbered label sets the allocator never took). A policy's
//! resolution is reused when the universe was, and the policy is equal to the one resolved
//! and has the same id (its position in name order). Anything else is computed afresh, so
//! the result is always the one a compile from scratch gives (tests/memo.rs checks this
//! over random push sequences). A compile is remembered only when computing these steps
//! took long enough for reuse to matter ([`MIN_SAVING`]).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;

use super::CompileSettings;
use super::resolve::{PolicyResolution, Resolutions};
use super::universe::Universe;
use crate::identity::IdentityAllocator;
use crate::policy::model::{Policy, PolicySet};

/// A compile is remembered only when its identities and resolution took at least this
/// long: below it, what reuse saves is not worth holding their results between pushes (a
/// 10k-rule policy of 10,000 CIDR peers: under 20 ms of the compile, 9 MiB of memory).
pub const MIN_SAVING: Duration = Duration::from_millis(20);

/// Kept by the caller between compiles (the agent keeps it with its parse cache).
pub struct CompileMemo {
    last: Option<Last>,
    /// Remember a compile only if rebuilding what it keeps took this long ([`MIN_SAVING`]).
    min_saving: Duration,
    /// Universes and resolutions reused, so the tests can tell the memo was used.
    #[cfg(test)]
    pub(crate) reused: std::cell::Cell<[usize; 2]>,
}

impl Default for CompileMemo {
    fn default() -> Self {
        CompileMemo {
            last: None,
            min_saving: MIN_SAVING,
            #[cfg(test)]
            reused: Default::default(),
        }
    }
}

/// The last successful compile's reusable steps.
struct Last {
    /// How long computing them took when they were computed.
    cost: Duration,
    settings: CompileSettings,
    endpoints: Vec<Arc<crate::policy::model::Endpoint>>,
    prefixes: BTreeSet<IpNet>,
    universe: Arc<Universe>,
    /// The universe step's warnings, given again when it is reused.
    warnings: Vec<String>,
    /// Each policy with its resolution, in id order.
    policies: Resolutions,
}

impl CompileMemo {
    /// A memo that remembers every compile, however quick, so tests exercise it.
    #[cfg(test)]
    pub(crate) fn keeping_all() -> Self {
        CompileMemo { min_saving: Duration::ZERO, ..CompileMemo::default() }
    }

    /// What computing the remembered steps cost, if a compile is remembered.
    pub(super) fn cost(&self) -> Option<Duration> {
        self.last.as_ref().map(|last| last.cost)
    }

    /// Whether a compile has been remembered.
    pub fn is_empty(&self) -> bool {
        self.last.is_none()
    }

    /// The remembered universe and its warnings, if `set` and `settings` give the same one
    /// under `allocator`.
    pub(super) fn universe(
        &self,
        set: &PolicySet,
        settings: &CompileSettings,
        prefixes: &BTreeSet<IpNet>,
        allocator: &IdentityAllocator,
    ) -> Option<(Arc<Universe>, &[String])> {
        let last = self.last.as_ref()?;
        let same_endpoints = last.endpoints.len() == set.endpoints.len()
            && last.endpoints.iter().zip(&set.endpoints).all(|(a, b)| Arc::ptr_eq(a, b) || a == b);
        let numbered = || {
            last.universe
                .identities
                .iter()
                .all(|(&id, labels)| id < zt_common::identity::FIRST_ALLOCATED || allocator.labels(id) == Some(labels))
        };
        let same = last.settings == *settings && same_endpoints && last.prefixes == *prefixes && numbered();
        #[cfg(test)]
        if same {
            self.reused.set([self.reused.get()[0] + 1, self.reused.get()[1]]);
        }
        same.then(|| (last.universe.clone(), last.warnings.as_slice()))
    }

    /// The remembered resolution of `policy` as policy `id`, if `universe` is the
    /// remembered one (settings were compared with it).
    pub(super) fn resolution(
        &self,
        universe: &Arc<Universe>,
        policy: &Arc<Policy>,
        id: u32,
    ) -> Option<Arc<PolicyResolution>> {
        let last = self.last.as_ref().filter(|last| Arc::ptr_eq(&last.universe, universe))?;
        let (was, resolution) = last.policies.get(id.checked_sub(1)? as usize)?;
        // Looked up by position, which is the id: the same position is the same id.
        let same = Arc::ptr_eq(was, policy) || was == policy;
        #[cfg(test)]
        if same {
            self.reused.set([self.reused.get()[0], self.reused.get()[1] + 1]);
        }
        same.then(|| resolution.clone())
    }

    /// Remembers a successful compile (its allocation committed) whose steps cost `cost`
    /// to compute, if that is worth it ([`MIN_SAVING`]).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn remember(
        &mut self,
        set: &PolicySet,
        settings: &CompileSettings,
        prefixes: BTreeSet<IpNet>,
        universe: Arc<Universe>,
        warnings: Vec<String>,
        policies: Resolutions,
        cost: Duration,
    ) {
        if cost < self.min_saving {
            self.last = None;
            return;
        }
        self.last = Some(Last {
            cost,
            settings: settings.clone(),
            endpoints: set.endpoints.clone(),
            prefixes,
            universe,
            warnings,
            policies,
        });
    }

    /// Forgets the last compile (a failed one keeps nothing either way).
    pub fn clear(&mut self) {
        self.last = None;
    }
}
