//! Atomic policy updates by generation.
//!
//! IPCACHE and POLICY keys start with a slot byte (generation parity). A push writes the
//! complete new tables into the inactive slot — as a diff against what that slot held, so
//! small changes to large policies are cheap — then switches CONFIG.generation with one
//! store. Packets read the generation once, so each sees the old tables or the new ones,
//! never a mix and never an empty map. A failed write leaves the active slot untouched.
//!
//! The rate limits POLICY values name by index live in RATE_LIMITS, one block per slot,
//! written with the slot's tables: the switch changes verdicts and limits together.
//!
//! The slot that just went inactive may still be read by packets that loaded the previous
//! generation a moment before the switch; those program runs last microseconds, so the next
//! push waits a grace period before it rewrites that slot.

use std::{
    collections::HashMap,
    net::IpAddr,
    time::{Duration, Instant},
};

use aya::maps::lpm_trie::Key;
use ipnet::IpNet;
use zt_common::{
    ipcache::{IpcacheV4Key, IpcacheV6Key, IpcacheValue, SLOT_BITS},
    map_names,
    policy::{PolicyKey, PolicyValue},
    ratelimit::{RATE_LIMITS_PER_SLOT, RateLimit, slot_index},
};

use super::{DatapathError, Maps};

/// Grace period between a switch and the next rewrite of the slot it retired. Program runs
/// are RCU read-side sections of microseconds; this is generous by three orders.
const GRACE: Duration = Duration::from_millis(5);

/// One generation's complete tables, as the compiler produces them (slots unset).
#[derive(Clone, Debug, Default)]
pub struct Tables {
    /// (LPM prefix length, key with any slot, merged verdict).
    pub policy: Vec<(u32, PolicyKey, PolicyValue)>,
    /// Prefix -> identity.
    pub ipcache: Vec<(IpNet, u32)>,
    /// Rate limits: POLICY values name `rate_limits[i]` by index `i + 1` (0 = no limit).
    pub rate_limits: Vec<RateLimit>,
}

type PolicyEntries = HashMap<(u32, PolicyKey), PolicyValue>;
type V4Entries = HashMap<(u32, [u8; 4]), u32>;
type V6Entries = HashMap<(u32, [u8; 16]), u32>;

#[derive(Default, Clone)]
struct SlotContent {
    policy: PolicyEntries,
    v4: V4Entries,
    v6: V6Entries,
}

impl SlotContent {
    fn from_tables(tables: &Tables, slot: u8) -> SlotContent {
        let mut c = SlotContent::default();
        for (prefix, key, value) in &tables.policy {
            c.policy.insert((*prefix, PolicyKey { slot, ..*key }), *value);
        }
        for (net, identity) in &tables.ipcache {
            let net = net.trunc();
            match net.network() {
                IpAddr::V4(a) => {
                    c.v4.insert((SLOT_BITS + net.prefix_len() as u32, a.octets()), *identity);
                }
                IpAddr::V6(a) => {
                    c.v6.insert((SLOT_BITS + net.prefix_len() as u32, a.octets()), *identity);
                }
            }
        }
        c
    }

    /// What the pinned maps hold for `slot` (adopting state from an earlier agent).
    fn read(maps: &Maps, slot: u8) -> Result<SlotContent, DatapathError> {
        let mut c = SlotContent::default();
        for item in maps.policy.iter() {
            let (k, v) = item.map_err(DatapathError::map(map_names::POLICY))?;
            let data = k.data();
            if data.slot == slot {
                c.policy.insert((k.prefix_len(), data), v);
            }
        }
        for item in maps.ipcache_v4.iter() {
            let (k, v) = item.map_err(DatapathError::map(map_names::IPCACHE_V4))?;
            let data = k.data();
            if data.slot == slot {
                c.v4.insert((k.prefix_len(), data.addr), v.identity);
            }
        }
        for item in maps.ipcache_v6.iter() {
            let (k, v) = item.map_err(DatapathError::map(map_names::IPCACHE_V6))?;
            let data = k.data();
            if data.slot == slot {
                c.v6.insert((k.prefix_len(), data.addr), v.identity);
            }
        }
        Ok(c)
    }
}

/// What a push changed in the kernel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SwapReport {
    pub generation: u32,
    pub written: usize,
    pub removed: usize,
}

/// Writes generations and switches between them.
pub struct GenerationWriter {
    slots: [SlotContent; 2],
    last_switch: Option<Instant>,
}

impl GenerationWriter {
    /// Starts from whatever the (possibly adopted) maps hold.
    pub fn adopt(maps: &Maps) -> Result<GenerationWriter, DatapathError> {
        Ok(GenerationWriter { slots: [SlotContent::read(maps, 0)?, SlotContent::read(maps, 1)?], last_switch: None })
    }

    /// The active generation in the kernel.
    pub fn active(maps: &Maps) -> Result<u32, DatapathError> {
        Ok(maps.read_config()?.generation)
    }

    /// Writes `tables` as the next generation and switches to it.
    pub fn apply(&mut self, maps: &mut Maps, tables: &Tables) -> Result<SwapReport, DatapathError> {
        let mut cfg = maps.read_config()?;
        let mut generation = cfg.generation.wrapping_add(1);
        if generation == 0 {
            // 0 means "nothing loaded"; skipping it keeps the parity alternating.
            generation = 2;
        }
        let slot = (generation & 1) as u8;
        if let Some(at) = self.last_switch {
            let since = at.elapsed();
            if since < GRACE {
                std::thread::sleep(GRACE - since);
            }
        }
        let want = SlotContent::from_tables(tables, slot);
        let result = write_rate_limits(maps, &tables.rate_limits, slot)
            .and_then(|limits| write_slot(maps, &self.slots[slot as usize], &want, slot).map(|(w, r)| (w + limits, r)));
        let (written, removed) = match result {
            Ok(counts) => counts,
            Err(e) => {
                // The inactive slot is now partly written; forget what we believed it held.
                self.slots[slot as usize] = SlotContent::read(maps, slot).unwrap_or_default();
                return Err(e);
            }
        };
        cfg.generation = generation;
        maps.write_config(&cfg)?;
        self.last_switch = Some(Instant::now());
        self.slots[slot as usize] = want;
        Ok(SwapReport { generation, written, removed })
    }
}

/// Writes one slot's block of RATE_LIMITS (a few entries: all of them, every push). Indexes
/// past the list keep stale values, but no POLICY value of the slot names them.
fn write_rate_limits(maps: &mut Maps, limits: &[RateLimit], slot: u8) -> Result<usize, DatapathError> {
    if limits.len() >= RATE_LIMITS_PER_SLOT as usize {
        return Err(DatapathError::TooManyRateLimits { count: limits.len(), limit: RATE_LIMITS_PER_SLOT as usize - 1 });
    }
    for (i, limit) in limits.iter().enumerate() {
        let index = slot_index(slot, i as u16 + 1);
        maps.rate_limits.set(index, limit, 0).map_err(DatapathError::map(map_names::RATE_LIMITS))?;
    }
    Ok(limits.len())
}

/// Brings `slot` from `have` to `want`: inserts what is new or changed, removes the rest.
fn write_slot(
    maps: &mut Maps,
    have: &SlotContent,
    want: &SlotContent,
    slot: u8,
) -> Result<(usize, usize), DatapathError> {
    let mut written = 0;
    let mut removed = 0;
    for (&(prefix, key), value) in &want.policy {
        if have.policy.get(&(prefix, key)) != Some(value) {
            maps.policy.insert(&Key::new(prefix, key), value, 0).map_err(DatapathError::map(map_names::POLICY))?;
            written += 1;
        }
    }
    for (&(prefix, addr), &identity) in &want.v4 {
        if have.v4.get(&(prefix, addr)) != Some(&identity) {
            let key = Key::new(prefix, IpcacheV4Key { slot, addr });
            maps.ipcache_v4
                .insert(&key, IpcacheValue { identity }, 0)
                .map_err(DatapathError::map(map_names::IPCACHE_V4))?;
            written += 1;
        }
    }
    for (&(prefix, addr), &identity) in &want.v6 {
        if have.v6.get(&(prefix, addr)) != Some(&identity) {
            let key = Key::new(prefix, IpcacheV6Key { slot, addr });
            maps.ipcache_v6
                .insert(&key, IpcacheValue { identity }, 0)
                .map_err(DatapathError::map(map_names::IPCACHE_V6))?;
            written += 1;
        }
    }
    for &(prefix, key) in have.policy.keys() {
        if !want.policy.contains_key(&(prefix, key)) {
            maps.policy.remove(&Key::new(prefix, key)).map_err(DatapathError::map(map_names::POLICY))?;
            removed += 1;
        }
    }
    for &(prefix, addr) in have.v4.keys() {
        if !want.v4.contains_key(&(prefix, addr)) {
            maps.ipcache_v4
                .remove(&Key::new(prefix, IpcacheV4Key { slot, addr }))
                .map_err(DatapathError::map(map_names::IPCACHE_V4))?;
            removed += 1;
        }
    }
    for &(prefix, addr) in have.v6.keys() {
        if !want.v6.contains_key(&(prefix, addr)) {
            maps.ipcache_v6
                .remove(&Key::new(prefix, IpcacheV6Key { slot, addr }))
                .map_err(DatapathError::map(map_names::IPCACHE_V6))?;
            removed += 1;
        }
    }
    Ok((written, removed))
}
