//! Network namespaces as guards: every end-to-end test builds its networks inside namespaces
//! it owns, so the machine's own interfaces, routes and firewall are never touched, and
//! [`Netns`]'s `Drop` removes each namespace (and the veth links inside it) even when the test
//! panics.
//!
//! Code runs inside a namespace in two ways: external programs through `ip netns exec`
//! ([`Netns::exec`]), and Rust closures on a fresh thread that `setns(2)`s into it
//! ([`Netns::run_in`]). The calling thread never changes namespace, so a test thread cannot
//! accidentally send traffic from the host's namespace.

use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Mutex, Once};
use std::thread;
use std::time::Duration;
use std::{fs, io};

use crate::command::{self, SETUP_TIMEOUT};
use crate::error::{Error, Result};
use crate::names;

/// Where `ip netns` keeps the bind mounts that name namespaces.
pub const NETNS_DIR: &str = "/run/netns";

/// Default deadline of [`Netns::exec`].
pub const EXEC_TIMEOUT: Duration = Duration::from_secs(60);

/// `ip netns add` bind-mounts `/run/netns` onto itself the first time it runs; two first calls
/// racing each other stack two mounts and hide namespaces. Creating and deleting namespaces
/// one at a time within the process avoids that, at a cost of milliseconds.
static NETNS_LOCK: Mutex<()> = Mutex::new(());

/// A named network namespace owned by the test; deleted on drop.
///
/// A new namespace has only `lo`, which [`Netns::new`] brings up, so `127.0.0.1` and `::1`
/// work inside it.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates the namespace `zt-<pid>-<seq>-<label>` and brings up its loopback.
    pub fn new(label: &str) -> Result<Netns> {
        sweep_stale_once();
        let name = names::netns_name(label);
        {
            let _serial = NETNS_LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            command::ip(["netns", "add", &name])?;
        }
        // From here on the guard exists, so a failure below still deletes the namespace.
        let netns = Netns { name };
        netns.ip(["link", "set", "lo", "up"])?;
        Ok(netns)
    }

    /// The namespace's name, as `ip netns list` shows it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The bind mount naming the namespace, `/run/netns/<name>`.
    pub fn path(&self) -> PathBuf {
        Path::new(NETNS_DIR).join(&self.name)
    }

    /// Runs `ip -n <name> args...` and fails if it exits non-zero.
    pub fn ip<I, S>(&self, args: I) -> Result<Output>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut all: Vec<std::ffi::OsString> = vec!["-n".into(), self.name.clone().into()];
        all.extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        command::ip(all)
    }

    /// Runs `program args...` inside the namespace (`ip netns exec`), waiting at most
    /// [`EXEC_TIMEOUT`]. The exit status is the caller's to judge.
    pub fn exec<I, S>(&self, program: impl AsRef<OsStr>, args: I) -> Result<Output>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.exec_timeout(program, args, EXEC_TIMEOUT)
    }

    /// [`Netns::exec`] with an explicit deadline, after which the program is killed.
    pub fn exec_timeout<I, S>(&self, program: impl AsRef<OsStr>, args: I, timeout: Duration) -> Result<Output>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut all: Vec<std::ffi::OsString> = vec!["netns".into(), "exec".into(), self.name.clone().into()];
        all.push(program.as_ref().to_owned());
        all.extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        command::run("ip", all, timeout)
    }

    /// Runs `f` inside the namespace and returns its result; panics (with the reason) if the
    /// namespace cannot be entered, and re-raises a panic of `f` on the calling thread.
    ///
    /// Sockets created by `f` stay in this namespace for their whole life, wherever they are
    /// used afterwards: servers bind here and then serve from an ordinary thread.
    pub fn run_in<F, R>(&self, f: F) -> R
    where
        F: FnOnce() -> R + Send,
        R: Send,
    {
        match self.try_run_in(f) {
            Ok(value) => value,
            Err(err) => panic!("{err}"),
        }
    }

    /// [`Netns::run_in`] that reports a failure to enter the namespace as an error.
    pub fn try_run_in<F, R>(&self, f: F) -> Result<R>
    where
        F: FnOnce() -> R + Send,
        R: Send,
    {
        let handle = File::open(self.path())
            .map_err(|e| Error::io(format!("cannot open network namespace {}", self.path().display()), e))?;
        let entered = thread::scope(|scope| {
            // A fresh thread, because setns(2) changes the namespace of the calling thread for
            // the rest of its life; the test's own thread must stay where it is.
            let worker = thread::Builder::new()
                .name(format!("netns {}", self.name))
                .spawn_scoped(scope, move || {
                    // SAFETY: `handle` is an open namespace file for the duration of the call,
                    // and CLONE_NEWNET only asks the kernel to check it is a network namespace.
                    let rc = unsafe { libc::setns(handle.as_raw_fd(), libc::CLONE_NEWNET) };
                    if rc != 0 {
                        return Err(io::Error::last_os_error());
                    }
                    drop(handle);
                    Ok(f())
                })
                .map_err(|e| Error::io("cannot spawn a namespace thread", e))?;
            match worker.join() {
                Ok(result) => Ok(result),
                // Surface the closure's own panic message and location to the test.
                Err(payload) => std::panic::resume_unwind(payload),
            }
        })?;
        entered.map_err(|e| Error::io(format!("cannot enter network namespace {}", self.name), e))
    }

    /// Sets the sysctl `key` (dotted, e.g. `net.ipv4.ip_forward`) inside this namespace only.
    pub fn set_sysctl(&self, key: &str, value: &str) -> Result<()> {
        let path = sysctl_path(key);
        // /proc/sys/net resolves against the namespace of the thread that opens it.
        self.try_run_in(|| fs::write(&path, value))?
            .map_err(|e| Error::io(format!("cannot set {key}={value} in {}", self.name), e))
    }

    /// Reads the sysctl `key` as this namespace sees it.
    pub fn sysctl(&self, key: &str) -> Result<String> {
        let path = sysctl_path(key);
        self.try_run_in(|| fs::read_to_string(&path))?
            .map(|value| value.trim().to_string())
            .map_err(|e| Error::io(format!("cannot read {key} in {}", self.name), e))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _serial = NETNS_LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // Deleting the namespace also deletes every veth end inside it, and with it the peer.
        if let Err(err) = command::ip(["netns", "delete", &self.name]) {
            // Drop cannot fail; say so loudly rather than hide a leaked namespace.
            eprintln!("warning: could not delete network namespace {}: {err}", self.name);
        }
    }
}

/// `/proc/sys/net/ipv4/ip_forward` for `net.ipv4.ip_forward`.
fn sysctl_path(key: &str) -> PathBuf {
    Path::new("/proc/sys").join(key.replace('.', "/"))
}

/// The namespaces `ip netns list` shows, by name.
pub fn list() -> Result<Vec<String>> {
    let output = command::run_checked("ip", ["netns", "list"], SETUP_TIMEOUT)?;
    // Lines look like `name (id: 3)` or just `name`.
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_string)
        .collect())
}

/// Whether a namespace of that name exists.
pub fn exists(name: &str) -> Result<bool> {
    Ok(list()?.iter().any(|listed| listed == name))
}

/// Deletes harness namespaces whose creating process is gone — leftovers of a test process that
/// was killed (SIGKILL, timeout) before its guards ran. Namespaces of live processes, and
/// namespaces not named by the harness, are never touched. Returns how many were deleted.
pub fn sweep_stale() -> usize {
    let Ok(entries) = fs::read_dir(NETNS_DIR) else {
        return 0;
    };
    let mut deleted = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = names::netns_owner_pid(&name) else {
            continue;
        };
        if process_alive(pid) {
            continue;
        }
        let _serial = NETNS_LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if command::ip(["netns", "delete", &name]).is_ok() {
            deleted += 1;
        }
    }
    deleted
}

fn sweep_stale_once() {
    static SWEEP: Once = Once::new();
    SWEEP.call_once(|| {
        let deleted = sweep_stale();
        if deleted > 0 {
            eprintln!("note: deleted {deleted} network namespaces left by dead test processes");
        }
    });
}

fn process_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 performs only the existence and permission check.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}
