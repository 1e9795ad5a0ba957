//! Directions and isolation: which side is local in each direction, when a local identity is
//! isolated (selected by a policy, or default deny), and what is never isolated.

use super::*;

#[test]
fn egress_rules_judge_the_source_as_local() {
    let c = with_endpoints(
        "apiVersion: zt/v1\nkind: Policy\nmetadata: {name: web-egress}\nspec:\n  selector: {app: web}\n  \
         egress: [{to: [{selector: {app: api}}], ports: [{port: 8080}]}]\n",
        &settings(false),
    );
    let (web, api, db) = (id(&c, "app=web"), id(&c, "app=api"), id(&c, "app=db"));
    assert_eq!(explain(&c, DIR_EGRESS, web, api, TCP, 8080), allowed_by("web-egress", 0));
    assert_eq!(explain(&c, DIR_EGRESS, web, db, TCP, 5432), isolated_by("web-egress"));
    // Ingress of web, and egress of others, are not isolated by an egress policy.
    assert_eq!(explain(&c, DIR_INGRESS, web, db, TCP, 80), not_isolated());
    assert_eq!(explain(&c, DIR_EGRESS, api, db, TCP, 5432), not_isolated());
}

#[test]
fn empty_rule_list_isolates_and_allows_nothing() {
    let c = with_endpoints(&format!("{DB_POLICY_HEAD}  ingress: []\n"), &settings(false));
    let (db, api) = (id(&c, "app=db"), id(&c, "app=api"));
    assert_eq!(explain(&c, DIR_INGRESS, db, api, TCP, 5432), isolated_by("db-ingress"));
    assert_eq!(explain(&c, DIR_EGRESS, db, api, TCP, 80), not_isolated());
}

#[test]
fn without_default_deny_unselected_traffic_is_not_isolated() {
    let c = with_endpoints("", &settings(false));
    assert_eq!(explain(&c, DIR_INGRESS, id(&c, "app=db"), WORLD, TCP, 5432), not_isolated());
    assert_eq!(explain(&c, DIR_EGRESS, HOST, WORLD, UDP, 53), not_isolated());
}

#[test]
fn default_deny_isolates_every_local_identity_in_both_directions() {
    let c = with_endpoints(
        &format!("{DB_POLICY_HEAD}  ingress: [{{from: [{{selector: {{app: api}}}}]}}]\n"),
        &settings(true),
    );
    let (db, api) = (id(&c, "app=db"), id(&c, "app=api"));
    assert_eq!(explain(&c, DIR_INGRESS, db, api, TCP, 5432), allowed_by("db-ingress", 0));
    for (direction, local, peer) in
        [(DIR_INGRESS, api, db), (DIR_EGRESS, api, db), (DIR_EGRESS, HOST, WORLD), (DIR_INGRESS, HOST, WORLD)]
    {
        assert_eq!(explain(&c, direction, local, peer, UDP, 53), default_deny());
    }
}

#[test]
fn world_and_cidr_identities_are_never_isolated_as_the_local_side() {
    // On a routing node, a packet from world to a workload crosses the egress hook with
    // world as the source ("local" for egress); world has no policy of its own, so only the
    // workload's ingress policy judges it.
    let c = with_endpoints(
        &format!(
            "{DB_POLICY_HEAD}  ingress: [{{from: [{{cidr: 198.18.0.0/15}}]}}]\n  egress: [{{to: [{{cidr: 198.18.0.0/15}}]}}]\n"
        ),
        &settings(true),
    );
    let cidr = *c.identities.iter().find(|(_, l)| l.to_string().starts_with("cidr:")).unwrap().0;
    for local in [WORLD, cidr] {
        for direction in [DIR_INGRESS, DIR_EGRESS] {
            assert_eq!(explain(&c, direction, local, HOST, TCP, 80), not_isolated());
        }
    }
    assert_eq!(explain(&c, DIR_INGRESS, HOST, cidr, TCP, 80), default_deny(), "the host stays isolated");
}
