//! `ztctl policy ...`: push files, see what a push would change, read the running documents,
//! delete, list revisions, roll back.
//!
//! Files are read here (a directory means its `*.yaml`/`*.yml` files) and sent with their
//! paths, so the agent's errors name the operator's own files and lines.

use std::path::PathBuf;

use clap::Subcommand;

use super::{CliError, Ctx, output, output::Format, unexpected};
use zt_api::protocol::{Change, DocumentView, PushReport, Reply, Request, RevisionInfo, Source};

#[derive(Subcommand, Debug)]
pub enum PolicyCommand {
    /// Merge the documents of PATH... into the running policy as one new revision.
    ///
    /// The running policy is a set of documents keyed by kind, namespace and name: a pushed
    /// document replaces the running one with the same key, other running documents stay.
    /// The whole resulting set is validated and compiled first; if anything is wrong the
    /// push is rejected with every problem (file, document, field) and nothing changes.
    Apply {
        /// Policy files, or directories of *.yaml / *.yml files.
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
        /// Validate and compile, report what would change, change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Show what `policy apply PATH...` would change, with a line diff per document.
    Diff {
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
    },
    /// List the running documents, or print the ones NAME designates as YAML.
    ///
    /// NAME is a Policy name, or KIND/NAME or KIND/NAMESPACE/NAME for any document.
    /// `-o yaml` prints every document as one YAML stream, which `policy apply` accepts.
    Get {
        #[arg(value_name = "NAME")]
        name: Option<String>,
    },
    /// Remove a running Policy (NAME) or any document (KIND/NAME, KIND/NAMESPACE/NAME) as one
    /// new revision.
    Delete {
        #[arg(value_name = "NAME")]
        name: String,
        /// Validate the result and report what would change, change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// List the stored revisions, oldest first; `*` marks the one in force.
    History,
    /// Re-apply a stored revision (default: the one before the current) as a new revision.
    Rollback {
        #[arg(value_name = "REVISION")]
        revision: Option<u64>,
    },
    /// Offline: would an agent accept PATH... as its policy? Prints the agent's errors.
    ///
    /// Loads and compiles the files as the complete policy exactly as the agent does on a
    /// push, without root, an agent or a kernel (for CI and GitOps). Exit 1 with every
    /// problem (file, document, field and fix) when invalid; 0 and a summary when valid.
    Validate(super::validate::ValidateArgs),
    /// Offline: judge a list of flows against PATH... and compare with the expected verdicts.
    ///
    /// The cases file is a YAML list like
    /// `- {from: 198.18.0.1, to: 198.18.0.2, proto: tcp, port: 80, expect: allowed}`
    /// (optional: name, direction, reason, policy, rule). Prints the mismatches; exit 1 on
    /// any mismatch or a bad cases file, 0 with "N cases passed".
    Test(super::policy_test::TestArgs),
    /// Write least-privilege policy (YAML) from the traffic the agent observed.
    ///
    /// One zt/v1 Policy per local identity, selecting it by its labels, with a rule per
    /// peer that allows exactly the protocols and ports seen (labelled peers by selector,
    /// others by address), each with a comment giving the flows and times it rests on.
    /// Run the agent with --default-deny audit to observe a host before enforcing, apply
    /// the suggestion (mode audit), check `ztctl flows --verdict audit`, then enforce.
    Suggest {
        /// Only edges seen within this long (30s, 5m, 1h, 7d); default: all kept.
        #[arg(long, value_name = "DURATION", value_parser = crate::parse_duration)]
        since: Option<std::time::Duration>,
        /// Only local identities with these labels (k=v,k2=v2).
        #[arg(long, value_name = "k=v,...")]
        selector: Option<String>,
        /// Leave out edges with fewer flows.
        #[arg(long, value_name = "N", default_value_t = 1)]
        min_flows: u64,
        /// The suggested policies' spec.mode.
        #[arg(long, value_name = "MODE", default_value = "audit", value_parser = ["audit", "enforce"])]
        mode: String,
    },
}

pub fn run(ctx: &mut Ctx, command: PolicyCommand) -> Result<(), CliError> {
    match command {
        PolicyCommand::Apply { paths, dry_run } => {
            let request = Request::PolicyApply { sources: read(&paths)?, dry_run };
            push_report(ctx, &request)
        }
        PolicyCommand::Diff { paths } => diff(ctx, &Request::PolicyDiff { sources: read(&paths)? }),
        PolicyCommand::Get { name } => get(ctx, name),
        PolicyCommand::Delete { name, dry_run } => push_report(ctx, &Request::PolicyDelete { name, dry_run }),
        PolicyCommand::History => history(ctx),
        PolicyCommand::Rollback { revision } => push_report(ctx, &Request::PolicyRollback { revision }),
        PolicyCommand::Validate(args) => super::validate::run(ctx, args),
        PolicyCommand::Test(args) => super::policy_test::run(ctx, args),
        PolicyCommand::Suggest { since, selector, min_flows, mode } => suggest(ctx, since, selector, min_flows, mode),
    }
}

fn suggest(
    ctx: &mut Ctx,
    since: Option<std::time::Duration>,
    selector: Option<String>,
    min_flows: u64,
    mode: String,
) -> Result<(), CliError> {
    if ctx.format == Some(Format::Json) {
        return Err(CliError::Usage(
            "policy suggest writes YAML (its comments say what each rule rests on); use -o yaml".into(),
        ));
    }
    let selector = match selector {
        None => Default::default(),
        Some(text) => zt_api::labels::Labels::parse(&text)
            .map_err(|e| CliError::Usage(format!("--selector {text:?}: {e}")))?
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    let (edges, dropped) = match ctx.call(&Request::Edges { since_seconds: since.map(|d| d.as_secs()) })? {
        Reply::Edges { edges, dropped } => (edges, dropped),
        other => return Err(unexpected(&other)),
    };
    if dropped > 0 {
        eprintln!(
            "warning: the agent's edge table was full and did not keep {dropped} edges; the suggestion may miss traffic (raise [flows] edges)"
        );
    }
    let opts = crate::suggest::SuggestOptions { selector, min_flows, mode };
    ctx.out.write_all(crate::suggest::suggest(&edges, &opts).as_bytes())?;
    Ok(())
}

/// Reads the files as the agent's `--policy` would; every unreadable path is reported.
fn read(paths: &[PathBuf]) -> Result<Vec<Source>, CliError> {
    match zt_api::sources::load_paths(paths) {
        Ok(sources) => Ok(sources.into_iter().map(|(name, text)| Source { name, text }).collect()),
        Err(errors) => Err(CliError::Failed {
            problems: errors.iter().map(ToString::to_string).collect(),
            message: "nothing was sent to the agent".into(),
        }),
    }
}

fn push(ctx: &Ctx, request: &Request) -> Result<PushReport, CliError> {
    match ctx.call(request)? {
        Reply::Push(report) => {
            for w in &report.warnings {
                eprintln!("warning: {w}");
            }
            Ok(report)
        }
        other => Err(unexpected(&other)),
    }
}

fn push_report(ctx: &mut Ctx, request: &Request) -> Result<(), CliError> {
    let report = push(ctx, request)?;
    let format = ctx.format_or(Format::Table);
    output::data(ctx.out, format, &report, || render_push(&report))?;
    Ok(())
}

fn render_push(r: &PushReport) -> String {
    let counts = zt_api::protocol::counts(&r.changes);
    let mut text = match (r.applied, r.revision) {
        (true, Some(rev)) => {
            format!("applied revision {rev} (generation {}): {counts}\n", r.generation.unwrap_or_default())
        }
        (true, None) => format!(
            "applied as generation {} (the revision was not saved): {counts}\n",
            r.generation.unwrap_or_default()
        ),
        (false, _) if r.changes.iter().all(|c| c.change == Change::Unchanged) => {
            "no changes: the running policy already has these documents\n".to_string()
        }
        (false, _) => {
            format!("dry run: the result is valid; it would make {counts}; nothing was changed\n")
        }
    };
    for c in r.changes.iter().filter(|c| c.change != Change::Unchanged) {
        text.push_str(&format!("  {:<8} {}  ({})\n", c.change.to_string(), c.key, c.origin));
    }
    text.push_str(&format!(
        "{} policies, {} identities, {} policy entries, {} ipcache prefixes",
        r.policies, r.identities, r.policy_entries, r.ipcache_entries
    ));
    if r.applied {
        text.push_str(&format!("; {} kernel entries written, {} removed", r.written, r.removed));
    }
    text.push_str(&format!("; {:.1} ms in the agent\n", r.agent_ms));
    text
}

fn diff(ctx: &mut Ctx, request: &Request) -> Result<(), CliError> {
    let report = push(ctx, request)?;
    let format = ctx.format_or(Format::Table);
    output::data(ctx.out, format, &report, || {
        let mut text = String::new();
        for c in report.changes.iter().filter(|c| c.change != Change::Unchanged) {
            let mark = match c.change {
                Change::Added => '+',
                Change::Removed => '-',
                _ => '~',
            };
            text.push_str(&format!("{mark} {} ({})\n", c.key, c.origin));
            for line in &c.diff {
                text.push_str(&format!("    {line}\n"));
            }
        }
        if text.is_empty() {
            text.push_str("no differences\n");
        }
        text
    })?;
    Ok(())
}

fn get(ctx: &mut Ctx, name: Option<String>) -> Result<(), CliError> {
    let single = name.is_some();
    let Reply::Documents { documents } = ctx.call(&Request::PolicyGet { name })? else {
        return Err(CliError::failed("the agent answered policy get with something else"));
    };
    // A named document is most useful as the YAML it is; a listing as a table.
    match ctx.format_or(if single { Format::Yaml } else { Format::Table }) {
        Format::Yaml => ctx.out.write_all(yaml_stream(&documents).as_bytes())?,
        Format::Json => output::json(ctx.out, &documents)?,
        Format::Table => {
            let mut t = output::Table::new(&["KIND", "NAMESPACE", "NAME", "FROM"]);
            for d in &documents {
                let ns = d.key.namespace.clone().unwrap_or_else(|| "-".into());
                t.row(vec![d.key.kind.clone(), ns, d.key.name.clone(), d.origin.clone()]);
            }
            ctx.out.write_all(t.render().as_bytes())?;
        }
    }
    Ok(())
}

/// The documents as one multi-document YAML stream.
fn yaml_stream(documents: &[DocumentView]) -> String {
    documents.iter().map(|d| format!("---\n{}", d.yaml)).collect()
}

fn history(ctx: &mut Ctx) -> Result<(), CliError> {
    let reply = ctx.call(&Request::PolicyHistory)?;
    let Reply::History { current, revisions } = &reply else {
        return Err(unexpected(&reply));
    };
    let format = ctx.format_or(Format::Table);
    output::data(ctx.out, format, &reply, || render_history(*current, revisions))?;
    Ok(())
}

fn render_history(current: Option<u64>, revisions: &[RevisionInfo]) -> String {
    let mut t = output::Table::new(&["", "REVISION", "TIME", "AUTHOR", "GENERATION", "DOCUMENTS", "SUMMARY"]);
    for r in revisions {
        let author = if r.author_uid == 0 { "root".to_string() } else { format!("uid {}", r.author_uid) };
        t.row(vec![
            if Some(r.revision) == current { "*" } else { "" }.to_string(),
            r.revision.to_string(),
            r.time.clone(),
            author,
            r.generation.to_string(),
            r.documents.to_string(),
            r.summary.clone(),
        ]);
    }
    t.render()
}
