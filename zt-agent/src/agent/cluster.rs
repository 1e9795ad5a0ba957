//! The cluster's objects as part of the running policy (`zt-agent run --kubernetes`).
//!
//! The watchers own the sources named `kubernetes:…` ([`CLUSTER_SOURCE_PREFIX`]); the
//! operator owns the others (`--policy` files, `ztctl policy apply`). A cluster push
//! replaces the cluster's sources and keeps the operator's, and an operator push keeps the
//! cluster's (they are running documents like any other), so neither input erases the
//! other. Cluster pushes are not revisions: the cluster is their history.

use std::sync::atomic::AtomicU64;

use super::{AgentState, CompileJob, Precompiled, PushError};
use crate::datapath::SwapReport;

/// The name prefix of every source made from a watched Kubernetes object.
pub const CLUSTER_SOURCE_PREFIX: &str = "kubernetes:";

/// What the Kubernetes watchers did (they count; metrics reads): lists, watch
/// connections, events, bookmarks, 410 Gone answers and errors; and how many objects the
/// push loop has set aside as invalid (a gauge).
#[derive(Debug, Default)]
pub struct WatchStats {
    pub lists: AtomicU64,
    pub watches: AtomicU64,
    pub events: AtomicU64,
    pub bookmarks: AtomicU64,
    /// 410 Gone answers (each followed by a list).
    pub gone: AtomicU64,
    pub errors: AtomicU64,
    /// Objects set aside because the agent cannot take them (`kubernetes::aside`).
    pub set_aside: AtomicU64,
}

/// The operator's sources of `running` followed by `cluster`.
pub(super) fn with_cluster(running: &[(String, String)], cluster: Vec<(String, String)>) -> Vec<(String, String)> {
    let mut sources: Vec<(String, String)> =
        running.iter().filter(|(name, _)| !name.starts_with(CLUSTER_SOURCE_PREFIX)).cloned().collect();
    sources.extend(cluster);
    sources
}

impl AgentState {
    /// The cluster objects the start set aside (see [`super::aside`]), handed to the push
    /// loop once.
    pub fn take_cluster_aside(&mut self) -> super::SetAside {
        std::mem::take(&mut self.cluster_aside)
    }

    /// What compiling the running policy with `cluster` as the cluster's objects needs, to
    /// run without the state lock.
    pub fn cluster_job(&self, cluster: Vec<(String, String)>) -> CompileJob {
        self.job_for(with_cluster(&self.active_sources, cluster))
    }

    /// Makes `cluster` the cluster's objects of the running policy, in one generation; uses
    /// `precompiled` when it was compiled from the same next policy. A rejected push
    /// changes nothing.
    pub fn apply_cluster(
        &mut self,
        cluster: Vec<(String, String)>,
        precompiled: Option<Precompiled>,
    ) -> Result<SwapReport, PushError> {
        let sources = with_cluster(&self.active_sources, cluster);
        self.precompiled = precompiled;
        let result = self.apply_sources(sources);
        self.precompiled = None;
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(name: &str) -> (String, String) {
        (name.to_string(), String::new())
    }

    #[test]
    fn a_cluster_push_replaces_the_cluster_sources_and_keeps_the_operators() {
        let running = vec![s("policy.yaml"), s("kubernetes:pods/x/a"), s("pushed.yaml")];
        let next = with_cluster(&running, vec![s("kubernetes:pods/x/b")]);
        assert_eq!(next, vec![s("policy.yaml"), s("pushed.yaml"), s("kubernetes:pods/x/b")]);
    }
}
