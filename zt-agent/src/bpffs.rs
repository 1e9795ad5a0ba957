//! Where zt's pins live: a directory on a BPF filesystem that outlives the agent, however
//! the agent was started.
//!
//! Pins are what keep enforcement running when the agent stops or is killed (fail-static),
//! and a pin lives exactly as long as the bpffs *instance* that holds it. Every `mount -t
//! bpf` creates a new instance, which lives while it is mounted in some mount namespace. So
//! the question is not only "is the directory on a bpffs" but "does that bpffs outlive this
//! process":
//!
//! - **The host's mount namespace** (systemd, a shell, `nsenter --net=...`): the directory
//!   is used as it is. When nothing is mounted at `/sys/fs/bpf` (some minimal systems) the
//!   agent mounts bpffs there itself, as other BPF agents do.
//! - **A private mount namespace** (`ip netns exec NS zt-agent ...`, which unshares the mount
//!   namespace and replaces `/sys`; systemd units with private mounts): a bpffs mounted there
//!   would vanish with the process and take every pin with it — the interfaces would be left
//!   unenforced after a crash. The agent therefore resolves the directory in the mount
//!   namespace of the outermost process it can see (PID 1, else its oldest ancestor — the
//!   shell that ran `ip netns exec`), mounts bpffs at `/sys/fs/bpf` *there* if needed, and
//!   reaches the directory through a file descriptor on its parent (`/proc/self/fd/N/zt`),
//!   which also keeps that bpffs instance reachable for as long as the agent runs.
//! - **A container** that was not given the host's bpffs (its own PID namespace, nothing
//!   at `/sys/fs/bpf`): no namespace that outlives the container is reachable, so a pinned
//!   agent refuses to start and says how to mount the host's bpffs; `--no-pin` runs anyway.

use std::{
    fmt,
    fs::{self, File},
    io,
    os::fd::{AsFd, AsRawFd, OwnedFd},
    path::{Path, PathBuf},
};

use rustix::{
    fs::{Mode, OFlags},
    mount::MountFlags,
    thread::{LinkNameSpaceType, UnshareFlags},
};

const BPF_FS_MAGIC: i64 = 0xcafe4a11;
const SYS_FS_BPF: &str = "/sys/fs/bpf";
/// Inode of the initial PID namespace (`PROC_PID_INIT_INO`, fixed since Linux 3.8): a
/// process in any other PID namespace runs in a container.
const INITIAL_PID_NS_INODE: u64 = 0xEFFF_FFFC;

/// What the pins must survive, which decides where bpffs may be mounted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lifetime {
    /// Pins must outlive the agent (pinned links: fail-static).
    OutliveAgent,
    /// Pins are removed when the agent exits (`--no-pin`); a private bpffs will do.
    AgentOnly,
    /// Only find existing pins (`zt-agent cleanup`); never mount anything.
    ExistingOnly,
}

/// Why the pin directory cannot be used; one sentence that names the fix.
#[derive(Debug, thiserror::Error)]
pub enum PinDirError {
    #[error("{dir} is not on a bpf filesystem; mount one (mount -t bpf bpf DIR) or use a directory under {SYS_FS_BPF}")]
    NotBpffs { dir: PathBuf },
    #[error(
        "{dir} is not on a bpf filesystem in the host's mount namespace (that of process {pid}), and a bpffs mounted in this process's private mount namespace would vanish with it; mount one there or use a directory under {SYS_FS_BPF}"
    )]
    NotBpffsInHost { dir: PathBuf, pid: u32 },
    #[error(
        "cannot pin under {dir}: nothing is mounted at {SYS_FS_BPF} in this container, and a bpffs mounted here would vanish with the container, leaving the interfaces unenforced; mount the host's {SYS_FS_BPF} into the container (hostPath with mountPropagation), or run with --no-pin"
    )]
    Container { dir: PathBuf },
    #[error("cannot mount bpffs at {SYS_FS_BPF}{place}: {source}")]
    Mount { place: String, source: io::Error },
    #[error("cannot create the pin directory {dir}: {source}")]
    Create { dir: String, source: io::Error },
}

/// The agent's pin directory, resolved: use [`PinDir::path`] for every pin operation and
/// its `Display` to name it to people.
#[derive(Debug)]
pub struct PinDir {
    /// The directory as the operator named it.
    shown: PathBuf,
    /// The path pin operations use: `shown`, or `/proc/self/fd/N/<name>` through a handle
    /// on its parent in another mount namespace.
    path: PathBuf,
    /// The process whose mount namespace holds the pins, when it is not this one's.
    host_pid: Option<u32>,
    /// The pin directory's parent in the host's mount namespace; open while the agent runs.
    _handle: Option<OwnedFd>,
}

impl PinDir {
    /// Resolves `dir` so that pins made there live as long as `lifetime` asks.
    pub fn open(dir: &Path, lifetime: Lifetime) -> Result<PinDir, PinDirError> {
        let own = mount_namespace("self");
        match host_namespace().filter(|host| Some(host.inode) != own) {
            Some(host) => PinDir::in_host(dir, host.pid, lifetime),
            None => PinDir::here(dir, lifetime),
        }
    }

    /// The directory as the operator named it (for commands such as `zt-agent cleanup`).
    pub fn shown(&self) -> &Path {
        &self.shown
    }

    /// The path to hand to pin operations (`bpf_obj_pin`, `bpf_obj_get`, unlink).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A directory in this process's own mount namespace.
    fn plain(dir: &Path) -> PinDir {
        PinDir { shown: dir.to_path_buf(), path: dir.to_path_buf(), host_pid: None, _handle: None }
    }

    /// This process is in the host's mount namespace, or cannot see any other.
    fn here(dir: &Path, lifetime: Lifetime) -> Result<PinDir, PinDirError> {
        if on_bpffs(dir) || lifetime == Lifetime::ExistingOnly {
            return Ok(PinDir::plain(dir));
        }
        if !dir.starts_with(SYS_FS_BPF) || !Path::new(SYS_FS_BPF).is_dir() {
            return Err(PinDirError::NotBpffs { dir: dir.into() });
        }
        if lifetime == Lifetime::OutliveAgent && !in_initial_pid_namespace() {
            return Err(PinDirError::Container { dir: dir.into() });
        }
        mount_bpffs().map_err(|source| PinDirError::Mount { place: String::new(), source })?;
        log::info!("mounted bpffs at {SYS_FS_BPF}");
        Ok(PinDir::plain(dir))
    }

    /// This process runs in a private mount namespace; process `pid` in the host's.
    fn in_host(dir: &Path, pid: u32, lifetime: Lifetime) -> Result<PinDir, PinDirError> {
        let host_dir = Path::new(&format!("/proc/{pid}/root")).join(dir.strip_prefix("/").unwrap_or(dir));
        // The same bpffs instance mounted in both namespaces (e.g. bind-mounted into a
        // container, or mounted before `ip netns exec` copied the mount table): plain path.
        if let (Some(here), Some(there)) = (bpffs_device(dir), bpffs_device(&host_dir))
            && here == there
        {
            return Ok(PinDir::plain(dir));
        }
        if !on_bpffs(&host_dir) {
            if lifetime == Lifetime::ExistingOnly {
                return Ok(PinDir::plain(dir));
            }
            if !dir.starts_with(SYS_FS_BPF) {
                return Err(PinDirError::NotBpffsInHost { dir: dir.into(), pid });
            }
            mount_bpffs_in_namespace_of(pid).map_err(|source| PinDirError::Mount {
                place: format!(" in the host's mount namespace (that of process {pid})"),
                source,
            })?;
            log::info!("mounted bpffs at {SYS_FS_BPF} in the host's mount namespace (that of process {pid})");
        }
        if lifetime != Lifetime::ExistingOnly {
            fs::create_dir_all(&host_dir)
                .map_err(|source| PinDirError::Create { dir: dir.display().to_string(), source })?;
        }
        // The handle is on the parent, so the directory itself can still be removed
        // through it (`zt-agent cleanup`, `--no-pin`).
        let (Some(parent), Some(name)) = (host_dir.parent(), dir.file_name()) else {
            return Err(PinDirError::NotBpffsInHost { dir: dir.into(), pid });
        };
        let handle = match rustix::fs::open(parent, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()) {
            Ok(fd) => fd,
            // Nothing to find (cleanup of a directory that does not exist).
            Err(rustix::io::Errno::NOENT) if lifetime == Lifetime::ExistingOnly => return Ok(PinDir::plain(dir)),
            Err(e) => return Err(PinDirError::Create { dir: dir.display().to_string(), source: e.into() }),
        };
        let path = Path::new(&format!("/proc/self/fd/{}", handle.as_raw_fd())).join(name);
        Ok(PinDir { shown: dir.to_path_buf(), path, host_pid: Some(pid), _handle: Some(handle) })
    }
}

impl fmt::Display for PinDir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.shown.display())?;
        if let Some(pid) = self.host_pid {
            write!(f, " (in the host's mount namespace, that of process {pid})")?;
        }
        Ok(())
    }
}

/// A process and the inode of its mount namespace.
#[derive(Clone, Copy, Debug)]
struct Namespace {
    pid: u32,
    inode: u64,
}

/// The inode of `/proc/<pid>/ns/mnt`, if this process may see it.
fn mount_namespace(pid: &str) -> Option<u64> {
    rustix::fs::stat(format!("/proc/{pid}/ns/mnt").as_str()).ok().map(|s| s.st_ino)
}

/// The parent of process `pid`, from `/proc/<pid>/stat` (the field after the command name,
/// which is in parentheses and may itself contain spaces and parentheses).
fn parent_of(pid: u32) -> Option<u32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(1)?.parse().ok()
}

/// The mount namespace that outlives this process: PID 1's when this process may see it,
/// else that of its oldest visible ancestor (e.g. the shell that ran `ip netns exec`).
fn host_namespace() -> Option<Namespace> {
    if let Some(inode) = mount_namespace("1") {
        return Some(Namespace { pid: 1, inode });
    }
    let mut oldest = None;
    let mut pid = parent_of(std::process::id())?;
    while pid > 1 {
        if let Some(inode) = mount_namespace(&pid.to_string()) {
            oldest = Some(Namespace { pid, inode });
        }
        pid = parent_of(pid)?;
    }
    oldest
}

fn in_initial_pid_namespace() -> bool {
    rustix::fs::stat("/proc/self/ns/pid").is_ok_and(|s| s.st_ino == INITIAL_PID_NS_INODE)
}

/// The deepest existing ancestor of `path` (itself included).
fn existing_ancestor(path: &Path) -> Option<&Path> {
    path.ancestors().find(|p| p.exists())
}

/// Whether `path` (or, if it does not exist yet, its deepest existing ancestor) is on a
/// bpffs.
fn on_bpffs(path: &Path) -> bool {
    bpffs_device(path).is_some()
}

/// The device of the bpffs instance holding `path` (or its deepest existing ancestor).
fn bpffs_device(path: &Path) -> Option<u64> {
    let probe = existing_ancestor(path)?;
    let fs = rustix::fs::statfs(probe).ok()?;
    (fs.f_type as i64 == BPF_FS_MAGIC).then(|| rustix::fs::stat(probe).ok().map(|s| s.st_dev))?
}

fn mount_bpffs() -> io::Result<()> {
    rustix::mount::mount("bpf", SYS_FS_BPF, "bpf", MountFlags::empty(), None).map_err(io::Error::from)
}

/// Mounts bpffs at `/sys/fs/bpf` in the mount namespace of process `pid`, unless one is
/// there already. A short-lived thread does it: `setns` into a mount namespace needs a
/// thread that does not share its filesystem context, so the thread unshares that first and
/// the rest of the agent stays where it is.
fn mount_bpffs_in_namespace_of(pid: u32) -> io::Result<()> {
    let namespace = File::open(format!("/proc/{pid}/ns/mnt"))?;
    std::thread::scope(|scope| {
        scope
            .spawn(|| -> io::Result<()> {
                // SAFETY: only the filesystem context (root, cwd, umask) is unshared; this
                // thread's file descriptors stay shared with the process.
                unsafe { rustix::thread::unshare_unsafe(UnshareFlags::FS) }?;
                rustix::thread::move_into_link_name_space(namespace.as_fd(), Some(LinkNameSpaceType::Mount))?;
                if !on_bpffs(Path::new(SYS_FS_BPF)) {
                    mount_bpffs()?;
                }
                Ok(())
            })
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the mounting thread panicked")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parent_is_read_from_proc_stat() {
        assert_eq!(parent_of(std::process::id()), Some(std::os::unix::process::parent_id()));
    }

    #[test]
    fn a_directory_that_is_not_on_bpffs_is_refused_with_the_fix() {
        let e = PinDir::open(&std::env::temp_dir().join("zt-not-bpffs"), Lifetime::OutliveAgent).unwrap_err();
        assert!(e.to_string().contains("is not on a bpf filesystem"), "{e}");
        assert!(e.to_string().contains(SYS_FS_BPF), "{e}");
    }
}
