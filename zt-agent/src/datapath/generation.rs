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

use super::{DatapathError, Maps, batch};

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

/// A slot's entries as (key, value), sorted by key with each key once, so two contents
/// diff in one merge walk (hash maps of 100k entries cost a one-rule change 20 ms).
type Entries<K, V> = Vec<(K, V)>;

#[derive(Default, Clone)]
struct SlotContent {
    /// ((LPM prefix length, key), value)
    policy: Entries<(u32, PolicyKey), PolicyValue>,
    v4: Entries<(u32, [u8; 4]), u32>,
    v6: Entries<(u32, [u8; 16]), u32>,
}

/// Sorted by key, each key once; of a repeated key the last value wins (what inserting the
/// list in order into the map leaves).
fn sorted<K: Ord + Copy, V: Copy>(mut entries: Entries<K, V>) -> Entries<K, V> {
    entries.sort_by_key(|(key, _)| *key);
    let mut out: Entries<K, V> = Vec::with_capacity(entries.len());
    for (key, value) in entries {
        match out.last_mut() {
            Some(last) if last.0 == key => last.1 = value,
            _ => out.push((key, value)),
        }
    }
    out
}

impl SlotContent {
    fn from_tables(tables: &Tables, slot: u8) -> SlotContent {
        let policy = tables.policy.iter().map(|(prefix, key, value)| ((*prefix, PolicyKey { slot, ..*key }), *value));
        let (mut v4, mut v6) = (Vec::new(), Vec::new());
        for (net, identity) in &tables.ipcache {
            let net = net.trunc();
            let prefix = SLOT_BITS + net.prefix_len() as u32;
            match net.network() {
                IpAddr::V4(a) => v4.push(((prefix, a.octets()), *identity)),
                IpAddr::V6(a) => v6.push(((prefix, a.octets()), *identity)),
            }
        }
        SlotContent { policy: sorted(policy.collect()), v4: sorted(v4), v6: sorted(v6) }
    }

    /// What the pinned maps hold for `slot` (adopting state from an earlier agent).
    fn read(maps: &Maps, slot: u8) -> Result<SlotContent, DatapathError> {
        let (mut policy, mut v4, mut v6) = (Vec::new(), Vec::new(), Vec::new());
        for item in maps.policy.iter() {
            let (k, v) = item.map_err(DatapathError::map(map_names::POLICY))?;
            let data = k.data();
            if data.slot == slot {
                policy.push(((k.prefix_len(), data), v));
            }
        }
        for item in maps.ipcache_v4.iter() {
            let (k, v) = item.map_err(DatapathError::map(map_names::IPCACHE_V4))?;
            let data = k.data();
            if data.slot == slot {
                v4.push(((k.prefix_len(), data.addr), v.identity));
            }
        }
        for item in maps.ipcache_v6.iter() {
            let (k, v) = item.map_err(DatapathError::map(map_names::IPCACHE_V6))?;
            let data = k.data();
            if data.slot == slot {
                v6.push(((k.prefix_len(), data.addr), v.identity));
            }
        }
        Ok(SlotContent { policy: sorted(policy), v4: sorted(v4), v6: sorted(v6) })
    }
}

/// The difference from `have` to `want` (both [`sorted`]): keys to write (new or with another
/// value) and keys to remove, in key order.
fn difference<K: Ord + Copy, V: PartialEq + Copy>(have: &[(K, V)], want: &[(K, V)]) -> (Entries<K, V>, Vec<K>) {
    let (mut write, mut remove) = (Vec::new(), Vec::new());
    let (mut h, mut w) = (have.iter().peekable(), want.iter().peekable());
    loop {
        match (h.peek(), w.peek()) {
            (Some(&&(hk, hv)), Some(&&(wk, wv))) => match hk.cmp(&wk) {
                std::cmp::Ordering::Less => {
                    remove.push(hk);
                    h.next();
                }
                std::cmp::Ordering::Greater => {
                    write.push((wk, wv));
                    w.next();
                }
                std::cmp::Ordering::Equal => {
                    if hv != wv {
                        write.push((wk, wv));
                    }
                    h.next();
                    w.next();
                }
            },
            (Some(&&(hk, _)), None) => {
                remove.push(hk);
                h.next();
            }
            (None, Some(&&entry)) => {
                write.push(entry);
                w.next();
            }
            (None, None) => return (write, remove),
        }
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

/// Brings `slot` from `have` to `want`: inserts what is new or changed, then removes the rest.
fn write_slot(
    maps: &mut Maps,
    have: &SlotContent,
    want: &SlotContent,
    slot: u8,
) -> Result<(usize, usize), DatapathError> {
    let (policy_write, policy_remove) = difference(&have.policy, &want.policy);
    let (v4_write, v4_remove) = difference(&have.v4, &want.v4);
    let (v6_write, v6_remove) = difference(&have.v6, &want.v6);
    let written = policy_write.len() + v4_write.len() + v6_write.len();
    let removed = policy_remove.len() + v4_remove.len() + v6_remove.len();
    let (keys, values): (Vec<_>, Vec<_>) =
        policy_write.into_iter().map(|((prefix, key), value)| (Key::new(prefix, key), value)).unzip();
    batch::insert(&mut maps.policy, &keys, &values).map_err(DatapathError::map(map_names::POLICY))?;
    let (keys, values): (Vec<_>, Vec<_>) = v4_write
        .into_iter()
        .map(|((prefix, addr), identity)| (Key::new(prefix, IpcacheV4Key { slot, addr }), IpcacheValue { identity }))
        .unzip();
    batch::insert(&mut maps.ipcache_v4, &keys, &values).map_err(DatapathError::map(map_names::IPCACHE_V4))?;
    let (keys, values): (Vec<_>, Vec<_>) = v6_write
        .into_iter()
        .map(|((prefix, addr), identity)| (Key::new(prefix, IpcacheV6Key { slot, addr }), IpcacheValue { identity }))
        .unzip();
    batch::insert(&mut maps.ipcache_v6, &keys, &values).map_err(DatapathError::map(map_names::IPCACHE_V6))?;
    let keys: Vec<_> = policy_remove.into_iter().map(|(prefix, key)| Key::new(prefix, key)).collect();
    batch::remove(&mut maps.policy, &keys).map_err(DatapathError::map(map_names::POLICY))?;
    let keys: Vec<_> =
        v4_remove.into_iter().map(|(prefix, addr)| Key::new(prefix, IpcacheV4Key { slot, addr })).collect();
    batch::remove(&mut maps.ipcache_v4, &keys).map_err(DatapathError::map(map_names::IPCACHE_V4))?;
    let keys: Vec<_> =
        v6_remove.into_iter().map(|(prefix, addr)| Key::new(prefix, IpcacheV6Key { slot, addr })).collect();
    batch::remove(&mut maps.ipcache_v6, &keys).map_err(DatapathError::map(map_names::IPCACHE_V6))?;
    Ok((written, removed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_key_keeps_its_last_value() {
        assert_eq!(sorted(vec![(3, 'a'), (1, 'b'), (3, 'c'), (2, 'd')]), vec![(1, 'b'), (2, 'd'), (3, 'c')]);
    }

    #[test]
    fn the_difference_writes_new_and_changed_keys_and_removes_the_rest() {
        let have = sorted(vec![(1, 10), (2, 20), (4, 40), (6, 60)]);
        let want = sorted(vec![(2, 20), (3, 30), (4, 41), (7, 70)]);
        assert_eq!(difference(&have, &want), (vec![(3, 30), (4, 41), (7, 70)], vec![1, 6]));
        assert_eq!(difference(&want, &want), (vec![], vec![]));
        assert_eq!(difference(&[], &want), (want.clone(), vec![]));
        assert_eq!(difference(&want, &[]), (vec![], vec![2, 3, 4, 7]));
    }
}
