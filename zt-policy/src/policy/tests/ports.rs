//! Protocols and ports: ICMP rules, port ranges and their aligned blocks.

use super::*;

#[test]
fn icmp_rule_matches_icmp_whatever_the_port_field() {
    let c =
        with_endpoints(&format!("{DB_POLICY_HEAD}  ingress: [{{ports: [{{protocol: ICMP}}]}}]\n"), &settings(false));
    let db = id(&c, "app=db");
    for port in [0, 8, 65535] {
        assert_eq!(explain(&c, DIR_INGRESS, db, WORLD, ICMP, port), allowed_by("db-ingress", 0));
    }
    assert_eq!(explain(&c, DIR_INGRESS, db, WORLD, ICMPV6, 0), isolated_by("db-ingress"));
    assert_eq!(explain(&c, DIR_INGRESS, db, WORLD, TCP, 0), isolated_by("db-ingress"));
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
        assert_eq!(explain(&c, DIR_INGRESS, db, WORLD, UDP, port), allowed_by("db-ingress", 0), "port {port}");
    }
    for port in [4999, 5101, 6000] {
        assert_eq!(explain(&c, DIR_INGRESS, db, WORLD, UDP, port), isolated_by("db-ingress"), "port {port}");
    }
    assert_eq!(explain(&c, DIR_INGRESS, db, WORLD, TCP, 5050), isolated_by("db-ingress"));
    // The range is stored as its seven aligned blocks.
    let blocks: Vec<(u16, u8)> = c
        .entries
        .iter()
        .filter(|(k, _)| k.local == db && k.peer == WORLD && k.proto == Some(UDP))
        .map(|(k, _)| (k.port, k.port_prefix_len))
        .collect();
    assert_eq!(blocks, [(5000, 13), (5008, 12), (5024, 11), (5056, 11), (5088, 13), (5096, 14), (5100, 16)]);
}
