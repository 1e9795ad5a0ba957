//! The gate in front of tests that need an outside program (a browser, OCR): a developer
//! without it sees the test skipped with the command that installs it; CI (`CI` or
//! `ZT_REQUIRE_PRIVILEGED=1` set) fails instead, so such a test can never pass CI by not
//! running.

use std::io::Write;

use crate::privileged::REQUIRE_PRIVILEGED_ENV;

/// Whether `program` is on the PATH. When it is not, prints `SKIPPED: ...` naming `install`
/// and returns `false`, or panics if CI demands every test to run.
#[track_caller]
pub fn require_tool(program: &str, install: &str) -> bool {
    if find(program) {
        return true;
    }
    let reason = format!("`{program}` is not installed; {install}");
    let required = std::env::var(REQUIRE_PRIVILEGED_ENV).is_ok_and(|v| v == "1") || std::env::var_os("CI").is_some();
    assert!(!required, "this test needs {reason} ({REQUIRE_PRIVILEGED_ENV}=1 or CI forbids skipping it)");
    let test = std::thread::current().name().unwrap_or("test").to_string();
    let _ = std::io::stderr().write_all(format!("SKIPPED: {reason} [{test}]\n").as_bytes());
    false
}

fn find(program: &str) -> bool {
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()).any(|d| d.join(program).is_file())
}
