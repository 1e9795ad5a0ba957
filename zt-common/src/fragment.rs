//! FRAGMENTS: the verdict of a first fragment, so later fragments of the same datagram
//! (which carry no ports) follow it. An LRU hash keyed by (src, dst, id, protocol).

use crate::addr::Addr;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FragKey {
    pub src: Addr,
    pub dst: Addr,
    /// IPv4 identification (16 bits) or IPv6 fragment identification (32 bits).
    pub id: u32,
    pub proto: u8,
    pub family: u8,
    pub _pad: [u8; 2],
}
crate::assert_size!(FragKey, 40);

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FragValue {
    pub created_ns: u64,
    /// `reason::VERDICT_*` of the first fragment.
    pub verdict: u8,
    pub _pad: [u8; 7],
}
crate::assert_size!(FragValue, 16);

/// A first fragment's verdict is followed for this long.
pub const FRAGMENT_TIMEOUT_NS: u64 = 30_000_000_000;
pub const FRAGMENTS_MAX_ENTRIES: u32 = 8192;

crate::user_pod!(FragKey, FragValue);
