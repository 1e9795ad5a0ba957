//! End-to-end tests of fail-static enforcement: the real `zt-agent` pins its attachments, so
//! killing it leaves the interface enforced, a new agent adopts the programs, maps and
//! conntrack without a gap, `zt-agent cleanup` removes it all, and `--no-pin` (or
//! `pin = false` in the config file) detaches on exit. Real TCP and UDP between the client
//! and server namespaces of a pair.

mod common;

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream, UdpSocket},
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::{self, JoinHandle},
    time::Duration,
};

use common::*;
use zt_tests::{
    ConnError, Family, Netns, TcpEchoServer, UdpEchoServer, bpffs::pin_hash_map, skip_unless_privileged, tcp_connect,
    workspace_binary,
};

/// Client may reach the server on TCP 8080; the server may send UDP to the client's 7000.
/// Everything else is denied in both directions (default deny).
fn policy() -> String {
    server_policy(
        "restart",
        "    - from: [{selector: {app: client}}]\n      ports: [{protocol: TCP, port: 8080}]\n",
        "    - to: [{selector: {app: client}}]\n      ports: [{protocol: UDP, port: 7000}]\n",
    )
}

/// Allowed TCP 8080 connects and denied TCP 9090 times out.
fn assert_enforced(a: &AgentNet, when: &str) {
    let open = TcpEchoServer::start(&a.net.server.ns, a.net.server.socket(Family::V4, 8080)).unwrap();
    let closed = TcpEchoServer::start(&a.net.server.ns, a.net.server.socket(Family::V4, 9090)).unwrap();
    tcp_connect(&a.net.client.ns, open.local_addr(), LONG).unwrap_or_else(|e| panic!("{when}: allowed TCP 8080: {e}"));
    match tcp_connect(&a.net.client.ns, closed.local_addr(), SHORT) {
        Err(ConnError::TimedOut) => {}
        other => panic!("{when}: TCP 9090 must still be dropped, got {other:?}"),
    }
}

/// Denied TCP 9090 connects: nothing enforces.
fn assert_unfiltered(a: &AgentNet, when: &str) {
    let closed = TcpEchoServer::start(&a.net.server.ns, a.net.server.socket(Family::V4, 9090)).unwrap();
    tcp_connect(&a.net.client.ns, closed.local_addr(), LONG)
        .unwrap_or_else(|e| panic!("{when}: nothing may filter: {e}"));
}

fn cleanup(a: &AgentNet) -> String {
    let out = Command::new(workspace_binary("zt-agent").unwrap())
        .args(["cleanup", "--bpffs"])
        .arg(a.pin_dir())
        .output()
        .expect("run zt-agent cleanup");
    assert!(out.status.success(), "cleanup exits 0: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn kill_9_leaves_the_programs_attached_and_pinned() {
    skip_unless_privileged!();
    let mut a = AgentNet::start(&policy(), &["--xdp-mode", "native"]);
    a.kill();
    assert_enforced(&a, "after kill -9");
    let pins = a.link_pins();
    assert!(pins.iter().any(|p| p.ends_with("-xdp-native")), "{pins:?}");
    assert!(pins.iter().any(|p| p.ends_with("-tc-egress")), "{pins:?}");
    assert!(a.pin_dir().join("ZT_CONNTRACK").exists(), "maps stay pinned");
}

/// Messages the server sends first on a connection the client opened, echoed back by the
/// client, round after round. The server speaking first matters: had conntrack been
/// flushed, its packet would be a new egress flow to the client's ephemeral port, which the
/// policy denies — so every round proves the flow's tracking survived.
struct PingPong {
    stop: Arc<AtomicBool>,
    rounds: Arc<AtomicU64>,
    worker: Option<JoinHandle<Result<u64, String>>>,
}

impl PingPong {
    fn start(client: &Netns, server: &Netns, addr: SocketAddr) -> PingPong {
        let listener = server.run_in(|| TcpListener::bind(addr)).expect("listen");
        let mut near = client.run_in(|| TcpStream::connect_timeout(&addr, LONG)).expect("allowed TCP 8080");
        let (mut far, _) = listener.accept().expect("accept");
        for s in [&near, &far] {
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            s.set_nodelay(true).unwrap();
        }
        let stop = Arc::new(AtomicBool::new(false));
        let rounds = Arc::new(AtomicU64::new(0));
        let (stop2, rounds2) = (stop.clone(), rounds.clone());
        let worker = thread::spawn(move || -> Result<u64, String> {
            let mut n = 0u64;
            while !stop2.load(Ordering::Relaxed) {
                let mut buf = [0u8; 8];
                far.write_all(&n.to_be_bytes()).map_err(|e| format!("round {n}: server send: {e}"))?;
                near.read_exact(&mut buf).map_err(|e| format!("round {n}: client receive: {e}"))?;
                near.write_all(&buf).map_err(|e| format!("round {n}: client send: {e}"))?;
                far.read_exact(&mut buf).map_err(|e| format!("round {n}: server receive: {e}"))?;
                if u64::from_be_bytes(buf) != n {
                    return Err(format!("round {n}: echoed {}", u64::from_be_bytes(buf)));
                }
                n += 1;
                rounds2.store(n, Ordering::Relaxed);
                thread::sleep(Duration::from_millis(10));
            }
            Ok(n)
        });
        PingPong { stop, rounds, worker: Some(worker) }
    }

    fn rounds(&self) -> u64 {
        self.rounds.load(Ordering::Relaxed)
    }

    /// Waits until `more` further rounds have completed (or the exchange failed).
    fn wait_rounds(&self, more: u64) {
        let target = self.rounds() + more;
        let deadline = std::time::Instant::now() + LONG;
        while self.rounds() < target
            && std::time::Instant::now() < deadline
            && !self.worker.as_ref().unwrap().is_finished()
        {
            thread::sleep(Duration::from_millis(10));
        }
    }

    fn finish(mut self) -> Result<u64, String> {
        self.stop.store(true, Ordering::Relaxed);
        self.worker.take().unwrap().join().expect("exchange thread")
    }
}

impl Drop for PingPong {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[test]
fn a_restarted_agent_adopts_the_pins_and_an_established_connection_never_fails() {
    skip_unless_privileged!();
    let mut a = AgentNet::start(&policy(), &[]);
    let exchange = PingPong::start(&a.net.client.ns, &a.net.server.ns, a.net.server.socket(Family::V4, 8080));
    exchange.wait_rounds(10);
    a.kill();
    exchange.wait_rounds(10);
    let before_restart = exchange.rounds();
    let ready = a.restart(&[]);
    assert!(ready.contains("adopted generation "), "{ready}");
    exchange.wait_rounds(20);
    let after = exchange.rounds() - before_restart;
    let total = exchange.finish().unwrap_or_else(|e| panic!("the connection failed across kill -9 and restart: {e}"));
    assert!(after >= 20, "{after} rounds after the restart (of {total})");
    assert_enforced(&a, "after the restart");
    let text = std::fs::read_to_string(a.agent().stderr_path()).unwrap();
    assert!(!text.contains("cannot adopt"), "every pin adopted:\n{text}");
}

#[test]
fn the_reply_to_a_flow_opened_before_the_restart_passes_without_a_rule() {
    skip_unless_privileged!();
    let mut a = AgentNet::start(&policy(), &[]);
    let peer = a.net.client.ns.run_in(|| UdpSocket::bind(a.net.client.socket(Family::V4, 7000))).unwrap();
    peer.set_read_timeout(Some(LONG)).unwrap();
    let local = a.net.server.ns.run_in(|| UdpSocket::bind((a.net.server.v4, 0))).unwrap();
    local.set_read_timeout(Some(SHORT)).unwrap();
    // The server opens the flow (egress UDP 7000 is allowed) under the first agent.
    local.send_to(b"request", a.net.client.socket(Family::V4, 7000)).unwrap();
    let (_, server_addr) = peer.recv_from(&mut [0u8; 64]).expect("request passes egress");
    a.kill();
    a.restart(&[]);
    // Only the reply direction speaks now: no ingress rule admits it, the tracked flow does.
    peer.send_to(b"reply", server_addr).unwrap();
    let mut buf = [0u8; 64];
    let (n, _) = local.recv_from(&mut buf).expect("the reply passes: conntrack survived the restart");
    assert_eq!(&buf[..n], b"reply");
    // A flow the client starts itself is still new, and denied.
    let stranger = a.net.client.ns.run_in(|| UdpSocket::bind(a.net.client.socket(Family::V4, 7001))).unwrap();
    stranger.send_to(b"unasked", local.local_addr().unwrap()).unwrap();
    assert!(local.recv_from(&mut buf).is_err(), "an unsolicited datagram is dropped");
}

#[test]
fn cleanup_detaches_everything_and_traffic_flows_unfiltered() {
    skip_unless_privileged!();
    let mut a = AgentNet::start(&policy(), &[]);
    a.kill();
    let summary = cleanup(&a);
    assert!(summary.contains("2 link(s) detached"), "{summary}");
    assert!(!a.pin_dir().exists(), "pin directory removed");
    assert_unfiltered(&a, "after cleanup");
    let again = cleanup(&a);
    assert!(again.contains("0 link(s) detached, 0 map pin(s) removed"), "{again}");
}

#[test]
fn sigterm_with_pinning_exits_leaving_enforcement_running() {
    skip_unless_privileged!();
    let mut a = AgentNet::start(&policy(), &[]);
    let status = a.agent().terminate().unwrap();
    assert!(status.success(), "clean exit: {status}");
    let text = std::fs::read_to_string(a.agent().stderr_path()).unwrap();
    assert!(text.contains("enforcement continues") && text.contains("zt-agent cleanup --bpffs"), "{text}");
    assert_enforced(&a, "after SIGTERM");
    assert_eq!(a.link_pins().len(), 2, "{:?}", a.link_pins());
}

#[test]
fn pin_false_in_the_config_file_detaches_on_sigterm() {
    skip_unless_privileged!();
    let scratch = zt_tests::Scratch::new("config").unwrap();
    let config = scratch.write("zt-agent.toml", "pin = false\nfailsafe = []\n").unwrap();
    let mut a = AgentNet::start(&policy(), &["--config", config.to_str().unwrap()]);
    assert!(a.wait_ready().contains("failsafe: none"));
    assert!(a.link_pins().is_empty(), "nothing pinned: {:?}", a.link_pins());
    assert!(a.agent().terminate().unwrap().success());
    assert!(!a.pin_dir().exists(), "every pin removed");
    assert_unfiltered(&a, "after SIGTERM without pinning");
}

#[test]
fn a_no_pin_agent_adopts_pinned_links_and_detaches_them_on_exit() {
    skip_unless_privileged!();
    let mut a = AgentNet::start(&policy(), &[]);
    a.kill();
    let ready = a.restart(&["--no-pin"]);
    assert!(ready.contains("adopted generation"), "{ready}");
    assert!(a.link_pins().is_empty(), "adopted links are unpinned: {:?}", a.link_pins());
    assert_enforced(&a, "while the --no-pin agent runs");
    assert!(a.agent().terminate().unwrap().success());
    assert!(!a.pin_dir().exists(), "every pin removed");
    assert_unfiltered(&a, "after the --no-pin agent stopped");
}

#[test]
fn a_restart_in_another_ingress_mode_replaces_the_stale_link() {
    skip_unless_privileged!();
    let mut a = AgentNet::start(&policy(), &["--xdp-mode", "generic"]);
    a.kill();
    let ready = a.restart(&["--xdp-mode", "off"]);
    assert!(ready.contains(&format!("{} (tc: --xdp-mode off)", a.net.server.iface)), "{ready}");
    let pins = a.link_pins();
    assert!(pins.iter().any(|p| p.ends_with("-tc-ingress")) && !pins.iter().any(|p| p.contains("xdp")), "{pins:?}");
    let link = a.net.server.ns.ip(["link", "show", "dev", &a.net.server.iface]).unwrap();
    let link = String::from_utf8_lossy(&link.stdout);
    assert!(!link.contains("xdp"), "the generic XDP program is gone: {link}");
    assert_enforced(&a, "after switching to TC ingress");
}

/// Datagrams a client sends every 10 ms to a denied UDP port until stopped; counts what
/// was sent and what came back.
struct DeniedProbes {
    stop: Arc<AtomicBool>,
    worker: Option<JoinHandle<(u64, u64)>>,
}

impl DeniedProbes {
    fn start(client: &Netns, to: SocketAddr) -> DeniedProbes {
        let socket = client.run_in(|| UdpSocket::bind("0.0.0.0:0")).expect("client UDP socket");
        socket.set_read_timeout(Some(Duration::from_millis(10))).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let worker = thread::spawn(move || {
            let (mut sent, mut answered) = (0u64, 0u64);
            let mut buf = [0u8; 64];
            while !stop2.load(Ordering::Relaxed) {
                if socket.send_to(b"probe", to).is_ok() {
                    sent += 1;
                }
                // The read timeout paces the probes at about one per 10 ms.
                if socket.recv_from(&mut buf).is_ok() {
                    answered += 1;
                }
            }
            (sent, answered)
        });
        DeniedProbes { stop, worker: Some(worker) }
    }

    fn finish(mut self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.worker.take().unwrap().join().unwrap()
    }
}

impl Drop for DeniedProbes {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Operators run the agent with `ip netns exec`, which gives it a private mount namespace
/// with a fresh /sys; a bpffs mounted there would vanish with the process and leave the
/// interface open after a crash. With the pins under the host's /sys/fs/bpf and nothing
/// mounted for it, the agent (started by the harness through `ip netns exec`) must pin
/// where the pins outlive it: across kill -9 and a restart 1 s later, not one probe to a
/// denied UDP port gets through, and the restarted agent adopts the pins.
#[test]
fn under_ip_netns_exec_kill_9_keeps_enforcing_and_the_restarted_agent_adopts_the_pins() {
    skip_unless_privileged!();
    let mut a = AgentNet::start_with_host_pins(&policy(), &[]);
    let echo = UdpEchoServer::start(&a.net.server.ns, a.net.server.socket(Family::V4, 7001)).unwrap();
    let probes = DeniedProbes::start(&a.net.client.ns, echo.local_addr());
    thread::sleep(Duration::from_millis(300));
    a.kill();
    assert!(a.pin_dir().join("ZT_CONFIG").exists(), "maps are pinned in the host's bpffs after kill -9");
    assert!(a.link_pins().iter().any(|p| p.ends_with("-tc-egress")), "{:?}", a.link_pins());
    assert_enforced(&a, "after kill -9");
    thread::sleep(Duration::from_secs(1));
    let ready = a.restart(&[]);
    assert!(ready.contains("adopted generation "), "{ready}");
    assert_enforced(&a, "after the restart");
    thread::sleep(Duration::from_millis(300));
    let (sent, answered) = probes.finish();
    assert!(sent >= 100, "probes ran throughout: {sent}");
    assert_eq!((answered, echo.received()), (0, 0), "of {sent} probes to a denied port, none may pass");
}

fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: an out pointer owned by this frame.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// An upgrade across a changed map layout, with traffic running. The pinned state is made
/// that of an agent of QUARANTINE layout 1 (pinned as ZT_QUARANTINE; the killed agent's
/// programs keep enforcing with their own map): the client's IPv6 address quarantined for
/// an hour, another address whose quarantine has expired. The new agent sets the old pin
/// aside, carries the live entry over into layout 2 (ZT_QUARANTINE2) before it attaches,
/// swaps its programs into the pinned links and removes the old pin: the established
/// connection exchanges data throughout, the quarantined address stays cut off under the
/// new programs with its remaining time, and the expired entry is not carried over.
#[test]
fn an_upgrade_across_a_changed_map_layout_migrates_quarantine_and_never_stops_enforcing() {
    skip_unless_privileged!();
    let mut a = AgentNet::start(&policy(), &[]);
    let exchange = PingPong::start(&a.net.client.ns, &a.net.server.ns, a.net.server.socket(Family::V4, 8080));
    exchange.wait_rounds(10);
    a.kill();
    let pins = a.pin_dir();
    assert!(pins.join("ZT_QUARANTINE2").exists());
    std::fs::remove_file(pins.join("ZT_QUARANTINE2")).unwrap();
    let expired: std::net::Ipv6Addr = "fd00:99::9".parse().unwrap();
    // Layout 1 of QUARANTINE: a 16-byte address and a u64 expiry.
    let live = (monotonic_ns() + 3_600_000_000_000).to_ne_bytes();
    let gone = 1u64.to_ne_bytes();
    pin_hash_map(
        &pins.join("ZT_QUARANTINE"),
        (16, 8, 65536),
        &[(&a.net.client.v6.octets(), &live), (&expired.octets(), &gone)],
    );
    exchange.wait_rounds(5);
    let before_upgrade = exchange.rounds();

    let ready = a.restart(&[]);
    assert!(ready.contains("adopted generation "), "{ready}");
    let log = std::fs::read_to_string(a.agent().stderr_path()).unwrap();
    assert!(log.contains("upgrade: pinned map ZT_QUARANTINE (a map of another layout) set aside"), "{log}");
    assert!(
        log.contains("upgrade: ZT_QUARANTINE (layout 1): 1 quarantined address(es) carried over into ZT_QUARANTINE2"),
        "{log}"
    );
    assert!(log.contains("upgrade: 1 superseded map pin(s) removed"), "{log}");
    exchange.wait_rounds(20);
    let total = exchange.finish().unwrap_or_else(|e| panic!("the connection failed across the upgrade: {e}"));
    assert!(total - before_upgrade >= 20, "{total} rounds");

    let v6 = TcpEchoServer::start(&a.net.server.ns, a.net.server.socket(Family::V6, 8080)).unwrap();
    match tcp_connect(&a.net.client.ns, v6.local_addr(), SHORT) {
        Err(ConnError::TimedOut) => {}
        other => panic!("the quarantined IPv6 client must stay cut off after the upgrade, got {other:?}"),
    }
    assert_enforced(&a, "after the upgrade");
    let list = a.ztctl(&["quarantine", "list", "-o", "json"]);
    let list: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    let entries = list.as_array().or_else(|| list["entries"].as_array()).cloned().unwrap_or_default();
    assert_eq!(entries.len(), 1, "only the live entry is carried over: {list}");
    assert_eq!(entries[0]["ip"].as_str(), Some(a.net.client.v6.to_string().as_str()), "{list}");
    let left = entries[0]["expires_in_seconds"].as_u64().unwrap();
    assert!((3500..=3600).contains(&left), "the remaining time is kept: {left} s");
    assert!(!pins.join("ZT_QUARANTINE").exists() && !pins.join("superseded").exists(), "the old layout's pin is gone");
}
