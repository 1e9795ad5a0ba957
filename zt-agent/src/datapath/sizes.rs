//! Map sizes an operator may choose (`[maps]` in the configuration file): the tables whose
//! entries cost memory in proportion to their size. The kernel object declares the defaults
//! (`zt_common`'s `*_MAX_ENTRIES`); the loader overrides them before the maps are created.
//!
//! A pinned map keeps the size it was created with, so an agent asked for another size sets
//! the old pin aside like a map of another layout (see [`super::layout`]) and starts the map
//! afresh: resizing CONNTRACK re-judges established flows on their next packet, which policy
//! then admits again (TCP pick-up), and resizing the others loses only caches and counters.

use std::collections::BTreeMap;

use zt_common::{
    conntrack::{CONNTRACK_MAX_ENTRIES, HALF_OPEN_MAX_ENTRIES},
    denied::DENIED_MAX_ENTRIES,
    detect::{FAN_OUT_MAX_ENTRIES, SCAN_MAX_ENTRIES},
    fragment::FRAGMENTS_MAX_ENTRIES,
    map_names,
    quarantine::{DENY_BUDGET_MAX_ENTRIES, QUARANTINE_MAX_ENTRIES},
    ratelimit::RATE_BUCKETS_MAX_ENTRIES,
};

/// (config key, map name, default entries, what an entry is).
pub const RESIZABLE: &[(&str, &str, u32, &str)] = &[
    ("conntrack", map_names::CONNTRACK, CONNTRACK_MAX_ENTRIES, "tracked flows"),
    ("half_open", map_names::HALF_OPEN, HALF_OPEN_MAX_ENTRIES, "TCP handshakes in progress"),
    ("fragments", map_names::FRAGMENTS, FRAGMENTS_MAX_ENTRIES, "first fragments remembered"),
    ("quarantine", map_names::QUARANTINE, QUARANTINE_MAX_ENTRIES, "quarantined addresses"),
    ("deny_budget", map_names::DENY_BUDGET, DENY_BUDGET_MAX_ENTRIES, "sources with a deny-event budget, per CPU"),
    ("denied", map_names::DENIED, DENIED_MAX_ENTRIES, "recently denied connection attempts"),
    ("scan", map_names::SCAN, SCAN_MAX_ENTRIES, "sources tracked by port_scan and sweep"),
    ("fan_out", map_names::FAN_OUT, FAN_OUT_MAX_ENTRIES, "local identities tracked by fan_out"),
    ("rate_buckets", map_names::RATE_BUCKETS, RATE_BUCKETS_MAX_ENTRIES, "rate-limit buckets (source, rule)"),
];

/// Fewest and most entries a resizable map may be given.
pub const MIN_ENTRIES: u32 = 64;
pub const MAX_ENTRIES: u32 = 1 << 24;

/// Entries per map, by map name; maps not named keep the object's size.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MapSizes {
    entries: BTreeMap<&'static str, u32>,
}

impl MapSizes {
    /// Sets the map of config key `key` to `entries`; the error is the end of a sentence
    /// about the key.
    pub fn set(&mut self, key: &str, entries: u32) -> Result<(), String> {
        let Some(&(_, map, _, _)) = RESIZABLE.iter().find(|(k, ..)| *k == key) else {
            let keys: Vec<&str> = RESIZABLE.iter().map(|(k, ..)| *k).collect();
            return Err(format!("is not a map that can be sized; use one of {}", keys.join(", ")));
        };
        if !(MIN_ENTRIES..=MAX_ENTRIES).contains(&entries) {
            return Err(format!("= {entries} is out of range; use {MIN_ENTRIES} to {MAX_ENTRIES} entries"));
        }
        self.entries.insert(map, entries);
        Ok(())
    }

    /// Overrides the object's size of `map`.
    pub fn set_map(&mut self, map: &'static str, entries: u32) {
        self.entries.insert(map, entries);
    }

    /// The entries `map` gets, if chosen.
    pub fn get(&self, map: &str) -> Option<u32> {
        self.entries.get(map).copied()
    }

    /// The entries `map` gets: chosen, else the default of the resizable map.
    pub fn entries(&self, map: &str) -> u32 {
        self.get(map).or_else(|| RESIZABLE.iter().find(|(_, m, ..)| *m == map).map(|r| r.2)).unwrap_or(0)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u32)> + '_ {
        self.entries.iter().map(|(m, n)| (*m, *n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_maps_and_sizes_are_bounded() {
        let mut s = MapSizes::default();
        s.set("conntrack", 65536).unwrap();
        assert_eq!(s.entries(map_names::CONNTRACK), 65536);
        assert_eq!(s.entries(map_names::SCAN), SCAN_MAX_ENTRIES, "unchosen: the default");
        assert!(
            s.set("conntrak", 1).unwrap_err().starts_with("is not a map that can be sized; use one of conntrack, ")
        );
        assert_eq!(s.set("scan", 10).unwrap_err(), "= 10 is out of range; use 64 to 16777216 entries");
    }
}
