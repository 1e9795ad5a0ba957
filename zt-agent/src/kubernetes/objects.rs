//! The cluster as the watchers last saw it: every watched object, trimmed to the fields
//! policy reads, kept as the JSON text of a document the policy parser takes unchanged
//! (JSON is YAML). [`Cluster::sources`] turns the set into the `(name, text)` sources of a
//! push, one per object, named `kubernetes:<resource>/<namespace>/<name>` so an error names
//! the object and the agent can tell them from the operator's own sources.
//!
//! Trimming matters at scale: a Pod as the API server sends it is several KiB (managed
//! fields, conditions, volumes); what policy reads of it is a few hundred bytes.

use std::{collections::BTreeMap, sync::Mutex, time::Instant};

use serde_json::{Map, Value, json};
use tokio::sync::Notify;

/// The prefix of every source the watchers make; `crate::agent` keeps the others.
use crate::agent::CLUSTER_SOURCE_PREFIX;

/// What the agent watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Resource {
    Namespaces,
    Pods,
    NetworkPolicies,
    /// The `zt/v1` Policy as a custom resource (`policies.zt.dev`, cluster-scoped).
    Policies,
}

/// The API group of the Policy custom resource.
pub const POLICY_GROUP: &str = "zt.dev";

impl Resource {
    pub const ALL: [Resource; 4] =
        [Resource::Namespaces, Resource::Pods, Resource::NetworkPolicies, Resource::Policies];

    /// The collection's path on the API server (all namespaces).
    pub fn path(self) -> &'static str {
        match self {
            Resource::Namespaces => "/api/v1/namespaces",
            Resource::Pods => "/api/v1/pods",
            Resource::NetworkPolicies => "/apis/networking.k8s.io/v1/networkpolicies",
            Resource::Policies => "/apis/zt.dev/v1/policies",
        }
    }

    /// The plural name, as in the path and the source names.
    pub fn name(self) -> &'static str {
        self.path().rsplit('/').next().expect("a path has a last segment")
    }

    fn index(self) -> usize {
        self as usize
    }

    /// The object trimmed to what policy reads, as a document of the policy parser, with
    /// its key (`namespace/name`, or `name` for cluster-scoped objects); `None` for an
    /// object without a name.
    pub fn document(self, object: &Value) -> Option<(String, String)> {
        let meta = object.get("metadata")?;
        let name = meta.get("name")?.as_str()?;
        let namespace = meta.get("namespace").and_then(Value::as_str);
        let key = match namespace {
            Some(ns) if self != Resource::Namespaces && self != Resource::Policies => format!("{ns}/{name}"),
            _ => name.to_string(),
        };
        let labels = meta.get("labels").cloned().unwrap_or(Value::Null);
        let doc = match self {
            Resource::Namespaces => json!({
                "apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": name, "labels": labels},
            }),
            Resource::Pods => {
                let spec = object.get("spec");
                let ports_of = |field: &str| -> Value {
                    let containers = spec.and_then(|s| s.get(field)).and_then(Value::as_array);
                    Value::Array(
                        containers
                            .map(|cs| {
                                cs.iter()
                                    .map(|c| json!({"ports": c.get("ports").cloned().unwrap_or(Value::Null)}))
                                    .collect()
                            })
                            .unwrap_or_default(),
                    )
                };
                let status = object.get("status");
                let pick = |field: &str| status.and_then(|s| s.get(field)).cloned().unwrap_or(Value::Null);
                json!({
                    "apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": name, "namespace": namespace, "labels": labels},
                    "spec": {
                        "hostNetwork": spec.and_then(|s| s.get("hostNetwork")).cloned().unwrap_or(Value::Null),
                        "containers": ports_of("containers"),
                        "initContainers": ports_of("initContainers"),
                    },
                    "status": {"phase": pick("phase"), "podIP": pick("podIP"), "podIPs": pick("podIPs")},
                })
            }
            Resource::NetworkPolicies => json!({
                "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                "metadata": {"name": name, "namespace": namespace},
                "spec": object.get("spec").cloned().unwrap_or_else(|| Value::Object(Map::new())),
            }),
            Resource::Policies => json!({
                "apiVersion": "zt/v1", "kind": "Policy",
                "metadata": {"name": name},
                "spec": object.get("spec").cloned().unwrap_or(Value::Null),
            }),
        };
        Some((key, without_nulls(doc).to_string()))
    }
}

/// Drops `null` members, so a trimmed document has only the fields the object had.
fn without_nulls(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            Value::Object(map.into_iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k, without_nulls(v))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(without_nulls).collect()),
        other => other,
    }
}

/// The objects of every resource, and when the first change not yet pushed arrived.
#[derive(Default)]
struct Objects {
    by_resource: [BTreeMap<String, String>; 4],
    /// When the oldest change not yet taken by [`Cluster::take`] arrived.
    dirty_since: Option<Instant>,
    /// Which resources have been listed at least once.
    listed: [bool; 4],
}

/// The watched cluster, shared by the watchers (writers) and the push loop (reader).
#[derive(Default)]
pub struct Cluster {
    objects: Mutex<Objects>,
    /// Woken on every change; holds one permit, so a change made while the push loop is
    /// busy is not lost.
    pub changed: Notify,
}

impl Cluster {
    fn edit(&self, f: impl FnOnce(&mut Objects) -> bool) {
        let mut o = self.objects.lock().expect("cluster objects");
        if f(&mut o) {
            o.dirty_since.get_or_insert_with(Instant::now);
            drop(o);
            self.changed.notify_one();
        }
    }

    /// A list result: `objects` become the resource's complete set.
    pub fn replace(&self, resource: Resource, objects: BTreeMap<String, String>) {
        self.edit(|o| {
            o.listed[resource.index()] = true;
            let set = &mut o.by_resource[resource.index()];
            let changed = *set != objects;
            *set = objects;
            changed
        });
    }

    /// An ADDED or MODIFIED event.
    pub fn upsert(&self, resource: Resource, key: String, text: String) {
        self.edit(|o| o.by_resource[resource.index()].insert(key, text.clone()).as_ref() != Some(&text));
    }

    /// A DELETED event.
    pub fn remove(&self, resource: Resource, key: &str) {
        self.edit(|o| o.by_resource[resource.index()].remove(key).is_some());
    }

    /// Whether every resource has been listed once.
    pub fn synced(&self) -> bool {
        self.objects.lock().expect("cluster objects").listed.iter().all(|l| *l)
    }

    /// How many objects of `resource` are known.
    pub fn len(&self, resource: Resource) -> usize {
        self.objects.lock().expect("cluster objects").by_resource[resource.index()].len()
    }

    /// "N namespaces, N pods, N networkpolicies, N policies".
    pub fn summary(&self) -> String {
        let o = self.objects.lock().expect("cluster objects");
        Resource::ALL.map(|r| format!("{} {}", o.by_resource[r.index()].len(), r.name())).join(", ")
    }

    /// The current objects as push sources, and when the oldest change among them arrived
    /// (`None`: nothing changed since the last take).
    pub fn take(&self) -> (Vec<(String, String)>, Option<Instant>) {
        let mut o = self.objects.lock().expect("cluster objects");
        let since = o.dirty_since.take();
        let mut sources = Vec::with_capacity(o.by_resource.iter().map(BTreeMap::len).sum());
        for resource in Resource::ALL {
            for (key, text) in &o.by_resource[resource.index()] {
                sources.push((format!("{CLUSTER_SOURCE_PREFIX}{}/{key}", resource.name()), text.clone()));
            }
        }
        (sources, since)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pod_is_trimmed_to_what_policy_reads_and_parses_as_a_pod() {
        let pod = json!({
            "metadata": {"name": "a", "namespace": "x", "labels": {"app": "web"}, "uid": "u", "managedFields": [{}]},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "i", "ports": [{"name": "http", "containerPort": 80}]}]},
            "status": {"phase": "Running", "podIP": "198.18.1.2", "podIPs": [{"ip": "198.18.1.2"}], "conditions": []},
        });
        let (key, text) = Resource::Pods.document(&pod).unwrap();
        assert_eq!(key, "x/a");
        assert!(!text.contains("managedFields") && !text.contains("image") && !text.contains("nodeName"), "{text}");
        let parsed = crate::policy::parse(&[("kubernetes:pods/x/a", text)]);
        assert!(parsed.is_ok(), "{parsed:?}");
    }

    #[test]
    fn a_policy_resource_becomes_a_zt_v1_policy() {
        let obj = json!({
            "apiVersion": "zt.dev/v1", "kind": "Policy",
            "metadata": {"name": "web", "resourceVersion": "7", "generation": 2},
            "spec": {"selector": {"app": "web"}, "ingress": [{"from": [{"entity": "world"}], "ports": [{"protocol": "TCP", "port": 80}]}]},
        });
        let (key, text) = Resource::Policies.document(&obj).unwrap();
        assert_eq!(key, "web");
        let parsed = crate::policy::parse(&[("kubernetes:policies/web", text)]);
        assert!(parsed.is_ok(), "{parsed:?}");
    }

    #[test]
    fn the_shipped_example_policy_resource_is_a_valid_zt_policy() {
        let obj: Value =
            serde_norway::from_str(include_str!("../../../deploy/kubernetes/policy-example.yaml")).unwrap();
        assert_eq!(obj["apiVersion"], json!(format!("{POLICY_GROUP}/v1")));
        let (_, text) = Resource::Policies.document(&obj).unwrap();
        let set = crate::policy::parse(&[("kubernetes:policies/web-from-world", text)]).unwrap();
        assert_eq!(set.policies.len(), 1);
    }

    #[test]
    fn only_real_changes_mark_the_cluster_dirty() {
        let c = Cluster::default();
        c.upsert(Resource::Namespaces, "x".into(), "{}".into());
        assert!(c.take().1.is_some());
        c.upsert(Resource::Namespaces, "x".into(), "{}".into());
        c.remove(Resource::Namespaces, "absent");
        let (sources, since) = c.take();
        assert!(since.is_none(), "an identical object or a missing delete changes nothing");
        assert_eq!(sources, vec![("kubernetes:namespaces/x".to_string(), "{}".to_string())]);
    }
}
