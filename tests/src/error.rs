//! The harness's error type: every failure names the command, file or process it concerns,
//! so a red end-to-end test says what broke without re-running it by hand.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// Result of a harness operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong while setting up or driving a test environment.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An external command (`ip`, a binary under test) ran and exited unsuccessfully.
    #[error("`{command}` failed with {status}: {stderr}")]
    Command { command: String, status: String, stderr: String },

    /// An external command did not finish in time and was killed.
    #[error("`{command}` did not finish within {timeout:?} and was killed")]
    CommandTimeout { command: String, timeout: Duration },

    /// A system call or file operation failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },

    /// No line of a log file satisfied the caller's predicate before the deadline.
    #[error("no matching line in {path} within {timeout:?}; last lines:\n{tail}")]
    WaitTimeout { path: PathBuf, timeout: Duration, tail: String },

    /// A process under test exited while the harness was still waiting for it.
    #[error("process `{command}` exited with {status} while waiting for {waiting_for}; stderr tail:\n{stderr_tail}")]
    ProcessExited { command: String, status: String, waiting_for: String, stderr_tail: String },

    /// A line of a JSON-lines file is not valid JSON.
    #[error("{path}:{line}: not a JSON value: {source}")]
    Json {
        path: PathBuf,
        line: usize,
        #[source]
        source: serde_json::Error,
    },
}

impl Error {
    /// Wraps an `io::Error` with a sentence saying what the harness was doing.
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io { context: context.into(), source }
    }
}
