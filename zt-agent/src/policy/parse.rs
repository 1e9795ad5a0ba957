//! Parse and validate: `zt/v1` YAML sources -> [`PolicySet`], or every error at once.
//!
//! First stage of a push (`ztctl policy apply` -> agent -> parse -> compile -> maps). Each
//! source is a multi-document YAML stream, read in one pass straight into the strict schema
//! below (unknown fields are errors), dispatching on `apiVersion`/`kind` as they are read.
//! A source that pass cannot take whole (a syntax or schema error, an unknown apiVersion or
//! kind, keys in an unusual order) is read again by the checking path, which reports every
//! problem with serde's field path and line. The schema is then checked field by field into
//! the [`model`](super::model) types, and finally the whole set is checked across documents
//! (unique names, no address claimed twice).
//!
//! Nothing stops at the first problem: the caller gets every error of the push, so one edit
//! cycle fixes them all.

// A `PolicyError` is ~140 bytes; it is built only on a failed push and then lives in a Vec,
// so boxing it would cost clarity for no measurable gain.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::net::IpAddr;
use std::path::Path;

use ipnet::IpNet;
use serde::Deserialize;
use serde::de::IgnoredAny;

use super::error::{PolicyError, Problem};
use super::model::{
    Action, Direction, Endpoint, Entity, Mode, Origin, Peer, Policy, PolicySet, PortRule, Protocol,
    Rule, Selector,
};
use crate::identity::Labels;
use crate::identity::labels::{is_dns_subdomain, validate_key, validate_value};

/// The native format's apiVersion.
pub const API_VERSION: &str = "zt/v1";
/// apiVersions the product will accept in a later version; they get a "not supported yet"
/// error rather than "unknown".
const PLANNED_API_VERSIONS: &[&str] = &["networking.k8s.io/v1"];

/// Reads a policy file, or every `*.yaml`/`*.yml` file directly inside a directory (sorted by
/// name; hidden files such as editor lock files are skipped), as `(source name, text)` pairs
/// for [`parse`]. The source name is the path as given, joined with the file name.
pub fn load_path(path: &Path) -> Result<Vec<(String, String)>, PolicyError> {
    let read_error = |path: &Path, error| PolicyError::Read {
        path: path.display().to_string(),
        error,
    };
    let metadata = fs::metadata(path).map_err(|e| read_error(path, e))?;
    let files = if metadata.is_dir() {
        let mut files = Vec::new();
        for entry in fs::read_dir(path).map_err(|e| read_error(path, e))? {
            let file = entry.map_err(|e| read_error(path, e))?.path();
            if is_policy_file(&file) {
                files.push(file);
            }
        }
        if files.is_empty() {
            return Err(PolicyError::NoPolicyFiles {
                path: path.display().to_string(),
            });
        }
        files.sort();
        files
    } else {
        vec![path.to_path_buf()]
    };
    files
        .into_iter()
        .map(|file| {
            let text = fs::read_to_string(&file).map_err(|e| read_error(&file, e))?;
            Ok((file.display().to_string(), text))
        })
        .collect()
}

/// [`load_path`] for several paths, in order; reports every path that cannot be read.
pub fn load_paths<P: AsRef<Path>>(paths: &[P]) -> Result<Vec<(String, String)>, Vec<PolicyError>> {
    let mut sources = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        match load_path(path.as_ref()) {
            Ok(mut loaded) => sources.append(&mut loaded),
            Err(error) => errors.push(error),
        }
    }
    if errors.is_empty() {
        Ok(sources)
    } else {
        Err(errors)
    }
}

fn is_policy_file(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let yaml = name.ends_with(".yaml") || name.ends_with(".yml");
    yaml && !name.starts_with('.') && path.is_file()
}

/// Parses and validates `(source name, YAML text)` pairs into one policy set. Returns every
/// error found in any source; a push with errors must not be applied at all.
pub fn parse<N: AsRef<str>, T: AsRef<str>>(
    sources: &[(N, T)],
) -> Result<PolicySet, Vec<PolicyError>> {
    let mut set = PolicySet::default();
    let mut errors = Vec::new();
    for (name, text) in sources {
        parse_source(name.as_ref(), text.as_ref(), &mut set, &mut errors);
    }
    check_unique_names(&set, &mut errors);
    check_address_claims(&set, &mut errors);
    if errors.is_empty() {
        Ok(set)
    } else {
        Err(errors)
    }
}

/// The kinds a `zt/v1` document can have.
#[derive(Clone, Copy)]
enum Kind {
    Endpoint,
    Policy,
}

fn parse_source(name: &str, text: &str, set: &mut PolicySet, errors: &mut Vec<PolicyError>) {
    let Some(documents) = read_regular(text) else {
        return check_source(name, text, set, errors);
    };
    for (number, document) in documents {
        let origin = Origin::new(name, number);
        let mut check = Checker {
            origin: &origin,
            errors,
        };
        match document {
            schema::Document::Endpoint(doc) => set.endpoints.push(check.endpoint(doc)),
            schema::Document::Policy(doc) => set.policies.push(check.policy(doc)),
            schema::Document::Empty => {}
        }
    }
}

/// The single pass every well-formed source takes: each document straight into its typed
/// schema, dispatched on `apiVersion`/`kind` as they are read. `None` as soon as any
/// document is not a regular `zt/v1` document (see [`schema::Document`]) or fails to
/// deserialize; the source is then read again by [`check_source`], which reports exactly
/// what is wrong. The values' own checks (ports, addresses, labels) are not done here.
fn read_regular(text: &str) -> Option<Vec<(usize, schema::Document)>> {
    let mut documents = Vec::new();
    for (index, document) in serde_norway::Deserializer::from_str(text).enumerate() {
        match schema::Document::deserialize(document).ok()? {
            schema::Document::Empty => {}
            document => documents.push((index + 1, document)),
        }
    }
    Some(documents)
}

/// The checking path, for a source the single pass gave up on: pass 1 reads every document
/// as a plain YAML value, to find syntax errors (which win over any schema error of the same
/// document), skip empty documents and dispatch on `apiVersion`/`kind` whatever the key
/// order; pass 2 deserializes the `zt/v1` documents into the strict schema, which keeps
/// serde's field paths and line numbers in its errors (a plain value would have lost them).
fn check_source(name: &str, text: &str, set: &mut PolicySet, errors: &mut Vec<PolicyError>) {
    // Pass 1: what is each document? `None` = skip (empty, or already reported).
    let mut kinds: Vec<Option<Kind>> = Vec::new();
    for (index, document) in serde_norway::Deserializer::from_str(text).enumerate() {
        let origin = Origin::new(name, index + 1);
        match serde_norway::Value::deserialize(document) {
            // After a syntax error the stream yields the same error forever: stop here.
            Err(error) => {
                errors.push(syntax_error(origin, &error));
                break;
            }
            Ok(serde_norway::Value::Null) => kinds.push(None),
            Ok(value) => match classify(&origin, &value) {
                Ok(kind) => kinds.push(Some(kind)),
                Err(error) => {
                    errors.push(error);
                    kinds.push(None);
                }
            },
        }
    }

    // Pass 2: the zt/v1 documents into the strict schema.
    let documents = kinds
        .into_iter()
        .zip(serde_norway::Deserializer::from_str(text));
    for (index, (kind, document)) in documents.enumerate() {
        let origin = Origin::new(name, index + 1);
        let mut check = Checker {
            origin: &origin,
            errors,
        };
        match kind {
            None => {}
            Some(Kind::Endpoint) => match schema::EndpointDocument::deserialize(document) {
                Ok(doc) => set.endpoints.push(check.endpoint(doc)),
                Err(error) => errors.push(schema_error(origin, &error)),
            },
            Some(Kind::Policy) => match schema::PolicyDocument::deserialize(document) {
                Ok(doc) => set.policies.push(check.policy(doc)),
                Err(error) => errors.push(schema_error(origin, &error)),
            },
        }
    }
}

/// Dispatches on `apiVersion` and `kind`.
fn classify(origin: &Origin, value: &serde_norway::Value) -> Result<Kind, PolicyError> {
    let origin = || origin.clone();
    let Some(mapping) = value.as_mapping() else {
        return Err(PolicyError::NotAMapping { origin: origin() });
    };
    let field = |name: &str| mapping.get(name).map(scalar_text);
    let api_version =
        field("apiVersion").ok_or_else(|| PolicyError::MissingApiVersion { origin: origin() })?;
    let kind = field("kind").ok_or_else(|| PolicyError::MissingKind { origin: origin() })?;
    if api_version != API_VERSION {
        return Err(if PLANNED_API_VERSIONS.contains(&api_version.as_str()) {
            PolicyError::NotSupportedYet {
                origin: origin(),
                api_version,
                kind,
            }
        } else {
            PolicyError::UnknownApiVersion {
                origin: origin(),
                api_version,
            }
        });
    }
    match kind.as_str() {
        "Endpoint" => Ok(Kind::Endpoint),
        "Policy" => Ok(Kind::Policy),
        _ => Err(PolicyError::UnknownKind {
            origin: origin(),
            kind,
        }),
    }
}

/// A YAML scalar as text (numbers and booleans as written), anything else as YAML.
fn scalar_text(value: &serde_norway::Value) -> String {
    match value {
        serde_norway::Value::String(s) => s.clone(),
        other => serde_norway::to_string(other)
            .unwrap_or_default()
            .trim_end()
            .to_string(),
    }
}

/// serde_norway's message without its own " at line L column C", which the error repeats in a
/// fixed format.
fn message_and_position(error: &serde_norway::Error) -> (String, Option<usize>, Option<usize>) {
    let message = error.to_string();
    match error.location() {
        Some(location) => {
            let needle = format!(" at line {} column {}", location.line(), location.column());
            (
                message.replacen(&needle, "", 1),
                Some(location.line()),
                Some(location.column()),
            )
        }
        None => (message, None, None),
    }
}

fn syntax_error(origin: Origin, error: &serde_norway::Error) -> PolicyError {
    let (problem, line, column) = message_and_position(error);
    PolicyError::Syntax {
        origin,
        line,
        column,
        problem,
    }
}

fn schema_error(origin: Origin, error: &serde_norway::Error) -> PolicyError {
    let (message, line, column) = message_and_position(error);
    PolicyError::Schema {
        origin,
        message,
        line,
        column,
    }
}

/// The document schema exactly as `ARCHITECTURE.md` fixes it. Optional lists are `Option`
/// so that `key:` with no value (YAML null) means the same as leaving the key out.
mod schema {
    use std::fmt;

    use serde::Deserializer;
    use serde::de::{self, MapAccess, Visitor};

    use super::*;

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

    /// One document as the single pass reads it. Regular means: empty, or a mapping whose
    /// `apiVersion` (`zt/v1`) and `kind` (`Endpoint` or `Policy`) are strings that come
    /// before `metadata` and `spec`, with no other key and none twice. Anything else is an
    /// error whose text is never shown: the caller reads the source again to say what is
    /// wrong (or, for valid documents in an unusual key order, to accept them).
    pub enum Document {
        Empty,
        Endpoint(EndpointDocument),
        Policy(PolicyDocument),
    }

    impl<'de> Deserialize<'de> for Document {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            deserializer.deserialize_any(DocumentVisitor)
        }
    }

    struct DocumentVisitor;

    impl<'de> Visitor<'de> for DocumentVisitor {
        type Value = Document;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a zt/v1 Endpoint or Policy document")
        }

        fn visit_unit<E: de::Error>(self) -> Result<Document, E> {
            Ok(Document::Empty)
        }

        fn visit_none<E: de::Error>(self) -> Result<Document, E> {
            Ok(Document::Empty)
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Document, A::Error> {
            let irregular = || de::Error::custom("not a regular zt/v1 document");
            let (mut api_version, mut kind) = (None::<String>, None::<String>);
            let mut body = None;
            while let Some(key) = map.next_key::<String>()? {
                match key.as_str() {
                    "apiVersion" if api_version.is_none() => api_version = Some(map.next_value()?),
                    "kind" if kind.is_none() => kind = Some(map.next_value()?),
                    "metadata" | "spec" => {
                        let body = body.get_or_insert(match (api_version.as_deref(), kind.as_deref()) {
                            (Some(API_VERSION), Some("Endpoint")) => Body::Endpoint(None, None),
                            (Some(API_VERSION), Some("Policy")) => Body::Policy(None, None),
                            _ => return Err(irregular()),
                        });
                        match (body, key.as_str()) {
                            (Body::Endpoint(metadata @ None, _), "metadata") => *metadata = Some(map.next_value()?),
                            (Body::Endpoint(_, spec @ None), "spec") => *spec = Some(map.next_value()?),
                            (Body::Policy(metadata @ None, _), "metadata") => *metadata = Some(map.next_value()?),
                            (Body::Policy(_, spec @ None), "spec") => *spec = Some(map.next_value()?),
                            _ => return Err(irregular()),
                        }
                    }
                    _ => return Err(irregular()),
                }
            }
            match body {
                Some(Body::Endpoint(Some(metadata), Some(spec))) => Ok(Document::Endpoint(EndpointDocument {
                    _api_version: IgnoredAny,
                    _kind: IgnoredAny,
                    metadata,
                    spec,
                })),
                Some(Body::Policy(Some(metadata), Some(spec))) => Ok(Document::Policy(PolicyDocument {
                    _api_version: IgnoredAny,
                    _kind: IgnoredAny,
                    metadata,
                    spec,
                })),
                _ => Err(irregular()),
            }
        }
    }

    /// `metadata` and `spec` of the kind the header named, as far as read.
    enum Body {
        Endpoint(Option<EndpointMetadata>, Option<EndpointSpec>),
        Policy(Option<PolicyMetadata>, Option<PolicySpec>),
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
}

/// Converts one schema document into the model, reporting each bad field against the
/// document's origin and carrying on (bad values are left out of the result, which is never
/// used when any error was reported).
struct Checker<'a> {
    origin: &'a Origin,
    errors: &'a mut Vec<PolicyError>,
}

impl Checker<'_> {
    fn report(&mut self, path: impl Into<String>, problem: Problem) {
        self.errors.push(PolicyError::Invalid {
            origin: self.origin.clone(),
            path: path.into(),
            problem,
        });
    }

    fn endpoint(&mut self, doc: schema::EndpointDocument) -> Endpoint {
        self.name("metadata.name", &doc.metadata.name);
        if let Some(namespace) = &doc.metadata.namespace {
            self.name("metadata.namespace", namespace);
        }
        let mut addresses = Vec::new();
        for (i, text) in doc.spec.addresses.iter().enumerate() {
            let path = format!("spec.addresses[{i}]");
            match self.prefix(&path, text) {
                Some(net) if net.prefix_len() == 0 => {
                    self.report(path, Problem::DefaultRoute { value: net })
                }
                Some(net) => addresses.push(net),
                None => {}
            }
        }
        Endpoint {
            name: doc.metadata.name,
            namespace: doc.metadata.namespace,
            addresses,
            labels: self.labels("spec.labels", doc.spec.labels.unwrap_or_default()),
            origin: self.origin.clone(),
        }
    }

    fn policy(&mut self, doc: schema::PolicyDocument) -> Policy {
        self.name("metadata.name", &doc.metadata.name);
        let selector = Selector::new(self.labels("spec.selector", doc.spec.selector));
        let ingress = doc
            .spec
            .ingress
            .map(|rules| self.rules(Direction::Ingress, rules));
        let egress = doc
            .spec
            .egress
            .map(|rules| self.rules(Direction::Egress, rules));
        Policy {
            name: doc.metadata.name,
            mode: doc.spec.mode.unwrap_or_default(),
            selector,
            ingress,
            egress,
            origin: self.origin.clone(),
        }
    }

    fn rules(&mut self, direction: Direction, rules: Vec<schema::RuleDoc>) -> Vec<Rule> {
        let mut out = Vec::new();
        for (i, rule) in rules.into_iter().enumerate() {
            let path = format!("spec.{direction}[{i}]");
            let (peers, wrong) = match direction {
                Direction::Ingress => (rule.from, rule.to.map(|_| "to")),
                Direction::Egress => (rule.to, rule.from.map(|_| "from")),
            };
            if let Some(wrong) = wrong {
                let problem = Problem::WrongPeerField {
                    direction,
                    expected: direction.peer_field(),
                };
                self.report(format!("{path}.{wrong}"), problem);
            }
            let peer_path = format!("{path}.{}", direction.peer_field());
            let peers = peers.unwrap_or_default();
            let peers = peers
                .into_iter()
                .enumerate()
                .filter_map(|(j, peer)| self.peer(&format!("{peer_path}[{j}]"), peer));
            let peers = peers.collect();
            let ports = rule.ports.unwrap_or_default();
            let ports = ports
                .into_iter()
                .enumerate()
                .filter_map(|(j, port)| self.port(&format!("{path}.ports[{j}]"), port));
            let ports = ports.collect();
            out.push(Rule {
                action: rule.action.unwrap_or_default(),
                peers,
                ports,
            });
        }
        out
    }

    fn peer(&mut self, path: &str, peer: schema::PeerDoc) -> Option<Peer> {
        let given: Vec<&'static str> = [
            peer.selector.as_ref().map(|_| "selector"),
            peer.cidr.as_ref().map(|_| "cidr"),
            peer.entity.as_ref().map(|_| "entity"),
        ]
        .into_iter()
        .flatten()
        .collect();
        if peer.except.is_some() && peer.cidr.is_none() {
            self.report(format!("{path}.except"), Problem::ExceptWithoutCidr);
        }
        match given[..] {
            // `except` alone was reported above.
            [] if peer.except.is_some() => return None,
            [] => {
                self.report(path, Problem::EmptyPeer);
                return None;
            }
            [_] => {}
            [first, second, ..] => {
                self.report(path, Problem::AmbiguousPeer { first, second });
                return None;
            }
        }
        if let Some(selector) = peer.selector {
            return Some(Peer::Selector(Selector::new(
                self.labels(&format!("{path}.selector"), selector),
            )));
        }
        if let Some(entity) = peer.entity {
            return Some(Peer::Entity(entity));
        }
        let cidr = self.prefix(&format!("{path}.cidr"), peer.cidr.as_deref()?)?;
        let mut except = Vec::new();
        for (i, text) in peer.except.unwrap_or_default().iter().enumerate() {
            let except_path = format!("{path}.except[{i}]");
            let Some(net) = self.prefix(&except_path, text) else {
                continue;
            };
            if cidr.contains(&net) && net.prefix_len() > cidr.prefix_len() {
                except.push(net);
            } else {
                self.report(
                    except_path,
                    Problem::ExceptOutsideCidr { except: net, cidr },
                );
            }
        }
        Some(Peer::Cidr { cidr, except })
    }

    fn port(&mut self, path: &str, port: schema::PortDoc) -> Option<PortRule> {
        // Kubernetes' default, so a port item reads the same in both formats.
        let protocol = port.protocol.unwrap_or(Protocol::Tcp);
        let mut ok = true;
        if !protocol.has_ports() {
            for (field, value) in [("port", port.port), ("endPort", port.end_port)] {
                if value.is_some() {
                    self.report(
                        format!("{path}.{field}"),
                        Problem::PortNotAllowed { protocol },
                    );
                    ok = false;
                }
            }
            return ok.then_some(PortRule {
                protocol,
                port: None,
                end_port: None,
            });
        }
        let start = port
            .port
            .and_then(|value| self.port_number(&format!("{path}.port"), value));
        let end = port
            .end_port
            .and_then(|value| self.port_number(&format!("{path}.endPort"), value));
        ok &= port.port.is_none() || start.is_some();
        ok &= port.end_port.is_none() || end.is_some();
        match (port.port, start, end) {
            (None, _, Some(_)) => {
                self.report(format!("{path}.endPort"), Problem::EndPortWithoutPort);
                ok = false;
            }
            (_, Some(start), Some(end)) if end < start => {
                self.report(
                    format!("{path}.endPort"),
                    Problem::EndPortBelowPort {
                        port: start,
                        end_port: end,
                    },
                );
                ok = false;
            }
            _ => {}
        }
        ok.then_some(PortRule {
            protocol,
            port: start,
            end_port: end,
        })
    }

    fn port_number(&mut self, path: &str, value: i64) -> Option<u16> {
        match u16::try_from(value) {
            Ok(port) if port >= 1 => Some(port),
            _ => {
                self.report(path, Problem::PortOutOfRange { value });
                None
            }
        }
    }

    /// An address or prefix: a bare IP is a host prefix (/32, /128); host bits are an error
    /// rather than silently cleared, because `10.0.1.5/24` usually means a typo.
    fn prefix(&mut self, path: &str, text: &str) -> Option<IpNet> {
        if let Ok(addr) = text.parse::<IpAddr>() {
            return Some(IpNet::from(addr));
        }
        match text.parse::<IpNet>() {
            Ok(net) if net.trunc() == net => Some(net),
            Ok(net) => {
                self.report(
                    path,
                    Problem::HostBitsSet {
                        value: text.to_string(),
                        network: net.trunc(),
                    },
                );
                None
            }
            Err(_) => {
                self.report(
                    path,
                    Problem::BadAddress {
                        value: text.to_string(),
                    },
                );
                None
            }
        }
    }

    /// A label map (endpoint labels or a matchLabels selector), checked with the Kubernetes
    /// label rules; bad labels are reported and left out.
    fn labels(&mut self, path: &str, map: BTreeMap<String, String>) -> Labels {
        let mut labels = Labels::new();
        for (key, value) in map {
            match validate_key(&key).and_then(|()| validate_value(&key, &value)) {
                Ok(()) => labels.insert(key, value),
                Err(error) => self.report(path, Problem::Label(error)),
            }
        }
        labels
    }

    fn name(&mut self, path: &str, name: &str) {
        if !is_dns_subdomain(name) {
            self.report(
                path,
                Problem::BadName {
                    value: name.to_string(),
                },
            );
        }
    }
}

/// Names identify objects in `ztctl policy get/delete` and in flow logs: one object per name.
fn check_unique_names(set: &PolicySet, errors: &mut Vec<PolicyError>) {
    let mut first_endpoint: HashMap<String, &Origin> = HashMap::new();
    for endpoint in &set.endpoints {
        let name = endpoint.qualified_name();
        match first_endpoint.get(&name) {
            Some(first) => errors.push(duplicate("endpoint", name, &endpoint.origin, first)),
            None => {
                first_endpoint.insert(name, &endpoint.origin);
            }
        }
    }
    let mut first_policy: HashMap<&str, &Origin> = HashMap::new();
    for policy in &set.policies {
        match first_policy.get(policy.name.as_str()) {
            Some(first) => errors.push(duplicate(
                "policy",
                policy.name.clone(),
                &policy.origin,
                first,
            )),
            None => {
                first_policy.insert(&policy.name, &policy.origin);
            }
        }
    }
}

fn duplicate(kind: &'static str, name: String, origin: &Origin, first: &Origin) -> PolicyError {
    let problem = Problem::DuplicateName {
        kind,
        name,
        first: first.location(),
    };
    PolicyError::Invalid {
        origin: origin.clone(),
        path: "metadata.name".into(),
        problem,
    }
}

/// One address, one identity: the ipcache can map a prefix to only one label set. Endpoints
/// with identical labels may share addresses (they are the same identity).
fn check_address_claims(set: &PolicySet, errors: &mut Vec<PolicyError>) {
    let mut claims: HashMap<IpNet, &Endpoint> = HashMap::new();
    for endpoint in &set.endpoints {
        for (i, &address) in endpoint.addresses.iter().enumerate() {
            match claims.get(&address) {
                Some(first) if first.labels != endpoint.labels => {
                    let problem = Problem::AddressClaimed {
                        address,
                        endpoint: first.qualified_name(),
                        first: first.origin.location(),
                    };
                    let path = format!("spec.addresses[{i}]");
                    errors.push(PolicyError::Invalid {
                        origin: endpoint.origin.clone(),
                        path,
                        problem,
                    });
                }
                Some(_) => {}
                None => {
                    claims.insert(address, endpoint);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    const DB_ENDPOINT: &str = "apiVersion: zt/v1
kind: Endpoint
metadata: {name: db-1}
spec:
  addresses: [10.0.1.5, \"fd00::5\", 10.0.2.0/24]
  labels: {app: db, env: prod}
";

    /// The one error `text` (as source `name`) produces, displayed.
    fn error_of(name: &str, text: &str) -> String {
        let errors = errors_of(&[(name, text)]);
        assert_eq!(errors.len(), 1, "expected one error, got {errors:#?}");
        errors.into_iter().next().unwrap()
    }

    fn errors_of(sources: &[(&str, &str)]) -> Vec<String> {
        match parse(sources) {
            Ok(set) => panic!("expected errors, parsed {set:#?}"),
            Err(errors) => errors.iter().map(ToString::to_string).collect(),
        }
    }

    /// A policy document whose single ingress rule has the given `ports` list (flow YAML).
    fn policy_with_ports(ports: &str) -> String {
        format!(
            "apiVersion: zt/v1\nkind: Policy\nmetadata: {{name: db-ingress}}\nspec:\n  selector: {{app: db}}\n  \
             ingress:\n    - from: [{{selector: {{app: api}}}}]\n      ports: {ports}\n"
        )
    }

    #[test]
    fn endpoint_and_policy_parse_into_the_model() {
        let policy = "apiVersion: zt/v1
kind: Policy
metadata: {name: db-ingress}
spec:
  selector: {app: db}
  mode: audit
  ingress:
    - from:
        - selector: {app: api}
        - cidr: 192.168.0.0/16
          except: [192.168.9.0/24]
        - entity: host
      ports:
        - {protocol: TCP, port: 5432}
        - {protocol: UDP, port: 5000, endPort: 5100}
        - {protocol: ICMP}
    - action: deny
";
        let set = parse(&[("db.yaml", format!("{DB_ENDPOINT}---\n{policy}"))]).unwrap();
        let endpoint = &set.endpoints[0];
        assert_eq!(endpoint.name, "db-1");
        let addresses: Vec<String> = endpoint.addresses.iter().map(ToString::to_string).collect();
        assert_eq!(addresses, ["10.0.1.5/32", "fd00::5/128", "10.0.2.0/24"]);
        assert_eq!(endpoint.labels.to_string(), "app=db,env=prod");
        assert_eq!(endpoint.origin, Origin::new("db.yaml", 1));

        let policy = &set.policies[0];
        assert_eq!(
            (policy.name.as_str(), policy.mode),
            ("db-ingress", Mode::Audit)
        );
        assert_eq!(policy.origin, Origin::new("db.yaml", 2));
        assert!(policy.egress.is_none());
        let rules = policy.ingress.as_ref().unwrap();
        assert_eq!(rules[0].action, Action::Allow);
        assert_eq!(
            rules[0].peers,
            [
                Peer::Selector(Selector::new(Labels::parse("app=api").unwrap())),
                Peer::Cidr {
                    cidr: "192.168.0.0/16".parse().unwrap(),
                    except: vec!["192.168.9.0/24".parse().unwrap()]
                },
                Peer::Entity(Entity::Host),
            ]
        );
        assert_eq!(
            rules[0].ports,
            [
                PortRule {
                    protocol: Protocol::Tcp,
                    port: Some(5432),
                    end_port: None
                },
                PortRule {
                    protocol: Protocol::Udp,
                    port: Some(5000),
                    end_port: Some(5100)
                },
                PortRule {
                    protocol: Protocol::Icmp,
                    port: None,
                    end_port: None
                },
            ]
        );
        assert_eq!(
            rules[1],
            Rule {
                action: Action::Deny,
                peers: vec![],
                ports: vec![]
            }
        );
    }

    #[test]
    fn regular_documents_take_the_single_pass_and_keep_their_numbers() {
        let text = format!("{DB_ENDPOINT}--- ~\n---\n{}", policy_with_ports("[{port: 80}]"));
        let documents = read_regular(&text).expect("every document is regular");
        let numbers: Vec<usize> = documents.iter().map(|(number, _)| *number).collect();
        assert_eq!(numbers, [1, 3], "empty documents are counted, not returned");
        let set = parse(&[("p.yaml", text)]).unwrap();
        assert_eq!(set.policies[0].origin, Origin::new("p.yaml", 3));
    }

    #[test]
    fn documents_with_the_header_last_are_read_by_the_checking_path() {
        let text = "metadata: {name: p}\nspec: {selector: {}}\nkind: Policy\napiVersion: zt/v1\n";
        assert!(read_regular(text).is_none());
        let set = parse(&[("p.yaml", text)]).unwrap();
        assert_eq!(set.policies[0].name, "p");
    }

    #[test]
    fn omitted_mode_action_and_protocol_take_their_defaults() {
        let set = parse(&[("p.yaml", policy_with_ports("[{port: 80}]"))]).unwrap();
        let policy = &set.policies[0];
        assert_eq!(policy.mode, Mode::Enforce);
        let rule = &policy.ingress.as_ref().unwrap()[0];
        assert_eq!(rule.action, Action::Allow);
        assert_eq!(
            rule.ports,
            [PortRule {
                protocol: Protocol::Tcp,
                port: Some(80),
                end_port: None
            }]
        );
    }

    #[test]
    fn empty_documents_are_skipped_but_counted() {
        let text = format!(
            "---\n{DB_ENDPOINT}---\n---\n# only a comment\n---\n{}",
            policy_with_ports("[]")
        );
        let set = parse(&[("all.yaml", text)]).unwrap();
        assert_eq!(set.endpoints.len(), 1);
        assert_eq!(set.policies[0].origin, Origin::new("all.yaml", 4));
    }

    #[test]
    fn port_out_of_range_names_file_document_and_field() {
        let text = format!(
            "{DB_ENDPOINT}---\n{}",
            policy_with_ports("[{protocol: TCP, port: 5432}, {protocol: TCP, port: 70000}]")
        );
        assert_eq!(
            error_of("db.yaml", &text),
            "policy db.yaml, document 2: spec.ingress[0].ports[1].port 70000 is out of range 1-65535"
        );
    }

    #[test]
    fn port_zero_and_negative_are_out_of_range() {
        let errors = errors_of(&[("p.yaml", &policy_with_ports("[{port: 0}, {port: -1}]"))]);
        assert_eq!(
            errors,
            [
                "policy p.yaml, document 1: spec.ingress[0].ports[0].port 0 is out of range 1-65535",
                "policy p.yaml, document 1: spec.ingress[0].ports[1].port -1 is out of range 1-65535",
            ]
        );
    }

    #[test]
    fn end_port_below_port_is_rejected() {
        assert_eq!(
            error_of(
                "p.yaml",
                &policy_with_ports("[{protocol: UDP, port: 5100, endPort: 5000}]")
            ),
            "policy p.yaml, document 1: spec.ingress[0].ports[0].endPort 5000 is less than port 5100; \
             make endPort at least 5100"
        );
    }

    #[test]
    fn end_port_without_port_is_rejected() {
        assert_eq!(
            error_of(
                "p.yaml",
                &policy_with_ports("[{protocol: TCP, endPort: 90}]")
            ),
            "policy p.yaml, document 1: spec.ingress[0].ports[0].endPort is given without port; \
             put the first port of the range in port"
        );
    }

    #[test]
    fn port_for_icmp_is_rejected() {
        assert_eq!(
            error_of("p.yaml", &policy_with_ports("[{protocol: ICMP, port: 8}]")),
            "policy p.yaml, document 1: spec.ingress[0].ports[0].port is not allowed for ICMP; \
             only TCP, UDP and SCTP have ports, so remove it"
        );
    }

    #[test]
    fn unknown_field_is_rejected_with_its_path_and_position() {
        assert_eq!(
            error_of("p.yaml", &policy_with_ports("[{protocol: TCP, prot: 80}]")),
            "policy p.yaml, document 1: spec.ingress[0].ports[0]: unknown field `prot`, expected one of \
             `protocol`, `port`, `endPort` (line 8, column 31)"
        );
    }

    #[test]
    fn unknown_protocol_is_rejected() {
        assert_eq!(
            error_of("p.yaml", &policy_with_ports("[{protocol: GRE}]")),
            "policy p.yaml, document 1: spec.ingress[0].ports[0].protocol: unknown variant `GRE`, expected one \
             of `TCP`, `UDP`, `SCTP`, `ICMP`, `ICMPv6` (line 8, column 26)"
        );
    }

    #[test]
    fn missing_selector_is_rejected() {
        let text = "apiVersion: zt/v1\nkind: Policy\nmetadata: {name: p}\nspec:\n  ingress: []\n";
        assert_eq!(
            error_of("p.yaml", text),
            "policy p.yaml, document 1: spec: missing field `selector` (line 5, column 3)"
        );
    }

    #[test]
    fn bad_cidr_is_rejected() {
        let text = "apiVersion: zt/v1\nkind: Policy\nmetadata: {name: p}\nspec:\n  selector: {}\n  egress:\n    \
                    - to: [{cidr: 10.0.0.0/33}]\n";
        assert_eq!(
            error_of("p.yaml", text),
            "policy p.yaml, document 1: spec.egress[0].to[0].cidr \"10.0.0.0/33\" is not an IP address or CIDR; \
             write e.g. 10.0.1.5, fd00::5 or 10.0.2.0/24"
        );
    }

    #[test]
    fn cidr_with_host_bits_is_rejected() {
        let text = "apiVersion: zt/v1\nkind: Policy\nmetadata: {name: p}\nspec:\n  selector: {}\n  egress:\n    \
                    - to: [{cidr: 10.1.2.3/16}]\n";
        assert_eq!(
            error_of("p.yaml", text),
            "policy p.yaml, document 1: spec.egress[0].to[0].cidr 10.1.2.3/16 has host bits set; write 10.1.0.0/16"
        );
    }

    #[test]
    fn except_outside_cidr_is_rejected() {
        let text = "apiVersion: zt/v1\nkind: Policy\nmetadata: {name: p}\nspec:\n  selector: {}\n  ingress:\n    \
                    - from: [{cidr: 192.168.0.0/16, except: [192.168.9.0/24, 10.0.0.0/8, 192.168.0.0/16]}]\n";
        assert_eq!(
            errors_of(&[("p.yaml", text)]),
            [
                "policy p.yaml, document 1: spec.ingress[0].from[0].except[1] 10.0.0.0/8 is not strictly inside \
                 cidr 192.168.0.0/16; list only prefixes inside the cidr",
                "policy p.yaml, document 1: spec.ingress[0].from[0].except[2] 192.168.0.0/16 is not strictly \
                 inside cidr 192.168.0.0/16; list only prefixes inside the cidr",
            ]
        );
    }

    #[test]
    fn peer_needs_exactly_one_form() {
        let text = "apiVersion: zt/v1\nkind: Policy\nmetadata: {name: p}\nspec:\n  selector: {}\n  ingress:\n    \
                    - from: [{}, {entity: host, cidr: 10.0.0.0/8}, {except: [10.1.0.0/16]}]\n";
        assert_eq!(
            errors_of(&[("p.yaml", text)]),
            [
                "policy p.yaml, document 1: spec.ingress[0].from[0] is empty; give one of selector, cidr or entity",
                "policy p.yaml, document 1: spec.ingress[0].from[1] gives both cidr and entity; give exactly one \
                 of selector, cidr or entity per list item",
                "policy p.yaml, document 1: spec.ingress[0].from[2].except is only allowed together with cidr; \
                 add cidr or remove except",
            ]
        );
    }

    #[test]
    fn to_in_an_ingress_rule_is_rejected() {
        let text = "apiVersion: zt/v1\nkind: Policy\nmetadata: {name: p}\nspec:\n  selector: {}\n  ingress:\n    \
                    - to: [{entity: world}]\n";
        assert_eq!(
            error_of("p.yaml", text),
            "policy p.yaml, document 1: spec.ingress[0].to is not allowed in an ingress rule; use from"
        );
    }

    #[test]
    fn bad_label_key_and_value_are_rejected() {
        let text = "apiVersion: zt/v1\nkind: Endpoint\nmetadata: {name: e}\nspec:\n  addresses: [10.0.0.1]\n  \
                    labels: {\"App Name\": web, tier: \"-front\"}\n";
        assert_eq!(
            errors_of(&[("e.yaml", text)]),
            [
                "policy e.yaml, document 1: spec.labels key \"App Name\" is not a valid label key; use at most 63 \
                 letters, digits, '-', '_' or '.', starting and ending with a letter or digit, optionally after a \
                 lowercase DNS prefix and '/' (e.g. app or example.com/tier)",
                "policy e.yaml, document 1: spec.labels value \"-front\" of label tier is not a valid label value; \
                 use at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit, or \
                 leave it empty",
            ]
        );
    }

    #[test]
    fn bad_name_is_rejected() {
        let text = policy_with_ports("[]").replace("db-ingress", "DB_Ingress");
        assert_eq!(
            error_of("p.yaml", &text),
            "policy p.yaml, document 1: metadata.name \"DB_Ingress\" is not a valid name; use lowercase letters, \
             digits, '-' and '.', starting and ending with a letter or digit (at most 253 characters)"
        );
    }

    #[test]
    fn default_route_as_endpoint_address_is_rejected() {
        let text = DB_ENDPOINT.replace("10.0.2.0/24", "0.0.0.0/0");
        assert_eq!(
            error_of("db.yaml", &text),
            "policy db.yaml, document 1: spec.addresses[2] 0.0.0.0/0 is the default route, which always belongs \
             to world; remove it and use entity: world in policies"
        );
    }

    #[test]
    fn duplicate_policy_names_are_rejected() {
        let policy = policy_with_ports("[]");
        assert_eq!(
            errors_of(&[
                ("a.yaml", &policy),
                ("b.yaml", &format!("{DB_ENDPOINT}---\n{policy}"))
            ]),
            [
                "policy b.yaml, document 2: metadata.name db-ingress is already used by the policy in a.yaml, \
                 document 1; give each policy a unique name"
            ]
        );
    }

    #[test]
    fn duplicate_endpoint_names_are_rejected_within_a_namespace_only() {
        let other = DB_ENDPOINT.replace("10.0.1.5, \"fd00::5\", 10.0.2.0/24", "10.0.9.9");
        let in_namespace = other.replace("{name: db-1}", "{name: db-1, namespace: shop}");
        assert!(parse(&[("a.yaml", DB_ENDPOINT), ("b.yaml", &in_namespace)]).is_ok());
        assert_eq!(
            errors_of(&[("a.yaml", DB_ENDPOINT), ("b.yaml", &other)]),
            [
                "policy b.yaml, document 1: metadata.name db-1 is already used by the endpoint in a.yaml, \
                 document 1; give each endpoint a unique name"
            ]
        );
    }

    #[test]
    fn address_claimed_with_different_labels_is_rejected() {
        let same_labels = DB_ENDPOINT.replace("db-1", "db-2");
        assert!(parse(&[("a.yaml", DB_ENDPOINT), ("b.yaml", &same_labels)]).is_ok());
        let other_labels = "apiVersion: zt/v1\nkind: Endpoint\nmetadata: {name: cache}\nspec:\n  \
                            addresses: [10.0.7.7, 10.0.1.5]\n  labels: {app: cache}\n";
        assert_eq!(
            errors_of(&[("a.yaml", DB_ENDPOINT), ("b.yaml", other_labels)]),
            [
                "policy b.yaml, document 1: spec.addresses[1] 10.0.1.5/32 is already claimed by endpoint db-1 \
                 (a.yaml, document 1) with different labels; give each address to one endpoint, or give both the \
                 same labels"
            ]
        );
    }

    #[test]
    fn yaml_syntax_error_reports_line_and_column() {
        let text = format!(
            "{DB_ENDPOINT}---\napiVersion: zt/v1\nkind: Policy\nmetadata: {{name: p\nspec: {{}}\n"
        );
        assert_eq!(
            error_of("p.yaml", &text),
            "policy p.yaml, document 2: invalid YAML at line 11, column 5: did not find expected ',' or '}', \
             while parsing a flow mapping at line 10 column 11"
        );
    }

    #[test]
    fn documents_before_a_syntax_error_are_still_checked() {
        let text = format!("{}---\nkind: [\n", policy_with_ports("[{port: 99999}]"));
        let errors = errors_of(&[("p.yaml", &text)]);
        assert_eq!(errors.len(), 2, "{errors:#?}");
        assert!(
            errors[0].starts_with("policy p.yaml, document 2: invalid YAML at line "),
            "{}",
            errors[0]
        );
        assert_eq!(
            errors[1],
            "policy p.yaml, document 1: spec.ingress[0].ports[0].port 99999 is out of range 1-65535"
        );
    }

    #[test]
    fn kubernetes_network_policy_is_not_supported_yet() {
        let text = format!(
            "{DB_ENDPOINT}---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: x}}\n"
        );
        assert_eq!(
            error_of("k8s.yaml", &text),
            "policy k8s.yaml, document 2: NetworkPolicy documents of apiVersion networking.k8s.io/v1 are not \
             supported yet; write the policy as apiVersion zt/v1 kind Policy for now"
        );
    }

    #[test]
    fn unknown_api_version_kind_and_shapes_are_rejected() {
        let sources = [
            ("a.yaml", "apiVersion: zt/v2\nkind: Policy\n"),
            ("b.yaml", "apiVersion: zt/v1\nkind: Rule\n"),
            ("c.yaml", "kind: Policy\n"),
            ("d.yaml", "apiVersion: zt/v1\n"),
            ("e.yaml", "- just\n- a list\n"),
        ];
        assert_eq!(
            errors_of(&sources),
            [
                "policy a.yaml, document 1: apiVersion zt/v2 is unknown; use apiVersion: zt/v1",
                "policy b.yaml, document 1: kind Rule is not a zt/v1 kind; use Endpoint or Policy",
                "policy c.yaml, document 1: apiVersion is missing; add apiVersion: zt/v1",
                "policy d.yaml, document 1: kind is missing; add kind: Endpoint or kind: Policy",
                "policy e.yaml, document 1: the document is not a mapping; write apiVersion, kind, metadata and spec",
            ]
        );
    }

    #[test]
    fn all_errors_of_a_push_are_reported_together() {
        let bad_ports = policy_with_ports("[{port: 70000}, {protocol: ICMP, port: 1}]");
        let bad_endpoint = DB_ENDPOINT
            .replace("10.0.2.0/24", "10.0.2.1/24")
            .replace("app: db", "app: \"d b\"");
        let sources = [
            ("a.yaml", bad_ports.as_str()),
            ("b.yaml", &bad_endpoint),
            ("c.yaml", "apiVersion: v9\nkind: X\n"),
        ];
        let errors = errors_of(&sources);
        assert_eq!(errors.len(), 5, "{errors:#?}");
        assert!(
            errors[0].starts_with("policy a.yaml, document 1: spec.ingress[0].ports[0].port 70000")
        );
        assert!(errors[1].starts_with(
            "policy a.yaml, document 1: spec.ingress[0].ports[1].port is not allowed"
        ));
        assert!(
            errors[2].starts_with(
                "policy b.yaml, document 1: spec.addresses[2] 10.0.2.1/24 has host bits"
            )
        );
        assert!(errors[3].starts_with("policy b.yaml, document 1: spec.labels value \"d b\""));
        assert!(errors[4].starts_with("policy c.yaml, document 1: apiVersion v9 is unknown"));
    }

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> Self {
            let path = std::env::temp_dir().join(format!("zt-policy-{tag}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&path);
            fs::create_dir_all(&path).unwrap();
            Self(path)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn directory_loads_yaml_files_in_name_order() {
        let dir = TempDir::new("dir");
        fs::write(dir.0.join("b-policy.yml"), policy_with_ports("[]")).unwrap();
        fs::write(
            dir.0.join("a-endpoints.yaml"),
            format!("{DB_ENDPOINT}---\n"),
        )
        .unwrap();
        fs::write(dir.0.join("notes.txt"), "not policy").unwrap();
        fs::write(dir.0.join(".#a-endpoints.yaml"), "editor lock file").unwrap();
        fs::create_dir(dir.0.join("sub.yaml")).unwrap();

        let sources = load_path(&dir.0).unwrap();
        let names: Vec<&str> = sources
            .iter()
            .map(|(name, _)| name.rsplit('/').next().unwrap())
            .collect();
        assert_eq!(names, ["a-endpoints.yaml", "b-policy.yml"]);
        let set = parse(&sources).unwrap();
        assert_eq!((set.endpoints.len(), set.policies.len()), (1, 1));
        assert_eq!(
            set.policies[0].origin.source,
            dir.0.join("b-policy.yml").display().to_string()
        );
    }

    #[test]
    fn single_file_loads_all_its_documents() {
        let dir = TempDir::new("file");
        let file = dir.0.join("all.yaml");
        fs::write(
            &file,
            format!("{DB_ENDPOINT}---\n{}", policy_with_ports("[]")),
        )
        .unwrap();
        let set = parse(&load_path(&file).unwrap()).unwrap();
        assert_eq!((set.endpoints.len(), set.policies.len()), (1, 1));
        assert_eq!(
            set.policies[0].origin,
            Origin::new(file.display().to_string(), 2)
        );
    }

    #[test]
    fn unreadable_paths_and_empty_directories_are_errors() {
        let dir = TempDir::new("empty");
        let missing = dir.0.join("missing.yaml");
        let errors = load_paths(&[missing.clone(), dir.0.clone()]).unwrap_err();
        let errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(errors.len(), 2);
        assert!(
            errors[0].starts_with(&format!("policy {}: cannot read it (", missing.display())),
            "{}",
            errors[0]
        );
        assert_eq!(
            errors[1],
            format!(
                "policy {}: the directory has no *.yaml or *.yml files; pass a directory that holds policy files",
                dir.0.display()
            )
        );
    }
}
