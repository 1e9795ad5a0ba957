//! Prometheus metrics: what the datapath counted (packets and bytes by verdict and reason,
//! flow events produced and lost), what the flow pipeline did, the state of the active
//! policy generation and its maps, policy pushes, and per-rule hits from the flow records.
//!
//! `server` answers `GET /metrics` over HTTP/1.1; `collect` takes a snapshot of the agent's
//! state under a brief lock and `exposition` writes it in the text format. The counters the
//! agent itself keeps are owned by the stages that update them — rule hits and flow-log
//! writes by the flow pipeline (`flows::hits`, `flows::sink`), pushes by the agent core
//! (`agent::pushes`) — and gathered in `agent::Telemetry`; metrics only reads them.
//! docs/observability.md lists every metric; `dashboard` (tests only) holds the Grafana
//! dashboard of deploy/grafana to the metrics exported here.

pub mod collect;
#[cfg(test)]
mod dashboard;
pub mod exposition;
pub mod server;

pub use collect::Sources;
pub use server::{MetricsError, bind, serve};
