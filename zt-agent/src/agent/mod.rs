//! The daemon: `zt-agent run`.
//!
//! Start-up order matters for zero trust: the policy is validated and compiled first (a bad
//! policy never reaches the kernel), then the programs are loaded with their maps pinned,
//! the generation is written and switched, and only then are the programs attached — so
//! the first packet an interface sees is already judged by the complete policy. The agent
//! reports "ready" after that. On SIGINT/SIGTERM it detaches and removes its pins.

mod generation;
mod options;

use std::{sync::Arc, time::Duration};

use anyhow::{Context, bail};
use tokio::sync::mpsc;
use zt_common::config::Config;

pub use generation::{Prepared, Rejected, prepare};
pub use options::{DEFAULT_BPFFS, DEFAULT_STATE_DIR, RunOptions};

use crate::{
    bpffs,
    datapath::{self, Datapath, GenerationWriter},
    flows::{self, FlowContext, reader::PipelineStats, sink::FlowLogTarget},
    host,
    identity::{IdentityAllocator, Labels},
    policy::CompileSettings,
};

/// Flow records waiting for the sink; beyond this the reader drops and counts.
const SINK_QUEUE: usize = 8192;
/// How often expired flows are swept from conntrack and reported.
const SWEEP_INTERVAL: Duration = Duration::from_secs(2);

/// Runs the agent until SIGINT or SIGTERM.
pub fn run(opts: RunOptions) -> anyhow::Result<()> {
    if opts.ifaces.is_empty() {
        bail!("no interface given; pass --iface IF (repeat it for more interfaces)");
    }
    for iface in &opts.ifaces {
        datapath::ifindex_of(iface)?;
    }
    let host_labels = Labels::parse(&opts.labels)
        .map_err(|e| anyhow::anyhow!("--labels {:?}: {e}", opts.labels))?;
    let mut host = host::addresses().context("cannot list this host's addresses")?;
    let settings = CompileSettings {
        default_deny: opts.default_deny,
        host_labels,
        host_addresses: generation::host_ips(&host),
        ..CompileSettings::default()
    };
    let mut allocator = IdentityAllocator::new();
    let mut prepared = prepare(&opts.policy, &settings, &host, &mut allocator).map_err(|rejected| {
        anyhow::anyhow!("{rejected}\nthe policy was rejected ({} problem(s)); nothing was applied", rejected.0.len())
    })?;
    for w in &prepared.compiled.warnings {
        log::warn!("{w}");
    }

    bpffs::ensure(&opts.bpffs)?;
    let mut dp = Datapath::load(&opts.bpffs)?;
    let mut maps = dp.take_maps()?;
    let mut cfg = maps.read_config()?;
    let adopted = cfg.generation;
    let keep = cfg.generation;
    cfg = Config { generation: keep, ..Config::DEFAULT };
    maps.write_config(&cfg)?;
    let mut writer = GenerationWriter::adopt(&maps)?;
    let swap = writer.apply(&mut maps, &prepared.tables)?;

    let mut attached = Vec::new();
    for iface in &opts.ifaces {
        attached.push(dp.attach(iface, opts.xdp_mode)?);
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let (identities, policies) = generation::names(&prepared.compiled);
    let ctx = FlowContext::new(flows::context::Names { identities, policies, interfaces: host::interface_names() });
    let stats = Arc::new(PipelineStats::default());
    let ring = maps.events.take().expect("events ring taken once");

    let result: anyhow::Result<()> = runtime.block_on(async {
        let (tx, rx) = mpsc::channel(SINK_QUEUE);
        let reader = tokio::spawn(flows::reader::run(ring, ctx.clone(), tx.clone(), stats.clone()));
        let sink = opts.flow_log.as_deref().map(|t| tokio::spawn(flows::sink::run(FlowLogTarget::parse(t), rx)));

        let hooks: Vec<String> = attached.iter().map(|a| format!("{} ({})", a.iface, a.ingress)).collect();
        let failsafe: Vec<String> = settings.failsafe.iter().map(ToString::to_string).collect();
        eprintln!(
            "zt-agent: ready: enforcing generation {} ({} policies, {} identities{}) on {}; failsafe: {}",
            swap.generation,
            prepared.compiled.policies.len(),
            prepared.compiled.identities.len(),
            if adopted != 0 { format!(", adopted generation {adopted}") } else { String::new() },
            hooks.join(", "),
            if failsafe.is_empty() { "none".to_string() } else { failsafe.join(", ") },
        );

        let mut sweep = tokio::time::interval(SWEEP_INTERVAL);
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut hup = signal(SignalKind::hangup())?;
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                _ = term.recv() => break,
                _ = hup.recv() => {
                    // Re-read the policy paths. A rejected policy changes nothing.
                    match prepare(&opts.policy, &settings, &host, &mut allocator) {
                        Ok(next) => match writer.apply(&mut maps, &next.tables) {
                            Ok(swap) => {
                                let (identities, policies) = generation::names(&next.compiled);
                                ctx.update_policy(identities, policies);
                                for w in &next.compiled.warnings {
                                    log::warn!("{w}");
                                }
                                eprintln!(
                                    "zt-agent: reloaded: enforcing generation {} ({} policies, {} entries written, {} removed)",
                                    swap.generation, next.compiled.policies.len(), swap.written, swap.removed
                                );
                                prepared = next;
                            }
                            Err(e) => eprintln!("zt-agent: reload failed, the running policy is unchanged: {e}"),
                        },
                        Err(rejected) => eprintln!(
                            "zt-agent: reload rejected, the running policy is unchanged:\n{rejected}"
                        ),
                    }
                }
                _ = sweep.tick() => {
                    let now = flows::clock::monotonic_ns();
                    let names = ctx.snapshot();
                    for ev in flows::sweep::sweep(&mut maps.conntrack, &cfg, now) {
                        let _ = tx.try_send(flows::FlowRecord::from_event(&ev, &names));
                    }
                    // Addresses come and go (DHCP, SLAAC, link-local after link up): keep
                    // every one of them resolving to `host`.
                    match host::addresses() {
                        Ok(now_host) if now_host != host => {
                            let tables = generation::tables(&prepared.compiled, &now_host);
                            match writer.apply(&mut maps, &tables) {
                                Ok(swap) => {
                                    log::info!("host addresses changed; generation {}", swap.generation);
                                    host = now_host;
                                }
                                Err(e) => log::warn!("cannot update host addresses: {e}"),
                            }
                        }
                        Ok(_) => {}
                        Err(e) => log::warn!("cannot list host addresses: {e}"),
                    }
                }
            }
        }
        drop(tx);
        reader.abort();
        if let Some(sink) = sink {
            // Let the sink write what it has; it ends when the last sender is gone.
            let _ = tokio::time::timeout(Duration::from_secs(2), sink).await;
        }
        Ok(())
    });
    drop(maps);
    drop(dp);
    remove_pins(&opts.bpffs);
    eprintln!("zt-agent: stopped; programs detached");
    result
}

/// Removes the pinned maps (a clean stop leaves nothing behind).
fn remove_pins(dir: &std::path::Path) {
    for name in zt_common::map_names::ALL {
        let _ = std::fs::remove_file(dir.join(name));
    }
    let _ = std::fs::remove_dir(dir);
}
