//! Section 2: drop and pass rates on a veth pair between two namespaces, for each
//! contender ([`crate::contenders`]) with the same traffic and the same N allowed pairs.
//!
//! Traffic: minimum-size UDP frames from the client namespace, sent by the XDP live-frames
//! generator ([`crate::rawxdp`]) for a fixed time per measurement (bounded and
//! self-stopping). Definitions:
//! - **drop rate**: denied packets (a port not in the allowed set) the filter disposes of
//!   per second, read from the filter's own drop counter while the sender saturates the
//!   link. A faster filter disposes of more of the offered load.
//! - **pass rate**: allowed packets per second delivered to a UDP socket in the receiver
//!   namespace (counted by `recvmmsg`).
//!
//! Counters are read after a warm-up and again after the measured interval, both while the
//! sender runs, so start-up and drain effects are excluded.
//!
//! The sender is pinned to one core, and the receiving veth processes what it queued (XDP,
//! skb allocation, nft ingress, IP input) in that core's softirq: a rate is one core's
//! worth of sending plus receiving plus filtering. The other core runs the socket reader.

use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    sync::atomic::{AtomicBool, Ordering},
    time::Instant,
};

use anyhow::Context;
use zt_tests::{Host, Scratch, topology};

use crate::{
    contenders::{self, ALLOWED_PORT, Contender, DENIED_PORT, Iptables, Nftables, NoFilter, Zt},
    counter::UdpRateCounter,
    frames::{self, Macs},
    plan::Plan,
    progress,
    rawxdp::{self, XdpProgram},
    results::{EndToEndFigure, Memory, Results},
    stats::Sample,
};

/// The sender runs on this core. The receiver veth's NAPI poll — where zt's XDP program,
/// the nft ingress hook and the IP stack run — is scheduled as a softirq on the core that
/// queued the frames, so each frame's sending and filtering share this core; the other
/// core is left to the pass counter's socket reader.
const SENDER_CPU: usize = 0;

/// Frames per live-frames call: tens of milliseconds, so a stop is honoured quickly.
const FRAMES_PER_CALL: u32 = 1 << 16;

pub fn run(plan: &Plan, results: &mut Results) -> anyhow::Result<()> {
    let agent_bin = sibling_binary("zt-agent")?;
    let net = topology::pair()?;
    let scratch = Scratch::new("bench")?;
    let macs = Macs { dst: mac(&net.server)?, src: mac(&net.client)? };
    let (client, server) = (IpAddr::from(net.client.v4), IpAddr::from(net.server.v4));
    let drop_frame = frames::udp(macs, client, server, 40_000, DENIED_PORT);
    let pass_frame = frames::udp(macs, client, server, 40_001, ALLOWED_PORT);
    let tx = XdpProgram::tx().context("cannot load the XDP_TX generator program")?;
    let pass = XdpProgram::pass().context("cannot load the XDP_PASS program")?;
    let ifindex = net.client.ns.try_run_in(|| rawxdp::ifindex(&net.client.iface))??;
    let counter = UdpRateCounter::start(&net.server.ns, SocketAddr::new(server, ALLOWED_PORT))?;
    let meter = Meter { plan, net_client: &net.client, ifindex, tx: &tx, counter: &counter };
    let (ns, iface) = (&net.server.ns, net.server.iface.as_str());
    let out = &mut results.endtoend;

    progress("end-to-end: no filter");
    meter.both(&mut NoFilter::new(ns, iface, &pass)?, 0, &drop_frame, &pass_frame, out)?;
    let memory_at = if plan.e2e_rules.contains(&10_000) { 10_000 } else { *plan.e2e_rules.iter().max().unwrap_or(&0) };
    for &n in &plan.e2e_rules {
        let set = contenders::allowed(n, net.client.v4);
        progress(&format!("end-to-end: zt (real agent, native XDP), {n} rules"));
        let mut zt = Zt::start(&agent_bin, ns, iface, &set, &scratch)?;
        if n == memory_at {
            results.memory = Some(memory(zt.agent.pid(), n)?);
        }
        meter.both(&mut zt, n, &drop_frame, &pass_frame, out)?;
        drop(zt);
        progress(&format!("end-to-end: nftables (netdev ingress, concatenated set), {n} rules"));
        meter.both(&mut Nftables::new(ns, iface, &pass, &set, &scratch)?, n, &drop_frame, &pass_frame, out)?;
        progress(&format!("end-to-end: iptables-legacy (linear INPUT rules), {n} rules"));
        meter.both(&mut Iptables::new(ns, iface, &pass, &set, &scratch)?, n, &drop_frame, &pass_frame, out)?;
    }
    Ok(())
}

struct Meter<'a> {
    plan: &'a Plan,
    net_client: &'a Host,
    ifindex: u32,
    tx: &'a XdpProgram,
    counter: &'a UdpRateCounter,
}

impl Meter<'_> {
    fn both(
        &self,
        c: &mut dyn Contender,
        rules: usize,
        drop_frame: &[u8],
        pass_frame: &[u8],
        out: &mut Vec<EndToEndFigure>,
    ) -> anyhow::Result<()> {
        let (pps, offered_pps) = self.rate(drop_frame, &mut || c.dropped())?;
        out.push(EndToEndFigure { contender: c.name(), traffic: "drop", rules, pps, offered_pps });
        let (pps, offered_pps) = self.rate(pass_frame, &mut || Ok(self.counter.count()))?;
        out.push(EndToEndFigure { contender: c.name(), traffic: "pass", rules, pps, offered_pps });
        Ok(())
    }

    /// Packets per second by `read` while `frame` floods the receiver, and the offered load
    /// (frames the sender handed to its veth per second), over the rounds.
    fn rate(&self, frame: &[u8], read: &mut dyn FnMut() -> anyhow::Result<u64>) -> anyhow::Result<(Sample, Sample)> {
        let (mut rounds, mut offered) = (Vec::new(), Vec::new());
        for _ in 0..self.plan.rounds {
            let stop = AtomicBool::new(false);
            let started = Instant::now();
            let (rate, sent) = std::thread::scope(|s| {
                let sender = s.spawn(|| {
                    self.net_client.ns.try_run_in(|| {
                        pin_to_cpu(SENDER_CPU);
                        self.tx.flood(self.ifindex, frame, FRAMES_PER_CALL, &stop)
                    })
                });
                let measured = (|| {
                    std::thread::sleep(self.plan.e2e_warmup);
                    let (c0, t0) = (read()?, Instant::now());
                    std::thread::sleep(self.plan.e2e_measure);
                    let (c1, t1) = (read()?, Instant::now());
                    anyhow::Ok((c1.saturating_sub(c0)) as f64 / (t1 - t0).as_secs_f64())
                })();
                stop.store(true, Ordering::Relaxed);
                let sent = sender.join().expect("generator thread");
                let sent = sent?.context("the XDP live-frames generator failed")?;
                anyhow::Ok((measured?, sent))
            })?;
            rounds.push(rate);
            offered.push(sent as f64 / started.elapsed().as_secs_f64());
        }
        Ok((Sample::new(rounds), Sample::new(offered)))
    }
}

/// Restricts the calling thread to `cpu`; best effort.
fn pin_to_cpu(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is empty; CPU_SET stays within it; 0 is this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set);
    }
}

/// A binary next to this one (`target/release/`).
pub fn sibling_binary(name: &str) -> anyhow::Result<PathBuf> {
    let path = std::env::current_exe()?.with_file_name(name);
    anyhow::ensure!(
        path.is_file(),
        "{} does not exist; build it with `cargo build --release -p zt-agent` (cargo xtask bench does)",
        path.display()
    );
    Ok(path)
}

fn mac(host: &Host) -> anyhow::Result<[u8; 6]> {
    let out = host.ns.exec("cat", [format!("/sys/class/net/{}/address", host.iface)])?;
    let text = String::from_utf8_lossy(&out.stdout);
    let bytes: Vec<u8> = text.trim().split(':').filter_map(|b| u8::from_str_radix(b, 16).ok()).collect();
    bytes.try_into().map_err(|_| anyhow::anyhow!("cannot read the MAC address of {} in {}", host.iface, host.ns.name()))
}

/// The agent's resident memory and the kernel memory charged to the BPF maps it holds.
fn memory(pid: u32, rules: usize) -> anyhow::Result<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS in the agent's /proc status")?;
    let maps = zt_agent::datapath::memory::maps_of_process(pid);
    Ok(Memory {
        rules,
        agent_rss_kib: rss,
        bpf_maps: maps.len(),
        bpf_map_memlock_kib: maps.iter().map(|m| m.bytes).sum::<u64>() / 1024,
        per_map: maps.into_iter().map(|m| (m.name, m.max_entries, m.bytes / 1024)).collect(),
    })
}
