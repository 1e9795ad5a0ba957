//! The agent API: how `ztctl` (and any other local client) drives a running agent.
//!
//! ```text
//! ztctl --client--> /run/zt/agent.sock --server--> auth (SO_PEERCRED: root only)
//!                                                -> handler (locks AgentState briefly)
//!                                                -> one JSON line, or a stream of them
//! ```
//! The wire format (`zt_api::protocol`) is versioned newline-delimited JSON, documented in
//! `docs/api.md`; it, the client and the TLS material live in the zt-api crate, which
//! `ztctl` shares. Handlers are one file per command group: `policy` (pushes, revisions),
//! `status`, `inventory` (endpoints, identities), `explain`, `flows` (with `flow_filter`),
//! `edges` (observed edges),
//! `quarantine` and `alerts`. Optionally, `remote` serves the same protocol over TCP with mutual TLS
//! (`tls`), where the client certificate's role (`role`) limits what it may ask.

// The wire format, the TLS material and the flow filter are shared with clients and live in
// zt-api; the handlers below name them as siblings.
use zt_api::{flow_filter, protocol, tls};

pub mod alerts;
pub mod auth;
pub mod edges;
pub mod explain;
pub mod flows;
pub mod inventory;
pub mod policy;
pub mod quarantine;
pub mod remote;
pub mod role;
pub mod server;
pub mod socket;
pub mod status;

pub use server::serve;
pub use socket::ApiSocket;
