//! The kernel datapath as userspace sees it: the embedded eBPF object, loaded with every map
//! pinned under the bpffs directory; attachment to interfaces; and typed access to the maps
//! (policy generations, config, counters, conntrack, events).

mod attach;
pub mod batch;
mod clock;
mod error;
mod generation;
pub mod layout;
mod link_kind;
mod maps;
pub mod memory;
mod object;
pub mod pins;
pub mod sizes;

pub use attach::{Attachment, IngressHook, XdpModeChoice, ifindex_of};
pub use error::DatapathError;
pub use generation::{GenerationWriter, SwapReport, Tables};
pub use link_kind::{LinkKind, link_kind};
pub use maps::{Maps, StatsSnapshot, memlock_bytes};
pub use object::Datapath;
pub use pins::LinkLifetime;
pub use sizes::MapSizes;
