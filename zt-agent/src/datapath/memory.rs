//! Kernel memory of the agent's BPF maps, map by map: what the kernel charges each one
//! (`memlock` in its fdinfo), found through the process's own file descriptors, so the
//! unpinned maps (caches, scratch space) are counted too. Maps open more than once are
//! counted once.

use std::collections::BTreeMap;

use aya::maps::MapInfo;

/// One map's size and memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapMemory {
    /// The kernel's name of the map (`ZT_CONNTRACK`; truncated to 15 bytes by the kernel).
    pub name: String,
    pub max_entries: u32,
    /// Bytes the kernel charges for the map.
    pub bytes: u64,
}

/// Every BPF map this process holds, largest first.
pub fn maps_of_this_process() -> Vec<MapMemory> {
    maps_of("self")
}

/// Every BPF map process `pid` holds (root may read any), largest first.
pub fn maps_of_process(pid: u32) -> Vec<MapMemory> {
    maps_of(&pid.to_string())
}

fn maps_of(process: &str) -> Vec<MapMemory> {
    let mut by_id: BTreeMap<u32, MapMemory> = BTreeMap::new();
    let Ok(fds) = std::fs::read_dir(format!("/proc/{process}/fdinfo")) else {
        return Vec::new();
    };
    for entry in fds.flatten() {
        let Ok(info) = std::fs::read_to_string(entry.path()) else { continue };
        let field =
            |name: &str| info.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.trim().parse::<u64>().ok());
        let (Some(id), Some(bytes)) = (field("map_id:"), field("memlock:")) else { continue };
        let id = id as u32;
        if by_id.contains_key(&id) {
            continue;
        }
        let (name, max_entries) = match MapInfo::from_id(id) {
            Ok(m) => (m.name_as_str().unwrap_or("?").to_string(), m.max_entries()),
            Err(_) => (format!("map {id}"), field("max_entries:").unwrap_or(0) as u32),
        };
        by_id.insert(id, MapMemory { name, max_entries, bytes });
    }
    let mut maps: Vec<MapMemory> = by_id.into_values().collect();
    maps.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.name.cmp(&b.name)));
    maps
}
