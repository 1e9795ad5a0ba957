//! Running short external commands (`ip`, helpers inside a namespace) with a deadline.
//!
//! Every namespace and link the harness builds goes through here, so a wedged `ip` can never
//! hang a test run: the child is killed when its deadline passes and the error names it.

use std::ffi::OsStr;
use std::io::Read;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// Deadline for one `ip`/`sysctl` invocation; they take milliseconds, so this only trips on a
/// wedged kernel or tool.
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(20);

/// Runs `program args...`, capturing its output, and kills it if it outlives `timeout`.
/// A non-zero exit is not an error here: the caller gets the `Output` to judge.
pub fn run<I, S>(program: impl AsRef<OsStr>, args: I, timeout: Duration) -> Result<Output>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut command = Command::new(program);
    command.args(args);
    run_command(&mut command, timeout)
}

/// Like [`run`], but a non-zero exit becomes [`Error::Command`] carrying the command's stderr.
pub fn run_checked<I, S>(program: impl AsRef<OsStr>, args: I, timeout: Duration) -> Result<Output>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut command = Command::new(program);
    command.args(args);
    let output = run_command(&mut command, timeout)?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(Error::Command {
            command: describe(&command),
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        })
    }
}

/// Runs an `ip` command (iproute2) and fails on a non-zero exit.
pub fn ip<I, S>(args: I) -> Result<Output>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run_checked("ip", args, SETUP_TIMEOUT)
}

/// Runs an already configured command with a deadline.
pub fn run_command(command: &mut Command, timeout: Duration) -> Result<Output> {
    let text = describe(command);
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::io(format!("cannot start `{text}`"), e))?;

    // The pipes are drained on their own threads: a chatty child would otherwise block on a
    // full pipe while we wait for it to exit, and look like a timeout.
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());

    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(1);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                // The child is not reaped yet, so its pid cannot have been reused: kill is safe.
                let _ = child.kill();
                let _ = child.wait();
                return Err(Error::CommandTimeout { command: text, timeout });
            }
            Ok(None) => {
                thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(20));
            }
            Err(e) => return Err(Error::io(format!("cannot wait for `{text}`"), e)),
        }
    };
    // A grandchild that inherited the pipes (a daemon started by a shell) keeps them open after
    // the child exits, so collecting the output is bounded by the same deadline.
    let collect = |pipe: mpsc::Receiver<Vec<u8>>| {
        let left = deadline.saturating_duration_since(Instant::now());
        pipe.recv_timeout(left.max(Duration::from_millis(100))).unwrap_or_default()
    };
    Ok(Output { status, stdout: collect(stdout), stderr: collect(stderr) })
}

/// The command line as a person would type it, for error messages.
pub fn describe(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|part| part.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> mpsc::Receiver<Vec<u8>> {
    let (sender, receiver) = mpsc::channel();
    thread::spawn(move || {
        let mut buffer = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut buffer);
        }
        let _ = sender.send(buffer);
    });
    receiver
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_command_reports_its_stderr() {
        let err = run_checked("sh", ["-c", "echo boom >&2; exit 3"], SETUP_TIMEOUT).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("boom") && text.contains("sh -c"), "{text}");
    }

    #[test]
    fn a_command_past_its_deadline_is_killed() {
        let started = Instant::now();
        let err = run("sleep", ["5"], Duration::from_millis(100)).unwrap_err();
        assert!(matches!(err, Error::CommandTimeout { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
