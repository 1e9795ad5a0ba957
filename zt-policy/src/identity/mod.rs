//! Identities: the numbers the datapath judges traffic by.
//!
//! Policy speaks in labels; the kernel speaks in u32 identities. This module owns the
//! translation: [`Labels`] (a label set and its syntax rules) and [`IdentityAllocator`] (label
//! set -> number, stable across policy pushes). The policy compiler uses both to build the
//! ipcache (prefix -> identity) and the POLICY map (identity pairs -> verdict).
//!
//! Reserved numbers come from `zt_common::identity`: 0 is "unknown" and the wildcard in
//! policy keys, 1 is this host (its labels are the operator's `--labels` plus
//! `reserved:host`), 2 is the world (`reserved:world`). Everything else starts at 256.

pub mod allocator;
// Label syntax is shared with clients (selectors in `ztctl flows`): it lives in zt-api.
pub use zt_api::labels;

pub use allocator::{Added, Allocation, AllocatorError, IdentityAllocator};
pub use labels::{LabelError, Labels};
