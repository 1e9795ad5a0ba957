//! Per-policy, per-rule hit counters, derived from flow records: every record that reports
//! a decision — the start of an allowed flow, a denied or an audited packet — counts one hit
//! for the policy and rule that made it. The sink stage feeds every record it receives, so
//! the counters see exactly what the flow log sees (deny/audit records are subject to the
//! kernel's per-source budget, which `zt_flow_events_lost_total` accounts for).

use std::{collections::BTreeMap, sync::Mutex};

use super::FlowRecord;

/// (policy name, rule index, verdict) -> hits.
pub type HitKey = (String, u32, String);

#[derive(Debug, Default)]
pub struct RuleHits {
    hits: Mutex<BTreeMap<HitKey, u64>>,
}

/// Records that carry a decision (not the update or end of a flow decided earlier).
fn is_decision(event: &str) -> bool {
    matches!(event, "start" | "deny" | "audit")
}

impl RuleHits {
    /// Counts `record` if a policy rule decided it.
    pub fn observe(&self, record: &FlowRecord) {
        let (Some(policy), Some(rule)) = (&record.policy, record.rule) else { return };
        if !is_decision(&record.event) {
            return;
        }
        let key = (policy.clone(), rule, record.verdict.clone());
        *self.hits.lock().expect("rule hits lock").entry(key).or_default() += 1;
    }

    /// Every counter, ordered by policy, rule and verdict.
    pub fn snapshot(&self) -> Vec<(HitKey, u64)> {
        self.hits.lock().expect("rule hits lock").iter().map(|(k, v)| (k.clone(), *v)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(event: &str, verdict: &str, policy: Option<&str>, rule: Option<u32>) -> FlowRecord {
        FlowRecord {
            time: String::new(),
            verdict: verdict.into(),
            reason: String::new(),
            event: event.into(),
            direction: "ingress".into(),
            iface: None,
            protocol: "TCP".into(),
            src_ip: None,
            src_port: None,
            dst_ip: None,
            dst_port: None,
            src_identity: 0,
            dst_identity: 0,
            src_labels: Default::default(),
            dst_labels: Default::default(),
            policy: policy.map(str::to_string),
            rule,
            packets: 1,
            bytes: 60,
            reply_packets: 0,
            reply_bytes: 0,
            generation: 1,
        }
    }

    #[test]
    fn starts_denies_and_audits_count_once_per_policy_rule_and_verdict() {
        let hits = RuleHits::default();
        hits.observe(&record("start", "allowed", Some("web"), Some(0)));
        hits.observe(&record("start", "allowed", Some("web"), Some(0)));
        hits.observe(&record("deny", "denied", Some("web"), Some(1)));
        hits.observe(&record("audit", "audit", Some("trial"), Some(0)));
        assert_eq!(
            hits.snapshot(),
            [
                (("trial".into(), 0, "audit".into()), 1),
                (("web".into(), 0, "allowed".into()), 2),
                (("web".into(), 1, "denied".into()), 1),
            ]
        );
    }

    #[test]
    fn updates_ends_and_records_without_a_rule_are_not_hits() {
        let hits = RuleHits::default();
        hits.observe(&record("update", "allowed", Some("web"), Some(0)));
        hits.observe(&record("end", "allowed", Some("web"), Some(0)));
        hits.observe(&record("deny", "denied", None, None));
        assert!(hits.snapshot().is_empty());
    }
}
