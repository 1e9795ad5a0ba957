//! End-to-end tests of detection and response with a real attacker: `nmap` scans the server
//! from a second address of the client namespace while a legitimate client (the client's
//! own address, labelled `app=client`) keeps its flows. The agent runs with a config file
//! whose `[detect]` tables the test chooses; every figure the tests measure is printed.

mod common;

use std::{
    io::{Read, Write},
    net::{IpAddr, SocketAddr, TcpStream},
    path::Path,
    time::{Duration, Instant},
};

use common::*;
use socket2::{Domain, Socket, Type};
use zt_tests::{
    Family, TcpEchoServer, UdpCounter, icmp_echo, names::Subnet, read_json_lines, skip_unless_privileged, tcp_connect,
    udp_send_n,
};

/// The scanner's address: host 100 of the pair's subnet, on the client's interface.
const ATTACKER_HOST: u8 = 100;

/// Anyone may reach TCP 8080 and UDP 5353 of the server; the client also UDP 5000.
fn open_policy() -> String {
    server_policy(
        "web",
        "    - ports: [{protocol: TCP, port: 8080}, {protocol: UDP, port: 5353}]\n    - from: [{selector: {app: client}}]\n      ports: [{protocol: UDP, port: 5000}, {protocol: ICMP}]\n",
        "",
    )
}

/// An agent with `detect` as the config file's detection tables (`{attacker}` in it stands
/// for the scanner's address; deny events are unbudgeted, so the flow log times every
/// probe), and the scanner's address on the client.
fn start(detect: &str) -> (AgentNet, IpAddr) {
    let mut a = AgentNet::prepare(&open_policy());
    let attacker = IpAddr::V4(a.net.subnet.v4(ATTACKER_HOST));
    let detect = detect.replace("{attacker}", &attacker.to_string());
    let config = format!("[deny_events]\nper_second = 1000000\nburst = 1000000\n\n{detect}");
    let config = a.scratch.write("zt-agent.toml", config).expect("write config");
    a.net
        .client
        .ns
        .ip(["addr", "add", &format!("{attacker}/{}", Subnet::V4_PREFIX), "dev", &a.net.client.iface])
        .expect("attacker address");
    let agent = a.spawn(&["--config", config.to_str().unwrap(), "--metrics", "127.0.0.1:9464"]);
    a.agent = Some(agent);
    a.wait_ready();
    (a, attacker)
}

/// `nmap -sS` from the attacker's address, bounded in ports and time.
fn nmap_syn_scan(a: &AgentNet, attacker: IpAddr, targets: &[String], ports: &str) -> String {
    let mut args = vec!["-sS", "-Pn", "-n", "-T4", "--max-retries", "1", "--host-timeout", "8s", "-p", ports, "-e"];
    args.push(&a.net.client.iface);
    let source = attacker.to_string();
    args.extend(["-S", &source]);
    args.extend(targets.iter().map(String::as_str));
    let out = a.net.client.ns.exec_timeout("nmap", &args, Duration::from_secs(60)).expect("nmap runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A TCP connection from `source` (an address of the client namespace).
fn connect_from(a: &AgentNet, source: IpAddr, to: SocketAddr, timeout: Duration) -> std::io::Result<TcpStream> {
    a.net.client.ns.run_in(|| {
        let s = Socket::new(Domain::for_address(to), Type::STREAM, None)?;
        s.bind(&SocketAddr::new(source, 0).into())?;
        s.connect_timeout(&to.into(), timeout)?;
        Ok(s.into())
    })
}

fn echo(stream: &mut TcpStream, msg: &[u8]) -> bool {
    stream.set_read_timeout(Some(SHORT)).unwrap();
    let mut back = vec![0u8; msg.len()];
    stream.write_all(msg).is_ok() && stream.read_exact(&mut back).is_ok() && back == msg
}

fn alerts_in_log(log: &Path) -> Vec<serde_json::Value> {
    read_json_lines(log).unwrap_or_default().into_iter().filter(|r| r["event"] == "alert").collect()
}

/// Waits for an alert of `detector` in the flow log.
fn wait_alert(a: &AgentNet, detector: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(alert) = alerts_in_log(&a.flow_log()).into_iter().find(|r| r["detector"] == detector) {
            return alert;
        }
        assert!(Instant::now() < deadline, "no {detector} alert in the flow log");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Milliseconds of an RFC 3339 flow-log time since the Unix epoch.
fn millis(time: &serde_json::Value) -> i64 {
    let t = humantime::parse_rfc3339(time.as_str().expect("a time")).expect("RFC 3339");
    t.duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// Flow-log records from `src` with `reason`.
fn records_from(a: &AgentNet, src: IpAddr, reason: &str) -> Vec<serde_json::Value> {
    let src = src.to_string();
    read_json_lines(&a.flow_log())
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r["src_ip"].as_str() == Some(src.as_str()) && r["reason"] == reason)
        .collect()
}

#[test]
fn an_nmap_scan_is_caught_the_scanner_quarantined_and_a_client_keeps_its_flow() {
    skip_unless_privileged!();
    let (a, attacker) =
        start("[detect.port_scan]\nports = 15\nwindow = \"10s\"\naction = \"quarantine\"\nttl = \"10m\"\n");
    let web = TcpEchoServer::start(&a.net.server.ns, a.net.server.socket(Family::V4, 8080)).unwrap();
    let mut flow = connect_from(&a, a.net.client.v4.into(), web.local_addr(), LONG).expect("client connects");
    assert!(echo(&mut flow, b"before"));
    let mut attacker_flow = connect_from(&a, attacker, web.local_addr(), LONG).expect("the attacker may use 8080 too");
    assert!(echo(&mut attacker_flow, b"before"));

    let server = a.net.server.v4.to_string();
    let report = nmap_syn_scan(&a, attacker, std::slice::from_ref(&server), "1-1000");
    let alert = wait_alert(&a, "port_scan");
    assert_eq!(alert["src_ip"].as_str(), Some(attacker.to_string().as_str()), "{alert}");
    assert_eq!(alert["dst_ip"].as_str(), Some(server.as_str()));
    assert_eq!(
        (alert["action"].as_str(), alert["ttl"].as_u64(), alert["dry_run"].as_bool()),
        (Some("quarantine"), Some(600), Some(false))
    );
    assert_eq!(alert["window"].as_u64(), Some(10));
    assert!(alert["count"].as_u64().unwrap() > 15, "{alert}");
    assert!(alert["message"].as_str().unwrap().contains("quarantined for 10m"), "{alert}");

    // Time from the first probe to the first probe dropped as quarantined, and from the
    // threshold crossing to that drop (kernel timestamps, from the flow log).
    let probes = records_from(&a, attacker, "default-deny");
    assert_eq!(alert["src_labels"], probes[0]["src_labels"], "labels as the flow records name them");
    let first_probe = probes.iter().map(|r| millis(&r["time"])).min().expect("the scan's probes are logged");
    let dropped =
        a.flows_where(|r| r["src_ip"].as_str() == Some(attacker.to_string().as_str()) && r["reason"] == "quarantine");
    let first_drop = dropped.iter().map(|r| millis(&r["time"])).min().expect("the scanner's packets are dropped");
    let crossing = millis(&alert["time"]);
    eprintln!(
        "port scan: first probe -> scanner dropped {} ms; threshold crossing -> kernel drop {} ms; {} probes before the drop",
        first_drop - first_probe,
        first_drop - crossing,
        probes.iter().filter(|r| millis(&r["time"]) <= first_drop).count()
    );
    let mut offsets: Vec<i64> = probes.iter().map(|r| millis(&r["time"]) - first_probe).collect();
    offsets.sort();
    eprintln!("port scan: probe times (ms after the first): {:?}", &offsets[..offsets.len().min(40)]);
    assert!(first_drop - first_probe <= 2000, "scanner dropped within 2 s of its first probe");
    assert!(first_drop - crossing <= 500, "dropped within 500 ms of the crossing");
    eprintln!(
        "nmap: {}",
        report
            .lines()
            .filter(|l| l.starts_with("Nmap done") || l.contains("host timeout"))
            .collect::<Vec<_>>()
            .join("; ")
    );
    let answered = a.agent.as_ref().unwrap().stderr_path().to_path_buf();
    let line = std::fs::read_to_string(answered).unwrap();
    let line = line
        .lines()
        .find(|l| l.contains("alert: ") && l.contains("quarantined for"))
        .expect("the agent logs the alert");
    let ms: u64 = line.rsplit("answered ").next().unwrap().split(' ').next().unwrap().parse().unwrap();
    eprintln!("port scan: threshold crossing -> quarantine in the kernel {ms} ms (agent)");
    assert!(ms <= 100, "quarantined within 100 ms of the crossing: {line}");

    // The scanner is cut off entirely, its established flow included; the client is not.
    assert!(!echo(&mut attacker_flow, b"during"), "the scanner's established flow is cut");
    assert!(connect_from(&a, attacker, web.local_addr(), SHORT).is_err(), "the scanner cannot connect");
    assert!(echo(&mut flow, b"during"), "the client's established flow goes on");
    tcp_connect(&a.net.client.ns, web.local_addr(), LONG).expect("the client opens new flows");

    let list = json(a.ztctl(&["quarantine", "list", "-o", "json"]));
    let entry = &list.as_array().unwrap().iter().find(|e| e["ip"] == attacker.to_string()).expect("listed").clone();
    assert_eq!(entry["origin"], "port_scan", "{list}");
    assert!(entry["reason"].as_str().unwrap().starts_with("port_scan: "), "{list}");
    assert!((590..=600).contains(&entry["expires_in_seconds"].as_u64().unwrap()), "{list}");
    let table = ok(a.ztctl(&["quarantine", "list"]));
    assert!(table.lines().any(|l| l.starts_with(&attacker.to_string()) && l.contains("port_scan")), "{table}");

    let alerts = ok(a.ztctl(&["alerts", "-o", "json"]));
    let logged: Vec<serde_json::Value> = alerts.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(logged.iter().any(|l| l == &alert), "ztctl alerts prints the flow log's record:\n{alerts}");
    assert!(ok(a.ztctl(&["alerts"])).contains("port_scan"));

    let m = zt_tests::metrics::scrape(&a.net.server.ns, "127.0.0.1:9464".parse().unwrap(), LONG).unwrap();
    assert_eq!(m.sum("zt_alerts_total", &[("detector", "port_scan"), ("action", "quarantine")]), Some(1.0));
    assert_eq!(m.sum("zt_quarantined_sources", &[("origin", "port_scan")]), Some(1.0));
    assert!(m.sum("zt_detector_memory_bytes", &[("part", "kernel")]).unwrap() > 0.0);
}

#[test]
fn a_sweep_is_caught_and_quarantine_expires_by_itself() {
    skip_unless_privileged!();
    let (a, attacker) = start("[detect.sweep]\nhosts = 10\naction = \"quarantine\"\nttl = \"3s\"\n");
    // Twelve more addresses of the server to sweep.
    let targets: Vec<String> = (20..32u8).map(|h| a.net.subnet.v4(h).to_string()).collect();
    for t in &targets {
        a.net.server.ns.ip(["addr", "add", &format!("{t}/32"), "dev", &a.net.server.iface]).unwrap();
    }
    let web = TcpEchoServer::start(&a.net.server.ns, a.net.server.socket(Family::V4, 8080)).unwrap();
    nmap_syn_scan(&a, attacker, &targets, "80");
    let alert = wait_alert(&a, "sweep");
    assert_eq!(alert["src_ip"].as_str(), Some(attacker.to_string().as_str()));
    assert_eq!((alert["dst_ip"].as_str(), alert["ttl"].as_u64()), (None, Some(3)), "{alert}");
    assert!(alert["message"].as_str().unwrap().contains("port 80"), "{alert}");
    assert!(connect_from(&a, attacker, web.local_addr(), SHORT).is_err(), "quarantined");
    // The kernel lets it through again once its clock passes the expiry.
    let deadline = Instant::now() + Duration::from_secs(8);
    while connect_from(&a, attacker, web.local_addr(), SHORT).is_err() {
        assert!(Instant::now() < deadline, "access returns when the quarantine expires");
    }
    assert!(alerts_in_log(&a.flow_log()).iter().all(|r| r["detector"] != "port_scan"), "one port is no port scan");
}

#[test]
fn a_dry_run_alerts_without_blocking() {
    skip_unless_privileged!();
    let (a, attacker) = start("[detect]\ndry_run = true\n");
    let web = TcpEchoServer::start(&a.net.server.ns, a.net.server.socket(Family::V4, 8080)).unwrap();
    // A `ztctl alerts --follow` reader started before the scan sees the alert live.
    let mut follow = std::process::Command::new(zt_tests::workspace_binary("ztctl").unwrap())
        .arg("--socket")
        .arg(a.socket())
        .args(["alerts", "--follow", "-o", "json"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let live = follow.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(live).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    nmap_syn_scan(&a, attacker, &[a.net.server.v4.to_string()], "1-200");
    let alert = wait_alert(&a, "port_scan");
    let streamed = rx.recv_timeout(LONG).expect("the follower prints the alert");
    let _ = follow.kill();
    let _ = follow.wait();
    assert_eq!(serde_json::from_str::<serde_json::Value>(&streamed).unwrap(), alert, "the same record, live");
    assert_eq!(
        (alert["action"].as_str(), alert["dry_run"].as_bool(), alert["ttl"].as_u64()),
        (Some("quarantine"), Some(true), None)
    );
    assert!(alert["message"].as_str().unwrap().contains("dry run: would be quarantined"), "{alert}");
    assert_eq!(json(a.ztctl(&["quarantine", "list", "-o", "json"])), serde_json::json!([]));
    connect_from(&a, attacker, web.local_addr(), LONG).expect("nothing was blocked");
}

#[test]
fn a_source_on_the_never_list_is_not_quarantined() {
    skip_unless_privileged!();
    let (a, attacker) = start("[detect]\nnever = [\"{attacker}/32\"]\n");
    let web = TcpEchoServer::start(&a.net.server.ns, a.net.server.socket(Family::V4, 8080)).unwrap();
    nmap_syn_scan(&a, attacker, &[a.net.server.v4.to_string()], "1-200");
    let alert = wait_alert(&a, "port_scan");
    assert!(alert["message"].as_str().unwrap().contains("not quarantined: on the [detect] never list"), "{alert}");
    connect_from(&a, attacker, web.local_addr(), LONG).expect("not blocked");
}

#[test]
fn a_benign_mix_raises_no_alert() {
    skip_unless_privileged!();
    let (a, _) = start("");
    let web = TcpEchoServer::start(&a.net.server.ns, a.net.server.socket(Family::V4, 8080)).unwrap();
    let udp = UdpCounter::start(&a.net.server.ns, a.net.server.socket(Family::V4, 5000)).unwrap();
    // Many short connections (clients and health checks), a datagram stream, pings, and
    // retries to one denied port.
    for _ in 0..200 {
        tcp_connect(&a.net.client.ns, web.local_addr(), LONG).expect("allowed");
    }
    udp_send_n(&a.net.client.ns, udp.local_addr(), 500, 64, LONG).unwrap();
    for _ in 0..5 {
        assert!(icmp_echo(&a.net.client.ns, a.net.server.v4.into(), LONG));
    }
    for _ in 0..5 {
        let _ = tcp_connect(&a.net.client.ns, a.net.server.socket(Family::V4, 9999), Duration::from_millis(300));
    }
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(alerts_in_log(&a.flow_log()), Vec::<serde_json::Value>::new());
    assert_eq!(ok(a.ztctl(&["alerts", "-o", "json"])), "");
    assert_eq!(json(a.ztctl(&["quarantine", "list", "-o", "json"])), serde_json::json!([]));
}

#[test]
fn a_detector_quarantine_holds_across_kill_9_and_restart_leaking_nothing() {
    skip_unless_privileged!();
    let (mut a, attacker) = start("[detect.port_scan]\nttl = \"10m\"\n");
    let counter = UdpCounter::start(&a.net.server.ns, a.net.server.socket(Family::V4, 5353)).unwrap();
    nmap_syn_scan(&a, attacker, &[a.net.server.v4.to_string()], "1-200");
    wait_alert(&a, "port_scan");
    a.kill();
    // Probes every 10 ms from the quarantined address while no agent runs and while a new
    // one starts and adopts the pinned maps.
    let to = counter.local_addr();
    let socket = a.net.client.ns.run_in(|| std::net::UdpSocket::bind(SocketAddr::new(attacker, 0))).unwrap();
    let sending = std::thread::scope(|scope| {
        let probes = scope.spawn(move || {
            let mut sent = 0u64;
            let until = Instant::now() + Duration::from_secs(3);
            while Instant::now() < until {
                if socket.send_to(b"probe", to).is_ok() {
                    sent += 1;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            sent
        });
        std::thread::sleep(Duration::from_millis(800));
        let ready = a.restart(&["--config", a.scratch.join("zt-agent.toml").to_str().unwrap(), "--metrics", "none"]);
        assert!(ready.contains("adopted generation"), "{ready}");
        probes.join().unwrap()
    });
    assert!(sending >= 100, "{sending} probes sent");
    assert_eq!(counter.count_from(attacker), 0, "no probe of the quarantined source got through");
    eprintln!("quarantine across kill -9 + restart: {sending} probes sent, 0 received");
    let list = json(a.ztctl(&["quarantine", "list", "-o", "json"]));
    assert_eq!(list[0]["origin"], "port_scan", "{list}");
    assert!(list[0]["reason"].as_str().unwrap().starts_with("port_scan: "), "the reason outlives the agent: {list}");
    udp_send_n(&a.net.client.ns, to, 5, 16, LONG).unwrap();
    assert!(counter.wait_for(5, LONG) >= 5, "the client's datagrams still pass");
}
