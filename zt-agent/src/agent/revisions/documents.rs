//! The running policy as a set of named documents, keyed by kind, namespace and name: what
//! `ztctl policy apply` merges into, `policy delete` removes from, and a revision stores.
//!
//! The agent's source of truth stays `AgentState::active_sources` (the texts the active
//! generation was compiled from); this module splits them into documents and turns a
//! document set back into sources. Documents keep the file and position they were pushed
//! from, and sources are rebuilt with an empty placeholder in every gap, so an error about a
//! running document still says `policy web.yaml, document 3` as when it was pushed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use serde_norway::Value;

use zt_api::protocol::{Change, DocumentChange, DocumentKey};

/// One document of the running set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Document {
    pub key: DocumentKey,
    /// The source (file) it was pushed from.
    pub source: String,
    /// Its 1-based position in that source's YAML stream.
    pub document: usize,
    /// The document alone, as YAML.
    pub yaml: String,
}

impl Document {
    /// `web.yaml, document 3`.
    pub fn origin(&self) -> String {
        format!("{}, document {}", self.source, self.document)
    }

    fn value(&self) -> Value {
        serde_norway::from_str(&self.yaml).unwrap_or(Value::Null)
    }
}

/// Splits sources into keyed documents. Best effort: empty documents and documents without
/// `kind` and `metadata.name` are skipped, and a source stops at its first syntax error —
/// the validator reports those, this only needs the keys of what is valid. A Kubernetes
/// `List` is split into its items (all at the List's position), so a later push of one of
/// its pods or policies replaces just that object.
pub fn split(sources: &[(String, String)]) -> Vec<Document> {
    let mut out = Vec::new();
    for (source, text) in sources {
        for (index, de) in serde_norway::Deserializer::from_str(text).enumerate() {
            let Ok(value) = Value::deserialize(de) else {
                break;
            };
            let items = match value.get("items").and_then(Value::as_sequence) {
                Some(items) if value.get("kind").and_then(Value::as_str) == Some("List") => items.clone(),
                _ => vec![value],
            };
            for value in items {
                let Some(key) = key_of(&value) else { continue };
                let yaml = serde_norway::to_string(&value).expect("a parsed YAML value serializes");
                out.push(Document { key, source: source.clone(), document: index + 1, yaml });
            }
        }
    }
    out
}

/// [`split`] with a memory: the documents of each source text it split recently, so a push
/// splits only the sources that changed (every push splits the running sources and the
/// pushed ones, which for a large policy cost as much as compiling it). Splitting one
/// source depends on its name and text alone, so the result is [`split`]'s.
#[derive(Debug, Default)]
pub struct SplitCache {
    inner: Mutex<SplitMemory>,
}

#[derive(Debug, Default)]
struct SplitMemory {
    calls: u64,
    /// Source name -> (text, its documents, the call that last used them).
    sources: HashMap<String, (String, Arc<Vec<Document>>, u64)>,
}

/// Calls after which a source no one split again is forgotten: a push splits the running
/// and the pushed sources, twice (planning the compile job, then the change).
const SPLIT_MEMORY_CALLS: u64 = 8;

impl SplitCache {
    pub fn split(&self, sources: &[(String, String)]) -> Vec<Document> {
        let mut memory = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        memory.calls += 1;
        let call = memory.calls;
        let mut out = Vec::new();
        for (name, text) in sources {
            let docs = match memory.sources.get_mut(name) {
                Some((known, docs, used)) if known == text => {
                    *used = call;
                    docs.clone()
                }
                _ => {
                    let docs = Arc::new(split(std::slice::from_ref(&(name.clone(), text.clone()))));
                    memory.sources.insert(name.clone(), (text.clone(), docs.clone(), call));
                    docs
                }
            };
            out.extend(docs.iter().cloned());
        }
        memory.sources.retain(|_, (_, _, used)| call - *used < SPLIT_MEMORY_CALLS);
        out
    }
}

fn key_of(value: &Value) -> Option<DocumentKey> {
    let text = |v: &Value| v.as_str().map(str::to_string);
    let metadata = value.get("metadata")?;
    Some(DocumentKey {
        kind: text(value.get("kind")?)?,
        namespace: metadata.get("namespace").and_then(text),
        name: text(metadata.get("name")?)?,
    })
}

/// Rebuilds sources from documents: one source per file name, each document at its original
/// position, `~` (an empty document, which the parser skips but counts) in the gaps. Two
/// documents claiming the same position of the same file (a file pushed again with other
/// contents while some of its old documents stayed) go to two sources of that name.
pub fn to_sources(docs: &[Document]) -> Vec<(String, String)> {
    let mut groups: Vec<(String, BTreeMap<usize, &Document>)> = Vec::new();
    for doc in docs {
        let free = groups.iter_mut().find(|(name, slots)| *name == doc.source && !slots.contains_key(&doc.document));
        match free {
            Some((_, slots)) => {
                slots.insert(doc.document, doc);
            }
            None => groups.push((doc.source.clone(), BTreeMap::from([(doc.document, doc)]))),
        }
    }
    groups
        .into_iter()
        .map(|(name, slots)| {
            let last = slots.keys().next_back().copied().unwrap_or(0);
            let mut text = String::new();
            for position in 1..=last {
                match slots.get(&position) {
                    Some(doc) => {
                        text.push_str("---\n");
                        text.push_str(&doc.yaml);
                        if !doc.yaml.ends_with('\n') {
                            text.push('\n');
                        }
                    }
                    None => text.push_str("--- ~\n"),
                }
            }
            (name, text)
        })
        .collect()
}

/// The running set after a push of `incoming`: every running document whose key the push
/// does not name, then the pushed ones.
pub fn merge(running: &[Document], incoming: &[Document]) -> Vec<Document> {
    let replaced: BTreeSet<&DocumentKey> = incoming.iter().map(|d| &d.key).collect();
    running.iter().filter(|d| !replaced.contains(&d.key)).chain(incoming).cloned().collect()
}

/// Documents `name` designates: `KIND/name`, `KIND/namespace/name`, or a bare name, which
/// means the Policy of that name.
pub fn matching<'a>(docs: &'a [Document], name: &str) -> Vec<&'a Document> {
    let parts: Vec<&str> = name.split('/').collect();
    docs.iter()
        .filter(|d| match parts[..] {
            [n] => d.key.kind == "Policy" && d.key.name == n,
            [kind, n] => d.key.kind.eq_ignore_ascii_case(kind) && d.key.name == n,
            [kind, ns, n] => {
                d.key.kind.eq_ignore_ascii_case(kind) && d.key.namespace.as_deref() == Some(ns) && d.key.name == n
            }
            _ => false,
        })
        .collect()
}

/// Per key, how `after` differs from `before` (in key order); `lines` adds a line diff of
/// each changed, added or removed document.
pub fn compare(before: &[Document], after: &[Document], lines: bool) -> Vec<DocumentChange> {
    let old: BTreeMap<&DocumentKey, &Document> = before.iter().map(|d| (&d.key, d)).collect();
    let new: BTreeMap<&DocumentKey, &Document> = after.iter().map(|d| (&d.key, d)).collect();
    let keys: BTreeSet<&DocumentKey> = old.keys().chain(new.keys()).copied().collect();
    keys.into_iter()
        .map(|key| {
            let (change, origin, diff) = match (old.get(key), new.get(key)) {
                (None, Some(n)) => (Change::Added, n.origin(), line_diff("", &n.yaml)),
                (Some(o), None) => (Change::Removed, o.origin(), line_diff(&o.yaml, "")),
                // The same text is the same document; only different texts need reading.
                (Some(o), Some(n)) if o.yaml == n.yaml || o.value() == n.value() => {
                    (Change::Unchanged, n.origin(), Vec::new())
                }
                (Some(o), Some(n)) => (Change::Changed, n.origin(), line_diff(&o.yaml, &n.yaml)),
                (None, None) => unreachable!("the key came from one of the sets"),
            };
            DocumentChange { key: key.clone(), change, origin, diff: if lines { diff } else { Vec::new() } }
        })
        .collect()
}

/// Above this many line pairs the diff shows the whole old and new text instead of the
/// longest common subsequence (whose table grows with the product).
const MAX_DIFF_CELLS: usize = 4_000_000;

/// A line diff: `  same`, `- removed`, `+ added`.
pub fn line_diff(old: &str, new: &str) -> Vec<String> {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    if a.len().saturating_mul(b.len()) > MAX_DIFF_CELLS {
        return a.iter().map(|l| format!("- {l}")).chain(b.iter().map(|l| format!("+ {l}"))).collect();
    }
    // lcs[i][j]: longest common subsequence of a[i..] and b[j..].
    let mut lcs = vec![vec![0u32; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] { lcs[i + 1][j + 1] + 1 } else { lcs[i + 1][j].max(lcs[i][j + 1]) };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            out.push(format!("  {}", a[i]));
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            out.push(format!("- {}", a[i]));
            i += 1;
        } else {
            out.push(format!("+ {}", b[j]));
            j += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(name: &str, port: u16) -> String {
        format!(
            "apiVersion: zt/v1\nkind: Policy\nmetadata: {{name: {name}}}\nspec:\n  selector: {{app: db}}\n  ingress:\n    - ports: [{{protocol: TCP, port: {port}}}]\n"
        )
    }

    const ENDPOINT: &str = "apiVersion: zt/v1\nkind: Endpoint\nmetadata: {name: db, namespace: prod}\nspec:\n  addresses: [198.18.0.5]\n  labels: {app: db}\n";

    fn source(name: &str, docs: &[String]) -> (String, String) {
        (name.to_string(), docs.iter().map(|d| format!("---\n{d}")).collect())
    }

    fn keys(docs: &[Document]) -> Vec<String> {
        docs.iter().map(|d| d.key.to_string()).collect()
    }

    #[test]
    fn the_split_cache_splits_as_split_does_as_sources_change() {
        let cache = SplitCache::default();
        let mut sources = vec![source("a.yaml", &[policy("web", 80)]), source("b.yaml", &[ENDPOINT.to_string()])];
        for port in 0..20 {
            if port % 3 == 0 {
                sources[0] = source("a.yaml", &[policy("web", port), policy("db", 5432)]);
            }
            if port % 5 == 0 {
                sources.push(source(&format!("c{port}.yaml"), &[policy(&format!("p{port}"), port)]));
            }
            if port % 7 == 6 {
                sources.remove(1);
            }
            assert_eq!(cache.split(&sources), split(&sources), "after change {port}");
        }
    }

    #[test]
    fn split_keys_documents_by_kind_namespace_and_name_and_keeps_positions() {
        let docs = split(&[source("a.yaml", &[ENDPOINT.to_string(), String::new(), policy("web", 80)])]);
        assert_eq!(keys(&docs), ["Endpoint/prod/db", "Policy/web"]);
        assert_eq!(docs[1].origin(), "a.yaml, document 3", "empty documents count, as in the parser");
    }

    #[test]
    fn rebuilt_sources_keep_every_document_at_its_position() {
        let docs = split(&[source("a.yaml", &[ENDPOINT.to_string(), policy("web", 80), policy("db", 5432)])]);
        let without_web: Vec<Document> = docs.iter().filter(|d| d.key.name != "web").cloned().collect();
        let sources = to_sources(&without_web);
        assert_eq!(sources.len(), 1);
        let again = split(&sources);
        assert_eq!(again, without_web);
        assert_eq!(again[1].origin(), "a.yaml, document 3");
        // The parser reads the placeholder as an empty document and the rest as valid policy.
        let set = crate::policy::parse(&sources).expect("rebuilt sources parse");
        assert_eq!(set.policies[0].origin.location(), "a.yaml, document 3");
    }

    #[test]
    fn a_push_replaces_same_named_documents_and_keeps_the_others() {
        let running = split(&[source("a.yaml", &[policy("web", 80), policy("db", 5432)])]);
        let incoming = split(&[source("b.yaml", &[policy("web", 8080), ENDPOINT.to_string()])]);
        let after = merge(&running, &incoming);
        assert_eq!(keys(&after), ["Policy/db", "Policy/web", "Endpoint/prod/db"]);
        assert!(after[1].yaml.contains("8080"));
        let changes = compare(&running, &after, false);
        let summary: Vec<String> = changes.iter().map(|c| format!("{} {}", c.change, c.key)).collect();
        assert_eq!(summary, ["added Endpoint/prod/db", "unchanged Policy/db", "changed Policy/web"]);
    }

    #[test]
    fn the_same_file_pushed_again_with_other_documents_keeps_both_apart() {
        let running = split(&[source("a.yaml", &[policy("web", 80), policy("db", 5432)])]);
        let incoming = split(&[source("a.yaml", &[policy("api", 9000)])]);
        let after = merge(&running, &incoming);
        let sources = to_sources(&after);
        assert_eq!(sources.len(), 2, "api and web both claim a.yaml, document 1");
        assert_eq!(keys(&split(&sources)).len(), 3);
        crate::policy::parse(&sources).expect("still one valid set");
    }

    #[test]
    fn a_reformatted_document_is_unchanged() {
        let before = split(&[source("a.yaml", &[policy("web", 80)])]);
        let after = split(&[(
            "b.yaml".to_string(),
            "apiVersion: zt/v1\nkind: Policy\nmetadata:\n  name: web\nspec: {selector: {app: db}, ingress: [{ports: [{protocol: TCP, port: 80}]}]}\n"
                .to_string(),
        )]);
        assert_eq!(compare(&before, &after, true)[0].change, Change::Unchanged);
    }

    #[test]
    fn names_select_policies_or_any_kind() {
        let docs = split(&[source("a.yaml", &[ENDPOINT.to_string(), policy("db", 80)])]);
        assert_eq!(keys(&matching(&docs, "db").into_iter().cloned().collect::<Vec<_>>()), ["Policy/db"]);
        assert_eq!(matching(&docs, "endpoint/prod/db").len(), 1);
        assert_eq!(matching(&docs, "Endpoint/db").len(), 1);
        assert!(matching(&docs, "web").is_empty());
    }

    #[test]
    fn documents_as_policy_get_prints_them_apply_again_unchanged() {
        // Strings that read as other YAML types unquoted must come back quoted.
        let text = "# a comment, dropped by the round trip
apiVersion: zt/v1
kind: Endpoint
metadata: {name: db, namespace: prod}
spec:
  addresses: [10.0.1.5, \"fd00::5\", 10.0.2.0/24]
  labels: {app: db, version: \"1.10\", enabled: \"true\", none: \"null\", hex: \"0x1F\", empty: \"\"}
---
apiVersion: zt/v1
kind: Policy
metadata:
  name: web
spec:
  selector: {app: db}
  mode: audit
  ingress:
    - from: [{cidr: 192.168.0.0/16, except: [192.168.9.0/24]}, {entity: host}]
      ports: [{protocol: TCP, port: 5432, endPort: 5440}, {protocol: ICMP}]
  egress:
    - action: deny
      to: [{selector: {}}]
";
        let original = [("a.yaml".to_string(), text.to_string())];
        // `ztctl policy get -o yaml`: each document's YAML after a `---` line.
        let printed: String = split(&original).iter().map(|d| format!("---\n{}", d.yaml)).collect();
        let expected = crate::policy::parse(&original).expect("the original is valid");
        let again = crate::policy::parse(&[("a.yaml", printed.as_str())])
            .unwrap_or_else(|errors| panic!("{printed}\n{errors:#?}"));
        assert_eq!(again, expected, "{printed}");
    }

    #[test]
    fn a_kubernetes_list_splits_into_its_items_at_the_lists_position() {
        let list = "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Namespace, metadata: {name: x}}\n- {apiVersion: v1, kind: Pod, metadata: {name: a, namespace: x}}\n";
        let docs = split(&[source("k8s.yaml", &[list.to_string()])]);
        assert_eq!(keys(&docs), ["Namespace/x", "Pod/x/a"]);
        assert!(docs.iter().all(|d| d.origin() == "k8s.yaml, document 1"));
        // Both come back (as two sources of that name, since they share a position).
        let rebuilt = split(&to_sources(&docs));
        assert_eq!(keys(&rebuilt), ["Namespace/x", "Pod/x/a"]);
    }

    #[test]
    fn line_diff_marks_removed_and_added_lines() {
        assert_eq!(line_diff("a\nb\nc\n", "a\nx\nc\n"), ["  a", "- b", "+ x", "  c"]);
        assert_eq!(line_diff("", "a\n"), ["+ a"]);
    }
}
