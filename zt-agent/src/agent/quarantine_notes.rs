//! What the kernel's QUARANTINE map does not hold: why each address was quarantined, and how
//! often each source has offended (repeated offences double a detector's TTL). Kept in the
//! state directory (`quarantine.json`) so both survive a restart with the entries, which
//! are pinned. A reason goes with its entry (release, expiry); offences are forgotten
//! after twice `max_ttl` without one.

use std::{
    collections::BTreeMap,
    net::IpAddr,
    path::{Path, PathBuf},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};

/// The file under the state directory.
pub const FILE: &str = "quarantine.json";

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offences {
    pub count: u32,
    /// Seconds since the epoch of the last offence.
    pub last: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Saved {
    #[serde(default)]
    reasons: BTreeMap<IpAddr, String>,
    #[serde(default)]
    offences: BTreeMap<IpAddr, Offences>,
}

#[derive(Debug)]
pub struct QuarantineNotes {
    path: Option<PathBuf>,
    saved: Saved,
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl QuarantineNotes {
    /// The notes an earlier agent left in `state_dir` (none if unreadable: the entries
    /// themselves are in the kernel and still enforced).
    pub fn open(state_dir: &Path) -> QuarantineNotes {
        let path = state_dir.join(FILE);
        let saved = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                log::warn!("ignoring {}: {e}; quarantine reasons and offence counts start afresh", path.display());
                Saved::default()
            }),
            Err(_) => Saved::default(),
        };
        QuarantineNotes { path: Some(path), saved }
    }

    /// Notes kept in memory only.
    #[cfg(test)]
    pub fn in_memory() -> QuarantineNotes {
        QuarantineNotes { path: None, saved: Saved::default() }
    }

    pub fn reason(&self, ip: IpAddr) -> Option<&str> {
        self.saved.reasons.get(&ip).map(String::as_str)
    }

    pub fn set_reason(&mut self, ip: IpAddr, reason: Option<String>) {
        match reason {
            Some(r) => self.saved.reasons.insert(ip, r),
            None => self.saved.reasons.remove(&ip),
        };
    }

    /// Counts an offence of `ip` and returns its number (1 for the first). Offences older
    /// than `forget` are forgotten first: a source that behaved for that long starts over.
    pub fn offend(&mut self, ip: IpAddr, forget: Duration) -> u32 {
        let now = unix_now();
        self.saved.offences.retain(|_, o| now.saturating_sub(o.last) <= forget.as_secs());
        let o = self.saved.offences.entry(ip).or_default();
        o.count = o.count.saturating_add(1);
        o.last = now;
        o.count
    }

    #[cfg(test)]
    pub fn offences(&self, ip: IpAddr) -> u32 {
        self.saved.offences.get(&ip).map_or(0, |o| o.count)
    }

    /// Writes the notes (atomically: a new file renamed over the old).
    pub fn save(&self) {
        let Some(path) = &self.path else { return };
        let written = std::fs::create_dir_all(path.parent().unwrap_or(Path::new(".")))
            .and_then(|()| crate::state_file::write_json(path, &self.saved, true));
        if let Err(e) = written {
            log::warn!("cannot save quarantine reasons and offences to {}: {e}", path.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_and_offences_survive_a_restart() {
        let dir = std::env::temp_dir().join(format!("zt-qnotes-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let ip: IpAddr = "198.18.0.9".parse().unwrap();
        let mut n = QuarantineNotes::open(&dir);
        n.set_reason(ip, Some("port scan".into()));
        assert_eq!(n.offend(ip, Duration::from_secs(3600)), 1);
        assert_eq!(n.offend(ip, Duration::from_secs(3600)), 2);
        n.save();
        let again = QuarantineNotes::open(&dir);
        assert_eq!(again.reason(ip), Some("port scan"));
        assert_eq!(again.offences(ip), 2);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn old_offences_are_forgotten() {
        let ip: IpAddr = "198.18.0.9".parse().unwrap();
        let mut n = QuarantineNotes::in_memory();
        n.saved.offences.insert(ip, Offences { count: 5, last: unix_now() - 7200 });
        assert_eq!(n.offend(ip, Duration::from_secs(3600)), 1, "behaved for longer than forget");
    }
}
