//! Explain as a specification: address resolution, the direction default, and the verdict,
//! reason, policy and rule of a new flow, quarantine included.

use super::*;
use crate::{generation, host, identity::IdentityAllocator, policy::CompileSettings};

/// db (198.18.0.10) takes TCP 5432 from api (198.18.0.11); the host is 198.18.0.2/24.
const POLICY: &str = "apiVersion: zt/v1\nkind: Endpoint\nmetadata: {name: db}\nspec:\n  addresses: [198.18.0.10]\n  labels: {app: db}\n---\napiVersion: zt/v1\nkind: Endpoint\nmetadata: {name: api}\nspec:\n  addresses: [198.18.0.11]\n  labels: {app: api}\n---\napiVersion: zt/v1\nkind: Policy\nmetadata: {name: db-ingress}\nspec:\n  selector: {app: db}\n  ingress:\n  - from: [{selector: {app: api}}]\n    ports: [{protocol: TCP, port: 5432}]\n";

struct Fixture {
    compiled: CompiledPolicy,
    ipcache: Vec<(IpNet, u32)>,
}

fn fixture() -> Fixture {
    let host = host::prefixes(["198.18.0.2/24".parse().unwrap()]);
    let settings = CompileSettings { host_addresses: host::addresses(&host), ..CompileSettings::default() };
    let sources = vec![("db.yaml".to_string(), POLICY.to_string())];
    let compiled = generation::check(&sources, &settings, &mut IdentityAllocator::new()).unwrap();
    let ipcache = generation::ipcache(&compiled, &host);
    Fixture { compiled, ipcache }
}

fn query(from: &str, to: &str, protocol: &str, port: Option<u16>) -> ExplainQuery {
    ExplainQuery {
        from: from.parse().unwrap(),
        to: to.parse().unwrap(),
        protocol: protocol.into(),
        port,
        direction: None,
    }
}

#[test]
fn the_default_direction_protects_this_host() {
    assert_eq!(default_direction(300, HOST), DIR_INGRESS);
    assert_eq!(default_direction(HOST, 300), DIR_EGRESS);
    assert_eq!(default_direction(300, 301), DIR_INGRESS);
}

#[test]
fn protocol_names_are_case_insensitive() {
    assert_eq!(protocol_number("TCP"), Some(6));
    assert_eq!(protocol_number("icmpv6"), Some(58));
    assert_eq!(protocol_number("gre"), None);
}

#[test]
fn the_longest_prefix_wins_and_nothing_matching_is_world() {
    let ipcache: Vec<(IpNet, u32)> = vec![
        ("0.0.0.0/0".parse().unwrap(), WORLD),
        ("198.18.0.0/16".parse().unwrap(), 300),
        ("198.18.0.1/32".parse().unwrap(), HOST),
        ("fd00::/64".parse().unwrap(), 301),
    ];
    assert_eq!(resolve(&ipcache, "198.18.0.1".parse().unwrap()).0, HOST);
    assert_eq!(resolve(&ipcache, "198.18.7.1".parse().unwrap()), (300, Some("198.18.0.0/16".parse().unwrap())));
    assert_eq!(resolve(&ipcache, "203.0.113.1".parse().unwrap()).0, WORLD);
    assert_eq!(resolve(&ipcache, "fd00::9".parse().unwrap()).0, 301);
    assert_eq!(resolve(&ipcache, "fd01::9".parse().unwrap()), (WORLD, None), "no ::/0 here: world by default");
    assert_eq!(resolve(&ipcache, "::ffff:198.18.0.1".parse().unwrap()).0, HOST, "v4-mapped is the v4 address");
}

#[test]
fn an_allowed_flow_names_its_policy_rule_and_origin() {
    let f = fixture();
    let e = offline(&f.compiled, &f.ipcache).explain(&query("198.18.0.11", "198.18.0.10", "tcp", Some(5432))).unwrap();
    assert_eq!((e.verdict.as_str(), e.reason.as_str()), ("allowed", "policy"));
    assert_eq!((e.direction.as_str(), e.local.as_str(), e.protocol.as_str()), ("ingress", "destination", "TCP"));
    assert_eq!(e.policy.as_deref(), Some("db-ingress"));
    assert_eq!(e.policy_origin.as_deref(), Some("db.yaml, document 3"));
    assert_eq!((e.rule, e.port, e.generation), (Some(0), Some(5432), 0));
    assert_eq!(e.destination.labels.get("app").map(String::as_str), Some("db"));
    assert_eq!(e.destination.prefix.as_deref(), Some("198.18.0.10/32"));
    assert!(!e.source.quarantined && !e.destination.quarantined);
}

#[test]
fn an_unmatched_flow_is_denied_by_default_deny_naming_the_isolating_policy() {
    let f = fixture();
    let e = offline(&f.compiled, &f.ipcache).explain(&query("203.0.113.9", "198.18.0.10", "udp", Some(53))).unwrap();
    assert_eq!((e.verdict.as_str(), e.reason.as_str()), ("denied", "default-deny"));
    // No rule decided; db-ingress is named because it isolates the destination.
    assert_eq!(e.policy.as_deref(), Some("db-ingress"));
    assert_eq!(e.policy_origin.as_deref(), Some("db.yaml, document 3"));
    assert_eq!(e.rule, None);
    assert_eq!(e.source.identity, WORLD);
    assert_eq!(e.source.prefix.as_deref(), Some("0.0.0.0/0"));
    assert!(e.source.labels.contains_key("reserved:world"), "{:?}", e.source.labels);
}

#[test]
fn host_addresses_and_their_broadcast_are_the_host_and_set_the_direction() {
    let f = fixture();
    let judge = offline(&f.compiled, &f.ipcache);
    let to_host = judge.explain(&query("198.18.0.11", "198.18.0.255", "udp", Some(67))).unwrap();
    assert_eq!((to_host.destination.identity, to_host.direction.as_str()), (HOST, "ingress"));
    let from_host = judge.explain(&query("198.18.0.2", "198.18.0.10", "icmp", None)).unwrap();
    assert_eq!((from_host.source.identity, from_host.direction.as_str()), (HOST, "egress"));
    assert_eq!((from_host.local.as_str(), from_host.port), ("source", None));
    let forced = judge
        .explain(&ExplainQuery {
            direction: Some("egress".into()),
            ..query("198.18.0.11", "198.18.0.10", "tcp", Some(5432))
        })
        .unwrap();
    assert_eq!((forced.direction.as_str(), forced.verdict.as_str()), ("egress", "denied"), "api may not send");
}

#[test]
fn quarantine_denies_everything_but_failsafe_traffic() {
    let f = fixture();
    let judge = Judge {
        compiled: &f.compiled,
        ipcache: &f.ipcache,
        quarantined: |ip: IpAddr| ip == "198.18.0.11".parse::<IpAddr>().unwrap(),
        generation: 7,
    };
    let cut = judge.explain(&query("198.18.0.11", "198.18.0.10", "tcp", Some(5432))).unwrap();
    assert_eq!((cut.verdict.as_str(), cut.reason.as_str(), cut.policy, cut.rule), ("denied", "quarantine", None, None));
    assert!(cut.source.quarantined && !cut.destination.quarantined);
    assert_eq!(cut.generation, 7);
    let ssh = judge.explain(&query("198.18.0.11", "198.18.0.2", "tcp", Some(22))).unwrap();
    assert_eq!((ssh.verdict.as_str(), ssh.reason.as_str()), ("allowed", "failsafe"));
}

#[test]
fn a_malformed_question_says_what_to_change() {
    let f = fixture();
    let judge = offline(&f.compiled, &f.ipcache);
    let err = |q: ExplainQuery| judge.explain(&q).unwrap_err();
    assert_eq!(err(query("198.18.0.11", "fd00::1", "tcp", Some(1))), QueryError::MixedFamilies);
    assert_eq!(err(query("198.18.0.11", "198.18.0.10", "gre", None)), QueryError::UnknownProtocol("gre".into()));
    assert_eq!(err(query("198.18.0.11", "198.18.0.10", "tcp", None)), QueryError::PortNeeded("tcp".into()));
    assert_eq!(err(query("198.18.0.11", "198.18.0.10", "icmp", Some(8))), QueryError::NoPorts("icmp".into()));
    let sideways =
        ExplainQuery { direction: Some("sideways".into()), ..query("198.18.0.11", "198.18.0.10", "icmp", None) };
    assert_eq!(err(sideways), QueryError::UnknownDirection("sideways".into()));
}

#[test]
fn a_checked_question_is_keyed_as_the_kernel_keys_it() {
    assert_eq!(
        check(&query("198.18.0.1", "198.18.0.2", "UDP", Some(53))),
        Ok(Flow { proto: 17, port: 53, direction: None })
    );
    let ping = ExplainQuery { direction: Some("egress".into()), ..query("fd00::1", "fd00::2", "icmpv6", None) };
    assert_eq!(check(&ping), Ok(Flow { proto: 58, port: 0, direction: Some(DIR_EGRESS) }));
}

#[test]
fn query_errors_name_options_or_fields() {
    assert_eq!(QueryError::PortNeeded("tcp".into()).to_string(), "--port is needed for --proto tcp");
    assert_eq!(QueryError::NoPorts("icmp".into()).sentence(str::to_string), "proto icmp has no ports; leave out port");
    assert_eq!(QueryError::MixedFamilies.to_string(), "--from and --to must both be IPv4 or both IPv6 addresses");
    assert_eq!(
        QueryError::UnknownProtocol("gre".into()).to_string(),
        "--proto gre is not one of tcp, udp, sctp, icmp, icmpv6"
    );
}
