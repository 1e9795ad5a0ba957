//! Stage 2: every flow record goes to the in-memory history (`ztctl flows`), to the
//! per-rule hit counters (metrics), to the observed edges (`ztctl policy suggest`), and as one JSON line to the flow log (alerts join the
//! log here too, as lines with `"event": "alert"`) — standard output
//! or a file that rotates by size and is pruned by count, age and total size (`rotate`).
//!
//! The log is opened before the agent reports ready, so a bad path is a start-up error. A
//! write error later (disk full) is counted and logged and the sink keeps going: records
//! still reach the history and the metrics, and the next batch tries the file again.

use std::{
    io::{self, Write},
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::sync::mpsc;

use zt_api::alert::Alert;

use super::hits::RuleHits;
use super::{
    Edges, FlowHistory, FlowRecord,
    rotate::{Maintenance, RotatingLog, Rotation},
};

/// Records taken from the queue per batch; lines are flushed once per batch.
const BATCH: usize = 64;
/// How often retention runs when no rotation happens (old files still age out).
const RETENTION_INTERVAL: Duration = Duration::from_secs(3600);

/// Where the flow log goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FlowLogTarget {
    Stdout,
    File(PathBuf),
}

impl FlowLogTarget {
    /// `-` is standard output, anything else a file path.
    pub fn parse(s: &str) -> FlowLogTarget {
        if s == "-" { FlowLogTarget::Stdout } else { FlowLogTarget::File(PathBuf::from(s)) }
    }
}

/// What the sink did, for metrics and status.
#[derive(Debug, Default)]
pub struct SinkStats {
    /// Records taken from the queue.
    pub records: AtomicU64,
    /// Lines written to the flow log, and their bytes (newlines included).
    pub lines_written: AtomicU64,
    pub bytes_written: AtomicU64,
    /// Lines that could not be written (I/O errors).
    pub write_errors: AtomicU64,
    pub rotations: AtomicU64,
    /// Rotated files removed by retention.
    pub files_removed: AtomicU64,
}

impl SinkStats {
    fn count(&self, m: Maintenance) {
        if m.rotated {
            self.rotations.fetch_add(1, Ordering::Relaxed);
        }
        self.files_removed.fetch_add(m.removed as u64, Ordering::Relaxed);
    }
}

enum Out {
    Stdout(io::Stdout),
    File(RotatingLog),
}

/// The sink stage: its output opened (before the agent reports ready), and, once running,
/// the shared places every record also goes to.
pub struct FlowSink {
    out: Option<Out>,
    /// What opening did (retention of an earlier run's files), counted when running.
    opened: Maintenance,
    history: Arc<FlowHistory>,
    hits: Arc<RuleHits>,
    edges: Option<Arc<Edges>>,
    stats: Arc<SinkStats>,
    /// Whether the last write failed (errors are logged once per failing stretch).
    failing: bool,
}

impl FlowSink {
    /// Opens the flow log (if any) and applies retention to the files an earlier run left.
    pub fn open(target: Option<&FlowLogTarget>, rotation: Rotation) -> io::Result<FlowSink> {
        let mut opened = Maintenance::default();
        let out = match target {
            None => None,
            Some(FlowLogTarget::Stdout) => Some(Out::Stdout(io::stdout())),
            Some(FlowLogTarget::File(p)) => {
                let (log, done) = RotatingLog::open(p, rotation).map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!(
                            "cannot open the flow log {}: {e}; choose a writable path with --flow-log PATH",
                            p.display()
                        ),
                    )
                })?;
                opened = done;
                Some(Out::File(log))
            }
        };
        Ok(FlowSink {
            out,
            opened,
            history: Default::default(),
            hits: Default::default(),
            edges: None,
            stats: Default::default(),
            failing: false,
        })
    }

    /// Runs until every sender is gone, handing every record to `history`, `hits` and
    /// `edges` too and counting in `stats`. Lines are flushed per batch so a reader of the log (or a
    /// test) sees them promptly.
    pub async fn run(
        mut self,
        mut rx: mpsc::Receiver<FlowRecord>,
        mut alerts: mpsc::Receiver<Alert>,
        history: Arc<FlowHistory>,
        hits: Arc<RuleHits>,
        edges: Option<Arc<Edges>>,
        stats: Arc<SinkStats>,
    ) {
        (self.history, self.hits, self.edges, self.stats) = (history, hits, edges, stats);
        self.stats.count(self.opened);
        let mut batch = Vec::with_capacity(BATCH);
        let mut retention = tokio::time::interval(RETENTION_INTERVAL);
        retention.tick().await;
        loop {
            tokio::select! {
                n = rx.recv_many(&mut batch, BATCH) => {
                    if n == 0 {
                        return;
                    }
                    self.take(&mut batch);
                }
                Some(alert) = alerts.recv() => self.log(&[alert.to_json_line()]),
                _ = retention.tick() => {
                    if let Some(Out::File(log)) = &self.out {
                        match log.retain() {
                            Ok(removed) => self.stats.count(Maintenance { rotated: false, removed }),
                            Err(e) => log::warn!("flow log retention in {}: {e}", log.path().display()),
                        }
                    }
                }
            }
        }
    }

    /// Handles one batch: edges, history and hit counters first, then the log.
    fn take(&mut self, batch: &mut Vec<FlowRecord>) {
        self.stats.records.fetch_add(batch.len() as u64, Ordering::Relaxed);
        if let Some(edges) = &self.edges {
            edges.observe_all(batch.iter(), std::time::SystemTime::now());
        }
        let lines: Vec<String> = match self.out {
            Some(_) => batch.iter().map(FlowRecord::to_json_line).collect(),
            None => Vec::new(),
        };
        for record in batch.drain(..) {
            self.hits.observe(&record);
            self.history.push(record);
        }
        self.log(&lines);
    }

    /// Writes lines to the flow log, counting what was written and what failed.
    fn log(&mut self, lines: &[String]) {
        if lines.is_empty() || self.out.is_none() {
            return;
        }
        let (written, bytes, result) = self.write(lines);
        self.stats.lines_written.fetch_add(written, Ordering::Relaxed);
        self.stats.bytes_written.fetch_add(bytes, Ordering::Relaxed);
        match result {
            Ok(()) => self.failing = false,
            Err(e) => {
                self.stats.write_errors.fetch_add(lines.len() as u64 - written, Ordering::Relaxed);
                if !self.failing {
                    log::warn!("cannot write the flow log: {e}; records are still counted and kept in memory");
                }
                self.failing = true;
            }
        }
    }

    /// Writes `lines`; returns how many (and their bytes) were written before any error.
    fn write(&mut self, lines: &[String]) -> (u64, u64, io::Result<()>) {
        let (mut written, mut bytes) = (0, 0);
        let result = match self.out.as_mut().expect("called with an output") {
            Out::Stdout(s) => {
                let mut lock = s.lock();
                let mut result = Ok(());
                for line in lines {
                    if let Err(e) = lock.write_all(line.as_bytes()).and_then(|()| lock.write_all(b"\n")) {
                        result = Err(e);
                        break;
                    }
                    written += 1;
                    bytes += line.len() as u64 + 1;
                }
                result.and_then(|()| lock.flush())
            }
            Out::File(log) => {
                let mut result = Ok(());
                for line in lines {
                    match log.write_line(line) {
                        Ok(done) => self.stats.count(done),
                        Err(e) => {
                            result = Err(e);
                            break;
                        }
                    }
                    written += 1;
                    bytes += line.len() as u64 + 1;
                }
                result.and_then(|()| log.flush())
            }
        };
        (written, bytes, result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: u64) -> FlowRecord {
        serde_json::from_value(serde_json::json!({
            "time": "2025-01-02T03:04:05.678Z", "verdict": "allowed", "reason": "policy", "event": "start",
            "direction": "ingress", "iface": "eth0", "protocol": "TCP", "src_ip": "198.18.0.1", "src_port": 40000,
            "dst_ip": "198.18.0.2", "dst_port": 8080, "src_identity": 256, "dst_identity": 1,
            "src_labels": {"app": "client"}, "dst_labels": {"reserved": "host"}, "policy": "web", "rule": 0,
            "packets": n, "bytes": 60, "reply_packets": 0, "reply_bytes": 0, "generation": 1
        }))
        .unwrap()
    }

    #[tokio::test]
    async fn every_record_reaches_the_log_the_history_and_the_rule_counters_across_rotations() {
        let dir = std::env::temp_dir().join(format!("zt-sink-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("flows.log");
        let history = Arc::new(FlowHistory::new(1000));
        let hits = Arc::new(RuleHits::default());
        let stats = Arc::new(SinkStats::default());
        let rotation = Rotation { max_file_bytes: Some(4096), ..Rotation::default() };
        let sink = FlowSink::open(Some(&FlowLogTarget::File(path.clone())), rotation).unwrap();
        let (tx, rx) = mpsc::channel(16);
        let (_alerts_tx, alerts_rx) = mpsc::channel(1);
        let running = tokio::spawn(sink.run(rx, alerts_rx, history.clone(), hits.clone(), None, stats.clone()));
        for n in 0..300 {
            tx.send(record(n)).await.unwrap();
        }
        drop(tx);
        running.await.unwrap();

        let mut lines = Vec::new();
        let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
        // Rotated names sort by time; the active file holds the newest lines.
        files.sort_by_key(|p| (p == &path, p.clone()));
        for f in &files {
            for line in std::fs::read_to_string(f).unwrap().lines() {
                lines.push(serde_json::from_str::<FlowRecord>(line).unwrap().packets);
            }
        }
        assert_eq!(lines, (0..300).collect::<Vec<_>>());
        assert!(files.len() > 2, "the log rotated: {files:?}");
        assert_eq!(stats.rotations.load(Ordering::Relaxed), files.len() as u64 - 1);
        assert_eq!(stats.lines_written.load(Ordering::Relaxed), 300);
        assert_eq!(stats.records.load(Ordering::Relaxed), 300);
        assert_eq!(history.recent().len(), 300);
        assert_eq!(hits.snapshot(), [(("web".into(), 0, "allowed".into()), 300)]);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn an_unwritable_flow_log_is_refused_with_the_path_and_the_fix() {
        let target = FlowLogTarget::File(PathBuf::from("/proc/zt-no-such-dir/flows.log"));
        let err = FlowSink::open(Some(&target), Rotation::default()).err().unwrap();
        let msg = err.to_string();
        assert!(msg.starts_with("cannot open the flow log /proc/zt-no-such-dir/flows.log: "), "{msg}");
        assert!(msg.ends_with("choose a writable path with --flow-log PATH"), "{msg}");
    }
}
