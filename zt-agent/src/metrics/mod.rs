//! Prometheus metrics: what the datapath counted (packets and bytes by verdict and reason,
//! flow events produced and lost), what the flow pipeline did, the state of the active
//! policy generation and its maps, policy pushes, and per-rule hits from the flow records.
//!
//! `server` answers `GET /metrics` over HTTP/1.1; `collect` takes a snapshot of the agent's
//! state under a brief lock and `exposition` writes it in the text format. The counters the
//! agent itself keeps (rule hits, pushes, flow-log writes) live in [`Telemetry`], shared by
//! the stages that update them. docs/observability.md lists every metric.

pub mod collect;
pub mod exposition;
pub mod hits;
pub mod push;
pub mod server;

use std::sync::Arc;

pub use collect::Sources;
pub use hits::RuleHits;
pub use push::{PushOutcome, PushStats};
pub use server::{MetricsError, bind, serve};

use crate::flows::sink::SinkStats;

/// Counters kept by the agent's own stages (the kernel's live in its maps).
#[derive(Debug, Default)]
pub struct Telemetry {
    /// Fed by the flow sink with every record.
    pub rule_hits: Arc<RuleHits>,
    /// Updated by the flow sink.
    pub flow_log: Arc<SinkStats>,
    /// Updated by every policy push (`AgentState::apply_sources`).
    pub pushes: PushStats,
}
