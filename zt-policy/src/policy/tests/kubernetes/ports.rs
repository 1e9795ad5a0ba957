//! Ports: protocol default TCP, numbers, ranges with endPort, and named ports resolved per
//! destination pod.

use super::*;

fn to_x(ports: &str) -> CompiledPolicy {
    k8s(&netpol("x", "ports", &format!("  podSelector: {{}}\n  ingress: [{{ports: {ports}}}]\n")))
}

#[test]
fn a_port_without_protocol_is_tcp() {
    let c = to_x("[{port: 80}]");
    assert!(connects(&c, "y/a", "x/a", TCP, 80));
    assert!(!connects(&c, "y/a", "x/a", UDP, 80));
    assert!(!connects(&c, "y/a", "x/a", TCP, 81));
}

#[test]
fn a_protocol_without_port_is_every_port_of_it() {
    let c = to_x("[{protocol: UDP}]");
    assert!(connects(&c, "y/a", "x/a", UDP, 81));
    assert!(!connects(&c, "y/a", "x/a", TCP, 81));
}

#[test]
fn end_port_makes_a_range() {
    let c = to_x("[{protocol: TCP, port: 80, endPort: 82}]");
    for port in [80, 81, 82] {
        assert!(connects(&c, "y/a", "x/b", TCP, port), "port {port}");
    }
    assert!(!connects(&c, "y/a", "x/b", TCP, 83));
    assert!(!connects(&c, "y/a", "x/b", TCP, 79));
}

#[test]
fn a_named_port_is_the_destination_pods_number_and_nothing_where_it_is_missing() {
    let c = to_x("[{port: serve-80-tcp}]");
    assert!(connects(&c, "y/a", "x/a", TCP, 80));
    assert!(!connects(&c, "y/a", "x/a", TCP, 81));
    assert!(!connects(&c, "y/a", "x/c", TCP, 80), "x/c has no port named serve-80-tcp");
}

#[test]
fn a_named_port_must_match_its_protocol() {
    let c = to_x("[{port: serve-81-udp}]");
    assert!(!connects(&c, "y/a", "x/a", TCP, 81), "serve-81-udp is UDP");
    let c = to_x("[{protocol: UDP, port: serve-81-udp}]");
    assert!(connects(&c, "y/a", "x/a", UDP, 81));
    assert!(!connects(&c, "y/a", "x/a", UDP, 80));
}

#[test]
fn an_egress_named_port_is_resolved_against_the_destination() {
    let spec = "  podSelector: {matchLabels: {pod: a}}\n  egress: [{ports: [{port: serve-80-tcp}]}]\n  policyTypes: [Egress]\n";
    let c = k8s(&netpol("x", "named-out", spec));
    assert!(connects(&c, "x/a", "y/b", TCP, 80));
    assert!(!connects(&c, "x/a", "x/c", TCP, 80), "x/c has no such name");
    assert!(!connects(&c, "x/a", "203.0.113.9", TCP, 80), "the world has no named ports");
}

#[test]
fn named_and_numbered_ports_of_one_rule_add_up() {
    let c = to_x("[{port: serve-80-tcp}, {protocol: UDP, port: 81}]");
    assert!(connects(&c, "y/a", "x/a", TCP, 80));
    assert!(connects(&c, "y/a", "x/c", UDP, 81));
    assert!(!connects(&c, "y/a", "x/c", TCP, 80));
}
