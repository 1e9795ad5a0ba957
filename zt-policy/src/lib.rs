//! zt-policy: the compiler from policy documents to what the kernel enforces, and the
//! questions asked of its result.
//!
//! ```text
//! generation (load, check, ipcache)   explain (address -> identity -> verdict)
//!   -> policy -> identity   host        zt-api (sources, labels)   zt-common (layouts)
//! ```
//!
//! It reads files and builds tables; it never touches the kernel. The agent (zt-agent)
//! writes its output into the maps; ztctl's offline commands (`policy validate`,
//! `policy test`, `explain --policy`) run the very same code without root or an agent, so
//! an offline answer is the kernel's answer.

pub mod explain;
pub mod generation;
pub mod host;
pub mod identity;
mod parallel;
pub mod policy;
