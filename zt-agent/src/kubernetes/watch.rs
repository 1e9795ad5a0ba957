//! One resource's list and watch, the Kubernetes way:
//!
//! 1. **List** the collection (paged with `limit`/`continue`); its items become the
//!    resource's complete set in [`Cluster`] and its `metadata.resourceVersion` the point
//!    to watch from.
//! 2. **Watch** from that version (`watch=1&resourceVersion=RV&allowWatchBookmarks=true`):
//!    a chunked response of JSON lines `{"type": ADDED|MODIFIED|DELETED|BOOKMARK|ERROR,
//!    "object": …}`. Every event moves the resource version on — BOOKMARKs only that, so a
//!    quiet resource can still resume from a recent version.
//! 3. When the server ends the watch (its `timeoutSeconds`) or the connection drops, watch
//!    again from the last version: nothing is missed and nothing listed again.
//! 4. **410 Gone** (as the watch's HTTP status or as an ERROR event with a `Status` of code
//!    410) means the version is older than the server keeps: list again (step 1).
//! 5. Errors (refused connections, 5xx, garbage) are retried with exponential backoff and
//!    jitter, from 250 ms to 30 s, reset by the next success.

use std::{
    collections::BTreeMap,
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use serde_json::Value;

use super::{
    http::Endpoint,
    objects::{Cluster, Resource},
};

/// Objects per list page; the API server's own default page size for clients like this.
const PAGE: usize = 500;
/// The largest list page accepted.
const MAX_PAGE_BYTES: usize = 512 * 1024 * 1024;
/// The first and the longest wait before retrying after an error.
const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// How long past its `timeoutSeconds` a silent watch is kept before it is given up.
const WATCH_GRACE: Duration = Duration::from_secs(30);

/// What the watchers did, for metrics and tests (kept by the agent core's telemetry).
pub use crate::agent::WatchStats;

/// Why a list or watch failed; one sentence naming the resource.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("{what} {path}: {reason}")]
    Failed { what: &'static str, path: &'static str, reason: String },
    #[error("{path}: the resource version is too old (410 Gone); listing again")]
    Gone { path: &'static str },
}

/// How a watch connection ended without an error.
#[derive(Debug, PartialEq, Eq)]
pub enum WatchEnd {
    /// The server closed it (timeout, drop); watch again from the last version.
    Closed,
    /// 410 Gone: list again.
    Gone,
}

/// The list and watch of one resource.
pub struct Watcher {
    endpoint: Endpoint,
    resource: Resource,
    cluster: Arc<Cluster>,
    stats: Arc<WatchStats>,
    /// The version to watch from; `None` until listed (and after a 410).
    resource_version: Option<String>,
    /// How long the server keeps a watch open (`timeoutSeconds`).
    pub watch_timeout: Duration,
    /// How long past `watch_timeout` a silent watch is kept.
    pub watch_grace: Duration,
}

impl Watcher {
    pub fn new(endpoint: Endpoint, resource: Resource, cluster: Arc<Cluster>, stats: Arc<WatchStats>) -> Watcher {
        Watcher {
            endpoint,
            resource,
            cluster,
            stats,
            resource_version: None,
            watch_timeout: Duration::from_secs(290),
            watch_grace: WATCH_GRACE,
        }
    }

    pub fn resource_version(&self) -> Option<&str> {
        self.resource_version.as_deref()
    }

    fn failed(&self, what: &'static str, reason: impl std::fmt::Display) -> WatchError {
        WatchError::Failed { what, path: self.resource.path(), reason: reason.to_string() }
    }

    /// Lists the resource: its items become its complete set in the cluster.
    pub async fn list(&mut self) -> Result<(), WatchError> {
        let mut objects = BTreeMap::new();
        let mut next: Option<String> = None;
        let version = loop {
            let mut path = format!("{}?limit={PAGE}", self.resource.path());
            if let Some(token) = &next {
                path.push_str(&format!("&continue={}", encode(token)));
            }
            let mut response = self.endpoint.get(&path).await.map_err(|e| self.failed("list", e))?;
            let body = response.body(MAX_PAGE_BYTES).await.map_err(|e| self.failed("list", e))?;
            if response.status == 410 {
                // The continue token expired: start the list over.
                self.stats.gone.fetch_add(1, Ordering::Relaxed);
                objects.clear();
                next = None;
                continue;
            }
            if response.status != 200 {
                return Err(self.failed("list", status_reason(response.status, &body)));
            }
            let page: Value =
                serde_json::from_slice(&body).map_err(|e| self.failed("list", format!("not JSON: {e}")))?;
            for item in page.get("items").and_then(Value::as_array).into_iter().flatten() {
                if let Some((key, text)) = self.resource.document(item) {
                    objects.insert(key, text);
                }
            }
            let meta = page.get("metadata");
            next = meta
                .and_then(|m| m.get("continue"))
                .and_then(Value::as_str)
                .filter(|c| !c.is_empty())
                .map(String::from);
            if next.is_none() {
                break meta.and_then(|m| m.get("resourceVersion")).and_then(Value::as_str).map(String::from);
            }
        };
        let version = version.ok_or_else(|| self.failed("list", "the answer has no metadata.resourceVersion"))?;
        self.stats.lists.fetch_add(1, Ordering::Relaxed);
        self.cluster.replace(self.resource, objects);
        self.resource_version = Some(version);
        Ok(())
    }

    /// Watches from the last version until the server ends the stream.
    pub async fn watch(&mut self) -> Result<WatchEnd, WatchError> {
        let Some(version) = self.resource_version.clone() else { return Ok(WatchEnd::Gone) };
        let path = format!(
            "{}?watch=1&allowWatchBookmarks=true&resourceVersion={}&timeoutSeconds={}",
            self.resource.path(),
            encode(&version),
            self.watch_timeout.as_secs().max(1)
        );
        let mut response = self.endpoint.get(&path).await.map_err(|e| self.failed("watch", e))?;
        if response.status == 410 {
            return Ok(self.gone());
        }
        if response.status != 200 {
            let body = response.body(64 * 1024).await.unwrap_or_default();
            return Err(self.failed("watch", status_reason(response.status, &body)));
        }
        self.stats.watches.fetch_add(1, Ordering::Relaxed);
        // The server ends the watch after `timeoutSeconds`; a connection that stays silent
        // well past that is dead (a partition sends no reset) and is given up.
        let silence = self.watch_timeout + self.watch_grace;
        loop {
            let Ok(line) = tokio::time::timeout(silence, response.line()).await else {
                log::warn!(
                    "kubernetes: watch {}: nothing heard for {} s; watching again",
                    self.resource.path(),
                    silence.as_secs()
                );
                return Ok(WatchEnd::Closed);
            };
            let line = match line {
                Ok(Some(line)) => line,
                // A clean end or a dropped connection: resume from the last version.
                Ok(None) => return Ok(WatchEnd::Closed),
                Err(e) if e.kind() == std::io::ErrorKind::InvalidData => return Err(self.failed("watch", e)),
                Err(_) => return Ok(WatchEnd::Closed),
            };
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let event: Value = serde_json::from_slice(&line)
                .map_err(|e| self.failed("watch", format!("an event is not JSON: {e}")))?;
            let object = event.get("object").unwrap_or(&Value::Null);
            let kind = event.get("type").and_then(Value::as_str).unwrap_or("");
            if kind == "ERROR" {
                if object.get("code").and_then(Value::as_i64) == Some(410) {
                    return Ok(self.gone());
                }
                let message = object.get("message").and_then(Value::as_str).unwrap_or("no message");
                return Err(self.failed("watch", format!("the server sent an error: {message}")));
            }
            let event_version =
                object.get("metadata").and_then(|m| m.get("resourceVersion")).and_then(Value::as_str).map(String::from);
            match kind {
                "ADDED" | "MODIFIED" => {
                    if let Some((key, text)) = self.resource.document(object) {
                        self.cluster.upsert(self.resource, key, text);
                    }
                    self.stats.events.fetch_add(1, Ordering::Relaxed);
                }
                "DELETED" => {
                    if let Some((key, _)) = self.resource.document(object) {
                        self.cluster.remove(self.resource, &key);
                    }
                    self.stats.events.fetch_add(1, Ordering::Relaxed);
                }
                "BOOKMARK" => {
                    self.stats.bookmarks.fetch_add(1, Ordering::Relaxed);
                }
                other => return Err(self.failed("watch", format!("unknown event type {other:?}"))),
            }
            if let Some(v) = event_version {
                self.resource_version = Some(v);
            }
        }
    }

    fn gone(&mut self) -> WatchEnd {
        self.stats.gone.fetch_add(1, Ordering::Relaxed);
        self.resource_version = None;
        WatchEnd::Gone
    }

    /// Lists (when needed) and watches for ever, backing off on errors.
    pub async fn run(mut self) {
        let mut backoff = Backoff::default();
        loop {
            let started = std::time::Instant::now();
            let events = self.stats.events.load(Ordering::Relaxed) + self.stats.bookmarks.load(Ordering::Relaxed);
            let result = match self.resource_version {
                None => self.list().await.map(|()| WatchEnd::Gone),
                Some(_) => self.watch().await,
            };
            let quiet =
                events == self.stats.events.load(Ordering::Relaxed) + self.stats.bookmarks.load(Ordering::Relaxed);
            match result {
                // A watch the server ends at once, with nothing in it, is retried like an
                // error: a server dropping every connection must not be hammered.
                Ok(WatchEnd::Closed) if quiet && started.elapsed() < Duration::from_secs(1) => {
                    tokio::time::sleep(backoff.wait()).await;
                }
                Ok(_) => backoff.reset(),
                Err(e) => {
                    self.stats.errors.fetch_add(1, Ordering::Relaxed);
                    let wait = backoff.wait();
                    log::warn!("kubernetes: {e}; retrying in {} ms", wait.as_millis());
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }
}

/// Exponential backoff with jitter: each wait is up to twice the last, between
/// [`BACKOFF_MIN`] and [`BACKOFF_MAX`], so many agents do not retry in step.
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
    seed: u64,
}

impl Default for Backoff {
    fn default() -> Self {
        let seed =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64);
        Backoff { next: BACKOFF_MIN, seed: seed | 1 }
    }
}

impl Backoff {
    pub fn wait(&mut self) -> Duration {
        // xorshift: cheap jitter, no dependency.
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let base = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        // Between half and all of the base.
        base / 2 + Duration::from_millis(self.seed % (base.as_millis() as u64 / 2 + 1))
    }

    pub fn reset(&mut self) {
        self.next = BACKOFF_MIN;
    }
}

fn status_reason(status: u16, body: &[u8]) -> String {
    let message = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("message").and_then(Value::as_str).map(String::from));
    let fix = match status {
        401 => "; check the token",
        403 => "; the service account needs get, list and watch on it (see deploy/kubernetes/rbac.yaml)",
        404 => "; for policies.zt.dev, install the CRD (deploy/kubernetes/crd.yaml)",
        _ => "",
    };
    match message {
        Some(m) => format!("HTTP {status}: {m}{fix}"),
        None => format!("HTTP {status}{fix}"),
    }
}

/// Percent-encodes a query value (resource versions and continue tokens are opaque).
fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_ceiling_with_jitter_and_resets() {
        let mut b = Backoff::default();
        let waits: Vec<Duration> = (0..12).map(|_| b.wait()).collect();
        assert!(waits[0] >= BACKOFF_MIN / 2 && waits[0] <= BACKOFF_MIN, "{waits:?}");
        assert!(waits.iter().all(|w| *w <= BACKOFF_MAX), "{waits:?}");
        assert!(waits[11] >= BACKOFF_MAX / 2, "{waits:?}");
        b.reset();
        assert!(b.wait() <= BACKOFF_MIN);
    }

    #[test]
    fn opaque_tokens_are_percent_encoded() {
        assert_eq!(encode("abc123"), "abc123");
        assert_eq!(encode("a b&c=/"), "a%20b%26c%3D%2F");
    }
}
