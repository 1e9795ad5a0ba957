//! Address -> identity, by longest prefix in the active slot of IPCACHE_V4 / IPCACHE_V6.

use aya_ebpf::maps::lpm_trie::Key;
use zt_common::{
    addr::{Addr, FAMILY_V4},
    identity::WORLD,
    ipcache::{IpcacheV4Key, IpcacheV6Key, SLOT_BITS},
};

use crate::maps::{IPCACHE_V4, IPCACHE_V6};

/// The identity of `addr`. The agent always installs the default prefixes, so a miss can
/// only happen while a slot is being built; it resolves to `world`, the least trusted.
#[inline(always)]
pub fn identity_of(addr: &Addr, family: u8, slot: u8) -> u32 {
    let hit = if family == FAMILY_V4 {
        let key = Key::new(SLOT_BITS + 32, IpcacheV4Key { slot, addr: addr.v4_octets() });
        IPCACHE_V4.get(&key).map(|v| v.identity)
    } else {
        let key = Key::new(SLOT_BITS + 128, IpcacheV6Key { slot, addr: addr.bytes });
        IPCACHE_V6.get(&key).map(|v| v.identity)
    };
    hit.unwrap_or(WORLD)
}
