//! Errors of the datapath layer; each names the object that failed and, where there is
//! one, the fix. aya's errors are boxed: they are large, and every fallible call in the
//! agent would otherwise carry their size in its `Result`.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum DatapathError {
    #[error(
        "cannot create the bpffs pin directory {path}: {source} (is bpffs mounted at /sys/fs/bpf and are you root?)"
    )]
    PinDir { path: PathBuf, source: std::io::Error },
    #[error("cannot load the zt kernel programs: {0}")]
    Load(#[source] Box<aya::EbpfError>),
    #[error("the kernel verifier rejected program {program}: {source}")]
    Verify { program: &'static str, source: Box<aya::programs::ProgramError> },
    #[error("the eBPF object has no {kind} named {name}; the build is inconsistent, rebuild zt-agent")]
    Missing { kind: &'static str, name: &'static str },
    #[error("map {map}: {source}")]
    Map { map: &'static str, source: Box<aya::maps::MapError> },
    #[error("interface {iface} does not exist in this network namespace")]
    NoSuchInterface { iface: String },
    #[error("cannot attach {program} to {iface} ({mode}): {source}")]
    Attach { program: &'static str, iface: String, mode: &'static str, source: Box<aya::programs::ProgramError> },
    #[error("cannot pin {what} at {path}: {source}")]
    Pin { what: String, path: PathBuf, source: Box<aya::pin::PinError> },
    #[error("the generation has {count} rate limits but RATE_LIMITS holds at most {limit} per generation")]
    TooManyRateLimits { count: usize, limit: usize },
    #[error("{0}")]
    Other(String),
}

impl DatapathError {
    pub(crate) fn map(map: &'static str) -> impl FnOnce(aya::maps::MapError) -> DatapathError {
        move |source| DatapathError::Map { map, source: Box::new(source) }
    }
}
