//! Per-test scratch directories for the files a test hands to processes under test: logs,
//! configuration, policy files, sockets, state directories.
//!
//! A passing test leaves nothing behind; a failing one keeps its directory and prints where,
//! because the agent's logs are usually what explains the failure.

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::names::next_sequence;

/// A fresh directory `$TMPDIR/zt-tests-<pid>-<seq>-<label>`, removed on drop unless the
/// test is panicking.
#[derive(Debug)]
pub struct Scratch {
    path: PathBuf,
}

impl Scratch {
    /// Creates the directory.
    pub fn new(label: &str) -> Result<Scratch> {
        let path = std::env::temp_dir().join(format!("zt-tests-{}-{}-{label}", std::process::id(), next_sequence()));
        fs::create_dir_all(&path).map_err(|e| Error::io(format!("cannot create {}", path.display()), e))?;
        Ok(Scratch { path })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A path inside the directory (not created).
    pub fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.path.join(name)
    }

    /// Writes `contents` to `name` inside the directory and returns its path.
    pub fn write(&self, name: impl AsRef<Path>, contents: impl AsRef<[u8]>) -> Result<PathBuf> {
        let path = self.join(name);
        fs::write(&path, contents).map_err(|e| Error::io(format!("cannot write {}", path.display()), e))?;
        Ok(path)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("note: keeping {} for inspection", self.path.display());
        } else {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}
