//! Parse and validate: `zt/v1` YAML sources and Kubernetes objects -> [`PolicySet`], or every
//! error at once.
//!
//! First stage of a push (`ztctl policy apply` -> agent -> parse -> compile -> maps), in
//! four parts, one file each:
//!
//! 1. [`dispatch`]: each source is a multi-document YAML stream; every document goes, by its
//!    `apiVersion` and `kind`, into its typed schema. Well-formed sources are read in one
//!    pass; a source with any problem is read again by the checking path, which reports it.
//! 2. [`schema`]: the serde structs the documents deserialize into (unknown fields are
//!    errors, and serde reports the field path and line).
//! 3. [`fields`]: each schema document checked field by field into the
//!    [`model`](super::model) types.
//! 4. [`set`]: the whole set checked across documents (unique names, no address claimed
//!    twice).
//!
//! Kubernetes objects (Namespace, Pod, NetworkPolicy, List) take a side path after
//! dispatch: [`kubernetes`] reads them leniently and translates them into the same model.
//!
//! [`cache`] makes a push read only the sources whose text changed since the last one, with
//! the very same result.
//!
//! Nothing stops at the first problem: the caller gets every error of the push, so one edit
//! cycle fixes them all. Reading files is [`load`](super::load)'s job.

// A `PolicyError` is ~140 bytes; it is built only on a failed push and then lives in a Vec,
// so boxing it would cost clarity for no measurable gain.
#![allow(clippy::result_large_err)]

mod cache;
mod dispatch;
mod fields;
mod kubernetes;
mod schema;
mod set;

pub use cache::{ParseCache, parse_cached};
pub use dispatch::API_VERSION;
#[cfg(test)]
pub(super) use dispatch::regular_document_numbers;
#[cfg(test)]
pub(super) use dispatch::{WITHOUT_JSON_PATH, read_kubernetes_json};
// Loading lived in this module before it got its own; `policy::parse::load_path` still works.
pub use super::load::{load_path, load_paths};

use super::error::PolicyError;
use super::model::{Origin, PolicySet};
use dispatch::Document;
use fields::Checker;
use std::sync::Arc;

/// Parses and validates `(source name, YAML text)` pairs into one policy set. Returns every
/// error found in any source; a push with errors must not be applied at all.
pub fn parse<N: AsRef<str>, T: AsRef<str>>(sources: &[(N, T)]) -> Result<PolicySet, Vec<PolicyError>> {
    let mut set = PolicySet::default();
    let mut errors = Vec::new();
    let mut objects = kubernetes::Objects::default();
    for (name, text) in sources {
        parse_source(name.as_ref(), text.as_ref(), &mut set, &mut objects, &mut errors);
    }
    objects.finish(&mut set, &mut errors);
    set::check_unique_names(&set, &mut errors);
    set::check_address_claims(&set, &mut errors);
    if errors.is_empty() { Ok(set) } else { Err(errors) }
}

/// One source: a single pass when one takes the whole source (a Kubernetes object as JSON,
/// or regular `zt/v1` YAML), else the checking path (which reports the problems); then each
/// document's fields are checked into the model, in order.
fn parse_source(
    name: &str,
    text: &str,
    set: &mut PolicySet,
    objects: &mut kubernetes::Objects,
    errors: &mut Vec<PolicyError>,
) {
    let fast = dispatch::read_kubernetes_json(text).or_else(|| dispatch::read_regular(text));
    let documents: Vec<(usize, Result<Document, PolicyError>)> = match fast {
        Some(documents) => documents.into_iter().map(|(number, doc)| (number, Ok(doc))).collect(),
        None => dispatch::read_checked(name, text, errors),
    };
    for (number, document) in documents {
        let origin = Origin::new(name, number);
        let mut check = Checker { origin: &origin, errors };
        match document {
            Ok(Document::Endpoint(doc)) => set.endpoints.push(Arc::new(check.endpoint(doc))),
            Ok(Document::Policy(doc)) => set.policies.push(Arc::new(check.policy(doc))),
            Ok(Document::Kubernetes(object)) => objects.add(&origin, object, set, errors),
            Ok(Document::Empty) => {}
            Err(error) => errors.push(error),
        }
    }
}
