//! The running agent's state, shared by the main loop and its servers: the maps, the
//! active compiled policy, the identity allocator and what the flow pipeline needs to name
//! things. Every change goes through methods here, which never half-apply.

use std::{
    sync::{Arc, Mutex},
    time::Instant,
};

use ipnet::IpNet;
use zt_common::{config::Config, event::FlowEvent};

use super::{
    RunOptions,
    generation::{self, Prepared, Rejected},
};
use crate::{
    datapath::{Attachment, DatapathError, GenerationWriter, Maps, StatsSnapshot, SwapReport},
    flows::{self, FlowContext, FlowHistory, reader::PipelineStats},
    host,
    identity::IdentityAllocator,
    metrics::{PushOutcome, Telemetry},
    policy::CompileSettings,
};

pub type SharedState = Arc<Mutex<AgentState>>;

pub struct AgentState {
    pub opts: RunOptions,
    pub settings: CompileSettings,
    pub maps: Maps,
    pub writer: GenerationWriter,
    pub allocator: IdentityAllocator,
    /// The policy the kernel enforces now.
    pub active: Prepared,
    /// Where the active policy came from (file names and texts), for history and diff.
    pub active_sources: Vec<(String, String)>,
    pub host: Vec<IpNet>,
    pub cfg: Config,
    pub ctx: FlowContext,
    pub attachments: Vec<Attachment>,
    pub pipeline: Arc<PipelineStats>,
    /// Recent flow records and the live feed, for `ztctl flows`.
    pub history: Arc<FlowHistory>,
    pub generation: u32,
    pub started: Instant,
    /// Counters the agent keeps for metrics: rule hits, pushes, flow-log writes.
    pub telemetry: Arc<Telemetry>,
    /// Policy revisions: the history of pushes and which one is enforced.
    pub revisions: super::revisions::Revisions,
}

/// Why a push did not take effect; the running policy is unchanged either way.
#[derive(Debug)]
pub enum PushError {
    Rejected(Rejected),
    Kernel(DatapathError),
}

impl std::fmt::Display for PushError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PushError::Rejected(r) => write!(f, "{r}"),
            PushError::Kernel(e) => write!(f, "the kernel maps could not be written: {e}"),
        }
    }
}

impl AgentState {
    /// Validates and compiles `sources` and switches the kernel to them in one generation.
    /// Every push is measured for metrics (`zt_policy_push_duration_seconds`).
    pub fn apply_sources(&mut self, sources: Vec<(String, String)>) -> Result<SwapReport, PushError> {
        let started = Instant::now();
        let result = generation::prepare_sources(&sources, &self.settings, &self.host, &mut self.allocator)
            .map_err(PushError::Rejected)
            .and_then(|next| self.switch_to(next, sources));
        self.measured(started, result.as_ref().err());
        result
    }

    /// Re-reads the `--policy` paths.
    pub fn reload_paths(&mut self) -> Result<SwapReport, PushError> {
        let started = Instant::now();
        let sources = crate::policy::load_paths(&self.opts.policy)
            .map_err(|errs| PushError::Rejected(Rejected(errs.iter().map(ToString::to_string).collect())))
            .inspect_err(|e| self.measured(started, Some(e)))?;
        self.apply_sources(sources)
    }

    /// Records a push that began at `started` and failed with `error`, if any.
    fn measured(&self, started: Instant, error: Option<&PushError>) {
        let outcome = match error {
            None => PushOutcome::Applied,
            Some(PushError::Rejected(_)) => PushOutcome::Rejected,
            Some(PushError::Kernel(_)) => PushOutcome::Failed,
        };
        self.telemetry.pushes.observe(started.elapsed(), outcome);
    }

    fn switch_to(&mut self, next: Prepared, sources: Vec<(String, String)>) -> Result<SwapReport, PushError> {
        let swap = self.writer.apply(&mut self.maps, &next.tables).map_err(PushError::Kernel)?;
        let (identities, policies) = generation::names(&next.compiled);
        self.ctx.update_policy(identities, policies);
        for w in &next.compiled.warnings {
            log::warn!("{w}");
        }
        self.generation = swap.generation;
        self.active = next;
        self.active_sources = sources;
        Ok(swap)
    }

    /// Keeps every address of this host resolving to `host` as addresses come and go.
    pub fn refresh_host(&mut self) {
        match host::addresses() {
            Ok(now) if now != self.host => {
                let tables = generation::tables(&self.active.compiled, &now);
                match self.writer.apply(&mut self.maps, &tables) {
                    Ok(swap) => {
                        log::info!("host addresses changed; generation {}", swap.generation);
                        self.generation = swap.generation;
                        self.active.tables = tables;
                        self.host = now;
                    }
                    Err(e) => log::warn!("cannot update host addresses: {e}"),
                }
            }
            Ok(_) => {}
            Err(e) => log::warn!("cannot list host addresses: {e}"),
        }
    }

    /// Removes expired flows; returns their END events.
    pub fn sweep(&mut self) -> Vec<FlowEvent> {
        flows::sweep::sweep(&mut self.maps.conntrack, &self.cfg, flows::clock::monotonic_ns())
    }

    pub fn stats(&self) -> Result<StatsSnapshot, DatapathError> {
        self.maps.stats()
    }
}
