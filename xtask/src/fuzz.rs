//! `cargo xtask fuzz [--minutes N] [--seed S]`: the three fuzz suites with large bounds,
//! time-boxed to N minutes in total (default 10; root, like the kernel tests):
//!
//! - datapath: random and mutated frames through the loaded XDP/TC programs
//!   (BPF_PROG_TEST_RUN), compared with an etherparse reference (`zt-agent/tests/fuzz_datapath.rs`);
//! - policy: random and mutated zt/v1 documents through the policy parser and compiler
//!   (`zt-agent/tests/fuzz_policy.rs`);
//! - api: random and mutated request lines to a real agent's socket (`tests/e2e/fuzz_api.rs`).
//!
//! The same tests run bounded (tens of seconds) in `cargo test`; here each gets a share of
//! the time and no count limit. Their progress lines are shown as they come; the totals are
//! repeated at the end. A failing suite prints its seed (`--seed` replays all three).

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
};

use anyhow::{Context, bail};

use crate::shell;

/// One suite: its package, test target, the env var of its count, and its share of time.
struct Suite {
    name: &'static str,
    package: &'static str,
    test: &'static str,
    count_var: &'static str,
    share: f64,
}

const SUITES: &[Suite] = &[
    Suite { name: "datapath", package: "zt-agent", test: "fuzz_datapath", count_var: "ZT_FUZZ_FRAMES", share: 0.5 },
    Suite { name: "policy", package: "zt-agent", test: "fuzz_policy", count_var: "ZT_FUZZ_DOCS", share: 0.25 },
    Suite { name: "api", package: "zt-tests", test: "fuzz_api", count_var: "ZT_FUZZ_CONNECTIONS", share: 0.25 },
];

pub fn run(minutes: f64, seed: Option<u64>) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the fuzzers load eBPF programs and create network namespaces; run `cargo xtask fuzz` as root");
    }
    // Also refuses NaN.
    if minutes.is_nan() || minutes <= 0.0 {
        bail!("--minutes {minutes} is not a positive number of minutes");
    }
    let root = shell::workspace_root();
    // The agent binaries (the API suite runs them) and every suite's test binary.
    shell::run(Command::new("cargo").current_dir(&root).args(["build", "--release", "-p", "zt-agent", "--bins"]))?;
    // Built one by one, exactly as they run: building the packages together would unify
    // their features differently and rebuild at run time.
    for s in SUITES {
        shell::run(Command::new("cargo").current_dir(&root).args([
            "test",
            "--release",
            "--no-run",
            "-p",
            s.package,
            "--test",
            s.test,
        ]))?;
    }

    let mut totals = Vec::new();
    let mut failed = Vec::new();
    for s in SUITES {
        let seconds = ((minutes * 60.0 * s.share).round() as u64).max(5);
        eprintln!("xtask: fuzz {}: {seconds}s", s.name);
        let mut cmd = Command::new("cargo");
        cmd.current_dir(&root)
            .args(["test", "--release", "-p", s.package, "--test", s.test, "--", "--nocapture"])
            .env("ZT_REQUIRE_PRIVILEGED", "1")
            .env("ZT_FUZZ_SECONDS", seconds.to_string())
            .env(s.count_var, u64::MAX.to_string())
            .stdout(Stdio::piped());
        if let Some(seed) = seed {
            cmd.env("ZT_FUZZ_SEED", seed.to_string());
        }
        let mut child = cmd.spawn().with_context(|| format!("cannot start the {} fuzzer", s.name))?;
        let out = child.stdout.take().expect("piped stdout");
        let mut last = None;
        for line in BufReader::new(out).lines() {
            let line = line.context("reading the fuzzer's output")?;
            println!("{line}");
            // The suites' final summary lines say "<name> fuzz: <count> ... in <secs>s ...".
            if line.starts_with(&format!("{} fuzz: ", s.name)) && line.contains(" in ") {
                last = Some(line.clone());
            }
        }
        let status = child.wait().context("waiting for the fuzzer")?;
        totals.push((s.name, last.unwrap_or_else(|| "(no summary)".into())));
        if !status.success() {
            failed.push(s.name);
        }
    }
    println!("\nfuzz totals:");
    for (name, line) in &totals {
        println!("  {name:9} {line}");
    }
    if !failed.is_empty() {
        bail!("fuzzing found problems in: {} (the output above has the inputs and the seed)", failed.join(", "));
    }
    Ok(())
}
