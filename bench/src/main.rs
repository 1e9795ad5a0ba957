//! `zt-bench`: the measurements behind zt's performance claims, side by side with nftables
//! and iptables in one run (`cargo xtask bench` builds and runs it as root).
//!
//! Sections, each in its own module:
//! 1. [`datapath`]: cost per packet of the real XDP program (BPF_PROG_TEST_RUN) vs the
//!    empty program, by case, address family and table size.
//! 2. [`endtoend`]: drop and pass rates on a veth pair between two namespaces — no filter,
//!    zt (the real agent), nftables, iptables.
//! 3. [`control`]: compile and apply latency of generated policies; agent and map memory.
//! 4. [`flows`]: ring-buffer drain, decode and JSON-line throughput.
//! 5. [`bulk`]: bulk TCP (iperf3) with no filter, zt on each ingress hook, and nftables.
//!
//! Every figure is a median over rounds with its spread; ratios pair rounds measured
//! back to back. [`report`] writes `results.json`, `results.md` and `cost-vs-rules.svg`.

mod bulk;
mod contenders;
mod control;
mod counter;
mod datapath;
mod endtoend;
mod flows;
mod frames;
mod loaded;
mod machine;
mod plan;
mod plot;
mod rawxdp;
mod report;
mod results;
mod stats;
mod synthetic;

use std::{path::PathBuf, sync::OnceLock, time::Instant};

use anyhow::{Context, bail};

use crate::{machine::Machine, plan::Plan, results::Results};

static START: OnceLock<Instant> = OnceLock::new();

/// Prints what is being measured now, with the time since the start.
pub fn progress(what: &str) {
    let t = START.get_or_init(Instant::now).elapsed().as_secs_f64();
    eprintln!("zt-bench [{t:6.1}s] {what}");
}

fn main() {
    if let Err(e) = run() {
        eprintln!("zt-bench: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> anyhow::Result<()> {
    START.get_or_init(Instant::now);
    let mut quick = false;
    let mut only: Option<String> = None;
    let mut out = PathBuf::from("target/bench");
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => quick = true,
            "--out" => out = args.next().context("--out needs a directory")?.into(),
            "--only" => only = Some(args.next().context("--only needs a section name")?),
            _ => bail!(
                "unknown argument {a:?}; usage: zt-bench [--quick] [--out DIR] [--only datapath|endtoend|control|flows|bulk]"
            ),
        }
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the benchmarks load eBPF programs and create network namespaces; run zt-bench as root");
    }
    let plan = Plan::new(quick);
    let mut results = Results {
        machine: Machine::describe(),
        plan: plan.clone(),
        wall_seconds: 0.0,
        datapath: vec![],
        endtoend: vec![],
        control: vec![],
        change: None,
        memory: None,
        flows: None,
        bulk: vec![],
        targets: vec![],
        notes: vec![],
    };
    // A failed section is reported and the others still run; the exit status tells.
    let mut failed = Vec::new();
    let mut section = |name: &str, r: anyhow::Result<()>, notes: &mut Vec<String>| {
        if let Err(e) = r {
            eprintln!("zt-bench: section {name} failed: {e:#}");
            notes.push(format!("section {name} failed: {e:#}"));
            failed.push(name.to_string());
        }
    };
    let wanted = |name: &str| only.as_deref().is_none_or(|o| o == name);
    if wanted("datapath") {
        progress("section 1: datapath cost per packet (BPF_PROG_TEST_RUN)");
        let r = datapath::run(&plan).map(|f| results.datapath = f);
        section("datapath", r, &mut results.notes);
    }
    if wanted("endtoend") {
        progress("section 2: end-to-end drop and pass rates on a veth pair");
        let r = endtoend::run(&plan, &mut results);
        section("end-to-end", r, &mut results.notes);
    }
    if wanted("control") {
        progress("section 3: control plane");
        let r = control::run(&plan).map(|f| results.control = f);
        section("control plane", r, &mut results.notes);
        let r = control::run_change(&plan).map(|f| results.change = Some(f));
        section("control plane (one-rule change)", r, &mut results.notes);
    }
    if wanted("flows") {
        progress("section 4: flow pipeline");
        let r = flows::run(&plan).map(|f| results.flows = Some(f));
        section("flow pipeline", r, &mut results.notes);
    }
    if wanted("bulk") {
        progress("section 5: bulk TCP through each ingress hook (iperf3)");
        let r = bulk::run(&plan, &mut results);
        section("bulk TCP", r, &mut results.notes);
    }

    results.wall_seconds = START.get().expect("set at start").elapsed().as_secs_f64();
    results.targets = report::targets(&results);
    let markdown = report::write(&results, &out)?;
    println!("{markdown}");
    eprintln!("zt-bench: wrote {}/results.json, results.md and cost-vs-rules.svg", out.display());
    if !failed.is_empty() {
        bail!("{} section(s) failed: {}", failed.len(), failed.join(", "));
    }
    Ok(())
}
