//! `cargo xtask bench [--quick]`: builds the release agent and the `zt-bench` binary, checks
//! the bench's own unit tests, then runs it as root; it writes `target/bench/`
//! (results.json, results.md, cost-vs-rules.svg) and prints the tables.
//!
//! The bench crate is a workspace member but not a default member, and its binary has no
//! test harness of its own in `cargo test --workspace`, so `cargo xtask test` never builds it.

use std::process::Command;

use anyhow::bail;

use crate::shell;

pub fn run(quick: bool) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the benchmarks load eBPF programs and create network namespaces; run `cargo xtask bench` as root");
    }
    let root = shell::workspace_root();
    shell::run(Command::new("cargo").current_dir(&root).args([
        "build",
        "--release",
        "-p",
        "zt-agent",
        "-p",
        "zt-bench",
    ]))?;
    // The statistics, frame and report code the figures rest on (seconds; no kernel needed).
    shell::run(Command::new("cargo").current_dir(&root).args([
        "test",
        "--release",
        "-p",
        "zt-bench",
        "--bin",
        "zt-bench",
    ]))?;
    let out = root.join("target/bench");
    let mut cmd = Command::new(root.join("target/release/zt-bench"));
    cmd.current_dir(&root).arg("--out").arg(&out);
    if quick {
        cmd.arg("--quick");
    }
    shell::run(&mut cmd)
}
