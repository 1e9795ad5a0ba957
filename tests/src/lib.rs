//! End-to-end test harness of zt: builds throw-away networks out of Linux network namespaces
//! and veth links, sends real TCP, UDP and ICMP through them, and runs the agent inside them —
//! so the XDP/TC programs are tested on real packets without touching the machine's own
//! interfaces, routes or firewall.
//!
//! Every namespace is a guard ([`Netns`]) that deletes itself (and its links) on drop, also
//! when a test panics. Names carry the process id and a sequence number, so tests run in
//! parallel, and namespaces of a killed test process are swept by the next run. Addresses come
//! only from 198.18.0.0/15 and fd00::/8, and exist only inside the namespaces. All traffic
//! helpers take the namespace they act from; every wait has a timeout.
//!
//! ```no_run
//! use std::time::Duration;
//! use zt_tests::{Family, TcpEchoServer, skip_unless_privileged, tcp_connect, topology};
//!
//! # fn main() -> zt_tests::Result<()> {
//! skip_unless_privileged!(Ok(()));
//! let net = topology::pair()?;
//! let server = TcpEchoServer::start(&net.server.ns, net.server.socket(Family::V4, 8080))?;
//! tcp_connect(&net.client.ns, server.local_addr(), Duration::from_secs(2)).expect("allowed");
//! # Ok(())
//! # }
//! ```
//!
//! Modules, by concern:
//! - [`netns`]: namespace guards, running programs and closures inside them.
//! - [`veth`], [`topology`]: links, and the [`topology::pair`] / [`topology::star`] networks.
//! - [`traffic`]: TCP, UDP and ICMP probes, servers, bounded floods.
//! - [`metrics`]: scraping the agent's Prometheus endpoint from inside a namespace.
//! - [`process`]: the agent and `ztctl` as processes in a namespace; log and flow-log reading.
//! - [`scratch`], [`bpffs`]: per-test directories and BPF filesystems.
//! - [`kube_api`]: a stub Kubernetes API server (list, watch, bookmarks, 410 Gone, drops).
//! - [`privileged`]: the root/namespace gate (`SKIPPED`, or a failure under CI); [`tool`]:
//!   the same gate for an outside program a test needs.
//! - [`browser`], [`ocr`]: screenshots by headless Chromium and text read by tesseract, for
//!   tests of pictures.

pub mod bpffs;
pub mod browser;
pub mod command;
pub mod error;
pub mod kube_api;
pub mod metrics;
pub mod names;
pub mod netns;
pub mod ocr;
pub mod privileged;
pub mod process;
pub mod rng;
pub mod scratch;
pub mod tool;
pub mod topology;
pub mod traffic;
pub mod veth;

pub use bpffs::{BpfFs, HostPinDir};
pub use error::{Error, Result};
pub use kube_api::StubApiServer;
pub use netns::Netns;
pub use privileged::require_privileged;
pub use process::{NsProcess, read_json_lines, wait_for_line, workspace_binary};
pub use scratch::Scratch;
pub use topology::{Family, Host, Pair, Star, Workload};
pub use traffic::flood::{UdpCounter, udp_send_n};
pub use traffic::icmp::icmp_echo;
pub use traffic::syn_flood::{Sources, SynFlood, syn_flood};
pub use traffic::tcp::{ConnError, TcpEchoServer, tcp_connect, tcp_exchange};
pub use traffic::udp::{UdpEchoServer, udp_roundtrip};
