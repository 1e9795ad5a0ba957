//! Policy revisions: every change of the running policy — a push through the API, a
//! SIGHUP re-read of `--policy`, the start-up from `--policy` — is one numbered revision,
//! stored on disk with its complete document set, its time, author and summary.
//!
//! On start-up without `--policy`, the latest stored revision is re-applied, so a restarted
//! agent enforces what was last pushed; with `--policy`, the files become a new revision.
//! `ztctl policy rollback` re-applies a stored set as a new revision (history only grows).
//!
//! The numbers are the operator's; the kernel's policy *generation* counts every switch of
//! the maps, including the agent's own (host addresses changing), so the two differ.

mod documents;
mod store;

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant, SystemTime},
};

pub use documents::{Document, SplitCache, compare, line_diff, matching, merge, split, to_sources};
pub use store::{KEEP, RevisionStore, StoredRevision};

use super::{
    AgentState, PushError,
    generation::{Prepared, Rejected},
};
use zt_api::protocol::RevisionInfo;

use crate::{datapath::SwapReport, flows::clock};

/// The revision history and which revision the kernel enforces.
#[derive(Debug)]
pub struct Revisions {
    store: RevisionStore,
    current: Option<u64>,
    /// Splits the running and the pushed sources into documents, each source text once.
    pub(super) splitter: SplitCache,
}

impl Revisions {
    /// Reads the revision index under `state_dir`; creates nothing.
    pub fn open(state_dir: &Path) -> Revisions {
        Revisions { store: RevisionStore::open(state_dir), current: None, splitter: SplitCache::default() }
    }

    /// Start-up without `--policy` paths: the sources of the latest stored revision, which
    /// becomes the current one. `None` when paths are given (they win) or nothing is stored.
    pub fn restore(&mut self, policy_paths: &[PathBuf]) -> anyhow::Result<Option<Vec<(String, String)>>> {
        if !policy_paths.is_empty() {
            return Ok(None);
        }
        let Some(latest) = self.store.latest() else {
            return Ok(None);
        };
        let stored = self.store.load(latest).map_err(|e| {
            anyhow::anyhow!(
                "cannot restore the last pushed policy from {}: {e}; pass --policy to start from files",
                self.store.path_of(latest).display()
            )
        })?;
        log::info!("restoring policy revision {latest} ({} documents)", stored.documents.len());
        self.current = Some(latest);
        Ok(Some(to_sources(&stored.documents)))
    }

    /// The revision the kernel enforces; `None` before the first one.
    pub fn current(&self) -> Option<u64> {
        self.current
    }

    /// Kept revisions, oldest first.
    pub fn history(&self) -> &[RevisionInfo] {
        self.store.index()
    }

    pub fn load(&self, revision: u64) -> std::io::Result<StoredRevision> {
        self.store.load(revision)
    }

    /// The kept revision before the current one: what `policy rollback` returns to.
    pub fn previous(&self) -> Option<u64> {
        let current = self.current?;
        self.store.index().iter().rev().map(|i| i.revision).find(|&n| n < current)
    }

    /// Stores `documents` as the next revision and makes it current. On a write error the
    /// push has still taken effect; the sentence returned says it will not survive a restart.
    fn record(
        &mut self,
        documents: Vec<Document>,
        author_uid: u32,
        summary: String,
        generation: u32,
    ) -> Result<u64, String> {
        let revision = self.store.latest().max(self.current).unwrap_or(0) + 1;
        let stored = StoredRevision {
            revision,
            time: clock::rfc3339(SystemTime::now()),
            author_uid,
            summary,
            generation,
            documents,
        };
        match self.store.save(&stored) {
            Ok(()) => {
                self.current = Some(revision);
                Ok(revision)
            }
            Err(e) => Err(format!(
                "the policy is applied but revision {revision} could not be saved in {}: {e}; a restarted agent will not restore it",
                self.store.dir().display()
            )),
        }
    }
}

/// The agent's own uid, the author of start-up and SIGHUP revisions.
pub fn own_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// A successful push.
#[derive(Debug)]
pub struct Committed {
    pub swap: SwapReport,
    /// `None` when the revision could not be saved (see `warning`).
    pub revision: Option<u64>,
    pub warning: Option<String>,
    /// Validate, compile, write and switch.
    pub elapsed: Duration,
}

/// What a validated (not applied) push would be.
#[derive(Debug)]
pub struct Checked {
    pub policies: usize,
    pub identities: usize,
    pub policy_entries: usize,
    pub ipcache_entries: usize,
    pub warnings: Vec<String>,
    pub elapsed: Duration,
}

impl Checked {
    fn of(p: &Prepared, elapsed: Duration) -> Checked {
        Checked {
            policies: p.compiled.policies.len(),
            identities: p.compiled.identities.len(),
            policy_entries: p.tables.policy.len(),
            ipcache_entries: p.tables.ipcache.len(),
            warnings: p.compiled.warnings.clone(),
            elapsed,
        }
    }
}

fn paths_text(paths: &[PathBuf]) -> String {
    let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    format!("--policy {}", names.join(" "))
}

impl AgentState {
    /// The documents the active generation was compiled from.
    pub fn running_documents(&self) -> Vec<Document> {
        self.revisions.splitter.split(&self.active_sources)
    }

    /// Validates and compiles `sources` as a complete policy without applying anything (not
    /// even identity numbers).
    pub fn check_sources(&mut self, sources: &[(String, String)]) -> Result<Checked, Rejected> {
        let started = Instant::now();
        let (prepared, compiled_before) = self.prepare(sources, false);
        Ok(Checked::of(&prepared?, started.elapsed() + compiled_before))
    }

    /// Applies `sources` as the complete running policy and records `documents` (what
    /// `split(&sources)` gives; the caller has it already) as a new revision. A rejected
    /// push changes nothing.
    pub fn commit_sources(
        &mut self,
        sources: Vec<(String, String)>,
        documents: Vec<Document>,
        author_uid: u32,
        summary: String,
    ) -> Result<Committed, PushError> {
        let started = Instant::now();
        let swap = self.apply_sources(sources)?;
        let elapsed = started.elapsed();
        let (revision, warning) = self.record(documents, author_uid, summary, swap.generation);
        Ok(Committed { swap, revision, warning, elapsed })
    }

    /// SIGHUP: re-reads the `--policy` paths as the complete running policy, as a new
    /// revision. Without paths there is nothing to re-read, and the policy stays.
    pub fn reload_revision(&mut self, precompiled: Option<super::Precompiled>) -> Result<SwapReport, PushError> {
        self.precompiled = precompiled;
        let result = self.reload_paths_as_revision();
        self.precompiled = None;
        result
    }

    /// What compiling the `--policy` files needs, to run without the state lock; `None`
    /// without paths or when they cannot be read (the reload then says why).
    pub fn reload_job(&self) -> Option<super::CompileJob> {
        if self.opts.policy.is_empty() {
            return None;
        }
        crate::policy::load_paths(&self.opts.policy).ok().map(|sources| self.job_for(sources))
    }

    fn reload_paths_as_revision(&mut self) -> Result<SwapReport, PushError> {
        if self.opts.policy.is_empty() {
            return Err(PushError::Rejected(Rejected::of_push(
                "there are no --policy paths to re-read; push policy with ztctl policy apply",
            )));
        }
        let swap = self.reload_paths()?;
        let summary = format!("SIGHUP: re-read {}", paths_text(&self.opts.policy));
        self.record_active(own_uid(), summary, swap.generation);
        Ok(swap)
    }

    /// After start-up: a policy read from `--policy` becomes a new revision (a restored one
    /// already is one).
    pub fn record_startup(&mut self) {
        if !self.opts.policy.is_empty() {
            let summary = format!("start-up: {}", paths_text(&self.opts.policy));
            self.record_active(own_uid(), summary, self.generation);
        }
    }

    fn record_active(&mut self, author_uid: u32, summary: String, generation: u32) -> (Option<u64>, Option<String>) {
        let documents = self.running_documents();
        self.record(documents, author_uid, summary, generation)
    }

    fn record(
        &mut self,
        documents: Vec<Document>,
        author_uid: u32,
        summary: String,
        generation: u32,
    ) -> (Option<u64>, Option<String>) {
        match self.revisions.record(documents, author_uid, summary, generation) {
            Ok(n) => (Some(n), None),
            Err(warning) => {
                log::warn!("{warning}");
                (None, Some(warning))
            }
        }
    }
}
