//! `sudo cargo xtask demo`: zt enforcing the demo shop's policy (policies/demo) on real
//! traffic. A `node` network namespace routes between three labelled workloads (web, api,
//! db, at the addresses policies/demo/00-endpoints.yaml gives them) and one unlabelled
//! outsider; the agent runs in the node, attached to every workload link. The demo sends
//! real TCP and ICMP, shows each verdict next to the one the policy predicts, prints the
//! flow log, and removes everything it created.
//!
//! Then the loop from observed traffic to least privilege: a fresh agent that knows only the
//! endpoints runs with `--default-deny audit`, the shop's wanted traffic flows, `ztctl
//! policy suggest` writes a policy from what was observed, `ztctl policy apply` enforces it,
//! every probe is sent again (the suggestion must give the hand-written policy's verdicts),
//! and `ztctl flows map` draws what was seen. The suggestion and the map stay in
//! target/demo/.

use std::{
    fs,
    net::{IpAddr, SocketAddr},
    path::Path,
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
    shell::run(Command::new("cargo").current_dir(&root).args(["build", "--release", "-p", "zt-agent", "-p", "ztctl"]))?;
    let agent_bin = root.join("target/release/zt-agent");
    let ztctl_bin = root.join("target/release/ztctl");

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
    let mut failures = run_probes(&star, PROBES.iter());
    // Let the sweep and the sink catch up before reading the log.
    std::thread::sleep(Duration::from_millis(2500));
    print_flow_log(&flow_log)?;

    let status = agent.terminate()?;
    println!("\nAgent stopped ({status}).");
    if failures == 0 {
        println!("All {} flows got the verdict the policy predicts.", PROBES.len());
    }
    failures += learn(&star, &agent_bin, &ztctl_bin, &root.join("target/demo"), &scratch, &bpffs)?;
    drop(servers);
    println!("\nNamespaces, links and pins are removed on exit.");
    if failures > 0 {
        bail!("{failures} flow(s) did not get the verdict the policy predicts");
    }
    Ok(())
}

/// Sends each probe and prints its result next to the expected one; returns the mismatches.
fn run_probes<'a>(star: &Star, probes: impl Iterator<Item = &'a Probe>) -> usize {
    println!("  {:<32} {:<9} {:<9} why", "flow", "expected", "result");
    let mut failures = 0;
    for p in probes {
        let passed = probe(star, p);
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
    failures
}

/// The second act: learn the shop's policy from its traffic, enforce it, draw the map.
/// Returns the probes whose verdict differs from the hand-written policy's.
fn learn(
    star: &Star,
    agent_bin: &Path,
    ztctl_bin: &Path,
    out_dir: &Path,
    scratch: &Scratch,
    bpffs: &BpfFs,
) -> anyhow::Result<usize> {
    println!("\n--- From observed traffic to least privilege ---");
    fs::create_dir_all(out_dir).with_context(|| format!("cannot create {}", out_dir.display()))?;
    // The agent knows who is who (the endpoints) but has no policy: default deny in audit
    // mode lets everything through and records what isolation would have dropped.
    let endpoints = scratch.join("learn-policy");
    fs::create_dir_all(&endpoints)?;
    fs::copy(shell::workspace_root().join("policies/demo/00-endpoints.yaml"), endpoints.join("00-endpoints.yaml"))?;
    let socket = scratch.join("learn.sock");
    let mut cmd = Command::new(agent_bin);
    cmd.arg("run");
    for iface in star.node_ifaces() {
        cmd.args(["--iface", iface]);
    }
    cmd.args(["--labels", "role=app-server", "--no-pin", "--metrics", "none", "--default-deny", "audit", "--policy"])
        .arg(&endpoints)
        .arg("--socket")
        .arg(&socket)
        .arg("--state-dir")
        .arg(scratch.join("learn-state"))
        .arg("--bpffs")
        .arg(bpffs.path().join("zt-learn"))
        .arg("--flow-log")
        .arg(scratch.join("learn-flows.log"));
    println!("Agent: zt-agent run ... --default-deny audit --policy 00-endpoints.yaml (no policy yet)");
    let mut agent = NsProcess::spawn(&star.node, &cmd, scratch.path())?;
    let ready = agent.wait_for_stderr(|l| l.contains("zt-agent: ready"), Duration::from_secs(20))?;
    println!("  {}", ready.trim());

    println!("\n1. The shop's wanted traffic, observed in audit mode (everything passes):");
    let wanted: Vec<&Probe> = PROBES.iter().filter(|p| p.expect != Expect::Denied).collect();
    let mut failures = run_probes(star, wanted.iter().copied());
    // The sink aggregates edges as it writes records.
    std::thread::sleep(Duration::from_millis(2500));

    let ztctl = |args: &[&str]| -> anyhow::Result<String> {
        let out = Command::new(ztctl_bin).arg("--socket").arg(&socket).args(args).output()?;
        if !out.status.success() {
            bail!("ztctl {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let suggested = ztctl(&["policy", "suggest", "--mode", "enforce"])?;
    let suggestion = out_dir.join("suggested-policy.yaml");
    fs::write(&suggestion, &suggested)?;
    println!("\n2. ztctl policy suggest --mode enforce > {}:\n", suggestion.display());
    for line in suggested.lines() {
        println!("  {line}");
    }

    let applied = ztctl(&["policy", "apply", suggestion.to_str().context("a UTF-8 path")?])?;
    println!("3. ztctl policy apply {}\n  {}", suggestion.display(), applied.trim());

    println!("\n4. Every probe again: the suggestion gives the hand-written policy's verdicts");
    println!("   (audit expectations pass: their traffic was observed, so it is allowed now):");
    failures += run_probes(star, PROBES.iter());
    std::thread::sleep(Duration::from_millis(2500));

    let map = out_dir.join("zt-map.html");
    let drawn = ztctl(&["flows", "map", "-o", "html", "--output-file", map.to_str().context("a UTF-8 path")?])?;
    println!("\n5. ztctl flows map -o html: {}", drawn.trim());
    println!("   Open {} in a browser (it needs no network).", map.display());

    let status = agent.terminate()?;
    println!("\nLearning agent stopped ({status}).");
    Ok(failures)
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
