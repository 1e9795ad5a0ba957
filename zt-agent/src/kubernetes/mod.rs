//! `zt-agent run --kubernetes`: the cluster as the agent's policy input. Sits beside `api`
//! in the layers: it translates the API server's objects into calls on the agent core, and
//! the translation of objects into policy stays in `policy::parse::kubernetes`.
//!
//! The flow, one file per step:
//! - [`connection`]: where the API server is (kubeconfig or the pod's service account);
//! - [`http`]: the HTTP/1.1 GETs the protocol needs (plain or TLS, chunked streams);
//! - [`watch`]: list + watch of one resource (resource versions, bookmarks, 410 Gone,
//!   reconnects, backoff);
//! - [`objects`]: the watched objects, trimmed to documents of the policy parser;
//! - [`sync`]: the first list before attaching, then changes pushed as generations;
//! - [`links`]: this node's pod interfaces, attached as they appear.

pub mod connection;
pub mod http;
pub mod links;
pub mod objects;
pub mod sync;
pub mod watch;

pub use objects::{Cluster, Resource};

use crate::agent::KubernetesOptions;

/// The API server `opts` names: `--kubeconfig`, else the pod's service account.
pub fn endpoint(opts: &KubernetesOptions) -> anyhow::Result<http::Endpoint> {
    match &opts.kubeconfig {
        Some(path) => connection::from_kubeconfig(path),
        None => connection::in_cluster(),
    }
}
