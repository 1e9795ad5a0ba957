//! `ztctl policy validate`: would an agent accept these files? Loads and compiles them
//! offline as the complete policy, exactly as the agent does on a push (`zt_policy::
//! generation`), and prints the agent's own error sentences — for CI and GitOps checks
//! without root, an agent or a kernel.

use std::path::PathBuf;

use serde::Serialize;

use super::{
    CliError, Ctx,
    offline::{HostArgs, Offline},
    output::{self, Format},
};

#[derive(clap::Args, Debug)]
pub struct ValidateArgs {
    /// Policy files, or directories of *.yaml / *.yml files: the complete policy.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    #[command(flatten)]
    pub host: HostArgs,
}

/// What a valid policy holds (`-o json` / `-o yaml` carry these field names).
#[derive(Debug, Serialize)]
pub struct Summary {
    pub files: usize,
    pub documents: usize,
    pub policies: usize,
    pub endpoints: usize,
    pub identities: usize,
    pub policy_entries: usize,
    pub ipcache_entries: usize,
    pub warnings: Vec<String>,
}

pub fn run(ctx: &mut Ctx, args: ValidateArgs) -> Result<(), CliError> {
    let summary = summary(&args)?;
    for w in &summary.warnings {
        eprintln!("warning: {w}");
    }
    let format = ctx.format_or(Format::Table);
    output::data(ctx.out, format, &summary, || {
        format!(
            "valid: {} file(s), {} document(s): {} policies, {} endpoints; {} identities, {} policy entries, {} ipcache prefixes\n",
            summary.files,
            summary.documents,
            summary.policies,
            summary.endpoints,
            summary.identities,
            summary.policy_entries,
            summary.ipcache_entries
        )
    })?;
    Ok(())
}

/// Compiles the files; fails with every problem the agent would report.
pub fn summary(args: &ValidateArgs) -> Result<Summary, CliError> {
    let offline = Offline::compile(&args.paths, &args.host)?;
    Ok(Summary {
        files: offline.sources.len(),
        documents: offline.documents,
        policies: offline.compiled.policies.len(),
        endpoints: offline.endpoints,
        identities: offline.compiled.identities.len(),
        policy_entries: offline.compiled.entries.len(),
        ipcache_entries: offline.ipcache.len(),
        warnings: offline.compiled.warnings.clone(),
    })
}
