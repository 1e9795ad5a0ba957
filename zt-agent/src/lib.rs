//! zt-agent: compiles identity-labelled segment policy into the kernel datapath's maps,
//! attaches the XDP/TC programs, and turns kernel flow events into flow logs.

pub mod agent;
pub mod api;
pub mod bpffs;
pub mod config;
pub mod datapath;
pub mod flows;
pub mod host;
pub mod identity;
pub mod metrics;
pub mod notify;
pub mod policy;
