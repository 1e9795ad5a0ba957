//! The agent core: start-up, the running state and every change to it (policy pushes and
//! revisions, quarantine, host addresses, flow expiry). `crate::daemon` wires it to the
//! servers and the flow pipeline for `zt-agent run`; the servers (api, metrics) only call
//! the methods of [`AgentState`].
//!
//! Start-up order matters for zero trust: the policy is validated and compiled first (a bad
//! policy never reaches the kernel), then the programs are loaded with their maps pinned,
//! the generation is written and switched, and only then are the programs attached — so
//! the first packet an interface sees is already judged by the complete policy. The agent
//! reports "ready" after that (and tells systemd, `READY=1`). SIGHUP re-reads the policy
//! paths. On SIGINT/SIGTERM the pinned programs stay attached (fail-static: a restart
//! adopts them without a gap); with `--no-pin` they are detached and every pin removed.

pub mod aside;
mod changes;
mod cluster;
pub mod compile_job;
mod detection;
mod generation;
pub mod lookup;
mod options;
pub mod pushes;
pub mod quarantine;
mod quarantine_notes;
pub mod revisions;
mod state;

use std::{sync::Arc, time::Instant};

use anyhow::{Context, bail};
use zt_common::config::Config;

pub use aside::{SET_ASIDE_RETRIES, SetAside};
pub use changes::{ChangeError, Plan, PolicyChange};
pub use cluster::{CLUSTER_SOURCE_PREFIX, WatchStats};
pub use compile_job::{CompileJob, Precompiled, one_change_at_a_time};
pub use generation::{Prepared, Rejected, prepare, prepare_sources, prepare_sources_cached};
pub use options::{DEFAULT_BPFFS, DEFAULT_METRICS, DEFAULT_SOCKET, DEFAULT_STATE_DIR, RunOptions};
pub use options::{DEFAULT_POD_IFACE_PATTERNS, KubernetesOptions, RemoteOptions, RoleMap};
pub use quarantine::{QuarantineError, Quarantined};
pub use state::{AgentState, PushError, SharedState, Telemetry};

use crate::{
    bpffs::PinDir,
    datapath::{self, Datapath, GenerationWriter},
    flows::{self, FlowContext, FlowHistory, reader::PipelineStats},
    host,
    identity::{IdentityAllocator, Labels},
    policy::CompileSettings,
};

/// Validates everything, loads and attaches; returns the state and the loaded programs
/// (whose links keep the attachments alive). With `cluster` (`--kubernetes`), those are
/// the cluster's objects as first listed: they replace any the last revision held, so the
/// first packet is judged by the cluster as it is now.
pub fn start(
    opts: RunOptions,
    pins: &PinDir,
    cluster: Option<Vec<(String, String)>>,
) -> anyhow::Result<(AgentState, Datapath, u32)> {
    if opts.ifaces.is_empty() && opts.kubernetes.is_none() {
        bail!("no interface given; pass --iface IF (repeat it for more interfaces) or set ifaces in the config file");
    }
    for iface in &opts.ifaces {
        datapath::ifindex_of(iface)?;
    }
    let host_labels = Labels::parse(&opts.labels).map_err(|e| anyhow::anyhow!("--labels {:?}: {e}", opts.labels))?;
    let host = host::addresses().context("cannot list this host's addresses")?;
    let settings = CompileSettings {
        default_deny: opts.default_deny,
        host_labels,
        host_addresses: zt_policy::host::addresses(&host),
        failsafe: opts.failsafe.clone(),
    };
    let mut allocator = IdentityAllocator::new();
    // Without --policy, the last pushed revision is enforced again.
    let mut revisions = revisions::Revisions::open(&opts.state_dir);
    let sources = match revisions.restore(&opts.policy)? {
        Some(sources) => sources,
        None => zt_policy::generation::load(&opts.policy).map_err(|r| {
            anyhow::anyhow!("{r}\nthe policy was rejected ({} problem(s)); nothing was applied", r.0.len())
        })?,
    };
    // The cluster's objects the start cannot take are set aside, as later pushes do
    // (`aside`): one invalid object must not keep the agent from starting.
    let operator = sources;
    let mut cluster_aside = match cluster {
        Some(_) => SetAside::restored(&opts.state_dir),
        None => SetAside::default(),
    };
    let mut pushed = cluster.clone().unwrap_or_default();
    let mut parse_cache = crate::policy::ParseCache::default();
    let mut attempt = 0;
    let (sources, mut prepared) = loop {
        let sources = match cluster {
            Some(_) => cluster::with_cluster(&operator, pushed.clone()),
            None => operator.clone(),
        };
        let rejected =
            match generation::prepare_sources_cached(&sources, &settings, &host, &mut allocator, &mut parse_cache) {
                Ok(prepared) => break (sources, prepared),
                Err(r) => r,
            };
        let mut log = vec![];
        let next = match &cluster {
            Some(current) if attempt < SET_ASIDE_RETRIES => cluster_aside.reject(current, &pushed, &rejected, &mut log),
            _ => None,
        };
        for line in log {
            eprintln!("zt-agent: kubernetes: {line}");
        }
        match next {
            Some(next) => pushed = next,
            None => bail!("{rejected}\nthe policy was rejected ({} problem(s)); nothing was applied", rejected.0.len()),
        }
        attempt += 1;
    };
    if let Some(current) = &cluster {
        cluster_aside.accepted(current, &pushed, &mut vec![]);
        cluster_aside.save();
    }
    for w in &prepared.compiled.warnings {
        log::warn!("{w}");
    }

    // The benchmarks' reference table is never used by an agent: one entry, not a
    // CONNTRACK-sized bucket array.
    let mut sizes = opts.map_sizes.clone();
    sizes.set_map(zt_common::map_names::REFERENCE_FLOWS, 1);
    let mut dp = Datapath::load_sized(pins.path(), &sizes)?;
    let mut maps = dp.take_maps()?;
    for map in &dp.set_aside {
        eprintln!(
            "zt-agent: upgrade: pinned map {map} set aside; the running programs keep it until they are replaced"
        );
    }
    for line in datapath::layout::migrate(pins.path(), &mut maps, flows::clock::monotonic_ns())? {
        eprintln!("zt-agent: upgrade: {line}");
    }
    let previous = maps.read_config()?;
    let adopted = previous.generation;
    // Quarantine entries are pinned and outlive the agent; so does the flag that arms them.
    let quarantine = previous.flags & zt_common::config::FLAG_QUARANTINE_ACTIVE;
    let mut cfg = Config { generation: adopted, flags: opts.datapath.flags | quarantine, ..opts.datapath };
    opts.detect.write_kernel(&mut cfg);
    maps.write_exempt(&opts.detect.never)?;
    let failsafe: Vec<_> = opts.failsafe.iter().map(|f| (f.direction.to_u8(), f.protocol.number(), f.port)).collect();
    maps.write_failsafe(&failsafe)?;
    maps.write_config(&cfg)?;
    let mut writer = GenerationWriter::adopt(&maps)?;
    let swap = writer.apply(&mut maps, &prepared.tables)?;

    dp.prepare_links(opts.link_lifetime(), &opts.ifaces)?;
    let mut attachments = Vec::new();
    for iface in &opts.ifaces {
        attachments.push(dp.attach(iface, opts.xdp_mode)?);
    }
    // Every link now runs this agent's programs: nothing uses the superseded maps.
    match datapath::layout::remove_superseded(pins.path()) {
        Ok(0) => {}
        Ok(n) => eprintln!("zt-agent: upgrade: {n} superseded map pin(s) removed"),
        Err(e) => log::warn!("cannot remove the superseded map pins under {pins}: {e}"),
    }
    let state_dir = opts.state_dir.clone();
    let edges_path = state_dir.join(flows::edges::FILE);
    let (edges, loaded) = flows::Edges::open(opts.edges, Some(edges_path.clone()));
    if let Some(line) = loaded.message(&edges_path) {
        eprintln!("{line}");
    }
    let (identities, policies) = std::mem::take(&mut prepared.names);
    let ctx = FlowContext::new(flows::context::Names { identities, policies, interfaces: host::interface_names() });
    let state = AgentState {
        opts,
        settings,
        maps,
        writer,
        allocator,
        active: prepared,
        active_sources: sources,
        retired: None,
        host,
        cfg,
        ctx,
        attachments,
        clock: dp.clock_summary(),
        pipeline: Arc::new(PipelineStats::default()),
        history: Arc::new(FlowHistory::default()),
        edges: Arc::new(edges),
        generation: swap.generation,
        started: Instant::now(),
        telemetry: Arc::default(),
        revisions,
        occupancy: None,
        precompiled: None,
        parse_cache: Arc::new(std::sync::Mutex::new(parse_cache)),
        quarantine_notes: quarantine_notes::QuarantineNotes::open(&state_dir),
        alerts: Arc::default(),
        cluster_aside,
    };
    Ok((state, dp, adopted))
}

/// The line the agent prints when it is ready: what it enforces, where, and why each hook.
pub fn ready_line(s: &AgentState, adopted: u32) -> String {
    let hooks: Vec<String> = s.attachments.iter().map(|a| format!("{} ({}: {})", a.iface, a.ingress, a.why)).collect();
    let failsafe: Vec<String> = s.settings.failsafe.iter().map(ToString::to_string).collect();
    format!(
        "zt-agent: ready: enforcing generation {} ({} policies, {} identities{}) on {}; default deny: {}; failsafe: {}",
        s.generation,
        s.active.compiled.policies.len(),
        s.active.compiled.identities.len(),
        if adopted != 0 { format!(", adopted generation {adopted}") } else { String::new() },
        hooks.join(", "),
        s.settings.default_deny,
        if failsafe.is_empty() { "none".to_string() } else { failsafe.join(", ") },
    )
}

/// Leaves enforcement running (pinned links) or removes every pin (`--no-pin`).
pub fn stop(pins: &PinDir, lifetime: datapath::LinkLifetime) {
    match lifetime {
        datapath::LinkLifetime::Pinned => eprintln!(
            "zt-agent: stopped; enforcement continues: the programs stay attached and pinned under {pins} (fail-static); a new agent adopts them, `zt-agent cleanup --bpffs {}` removes them",
            pins.shown().display()
        ),
        datapath::LinkLifetime::Process => {
            if let Err(e) = datapath::pins::remove_all(pins.path()) {
                eprintln!("zt-agent: cannot remove the pins under {pins}: {e}");
            }
            eprintln!("zt-agent: stopped; programs detached");
        }
    }
}
