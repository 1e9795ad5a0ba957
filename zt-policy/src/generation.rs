//! One generation as the kernel will enforce it, before any map is written: policy sources
//! validated and compiled, and the ipcache with this host's addresses as `host`.
//!
//! ```text
//! paths --load--> (name, text) --check--> CompiledPolicy --ipcache(host)--> prefix -> identity
//!                          \______________ Rejected: every problem, one sentence each
//! ```
//! The agent runs this for every push, reload and start-up, then writes the result into its
//! maps; `ztctl policy validate`, `policy test` and `explain --policy` run it offline. The
//! error sentences are built here once, so both print the very same ones.

use std::path::Path;

use ipnet::IpNet;
use zt_common::identity::HOST;

use crate::{
    identity::IdentityAllocator,
    policy::{self, CompileSettings, CompiledPolicy},
};

/// Every problem with a push, one sentence each (file, document, field and fix).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected(pub Vec<PushProblem>);

/// One problem with a push: its sentence, and the source whose document it is about
/// (`None` for a problem of the whole push, such as a size limit, or of an unreadable
/// path). The cluster sync sets aside the objects problems are about by this source, not
/// by reading it back out of the sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushProblem {
    pub source: Option<String>,
    pub sentence: String,
}

impl Rejected {
    /// A push rejected for one problem about no particular source.
    pub fn of_push(sentence: impl Into<String>) -> Rejected {
        Rejected(vec![PushProblem { source: None, sentence: sentence.into() }])
    }

    /// The sentences, in order.
    pub fn sentences(self) -> Vec<String> {
        self.0.into_iter().map(|p| p.sentence).collect()
    }
}

impl From<&policy::PolicyError> for PushProblem {
    fn from(e: &policy::PolicyError) -> PushProblem {
        PushProblem { source: e.origin().map(|o| o.source.clone()), sentence: e.to_string() }
    }
}

impl std::fmt::Display for Rejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}", p.sentence)?;
        }
        Ok(())
    }
}

/// Reads policy files and directories as `(name, text)` sources; every unreadable path is
/// a problem.
pub fn load<P: AsRef<Path>>(paths: &[P]) -> Result<Vec<(String, String)>, Rejected> {
    policy::load_paths(paths).map_err(rejected)
}

/// Validates and compiles named policy texts (source name, YAML) as the complete policy;
/// the allocator changes only on success.
pub fn check(
    sources: &[(String, String)],
    settings: &CompileSettings,
    allocator: &mut IdentityAllocator,
) -> Result<CompiledPolicy, Rejected> {
    let set = policy::parse(sources).map_err(rejected)?;
    compile(&set, settings, allocator)
}

/// [`check`], reading only the sources whose text `cache` does not hold (see
/// [`policy::parse_cached`]) and, when the cache remembers every source of the push,
/// reusing what the last compile found where its inputs did not change
/// ([`policy::CompileMemo`]); the result is the same. The agent pushes through this.
///
/// Sources too small to remember are read again at every push, and there are many only in
/// a cluster, whose pushes mostly move pods — which changes the universe anyway. There the
/// memo cost 47 MiB of resident memory and 85 ms per watch event (10,000 pods) for nothing;
/// a directory of policy files, where one edited rule leaves the rest as it was, is where it
/// pays (a one-rule change to 100,000 rules: compile 109 -> 53 ms).
pub fn check_cached(
    sources: &[(String, String)],
    settings: &CompileSettings,
    allocator: &mut IdentityAllocator,
    cache: &mut policy::ParseCache,
) -> Result<CompiledPolicy, Rejected> {
    let set = policy::parse_cached(sources, cache).map_err(rejected)?;
    if cache.len() == sources.len() {
        policy::compile_remembering(&set, settings, allocator, &mut cache.compile)
            .map_err(|e| Rejected::of_push(e.to_string()))
    } else {
        cache.compile.clear();
        compile(&set, settings, allocator)
    }
}

/// The compile step after a successful parse; its one error as the push's one problem.
fn compile(
    set: &policy::PolicySet,
    settings: &CompileSettings,
    allocator: &mut IdentityAllocator,
) -> Result<CompiledPolicy, Rejected> {
    policy::compile(set, settings, allocator).map_err(|e| Rejected::of_push(e.to_string()))
}

/// Every parse error, one sentence each.
fn rejected(errors: Vec<policy::PolicyError>) -> Rejected {
    Rejected(errors.iter().map(PushProblem::from).collect())
}

/// A policy that passed [`check`], with what it held.
pub struct Checked {
    pub compiled: CompiledPolicy,
    /// Non-empty YAML documents of every source.
    pub documents: usize,
    /// Endpoint documents and Kubernetes pods.
    pub endpoints: usize,
}

/// [`check`], also counting documents and endpoints (for `ztctl policy validate`'s summary).
/// Counting reads every source a second time, so pushes go through [`check`].
pub fn check_counted(
    sources: &[(String, String)],
    settings: &CompileSettings,
    allocator: &mut IdentityAllocator,
) -> Result<Checked, Rejected> {
    let set = policy::parse(sources).map_err(rejected)?;
    let compiled = compile(&set, settings, allocator)?;
    let documents = sources.iter().map(|(_, text)| documents_in(text)).sum();
    Ok(Checked { compiled, documents, endpoints: set.endpoints.len() })
}

/// Non-empty documents of a YAML stream that parsed (so every document is well formed).
fn documents_in(text: &str) -> usize {
    use serde::Deserialize;
    serde_norway::Deserializer::from_str(text)
        .map(serde_norway::Value::deserialize)
        .filter(|d| !matches!(d, Ok(serde_norway::Value::Null)))
        .count()
}

/// The ipcache of a compiled policy plus this host's prefixes (see [`crate::host`]) as
/// `host`. The host's own addresses win over any prefix a policy gives them, so failsafe
/// rules keep working.
pub fn ipcache(compiled: &CompiledPolicy, host: &[IpNet]) -> Vec<(IpNet, u32)> {
    let mut ipcache: Vec<(IpNet, u32)> =
        compiled.ipcache.iter().filter(|(net, _)| !host.contains(net)).copied().collect();
    ipcache.extend(host.iter().map(|net| (*net, HOST)));
    ipcache
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources(text: &str) -> Vec<(String, String)> {
        vec![("p.yaml".to_string(), text.to_string())]
    }

    #[test]
    fn every_problem_is_one_sentence_naming_the_source() {
        let bad = "apiVersion: zt/v1\nkind: Policy\nmetadata: {name: a}\nspec:\n  selector: {}\n  ingress:\n  - ports: [{protocol: TCP, port: 70000}]\n---\nkind: Policy\n";
        let r = check(&sources(bad), &CompileSettings::default(), &mut IdentityAllocator::new()).unwrap_err();
        assert_eq!(r.0.len(), 2, "{r}");
        assert!(
            r.0.iter().any(|e| e.source.as_deref() == Some("p.yaml")
                && e.sentence.starts_with("policy p.yaml, document 1: spec.ingress[0].ports[0].port 70000")),
            "{r}"
        );
        assert!(r.0.iter().any(|e| e.sentence.starts_with("policy p.yaml, document 2: apiVersion is missing")), "{r}");
        assert_eq!(r.to_string().lines().count(), 2);
    }

    #[test]
    fn a_valid_policy_counts_its_non_empty_documents_and_endpoints() {
        let text = "---\napiVersion: zt/v1\nkind: Endpoint\nmetadata: {name: e}\nspec:\n  addresses: [198.18.0.3]\n  labels: {app: e}\n---\n---\napiVersion: zt/v1\nkind: Policy\nmetadata: {name: p}\nspec:\n  selector: {app: e}\n";
        let c = check_counted(&sources(text), &CompileSettings::default(), &mut IdentityAllocator::new()).unwrap();
        assert_eq!((c.documents, c.endpoints, c.compiled.policies.len()), (2, 1, 1));
    }

    #[test]
    fn an_unreadable_path_is_a_problem() {
        let r = load(&["/nonexistent/zt-policy"]).unwrap_err();
        assert!(r.0[0].sentence.starts_with("policy /nonexistent/zt-policy: cannot read it"), "{r}");
        assert_eq!(r.0[0].source, None, "a path is not a document");
    }

    #[test]
    fn host_addresses_win_over_policy_prefixes() {
        let text = "apiVersion: zt/v1\nkind: Endpoint\nmetadata: {name: e}\nspec:\n  addresses: [198.18.0.2, 198.18.0.3]\n  labels: {app: e}\n";
        let compiled = check(&sources(text), &CompileSettings::default(), &mut IdentityAllocator::new()).unwrap();
        let host: Vec<IpNet> = vec!["198.18.0.2/32".parse().unwrap()];
        let table = ipcache(&compiled, &host);
        let of = |net: &str| table.iter().filter(|(n, _)| *n == net.parse::<IpNet>().unwrap()).count();
        assert_eq!(of("198.18.0.2/32"), 1, "{table:?}");
        assert!(table.contains(&("198.18.0.2/32".parse().unwrap(), HOST)));
        assert!(table.iter().any(|(n, id)| *n == "198.18.0.3/32".parse::<IpNet>().unwrap() && *id != HOST));
    }
}
