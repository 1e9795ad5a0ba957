//! Tests of the end-to-end harness itself, before any zt code is involved: topologies carry
//! traffic of every kind, probes tell success from refusal from silence, guards clean up, and
//! the privilege gate skips or fails as documented. If these fail, no datapath test result
//! means anything.

use std::fs;
use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use zt_tests::{
    BpfFs, ConnError, Family, Host, Netns, NsProcess, Scratch, TcpEchoServer, UdpCounter, UdpEchoServer, bpffs,
    icmp_echo, netns, skip_unless_privileged, tcp_connect, tcp_exchange, topology, udp_roundtrip, udp_send_n,
};

/// Deadline for probes expected to succeed: generous for a loaded 2-core CI machine.
const OK_WITHIN: Duration = Duration::from_secs(3);
/// Deadline for probes expected to fail: long enough that a success would have arrived.
const SILENT_FOR: Duration = Duration::from_millis(500);

/// Makes `from` send every packet for `to` to a link address nobody has: the peer's veth
/// discards frames not addressed to it, so the packets vanish without an answer — the same
/// symptom as a datapath drop, built from nothing but iproute2.
fn blackhole(from: &Host, to: IpAddr) {
    let family = if to.is_ipv4() { "-4" } else { "-6" };
    from.ns
        .ip([
            family,
            "neigh",
            "replace",
            &to.to_string(),
            "lladdr",
            "02:00:00:00:00:99",
            "dev",
            &from.iface,
            "nud",
            "permanent",
        ])
        .unwrap();
}

// ---- pair topology ---------------------------------------------------------------------------

#[test]
fn pair_has_the_documented_addresses() {
    skip_unless_privileged!();
    let net = topology::pair().unwrap();
    assert_eq!(net.client.v4, net.subnet.v4(1));
    assert_eq!(net.server.v4, net.subnet.v4(2));
    assert_eq!(net.client.v6, net.subnet.v6(1));
    assert_eq!(net.server.v6, net.subnet.v6(2));
    let shown = net.server.ns.ip(["-br", "addr", "show", "dev", &net.server.iface]).unwrap();
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.contains(&format!("{}/24", net.server.v4)), "{shown}");
    assert!(shown.contains(&format!("{}/64", net.server.v6)), "{shown}");
    assert!(net.client.iface.len() <= 15 && net.server.iface.len() <= 15);
}

#[test]
fn pair_answers_icmp_echo_over_ipv4() {
    skip_unless_privileged!();
    let net = topology::pair().unwrap();
    assert!(icmp_echo(&net.client.ns, net.server.v4.into(), OK_WITHIN));
    assert!(icmp_echo(&net.server.ns, net.client.v4.into(), OK_WITHIN));
}

#[test]
fn pair_answers_icmp_echo_over_ipv6_without_waiting_for_dad() {
    skip_unless_privileged!();
    let net = topology::pair().unwrap();
    // No settling delay on purpose: the topology promises IPv6 works the moment it exists.
    assert!(icmp_echo(&net.client.ns, net.server.v6.into(), OK_WITHIN));
    assert!(icmp_echo(&net.server.ns, net.client.v6.into(), OK_WITHIN));
}

#[test]
fn icmp_echo_reports_silence_as_false() {
    skip_unless_privileged!();
    let net = topology::pair().unwrap();
    for family in Family::ALL {
        blackhole(&net.client, net.server.ip(family));
        let started = Instant::now();
        assert!(!icmp_echo(&net.client.ns, net.server.ip(family), SILENT_FOR), "{family:?}");
        assert!(started.elapsed() >= SILENT_FOR, "{family:?} gave up before its timeout");
    }
}

#[test]
fn namespaces_are_isolated_from_each_other_and_from_the_host() {
    skip_unless_privileged!();
    let a = topology::pair().unwrap();
    let b = topology::pair().unwrap();
    // Another topology's address is not routable from this one...
    assert!(!icmp_echo(&a.client.ns, b.server.v4.into(), SILENT_FOR));
    // ...and the host namespace has no route into any of them through the harness.
    let host_routes = zt_tests::command::run_checked("ip", ["route", "show"], OK_WITHIN).unwrap();
    let host_routes = String::from_utf8_lossy(&host_routes.stdout);
    assert!(!host_routes.contains(&a.server.v4.to_string()), "{host_routes}");
    assert!(!host_routes.contains(&a.server.iface), "{host_routes}");
}

// ---- TCP -------------------------------------------------------------------------------------

#[test]
fn tcp_connect_succeeds_to_a_listener() {
    skip_unless_privileged!();
    let net = topology::pair().unwrap();
    for family in Family::ALL {
        let server = TcpEchoServer::start(&net.server.ns, net.server.socket(family, 8080)).unwrap();
        let result = tcp_connect(&net.client.ns, server.local_addr(), OK_WITHIN);
        assert!(result.is_ok(), "{family:?}: {result:?}");
        assert_eq!(server.wait_accepted(1, OK_WITHIN), 1, "{family:?}");
    }
}

#[test]
fn tcp_connect_is_refused_without_a_listener() {
    skip_unless_privileged!();
    let net = topology::pair().unwrap();
    for family in Family::ALL {
        let result = tcp_connect(&net.client.ns, net.server.socket(family, 8081), OK_WITHIN);
        assert!(matches!(result, Err(ConnError::Refused)), "{family:?}: {result:?}");
    }
}

#[test]
fn tcp_connect_times_out_when_packets_vanish() {
    skip_unless_privileged!();
    let net = topology::pair().unwrap();
    for family in Family::ALL {
        let server = TcpEchoServer::start(&net.server.ns, net.server.socket(family, 8080)).unwrap();
        blackhole(&net.client, net.server.ip(family));
        let result = tcp_connect(&net.client.ns, server.local_addr(), SILENT_FOR);
        assert!(matches!(result, Err(ConnError::TimedOut)), "{family:?}: {result:?}");
        assert_eq!(server.accepted(), 0, "{family:?}");
    }
}

#[test]
fn tcp_exchange_echoes_a_megabyte_intact() {
    skip_unless_privileged!();
    let net = topology::pair().unwrap();
    for family in Family::ALL {
        let server = TcpEchoServer::start(&net.server.ns, net.server.socket(family, 0)).unwrap();
        let result = tcp_exchange(&net.client.ns, server.local_addr(), 1 << 20, OK_WITHIN);
        assert!(result.is_ok(), "{family:?}: {result:?}");
    }
}

#[test]
fn tcp_exchange_fails_without_an_echo() {
    skip_unless_privileged!();
    let net = topology::pair().unwrap();
    let addr = net.server.socket(Family::V4, 8082);
    // A listener that accepts and closes at once: the exchange must notice the missing echo.
    let listener = net.server.ns.run_in(|| std::net::TcpListener::bind(addr)).unwrap();
    let closer = std::thread::spawn(move || drop(listener.accept()));
    let result = tcp_exchange(&net.client.ns, addr, 4096, OK_WITHIN);
    closer.join().unwrap();
    assert!(matches!(result, Err(ConnError::Mismatch { .. } | ConnError::Reset(_))), "{result:?}");
}

// ---- UDP -------------------------------------------------------------------------------------

#[test]
fn udp_roundtrip_through_an_echo_server() {
    skip_unless_privileged!();
    let net = topology::pair().unwrap();
    for family in Family::ALL {
        let server = UdpEchoServer::start(&net.server.ns, net.server.socket(family, 5353)).unwrap();
        let ok = udp_roundtrip(&net.client.ns, server.local_addr(), b"hello zt", OK_WITHIN);
        assert!(ok, "{family:?}");
        assert_eq!(server.received(), 1, "{family:?}");
    }
}

#[test]
fn udp_roundtrip_fails_without_a_server() {
    skip_unless_privileged!();
    let net = topology::pair().unwrap();
    for family in Family::ALL {
        let ok = udp_roundtrip(&net.client.ns, net.server.socket(family, 5354), b"x", SILENT_FOR);
        assert!(!ok, "{family:?}");
    }
}

#[test]
fn flood_delivers_exactly_the_datagrams_sent() {
    skip_unless_privileged!();
    let net = topology::pair().unwrap();
    const SENT: u64 = 3000;
    for family in Family::ALL {
        let counter = UdpCounter::start(&net.server.ns, net.server.socket(family, 9000)).unwrap();
        udp_send_n(&net.client.ns, counter.local_addr(), SENT, 64, Duration::from_secs(10)).unwrap();
        assert_eq!(counter.wait_for(SENT, Duration::from_secs(5)), SENT, "{family:?}");
        assert_eq!(counter.count_from(net.client.ip(family)), SENT, "{family:?}");
        // Exactly: nothing more trickles in afterwards.
        assert_eq!(counter.settle(Duration::from_millis(200), OK_WITHIN), SENT, "{family:?}");
    }
}

#[test]
fn flood_counter_sees_nothing_when_packets_vanish() {
    skip_unless_privileged!();
    let net = topology::pair().unwrap();
    let counter = UdpCounter::start(&net.server.ns, net.server.socket(Family::V4, 9001)).unwrap();
    blackhole(&net.client, net.server.v4.into());
    udp_send_n(&net.client.ns, counter.local_addr(), 100, 64, Duration::from_secs(5)).unwrap();
    assert_eq!(counter.settle(Duration::from_millis(300), OK_WITHIN), 0);
}

// ---- star topology ---------------------------------------------------------------------------

#[test]
fn star_workloads_reach_each_other_through_the_node() {
    skip_unless_privileged!();
    let star = topology::star_with_labels(&["web", "db", "api"]).unwrap();
    let web = &star.workload("web").host;
    let db = &star.workload("db").host;
    for family in Family::ALL {
        assert!(icmp_echo(&web.ns, db.ip(family), OK_WITHIN), "{family:?}");
        let server = TcpEchoServer::start(&db.ns, db.socket(family, 5432)).unwrap();
        let result = tcp_exchange(&web.ns, server.local_addr(), 64 * 1024, OK_WITHIN);
        assert!(result.is_ok(), "{family:?}: {result:?}");
        let udp = UdpEchoServer::start(&web.ns, web.socket(family, 53)).unwrap();
        assert!(udp_roundtrip(&db.ns, udp.local_addr(), b"q", OK_WITHIN), "{family:?}");
    }
    // Workloads are on different subnets: the traffic above was routed by the node.
    assert_ne!(star.workload("web").subnet, star.workload("db").subnet);
    assert_eq!(star.node_ifaces().len(), 3);
}

#[test]
fn star_traffic_depends_on_forwarding_in_the_node() {
    skip_unless_privileged!();
    let star = topology::star(2).unwrap();
    let (a, b) = (&star.workloads[0].host, &star.workloads[1].host);
    assert!(icmp_echo(&a.ns, b.v4.into(), OK_WITHIN));
    star.node.set_sysctl("net.ipv4.ip_forward", "0").unwrap();
    assert!(!icmp_echo(&a.ns, b.v4.into(), SILENT_FOR));
}

#[test]
fn star_workloads_reach_the_node_itself() {
    skip_unless_privileged!();
    let star = topology::star(1).unwrap();
    let workload = &star.workloads[0];
    assert!(icmp_echo(&workload.host.ns, workload.gateway_v4.into(), OK_WITHIN));
    assert!(icmp_echo(&workload.host.ns, workload.gateway_v6.into(), OK_WITHIN));
}

#[test]
fn topologies_leave_host_sysctls_untouched() {
    skip_unless_privileged!();
    let keys = ["net/ipv4/ip_forward", "net/ipv6/conf/all/forwarding", "net/ipv6/conf/default/accept_dad"];
    let read = || keys.map(|key| fs::read_to_string(Path::new("/proc/sys").join(key)).unwrap());
    let before = read();
    let star = topology::star(2).unwrap();
    assert_eq!(star.node.sysctl("net.ipv4.ip_forward").unwrap(), "1");
    assert_eq!(read(), before);
}

// ---- namespaces and guards -------------------------------------------------------------------

#[test]
fn netns_is_removed_when_its_guard_drops() {
    skip_unless_privileged!();
    let ns = Netns::new("drop").unwrap();
    let name = ns.name().to_string();
    assert!(netns::exists(&name).unwrap());
    drop(ns);
    assert!(!netns::exists(&name).unwrap());
}

#[test]
fn netns_is_removed_when_the_test_panics() {
    skip_unless_privileged!();
    let names = Mutex::new(Vec::new());
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let net = topology::pair().unwrap();
        let ns = Netns::new("panic").unwrap();
        names.lock().unwrap().extend([
            net.client.ns.name().to_string(),
            net.server.ns.name().to_string(),
            ns.name().to_string(),
        ]);
        panic!("a test failing with namespaces alive");
    }));
    assert!(outcome.is_err());
    let names = names.into_inner().unwrap();
    assert_eq!(names.len(), 3);
    for name in names {
        assert!(!netns::exists(&name).unwrap(), "{name} survived the panic");
    }
}

#[test]
fn names_are_unique_and_fit_the_kernel_limits() {
    skip_unless_privileged!();
    let a = topology::pair().unwrap();
    let b = topology::pair().unwrap();
    assert_ne!(a.client.ns.name(), b.client.ns.name());
    assert_ne!(a.client.iface, b.client.iface);
    assert!(a.client.ns.name().starts_with("zt-"));
    let star = topology::star(12).unwrap();
    assert!(star.node_ifaces().iter().all(|name| name.len() <= 15));
}

/// The inode of the network namespace the calling thread is in.
fn current_netns_inode() -> u64 {
    fs::metadata("/proc/thread-self/ns/net").unwrap().ino()
}

#[test]
fn run_in_enters_the_namespace_and_leaves_the_caller_where_it_was() {
    skip_unless_privileged!();
    let ns = Netns::new("run-in").unwrap();
    let before = current_netns_inode();
    let inside = ns.run_in(current_netns_inode);
    assert_eq!(inside, fs::metadata(ns.path()).unwrap().ino());
    assert_ne!(inside, before);
    assert_eq!(current_netns_inode(), before);
}

#[test]
fn run_in_passes_a_panic_to_the_caller() {
    skip_unless_privileged!();
    let ns = Netns::new("run-in-panic").unwrap();
    let outcome = catch_unwind(AssertUnwindSafe(|| ns.run_in(|| panic!("inside"))));
    let payload = outcome.unwrap_err();
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"inside"));
}

#[test]
fn exec_runs_programs_inside_the_namespace() {
    skip_unless_privileged!();
    let ns = Netns::new("exec").unwrap();
    let output = ns.exec("ip", ["-br", "link"]).unwrap();
    assert!(output.status.success());
    let links = String::from_utf8_lossy(&output.stdout);
    // A fresh namespace has only its loopback, which the guard brought up.
    assert_eq!(links.lines().count(), 1, "{links}");
    assert!(links.starts_with("lo") && links.contains("UP"), "{links}");
}

#[test]
fn sysctls_are_set_inside_the_namespace_only() {
    skip_unless_privileged!();
    let ns = Netns::new("sysctl").unwrap();
    let host = fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    let flipped = if host.trim() == "1" { "0" } else { "1" };
    ns.set_sysctl("net.ipv4.ip_forward", flipped).unwrap();
    let seen_by_ip = ns.exec("cat", ["/proc/sys/net/ipv4/ip_forward"]).unwrap();
    assert_eq!(String::from_utf8_lossy(&seen_by_ip.stdout).trim(), flipped);
    assert_eq!(fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap(), host);
}

// ---- processes -------------------------------------------------------------------------------

#[test]
fn process_runs_in_the_namespace_and_is_stopped_by_its_guard() {
    skip_unless_privileged!();
    let ns = Netns::new("process").unwrap();
    let logs = Scratch::new("process").unwrap();
    let mut command = Command::new("sh");
    command.args(["-c", "readlink /proc/self/ns/net; echo ready; exec sleep 30"]);
    let mut process = NsProcess::spawn(&ns, &command, logs.path()).unwrap();
    process.wait_for_stdout(|line| line == "ready", OK_WITHIN).unwrap();
    let expected = format!("net:[{}]", fs::metadata(ns.path()).unwrap().ino());
    let stdout = fs::read_to_string(process.stdout_path()).unwrap();
    assert_eq!(stdout.lines().next(), Some(expected.as_str()));

    let proc_dir = format!("/proc/{}", process.pid());
    let started = Instant::now();
    drop(process);
    // The guard reaped it: its /proc entry is gone, and SIGTERM sufficed (no 5 s grace).
    assert!(!Path::new(&proc_dir).exists());
    assert!(started.elapsed() < Duration::from_secs(4));
}

#[test]
fn waiting_for_a_line_fails_fast_when_the_process_exits() {
    skip_unless_privileged!();
    let ns = Netns::new("exits").unwrap();
    let logs = Scratch::new("exits").unwrap();
    let mut command = Command::new("sh");
    command.args(["-c", "echo 'cannot attach to eth9' >&2; exit 1"]);
    let mut process = NsProcess::spawn(&ns, &command, logs.path()).unwrap();
    let started = Instant::now();
    let err = process.wait_for_stdout(|line| line.contains("ready"), Duration::from_secs(30)).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    let text = err.to_string();
    assert!(text.contains("cannot attach to eth9") && text.contains("exit status: 1"), "{text}");
}

#[test]
fn json_lines_written_by_a_process_are_read_back() {
    skip_unless_privileged!();
    let ns = Netns::new("jsonl").unwrap();
    let logs = Scratch::new("jsonl").unwrap();
    let mut command = Command::new("sh");
    command.args(["-c", r#"echo '{"verdict":"allowed","dst_port":80}'; echo '{"verdict":"denied","dst_port":22}'"#]);
    let mut process = NsProcess::spawn(&ns, &command, logs.path()).unwrap();
    process.wait_exit(OK_WITHIN).unwrap();
    let flows = zt_tests::read_json_lines(process.stdout_path()).unwrap();
    let verdicts: Vec<&str> = flows.iter().map(|f| f["verdict"].as_str().unwrap()).collect();
    assert_eq!(verdicts, ["allowed", "denied"]);
}

#[test]
fn bpffs_is_visible_to_processes_in_a_namespace_and_unmounted_on_drop() {
    skip_unless_privileged!();
    let ns = Netns::new("bpffs").unwrap();
    let fs = BpfFs::mount().unwrap();
    let path = fs.path().to_path_buf();
    assert!(bpffs::is_bpffs(&path).unwrap());
    let seen = ns.exec("stat", ["-f", "-c", "%t", path.to_str().unwrap()]).unwrap();
    assert_eq!(String::from_utf8_lossy(&seen.stdout).trim(), "cafe4a11");
    drop(fs);
    assert!(!path.exists());
}

// ---- the privilege gate ----------------------------------------------------------------------

/// Runs this test binary with `args` as `nobody`, with `ZT_REQUIRE_PRIVILEGED` set as given.
fn run_self_unprivileged(args: &[&str], require: Option<&str>) -> std::process::Output {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command.args(args).current_dir("/").env_remove("ZT_REQUIRE_PRIVILEGED").uid(65534).gid(65534);
    if let Some(value) = require {
        command.env("ZT_REQUIRE_PRIVILEGED", value);
    }
    zt_tests::command::run_command(&mut command, Duration::from_secs(30)).unwrap()
}

#[test]
fn unprivileged_runs_skip_and_ci_runs_fail() {
    skip_unless_privileged!();
    let exe = std::env::current_exe().unwrap();
    // `nobody` must be able to run this binary; if the build directory is private, say so.
    let readable = run_self_unprivileged(&["--list"], None);
    assert!(readable.status.success(), "nobody cannot run {}: {:?}", exe.display(), readable);

    let one_test = ["tcp_connect_is_refused_without_a_listener", "--exact", "--nocapture"];
    let skipped = run_self_unprivileged(&one_test, None);
    let stderr = String::from_utf8_lossy(&skipped.stderr);
    assert!(skipped.status.success(), "{stderr}");
    assert!(stderr.contains("SKIPPED: not running as root"), "{stderr}");

    let failed = run_self_unprivileged(&one_test, Some("1"));
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(!failed.status.success(), "{stderr}");
    assert!(stderr.contains("ZT_REQUIRE_PRIVILEGED=1"), "{stderr}");
}
