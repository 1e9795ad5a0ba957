//! Section 3: control-plane latency of a policy push, in-process on a loaded datapath:
//! `prepare_sources` (parse, validate, compile) and `GenerationWriter::apply` (kernel writes
//! and the generation switch) timed separately, for generated zt/v1 policies of N rules.
//!
//! Each round loads a fresh datapath (not timed) so every apply writes the full tables, as
//! the first push of a policy that size does.
//!
//! [`run_change`] measures the other common push: one rule changed in a running policy of
//! many files, every file sent again (as `ztctl policy apply DIR` does), compiled through
//! the agent's parse cache and applied as a difference to the running generation.

use std::{net::Ipv4Addr, time::Instant};

use zt_agent::{
    agent::{prepare_sources, prepare_sources_cached},
    identity::{IdentityAllocator, Labels},
    policy::{CompileSettings, ParseCache},
};
use zt_common::config::Config;

use crate::{
    loaded::Loaded,
    plan::Plan,
    progress,
    results::{ChangeFigure, ControlFigure},
    stats::Sample,
};

/// A zt/v1 policy of `rules` ingress rules: N/10 peer endpoints (one identity each) and,
/// per endpoint, ten rules allowing one UDP port each, all protecting the host (`app=server`).
pub fn policy_yaml(rules: usize) -> String {
    let endpoints = (rules / 10).max(1);
    let base = u32::from(Ipv4Addr::new(198, 18, 1, 0));
    let mut y = String::with_capacity(rules * 100);
    for i in 0..endpoints {
        let addr = Ipv4Addr::from(base + i as u32);
        y.push_str(&format!(
            "apiVersion: zt/v1\nkind: Endpoint\nmetadata: {{name: peer-{i}}}\nspec:\n  addresses: [{addr}]\n  labels: {{app: peer-{i}}}\n---\n"
        ));
    }
    y.push_str(
        "apiVersion: zt/v1\nkind: Policy\nmetadata: {name: bench}\nspec:\n  selector: {app: server}\n  ingress:\n",
    );
    for j in 0..rules {
        y.push_str(&format!(
            "    - from: [{{selector: {{app: peer-{}}}}}]\n      ports: [{{protocol: UDP, port: {}}}]\n",
            j % endpoints,
            1000 + j / endpoints
        ));
    }
    y
}

/// The rules of [`policy_yaml`] in `files` files: file k holds every k-th peer endpoint and
/// the ten rules of each in a policy of its own (`bench-k`). `moved` moves the first rule of
/// file 0 from port 1000 to that port.
pub fn policy_files(rules: usize, files: usize, moved: Option<u16>) -> Vec<(String, String)> {
    let endpoints = (rules / 10).max(1);
    let base = u32::from(Ipv4Addr::new(198, 18, 0, 0));
    (0..files)
        .map(|k| {
            let mut y = String::new();
            let mine: Vec<usize> = (k..endpoints).step_by(files).collect();
            for &i in &mine {
                let addr = Ipv4Addr::from(base + i as u32);
                y.push_str(&format!(
                    "apiVersion: zt/v1\nkind: Endpoint\nmetadata: {{name: peer-{i}}}\nspec:\n  addresses: [{addr}]\n  labels: {{app: peer-{i}}}\n---\n"
                ));
            }
            y.push_str(&format!(
                "apiVersion: zt/v1\nkind: Policy\nmetadata: {{name: bench-{k}}}\nspec:\n  selector: {{app: server}}\n  ingress:\n"
            ));
            for (n, &i) in mine.iter().enumerate() {
                for port in 1000..1010 {
                    let port = match moved {
                        Some(to) if k == 0 && n == 0 && port == 1000 => to,
                        _ => port,
                    };
                    y.push_str(&format!(
                        "    - from: [{{selector: {{app: peer-{i}}}}}]\n      ports: [{{protocol: UDP, port: {port}}}]\n"
                    ));
                }
            }
            (format!("bench-{k:03}.yaml"), y)
        })
        .collect()
}

fn bench_settings() -> anyhow::Result<CompileSettings> {
    Ok(CompileSettings {
        host_labels: Labels::parse("app=server").map_err(|e| anyhow::anyhow!("{e}"))?,
        ..CompileSettings::default()
    })
}

/// Files of the one-rule change: 1000 rules each, as a directory of policies might hold.
const CHANGE_FILES_PER_100K: usize = 100;

/// One rule changed in a running policy of the plan's largest size.
pub fn run_change(plan: &Plan) -> anyhow::Result<ChangeFigure> {
    let settings = bench_settings()?;
    let rules = plan.control_rules.iter().copied().max().unwrap_or(10_000);
    let files = (rules * CHANGE_FILES_PER_100K / 100_000).max(1);
    progress(&format!("control plane: one-rule change to a policy of {rules} rules in {files} files"));
    let before = policy_files(rules, files, None);
    let mut zt = Loaded::new(&Config::DEFAULT)?;
    let mut allocator = IdentityAllocator::new();
    let mut cache = ParseCache::default();
    let rejected = |r| anyhow::anyhow!("the generated policy was rejected: {r}");
    let prepared = prepare_sources_cached(&before, &settings, &[], &mut allocator, &mut cache).map_err(rejected)?;
    zt.apply(&prepared.tables)?;
    let (mut compile, mut apply, mut push) = (Vec::new(), Vec::new(), Vec::new());
    let (mut written, mut removed) = (0, 0);
    // Every round moves the rule to a port it never had, so each apply writes and removes
    // entries (a change back and forth would find its slot already holding the result).
    for round in 0..plan.rounds * 2 {
        let sources = policy_files(rules, files, Some(2000 + round as u16));
        let t0 = Instant::now();
        let prepared =
            prepare_sources_cached(&sources, &settings, &[], &mut allocator, &mut cache).map_err(rejected)?;
        let t1 = Instant::now();
        let swap = zt.apply(&prepared.tables)?;
        let t2 = Instant::now();
        drop(prepared);
        compile.push((t1 - t0).as_secs_f64() * 1e3);
        apply.push((t2 - t1).as_secs_f64() * 1e3);
        push.push((t2 - t0).as_secs_f64() * 1e3);
        (written, removed) = (swap.written, swap.removed);
    }
    Ok(ChangeFigure {
        rules,
        files,
        compile_ms: Sample::new(compile),
        apply_ms: Sample::new(apply),
        push_ms: Sample::new(push),
        written,
        removed,
    })
}

pub fn run(plan: &Plan) -> anyhow::Result<Vec<ControlFigure>> {
    let settings = bench_settings()?;
    let mut figures = Vec::new();
    for &rules in &plan.control_rules {
        progress(&format!("control plane: push of {rules} rules"));
        let sources = vec![("bench.yaml".to_string(), policy_yaml(rules))];
        let (mut compile, mut apply, mut push) = (Vec::new(), Vec::new(), Vec::new());
        let (mut entries, mut prefixes) = (0, 0);
        for _ in 0..plan.rounds {
            let mut zt = Loaded::new(&Config::DEFAULT)?;
            let t0 = Instant::now();
            let prepared = prepare_sources(&sources, &settings, &[], &mut IdentityAllocator::new())
                .map_err(|r| anyhow::anyhow!("the generated policy was rejected: {r}"))?;
            let t1 = Instant::now();
            zt.apply(&prepared.tables)?;
            let t2 = Instant::now();
            compile.push((t1 - t0).as_secs_f64() * 1e3);
            apply.push((t2 - t1).as_secs_f64() * 1e3);
            push.push((t2 - t0).as_secs_f64() * 1e3);
            entries = prepared.tables.policy.len();
            prefixes = prepared.tables.ipcache.len();
        }
        figures.push(ControlFigure {
            rules,
            yaml_bytes: sources[0].1.len(),
            policy_entries: entries,
            ipcache_prefixes: prefixes,
            compile_ms: Sample::new(compile),
            apply_ms: Sample::new(apply),
            push_ms: Sample::new(push),
        });
    }
    Ok(figures)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_policies_compile_to_one_entry_per_rule() {
        let settings =
            CompileSettings { host_labels: Labels::parse("app=server").unwrap(), ..CompileSettings::default() };
        let sources = vec![("bench.yaml".to_string(), policy_yaml(1000))];
        let prepared = prepare_sources(&sources, &settings, &[], &mut IdentityAllocator::new()).expect("valid policy");
        let exact = prepared.tables.policy.iter().filter(|(p, _, _)| *p == zt_common::policy::PREFIX_PORT).count();
        assert!(exact >= 1000, "{exact} exact-port entries for 1000 rules");
        assert_eq!(prepared.compiled.identities.len(), 100 + 2, "100 peers, host and world");
    }

    #[test]
    fn policy_files_hold_the_same_rules_and_the_change_moves_one() {
        let settings = bench_settings().unwrap();
        let entries = |sources: &[(String, String)]| {
            prepare_sources(sources, &settings, &[], &mut IdentityAllocator::new()).expect("valid policy").tables.policy
        };
        let one = entries(&[("bench.yaml".to_string(), policy_yaml(1000))]);
        let before = policy_files(1000, 7, None);
        assert_eq!(before.len(), 7);
        assert_eq!(entries(&before).len(), one.len());
        let after = entries(&policy_files(1000, 7, Some(2000)));
        assert_eq!(after.len(), one.len());
        assert_ne!(after, entries(&before));
    }
}
