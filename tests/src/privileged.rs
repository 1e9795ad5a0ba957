//! The gate in front of every test that needs root and network namespaces.
//!
//! A developer without root sees such tests skipped with a reason; CI sets
//! `ZT_REQUIRE_PRIVILEGED=1`, which turns the skip into a failure, so a kernel test can never
//! pass CI by silently not running.

use std::io::Write;
use std::sync::OnceLock;

use crate::command::{self, SETUP_TIMEOUT};
use crate::netns::Netns;

/// Environment variable that makes a missing privilege a test failure instead of a skip.
pub const REQUIRE_PRIVILEGED_ENV: &str = "ZT_REQUIRE_PRIVILEGED";

/// Whether this test may use root and network namespaces. Call it first, and return at once
/// when it says `false` (or use [`crate::skip_unless_privileged!`]).
///
/// When privileges are missing it prints `SKIPPED: <reason>` and returns `false`, or panics if
/// `ZT_REQUIRE_PRIVILEGED=1`.
#[track_caller]
pub fn require_privileged() -> bool {
    let required = std::env::var(REQUIRE_PRIVILEGED_ENV).is_ok_and(|v| v == "1");
    match decide(privilege_problem(), required) {
        Gate::Run => true,
        Gate::Skip(reason) => {
            let test = std::thread::current().name().unwrap_or("test").to_string();
            // Straight to the stderr descriptor: libtest captures `eprintln!` of passing tests,
            // and a skip nobody sees is as bad as a silent pass.
            // One write, so parallel tests cannot split each other's lines.
            let line = format!("SKIPPED: {reason} [{test}]\n");
            let _ = std::io::stderr().write_all(line.as_bytes());
            false
        }
        Gate::Fail(message) => panic!("{message}"),
    }
}

/// Why privileged tests cannot run here, or `None` if they can. Probed once per process by
/// creating and deleting a namespace, the real operation the tests depend on.
pub fn privilege_problem() -> Option<&'static str> {
    static PROBLEM: OnceLock<Option<String>> = OnceLock::new();
    PROBLEM.get_or_init(probe).as_deref()
}

fn probe() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        return Some(format!("not running as root (euid {euid})"));
    }
    if let Err(err) = command::run_checked("ip", ["-V"], SETUP_TIMEOUT) {
        return Some(format!("iproute2's `ip` is not usable: {err}"));
    }
    match Netns::new("probe") {
        Ok(_probe) => None,
        Err(err) => Some(format!("cannot create a network namespace: {err}")),
    }
}

/// What a test does, given the probe's finding and whether CI demands privileged tests.
#[derive(Debug, PartialEq, Eq)]
enum Gate {
    Run,
    Skip(String),
    Fail(String),
}

fn decide(problem: Option<&str>, required: bool) -> Gate {
    match (problem, required) {
        (None, _) => Gate::Run,
        (Some(reason), false) => Gate::Skip(reason.to_string()),
        (Some(reason), true) => Gate::Fail(format!(
            "this test needs root and network namespaces, and {REQUIRE_PRIVILEGED_ENV}=1 \
             forbids skipping it: {reason}"
        )),
    }
}

/// Returns from the calling test (after printing `SKIPPED: <reason>`) unless it may use root
/// and network namespaces; panics instead when `ZT_REQUIRE_PRIVILEGED=1`. A test returning a
/// `Result` passes the value to return: `skip_unless_privileged!(Ok(()))`.
#[macro_export]
macro_rules! skip_unless_privileged {
    () => {
        if !$crate::require_privileged() {
            return;
        }
    };
    ($skipped:expr) => {
        if !$crate::require_privileged() {
            return $skipped;
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn privileged_machines_run_the_test() {
        assert_eq!(decide(None, false), Gate::Run);
        assert_eq!(decide(None, true), Gate::Run);
    }

    #[test]
    fn unprivileged_machines_skip_with_the_reason() {
        assert_eq!(
            decide(Some("not running as root (euid 1000)"), false),
            Gate::Skip("not running as root (euid 1000)".into())
        );
    }

    #[test]
    fn ci_turns_a_skip_into_a_failure_that_names_the_variable() {
        match decide(Some("not running as root (euid 1000)"), true) {
            Gate::Fail(message) => {
                assert!(message.contains("ZT_REQUIRE_PRIVILEGED=1"), "{message}");
                assert!(message.contains("euid 1000"), "{message}");
            }
            other => panic!("expected a failure, got {other:?}"),
        }
    }
}
