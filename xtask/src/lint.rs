//! `cargo xtask lint`: the gate CI applies before the tests — `cargo fmt --all --check`,
//! clippy with warnings denied on every host crate and target, and clippy on the eBPF crate
//! with the nightly toolchain for its own target (as the kernel build compiles it).

use std::process::Command;

use crate::{setup::NIGHTLY, shell};

pub fn run() -> anyhow::Result<()> {
    let root = shell::workspace_root();
    eprintln!("xtask lint: cargo fmt --all --check");
    shell::run(Command::new("cargo").current_dir(&root).args(["fmt", "--all", "--check"]))?;
    eprintln!("xtask lint: clippy, host crates, all targets, -D warnings");
    shell::run(Command::new("cargo").current_dir(&root).args([
        "clippy",
        "--release",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    eprintln!("xtask lint: clippy, eBPF crate (nightly, bpfel-unknown-none), -D warnings");
    shell::run(Command::new("cargo").current_dir(root.join("zt-ebpf")).args([
        &format!("+{NIGHTLY}"),
        "clippy",
        "--release",
        "--target",
        "bpfel-unknown-none",
        "-Z",
        "build-std=core",
        "--target-dir",
        "../target/ebpf-clippy",
        "--",
        "-D",
        "warnings",
    ]))?;
    eprintln!("xtask lint: clean");
    Ok(())
}
