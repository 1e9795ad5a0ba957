//! Processes under test (the agent, `ztctl`) running inside a namespace: spawned through
//! `ip netns exec`, their output captured to files that tests poll for readiness and read as
//! flow logs, and stopped by a guard (SIGTERM, then SIGKILL) when the test ends.
//!
//! `ip netns exec` gives the program a private mount namespace with a fresh `/sys` for the
//! target namespace, so nothing mounted under `/sys` on the host (such as a bpffs at
//! `/sys/fs/bpf`) is visible to it; see [`crate::bpffs`] for pins that must outlive a process.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::command::describe;
use crate::error::{Error, Result};
use crate::names::next_sequence;
use crate::netns::Netns;

/// How long a process gets to exit after SIGTERM before it is killed.
pub const TERMINATE_GRACE: Duration = Duration::from_secs(5);

/// How often log files are re-read while waiting for a line.
const POLL: Duration = Duration::from_millis(20);

/// A program running inside a namespace, with stdout and stderr in files; terminated on drop.
#[derive(Debug)]
pub struct NsProcess {
    child: Child,
    command: String,
    stdout: PathBuf,
    stderr: PathBuf,
    status: Option<ExitStatus>,
}

impl NsProcess {
    /// Starts `command` (program, arguments, environment and working directory as configured
    /// on it) inside `ns`, writing its output to `<log_dir>/<program>-<seq>.stdout|.stderr`.
    ///
    /// `ip netns exec` replaces itself with the program, so [`Self::pid`] and the signals sent
    /// by this guard reach the program itself.
    pub fn spawn(ns: &Netns, command: &Command, log_dir: &Path) -> Result<NsProcess> {
        let program = Path::new(command.get_program());
        let stem = format!("{}-{}", program.file_name().unwrap_or_default().to_string_lossy(), next_sequence());
        let stdout = log_dir.join(format!("{stem}.stdout"));
        let stderr = log_dir.join(format!("{stem}.stderr"));
        let create =
            |path: &Path| File::create(path).map_err(|e| Error::io(format!("cannot create {}", path.display()), e));

        let mut wrapped = Command::new("ip");
        wrapped
            .args([OsString::from("netns"), "exec".into(), ns.name().into()])
            .arg(command.get_program())
            .args(command.get_args())
            .stdin(Stdio::null())
            .stdout(create(&stdout)?)
            .stderr(create(&stderr)?);
        for (key, value) in command.get_envs() {
            match value {
                Some(value) => wrapped.env(key, value),
                None => wrapped.env_remove(key),
            };
        }
        if let Some(dir) = command.get_current_dir() {
            wrapped.current_dir(dir);
        }
        let text = describe(command);
        let child = wrapped.spawn().map_err(|e| Error::io(format!("cannot start `{text}` in {}", ns.name()), e))?;
        Ok(NsProcess { child, command: text, stdout, stderr, status: None })
    }

    /// The program's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The file receiving the program's stdout.
    pub fn stdout_path(&self) -> &Path {
        &self.stdout
    }

    /// The file receiving the program's stderr.
    pub fn stderr_path(&self) -> &Path {
        &self.stderr
    }

    /// The exit status if the program has exited, without waiting.
    pub fn try_status(&mut self) -> Result<Option<ExitStatus>> {
        if self.status.is_none() {
            self.status =
                self.child.try_wait().map_err(|e| Error::io(format!("cannot check on `{}`", self.command), e))?;
        }
        Ok(self.status)
    }

    /// Waits up to `timeout` for a line of stdout satisfying `predicate` and returns it;
    /// fails at once, with the stderr tail, if the program exits first.
    pub fn wait_for_stdout(&mut self, predicate: impl FnMut(&str) -> bool, timeout: Duration) -> Result<String> {
        let path = self.stdout.clone();
        self.wait_for_line_in(&path, predicate, timeout)
    }

    /// Like [`Self::wait_for_stdout`], for stderr (where the agent logs).
    pub fn wait_for_stderr(&mut self, predicate: impl FnMut(&str) -> bool, timeout: Duration) -> Result<String> {
        let path = self.stderr.clone();
        self.wait_for_line_in(&path, predicate, timeout)
    }

    fn wait_for_line_in(
        &mut self,
        path: &Path,
        predicate: impl FnMut(&str) -> bool,
        timeout: Duration,
    ) -> Result<String> {
        scan_lines(path, predicate, timeout, || match self.try_status()? {
            None => Ok(()),
            Some(status) => Err(Error::ProcessExited {
                command: self.command.clone(),
                status: status.to_string(),
                waiting_for: format!("a line in {}", path.display()),
                stderr_tail: tail(&self.stderr, 20),
            }),
        })
    }

    /// Waits up to `timeout` for the program to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_status()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                return Err(Error::CommandTimeout { command: self.command.clone(), timeout });
            }
            thread::sleep(POLL);
        }
    }

    /// Sends `signal` (e.g. `libc::SIGHUP`) to the program, if it is still running.
    pub fn signal(&mut self, signal: libc::c_int) -> Result<()> {
        // Only a process not yet reaped can be signalled: its pid cannot have been reused.
        if self.try_status()?.is_some() {
            return Ok(());
        }
        let pid = libc::pid_t::try_from(self.pid()).expect("pids fit in pid_t");
        // SAFETY: kill(2) with a pid we own and have not reaped.
        if unsafe { libc::kill(pid, signal) } == 0 {
            Ok(())
        } else {
            Err(Error::io(format!("cannot signal `{}`", self.command), io::Error::last_os_error()))
        }
    }

    /// Stops the program: SIGTERM, up to [`TERMINATE_GRACE`] to exit, then SIGKILL.
    /// Returns its exit status.
    pub fn terminate(&mut self) -> Result<ExitStatus> {
        self.signal(libc::SIGTERM)?;
        match self.wait_exit(TERMINATE_GRACE) {
            Ok(status) => Ok(status),
            Err(Error::CommandTimeout { .. }) => {
                self.signal(libc::SIGKILL)?;
                let status = self.child.wait().map_err(|e| Error::io(format!("cannot reap `{}`", self.command), e))?;
                self.status = Some(status);
                Ok(status)
            }
            Err(other) => Err(other),
        }
    }
}

impl Drop for NsProcess {
    fn drop(&mut self) {
        if let Err(err) = self.terminate() {
            eprintln!("warning: could not stop `{}`: {err}", self.command);
        }
    }
}

/// Waits up to `timeout` for a complete line of `path` satisfying `predicate` and returns it.
/// The file may not exist yet. Lines are only judged once their newline is written, so a
/// half-written line never matches too early.
pub fn wait_for_line(path: &Path, predicate: impl FnMut(&str) -> bool, timeout: Duration) -> Result<String> {
    scan_lines(path, predicate, timeout, || Ok(()))
}

/// The polling loop behind [`wait_for_line`]: `still_worth_waiting` is asked between polls and
/// ends the wait early with its error (a process that exited will never write the line).
fn scan_lines(
    path: &Path,
    mut predicate: impl FnMut(&str) -> bool,
    timeout: Duration,
    mut still_worth_waiting: impl FnMut() -> Result<()>,
) -> Result<String> {
    let deadline = Instant::now() + timeout;
    let mut judged = 0;
    loop {
        let contents = fs::read(path).unwrap_or_default();
        let complete = contents.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        if complete > judged {
            let fresh = String::from_utf8_lossy(&contents[judged..complete]);
            if let Some(line) = fresh.lines().find(|line| predicate(line)) {
                return Ok(line.to_string());
            }
            judged = complete;
        }
        if Instant::now() >= deadline {
            return Err(Error::WaitTimeout { path: path.to_path_buf(), timeout, tail: tail(path, 20) });
        }
        // One last read after the process is gone catches a line written just before it exited.
        if let Err(err) = still_worth_waiting() {
            let contents = fs::read(path).unwrap_or_default();
            let rest = String::from_utf8_lossy(&contents[judged.min(contents.len())..]);
            return match rest.lines().find(|line| predicate(line)) {
                Some(line) => Ok(line.to_string()),
                None => Err(err),
            };
        }
        thread::sleep(POLL);
    }
}

/// The last `lines` lines of a file, for error messages; empty if it cannot be read.
pub fn tail(path: &Path, lines: usize) -> String {
    let contents = fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&contents);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Parses a JSON-lines file (the flow log, `ztctl -o json --follow` output) into values.
/// Blank lines are skipped; so is a last line without its newline that does not parse yet,
/// because the writer may be in the middle of it. Any other bad line is an error naming it.
pub fn read_json_lines(path: &Path) -> Result<Vec<serde_json::Value>> {
    let contents = fs::read(path).map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
    let text = String::from_utf8_lossy(&contents);
    let ends_complete = text.ends_with('\n');
    let lines: Vec<&str> = text.lines().collect();
    let mut values = Vec::with_capacity(lines.len());
    for (index, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(line) {
            Ok(value) => values.push(value),
            Err(_) if index + 1 == lines.len() && !ends_complete => break,
            Err(source) => {
                return Err(Error::Json { path: path.to_path_buf(), line: index + 1, source });
            }
        }
    }
    Ok(values)
}

/// The path of a binary built by this workspace (`zt-agent`, `ztctl`) next to the running
/// test executable, i.e. `target/<profile>/<name>`. Fails with the build command if absent.
pub fn workspace_binary(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe().map_err(|e| Error::io("cannot locate the running test executable", e))?;
    // Test executables live in target/<profile>/deps/; binaries one level up.
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .ok_or_else(|| Error::io("unexpected test executable location", io::ErrorKind::NotFound.into()))?;
    let path = profile_dir.join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(Error::io(
            format!("{} does not exist; build it first (cargo build --bin {name})", path.display()),
            io::ErrorKind::NotFound.into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch_file(name: &str, contents: &str) -> PathBuf {
        let path =
            std::env::temp_dir().join(format!("zt-tests-unit-{}-{}-{name}", std::process::id(), next_sequence()));
        fs::write(&path, contents).unwrap();
        path
    }

    #[test]
    fn json_lines_skip_blank_lines_and_a_partial_last_line() {
        let path = scratch_file("partial.jsonl", "{\"a\":1}\n\n{\"a\":2}\n{\"a\":");
        let values = read_json_lines(&path).unwrap();
        fs::remove_file(&path).unwrap();
        assert_eq!(values, vec![serde_json::json!({"a": 1}), serde_json::json!({"a": 2})]);
    }

    #[test]
    fn a_bad_json_line_is_named() {
        let path = scratch_file("bad.jsonl", "{\"a\":1}\nnot json\n{\"a\":2}\n");
        let err = read_json_lines(&path).unwrap_err();
        fs::remove_file(&path).unwrap();
        assert!(matches!(err, Error::Json { line: 2, .. }), "{err}");
    }

    #[test]
    fn waiting_ignores_a_line_until_its_newline_is_written() {
        let path = scratch_file("wait.log", "starting\nread");
        let short = wait_for_line(&path, |l| l.contains("ready"), Duration::from_millis(100));
        assert!(matches!(short, Err(Error::WaitTimeout { .. })));
        fs::write(&path, "starting\nready on :80\n").unwrap();
        let line = wait_for_line(&path, |l| l.contains("ready"), Duration::from_secs(1)).unwrap();
        fs::remove_file(&path).unwrap();
        assert_eq!(line, "ready on :80");
    }
}
