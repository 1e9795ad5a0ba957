//! Loading policy files and directories.

use std::fs;
use std::path::PathBuf;

use super::{DB_ENDPOINT, policy_with_ports};
use crate::policy::model::Origin;
use crate::policy::{load_path, load_paths, parse};

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let path = std::env::temp_dir().join(format!("zt-policy-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[test]
fn directory_loads_yaml_files_in_name_order() {
    let dir = TempDir::new("dir");
    fs::write(dir.0.join("b-policy.yml"), policy_with_ports("[]")).unwrap();
    fs::write(dir.0.join("a-endpoints.yaml"), format!("{DB_ENDPOINT}---\n")).unwrap();
    fs::write(dir.0.join("notes.txt"), "not policy").unwrap();
    fs::write(dir.0.join(".#a-endpoints.yaml"), "editor lock file").unwrap();
    fs::create_dir(dir.0.join("sub.yaml")).unwrap();

    let sources = load_path(&dir.0).unwrap();
    let names: Vec<&str> = sources.iter().map(|(name, _)| name.rsplit('/').next().unwrap()).collect();
    assert_eq!(names, ["a-endpoints.yaml", "b-policy.yml"]);
    let set = parse(&sources).unwrap();
    assert_eq!((set.endpoints.len(), set.policies.len()), (1, 1));
    assert_eq!(set.policies[0].origin.source, dir.0.join("b-policy.yml").display().to_string());
}

#[test]
fn single_file_loads_all_its_documents() {
    let dir = TempDir::new("file");
    let file = dir.0.join("all.yaml");
    fs::write(&file, format!("{DB_ENDPOINT}---\n{}", policy_with_ports("[]"))).unwrap();
    let set = parse(&load_path(&file).unwrap()).unwrap();
    assert_eq!((set.endpoints.len(), set.policies.len()), (1, 1));
    assert_eq!(set.policies[0].origin, Origin::new(file.display().to_string(), 2));
}

#[test]
fn unreadable_paths_and_empty_directories_are_errors() {
    let dir = TempDir::new("empty");
    let missing = dir.0.join("missing.yaml");
    let errors = load_paths(&[missing.clone(), dir.0.clone()]).unwrap_err();
    let errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(errors.len(), 2);
    assert!(errors[0].starts_with(&format!("policy {}: cannot read it (", missing.display())), "{}", errors[0]);
    assert_eq!(
        errors[1],
        format!(
            "policy {}: the directory has no *.yaml or *.yml files; pass a directory that holds policy files",
            dir.0.display()
        )
    );
}
