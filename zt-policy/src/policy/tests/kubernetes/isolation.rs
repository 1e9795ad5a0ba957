//! When a pod is isolated, per direction: only when a NetworkPolicy of that policy type
//! selects it, whatever the agent's default deny says.

use super::*;

#[test]
fn without_a_selecting_policy_pods_are_open_although_default_deny_is_on() {
    let c = k8s("");
    assert_matrix(&c, TCP, 80, |_, _| true);
    assert!(connects(&c, "203.0.113.9", "y/b", UDP, 81));
}

#[test]
fn default_deny_still_isolates_the_host_and_zt_endpoints_of_the_same_push() {
    let endpoint =
        "apiVersion: zt/v1\nkind: Endpoint\nmetadata: {name: vm}\nspec: {addresses: [10.9.0.1], labels: {app: vm}}\n";
    let c = k8s(endpoint);
    assert!(!connects(&c, "x/a", "10.9.0.1", TCP, 80), "a zt/v1 endpoint stays default-deny");
    let (vm, pod) = (who(&c, "10.9.0.1"), who(&c, "x/a"));
    assert!(allowed(&c, DIR_INGRESS, pod, vm, TCP, 80), "the pod's ingress is open");
    assert!(!allowed(&c, DIR_EGRESS, vm, pod, TCP, 80), "the vm's egress is not");
    assert!(!allowed(&c, DIR_INGRESS, HOST, WORLD, TCP, 80), "the host stays default-deny");
}

#[test]
fn an_ingress_policy_isolates_the_selected_pods_for_ingress_only() {
    let c = k8s(&netpol("x", "deny-a", "  podSelector: {matchLabels: {pod: a}}\n  ingress: []\n"));
    assert_matrix(&c, TCP, 80, |_, to| to != "x/a");
    let (a, b) = (who(&c, "x/a"), who(&c, "y/b"));
    assert!(allowed(&c, DIR_EGRESS, a, b, TCP, 80), "egress of x/a is not isolated");
}

#[test]
fn a_policy_without_ingress_and_policy_types_still_isolates_ingress() {
    let c = k8s(&netpol("x", "deny-all", "  podSelector: {}\n"));
    assert_matrix(&c, TCP, 80, |_, to| ns(to) != "x");
}

#[test]
fn egress_rules_make_the_default_policy_types_ingress_and_egress() {
    let spec = "  podSelector: {}\n  egress:\n    - to: [{podSelector: {}}]\n";
    let c = k8s(&netpol("x", "egress-in-x", spec));
    // Ingress to x is isolated with no rule; egress of x only to pods of x.
    assert_matrix(&c, TCP, 80, |from, to| ns(to) != "x" && ns(from) != "x");
    let c = k8s(&netpol("x", "egress-empty", "  podSelector: {}\n  egress: []\n"));
    assert!(connects(&c, "x/a", "y/a", TCP, 80), "egress: [] alone does not add Egress");
    assert!(!connects(&c, "y/a", "x/a", TCP, 80));
}

#[test]
fn policy_types_egress_alone_ignores_ingress_rules_and_denies_all_egress() {
    let spec = "  podSelector: {}\n  policyTypes: [Egress]\n  ingress: [{}]\n";
    let c = k8s(&netpol("x", "deny-egress", spec));
    assert_matrix(&c, TCP, 80, |from, _| ns(from) != "x");
    assert!(connects(&c, "203.0.113.9", "x/a", TCP, 80), "ingress of x is not isolated");
}

#[test]
fn ingress_and_egress_at_once_need_both_sides() {
    let spec = "  podSelector: {}\n  policyTypes: [Ingress, Egress]\n  ingress: [{from: [{podSelector: {}}]}]\n  egress: [{to: [{podSelector: {}}]}]\n";
    let c = k8s(&netpol("x", "x-only", spec));
    assert_matrix(&c, TCP, 80, |from, to| (ns(from) == "x") == (ns(to) == "x"));
    assert!(!connects(&c, "203.0.113.9", "x/a", TCP, 80));
}

#[test]
fn several_policies_add_up() {
    let from_y = netpol(
        "x",
        "from-y",
        "  podSelector: {}\n  ingress: [{from: [{namespaceSelector: {matchLabels: {ns: y}}}]}]\n",
    );
    let from_z = netpol(
        "x",
        "from-z-a",
        "  podSelector: {matchLabels: {pod: a}}\n  ingress: [{from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: z}}}]}]\n",
    );
    let c = k8s(&format!("{from_y}---\n{from_z}"));
    assert_matrix(&c, TCP, 80, |from, to| ns(to) != "x" || ns(from) == "y" || (ns(from) == "z" && to == "x/a"));
}

#[test]
fn an_empty_rule_allows_every_source_including_the_world() {
    let c = k8s(&netpol("x", "allow-all", "  podSelector: {}\n  ingress: [{}]\n"));
    assert_matrix(&c, TCP, 80, |_, _| true);
    assert!(connects(&c, "203.0.113.9", "x/a", UDP, 81));
    let c = k8s(&netpol("x", "allow-all", "  podSelector: {}\n  ingress: [{from: [], ports: []}]\n"));
    assert!(connects(&c, "203.0.113.9", "x/a", UDP, 81), "empty from and ports mean the same");
}
