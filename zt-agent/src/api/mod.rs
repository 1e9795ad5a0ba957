//! The agent API: how `ztctl` (and any other local client) drives a running agent.
//!
//! ```text
//! ztctl --client--> /run/zt/agent.sock --server--> auth (SO_PEERCRED: root only)
//!                                                -> handler (locks AgentState briefly)
//!                                                -> one JSON line, or a stream of them
//! ```
//! The wire format (`protocol`) is versioned newline-delimited JSON, documented in
//! `docs/api.md`. Handlers are one file per command group: `policy` (pushes, revisions),
//! `status`, `inventory` (endpoints, identities), `explain`, `flows` (with `flow_filter`)
//! and `quarantine`. Optionally, `remote` serves the same protocol over TCP with mutual TLS
//! (`tls`), where the client certificate's role (`role`) limits what it may ask.

pub mod auth;
pub mod client;
pub mod explain;
pub mod flow_filter;
pub mod flows;
pub mod inventory;
pub mod policy;
pub mod protocol;
pub mod quarantine;
pub mod remote;
pub mod role;
pub mod server;
pub mod socket;
pub mod status;
pub mod tls;

pub use client::{Client, ClientError};
pub use server::serve;
pub use socket::ApiSocket;
