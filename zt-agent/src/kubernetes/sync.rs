//! From the watched cluster to the kernel: the first complete list of every resource
//! (before the agent attaches anything), then a loop that turns changes into generations.
//!
//! A burst of events (a rollout, a namespace deleted with its pods) becomes few
//! generations: the loop waits [`DEBOUNCE`] after the first change, then takes the whole
//! current set and pushes it through the agent's ordinary change path — compiled without
//! the state lock, applied in one generation switch — and every change that arrives while
//! a push runs goes into the next one, which starts as soon as it ends. Objects the push
//! cannot take are set aside ([`crate::agent::aside`]) and the rest pushed again in the
//! same burst; a problem that names no cluster object rejects the push as a whole (the
//! running generation stays).

use std::{
    sync::{Arc, Mutex, atomic::Ordering},
    time::{Duration, Instant},
};

use super::{
    http::Endpoint,
    objects::{Cluster, Resource},
    watch::{Backoff, WatchStats, Watcher},
};
use crate::{
    agent::{self, PushError, SET_ASIDE_RETRIES, SharedState},
    datapath::SwapReport,
};

/// How long changes are gathered into one generation after the first of them: enough for
/// the events the API server sends together (one read of a watch stream, the watchers'
/// simultaneous events), short beside the push itself, during which later changes gather
/// anyway. It is part of every event's latency (it was 30 ms; a pod event's push takes
/// about 100 ms with 10,000 pods, see docs/kubernetes.md).
pub const DEBOUNCE: Duration = Duration::from_millis(5);

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

/// Pushes every change of `cluster` to the agent, a burst at a time, for ever. Objects a
/// push cannot take are set aside ([`agent::SetAside`]) and the rest pushed again; the start's
/// set-aside objects are carried on.
pub async fn push_loop(cluster: Arc<Cluster>, stats: Arc<WatchStats>, state: SharedState) {
    // The objects the start set aside, if any.
    let taken = state.lock().expect("agent state").take_cluster_aside();
    stats.set_aside.store(taken.len() as u64, Ordering::Relaxed);
    let aside = Arc::new(Mutex::new(taken));
    loop {
        // The last accepted versions not saved yet are saved once changes pause.
        let save_in = aside.lock().expect("set-aside objects").save_due_in();
        match save_in {
            Some(wait) => {
                if tokio::time::timeout(wait, cluster.changed.notified()).await.is_err() {
                    let aside = aside.clone();
                    let _ = tokio::task::spawn_blocking(move || aside.lock().expect("set-aside objects").save()).await;
                    continue;
                }
            }
            None => cluster.changed.notified().await,
        }
        tokio::time::sleep(DEBOUNCE).await;
        let (current, since) = cluster.take();
        let Some(since) = since else { continue };
        let state = state.clone();
        let aside = aside.clone();
        let stats = stats.clone();
        let done = tokio::task::spawn_blocking(move || {
            let mut aside = aside.lock().expect("set-aside objects");
            let mut log = vec![];
            // `None`: the current objects as they are (nothing set aside).
            let mut instead = aside.sources(&current, &mut log);
            let mut attempt = 0;
            let outcome = loop {
                let sources = instead.as_deref().unwrap_or(&current);
                let (result, generation, took) = push(&state, sources);
                match result {
                    Ok(swap) => {
                        aside.accepted(&current, sources, &mut log);
                        aside.save_if_due();
                        break Ok((swap, sources.len(), took));
                    }
                    Err(PushError::Rejected(r)) if attempt < SET_ASIDE_RETRIES => {
                        match aside.reject(&current, sources, &r, &mut log) {
                            Some(next) => instead = Some(next),
                            None => break Err((PushError::Rejected(r), generation)),
                        }
                    }
                    Err(e) => break Err((e, generation)),
                }
                attempt += 1;
            };
            stats.set_aside.store(aside.len() as u64, Ordering::Relaxed);
            (outcome, log)
        })
        .await;
        let (outcome, log) = match done {
            Ok(done) => done,
            Err(e) => {
                eprintln!("zt-agent: kubernetes: the push failed: {e}");
                continue;
            }
        };
        for line in log {
            eprintln!("zt-agent: kubernetes: {line}");
        }
        match outcome {
            Ok((swap, objects, (compiled, applied, switched))) => eprintln!(
                "zt-agent: kubernetes: enforcing generation {} ({objects} objects compiled in {:.1} ms, applied in {:.1} ms, {} entries written, {} removed) {:.1} ms after the first change",
                swap.generation,
                compiled.as_secs_f64() * 1e3,
                applied.as_secs_f64() * 1e3,
                swap.written,
                swap.removed,
                switched.saturating_duration_since(since).as_secs_f64() * 1e3
            ),
            Err((PushError::Rejected(r), generation)) => eprintln!(
                "zt-agent: kubernetes: the cluster's objects were rejected; generation {generation} stays enforced until they are fixed:\n{r}"
            ),
            Err((e, generation)) => {
                eprintln!(
                    "zt-agent: kubernetes: the cluster's objects could not be applied; generation {generation} stays: {e}"
                )
            }
        }
    }
}

/// One push of `sources` as the cluster's objects: compiled off the state lock, applied
/// under it; the result, the generation enforced after it, how long each step took and
/// when the kernel switched (freeing the replaced generation and returning memory to the
/// system come after it).
fn push(
    state: &SharedState,
    sources: &[(String, String)],
) -> (Result<SwapReport, PushError>, u32, (Duration, Duration, Instant)) {
    let _one = agent::one_change_at_a_time();
    let job = state.lock().expect("agent state").cluster_job(sources.to_vec());
    let compiling = Instant::now();
    let precompiled = job.run();
    let compiled = compiling.elapsed();
    let applying = Instant::now();
    let mut s = state.lock().expect("agent state");
    let result = s.apply_cluster(sources.to_vec(), Some(precompiled));
    let generation = s.generation();
    let retired = s.take_retired();
    drop(s);
    let switched = Instant::now();
    let applied = switched - applying;
    drop(retired);
    crate::heap::release();
    (result, generation, (compiled, applied, switched))
}
