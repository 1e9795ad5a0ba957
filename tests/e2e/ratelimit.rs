//! End-to-end tests of per-source rate limits with the real `zt-agent`: an ingress rule with
//! `rateLimit` on a public TCP port, attacked by `hping3` from the client namespace.
//!
//! - A spoofed SYN flood (`--rand-source`, bounded in packets and seconds) gives every
//!   spoofed source a fresh bucket, so the limiter admits its SYNs; what it must not do is
//!   fill CONNTRACK and disturb the flows already there. An established connection and an
//!   idle keep-alive connection opened before the flood keep exchanging data afterwards,
//!   and CONNTRACK holds only them.
//! - A flood from the client's own address is limited: the excess is denied with reason
//!   `rate-limit`, counted in the metrics and reported in the flow log, while that same
//!   client's established connections keep working (they never touch the limiter).
//! - Accuracy: a client opening new connections as fast as it may for 3 s is admitted
//!   within 10 % of `newFlowsPerSecond x t + burst`.
//!
//! The agent serves metrics on 127.0.0.1:9464 inside the server namespace. The server
//! namespace gets a blackhole default route, so its answers to spoofed sources go nowhere.

mod common;

use std::{
    io::{Read, Write},
    net::{SocketAddr, SocketAddrV4, TcpStream},
    time::Duration,
};

use common::*;
use zt_tests::{Family, Scratch, Sources, TcpEchoServer, metrics, skip_unless_privileged, syn_flood};

const METRICS: &str = "127.0.0.1:9464";
const PORT: u16 = 8443;

/// A policy with one ingress rule: TCP `PORT` from anyone, at most `rate` new flows a
/// second per source with a burst of `burst`.
fn limited_policy(rate: u32, burst: u32) -> String {
    server_policy(
        "public",
        &format!(
            "    - ports: [{{protocol: TCP, port: {PORT}}}]\n      rateLimit: {{newFlowsPerSecond: {rate}, burst: {burst}}}\n"
        ),
        "",
    )
}

/// An agent enforcing `limited_policy`, serving metrics; `config` must outlive it.
fn start_agent(config: &Scratch, rate: u32, burst: u32) -> AgentNet {
    let file = config.write("zt-agent.toml", format!("metrics = \"{METRICS}\"\n")).expect("write config");
    let a = AgentNet::start(&limited_policy(rate, burst), &["--config", file.to_str().expect("utf-8 path")]);
    a.net.server.ns.ip(["route", "add", "blackhole", "default"]).expect("blackhole default route");
    a
}

fn scrape(a: &AgentNet, name: &str, labels: &[(&str, &str)]) -> f64 {
    let m = metrics::scrape(&a.net.server.ns, METRICS.parse().unwrap(), LONG).expect("scrape /metrics");
    m.sum(name, labels).unwrap_or_else(|| panic!("no {name}{labels:?} in the metrics"))
}

fn packets(a: &AgentNet, verdict: &str, reason: &str) -> f64 {
    scrape(a, "zt_packets_total", &[("verdict", verdict), ("reason", reason)])
}

fn server_v4(a: &AgentNet) -> SocketAddrV4 {
    SocketAddrV4::new(a.net.server.v4, PORT)
}

/// A connection from the client namespace, checked with one echo.
fn connect(a: &AgentNet, addr: SocketAddr, keepalive: bool) -> TcpStream {
    let stream = a.net.client.ns.run_in(|| TcpStream::connect_timeout(&addr, LONG)).expect("connect");
    stream.set_read_timeout(Some(LONG)).unwrap();
    if keepalive {
        let probes =
            socket2::TcpKeepalive::new().with_time(Duration::from_secs(1)).with_interval(Duration::from_secs(1));
        socket2::SockRef::from(&stream).set_tcp_keepalive(&probes).expect("SO_KEEPALIVE");
    }
    echo(&stream, "hello");
    stream
}

/// Writes `text` and reads the echo back; panics if the connection no longer works.
fn echo(mut stream: &TcpStream, text: &str) {
    stream.write_all(text.as_bytes()).expect("write");
    let mut back = vec![0; text.len()];
    stream.read_exact(&mut back).unwrap_or_else(|e| panic!("no echo of {text:?}: {e}"));
    assert_eq!(back, text.as_bytes());
}

/// An agent limiting `PORT`, an echo server there, and two connections the client opened
/// before any flood: one in use, one idle with keep-alive probes every second.
struct Scene {
    established: TcpStream,
    idle: TcpStream,
    _server: TcpEchoServer,
    a: AgentNet,
}

impl Scene {
    fn start(config: &Scratch, rate: u32, burst: u32) -> Scene {
        let a = start_agent(config, rate, burst);
        let _server = TcpEchoServer::start(&a.net.server.ns, a.net.server.socket(Family::V4, PORT)).unwrap();
        let established = connect(&a, server_v4(&a).into(), false);
        let idle = connect(&a, server_v4(&a).into(), true);
        Scene { established, idle, _server, a }
    }
}

/// CONNTRACK entries after the sweep's next walk (it counts the table every 2 s).
fn conntrack_entries(a: &AgentNet) -> f64 {
    std::thread::sleep(Duration::from_millis(2500));
    scrape(a, "zt_map_entries", &[("map", "conntrack")])
}

#[test]
fn a_spoofed_syn_flood_neither_fills_conntrack_nor_disturbs_established_and_idle_connections() {
    skip_unless_privileged!();
    let config = Scratch::new("ratelimit-config").unwrap();
    let Scene { a, established, idle, _server } = Scene::start(&config, 20, 40);
    let admitted_before = packets(&a, "allowed", "policy");

    let flood = syn_flood(&a.net.client.ns, server_v4(&a), Sources::Spoofed, 30_000, Duration::from_micros(20), 10)
        .expect("spoofed hping3 flood");
    eprintln!("spoofed flood: {} SYNs in {:.2?}", flood.sent, flood.elapsed);
    assert!(flood.sent >= 10_000, "the flood was sent: {flood:?}");
    echo(&established, "during and after the flood");
    let admitted = packets(&a, "allowed", "policy") - admitted_before;
    assert!(
        admitted >= flood.sent as f64 * 0.9,
        "each spoofed source has a bucket of its own, so its SYN is admitted: {admitted} of {}",
        flood.sent
    );
    let entries = conntrack_entries(&a);
    assert!(entries < 50.0, "admitted spoofed SYNs never complete a handshake, so CONNTRACK holds {entries} entries");
    let half_open = scrape(&a, "zt_map_entries", &[("map", "half_open")]);
    assert!(half_open >= admitted * 0.9, "they wait in the half-open table instead: {half_open} of {admitted}");
    echo(&idle, "still there after the idle time");
    echo(&established, "and again");
}

#[test]
fn a_client_over_its_rate_is_denied_with_rate_limit_while_its_established_connections_work() {
    skip_unless_privileged!();
    let config = Scratch::new("ratelimit-config").unwrap();
    let (rate, burst) = (20, 40);
    let Scene { a, established, idle, _server } = Scene::start(&config, rate, burst);
    let denied_before = packets(&a, "denied", "rate-limit");

    let flood = syn_flood(&a.net.client.ns, server_v4(&a), Sources::Own, 1000, Duration::from_millis(1), 5)
        .expect("hping3 from the client's address");
    let denied = packets(&a, "denied", "rate-limit") - denied_before;
    let at_most_admitted = burst as f64 + rate as f64 * flood.elapsed.as_secs_f64();
    eprintln!("client flood: {} SYNs in {:.2?}, {denied} denied with rate-limit", flood.sent, flood.elapsed);
    assert!(denied >= flood.sent as f64 - at_most_admitted * 1.1, "{denied} of {} denied", flood.sent);
    let records = a.flows_where(|r| r["reason"] == "rate-limit");
    assert!(!records.is_empty(), "rate-limit denials are in the flow log");
    let r = &records[0];
    eprintln!("first rate-limit line: {r}");
    assert_eq!((r["verdict"].as_str(), r["event"].as_str()), (Some("denied"), Some("deny")), "{r}");
    assert_eq!((r["policy"].as_str(), r["rule"].as_u64()), (Some("public"), Some(0)), "{r}");
    assert_eq!(r["src_ip"].as_str(), Some(a.net.client.v4.to_string().as_str()), "{r}");
    assert!(records.len() < 100, "deny lines are budgeted like other denies: {}", records.len());

    echo(&established, "the client's bucket is empty, its connections are not limited");
    echo(&idle, "nor its idle one");
    assert!(conntrack_entries(&a) < 50.0, "limited SYNs are never tracked");
}

#[test]
fn admitted_new_flows_stay_within_ten_percent_of_the_configured_rate() {
    skip_unless_privileged!();
    let config = Scratch::new("ratelimit-config").unwrap();
    let (rate, burst) = (50, 10);
    let a = start_agent(&config, rate, burst);
    let _server = TcpEchoServer::start(&a.net.server.ns, a.net.server.socket(Family::V4, PORT)).unwrap();
    let (admitted_before, denied_before) = (packets(&a, "allowed", "policy"), packets(&a, "denied", "rate-limit"));

    // 4,000 new connections a second for 3 s: eighty times the rate.
    let flood = syn_flood(&a.net.client.ns, server_v4(&a), Sources::Own, 20_000, Duration::from_micros(250), 3)
        .expect("hping3 from the client's address");
    let admitted = packets(&a, "allowed", "policy") - admitted_before;
    let denied = packets(&a, "denied", "rate-limit") - denied_before;
    let t = flood.elapsed.as_secs_f64();
    let expected = rate as f64 * t + burst as f64;
    eprintln!(
        "accuracy: {} SYNs in {t:.2} s, {admitted} admitted (expected {expected:.1} = {rate}/s x t + {burst}), \
         {denied} denied",
        flood.sent
    );
    assert!(denied > admitted, "the client really was over its rate");
    assert!((admitted - expected).abs() <= expected * 0.1, "{admitted} admitted, expected {expected:.1} ± 10 %");
}
