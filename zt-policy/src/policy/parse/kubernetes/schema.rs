//! The Kubernetes objects as the agent reads them: only the fields that matter for network
//! policy. Unlike `zt/v1`, unknown fields are ignored, because `kubectl get -o yaml` prints
//! many (uid, resourceVersion, managedFields, status.conditions, ...) that say nothing about
//! traffic. Optional fields are `Option` so that YAML null means the same as a missing key.

use std::collections::BTreeMap;

use serde::Deserialize;

/// `metadata`: the part of ObjectMeta policy needs.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ObjectMeta {
    pub name: Option<String>,
    pub namespace: Option<String>,
    pub labels: Option<BTreeMap<String, String>>,
}

/// `v1 Namespace`.
#[derive(Clone, Debug, Deserialize)]
pub struct NamespaceDoc {
    #[serde(default)]
    pub metadata: ObjectMeta,
}

/// `v1 Pod`.
#[derive(Clone, Debug, Deserialize)]
pub struct PodDoc {
    #[serde(default)]
    pub metadata: ObjectMeta,
    pub spec: Option<PodSpec>,
    pub status: Option<PodStatus>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct PodSpec {
    pub containers: Option<Vec<Container>>,
    #[serde(rename = "initContainers")]
    pub init_containers: Option<Vec<Container>>,
    #[serde(rename = "hostNetwork")]
    pub host_network: Option<bool>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Container {
    pub ports: Option<Vec<ContainerPort>>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct ContainerPort {
    pub name: Option<String>,
    #[serde(rename = "containerPort")]
    pub container_port: i64,
    pub protocol: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct PodStatus {
    pub phase: Option<String>,
    #[serde(rename = "podIP")]
    pub pod_ip: Option<String>,
    #[serde(rename = "podIPs")]
    pub pod_ips: Option<Vec<PodIp>>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct PodIp {
    pub ip: String,
}

/// `networking.k8s.io/v1 NetworkPolicy`.
#[derive(Clone, Debug, Deserialize)]
pub struct NetworkPolicyDoc {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: NetworkPolicySpec,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct NetworkPolicySpec {
    #[serde(rename = "podSelector")]
    pub pod_selector: Option<LabelSelector>,
    #[serde(rename = "policyTypes")]
    pub policy_types: Option<Vec<String>>,
    pub ingress: Option<Vec<PolicyRule>>,
    pub egress: Option<Vec<PolicyRule>>,
}

/// An ingress rule (`from`) or an egress rule (`to`); the wrong one is ignored like any
/// unknown field, as the API server would drop it.
#[derive(Clone, Debug, Deserialize)]
pub struct PolicyRule {
    pub from: Option<Vec<PeerDoc>>,
    pub to: Option<Vec<PeerDoc>>,
    pub ports: Option<Vec<PortDoc>>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct PeerDoc {
    #[serde(rename = "podSelector")]
    pub pod_selector: Option<LabelSelector>,
    #[serde(rename = "namespaceSelector")]
    pub namespace_selector: Option<LabelSelector>,
    #[serde(rename = "ipBlock")]
    pub ip_block: Option<IpBlock>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct IpBlock {
    pub cidr: String,
    pub except: Option<Vec<String>>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct PortDoc {
    pub protocol: Option<String>,
    pub port: Option<IntOrString>,
    #[serde(rename = "endPort")]
    pub end_port: Option<i64>,
}

/// Kubernetes' IntOrString: a port number or a container port's name.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum IntOrString {
    Int(i64),
    String(String),
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct LabelSelector {
    #[serde(rename = "matchLabels")]
    pub match_labels: Option<BTreeMap<String, String>>,
    #[serde(rename = "matchExpressions")]
    pub match_expressions: Option<Vec<RequirementDoc>>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct RequirementDoc {
    pub key: String,
    pub operator: String,
    pub values: Option<Vec<String>>,
}

/// `v1 List` (what `kubectl get a,b,c -o yaml` prints): its items are read one by one.
#[derive(Clone, Debug, Deserialize)]
pub struct ListDoc {
    pub items: Option<Vec<serde_norway::Value>>,
}
