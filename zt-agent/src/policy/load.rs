//! Loading: policy files and directories -> `(source name, text)` pairs for
//! [`parse`](super::parse()). Only reads files; all checking is the parser's.

// A `PolicyError` is ~140 bytes; it is built only on a failed load and then lives in a Vec,
// so boxing it would cost clarity for no measurable gain.
#![allow(clippy::result_large_err)]

use std::fs;
use std::path::Path;

use super::error::PolicyError;

/// Reads a policy file, or every `*.yaml`/`*.yml` file directly inside a directory (sorted by
/// name; hidden files such as editor lock files are skipped), as `(source name, text)` pairs
/// for [`parse`](super::parse()). The source name is the path as given, joined with the file name.
pub fn load_path(path: &Path) -> Result<Vec<(String, String)>, PolicyError> {
    let read_error = |path: &Path, error| PolicyError::Read { path: path.display().to_string(), error };
    let metadata = fs::metadata(path).map_err(|e| read_error(path, e))?;
    let files = if metadata.is_dir() {
        let mut files = Vec::new();
        for entry in fs::read_dir(path).map_err(|e| read_error(path, e))? {
            let file = entry.map_err(|e| read_error(path, e))?.path();
            if is_policy_file(&file) {
                files.push(file);
            }
        }
        if files.is_empty() {
            return Err(PolicyError::NoPolicyFiles { path: path.display().to_string() });
        }
        files.sort();
        files
    } else {
        vec![path.to_path_buf()]
    };
    files
        .into_iter()
        .map(|file| {
            let text = fs::read_to_string(&file).map_err(|e| read_error(&file, e))?;
            Ok((file.display().to_string(), text))
        })
        .collect()
}

/// [`load_path`] for several paths, in order; reports every path that cannot be read.
pub fn load_paths<P: AsRef<Path>>(paths: &[P]) -> Result<Vec<(String, String)>, Vec<PolicyError>> {
    let mut sources = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        match load_path(path.as_ref()) {
            Ok(mut loaded) => sources.append(&mut loaded),
            Err(error) => errors.push(error),
        }
    }
    if errors.is_empty() { Ok(sources) } else { Err(errors) }
}

fn is_policy_file(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let yaml = name.ends_with(".yaml") || name.ends_with(".yml");
    yaml && !name.starts_with('.') && path.is_file()
}
