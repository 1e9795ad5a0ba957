//! Kubernetes objects as policy input: `v1 Namespace`, `v1 Pod`,
//! `networking.k8s.io/v1 NetworkPolicy` and `v1 List`, exactly as `kubectl get -o yaml`
//! prints them, translated into the same [`model`](crate::policy::model) the `zt/v1`
//! documents become, so one compiler enforces both.
//!
//! The translation, one file per object kind:
//! - [`namespace`]: a Namespace gives its labels (and always
//!   `kubernetes.io/metadata.name`) to the pods in it;
//! - [`pod`]: a Pod with an IP becomes an [`Endpoint`](crate::policy::model::Endpoint)
//!   whose labels are its own, its namespace's (under `k8s.ns:`) and its namespace and name
//!   (`k8s:namespace`, `k8s:pod`), and whose container ports give named ports their numbers;
//! - [`network_policy`]: a NetworkPolicy becomes a [`Policy`](crate::policy::model::Policy)
//!   named `namespace/name`, its pod and namespace selectors [`selector`]s on those labels;
//! - [`list`]: the items of a List, each read like a document of its own.
//!
//! Pods need every Namespace of the push, which may come later or from another file, so
//! [`Objects`] collects them and [`Objects::finish`] translates pods last.

mod list;
mod namespace;
mod network_policy;
mod pod;
mod schema;
mod selector;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Deserializer};

use super::fields::Checker;
use crate::identity::Labels;
use crate::parallel;
use crate::policy::error::{PolicyError, Problem};
use crate::policy::model::{Origin, PolicySet};
use schema::{ListDoc, NamespaceDoc, NetworkPolicyDoc, PodDoc};

/// The core API group's version, of Namespace, Pod and List.
const CORE_V1: &str = "v1";
/// NetworkPolicy's API group and version.
const NETWORKING_V1: &str = "networking.k8s.io/v1";
/// The namespace of an object whose metadata names none (kubectl's default).
const DEFAULT_NAMESPACE: &str = "default";

/// The Kubernetes kinds a push may contain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(in crate::policy::parse) enum KubeKind {
    Namespace,
    Pod,
    NetworkPolicy,
    List,
}

impl KubeKind {
    /// The kind of an `apiVersion`/`kind` pair; `None` for anything else.
    fn of(api_version: &str, kind: &str) -> Option<Self> {
        match (api_version, kind) {
            (CORE_V1, "Namespace") => Some(KubeKind::Namespace),
            (CORE_V1, "Pod") => Some(KubeKind::Pod),
            (CORE_V1, "List") => Some(KubeKind::List),
            (NETWORKING_V1, "NetworkPolicy") => Some(KubeKind::NetworkPolicy),
            _ => None,
        }
    }

    /// Classifies a document header: `None` when `api_version` is not a Kubernetes API this
    /// agent reads, `Some(Err)` for a Kubernetes kind it does not read.
    pub(in crate::policy::parse) fn classify(api_version: &str, kind: &str) -> Option<Result<Self, Problem>> {
        if api_version != CORE_V1 && api_version != NETWORKING_V1 {
            return None;
        }
        Some(Self::of(api_version, kind).ok_or_else(|| unknown_kind(api_version, kind)))
    }
}

fn unknown_kind(api_version: &str, kind: &str) -> Problem {
    Problem::UnknownKubernetesKind { api_version: api_version.to_string(), kind: kind.to_string() }
}

/// One Kubernetes document, typed by its kind.
pub enum Object {
    Namespace(NamespaceDoc),
    Pod(PodDoc),
    NetworkPolicy(NetworkPolicyDoc),
    List(ListDoc),
}

impl Object {
    /// Deserializes a document of a known kind (unknown fields are ignored).
    pub(in crate::policy::parse) fn deserialize<'de, D: Deserializer<'de>>(
        kind: KubeKind,
        deserializer: D,
    ) -> Result<Self, D::Error> {
        Ok(match kind {
            KubeKind::Namespace => Object::Namespace(NamespaceDoc::deserialize(deserializer)?),
            KubeKind::Pod => Object::Pod(PodDoc::deserialize(deserializer)?),
            KubeKind::NetworkPolicy => Object::NetworkPolicy(NetworkPolicyDoc::deserialize(deserializer)?),
            KubeKind::List => Object::List(ListDoc::deserialize(deserializer)?),
        })
    }
}

/// A pod waiting for the push's namespaces: where it came from and its field path prefix
/// (`items[3].` inside a List).
#[derive(Clone)]
struct PendingPod {
    origin: Origin,
    prefix: String,
    doc: PodDoc,
}

/// Fewer pods than this per thread are translated on the calling thread.
const PODS_PER_THREAD: usize = 512;

/// The Kubernetes objects of one push, collected across all its sources.
#[derive(Clone, Default)]
pub(in crate::policy::parse) struct Objects {
    /// Namespace name -> its labels and where it was given.
    namespaces: BTreeMap<String, (Labels, Origin)>,
    pods: Vec<PendingPod>,
}

impl Objects {
    /// Takes one document: NetworkPolicies are translated at once, namespaces and pods kept
    /// for [`Self::finish`].
    pub(in crate::policy::parse) fn add(
        &mut self,
        origin: &Origin,
        object: Object,
        set: &mut PolicySet,
        errors: &mut Vec<PolicyError>,
    ) {
        self.add_at(origin, "", object, set, errors);
    }

    fn add_at(
        &mut self,
        origin: &Origin,
        prefix: &str,
        object: Object,
        set: &mut PolicySet,
        errors: &mut Vec<PolicyError>,
    ) {
        let mut check = Checker { origin, errors };
        match object {
            Object::Namespace(doc) => namespace::add(&mut check, prefix, doc, &mut self.namespaces),
            Object::Pod(doc) => self.pods.push(PendingPod { origin: origin.clone(), prefix: prefix.to_string(), doc }),
            Object::NetworkPolicy(doc) => {
                if let Some(policy) = network_policy::translate(&mut check, prefix, doc) {
                    set.policies.push(Arc::new(policy));
                }
            }
            Object::List(doc) => {
                for (index, item) in doc.items.unwrap_or_default().into_iter().enumerate() {
                    let mut check = Checker { origin, errors };
                    if let Some((path, object)) = list::item(&mut check, index, item) {
                        self.add_at(origin, &path, object, set, errors);
                    }
                }
            }
        }
    }

    /// Takes what `other` (the objects of one earlier source, read on their own) collected,
    /// as if its documents had been added here. `false`, taking nothing, when one of its
    /// namespaces is already here: [`Self::add`] would have reported that, so the caller
    /// must read the push again to report it.
    pub(in crate::policy::parse) fn absorb(&mut self, other: Objects) -> bool {
        if other.namespaces.keys().any(|name| self.namespaces.contains_key(name)) {
            return false;
        }
        self.namespaces.extend(other.namespaces);
        self.pods.extend(other.pods);
        true
    }

    /// Translates the pods, now that every namespace of the push is known.
    /// Pods translate on their own (given the namespaces), so a cluster's thousands are
    /// spread over the cores and taken back in order.
    pub(in crate::policy::parse) fn finish(self, set: &mut PolicySet, errors: &mut Vec<PolicyError>) {
        let namespaces = &self.namespaces;
        let pieces = parallel::owned_chunks(self.pods, PODS_PER_THREAD, |pods| {
            let (mut endpoints, mut errors) = (Vec::with_capacity(pods.len()), Vec::new());
            for pending in pods {
                let mut check = Checker { origin: &pending.origin, errors: &mut errors };
                if let Some(endpoint) = pod::translate(&mut check, &pending.prefix, pending.doc, namespaces) {
                    endpoints.push(Arc::new(endpoint));
                }
            }
            (endpoints, errors)
        });
        for (endpoints, piece_errors) in pieces {
            set.endpoints.extend(endpoints);
            errors.extend(piece_errors);
        }
    }
}

/// `metadata.name` (required) and `metadata.namespace` (default `default`) of a namespaced
/// object, both checked; `None` if either is bad.
fn namespaced_name(check: &mut Checker, prefix: &str, metadata: &schema::ObjectMeta) -> Option<(String, String)> {
    let name = object_name(check, prefix, metadata)?;
    let namespace = metadata.namespace.clone().unwrap_or_else(|| DEFAULT_NAMESPACE.to_string());
    let errors_before = check.errors.len();
    check.name(&format!("{prefix}metadata.namespace"), &namespace);
    (check.errors.len() == errors_before).then_some((namespace, name))
}

/// `metadata.name`, required and checked.
fn object_name(check: &mut Checker, prefix: &str, metadata: &schema::ObjectMeta) -> Option<String> {
    let path = format!("{prefix}metadata.name");
    let Some(name) = &metadata.name else {
        check.report(path, Problem::MissingName);
        return None;
    };
    let errors_before = check.errors.len();
    check.name(&path, name);
    (check.errors.len() == errors_before).then(|| name.clone())
}
