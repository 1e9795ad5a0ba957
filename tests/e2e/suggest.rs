//! End-to-end tests of the learning loop with the real `zt-agent` and `ztctl`: observe a host
//! with default deny in audit mode (or an audit-mode policy under `--default-deny false`),
//! turn what was observed into policy with `ztctl policy suggest`, apply it in audit mode and
//! replay the traffic — no audit line is left, while a flow never observed still is one —
//! then enforce it with default deny on: the observed traffic passes, the rest is dropped.
//! The observed edges survive an agent restart.
//!
//! The agent enforces on the server (`app=server`); the client's IPv4 address is labelled
//! `app=client`, its IPv6 address is left unlabelled, so it is a peer named by address.

mod common;

use std::{
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

use common::*;
use serde_json::Value;
use zt_tests::{
    ConnError, Family, TcpEchoServer, UdpEchoServer, icmp_echo, read_json_lines, skip_unless_privileged, tcp_connect,
    tcp_exchange, udp_roundtrip,
};

/// The UDP ports of one dense run: suggested as one range.
const UDP_RUN: [u16; 4] = [6000, 6001, 6002, 6003];
/// A port no traffic was observed on.
const UNOBSERVED: u16 = 9999;

/// Only the client's IPv4 address has labels.
fn client_v4_endpoint(a: &AgentNet) -> String {
    format!(
        "apiVersion: zt/v1\nkind: Endpoint\nmetadata: {{name: client}}\nspec:\n  addresses: [\"{}\"]\n  labels: {{app: client}}\n",
        a.net.client.v4
    )
}

/// An agent with the client endpoint (IPv4 only) and `policy` (may be empty), started with
/// `extra`.
fn start(policy: &str, extra: &[&str]) -> AgentNet {
    let mut a = AgentNet::prepare("");
    let mut text = client_v4_endpoint(&a);
    if !policy.is_empty() {
        text.push_str("---\n");
        text.push_str(policy);
    }
    std::fs::write(&a.policy, text).expect("write policy");
    let agent = a.spawn(extra);
    a.agent = Some(agent);
    a.wait_ready();
    a
}

/// The servers the traffic goes to: on the server TCP 8080 (v4), TCP 8443 (v6), UDP 5353
/// and the UDP run; on the client TCP 7000 (the server's egress).
struct Servers {
    _tcp: Vec<TcpEchoServer>,
    _udp: Vec<UdpEchoServer>,
}

fn servers(a: &AgentNet) -> Servers {
    let s = &a.net.server;
    let tcp = vec![
        TcpEchoServer::start(&s.ns, s.socket(Family::V4, 8080)).unwrap(),
        TcpEchoServer::start(&s.ns, s.socket(Family::V6, 8443)).unwrap(),
        TcpEchoServer::start(&a.net.client.ns, a.net.client.socket(Family::V4, 7000)).unwrap(),
    ];
    let mut udp = vec![UdpEchoServer::start(&s.ns, s.socket(Family::V4, 5353)).unwrap()];
    udp.extend(UDP_RUN.iter().map(|&p| UdpEchoServer::start(&s.ns, s.socket(Family::V4, p)).unwrap()));
    Servers { _tcp: tcp, _udp: udp }
}

/// Every kind of traffic the tests observe, and asserts it got through.
fn traffic(a: &AgentNet) {
    let (client, server) = (&a.net.client, &a.net.server);
    tcp_exchange(&client.ns, server.socket(Family::V4, 8080), 512, LONG).expect("TCP 8080 from the client");
    tcp_exchange(&client.ns, server.socket(Family::V6, 8443), 512, LONG).expect("TCP 8443 from the unlabelled address");
    assert!(udp_roundtrip(&client.ns, server.socket(Family::V4, 5353), b"q", LONG), "UDP 5353");
    for port in UDP_RUN {
        assert!(udp_roundtrip(&client.ns, server.socket(Family::V4, port), b"q", LONG), "UDP {port}");
    }
    assert!(icmp_echo(&client.ns, IpAddr::V4(server.v4), LONG), "ping from the client");
    tcp_exchange(&server.ns, client.socket(Family::V4, 7000), 512, LONG).expect("TCP 7000 from the server");
}

/// Flow-log records after the first `skip` lines that match `pred`, waiting up to `LONG`
/// for at least `n`.
fn records_after(a: &AgentNet, skip: usize, n: usize, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + LONG;
    loop {
        let found: Vec<Value> =
            read_json_lines(&a.flow_log()).unwrap_or_default().into_iter().skip(skip).filter(|r| pred(r)).collect();
        if found.len() >= n || Instant::now() > deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn log_len(a: &AgentNet) -> usize {
    read_json_lines(&a.flow_log()).unwrap_or_default().len()
}

fn to_port(r: &Value, port: u16) -> bool {
    r["dst_port"] == port
}

/// The traffic's first packets, as decisions in the flow log: TCP 8080, 8443, 7000, UDP
/// 5353 and the run, and the ping.
const DECISIONS: usize = 3 + 1 + UDP_RUN.len() + 1;

fn is_decision(r: &Value) -> bool {
    matches!(r["event"].as_str(), Some("start" | "deny" | "audit"))
}

/// `ztctl policy suggest` with `args`, as text.
fn suggest(a: &AgentNet, args: &[&str]) -> String {
    let mut all = vec!["policy", "suggest"];
    all.extend_from_slice(args);
    ok(a.ztctl(&all))
}

/// What the suggestion must say about the traffic: the server selected by its labels,
/// the client by selector, the unlabelled address as a /128, the dense UDP run as a range,
/// the ping, and the server's own connection as egress.
fn assert_covers_the_traffic(a: &AgentNet, text: &str) {
    assert!(text.contains("metadata: {name: suggested-app-server}"), "{text}");
    assert!(text.contains("selector: {\"app\": \"server\"}"), "{text}");
    assert!(text.contains("- from: [{selector: {\"app\": \"client\"}}]"), "{text}");
    assert!(text.contains(&format!("- from: [{{cidr: \"{}/128\"}}]", a.net.client.v6)), "{text}");
    assert!(text.contains("{protocol: UDP, port: 6000, endPort: 6003}"), "{text}");
    assert!(text.contains("{protocol: UDP, port: 5353}"), "{text}");
    assert!(text.contains("{protocol: TCP, port: 8080}"), "{text}");
    assert!(text.contains("{protocol: TCP, port: 8443}"), "{text}");
    assert!(text.contains("{protocol: ICMP}"), "{text}");
    assert!(text.contains("  egress:\n") && text.contains("- to: [{selector: {\"app\": \"client\"}}]"), "{text}");
    assert!(text.contains("{protocol: TCP, port: 7000}"), "{text}");
    assert!(text.contains("    # ") && text.contains(" flow"), "every rule has its evidence: {text}");
}

/// Observes the traffic, suggests, applies the suggestion in audit mode and replays: no
/// audit line is left, and an unobserved flow is still reported as one (naming an isolating
/// policy). Returns the enforce-mode suggestion of the same edges.
fn learn(a: &AgentNet, isolating: &str) -> String {
    traffic(a);
    let audited = records_after(a, 0, DECISIONS, |r| is_decision(r) && r["verdict"] == "audit");
    assert_eq!(audited.len(), DECISIONS, "every first packet was audited, and passed: {audited:#?}");
    for r in &audited {
        assert_eq!(r["reason"], "default-deny", "{r}");
        if isolating.is_empty() {
            assert!(r["policy"].is_null(), "default deny alone isolates: {r}");
        } else {
            assert_eq!(r["policy"], isolating, "the isolating policy is named: {r}");
        }
    }

    let audit = suggest(a, &[]);
    assert_covers_the_traffic(a, &audit);
    assert!(!audit.contains(&UNOBSERVED.to_string()), "nothing unobserved is suggested: {audit}");
    assert!(audit.contains("  mode: audit\n"), "{audit}");
    let enforce = suggest(a, &["--mode", "enforce"]);
    assert!(enforce.contains("  mode: enforce\n"), "{enforce}");
    assert!(suggest(a, &["--min-flows", "1000"]).starts_with("# nothing to suggest"), "no edge has 1000 flows");
    assert!(suggest(a, &["--selector", "app=db"]).starts_with("# nothing to suggest"), "no local app=db");

    // The live agent's edges drawn as a graph: the server (this host), the client by its
    // labels, the unlabelled IPv6 peer by its address; every observed edge an audit edge
    // (amber, dotted), none allowed or denied yet.
    let dot = ok(a.ztctl(&["flows", "map", "-o", "dot", "--output-file", "-"]));
    assert!(dot.contains("[label=\"host\", tooltip=\"app=server,reserved:host\""), "{dot}");
    assert!(dot.contains("[label=\"app=client\""), "{dot}");
    assert!(dot.contains(&format!("[label=\"{}\"", a.net.client.v6)), "the unlabelled peer: {dot}");
    assert!(dot.contains("TCP 8080"), "{dot}");
    assert!(dot.contains("color=\"#f08c00\", style=dotted"), "audit edges: {dot}");
    assert!(!dot.contains("style=solid") && !dot.contains("style=dashed"), "only audit edges so far: {dot}");

    let path = a.scratch.write("suggested.yaml", &audit).expect("write the suggestion");
    let applied = ok(a.ztctl(&["policy", "apply", path.to_str().unwrap()]));
    assert!(applied.contains("added    Policy/suggested-app-server"), "{applied}");

    let mark = log_len(a);
    traffic(a);
    // Wait for the replay's decisions (new TCP flows start again; UDP and ping may still
    // be tracked), then for anything late.
    let replayed = records_after(a, mark, 3, |r| is_decision(r) && r["protocol"] == "TCP");
    assert!(replayed.len() >= 3, "the replayed TCP flows are logged: {replayed:#?}");
    std::thread::sleep(Duration::from_secs(1));
    let audits = records_after(a, mark, 0, |r| r["verdict"] == "audit");
    assert!(audits.is_empty(), "no audit line after applying the suggestion: {audits:#?}");

    // A flow never observed is still a would-be drop, reported and passed.
    let probe = a.net.server.socket(Family::V4, UNOBSERVED);
    assert!(matches!(tcp_connect(&a.net.client.ns, probe, SHORT), Err(ConnError::Refused)), "audited, so it passes");
    let unobserved = records_after(a, mark, 1, |r| to_port(r, UNOBSERVED) && r["verdict"] == "audit");
    assert!(!unobserved.is_empty(), "the unobserved flow is an audit line");
    let r = &unobserved[0];
    assert_eq!(r["reason"], "default-deny", "{r}");
    let named = if isolating.is_empty() { "suggested-app-server" } else { isolating };
    assert_eq!(r["policy"], named, "the line names the policy isolating the server: {r}");
    let listed = ok(a.ztctl(&["flows", "--verdict", "audit", "--port", &UNOBSERVED.to_string(), "-o", "json"]));
    assert!(listed.contains("\"verdict\":\"audit\""), "ztctl flows shows it: {listed}");
    enforce
}

#[test]
fn default_deny_audit_learns_a_policy_that_then_covers_exactly_the_observed_traffic() {
    skip_unless_privileged!();
    let mut a = start("", &["--default-deny", "audit"]);
    let status = ok(a.ztctl(&["status"]));
    assert!(status.contains("default deny audit"), "{status}");
    let _servers = servers(&a);
    let enforce = learn(&a, "");

    // Restart with default deny on, enforcing the suggestion; the edges were saved at stop.
    a.agent().signal(libc::SIGTERM).expect("SIGTERM");
    a.agent().wait_exit(LONG).expect("the agent stops");
    let state = a.scratch.join("state").join("edges.json");
    assert!(state.exists(), "the edges are saved in the state directory");
    std::fs::write(&a.policy, format!("{}---\n{enforce}", client_v4_endpoint(&a))).expect("write policy");
    let ready = a.restart(&["--default-deny", "true"]);
    assert!(ready.contains("default deny: true"), "{ready}");
    assert!(
        a.agent().wait_for_stderr(|l| l.contains("observed edges restored from"), LONG).is_ok(),
        "start-up says the edges were restored"
    );
    // Before any new traffic, the restarted agent suggests the same policy.
    assert_covers_the_traffic(&a, &suggest(&a, &["--mode", "enforce"]));

    let mark = log_len(&a);
    traffic(&a);
    let decided = records_after(&a, mark, 3, |r| is_decision(r) && r["protocol"] == "TCP");
    assert!(decided.iter().all(|r| r["verdict"] == "allowed" && r["reason"] == "policy"), "{decided:#?}");
    let probe = a.net.server.socket(Family::V4, UNOBSERVED);
    assert!(matches!(tcp_connect(&a.net.client.ns, probe, SHORT), Err(ConnError::TimedOut)), "dropped");
    let dropped = records_after(&a, mark, 1, |r| to_port(r, UNOBSERVED) && r["verdict"] == "denied");
    assert_eq!(dropped[0]["reason"], "default-deny", "{:?}", dropped);
    assert_eq!(dropped[0]["policy"], "suggested-app-server", "{:?}", dropped);
    // The other address family of the labelled client was never observed on 8080 either.
    let v6 = SocketAddr::new(IpAddr::V6(a.net.server.v6), 8080);
    assert!(matches!(tcp_connect(&a.net.client.ns, v6, SHORT), Err(ConnError::TimedOut)), "v6 8080 dropped");
}

#[test]
fn an_audit_policy_under_default_deny_false_learns_the_same_and_audit_lines_name_it() {
    skip_unless_privileged!();
    let learning = "apiVersion: zt/v1\nkind: Policy\nmetadata: {name: learn}\nspec:\n  selector: {app: server}\n  mode: audit\n  ingress: []\n  egress: []\n";
    let a = start(learning, &["--default-deny", "false"]);
    let status = ok(a.ztctl(&["status"]));
    assert!(status.contains("default deny off"), "{status}");
    let _servers = servers(&a);
    learn(&a, "learn");
}
