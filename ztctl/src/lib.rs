//! `ztctl`: the command line of a running agent. This crate root defines the command tree
//! (which also generates the shell completions and the man page) and the exit codes; each
//! command group lives in its own file and talks to the agent through [`zt_api::Client`].
//! The offline commands (`policy validate`, `policy test`, `explain --policy`) run the
//! agent's compiler and explain from `zt-policy` instead, with no socket ([`offline`]).
//! It depends on `zt-api` and `zt-policy`, never on the agent, so it builds with stable
//! Rust alone.
//!
//! Exit codes: 0 success, 1 failure (the agent refused or rejected, or cannot be reached),
//! 2 usage error. Errors go to stderr as one sentence each.

mod alerts;
mod cases;
mod duration;
mod explain;
mod flows;
mod inventory;
mod live;
mod map;
mod offline;
mod output;
mod policy;
mod policy_test;
mod quarantine;
mod reference;
mod remote;
mod status;
mod suggest;
mod validate;

use std::{
    io::{self, Write},
    path::PathBuf,
    process::ExitCode,
};

use clap::{CommandFactory, Parser, Subcommand};

pub use duration::parse_duration;
pub use output::{Format, Output};

use zt_api::{
    Client, ClientError, DEFAULT_SOCKET,
    protocol::{ErrorCode, Reply, Request},
};

/// Drive a running zt agent: push and roll back policy, inspect what is enforced and why,
/// watch flows, quarantine addresses.
#[derive(Parser, Debug)]
#[command(name = "ztctl", version)]
pub struct Cli {
    /// The agent's API socket (root only).
    #[arg(long, global = true, value_name = "PATH", default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,
    #[command(flatten)]
    pub remote: remote::RemoteArgs,
    /// Output format for commands whose output is data [default: table]; svg, html and dot
    /// are the pictures of `flows map`.
    #[arg(short = 'o', long = "output", global = true, value_enum, value_name = "FORMAT")]
    pub output: Option<Output>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Push, inspect and roll back policy.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// The labelled addresses (Endpoint documents) of the running policy.
    #[command(subcommand)]
    Endpoint(inventory::EndpointCommand),
    /// The numeric identities of the enforced generation and their prefixes.
    #[command(subcommand)]
    Identity(inventory::IdentityCommand),
    /// Interfaces and hooks, revision and generation, map occupancy, counters.
    Status,
    /// Recent flow records, optionally filtered; --follow keeps printing new ones. `flows
    /// map` draws who talks to whom.
    Flows(flows::FlowsArgs),
    /// The verdict the kernel reaches for a new flow, with the policy and rule behind it.
    Explain(explain::ExplainArgs),
    /// Cut addresses off from all traffic (established flows included), and release them.
    #[command(subcommand)]
    Quarantine(quarantine::QuarantineCommand),
    /// Alerts of the detectors (scans, sweeps, fan-out, new peers, deny spikes) and what
    /// was done; --follow keeps printing new ones.
    Alerts(alerts::AlertsArgs),
    /// Print a shell completion script to standard output.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the ztctl(1) man page (roff) to standard output.
    Man,
}

/// Why a command failed, and so its exit code.
#[derive(Debug)]
pub enum CliError {
    /// Exit 2: the command line asks for something impossible.
    Usage(String),
    /// Exit 1. `problems` are printed first, one per line (each problem of a rejected push).
    Failed { problems: Vec<String>, message: String },
    /// Writing the output failed (a closed pipe ends the command quietly).
    Output(io::Error),
}

impl CliError {
    pub fn failed(message: impl Into<String>) -> CliError {
        CliError::Failed { problems: Vec::new(), message: message.into() }
    }
}

impl From<ClientError> for CliError {
    fn from(e: ClientError) -> CliError {
        match e {
            ClientError::Api(e) if e.code == ErrorCode::BadRequest && e.problems.is_empty() => {
                CliError::Usage(e.message)
            }
            ClientError::Api(e) => CliError::Failed { problems: e.problems, message: e.message },
            other => CliError::failed(other.to_string()),
        }
    }
}

impl From<io::Error> for CliError {
    fn from(e: io::Error) -> CliError {
        CliError::Output(e)
    }
}

/// What every command gets: the agent's client, the chosen format and standard output.
pub struct Ctx<'a> {
    pub client: Client,
    /// The data format `-o` named (`None` for a picture format, which only `flows map`
    /// reads, from `output`).
    pub format: Option<Format>,
    /// `-o` as given.
    pub output: Option<Output>,
    pub out: &'a mut dyn Write,
}

impl Ctx<'_> {
    /// The format, or `default` when `-o` was not given.
    pub fn format_or(&self, default: Format) -> Format {
        self.format.unwrap_or(default)
    }

    pub fn call(&self, request: &Request) -> Result<Reply, CliError> {
        Ok(self.client.call(request)?)
    }
}

/// The reply was not the kind the request asks for: agent and ztctl disagree.
pub fn unexpected(reply: &Reply) -> CliError {
    CliError::failed(format!(
        "the agent answered with an unexpected {} reply; are ztctl and zt-agent the same version?",
        serde_json::to_value(reply).ok().and_then(|v| v["kind"].as_str().map(str::to_string)).unwrap_or_default()
    ))
}

/// The command tree as clap sees it (for completions and the man page).
pub fn command() -> clap::Command {
    Cli::command()
}

/// `ztctl`'s main: parse, run, map the outcome to an exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let result = run(cli, &mut out).and_then(|()| out.flush().map_err(CliError::Output));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError::Output(e)) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(CliError::Output(e)) => {
            eprintln!("ztctl: cannot write the output: {e}");
            ExitCode::FAILURE
        }
        Err(CliError::Usage(message)) => {
            eprintln!("ztctl: {message}");
            ExitCode::from(2)
        }
        Err(CliError::Failed { problems, message }) => {
            for p in problems {
                eprintln!("{p}");
            }
            eprintln!("ztctl: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Runs one parsed command, writing its output to `out`.
pub fn run(cli: Cli, out: &mut dyn Write) -> Result<(), CliError> {
    let client = match cli.remote.target()? {
        Some(target) => Client::to(target),
        None => Client::new(cli.socket),
    };
    let format = match (&cli.command, cli.output) {
        (Command::Flows(args), _) if args.draws_a_map() => None,
        (_, output) => output.map(Output::data).transpose().map_err(CliError::Usage)?,
    };
    let mut ctx = Ctx { client, format, output: cli.output, out };
    match cli.command {
        Command::Policy(c) => policy::run(&mut ctx, c),
        Command::Endpoint(c) => inventory::run_endpoint(&mut ctx, c),
        Command::Identity(c) => inventory::run_identity(&mut ctx, c),
        Command::Status => status::run(&mut ctx),
        Command::Flows(args) => flows::run(&mut ctx, args),
        Command::Explain(args) => explain::run(&mut ctx, args),
        Command::Quarantine(c) => quarantine::run(&mut ctx, c),
        Command::Alerts(args) => alerts::run(&mut ctx, args),
        Command::Completions { shell } => reference::completions(ctx.out, shell),
        Command::Man => reference::man(ctx.out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("ztctl").chain(args.iter().copied()))
    }

    #[test]
    fn the_command_tree_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_options_go_anywhere() {
        let cli = parse(&["policy", "get", "-o", "json", "--socket", "/tmp/a.sock"]).unwrap();
        assert_eq!(cli.output, Some(Output::Json));
        assert_eq!(cli.socket, PathBuf::from("/tmp/a.sock"));
        assert_eq!(parse(&["status"]).unwrap().socket, PathBuf::from(DEFAULT_SOCKET));
    }

    #[test]
    fn the_remote_options_go_together() {
        let cli =
            parse(&["status", "--server", "198.18.0.2:9465", "--ca", "ca.pem", "--cert", "c.pem", "--key", "k.pem"])
                .unwrap();
        assert_eq!(cli.remote.server.as_deref(), Some("198.18.0.2:9465"));
        assert!(parse(&["status", "--server", "198.18.0.2:9465"]).is_err(), "--server needs --ca");
        assert!(parse(&["status", "--ca", "ca.pem"]).is_err(), "--ca only with --server");
        assert!(
            parse(&["status", "--server", "a:1", "--ca", "ca.pem", "--cert", "c.pem"]).is_err(),
            "--cert needs --key"
        );
        assert!(
            parse(&["status", "--server", "a:1", "--ca", "ca.pem"]).is_ok(),
            "no client certificate is the agent's to refuse"
        );
    }

    #[test]
    fn flows_map_takes_picture_formats_and_the_others_do_not() {
        let cli = parse(&["flows", "map", "-o", "html", "--since", "1h", "--output-file", "m.html"]).unwrap();
        assert_eq!(cli.output, Some(Output::Html));
        let mut out = Vec::new();
        match run(parse(&["status", "-o", "svg"]).unwrap(), &mut out) {
            Err(CliError::Usage(m)) => assert!(m.contains("-o svg is a picture of `ztctl flows map`"), "{m}"),
            other => panic!("{other:?}"),
        }
        assert!(parse(&["flows", "--follow", "-o", "json"]).is_ok(), "flows without map is unchanged");
    }

    #[test]
    fn usage_errors_are_clap_errors() {
        assert!(parse(&["policy", "apply"]).is_err(), "apply needs a path");
        assert!(parse(&["flows", "--verdict", "maybe"]).is_err());
        assert!(parse(&["flows", "--since", "soon"]).is_err());
        assert!(parse(&["quarantine", "add", "not-an-ip"]).is_err());
        assert!(parse(&["explain", "--from", "198.18.0.1", "--to", "198.18.0.2", "--proto", "gre"]).is_err());
        assert!(parse(&["alerts", "--since", "soon"]).is_err());
        assert!(parse(&["flows", "map", "--since", "soon"]).is_err());
        assert!(parse(&["flows", "--verdict", "denied", "map"]).is_err(), "map takes no filters of flows");
        assert!(parse(&["alerts", "--follow", "--since", "5m"]).is_ok());
        assert!(parse(&["quarantine", "add", "198.18.0.9", "--ttl", "1h", "--reason", "scanner"]).is_ok());
        assert!(parse(&["policy", "validate"]).is_err(), "validate needs a path");
        assert!(parse(&["policy", "test", "p.yaml"]).is_err(), "test needs --cases");
        assert!(parse(&["policy", "validate", "p.yaml", "--default-deny", "maybe"]).is_err());
    }

    #[test]
    fn offline_commands_take_the_host_flags() {
        let ok = |args: &[&str]| parse(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        ok(&["policy", "validate", "a.yaml", "b/", "--host", "198.18.0.2/24", "--labels", "app=db"]);
        ok(&["policy", "test", "a.yaml", "--cases", "c.yaml", "--default-deny", "false", "--failsafe", "none"]);
        ok(&[
            "explain",
            "--policy",
            "a.yaml",
            "--host",
            "198.18.0.2",
            "--from",
            "198.18.0.1",
            "--to",
            "198.18.0.2",
            "--proto",
            "icmp",
        ]);
    }

    /// Runs a command line in process and returns its outcome and output.
    fn run_line(args: &[&str]) -> (Result<(), CliError>, String) {
        let mut out = Vec::new();
        let result = run(parse(args).unwrap(), &mut out);
        (result, String::from_utf8(out).unwrap())
    }

    #[test]
    fn offline_commands_never_touch_the_socket() {
        let dir = std::env::temp_dir().join(format!("ztctl-offline-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let policy = dir.join("p.yaml");
        std::fs::write(&policy, "apiVersion: zt/v1\nkind: Endpoint\nmetadata: {name: e}\nspec:\n  addresses: [198.18.0.3]\n  labels: {app: e}\n").unwrap();
        let cases = dir.join("c.yaml");
        std::fs::write(
            &cases,
            "- {from: 198.18.0.9, to: 198.18.0.3, proto: udp, port: 53, expect: denied, reason: default-deny}\n",
        )
        .unwrap();
        let p = policy.to_str().unwrap();
        let (r, out) = run_line(&["--socket", "/nonexistent", "policy", "validate", p]);
        assert!(
            r.is_ok() && out.starts_with("valid: 1 file(s), 1 document(s): 0 policies, 1 endpoints;"),
            "{r:?} {out}"
        );
        let (r, out) = run_line(&["--socket", "/nonexistent", "policy", "test", p, "--cases", cases.to_str().unwrap()]);
        assert!(r.is_ok() && out == "1 cases passed\n", "{r:?} {out}");
        let (r, out) = run_line(&[
            "--socket",
            "/nonexistent",
            "explain",
            "--policy",
            p,
            "--from",
            "198.18.0.9",
            "--to",
            "198.18.0.3",
            "--proto",
            "icmp",
        ]);
        assert!(r.is_ok() && out.starts_with("verdict:      denied (default-deny)\n"), "{r:?} {out}");
        assert!(out.ends_with("generation:   none (computed offline from --policy)\n"), "{out}");
        let (r, _) = run_line(&[
            "--socket",
            "/nonexistent",
            "explain",
            "--labels",
            "a=b",
            "--from",
            "198.18.0.9",
            "--to",
            "198.18.0.3",
            "--proto",
            "icmp",
        ]);
        assert!(matches!(r, Err(CliError::Usage(m)) if m.starts_with("--host, --labels")), "host flags need --policy");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
