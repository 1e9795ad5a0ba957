//! Compiler semantics, checked through `CompiledPolicy::lookup` (which walks the entries
//! exactly as the kernel does), plus a randomized comparison against a brute-force
//! evaluator that reads the resolved rules directly, without atoms, blocks or closure.

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

mod errors;
mod load;
mod parse;

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
    CompileSettings {
        default_deny,
        failsafe: vec![],
        ..CompileSettings::default()
    }
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
    let found = compiled
        .identities
        .iter()
        .find(|(_, l)| l.to_string() == labels);
    *found
        .unwrap_or_else(|| panic!("no identity {labels} in {:#?}", compiled.identities))
        .0
}

/// A verdict in flow-log words: (verdict, reason, policy name, rule).
type Explained = (&'static str, &'static str, Option<String>, Option<u32>);

fn explain(
    compiled: &CompiledPolicy,
    direction: u8,
    local: u32,
    peer: u32,
    proto: u8,
    port: u16,
) -> Explained {
    let value = compiled
        .lookup(direction, local, peer, proto, port)
        .expect("the catch-all always hits");
    let policy = compiled.policy(value.policy_id).map(|p| p.name.clone());
    assert_eq!(policy.is_none(), value.policy_id == POLICY_NONE);
    let rule = (value.rule != RULE_NONE).then_some(value.rule);
    (
        reason::verdict_name(value.verdict),
        reason::reason_name(value.reason),
        policy,
        rule,
    )
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

fn not_isolated() -> Explained {
    ("allowed", "not-isolated", None, None)
}

const DB_POLICY_HEAD: &str =
    "apiVersion: zt/v1\nkind: Policy\nmetadata: {name: db-ingress}\nspec:\n  selector: {app: db}\n";

// ---------------------------------------------------------------- precedence

#[test]
fn deny_rule_wins_over_allow() {
    let c = with_endpoints(
        &format!(
            "{DB_POLICY_HEAD}  ingress:
    - from: [{{selector: {{app: api}}}}]
      ports: [{{protocol: TCP, port: 5432}}]
    - action: deny
      from: [{{selector: {{app: api}}}}]
"
        ),
        &settings(false),
    );
    let (db, api) = (id(&c, "app=db"), id(&c, "app=api"));
    assert_eq!(
        explain(&c, DIR_INGRESS, db, api, TCP, 5432),
        denied_by("db-ingress", 1)
    );
}

#[test]
fn deny_rule_of_another_policy_wins_over_allow() {
    let c = with_endpoints(
        &format!(
            "{DB_POLICY_HEAD}  ingress: [{{ports: [{{port: 5432}}]}}]
---
apiVersion: zt/v1
kind: Policy
metadata: {{name: quarantine-web}}
spec:
  selector: {{}}
  ingress: [{{action: deny, from: [{{selector: {{app: web}}}}]}}]
"
        ),
        &settings(false),
    );
    let (db, api, web) = (id(&c, "app=db"), id(&c, "app=api"), id(&c, "app=web"));
    assert_eq!(
        explain(&c, DIR_INGRESS, db, web, TCP, 5432),
        denied_by("quarantine-web", 0)
    );
    assert_eq!(
        explain(&c, DIR_INGRESS, db, api, TCP, 5432),
        allowed_by("db-ingress", 0)
    );
}

#[test]
fn exact_port_allow_is_reported_over_range_over_all_ports() {
    let c = with_endpoints(
        &format!(
            "{DB_POLICY_HEAD}  ingress:
    - from: [{{selector: {{app: api}}}}]
      ports: [{{protocol: TCP}}]
    - from: [{{selector: {{app: api}}}}]
      ports: [{{protocol: TCP, port: 5000, endPort: 6000}}]
    - from: [{{selector: {{app: api}}}}]
      ports: [{{protocol: TCP, port: 5432}}]
    - from: [{{selector: {{app: api}}}}]
"
        ),
        &settings(false),
    );
    let (db, api) = (id(&c, "app=db"), id(&c, "app=api"));
    assert_eq!(
        explain(&c, DIR_INGRESS, db, api, TCP, 5432),
        allowed_by("db-ingress", 2)
    );
    assert_eq!(
        explain(&c, DIR_INGRESS, db, api, TCP, 5500),
        allowed_by("db-ingress", 1)
    );
    assert_eq!(
        explain(&c, DIR_INGRESS, db, api, TCP, 80),
        allowed_by("db-ingress", 0)
    );
    assert_eq!(
        explain(&c, DIR_INGRESS, db, api, UDP, 53),
        allowed_by("db-ingress", 3)
    );
}

#[test]
fn specific_peer_allow_is_reported_over_any_peer() {
    let c = with_endpoints(
        &format!(
            "{DB_POLICY_HEAD}  ingress:
    - ports: [{{port: 5432}}]
    - from: [{{selector: {{app: api}}}}]
      ports: [{{port: 5432}}]
"
        ),
        &settings(false),
    );
    let (db, api, web) = (id(&c, "app=db"), id(&c, "app=api"), id(&c, "app=web"));
    assert_eq!(
        explain(&c, DIR_INGRESS, db, api, TCP, 5432),
        allowed_by("db-ingress", 1)
    );
    assert_eq!(
        explain(&c, DIR_INGRESS, db, web, TCP, 5432),
        allowed_by("db-ingress", 0)
    );
}

#[test]
fn equally_specific_allows_report_lowest_policy_id_then_rule() {
    let rule = "{from: [{selector: {app: api}}], ports: [{port: 5432}]}";
    let policy = |name: &str| {
        format!(
            "apiVersion: zt/v1\nkind: Policy\nmetadata: {{name: {name}}}\nspec:\n  selector: {{app: db}}\n  ingress: [{rule}, {rule}]\n"
        )
    };
    let c = with_endpoints(
        &format!("{}---\n{}", policy("b-db"), policy("a-db")),
        &settings(false),
    );
    let (db, api) = (id(&c, "app=db"), id(&c, "app=api"));
    assert_eq!(
        explain(&c, DIR_INGRESS, db, api, TCP, 5432),
        allowed_by("a-db", 0)
    );
}

// ---------------------------------------------------------------- peers

#[test]
fn cidr_peer_covers_its_prefix_and_endpoints_inside_but_not_except() {
    let c = compile_yaml(
        "apiVersion: zt/v1
kind: Endpoint
metadata: {name: partner}
spec: {addresses: [192.168.1.5, 192.168.2.0/24], labels: {app: partner}}
---
apiVersion: zt/v1
kind: Endpoint
metadata: {name: lab}
spec: {addresses: [192.168.9.7], labels: {app: lab}}
---
apiVersion: zt/v1
kind: Endpoint
metadata: {name: db}
spec: {addresses: [10.0.3.10], labels: {app: db}}
---
apiVersion: zt/v1
kind: Policy
metadata: {name: db-ingress}
spec:
  selector: {app: db}
  ingress: [{from: [{cidr: 192.168.0.0/16, except: [192.168.9.0/24]}]}]
",
        &settings(false),
    );
    let db = id(&c, "app=db");
    let inside = [id(&c, "cidr:192.168.0.0/16"), id(&c, "app=partner")];
    for peer in inside {
        assert_eq!(
            explain(&c, DIR_INGRESS, db, peer, TCP, 443),
            allowed_by("db-ingress", 0),
            "peer {peer}"
        );
    }
    let outside = [
        id(&c, "cidr:192.168.9.0/24"),
        id(&c, "app=lab"),
        WORLD,
        HOST,
    ];
    for peer in outside {
        assert_eq!(
            explain(&c, DIR_INGRESS, db, peer, TCP, 443),
            default_deny(),
            "peer {peer}"
        );
    }
}

#[test]
fn cidr_equal_to_an_endpoint_prefix_uses_the_endpoint_identity() {
    let c = compile_yaml(
        "apiVersion: zt/v1
kind: Endpoint
metadata: {name: office}
spec: {addresses: [10.9.0.0/16], labels: {site: office}}
---
apiVersion: zt/v1
kind: Policy
metadata: {name: from-office}
spec:
  selector: {}
  ingress: [{from: [{cidr: 10.9.0.0/16}]}]
",
        &settings(false),
    );
    let office = id(&c, "site=office");
    assert!(
        c.identities
            .values()
            .all(|labels| !labels.to_string().starts_with("cidr:"))
    );
    assert!(
        c.ipcache
            .contains(&("10.9.0.0/16".parse().unwrap(), office))
    );
    assert_eq!(
        explain(&c, DIR_INGRESS, HOST, office, TCP, 22),
        allowed_by("from-office", 0)
    );
}

#[test]
fn cidr_default_route_includes_world() {
    let c = with_endpoints(
        &format!(
            "{DB_POLICY_HEAD}  ingress: [{{from: [{{cidr: 0.0.0.0/0, except: [10.0.2.0/24]}}]}}]\n"
        ),
        &settings(false),
    );
    let (db, web, api) = (id(&c, "app=db"), id(&c, "app=web"), id(&c, "app=api"));
    assert_eq!(
        explain(&c, DIR_INGRESS, db, WORLD, TCP, 1),
        allowed_by("db-ingress", 0)
    );
    assert_eq!(
        explain(&c, DIR_INGRESS, db, web, TCP, 1),
        allowed_by("db-ingress", 0)
    );
    // api has an IPv6 address outside 0.0.0.0/0 (and an IPv4 one inside the except).
    assert_eq!(explain(&c, DIR_INGRESS, db, api, TCP, 1), default_deny());
    assert_eq!(
        explain(&c, DIR_INGRESS, db, id(&c, "cidr:10.0.2.0/24"), TCP, 1),
        default_deny()
    );
}

#[test]
fn cidr_covering_part_of_an_endpoint_does_not_match_it_and_warns() {
    let c = with_endpoints(
        &format!("{DB_POLICY_HEAD}  ingress: [{{from: [{{cidr: 10.0.0.0/8}}]}}]\n"),
        &settings(false),
    );
    let (db, api, web) = (id(&c, "app=db"), id(&c, "app=api"), id(&c, "app=web"));
    assert_eq!(
        explain(&c, DIR_INGRESS, db, web, TCP, 1),
        allowed_by("db-ingress", 0)
    );
    assert_eq!(explain(&c, DIR_INGRESS, db, api, TCP, 1), default_deny());
    assert_eq!(
        c.warnings,
        [
            "policy test.yaml, document 4: spec.ingress[0].from[0].cidr 10.0.0.0/8 covers only some addresses of \
             endpoint api-1, so traffic of endpoint api-1 does not match it; cover all of its addresses or none"
        ]
    );
}

#[test]
fn cidr_containing_host_addresses_matches_the_host() {
    let settings = CompileSettings {
        host_addresses: vec!["10.0.0.1".parse().unwrap()],
        ..settings(false)
    };
    let c = with_endpoints(
        &format!("{DB_POLICY_HEAD}  ingress: [{{from: [{{cidr: 10.0.0.0/24}}]}}]\n"),
        &settings,
    );
    let db = id(&c, "app=db");
    assert_eq!(
        explain(&c, DIR_INGRESS, db, HOST, TCP, 1),
        allowed_by("db-ingress", 0)
    );
}

#[test]
fn selector_peer_matches_the_host_by_its_labels() {
    let settings = CompileSettings {
        host_labels: Labels::parse("role=bastion").unwrap(),
        ..settings(false)
    };
    let c = with_endpoints(
        &format!(
            "{DB_POLICY_HEAD}  ingress: [{{from: [{{selector: {{role: bastion}}}}], ports: [{{port: 22}}]}}]\n"
        ),
        &settings,
    );
    let (db, web) = (id(&c, "app=db"), id(&c, "app=web"));
    assert_eq!(
        c.identities[&HOST].to_string(),
        "reserved:host,role=bastion"
    );
    assert_eq!(
        explain(&c, DIR_INGRESS, db, HOST, TCP, 22),
        allowed_by("db-ingress", 0)
    );
    assert_eq!(explain(&c, DIR_INGRESS, db, web, TCP, 22), default_deny());
}

#[test]
fn selector_selects_the_host_as_local_by_its_labels() {
    let settings = CompileSettings {
        host_labels: Labels::parse("role=bastion").unwrap(),
        ..settings(false)
    };
    let c = with_endpoints(
        "apiVersion: zt/v1\nkind: Policy\nmetadata: {name: bastion}\nspec:\n  selector: {role: bastion}\n  ingress: []\n",
        &settings,
    );
    assert_eq!(c.policies[0].selected, [HOST]);
    assert_eq!(
        explain(&c, DIR_INGRESS, HOST, WORLD, TCP, 22),
        default_deny()
    );
    assert_eq!(
        explain(&c, DIR_INGRESS, id(&c, "app=db"), WORLD, TCP, 22),
        not_isolated()
    );
}

#[test]
fn empty_selector_means_every_local_and_every_endpoint_peer() {
    let c = with_endpoints(
        "apiVersion: zt/v1\nkind: Policy\nmetadata: {name: internal}\nspec:\n  selector: {}\n  \
         ingress: [{from: [{selector: {}}]}]\n",
        &settings(false),
    );
    assert_eq!(c.policies[0].selected, [ANY]);
    let db = id(&c, "app=db");
    for peer in [id(&c, "app=web"), id(&c, "app=api"), HOST] {
        assert_eq!(
            explain(&c, DIR_INGRESS, db, peer, TCP, 1),
            allowed_by("internal", 0)
        );
    }
    assert_eq!(explain(&c, DIR_INGRESS, db, WORLD, TCP, 1), default_deny());
    // `{}` selects the host and every endpoint, never world: world is only ever a peer.
    assert_eq!(
        explain(&c, DIR_INGRESS, WORLD, WORLD, TCP, 1),
        not_isolated()
    );
}

#[test]
fn entity_peers_name_host_world_and_any() {
    let c = with_endpoints(
        &format!(
            "{DB_POLICY_HEAD}  ingress:
    - from: [{{entity: host}}]
      ports: [{{port: 1}}]
    - from: [{{entity: world}}]
      ports: [{{port: 2}}]
    - from: [{{entity: any}}]
      ports: [{{port: 3}}]
"
        ),
        &settings(false),
    );
    let (db, web) = (id(&c, "app=db"), id(&c, "app=web"));
    assert_eq!(
        explain(&c, DIR_INGRESS, db, HOST, TCP, 1),
        allowed_by("db-ingress", 0)
    );
    assert_eq!(explain(&c, DIR_INGRESS, db, web, TCP, 1), default_deny());
    assert_eq!(
        explain(&c, DIR_INGRESS, db, WORLD, TCP, 2),
        allowed_by("db-ingress", 1)
    );
    assert_eq!(explain(&c, DIR_INGRESS, db, HOST, TCP, 2), default_deny());
    for peer in [HOST, WORLD, web] {
        assert_eq!(
            explain(&c, DIR_INGRESS, db, peer, TCP, 3),
            allowed_by("db-ingress", 2)
        );
    }
}

#[test]
fn selector_matching_nothing_is_a_warning_not_an_error() {
    let c = with_endpoints(
        "apiVersion: zt/v1\nkind: Policy\nmetadata: {name: cache}\nspec:\n  selector: {app: cache}\n  \
         ingress: [{from: [{selector: {app: nobody}}]}]\n",
        &settings(false),
    );
    assert_eq!(
        c.warnings,
        [
            "policy test.yaml, document 4: spec.selector {app: cache} selects no endpoint and not this host, so \
             policy cache has no effect",
            "policy test.yaml, document 4: spec.ingress[0].from[0].selector {app: nobody} matches no endpoint and \
             not this host, so it adds no peer to the rule",
        ]
    );
}

// ---------------------------------------------------------------- directions and isolation

#[test]
fn egress_rules_judge_the_source_as_local() {
    let c = with_endpoints(
        "apiVersion: zt/v1\nkind: Policy\nmetadata: {name: web-egress}\nspec:\n  selector: {app: web}\n  \
         egress: [{to: [{selector: {app: api}}], ports: [{port: 8080}]}]\n",
        &settings(false),
    );
    let (web, api, db) = (id(&c, "app=web"), id(&c, "app=api"), id(&c, "app=db"));
    assert_eq!(
        explain(&c, DIR_EGRESS, web, api, TCP, 8080),
        allowed_by("web-egress", 0)
    );
    assert_eq!(explain(&c, DIR_EGRESS, web, db, TCP, 5432), default_deny());
    // Ingress of web, and egress of others, are not isolated by an egress policy.
    assert_eq!(explain(&c, DIR_INGRESS, web, db, TCP, 80), not_isolated());
    assert_eq!(explain(&c, DIR_EGRESS, api, db, TCP, 5432), not_isolated());
}

#[test]
fn empty_rule_list_isolates_and_allows_nothing() {
    let c = with_endpoints(
        &format!("{DB_POLICY_HEAD}  ingress: []\n"),
        &settings(false),
    );
    let (db, api) = (id(&c, "app=db"), id(&c, "app=api"));
    assert_eq!(explain(&c, DIR_INGRESS, db, api, TCP, 5432), default_deny());
    assert_eq!(explain(&c, DIR_EGRESS, db, api, TCP, 80), not_isolated());
}

#[test]
fn without_default_deny_unselected_traffic_is_not_isolated() {
    let c = with_endpoints("", &settings(false));
    assert_eq!(
        explain(&c, DIR_INGRESS, id(&c, "app=db"), WORLD, TCP, 5432),
        not_isolated()
    );
    assert_eq!(
        explain(&c, DIR_EGRESS, HOST, WORLD, UDP, 53),
        not_isolated()
    );
}

#[test]
fn default_deny_isolates_every_local_identity_in_both_directions() {
    let c = with_endpoints(
        &format!("{DB_POLICY_HEAD}  ingress: [{{from: [{{selector: {{app: api}}}}]}}]\n"),
        &settings(true),
    );
    let (db, api) = (id(&c, "app=db"), id(&c, "app=api"));
    assert_eq!(
        explain(&c, DIR_INGRESS, db, api, TCP, 5432),
        allowed_by("db-ingress", 0)
    );
    for (direction, local, peer) in [
        (DIR_INGRESS, api, db),
        (DIR_EGRESS, api, db),
        (DIR_EGRESS, HOST, WORLD),
        (DIR_INGRESS, HOST, WORLD),
    ] {
        assert_eq!(explain(&c, direction, local, peer, UDP, 53), default_deny());
    }
}

#[test]
fn world_and_cidr_identities_are_never_isolated_as_the_local_side() {
    // On a routing node, a packet from world to a workload crosses the egress hook with
    // world as the source ("local" for egress); world has no policy of its own, so only the
    // workload's ingress policy judges it.
    let c = with_endpoints(
        &format!(
            "{DB_POLICY_HEAD}  ingress: [{{from: [{{cidr: 198.18.0.0/15}}]}}]\n  egress: [{{to: [{{cidr: 198.18.0.0/15}}]}}]\n"
        ),
        &settings(true),
    );
    let cidr = *c.identities.iter().find(|(_, l)| l.to_string().starts_with("cidr:")).unwrap().0;
    for local in [WORLD, cidr] {
        for direction in [DIR_INGRESS, DIR_EGRESS] {
            assert_eq!(explain(&c, direction, local, HOST, TCP, 80), not_isolated());
        }
    }
    assert_eq!(explain(&c, DIR_INGRESS, HOST, cidr, TCP, 80), default_deny(), "the host stays isolated");
}

// ---------------------------------------------------------------- audit

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

#[test]
fn audit_policy_reports_would_be_default_deny_as_audit() {
    let c = with_endpoints(AUDIT_DB, &settings(false));
    let (db, api, web) = (id(&c, "app=db"), id(&c, "app=api"), id(&c, "app=web"));
    assert_eq!(
        explain(&c, DIR_INGRESS, db, WORLD, TCP, 5432),
        ("audit", "default-deny", None, None)
    );
    assert_eq!(
        explain(&c, DIR_INGRESS, db, web, TCP, 5432),
        ("audit", "default-deny", None, None)
    );
    // The audit policy would allow api; enforcement-wise db is not isolated.
    assert_eq!(explain(&c, DIR_INGRESS, db, api, TCP, 5432), not_isolated());
}

#[test]
fn audit_deny_rule_is_reported_with_its_policy_and_rule() {
    let c = with_endpoints(AUDIT_DB, &settings(false));
    let (db, web) = (id(&c, "app=db"), id(&c, "app=web"));
    assert_eq!(
        explain(&c, DIR_INGRESS, db, web, TCP, 22),
        ("audit", "deny-rule", Some("db-audit".into()), Some(1))
    );
}

#[test]
fn audit_deny_on_top_of_an_enforced_allow_is_audit() {
    let enforce = format!("{DB_POLICY_HEAD}  ingress: [{{from: [{{selector: {{app: web}}}}]}}]\n");
    let c = with_endpoints(&format!("{enforce}---\n{AUDIT_DB}"), &settings(false));
    let (db, web) = (id(&c, "app=db"), id(&c, "app=web"));
    assert_eq!(
        explain(&c, DIR_INGRESS, db, web, TCP, 80),
        allowed_by("db-ingress", 0)
    );
    assert_eq!(
        explain(&c, DIR_INGRESS, db, web, TCP, 22),
        ("audit", "deny-rule", Some("db-audit".into()), Some(1))
    );
}

#[test]
fn audit_policy_never_lets_an_enforced_drop_through() {
    let enforce = format!("{DB_POLICY_HEAD}  ingress: []\n");
    let c = with_endpoints(&format!("{enforce}---\n{AUDIT_DB}"), &settings(false));
    let (db, api) = (id(&c, "app=db"), id(&c, "app=api"));
    assert_eq!(explain(&c, DIR_INGRESS, db, api, TCP, 5432), default_deny());
}

#[test]
fn audit_policy_under_default_deny_changes_nothing_enforced() {
    let c = with_endpoints(AUDIT_DB, &settings(true));
    let (db, api) = (id(&c, "app=db"), id(&c, "app=api"));
    assert_eq!(explain(&c, DIR_INGRESS, db, api, TCP, 5432), default_deny());
}

// ---------------------------------------------------------------- failsafe

#[test]
fn failsafe_keeps_inbound_ssh_to_the_host_under_a_deny_all() {
    let deny_all = "apiVersion: zt/v1\nkind: Policy\nmetadata: {name: lockdown}\nspec:\n  selector: {}\n  \
                    ingress: [{action: deny}]\n  egress: [{action: deny}]\n";
    let c = with_endpoints(deny_all, &CompileSettings::default());
    let db = id(&c, "app=db");
    for peer in [WORLD, db, ANY] {
        assert_eq!(
            explain(&c, DIR_INGRESS, HOST, peer, TCP, 22),
            ("allowed", "failsafe", None, None)
        );
    }
    assert_eq!(
        explain(&c, DIR_INGRESS, HOST, WORLD, TCP, 23),
        denied_by("lockdown", 0)
    );
    assert_eq!(
        explain(&c, DIR_INGRESS, HOST, WORLD, UDP, 22),
        denied_by("lockdown", 0)
    );
    // Failsafe protects the host only, and only in its direction.
    assert_eq!(
        explain(&c, DIR_INGRESS, db, WORLD, TCP, 22),
        denied_by("lockdown", 0)
    );
    assert_eq!(
        explain(&c, DIR_EGRESS, HOST, WORLD, TCP, 22),
        denied_by("lockdown", 0)
    );
}

#[test]
fn failsafe_rules_are_configurable() {
    let settings = CompileSettings {
        failsafe: vec![FailsafeRule {
            direction: Direction::Egress,
            protocol: Protocol::Udp,
            port: Some(53),
        }],
        ..CompileSettings::default()
    };
    let c = with_endpoints("", &settings);
    assert_eq!(
        explain(&c, DIR_EGRESS, HOST, WORLD, UDP, 53),
        ("allowed", "failsafe", None, None)
    );
    assert_eq!(
        explain(&c, DIR_INGRESS, HOST, WORLD, TCP, 22),
        default_deny()
    );
}

#[test]
fn failsafe_with_a_port_for_icmp_is_rejected() {
    let settings = CompileSettings {
        failsafe: vec![FailsafeRule {
            direction: Direction::Ingress,
            protocol: Protocol::Icmp,
            port: Some(8),
        }],
        ..CompileSettings::default()
    };
    let error = compile(
        &PolicySet::default(),
        &settings,
        &mut IdentityAllocator::new(),
    )
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "failsafe rule ingress ICMP 8 gives a port, but only TCP, UDP and SCTP have ports; remove the port"
    );
}

// ---------------------------------------------------------------- protocols and ports

#[test]
fn icmp_rule_matches_icmp_whatever_the_port_field() {
    let c = with_endpoints(
        &format!("{DB_POLICY_HEAD}  ingress: [{{ports: [{{protocol: ICMP}}]}}]\n"),
        &settings(false),
    );
    let db = id(&c, "app=db");
    for port in [0, 8, 65535] {
        assert_eq!(
            explain(&c, DIR_INGRESS, db, WORLD, ICMP, port),
            allowed_by("db-ingress", 0)
        );
    }
    assert_eq!(
        explain(&c, DIR_INGRESS, db, WORLD, ICMPV6, 0),
        default_deny()
    );
    assert_eq!(explain(&c, DIR_INGRESS, db, WORLD, TCP, 0), default_deny());
}

#[test]
fn port_range_allows_exactly_its_ports() {
    let c = with_endpoints(
        &format!(
            "{DB_POLICY_HEAD}  ingress: [{{from: [{{entity: world}}], ports: [{{protocol: UDP, port: 5000, endPort: 5100}}]}}]\n"
        ),
        &settings(false),
    );
    let db = id(&c, "app=db");
    for port in [5000, 5001, 5050, 5099, 5100] {
        assert_eq!(
            explain(&c, DIR_INGRESS, db, WORLD, UDP, port),
            allowed_by("db-ingress", 0),
            "port {port}"
        );
    }
    for port in [4999, 5101, 6000] {
        assert_eq!(
            explain(&c, DIR_INGRESS, db, WORLD, UDP, port),
            default_deny(),
            "port {port}"
        );
    }
    assert_eq!(
        explain(&c, DIR_INGRESS, db, WORLD, TCP, 5050),
        default_deny()
    );
    // The range is stored as its seven aligned blocks.
    let blocks: Vec<(u16, u8)> = c
        .entries
        .iter()
        .filter(|(k, _)| k.local == db && k.peer == WORLD && k.proto == Some(UDP))
        .map(|(k, _)| (k.port, k.port_prefix_len))
        .collect();
    assert_eq!(
        blocks,
        [
            (5000, 13),
            (5008, 12),
            (5024, 11),
            (5056, 11),
            (5088, 13),
            (5096, 14),
            (5100, 16)
        ]
    );
}

// ---------------------------------------------------------------- output shape

#[test]
fn ipcache_holds_endpoints_policy_prefixes_and_default_routes() {
    let c = with_endpoints(
        &format!(
            "{DB_POLICY_HEAD}  ingress: [{{from: [{{cidr: 192.168.0.0/16, except: [192.168.9.0/24]}}]}}]\n"
        ),
        &settings(false),
    );
    let expected: Vec<(IpNet, u32)> = [
        ("0.0.0.0/0", WORLD),
        ("10.0.1.10/32", id(&c, "app=web")),
        ("10.0.2.10/32", id(&c, "app=api")),
        ("10.0.3.10/32", id(&c, "app=db")),
        ("192.168.0.0/16", id(&c, "cidr:192.168.0.0/16")),
        ("192.168.9.0/24", id(&c, "cidr:192.168.9.0/24")),
        ("::/0", WORLD),
        ("fd00::2:10/128", id(&c, "app=api")),
    ]
    .into_iter()
    .map(|(net, id)| (net.parse().unwrap(), id))
    .collect();
    assert_eq!(c.ipcache, expected);
    let labels: Vec<String> = c
        .identities
        .iter()
        .map(|(id, labels)| format!("{id} {labels}"))
        .collect();
    assert_eq!(
        labels,
        [
            "1 reserved:host",
            "2 reserved:world",
            "256 app=api",
            "257 app=db",
            "258 app=web",
            "259 cidr:192.168.0.0/16",
            "260 cidr:192.168.9.0/24",
        ]
    );
}

#[test]
fn host_addresses_are_left_to_the_agent() {
    let settings = CompileSettings {
        host_addresses: vec!["10.0.1.10".parse().unwrap()],
        ..settings(false)
    };
    let c = with_endpoints("", &settings);
    assert!(
        c.ipcache
            .iter()
            .all(|(net, _)| net.to_string() != "10.0.1.10/32")
    );
    assert_eq!(
        c.warnings,
        [
            "policy test.yaml, document 1: spec.addresses[0] 10.0.1.10/32 is an address of this host, so its \
             traffic has the host identity, not the labels of endpoint web-1"
        ]
    );
}

#[test]
fn identities_are_stable_across_recompiles() {
    let mut allocator = IdentityAllocator::new();
    let first_set = parse(&[("e.yaml", ENDPOINTS)]).unwrap();
    let first = compile(&first_set, &settings(true), &mut allocator).unwrap();
    // Drop web, add cache, add a CIDR: old numbers stay, new ones follow.
    let changed = ENDPOINTS
        .replace("{name: web-1}", "{name: cache-1}")
        .replace("app: web", "app: cache");
    let policy = "---\napiVersion: zt/v1\nkind: Policy\nmetadata: {name: p}\nspec:\n  selector: {}\n  \
                  egress: [{to: [{cidr: 10.0.0.0/8}]}]\n";
    let second_set = parse(&[("e.yaml", format!("{changed}{policy}"))]).unwrap();
    let second = compile(&second_set, &settings(true), &mut allocator).unwrap();
    for labels in ["app=api", "app=db"] {
        assert_eq!(id(&first, labels), id(&second, labels), "{labels}");
    }
    assert_eq!(id(&second, "app=cache"), FIRST_ALLOCATED + 3);
    assert_eq!(id(&second, "cidr:10.0.0.0/8"), FIRST_ALLOCATED + 4);
    assert_eq!(
        allocator.get(&Labels::parse("app=web").unwrap()),
        Some(id(&first, "app=web"))
    );
    // Compiling the same input again changes nothing.
    let again = compile(&second_set, &settings(true), &mut allocator).unwrap();
    assert_eq!(
        (again.entries, again.ipcache),
        (second.entries, second.ipcache)
    );
}

#[test]
fn entry_keys_convert_to_lpm_prefixes_with_clear_port_bits() {
    let key = |proto, port, port_prefix_len| PolicyEntryKey {
        direction: DIR_EGRESS,
        local: 300,
        peer: 2,
        proto,
        port,
        port_prefix_len,
    };
    let (len, k) = key(None, 0, 0).to_lpm(1);
    assert_eq!(
        (len, k.slot, k.direction, k.local, k.peer, k.proto, k.port),
        (80, 1, 1, [0, 0, 1, 44], [0, 0, 0, 2], 0, [0, 0])
    );
    assert_eq!(key(Some(TCP), 0, 0).to_lpm(0).0, 88);
    let (len, k) = key(Some(UDP), 5100, 11).to_lpm(0);
    assert_eq!((len, k.proto, u16::from_be_bytes(k.port)), (99, UDP, 5088));
    let (len, k) = key(Some(TCP), 443, 16).to_lpm(0);
    assert_eq!((len, u16::from_be_bytes(k.port)), (104, 443));
}

#[test]
fn every_compiled_policy_has_catch_alls_and_clean_keys() {
    let c = with_endpoints(AUDIT_DB, &CompileSettings::default());
    for direction in [DIR_INGRESS, DIR_EGRESS] {
        let catch_all = PolicyEntryKey {
            direction,
            local: ANY,
            peer: ANY,
            proto: None,
            port: 0,
            port_prefix_len: 0,
        };
        assert!(c.entries.iter().any(|(key, _)| *key == catch_all));
    }
    let keys: BTreeSet<_> = c.entries.iter().map(|(key, _)| *key).collect();
    assert_eq!(keys.len(), c.entries.len(), "keys are unique");
    for (key, _) in &c.entries {
        assert_eq!(
            key.block().port,
            key.port,
            "port bits beyond the prefix are zero: {key:?}"
        );
        assert!(key.port_prefix_len <= 16);
    }
}

#[test]
fn policy_ids_follow_name_order_and_name_the_policy() {
    let c = with_endpoints(
        &format!("{AUDIT_DB}---\n{DB_POLICY_HEAD}  ingress: []\n"),
        &settings(false),
    );
    let names: Vec<(u32, &str, Mode)> = c
        .policies
        .iter()
        .map(|p| (p.id, p.name.as_str(), p.mode))
        .collect();
    assert_eq!(
        names,
        [
            (1, "db-audit", Mode::Audit),
            (2, "db-ingress", Mode::Enforce)
        ]
    );
    assert_eq!(c.policy(2).unwrap().origin, Origin::new("test.yaml", 5));
    assert!(c.policy(0).is_none() && c.policy(3).is_none());
}

#[test]
fn closure_blow_up_is_a_clear_error_and_leaves_the_allocator_alone() {
    let set = parse(&[("e.yaml", format!("{ENDPOINTS}---\n{AUDIT_DB}"))]).unwrap();
    let mut allocator = IdentityAllocator::new();
    let limits = Limits {
        closure_keys: 3,
        policy_entries: 1000,
    };
    let error = compile_resolved(&set, &settings(true), &mut allocator, limits).unwrap_err();
    assert_eq!(
        error.to_string(),
        "compiling the policy needs more than 3 intermediate keys (selected identities x peers x port blocks \
         multiply); merge rules, or use broader selectors, CIDRs or port ranges"
    );
    assert!(allocator.is_empty());
    let limits = Limits {
        closure_keys: 1000,
        policy_entries: 3,
    };
    let error = compile_resolved(&set, &settings(true), &mut allocator, limits).unwrap_err();
    assert!(
        matches!(error, CompileError::TooManyEntries { limit: 3, .. }),
        "{error}"
    );
}

#[test]
fn demo_policies_compile_cleanly() {
    let demo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/demo");
    let sources = load_path(&demo).unwrap();
    let set = parse(&sources).unwrap_or_else(|errors| panic!("{errors:#?}"));
    let settings = CompileSettings {
        host_labels: Labels::parse("role=app-server").unwrap(),
        ..CompileSettings::default()
    };
    let c = compile(&set, &settings, &mut IdentityAllocator::new()).unwrap();
    assert_eq!(c.warnings, Vec::<String>::new());
    let (web, api, db) = (
        id(&c, "app=web,tier=frontend"),
        id(&c, "app=api,tier=backend"),
        id(&c, "app=db,tier=data"),
    );
    assert_eq!(explain(&c, DIR_INGRESS, web, WORLD, TCP, 443).0, "allowed");
    assert_eq!(explain(&c, DIR_INGRESS, api, web, TCP, 8080).0, "allowed");
    assert_eq!(explain(&c, DIR_INGRESS, db, api, TCP, 5432).0, "allowed");
    assert_eq!(explain(&c, DIR_INGRESS, db, web, TCP, 5432).0, "denied");
    assert_eq!(explain(&c, DIR_EGRESS, web, db, TCP, 5432).0, "denied");
    assert_eq!(explain(&c, DIR_EGRESS, db, WORLD, TCP, 443).0, "denied");
    let debug_port = (
        "audit",
        "deny-rule",
        Some("api-debug-port-audit".to_string()),
        Some(0),
    );
    assert_eq!(explain(&c, DIR_INGRESS, api, web, TCP, 8089), debug_port);
    assert_eq!(explain(&c, DIR_INGRESS, HOST, WORLD, TCP, 22).1, "failsafe");
}

// ---------------------------------------------------------------- randomized equivalence

/// Tiny deterministic PRNG (xorshift64*), so failures reproduce from the printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

const LABEL_KEYS: [&str; 3] = ["app", "env", "tier"];
const LABEL_VALUES: [&str; 3] = ["a", "b", "c"];
const ADDRESSES: [&str; 12] = [
    "10.0.0.1/32",
    "10.0.0.2/32",
    "10.0.1.0/24",
    "10.0.1.7/32",
    "10.1.0.0/16",
    "10.1.2.3/32",
    "192.168.1.1/32",
    "192.168.0.0/24",
    "172.16.0.5/32",
    "fd00::1/128",
    "fd00::/120",
    "fd00:1::/64",
];
const CIDRS: [&str; 10] = [
    "10.0.0.0/8",
    "10.0.0.0/16",
    "10.0.1.0/24",
    "10.1.0.0/16",
    "192.168.0.0/16",
    "0.0.0.0/0",
    "fd00::/16",
    "::/0",
    "10.0.0.0/30",
    "172.16.0.0/12",
];
const PORTS: [u16; 8] = [22, 53, 80, 443, 1000, 5000, 8080, 65535];

fn random_labels(rng: &mut Rng, max: usize) -> Labels {
    let mut labels = Labels::new();
    for _ in 0..rng.below(max + 1) {
        labels.insert(rng.pick(&LABEL_KEYS), rng.pick(&LABEL_VALUES));
    }
    labels
}

fn random_peer(rng: &mut Rng) -> Peer {
    match rng.below(3) {
        0 => Peer::Selector(Selector::new(random_labels(rng, 1))),
        1 => Peer::Entity(rng.pick(&[Entity::Host, Entity::World, Entity::Any])),
        _ => {
            let cidr: IpNet = rng.pick(&CIDRS).parse().unwrap();
            let inside: Vec<IpNet> = CIDRS
                .iter()
                .chain(&ADDRESSES)
                .map(|net| net.parse::<IpNet>().unwrap())
                .filter(|net| cidr.contains(net) && net.prefix_len() > cidr.prefix_len())
                .collect();
            let except = (0..rng.below(3))
                .filter(|_| !inside.is_empty())
                .map(|_| rng.pick(&inside))
                .collect();
            Peer::Cidr { cidr, except }
        }
    }
}

fn random_port_rule(rng: &mut Rng) -> PortRule {
    let protocol = rng.pick(&[
        Protocol::Tcp,
        Protocol::Tcp,
        Protocol::Udp,
        Protocol::Sctp,
        Protocol::Icmp,
        Protocol::IcmpV6,
    ]);
    if !protocol.has_ports() || rng.chance(20) {
        return PortRule {
            protocol,
            port: None,
            end_port: None,
        };
    }
    let port = rng.pick(&PORTS).max(1);
    let end_port = rng
        .chance(40)
        .then(|| port.saturating_add(rng.below(300) as u16));
    PortRule {
        protocol,
        port: Some(port),
        end_port,
    }
}

fn random_rules(rng: &mut Rng) -> Option<Vec<Rule>> {
    if rng.chance(35) {
        return None;
    }
    let rules = (0..rng.below(4))
        .map(|_| Rule {
            action: if rng.chance(25) {
                Action::Deny
            } else {
                Action::Allow
            },
            peers: if rng.chance(30) {
                vec![]
            } else {
                (0..1 + rng.below(3)).map(|_| random_peer(rng)).collect()
            },
            ports: if rng.chance(30) {
                vec![]
            } else {
                (0..1 + rng.below(3))
                    .map(|_| random_port_rule(rng))
                    .collect()
            },
        })
        .collect();
    Some(rules)
}

fn random_setup(rng: &mut Rng) -> (PolicySet, CompileSettings) {
    let origin = Origin::new("random.yaml", 1);
    let mut set = PolicySet::default();
    let mut claimed: Vec<(IpNet, Labels)> = Vec::new();
    for i in 0..1 + rng.below(6) {
        let labels = random_labels(rng, 2);
        let mut addresses = Vec::new();
        for _ in 0..rng.below(3) {
            let address: IpNet = rng.pick(&ADDRESSES).parse().unwrap();
            // One address, one label set (the parser enforces it).
            if claimed
                .iter()
                .all(|(net, l)| *net != address || *l == labels)
            {
                claimed.push((address, labels.clone()));
                addresses.push(address);
            }
        }
        set.endpoints.push(Endpoint {
            name: format!("e{i}"),
            namespace: None,
            addresses,
            labels,
            origin: origin.clone(),
        });
    }
    for i in 0..rng.below(5) {
        set.policies.push(Policy {
            name: format!("p{i}"),
            mode: if rng.chance(30) {
                Mode::Audit
            } else {
                Mode::Enforce
            },
            selector: Selector::new(if rng.chance(25) {
                Labels::new()
            } else {
                random_labels(rng, 1)
            }),
            ingress: random_rules(rng),
            egress: random_rules(rng),
            origin: origin.clone(),
        });
    }
    let failsafe = match rng.below(3) {
        0 => vec![],
        1 => vec![FailsafeRule::SSH],
        _ => vec![
            FailsafeRule {
                direction: Direction::Egress,
                protocol: Protocol::Udp,
                port: Some(53),
            },
            FailsafeRule {
                direction: Direction::Ingress,
                protocol: Protocol::Icmp,
                port: None,
            },
        ],
    };
    let settings = CompileSettings {
        default_deny: rng.chance(40),
        failsafe,
        host_labels: random_labels(rng, 2),
        host_addresses: if rng.chance(50) {
            vec!["10.0.0.1".parse().unwrap()]
        } else {
            vec![]
        },
    };
    (set, settings)
}

/// The specification, evaluated directly on the resolved rules for one packet.
fn brute_force(
    r: &Resolved,
    direction: u8,
    local: u32,
    peer: u32,
    proto: u8,
    port: u16,
) -> PolicyValue {
    let value = PolicyValue::new;
    if r.not_local.contains(&local) {
        return value(
            reason::VERDICT_ALLOWED,
            reason::NOT_ISOLATED,
            POLICY_NONE,
            RULE_NONE,
        );
    }
    if local == HOST
        && r.failsafe
            .iter()
            .any(|(d, ports)| *d == direction && ports.matches(proto, port))
    {
        return value(
            reason::VERDICT_ALLOWED,
            reason::FAILSAFE,
            POLICY_NONE,
            RULE_NONE,
        );
    }
    let names =
        |set: &BTreeSet<u32>, id: u32| set.contains(&ANY) || (id != ANY && set.contains(&id));
    let evaluate = |with_audit: bool| {
        let counts = |enforcing: bool| enforcing || with_audit;
        let isolated = r.default_deny
            || r.isolations.iter().any(|i| {
                i.direction == direction
                    && counts(i.enforcing)
                    && (i.local == ANY || i.local == local)
            });
        let (mut allow, mut deny) = (None, None);
        for rule in &r.rules {
            if rule.direction != direction || !counts(rule.enforcing) || !names(&rule.locals, local)
            {
                continue;
            }
            let peer_specific = if peer != ANY && rule.peers.contains(&peer) {
                true
            } else if rule.peers.contains(&ANY) {
                false
            } else {
                continue;
            };
            let Some(specificity) = rule
                .ports
                .iter()
                .filter(|p| p.matches(proto, port))
                .map(|p| p.specificity())
                .max()
            else {
                continue;
            };
            let rank = (
                specificity,
                peer_specific,
                std::cmp::Reverse(rule.policy_id),
                std::cmp::Reverse(rule.rule),
            );
            let best = if rule.action == Action::Allow {
                &mut allow
            } else {
                &mut deny
            };
            if best.as_ref().is_none_or(|(b, _, _)| rank > *b) {
                *best = Some((rank, rule.policy_id, rule.rule));
            }
        }
        if !isolated {
            (
                reason::VERDICT_ALLOWED,
                reason::NOT_ISOLATED,
                POLICY_NONE,
                RULE_NONE,
            )
        } else if let Some((_, policy_id, rule)) = deny {
            (reason::VERDICT_DENIED, reason::DENY_RULE, policy_id, rule)
        } else if let Some((_, policy_id, rule)) = allow {
            (reason::VERDICT_ALLOWED, reason::POLICY, policy_id, rule)
        } else {
            (
                reason::VERDICT_DENIED,
                reason::DEFAULT_DENY,
                POLICY_NONE,
                RULE_NONE,
            )
        }
    };
    let enforced = evaluate(false);
    let audited = evaluate(true);
    let (verdict, reason, policy_id, rule) = if enforced.0 == reason::VERDICT_DENIED {
        enforced
    } else if audited.0 == reason::VERDICT_DENIED {
        (reason::VERDICT_AUDIT, audited.1, audited.2, audited.3)
    } else {
        enforced
    };
    value(verdict, reason, policy_id, rule)
}

/// Ports worth probing: every rule boundary and its neighbours, plus a few random ones.
fn probe_ports(r: &Resolved, rng: &mut Rng) -> Vec<u16> {
    let mut ports: BTreeSet<u16> = [0, 1, 65535].into_iter().collect();
    for rule in &r.rules {
        for port in &rule.ports {
            if let super::compile::PortMatch::Range { start, end, .. } = *port {
                for p in [start, end] {
                    ports.extend([p.saturating_sub(1), p, p.saturating_add(1)]);
                }
            }
        }
    }
    ports.extend((0..4).map(|_| rng.next() as u16));
    ports.into_iter().collect()
}

#[test]
fn lookup_agrees_with_brute_force_on_random_policies() {
    const SEED: u64 = 0x5eed_2024_0001;
    const CASES: usize = 400;
    let mut rng = Rng(SEED);
    let mut probes = 0usize;
    for case in 0..CASES {
        let (set, settings) = random_setup(&mut rng);
        let (compiled, resolved) = compile_resolved(
            &set,
            &settings,
            &mut IdentityAllocator::new(),
            Limits::DEFAULT,
        )
        .unwrap();
        let mut identities: Vec<u32> = compiled.identities.keys().copied().collect();
        identities.push(ANY);
        let ports = probe_ports(&resolved, &mut rng);
        for direction in [DIR_INGRESS, DIR_EGRESS] {
            for &local in &identities {
                for &peer in &identities {
                    for proto in [TCP, UDP, SCTP, ICMP, ICMPV6, 47] {
                        // Only TCP, UDP and SCTP keys have port bits; one port shows the rest.
                        let ports = if zt_common::proto::has_ports(proto) {
                            &ports[..]
                        } else {
                            &ports[..1]
                        };
                        for &port in ports {
                            let want = brute_force(&resolved, direction, local, peer, proto, port);
                            let got = compiled.lookup(direction, local, peer, proto, port);
                            assert_eq!(
                                got,
                                Some(want),
                                "case {case} (seed {SEED:#x}): direction {direction} local {local} peer {peer} \
                                 proto {proto} port {port}\nset: {set:#?}\nsettings: {settings:#?}\nentries: {:#?}",
                                compiled.entries
                            );
                            probes += 1;
                        }
                    }
                }
            }
        }
    }
    assert!(probes > 100_000, "only {probes} probes");
}
