//! The document schema: the serde structs `zt/v1` documents deserialize into, exactly as
//! `docs/policy.md` fixes it. Unknown fields are errors (`deny_unknown_fields`), so serde
//! reports a typo with its field path and line. Optional lists are `Option` so that `key:`
//! with no value (YAML null) means the same as leaving the key out. Nothing here checks
//! values; [`fields`](super::fields) does that.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::policy::model::{Action, Entity, Mode, Protocol};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointDocument {
    #[serde(rename = "apiVersion")]
    pub _api_version: IgnoredAny,
    #[serde(rename = "kind")]
    pub _kind: IgnoredAny,
    pub metadata: EndpointMetadata,
    pub spec: EndpointSpec,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointMetadata {
    pub name: String,
    pub namespace: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointSpec {
    pub addresses: Vec<String>,
    pub labels: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyDocument {
    #[serde(rename = "apiVersion")]
    pub _api_version: IgnoredAny,
    #[serde(rename = "kind")]
    pub _kind: IgnoredAny,
    pub metadata: PolicyMetadata,
    pub spec: PolicySpec,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyMetadata {
    pub name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySpec {
    /// Required: a forgotten selector must not silently mean "everything".
    pub selector: BTreeMap<String, String>,
    pub mode: Option<Mode>,
    pub ingress: Option<Vec<RuleDoc>>,
    pub egress: Option<Vec<RuleDoc>>,
}

/// `from` and `to` are both accepted here so that the wrong one gets a message that
/// names the right one.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleDoc {
    pub action: Option<Action>,
    pub from: Option<Vec<PeerDoc>>,
    pub to: Option<Vec<PeerDoc>>,
    pub ports: Option<Vec<PortDoc>>,
    #[serde(rename = "rateLimit")]
    pub rate_limit: Option<RateLimitDoc>,
}

/// Numbers are read as wide integers so that 0 or -5 get a range error that names the
/// field rather than serde's "expected u32".
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitDoc {
    #[serde(rename = "newFlowsPerSecond")]
    pub new_flows_per_second: Option<i64>,
    pub burst: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerDoc {
    pub selector: Option<BTreeMap<String, String>>,
    pub cidr: Option<String>,
    pub except: Option<Vec<String>>,
    pub entity: Option<Entity>,
}

/// Ports are read as wide integers so that 70000 or -1 get a range error rather than
/// serde's "expected u16".
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortDoc {
    pub protocol: Option<Protocol>,
    pub port: Option<i64>,
    #[serde(rename = "endPort")]
    pub end_port: Option<i64>,
}
