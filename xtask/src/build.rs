//! `cargo xtask build`: the release binaries, with the eBPF object embedded.

use std::process::Command;

use crate::shell;

pub fn run() -> anyhow::Result<()> {
    shell::run(Command::new("cargo").current_dir(shell::workspace_root()).args([
        "build",
        "--release",
        "-p",
        "zt-agent",
        "-p",
        "ztctl",
    ]))
}
