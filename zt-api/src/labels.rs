//! Label sets: the names that security identities are made of.
//!
//! A [`Labels`] value is a sorted `key=value` map such as `app=db,env=prod`. Endpoints carry
//! user labels (checked against the Kubernetes label syntax, so sets written for a cluster
//! mean the same here); the agent adds *reserved* labels for identities it creates itself:
//! `reserved:host`, `reserved:world` and `cidr:<prefix>`. The `:` in those keys is not
//! allowed in a user key, so no endpoint can impersonate the host, the world or a CIDR.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// Label key marking this machine's identity.
pub const RESERVED_HOST: &str = "reserved:host";
/// Label key marking the world identity (addresses no more specific prefix claims).
pub const RESERVED_WORLD: &str = "reserved:world";
/// Key prefix of the label that names a CIDR identity, e.g. `cidr:10.0.0.0/8`.
pub const CIDR_PREFIX: &str = "cidr:";
/// Label key holding a Kubernetes pod's namespace (`k8s:namespace=shop`).
pub const K8S_NAMESPACE: &str = "k8s:namespace";
/// Label key holding a Kubernetes pod's name (`k8s:pod=web-1`); with the namespace it makes
/// every pod its own identity.
pub const K8S_POD: &str = "k8s:pod";
/// Label key telling the two identities of a dual-stack pod apart (`k8s:family=ipv4` or
/// `ipv6`): an ipBlock is judged per address, and one family's block must not admit the
/// other family's traffic.
pub const K8S_FAMILY: &str = "k8s:family";
/// Key prefix of the labels a pod inherits from its namespace, e.g.
/// `k8s.ns:kubernetes.io/metadata.name=shop`: namespaceSelectors match these.
pub const K8S_NAMESPACE_LABEL_PREFIX: &str = "k8s.ns:";

/// `namespace/name` when `labels` (as API replies and flow records carry them) are a
/// Kubernetes pod's, so output can name the pod.
pub fn pod_name(labels: &BTreeMap<String, String>) -> Option<String> {
    Some(format!("{}/{}", labels.get(K8S_NAMESPACE)?, labels.get(K8S_POD)?))
}

/// Longest label name (the part after an optional `prefix/`) and longest label value.
const MAX_NAME_LEN: usize = 63;
/// Longest DNS subdomain, used as a key prefix and for object names.
const MAX_SUBDOMAIN_LEN: usize = 253;

/// A sorted set of `key=value` labels.
///
/// Displayed and parsed as `k=v,k2=v2`; a label with an empty value is displayed as its
/// key alone (that is how the reserved labels read: `reserved:host`), and `k` parses back to
/// it. Serialized with serde as a plain map so API output reads `{"app": "db"}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Labels(BTreeMap<String, String>);

impl Labels {
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a set from pairs without checking the syntax (for reserved labels and for
    /// input that was already validated).
    pub fn from_pairs<K, V>(pairs: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: Into<String>,
        V: Into<String>,
    {
        Self(pairs.into_iter().map(|(k, v)| (k.into(), v.into())).collect())
    }

    /// Parses `k=v,k2=v2` (the `--labels` syntax) and checks every key and value against
    /// the Kubernetes label rules. An empty string is the empty set.
    pub fn parse(text: &str) -> Result<Self, LabelError> {
        let mut labels = BTreeMap::new();
        if text.trim().is_empty() {
            return Ok(Self(labels));
        }
        for item in text.split(',') {
            let item = item.trim();
            if item.is_empty() {
                return Err(LabelError::EmptyItem { text: text.to_string() });
            }
            let (key, value) = item.split_once('=').unwrap_or((item, ""));
            let (key, value) = (key.trim(), value.trim());
            validate_key(key)?;
            validate_value(key, value)?;
            if labels.insert(key.to_string(), value.to_string()).is_some() {
                return Err(LabelError::DuplicateKey { key: key.to_string() });
            }
        }
        Ok(Self(labels))
    }

    /// The host identity's labels: the operator's labels plus `reserved:host`.
    pub fn host(user: &Labels) -> Self {
        let mut labels = user.clone();
        labels.insert(RESERVED_HOST, "");
        labels
    }

    /// The world identity's labels.
    pub fn world() -> Self {
        Self::from_pairs([(RESERVED_WORLD, "")])
    }

    /// The labels of the identity a policy CIDR prefix gets.
    pub fn cidr(prefix: IpNet) -> Self {
        Self::from_pairs([(format!("{CIDR_PREFIX}{prefix}"), String::new())])
    }

    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.0.insert(key.into(), value.into());
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// True when every label of `subset` is also in `self` with the same value: the
    /// matchLabels test (an empty `subset` matches everything).
    pub fn contains_all(&self, subset: &Labels) -> bool {
        subset.iter().all(|(k, v)| self.get(k) == Some(v))
    }
}

impl fmt::Display for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&text(&self.0))
    }
}

/// `k=v,k2=v2` as [`Labels`] display it (a label with an empty value as its key alone), for
/// labels as API replies and flow records carry them; empty for no labels.
pub fn text(labels: &BTreeMap<String, String>) -> String {
    labels.iter().map(|(k, v)| if v.is_empty() { k.clone() } else { format!("{k}={v}") }).collect::<Vec<_>>().join(",")
}

impl FromStr for Labels {
    type Err = LabelError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Why a label or label list was rejected. Each message names the fix, so the caller only
/// has to say where the label came from.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    #[error(
        "key {key:?} is not a valid label key; use at most 63 letters, digits, '-', '_' or '.', \
         starting and ending with a letter or digit, optionally after a lowercase DNS prefix and '/' \
         (e.g. app or example.com/tier)"
    )]
    InvalidKey { key: String },
    #[error(
        "value {value:?} of label {key} is not a valid label value; use at most 63 letters, digits, \
         '-', '_' or '.', starting and ending with a letter or digit, or leave it empty"
    )]
    InvalidValue { key: String, value: String },
    #[error("label {key} is given twice; give each key once")]
    DuplicateKey { key: String },
    #[error("label list {text:?} has an empty item; write k=v,k2=v2")]
    EmptyItem { text: String },
}

/// Checks a label key: `[prefix/]name`, where the prefix is a DNS subdomain.
pub fn validate_key(key: &str) -> Result<(), LabelError> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    let prefix_ok = prefix.is_none_or(is_dns_subdomain);
    if prefix_ok && is_label_name(name) { Ok(()) } else { Err(LabelError::InvalidKey { key: key.to_string() }) }
}

/// Checks a label value: empty, or a label name.
pub fn validate_value(key: &str, value: &str) -> Result<(), LabelError> {
    if value.is_empty() || is_label_name(value) {
        Ok(())
    } else {
        Err(LabelError::InvalidValue { key: key.to_string(), value: value.to_string() })
    }
}

/// Kubernetes "qualified name" part: 1-63 of `[A-Za-z0-9_.-]`, alphanumeric at both ends.
fn is_label_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_NAME_LEN
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && bytes.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// RFC 1123 subdomain as Kubernetes checks it: lowercase, dot-separated labels of
/// `[a-z0-9-]` with alphanumeric ends, at most 253 characters. Object names follow the same
/// rule, so the policy parser uses it for `metadata.name`.
pub fn is_dns_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_SUBDOMAIN_LEN
        && name.split('.').all(|part| {
            let bytes = part.as_bytes();
            !bytes.is_empty()
                && is_lower_alnum(bytes[0])
                && is_lower_alnum(bytes[bytes.len() - 1])
                && bytes.iter().all(|&b| is_lower_alnum(b) || b == b'-')
        })
}

fn is_lower_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_display_sorted_and_parse_back() {
        let labels = Labels::parse("env=prod, app=db").unwrap();
        assert_eq!(labels.to_string(), "app=db,env=prod");
        assert_eq!(labels.to_string().parse::<Labels>().unwrap(), labels);
    }

    #[test]
    fn empty_value_displays_as_bare_key() {
        let labels = Labels::parse("canary,app=web").unwrap();
        assert_eq!(labels.get("canary"), Some(""));
        assert_eq!(labels.to_string(), "app=web,canary");
    }

    #[test]
    fn reserved_labels_are_not_valid_user_keys() {
        assert!(Labels::parse("reserved:host").is_err());
        assert_eq!(Labels::host(&Labels::parse("role=gw").unwrap()).to_string(), "reserved:host,role=gw");
        assert_eq!(Labels::world().to_string(), "reserved:world");
        assert_eq!(Labels::cidr("10.0.0.0/8".parse().unwrap()).to_string(), "cidr:10.0.0.0/8");
    }

    #[test]
    fn kubernetes_key_syntax() {
        for ok in ["app", "a", "app.kubernetes.io/name", "example.com/tier", "A_b-c.d", "x9"] {
            assert!(validate_key(ok).is_ok(), "{ok}");
        }
        let long = "a".repeat(64);
        let bad_prefix = format!("{}/x", "a".repeat(254));
        for bad in ["", "-app", "app-", "app name", "Example.com/x", "/x", "a/", "a/b/c", &long, &bad_prefix] {
            assert!(validate_key(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn kubernetes_value_syntax() {
        assert!(validate_value("k", "").is_ok());
        assert!(validate_value("k", "v1.2_3-x").is_ok());
        assert!(validate_value("k", "-v").is_err());
        assert!(validate_value("k", "a b").is_err());
        assert!(validate_value("k", &"v".repeat(64)).is_err());
    }

    #[test]
    fn parse_rejects_duplicates_and_empty_items() {
        assert_eq!(Labels::parse("a=1,a=2"), Err(LabelError::DuplicateKey { key: "a".into() }));
        assert!(matches!(Labels::parse("a=1,,b=2"), Err(LabelError::EmptyItem { .. })));
        assert_eq!(Labels::parse("  ").unwrap(), Labels::new());
    }

    #[test]
    fn contains_all_is_match_labels() {
        let labels = Labels::parse("app=db,env=prod").unwrap();
        assert!(labels.contains_all(&Labels::new()));
        assert!(labels.contains_all(&Labels::parse("app=db").unwrap()));
        assert!(!labels.contains_all(&Labels::parse("app=web").unwrap()));
        assert!(!labels.contains_all(&Labels::parse("app=db,tier=x").unwrap()));
    }

    #[test]
    fn pod_labels_name_the_pod_as_namespace_and_name() {
        let labels = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        assert_eq!(
            pod_name(&labels(&[("app", "web"), (K8S_NAMESPACE, "shop"), (K8S_POD, "web-1")])),
            Some("shop/web-1".into())
        );
        assert_eq!(pod_name(&labels(&[("app", "web"), (K8S_NAMESPACE, "shop")])), None);
        assert_eq!(pod_name(&labels(&[("reserved:host", "")])), None);
    }
}
