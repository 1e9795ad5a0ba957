//! `zt-agent`: the zt enforcement daemon. Thin: parses the command line and runs the agent
//! (options merged with the configuration file by `zt_agent::config`), or removes what a
//! stopped agent left enforcing.

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use zt_agent::{
    agent::DEFAULT_BPFFS,
    bpffs::{Lifetime, PinDir},
    config::{self, RunFlags},
    datapath::pins,
};

#[derive(Parser)]
#[command(name = "zt-agent", version, about = "zt: zero-trust network enforcement in the Linux kernel (XDP/TC eBPF)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Load the kernel programs, apply policy and enforce it on the given interfaces until
    /// SIGINT/SIGTERM. The programs stay attached after the agent exits unless --no-pin.
    Run(Box<RunFlags>),
    /// Detach the programs a stopped agent left attached and remove every pin (links and
    /// maps) under the bpffs directory.
    Cleanup {
        /// bpffs directory of the pins.
        #[arg(long, value_name = "DIR", default_value = DEFAULT_BPFFS)]
        bpffs: PathBuf,
    },
}

#[global_allocator]
static HEAP: zt_agent::heap::Heap = zt_agent::heap::Heap {};

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).format_timestamp(None).init();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let result = match cli.command {
        Command::Run(flags) => match config::resolve(*flags) {
            // The interfaces may come from the file, so clap cannot require --iface; a
            // missing one is still a usage error (with --kubernetes, pods' links are found).
            Ok(opts) if opts.ifaces.is_empty() && opts.kubernetes.is_none() => {
                eprintln!(
                    "zt-agent: no interface given; pass --iface IF (repeat it for more), set ifaces in the config file, or pass --kubernetes to enforce on the pods' links"
                );
                return ExitCode::from(2);
            }
            resolved => resolved.and_then(zt_agent::daemon::run),
        },
        Command::Cleanup { bpffs } => cleanup(&bpffs),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("zt-agent: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn cleanup(dir: &std::path::Path) -> anyhow::Result<()> {
    // The same resolution as `run`, so a cleanup started in a private mount namespace (ip
    // netns exec) finds the pins an agent started the same way made in the host's.
    let pins = PinDir::open(dir, Lifetime::ExistingOnly)?;
    let removed = pins::remove_all(pins.path())
        .map_err(|e| anyhow::anyhow!("cannot remove the pins under {pins}: {e}; are you root?"))?;
    let left =
        if removed.dir_removed { String::new() } else { format!("; {pins} kept: it holds files zt did not make") };
    println!("zt-agent: cleanup of {pins}: {removed}{left}");
    Ok(())
}
