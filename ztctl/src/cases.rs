//! The cases file of `ztctl policy test`: a YAML list of flows with the verdict each must
//! get, e.g.
//!
//! ```yaml
//! - {name: api-to-db, from: 198.18.0.11, to: 198.18.0.10, proto: tcp, port: 5432, expect: allowed}
//! - {from: 203.0.113.9, to: 198.18.0.10, proto: icmp, expect: denied, reason: default-deny}
//! ```
//!
//! Fields: `from`, `to`, `proto` (tcp, udp, sctp, icmp, icmpv6), `port` (TCP, UDP and SCTP
//! only), optional `direction` (ingress, egress; the default is explain's), `expect`
//! (allowed, denied, audit), optional `reason`, `policy` and `rule`, and an optional `name`.
//! Every problem of the file is reported at once, one sentence naming file, case and field.

use std::net::IpAddr;

use serde_norway::Value;
use zt_api::protocol::ExplainQuery;
use zt_common::reason::{reason_name, verdict_name};

const FIELDS: [&str; 10] = ["name", "from", "to", "proto", "port", "direction", "expect", "reason", "policy", "rule"];

/// One flow and what it must get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Case {
    /// 1-based position in the file.
    pub index: usize,
    pub name: Option<String>,
    pub query: ExplainQuery,
    pub expect: Expect,
}

/// The verdict a case expects, and optionally its reason and deciding policy and rule.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Expect {
    pub verdict: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<u32>,
}

impl Case {
    /// `3 (api-to-db)` or `3`: how messages and the mismatch table name the case.
    pub fn label(&self) -> String {
        label(self.index, self.name.as_deref())
    }

    /// How a sentence about this case starts: `cases t.yaml, case 3 (api-to-db)`.
    pub fn location(&self, file: &str) -> String {
        format!("cases {file}, case {}", self.label())
    }
}

/// `3 (api-to-db)` or `3`.
pub fn label(index: usize, name: Option<&str>) -> String {
    match name {
        Some(name) => format!("{index} ({name})"),
        None => index.to_string(),
    }
}

/// The reason names the flow log and explain use.
fn reasons() -> Vec<&'static str> {
    (0..=u8::MAX).map(reason_name).filter(|n| *n != "unknown").collect()
}

fn verdicts() -> Vec<&'static str> {
    (0..=u8::MAX).map(verdict_name).filter(|n| *n != "unknown").collect()
}

/// Parses the text of a cases file named `file`; returns every problem, one sentence each.
pub fn parse(file: &str, text: &str) -> Result<Vec<Case>, Vec<String>> {
    let value: Value = serde_norway::from_str(text).map_err(|e| {
        vec![format!("cases {file}: invalid YAML: {e}; write a list of cases, e.g. - {{from: 198.18.0.1, to: 198.18.0.2, proto: tcp, port: 80, expect: allowed}}")]
    })?;
    let Value::Sequence(items) = value else {
        return Err(vec![format!(
            "cases {file}: the file is not a YAML list; write one `- {{from: ..., to: ..., proto: ..., expect: ...}}` per case"
        )]);
    };
    if items.is_empty() {
        return Err(vec![format!("cases {file}: the list is empty; add at least one case")]);
    }
    let mut cases = Vec::new();
    let mut errors = Vec::new();
    for (i, item) in items.iter().enumerate() {
        match case(i + 1, item) {
            Ok(case) => cases.push(case),
            Err((label, problems)) => {
                errors.extend(problems.into_iter().map(|p| format!("cases {file}, case {label}: {p}")));
            }
        }
    }
    if errors.is_empty() { Ok(cases) } else { Err(errors) }
}

/// One case, or its label and every problem with it.
fn case(index: usize, item: &Value) -> Result<Case, (String, Vec<String>)> {
    let Value::Mapping(map) = item else {
        return Err((
            index.to_string(),
            vec!["is not a mapping; write {from: ..., to: ..., proto: ..., expect: ...}".into()],
        ));
    };
    let mut problems = Vec::new();
    let field = |key: &str| map.get(key);
    let name = field("name").map(scalar);
    let label = label(index, name.as_deref());
    for key in map.keys() {
        let key = scalar(key);
        if !FIELDS.contains(&key.as_str()) {
            problems.push(format!("field {key} is unknown; use {}", FIELDS.join(", ")));
        }
    }
    let mut address = |key: &str| match field(key).map(scalar) {
        None => {
            problems.push(format!("{key} is missing; add {key}: IP, e.g. {key}: 198.18.0.1"));
            None
        }
        Some(text) => text
            .parse::<IpAddr>()
            .map_err(|_| {
                problems.push(format!("{key} {text:?} is not an IP address; write e.g. 198.18.0.1 or fd00::1"));
            })
            .ok(),
    };
    let from = address("from");
    let to = address("to");
    let protocol = match field("proto").map(scalar) {
        Some(p) => Some(p),
        None => {
            problems.push("proto is missing; add proto: tcp, udp, sctp, icmp or icmpv6".into());
            None
        }
    };
    let port = match field("port") {
        None => None,
        Some(v) => match v.as_u64().and_then(|p| u16::try_from(p).ok()) {
            Some(p) => Some(p),
            None => {
                problems.push(format!("port {} is not a port number; use 0-65535", scalar(v)));
                None
            }
        },
    };
    let direction = field("direction").map(scalar);
    let verdict = match field("expect").map(scalar) {
        None => {
            problems.push(format!("expect is missing; add expect: {}", verdicts().join(", expect: ")));
            None
        }
        Some(v) if verdicts().contains(&v.as_str()) => Some(v),
        Some(v) => {
            problems.push(format!("expect {v} is not a verdict; use {}", verdicts().join(", ")));
            None
        }
    };
    let reason = match field("reason").map(scalar) {
        Some(r) if !reasons().contains(&r.as_str()) => {
            problems.push(format!("reason {r} is not a reason zt reports; use one of {}", reasons().join(", ")));
            None
        }
        other => other,
    };
    let policy = field("policy").map(scalar);
    let rule = match field("rule") {
        None => None,
        Some(v) => match v.as_u64().and_then(|r| u32::try_from(r).ok()) {
            Some(r) => Some(r),
            None => {
                problems
                    .push(format!("rule {} is not a rule number; use the rule's index, 0 for the first", scalar(v)));
                None
            }
        },
    };
    match (from, to, protocol, verdict) {
        (Some(from), Some(to), Some(protocol), Some(verdict)) if problems.is_empty() => Ok(Case {
            index,
            name,
            query: ExplainQuery { from, to, protocol, port, direction },
            expect: Expect { verdict, reason, policy, rule },
        }),
        _ => Err((label, problems)),
    }
}

/// A scalar as text (`80`, `tcp`); anything else as its YAML.
fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => "null".into(),
        other => serde_norway::to_string(other).unwrap_or_default().trim().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_case_reads_every_field() {
        let text = "- {name: api-to-db, from: 198.18.0.11, to: 198.18.0.10, proto: tcp, port: 5432, direction: egress, expect: denied, reason: deny-rule, policy: db, rule: 1}\n- {from: 'fd00::1', to: 'fd00::2', proto: icmpv6, expect: allowed}\n";
        let cases = parse("t.yaml", text).unwrap();
        assert_eq!(cases.len(), 2);
        let c = &cases[0];
        assert_eq!((c.index, c.name.as_deref(), c.label()), (1, Some("api-to-db"), "1 (api-to-db)".to_string()));
        assert_eq!(c.query.from, "198.18.0.11".parse::<IpAddr>().unwrap());
        assert_eq!(
            (c.query.protocol.as_str(), c.query.port, c.query.direction.as_deref()),
            ("tcp", Some(5432), Some("egress"))
        );
        assert_eq!(
            c.expect,
            Expect {
                verdict: "denied".into(),
                reason: Some("deny-rule".into()),
                policy: Some("db".into()),
                rule: Some(1)
            }
        );
        assert_eq!(
            (cases[1].query.port, cases[1].query.direction.as_deref(), cases[1].expect.reason.as_deref()),
            (None, None, None)
        );
    }

    #[test]
    fn every_problem_names_file_case_and_field() {
        let text = "- {from: 198.18.0.1, to: 198.18.0.2, proto: tcp, port: 80, expect: allowed}\n- {from: 198.18.0.x, to: 198.18.0.2, proto: tcp, port: 70000, expect: maybe}\n- {name: x, to: 198.18.0.2, proto: udp, port: 53, expect: denied, reason: because, colour: red}\n";
        let errors = parse("t.yaml", text).unwrap_err();
        assert_eq!(
            errors,
            [
                "cases t.yaml, case 2: from \"198.18.0.x\" is not an IP address; write e.g. 198.18.0.1 or fd00::1",
                "cases t.yaml, case 2: port 70000 is not a port number; use 0-65535",
                "cases t.yaml, case 2: expect maybe is not a verdict; use allowed, denied, audit",
                "cases t.yaml, case 3 (x): field colour is unknown; use name, from, to, proto, port, direction, expect, reason, policy, rule",
                "cases t.yaml, case 3 (x): from is missing; add from: IP, e.g. from: 198.18.0.1",
                "cases t.yaml, case 3 (x): reason because is not a reason zt reports; use one of policy, established, related, failsafe, not-isolated, non-ip, default-deny, deny-rule, malformed, fragment, fragment-unknown, quarantine, rate-limit, no-policy, neighbor-discovery",
            ]
        );
    }

    #[test]
    fn a_file_that_is_not_a_list_says_how_to_write_one() {
        assert!(
            parse("t.yaml", "from: 198.18.0.1\n").unwrap_err()[0]
                .starts_with("cases t.yaml: the file is not a YAML list")
        );
        assert_eq!(parse("t.yaml", "[]").unwrap_err(), ["cases t.yaml: the list is empty; add at least one case"]);
        assert!(parse("t.yaml", "- [").unwrap_err()[0].starts_with("cases t.yaml: invalid YAML: "));
        assert!(parse("t.yaml", "- 3\n").unwrap_err()[0].starts_with("cases t.yaml, case 1: is not a mapping"));
    }
}
