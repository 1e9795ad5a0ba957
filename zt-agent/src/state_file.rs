//! Files the agent keeps in its state directory, written so a crash never leaves half of
//! one: the new content goes to `<name>.tmp` beside it, which is then renamed over the
//! old file (a rename within a directory replaces it whole). Not flushed to disk: these
//! files (quarantine notes, observed and learnt edges, last accepted cluster objects) are
//! rewritten often and losing the latest after a power cut is acceptable; the revision
//! store, which must not lose a push, syncs its own.

use std::{io, path::Path};

use serde::Serialize;

/// Replaces `path` with `value` as JSON (pretty-printed with `pretty`).
pub fn write_json<T: Serialize + ?Sized>(path: &Path, value: &T, pretty: bool) -> io::Result<()> {
    let bytes = if pretty { serde_json::to_vec_pretty(value) } else { serde_json::to_vec(value) };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, bytes.map_err(io::Error::other)?)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_is_replaced_whole_and_no_temporary_is_left() {
        let dir = std::env::temp_dir().join(format!("zt-state-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("x.json");
        write_json(&path, &[1, 2], false).unwrap();
        write_json(&path, &[3], true).unwrap();
        assert_eq!(serde_json::from_slice::<Vec<u32>>(&std::fs::read(&path).unwrap()).unwrap(), vec![3]);
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1, "no temporary file is left");
        assert!(write_json(&dir.join("missing/x.json"), &[1], false).is_err(), "no directory is created");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
