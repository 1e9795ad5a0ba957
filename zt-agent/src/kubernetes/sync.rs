//! From the watched cluster to the kernel: the first complete list of every resource
//! (before the agent attaches anything), then a loop that turns changes into generations.
//!
//! A burst of events (a rollout, a namespace deleted with its pods) becomes one
//! generation: the loop waits [`DEBOUNCE`] after the first change, then takes the whole
//! current set and pushes it through the agent's ordinary change path — compiled without
//! the state lock, applied in one generation switch, rejected as a whole (the running
//! generation stays) if any object is invalid.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use super::{
    http::Endpoint,
    objects::{Cluster, Resource},
    watch::{Backoff, WatchStats, Watcher},
};
use crate::agent::{self, PushError, SharedState};

/// How long changes are gathered into one generation after the first of them.
pub const DEBOUNCE: Duration = Duration::from_millis(30);

/// The watchers after their first list, ready to watch from where they listed.
pub struct Synced {
    pub cluster: Arc<Cluster>,
    pub stats: Arc<WatchStats>,
    watchers: Vec<Watcher>,
}

/// Lists every resource, retrying errors with backoff for at most `timeout`.
pub async fn initial_sync(endpoint: &Endpoint, timeout: Duration) -> anyhow::Result<Synced> {
    let cluster = Arc::new(Cluster::default());
    let stats = Arc::new(WatchStats::default());
    let started = Instant::now();
    let lists = Resource::ALL.map(|resource| {
        let mut w = Watcher::new(endpoint.clone(), resource, cluster.clone(), stats.clone());
        async move {
            let mut backoff = Backoff::default();
            loop {
                match w.list().await {
                    Ok(()) => return Ok(w),
                    Err(e) if started.elapsed() < timeout => {
                        log::warn!("kubernetes: {e}; retrying");
                        tokio::time::sleep(backoff.wait()).await;
                    }
                    Err(e) => {
                        return Err(anyhow::anyhow!(
                            "cannot list the cluster from {endpoint:?} within {} s: {e}",
                            timeout.as_secs()
                        ));
                    }
                }
            }
        }
    });
    let [a, b, c, d] = lists;
    let (a, b, c, d) = tokio::try_join!(a, b, c, d)?;
    Ok(Synced { cluster, stats, watchers: vec![a, b, c, d] })
}

impl Synced {
    /// Starts every watcher from the version it listed, on the current runtime.
    pub fn watch(self) -> Arc<Cluster> {
        for w in self.watchers {
            tokio::spawn(w.run());
        }
        self.cluster
    }
}

/// Pushes every change of `cluster` to the agent, a burst at a time, for ever.
pub async fn push_loop(cluster: Arc<Cluster>, state: SharedState) {
    loop {
        cluster.changed.notified().await;
        tokio::time::sleep(DEBOUNCE).await;
        let (sources, since) = cluster.take();
        let Some(since) = since else { continue };
        let objects = sources.len();
        let state = state.clone();
        let pushed = tokio::task::spawn_blocking(move || {
            let _one = agent::one_change_at_a_time();
            let job = state.lock().expect("agent state").cluster_job(sources.clone());
            let compiling = Instant::now();
            let precompiled = job.run();
            let compiled = compiling.elapsed();
            let applying = Instant::now();
            let mut s = state.lock().expect("agent state");
            let result = s.apply_cluster(sources, Some(precompiled));
            let generation = s.generation();
            drop(s);
            let applied = applying.elapsed();
            crate::heap::release();
            (result, generation, (compiled, applied))
        })
        .await;
        match pushed {
            Ok((Ok(swap), _, (compiled, applied))) => eprintln!(
                "zt-agent: kubernetes: enforcing generation {} ({objects} objects compiled in {:.1} ms, applied in {:.1} ms, {} entries written, {} removed) {:.1} ms after the first change",
                swap.generation,
                compiled.as_secs_f64() * 1e3,
                applied.as_secs_f64() * 1e3,
                swap.written,
                swap.removed,
                since.elapsed().as_secs_f64() * 1e3
            ),
            Ok((Err(PushError::Rejected(r)), generation, _)) => eprintln!(
                "zt-agent: kubernetes: the cluster's objects were rejected; generation {generation} stays enforced until they are fixed:\n{r}"
            ),
            Ok((Err(e), generation, _)) => {
                eprintln!(
                    "zt-agent: kubernetes: the cluster's objects could not be applied; generation {generation} stays: {e}"
                )
            }
            Err(e) => eprintln!("zt-agent: kubernetes: the push failed: {e}"),
        }
    }
}
