//! Every figure of a run, as written to `results.json`: the raw rounds, medians and spread
//! of each measurement, what it was measured on, and how it compares with the project's
//! aims.

use serde::Serialize;

use crate::{machine::Machine, plan::Plan, stats::Sample};

#[derive(Debug, Serialize)]
pub struct Results {
    pub machine: Machine,
    pub plan: Plan,
    pub wall_seconds: f64,
    pub datapath: Vec<DatapathFigure>,
    pub endtoend: Vec<EndToEndFigure>,
    pub control: Vec<ControlFigure>,
    /// Section 3: one rule changed in a running policy of many files.
    pub change: Option<ChangeFigure>,
    pub memory: Option<Memory>,
    pub flows: Option<FlowFigure>,
    pub bulk: Vec<BulkFigure>,
    pub targets: Vec<Target>,
    /// Anything a reader must know to interpret the figures (fallbacks taken, limits hit).
    pub notes: Vec<String>,
}

/// Section 1: one case of the XDP program at one table size.
#[derive(Debug, Serialize)]
pub struct DatapathFigure {
    pub family: &'static str,
    pub case: &'static str,
    pub rules: usize,
    pub policy_entries: usize,
    pub ipcache_prefixes: usize,
    /// `repeat=N` (one packet run N times) or `repeat=1 x K` (K distinct packets, once each).
    pub method: String,
    pub ns: Sample,
    /// The empty program, measured the same way in the same rounds.
    pub baseline_ns: Sample,
    pub ratio: Sample,
    /// The physical-limit reference (parse + one 5-tuple hash lookup), measured the same
    /// way in the same rounds, and zt's ratio to it.
    pub reference_ns: Sample,
    pub reference_ratio: Sample,
}

/// Section 2: one contender, one traffic kind, one rule count.
#[derive(Debug, Serialize)]
pub struct EndToEndFigure {
    pub contender: &'static str,
    /// `drop`: denied packets the filter disposes of per second; `pass`: allowed packets
    /// delivered to a socket per second.
    pub traffic: &'static str,
    pub rules: usize,
    pub pps: Sample,
    /// Frames the sender handed to its veth per second (what the receiver was offered).
    pub offered_pps: Sample,
}

/// Section 3: one push of a generated zt/v1 policy.
#[derive(Debug, Serialize)]
pub struct ControlFigure {
    pub rules: usize,
    pub yaml_bytes: usize,
    pub policy_entries: usize,
    pub ipcache_prefixes: usize,
    /// `prepare_sources`: parse, validate, compile.
    pub compile_ms: Sample,
    /// `GenerationWriter::apply`: kernel writes and the switch.
    pub apply_ms: Sample,
    pub push_ms: Sample,
}

/// Section 3: a one-rule change to a running policy of `rules` rules in `files` files,
/// pushed as the agent does (every file sent again, read through its parse cache) onto a
/// datapath that enforces the policy before the change.
#[derive(Debug, Serialize)]
pub struct ChangeFigure {
    pub rules: usize,
    pub files: usize,
    /// `prepare_sources_cached`: only the changed file is read again.
    pub compile_ms: Sample,
    /// `GenerationWriter::apply`: only the entries that differ are written.
    pub apply_ms: Sample,
    pub push_ms: Sample,
    /// POLICY entries written and removed by the change's apply.
    pub written: usize,
    pub removed: usize,
}

/// Section 3: the running agent's footprint.
#[derive(Debug, Serialize)]
pub struct Memory {
    pub rules: usize,
    pub agent_rss_kib: u64,
    pub bpf_maps: usize,
    pub bpf_map_memlock_kib: u64,
    /// Every map with its size and kernel memory, largest first: (name, entries, KiB).
    pub per_map: Vec<(String, u32, u64)>,
}

/// Section 4: the flow pipeline on one core.
#[derive(Debug, Serialize)]
pub struct FlowFigure {
    pub events_per_round: usize,
    /// Ring-buffer drain + decode + enrichment into `FlowRecord`s.
    pub decode_per_s: Sample,
    /// `FlowRecord::to_json_line` written to a buffered file.
    pub json_lines_per_s: Sample,
}

/// Section 5: bulk TCP (iperf3) through one filter on a veth pair.
#[derive(Debug, Serialize)]
pub struct BulkFigure {
    pub contender: &'static str,
    pub gbit_per_s: Sample,
    /// Round by round, to the unfiltered link measured in the same round.
    pub ratio: Sample,
}

/// One project aim next to the measured figure.
#[derive(Debug, Serialize)]
pub struct Target {
    pub aim: String,
    pub measured: String,
    pub met: bool,
}
