//! `zt-agent`: the zt enforcement daemon. Thin: parses the command line and runs the agent.

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use zt_agent::{
    agent::{self, DEFAULT_BPFFS, DEFAULT_STATE_DIR, RunOptions},
    datapath::XdpModeChoice,
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
    /// SIGINT/SIGTERM.
    Run(RunArgs),
}

#[derive(clap::Args)]
struct RunArgs {
    /// Interface to enforce on (repeat for more).
    #[arg(long = "iface", value_name = "IF", required = true)]
    ifaces: Vec<String>,
    /// Policy file or directory of *.yaml / *.yml files (repeat for more).
    #[arg(long, value_name = "PATH")]
    policy: Vec<PathBuf>,
    /// Labels of this host, e.g. app=web,env=prod; policies select the host by them.
    #[arg(long, value_name = "k=v,...", default_value = "")]
    labels: String,
    /// Ingress hook: native XDP, generic XDP, or off (TC ingress). Default: native, else
    /// generic, else TC.
    #[arg(long, value_name = "native|generic|off")]
    xdp_mode: Option<XdpModeChoice>,
    /// Directory for the agent's state.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
    /// bpffs directory for pinned maps.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_BPFFS)]
    bpffs: PathBuf,
    /// Write flow records as JSON lines to this file, or to standard output with `-`.
    #[arg(long, value_name = "PATH|-")]
    flow_log: Option<String>,
    /// Isolate every identity even when no policy selects it (zero trust). With `false`,
    /// only identities a policy selects are isolated.
    #[arg(long, value_name = "true|false", default_value_t = true, action = clap::ArgAction::Set)]
    default_deny: bool,
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .format_timestamp(None)
        .init();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let result = match cli.command {
        Command::Run(a) => agent::run(RunOptions {
            ifaces: a.ifaces,
            policy: a.policy,
            labels: a.labels,
            xdp_mode: a.xdp_mode.unwrap_or_default(),
            state_dir: a.state_dir,
            bpffs: a.bpffs,
            flow_log: a.flow_log,
            default_deny: a.default_deny,
            ..RunOptions::default()
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("zt-agent: {e:#}");
            ExitCode::FAILURE
        }
    }
}
