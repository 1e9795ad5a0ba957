//! Precedence: which rule a verdict reports when several match (deny over allow, exact port over
//! range over all ports, named peer over any, lowest policy id then rule).

use super::*;

#[test]
fn deny_rule_wins_over_allow() {
    let c = with_endpoints(
        &format!(
            "{DB_POLICY_HEAD}  ingress:
    - from: [{{selector: {{app: api}}}}]
      ports: [{{protocol: TCP, port: 5432}}]
    - action: deny
      from: [{{selector: {{app: api}}}}]
"
        ),
        &settings(false),
    );
    let (db, api) = (id(&c, "app=db"), id(&c, "app=api"));
    assert_eq!(explain(&c, DIR_INGRESS, db, api, TCP, 5432), denied_by("db-ingress", 1));
}

#[test]
fn deny_rule_of_another_policy_wins_over_allow() {
    let c = with_endpoints(
        &format!(
            "{DB_POLICY_HEAD}  ingress: [{{ports: [{{port: 5432}}]}}]
---
apiVersion: zt/v1
kind: Policy
metadata: {{name: quarantine-web}}
spec:
  selector: {{}}
  ingress: [{{action: deny, from: [{{selector: {{app: web}}}}]}}]
"
        ),
        &settings(false),
    );
    let (db, api, web) = (id(&c, "app=db"), id(&c, "app=api"), id(&c, "app=web"));
    assert_eq!(explain(&c, DIR_INGRESS, db, web, TCP, 5432), denied_by("quarantine-web", 0));
    assert_eq!(explain(&c, DIR_INGRESS, db, api, TCP, 5432), allowed_by("db-ingress", 0));
}

#[test]
fn exact_port_allow_is_reported_over_range_over_all_ports() {
    let c = with_endpoints(
        &format!(
            "{DB_POLICY_HEAD}  ingress:
    - from: [{{selector: {{app: api}}}}]
      ports: [{{protocol: TCP}}]
    - from: [{{selector: {{app: api}}}}]
      ports: [{{protocol: TCP, port: 5000, endPort: 6000}}]
    - from: [{{selector: {{app: api}}}}]
      ports: [{{protocol: TCP, port: 5432}}]
    - from: [{{selector: {{app: api}}}}]
"
        ),
        &settings(false),
    );
    let (db, api) = (id(&c, "app=db"), id(&c, "app=api"));
    assert_eq!(explain(&c, DIR_INGRESS, db, api, TCP, 5432), allowed_by("db-ingress", 2));
    assert_eq!(explain(&c, DIR_INGRESS, db, api, TCP, 5500), allowed_by("db-ingress", 1));
    assert_eq!(explain(&c, DIR_INGRESS, db, api, TCP, 80), allowed_by("db-ingress", 0));
    assert_eq!(explain(&c, DIR_INGRESS, db, api, UDP, 53), allowed_by("db-ingress", 3));
}

#[test]
fn specific_peer_allow_is_reported_over_any_peer() {
    let c = with_endpoints(
        &format!(
            "{DB_POLICY_HEAD}  ingress:
    - ports: [{{port: 5432}}]
    - from: [{{selector: {{app: api}}}}]
      ports: [{{port: 5432}}]
"
        ),
        &settings(false),
    );
    let (db, api, web) = (id(&c, "app=db"), id(&c, "app=api"), id(&c, "app=web"));
    assert_eq!(explain(&c, DIR_INGRESS, db, api, TCP, 5432), allowed_by("db-ingress", 1));
    assert_eq!(explain(&c, DIR_INGRESS, db, web, TCP, 5432), allowed_by("db-ingress", 0));
}

#[test]
fn equally_specific_allows_report_lowest_policy_id_then_rule() {
    let rule = "{from: [{selector: {app: api}}], ports: [{port: 5432}]}";
    let policy = |name: &str| {
        format!(
            "apiVersion: zt/v1\nkind: Policy\nmetadata: {{name: {name}}}\nspec:\n  selector: {{app: db}}\n  ingress: [{rule}, {rule}]\n"
        )
    };
    let c = with_endpoints(&format!("{}---\n{}", policy("b-db"), policy("a-db")), &settings(false));
    let (db, api) = (id(&c, "app=db"), id(&c, "app=api"));
    assert_eq!(explain(&c, DIR_INGRESS, db, api, TCP, 5432), allowed_by("a-db", 0));
}
