//! One scrape: copy what the metrics need out of the agent's state under a brief lock
//! (kernel counters, map occupancy, the active generation), then write the exposition
//! without holding it. Kernel counters are summed over CPUs by `Maps::stats`.

use std::{
    net::IpAddr,
    sync::{Arc, atomic::Ordering},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use tokio::sync::mpsc;
use zt_common::{
    event::{NUM_KINDS, kind_name},
    ipcache::IPCACHE_MAX_ENTRIES,
    policy::POLICY_MAX_ENTRIES,
    reason::{NUM_REASONS, NUM_VERDICTS, reason_name, verdict_name},
    stats::{EVENT_LOST_BUDGET, EVENT_LOST_RINGBUF, EVENT_SUBMITTED},
};

use super::exposition::{Exposition, Kind};
use crate::{
    agent::{
        AgentState, SharedState, Telemetry,
        pushes::{PUSH_BUCKETS, PushOutcome},
    },
    datapath::StatsSnapshot,
    flows::{FlowRecord, reader::PipelineStats},
};

/// Where a scrape reads from.
pub struct Sources {
    pub state: SharedState,
    /// The reader -> sink queue, held weakly so the metrics server never keeps the
    /// pipeline alive at shutdown.
    pub queue: mpsc::WeakSender<FlowRecord>,
}

/// Everything one scrape reports, copied out of the agent's state.
pub struct Snapshot {
    /// `None` if the kernel counters could not be read.
    pub kernel: Option<StatsSnapshot>,
    pub conntrack_entries: usize,
    pub half_open_entries: usize,
    /// Their maps' sizes (`[maps]`, else the defaults).
    pub conntrack_capacity: u32,
    pub half_open_capacity: u32,
    pub generation: u32,
    pub policies: usize,
    pub identities: usize,
    pub policy_entries: usize,
    pub ipcache_v4: usize,
    pub ipcache_v6: usize,
    pub pipeline: Arc<PipelineStats>,
    pub telemetry: Arc<Telemetry>,
    pub queue_depth: usize,
    pub queue_capacity: usize,
    pub uptime: Duration,
    /// Quarantined sources in force, by origin (manual or a detector).
    pub quarantined: std::collections::BTreeMap<String, usize>,
    /// Kernel memory of the detectors' maps.
    pub detector_kernel_bytes: u64,
    /// Observed edges: kept, the table's capacity, and dropped because it was full.
    pub edges: (usize, usize, u64),
    /// The sources with the most denied flows over the observed edges, most first.
    pub top_denied_sources: Vec<(String, u64)>,
    /// The agent's resident memory (VmRSS), if /proc tells it.
    pub resident_bytes: Option<u64>,
    /// Kernel memory of every BPF map the agent holds: (the kernel's map name, bytes).
    pub map_memory: Vec<(String, u64)>,
}

/// This process's resident set size, from /proc/self/status.
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.trim().strip_suffix("kB")?.trim();
    kib.parse::<u64>().ok().map(|k| k * 1024)
}

/// How many sources `zt_top_denied_sources` lists: a bounded set of series.
pub const TOP_DENIED_SOURCES: usize = 10;

impl Snapshot {
    /// Copies the numbers out of `s` (called with the state locked).
    pub fn take(s: &AgentState) -> Snapshot {
        let kernel = match s.stats() {
            Ok(k) => Some(k),
            Err(e) => {
                log::warn!("metrics: cannot read the kernel counters: {e}");
                None
            }
        };
        let v4 = s.active().tables.ipcache.iter().filter(|(net, _)| matches!(net.addr(), IpAddr::V4(_))).count();
        Snapshot {
            kernel,
            conntrack_entries: s.conntrack_len(),
            half_open_entries: s.half_open_len(),
            conntrack_capacity: s.options().map_sizes.entries(zt_common::map_names::CONNTRACK),
            half_open_capacity: s.options().map_sizes.entries(zt_common::map_names::HALF_OPEN),
            generation: s.generation(),
            policies: s.active().compiled.policies.len(),
            identities: s.active().compiled.identities.len(),
            policy_entries: s.active().tables.policy.len(),
            ipcache_v4: v4,
            ipcache_v6: s.active().tables.ipcache.len() - v4,
            pipeline: s.pipeline().clone(),
            telemetry: s.telemetry().clone(),
            edges: {
                let (kept, dropped) = s.edges().counts();
                (kept, s.options().edges, dropped)
            },
            top_denied_sources: s.edges().top_denied_sources(TOP_DENIED_SOURCES),
            queue_depth: 0,
            queue_capacity: 0,
            uptime: s.uptime(),
            quarantined: s.quarantined().into_iter().fold(Default::default(), |mut by, q| {
                *by.entry(q.origin).or_default() += 1;
                by
            }),
            detector_kernel_bytes: s.detector_memlock(),
            resident_bytes: resident_bytes(),
            map_memory: crate::datapath::memory::maps_of_this_process()
                .into_iter()
                .map(|m| (m.name, m.bytes))
                .collect(),
        }
    }
}

/// Renders the agent's metrics now.
pub fn render(src: &Sources) -> String {
    let mut snap = Snapshot::take(&src.state.lock().expect("agent state"));
    if let Some(tx) = src.queue.upgrade() {
        snap.queue_depth = tx.max_capacity() - tx.capacity();
        snap.queue_capacity = tx.max_capacity();
    }
    write(&snap, SystemTime::now())
}

fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64()
}

/// The exposition of `s`, with `now` for the start time.
pub fn write(s: &Snapshot, now: SystemTime) -> String {
    let mut e = Exposition::new();
    e.family("zt_agent_info", Kind::Gauge, "The running agent; the value is always 1.")
        .sample(&[("version", env!("CARGO_PKG_VERSION"))], 1.0);
    e.single(
        "zt_agent_start_time_seconds",
        Kind::Gauge,
        "When the agent started, in seconds since the Unix epoch.",
        unix_seconds(now - s.uptime).floor(),
    );
    e.single("zt_agent_uptime_seconds", Kind::Gauge, "Seconds since the agent started.", s.uptime.as_secs_f64());
    if let Some(rss) = s.resident_bytes {
        e.single("process_resident_memory_bytes", Kind::Gauge, "Resident memory of the agent in bytes.", rss as f64);
    }
    let mut f = e.family(
        "zt_bpf_map_memory_bytes",
        Kind::Gauge,
        "Kernel memory charged for each BPF map the agent holds (memlock), by the kernel's map name.",
    );
    for (map, bytes) in &s.map_memory {
        f.sample(&[("map", map)], *bytes as f64);
    }

    if let Some(k) = &s.kernel {
        kernel(&mut e, k);
    }

    pipeline(&mut e, s);
    policy(&mut e, s);
    detection(&mut e, s);

    let maps = [
        ("policy", s.policy_entries, POLICY_MAX_ENTRIES),
        ("ipcache_v4", s.ipcache_v4, IPCACHE_MAX_ENTRIES),
        ("ipcache_v6", s.ipcache_v6, IPCACHE_MAX_ENTRIES),
        ("conntrack", s.conntrack_entries, s.conntrack_capacity),
        ("half_open", s.half_open_entries, s.half_open_capacity),
    ];
    let mut f = e.family(
        "zt_map_entries",
        Kind::Gauge,
        "Entries in a kernel map: the active generation's policy entries and ipcache prefixes, live conntrack entries and TCP handshakes in progress.",
    );
    for (map, n, _) in maps {
        f.sample(&[("map", map)], n as f64);
    }
    let mut f = e.family(
        "zt_map_capacity_entries",
        Kind::Gauge,
        "Maximum entries of a kernel map (policy and ipcache hold two generations during a push).",
    );
    for (map, _, max) in maps {
        f.sample(&[("map", map)], max as f64);
    }
    e.finish()
}

fn kernel(e: &mut Exposition, k: &StatsSnapshot) {
    let pairs: Vec<(u8, u8)> =
        (0..NUM_VERDICTS as u8).flat_map(|v| (0..NUM_REASONS as u8).map(move |r| (v, r))).collect();
    let mut f = e.family("zt_packets_total", Kind::Counter, "Packets the datapath handled, by verdict and reason.");
    for &(v, r) in &pairs {
        f.sample(&[("verdict", verdict_name(v)), ("reason", reason_name(r))], k.get(v, r).packets as f64);
    }
    let mut f =
        e.family("zt_bytes_total", Kind::Counter, "Bytes of the packets the datapath handled, by verdict and reason.");
    for &(v, r) in &pairs {
        f.sample(&[("verdict", verdict_name(v)), ("reason", reason_name(r))], k.get(v, r).bytes as f64);
    }
    let mut f =
        e.family("zt_flow_events_total", Kind::Counter, "Flow events the kernel wrote to the ring buffer, by kind.");
    for kind in 0..NUM_KINDS as u8 {
        f.sample(&[("kind", kind_name(kind))], k.event(kind, EVENT_SUBMITTED) as f64);
    }
    let mut f = e.family(
        "zt_flow_events_lost_total",
        Kind::Counter,
        "Flow events the kernel did not write, by kind and cause: ringbuf (the ring buffer was full) or budget (the source's deny-event budget was spent; the packet is still counted in zt_packets_total).",
    );
    for kind in 0..NUM_KINDS as u8 {
        for (cause, outcome) in [("ringbuf", EVENT_LOST_RINGBUF), ("budget", EVENT_LOST_BUDGET)] {
            f.sample(&[("kind", kind_name(kind)), ("cause", cause)], k.event(kind, outcome) as f64);
        }
    }
}

fn detection(e: &mut Exposition, s: &Snapshot) {
    let mut f = e.family(
        "zt_alerts_total",
        Kind::Counter,
        "Alerts the detectors raised, by detector and configured action (alert or quarantine).",
    );
    for ((detector, action), n) in s.telemetry.alerts.lock().expect("alert counters").iter() {
        f.sample(&[("detector", detector), ("action", action)], *n as f64);
    }
    let mut f = e.family(
        "zt_quarantined_sources",
        Kind::Gauge,
        "Addresses quarantined now, by origin: manual or the detector that quarantined them.",
    );
    for origin in ["manual", "port_scan", "sweep", "fan_out", "new_peer", "deny_spike"] {
        f.sample(&[("origin", origin)], s.quarantined.get(origin).copied().unwrap_or(0) as f64);
    }
    let mut f = e.family(
        "zt_detector_memory_bytes",
        Kind::Gauge,
        "Memory of the detectors: kernel (their preallocated maps, fixed whatever they track) and new_peer (the agent's learnt edges).",
    );
    f.sample(&[("part", "kernel")], s.detector_kernel_bytes as f64);
    f.sample(&[("part", "new_peer")], s.telemetry.new_peer_bytes.load(Ordering::Relaxed) as f64);
}

fn pipeline(e: &mut Exposition, s: &Snapshot) {
    let p = &s.pipeline;
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed) as f64;
    e.single(
        "zt_flow_pipeline_events_read_total",
        Kind::Counter,
        "Events the agent read from the ring buffer.",
        load(&p.events_read),
    );
    e.single(
        "zt_flow_pipeline_events_malformed_total",
        Kind::Counter,
        "Ring-buffer records that were not whole events.",
        load(&p.events_malformed),
    );
    e.single(
        "zt_flow_pipeline_records_dropped_total",
        Kind::Counter,
        "Flow records dropped because the queue to the sink was full.",
        load(&p.records_dropped),
    );
    e.single("zt_flow_pipeline_queue_depth", Kind::Gauge, "Flow records waiting for the sink.", s.queue_depth as f64);
    e.single(
        "zt_flow_pipeline_queue_capacity",
        Kind::Gauge,
        "Flow records the queue to the sink holds at most.",
        s.queue_capacity as f64,
    );
    let t = &s.telemetry.flow_log;
    e.single(
        "zt_flow_records_total",
        Kind::Counter,
        "Flow records the sink received (kernel events and swept flow ends).",
        load(&t.records),
    );
    e.single("zt_flow_log_lines_total", Kind::Counter, "Lines written to the flow log.", load(&t.lines_written));
    e.single("zt_flow_log_bytes_total", Kind::Counter, "Bytes written to the flow log.", load(&t.bytes_written));
    e.single(
        "zt_flow_log_write_errors_total",
        Kind::Counter,
        "Flow-log lines that could not be written.",
        load(&t.write_errors),
    );
    let (kept, capacity, dropped) = s.edges;
    e.single("zt_flow_edges", Kind::Gauge, "Observed edges kept (ztctl policy suggest).", kept as f64);
    e.single("zt_flow_edges_capacity", Kind::Gauge, "Observed edges kept at most ([flows] edges).", capacity as f64);
    e.single(
        "zt_flow_edges_dropped_total",
        Kind::Counter,
        "New observed edges not kept because the table was full.",
        dropped as f64,
    );
    let mut top = e.family(
        "zt_top_denied_sources",
        Kind::Gauge,
        "Denied flows of the sources with the most of them over the observed edges (at most 10 series; a source is an address, or the labels of a labelled identity).",
    );
    for (source, flows) in &s.top_denied_sources {
        top.sample(&[("source", source)], *flows as f64);
    }
    e.single("zt_flow_log_rotations_total", Kind::Counter, "Times the flow-log file was rotated.", load(&t.rotations));
    e.single(
        "zt_flow_log_files_removed_total",
        Kind::Counter,
        "Rotated flow-log files removed by retention.",
        load(&t.files_removed),
    );
}

fn policy(e: &mut Exposition, s: &Snapshot) {
    e.single("zt_policy_generation", Kind::Gauge, "The policy generation the kernel enforces.", s.generation as f64);
    e.single("zt_policies", Kind::Gauge, "Policies in the active generation.", s.policies as f64);
    e.single("zt_identities", Kind::Gauge, "Identities in the active generation.", s.identities as f64);

    let hits = s.telemetry.rule_hits.snapshot();
    let mut f = e.family(
        "zt_policy_rule_hits_total",
        Kind::Counter,
        "Decisions by a policy rule, from the flow records: allowed flows started, denied and audited packets logged.",
    );
    for ((policy, rule, verdict), n) in &hits {
        f.sample(&[("policy", policy), ("rule", &rule.to_string()), ("verdict", verdict)], *n as f64);
    }

    if let Some(k) = s.telemetry.kubernetes.get() {
        let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed) as f64;
        for (name, help, value) in [
            (
                "zt_kubernetes_lists_total",
                "Complete lists of a watched resource (at start and after 410 Gone).",
                &k.lists,
            ),
            ("zt_kubernetes_watches_total", "Watch connections opened.", &k.watches),
            ("zt_kubernetes_events_total", "ADDED, MODIFIED and DELETED events received.", &k.events),
            ("zt_kubernetes_bookmarks_total", "BOOKMARK events received.", &k.bookmarks),
            ("zt_kubernetes_gone_total", "410 Gone answers: the resource version had expired.", &k.gone),
            ("zt_kubernetes_errors_total", "Failed lists and watches (retried with backoff).", &k.errors),
        ] {
            e.single(name, Kind::Counter, help, load(value));
        }
        e.single(
            "zt_kubernetes_objects_rejected",
            Kind::Gauge,
            "Cluster objects set aside because the agent cannot take them (each named in the log).",
            load(&k.set_aside),
        );
    }

    let pushes = s.telemetry.pushes.snapshot();
    let mut f = e.family(
        "zt_policy_pushes_total",
        Kind::Counter,
        "Policy pushes and reloads, by outcome: applied, rejected (invalid) or failed (kernel).",
    );
    for (i, outcome) in PushOutcome::ALL.iter().enumerate() {
        f.sample(&[("outcome", outcome.name())], pushes.outcomes[i] as f64);
    }
    let buckets: Vec<(f64, u64)> = PUSH_BUCKETS.iter().copied().zip(pushes.buckets.iter().copied()).collect();
    e.family(
        "zt_policy_push_duration_seconds",
        Kind::Histogram,
        "Time from receiving a policy to enforcing it (validate, compile, write, switch), or to refusing it.",
    )
    .histogram(&[], &buckets, pushes.sum_seconds, pushes.count);
    if let Some(last) = pushes.last_seconds {
        e.single("zt_policy_last_push_duration_seconds", Kind::Gauge, "Duration of the most recent policy push.", last);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::HashSet;

    use zt_common::{
        event::KIND_DENY,
        reason::{DEFAULT_DENY, POLICY, VERDICT_ALLOWED, VERDICT_DENIED},
        stats::{Counter, EVENT_OUTCOMES, STATS_SLOTS, event_stats_index, stats_index},
    };

    use super::*;
    use zt_common::conntrack::{CONNTRACK_MAX_ENTRIES, HALF_OPEN_MAX_ENTRIES};

    /// A snapshot with something in every family (the dashboard test reads it too).
    pub(crate) fn snapshot() -> Snapshot {
        let mut counters = vec![Counter::default(); STATS_SLOTS as usize];
        counters[stats_index(VERDICT_ALLOWED, POLICY) as usize] = Counter { packets: 5, bytes: 300 };
        counters[stats_index(VERDICT_DENIED, DEFAULT_DENY) as usize] = Counter { packets: 20000, bytes: 1_240_000 };
        let mut events = vec![0; (NUM_KINDS * EVENT_OUTCOMES) as usize];
        events[event_stats_index(KIND_DENY, EVENT_SUBMITTED) as usize] = 25;
        events[event_stats_index(KIND_DENY, EVENT_LOST_BUDGET) as usize] = 19975;
        let telemetry = Arc::new(Telemetry::default());
        telemetry.pushes.observe(Duration::from_millis(4), PushOutcome::Applied);
        telemetry.alerts.lock().unwrap().insert(("port_scan".into(), "quarantine".into()), 2);
        telemetry.new_peer_bytes.store(4096, Ordering::Relaxed);
        Snapshot {
            kernel: Some(StatsSnapshot { counters, events }),
            conntrack_entries: 3,
            half_open_entries: 2,
            conntrack_capacity: CONNTRACK_MAX_ENTRIES,
            half_open_capacity: HALF_OPEN_MAX_ENTRIES,
            generation: 7,
            policies: 2,
            identities: 4,
            policy_entries: 12,
            ipcache_v4: 5,
            ipcache_v6: 3,
            pipeline: Arc::new(PipelineStats::default()),
            telemetry,
            edges: (7, 10, 3),
            top_denied_sources: vec![("198.18.4.2".into(), 9), ("app=web".into(), 2)],
            resident_bytes: Some(40 << 20),
            map_memory: vec![("ZT_CONNTRACK".into(), 30 << 20), ("ZT_SCAN".into(), 15 << 20)],
            queue_depth: 1,
            queue_capacity: 8192,
            uptime: Duration::from_secs(90),
            quarantined: [("port_scan".to_string(), 1), ("manual".to_string(), 2)].into(),
            detector_kernel_bytes: 1 << 20,
        }
    }

    #[test]
    fn detection_reports_alerts_quarantines_by_origin_and_memory() {
        let text = write(&snapshot(), SystemTime::now());
        assert_eq!(sample(&text, r#"zt_alerts_total{detector="port_scan",action="quarantine"}"#), Some("2"));
        assert_eq!(sample(&text, r#"zt_quarantined_sources{origin="manual"}"#), Some("2"));
        assert_eq!(sample(&text, r#"zt_quarantined_sources{origin="port_scan"}"#), Some("1"));
        assert_eq!(sample(&text, r#"zt_quarantined_sources{origin="sweep"}"#), Some("0"));
        assert_eq!(sample(&text, r#"zt_detector_memory_bytes{part="kernel"}"#), Some("1048576"));
        assert_eq!(sample(&text, r#"zt_detector_memory_bytes{part="new_peer"}"#), Some("4096"));
        assert_eq!(sample(&text, "zt_flow_edges"), Some("7"));
        assert_eq!(sample(&text, "zt_flow_edges_capacity"), Some("10"));
        assert_eq!(sample(&text, "zt_flow_edges_dropped_total"), Some("3"));
        assert_eq!(sample(&text, r#"zt_top_denied_sources{source="198.18.4.2"}"#), Some("9"));
        assert_eq!(sample(&text, r#"zt_top_denied_sources{source="app=web"}"#), Some("2"));
        assert_eq!(sample(&text, "process_resident_memory_bytes"), Some("41943040"));
        assert_eq!(sample(&text, r#"zt_bpf_map_memory_bytes{map="ZT_CONNTRACK"}"#), Some("31457280"));
        assert_eq!(sample(&text, r#"zt_bpf_map_memory_bytes{map="ZT_SCAN"}"#), Some("15728640"));
    }

    #[test]
    fn resident_memory_is_read_from_proc() {
        let rss = resident_bytes().expect("VmRSS");
        assert!(rss > 1 << 20 && rss < 1 << 40, "{rss}");
    }

    #[test]
    fn kubernetes_counters_appear_only_with_kubernetes() {
        let snap = snapshot();
        let text = write(&snap, SystemTime::now());
        assert_eq!(sample(&text, "zt_kubernetes_events_total"), None);
        let stats = Arc::new(crate::agent::WatchStats::default());
        stats.events.store(12, std::sync::atomic::Ordering::Relaxed);
        stats.gone.store(1, std::sync::atomic::Ordering::Relaxed);
        snap.telemetry.kubernetes.set(stats).unwrap();
        let text = write(&snap, SystemTime::now());
        assert_eq!(sample(&text, "zt_kubernetes_events_total"), Some("12"));
        assert_eq!(sample(&text, "zt_kubernetes_gone_total"), Some("1"));
        assert_eq!(sample(&text, "zt_kubernetes_lists_total"), Some("0"));
        assert_eq!(sample(&text, "zt_kubernetes_objects_rejected"), Some("0"));
    }

    fn sample<'a>(text: &'a str, series: &str) -> Option<&'a str> {
        text.lines().find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
    }

    #[test]
    fn kernel_counters_appear_by_verdict_reason_kind_and_cause() {
        let text = write(&snapshot(), SystemTime::now());
        assert_eq!(sample(&text, r#"zt_packets_total{verdict="allowed",reason="policy"}"#), Some("5"));
        assert_eq!(sample(&text, r#"zt_bytes_total{verdict="denied",reason="default-deny"}"#), Some("1240000"));
        assert_eq!(
            sample(&text, r#"zt_packets_total{verdict="audit",reason="deny-rule"}"#),
            Some("0"),
            "every pair is exported"
        );
        assert_eq!(sample(&text, r#"zt_flow_events_total{kind="deny"}"#), Some("25"));
        assert_eq!(sample(&text, r#"zt_flow_events_lost_total{kind="deny",cause="budget"}"#), Some("19975"));
        assert_eq!(sample(&text, r#"zt_map_entries{map="conntrack"}"#), Some("3"));
        assert_eq!(
            sample(&text, r#"zt_map_capacity_entries{map="conntrack"}"#),
            Some(CONNTRACK_MAX_ENTRIES.to_string().as_str())
        );
        assert_eq!(sample(&text, "zt_policy_generation"), Some("7"));
        assert_eq!(sample(&text, "zt_policy_push_duration_seconds_count"), Some("1"));
        assert_eq!(sample(&text, r#"zt_policy_pushes_total{outcome="applied"}"#), Some("1"));
        assert_eq!(sample(&text, "zt_flow_pipeline_queue_capacity"), Some("8192"));
    }

    #[test]
    fn every_family_is_one_block_with_help_and_type() {
        let text = write(&snapshot(), SystemTime::now());
        let mut seen = HashSet::new();
        let mut current = String::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                current = rest.split(' ').next().unwrap().to_string();
                assert!(seen.insert(current.clone()), "{current} appears twice");
            } else if line.starts_with("# TYPE ") {
                assert!(line.starts_with(&format!("# TYPE {current} ")), "{line}");
            } else {
                assert!(line.starts_with(&current), "{line} outside its family {current}");
            }
        }
        assert!(seen.len() > 25, "{seen:?}");
    }

    #[test]
    fn without_kernel_counters_the_agent_metrics_are_still_served() {
        let mut s = snapshot();
        s.kernel = None;
        let text = write(&s, SystemTime::now());
        assert!(!text.contains("zt_packets_total"));
        assert!(text.contains("zt_policy_generation 7"));
    }
}
