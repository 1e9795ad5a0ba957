//! The daemon: `zt-agent run`.
//!
//! Start-up order matters for zero trust: the policy is validated and compiled first (a bad
//! policy never reaches the kernel), then the programs are loaded with their maps pinned,
//! the generation is written and switched, and only then are the programs attached — so
//! the first packet an interface sees is already judged by the complete policy. The agent
//! reports "ready" after that (and tells systemd, `READY=1`). SIGHUP re-reads the policy
//! paths. On SIGINT/SIGTERM the pinned programs stay attached (fail-static: a restart
//! adopts them without a gap); with `--no-pin` they are detached and every pin removed.

mod generation;
mod options;
pub mod revisions;
mod state;

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use tokio::sync::mpsc;
use zt_common::config::Config;

pub use generation::{Prepared, Rejected, prepare, prepare_sources};
pub use options::{DEFAULT_BPFFS, DEFAULT_METRICS, DEFAULT_SOCKET, DEFAULT_STATE_DIR, RunOptions};
pub use state::{AgentState, PushError, SharedState};

use crate::{
    bpffs::{self, PinDir},
    datapath::{self, Datapath, GenerationWriter},
    flows::{self, FlowContext, FlowHistory, reader::PipelineStats, sink::{FlowLogTarget, FlowSink}},
    host,
    identity::{IdentityAllocator, Labels},
    policy::CompileSettings,
};

/// Flow records waiting for the sink; beyond this the reader drops and counts.
const SINK_QUEUE: usize = 8192;
/// How often expired flows are swept from conntrack and host addresses re-read.
const SWEEP_INTERVAL: Duration = Duration::from_secs(2);

/// Validates everything, loads and attaches; returns the state and the loaded programs
/// (whose links keep the attachments alive).
fn start(opts: RunOptions, pins: &PinDir) -> anyhow::Result<(AgentState, Datapath, u32)> {
    if opts.ifaces.is_empty() {
        bail!("no interface given; pass --iface IF (repeat it for more interfaces) or set ifaces in the config file");
    }
    for iface in &opts.ifaces {
        datapath::ifindex_of(iface)?;
    }
    let host_labels =
        Labels::parse(&opts.labels).map_err(|e| anyhow::anyhow!("--labels {:?}: {e}", opts.labels))?;
    let host = host::addresses().context("cannot list this host's addresses")?;
    let settings = CompileSettings {
        default_deny: opts.default_deny,
        host_labels,
        host_addresses: generation::host_ips(&host),
        failsafe: opts.failsafe.clone(),
    };
    let mut allocator = IdentityAllocator::new();
    // Without --policy, the last pushed revision is enforced again.
    let mut revisions = revisions::Revisions::open(&opts.state_dir);
    let sources = match revisions.restore(&opts.policy)? {
        Some(sources) => sources,
        None => crate::policy::load_paths(&opts.policy).map_err(|errs| {
            let r = Rejected(errs.iter().map(ToString::to_string).collect());
            anyhow::anyhow!("{r}\nthe policy was rejected ({} problem(s)); nothing was applied", r.0.len())
        })?,
    };
    let prepared = prepare_sources(&sources, &settings, &host, &mut allocator).map_err(|r| {
        anyhow::anyhow!("{r}\nthe policy was rejected ({} problem(s)); nothing was applied", r.0.len())
    })?;
    for w in &prepared.compiled.warnings {
        log::warn!("{w}");
    }

    let mut dp = Datapath::load(pins.path())?;
    let mut maps = dp.take_maps()?;
    for map in &dp.set_aside {
        eprintln!("zt-agent: upgrade: pinned map {map} set aside; the running programs keep it until they are replaced");
    }
    for line in datapath::layout::migrate(pins.path(), &mut maps, flows::clock::monotonic_ns())? {
        eprintln!("zt-agent: upgrade: {line}");
    }
    let previous = maps.read_config()?;
    let adopted = previous.generation;
    // Quarantine entries are pinned and outlive the agent; so does the flag that arms them.
    let quarantine = previous.flags & zt_common::config::FLAG_QUARANTINE_ACTIVE;
    let cfg = Config { generation: adopted, flags: opts.datapath.flags | quarantine, ..opts.datapath };
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
    let (identities, policies) = generation::names(&prepared.compiled);
    let ctx = FlowContext::new(flows::context::Names { identities, policies, interfaces: host::interface_names() });
    let state = AgentState {
        opts,
        settings,
        maps,
        writer,
        allocator,
        active: prepared,
        active_sources: sources,
        host,
        cfg,
        ctx,
        attachments,
        pipeline: Arc::new(PipelineStats::default()),
        history: Arc::new(FlowHistory::default()),
        generation: swap.generation,
        started: Instant::now(),
        telemetry: Arc::default(),
        revisions,
    };
    Ok((state, dp, adopted))
}

fn ready_line(s: &AgentState, adopted: u32) -> String {
    let hooks: Vec<String> = s.attachments.iter().map(|a| format!("{} ({}: {})", a.iface, a.ingress, a.why)).collect();
    let failsafe: Vec<String> = s.settings.failsafe.iter().map(ToString::to_string).collect();
    format!(
        "zt-agent: ready: enforcing generation {} ({} policies, {} identities{}) on {}; failsafe: {}",
        s.generation,
        s.active.compiled.policies.len(),
        s.active.compiled.identities.len(),
        if adopted != 0 { format!(", adopted generation {adopted}") } else { String::new() },
        hooks.join(", "),
        if failsafe.is_empty() { "none".to_string() } else { failsafe.join(", ") },
    )
}

/// Runs the agent until SIGINT or SIGTERM.
pub fn run(opts: RunOptions) -> anyhow::Result<()> {
    let lifetime = opts.link_lifetime();
    // Resolved before anything else touches the kernel: pins that would not outlive the
    // agent must stop a pinned start here, with the reason.
    let pins = PinDir::open(&opts.bpffs, match lifetime {
        datapath::LinkLifetime::Pinned => bpffs::Lifetime::OutliveAgent,
        datapath::LinkLifetime::Process => bpffs::Lifetime::AgentOnly,
    })?;
    // These fail before the kernel is touched: a taken port, an unwritable log, bad TLS files.
    let metrics_listener = crate::metrics::bind(opts.metrics.as_deref())?;
    let flow_sink = FlowSink::open(opts.flow_log.as_deref().map(FlowLogTarget::parse).as_ref(), opts.flow_log_rotation.clone())?;
    let remote_listener = opts.remote.as_ref().map(crate::api::remote::bind).transpose()?;
    let (mut state, dp, adopted) = start(opts, &pins)?;
    // Bound before "ready", so ready means ztctl works.
    let api_socket = match crate::api::ApiSocket::bind(&state.opts.socket) {
        Ok(socket) => socket,
        Err(e) => {
            drop((state, dp));
            stop(&pins, lifetime);
            return Err(e.into());
        }
    };
    state.record_startup();
    let ring = state.maps.events.take().expect("events ring taken once");
    let ctx = state.ctx.clone();
    let pipeline = state.pipeline.clone();
    let sweep_drops = pipeline.clone();
    let history = state.history.clone();
    let telemetry = state.telemetry.clone();
    let ready = ready_line(&state, adopted);
    let shared: SharedState = Arc::new(Mutex::new(state));

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let result: anyhow::Result<()> = runtime.block_on(async {
        let (tx, rx) = mpsc::channel(SINK_QUEUE);
        let reader = tokio::spawn(flows::reader::run(ring, ctx.clone(), tx.clone(), pipeline));
        let sink = tokio::spawn(flow_sink.run(rx, history, telemetry.rule_hits.clone(), telemetry.flow_log.clone()));
        if let Some(listener) = metrics_listener {
            crate::metrics::serve(listener, crate::metrics::Sources { state: shared.clone(), queue: tx.downgrade() })?;
        }
        crate::api::serve(api_socket, shared.clone())?;
        if let Some(remote) = remote_listener {
            crate::api::remote::serve(remote, shared.clone())?;
        }
        eprintln!("{ready}");
        crate::notify::notify(crate::notify::READY);

        let mut sweep = tokio::time::interval(SWEEP_INTERVAL);
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut hup = signal(SignalKind::hangup())?;
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                _ = term.recv() => break,
                _ = hup.recv() => {
                    let mut s = shared.lock().expect("agent state");
                    match s.reload_revision() {
                        Ok(swap) => eprintln!(
                            "zt-agent: reloaded: enforcing generation {} ({} policies, {} entries written, {} removed)",
                            swap.generation, s.active.compiled.policies.len(), swap.written, swap.removed
                        ),
                        Err(PushError::Rejected(r)) => {
                            eprintln!("zt-agent: reload rejected, the running policy is unchanged:\n{r}")
                        }
                        Err(e) => eprintln!("zt-agent: reload failed, the running policy is unchanged: {e}"),
                    }
                }
                _ = sweep.tick() => {
                    let ended = {
                        let mut s = shared.lock().expect("agent state");
                        s.refresh_host();
                        s.sweep()
                    };
                    let names = ctx.snapshot();
                    for ev in ended {
                        if tx.try_send(flows::FlowRecord::from_event(&ev, &names)).is_err() {
                            // A full queue drops, as for kernel events: counted, never silent.
                            sweep_drops.records_dropped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                }
            }
        }
        drop(tx);
        reader.abort();
        // Let the sink write what it has; it ends when the last sender is gone.
        let _ = tokio::time::timeout(Duration::from_secs(2), sink).await;
        Ok(())
    });
    drop(runtime);
    drop(shared);
    crate::notify::notify(crate::notify::STOPPING);
    drop(dp);
    stop(&pins, lifetime);
    result
}

/// Leaves enforcement running (pinned links) or removes every pin (`--no-pin`).
fn stop(pins: &PinDir, lifetime: datapath::LinkLifetime) {
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
