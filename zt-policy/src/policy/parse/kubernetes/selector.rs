//! Kubernetes label selectors (matchLabels and matchExpressions) -> [`Selector`]s on the
//! labels pods carry: a podSelector reads the pod's own labels, a namespaceSelector the
//! labels the pod inherited from its namespace (`k8s.ns:<key>`).

use std::collections::BTreeSet;

use zt_api::labels::{K8S_NAMESPACE_LABEL_PREFIX, validate_key, validate_value};

use super::Checker;
use super::schema::LabelSelector;
use crate::policy::error::Problem;
use crate::policy::model::{Expression, Operator, Selector};

/// Whose labels a selector reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Scope {
    Pod,
    Namespace,
}

impl Scope {
    fn key(self, key: &str) -> String {
        match self {
            Scope::Pod => key.to_string(),
            Scope::Namespace => format!("{K8S_NAMESPACE_LABEL_PREFIX}{key}"),
        }
    }
}

/// Adds the requirements of `doc` (at `path`) to `selector`, which then requires both.
pub(super) fn add(check: &mut Checker, path: &str, doc: &LabelSelector, scope: Scope, selector: &mut Selector) {
    let labels = check.labels(&format!("{path}.matchLabels"), doc.match_labels.clone().unwrap_or_default());
    for (key, value) in labels.iter() {
        selector.match_labels.insert(scope.key(key), value);
    }
    for (i, requirement) in doc.match_expressions.iter().flatten().enumerate() {
        let path = format!("{path}.matchExpressions[{i}]");
        if let Err(error) = validate_key(&requirement.key) {
            check.report(format!("{path}.key"), Problem::Label(error));
            continue;
        }
        let operator = match requirement.operator.as_str() {
            "In" => Operator::In,
            "NotIn" => Operator::NotIn,
            "Exists" => Operator::Exists,
            "DoesNotExist" => Operator::DoesNotExist,
            other => {
                check.report(format!("{path}.operator"), Problem::UnknownOperator { value: other.to_string() });
                continue;
            }
        };
        let values: BTreeSet<String> = requirement.values.iter().flatten().cloned().collect();
        let name = operator_name(operator);
        match operator {
            Operator::In | Operator::NotIn if values.is_empty() => {
                check.report(format!("{path}.values"), Problem::OperatorNeedsValues { operator: name });
                continue;
            }
            Operator::Exists | Operator::DoesNotExist if !values.is_empty() => {
                check.report(format!("{path}.values"), Problem::OperatorTakesNoValues { operator: name });
                continue;
            }
            _ => {}
        }
        let bad_value = values.iter().find_map(|value| validate_value(&requirement.key, value).err());
        if let Some(error) = bad_value {
            check.report(format!("{path}.values"), Problem::Label(error));
            continue;
        }
        selector.match_expressions.push(Expression { key: scope.key(&requirement.key), operator, values });
    }
}

fn operator_name(operator: Operator) -> &'static str {
    match operator {
        Operator::In => "In",
        Operator::NotIn => "NotIn",
        Operator::Exists => "Exists",
        Operator::DoesNotExist => "DoesNotExist",
    }
}
