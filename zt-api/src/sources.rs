//! Reading policy files from disk as `(source name, text)` pairs, the way the agent's
//! `--policy` reads them and `ztctl policy apply` sends them: a file, or every `*.yaml` /
//! `*.yml` file directly inside a directory (sorted by name; hidden files such as editor lock
//! files are skipped). The source name is the path as given, joined with the file name.
//!
//! The agent's `policy::load_paths` is this function with its errors as `PolicyError`s, so
//! the agent and ztctl always read the same files, and the client needs no policy compiler.

use std::{fs, io, path::Path};

/// Why a path could not be read; the texts match the agent's `PolicyError`.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("policy {path}: cannot read it ({error}); check that it exists and is readable")]
    Read {
        path: String,
        #[source]
        error: io::Error,
    },

    #[error("policy {path}: the directory has no *.yaml or *.yml files; pass a directory that holds policy files")]
    NoPolicyFiles { path: String },
}

/// Reads a policy file, or the policy files of a directory.
pub fn load_path(path: &Path) -> Result<Vec<(String, String)>, SourceError> {
    let read_error = |path: &Path, error| SourceError::Read { path: path.display().to_string(), error };
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
            return Err(SourceError::NoPolicyFiles { path: path.display().to_string() });
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
pub fn load_paths<P: AsRef<Path>>(paths: &[P]) -> Result<Vec<(String, String)>, Vec<SourceError>> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_is_read_in_name_order_without_hidden_or_other_files() {
        let dir = std::env::temp_dir().join(format!("zt-api-sources-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        for (name, text) in [("b.yaml", "b"), ("a.yml", "a"), (".a.yaml.swp", "x"), ("notes.txt", "x")] {
            fs::write(dir.join(name), text).unwrap();
        }
        let loaded = load_paths(&[&dir]).unwrap();
        let texts: Vec<&str> = loaded.iter().map(|(_, t)| t.as_str()).collect();
        assert_eq!(texts, ["a", "b"]);
        assert!(loaded[0].0.ends_with("a.yml"));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn every_unreadable_path_is_reported() {
        let errors = load_paths(&["/nonexistent/zt-a.yaml", "/nonexistent/zt-b"]).unwrap_err();
        assert_eq!(errors.len(), 2);
        assert!(errors[0].to_string().starts_with("policy /nonexistent/zt-a.yaml: cannot read it"));
    }
}
