//! `cargo xtask test`: every test in one command — unit tests, BPF_PROG_TEST_RUN tests of
//! the loaded programs, and end-to-end tests of the real binaries in network namespaces.

use std::process::Command;

use crate::shell;

pub fn run(require_privileged: bool, args: &[String]) -> anyhow::Result<()> {
    // The end-to-end tests run the real zt-agent and ztctl from target/release. `cargo test`
    // builds a package's binaries only for that package's own integration tests, and ztctl
    // has none, so on a fresh clone it would be missing: build both first.
    crate::build::run()?;
    let root = shell::workspace_root();
    let mut cmd = Command::new("cargo");
    cmd.current_dir(&root).args(["test", "--workspace", "--exclude", "zt-ebpf", "--release"]);
    if require_privileged {
        cmd.env("ZT_REQUIRE_PRIVILEGED", "1");
    }
    cmd.arg("--").args(args);
    shell::run(&mut cmd)
}
