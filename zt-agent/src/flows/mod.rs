//! Flow observability: kernel flow events from the EVENTS ring buffer, decoded and enriched
//! with labels, policy names and interface names, then written to sinks as flow records.
//!
//! Stages: `reader` (ring buffer, never blocks the kernel) -> `record` (decode + enrich)
//! -> bounded channel -> `sink` (JSON lines with `rotate`, `history` for `ztctl flows`, and
//! `edges`, the observed edges for `ztctl policy suggest`). A full channel drops the record and counts
//! it; the reader never waits for a slow sink. `sweep` reports flows that ended by timeout.
//! The pipeline owns its counters (`hits`: per-rule hits, `sink::SinkStats`: flow-log
//! writes); metrics reads them, the pipeline never imports metrics.

pub mod context;
pub mod edges;
pub mod history;
pub mod hits;
pub mod reader;
pub mod rotate;
pub mod sink;
pub mod sweep;

pub use context::FlowContext;
pub use edges::Edges;
pub use history::FlowHistory;
pub use hits::RuleHits;
// The record and the clock it is timed by are shared with clients: they live in zt-api.
pub use zt_api::{
    clock,
    record::{self, FlowRecord},
};
