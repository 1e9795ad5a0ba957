//! The agent API's wire format, shared by the server (in the agent) and the client (`ztctl`).
//!
//! One request per connection: the client writes one JSON object on one line, the agent
//! answers with one or more JSON lines and closes. Every line carries `"api": 1`; a request
//! with another version is refused with an `unsupported-version` error, so old and new
//! clients fail clearly rather than misread each other. `docs/api.md` is the reference.
//!
//! ```text
//! -> {"api":1,"command":"policy-apply","sources":[{"name":"web.yaml","text":"..."}],"dry_run":false}
//! <- {"api":1,"type":"ok","result":{"kind":"push","applied":true,"revision":3,...}}
//! -> {"api":1,"command":"flows","follow":true,"filter":{"verdict":"denied"}}
//! <- {"api":1,"type":"flow","flow":{...flow-log record...}}      (repeated)
//! ```

use std::{collections::BTreeMap, net::IpAddr};

use serde::{Deserialize, Serialize};

use crate::flow_filter::FlowFilter;
use crate::{alert::Alert, record::FlowRecord};

/// The protocol version this build speaks.
pub const API_VERSION: u32 = 1;
/// Largest request line the agent reads (a push carries whole policy files).
pub const MAX_REQUEST_BYTES: u64 = 64 << 20;

/// A named policy text, as `ztctl` read it from a file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    /// The file's path as the operator gave it; errors name it.
    pub name: String,
    pub text: String,
}

/// What a client asks; the `command` field selects the variant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "kebab-case")]
pub enum Request {
    /// Merge the documents of `sources` into the running set as one new revision.
    PolicyApply {
        sources: Vec<Source>,
        #[serde(default)]
        dry_run: bool,
    },
    /// What `PolicyApply` would change, with line diffs; changes nothing.
    PolicyDiff {
        sources: Vec<Source>,
    },
    /// The running documents, or the ones named `name`.
    PolicyGet {
        #[serde(default)]
        name: Option<String>,
    },
    /// Remove the documents named `name` as one new revision.
    PolicyDelete {
        name: String,
        #[serde(default)]
        dry_run: bool,
    },
    PolicyHistory,
    /// Re-apply a stored revision (default: the one before the current) as a new revision.
    PolicyRollback {
        #[serde(default)]
        revision: Option<u64>,
    },
    EndpointList,
    IdentityList,
    Status,
    /// Recent flow records matching `filter`, then (with `follow`) live ones until the
    /// client closes the connection.
    Flows {
        #[serde(default)]
        filter: FlowFilter,
        #[serde(default)]
        follow: bool,
    },
    Explain(ExplainQuery),
    QuarantineList,
    QuarantineAdd {
        ip: IpAddr,
        /// `None`: until released.
        #[serde(default)]
        ttl_seconds: Option<u64>,
        /// Why, for `quarantine list` and the log.
        #[serde(default)]
        reason: Option<String>,
    },
    /// Alerts raised in the last `since_seconds` (all kept ones when `None`), then (with
    /// `follow`) new ones until the client closes the connection.
    Alerts {
        #[serde(default)]
        since_seconds: Option<u64>,
        #[serde(default)]
        follow: bool,
    },
    QuarantineRelease {
        ip: IpAddr,
    },
    /// The observed edges whose most recent flow is at most `since_seconds` old (all kept
    /// ones when `None`), for `policy suggest` and `flows map`.
    Edges {
        #[serde(default)]
        since_seconds: Option<u64>,
    },
}

/// One line from the agent. (Built one at a time and written out at once, so the size of
/// the largest reply costs nothing worth boxing for.)
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Response {
    /// The final line of a successful request.
    Ok { result: Reply },
    /// The final line of a failed request.
    Error { error: ApiError },
    /// One flow record of a `flows` stream.
    Flow { flow: Box<FlowRecord> },
    /// One alert of an `alerts` stream.
    Alert { alert: Box<Alert> },
    /// A `--follow` reader fell behind and missed this many records.
    Lost { lost: u64 },
}

/// The result of a successful request; `kind` selects the variant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Reply {
    Push(PushReport),
    Documents {
        documents: Vec<DocumentView>,
    },
    History {
        current: Option<u64>,
        revisions: Vec<RevisionInfo>,
    },
    Endpoints {
        endpoints: Vec<EndpointView>,
    },
    Identities {
        identities: Vec<IdentityView>,
    },
    Status(Box<StatusReport>),
    Explain(Explanation),
    Quarantine {
        entries: Vec<QuarantineEntry>,
    },
    /// End of a `flows` stream without `follow`.
    FlowsEnd {
        records: u64,
    },
    /// End of an `alerts` stream without `follow`.
    AlertsEnd {
        alerts: u64,
    },
    Edges {
        edges: Vec<crate::edge::ObservedEdge>,
        /// Edges not kept because the table was full since it was last emptied (counted,
        /// never silent; `[flows] edges` sizes the table).
        dropped: u64,
    },
}

/// Why a request failed: a code for programs, one sentence for people, and for a rejected
/// push every problem (file, document, field, reason).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorCode {
    /// The peer's uid may not use the API.
    PermissionDenied,
    /// The request's `api` version is not this agent's.
    UnsupportedVersion,
    /// The request is not valid JSON of this protocol, or asks for something impossible.
    BadRequest,
    /// The pushed policy is invalid; nothing changed.
    Rejected,
    /// The named thing (document, revision, quarantined address) does not exist.
    NotFound,
    /// The agent could not do it (e.g. a map write failed); nothing changed.
    Failed,
}

impl ApiError {
    /// An error whose message is kept to one line (it may quote what the client sent).
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        let message = message.into();
        ApiError { code, message: crate::text::one_line(&message).into_owned(), problems: Vec::new() }
    }

    /// A rejected push: `message`, and every problem, each kept to one line.
    pub fn rejected(message: impl Into<String>, problems: Vec<String>) -> ApiError {
        let problems = problems.iter().map(|p| crate::text::one_line(p).into_owned()).collect();
        ApiError { problems, ..ApiError::new(ErrorCode::Rejected, message) }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::BadRequest, message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::NotFound, message)
    }

    pub fn failed(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::Failed, message)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ApiError {}

/// A document's identity in the running set: pushes replace documents with the same key.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DocumentKey {
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
}

/// `Policy/web`, `Endpoint/db-1`, `Endpoint/prod/db-1`.
impl std::fmt::Display for DocumentKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{}/{ns}/{}", self.kind, self.name),
            None => write!(f, "{}/{}", self.kind, self.name),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Change {
    Added,
    Changed,
    Removed,
    Unchanged,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Change::Added => "added",
            Change::Changed => "changed",
            Change::Removed => "removed",
            Change::Unchanged => "unchanged",
        })
    }
}

/// What a push does to one document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocumentChange {
    pub key: DocumentKey,
    pub change: Change,
    /// `file, document N` of the new text (of the old one for a removal).
    pub origin: String,
    /// Line diff of the YAML (`- old`, `+ new`, `  same`); only for `policy diff`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub diff: Vec<String>,
}

/// What a push did, or (`applied: false`) would do.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PushReport {
    pub applied: bool,
    /// The new revision (`None` for a dry run or when nothing changed).
    pub revision: Option<u64>,
    /// The policy generation now in the kernel (`None` for a dry run or no change).
    pub generation: Option<u32>,
    pub changes: Vec<DocumentChange>,
    pub policies: usize,
    pub identities: usize,
    /// POLICY and IPCACHE entries of the (new) generation.
    pub policy_entries: usize,
    pub ipcache_entries: usize,
    /// Kernel map entries written and removed by the switch.
    pub written: usize,
    pub removed: usize,
    /// Agent-side time: validate + compile (+ write and switch the generation).
    pub agent_ms: f64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// One running document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocumentView {
    pub key: DocumentKey,
    /// `file, document N` it was pushed from.
    pub origin: String,
    pub yaml: String,
}

/// One stored revision (without its documents).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevisionInfo {
    pub revision: u64,
    /// RFC 3339.
    pub time: String,
    pub author_uid: u32,
    pub summary: String,
    pub generation: u32,
    pub documents: usize,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointView {
    pub key: DocumentKey,
    pub addresses: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub identity: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityView {
    pub identity: u32,
    pub labels: BTreeMap<String, String>,
    /// ipcache prefixes that resolve to it in the active generation.
    pub prefixes: Vec<String>,
}

/// `ztctl status`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    pub version: String,
    pub uptime_seconds: u64,
    pub interfaces: Vec<InterfaceStatus>,
    pub revision: Option<u64>,
    pub generation: u32,
    pub policies: usize,
    pub identities: usize,
    /// Default deny enforced (`--default-deny true`).
    pub default_deny: bool,
    /// Default deny audit-only (`--default-deny audit`): `default_deny` is then false.
    #[serde(default)]
    pub default_deny_audit: bool,
    pub failsafe: Vec<String>,
    /// How the kernel programs read the time: from jiffies (at the kernel's tick rate), or
    /// through a helper call and why (empty from agents that did not say).
    #[serde(default)]
    pub clock: String,
    pub maps: Vec<MapOccupancy>,
    /// Every kernel map of the agent with the memory the kernel charges for it, largest
    /// first.
    #[serde(default)]
    pub memory: Vec<MapMemoryRow>,
    pub counters: Vec<CounterRow>,
    pub pipeline: PipelineCounters,
    /// With `--kubernetes`: the cluster objects set aside because the agent cannot take
    /// them (each named in the agent's log).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes_objects_rejected: Option<u64>,
}

/// One kernel map's size and memory in `status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapMemoryRow {
    pub map: String,
    pub max_entries: u32,
    pub bytes: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceStatus {
    pub iface: String,
    pub ifindex: u32,
    /// xdp-native | xdp-generic | tc
    pub ingress: String,
    /// Why that ingress hook: the `--xdp-mode` asked for, or what `auto` found the link to
    /// be (empty from agents that did not say).
    #[serde(default)]
    pub why: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapOccupancy {
    pub map: String,
    pub entries: u64,
    pub max: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CounterRow {
    pub verdict: String,
    pub reason: String,
    pub packets: u64,
    pub bytes: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipelineCounters {
    pub events_read: u64,
    pub events_malformed: u64,
    pub records_dropped: u64,
}

/// `ztctl explain`: a new flow to judge.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExplainQuery {
    pub from: IpAddr,
    pub to: IpAddr,
    /// tcp | udp | sctp | icmp | icmpv6 (any case).
    pub protocol: String,
    #[serde(default)]
    pub port: Option<u16>,
    /// ingress | egress; `None`: ingress if `to` is this host, else egress if `from` is,
    /// else ingress.
    #[serde(default)]
    pub direction: Option<String>,
}

/// One side of an explained flow.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExplainedPeer {
    pub ip: IpAddr,
    /// The ipcache prefix that matched (longest), `None` for world.
    pub prefix: Option<String>,
    pub identity: u32,
    pub labels: BTreeMap<String, String>,
    pub quarantined: bool,
}

/// The verdict the kernel reaches for the first packet of that flow, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Explanation {
    pub direction: String,
    pub protocol: String,
    pub port: Option<u16>,
    pub verdict: String,
    pub reason: String,
    pub source: ExplainedPeer,
    pub destination: ExplainedPeer,
    /// Which side policy protects in this direction: `destination` (ingress) or `source`.
    pub local: String,
    pub policy: Option<String>,
    /// `file, document N` of the deciding policy.
    pub policy_origin: Option<String>,
    pub rule: Option<u32>,
    pub generation: u32,
}

/// One quarantined address.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantineEntry {
    pub ip: IpAddr,
    /// Seconds until it is released by itself; `None`: until `quarantine release`.
    pub expires_in_seconds: Option<u64>,
    /// `manual`, or the detector that quarantined it.
    #[serde(default = "manual")]
    pub origin: String,
    #[serde(default)]
    pub reason: Option<String>,
}

fn manual() -> String {
    "manual".to_string()
}

/// Serializes `value` (a request or response) as one protocol line with `"api"` first.
pub fn encode<T: Serialize>(value: &T) -> String {
    let mut object = serde_json::Map::new();
    object.insert("api".into(), API_VERSION.into());
    match serde_json::to_value(value).expect("protocol types always serialize") {
        serde_json::Value::Object(fields) => object.extend(fields),
        other => {
            object.insert("value".into(), other);
        }
    }
    let mut line = serde_json::Value::Object(object).to_string();
    line.push('\n');
    line
}

/// Parses one protocol line, checking the version before the content so a client of
/// another version gets a clear answer rather than a schema error.
pub fn decode<T: for<'de> Deserialize<'de>>(line: &str) -> Result<T, ApiError> {
    let value: serde_json::Value = serde_json::from_str(line.trim_end())
        .map_err(|e| ApiError::bad_request(format!("the line is not a JSON object: {e}")))?;
    let version = value.get("api").and_then(serde_json::Value::as_u64);
    match version {
        Some(v) if v == API_VERSION as u64 => {}
        Some(v) => {
            return Err(ApiError::new(
                ErrorCode::UnsupportedVersion,
                format!("API version {v} is not supported; this agent speaks version {API_VERSION}"),
            ));
        }
        None => {
            return Err(ApiError::bad_request(r#"the line has no "api" version field; add "api": 1"#));
        }
    }
    serde_json::from_value(value).map_err(|e| ApiError::bad_request(format!("the line is not a valid message: {e}")))
}

/// `1 added, 2 changed, 0 removed`: how a push's document changes read in one line.
pub fn counts(changes: &[DocumentChange]) -> String {
    let n = |c: Change| changes.iter().filter(|x| x.change == c).count();
    format!("{} added, {} changed, {} removed", n(Change::Added), n(Change::Changed), n(Change::Removed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<T: Serialize + for<'de> Deserialize<'de> + PartialEq + std::fmt::Debug>(value: T) {
        let line = encode(&value);
        assert!(line.starts_with(r#"{"api":1,"#), "{line}");
        assert!(line.ends_with('\n') && !line[..line.len() - 1].contains('\n'), "one line: {line}");
        assert_eq!(decode::<T>(&line).unwrap(), value);
    }

    #[test]
    fn every_request_round_trips() {
        round_trip(Request::PolicyApply {
            sources: vec![Source { name: "a.yaml".into(), text: "kind: Policy\n---\nx: 1\n".into() }],
            dry_run: true,
        });
        round_trip(Request::PolicyDiff { sources: vec![] });
        round_trip(Request::PolicyGet { name: Some("web".into()) });
        round_trip(Request::PolicyGet { name: None });
        round_trip(Request::PolicyDelete { name: "web".into(), dry_run: false });
        round_trip(Request::PolicyHistory);
        round_trip(Request::PolicyRollback { revision: Some(3) });
        round_trip(Request::EndpointList);
        round_trip(Request::IdentityList);
        round_trip(Request::Status);
        round_trip(Request::Flows {
            filter: FlowFilter {
                verdict: Some(crate::flow_filter::VerdictFilter::Denied),
                from: Some("app=client".parse().unwrap()),
                to: Some("198.18.0.2".parse().unwrap()),
                port: Some(8080),
                since_seconds: Some(300),
            },
            follow: true,
        });
        round_trip(Request::Explain(ExplainQuery {
            from: "198.18.0.1".parse().unwrap(),
            to: "fd00::2".parse().unwrap(),
            protocol: "tcp".into(),
            port: Some(80),
            direction: None,
        }));
        round_trip(Request::QuarantineList);
        round_trip(Request::QuarantineAdd {
            ip: "198.18.0.9".parse().unwrap(),
            ttl_seconds: Some(300),
            reason: Some("port scan".into()),
        });
        round_trip(Request::QuarantineRelease { ip: "fd00::9".parse().unwrap() });
    }

    #[test]
    fn responses_round_trip() {
        round_trip(Response::Ok {
            result: Reply::Push(PushReport { applied: true, revision: Some(2), ..PushReport::default() }),
        });
        round_trip(Response::Ok { result: Reply::FlowsEnd { records: 4 } });
        round_trip(Response::Ok { result: Reply::History { current: Some(1), revisions: vec![] } });
        round_trip(Response::Error {
            error: ApiError {
                code: ErrorCode::Rejected,
                message: "the push was rejected".into(),
                problems: vec!["policy a.yaml, document 1: spec.selector is missing".into()],
            },
        });
        round_trip(Response::Lost { lost: 7 });
    }

    #[test]
    fn the_wire_names_are_the_documented_ones() {
        let line =
            encode(&Request::QuarantineAdd { ip: "198.18.0.9".parse().unwrap(), ttl_seconds: None, reason: None });
        assert_eq!(
            line,
            "{\"api\":1,\"command\":\"quarantine-add\",\"ip\":\"198.18.0.9\",\"reason\":null,\"ttl_seconds\":null}\n"
        );
        let status: Request = decode(r#"{"api":1,"command":"status"}"#).unwrap();
        assert_eq!(status, Request::Status);
    }

    #[test]
    fn another_version_is_refused_with_the_supported_one() {
        let e = decode::<Request>(r#"{"api":2,"command":"status"}"#).unwrap_err();
        assert_eq!(e.code, ErrorCode::UnsupportedVersion);
        assert_eq!(e.message, "API version 2 is not supported; this agent speaks version 1");
        let e = decode::<Request>(r#"{"command":"status"}"#).unwrap_err();
        assert_eq!(e.code, ErrorCode::BadRequest);
        let e = decode::<Request>(r#"{"api":1,"command":"reboot"}"#).unwrap_err();
        assert!(e.message.contains("reboot"), "{e}");
    }
}
