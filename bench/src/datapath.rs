//! Section 1: cost per packet of the real XDP program, by BPF_PROG_TEST_RUN on the real
//! maps, as a ratio to the empty XDP program measured the same way in the same rounds.
//!
//! Repeated packets (an established flow, repeats of a denied tuple, a quarantined source,
//! a malformed frame) run one packet `repeat` times per call, and the kernel reports the
//! mean. A new flow leaves state behind (a conntrack entry, or a remembered denial), so
//! repeating it would measure another path from the second run on: new flows are measured
//! with `repeat=1` over K distinct tuples instead, and so is their baseline, because one
//! test run's fixed overhead (timer, context setup) is then part of both sides of the ratio.

use zt_common::{
    addr::Addr,
    config::{Config, FLAG_QUARANTINE_ACTIVE},
    quarantine::QuarantineValue,
    ratelimit::{RateBucket, RateKey},
};

use crate::{
    frames::{self, Macs},
    loaded::{Loaded, Program, XDP_DROP, XDP_PASS},
    plan::Plan,
    progress,
    results::DatapathFigure,
    stats::Sample,
    synthetic::{self, ALLOWED_PORT, DENIED_PORT, LIMITED_PORT},
};

/// The datapath's form of an address.
fn addr_of(ip: std::net::IpAddr) -> Addr {
    match ip {
        std::net::IpAddr::V4(a) => Addr::from_v4(a.octets()),
        std::net::IpAddr::V6(a) => Addr::from_v6(a.octets()),
    }
}

/// Source port of the established flow; new flows use ports from 1024 up.
const ESTABLISHED_SPORT: u16 = 7;

pub fn run(plan: &Plan) -> anyhow::Result<Vec<DatapathFigure>> {
    let mut figures = Vec::new();
    for &rules in &plan.datapath_rules {
        progress(&format!("datapath: loading {rules} policy entries and {} ipcache prefixes", plan.ipcache_prefixes));
        let tables = synthetic::tables(rules, plan.ipcache_prefixes);
        let mut zt = Loaded::new(&Config::DEFAULT)?;
        zt.apply(&tables)?;
        let mut bench = Bench { zt: &mut zt, plan, rules, entries: tables.policy.len(), out: &mut figures };
        for v6 in [false, true] {
            bench.family(v6)?;
        }
    }
    Ok(figures)
}

struct Bench<'a> {
    zt: &'a mut Loaded,
    plan: &'a Plan,
    rules: usize,
    entries: usize,
    out: &'a mut Vec<DatapathFigure>,
}

impl Bench<'_> {
    fn family(&mut self, v6: bool) -> anyhow::Result<()> {
        let family = if v6 { "IPv6" } else { "IPv4" };
        let (client, server) = (synthetic::client(v6, 1), synthetic::server(v6));
        let frame = |sport, dport| frames::udp(Macs::LOCAL, client, server, sport, dport);

        progress(&format!("datapath: {family}, {} rules: established flow", self.rules));
        let established = frame(ESTABLISHED_SPORT, ALLOWED_PORT);
        self.zt.run(Program::Zt, &established, 1, XDP_PASS)?;
        // The reference finds the established flow in its table, as zt does in conntrack.
        self.zt.dp.reference_flows()?.insert(
            synthetic::tuple(client, server, ESTABLISHED_SPORT, ALLOWED_PORT),
            0,
            0,
        )?;
        self.repeated(family, "established flow", &established, XDP_PASS)?;

        progress(&format!("datapath: {family}, {} rules: repeated packet of a denied flow", self.rules));
        self.repeated(family, "repeated denied packet (UDP, default-deny)", &frame(1024, DENIED_PORT), XDP_DROP)?;
        // A retransmitted SYN, a scan probe, a flood: the common repeated denial.
        let syn = frames::tcp_syn(Macs::LOCAL, client, server, 1024, DENIED_PORT);
        self.repeated(family, "repeated denied SYN (default-deny)", &syn, XDP_DROP)?;

        progress(&format!("datapath: {family}, {} rules: new flow denied by default-deny", self.rules));
        self.new_flows(family, v6, "new flow denied (default-deny)", DENIED_PORT, XDP_DROP, 1)?;

        progress(&format!("datapath: {family}, {} rules: new flow allowed", self.rules));
        self.new_flows(family, v6, "new flow allowed", ALLOWED_PORT, XDP_PASS, 0)?;

        progress(&format!("datapath: {family}, {} rules: rate-limited new flows", self.rules));
        self.new_flows(family, v6, "new flow allowed, rate-limited (under the limit)", LIMITED_PORT, XDP_PASS, 1)?;
        // Sources deep in debt: their buckets' next flow is due in the far future, so every
        // new flow is one the limiter denies, and a repeated one is served from the cache
        // of recent denials once its source floods.
        let keys: Vec<RateKey> = (1..=126)
            .map(|host| RateKey { src: addr_of(synthetic::client(v6, host)), limit: 1, _pad: [0; 2] })
            .collect();
        for key in &keys {
            self.zt.maps.rate_buckets.insert(key, RateBucket { tat_ns: u64::MAX / 2 }, 0)?;
        }
        let over_new = self.new_flows(family, v6, "new flow over its rate limit", LIMITED_PORT, XDP_DROP, 2);
        let over = frame(ESTABLISHED_SPORT + 1, LIMITED_PORT);
        let over_repeated =
            over_new.and_then(|()| self.repeated(family, "repeated packet over its rate limit (UDP)", &over, XDP_DROP));
        for key in &keys {
            self.zt.maps.rate_buckets.remove(key)?;
        }
        over_repeated?;

        progress(&format!("datapath: {family}, {} rules: quarantined source", self.rules));
        let addr = addr_of(client);
        self.zt.maps.quarantine.insert(addr, QuarantineValue::new(0, 0, zt_common::quarantine::ORIGIN_MANUAL), 0)?;
        self.set_quarantine_flag(true)?;
        let quarantined =
            self.repeated(family, "quarantined source", &frame(ESTABLISHED_SPORT, ALLOWED_PORT), XDP_DROP);
        self.set_quarantine_flag(false)?;
        self.zt.maps.quarantine.remove(&addr)?;
        quarantined?;

        progress(&format!("datapath: {family}, {} rules: malformed packet", self.rules));
        self.repeated(family, "malformed packet", &frames::malformed(client, server), XDP_DROP)?;
        self.zt.drain();
        Ok(())
    }

    fn set_quarantine_flag(&mut self, on: bool) -> anyhow::Result<()> {
        let mut cfg = self.zt.maps.read_config()?;
        cfg.flags = if on { cfg.flags | FLAG_QUARANTINE_ACTIVE } else { cfg.flags & !FLAG_QUARANTINE_ACTIVE };
        self.zt.maps.write_config(&cfg)?;
        Ok(())
    }

    /// One packet, `repeat` runs per call, baseline and zt alternating round by round.
    fn repeated(&mut self, family: &'static str, case: &'static str, frame: &[u8], expect: u32) -> anyhow::Result<()> {
        let repeat = self.plan.repeat;
        let (mut base, mut zt, mut reference) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..self.plan.rounds {
            base.push(self.zt.run(Program::Baseline, frame, repeat, XDP_PASS)?);
            reference.push(self.zt.run(Program::Reference, frame, repeat, XDP_PASS)?);
            zt.push(self.zt.run(Program::Zt, frame, repeat, expect)?);
            self.zt.drain();
        }
        self.record(family, case, format!("repeat={repeat}"), zt, base, reference);
        Ok(())
    }

    /// K distinct new flows to `port` per round, one run each; the baseline and the
    /// reference run the same K frames. Cases to one port take distinct `block`s of tuples:
    /// a tuple a previous case admitted would be tracked, one it denied remembered.
    fn new_flows(
        &mut self,
        family: &'static str,
        v6: bool,
        case: &'static str,
        port: u16,
        expect: u32,
        block: usize,
    ) -> anyhow::Result<()> {
        let k = self.plan.new_flows;
        let server = synthetic::server(v6);
        let (mut base, mut zt, mut reference) = (Vec::new(), Vec::new(), Vec::new());
        let offset = block * self.plan.rounds * k;
        for round in 0..self.plan.rounds {
            // Tuples never repeat within a load: source host 1..=126 times source port.
            let frames: Vec<Vec<u8>> = (0..k)
                .map(|i| {
                    let t = offset + round * k + i;
                    let sport = 1024 + (t / 126) as u16;
                    frames::udp(Macs::LOCAL, synthetic::client(v6, 1 + (t % 126) as u8), server, sport, port)
                })
                .collect();
            let mut mean = |program, expect| -> anyhow::Result<f64> {
                let mut sum = 0.0;
                for f in &frames {
                    sum += self.zt.run(program, f, 1, expect)?;
                }
                Ok(sum / k as f64)
            };
            base.push(mean(Program::Baseline, XDP_PASS)?);
            reference.push(mean(Program::Reference, XDP_PASS)?);
            zt.push(mean(Program::Zt, expect)?);
            self.zt.drain();
        }
        self.record(family, case, format!("repeat=1 x {k}"), zt, base, reference);
        Ok(())
    }

    fn record(
        &mut self,
        family: &'static str,
        case: &'static str,
        method: String,
        zt: Vec<f64>,
        base: Vec<f64>,
        reference: Vec<f64>,
    ) {
        let ns = Sample::new(zt);
        let baseline_ns = Sample::new(base);
        let ratio = ns.ratio_to(&baseline_ns);
        let reference_ns = Sample::new(reference);
        let reference_ratio = ns.ratio_to(&reference_ns);
        self.out.push(DatapathFigure {
            family,
            case,
            rules: self.rules,
            policy_entries: self.entries,
            ipcache_prefixes: self.plan.ipcache_prefixes,
            method,
            ns,
            baseline_ns,
            ratio,
            reference_ns,
            reference_ratio,
        });
    }
}
