//! zt-api: the agent API as both ends speak it. The agent (`zt-agent`) serves it; the
//! operator's CLI (`ztctl`) and any other client use it. Stable Rust, no eBPF, no daemon
//! code, so a workstation can build a client without the agent's toolchain.
//!
//! - `protocol`: the versioned newline-delimited JSON wire format (`docs/api.md`).
//! - `client`: the blocking client, over the local socket or over mutual TLS.
//! - `tls`: PEM reading, the client and server configs, certificate names.
//! - `record`: the flow record (a flow-log line and a `flows` reply) and its decoding from
//!   the kernel's `FlowEvent`; `clock` turns kernel timestamps into wall-clock time.
//! - `alert`: a detector's finding and the response, as logged and as `ztctl alerts` shows it.
//! - `flow_filter`: which flow records a `flows` request wants.
//! - `labels`: label sets and their syntax, as selectors and identities name them.
//! - `sources`: policy files read from disk as `(name, text)` sources for a push.

pub mod alert;
pub mod client;
pub mod clock;
pub mod edge;
pub mod flow_filter;
pub mod labels;
pub mod protocol;
pub mod record;
pub mod sources;
pub mod text;
pub mod tls;

pub use client::{Client, ClientError};
pub use record::FlowRecord;

/// Where the agent listens for local API clients unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/zt/agent.sock";
