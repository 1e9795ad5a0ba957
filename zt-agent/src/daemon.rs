//! `zt-agent run`: wires the agent core to the flow pipeline and the servers, then runs the
//! main loop until SIGINT or SIGTERM. The top layer below the binaries: it may use every
//! module, and no module uses it.
//!
//! Order: what can fail without touching the kernel is bound first (metrics port, flow log,
//! remote TLS files), then `agent::start` loads and attaches, then the API socket is bound,
//! the pipeline and servers are started, and only then is "ready" printed (and sent to
//! systemd). The loop re-reads the policy on SIGHUP and sweeps expired flows; quarantine
//! entries expire in their own task.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::Context;
use tokio::sync::mpsc;

use crate::{
    agent::{self, PushError, RunOptions, SharedState, quarantine},
    api,
    bpffs::{self, PinDir},
    datapath, detect,
    flows::{
        self,
        sink::{FlowLogTarget, FlowSink},
    },
    heap, kubernetes, metrics, notify,
};

/// Flow records waiting for the sink; beyond this the reader drops and counts.
const SINK_QUEUE: usize = 8192;
/// Findings (and alerts) waiting to be answered (and logged).
const FINDINGS_QUEUE: usize = 1024;
/// Where `new_peer` keeps its learnt edges, under the state directory.
const NEW_PEERS_FILE: &str = "new-peers.json";
/// How long `--kubernetes` tries to list the cluster before giving up at start.
const CLUSTER_SYNC_TIMEOUT: Duration = Duration::from_secs(60);
/// How often expired flows are swept from conntrack and host addresses re-read.
const SWEEP_INTERVAL: Duration = Duration::from_secs(2);

/// Runs the agent until SIGINT or SIGTERM.
pub fn run(mut opts: RunOptions) -> anyhow::Result<()> {
    let lifetime = opts.link_lifetime();
    // Resolved before anything else touches the kernel: pins that would not outlive the
    // agent must stop a pinned start here, with the reason.
    let pins = PinDir::open(
        &opts.bpffs,
        match lifetime {
            datapath::LinkLifetime::Pinned => bpffs::Lifetime::OutliveAgent,
            datapath::LinkLifetime::Process => bpffs::Lifetime::AgentOnly,
        },
    )?;
    // These fail before the kernel is touched: a taken port, an unwritable log, bad TLS files.
    let metrics_listener = metrics::bind(opts.metrics.as_deref())?;
    let flow_sink =
        FlowSink::open(opts.flow_log.as_deref().map(FlowLogTarget::parse).as_ref(), opts.flow_log_rotation.clone())?;
    let remote_listener = opts.remote.as_ref().map(api::remote::bind).transpose()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    // --kubernetes: the whole cluster is listed before anything is attached, so the first
    // packet is judged by the cluster's policy as it is now.
    let synced = match &opts.kubernetes {
        Some(k) => {
            let endpoint = kubernetes::endpoint(k)?;
            let started = std::time::Instant::now();
            let synced = runtime.block_on(kubernetes::sync::initial_sync(&endpoint, CLUSTER_SYNC_TIMEOUT))?;
            eprintln!(
                "zt-agent: kubernetes: node {}: listed {} from {endpoint:?} in {:.0} ms",
                k.node,
                synced.cluster.summary(),
                started.elapsed().as_secs_f64() * 1e3
            );
            Some(synced)
        }
        None => None,
    };
    let cluster_sources = synced.as_ref().map(|s| s.cluster.take().0);
    // --kubernetes without --iface: this node's pod links, now and as they come and go.
    let pod_links = match &opts.kubernetes {
        Some(k) if opts.ifaces.is_empty() => {
            let found = kubernetes::links::pod_links(&k.pod_iface_patterns);
            opts.ifaces = found.values().cloned().collect();
            Some((k.pod_iface_patterns.clone(), found))
        }
        _ => None,
    };
    let (mut state, dp, adopted) = agent::start(opts, &pins, cluster_sources)?;
    // Bound before "ready", so ready means ztctl works.
    let api_socket = match api::ApiSocket::bind(&state.options().socket) {
        Ok(socket) => socket,
        Err(e) => {
            drop((state, dp));
            agent::stop(&pins, lifetime);
            return Err(e.into());
        }
    };
    state.record_startup();
    // Start-up compiled the policy; what that freed goes back to the system.
    heap::release();
    let ring = state.take_events().expect("events ring taken once");
    let crossings = state.take_detect_events().expect("detector ring taken once");
    let new_peers = detect::new_peer::NewPeers::open(
        state.options().detect.new_peer,
        Some(state.options().state_dir.join(NEW_PEERS_FILE)),
        state.telemetry().new_peer_bytes.clone(),
    );
    let ctx = state.flow_context().clone();
    let pipeline = state.pipeline().clone();
    let sweep_drops = pipeline.clone();
    let history = state.flow_history().clone();
    let edges = state.edges().clone();
    let telemetry = state.telemetry().clone();
    if let Some(synced) = &synced {
        let _ = telemetry.kubernetes.set(synced.stats.clone());
    }
    let ready = agent::ready_line(&state, adopted);
    let datapath_config = state.datapath_config();
    let xdp_mode = state.options().xdp_mode;
    let shared: SharedState = Arc::new(Mutex::new(state));
    let dp = Arc::new(Mutex::new(dp));
    let stop_links = Arc::new(std::sync::atomic::AtomicBool::new(false));

    let result: anyhow::Result<()> = runtime.block_on(async {
        let (tx, rx) = mpsc::channel(SINK_QUEUE);
        let reader = tokio::spawn(flows::reader::run(ring, ctx.clone(), tx.clone(), pipeline));
        // Expired flows: walked on the sweep's own thread, off the state lock and the
        // async workers; their END records join the pipeline like kernel events.
        let sweeper = {
            let (tx, ctx) = (tx.clone(), ctx.clone());
            flows::sweep::Sweeper::start(pins.path(), datapath_config, SWEEP_INTERVAL, move |ended| {
                let names = ctx.snapshot();
                for ev in ended {
                    if tx.try_send(flows::FlowRecord::from_event(&ev, &names)).is_err() {
                        // A full queue drops, as for kernel events: counted, never silent.
                        sweep_drops.records_dropped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            })?
        };
        shared.lock().expect("agent state").count_conntrack_by(sweeper.occupancy());
        // Detection: the kernel's crossings and the learnt edges become findings; the core
        // answers each (alert, quarantine) and the alert joins the flow log.
        let (found_tx, found_rx) = mpsc::channel(FINDINGS_QUEUE);
        let (alert_tx, alert_rx) = mpsc::channel(FINDINGS_QUEUE);
        let crossing_reader = tokio::spawn(detect::crossing::run(crossings, found_tx.clone()));
        let (stop_learning, learning_stopped) = tokio::sync::oneshot::channel();
        let learner = tokio::spawn(detect::new_peer::run(new_peers, history.subscribe(), found_tx, learning_stopped));
        let responder = tokio::spawn(respond(shared.clone(), found_rx, alert_tx));
        let sink = tokio::spawn(flow_sink.run(
            rx,
            alert_rx,
            history,
            telemetry.rule_hits.clone(),
            Some(edges.clone()),
            telemetry.flow_log.clone(),
        ));
        let saver = tokio::spawn(save_edges_loop(edges.clone()));
        if let Some(listener) = metrics_listener {
            metrics::serve(listener, metrics::Sources { state: shared.clone(), queue: tx.downgrade() })?;
        }
        tokio::spawn(quarantine::expire_loop(shared.clone()));
        api::serve(api_socket, shared.clone())?;
        if let Some(synced) = synced {
            let stats = synced.stats.clone();
            let cluster = synced.watch();
            tokio::spawn(kubernetes::sync::push_loop(cluster, stats, shared.clone()));
        }
        let links = match pod_links {
            Some((patterns, known)) => Some(kubernetes::links::follow(
                patterns,
                known,
                stop_links.clone(),
                follow_pod_link(dp.clone(), shared.clone(), xdp_mode),
            )?),
            None => None,
        };
        if let Some(remote) = remote_listener {
            api::remote::serve(remote, shared.clone())?;
        }
        eprintln!("{ready}");
        notify::notify(notify::READY);

        let mut refresh = tokio::time::interval(SWEEP_INTERVAL);
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut hup = signal(SignalKind::hangup())?;
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                _ = term.recv() => break,
                _ = hup.recv() => {
                    // Compiling blocks: on the blocking pool, never on an async worker.
                    let shared = shared.clone();
                    tokio::task::spawn_blocking(move || reload(&shared));
                }
                _ = refresh.tick() => {
                    let shared = shared.clone();
                    tokio::task::spawn_blocking(move || shared.lock().expect("agent state").refresh_host());
                }
            }
        }
        stop_links.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(links) = links {
            let _ = tokio::task::spawn_blocking(move || links.join()).await;
        }
        drop(sweeper);
        drop(tx);
        reader.abort();
        crossing_reader.abort();
        responder.abort();
        // The learner saves its edges when it stops.
        let _ = stop_learning.send(());
        let _ = tokio::time::timeout(Duration::from_secs(2), learner).await;
        // Let the sink write what it has; it ends when the last sender is gone.
        let _ = tokio::time::timeout(Duration::from_secs(2), sink).await;
        saver.abort();
        save_edges(&edges);
        Ok(())
    });
    drop(runtime);
    drop(shared);
    notify::notify(notify::STOPPING);
    drop(dp);
    agent::stop(&pins, lifetime);
    result
}

/// Saves the observed edges every `SAVE_INTERVAL` (when they changed), off the async workers.
async fn save_edges_loop(edges: Arc<flows::Edges>) {
    let mut tick = tokio::time::interval(flows::edges::SAVE_INTERVAL);
    tick.tick().await;
    loop {
        tick.tick().await;
        let edges = edges.clone();
        let _ = tokio::task::spawn_blocking(move || save_edges(&edges)).await;
    }
}

fn save_edges(edges: &flows::Edges) {
    if let Err(e) = edges.save() {
        log::warn!("cannot save the observed edges: {e}; they are kept in memory and saved again later");
    }
}

/// Attaches to a pod link that appeared and lets go of one that went.
fn follow_pod_link(
    dp: Arc<Mutex<datapath::Datapath>>,
    shared: SharedState,
    mode: datapath::XdpModeChoice,
) -> impl FnMut(kubernetes::links::LinkChange) + Send + 'static {
    use kubernetes::links::LinkChange;
    move |change| match change {
        LinkChange::Appeared { name, .. } => {
            let attached = dp.lock().expect("datapath").attach(&name, mode);
            match attached {
                Ok(a) => {
                    eprintln!("zt-agent: kubernetes: enforcing on pod link {name} ({}: {})", a.ingress, a.why);
                    shared.lock().expect("agent state").attached(a);
                }
                Err(e) => eprintln!("zt-agent: kubernetes: cannot attach to pod link {name}: {e}"),
            }
        }
        LinkChange::Gone { ifindex, name } => {
            if let Err(e) = dp.lock().expect("datapath").detach_gone(ifindex) {
                log::warn!("{e}");
            }
            if shared.lock().expect("agent state").detached(ifindex).is_some() {
                eprintln!("zt-agent: kubernetes: pod link {name} is gone");
            }
        }
    }
}

/// Answers findings one at a time (each locks the state briefly, off the async workers) and
/// hands each alert to the flow log.
async fn respond(
    shared: SharedState,
    mut found: mpsc::Receiver<detect::Finding>,
    alerts: mpsc::Sender<zt_api::alert::Alert>,
) {
    while let Some(finding) = found.recv().await {
        let shared = shared.clone();
        let answered = tokio::task::spawn_blocking(move || shared.lock().expect("agent state").respond(&finding)).await;
        if let Ok(alert) = answered
            && alerts.try_send(alert).is_err()
        {
            log::warn!("an alert could not be written to the flow log (queue full); it is kept for ztctl alerts");
        }
    }
}

/// SIGHUP: the `--policy` files become the running policy; compiled without the state
/// lock, like every change.
fn reload(shared: &SharedState) {
    let _one = agent::one_change_at_a_time();
    let job = shared.lock().expect("agent state").reload_job();
    let precompiled = job.map(agent::CompileJob::run);
    let mut s = shared.lock().expect("agent state");
    match s.reload_revision(precompiled) {
        Ok(swap) => eprintln!(
            "zt-agent: reloaded: enforcing generation {} ({} policies, {} entries written, {} removed)",
            swap.generation,
            s.active().compiled.policies.len(),
            swap.written,
            swap.removed
        ),
        Err(PushError::Rejected(r)) => eprintln!("zt-agent: reload rejected, the running policy is unchanged:\n{r}"),
        Err(e) => eprintln!("zt-agent: reload failed, the running policy is unchanged: {e}"),
    }
    let retired = s.take_retired();
    drop(s);
    drop(retired);
    heap::release();
}
