//! Section 5, bulk TCP through each ingress hook: a real `iperf3` between the two
//! namespaces of a veth pair, with no filter, with zt on each hook (the default, which
//! picks by link kind; native XDP; generic XDP; TC ingress) and with nftables (a netdev
//! ingress chain allowing the client's TCP to the iperf3 port).
//!
//! Native XDP on a veth converts every GSO super-packet for XDP, which costs bulk TCP
//! about half its throughput; this section is the measurement behind the default hook.
//! Rounds are interleaved (every contender once per round, in order), so each contender's
//! ratio to the unfiltered link pairs measurements taken moments apart.

use std::{
    net::Ipv4Addr,
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::{Context, bail};
use zt_tests::{Netns, NsProcess, Scratch, topology};

use crate::{
    contenders::Zt,
    plan::Plan,
    progress,
    results::{BulkFigure, Results},
    stats::Sample,
};

const PORT: u16 = 5201;

/// What filters the server's ingress during a measurement.
#[derive(Clone, Copy)]
enum Filter {
    None,
    /// zt with these `zt-agent run` arguments.
    Zt(&'static [&'static str]),
    Nftables,
}

const CONTENDERS: &[(&str, Filter)] = &[
    ("no filter", Filter::None),
    ("zt default hook", Filter::Zt(&[])),
    ("zt native XDP", Filter::Zt(&["--xdp-mode", "native"])),
    ("zt generic XDP", Filter::Zt(&["--xdp-mode", "generic"])),
    ("zt TC ingress", Filter::Zt(&["--xdp-mode", "off"])),
    ("nftables", Filter::Nftables),
];

pub fn run(plan: &Plan, results: &mut Results) -> anyhow::Result<()> {
    if Command::new("iperf3").arg("--version").stdout(Stdio::null()).status().is_err() {
        bail!("iperf3 is not installed; `cargo xtask setup` installs it (Debian package iperf3)");
    }
    let agent_bin = crate::endtoend::sibling_binary("zt-agent")?;
    let net = topology::pair()?;
    let scratch = Scratch::new("bench-bulk")?;
    let mut server_cmd = Command::new("iperf3");
    server_cmd.args(["-s", "-B", &net.server.v4.to_string(), "-p", &PORT.to_string()]);
    let _server = NsProcess::spawn(&net.server.ns, &server_cmd, scratch.path())?;
    std::thread::sleep(Duration::from_millis(300));
    let policy = policy(net.client.v4);
    let mut rounds: Vec<Vec<f64>> = vec![Vec::new(); CONTENDERS.len()];
    for round in 0..plan.rounds {
        for (i, (name, filter)) in CONTENDERS.iter().enumerate() {
            progress(&format!("bulk TCP: {name}, round {}/{}", round + 1, plan.rounds));
            let (ns, iface) = (&net.server.ns, net.server.iface.as_str());
            // Held while iperf3 runs; dropping it removes the filter.
            let guard = match filter {
                Filter::None => Active::Nothing,
                Filter::Zt(args) => {
                    Active::Zt { _agent: Box::new(Zt::start_with(&agent_bin, ns, iface, &policy, args, &scratch)?) }
                }
                Filter::Nftables => Active::Nft { _table: Nft::new(ns, iface, net.client.v4, &scratch)? },
            };
            let bps = iperf3(&net.client.ns, net.server.v4, plan.bulk_seconds)
                .with_context(|| format!("bulk TCP through {name}"))?;
            drop(guard);
            rounds[i].push(bps / 1e9);
        }
    }
    let base = Sample::new(rounds[0].clone());
    for ((name, _), gbps) in CONTENDERS.iter().zip(rounds) {
        let gbps = Sample::new(gbps);
        results.bulk.push(BulkFigure { contender: name, ratio: gbps.ratio_to(&base), gbit_per_s: gbps });
    }
    Ok(())
}

/// The filter in place during one measurement.
enum Active<'a> {
    Nothing,
    Zt { _agent: Box<Zt> },
    Nft { _table: Nft<'a> },
}

/// zt's policy: the client may open TCP to the iperf3 port; nothing else.
fn policy(client: Ipv4Addr) -> String {
    format!(
        "apiVersion: zt/v1\nkind: Policy\nmetadata: {{name: bulk}}\nspec:\n  selector: {{app: server}}\n  ingress:\n    \
         - from: [{{cidr: {client}/32}}]\n      ports: [{{protocol: TCP, port: {PORT}}}]\n"
    )
}

/// Runs an iperf3 client for `seconds` and returns the receiver's bits per second.
fn iperf3(client: &Netns, server: Ipv4Addr, seconds: u64) -> anyhow::Result<f64> {
    let out = client.exec_timeout(
        "iperf3",
        ["-c", &server.to_string(), "-p", &PORT.to_string(), "-t", &seconds.to_string(), "-J"],
        Duration::from_secs(seconds + 20),
    )?;
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).context("iperf3 printed no JSON report")?;
    if let Some(e) = report["error"].as_str() {
        bail!("iperf3: {e}");
    }
    report["end"]["sum_received"]["bits_per_second"].as_f64().context("iperf3's report has no received rate")
}

/// A netdev ingress chain on the server's link: the client's TCP to the iperf3 port and
/// non-IPv4 pass, the rest is dropped — the stateless equivalent of zt's policy here.
struct Nft<'a> {
    ns: &'a Netns,
}

impl<'a> Nft<'a> {
    fn new(ns: &'a Netns, iface: &str, client: Ipv4Addr, scratch: &Scratch) -> anyhow::Result<Nft<'a>> {
        let ruleset = format!(
            "table netdev ztbulk {{\n  chain ingress {{\n    type filter hook ingress device \"{iface}\" priority 0; policy accept;\n    \
             meta protocol != ip accept\n    ip saddr {client} tcp dport {PORT} accept\n    drop\n  }}\n}}\n"
        );
        let file = scratch.write("bulk.nft", ruleset)?;
        let out = ns.exec("nft", ["-f", &file.to_string_lossy()])?;
        if !out.status.success() {
            bail!("nft -f failed: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(Nft { ns })
    }
}

impl Drop for Nft<'_> {
    fn drop(&mut self) {
        let _ = self.ns.exec("nft", ["delete", "table", "netdev", "ztbulk"]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_zt_policy_allows_only_the_clients_tcp_to_the_iperf3_port() {
        let p = policy(Ipv4Addr::new(198, 18, 0, 1));
        assert!(p.contains("{cidr: 198.18.0.1/32}") && p.contains("{protocol: TCP, port: 5201}"), "{p}");
        assert_eq!(p.matches("- from:").count(), 1);
    }
}
