//! zt-agent: compiles identity-labelled segment policy into the kernel datapath's maps,
//! attaches the XDP/TC programs, and turns kernel flow events into flow logs.
//!
//! Layers import downwards only (a module may use the ones below it, never above):
//!
//! ```text
//! bin/zt-agent.rs                              binaries (ztctl is its own crate, on zt-api)
//!   daemon                                     wiring of `zt-agent run`: servers, pipeline, main loop
//!   api (server, handlers)   metrics   config  translate requests/scrapes/files to core calls
//!   kubernetes                                 translates watched cluster objects to core calls
//!   agent                                      core: AgentState (private fields) and every change
//!                                              to it: pushes, revisions, quarantine, expiry
//!   datapath   flows   detect   host   bpffs   notify   heap
//!                                              kernel maps, compile, flow pipeline (owns rule-hit
//!                                              and flow-log counters; metrics reads them),
//!                                              detectors' findings (the core answers them)
//! zt-policy (crate: policy -> identity, the compiler; re-exported as crate::policy)
//! zt-api (crate: protocol, client, tls, flow records, labels)   zt-common (crate: layouts)
//! zt-ebpf (kernel programs, embedded by build.rs)
//! ```
//!
//! So `api` and `metrics` are never imported by `agent`, `flows`, `datapath`, `policy` or
//! `identity`; `metrics` is never imported by `flows`; `daemon` by nothing.

pub mod agent;
pub mod api;
pub mod bpffs;
pub mod config;
pub mod daemon;
pub mod datapath;
pub mod detect;
pub mod flows;
pub mod heap;
pub mod host;
pub mod kubernetes;
pub mod metrics;
pub mod notify;
pub mod state_file;

// The compiler is its own crate (zt-policy, no kernel access) so ztctl can run it offline;
// re-exported here so the agent reads `crate::policy` and `crate::identity` as before.
pub use zt_policy::{identity, policy};
