//! Cluster objects as the watchers hand them over — one compact JSON text per object — take
//! the JSON fast path, and it must read exactly what the YAML path reads: the same set, the
//! same compiled policy, the same problems.

use super::*;
use crate::policy::parse::{WITHOUT_JSON_PATH, read_kubernetes_json};

/// Policies that use every part of the NetworkPolicy schema the translation reads.
fn policies() -> Vec<String> {
    vec![
        netpol("x", "deny-all", "  podSelector: {}\n  policyTypes: [Ingress, Egress]\n"),
        netpol(
            "x",
            "and-or",
            "  podSelector: {matchLabels: {pod: a}}\n  ingress:\n    - from:\n        - namespaceSelector: \
             {matchLabels: {ns: y}}\n          podSelector:\n            matchExpressions:\n              - {key: \
             pod, operator: In, values: [a, b]}\n              - {key: tier, operator: DoesNotExist}\n        - \
             podSelector: {matchExpressions: [{key: pod, operator: NotIn, values: [c]}, {key: pod, operator: \
             Exists}]}\n      ports:\n        - {port: serve-80-tcp}\n        - {protocol: UDP, port: 81}\n        \
             - {protocol: TCP, port: 8000, endPort: 8080}\n",
        ),
        netpol(
            "y",
            "egress-blocks",
            "  podSelector: {matchLabels: {pod: b}}\n  policyTypes: [Egress]\n  egress:\n    - to:\n        - \
             ipBlock: {cidr: 198.18.0.0/16, except: [198.18.1.0/24]}\n        - ipBlock: {cidr: fd00::/8}\n      \
             ports: [{protocol: SCTP, port: 9}]\n    - to: [{namespaceSelector: {}}]\n",
        ),
        netpol("z", "allow-all", "  podSelector: {}\n  ingress: [{}]\n"),
    ]
}

/// Every object of the fixture cluster and [`policies`], one source each, as compact JSON.
fn json_sources() -> Vec<(String, String)> {
    let yaml = format!("{}---\n{}", cluster(), policies().join("---\n"));
    yaml.split("---\n")
        .enumerate()
        .map(|(i, doc)| {
            let value: serde_json::Value = serde_norway::from_str(doc).unwrap();
            (format!("kubernetes:objects/{i}"), value.to_string())
        })
        .collect()
}

fn without_json_path<T>(f: impl FnOnce() -> T) -> T {
    WITHOUT_JSON_PATH.set(true);
    let result = f();
    WITHOUT_JSON_PATH.set(false);
    result
}

#[test]
fn every_cluster_object_takes_the_json_path_and_reads_as_on_the_yaml_path() {
    let sources = json_sources();
    assert_eq!(sources.len(), 2 + 9 + policies().len());
    for (name, text) in &sources {
        assert!(read_kubernetes_json(text).is_some(), "{name} did not take the JSON path: {text}");
    }
    let fast = parse(&sources).unwrap();
    let slow = without_json_path(|| parse(&sources)).unwrap();
    assert_eq!(fast, slow);
    let compile = |set: &PolicySet| compile(set, &settings(true), &mut IdentityAllocator::new()).unwrap();
    let (fast, slow) = (compile(&fast), compile(&slow));
    assert_eq!((fast.entries, fast.ipcache, fast.warnings), (slow.entries, slow.ipcache, slow.warnings));
}

#[test]
fn a_bad_object_reports_the_same_problems_on_either_path() {
    let pod = &json_sources()[2].1;
    let bad = [
        // Read fine, then rejected by the field checks.
        pod.replace("\"containerPort\":80", "\"containerPort\":70000"),
        pod.replace("\"pod\":\"a\"", "\"pod\":\"not valid!\""),
        // Not the schema's type: the JSON path gives up and the YAML path reports it.
        pod.replace("\"containerPort\":80", "\"containerPort\":[80]"),
        // Two objects in one text, and an escape: left to the YAML path.
        format!("{pod} {pod}"),
        pod.replace("\"pod\":\"a\"", "\"pod\":\"\\u0061\""),
    ];
    for (i, text) in bad.into_iter().enumerate() {
        let sources = [("kubernetes:pods/x/a", text.as_str())];
        let fast = parse(&sources).map(|_| ()).map_err(|e| e.iter().map(ToString::to_string).collect::<Vec<_>>());
        let slow = without_json_path(|| parse(&sources))
            .map(|_| ())
            .map_err(|e| e.iter().map(ToString::to_string).collect::<Vec<_>>());
        assert_eq!(fast, slow, "{text}");
        assert_eq!(fast.is_err(), i < 4, "{text}: {fast:?}");
    }
}
