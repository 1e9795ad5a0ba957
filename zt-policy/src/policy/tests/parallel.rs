//! The compile spread over threads (`crate::parallel`) gives exactly what it gives on one:
//! the same kernel entries, ipcache, identities, policy ids, warnings and rate limits for a
//! cluster of many pods, namespaces and policies, and the same problems in the same order
//! when objects are broken. Pieces are forced, so this holds on a one-core machine too.

use serde_json::{Value, json};

use super::*;
use crate::generation::{Rejected, check_cached};
use crate::parallel::with_pieces;

const NAMESPACES: usize = 40;
const PODS_PER_NAMESPACE: usize = 30;

fn pod(ns: usize, j: usize, ip: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("p{j}"), "namespace": format!("ns{ns}"),
                     "labels": {"app": format!("app{}", j % 5), "role": if j.is_multiple_of(4) { "frontend" } else { "backend" }}},
        "spec": {"containers": [{"ports": [{"name": "http", "containerPort": 8080 + (j % 3), "protocol": "TCP"}]}]},
        "status": {"phase": "Running", "podIPs": [{"ip": ip}, {"ip": format!("fd00::{:x}", ns * 1000 + j + 1)}]},
    })
}

fn policies(ns: usize) -> Vec<Value> {
    let np = |name: &str, spec: Value| {
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
               "metadata": {"name": name, "namespace": format!("ns{ns}")}, "spec": spec})
    };
    vec![
        np("default-deny", json!({"podSelector": {}, "policyTypes": ["Ingress", "Egress"]})),
        np(
            "frontend-to-app1",
            json!({"podSelector": {"matchLabels": {"app": "app1"}},
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "frontend"}}}], "ports": [{"port": "http"}]}]}),
        ),
        np(
            "neighbours",
            json!({"podSelector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["app2", "app3"]}]},
            "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": format!("ns{}", (ns + 1) % NAMESPACES)}},
                                   "podSelector": {"matchLabels": {"role": "frontend"}}}],
                         "ports": [{"protocol": "TCP", "port": 8000, "endPort": 8090}]}]}),
        ),
        np(
            "egress",
            json!({"podSelector": {"matchLabels": {"role": "frontend"}}, "policyTypes": ["Egress"],
            "egress": [{"to": [{"podSelector": {"matchLabels": {"app": "app0"}}},
                               {"namespaceSelector": {"matchLabels": {"team": format!("t{}", ns % 3)}},
                                "podSelector": {"matchLabels": {"app": "app4"}}}],
                        "ports": [{"port": "http"}]},
                       {"to": [{"ipBlock": {"cidr": "198.18.128.0/17", "except": [format!("198.18.{}.0/24", 128 + ns)]}}],
                        "ports": [{"protocol": "UDP", "port": 53}]}]}),
        ),
    ]
}

/// A cluster as the watchers hand it over, one compact JSON source per object; `broken`
/// pods get an address that is not one.
fn cluster(broken: &[(usize, usize)]) -> Vec<(String, String)> {
    let mut sources = Vec::new();
    for ns in 0..NAMESPACES {
        let namespace = json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": format!("ns{ns}"), "labels": {"team": format!("t{}", ns % 3)}}});
        sources.push((format!("kubernetes:namespaces/ns{ns}"), namespace.to_string()));
        for j in 0..PODS_PER_NAMESPACE {
            let k = ns * PODS_PER_NAMESPACE + j;
            let ip = if broken.contains(&(ns, j)) {
                "198.19.x".to_string()
            } else {
                format!("198.19.{}.{}", k / 250, k % 250 + 1)
            };
            sources.push((format!("kubernetes:pods/ns{ns}/p{j}"), pod(ns, j, &ip).to_string()));
        }
        for policy in policies(ns) {
            let name = policy["metadata"]["name"].as_str().unwrap().to_string();
            sources.push((format!("kubernetes:networkpolicies/ns{ns}/{name}"), policy.to_string()));
        }
    }
    sources
}

fn compile_in(pieces: usize, sources: &[(String, String)]) -> Result<CompiledPolicy, Rejected> {
    let settings = CompileSettings { host_addresses: vec!["198.18.0.1".parse().unwrap()], ..Default::default() };
    with_pieces(pieces, || {
        check_cached(sources, &settings, &mut IdentityAllocator::new(), &mut crate::policy::ParseCache::default())
    })
}

#[test]
fn a_cluster_compiles_to_the_same_policy_on_one_thread_and_on_several() {
    let sources = cluster(&[]);
    let one = compile_in(1, &sources).expect("the cluster compiles");
    assert!(one.entries.len() > 10_000 && one.identities.len() > NAMESPACES * PODS_PER_NAMESPACE, "a real workload");
    for pieces in [2, 3, 7] {
        let several = compile_in(pieces, &sources).expect("the cluster compiles");
        assert_eq!(several.entries, one.entries, "{pieces} pieces: entries");
        assert_eq!(several.ipcache, one.ipcache, "{pieces} pieces: ipcache");
        assert_eq!(several.identities, one.identities, "{pieces} pieces: identities");
        assert_eq!(several.policies, one.policies, "{pieces} pieces: policy ids");
        assert_eq!(several.warnings, one.warnings, "{pieces} pieces: warnings");
        assert_eq!(several.rate_limits, one.rate_limits, "{pieces} pieces: rate limits");
    }
}

#[test]
fn broken_objects_are_reported_in_the_same_order_on_one_thread_and_on_several() {
    let sources = cluster(&[(0, 3), (13, 0), (27, 29), (39, 29)]);
    let one = compile_in(1, &sources).expect_err("broken pods reject the push").sentences();
    assert_eq!(one.len(), 4, "{one:#?}");
    assert!(one[0].contains("kubernetes:pods/ns0/p3") && one[3].contains("kubernetes:pods/ns39/p29"), "{one:#?}");
    for pieces in [2, 5] {
        let several = compile_in(pieces, &sources).expect_err("broken pods reject the push").sentences();
        assert_eq!(several, one, "{pieces} pieces");
    }
}
