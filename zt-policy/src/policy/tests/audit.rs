//! Audit mode: what audit policies report without changing what is enforced.

use super::*;

#[test]
fn audit_policy_reports_would_be_default_deny_as_audit() {
    let c = with_endpoints(AUDIT_DB, &settings(false));
    let (db, api, web) = (id(&c, "app=db"), id(&c, "app=api"), id(&c, "app=web"));
    assert_eq!(
        explain(&c, DIR_INGRESS, db, WORLD, TCP, 5432),
        ("audit", "default-deny", Some("db-audit".into()), None)
    );
    assert_eq!(explain(&c, DIR_INGRESS, db, web, TCP, 5432), ("audit", "default-deny", Some("db-audit".into()), None));
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
    assert_eq!(explain(&c, DIR_INGRESS, db, api, TCP, 5432), isolated_by("db-ingress"));
}

#[test]
fn audit_policy_under_default_deny_changes_nothing_enforced() {
    let c = with_endpoints(AUDIT_DB, &settings(true));
    let (db, api) = (id(&c, "app=db"), id(&c, "app=api"));
    assert_eq!(explain(&c, DIR_INGRESS, db, api, TCP, 5432), default_deny());
}

/// `--default-deny audit`: the same isolation as default deny, reported instead of enforced.
fn audit_default() -> CompileSettings {
    CompileSettings { default_deny: DefaultDeny::Audit, failsafe: vec![], ..CompileSettings::default() }
}

#[test]
fn default_deny_audit_reports_what_default_deny_would_drop_and_lets_it_pass() {
    let c = with_endpoints("", &audit_default());
    let (db, web) = (id(&c, "app=db"), id(&c, "app=web"));
    for (direction, local, peer) in [(DIR_INGRESS, db, web), (DIR_EGRESS, web, WORLD), (DIR_INGRESS, HOST, WORLD)] {
        assert_eq!(explain(&c, direction, local, peer, TCP, 5432), ("audit", "default-deny", None, None));
    }
}

#[test]
fn default_deny_audit_lets_enforced_rules_decide_and_names_an_enforcing_isolation() {
    let enforce =
        format!("{DB_POLICY_HEAD}  ingress: [{{from: [{{selector: {{app: web}}}}], ports: [{{port: 80}}]}}]\n");
    let c = with_endpoints(&enforce, &audit_default());
    let (db, web, api) = (id(&c, "app=db"), id(&c, "app=web"), id(&c, "app=api"));
    assert_eq!(explain(&c, DIR_INGRESS, db, web, TCP, 80), allowed_by("db-ingress", 0));
    // The enforce-mode policy isolates db's ingress: what it does not allow is dropped.
    assert_eq!(explain(&c, DIR_INGRESS, db, api, TCP, 80), isolated_by("db-ingress"));
    // Its egress is isolated only by the audit default.
    assert_eq!(explain(&c, DIR_EGRESS, db, api, TCP, 80), ("audit", "default-deny", None, None));
}

#[test]
fn default_deny_audit_with_an_audit_policy_names_the_audit_policy_on_what_it_would_drop() {
    let c = with_endpoints(AUDIT_DB, &audit_default());
    let (db, api, web) = (id(&c, "app=db"), id(&c, "app=api"), id(&c, "app=web"));
    assert_eq!(explain(&c, DIR_INGRESS, db, web, TCP, 5432), ("audit", "default-deny", Some("db-audit".into()), None));
    // The audit policy's allow rule covers api: nothing to report, and nothing enforced.
    assert_eq!(explain(&c, DIR_INGRESS, db, api, TCP, 5432), not_isolated());
}

#[test]
fn default_deny_parses_true_false_and_audit() {
    assert_eq!("audit".parse::<DefaultDeny>(), Ok(DefaultDeny::Audit));
    assert_eq!("true".parse::<DefaultDeny>(), Ok(DefaultDeny::On));
    assert_eq!("false".parse::<DefaultDeny>(), Ok(DefaultDeny::Off));
    assert_eq!("yes".parse::<DefaultDeny>(), Err("\"yes\" is not one of true, false, audit".to_string()));
    assert!(DefaultDeny::Audit.isolates() && !DefaultDeny::Audit.enforces());
}
