//! Policy tests, one file per subject, and the helpers they share.
//!
//! Parsing: [`parse`] (valid documents into the model), [`errors`] (every error message, by
//! its exact text), [`load`] (files and directories). Compiler semantics, checked through
//! `CompiledPolicy::lookup` (which walks the entries exactly as the kernel does):
//! [`precedence`], [`peers`], [`isolation`], [`audit`], [`failsafe`], [`ports`], [`output`],
//! plus [`random`], a randomized comparison against a brute-force evaluator that reads the
//! resolved rules directly, without atoms, blocks or closure.

use std::collections::BTreeSet;

use ipnet::IpNet;
use zt_common::identity::{ANY, FIRST_ALLOCATED, HOST, WORLD};
use zt_common::policy::{POLICY_NONE, PolicyValue, RULE_NONE};
use zt_common::proto::{ICMP, ICMPV6, SCTP, TCP, UDP};
use zt_common::reason::{self, DIR_EGRESS, DIR_INGRESS};

use super::compile::{Limits, Resolved, compile_resolved};
use super::model::{Action, Endpoint, Entity, Peer, Policy, PortRule, Protocol, Rule, Selector};
use super::*;
use crate::identity::{IdentityAllocator, Labels};

mod audit;
mod errors;
mod failsafe;
mod incremental;
mod isolation;
mod kubernetes;
mod load;
mod memo;
mod output;
mod parallel;
mod parse;
mod peers;
mod ports;
mod precedence;
mod random;
mod ratelimit;

// ---------------------------------------------------------------- parse helpers

const DB_ENDPOINT: &str = "apiVersion: zt/v1
kind: Endpoint
metadata: {name: db-1}
spec:
  addresses: [10.0.1.5, \"fd00::5\", 10.0.2.0/24]
  labels: {app: db, env: prod}
";

/// The one error `text` (as source `name`) produces, displayed.
fn error_of(name: &str, text: &str) -> String {
    let errors = errors_of(&[(name, text)]);
    assert_eq!(errors.len(), 1, "expected one error, got {errors:#?}");
    errors.into_iter().next().unwrap()
}

fn errors_of(sources: &[(&str, &str)]) -> Vec<String> {
    match parse(sources) {
        Ok(set) => panic!("expected errors, parsed {set:#?}"),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

/// A policy document whose single ingress rule has the given `ports` list (flow YAML).
fn policy_with_ports(ports: &str) -> String {
    format!(
        "apiVersion: zt/v1\nkind: Policy\nmetadata: {{name: db-ingress}}\nspec:\n  selector: {{app: db}}\n  \
         ingress:\n    - from: [{{selector: {{app: api}}}}]\n      ports: {ports}\n"
    )
}

// ---------------------------------------------------------------- compile helpers

const ENDPOINTS: &str = "
apiVersion: zt/v1
kind: Endpoint
metadata: {name: web-1}
spec: {addresses: [10.0.1.10], labels: {app: web}}
---
apiVersion: zt/v1
kind: Endpoint
metadata: {name: api-1}
spec: {addresses: [10.0.2.10, \"fd00::2:10\"], labels: {app: api}}
---
apiVersion: zt/v1
kind: Endpoint
metadata: {name: db-1}
spec: {addresses: [10.0.3.10], labels: {app: db}}
";

/// Settings with failsafe off, so tests see policy alone unless they ask for failsafe.
fn settings(default_deny: bool) -> CompileSettings {
    CompileSettings { default_deny: default_deny.into(), failsafe: vec![], ..CompileSettings::default() }
}

fn compile_yaml(yaml: &str, settings: &CompileSettings) -> CompiledPolicy {
    let set = parse(&[("test.yaml", yaml)]).unwrap_or_else(|errors| panic!("{errors:#?}"));
    compile(&set, settings, &mut IdentityAllocator::new()).unwrap()
}

/// The endpoint demo (web, api, db) plus `policies`, compiled.
fn with_endpoints(policies: &str, settings: &CompileSettings) -> CompiledPolicy {
    compile_yaml(&format!("{ENDPOINTS}---\n{policies}"), settings)
}

/// The identity whose labels display as `labels` (`app=db`, `cidr:10.0.0.0/8`, ...).
fn id(compiled: &CompiledPolicy, labels: &str) -> u32 {
    let found = compiled.identities.iter().find(|(_, l)| l.to_string() == labels);
    *found.unwrap_or_else(|| panic!("no identity {labels} in {:#?}", compiled.identities)).0
}

/// A verdict in flow-log words: (verdict, reason, policy name, rule).
type Explained = (&'static str, &'static str, Option<String>, Option<u32>);

fn explain(compiled: &CompiledPolicy, direction: u8, local: u32, peer: u32, proto: u8, port: u16) -> Explained {
    let value = compiled.lookup(direction, local, peer, proto, port).expect("the catch-all always hits");
    let policy = compiled.policy(value.policy_id).map(|p| p.name.clone());
    assert_eq!(policy.is_none(), value.policy_id == POLICY_NONE);
    let rule = (value.rule != RULE_NONE).then_some(value.rule);
    (reason::verdict_name(value.verdict), reason::reason_name(value.reason), policy, rule)
}

fn allowed_by(policy: &str, rule: u32) -> Explained {
    ("allowed", "policy", Some(policy.to_string()), Some(rule))
}

fn denied_by(policy: &str, rule: u32) -> Explained {
    ("denied", "deny-rule", Some(policy.to_string()), Some(rule))
}

fn default_deny() -> Explained {
    ("denied", "default-deny", None, None)
}

/// Default deny, on traffic of an identity `policy` isolates: the line names that policy.
fn isolated_by(policy: &str) -> Explained {
    ("denied", "default-deny", Some(policy.to_string()), None)
}

fn not_isolated() -> Explained {
    ("allowed", "not-isolated", None, None)
}

const DB_POLICY_HEAD: &str =
    "apiVersion: zt/v1\nkind: Policy\nmetadata: {name: db-ingress}\nspec:\n  selector: {app: db}\n";

/// An audit-mode policy on db: allows api, denies web on port 22 (shared by audit and output).
const AUDIT_DB: &str = "apiVersion: zt/v1
kind: Policy
metadata: {name: db-audit}
spec:
  selector: {app: db}
  mode: audit
  ingress:
    - from: [{selector: {app: api}}]
    - action: deny
      from: [{selector: {app: web}}]
      ports: [{port: 22}]
";
