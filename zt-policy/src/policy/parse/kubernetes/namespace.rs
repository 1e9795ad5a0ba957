//! `v1 Namespace`: the labels a namespace gives the pods in it, which namespaceSelectors
//! match. Every namespace has `kubernetes.io/metadata.name` (set by the API server), also
//! one the push gives no Namespace object for.

use std::collections::BTreeMap;

use zt_api::labels::K8S_NAMESPACE_LABEL_PREFIX;

use super::schema::NamespaceDoc;
use super::{Checker, object_name};
use crate::identity::Labels;
use crate::policy::error::Problem;
use crate::policy::model::Origin;

/// The label every namespace carries with its own name as the value.
pub const METADATA_NAME: &str = "kubernetes.io/metadata.name";

/// Records one Namespace's labels; a second Namespace of the same name is an error.
pub(super) fn add(
    check: &mut Checker,
    prefix: &str,
    doc: NamespaceDoc,
    namespaces: &mut BTreeMap<String, (Labels, Origin)>,
) {
    let Some(name) = object_name(check, prefix, &doc.metadata) else {
        return;
    };
    let labels = check.labels(&format!("{prefix}metadata.labels"), doc.metadata.labels.unwrap_or_default());
    if let Some((_, first)) = namespaces.get(&name) {
        let problem = Problem::DuplicateName { kind: "Namespace", name, first: first.location() };
        check.report(format!("{prefix}metadata.name"), problem);
        return;
    }
    namespaces.insert(name, (labels, check.origin.clone()));
}

/// The labels a pod in `namespace` inherits, keyed `k8s.ns:<label>`: the Namespace's
/// labels, and `kubernetes.io/metadata.name` whatever they say (the API server sets it).
pub(super) fn inherited(namespace: &str, namespaces: &BTreeMap<String, (Labels, Origin)>) -> Labels {
    let mut labels = Labels::new();
    if let Some((given, _)) = namespaces.get(namespace) {
        for (key, value) in given.iter() {
            labels.insert(format!("{K8S_NAMESPACE_LABEL_PREFIX}{key}"), value);
        }
    }
    labels.insert(format!("{K8S_NAMESPACE_LABEL_PREFIX}{METADATA_NAME}"), namespace);
    labels
}
