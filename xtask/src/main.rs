//! Project tasks: `cargo xtask setup | build | lint | test | demo | bench | fuzz | soak`.
//!
//! Thin dispatch; each task lives in its own module.

mod bench;
mod build;
mod demo;
mod fuzz;
mod lint;
mod setup;
mod shell;
mod soak;
mod test;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "zt project tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what building zt needs (nightly rust-src, bpf-linker against the nightly's
    /// LLVM). Idempotent: does nothing when everything is present.
    Setup,
    /// Build the eBPF object and the release binaries (zt-agent, ztctl).
    Build,
    /// The lint gate CI applies: rustfmt check, clippy -D warnings on the host crates and on
    /// the eBPF crate (nightly, its own target).
    Lint,
    /// Show zt enforcing policies/demo on real traffic between network namespaces (root).
    Demo,
    /// Measure zt against nftables and iptables in one run (root); writes target/bench/.
    Bench {
        /// Fewer rounds and sizes: a smoke run in well under two minutes.
        #[arg(long)]
        quick: bool,
    },
    /// Fuzz the packet parser (against etherparse, via BPF_PROG_TEST_RUN), the policy parser
    /// and compiler, and the API protocol, for longer than `cargo test` does (root).
    Fuzz {
        /// Total time for the three suites, in minutes (half for the datapath).
        #[arg(long, default_value_t = 10.0)]
        minutes: f64,
        /// Replay a run: the seed a failing suite printed.
        #[arg(long)]
        seed: Option<u64>,
    },
    /// Run the agent under concurrent load (new and long flows, denied probes, a push every
    /// second, scrapes, flows --follow) and report RSS, map occupancy, event loss and errors
    /// at start and end (root); writes target/soak/results.json. Fails on any error.
    Soak {
        /// Length of the load in minutes; fractions allowed (0.5 for a quick check).
        #[arg(long, default_value_t = 10.0)]
        minutes: f64,
    },
    /// Run every test: unit, BPF_PROG_TEST_RUN and end-to-end network-namespace tests.
    /// Kernel tests need root; with --require-privileged (or ZT_REQUIRE_PRIVILEGED=1) a
    /// skipped kernel test is a failure.
    Test {
        #[arg(long)]
        require_privileged: bool,
        /// Extra arguments for the test binaries (e.g. a test name filter).
        #[arg(last = true)]
        args: Vec<String>,
    },
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Setup => setup::run(),
        Task::Build => setup::run().and_then(|()| build::run()),
        Task::Lint => setup::run().and_then(|()| lint::run()),
        // Both work on a fresh clone: setup is idempotent and quick when all is present.
        Task::Demo => setup::run().and_then(|()| demo::run()),
        Task::Bench { quick } => setup::run().and_then(|()| bench::run(quick)),
        Task::Fuzz { minutes, seed } => setup::run().and_then(|()| fuzz::run(minutes, seed)),
        Task::Soak { minutes } => setup::run().and_then(|()| build::run()).and_then(|()| soak::run(minutes)),
        Task::Test { require_privileged, args } => setup::run().and_then(|()| test::run(require_privileged, &args)),
    };
    if let Err(e) = result {
        eprintln!("xtask: {e:#}");
        std::process::exit(1);
    }
}
