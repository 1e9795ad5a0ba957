//! Kubernetes input: Namespace, Pod, NetworkPolicy and List documents, and the upstream
//! NetworkPolicy semantics they must have once compiled. The fixture is a small cluster:
//! namespaces x and y (with Namespace objects labelled `ns: x`/`ns: y`) and z (without
//! one), pods a, b, c in each (`pod: a`, ...), every pod with the named container ports
//! `serve-80-tcp` and `serve-81-udp` except x/c, which has unnamed ports.
//!
//! Verdicts are read through `CompiledPolicy::lookup` as the kernel does: a connection
//! passes when the source's egress and the destination's ingress both allow it.

use super::*;

mod errors;
mod input;
mod isolation;
mod json;
mod peers;
mod ports;

const NAMESPACES: [&str; 3] = ["x", "y", "z"];
const PODS: [&str; 3] = ["a", "b", "c"];

/// The address of pod `name` in namespace `namespace`: 198.18.<ns>.<pod>.
fn pod_ip(namespace: &str, name: &str) -> String {
    let n = NAMESPACES.iter().position(|n| *n == namespace).unwrap() + 1;
    let p = PODS.iter().position(|p| *p == name).unwrap() + 1;
    format!("198.18.{n}.{p}")
}

fn pod_yaml(namespace: &str, name: &str) -> String {
    let ports = if (namespace, name) == ("x", "c") {
        "        - {containerPort: 80}\n        - {containerPort: 81, protocol: UDP}\n".to_string()
    } else {
        "        - {name: serve-80-tcp, containerPort: 80}\n        - {name: serve-81-udp, containerPort: 81, protocol: UDP}\n"
            .to_string()
    };
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: {namespace}\n  labels: {{pod: {name}}}\n\
         spec:\n  containers:\n    - name: server\n      ports:\n{ports}status:\n  podIP: {ip}\n  podIPs: [{{ip: {ip}}}]\n",
        ip = pod_ip(namespace, name)
    )
}

/// The fixture cluster as documents.
fn cluster() -> String {
    let mut docs: Vec<String> = ["x", "y"]
        .iter()
        .map(|n| format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {n}\n  labels: {{ns: {n}}}\n"))
        .collect();
    for namespace in NAMESPACES {
        for name in PODS {
            docs.push(pod_yaml(namespace, name));
        }
    }
    docs.join("---\n")
}

/// The cluster plus `policies`, compiled with the agent's default (default deny on).
fn k8s(policies: &str) -> CompiledPolicy {
    compile_yaml(&format!("{}---\n{policies}", cluster()), &settings(true))
}

/// A NetworkPolicy in `namespace` named `name` with `spec` (YAML, indented by two).
fn netpol(namespace: &str, name: &str, spec: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: {name}\n  namespace: {namespace}\nspec:\n{spec}"
    )
}

/// The identity the kernel resolves `ip` to (longest prefix of the ipcache).
fn identity_of(c: &CompiledPolicy, ip: &str) -> u32 {
    let ip: std::net::IpAddr = ip.parse().unwrap();
    let best = c.ipcache.iter().filter(|(net, _)| net.contains(&ip)).max_by_key(|(net, _)| net.prefix_len());
    best.expect("the default routes cover every address").1
}

/// `x/a` -> the pod's identity; anything else is an address.
fn who(c: &CompiledPolicy, peer: &str) -> u32 {
    match peer.split_once('/') {
        Some((namespace, name)) => identity_of(c, &pod_ip(namespace, name)),
        None => identity_of(c, peer),
    }
}

fn allowed(c: &CompiledPolicy, direction: u8, local: u32, peer: u32, proto: u8, port: u16) -> bool {
    let value = c.lookup(direction, local, peer, proto, port).expect("the catch-all always hits");
    value.verdict == reason::VERDICT_ALLOWED
}

/// Whether a new connection from `from` to `to` passes: the source's egress and the
/// destination's ingress must both allow it.
fn connects(c: &CompiledPolicy, from: &str, to: &str, proto: u8, port: u16) -> bool {
    let (src, dst) = (who(c, from), who(c, to));
    allowed(c, DIR_EGRESS, src, dst, proto, port) && allowed(c, DIR_INGRESS, dst, src, proto, port)
}

/// Every pod, as `ns/name`.
fn all_pods() -> Vec<String> {
    NAMESPACES.iter().flat_map(|n| PODS.iter().map(move |p| format!("{n}/{p}"))).collect()
}

/// Asserts, for every pod source and every pod destination, that TCP `port` connects
/// exactly when `expect(from, to)` says so; reports every mismatch at once.
fn assert_matrix(c: &CompiledPolicy, proto: u8, port: u16, expect: impl Fn(&str, &str) -> bool) {
    let mut wrong = Vec::new();
    for from in all_pods() {
        for to in all_pods() {
            let got = connects(c, &from, &to, proto, port);
            if got != expect(&from, &to) {
                wrong.push(format!("{from} -> {to} port {port}: got {got}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{} wrong: {wrong:#?}", wrong.len());
}

fn ns(pod: &str) -> &str {
    pod.split('/').next().unwrap()
}
