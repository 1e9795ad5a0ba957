//! Loading: policy files and directories -> `(source name, text)` pairs for
//! [`parse`](super::parse()). Only reads files; all checking is the parser's.

// A `PolicyError` is ~140 bytes; it is built only on a failed load and then lives in a Vec,
// so boxing it would cost clarity for no measurable gain.
#![allow(clippy::result_large_err)]

use std::path::Path;

use zt_api::sources::{self, SourceError};

use super::error::PolicyError;

/// Reads a policy file, or every `*.yaml`/`*.yml` file directly inside a directory (sorted by
/// name; hidden files such as editor lock files are skipped), as `(source name, text)` pairs
/// for [`parse`](super::parse()). The source name is the path as given, joined with the file
/// name. The reading is `zt_api::sources`, which ztctl uses too, so both read the same files.
pub fn load_path(path: &Path) -> Result<Vec<(String, String)>, PolicyError> {
    sources::load_path(path).map_err(PolicyError::from)
}

/// [`load_path`] for several paths, in order; reports every path that cannot be read.
pub fn load_paths<P: AsRef<Path>>(paths: &[P]) -> Result<Vec<(String, String)>, Vec<PolicyError>> {
    sources::load_paths(paths).map_err(|errors| errors.into_iter().map(PolicyError::from).collect())
}

impl From<SourceError> for PolicyError {
    fn from(e: SourceError) -> PolicyError {
        match e {
            SourceError::Read { path, error } => PolicyError::Read { path, error },
            SourceError::NoPolicyFiles { path } => PolicyError::NoPolicyFiles { path },
        }
    }
}
