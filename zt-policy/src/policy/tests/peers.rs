//! Peers: how selectors, CIDRs (with except) and entities resolve to identities, including the
//! host and world.

use super::*;

#[test]
fn cidr_peer_covers_its_prefix_and_endpoints_inside_but_not_except() {
    let c = compile_yaml(
        "apiVersion: zt/v1
kind: Endpoint
metadata: {name: partner}
spec: {addresses: [192.168.1.5, 192.168.2.0/24], labels: {app: partner}}
---
apiVersion: zt/v1
kind: Endpoint
metadata: {name: lab}
spec: {addresses: [192.168.9.7], labels: {app: lab}}
---
apiVersion: zt/v1
kind: Endpoint
metadata: {name: db}
spec: {addresses: [10.0.3.10], labels: {app: db}}
---
apiVersion: zt/v1
kind: Policy
metadata: {name: db-ingress}
spec:
  selector: {app: db}
  ingress: [{from: [{cidr: 192.168.0.0/16, except: [192.168.9.0/24]}]}]
",
        &settings(false),
    );
    let db = id(&c, "app=db");
    let inside = [id(&c, "cidr:192.168.0.0/16"), id(&c, "app=partner")];
    for peer in inside {
        assert_eq!(explain(&c, DIR_INGRESS, db, peer, TCP, 443), allowed_by("db-ingress", 0), "peer {peer}");
    }
    let outside = [id(&c, "cidr:192.168.9.0/24"), id(&c, "app=lab"), WORLD, HOST];
    for peer in outside {
        assert_eq!(explain(&c, DIR_INGRESS, db, peer, TCP, 443), isolated_by("db-ingress"), "peer {peer}");
    }
}

#[test]
fn cidr_equal_to_an_endpoint_prefix_uses_the_endpoint_identity() {
    let c = compile_yaml(
        "apiVersion: zt/v1
kind: Endpoint
metadata: {name: office}
spec: {addresses: [10.9.0.0/16], labels: {site: office}}
---
apiVersion: zt/v1
kind: Policy
metadata: {name: from-office}
spec:
  selector: {}
  ingress: [{from: [{cidr: 10.9.0.0/16}]}]
",
        &settings(false),
    );
    let office = id(&c, "site=office");
    assert!(c.identities.values().all(|labels| !labels.to_string().starts_with("cidr:")));
    assert!(c.ipcache.contains(&("10.9.0.0/16".parse().unwrap(), office)));
    assert_eq!(explain(&c, DIR_INGRESS, HOST, office, TCP, 22), allowed_by("from-office", 0));
}

#[test]
fn cidr_default_route_includes_world() {
    let c = with_endpoints(
        &format!("{DB_POLICY_HEAD}  ingress: [{{from: [{{cidr: 0.0.0.0/0, except: [10.0.2.0/24]}}]}}]\n"),
        &settings(false),
    );
    let (db, web, api) = (id(&c, "app=db"), id(&c, "app=web"), id(&c, "app=api"));
    assert_eq!(explain(&c, DIR_INGRESS, db, WORLD, TCP, 1), allowed_by("db-ingress", 0));
    assert_eq!(explain(&c, DIR_INGRESS, db, web, TCP, 1), allowed_by("db-ingress", 0));
    // api has an IPv6 address outside 0.0.0.0/0 (and an IPv4 one inside the except).
    assert_eq!(explain(&c, DIR_INGRESS, db, api, TCP, 1), isolated_by("db-ingress"));
    assert_eq!(explain(&c, DIR_INGRESS, db, id(&c, "cidr:10.0.2.0/24"), TCP, 1), isolated_by("db-ingress"));
}

#[test]
fn cidr_covering_part_of_an_endpoint_does_not_match_it_and_warns() {
    let c =
        with_endpoints(&format!("{DB_POLICY_HEAD}  ingress: [{{from: [{{cidr: 10.0.0.0/8}}]}}]\n"), &settings(false));
    let (db, api, web) = (id(&c, "app=db"), id(&c, "app=api"), id(&c, "app=web"));
    assert_eq!(explain(&c, DIR_INGRESS, db, web, TCP, 1), allowed_by("db-ingress", 0));
    assert_eq!(explain(&c, DIR_INGRESS, db, api, TCP, 1), isolated_by("db-ingress"));
    assert_eq!(
        c.warnings,
        ["policy test.yaml, document 4: spec.ingress[0].from[0].cidr 10.0.0.0/8 covers only some addresses of \
             endpoint api-1, so traffic of endpoint api-1 does not match it; cover all of its addresses or none"]
    );
}

#[test]
fn cidr_containing_host_addresses_matches_the_host() {
    let settings = CompileSettings { host_addresses: vec!["10.0.0.1".parse().unwrap()], ..settings(false) };
    let c = with_endpoints(&format!("{DB_POLICY_HEAD}  ingress: [{{from: [{{cidr: 10.0.0.0/24}}]}}]\n"), &settings);
    let db = id(&c, "app=db");
    assert_eq!(explain(&c, DIR_INGRESS, db, HOST, TCP, 1), allowed_by("db-ingress", 0));
}

#[test]
fn selector_peer_matches_the_host_by_its_labels() {
    let settings = CompileSettings { host_labels: Labels::parse("role=bastion").unwrap(), ..settings(false) };
    let c = with_endpoints(
        &format!("{DB_POLICY_HEAD}  ingress: [{{from: [{{selector: {{role: bastion}}}}], ports: [{{port: 22}}]}}]\n"),
        &settings,
    );
    let (db, web) = (id(&c, "app=db"), id(&c, "app=web"));
    assert_eq!(c.identities[&HOST].to_string(), "reserved:host,role=bastion");
    assert_eq!(explain(&c, DIR_INGRESS, db, HOST, TCP, 22), allowed_by("db-ingress", 0));
    assert_eq!(explain(&c, DIR_INGRESS, db, web, TCP, 22), isolated_by("db-ingress"));
}

#[test]
fn selector_selects_the_host_as_local_by_its_labels() {
    let settings = CompileSettings { host_labels: Labels::parse("role=bastion").unwrap(), ..settings(false) };
    let c = with_endpoints(
        "apiVersion: zt/v1\nkind: Policy\nmetadata: {name: bastion}\nspec:\n  selector: {role: bastion}\n  ingress: []\n",
        &settings,
    );
    assert_eq!(c.policies[0].selected, [HOST]);
    assert_eq!(explain(&c, DIR_INGRESS, HOST, WORLD, TCP, 22), isolated_by("bastion"));
    assert_eq!(explain(&c, DIR_INGRESS, id(&c, "app=db"), WORLD, TCP, 22), not_isolated());
}

#[test]
fn empty_selector_means_every_local_and_every_endpoint_peer() {
    let c = with_endpoints(
        "apiVersion: zt/v1\nkind: Policy\nmetadata: {name: internal}\nspec:\n  selector: {}\n  \
         ingress: [{from: [{selector: {}}]}]\n",
        &settings(false),
    );
    assert_eq!(c.policies[0].selected, [ANY]);
    let db = id(&c, "app=db");
    for peer in [id(&c, "app=web"), id(&c, "app=api"), HOST] {
        assert_eq!(explain(&c, DIR_INGRESS, db, peer, TCP, 1), allowed_by("internal", 0));
    }
    assert_eq!(explain(&c, DIR_INGRESS, db, WORLD, TCP, 1), isolated_by("internal"));
    // `{}` selects the host and every endpoint, never world: world is only ever a peer.
    assert_eq!(explain(&c, DIR_INGRESS, WORLD, WORLD, TCP, 1), not_isolated());
}

#[test]
fn entity_peers_name_host_world_and_any() {
    let c = with_endpoints(
        &format!(
            "{DB_POLICY_HEAD}  ingress:
    - from: [{{entity: host}}]
      ports: [{{port: 1}}]
    - from: [{{entity: world}}]
      ports: [{{port: 2}}]
    - from: [{{entity: any}}]
      ports: [{{port: 3}}]
"
        ),
        &settings(false),
    );
    let (db, web) = (id(&c, "app=db"), id(&c, "app=web"));
    assert_eq!(explain(&c, DIR_INGRESS, db, HOST, TCP, 1), allowed_by("db-ingress", 0));
    assert_eq!(explain(&c, DIR_INGRESS, db, web, TCP, 1), isolated_by("db-ingress"));
    assert_eq!(explain(&c, DIR_INGRESS, db, WORLD, TCP, 2), allowed_by("db-ingress", 1));
    assert_eq!(explain(&c, DIR_INGRESS, db, HOST, TCP, 2), isolated_by("db-ingress"));
    for peer in [HOST, WORLD, web] {
        assert_eq!(explain(&c, DIR_INGRESS, db, peer, TCP, 3), allowed_by("db-ingress", 2));
    }
}

#[test]
fn selector_matching_nothing_is_a_warning_not_an_error() {
    let c = with_endpoints(
        "apiVersion: zt/v1\nkind: Policy\nmetadata: {name: cache}\nspec:\n  selector: {app: cache}\n  \
         ingress: [{from: [{selector: {app: nobody}}]}]\n",
        &settings(false),
    );
    assert_eq!(
        c.warnings,
        [
            "policy test.yaml, document 4: spec.selector {app: cache} selects no endpoint and not this host, so \
             policy cache has no effect",
            "policy test.yaml, document 4: spec.ingress[0].from[0].selector {app: nobody} matches no endpoint and \
             not this host, so it adds no peer to the rule",
        ]
    );
}
