//! Incremental parsing: a push reads again only the sources whose text changed.
//!
//! Reading YAML is most of a push's compile time (about 70% for a 10k-rule policy), and a
//! push usually changes few sources: `ztctl policy apply` sends every file although one
//! changed, and the Kubernetes watchers push every object (one source each) when one pod
//! moved. [`ParseCache`] remembers, per source name, the text it last read and what reading
//! that text alone gave; [`parse_cached`] takes what it remembers for every source whose
//! text is byte for byte the same and reads only the others.
//!
//! Why the result is exactly [`parse`]'s: reading one source ([`parse_source`]) depends on
//! nothing but its name and text, except that a Namespace must not repeat one of an earlier
//! source; the pods wait for [`Objects::finish`] and the checks across documents
//! ([`set`](super::set)) run on the whole set, both exactly as in [`parse`]. So a source
//! read on its own, appended in source order, adds the same endpoints, policies,
//! namespaces and pods, provided the namespace check passes. Only sources read without any
//! error are remembered, and whenever anything in a push is wrong (a source, a repeated
//! namespace, a check across documents) the push is read again by [`parse`] itself, so the
//! errors, their order and their wording are the reference parser's too.

use std::collections::HashMap;
use std::sync::Arc;

use super::kubernetes::Objects;
use super::{parse, parse_source, set};
use crate::parallel;
use crate::policy::CompileMemo;
use crate::policy::error::PolicyError;
use crate::policy::model::PolicySet;

/// Sources shorter than this are read again at every push rather than remembered. They read
/// in tens of microseconds, and there can be very many: a cluster of 10,000 pods is 12,500
/// objects of a few hundred bytes each, whose remembered reads cost 40 MiB of resident
/// memory (measured: 144 MiB when ready against 104) to save under a fifth of a compile
/// that the rest of the compiler dominates. Policy files, whose reading a small edit should
/// not repeat, are larger.
const MIN_REMEMBERED_BYTES: usize = 4096;

/// What reading one source on its own gave, with the text it was read from.
struct Read {
    text: String,
    set: PolicySet,
    objects: Objects,
}

/// The sources of the last push, read (see the [module docs](self)), and what its compile
/// can give the next ([`CompileMemo`]). Cheap to share: the agent keeps one and its compile
/// jobs use it without the state lock.
pub struct ParseCache {
    sources: HashMap<String, Arc<Read>>,
    /// Sources shorter than this are not remembered ([`MIN_REMEMBERED_BYTES`]).
    min_bytes: usize,
    /// The last compile's universe and resolutions ([`crate::generation::check_cached`]).
    pub compile: CompileMemo,
}

impl Default for ParseCache {
    fn default() -> Self {
        ParseCache { sources: HashMap::new(), min_bytes: MIN_REMEMBERED_BYTES, compile: CompileMemo::default() }
    }
}

impl ParseCache {
    /// A cache that remembers sources of any length, so tests exercise it with small ones.
    #[cfg(test)]
    pub(crate) fn remembering_all() -> Self {
        ParseCache { sources: HashMap::new(), min_bytes: 0, compile: CompileMemo::keeping_all() }
    }

    /// How many sources are remembered.
    pub fn len(&self) -> usize {
        self.sources.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }
}

/// Fewer sources than this per thread are read on the calling thread.
const SOURCES_PER_THREAD: usize = 512;

/// One source of a push: what the cache remembers of its text, or what reading it gave.
enum Outcome {
    Remembered(Arc<Read>),
    Read(PolicySet, Objects),
    /// Reading it found errors; [`parse`] reports them.
    Failed,
}

fn outcome(remembered: &HashMap<String, Arc<Read>>, name: &str, text: &str) -> Outcome {
    match remembered.get(name) {
        Some(read) if read.text == text => Outcome::Remembered(read.clone()),
        _ => {
            let mut errors = Vec::new();
            let mut own = PolicySet::default();
            let mut own_objects = Objects::default();
            parse_source(name, text, &mut own, &mut own_objects, &mut errors);
            if errors.is_empty() { Outcome::Read(own, own_objects) } else { Outcome::Failed }
        }
    }
}

/// [`parse`], reading only the sources whose text `cache` does not hold for their name;
/// afterwards `cache` holds exactly these sources (those read without error and at least
/// [`MIN_REMEMBERED_BYTES`] long), so it never grows beyond one push.
pub fn parse_cached<N: AsRef<str> + Sync, T: AsRef<str> + Sync>(
    sources: &[(N, T)],
    cache: &mut ParseCache,
) -> Result<PolicySet, Vec<PolicyError>> {
    // Reading a source depends on nothing else (module docs): the sources not remembered are
    // read on all cores, then taken in source order exactly as one loop would.
    let remembered = &cache.sources;
    let outcomes = parallel::chunks(sources, SOURCES_PER_THREAD, |sources| {
        sources.iter().map(|(name, text)| outcome(remembered, name.as_ref(), text.as_ref())).collect::<Vec<_>>()
    });
    let mut next: HashMap<String, Arc<Read>> = HashMap::with_capacity(sources.len());
    let mut set = PolicySet::default();
    let mut objects = Objects::default();
    let mut clean = true;
    for ((name, text), outcome) in sources.iter().zip(outcomes.into_iter().flatten()) {
        let (name, text) = (name.as_ref(), text.as_ref());
        let read = match outcome {
            Outcome::Remembered(read) => read,
            Outcome::Failed => {
                clean = false;
                continue;
            }
            Outcome::Read(own, own_objects) => {
                if text.len() < cache.min_bytes {
                    if clean {
                        set.endpoints.extend(own.endpoints);
                        set.policies.extend(own.policies);
                        clean = objects.absorb(own_objects);
                    }
                    continue;
                }
                Arc::new(Read { text: text.to_string(), set: own, objects: own_objects })
            }
        };
        if clean {
            set.endpoints.extend(read.set.endpoints.iter().cloned());
            set.policies.extend(read.set.policies.iter().cloned());
            clean = objects.absorb(read.objects.clone());
        }
        // A name given twice keeps its last text, which is the one a next push most
        // likely repeats.
        next.insert(name.to_string(), read);
    }
    cache.sources = next;
    if !clean {
        return parse(sources);
    }
    let mut errors = Vec::new();
    objects.finish(&mut set, &mut errors);
    set::check_unique_names(&set, &mut errors);
    set::check_address_claims(&set, &mut errors);
    if errors.is_empty() { Ok(set) } else { parse(sources) }
}
