//! `v1 List`: what `kubectl get pods,namespaces,networkpolicies -A -o yaml` prints. Each
//! item is read like a document of its own, its fields reported as `items[3].spec...`.

use super::{Checker, KubeKind, Object, unknown_kind};
use crate::policy::error::PolicyError;

/// Item `index` as a typed object with its path prefix (`items[3].`), or `None` if it is
/// reported as bad.
pub(super) fn item(check: &mut Checker, index: usize, item: serde_norway::Value) -> Option<(String, Object)> {
    let path = format!("items[{index}]");
    let text = |field: &str| item.get(field).and_then(|v| v.as_str()).unwrap_or("").to_string();
    let (api_version, kind) = (text("apiVersion"), text("kind"));
    let known = KubeKind::classify(&api_version, &kind).and_then(Result::ok);
    let Some(kind) = known.filter(|k| *k != KubeKind::List) else {
        check.report(path, unknown_kind(&api_version, &kind));
        return None;
    };
    match Object::deserialize(kind, item) {
        Ok(object) => Some((format!("{path}."), object)),
        Err(error) => {
            check.errors.push(PolicyError::Schema {
                origin: check.origin.clone(),
                message: format!("{path}: {}", zt_api::text::one_line(&error.to_string())),
                line: None,
                column: None,
            });
            None
        }
    }
}
