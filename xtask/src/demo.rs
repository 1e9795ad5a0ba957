//! `sudo cargo xtask demo`: zt enforcing the demo shop's policy (policies/demo) on real
//! traffic. A `node` network namespace routes between three labelled workloads (web, api,
//! db, at the addresses policies/demo/00-endpoints.yaml gives them) and one unlabelled
//! outsider; the agent runs in the node, attached to every workload link. The demo sends
//! real TCP and ICMP, shows each verdict next to the one the policy predicts, prints the
//! flow log, and removes everything it created.

use std::{
    net::{IpAddr, SocketAddr},
    process::Command,
    time::Duration,
};

use anyhow::{Context, bail};
use zt_tests::{
    BpfFs, Family, NsProcess, Scratch, Star, TcpEchoServer, icmp_echo, read_json_lines, tcp_connect, topology,
};

use crate::shell;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Expect {
    Allowed,
    Denied,
    /// Passes, and the flow log records an audit verdict.
    Audit,
}

struct Probe {
    from: &'static str,
    to: &'static str,
    /// TCP port, or `None` for an ICMP echo.
    port: Option<u16>,
    family: Family,
    expect: Expect,
    why: &'static str,
}

const PROBES: &[Probe] = &[
    Probe {
        from: "outsider",
        to: "web",
        port: Some(80),
        family: Family::V4,
        expect: Expect::Allowed,
        why: "web: HTTP from world",
    },
    Probe {
        from: "outsider",
        to: "web",
        port: None,
        family: Family::V4,
        expect: Expect::Allowed,
        why: "web: ICMP from world",
    },
    Probe {
        from: "web",
        to: "api",
        port: Some(8080),
        family: Family::V4,
        expect: Expect::Allowed,
        why: "api ingress + web egress",
    },
    Probe {
        from: "web",
        to: "api",
        port: Some(8080),
        family: Family::V6,
        expect: Expect::Allowed,
        why: "the same over IPv6",
    },
    Probe {
        from: "api",
        to: "db",
        port: Some(5432),
        family: Family::V4,
        expect: Expect::Allowed,
        why: "db: only the API",
    },
    Probe {
        from: "web",
        to: "api",
        port: Some(8089),
        family: Family::V4,
        expect: Expect::Audit,
        why: "audit policy would close 8089",
    },
    Probe {
        from: "web",
        to: "db",
        port: Some(5432),
        family: Family::V4,
        expect: Expect::Denied,
        why: "db: deny rule for tier=frontend",
    },
    Probe {
        from: "outsider",
        to: "api",
        port: Some(8080),
        family: Family::V4,
        expect: Expect::Denied,
        why: "api: only from web",
    },
    Probe {
        from: "outsider",
        to: "db",
        port: None,
        family: Family::V4,
        expect: Expect::Denied,
        why: "db: no ICMP rule",
    },
    Probe {
        from: "db",
        to: "web",
        port: Some(80),
        family: Family::V4,
        expect: Expect::Denied,
        why: "db initiates nothing (egress: [])",
    },
];

const WORKLOADS: [&str; 4] = ["web", "api", "db", "outsider"];

pub fn run() -> anyhow::Result<()> {
    // SAFETY: no arguments.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the demo creates network namespaces and loads eBPF programs; run it as root (sudo cargo xtask demo)");
    }
    let root = shell::workspace_root();
    eprintln!("demo: building zt-agent (release)");
    shell::run(Command::new("cargo").current_dir(&root).args(["build", "--release", "-p", "zt-agent"]))?;
    let agent_bin = root.join("target/release/zt-agent");

    let star = topology::star_at(&WORKLOADS, 1).context("cannot build the demo network")?;
    println!("\nNetwork (network namespaces, routed through `node` where the agent runs):");
    for w in &star.workloads {
        println!("  {:<9} {:<14} {:<12} via node link {}", w.label, w.host.v4, w.host.v6, w.node_iface);
    }

    let servers = start_servers(&star)?;
    let scratch = Scratch::new("demo")?;
    let bpffs = BpfFs::mount()?;
    let flow_log = scratch.join("flows.log");
    let policy_dir = root.join("policies/demo");
    let mut cmd = Command::new(&agent_bin);
    cmd.arg("run");
    for iface in star.node_ifaces() {
        cmd.args(["--iface", iface]);
    }
    // --no-pin: the demo removes everything it made, so enforcement should not outlive it;
    // its own socket and no metrics port, so it runs beside a real agent.
    cmd.args(["--labels", "role=app-server", "--no-pin", "--metrics", "none", "--policy"])
        .arg(&policy_dir)
        .arg("--socket")
        .arg(scratch.join("agent.sock"))
        .arg("--state-dir")
        .arg(scratch.join("state"))
        .arg("--bpffs")
        .arg(bpffs.path().join("zt"))
        .arg("--flow-log")
        .arg(&flow_log);
    println!(
        "\nAgent: {} run --iface <each node link> --labels role=app-server --policy policies/demo",
        agent_bin.display()
    );
    let mut agent = NsProcess::spawn(&star.node, &cmd, scratch.path())?;
    let ready = agent.wait_for_stderr(|l| l.contains("zt-agent: ready"), Duration::from_secs(20))?;
    println!("  {}", ready.trim());

    println!("\nTraffic (real TCP connects and ICMP echoes from inside the namespaces):");
    println!("  {:<32} {:<9} {:<9} why", "flow", "expected", "result");
    let mut failures = 0;
    for p in PROBES {
        let passed = probe(&star, p);
        let got = if passed { "passed" } else { "dropped" };
        let want_pass = p.expect != Expect::Denied;
        let ok = passed == want_pass;
        failures += usize::from(!ok);
        let proto = p.port.map(|n| format!("TCP {n}")).unwrap_or_else(|| "ICMP echo".into());
        let fam = if p.family == Family::V6 { " (v6)" } else { "" };
        println!(
            "  {:<32} {:<9} {:<9} {}{}",
            format!("{} -> {} {proto}{fam}", p.from, p.to),
            format!("{:?}", p.expect).to_lowercase(),
            got,
            p.why,
            if ok { "" } else { "   <-- MISMATCH" }
        );
    }
    drop(servers);
    // Let the sweep and the sink catch up before reading the log.
    std::thread::sleep(Duration::from_millis(2500));
    print_flow_log(&flow_log)?;

    let status = agent.terminate()?;
    println!("\nAgent stopped ({status}); namespaces, links and pins are removed on exit.");
    if failures > 0 {
        bail!("{failures} flow(s) did not get the verdict the policy predicts");
    }
    println!("All {} flows got the verdict the policy predicts.", PROBES.len());
    Ok(())
}

fn addr(star: &Star, name: &str, family: Family, port: u16) -> SocketAddr {
    star.workload(name).host.socket(family, port)
}

fn start_servers(star: &Star) -> anyhow::Result<Vec<TcpEchoServer>> {
    let mut servers = Vec::new();
    for (name, port) in [("web", 80), ("api", 8080), ("api", 8089), ("db", 5432)] {
        for family in Family::ALL {
            let w = star.workload(name);
            servers.push(TcpEchoServer::start(&w.host.ns, addr(star, name, family, port))?);
        }
    }
    Ok(servers)
}

fn probe(star: &Star, p: &Probe) -> bool {
    let from = &star.workload(p.from).host.ns;
    let timeout = Duration::from_millis(1500);
    match p.port {
        Some(port) => tcp_connect(from, addr(star, p.to, p.family, port), timeout).is_ok(),
        None => {
            let to: IpAddr = star.workload(p.to).host.ip(p.family);
            icmp_echo(from, to, timeout)
        }
    }
}

fn print_flow_log(path: &std::path::Path) -> anyhow::Result<()> {
    let records = read_json_lines(path)?;
    let shown: Vec<_> = records.iter().filter(|r| r["event"] != "update").collect();
    println!("\nFlow log ({} lines in {}; start/end/deny/audit shown):", records.len(), path.display());
    println!(
        "  {:<6} {:<8} {:<13} {:<8} {:<26} {:<26} {:<22} {:>4} {:>9}",
        "event", "verdict", "reason", "dir", "source", "destination", "policy", "rule", "pkts/rpl"
    );
    for r in shown {
        let ep = |ip: &serde_json::Value, port: &serde_json::Value, labels: &serde_json::Value| {
            let app = labels.get("app").and_then(|v| v.as_str()).map(|a| format!("{a} ")).unwrap_or_default();
            let port = port.as_u64().map(|p| format!(":{p}")).unwrap_or_default();
            format!("{app}{}{port}", ip.as_str().unwrap_or("-"))
        };
        println!(
            "  {:<6} {:<8} {:<13} {:<8} {:<26} {:<26} {:<22} {:>4} {:>9}",
            r["event"].as_str().unwrap_or(""),
            r["verdict"].as_str().unwrap_or(""),
            r["reason"].as_str().unwrap_or(""),
            r["direction"].as_str().unwrap_or(""),
            ep(&r["src_ip"], &r["src_port"], &r["src_labels"]),
            ep(&r["dst_ip"], &r["dst_port"], &r["dst_labels"]),
            r["policy"].as_str().unwrap_or("-"),
            r["rule"].as_u64().map(|n| n.to_string()).unwrap_or_else(|| "-".into()),
            format!("{}/{}", r["packets"], r["reply_packets"]),
        );
    }
    Ok(())
}
