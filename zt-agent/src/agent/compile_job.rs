//! Compiling a policy change without holding the agent's state lock.
//!
//! A 10k-rule push spends most of its time parsing and compiling (tens to hundreds of
//! milliseconds, more on a loaded node); the kernel write and switch are short. Status,
//! metrics, explain and the flow API all take the state lock, so a push that compiled
//! under it would stall every one of them for as long. Instead a change runs in three
//! steps: under the lock, [`super::AgentState::compile_job`] works out the complete next
//! sources and copies what compiling needs (settings, host addresses, the identity
//! allocator); without the lock, [`CompileJob::run`] compiles; under the lock again the
//! change is applied, and uses the [`Precompiled`] result when it was compiled from the
//! same sources and host addresses (else it compiles again — still correct).
//!
//! Changes are serialized ([`one_change_at_a_time`]), so the allocator a job copied is
//! still the agent's when its result is applied.

use std::{
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use ipnet::IpNet;

use super::generation::{self, Prepared, Rejected};
use crate::{
    identity::IdentityAllocator,
    policy::{CompileSettings, ParseCache},
};

/// Everything a compile needs, copied out of the agent state.
pub struct CompileJob {
    pub(super) sources: Vec<(String, String)>,
    pub(super) settings: CompileSettings,
    pub(super) host: Vec<IpNet>,
    pub(super) allocator: IdentityAllocator,
    /// The agent's own: a job reads only the sources that changed since the last compile.
    /// Changes are serialized, so no two compiles wait for it.
    pub(super) cache: Arc<Mutex<ParseCache>>,
}

/// A compile's result, with what it was compiled from.
pub struct Precompiled {
    pub(super) sources: Vec<(String, String)>,
    pub(super) host: Vec<IpNet>,
    /// The allocator after the compile (it changes only on success).
    pub(super) allocator: IdentityAllocator,
    pub(super) result: Result<Prepared, Rejected>,
    pub(super) elapsed: Duration,
}

impl CompileJob {
    /// Validates and compiles; takes no lock.
    pub fn run(mut self) -> Precompiled {
        let started = Instant::now();
        let mut cache = self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let result = generation::prepare_sources_cached(
            &self.sources,
            &self.settings,
            &self.host,
            &mut self.allocator,
            &mut cache,
        );
        drop(cache);
        Precompiled {
            sources: self.sources,
            host: self.host,
            allocator: self.allocator,
            result,
            elapsed: started.elapsed(),
        }
    }
}

static CHANGES: Mutex<()> = Mutex::new(());

/// Held for the whole of a policy change (API push, SIGHUP reload), so changes never
/// interleave. Readers never take it.
pub fn one_change_at_a_time() -> MutexGuard<'static, ()> {
    CHANGES.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
