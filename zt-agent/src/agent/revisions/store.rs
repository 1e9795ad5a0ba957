//! Revisions on disk: `<state-dir>/revisions/<N>.json`, one file per successful push with the
//! complete document set, so a restarted agent enforces what was last pushed and
//! `ztctl policy rollback` can return to any kept revision.
//!
//! Each file is written atomically (temporary file, fsync, rename, fsync of the directory):
//! after a crash a revision is either complete or absent. The newest [`KEEP`] are kept.

use std::{
    fs::{self, File},
    io::{self, Write},
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use super::documents::Document;
use zt_api::protocol::RevisionInfo;

/// Revisions kept on disk; older ones are deleted as new ones are written.
pub const KEEP: usize = 100;

/// One revision file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredRevision {
    pub revision: u64,
    /// RFC 3339.
    pub time: String,
    pub author_uid: u32,
    pub summary: String,
    pub generation: u32,
    pub documents: Vec<Document>,
}

impl StoredRevision {
    pub fn info(&self) -> RevisionInfo {
        RevisionInfo {
            revision: self.revision,
            time: self.time.clone(),
            author_uid: self.author_uid,
            summary: self.summary.clone(),
            generation: self.generation,
            documents: self.documents.len(),
        }
    }
}

/// A revision file read without materializing its documents (history listings).
#[derive(Deserialize)]
struct Header {
    revision: u64,
    time: String,
    author_uid: u32,
    summary: String,
    generation: u32,
    documents: Vec<serde::de::IgnoredAny>,
}

/// The revisions directory and an index of what it holds, oldest first.
#[derive(Debug)]
pub struct RevisionStore {
    dir: PathBuf,
    index: Vec<RevisionInfo>,
}

impl RevisionStore {
    /// Reads the index of `<state_dir>/revisions` (nothing is created until the first save).
    /// Files that cannot be read are skipped with a warning: one damaged revision must not
    /// keep the agent from starting.
    pub fn open(state_dir: &Path) -> RevisionStore {
        let dir = state_dir.join("revisions");
        let mut index = Vec::new();
        if let Ok(entries) = fs::read_dir(&dir) {
            for entry in entries.flatten() {
                let path = entry.path();
                if revision_number(&path).is_none() {
                    continue;
                }
                match read_header(&path) {
                    Ok(info) => index.push(info),
                    Err(e) => log::warn!("skipping revision file {}: {e}", path.display()),
                }
            }
        }
        index.sort_by_key(|i| i.revision);
        RevisionStore { dir, index }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Kept revisions, oldest first.
    pub fn index(&self) -> &[RevisionInfo] {
        &self.index
    }

    pub fn latest(&self) -> Option<u64> {
        self.index.last().map(|i| i.revision)
    }

    pub fn path_of(&self, revision: u64) -> PathBuf {
        self.dir.join(format!("{revision}.json"))
    }

    pub fn load(&self, revision: u64) -> io::Result<StoredRevision> {
        let path = self.path_of(revision);
        let text = fs::read(&path)?;
        serde_json::from_slice(&text).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }

    /// Writes `revision` atomically and prunes the oldest beyond [`KEEP`].
    pub fn save(&mut self, revision: &StoredRevision) -> io::Result<()> {
        fs::create_dir_all(&self.dir)?;
        let path = self.path_of(revision.revision);
        let tmp = self.dir.join(format!(".{}.json.tmp", revision.revision));
        {
            let mut file = File::create(&tmp)?;
            file.write_all(&serde_json::to_vec(revision).map_err(io::Error::other)?)?;
            file.sync_all()?;
        }
        fs::rename(&tmp, &path)?;
        File::open(&self.dir)?.sync_all()?;
        self.index.retain(|i| i.revision != revision.revision);
        self.index.push(revision.info());
        self.index.sort_by_key(|i| i.revision);
        while self.index.len() > KEEP {
            let old = self.index.remove(0);
            if let Err(e) = fs::remove_file(self.path_of(old.revision)) {
                log::warn!("cannot remove old revision {}: {e}", old.revision);
            }
        }
        Ok(())
    }
}

fn revision_number(path: &Path) -> Option<u64> {
    path.file_name()?.to_str()?.strip_suffix(".json")?.parse().ok()
}

fn read_header(path: &Path) -> io::Result<RevisionInfo> {
    let h: Header =
        serde_json::from_slice(&fs::read(path)?).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    Ok(RevisionInfo {
        revision: h.revision,
        time: h.time,
        author_uid: h.author_uid,
        summary: h.summary,
        generation: h.generation,
        documents: h.documents.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use zt_api::protocol::DocumentKey;

    fn revision(n: u64) -> StoredRevision {
        StoredRevision {
            revision: n,
            time: "2030-01-01T00:00:00.000Z".into(),
            author_uid: 0,
            summary: format!("push {n}"),
            generation: n as u32 + 1,
            documents: vec![Document {
                key: DocumentKey { kind: "Policy".into(), namespace: None, name: "web".into() },
                source: "web.yaml".into(),
                document: 1,
                yaml: "kind: Policy\n".into(),
            }],
        }
    }

    fn scratch() -> PathBuf {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("zt-revisions-test-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn saved_revisions_are_found_again_after_a_restart() {
        let state = scratch();
        let mut store = RevisionStore::open(&state);
        assert_eq!(store.latest(), None);
        store.save(&revision(1)).unwrap();
        store.save(&revision(2)).unwrap();
        let again = RevisionStore::open(&state);
        assert_eq!(again.latest(), Some(2));
        assert_eq!(again.index()[0].documents, 1);
        assert_eq!(again.load(1).unwrap(), revision(1));
        assert!(!state.join("revisions/.2.json.tmp").exists(), "no temporary file is left");
        fs::remove_dir_all(&state).unwrap();
    }

    #[test]
    fn only_the_newest_revisions_are_kept() {
        let state = scratch();
        let mut store = RevisionStore::open(&state);
        for n in 1..=(KEEP as u64 + 3) {
            store.save(&revision(n)).unwrap();
        }
        assert_eq!(store.index().len(), KEEP);
        assert_eq!(store.index()[0].revision, 4);
        assert!(!store.path_of(3).exists() && store.path_of(4).exists());
        fs::remove_dir_all(&state).unwrap();
    }

    #[test]
    fn a_damaged_file_is_skipped() {
        let state = scratch();
        let mut store = RevisionStore::open(&state);
        store.save(&revision(1)).unwrap();
        fs::write(store.path_of(2), "{not json").unwrap();
        assert_eq!(RevisionStore::open(&state).latest(), Some(1));
        fs::remove_dir_all(&state).unwrap();
    }
}
