//! Section 3: control-plane latency of a policy push, in-process on a loaded datapath:
//! `prepare_sources` (parse, validate, compile) and `GenerationWriter::apply` (kernel writes
//! and the generation switch) timed separately, for generated zt/v1 policies of N rules.
//!
//! Each round loads a fresh datapath (not timed) so every apply writes the full tables, as
//! the first push of a policy that size does.

use std::{net::Ipv4Addr, time::Instant};

use zt_agent::{
    agent::prepare_sources,
    identity::{IdentityAllocator, Labels},
    policy::CompileSettings,
};
use zt_common::config::Config;

use crate::{loaded::Loaded, plan::Plan, progress, results::ControlFigure, stats::Sample};

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

pub fn run(plan: &Plan) -> anyhow::Result<Vec<ControlFigure>> {
    let settings = CompileSettings {
        host_labels: Labels::parse("app=server").map_err(|e| anyhow::anyhow!("{e}"))?,
        ..CompileSettings::default()
    };
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
}
