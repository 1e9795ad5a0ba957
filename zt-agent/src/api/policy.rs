//! `policy apply | diff | get | delete | history | rollback`: translates the requests into
//! the agent core's policy changes (`agent::changes`, where the push semantics live) and
//! their outcomes into replies and error sentences.

use super::protocol::{ApiError, DocumentView, PushReport, Reply, Source};
use crate::{
    agent::{ChangeError, PolicyChange, SharedState, one_change_at_a_time},
    heap,
};

fn error(e: ChangeError) -> ApiError {
    match e {
        ChangeError::Rejected(r) => ApiError::rejected(
            format!("the push was rejected ({} problem(s)); the running policy is unchanged", r.0.len()),
            r.sentences(),
        ),
        ChangeError::Kernel(e) => {
            ApiError::failed(format!("the kernel maps could not be written ({e}); the running policy is unchanged"))
        }
        ChangeError::NoSuchDocument(name) => ApiError::not_found(format!(
            "no running policy is named {name}; see ztctl policy get (other kinds: KIND/NAME, e.g. Endpoint/db-1)"
        )),
        ChangeError::NoEarlierRevision => {
            ApiError::not_found("there is no earlier revision to roll back to; see ztctl policy history")
        }
        ChangeError::RevisionNotKept(target) => {
            ApiError::not_found(format!("revision {target} is not kept; see ztctl policy history"))
        }
        ChangeError::RevisionUnreadable(target, e) => ApiError::failed(format!("cannot read revision {target}: {e}")),
    }
}

fn texts(sources: Vec<Source>) -> Result<Vec<(String, String)>, ApiError> {
    if sources.is_empty() {
        return Err(ApiError::bad_request("no policy files were given; name at least one file or directory"));
    }
    Ok(sources.into_iter().map(|s| (s.name, s.text)).collect())
}

fn push(report: Result<PushReport, ChangeError>) -> Result<Reply, ApiError> {
    report.map(Reply::Push).map_err(error)
}

/// One change of the running policy. Changes run one at a time; each compiles without the
/// state lock, so status, metrics and flows keep answering while a large policy compiles.
fn change(shared: &SharedState, change: PolicyChange, dry_run: bool, uid: u32) -> Result<Reply, ApiError> {
    let _one = one_change_at_a_time();
    let outcome = {
        let job = shared.lock().expect("agent state").compile_job(&change);
        let (precompiled, plan) = job.map(|(job, plan)| (job.run(), plan)).unzip();
        let mut state = shared.lock().expect("agent state");
        let outcome = state.change(change, dry_run, uid, precompiled, plan);
        (outcome, state.take_retired())
    };
    let (outcome, retired) = outcome;
    drop(retired);
    // The compile and its intermediate results are dropped now.
    heap::release();
    push(outcome)
}

pub fn apply(shared: &SharedState, sources: Vec<Source>, dry_run: bool, uid: u32) -> Result<Reply, ApiError> {
    change(shared, PolicyChange::Apply(texts(sources)?), dry_run, uid)
}

pub fn diff(shared: &SharedState, sources: Vec<Source>) -> Result<Reply, ApiError> {
    change(shared, PolicyChange::Diff(texts(sources)?), true, 0)
}

pub fn delete(shared: &SharedState, name: &str, dry_run: bool, uid: u32) -> Result<Reply, ApiError> {
    change(shared, PolicyChange::Delete(name.to_string()), dry_run, uid)
}

pub fn rollback(shared: &SharedState, revision: Option<u64>, uid: u32) -> Result<Reply, ApiError> {
    change(shared, PolicyChange::Rollback(revision), false, uid)
}

pub fn get(shared: &SharedState, name: Option<&str>) -> Result<Reply, ApiError> {
    let chosen = shared.lock().expect("agent state").documents(name).map_err(error)?;
    let documents = chosen.into_iter().map(|d| DocumentView { origin: d.origin(), key: d.key, yaml: d.yaml }).collect();
    Ok(Reply::Documents { documents })
}

pub fn history(shared: &SharedState) -> Result<Reply, ApiError> {
    let s = shared.lock().expect("agent state");
    Ok(Reply::History { current: s.revision(), revisions: s.revision_history() })
}
