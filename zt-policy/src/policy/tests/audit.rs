//! Audit mode: what audit policies report without changing what is enforced.

use super::*;

#[test]
fn audit_policy_reports_would_be_default_deny_as_audit() {
    let c = with_endpoints(AUDIT_DB, &settings(false));
    let (db, api, web) = (id(&c, "app=db"), id(&c, "app=api"), id(&c, "app=web"));
    assert_eq!(explain(&c, DIR_INGRESS, db, WORLD, TCP, 5432), ("audit", "default-deny", None, None));
    assert_eq!(explain(&c, DIR_INGRESS, db, web, TCP, 5432), ("audit", "default-deny", None, None));
    // The audit policy would allow api; enforcement-wise db is not isolated.
    assert_eq!(explain(&c, DIR_INGRESS, db, api, TCP, 5432), not_isolated());
}

#[test]
fn audit_deny_rule_is_reported_with_its_policy_and_rule() {
    let c = with_endpoints(AUDIT_DB, &settings(false));
    let (db, web) = (id(&c, "app=db"), id(&c, "app=web"));
    assert_eq!(explain(&c, DIR_INGRESS, db, web, TCP, 22), ("audit", "deny-rule", Some("db-audit".into()), Some(1)));
}

#[test]
fn audit_deny_on_top_of_an_enforced_allow_is_audit() {
    let enforce = format!("{DB_POLICY_HEAD}  ingress: [{{from: [{{selector: {{app: web}}}}]}}]\n");
    let c = with_endpoints(&format!("{enforce}---\n{AUDIT_DB}"), &settings(false));
    let (db, web) = (id(&c, "app=db"), id(&c, "app=web"));
    assert_eq!(explain(&c, DIR_INGRESS, db, web, TCP, 80), allowed_by("db-ingress", 0));
    assert_eq!(explain(&c, DIR_INGRESS, db, web, TCP, 22), ("audit", "deny-rule", Some("db-audit".into()), Some(1)));
}

#[test]
fn audit_policy_never_lets_an_enforced_drop_through() {
    let enforce = format!("{DB_POLICY_HEAD}  ingress: []\n");
    let c = with_endpoints(&format!("{enforce}---\n{AUDIT_DB}"), &settings(false));
    let (db, api) = (id(&c, "app=db"), id(&c, "app=api"));
    assert_eq!(explain(&c, DIR_INGRESS, db, api, TCP, 5432), default_deny());
}

#[test]
fn audit_policy_under_default_deny_changes_nothing_enforced() {
    let c = with_endpoints(AUDIT_DB, &settings(true));
    let (db, api) = (id(&c, "app=db"), id(&c, "app=api"));
    assert_eq!(explain(&c, DIR_INGRESS, db, api, TCP, 5432), default_deny());
}
