//! Dispatch: which schema each document of a source goes into, by its `apiVersion` and
//! `kind`, and serde errors turned into [`PolicyError`]s.
//!
//! The fast path, [`read_regular`], reads a well-formed source in one pass: the
//! [`Document`] visitor reads `apiVersion` and `kind` first and deserializes `metadata` and
//! `spec` straight into the [`schema`](super::schema) of that kind. Any source it does not
//! take whole goes to [`read_checked`], the checking path, which reads the source twice
//! (plain YAML values to find syntax errors and classify each document whatever its key
//! order, then the strict schema) so that every problem is reported as precisely as serde
//! can: file, document number, field path, line and column.

use std::fmt;

use serde::de::{self, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use zt_api::text::one_line;

use super::kubernetes::{self, KubeKind};
use super::schema::{EndpointDocument, EndpointMetadata, EndpointSpec, PolicyDocument, PolicyMetadata, PolicySpec};
use crate::policy::error::PolicyError;
use crate::policy::model::Origin;

/// The native format's apiVersion.
pub const API_VERSION: &str = "zt/v1";

/// The kinds a document can have: `zt/v1` ones, or a Kubernetes object.
#[derive(Clone, Copy)]
enum Kind {
    Endpoint,
    Policy,
    Kubernetes(KubeKind),
}

/// The single pass every well-formed source takes: each document straight into its typed
/// schema, dispatched on `apiVersion`/`kind` as they are read. `None` as soon as any
/// document is not a regular `zt/v1` document (see [`Document`]) or fails to
/// deserialize; the source is then read again by [`read_checked`], which reports exactly
/// what is wrong. The values' own checks (ports, addresses, labels) are not done here.
pub(super) fn read_regular(text: &str) -> Option<Vec<(usize, Document)>> {
    let mut documents = Vec::new();
    for (index, document) in serde_norway::Deserializer::from_str(text).enumerate() {
        match Document::deserialize(document).ok()? {
            Document::Empty => {}
            document => documents.push((index + 1, document)),
        }
    }
    Some(documents)
}

/// The fast path for a Kubernetes object written as compact JSON, which is how the cluster
/// watchers hand over every pod, namespace and NetworkPolicy: read by serde_json, the
/// document's header first, then the object into its schema. JSON is YAML, and for JSON text
/// without escapes or tabs both readers make the same calls into the same schema (the same
/// scalars, last of two equal map keys wins in both, a repeated field is an error in both),
/// so the object is the one the YAML path would give, at a tenth of the cost; that path
/// read each object twice (plain values to classify it, then the schema) and was two thirds
/// of a cluster push. `None` for anything else, or on any error: the YAML path then reads
/// the source and reports what is wrong exactly as before.
pub(in crate::policy) fn read_kubernetes_json(text: &str) -> Option<Vec<(usize, Document)>> {
    #[derive(Deserialize)]
    struct Header {
        #[serde(rename = "apiVersion")]
        api_version: String,
        kind: String,
    }
    #[cfg(test)]
    if WITHOUT_JSON_PATH.get() {
        return None;
    }
    if !text.trim_start().starts_with('{') || text.contains(['\\', '\t']) {
        return None;
    }
    let header = match leading_header(text) {
        Some((api_version, kind)) => (api_version.to_string(), kind.to_string()),
        None => {
            let header: Header = serde_json::from_str(text).ok()?;
            (header.api_version, header.kind)
        }
    };
    // A List's items stay plain YAML values, read on the YAML path.
    let kind = KubeKind::classify(&header.0, &header.1)?.ok().filter(|k| !matches!(k, KubeKind::List))?;
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let object = kubernetes::Object::deserialize(kind, &mut deserializer).ok()?;
    deserializer.end().ok()?;
    Some(vec![(1, Document::Kubernetes(object))])
}

/// `apiVersion` and `kind` of a compact JSON object that starts with exactly these two
/// members (as objects serialized with sorted keys do, the watchers' among them) and names
/// neither again; `None` for anything else, which the caller reads in full instead. Reading
/// the header this way spares a pass over the whole object (a third of reading a pod).
fn leading_header(text: &str) -> Option<(&str, &str)> {
    let rest = text.trim_start().strip_prefix(r#"{"apiVersion":""#)?;
    let (api_version, rest) = rest.split_once('"')?;
    let (kind, rest) = rest.strip_prefix(r#","kind":""#)?.split_once('"')?;
    // A repeated member would be an error of the full read: leave such objects to it.
    let repeated = rest.contains(r#""apiVersion""#) || rest.contains(r#""kind""#);
    (rest.starts_with(',') && !repeated).then_some((api_version, kind))
}

#[cfg(test)]
thread_local! {
    /// Tests compare the JSON path with the YAML path on the same text.
    pub(in crate::policy) static WITHOUT_JSON_PATH: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
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
    Kubernetes(kubernetes::Object),
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
            Some(Body::Endpoint(Some(metadata), Some(spec))) => {
                Ok(Document::Endpoint(EndpointDocument { _api_version: IgnoredAny, _kind: IgnoredAny, metadata, spec }))
            }
            Some(Body::Policy(Some(metadata), Some(spec))) => {
                Ok(Document::Policy(PolicyDocument { _api_version: IgnoredAny, _kind: IgnoredAny, metadata, spec }))
            }
            _ => Err(irregular()),
        }
    }
}

/// `metadata` and `spec` of the kind the header named, as far as read.
enum Body {
    Endpoint(Option<EndpointMetadata>, Option<EndpointSpec>),
    Policy(Option<PolicyMetadata>, Option<PolicySpec>),
}

/// The checking path, for a source the single pass gave up on: its documents by number, each
/// typed or with its schema error, in order; syntax and header errors go to `errors`. pass 1 reads every document
/// as a plain YAML value, to find syntax errors (which win over any schema error of the same
/// document), skip empty documents and dispatch on `apiVersion`/`kind` whatever the key
/// order; pass 2 deserializes the `zt/v1` documents into the strict schema (and Kubernetes
/// objects into their lenient one), which keeps
/// serde's field paths and line numbers in its errors (a plain value would have lost them).
pub(super) fn read_checked(
    name: &str,
    text: &str,
    errors: &mut Vec<PolicyError>,
) -> Vec<(usize, Result<Document, PolicyError>)> {
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
    let documents = kinds.into_iter().zip(serde_norway::Deserializer::from_str(text));
    let mut out = Vec::new();
    for (index, (kind, document)) in documents.enumerate() {
        let typed = match kind {
            None => continue,
            Some(Kind::Endpoint) => EndpointDocument::deserialize(document).map(Document::Endpoint),
            Some(Kind::Policy) => PolicyDocument::deserialize(document).map(Document::Policy),
            Some(Kind::Kubernetes(kind)) => kubernetes::Object::deserialize(kind, document).map(Document::Kubernetes),
        };
        let origin = || Origin::new(name, index + 1);
        out.push((index + 1, typed.map_err(|error| schema_error(origin(), &error))));
    }
    out
}

/// Dispatches on `apiVersion` and `kind`.
fn classify(origin: &Origin, value: &serde_norway::Value) -> Result<Kind, PolicyError> {
    let origin = || origin.clone();
    let Some(mapping) = value.as_mapping() else {
        return Err(PolicyError::NotAMapping { origin: origin() });
    };
    let field = |name: &str| mapping.get(name).map(scalar_text);
    let api_version = field("apiVersion").ok_or_else(|| PolicyError::MissingApiVersion { origin: origin() })?;
    let kind = field("kind").ok_or_else(|| PolicyError::MissingKind { origin: origin() })?;
    // Both are quoted in errors: kept to one line whatever was written.
    let quoted = |s: &str| one_line(s).into_owned();
    if let Some(kubernetes) = KubeKind::classify(&api_version, &kind) {
        return kubernetes.map(Kind::Kubernetes).map_err(|problem| PolicyError::Invalid {
            origin: origin(),
            path: "kind".into(),
            problem,
        });
    }
    if api_version != API_VERSION {
        return Err(PolicyError::UnknownApiVersion { origin: origin(), api_version: quoted(&api_version) });
    }
    match kind.as_str() {
        "Endpoint" => Ok(Kind::Endpoint),
        "Policy" => Ok(Kind::Policy),
        _ => Err(PolicyError::UnknownKind { origin: origin(), kind: quoted(&kind) }),
    }
}

/// A YAML scalar as text (numbers and booleans as written), anything else as YAML.
fn scalar_text(value: &serde_norway::Value) -> String {
    match value {
        serde_norway::Value::String(s) => s.clone(),
        other => serde_norway::to_string(other).unwrap_or_default().trim_end().to_string(),
    }
}

/// serde_norway's message without its own " at line L column C", which the error repeats in a
/// fixed format.
fn message_and_position(error: &serde_norway::Error) -> (String, Option<usize>, Option<usize>) {
    // serde's messages quote the input (an unknown variant, a field name): one line.
    let message = one_line(&error.to_string()).into_owned();
    match error.location() {
        Some(location) => {
            let needle = format!(" at line {} column {}", location.line(), location.column());
            (message.replacen(&needle, "", 1), Some(location.line()), Some(location.column()))
        }
        None => (message, None, None),
    }
}

fn syntax_error(origin: Origin, error: &serde_norway::Error) -> PolicyError {
    let (problem, line, column) = message_and_position(error);
    PolicyError::Syntax { origin, line, column, problem }
}

fn schema_error(origin: Origin, error: &serde_norway::Error) -> PolicyError {
    let (message, line, column) = message_and_position(error);
    PolicyError::Schema { origin, message, line, column }
}

/// The numbers of the documents [`read_regular`] returns, or `None` if it gives up.
#[cfg(test)]
pub(in crate::policy) fn regular_document_numbers(text: &str) -> Option<Vec<usize>> {
    read_regular(text).map(|documents| documents.into_iter().map(|(number, _)| number).collect())
}

#[cfg(test)]
mod header_tests {
    use super::leading_header;

    #[test]
    fn the_leading_header_is_read_only_when_it_is_the_whole_story() {
        let pod = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"a"}}"#;
        assert_eq!(leading_header(pod), Some(("v1", "Pod")));
        assert_eq!(leading_header(&format!("  {pod}")), Some(("v1", "Pod")));
        for other in [
            // Another order, a repeated member, a nested `kind`, nothing after the header,
            // spaces: the caller reads these in full.
            r#"{"kind":"Pod","apiVersion":"v1","metadata":{}}"#,
            r#"{"apiVersion":"v1","kind":"Pod","kind":"Namespace"}"#,
            r#"{"apiVersion":"v1","kind":"Pod","apiVersion":"zt/v1"}"#,
            r#"{"apiVersion":"v1","kind":"Pod","metadata":{"labels":{"kind":"x"}}}"#,
            r#"{"apiVersion":"v1","kind":"Pod"}"#,
            r#"{ "apiVersion": "v1", "kind": "Pod", "metadata": {} }"#,
            r#"{"apiVersion":"v1"}"#,
        ] {
            assert_eq!(leading_header(other), None, "{other}");
        }
    }
}
