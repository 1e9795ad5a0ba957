//! `cargo xtask soak [--minutes N]`: the real agent under every kind of load at once for N
//! minutes (default 10), watching that nothing grows and nothing breaks.
//!
//! A `node` namespace routes between three workloads (`client`, `server`, `outsider`); the
//! agent runs in the node, attached to every node link, as in the demo. For the whole run,
//! concurrently:
//! - new flows: short TCP echo exchanges and UDP round trips from client to server on
//!   allowed ports, at a steady rate, IPv4 and IPv6 alternating; each one is checked;
//! - long flows: TCP connections that exchange data all the time;
//! - denied probes: TCP and UDP to ports the server's policy does not allow, and TCP from
//!   the unlabelled outsider; each must be dropped;
//! - a policy push every second (`ztctl policy apply`), alternating two equivalent
//!   policies (other rule order, same verdicts), so every push switches generations;
//! - metrics scrapes from inside the node namespace;
//! - `ztctl flows --follow`, whose output lines are counted.
//!
//! Agent RSS (VmRSS) and conntrack occupancy are sampled every 10 s; the start figures are
//! taken after a warm-up (60 s, or 10 % of a shorter run), the end figures just before the
//! load stops. The result is a table and `target/soak/results.json`. The run fails (exit 1)
//! if any check failed; RSS and occupancy drift beyond ±5 % is reported, not fatal.
//!
//! Everything it creates (namespaces, links, bpffs mount, scratch files, processes) is
//! owned by guards and removed on exit, on failure and on Ctrl-C.

use std::{
    fmt::Write as _,
    fs,
    io::{Read, Seek, SeekFrom, Write},
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::Command,
    sync::{
        Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use serde_json::json;
use zt_tests::{
    BpfFs, ConnError, Family, NsProcess, Scratch, Star, TcpEchoServer, UdpEchoServer,
    command::run_command,
    metrics::{self, Metrics},
    tcp_connect, tcp_exchange, topology, udp_roundtrip,
};

use crate::shell;

/// Allowed: short TCP flows (echo).
const PORT_SHORT: u16 = 8080;
/// Allowed: long TCP flows (echo).
const PORT_LONG: u16 = 8081;
/// Allowed: UDP round trips (echo).
const PORT_UDP: u16 = 5353;
/// Forbidden by the server's policy; an echo server listens, so a leak would be answered.
const PORT_DENIED_TCP: u16 = 9090;
/// Forbidden by the server's policy; an echo server listens.
const PORT_DENIED_UDP: u16 = 9091;
/// The metrics endpoint, on the node namespace's own loopback.
const METRICS: &str = "127.0.0.1:9464";

/// Short TCP exchanges started per second (and as many UDP round trips).
const NEW_FLOWS_PER_SECOND: u32 = 10;
/// Long TCP connections held open for the whole run.
const LONG_FLOWS: usize = 4;
/// How often each long flow exchanges a round of data.
const LONG_ROUND_EVERY: Duration = Duration::from_millis(250);
const LONG_ROUND_BYTES: usize = 1024;
/// A denied probe is sent this often (rotating over the kinds of probe).
const PROBE_EVERY: Duration = Duration::from_millis(500);
/// How long a denied probe waits for an answer that must not come.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
const PUSH_EVERY: Duration = Duration::from_secs(1);
const SCRAPE_EVERY: Duration = Duration::from_secs(5);
const SAMPLE_EVERY: Duration = Duration::from_secs(10);
const PROGRESS_EVERY: Duration = Duration::from_secs(30);
/// Most warm-up; shorter runs warm up for 10 % of their length.
const MAX_WARMUP: Duration = Duration::from_secs(60);
/// Deadline of one allowed exchange (a SYN retransmission fits in it).
const FLOW_TIMEOUT: Duration = Duration::from_secs(5);
/// `ztctl flows --follow` must print something at least this often under the load.
const FOLLOW_STALL: Duration = Duration::from_secs(30);
/// Drift goal for RSS and occupancy, percent either way.
const DRIFT_GOAL_PERCENT: f64 = 5.0;
/// Error messages printed as they happen (all are counted).
const ERRORS_SHOWN: usize = 30;

/// Conntrack timeouts short enough that occupancy reaches its steady state within the
/// warm-up: the new-flow load then holds about rate × timeout entries.
const AGENT_CONFIG: &str =
    "[conntrack]\nudp_timeout = \"20s\"\ntcp_closing_timeout = \"10s\"\nflow_update_interval = \"10s\"\n";

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Ctrl-C and SIGTERM end the run early through the normal path, so every guard runs.
fn catch_interrupts() {
    let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
    }
}

fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Counters shared by the load threads and the monitor.
#[derive(Default)]
struct Tally {
    tcp_ok: AtomicU64,
    tcp_failed: AtomicU64,
    udp_ok: AtomicU64,
    udp_failed: AtomicU64,
    long_rounds: AtomicU64,
    long_failed: AtomicU64,
    probes: AtomicU64,
    probes_leaked: AtomicU64,
    pushes_ok: AtomicU64,
    pushes_failed: AtomicU64,
    scrapes_ok: AtomicU64,
    scrapes_failed: AtomicU64,
    errors: AtomicU64,
    messages: Mutex<Vec<String>>,
}

impl Tally {
    fn error(&self, started: Instant, message: String) {
        let n = self.errors.fetch_add(1, Ordering::SeqCst) + 1;
        let line = format!("[{}] {message}", clock(started.elapsed()));
        if n as usize <= ERRORS_SHOWN {
            eprintln!("soak: ERROR {line}");
        } else if n as usize == ERRORS_SHOWN + 1 {
            eprintln!("soak: (further errors are counted, not printed)");
        }
        let mut messages = self.messages.lock().unwrap_or_else(|p| p.into_inner());
        if messages.len() < ERRORS_SHOWN {
            messages.push(line);
        }
    }

    fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::SeqCst)
    }

    fn flows_opened(&self) -> u64 {
        [&self.tcp_ok, &self.tcp_failed, &self.udp_ok, &self.udp_failed].iter().map(|c| Self::get(c)).sum()
    }

    fn flows_failed(&self) -> u64 {
        Self::get(&self.tcp_failed) + Self::get(&self.udp_failed)
    }

    /// Allowed traffic that did not get through: failed new flows and long-flow rounds.
    fn allowed_dropped(&self) -> u64 {
        self.flows_failed() + Self::get(&self.long_failed)
    }
}

/// What one scrape says about the agent.
#[derive(Clone, Copy, Debug, Default)]
struct Gauges {
    conntrack: f64,
    conntrack_capacity: f64,
    ringbuf_lost: f64,
    budget_lost: f64,
    pipeline_dropped: f64,
    log_write_errors: f64,
    generation: f64,
    pushes_applied: f64,
}

impl Gauges {
    fn from(m: &Metrics) -> anyhow::Result<Gauges> {
        let need = |name: &str, labels: &[(&str, &str)]| {
            m.sum(name, labels).with_context(|| format!("the metrics have no {name}{labels:?}"))
        };
        Ok(Gauges {
            conntrack: need("zt_map_entries", &[("map", "conntrack")])?,
            conntrack_capacity: need("zt_map_capacity_entries", &[("map", "conntrack")])?,
            ringbuf_lost: m.sum("zt_flow_events_lost_total", &[("cause", "ringbuf")]).unwrap_or(0.0),
            budget_lost: m.sum("zt_flow_events_lost_total", &[("cause", "budget")]).unwrap_or(0.0),
            pipeline_dropped: need("zt_flow_pipeline_records_dropped_total", &[])?,
            log_write_errors: need("zt_flow_log_write_errors_total", &[])?,
            generation: need("zt_policy_generation", &[])?,
            pushes_applied: m.sum("zt_policy_pushes_total", &[("outcome", "applied")]).unwrap_or(0.0),
        })
    }

    fn lost(&self) -> f64 {
        self.ringbuf_lost + self.pipeline_dropped
    }
}

/// RSS and occupancy at one moment.
#[derive(Clone, Copy, Debug)]
struct Sample {
    at: Duration,
    rss_kib: u64,
    gauges: Gauges,
}

pub fn run(minutes: f64) -> anyhow::Result<()> {
    if !(minutes.is_finite() && minutes > 0.0 && minutes <= 24.0 * 60.0) {
        bail!("--minutes must be more than 0 and at most 1440, not {minutes}");
    }
    // SAFETY: no arguments.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the soak creates network namespaces and loads eBPF programs; run it as root");
    }
    let duration = Duration::from_secs_f64(minutes * 60.0);
    let warmup = MAX_WARMUP.min(duration / 10);
    catch_interrupts();

    let root = shell::workspace_root();
    let agent_bin = root.join("target/release/zt-agent");
    let ztctl_bin = root.join("target/release/ztctl");
    for bin in [&agent_bin, &ztctl_bin] {
        if !bin.is_file() {
            bail!("{} is missing; run cargo xtask build", bin.display());
        }
    }

    // Declaration order is the reverse of drop order: processes stop before their servers,
    // bpffs and network go away.
    let star =
        topology::star_with_labels(&["client", "server", "outsider"]).context("cannot build the soak network")?;
    let scratch = Scratch::new("soak")?;
    let bpffs = BpfFs::mount()?;
    let client = &star.workload("client").host;
    let server = &star.workload("server").host;
    let outsider = &star.workload("outsider").host;

    let endpoints = scratch.write("endpoints.yaml", endpoints(&star))?;
    let policies = [scratch.write("a.yaml", policy(false))?, scratch.write("b.yaml", policy(true))?];
    let config = scratch.write("soak.toml", AGENT_CONFIG)?;
    let flow_log = scratch.join("flows.log");
    let socket = scratch.join("agent.sock");

    let mut servers = Vec::new();
    let mut udp_servers = Vec::new();
    for family in Family::ALL {
        for port in [PORT_SHORT, PORT_LONG, PORT_DENIED_TCP] {
            servers.push(TcpEchoServer::start(&server.ns, server.socket(family, port))?);
        }
        for port in [PORT_UDP, PORT_DENIED_UDP] {
            udp_servers.push(UdpEchoServer::start(&server.ns, server.socket(family, port))?);
        }
    }

    let mut cmd = Command::new(&agent_bin);
    cmd.arg("run").arg("--config").arg(&config);
    for iface in star.node_ifaces() {
        cmd.args(["--iface", iface]);
    }
    cmd.args(["--labels", "role=node", "--no-pin", "--metrics", METRICS])
        .arg("--policy")
        .arg(&endpoints)
        .arg("--policy")
        .arg(&policies[0])
        .arg("--socket")
        .arg(&socket)
        .arg("--state-dir")
        .arg(scratch.join("state"))
        .arg("--bpffs")
        .arg(bpffs.path().join("zt"))
        .arg("--flow-log")
        .arg(&flow_log);
    let mut agent = NsProcess::spawn(&star.node, &cmd, scratch.path())?;
    let ready = agent.wait_for_stderr(|l| l.contains("zt-agent: ready"), Duration::from_secs(30))?;
    println!("soak: {}", ready.trim());
    let agent_pid = agent.pid();

    let mut follow_cmd = Command::new(&ztctl_bin);
    follow_cmd.arg("--socket").arg(&socket).args(["-o", "json", "flows", "--follow"]);
    let mut follow = NsProcess::spawn(&star.node, &follow_cmd, scratch.path())?;
    let follow_out = follow.stdout_path().to_path_buf();

    let metrics_addr: SocketAddr = METRICS.parse().expect("a socket address");
    let scrape = || -> anyhow::Result<Gauges> {
        let m = metrics::scrape(&star.node, metrics_addr, Duration::from_secs(10))?;
        Gauges::from(&m)
    };

    println!(
        "soak: {} of load (warm-up {}: {}), agent pid {agent_pid}, node namespace {}",
        clock(duration),
        clock(warmup),
        if warmup == MAX_WARMUP {
            "60 s, the smaller of 60 s and 10 % of the run"
        } else {
            "10 % of the run, less than 60 s"
        },
        star.node.name()
    );
    println!(
        "soak: new flows {NEW_FLOWS_PER_SECOND}/s TCP + {NEW_FLOWS_PER_SECOND}/s UDP, {LONG_FLOWS} long TCP flows, a denied probe every {} ms, a push every {} s, a scrape every {} s, samples every {} s",
        PROBE_EVERY.as_millis(),
        PUSH_EVERY.as_secs(),
        SCRAPE_EVERY.as_secs(),
        SAMPLE_EVERY.as_secs()
    );

    let tally = Tally::default();
    let stop = AtomicBool::new(false);
    let started = Instant::now();
    let mut samples: Vec<Sample> = Vec::new();
    let mut start_sample: Option<Sample> = None;
    let mut end_sample: Option<Sample> = None;
    let mut follow_lines = LineCounter::new(follow_out.clone());
    let mut follow_exited = false;
    let mut agent_exited = false;

    thread::scope(|scope| {
        let (tally, stop) = (&tally, &stop);
        // (a) new flows: TCP and UDP, each on its own paced thread.
        scope.spawn(move || {
            paced(stop, NEW_FLOWS_PER_SECOND, |i| {
                let family = if i % 2 == 0 { Family::V4 } else { Family::V6 };
                let to = server.socket(family, PORT_SHORT);
                match tcp_exchange(&client.ns, to, 512, FLOW_TIMEOUT) {
                    Ok(()) => {
                        tally.tcp_ok.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(e) => {
                        tally.tcp_failed.fetch_add(1, Ordering::SeqCst);
                        tally.error(started, format!("allowed TCP flow to {to} failed: {e}"));
                    }
                }
            })
        });
        scope.spawn(move || {
            paced(stop, NEW_FLOWS_PER_SECOND, |i| {
                let family = if i % 2 == 0 { Family::V4 } else { Family::V6 };
                let to = server.socket(family, PORT_UDP);
                let payload = format!("soak udp {i}");
                if udp_roundtrip(&client.ns, to, payload.as_bytes(), FLOW_TIMEOUT) {
                    tally.udp_ok.fetch_add(1, Ordering::SeqCst);
                } else {
                    tally.udp_failed.fetch_add(1, Ordering::SeqCst);
                    tally.error(started, format!("allowed UDP round trip to {to} got no answer"));
                }
            })
        });
        // (b) long flows.
        for n in 0..LONG_FLOWS {
            let family = if n % 2 == 0 { Family::V4 } else { Family::V6 };
            let to = server.socket(family, PORT_LONG);
            scope.spawn(move || long_flow(&client.ns, to, stop, tally, started));
        }
        // (c) denied probes.
        scope.spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let round = Instant::now();
                let (what, leaked) = match i % 3 {
                    0 => {
                        let to = server.socket(Family::ALL[(i / 3 % 2) as usize], PORT_DENIED_TCP);
                        (format!("client -> {to} TCP"), tcp_leaked(tcp_connect(&client.ns, to, PROBE_TIMEOUT)))
                    }
                    1 => {
                        let to = server.socket(Family::ALL[(i / 3 % 2) as usize], PORT_DENIED_UDP);
                        (format!("client -> {to} UDP"), udp_roundtrip(&client.ns, to, b"soak probe", PROBE_TIMEOUT))
                    }
                    _ => {
                        let to = server.socket(Family::V4, PORT_SHORT);
                        (format!("outsider -> {to} TCP"), tcp_leaked(tcp_connect(&outsider.ns, to, PROBE_TIMEOUT)))
                    }
                };
                tally.probes.fetch_add(1, Ordering::SeqCst);
                if leaked {
                    tally.probes_leaked.fetch_add(1, Ordering::SeqCst);
                    tally.error(started, format!("denied probe {what} got through"));
                }
                i += 1;
                sleep_until(stop, round + PROBE_EVERY);
            }
        });
        // (d) a push every second, alternating the two equivalent policies.
        scope.spawn(move || {
            let mut i = 1usize;
            while !stop.load(Ordering::SeqCst) {
                let round = Instant::now();
                let file = &policies[i % 2];
                let mut push = Command::new(&ztctl_bin);
                push.arg("--socket").arg(&socket).args(["policy", "apply"]).arg(file);
                match run_command(&mut push, Duration::from_secs(30)) {
                    Ok(out) if out.status.success() => {
                        tally.pushes_ok.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(out) => {
                        tally.pushes_failed.fetch_add(1, Ordering::SeqCst);
                        let why = String::from_utf8_lossy(&out.stderr).trim().to_string();
                        tally.error(started, format!("push of {} failed ({}): {why}", file.display(), out.status));
                    }
                    Err(e) => {
                        tally.pushes_failed.fetch_add(1, Ordering::SeqCst);
                        tally.error(started, format!("push of {} failed: {e}", file.display()));
                    }
                }
                i += 1;
                sleep_until(stop, round + PUSH_EVERY);
            }
        });

        // The monitor: scrapes, samples, the follower, progress, the end of the run.
        let mut last_scrape: Option<Gauges> = None;
        let mut next_scrape = Duration::ZERO;
        let mut next_sample = Duration::ZERO;
        let mut next_progress = PROGRESS_EVERY;
        let mut follow_seen = (0u64, Duration::ZERO);
        loop {
            let now = started.elapsed();
            if interrupted() {
                eprintln!("soak: interrupted at {}; stopping the load and removing everything", clock(now));
                break;
            }
            if !agent_exited && matches!(agent.try_status(), Ok(Some(_))) {
                agent_exited = true;
                let status = agent.try_status().ok().flatten().map(|s| s.to_string()).unwrap_or_default();
                tally.error(
                    started,
                    format!("the agent exited ({status}): {}", zt_tests::process::tail(agent.stderr_path(), 5)),
                );
                break;
            }
            if !follow_exited && matches!(follow.try_status(), Ok(Some(_))) {
                follow_exited = true;
                tally.error(
                    started,
                    format!("ztctl flows --follow exited: {}", zt_tests::process::tail(follow.stderr_path(), 5)),
                );
            }
            let lines = follow_lines.count();
            if lines > follow_seen.0 {
                follow_seen = (lines, now);
            } else if !follow_exited && now - follow_seen.1 >= FOLLOW_STALL {
                tally
                    .error(started, format!("ztctl flows --follow printed nothing for {}", clock(now - follow_seen.1)));
                follow_seen.1 = now;
            }

            let take_start = start_sample.is_none() && now >= warmup;
            let take_end = now >= duration;
            if now >= next_scrape || take_start || take_end {
                next_scrape = now + SCRAPE_EVERY;
                match scrape() {
                    Ok(g) => {
                        tally.scrapes_ok.fetch_add(1, Ordering::SeqCst);
                        last_scrape = Some(g);
                    }
                    Err(e) => {
                        tally.scrapes_failed.fetch_add(1, Ordering::SeqCst);
                        tally.error(started, format!("metrics scrape failed: {e:#}"));
                        last_scrape = None;
                    }
                }
            }
            if now >= next_sample || take_start || take_end {
                next_sample = now + SAMPLE_EVERY;
                match (rss_kib(agent_pid), last_scrape) {
                    (Ok(rss), Some(gauges)) => {
                        let sample = Sample { at: now, rss_kib: rss, gauges };
                        samples.push(sample);
                        if take_start {
                            start_sample = Some(sample);
                            println!(
                                "soak: [{}] warm-up over; start: RSS {}, conntrack {} entries",
                                clock(now),
                                mib(rss),
                                gauges.conntrack
                            );
                        }
                        if take_end {
                            end_sample = Some(sample);
                        }
                    }
                    (Err(e), _) => tally.error(started, format!("cannot read the agent's RSS: {e:#}")),
                    (_, None) => {}
                }
            }
            if take_end {
                break;
            }
            if now >= next_progress {
                next_progress += PROGRESS_EVERY;
                let last = samples.last();
                println!(
                    "soak: [{}/{}] flows {} ({} failed), long rounds {}, probes {} ({} leaked), pushes {}/{} failed, scrapes {}, follow lines {}, RSS {}, conntrack {}, errors {}",
                    clock(now),
                    clock(duration),
                    tally.flows_opened(),
                    tally.flows_failed(),
                    Tally::get(&tally.long_rounds),
                    Tally::get(&tally.probes),
                    Tally::get(&tally.probes_leaked),
                    Tally::get(&tally.pushes_ok),
                    Tally::get(&tally.pushes_failed),
                    Tally::get(&tally.scrapes_ok),
                    lines,
                    last.map(|s| mib(s.rss_kib)).unwrap_or_else(|| "-".into()),
                    last.map(|s| s.gauges.conntrack.to_string()).unwrap_or_else(|| "-".into()),
                    Tally::get(&tally.errors),
                );
            }
            thread::sleep(Duration::from_millis(200));
        }
        stop.store(true, Ordering::SeqCst);
    });
    let elapsed = started.elapsed();
    let follow_total = follow_lines.count();

    // Stop the follower before the agent, so its end is not counted as a failure.
    let follow_status = follow.terminate()?;
    let agent_status = agent.terminate()?;
    drop(servers);
    drop(udp_servers);
    let flow_log_lines = count_lines(&flow_log);

    let report = Report {
        minutes,
        duration: elapsed,
        warmup,
        interrupted: interrupted(),
        tally: &tally,
        samples: &samples,
        start: start_sample,
        // An interrupted run ends at its last sample.
        end: end_sample.or_else(|| samples.last().copied().filter(|_| start_sample.is_some())),
        follow_lines: follow_total,
        flow_log_lines,
    };
    let text = report.table();
    print!("{text}");
    let out_dir = root.join("target/soak");
    fs::create_dir_all(&out_dir).with_context(|| format!("cannot create {}", out_dir.display()))?;
    let json_path = out_dir.join("results.json");
    let mut json = report.json();
    json["agent_exit"] = json!(agent_status.to_string());
    json["follow_exit"] = json!(follow_status.to_string());
    fs::write(&json_path, serde_json::to_string_pretty(&json)? + "\n")
        .with_context(|| format!("cannot write {}", json_path.display()))?;
    println!("soak: results in {}", json_path.display());

    if report.interrupted {
        bail!("interrupted after {}; figures above are partial", clock(elapsed));
    }
    let (errors, dropped) = (Tally::get(&tally.errors), tally.allowed_dropped());
    if errors > 0 || dropped > 0 || agent_exited {
        bail!("{errors} error(s), {dropped} allowed flow(s) dropped");
    }
    Ok(())
}

/// Calls `f(i)` `per_second` times a second until `stop`; a slow call delays the next ones
/// instead of causing a burst.
fn paced(stop: &AtomicBool, per_second: u32, mut f: impl FnMut(u64)) {
    let every = Duration::from_secs(1) / per_second;
    let mut i = 0u64;
    let mut next = Instant::now();
    while !stop.load(Ordering::SeqCst) {
        f(i);
        i += 1;
        next = (next + every).max(Instant::now());
        sleep_until(stop, next);
    }
}

/// Sleeps until `when`, waking early when `stop` is set.
fn sleep_until(stop: &AtomicBool, when: Instant) {
    while !stop.load(Ordering::SeqCst) {
        let left = when.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        thread::sleep(left.min(Duration::from_millis(100)));
    }
}

/// A TCP probe leaked if anything answered it: a connection, or a RST from the server's stack.
fn tcp_leaked(result: Result<(), ConnError>) -> bool {
    matches!(result, Ok(()) | Err(ConnError::Refused | ConnError::Reset(_) | ConnError::Mismatch { .. }))
}

/// One long TCP connection exchanging a round of data every [`LONG_ROUND_EVERY`] until
/// `stop`. A failed round is an error; the flow then reconnects and goes on.
fn long_flow(ns: &zt_tests::Netns, to: SocketAddr, stop: &AtomicBool, tally: &Tally, started: Instant) {
    let mut stream: Option<TcpStream> = None;
    let mut round = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let at = Instant::now();
        if stream.is_none() {
            match ns.try_run_in(|| TcpStream::connect_timeout(&to, FLOW_TIMEOUT)) {
                Ok(Ok(s)) => stream = Some(s),
                Ok(Err(e)) => {
                    tally.long_failed.fetch_add(1, Ordering::SeqCst);
                    tally.error(started, format!("long flow to {to}: cannot connect: {e}"));
                }
                Err(e) => {
                    tally.long_failed.fetch_add(1, Ordering::SeqCst);
                    tally.error(started, format!("long flow to {to}: {e}"));
                }
            }
        }
        if let Some(s) = stream.as_mut() {
            match echo_round(s, round) {
                Ok(()) => {
                    tally.long_rounds.fetch_add(1, Ordering::SeqCst);
                }
                Err(e) => {
                    tally.long_failed.fetch_add(1, Ordering::SeqCst);
                    let local = s.local_addr().map(|a| a.to_string()).unwrap_or_default();
                    tally.error(started, format!("long flow {local} -> {to}, round {round}: {e}"));
                    stream = None;
                }
            }
        }
        round += 1;
        sleep_until(stop, at + LONG_ROUND_EVERY);
    }
}

/// Writes [`LONG_ROUND_BYTES`] that depend on the round and reads the same bytes back.
fn echo_round(stream: &mut TcpStream, round: u64) -> std::io::Result<()> {
    let sent: Vec<u8> = (0..LONG_ROUND_BYTES).map(|i| (i as u64).wrapping_mul(31).wrapping_add(round) as u8).collect();
    stream.set_write_timeout(Some(FLOW_TIMEOUT))?;
    stream.set_read_timeout(Some(FLOW_TIMEOUT))?;
    stream.write_all(&sent)?;
    let mut got = vec![0u8; LONG_ROUND_BYTES];
    stream.read_exact(&mut got)?;
    if got != sent {
        return Err(std::io::Error::other("the echo differs from what was sent"));
    }
    Ok(())
}

/// Counts the lines of a growing file, reading only what was added since the last call.
struct LineCounter {
    path: PathBuf,
    offset: u64,
    lines: u64,
}

impl LineCounter {
    fn new(path: PathBuf) -> Self {
        LineCounter { path, offset: 0, lines: 0 }
    }

    fn count(&mut self) -> u64 {
        if let Ok(mut file) = fs::File::open(&self.path)
            && file.seek(SeekFrom::Start(self.offset)).is_ok()
        {
            let mut fresh = Vec::new();
            if let Ok(n) = file.read_to_end(&mut fresh) {
                self.offset += n as u64;
                self.lines += fresh.iter().filter(|&&b| b == b'\n').count() as u64;
            }
        }
        self.lines
    }
}

fn count_lines(path: &Path) -> u64 {
    LineCounter::new(path.to_path_buf()).count()
}

/// The agent's resident set size, from /proc/PID/status.
fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).with_context(|| format!("no /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS line")
}

fn endpoints(star: &Star) -> String {
    let mut text = String::new();
    for name in ["client", "server"] {
        let host = &star.workload(name).host;
        let _ = write!(
            text,
            "apiVersion: zt/v1\nkind: Endpoint\nmetadata: {{name: {name}}}\nspec:\n  addresses: [\"{}\", \"{}\"]\n  labels: {{app: {name}}}\n---\n",
            host.v4, host.v6
        );
    }
    text
}

/// The soak's policies. Both variants give every flow the same verdict; `reordered` lists
/// the rules and ports in another order, so pushing it makes a new revision whose policy
/// entries differ, and every push switches generations.
fn policy(reordered: bool) -> String {
    let tcp_allowed = if reordered {
        format!("[{{protocol: TCP, port: {PORT_LONG}}}, {{protocol: TCP, port: {PORT_SHORT}}}]")
    } else {
        format!("[{{protocol: TCP, port: {PORT_SHORT}}}, {{protocol: TCP, port: {PORT_LONG}}}]")
    };
    let udp_allowed = format!("[{{protocol: UDP, port: {PORT_UDP}}}]");
    let rules = |peer: &str| {
        let tcp = format!("    - {peer}: [{{selector: {{app: PEER}}}}]\n      ports: {tcp_allowed}\n");
        let udp = format!("    - {peer}: [{{selector: {{app: PEER}}}}]\n      ports: {udp_allowed}\n");
        if reordered { udp + &tcp } else { tcp + &udp }
    };
    // The client may send to the denied ports too, so the server's ingress policy is what
    // drops those probes (on the server's link, after crossing the node).
    let denied_too = format!(
        "    - to: [{{selector: {{app: server}}}}]\n      ports: [{{protocol: TCP, port: {PORT_DENIED_TCP}}}, {{protocol: UDP, port: {PORT_DENIED_UDP}}}]\n"
    );
    format!(
        "apiVersion: zt/v1\nkind: Policy\nmetadata: {{name: soak-server}}\nspec:\n  selector: {{app: server}}\n  ingress:\n{}---\napiVersion: zt/v1\nkind: Policy\nmetadata: {{name: soak-client}}\nspec:\n  selector: {{app: client}}\n  egress:\n{}{denied_too}",
        rules("from").replace("PEER", "client"),
        rules("to").replace("PEER", "server"),
    )
}

struct Report<'a> {
    minutes: f64,
    duration: Duration,
    warmup: Duration,
    interrupted: bool,
    tally: &'a Tally,
    samples: &'a [Sample],
    start: Option<Sample>,
    end: Option<Sample>,
    follow_lines: u64,
    flow_log_lines: u64,
}

fn drift(start: f64, end: f64) -> Option<f64> {
    (start > 0.0).then(|| (end - start) / start * 100.0)
}

fn pct(d: Option<f64>) -> String {
    d.map(|d| format!("{d:+.1} %")).unwrap_or_else(|| "n/a".into())
}

impl Report<'_> {
    fn rss_max(&self) -> u64 {
        self.samples.iter().map(|s| s.rss_kib).max().unwrap_or(0)
    }

    fn conntrack_range(&self) -> (f64, f64) {
        let measured = self.samples.iter().filter(|s| self.start.is_some_and(|st| s.at >= st.at));
        measured.fold((f64::MAX, 0.0f64), |(lo, hi), s| (lo.min(s.gauges.conntrack), hi.max(s.gauges.conntrack)))
    }

    fn rss_drift(&self) -> Option<f64> {
        drift(self.start?.rss_kib as f64, self.end?.rss_kib as f64)
    }

    fn conntrack_drift(&self) -> Option<f64> {
        drift(self.start?.gauges.conntrack, self.end?.gauges.conntrack)
    }

    /// The first sample at or after the middle of the measured window: drift from there to
    /// the end tells a one-off rise during the first half (a bounded buffer filling) from a
    /// steady climb, which shows in both halves.
    fn middle(&self) -> Option<Sample> {
        let (start, end) = (self.start?, self.end?);
        let mid = start.at + (end.at - start.at) / 2;
        self.samples.iter().find(|s| s.at >= mid).copied()
    }

    fn rss_drift_second_half(&self) -> Option<f64> {
        drift(self.middle()?.rss_kib as f64, self.end?.rss_kib as f64)
    }

    fn conntrack_drift_second_half(&self) -> Option<f64> {
        drift(self.middle()?.gauges.conntrack, self.end?.gauges.conntrack)
    }

    /// Gauges at start and end, zero when absent.
    fn gauges(&self) -> (Gauges, Gauges) {
        (self.start.map(|s| s.gauges).unwrap_or_default(), self.end.map(|s| s.gauges).unwrap_or_default())
    }

    fn table(&self) -> String {
        let t = self.tally;
        let g = Tally::get;
        let (gs, ge) = self.gauges();
        let opt = |s: Option<Sample>, f: &dyn Fn(Sample) -> String| s.map(f).unwrap_or_else(|| "-".into());
        let mut rows: Vec<(String, String)> = vec![
            (
                "duration".into(),
                format!(
                    "{} of load (asked {} min), warm-up {}",
                    clock(self.duration),
                    self.minutes,
                    clock(self.warmup)
                ),
            ),
            (
                "new flows".into(),
                format!(
                    "{} opened, {} failed (TCP {} ok / {} failed, UDP {} ok / {} failed)",
                    t.flows_opened(),
                    t.flows_failed(),
                    g(&t.tcp_ok),
                    g(&t.tcp_failed),
                    g(&t.udp_ok),
                    g(&t.udp_failed)
                ),
            ),
            (
                "long flows".into(),
                format!("{LONG_FLOWS} connections, {} rounds, {} failed", g(&t.long_rounds), g(&t.long_failed)),
            ),
            ("denied probes".into(), format!("{} sent, {} leaked", g(&t.probes), g(&t.probes_leaked))),
            ("policy pushes".into(), format!("{} ok, {} failed", g(&t.pushes_ok), g(&t.pushes_failed))),
            (
                "generation".into(),
                format!(
                    "{} at start, {} at end ({} pushes applied between them, per zt_policy_pushes_total)",
                    gs.generation,
                    ge.generation,
                    ge.pushes_applied - gs.pushes_applied
                ),
            ),
            ("metrics scrapes".into(), format!("{} ok, {} failed", g(&t.scrapes_ok), g(&t.scrapes_failed))),
            (
                "follow lines".into(),
                format!(
                    "{} lines from ztctl flows --follow ({} in the flow log)",
                    self.follow_lines, self.flow_log_lines
                ),
            ),
            (
                "RSS".into(),
                format!(
                    "start {}, middle {}, end {}, max {} (whole run), drift {} (second half {})",
                    opt(self.start, &|s| mib(s.rss_kib)),
                    opt(self.middle(), &|s| mib(s.rss_kib)),
                    opt(self.end, &|s| mib(s.rss_kib)),
                    mib(self.rss_max()),
                    pct(self.rss_drift()),
                    pct(self.rss_drift_second_half())
                ),
            ),
            (
                "conntrack entries".into(),
                format!(
                    "start {}, middle {}, end {}, min/max after warm-up {}/{}, of {} capacity, drift {} (second half {})",
                    gs.conntrack,
                    opt(self.middle(), &|s| s.gauges.conntrack.to_string()),
                    ge.conntrack,
                    if self.start.is_some() { self.conntrack_range().0 } else { 0.0 },
                    self.conntrack_range().1,
                    ge.conntrack_capacity,
                    pct(self.conntrack_drift()),
                    pct(self.conntrack_drift_second_half())
                ),
            ),
            (
                "events lost".into(),
                format!(
                    "ring buffer {} -> {}, pipeline dropped {} -> {}, deny budget {} -> {}, flow-log write errors {} -> {}",
                    gs.ringbuf_lost,
                    ge.ringbuf_lost,
                    gs.pipeline_dropped,
                    ge.pipeline_dropped,
                    gs.budget_lost,
                    ge.budget_lost,
                    gs.log_write_errors,
                    ge.log_write_errors
                ),
            ),
            ("errors".into(), format!("{} (allowed flows dropped: {})", g(&t.errors), t.allowed_dropped())),
        ];
        if self.interrupted {
            rows.insert(0, ("INTERRUPTED".into(), "the run was cut short; the figures are partial".into()));
        }
        let mut out = String::from("\nSoak results\n");
        for (k, v) in rows {
            let _ = writeln!(out, "  {k:<18} {v}");
        }
        let messages = t.messages.lock().unwrap_or_else(|p| p.into_inner());
        if !messages.is_empty() {
            let _ = writeln!(out, "\nFirst errors:");
            for m in messages.iter() {
                let _ = writeln!(out, "  {m}");
            }
        }
        let _ = writeln!(out, "\nGoals (drift goals are reported, not fatal; errors and dropped flows fail the run):");
        for (goal, met, figure) in self.goals() {
            let _ = writeln!(out, "  {:<7} {goal} ({figure})", if met { "met" } else { "MISSED" });
        }
        out
    }

    fn goals(&self) -> Vec<(&'static str, bool, String)> {
        let within = |d: Option<f64>| d.is_some_and(|d| d.abs() <= DRIFT_GOAL_PERCENT);
        vec![
            ("RSS flat within ±5 %", within(self.rss_drift()), pct(self.rss_drift())),
            ("conntrack occupancy flat within ±5 %", within(self.conntrack_drift()), pct(self.conntrack_drift())),
            ("0 errors", Tally::get(&self.tally.errors) == 0, Tally::get(&self.tally.errors).to_string()),
            ("0 allowed flows dropped", self.tally.allowed_dropped() == 0, self.tally.allowed_dropped().to_string()),
        ]
    }

    fn json(&self) -> serde_json::Value {
        let t = self.tally;
        let g = Tally::get;
        let (gs, ge) = self.gauges();
        let goals: Vec<_> = self
            .goals()
            .into_iter()
            .map(|(goal, met, figure)| json!({"goal": goal, "met": met, "figure": figure}))
            .collect();
        json!({
            "minutes": self.minutes,
            "duration_seconds": self.duration.as_secs_f64(),
            "warmup_seconds": self.warmup.as_secs_f64(),
            "interrupted": self.interrupted,
            "new_flows": {
                "opened": t.flows_opened(), "failed": t.flows_failed(),
                "tcp_ok": g(&t.tcp_ok), "tcp_failed": g(&t.tcp_failed),
                "udp_ok": g(&t.udp_ok), "udp_failed": g(&t.udp_failed),
            },
            "long_flows": {"connections": LONG_FLOWS, "rounds": g(&t.long_rounds), "failed": g(&t.long_failed)},
            "denied_probes": {"sent": g(&t.probes), "leaked": g(&t.probes_leaked)},
            "pushes": {"ok": g(&t.pushes_ok), "failed": g(&t.pushes_failed), "generation_start": gs.generation, "generation_end": ge.generation},
            "scrapes": {"ok": g(&t.scrapes_ok), "failed": g(&t.scrapes_failed)},
            "follow_lines": self.follow_lines,
            "flow_log_lines": self.flow_log_lines,
            "rss_kib": {
                "start": self.start.map(|s| s.rss_kib), "end": self.end.map(|s| s.rss_kib),
                "middle": self.middle().map(|s| s.rss_kib),
                "max": self.rss_max(), "drift_percent": self.rss_drift(),
                "drift_second_half_percent": self.rss_drift_second_half(),
            },
            "conntrack": {
                "start": self.start.map(|s| s.gauges.conntrack), "end": self.end.map(|s| s.gauges.conntrack),
                "middle": self.middle().map(|s| s.gauges.conntrack),
                "capacity": ge.conntrack_capacity, "drift_percent": self.conntrack_drift(),
                "drift_second_half_percent": self.conntrack_drift_second_half(),
            },
            "events_lost": {
                "ringbuf": {"start": gs.ringbuf_lost, "end": ge.ringbuf_lost},
                "pipeline_dropped": {"start": gs.pipeline_dropped, "end": ge.pipeline_dropped},
                "deny_budget": {"start": gs.budget_lost, "end": ge.budget_lost},
                "flow_log_write_errors": {"start": gs.log_write_errors, "end": ge.log_write_errors},
                "lost_during_run": ge.lost() - gs.lost(),
            },
            "errors": g(&t.errors),
            "allowed_flows_dropped": t.allowed_dropped(),
            "first_errors": t.messages.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            "goals": goals,
            "samples": self.samples.iter().map(|s| json!({
                "seconds": s.at.as_secs_f64(), "rss_kib": s.rss_kib, "conntrack": s.gauges.conntrack,
            })).collect::<Vec<_>>(),
        })
    }
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// `4m05s`, `37s`.
fn clock(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 60 { format!("{}m{:02}s", s / 60, s % 60) } else { format!("{s}s") }
}
