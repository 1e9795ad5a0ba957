//! `rateLimit` on ingress rules: parsing, every error by its exact text, and how the
//! compiler numbers the limits and stamps them into the values the limited rule decides.

use zt_common::ratelimit::RateLimit as KernelLimit;

use super::*;
use crate::policy::model::RateLimit;

/// db's ingress policy with one rule: `rule` is the rule's YAML mapping body (flow style).
fn db_policy(rules: &str) -> String {
    format!("{DB_POLICY_HEAD}  ingress: [{rules}]\n")
}

fn rule_limit(yaml: &str) -> Option<RateLimit> {
    let set = parse(&[("p.yaml", yaml)]).unwrap_or_else(|errors| panic!("{errors:#?}"));
    set.policies[0].ingress.as_ref().unwrap()[0].rate_limit
}

#[test]
fn rate_limit_is_parsed_with_its_burst() {
    let yaml = db_policy("{ports: [{port: 443}], rateLimit: {newFlowsPerSecond: 50, burst: 200}}");
    assert_eq!(rule_limit(&yaml), Some(RateLimit { new_flows_per_second: 50, burst: 200 }));
}

#[test]
fn burst_defaults_to_the_rate() {
    let yaml = db_policy("{rateLimit: {newFlowsPerSecond: 7}}");
    assert_eq!(rule_limit(&yaml), Some(RateLimit { new_flows_per_second: 7, burst: 7 }));
}

#[test]
fn rate_limit_on_an_egress_rule_is_rejected() {
    let yaml =
        format!("{DB_POLICY_HEAD}  egress: [{{to: [{{entity: world}}], rateLimit: {{newFlowsPerSecond: 5}}}}]\n");
    assert_eq!(
        error_of("p.yaml", &yaml),
        "policy p.yaml, document 1: spec.egress[0].rateLimit is only allowed on ingress rules, where it limits \
         the new flows each source address opens; remove it, or put the limit on the ingress rule of the policy \
         that selects the destination"
    );
}

#[test]
fn rate_limit_on_a_deny_rule_is_rejected() {
    let yaml = db_policy("{action: deny, rateLimit: {newFlowsPerSecond: 5}}");
    assert_eq!(
        error_of("p.yaml", &yaml),
        "policy p.yaml, document 1: spec.ingress[0].rateLimit is only allowed on allow rules: a deny rule admits \
         no flows to limit; remove it or make the rule an allow rule"
    );
}

#[test]
fn rate_limit_without_a_rate_is_rejected() {
    assert_eq!(
        error_of("p.yaml", &db_policy("{rateLimit: {burst: 5}}")),
        "policy p.yaml, document 1: spec.ingress[0].rateLimit.newFlowsPerSecond is missing; give the new flows \
         per second each source may open, e.g. newFlowsPerSecond: 100"
    );
}

#[test]
fn rate_and_burst_out_of_range_are_rejected_field_by_field() {
    let errors = errors_of(&[("p.yaml", &db_policy("{rateLimit: {newFlowsPerSecond: 0, burst: 2000000}}"))]);
    assert_eq!(
        errors,
        [
            "policy p.yaml, document 1: spec.ingress[0].rateLimit.newFlowsPerSecond 0 is out of range 1-1000000",
            "policy p.yaml, document 1: spec.ingress[0].rateLimit.burst 2000000 is out of range 1-1000000",
        ]
    );
    let negative = error_of("p.yaml", &db_policy("{rateLimit: {newFlowsPerSecond: -3}}"));
    assert_eq!(
        negative,
        "policy p.yaml, document 1: spec.ingress[0].rateLimit.newFlowsPerSecond -3 is out of range 1-1000000"
    );
}

#[test]
fn unknown_rate_limit_field_is_rejected_by_the_schema() {
    let error = error_of("p.yaml", &db_policy("{rateLimit: {newFlowsPerMinute: 5}}"));
    assert!(error.contains("spec.ingress[0].rateLimit: unknown field `newFlowsPerMinute`"), "{error}");
}

#[test]
fn the_limited_rule_stamps_its_index_into_the_values_it_decides() {
    let policies = db_policy(
        "{from: [{selector: {app: api}}], ports: [{port: 5432}], rateLimit: {newFlowsPerSecond: 10, burst: 20}}, \
         {from: [{selector: {app: web}}], ports: [{port: 5432}]}, \
         {ports: [{port: 443}], rateLimit: {newFlowsPerSecond: 3}}",
    );
    let c = with_endpoints(&policies, &settings(false));
    assert_eq!(c.rate_limits, [KernelLimit::new(10, 20), KernelLimit::new(3, 3)]);
    let (db, api, web) = (id(&c, "app=db"), id(&c, "app=api"), id(&c, "app=web"));
    let limit = |peer, port| c.lookup(DIR_INGRESS, db, peer, TCP, port).unwrap().rate_limit;
    assert_eq!(limit(api, 5432), 1);
    assert_eq!(limit(web, 5432), 0, "rule 1 decides for web: no limit");
    assert_eq!(limit(web, 443), 2);
    assert_eq!(limit(api, 443), 2);
    assert_eq!(limit(api, 22), 0, "default-deny is not limited");
}

#[test]
fn a_deny_that_wins_over_a_limited_allow_carries_no_limit() {
    let policies = db_policy(
        "{ports: [{port: 5432}], rateLimit: {newFlowsPerSecond: 10}}, \
         {action: deny, from: [{selector: {app: web}}], ports: [{port: 5432}]}",
    );
    let c = with_endpoints(&policies, &settings(false));
    let (db, web, api) = (id(&c, "app=db"), id(&c, "app=web"), id(&c, "app=api"));
    let web_value = c.lookup(DIR_INGRESS, db, web, TCP, 5432).unwrap();
    assert_eq!((web_value.verdict, web_value.rate_limit), (reason::VERDICT_DENIED, 0));
    assert_eq!(c.lookup(DIR_INGRESS, db, api, TCP, 5432).unwrap().rate_limit, 1);
}

#[test]
fn an_audit_mode_limit_is_not_compiled_and_is_warned_about() {
    let policies = "apiVersion: zt/v1\nkind: Policy\nmetadata: {name: db-audit}\nspec:\n  selector: {app: db}\n  \
                    mode: audit\n  ingress: [{rateLimit: {newFlowsPerSecond: 5}}]\n";
    let c = with_endpoints(policies, &settings(false));
    assert!(c.rate_limits.is_empty());
    assert!(c.warnings.iter().any(|w| w.contains("spec.ingress[0].rateLimit has no effect")), "{:?}", c.warnings);
}

#[test]
fn too_many_limited_rules_are_rejected() {
    let rules: Vec<String> = (0..=compile::MAX_RATE_LIMITS)
        .map(|i| format!("{{ports: [{{port: {}}}], rateLimit: {{newFlowsPerSecond: 5}}}}", 1000 + i))
        .collect();
    let set = parse(&[("p.yaml", &format!("{ENDPOINTS}---\n{}", db_policy(&rules.join(", "))))]).unwrap();
    let error = compile(&set, &settings(false), &mut IdentityAllocator::new()).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "the policy has {} rate-limited rules but one generation may have at most {}; give rules that share a \
             limit one rule with several peers or ports",
            compile::MAX_RATE_LIMITS + 1,
            compile::MAX_RATE_LIMITS
        )
    );
}
