//! IPCACHE_V4 / IPCACHE_V6: longest-prefix match from an address to its identity.
//!
//! The maps are LPM tries. The first byte of every key is the policy *slot* (generation
//! parity), so the agent can build the next generation's ipcache next to the live one and
//! switch both the ipcache and the policy with the single CONFIG store; packets never see a
//! new identity judged by an old policy or the reverse. The agent always installs the
//! default prefix (`0.0.0.0/0`, `::/0`) as `world`, so every lookup hits.

/// LPM key data for IPv4 (the aya `Key` wrapper adds the prefix length in front).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct IpcacheV4Key {
    pub slot: u8,
    pub addr: [u8; 4],
}
crate::assert_size!(IpcacheV4Key, 5);

/// LPM key data for IPv6.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct IpcacheV6Key {
    pub slot: u8,
    pub addr: [u8; 16],
}
crate::assert_size!(IpcacheV6Key, 17);

/// Bits of the key that precede the address (the slot byte).
pub const SLOT_BITS: u32 = 8;

/// What a prefix resolves to.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct IpcacheValue {
    pub identity: u32,
}
crate::assert_size!(IpcacheValue, 4);

pub const IPCACHE_MAX_ENTRIES: u32 = 1 << 20;

crate::user_pod!(IpcacheV4Key, IpcacheV6Key, IpcacheValue);
