//! Writing and removing many entries of a map in one system call.
//!
//! A push writes every entry of a new policy into the inactive generation slot: 11,000
//! entries for a 10k-rule policy, 110,000 for 100k. `BPF_MAP_UPDATE_BATCH` and
//! `BPF_MAP_DELETE_BATCH` (Linux 5.6; LPM tries, hash maps and arrays) take arrays of keys
//! and values and do the same per-entry work as one `BPF_MAP_UPDATE_ELEM` each, without
//! entering the kernel per entry: writing a 10k-rule policy took 12.0 ms instead of 16.7,
//! a 100k-rule one 118 ms instead of 170 (`cargo xtask bench`, control plane). aya 0.14
//! does not offer them, so this file makes the call itself; where the call fails (a kernel
//! without it, a refused entry) the rest goes one by one, as before, so an error is the
//! one that entry gives on its own.

use std::os::fd::{AsFd, AsRawFd};

use aya::{
    Pod,
    maps::{IterableMap, LpmTrie, MapData, MapError, lpm_trie::Key},
};

/// `enum bpf_cmd` (include/uapi/linux/bpf.h).
const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;
const BPF_MAP_DELETE_BATCH: libc::c_long = 27;

/// The `batch` member of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// Entries per call: bounds the time one call holds the CPU without a signal check.
const CHUNK: usize = 8192;

/// Writes `values[i]` at `keys[i]` of `trie` for every i (`BPF_ANY`).
pub fn insert<K: Pod, V: Pod>(
    trie: &mut LpmTrie<MapData, K, V>,
    keys: &[Key<K>],
    values: &[V],
) -> Result<(), MapError> {
    assert_eq!(keys.len(), values.len(), "a value for every key");
    let from = batched(trie.map(), BPF_MAP_UPDATE_BATCH, keys, Some(values));
    keys[from..].iter().zip(&values[from..]).try_for_each(|(key, value)| trie.insert(key, value, 0))
}

/// Removes every key of `keys` from `trie` (a key not in it is an error, as for one).
pub fn remove<K: Pod, V: Pod>(trie: &mut LpmTrie<MapData, K, V>, keys: &[Key<K>]) -> Result<(), MapError> {
    let from = batched::<Key<K>, V>(trie.map(), BPF_MAP_DELETE_BATCH, keys, None);
    keys[from..].iter().try_for_each(|key| trie.remove(key))
}

/// The batch command `cmd` over `keys` (and `values`), chunk by chunk. Returns how many
/// entries it did: all of them, or those before the call failed — the kernel has no batch
/// operation for the map, or an entry was refused — from where the caller goes on one by
/// one (so a refused entry fails exactly as it does on its own).
fn batched<K: Copy, V: Copy>(map: &MapData, cmd: libc::c_long, keys: &[K], values: Option<&[V]>) -> usize {
    let fd = map.fd().as_fd().as_raw_fd();
    let mut done = 0;
    while done < keys.len() {
        let end = (done + CHUNK).min(keys.len());
        let chunk = &keys[done..end];
        let mut attr = BatchAttr {
            keys: chunk.as_ptr() as u64,
            values: values.map_or(0, |v| v[done..end].as_ptr() as u64),
            count: chunk.len() as u32,
            map_fd: fd as u32,
            ..BatchAttr::default()
        };
        // SAFETY: `attr` is a valid `bpf_attr.batch` naming `chunk.len()` keys of the map's
        // key size and as many values of its value size (the callers' contract), which stay
        // borrowed for the duration of the call; the kernel reads them and writes `count`.
        let ret =
            unsafe { libc::syscall(libc::SYS_bpf, cmd, &mut attr as *mut BatchAttr, std::mem::size_of::<BatchAttr>()) };
        if ret != 0 {
            // After a refused entry `count` holds how many went in before it (fewer than
            // the chunk); a kernel without the operation leaves it as it was.
            let went_in = attr.count as usize;
            return if went_in < chunk.len() { done + went_in } else { done };
        }
        done = end;
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `BPF_F_NO_PREALLOC`, which an LPM trie requires.
    const NO_PREALLOC: u32 = 1;

    fn trie(max_entries: u32) -> LpmTrie<MapData, u32, u32> {
        LpmTrie::create(max_entries, NO_PREALLOC).expect("create an LPM trie")
    }

    fn keys(n: u32) -> Vec<Key<u32>> {
        (0..n).map(|i| Key::new(32, (0xc612_0000 + i).to_be())).collect()
    }

    #[test]
    fn many_entries_go_in_and_out_in_chunks() {
        zt_tests::skip_unless_privileged!();
        let n = (2 * CHUNK + 100) as u32;
        let mut map = trie(n);
        let keys = keys(n);
        let values: Vec<u32> = (0..n).map(|i| i * 7).collect();
        insert(&mut map, &keys, &values).unwrap();
        assert_eq!(map.keys().count(), n as usize);
        for i in [0, CHUNK as u32, n - 1] {
            assert_eq!(map.get(&keys[i as usize], 0).unwrap(), i * 7);
        }
        // Writing again replaces the values.
        let doubled: Vec<u32> = values.iter().map(|v| v * 2).collect();
        insert(&mut map, &keys, &doubled).unwrap();
        assert_eq!(map.get(&keys[5], 0).unwrap(), 70);
        remove(&mut map, &keys[..CHUNK + 1]).unwrap();
        assert_eq!(map.keys().count(), n as usize - CHUNK - 1);
        assert!(map.get(&keys[CHUNK], 0).is_err(), "removed");
        assert_eq!(map.get(&keys[CHUNK + 1], 0).unwrap(), (CHUNK as u32 + 1) * 14);
    }

    #[test]
    fn a_refused_entry_fails_as_it_does_on_its_own_after_the_ones_before_it() {
        zt_tests::skip_unless_privileged!();
        let mut map = trie(10);
        let keys = keys(20);
        let values = vec![1u32; 20];
        let batched = insert(&mut map, &keys, &values).unwrap_err();
        assert_eq!(map.keys().count(), 10, "the entries before the full map went in");
        let alone = map.insert(&keys[10], 1, 0).unwrap_err();
        assert_eq!(batched.to_string(), alone.to_string());
        // Removing a key that is not there is an error too, after the ones that are.
        let missing = remove(&mut map, &keys[5..15]).unwrap_err();
        assert_eq!(map.keys().count(), 5);
        assert_eq!(missing.to_string(), map.remove(&keys[12]).unwrap_err().to_string());
    }
}
