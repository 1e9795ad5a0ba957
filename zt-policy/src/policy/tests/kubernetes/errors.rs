//! Bad Kubernetes input: one sentence naming file, document, field and fix; nothing of a
//! push with errors is applied.

use super::*;

fn np(spec: &str) -> String {
    netpol("x", "p", spec)
}

#[test]
fn bad_network_policy_fields_are_each_reported_with_their_path() {
    let spec = "  podSelector: {matchExpressions: [{key: app, operator: Has}]}\n  policyTypes: [Inbound]\n  ingress:\n    - from: [{}, {ipBlock: {cidr: 10.0.0.0/8}, podSelector: {}}]\n      ports: [{port: 99999}, {port: Http}, {port: http, endPort: 90}, {protocol: ICMP}]\n";
    let errors = errors_of(&[("np.yaml", &np(spec))]);
    assert_eq!(
        errors,
        [
            "policy np.yaml, document 1: spec.podSelector.matchExpressions[0].operator Has is not an operator; use In, NotIn, Exists or DoesNotExist",
            "policy np.yaml, document 1: spec.policyTypes[0] Inbound is not a policy type; use Ingress or Egress",
            "policy np.yaml, document 1: spec.ingress[0].from[0] is empty; give podSelector, namespaceSelector or ipBlock",
            "policy np.yaml, document 1: spec.ingress[0].from[1] gives ipBlock together with podSelector; give ipBlock alone in its own list item",
            "policy np.yaml, document 1: spec.ingress[0].ports[0].port 99999 is out of range 1-65535",
            "policy np.yaml, document 1: spec.ingress[0].ports[1].port \"Http\" is not a port name; write a number in 1-65535 or a container port name (lowercase letters, digits and '-', at most 15 characters, with at least one letter)",
            "policy np.yaml, document 1: spec.ingress[0].ports[2].endPort is given with the named port http; give port a number or remove endPort",
            "policy np.yaml, document 1: spec.ingress[0].ports[3].protocol ICMP is not a NetworkPolicy protocol; use TCP, UDP or SCTP",
        ]
    );
}

#[test]
fn selector_operators_need_or_refuse_values() {
    let spec = "  podSelector:\n    matchExpressions:\n      - {key: app, operator: In}\n      - {key: app, operator: Exists, values: [a]}\n      - {key: \"a b\", operator: Exists}\n";
    let errors = errors_of(&[("np.yaml", &np(spec))]);
    assert_eq!(errors.len(), 3, "{errors:#?}");
    assert_eq!(
        errors[0],
        "policy np.yaml, document 1: spec.podSelector.matchExpressions[0].values is empty, but operator In needs values; list at least one value"
    );
    assert_eq!(
        errors[1],
        "policy np.yaml, document 1: spec.podSelector.matchExpressions[1].values is given, but operator Exists takes no values; remove values"
    );
    assert!(
        errors[2].starts_with("policy np.yaml, document 1: spec.podSelector.matchExpressions[2].key "),
        "{}",
        errors[2]
    );
}

#[test]
fn ip_block_exceptions_must_lie_inside_the_cidr() {
    let spec = "  podSelector: {}\n  egress: [{to: [{ipBlock: {cidr: 10.0.0.0/8, except: [192.168.0.0/16]}}]}]\n";
    assert_eq!(
        error_of("np.yaml", &np(spec)),
        "policy np.yaml, document 1: spec.egress[0].to[0].ipBlock.except[0] 192.168.0.0/16 is not strictly inside cidr 10.0.0.0/8; list only prefixes inside the cidr"
    );
}

#[test]
fn objects_need_a_name_and_pods_good_addresses_and_ports() {
    let nameless = "apiVersion: v1\nkind: Namespace\nmetadata: {labels: {a: b}}\n";
    let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: x}\nspec:\n  containers: [{ports: [{name: web, containerPort: 0}]}]\nstatus: {podIP: 198.18.300.1}\n";
    let errors = errors_of(&[("ns.yaml", nameless), ("pod.yaml", pod)]);
    assert_eq!(
        errors,
        [
            "policy ns.yaml, document 1: metadata.name is missing; give the object a name",
            "policy pod.yaml, document 1: status.podIP \"198.18.300.1\" is not an IP address or CIDR; write e.g. 10.0.1.5, fd00::5 or 10.0.2.0/24",
            "policy pod.yaml, document 1: spec.containers[0].ports[0].containerPort 0 is out of range 1-65535",
        ]
    );
}

#[test]
fn list_items_are_reported_by_index_and_unread_kinds_are_named() {
    let list = "apiVersion: v1\nkind: List\nitems:\n  - apiVersion: v1\n    kind: Service\n    metadata: {name: s}\n  - apiVersion: networking.k8s.io/v1\n    kind: NetworkPolicy\n    metadata: {name: p, namespace: x}\n    spec: {policyTypes: [Sideways]}\n  - apiVersion: v1\n    kind: Pod\n    metadata: {name: q}\n    status: {podIPs: 5}\n";
    let errors = errors_of(&[("list.yaml", list)]);
    assert_eq!(errors.len(), 3, "{errors:#?}");
    assert_eq!(
        errors[0],
        "policy list.yaml, document 1: items[0] is v1 Service, which is not read; give Namespace, Pod or List (apiVersion v1) or NetworkPolicy (apiVersion networking.k8s.io/v1), or remove the object"
    );
    assert_eq!(
        errors[1],
        "policy list.yaml, document 1: items[1].spec.policyTypes[0] Sideways is not a policy type; use Ingress or Egress"
    );
    assert!(errors[2].starts_with("policy list.yaml, document 1: items[2]: "), "{}", errors[2]);
}

#[test]
fn an_unread_kubernetes_kind_as_a_document_is_named() {
    assert_eq!(
        error_of("svc.yaml", "apiVersion: v1\nkind: Service\nmetadata: {name: s}\n"),
        "policy svc.yaml, document 1: kind is v1 Service, which is not read; give Namespace, Pod or List (apiVersion v1) or NetworkPolicy (apiVersion networking.k8s.io/v1), or remove the object"
    );
}

#[test]
fn a_namespace_given_twice_is_an_error() {
    let ns = "apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n";
    let errors = errors_of(&[("a.yaml", ns), ("b.yaml", ns)]);
    assert_eq!(
        errors,
        [
            "policy b.yaml, document 1: metadata.name x is already used by the Namespace in a.yaml, document 1; give each Namespace a unique name"
        ]
    );
}

#[test]
fn two_pods_claiming_one_address_are_an_error() {
    let pod = |name: &str| {
        format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: x}}\nstatus: {{podIP: 198.18.9.1}}\n")
    };
    let errors = errors_of(&[("a.yaml", &pod("p")), ("b.yaml", &pod("q"))]);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(errors[0].contains("198.18.9.1/32 is already claimed by endpoint x/p"), "{}", errors[0]);
}
