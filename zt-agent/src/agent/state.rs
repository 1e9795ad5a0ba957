//! The running agent's state, shared by the main loop and its servers: the maps, the
//! active compiled policy, the identity allocator and what the flow pipeline needs to name
//! things. Every change goes through methods of the agent core (here, `revisions`,
//! `changes`, `quarantine`), which never half-apply; the fields are private to the core, and
//! the servers above it (api, metrics) read through the accessors below.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use ipnet::IpNet;
use zt_common::config::Config;

use super::{
    RunOptions,
    generation::{self, Prepared, Rejected},
    pushes::{PushOutcome, PushStats},
    revisions::Revisions,
};
use crate::{
    datapath::{Attachment, DatapathError, GenerationWriter, Maps, StatsSnapshot, SwapReport},
    detect::AlertHistory,
    flows::{self, FlowContext, FlowHistory, RuleHits, reader::PipelineStats, sink::SinkStats},
    host,
    identity::IdentityAllocator,
    policy::CompileSettings,
};

pub type SharedState = Arc<Mutex<AgentState>>;

/// Counters kept by the agent's own stages (the kernel's live in its maps), for metrics.
/// Each is owned by the stage that updates it; this only gathers them.
#[derive(Debug, Default)]
pub struct Telemetry {
    /// Fed by the flow sink with every record.
    pub rule_hits: Arc<RuleHits>,
    /// Updated by the flow sink.
    pub flow_log: Arc<SinkStats>,
    /// Updated by every policy push (`AgentState::apply_sources`).
    pub pushes: PushStats,
    /// Alerts raised, by (detector, action); updated by `AgentState::respond`.
    pub alerts: Mutex<std::collections::BTreeMap<(String, String), u64>>,
    /// Bytes of the `new_peer` detector's learnt edges; updated by its learner.
    pub new_peer_bytes: Arc<std::sync::atomic::AtomicU64>,
    /// The Kubernetes watchers' counters, with `--kubernetes` (set once, at start).
    pub kubernetes: std::sync::OnceLock<Arc<super::WatchStats>>,
}

/// The running agent. Fields are visible to the agent core only (`pub(super)`: this module
/// and its siblings); the layers above use methods.
pub struct AgentState {
    /// The cluster objects the start set aside, until the push loop takes them.
    pub(super) cluster_aside: super::SetAside,
    pub(super) opts: RunOptions,
    pub(super) settings: CompileSettings,
    pub(super) maps: Maps,
    pub(super) writer: GenerationWriter,
    pub(super) allocator: IdentityAllocator,
    /// The policy the kernel enforces now.
    pub(super) active: Prepared,
    /// Where the active policy came from (file names and texts), for history and diff.
    pub(super) active_sources: Vec<(String, String)>,
    /// The generation the last switch replaced, until [`AgentState::take_retired`].
    pub(super) retired: Option<Retired>,
    pub(super) host: Vec<IpNet>,
    pub(super) cfg: Config,
    pub(super) ctx: FlowContext,
    pub(super) attachments: Vec<Attachment>,
    /// How the kernel programs read the time ([`crate::datapath::Datapath::clock_summary`]).
    pub(super) clock: String,
    pub(super) pipeline: Arc<PipelineStats>,
    /// Recent flow records and the live feed, for `ztctl flows`.
    pub(super) history: Arc<FlowHistory>,
    /// Observed edges (`ztctl policy suggest`), fed by the sink, saved in the state dir.
    pub(super) edges: Arc<flows::Edges>,
    pub(super) generation: u32,
    pub(super) started: Instant,
    /// Counters the agent keeps for metrics: rule hits, pushes, flow-log writes.
    pub(super) telemetry: Arc<Telemetry>,
    /// Policy revisions: the history of pushes and which one is enforced.
    pub(super) revisions: Revisions,
    /// Conntrack entries as the sweep last counted them; `None` until a sweep runs.
    pub(super) occupancy: Option<Arc<crate::flows::sweep::Occupancy>>,
    /// A compile of the change being applied, done without the state lock (see
    /// `compile_job`); taken by the first compile that matches it.
    pub(super) precompiled: Option<super::compile_job::Precompiled>,
    /// The sources of the last compile, read: the next one reads only what changed.
    pub(super) parse_cache: Arc<Mutex<crate::policy::ParseCache>>,
    /// Quarantine reasons and offence counts (the kernel map holds the entries).
    pub(super) quarantine_notes: super::quarantine_notes::QuarantineNotes,
    /// Alerts raised, for `ztctl alerts`.
    pub(super) alerts: Arc<AlertHistory>,
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
        let (prepared, compiled_before) = self.prepare(&sources, true);
        let result = prepared.map_err(PushError::Rejected).and_then(|next| self.switch_to(next, sources));
        self.measured(started.checked_sub(compiled_before).unwrap_or(started), result.as_ref().err());
        result
    }

    /// Validates and compiles `sources`: the result compiled without the lock when it was
    /// compiled from these sources and this host's addresses, else now. With `commit` the
    /// identity allocator keeps what the compile allocated.
    /// Also returns how long the compile took before this call (zero when compiled now).
    pub(super) fn prepare(
        &mut self,
        sources: &[(String, String)],
        commit: bool,
    ) -> (Result<Prepared, Rejected>, std::time::Duration) {
        if let Some(p) = self.precompiled.take()
            && p.sources == sources
            && p.host == self.host
        {
            if commit && p.result.is_ok() {
                self.allocator = p.allocator;
            }
            return (p.result, p.elapsed);
        }
        // Under the state lock, never wait for a compile job to give the cache back: a busy
        // cache only means reading every source, with the same result.
        let mut scratch = crate::policy::ParseCache::default();
        let mut guard = self.parse_cache.try_lock().ok();
        let cache = guard.as_deref_mut().unwrap_or(&mut scratch);
        let result = if commit {
            generation::prepare_sources_cached(sources, &self.settings, &self.host, &mut self.allocator, cache)
        } else {
            let mut allocator = self.allocator.clone();
            generation::prepare_sources_cached(sources, &self.settings, &self.host, &mut allocator, cache)
        };
        drop(guard);
        (result, std::time::Duration::ZERO)
    }

    /// What compiling `sources` needs, to do it without the state lock.
    pub(super) fn job_for(&self, sources: Vec<(String, String)>) -> super::compile_job::CompileJob {
        super::compile_job::CompileJob {
            sources,
            settings: self.settings.clone(),
            host: self.host.clone(),
            allocator: self.allocator.clone(),
            cache: self.parse_cache.clone(),
        }
    }

    /// Re-reads the `--policy` paths.
    pub fn reload_paths(&mut self) -> Result<SwapReport, PushError> {
        let started = Instant::now();
        let sources = zt_policy::generation::load(&self.opts.policy)
            .map_err(PushError::Rejected)
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

    fn switch_to(&mut self, mut next: Prepared, sources: Vec<(String, String)>) -> Result<SwapReport, PushError> {
        let swap = self.writer.apply(&mut self.maps, &next.tables).map_err(PushError::Kernel)?;
        let (identities, policies) = std::mem::take(&mut next.names);
        self.ctx.update_policy(identities, policies);
        for w in &next.compiled.warnings {
            log::warn!("{w}");
        }
        self.generation = swap.generation;
        let active = std::mem::replace(&mut self.active, next);
        let active_sources = std::mem::replace(&mut self.active_sources, sources);
        self.retired = Some(Retired { _prepared: active, _sources: active_sources });
        Ok(swap)
    }

    /// The generation a switch replaced, for the caller to free after it lets go of the
    /// state lock: freeing a cluster's compiled policy (tens of thousands of entries and
    /// identities) took milliseconds in which status, flows and the next push waited.
    pub fn take_retired(&mut self) -> Option<Retired> {
        self.retired.take()
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

    pub fn stats(&self) -> Result<StatsSnapshot, DatapathError> {
        self.maps.stats()
    }
}

/// A replaced generation and its sources, freed when dropped.
pub struct Retired {
    _prepared: Prepared,
    _sources: Vec<(String, String)>,
}

/// Read-only views for the layers above (status, inventory, explain, metrics, wiring).
impl AgentState {
    /// The options the agent runs with.
    pub fn options(&self) -> &RunOptions {
        &self.opts
    }

    /// The compile settings (default deny, failsafe rules, host labels and addresses).
    pub fn settings(&self) -> &CompileSettings {
        &self.settings
    }

    /// The enforced policy: compiled form and the kernel tables written from it.
    pub fn active(&self) -> &Prepared {
        &self.active
    }

    /// The `(name, text)` sources the enforced policy was compiled from.
    pub fn active_sources(&self) -> &[(String, String)] {
        &self.active_sources
    }

    /// The policy generation the kernel enforces.
    pub fn generation(&self) -> u32 {
        self.generation
    }

    /// The revision the kernel enforces; `None` before the first one.
    pub fn revision(&self) -> Option<u64> {
        self.revisions.current()
    }

    pub fn clock(&self) -> &str {
        &self.clock
    }

    pub fn attachments(&self) -> &[Attachment] {
        &self.attachments
    }

    /// Records an interface attached while running (a pod's veth that appeared).
    pub fn attached(&mut self, attachment: Attachment) {
        self.attachments.retain(|a| a.ifindex != attachment.ifindex);
        self.ctx.name_interface(attachment.ifindex, attachment.iface.clone());
        self.attachments.push(attachment);
    }

    /// Forgets the attachment of an interface that went away.
    pub fn detached(&mut self, ifindex: u32) -> Option<Attachment> {
        let at = self.attachments.iter().position(|a| a.ifindex == ifindex)?;
        Some(self.attachments.remove(at))
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Flows the kernel tracks: as of the sweep's last walk when a sweep runs (status and
    /// metrics must not walk a table of up to 262,144 entries under the state lock), else
    /// counted now.
    pub fn conntrack_len(&self) -> usize {
        match &self.occupancy {
            Some(n) => n.conntrack.load(std::sync::atomic::Ordering::Relaxed) as usize,
            None => self.maps.conntrack_len(),
        }
    }

    /// TCP handshakes in progress, counted like [`Self::conntrack_len`].
    pub fn half_open_len(&self) -> usize {
        match &self.occupancy {
            Some(n) => n.half_open.load(std::sync::atomic::Ordering::Relaxed) as usize,
            None => self.maps.half_open_len(),
        }
    }

    /// The table occupancy the sweep keeps ([`crate::flows::sweep::Sweeper::occupancy`]).
    pub fn count_conntrack_by(&mut self, occupancy: Arc<crate::flows::sweep::Occupancy>) {
        self.occupancy = Some(occupancy);
    }

    /// The datapath settings (timeouts, flags) the agent started with.
    pub fn datapath_config(&self) -> Config {
        self.cfg
    }

    /// The flow pipeline's reader counters.
    pub fn pipeline(&self) -> &Arc<PipelineStats> {
        &self.pipeline
    }

    /// Recent flow records and the live feed.
    pub fn flow_history(&self) -> &Arc<FlowHistory> {
        &self.history
    }

    pub fn edges(&self) -> &Arc<flows::Edges> {
        &self.edges
    }

    /// The naming context the flow pipeline enriches records with.
    pub fn flow_context(&self) -> &FlowContext {
        &self.ctx
    }

    pub fn telemetry(&self) -> &Arc<Telemetry> {
        &self.telemetry
    }

    /// The EVENTS ring buffer, for the flow reader; `None` once taken.
    /// The kernel's detector crossings, for the detection task (taken once).
    pub fn take_detect_events(&mut self) -> Option<aya::maps::RingBuf<aya::maps::MapData>> {
        self.maps.detect_events.take()
    }

    /// Alerts raised, for `ztctl alerts`.
    pub fn alerts(&self) -> &Arc<AlertHistory> {
        &self.alerts
    }

    /// Kernel memory of the detectors' maps, in bytes.
    pub fn detector_memlock(&self) -> u64 {
        self.maps.detector_memlock()
    }

    pub fn take_events(&mut self) -> Option<aya::maps::RingBuf<aya::maps::MapData>> {
        self.maps.events.take()
    }
}
