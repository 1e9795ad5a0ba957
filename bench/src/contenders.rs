//! The filters compared end to end, each set up in the receiver namespace only, with the
//! same N allowed (source address, UDP port) pairs and default drop:
//!
//! - no filter: the stack itself disposes of unwanted datagrams (UDP `NoPorts`).
//! - zt: the real `zt-agent` binary, native XDP, a zt/v1 policy of N ingress rules.
//! - nftables, best practice: a netdev-family ingress chain on the receiver's veth with one
//!   lookup in a concatenated `ipv4_addr . inet_service` set of N elements, then drop.
//! - iptables (legacy): N linear rules, jumped to from INPUT, policy DROP.
//!
//! Each counts what it dropped with its own counter: zt's STATS map (read from its pins),
//! the nft named counter, the iptables policy counter.

use std::{net::Ipv4Addr, os::fd::OwnedFd, path::Path, process::Command, time::Duration};

use anyhow::{Context, bail};
use aya::maps::{Map, MapData, PerCpuArray};
use zt_common::{
    map_names,
    reason::{NUM_REASONS, VERDICT_DENIED},
    stats::{Counter, stats_index},
};
use zt_tests::{BpfFs, Netns, NsProcess, Scratch};

use crate::rawxdp::{self, XdpProgram};

pub const ALLOWED_PORT: u16 = 5000;
pub const DENIED_PORT: u16 = 6000;
const TABLE: &str = "ztbench";

/// The N allowed (source, port) pairs: N-1 others, and the traffic's own pair last (the
/// worst case for a linear rule list).
pub fn allowed(n: usize, client: Ipv4Addr) -> Vec<(Ipv4Addr, u16)> {
    let mut v: Vec<(Ipv4Addr, u16)> =
        (1..n).map(|i| (Ipv4Addr::new(198, 19, (i >> 8) as u8, i as u8), 10_000 + (i % 1000) as u16)).collect();
    v.push((client, ALLOWED_PORT));
    v
}

/// A filter under test; `dropped` reads its own drop counter.
pub trait Contender {
    fn name(&self) -> &'static str;
    fn dropped(&mut self) -> anyhow::Result<u64>;
}

/// Attaches the empty XDP_PASS program to `iface` in `ns` (see [`rawxdp`]).
fn pass_link(ns: &Netns, iface: &str, prog: &XdpProgram) -> anyhow::Result<OwnedFd> {
    ns.try_run_in(|| prog.attach_native(rawxdp::ifindex(iface)?))?
        .with_context(|| format!("cannot attach an XDP program to {iface}"))
}

fn exec_checked(ns: &Netns, program: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = ns.exec(program, args)?;
    if !out.status.success() {
        bail!(
            "`{program} {}` failed in {}: {}",
            args.join(" "),
            ns.name(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The number after `word` in `text`.
pub fn number_after(text: &str, word: &str) -> Option<u64> {
    let mut it = text.split_whitespace();
    while let Some(w) = it.next() {
        if w == word {
            return it.next()?.trim_matches(|c: char| !c.is_ascii_digit()).parse().ok();
        }
    }
    None
}

pub struct NoFilter<'a> {
    ns: &'a Netns,
    _link: OwnedFd,
}

impl<'a> NoFilter<'a> {
    pub fn new(ns: &'a Netns, iface: &str, pass: &XdpProgram) -> anyhow::Result<NoFilter<'a>> {
        Ok(NoFilter { ns, _link: pass_link(ns, iface, pass)? })
    }
}

impl Contender for NoFilter<'_> {
    fn name(&self) -> &'static str {
        "no filter"
    }

    fn dropped(&mut self) -> anyhow::Result<u64> {
        let snmp = self.ns.try_run_in(|| std::fs::read_to_string("/proc/thread-self/net/snmp"))??;
        udp_no_ports(&snmp).context("/proc/net/snmp has no Udp NoPorts counter")
    }
}

/// `Udp: ... NoPorts ...` from /proc/net/snmp (a header line, then a value line).
pub fn udp_no_ports(snmp: &str) -> Option<u64> {
    let mut lines = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (head, values) = (lines.next()?, lines.next()?);
    let i = head.split_whitespace().position(|w| w == "NoPorts")?;
    values.split_whitespace().nth(i)?.parse().ok()
}

pub struct Nftables<'a> {
    ns: &'a Netns,
    _link: OwnedFd,
}

impl<'a> Nftables<'a> {
    pub fn new(
        ns: &'a Netns,
        iface: &str,
        pass: &XdpProgram,
        set: &[(Ipv4Addr, u16)],
        scratch: &Scratch,
    ) -> anyhow::Result<Nftables<'a>> {
        let link = pass_link(ns, iface, pass)?;
        let elements: Vec<String> = set.iter().map(|(a, p)| format!("{a} . {p}")).collect();
        let ruleset = format!(
            "table netdev {TABLE} {{\n  set allowed {{ type ipv4_addr . inet_service; elements = {{ {} }} }}\n  \
             counter dropped {{ }}\n  chain ingress {{\n    type filter hook ingress device \"{iface}\" priority 0; policy accept;\n    \
             meta protocol != ip accept\n    ip saddr . udp dport @allowed accept\n    counter name \"dropped\" drop\n  }}\n}}\n",
            elements.join(", ")
        );
        let file = scratch.write("ruleset.nft", ruleset)?;
        exec_checked(ns, "nft", &["-f", &file.to_string_lossy()])?;
        Ok(Nftables { ns, _link: link })
    }
}

impl Contender for Nftables<'_> {
    fn name(&self) -> &'static str {
        "nftables"
    }

    fn dropped(&mut self) -> anyhow::Result<u64> {
        let out = exec_checked(self.ns, "nft", &["list", "counter", "netdev", TABLE, "dropped"])?;
        number_after(&out, "packets").context("nft printed no packet count for the drop counter")
    }
}

impl Drop for Nftables<'_> {
    fn drop(&mut self) {
        let _ = self.ns.exec("nft", ["delete", "table", "netdev", TABLE]);
    }
}

pub struct Iptables<'a> {
    ns: &'a Netns,
    _link: OwnedFd,
}

impl<'a> Iptables<'a> {
    pub fn new(
        ns: &'a Netns,
        iface: &str,
        pass: &XdpProgram,
        set: &[(Ipv4Addr, u16)],
        scratch: &Scratch,
    ) -> anyhow::Result<Iptables<'a>> {
        let link = pass_link(ns, iface, pass)?;
        let mut rules = String::from(
            "*filter\n:INPUT DROP [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:ztbench - [0:0]\n-A INPUT -j ztbench\n",
        );
        for (a, p) in set {
            rules.push_str(&format!("-A ztbench -s {a}/32 -p udp -m udp --dport {p} -j ACCEPT\n"));
        }
        rules.push_str("COMMIT\n");
        let file = scratch.write("rules.iptables", rules)?;
        exec_checked(ns, "iptables-legacy-restore", &[&file.to_string_lossy()])?;
        Ok(Iptables { ns, _link: link })
    }
}

impl Contender for Iptables<'_> {
    fn name(&self) -> &'static str {
        "iptables"
    }

    fn dropped(&mut self) -> anyhow::Result<u64> {
        // INPUT holds one rule, so listing it is quick whatever N is.
        let out = exec_checked(self.ns, "iptables-legacy", &["-L", "INPUT", "-v", "-x", "-n"])?;
        let head = out.lines().next().unwrap_or_default();
        number_after(head, "DROP").context("iptables printed no policy counter for INPUT")
    }
}

impl Drop for Iptables<'_> {
    fn drop(&mut self) {
        let _ = self.ns.exec("iptables-legacy", ["-P", "INPUT", "ACCEPT"]);
        let _ = self.ns.exec("iptables-legacy", ["-F"]);
        let _ = self.ns.exec("iptables-legacy", ["-X"]);
    }
}

/// A zt/v1 policy allowing exactly `set` (one ingress rule per pair) to the host.
pub fn zt_policy(set: &[(Ipv4Addr, u16)]) -> String {
    let mut p = String::from(
        "apiVersion: zt/v1\nkind: Policy\nmetadata: {name: bench}\nspec:\n  selector: {app: server}\n  ingress:\n",
    );
    for (a, port) in set {
        p.push_str(&format!("    - from: [{{cidr: {a}/32}}]\n      ports: [{{protocol: UDP, port: {port}}}]\n"));
    }
    p
}

pub struct Zt {
    // Field order is drop order: the agent stops before its bpffs goes.
    pub agent: NsProcess,
    stats: PerCpuArray<MapData, Counter>,
    _bpffs: BpfFs,
}

impl Zt {
    /// The agent in native XDP mode enforcing one ingress rule per (source, UDP port) pair.
    pub fn start(
        agent_bin: &Path,
        ns: &Netns,
        iface: &str,
        set: &[(Ipv4Addr, u16)],
        scratch: &Scratch,
    ) -> anyhow::Result<Zt> {
        Zt::start_with(agent_bin, ns, iface, &zt_policy(set), &["--xdp-mode", "native"], scratch)
    }

    /// The agent enforcing `policy` (YAML) with extra `zt-agent run` arguments.
    pub fn start_with(
        agent_bin: &Path,
        ns: &Netns,
        iface: &str,
        policy: &str,
        extra: &[&str],
        scratch: &Scratch,
    ) -> anyhow::Result<Zt> {
        let bpffs = BpfFs::mount()?;
        let policy = scratch.write("policy.yaml", policy)?;
        let pins = bpffs.path().join("zt");
        let mut cmd = Command::new(agent_bin);
        cmd.args(["run", "--iface", iface, "--labels", "app=server"])
            .args(extra)
            .arg("--policy")
            .arg(&policy)
            .arg("--bpffs")
            .arg(&pins)
            .arg("--state-dir")
            .arg(scratch.join("state"));
        // Keep the bench's agent off the machine's API socket and metrics port.
        let help = Command::new(agent_bin)
            .args(["run", "--help"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
        let help = help.unwrap_or_default();
        if help.contains("--socket") {
            cmd.arg("--socket").arg(scratch.join("agent.sock"));
        }
        if help.contains("--metrics") {
            cmd.args(["--metrics", "none"]);
        }
        // The next contender needs the interface free: enforcement must end with the agent.
        if help.contains("--no-pin") {
            cmd.arg("--no-pin");
        }
        let mut agent = NsProcess::spawn(ns, &cmd, scratch.path())?;
        agent
            .wait_for_stderr(|l| l.contains("zt-agent: ready"), Duration::from_secs(120))
            .context("zt-agent did not become ready")?;
        let map = MapData::from_pin(pins.join(map_names::STATS)).context("cannot open the agent's pinned STATS map")?;
        let stats = PerCpuArray::try_from(Map::PerCpuArray(map))?;
        Ok(Zt { agent, stats, _bpffs: bpffs })
    }
}

impl Contender for Zt {
    fn name(&self) -> &'static str {
        "zt"
    }

    fn dropped(&mut self) -> anyhow::Result<u64> {
        let mut sum = 0;
        for reason in 0..NUM_REASONS as u8 {
            let per_cpu = self.stats.get(&stats_index(VERDICT_DENIED, reason), 0)?;
            sum += per_cpu.iter().map(|c| c.packets).sum::<u64>();
        }
        Ok(sum)
    }
}

impl Drop for Zt {
    fn drop(&mut self) {
        let _ = self.agent.terminate();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_traffic_pair_is_the_last_of_n_distinct_pairs() {
        let client = Ipv4Addr::new(198, 18, 7, 1);
        let set = allowed(10_000, client);
        assert_eq!(set.len(), 10_000);
        assert_eq!(set.last(), Some(&(client, ALLOWED_PORT)));
        let distinct: std::collections::HashSet<_> = set.iter().collect();
        assert_eq!(distinct.len(), set.len());
    }

    #[test]
    fn counters_are_read_from_tool_output() {
        let nft = "table netdev ztbench {\n\tcounter dropped {\n\t\tpackets 123456 bytes 7890\n\t}\n}\n";
        assert_eq!(number_after(nft, "packets"), Some(123456));
        let ipt = "Chain INPUT (policy DROP 4242 packets, 254520 bytes)";
        assert_eq!(number_after(ipt, "DROP"), Some(4242));
        let snmp = "Udp: InDatagrams NoPorts InErrors\nUdp: 10 77 0\nUdpLite: InDatagrams NoPorts\nUdpLite: 0 0\n";
        assert_eq!(udp_no_ports(snmp), Some(77));
    }

    #[test]
    fn the_zt_policy_has_one_rule_per_pair() {
        let p = zt_policy(&allowed(3, Ipv4Addr::new(198, 18, 0, 1)));
        assert_eq!(p.matches("- from:").count(), 3);
        assert!(p.contains("{cidr: 198.18.0.1/32}"));
    }
}
