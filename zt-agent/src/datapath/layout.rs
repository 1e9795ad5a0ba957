//! Upgrades across map layouts: which pinned maps a new agent adopts, which it sets aside,
//! and what it carries over from them.
//!
//! Pinned maps outlive the agent, so an upgraded agent finds the maps of the agent before
//! it. It must never read one through the wrong layout. A map whose layout changes gets a
//! new pin name (see `zt_common::map_names`), and the agent checks every pin it is about to
//! adopt against its own definition of that map:
//!
//! 1. **Before loading** ([`set_aside`]): every `ZT_*` pin this agent does not define (an
//!    older layout's name, or a newer agent's), every pin whose key or value size differs
//!    from the definition in this agent's object, and every pin of another size than the
//!    agent is asked for (`[maps]`, see [`super::sizes`]), is moved to
//!    `<bpffs>/superseded/`. The programs still attached keep using those maps — pins are
//!    only names — so enforcement goes on. The loader then adopts the remaining pins and
//!    creates the missing maps fresh.
//! 2. **Before attaching** ([`migrate`]): entries of superseded maps whose layout this
//!    agent knows are copied into the new maps (today: QUARANTINE layout 1 -> 2, so
//!    quarantined addresses stay cut off across the upgrade). Maps of unknown layouts are
//!    never read: the new map starts empty.
//! 3. **After attaching** ([`remove_superseded`]): the new programs have replaced the old
//!    ones in the pinned links (one atomic swap per link), so nothing uses the superseded
//!    maps any more; their pins are removed and the kernel frees them.
//!
//! An agent that dies between the steps leaves the superseded pins in place, and the next
//! one migrates from them again.

use std::{
    fs, io,
    path::{Path, PathBuf},
};

use aya::maps::{HashMap, Map, MapData};
use zt_common::{
    addr::Addr,
    map_names,
    quarantine::{self, ORIGIN_MANUAL, QuarantineValue},
};

use super::{DatapathError, MapSizes, Maps};

/// Sub-directory of the pin directory that holds superseded map pins until the upgrade
/// completes.
pub const SUPERSEDED_DIR: &str = "superseded";

/// Moves aside every pin under `dir` that the programs in `object` must not adopt; returns
/// the names moved, each with the reason.
pub fn set_aside(dir: &Path, object: &[u8], sizes: &MapSizes) -> Result<Vec<String>, DatapathError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(DatapathError::Other(format!("cannot read the pins in {}: {e}", dir.display()))),
    };
    let definitions = aya_obj::Object::parse(object)
        .map_err(|e| DatapathError::Other(format!("cannot read the map definitions of the kernel object: {e}")))?
        .maps;
    let mut moved = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !map_names::is_zt_map(&name) || entry.path().is_dir() {
            continue;
        }
        let why = match definitions.get(&name) {
            None => "a map of another layout".to_string(),
            Some(def) => match MapData::from_pin(entry.path()).and_then(|m| m.info()) {
                Ok(info)
                    if info.key_size() == def.key_size()
                        && info.value_size() == def.value_size()
                        && info.max_entries() == sizes.get(&name).unwrap_or(def.max_entries()) =>
                {
                    continue;
                }
                Ok(info) if info.key_size() == def.key_size() && info.value_size() == def.value_size() => format!(
                    "{} entries instead of {}: resized",
                    info.max_entries(),
                    sizes.get(&name).unwrap_or(def.max_entries())
                ),
                Ok(info) => format!(
                    "key/value sizes {}/{} instead of {}/{}",
                    info.key_size(),
                    info.value_size(),
                    def.key_size(),
                    def.value_size()
                ),
                Err(e) => format!("unreadable ({e})"),
            },
        };
        let aside = dir.join(SUPERSEDED_DIR);
        fs::create_dir_all(&aside).and_then(|()| replace(&entry.path(), &aside.join(&name))).map_err(|e| {
            DatapathError::Other(format!("cannot set the pinned map {name} aside in {}: {e}", aside.display()))
        })?;
        moved.push(format!("{name} ({why})"));
    }
    Ok(moved)
}

/// Renames `from` to `to`, replacing what an earlier, interrupted upgrade left at `to`.
fn replace(from: &Path, to: &Path) -> io::Result<()> {
    match fs::remove_file(to) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    fs::rename(from, to)
}

/// Copies into the new maps what the superseded pins under `dir` hold in a layout this
/// agent knows; returns one line per map carried over.
pub fn migrate(dir: &Path, maps: &mut Maps, now_ns: u64) -> Result<Vec<String>, DatapathError> {
    let mut done = Vec::new();
    let old = dir.join(SUPERSEDED_DIR).join(quarantine::v1::PIN_NAME);
    if old.exists() {
        done.push(migrate_quarantine_v1(&old, maps, now_ns)?);
    }
    Ok(done)
}

/// QUARANTINE layout 1 held only the expiry; every entry was an operator's (there were no
/// detectors). Expired entries are dropped rather than carried over.
fn migrate_quarantine_v1(path: &Path, maps: &mut Maps, now_ns: u64) -> Result<String, DatapathError> {
    let name = quarantine::v1::PIN_NAME;
    let data = MapData::from_pin(path).map_err(DatapathError::map(name))?;
    let info = data.info().map_err(DatapathError::map(name))?;
    if (info.key_size(), info.value_size()) != (quarantine::v1::KEY_SIZE, quarantine::v1::VALUE_SIZE) {
        return Ok(format!("{name}: not migrated: its key/value sizes are not those of layout 1"));
    }
    let old: HashMap<MapData, Addr, u64> = HashMap::try_from(Map::HashMap(data)).map_err(DatapathError::map(name))?;
    let mut carried = 0;
    for item in old.iter() {
        let (addr, expires_ns) = item.map_err(DatapathError::map(name))?;
        if expires_ns != 0 && expires_ns <= now_ns {
            continue;
        }
        maps.quarantine
            .insert(addr, QuarantineValue::new(expires_ns, 0, ORIGIN_MANUAL), 0)
            .map_err(DatapathError::map(map_names::QUARANTINE))?;
        carried += 1;
    }
    Ok(format!("{name} (layout 1): {carried} quarantined address(es) carried over into {}", map_names::QUARANTINE))
}

/// Removes the superseded pins under `dir` once no program uses them; returns how many.
pub fn remove_superseded(dir: &Path) -> io::Result<usize> {
    let aside: PathBuf = dir.join(SUPERSEDED_DIR);
    let entries = match fs::read_dir(&aside) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        if map_names::is_zt_map(&entry.file_name().to_string_lossy()) {
            fs::remove_file(entry.path())?;
            removed += 1;
        }
    }
    let _ = fs::remove_dir(&aside);
    Ok(removed)
}
