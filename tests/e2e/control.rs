//! End-to-end tests of the control plane: the real `ztctl` talking to the real `zt-agent`
//! over its Unix socket, with the effect of every command checked on real traffic between
//! the client and server namespaces (the agent enforces on the server; the client is
//! labelled `app=client`, the server host `app=server`).

mod common;

use std::{
    io::{Read, Write},
    net::{Ipv4Addr, SocketAddr, TcpStream},
    os::unix::fs::PermissionsExt,
    path::PathBuf,
    process::Command,
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
    thread,
    time::{Duration, Instant},
};

use common::*;
use zt_tests::{
    ConnError, Family, NsProcess, TcpEchoServer, UdpCounter, icmp_echo, skip_unless_privileged, tcp_connect,
    tcp_exchange, udp_send_n, workspace_binary,
};

/// Client may reach the server on TCP 8080 and UDP 5353, and ping it; nothing else.
fn web_policy() -> String {
    server_policy(
        "web-ingress",
        "    - from: [{selector: {app: client}}]\n      ports: [{protocol: TCP, port: 8080}, {protocol: UDP, port: 5353}]\n    - from: [{selector: {app: client}}]\n      ports: [{protocol: ICMP}, {protocol: ICMPv6}]\n",
        "",
    )
}

/// A second policy that also lets the client reach TCP 9090.
fn alt_policy() -> String {
    server_policy("alt", "    - from: [{selector: {app: client}}]\n      ports: [{protocol: TCP, port: 9090}]\n", "")
}

fn file(a: &AgentNet, name: &str, text: &str) -> String {
    a.scratch.write(name, text).expect("write policy file").display().to_string()
}

fn denied(a: &AgentNet, server: &TcpEchoServer) -> bool {
    matches!(tcp_connect(&a.net.client.ns, server.local_addr(), SHORT), Err(ConnError::TimedOut))
}

fn revisions(a: &AgentNet) -> (u64, usize) {
    let h = json(a.ztctl(&["policy", "history", "-o", "json"]));
    let list = h["revisions"].as_array().expect("revisions").len();
    (h["current"].as_u64().expect("a current revision"), list)
}

#[test]
fn apply_takes_effect_on_real_traffic_as_a_new_revision() {
    skip_unless_privileged!();
    let a = AgentNet::start(&web_policy(), &[]);
    let alt = TcpEchoServer::start(&a.net.server.ns, a.net.server.socket(Family::V4, 9090)).unwrap();
    let web = TcpEchoServer::start(&a.net.server.ns, a.net.server.socket(Family::V4, 8080)).unwrap();
    assert!(denied(&a, &alt));
    assert_eq!(revisions(&a), (1, 1), "the start-up policy is revision 1");

    let path = file(&a, "alt.yaml", &alt_policy());
    let text = ok(a.ztctl(&["policy", "apply", &path]));
    assert!(text.starts_with("applied revision 2 (generation "), "{text}");
    assert!(text.contains("added    Policy/alt"), "{text}");
    tcp_connect(&a.net.client.ns, alt.local_addr(), LONG).expect("9090 is allowed after the push");
    tcp_connect(&a.net.client.ns, web.local_addr(), LONG).expect("the merged-in push keeps web-ingress");
    assert_eq!(revisions(&a), (2, 2));

    let again = ok(a.ztctl(&["policy", "apply", &path]));
    assert!(again.starts_with("no changes"), "{again}");
    assert_eq!(revisions(&a), (2, 2), "an unchanged push is not a revision");
}

#[test]
fn an_invalid_apply_exits_1_names_file_document_and_field_and_changes_nothing() {
    skip_unless_privileged!();
    let a = AgentNet::start(&web_policy(), &[]);
    let web = TcpEchoServer::start(&a.net.server.ns, a.net.server.socket(Family::V4, 8080)).unwrap();
    let alt = TcpEchoServer::start(&a.net.server.ns, a.net.server.socket(Family::V4, 9090)).unwrap();
    let bad = format!(
        "{}---\n{}",
        alt_policy(),
        server_policy("web-ingress", "    - ports: [{protocol: TCP, port: 70000}]\n", "")
    );
    let path = file(&a, "bad.yaml", &bad);
    let out = a.ztctl(&["policy", "apply", &path]);
    refused(&out);
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "policy {path}, document 2: spec.ingress[0].ports[0].port 70000 is out of range 1-65535"
        )),
        "{err}"
    );
    assert!(err.contains("ztctl: the push was rejected (1 problem(s)); the running policy is unchanged"), "{err}");
    assert!(stdout(&out).is_empty());
    tcp_connect(&a.net.client.ns, web.local_addr(), LONG).expect("the old policy still applies");
    assert!(denied(&a, &alt), "the valid document of the rejected push was not applied either");
    assert_eq!(revisions(&a), (1, 1));
}

#[test]
fn dry_run_and_diff_report_the_change_and_change_nothing() {
    skip_unless_privileged!();
    let a = AgentNet::start(&web_policy(), &[]);
    let alt = TcpEchoServer::start(&a.net.server.ns, a.net.server.socket(Family::V4, 9090)).unwrap();
    let moved = server_policy(
        "web-ingress",
        "    - from: [{selector: {app: client}}]\n      ports: [{protocol: TCP, port: 8443}]\n",
        "",
    );
    let path = file(&a, "change.yaml", &format!("{}---\n{moved}", alt_policy()));

    let text = ok(a.ztctl(&["policy", "apply", "--dry-run", &path]));
    assert!(
        text.starts_with(
            "dry run: the result is valid; it would make 1 added, 1 changed, 0 removed; nothing was changed"
        ),
        "{text}"
    );
    let diff = ok(a.ztctl(&["policy", "diff", &path]));
    assert!(diff.contains("+ Policy/alt"), "{diff}");
    assert!(
        diff.contains("~ Policy/web-ingress")
            && diff.contains("    -       port: 8080\n")
            && diff.contains("    +       port: 8443\n"),
        "{diff}"
    );

    assert!(denied(&a, &alt), "a dry run applies nothing");
    assert_eq!(revisions(&a), (1, 1));
    let get = a.ztctl(&["policy", "get", "alt"]);
    // alt is not running
    refused(&get);
}

#[test]
fn delete_removes_a_policy_as_a_new_revision() {
    skip_unless_privileged!();
    let a = AgentNet::start(&web_policy(), &[]);
    let alt = TcpEchoServer::start(&a.net.server.ns, a.net.server.socket(Family::V4, 9090)).unwrap();
    ok(a.ztctl(&["policy", "apply", &file(&a, "alt.yaml", &alt_policy())]));
    tcp_connect(&a.net.client.ns, alt.local_addr(), LONG).expect("allowed while alt runs");
    let listing = ok(a.ztctl(&["policy", "get"]));
    assert!(listing.contains("Policy") && listing.contains("alt") && listing.contains("Endpoint"), "{listing}");

    let text = ok(a.ztctl(&["policy", "delete", "alt"]));
    assert!(text.starts_with("applied revision 3") && text.contains("removed  Policy/alt"), "{text}");
    assert!(denied(&a, &alt), "9090 is denied again");
    let missing = a.ztctl(&["policy", "delete", "alt"]);
    refused(&missing);
    assert!(stderr(&missing).contains("no running policy is named alt"), "{}", stderr(&missing));
}

#[test]
fn history_and_rollback_restore_earlier_behaviour_on_real_traffic() {
    skip_unless_privileged!();
    let a = AgentNet::start(&web_policy(), &[]);
    let web = TcpEchoServer::start(&a.net.server.ns, a.net.server.socket(Family::V4, 8080)).unwrap();
    let alt = TcpEchoServer::start(&a.net.server.ns, a.net.server.socket(Family::V4, 9090)).unwrap();
    let moved = server_policy(
        "web-ingress",
        "    - from: [{selector: {app: client}}]\n      ports: [{protocol: TCP, port: 9090}]\n",
        "",
    );
    ok(a.ztctl(&["policy", "apply", &file(&a, "moved.yaml", &moved)]));
    tcp_connect(&a.net.client.ns, alt.local_addr(), LONG).expect("revision 2 allows 9090");
    assert!(denied(&a, &web), "revision 2 no longer allows 8080");

    let back = ok(a.ztctl(&["policy", "rollback"]));
    assert!(back.starts_with("applied revision 3"), "{back}");
    tcp_connect(&a.net.client.ns, web.local_addr(), LONG).expect("rolled back to revision 1: 8080");
    assert!(denied(&a, &alt), "rolled back to revision 1: not 9090");

    ok(a.ztctl(&["policy", "rollback", "2"]));
    tcp_connect(&a.net.client.ns, alt.local_addr(), LONG).expect("rolled forward to revision 2's policy");
    let history = ok(a.ztctl(&["policy", "history"]));
    let lines: Vec<&str> = history.lines().collect();
    assert_eq!(lines.len(), 5, "header + 4 revisions:\n{history}");
    assert!(lines[4].starts_with("*  4") && lines[4].contains("rollback to revision 2"), "{history}");
    assert!(lines[1].contains("start-up: --policy"), "{history}");
    let missing = a.ztctl(&["policy", "rollback", "99"]);
    refused(&missing);
    assert!(stderr(&missing).contains("revision 99 is not kept"), "{}", stderr(&missing));
}

#[test]
fn sighup_makes_the_policy_files_the_running_set_as_a_new_revision() {
    skip_unless_privileged!();
    let mut a = AgentNet::start(&web_policy(), &[]);
    ok(a.ztctl(&["policy", "apply", &file(&a, "alt.yaml", &alt_policy())]));
    let line = a.reload(&web_policy());
    assert!(line.contains("reloaded"), "{line}");
    assert_eq!(revisions(&a), (3, 3));
    let history = ok(a.ztctl(&["policy", "history"]));
    assert!(history.contains("SIGHUP: re-read --policy"), "{history}");
    let gone = a.ztctl(&["policy", "get", "alt"]);
    // the files replace what was pushed since
    refused(&gone);
}

#[test]
fn a_restarted_agent_without_policy_files_enforces_the_last_push() {
    skip_unless_privileged!();
    let mut a = AgentNet::start(&web_policy(), &[]);
    ok(a.ztctl(&["policy", "apply", &file(&a, "alt.yaml", &alt_policy())]));
    assert!(a.agent().terminate().unwrap().success());
    assert!(!a.socket().exists(), "a stopped agent removes its socket");

    let agent = a.spawn_with(None, &[]);
    a.agent = Some(agent);
    let ready = a.wait_ready();
    assert!(ready.contains("(2 policies"), "{ready}");
    assert_eq!(revisions(&a), (2, 2), "the restored revision is current; no new one");
    ok(a.ztctl(&["policy", "get", "alt"]));
    let e = explain_tcp(&a, 9090);
    assert_eq!((e["verdict"].as_str(), e["policy"].as_str()), (Some("allowed"), Some("alt")));
}

#[test]
fn a_user_other_than_root_is_refused() {
    skip_unless_privileged!();
    let a = AgentNet::start(&web_policy(), &[]);
    let as_nobody = || {
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(workspace_binary("ztctl").unwrap())
            .arg("--socket")
            .arg(a.socket())
            .arg("status");
        zt_tests::command::run_command(&mut cmd, LONG).unwrap()
    };
    assert_eq!(std::fs::metadata(a.socket()).unwrap().permissions().mode() & 0o777, 0o600);
    let out = as_nobody();
    refused(&out);
    assert!(stderr(&out).contains("permission denied; run ztctl as root"), "{}", stderr(&out));

    // Even with the file opened up by mistake, the peer credentials decide.
    std::fs::set_permissions(a.socket(), std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = as_nobody();
    refused(&out);
    assert_eq!(stderr(&out), "ztctl: permission denied: the zt API accepts only root (uid 0); run ztctl as root\n");
    assert!(stdout(&out).is_empty());
    ok(a.ztctl(&["status"]));
}

#[test]
fn status_shows_the_interface_hook_revision_and_counters() {
    skip_unless_privileged!();
    let a = AgentNet::start(&web_policy(), &["--xdp-mode", "off"]);
    let web = TcpEchoServer::start(&a.net.server.ns, a.net.server.socket(Family::V4, 8080)).unwrap();
    tcp_exchange(&a.net.client.ns, web.local_addr(), 1000, LONG).unwrap();
    let text = ok(a.ztctl(&["status"]));
    assert!(text.contains(&format!("interfaces:  {} (tc ingress, tc egress)", a.net.server.iface)), "{text}");
    assert!(
        text.contains("policy:      revision 1, generation ") && text.contains("failsafe:    ingress TCP 22"),
        "{text}"
    );
    assert!(text.contains(&format!("hooks:       {}: --xdp-mode off\n", a.net.server.iface)), "{text}");
    // This kernel's tick is a known CONFIG_HZ, so the programs read the time from jiffies.
    assert!(text.contains("clock:       jiffies at ") && text.contains(" Hz, calibrated at start\n"), "{text}");
    let s = json(a.ztctl(&["status", "-o", "json"]));
    assert!(s["clock"].as_str().unwrap().starts_with("jiffies at "), "{s}");
    assert_eq!(s["interfaces"][0]["ingress"], "tc");
    assert_eq!(s["interfaces"][0]["why"], "--xdp-mode off");
    assert_eq!(s["revision"], 1);
    let maps: Vec<&str> = s["maps"].as_array().unwrap().iter().map(|m| m["map"].as_str().unwrap()).collect();
    assert_eq!(maps, ["conntrack", "policy", "ipcache", "quarantine"]);
    assert!(s["maps"][1]["entries"].as_u64().unwrap() > 0);
    let allowed =
        s["counters"].as_array().unwrap().iter().find(|c| c["verdict"] == "allowed" && c["reason"] == "policy");
    assert!(allowed.is_some_and(|c| c["packets"].as_u64().unwrap() >= 1), "{s}");
    assert!(s["pipeline"]["events_read"].as_u64().unwrap() >= 1);
    // Every kernel map with the memory the kernel charges for it, largest first.
    let memory = s["memory"].as_array().unwrap();
    let names: Vec<&str> = memory.iter().map(|m| m["map"].as_str().unwrap()).collect();
    for map in ["ZT_CONNTRACK", "ZT_SCAN", "ZT_POLICY", "ZT_EVENTS", "ZT_DENIED"] {
        assert!(names.contains(&map), "{map} in {names:?}");
    }
    let bytes: Vec<u64> = memory.iter().map(|m| m["bytes"].as_u64().unwrap()).collect();
    assert!(bytes.windows(2).all(|w| w[0] >= w[1]) && bytes[0] > 1 << 20, "{bytes:?}");
    let ct = memory.iter().find(|m| m["map"] == "ZT_CONNTRACK").unwrap();
    assert_eq!(ct["max_entries"], 262144);
    assert!(text.contains("KERNEL MAP") && text.lines().any(|l| l.starts_with("total")), "{text}");
    eprintln!("{}", ok(a.ztctl(&["status"])));
}

#[test]
fn maps_sized_in_the_config_file_are_created_at_that_size_and_a_new_size_replaces_the_pin() {
    skip_unless_privileged!();
    let mut a = AgentNet::prepare(&web_policy());
    let config = a.scratch.write("zt-agent.toml", "[maps]\nconntrack = 4096\nscan = 1024\n").unwrap();
    let agent = a.spawn(&["--config", config.to_str().unwrap()]);
    a.agent = Some(agent);
    a.wait_ready();
    let web = TcpEchoServer::start(&a.net.server.ns, a.net.server.socket(Family::V4, 8080)).unwrap();
    tcp_exchange(&a.net.client.ns, web.local_addr(), 100, LONG).expect("enforcing as before");
    let s = json(a.ztctl(&["status", "-o", "json"]));
    assert_eq!(s["maps"][0]["max"], 4096, "{}", s["maps"]);
    let row = |s: &serde_json::Value, map: &str| {
        s["memory"].as_array().unwrap().iter().find(|m| m["map"] == map).unwrap().clone()
    };
    assert_eq!(row(&s, "ZT_CONNTRACK")["max_entries"], 4096);
    assert_eq!(row(&s, "ZT_SCAN")["max_entries"], 1024);
    assert!(row(&s, "ZT_CONNTRACK")["bytes"].as_u64().unwrap() < 2 << 20, "4096 flows, not 262144");
    assert_eq!(row(&s, "ZT_REF_FLOWS")["max_entries"], 1, "the bench's table costs an agent nothing");

    // Another size: the pinned map is set aside and made afresh at the new size.
    assert!(a.agent().terminate().unwrap().success());
    std::fs::write(&config, "[maps]\nconntrack = 8192\n").unwrap();
    let agent = a.spawn(&["--config", config.to_str().unwrap()]);
    a.agent = Some(agent);
    a.wait_ready();
    let log = std::fs::read_to_string(a.agent().stderr_path()).unwrap();
    assert!(log.contains("pinned map ZT_CONNTRACK (4096 entries instead of 8192: resized) set aside"), "{log}");
    let s = json(a.ztctl(&["status", "-o", "json"]));
    assert_eq!(row(&s, "ZT_CONNTRACK")["max_entries"], 8192);
    assert_eq!(row(&s, "ZT_SCAN")["max_entries"], 122880, "back to the default");
    tcp_exchange(&a.net.client.ns, web.local_addr(), 100, LONG).expect("enforcing after the resize");
}

/// `ztctl explain -o json` for TCP from the client to the server's `port`.
fn explain_tcp(a: &AgentNet, port: u16) -> serde_json::Value {
    let (from, to, port) = (a.net.client.v4.to_string(), a.net.server.v4.to_string(), port.to_string());
    json(a.ztctl(&["explain", "--from", &from, "--to", &to, "--proto", "tcp", "--port", &port, "-o", "json"]))
}

#[test]
fn explain_agrees_with_what_real_traffic_does() {
    skip_unless_privileged!();
    let a = AgentNet::start(&web_policy(), &[]);
    for port in [8080, 9090] {
        let server = TcpEchoServer::start(&a.net.server.ns, a.net.server.socket(Family::V4, port)).unwrap();
        let e = explain_tcp(&a, port);
        let passes = tcp_connect(&a.net.client.ns, server.local_addr(), SHORT).is_ok();
        assert_eq!(e["verdict"] == "allowed", passes, "port {port}: explain says {e}");
        assert_eq!(e["direction"], "ingress");
        assert_eq!(e["source"]["labels"]["app"], "client");
        assert_eq!(e["destination"]["identity"], 1, "the server is this host");
        if passes {
            assert_eq!(
                (e["reason"].as_str(), e["policy"].as_str(), e["rule"].as_u64()),
                (Some("policy"), Some("web-ingress"), Some(0))
            );
        } else {
            assert_eq!(e["reason"], "default-deny");
            assert_eq!(e["policy"], "web-ingress", "the policy isolating the server is named: {e}");
            assert!(e["rule"].is_null(), "no rule decided: {e}");
        }
    }
    // ICMP: rule 1 allows echo; the server's own egress to the client is not allowed.
    let c = a.net.client.v4.to_string();
    let s = a.net.server.v4.to_string();
    let e = json(a.ztctl(&["explain", "--from", &c, "--to", &s, "--proto", "icmp", "-o", "json"]));
    assert_eq!((e["verdict"].as_str(), e["rule"].as_u64()), (Some("allowed"), Some(1)));
    assert!(icmp_echo(&a.net.client.ns, a.net.server.v4.into(), LONG));
    let e = json(a.ztctl(&["explain", "--from", &s, "--to", &c, "--proto", "tcp", "--port", "7000", "-o", "json"]));
    assert_eq!((e["direction"].as_str(), e["verdict"].as_str()), (Some("egress"), Some("denied")));
    let client_srv = TcpEchoServer::start(&a.net.client.ns, a.net.client.socket(Family::V4, 7000)).unwrap();
    assert!(tcp_connect(&a.net.server.ns, client_srv.local_addr(), SHORT).is_err(), "egress is denied, as explained");
    let text = ok(a.ztctl(&["explain", "--from", &c, "--to", &s, "--proto", "tcp", "--port", "8080"]));
    assert!(
        text.starts_with("verdict:      allowed (policy)") && text.contains("policy web-ingress, ingress rule 0"),
        "{text}"
    );

    let usage = a.ztctl(&["explain", "--from", &c, "--to", &s, "--proto", "tcp"]);
    assert_eq!(usage.status.code(), Some(2), "a missing port is a usage error");
    assert_eq!(stderr(&usage), "ztctl: --port is needed for --proto tcp\n");
}

#[test]
fn flows_lists_records_and_follow_shows_a_new_flow_live_with_its_filter() {
    skip_unless_privileged!();
    let a = AgentNet::start(&web_policy(), &[]);
    let web = TcpEchoServer::start(&a.net.server.ns, a.net.server.socket(Family::V4, 8080)).unwrap();
    let alt = TcpEchoServer::start(&a.net.server.ns, a.net.server.socket(Family::V4, 9090)).unwrap();
    tcp_exchange(&a.net.client.ns, web.local_addr(), 1000, LONG).unwrap();
    assert!(denied(&a, &alt));
    assert!(!a.flows_where(|r| r["verdict"] == "denied" && r["dst_port"] == 9090).is_empty(), "the flow log has it");

    let listed = ok(a.ztctl(&["flows", "--verdict", "denied", "--port", "9090", "-o", "json"]));
    let records: Vec<serde_json::Value> = listed.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(!records.is_empty());
    assert!(records.iter().all(|r| r["verdict"] == "denied" && r["dst_port"] == 9090), "{listed}");
    assert_eq!(records[0]["src_labels"]["app"], "client");
    let table = ok(a.ztctl(&["flows", "--from", "app=client", "--port", "8080"]));
    assert!(table.starts_with("TIME") && table.contains("allowed") && table.contains("web-ingress rule 0"), "{table}");
    assert!(!table.contains("9090"), "{table}");

    let server = a.net.server.v4.to_string();
    let mut cmd = Command::new(workspace_binary("ztctl").unwrap());
    cmd.arg("--socket").arg(a.socket());
    cmd.args(["flows", "--follow", "-o", "json", "--verdict", "allowed", "--to", &server, "--port", "8080"]);
    let mut follow = NsProcess::spawn(&a.net.server.ns, &cmd, a.scratch.path()).unwrap();
    // The earlier flow comes first: from then on the reader is subscribed.
    follow.wait_for_stdout(|l| l.contains("\"dst_port\":8080"), LONG).expect("recent records first");
    let seen = std::fs::read_to_string(follow.stdout_path()).unwrap().lines().count();
    assert!(denied(&a, &alt), "a denied flow the filter leaves out");
    let stream = a.net.client.ns.run_in(|| TcpStream::connect_timeout(&web.local_addr(), LONG)).unwrap();
    let port = stream.local_addr().unwrap().port();
    let line = follow
        .wait_for_stdout(|l| l.contains(&format!("\"src_port\":{port},")), LONG)
        .expect("the new flow shows up live");
    let r: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!((r["verdict"].as_str(), r["event"].as_str()), (Some("allowed"), Some("start")));
    let all = std::fs::read_to_string(follow.stdout_path()).unwrap();
    assert!(all.lines().count() > seen);
    assert!(all.lines().all(|l| l.contains("\"dst_port\":8080") && l.contains("\"verdict\":\"allowed\"")), "{all}");
    drop(stream);
}

/// Sends `payload` on an established connection and waits for its echo.
fn echo(stream: &mut TcpStream, payload: &[u8], timeout: Duration) -> bool {
    stream.set_read_timeout(Some(timeout)).unwrap();
    if stream.write_all(payload).is_err() {
        return false;
    }
    let mut back = vec![0u8; payload.len()];
    stream.read_exact(&mut back).is_ok() && back == payload
}

#[test]
fn quarantine_cuts_an_established_flow_and_release_restores_it() {
    skip_unless_privileged!();
    let a = AgentNet::start(&web_policy(), &[]);
    let web = TcpEchoServer::start(&a.net.server.ns, a.net.server.socket(Family::V4, 8080)).unwrap();
    let mut stream = a.net.client.ns.run_in(|| TcpStream::connect_timeout(&web.local_addr(), LONG)).unwrap();
    assert!(echo(&mut stream, b"before", LONG));

    let client = a.net.client.v4.to_string();
    let text = ok(a.ztctl(&["quarantine", "add", &client, "--ttl", "5m", "--reason", "incident 42: beaconing"]));
    assert_eq!(text, format!("quarantined {client} for 5m\n"));
    assert!(!echo(&mut stream, b"during", SHORT), "the established flow is cut");
    let list = json(a.ztctl(&["quarantine", "list", "-o", "json"]));
    assert_eq!(list[0]["ip"].as_str(), Some(client.as_str()));
    assert!((295..=300).contains(&list[0]["expires_in_seconds"].as_u64().unwrap()), "{list}");
    assert_eq!(
        (list[0]["origin"].as_str(), list[0]["reason"].as_str()),
        (Some("manual"), Some("incident 42: beaconing"))
    );
    let table = ok(a.ztctl(&["quarantine", "list"]));
    assert!(
        table.lines().nth(1).is_some_and(|l| l.contains("manual") && l.ends_with("incident 42: beaconing")),
        "{table}"
    );
    let bad = a.ztctl(&["quarantine", "add", &client, "--reason", "two\nlines"]);
    assert_eq!(bad.status.code(), Some(2), "a bad --reason is a usage error");
    assert_eq!(stderr(&bad), "ztctl: a quarantine --reason must be one line of at most 200 characters\n");
    let e = explain_tcp(&a, 8080);
    assert_eq!((e["verdict"].as_str(), e["reason"].as_str()), (Some("denied"), Some("quarantine")));

    assert_eq!(ok(a.ztctl(&["quarantine", "release", &client])), format!("released {client}\n"));
    // TCP retransmits the held-back bytes; their echo arrives once the flow passes again.
    let mut back = [0u8; 6];
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.read_exact(&mut back).expect("the flow resumes after release");
    assert_eq!(&back, b"during");
    assert!(echo(&mut stream, b"after", LONG));
    assert_eq!(json(a.ztctl(&["quarantine", "list", "-o", "json"])), serde_json::json!([]));
    let again = a.ztctl(&["quarantine", "release", &client]);
    refused(&again);
    assert!(stderr(&again).contains(&format!("{client} is not quarantined")));
}

#[test]
fn a_quarantine_with_a_ttl_expires_by_itself() {
    skip_unless_privileged!();
    let a = AgentNet::start(&web_policy(), &[]);
    let web = TcpEchoServer::start(&a.net.server.ns, a.net.server.socket(Family::V6, 8080)).unwrap();
    let client = a.net.client.v6.to_string();
    ok(a.ztctl(&["quarantine", "add", &client, "--ttl", "2s"]));
    assert!(denied(&a, &web), "quarantined (IPv6)");
    let deadline = Instant::now() + Duration::from_secs(6);
    // The agent removes the entry from the map (status counts what the map holds).
    while json(a.ztctl(&["status", "-o", "json"]))["maps"][3]["entries"] != 0 {
        assert!(Instant::now() < deadline, "the entry is removed after its ttl");
        thread::sleep(Duration::from_millis(200));
    }
    let table = ok(a.ztctl(&["quarantine", "list"]));
    assert_eq!(table.lines().collect::<Vec<_>>(), ["IP  ORIGIN  TIME LEFT  REASON"], "only the header");
    tcp_connect(&a.net.client.ns, web.local_addr(), LONG).expect("policy decides again after expiry");
}

#[test]
fn the_agent_exits_1_when_it_cannot_serve_its_socket() {
    skip_unless_privileged!();
    let mut a = AgentNet::start(&web_policy(), &[]);
    assert!(a.agent().terminate().unwrap().success());

    let mut bad = a.spawn(&["--socket", "/proc/zt/agent.sock"]);
    assert_eq!(bad.wait_exit(READY).unwrap().code(), Some(1));
    let err = std::fs::read_to_string(bad.stderr_path()).unwrap();
    assert!(err.contains("cannot create the API socket directory /proc/zt: "), "{err}");
    assert!(!err.contains("zt-agent: ready"), "{err}");

    // Someone answers on the socket: the agent does not take it over.
    let _live = std::os::unix::net::UnixListener::bind(a.socket()).unwrap();
    let mut second = a.spawn(&[]);
    assert_eq!(second.wait_exit(READY).unwrap().code(), Some(1));
    let err = std::fs::read_to_string(second.stderr_path()).unwrap();
    let socket = a.socket().display().to_string();
    assert!(
        err.contains(&format!(
            "another zt-agent is already serving the API socket {socket}; stop it, or pass --socket with another path"
        )),
        "{err}"
    );
}

#[test]
fn ztctl_without_an_agent_says_so_and_usage_errors_exit_2() {
    let ztctl = workspace_binary("ztctl").unwrap();
    let missing: PathBuf = std::env::temp_dir().join(format!("zt-no-agent-{}.sock", std::process::id()));
    let out = Command::new(&ztctl).arg("--socket").arg(&missing).arg("status").output().unwrap();
    refused(&out);
    assert_eq!(
        stderr(&out),
        format!("ztctl: cannot reach the zt agent at {}: no such file; is zt-agent running?\n", missing.display())
    );
    let usage = Command::new(&ztctl).args(["quarantine", "add", "10.0.0.1", "--ttl", "soon"]).output().unwrap();
    assert_eq!(usage.status.code(), Some(2));
    assert!(
        stderr(&usage).contains("\"soon\" is not a duration; write it like 30s, 5m, 1h or 90d"),
        "{}",
        stderr(&usage)
    );
    let man = Command::new(&ztctl).arg("man").output().unwrap();
    assert!(man.status.success() && stdout(&man).contains("ztctl"));
    let completions = Command::new(&ztctl).args(["completions", "bash"]).output().unwrap();
    assert!(completions.status.success() && stdout(&completions).contains("_ztctl"));
}

/// Two policies that both allow the test's flows (TCP 8080, UDP 5353) but differ in rule
/// order and extra ports, so every push rewrites the allowed flows' POLICY entries.
fn variant(a: bool) -> String {
    let rules = if a {
        "    - from: [{selector: {app: client}}]\n      ports: [{protocol: TCP, port: 8080}, {protocol: UDP, port: 5353}]\n"
    } else {
        "    - from: [{selector: {app: client}}]\n      ports: [{protocol: UDP, port: 5353}]\n    - from: [{selector: {app: client}}]\n      ports: [{protocol: TCP, port: 7000, endPort: 7100}]\n    - from: [{selector: {app: client}}]\n      ports: [{protocol: TCP, port: 8080}]\n"
    };
    server_policy("web-ingress", rules, "")
}

/// Sends UDP from the client to `dst` in small paced batches until `stop`, counting them.
fn send_batches(a: &AgentNet, dst: SocketAddr, stop: &AtomicBool, sent: &AtomicU64) {
    while !stop.load(Ordering::Relaxed) {
        udp_send_n(&a.net.client.ns, dst, 50, 64, LONG).expect("the kernel takes every datagram");
        sent.fetch_add(50, Ordering::Relaxed);
        thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn hundreds_of_pushes_cause_no_transient_drops_or_admissions() {
    skip_unless_privileged!();
    let a = AgentNet::start(&variant(true), &[]);
    let files = [file(&a, "a.yaml", &variant(true)), file(&a, "b.yaml", &variant(false))];
    let web = TcpEchoServer::start(&a.net.server.ns, a.net.server.socket(Family::V4, 8080)).unwrap();
    let allowed = UdpCounter::start(&a.net.server.ns, a.net.server.socket(Family::V4, 5353)).unwrap();
    let closed = UdpCounter::start(&a.net.server.ns, a.net.server.socket(Family::V4, 9090)).unwrap();
    let stop = AtomicBool::new(false);
    let (tcp_ok, tcp_failed, udp_sent, closed_sent) =
        (AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0));
    let (allowed_dst, closed_dst) = (allowed.local_addr(), closed.local_addr());

    thread::scope(|scope| {
        scope.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                match tcp_exchange(&a.net.client.ns, web.local_addr(), 4096, LONG) {
                    Ok(()) => tcp_ok.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        eprintln!("TCP exchange failed during pushes: {e}");
                        tcp_failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        });
        scope.spawn(|| send_batches(&a, allowed_dst, &stop, &udp_sent));
        scope.spawn(|| send_batches(&a, closed_dst, &stop, &closed_sent));

        let started = Instant::now();
        let mut pushes = 0;
        while pushes < 300 && started.elapsed() < Duration::from_secs(15) {
            let out = a.ztctl(&["policy", "apply", &files[(pushes + 1) % 2]]);
            assert!(out.status.success(), "push {pushes}: {}", stderr(&out));
            pushes += 1;
        }
        let took = started.elapsed();
        stop.store(true, Ordering::Relaxed);
        eprintln!("{pushes} pushes in {took:?} ({:?} each, ztctl wall time included)", took / pushes as u32);
        assert!(pushes >= 100, "only {pushes} pushes in {took:?}");
    });

    let (sent, got) = (udp_sent.load(Ordering::Relaxed), allowed.wait_for(udp_sent.load(Ordering::Relaxed), LONG));
    eprintln!(
        "TCP exchanges: {} ok; UDP: {got}/{sent} received; denied UDP sent: {}",
        tcp_ok.load(Ordering::Relaxed),
        closed_sent.load(Ordering::Relaxed)
    );
    assert_eq!(tcp_failed.load(Ordering::Relaxed), 0, "no allowed TCP exchange failed");
    assert!(tcp_ok.load(Ordering::Relaxed) > 0 && sent > 0);
    assert_eq!(got, sent, "no allowed datagram was lost");
    assert!(closed_sent.load(Ordering::Relaxed) > 0);
    assert_eq!(closed.settle(Duration::from_millis(300), LONG), 0, "no denied datagram was admitted");
    let (current, _) = revisions(&a);
    assert!(current > 100, "each push was a revision: {current}");
}

#[test]
fn push_latency_of_a_10k_rule_policy() {
    skip_unless_privileged!();
    let a = AgentNet::start(&web_policy(), &[]);
    let rules: String = (10_000..20_000)
        .map(|port| {
            format!("    - from: [{{selector: {{app: client}}}}]\n      ports: [{{protocol: TCP, port: {port}}}]\n")
        })
        .collect();
    let path = file(&a, "big.yaml", &server_policy("many-ports", &rules, ""));
    let started = Instant::now();
    let report = json(a.ztctl(&["policy", "apply", &path, "-o", "json"]));
    let wall = started.elapsed();
    eprintln!(
        "push latency, 10000 rules: ztctl policy apply {:.1} ms wall, agent validate+compile+swap {:.1} ms, {} policy entries, {} written",
        wall.as_secs_f64() * 1e3,
        report["agent_ms"].as_f64().unwrap(),
        report["policy_entries"],
        report["written"]
    );
    assert_eq!(report["applied"], true);
    assert!(report["policy_entries"].as_u64().unwrap() >= 10_000, "{report}");
    assert!(wall < Duration::from_secs(30), "a 10k-rule push took {wall:?}");
    let server = TcpEchoServer::start(&a.net.server.ns, a.net.server.socket(Family::V4, 15_000)).unwrap();
    tcp_connect(&a.net.client.ns, server.local_addr(), LONG).expect("a port of the big policy is open");
    let e = explain_tcp(&a, 20_001);
    assert_eq!(e["verdict"], "denied");
}

/// File `k` of `files` holding a share of a policy of `rules` rules for the server: every
/// `files`-th peer endpoint (one identity each) and its ten UDP rules, in a policy of its
/// own. `moved` moves the first rule of file 0 from port 1000 to that port.
fn share_of_a_big_policy(rules: usize, files: usize, k: usize, moved: Option<u16>, first: Ipv4Addr) -> String {
    let first = u32::from(first);
    let mine: Vec<usize> = (k..rules / 10).step_by(files).collect();
    let mut y = String::new();
    for &i in &mine {
        let addr = Ipv4Addr::from(first + i as u32);
        y.push_str(&format!(
            "apiVersion: zt/v1\nkind: Endpoint\nmetadata: {{name: peer-{i}}}\nspec:\n  addresses: [{addr}]\n  labels: {{app: peer-{i}}}\n---\n"
        ));
    }
    let mut ingress = String::new();
    for (n, &i) in mine.iter().enumerate() {
        for port in 1000..1010 {
            let port = match moved {
                Some(to) if k == 0 && n == 0 && port == 1000 => to,
                _ => port,
            };
            ingress.push_str(&format!(
                "    - from: [{{selector: {{app: peer-{i}}}}}]\n      ports: [{{protocol: UDP, port: {port}}}]\n"
            ));
        }
    }
    y.push_str(&server_policy(&format!("big-{k}"), &ingress, ""));
    y
}

/// The push operators make most: one rule of a large running policy, edited in one file of
/// a directory, and the whole directory applied again. Prints the figures (the aim is 20 ms
/// end to end for 100k rules; docs/benchmarks.md), asserts only what catches a regression.
#[test]
fn one_rule_change_to_a_running_100k_rule_policy_through_ztctl() {
    skip_unless_privileged!();
    const RULES: usize = 100_000;
    const FILES: usize = 100;
    const ROUNDS: usize = 5;
    let a = AgentNet::start(&web_policy(), &[]);
    // The 10,000 endpoint addresses fill 40 /24s of 198.19.0.0/16; they must not take the
    // addresses of the test's own link, whose subnet is drawn from all of 198.18.0.0/15.
    let link = a.net.subnet.index();
    let first =
        if (456..496).contains(&link) { Ipv4Addr::new(198, 19, 100, 0) } else { Ipv4Addr::new(198, 19, 200, 0) };
    let dir = a.scratch.join("big");
    std::fs::create_dir_all(&dir).unwrap();
    let write = |k: usize, moved: Option<u16>| {
        std::fs::write(dir.join(format!("big-{k:03}.yaml")), share_of_a_big_policy(RULES, FILES, k, moved, first))
            .unwrap()
    };
    (0..FILES).for_each(|k| write(k, None));
    let dir = dir.display().to_string();
    let started = Instant::now();
    let first = json(a.ztctl(&["policy", "apply", &dir, "-o", "json"]));
    let first_wall = started.elapsed();
    assert_eq!(first["applied"], true);
    // The generation slot a first change writes holds the policy before the big push, so
    // it is written whole; from the second change on, each slot differs by a rule or two.
    write(0, Some(1999));
    assert_eq!(json(a.ztctl(&["policy", "apply", &dir, "-o", "json"]))["applied"], true);
    let (mut wall, mut agent) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        write(0, Some(2000 + round as u16));
        let started = Instant::now();
        let report = json(a.ztctl(&["policy", "apply", &dir, "-o", "json"]));
        wall.push(started.elapsed().as_secs_f64() * 1e3);
        agent.push(report["agent_ms"].as_f64().unwrap());
        assert_eq!(report["applied"], true);
        let changed: Vec<_> = report["changes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["change"] != "unchanged")
            .map(|c| c["key"].to_string())
            .collect();
        assert_eq!(changed.len(), 1, "one document changed: {changed:?}");
        let written = report["written"].as_u64().unwrap();
        assert!(written <= 4, "a one-rule change writes a few entries, not {written}");
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    eprintln!(
        "one-rule change to a running {RULES}-rule policy in {FILES} files: ztctl policy apply {:.1} ms wall \
         (median of {ROUNDS}), agent validate+compile+swap {:.1} ms; the first push of it took {:.0} ms",
        median(&mut wall),
        median(&mut agent),
        first_wall.as_secs_f64() * 1e3
    );
    assert!(median(&mut wall) < 30_000.0, "a one-rule change took {wall:?} ms");
    let server = TcpEchoServer::start(&a.net.server.ns, a.net.server.socket(Family::V4, 8080)).unwrap();
    tcp_connect(&a.net.client.ns, server.local_addr(), LONG).expect("the web policy still holds");
}
