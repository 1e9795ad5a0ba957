//! `policy apply | diff | get | delete | history | rollback`: pushes and the revision history.
//!
//! Semantics of a push (also in `docs/api.md`): the running policy is a set of documents
//! keyed by kind, namespace and name. `apply` merges the pushed files into it — documents
//! with the same key are replaced, the others kept — and validates the whole resulting set
//! together; `delete` removes documents; `rollback` makes a stored set the running one. Each
//! successful change is one new revision and one generation switch. A rejected push changes
//! nothing and returns every problem (file, document, field, reason). A dry run (and
//! `diff`) validates and compiles the result and reports what would change. A push that
//! changes no document is validated but creates no revision.

use std::sync::MutexGuard;

use super::protocol::{
    ApiError, Change, DocumentChange, DocumentView, ErrorCode, PushReport, Reply, Source, counts,
};
use crate::agent::{
    AgentState, PushError, Rejected, SharedState,
    revisions::{self, Document},
};

fn lock(shared: &SharedState) -> MutexGuard<'_, AgentState> {
    shared.lock().expect("agent state")
}

fn rejected(r: Rejected) -> ApiError {
    ApiError {
        code: ErrorCode::Rejected,
        message: format!(
            "the push was rejected ({} problem(s)); the running policy is unchanged",
            r.0.len()
        ),
        problems: r.0,
    }
}

fn push_error(e: PushError) -> ApiError {
    match e {
        PushError::Rejected(r) => rejected(r),
        PushError::Kernel(e) => ApiError::failed(format!(
            "the kernel maps could not be written ({e}); the running policy is unchanged"
        )),
    }
}

/// The documents of `pushed` replace the running ones of the same key; the rest stay.
/// Returns the sources to compile (kept documents, then the pushed texts exactly as sent,
/// so errors point at the operator's own lines) and the resulting document set.
fn merged(
    running: &[Document],
    pushed: &[(String, String)],
) -> (Vec<(String, String)>, Vec<Document>) {
    let incoming = revisions::split(pushed);
    let kept: Vec<Document> = running
        .iter()
        .filter(|d| !incoming.iter().any(|i| i.key == d.key))
        .cloned()
        .collect();
    let mut sources = revisions::to_sources(&kept);
    sources.extend(pushed.iter().cloned());
    (sources, revisions::merge(running, &incoming))
}

fn texts(sources: Vec<Source>) -> Result<Vec<(String, String)>, ApiError> {
    if sources.is_empty() {
        return Err(ApiError::bad_request(
            "no policy files were given; name at least one file or directory",
        ));
    }
    Ok(sources.into_iter().map(|s| (s.name, s.text)).collect())
}

fn names(pushed: &[(String, String)]) -> String {
    pushed
        .iter()
        .map(|(name, _)| name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn apply(
    shared: &SharedState,
    sources: Vec<Source>,
    dry_run: bool,
    uid: u32,
) -> Result<Reply, ApiError> {
    let pushed = texts(sources)?;
    let mut s = lock(shared);
    let running = s.running_documents();
    let (sources, after) = merged(&running, &pushed);
    let changes = revisions::compare(&running, &after, false);
    let summary = format!("apply {}: {}", names(&pushed), counts(&changes));
    push(&mut s, sources, after, changes, summary, dry_run, uid)
}

pub fn diff(shared: &SharedState, sources: Vec<Source>) -> Result<Reply, ApiError> {
    let pushed = texts(sources)?;
    let mut s = lock(shared);
    let running = s.running_documents();
    let (sources, after) = merged(&running, &pushed);
    let changes = revisions::compare(&running, &after, true);
    push(&mut s, sources, after, changes, String::new(), true, 0)
}

pub fn delete(
    shared: &SharedState,
    name: &str,
    dry_run: bool,
    uid: u32,
) -> Result<Reply, ApiError> {
    let mut s = lock(shared);
    let running = s.running_documents();
    let doomed: Vec<String> = revisions::matching(&running, name)
        .iter()
        .map(|d| d.key.to_string())
        .collect();
    if doomed.is_empty() {
        return Err(ApiError::not_found(format!(
            "no running policy is named {name}; see ztctl policy get (other kinds: KIND/NAME, e.g. Endpoint/db-1)"
        )));
    }
    let after: Vec<Document> = running
        .iter()
        .filter(|d| !doomed.contains(&d.key.to_string()))
        .cloned()
        .collect();
    let changes = revisions::compare(&running, &after, false);
    let summary = format!("delete {}", doomed.join(", "));
    push(
        &mut s,
        revisions::to_sources(&after),
        after,
        changes,
        summary,
        dry_run,
        uid,
    )
}

pub fn rollback(shared: &SharedState, revision: Option<u64>, uid: u32) -> Result<Reply, ApiError> {
    let mut s = lock(shared);
    let target = match revision.or_else(|| s.revisions.previous()) {
        Some(target) => target,
        None => {
            return Err(ApiError::not_found(
                "there is no earlier revision to roll back to; see ztctl policy history",
            ));
        }
    };
    let stored = s.revisions.load(target).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => ApiError::not_found(format!(
            "revision {target} is not kept; see ztctl policy history"
        )),
        _ => ApiError::failed(format!("cannot read revision {target}: {e}")),
    })?;
    let running = s.running_documents();
    let changes = revisions::compare(&running, &stored.documents, false);
    let summary = format!("rollback to revision {target}: {}", counts(&changes));
    let sources = revisions::to_sources(&stored.documents);
    push(
        &mut s,
        sources,
        stored.documents,
        changes,
        summary,
        false,
        uid,
    )
}

/// Validates `sources` (whose documents are `documents`) as the complete next policy and,
/// unless this is a dry run or no document changes, applies it as a new revision.
fn push(
    s: &mut AgentState,
    sources: Vec<(String, String)>,
    documents: Vec<Document>,
    changes: Vec<DocumentChange>,
    summary: String,
    dry_run: bool,
    uid: u32,
) -> Result<Reply, ApiError> {
    let unchanged = changes.iter().all(|c| c.change == Change::Unchanged);
    if dry_run || unchanged {
        let checked = s.check_sources(&sources).map_err(rejected)?;
        return Ok(Reply::Push(PushReport {
            applied: false,
            revision: None,
            generation: None,
            changes,
            policies: checked.policies,
            identities: checked.identities,
            policy_entries: checked.policy_entries,
            ipcache_entries: checked.ipcache_entries,
            written: 0,
            removed: 0,
            agent_ms: checked.elapsed.as_secs_f64() * 1e3,
            warnings: checked.warnings,
        }));
    }
    let committed = s
        .commit_sources(sources, documents, uid, summary)
        .map_err(push_error)?;
    let mut warnings = s.active.compiled.warnings.clone();
    warnings.extend(committed.warning);
    Ok(Reply::Push(PushReport {
        applied: true,
        revision: committed.revision,
        generation: Some(committed.swap.generation),
        changes,
        policies: s.active.compiled.policies.len(),
        identities: s.active.compiled.identities.len(),
        policy_entries: s.active.tables.policy.len(),
        ipcache_entries: s.active.tables.ipcache.len(),
        written: committed.swap.written,
        removed: committed.swap.removed,
        agent_ms: committed.elapsed.as_secs_f64() * 1e3,
        warnings,
    }))
}

pub fn get(shared: &SharedState, name: Option<&str>) -> Result<Reply, ApiError> {
    let sources = lock(shared).active_sources.clone();
    let running = revisions::split(&sources);
    let chosen: Vec<&Document> = match name {
        None => running.iter().collect(),
        Some(name) => {
            let found = revisions::matching(&running, name);
            if found.is_empty() {
                return Err(ApiError::not_found(format!(
                    "no running policy is named {name}; see ztctl policy get (other kinds: KIND/NAME, e.g. Endpoint/db-1)"
                )));
            }
            found
        }
    };
    let documents = chosen
        .into_iter()
        .map(|d| DocumentView {
            key: d.key.clone(),
            origin: d.origin(),
            yaml: d.yaml.clone(),
        })
        .collect();
    Ok(Reply::Documents { documents })
}

pub fn history(shared: &SharedState) -> Result<Reply, ApiError> {
    let s = lock(shared);
    Ok(Reply::History {
        current: s.revisions.current(),
        revisions: s.revisions.history().to_vec(),
    })
}
