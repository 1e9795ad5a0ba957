//! End-to-end tests of the real `zt-agent` binary enforcing policy on a veth pair between
//! two network namespaces, with real TCP, UDP and ICMP traffic. The agent runs in the
//! server namespace; the client is labelled `app=client`, the server host `app=server`.

mod common;

use common::*;
use zt_tests::{
    ConnError, Family, TcpEchoServer, UdpEchoServer, icmp_echo, skip_unless_privileged, tcp_connect, tcp_exchange,
    udp_roundtrip,
};

/// Client may reach the server on TCP 8080 and UDP 5353, and ping it; nothing else.
fn web_policy() -> String {
    server_policy(
        "web-ingress",
        "    - from: [{selector: {app: client}}]\n      ports: [{protocol: TCP, port: 8080}, {protocol: UDP, port: 5353}]\n    - from: [{selector: {app: client}}]\n      ports: [{protocol: ICMP}, {protocol: ICMPv6}]\n",
        "",
    )
}

fn allowed_and_denied_tcp(mode: &[&str]) {
    assert_allowed_and_denied(&AgentNet::start(&web_policy(), mode));
}

/// TCP 8080 is exchanged and TCP 9090 dropped, over IPv4 and IPv6.
fn assert_allowed_and_denied(a: &AgentNet) {
    for family in Family::ALL {
        let open = TcpEchoServer::start(&a.net.server.ns, a.net.server.socket(family, 8080)).unwrap();
        let closed = TcpEchoServer::start(&a.net.server.ns, a.net.server.socket(family, 9090)).unwrap();
        tcp_exchange(&a.net.client.ns, open.local_addr(), 4096, LONG)
            .unwrap_or_else(|e| panic!("{family:?} allowed TCP 8080 failed: {e}"));
        match tcp_connect(&a.net.client.ns, closed.local_addr(), SHORT) {
            Err(ConnError::TimedOut) => {}
            other => panic!("{family:?} TCP 9090 must be dropped (time out), got {other:?}"),
        }
        assert_eq!(closed.accepted(), 0);
    }
}

#[test]
fn allowed_tcp_connects_and_denied_tcp_is_dropped_with_native_xdp() {
    skip_unless_privileged!();
    allowed_and_denied_tcp(&["--xdp-mode", "native"]);
}

#[test]
fn allowed_tcp_connects_and_denied_tcp_is_dropped_with_generic_xdp() {
    skip_unless_privileged!();
    allowed_and_denied_tcp(&["--xdp-mode", "generic"]);
}

#[test]
fn allowed_tcp_connects_and_denied_tcp_is_dropped_with_tc_ingress() {
    skip_unless_privileged!();
    allowed_and_denied_tcp(&["--xdp-mode", "off"]);
}

#[test]
fn ready_line_names_the_interface_and_its_hook() {
    skip_unless_privileged!();
    let mut a = AgentNet::start(&web_policy(), &["--xdp-mode", "off"]);
    let line = a.wait_ready();
    assert!(line.contains(&format!("{} (tc: --xdp-mode off)", a.net.server.iface)), "{line}");
    assert!(line.contains("failsafe: ingress TCP 22"), "{line}");
}

/// Native XDP on a veth halves bulk TCP throughput (every GSO packet is split for XDP), so
/// without --xdp-mode the agent picks TC ingress on virtual links, says why, and really
/// attached there: the interface has no XDP program and TCP is still enforced.
#[test]
fn on_a_veth_the_default_hook_is_tc_ingress_and_the_ready_line_says_why() {
    skip_unless_privileged!();
    let mut a = AgentNet::start(&web_policy(), &[]);
    let line = a.wait_ready();
    let expected = format!(
        "{} (tc: a veth link (virtual), where XDP would cost bulk TCP throughput; --xdp-mode native overrides)",
        a.net.server.iface
    );
    assert!(line.contains(&expected), "{line}");
    let link = a.net.server.ns.ip(["link", "show", "dev", &a.net.server.iface]).unwrap();
    assert!(!String::from_utf8_lossy(&link.stdout).contains("xdp"), "no XDP program on the veth");
    assert_allowed_and_denied(&a);
}

#[test]
fn udp_to_an_allowed_port_gets_its_reply_and_other_ports_are_dropped() {
    skip_unless_privileged!();
    let a = AgentNet::start(&web_policy(), &[]);
    for family in Family::ALL {
        let open = UdpEchoServer::start(&a.net.server.ns, a.net.server.socket(family, 5353)).unwrap();
        let closed = UdpEchoServer::start(&a.net.server.ns, a.net.server.socket(family, 5354)).unwrap();
        assert!(udp_roundtrip(&a.net.client.ns, open.local_addr(), b"query", LONG), "{family:?} UDP 5353");
        assert!(!udp_roundtrip(&a.net.client.ns, closed.local_addr(), b"query", SHORT), "{family:?} UDP 5354");
        assert_eq!(closed.received(), 0);
    }
}

#[test]
fn icmp_echo_is_allowed_by_an_icmp_rule_in_both_families() {
    skip_unless_privileged!();
    let a = AgentNet::start(&web_policy(), &[]);
    assert!(icmp_echo(&a.net.client.ns, a.net.server.v4.into(), LONG));
    assert!(icmp_echo(&a.net.client.ns, a.net.server.v6.into(), LONG));
}

#[test]
fn icmp_echo_is_dropped_without_a_rule() {
    skip_unless_privileged!();
    let tcp_only = server_policy(
        "tcp-only",
        "    - from: [{selector: {app: client}}]\n      ports: [{protocol: TCP, port: 8080}]\n",
        "",
    );
    let a = AgentNet::start(&tcp_only, &[]);
    assert!(!icmp_echo(&a.net.client.ns, a.net.server.v4.into(), SHORT));
    assert!(!icmp_echo(&a.net.client.ns, a.net.server.v6.into(), SHORT));
}

#[test]
fn replies_to_outbound_flows_pass_while_inbound_stays_denied() {
    skip_unless_privileged!();
    // The server host may connect out to the client on TCP 7000; nothing may come in.
    let out = server_policy(
        "server-egress",
        "",
        "    - to: [{selector: {app: client}}]\n      ports: [{protocol: TCP, port: 7000}]\n",
    );
    let a = AgentNet::start(&out, &[]);
    for family in Family::ALL {
        let client_srv = TcpEchoServer::start(&a.net.client.ns, a.net.client.socket(family, 7000)).unwrap();
        let other = TcpEchoServer::start(&a.net.client.ns, a.net.client.socket(family, 7001)).unwrap();
        tcp_exchange(&a.net.server.ns, client_srv.local_addr(), 2048, LONG)
            .unwrap_or_else(|e| panic!("{family:?} outbound TCP 7000 and its replies: {e}"));
        assert!(
            tcp_connect(&a.net.server.ns, other.local_addr(), SHORT).is_err(),
            "{family:?} egress to 7001 is not allowed"
        );
        let inbound = TcpEchoServer::start(&a.net.server.ns, a.net.server.socket(family, 8080)).unwrap();
        assert!(tcp_connect(&a.net.client.ns, inbound.local_addr(), SHORT).is_err(), "{family:?} inbound stays denied");
    }
}

#[test]
fn failsafe_keeps_ssh_reachable_under_a_deny_all_policy() {
    skip_unless_privileged!();
    let deny_all = server_policy("deny-all", "    - action: deny\n", "");
    let a = AgentNet::start(&deny_all, &[]);
    let ssh = TcpEchoServer::start(&a.net.server.ns, a.net.server.socket(Family::V4, 22)).unwrap();
    let web = TcpEchoServer::start(&a.net.server.ns, a.net.server.socket(Family::V4, 8080)).unwrap();
    tcp_connect(&a.net.client.ns, ssh.local_addr(), LONG).expect("failsafe SSH");
    assert!(tcp_connect(&a.net.client.ns, web.local_addr(), SHORT).is_err());
}

#[test]
fn a_policy_change_takes_effect_on_reload_and_revokes_established_flows() {
    skip_unless_privileged!();
    let mut a = AgentNet::start(&web_policy(), &[]);
    let web = TcpEchoServer::start(&a.net.server.ns, a.net.server.socket(Family::V4, 8080)).unwrap();
    let alt = TcpEchoServer::start(&a.net.server.ns, a.net.server.socket(Family::V4, 9090)).unwrap();
    tcp_connect(&a.net.client.ns, web.local_addr(), LONG).expect("8080 before");
    assert!(tcp_connect(&a.net.client.ns, alt.local_addr(), SHORT).is_err());

    let moved = server_policy(
        "web-ingress",
        "    - from: [{selector: {app: client}}]\n      ports: [{protocol: TCP, port: 9090}]\n",
        "",
    );
    let line = a.reload(&moved);
    assert!(line.contains("reloaded: enforcing generation 2"), "{line}");
    tcp_connect(&a.net.client.ns, alt.local_addr(), LONG).expect("9090 after");
    assert!(tcp_connect(&a.net.client.ns, web.local_addr(), SHORT).is_err(), "8080 is no longer allowed");
}

#[test]
fn an_invalid_reload_is_rejected_and_the_running_policy_stays() {
    skip_unless_privileged!();
    let mut a = AgentNet::start(&web_policy(), &[]);
    let web = TcpEchoServer::start(&a.net.server.ns, a.net.server.socket(Family::V4, 8080)).unwrap();
    let bad = server_policy("web-ingress", "    - ports: [{protocol: TCP, port: 70000}]\n", "");
    let line = a.reload(&bad);
    assert!(line.contains("reload rejected"), "{line}");
    let text = std::fs::read_to_string(a.agent().stderr_path()).unwrap();
    assert!(
        text.contains("policy.yaml, document 2: spec.ingress[0].ports[0].port 70000 is out of range 1-65535"),
        "{text}"
    );
    tcp_connect(&a.net.client.ns, web.local_addr(), LONG).expect("the old policy still applies");
}

#[test]
fn flow_log_lines_carry_verdict_reason_policy_and_rule() {
    skip_unless_privileged!();
    let a = AgentNet::start(&web_policy(), &[]);
    let web = TcpEchoServer::start(&a.net.server.ns, a.net.server.socket(Family::V4, 8080)).unwrap();
    let alt = TcpEchoServer::start(&a.net.server.ns, a.net.server.socket(Family::V4, 9090)).unwrap();
    tcp_exchange(&a.net.client.ns, web.local_addr(), 1000, LONG).unwrap();
    let _ = tcp_connect(&a.net.client.ns, alt.local_addr(), SHORT);
    let client = a.net.client.v4.to_string();

    let start = a.flows_where(|r| r["event"] == "start" && r["dst_port"] == 8080);
    let r = &start[0];
    assert_eq!((r["verdict"].as_str(), r["reason"].as_str()), (Some("allowed"), Some("policy")));
    assert_eq!((r["policy"].as_str(), r["rule"].as_u64()), (Some("web-ingress"), Some(0)));
    assert_eq!((r["direction"].as_str(), r["protocol"].as_str()), (Some("ingress"), Some("TCP")));
    assert_eq!(r["src_ip"].as_str(), Some(client.as_str()));
    assert_eq!(r["src_labels"]["app"], "client");
    assert_eq!(r["dst_labels"]["app"], "server");
    assert_eq!(r["iface"].as_str(), Some(a.net.server.iface.as_str()));
    assert!(r["time"].as_str().unwrap().ends_with('Z'));

    let end = a.flows_where(|r| r["event"] == "end" && r["dst_port"] == 8080);
    assert_eq!(end.len(), 1, "one end line per flow: {end:?}");
    assert!(end[0]["packets"].as_u64().unwrap() >= 3 && end[0]["reply_packets"].as_u64().unwrap() >= 2, "{:?}", end[0]);
    assert!(end[0]["bytes"].as_u64().unwrap() > 1000, "the payload is counted: {:?}", end[0]);
    assert_eq!(end[0]["policy"], "web-ingress");

    let denied = a.flows_where(|r| r["verdict"] == "denied" && r["dst_port"] == 9090);
    assert_eq!(denied[0]["reason"], "default-deny");
    assert_eq!(denied[0]["policy"], "web-ingress", "the policy isolating the server: {:?}", denied[0]);
    assert!(denied[0]["rule"].is_null(), "no rule decided: {:?}", denied[0]);
}

#[test]
fn deny_rules_are_attributed_in_the_flow_log() {
    skip_unless_privileged!();
    let p = server_policy(
        "block-admin",
        "    - from: [{selector: {app: client}}]\n    - action: deny\n      from: [{selector: {app: client}}]\n      ports: [{protocol: TCP, port: 9999}]\n",
        "",
    );
    let a = AgentNet::start(&p, &[]);
    let admin = TcpEchoServer::start(&a.net.server.ns, a.net.server.socket(Family::V4, 9999)).unwrap();
    let web = TcpEchoServer::start(&a.net.server.ns, a.net.server.socket(Family::V4, 8080)).unwrap();
    tcp_connect(&a.net.client.ns, web.local_addr(), LONG).expect("allowed by rule 0");
    assert!(tcp_connect(&a.net.client.ns, admin.local_addr(), SHORT).is_err(), "deny wins over allow");
    let denied = a.flows_where(|r| r["verdict"] == "denied" && r["dst_port"] == 9999);
    assert_eq!(
        (denied[0]["reason"].as_str(), denied[0]["policy"].as_str(), denied[0]["rule"].as_u64()),
        (Some("deny-rule"), Some("block-admin"), Some(1))
    );
}

#[test]
fn audit_mode_lets_traffic_through_and_logs_the_would_be_drop() {
    skip_unless_privileged!();
    let mut p = server_policy(
        "audit-web",
        "    - from: [{selector: {app: client}}]\n      ports: [{protocol: TCP, port: 8080}]\n",
        "",
    );
    p = p.replace("  selector: {app: server}\n", "  selector: {app: server}\n  mode: audit\n");
    // Only the audit policy isolates the server: run without global default-deny.
    let a = AgentNet::start(&p, &["--default-deny", "false"]);
    let alt = TcpEchoServer::start(&a.net.server.ns, a.net.server.socket(Family::V4, 9090)).unwrap();
    tcp_connect(&a.net.client.ns, alt.local_addr(), LONG).expect("audit mode does not drop");
    let audit = a.flows_where(|r| r["verdict"] == "audit" && r["dst_port"] == 9090);
    assert_eq!(audit[0]["reason"], "default-deny");
    assert_eq!(audit[0]["event"], "audit");
}

#[test]
fn sigterm_detaches_and_removes_pins() {
    skip_unless_privileged!();
    let mut a = AgentNet::start(&web_policy(), &["--no-pin"]);
    let alt = TcpEchoServer::start(&a.net.server.ns, a.net.server.socket(Family::V4, 9090)).unwrap();
    assert!(tcp_connect(&a.net.client.ns, alt.local_addr(), SHORT).is_err());
    let status = a.agent().terminate().unwrap();
    assert!(status.success(), "clean exit: {status}");
    tcp_connect(&a.net.client.ns, alt.local_addr(), LONG).expect("nothing enforces after the agent stopped");
    assert!(!a.pin_dir().exists(), "pins removed");
    let text = std::fs::read_to_string(a.agent().stderr_path()).unwrap();
    assert!(text.contains("stopped; programs detached"), "{text}");
}

/// Sends `n` datagrams to the subnet's directed broadcast address from the client.
fn broadcast(a: &AgentNet, port: u16, n: usize) {
    let o = a.net.server.v4.octets();
    let to = std::net::SocketAddr::from(([o[0], o[1], o[2], 255], port));
    a.net.client.ns.run_in(move || {
        let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        s.set_broadcast(true).unwrap();
        for _ in 0..n {
            s.send_to(b"who is there", to).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    });
}

#[test]
fn broadcasts_are_judged_as_traffic_to_the_host() {
    skip_unless_privileged!();
    // A service bound to 0.0.0.0 receives subnet broadcasts; default-deny must cover them
    // exactly as it covers unicast to the host.
    let a = AgentNet::start(&web_policy(), &[]);
    let allowed = zt_tests::UdpCounter::start(&a.net.server.ns, "0.0.0.0:5353".parse().unwrap()).unwrap();
    let denied = zt_tests::UdpCounter::start(&a.net.server.ns, "0.0.0.0:6000".parse().unwrap()).unwrap();
    broadcast(&a, 5353, 20);
    broadcast(&a, 6000, 20);
    assert_eq!(allowed.wait_for(20, LONG), 20, "the allowed port receives the broadcasts");
    assert_eq!(denied.settle(SHORT, LONG), 0, "default-deny drops broadcasts to other ports");
    let dropped = a.flows_where(|r| r["verdict"] == "denied" && r["dst_port"] == 6000);
    assert_eq!(
        dropped[0]["dst_labels"]["reserved:host"], "",
        "the broadcast address resolves to the host: {:?}",
        dropped[0]
    );
}
