//! Reading Kubernetes objects: pods as endpoints with their namespace's labels, pods the
//! policy cannot see, `v1 List` as kubectl prints it, and mixing with `zt/v1`.

use super::*;
use crate::policy::model::NamedPort;

fn parsed(text: &str) -> PolicySet {
    parse(&[("cluster.yaml", text)]).unwrap_or_else(|errors| panic!("{errors:#?}"))
}

#[test]
fn a_pod_is_an_endpoint_with_its_labels_its_namespaces_and_its_name() {
    let set = parsed(&cluster());
    let pod = set.endpoints.iter().find(|e| e.qualified_name() == "x/a").unwrap();
    assert_eq!(pod.addresses, ["198.18.1.1/32".parse::<IpNet>().unwrap()]);
    assert_eq!(
        pod.labels.to_string(),
        "k8s.ns:kubernetes.io/metadata.name=x,k8s.ns:ns=x,k8s:namespace=x,k8s:pod=a,pod=a"
    );
    let named = &pod.pod.as_ref().unwrap().named;
    assert_eq!(named[0], NamedPort { name: "serve-80-tcp".into(), protocol: Protocol::Tcp, port: 80 });
    let z = set.endpoints.iter().find(|e| e.qualified_name() == "z/b").unwrap();
    assert_eq!(z.labels.to_string(), "k8s.ns:kubernetes.io/metadata.name=z,k8s:namespace=z,k8s:pod=b,pod=b");
}

#[test]
fn pods_without_an_ip_on_the_host_network_or_finished_are_left_out() {
    let pending = "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: x}\nstatus: {phase: Pending}\n";
    let host = "apiVersion: v1\nkind: Pod\nmetadata: {name: h, namespace: x}\nspec: {hostNetwork: true}\nstatus: {podIP: 198.18.9.1}\n";
    let done =
        "apiVersion: v1\nkind: Pod\nmetadata: {name: d, namespace: x}\nstatus: {phase: Succeeded, podIP: 198.18.9.2}\n";
    let set = parsed(&[pending, host, done].join("---\n"));
    assert!(set.endpoints.is_empty(), "{:#?}", set.endpoints);
}

#[test]
fn a_pod_without_namespace_is_in_default_and_dual_stack_addresses_are_kept() {
    let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nstatus:\n  podIP: 198.18.9.1\n  podIPs: [{ip: 198.18.9.1}, {ip: \"fd00::9:1\"}]\n";
    let set = parsed(pod);
    assert_eq!(set.endpoints[0].qualified_name(), "default/p");
    assert_eq!(set.endpoints[0].addresses.len(), 2);
}

/// What `kubectl get pods,namespaces,networkpolicies -A -o yaml` prints, abridged to one of
/// each, with the fields that say nothing about traffic.
const KUBECTL_LIST: &str = r#"apiVersion: v1
items:
- apiVersion: v1
  kind: Pod
  metadata:
    creationTimestamp: "2026-11-20T10:00:00Z"
    generateName: web-7d4b9c-
    labels:
      app: web
      pod-template-hash: 7d4b9c
    name: web-7d4b9c-x2k9p
    namespace: shop
    ownerReferences:
    - apiVersion: apps/v1
      blockOwnerDeletion: true
      controller: true
      kind: ReplicaSet
      name: web-7d4b9c
      uid: 3f1c2d4e-0000-4000-8000-000000000001
    resourceVersion: "48213"
    uid: 3f1c2d4e-0000-4000-8000-000000000002
    managedFields:
    - apiVersion: v1
      fieldsType: FieldsV1
      fieldsV1:
        f:metadata: {}
      manager: kube-controller-manager
      operation: Update
  spec:
    containers:
    - image: nginx:1.27
      imagePullPolicy: IfNotPresent
      name: nginx
      ports:
      - containerPort: 8080
        name: http
        protocol: TCP
      resources: {}
    dnsPolicy: ClusterFirst
    nodeName: node-1
    restartPolicy: Always
  status:
    conditions:
    - lastProbeTime: null
      lastTransitionTime: "2026-11-20T10:00:05Z"
      status: "True"
      type: Ready
    hostIP: 10.0.0.11
    hostIPs:
    - ip: 10.0.0.11
    phase: Running
    podIP: 198.18.5.10
    podIPs:
    - ip: 198.18.5.10
    qosClass: BestEffort
    startTime: "2026-11-20T10:00:00Z"
- apiVersion: v1
  kind: Namespace
  metadata:
    creationTimestamp: "2026-11-20T09:59:00Z"
    labels:
      kubernetes.io/metadata.name: shop
      team: payments
    name: shop
    resourceVersion: "48100"
    uid: 3f1c2d4e-0000-4000-8000-000000000003
  spec:
    finalizers:
    - kubernetes
  status:
    phase: Active
- apiVersion: networking.k8s.io/v1
  kind: NetworkPolicy
  metadata:
    annotations:
      kubectl.kubernetes.io/last-applied-configuration: |
        {"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy"}
    creationTimestamp: "2026-11-20T10:01:00Z"
    generation: 1
    name: web-from-payments
    namespace: shop
    resourceVersion: "48300"
    uid: 3f1c2d4e-0000-4000-8000-000000000004
  spec:
    ingress:
    - from:
      - namespaceSelector:
          matchLabels:
            team: payments
      ports:
      - port: http
        protocol: TCP
    podSelector:
      matchLabels:
        app: web
    policyTypes:
    - Ingress
kind: List
metadata:
  resourceVersion: ""
"#;

#[test]
fn a_kubectl_list_is_read_item_by_item_ignoring_fields_that_say_nothing_about_traffic() {
    let set = parsed(KUBECTL_LIST);
    assert_eq!(set.endpoints.len(), 1);
    assert_eq!(set.endpoints[0].qualified_name(), "shop/web-7d4b9c-x2k9p");
    assert_eq!(set.endpoints[0].labels.get("k8s.ns:team"), Some("payments"));
    assert_eq!(set.policies.len(), 1);
    assert_eq!(set.policies[0].name, "shop/web-from-payments");
    let c = compile_yaml(KUBECTL_LIST, &settings(true));
    let web = identity_of(&c, "198.18.5.10");
    assert_eq!(explain(&c, DIR_INGRESS, web, web, TCP, 8080), allowed_by("shop/web-from-payments", 0));
    assert_eq!(explain(&c, DIR_INGRESS, web, WORLD, TCP, 8080), isolated_by("shop/web-from-payments"));
    assert_eq!(explain(&c, DIR_INGRESS, web, web, TCP, 80), isolated_by("shop/web-from-payments"));
}

#[test]
fn kubernetes_objects_and_zt_documents_mix_in_one_push() {
    let zt = "apiVersion: zt/v1\nkind: Policy\nmetadata: {name: pods-no-dns}\nspec:\n  selector: {pod: a}\n  \
              egress: [{action: deny, ports: [{protocol: UDP, port: 53}]}, {}]\n";
    let policies =
        format!("{zt}---\n{}", netpol("x", "to-b", "  podSelector: {matchLabels: {pod: b}}\n  ingress: []\n"));
    let c = k8s(&policies);
    assert!(!connects(&c, "y/a", "x/b", TCP, 80), "the NetworkPolicy isolates x/b");
    assert!(connects(&c, "y/a", "x/c", TCP, 80));
    assert!(!connects(&c, "y/a", "198.18.3.3", UDP, 53), "the zt/v1 policy selects pods by label");
    let names: Vec<&str> = c.policies.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["pods-no-dns", "x/to-b"]);
}

#[test]
fn warnings_about_a_network_policy_name_its_own_fields() {
    let policy = netpol(
        "x",
        "nobody",
        "  podSelector: {matchLabels: {pod: q}}\n  ingress: [{from: [{podSelector: {matchLabels: {pod: q}}}]}]\n",
    );
    let list = format!("apiVersion: v1\nkind: List\nitems:\n- {}", policy.replace('\n', "\n  "));
    let c = compile_yaml(&format!("{}---\n{list}", cluster()), &settings(true));
    assert_eq!(
        c.warnings,
        [
            "policy test.yaml, document 12: items[0].spec.podSelector {k8s:namespace: x, pod: q} selects no pod, so \
             policy x/nobody has no effect",
            "policy test.yaml, document 12: items[0].spec.ingress[0].from[0] {k8s:namespace: x, pod: q} matches no \
             pod, so it adds no peer to the rule",
        ]
    );
}

#[test]
fn the_kubernetes_example_in_policies_is_valid_and_means_what_it_says() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../policies/kubernetes");
    let sources = load_path(std::path::Path::new(dir)).unwrap_or_else(|e| panic!("{e:#?}"));
    let set = parse(&sources).unwrap_or_else(|errors| panic!("{errors:#?}"));
    let c = compile(&set, &settings(true), &mut IdentityAllocator::new()).unwrap();
    assert!(c.warnings.is_empty(), "{:#?}", c.warnings);
    let (web, api, db, prometheus) = ("10.244.1.10", "10.244.2.20", "10.244.2.30", "10.244.3.40");
    assert!(connects(&c, web, api, TCP, 8080));
    assert!(!connects(&c, web, db, TCP, 5432));
    assert!(connects(&c, api, db, TCP, 5432));
    assert!(!connects(&c, db, api, TCP, 8080), "db sends nothing");
    assert!(connects(&c, prometheus, api, TCP, 9090));
    assert!(connects(&c, prometheus, db, TCP, 9090), "the db and scrape policies add up");
    assert!(!connects(&c, prometheus, db, TCP, 5432));
}
