//! Peers: podSelector, namespaceSelector, both (AND), several (OR), matchExpressions, ipBlock.

use super::*;

fn ingress_x_a(from: &str) -> CompiledPolicy {
    k8s(&netpol("x", "to-a", &format!("  podSelector: {{matchLabels: {{pod: a}}}}\n  ingress: [{{from: {from}}}]\n")))
}

/// Asserts which sources reach x/a on TCP 80 (every other destination is open).
fn assert_sources(c: &CompiledPolicy, sources: &[&str]) {
    assert_matrix(c, TCP, 80, |from, to| to != "x/a" || sources.contains(&from));
}

#[test]
fn a_pod_selector_alone_selects_pods_of_the_policys_namespace() {
    assert_sources(&ingress_x_a("[{podSelector: {matchLabels: {pod: b}}}]"), &["x/b"]);
}

#[test]
fn an_empty_namespace_selector_selects_every_pod_but_not_the_world() {
    let c = ingress_x_a("[{namespaceSelector: {}}]");
    assert_sources(&c, &all_pods().iter().map(String::as_str).collect::<Vec<_>>());
    assert!(!connects(&c, "203.0.113.9", "x/a", TCP, 80));
}

#[test]
fn namespace_and_pod_selector_in_one_peer_must_both_match() {
    let c = ingress_x_a("[{namespaceSelector: {matchLabels: {ns: y}}, podSelector: {matchLabels: {pod: b}}}]");
    assert_sources(&c, &["y/b"]);
}

#[test]
fn namespace_and_pod_selector_in_two_peers_either_matches() {
    let c = ingress_x_a("[{namespaceSelector: {matchLabels: {ns: y}}}, {podSelector: {matchLabels: {pod: b}}}]");
    assert_sources(&c, &["y/a", "y/b", "y/c", "x/b"]);
}

#[test]
fn a_namespace_without_a_namespace_object_has_its_metadata_name_label() {
    let c = ingress_x_a("[{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: z}}}]");
    assert_sources(&c, &["z/a", "z/b", "z/c"]);
    let c = ingress_x_a("[{namespaceSelector: {matchLabels: {ns: z}}}]");
    assert_sources(&c, &[]);
}

#[test]
fn match_expressions_in_and_not_in() {
    let c = ingress_x_a("[{namespaceSelector: {matchExpressions: [{key: ns, operator: In, values: [y]}]}}]");
    assert_sources(&c, &["y/a", "y/b", "y/c"]);
    // NotIn also matches namespaces without the label (z).
    let c = ingress_x_a("[{namespaceSelector: {matchExpressions: [{key: ns, operator: NotIn, values: [y]}]}}]");
    assert_sources(&c, &["x/a", "x/b", "x/c", "z/a", "z/b", "z/c"]);
}

#[test]
fn match_expressions_exists_and_does_not_exist() {
    let c = ingress_x_a("[{namespaceSelector: {matchExpressions: [{key: ns, operator: Exists}]}}]");
    assert_sources(&c, &["x/a", "x/b", "x/c", "y/a", "y/b", "y/c"]);
    let c = ingress_x_a("[{namespaceSelector: {matchExpressions: [{key: ns, operator: DoesNotExist}]}}]");
    assert_sources(&c, &["z/a", "z/b", "z/c"]);
}

#[test]
fn match_labels_and_match_expressions_together_must_both_hold() {
    let c = ingress_x_a(
        "[{namespaceSelector: {}, podSelector: {matchLabels: {pod: b}, matchExpressions: [{key: pod, operator: NotIn, values: [c]}]}}]",
    );
    assert_sources(&c, &["x/b", "y/b", "z/b"]);
    let c = k8s(&netpol(
        "y",
        "not-a",
        "  podSelector: {matchExpressions: [{key: pod, operator: In, values: [b, c]}]}\n  ingress: []\n",
    ));
    assert_matrix(&c, TCP, 80, |_, to| to != "y/b" && to != "y/c");
}

#[test]
fn ip_block_matches_world_and_pod_addresses_minus_its_exceptions() {
    let c = ingress_x_a("[{ipBlock: {cidr: 198.18.0.0/15, except: [198.18.2.0/24, 198.18.3.1/32]}}]");
    assert_sources(&c, &["x/a", "x/b", "x/c", "z/b", "z/c"]);
    assert!(connects(&c, "198.19.0.7", "x/a", TCP, 80));
    assert!(!connects(&c, "203.0.113.9", "x/a", TCP, 80));
}

#[test]
fn egress_ip_block_limits_destinations() {
    let spec = "  podSelector: {matchLabels: {pod: a}}\n  policyTypes: [Egress]\n  egress: [{to: [{ipBlock: {cidr: 198.18.2.0/24, except: [198.18.2.3/32]}}]}]\n";
    let c = k8s(&netpol("x", "a-to-y", spec));
    assert_matrix(&c, TCP, 80, |from, to| from != "x/a" || to == "y/a" || to == "y/b");
    assert!(!connects(&c, "x/a", "203.0.113.9", TCP, 443));
}

#[test]
fn an_ip_block_of_one_family_matches_that_family_of_a_dual_stack_pod_only() {
    let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: d, namespace: y}\nstatus:\n  podIPs: [{ip: 198.18.9.1}, {ip: \"fd00::9:1\"}]\n";
    let policy = netpol(
        "x",
        "to-a",
        "  podSelector: {matchLabels: {pod: a}}\n  ingress: [{from: [{ipBlock: {cidr: 198.18.9.0/24}}]}]\n",
    );
    let c = k8s(&format!("{pod}---\n{policy}"));
    assert_ne!(who(&c, "198.18.9.1"), who(&c, "fd00::9:1"), "one identity per family");
    assert!(connects(&c, "198.18.9.1", "x/a", TCP, 80));
    assert!(!connects(&c, "fd00::9:1", "x/a", TCP, 80), "an IPv4 block admits no IPv6 traffic");
    // Selectors see both families of the pod.
    let policy = netpol(
        "x",
        "to-a",
        "  podSelector: {matchLabels: {pod: a}}\n  ingress: [{from: [{namespaceSelector: {matchLabels: {ns: y}}}]}]\n",
    );
    let c = k8s(&format!("{pod}---\n{policy}"));
    assert!(connects(&c, "198.18.9.1", "x/a", TCP, 80));
    assert!(connects(&c, "fd00::9:1", "x/a", TCP, 80));
}
