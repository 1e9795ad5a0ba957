//! Numeric security identities.
//!
//! A label set maps to one identity, allocated by the agent; numbers are node-local. The
//! first 256 are reserved. In policy keys, [`ANY`] is the wildcard peer or local identity.

/// Unknown, and the wildcard ("any identity") in policy keys.
pub const ANY: u32 = 0;
/// This machine: every address configured on the agent's network namespace.
pub const HOST: u32 = 1;
/// Anything no more specific prefix matches (the ipcache's default route).
pub const WORLD: u32 = 2;
/// First identity the agent allocates for label sets and CIDR prefixes.
pub const FIRST_ALLOCATED: u32 = 256;

/// Display name of a reserved identity, or `None` for allocated ones.
pub const fn reserved_name(id: u32) -> Option<&'static str> {
    match id {
        ANY => Some("unknown"),
        HOST => Some("host"),
        WORLD => Some("world"),
        _ => None,
    }
}
