//! A private BPF filesystem per test, for the agent's `--bpffs` pins.
//!
//! Pins are how enforcement survives an agent restart, so restart tests need a bpffs that
//! outlives the agent process. `/sys/fs/bpf` does not serve: processes started with
//! `ip netns exec` get a fresh `/sys` without it, and a bpffs the agent mounts itself in that
//! private mount namespace disappears with the process. A bpffs mounted by the harness in a
//! scratch directory is inherited by every process it starts, and each test's pins stay apart
//! from every other test's (and from a real agent's on the same machine).

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::error::{Error, Result};
use crate::scratch::Scratch;

/// `statfs` magic of a BPF filesystem.
pub const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// A bpffs mounted on a scratch directory; unmounted (pins released) and removed on drop.
#[derive(Debug)]
pub struct BpfFs {
    // Dropped after the unmount in `Drop::drop`, which removes the directory.
    dir: Scratch,
}

impl BpfFs {
    /// Mounts a new, empty BPF filesystem.
    pub fn mount() -> Result<BpfFs> {
        let dir = Scratch::new("bpffs")?;
        let target = c_path(dir.path())?;
        // SAFETY: NUL-terminated strings that live across the call; bpffs takes no data.
        let rc = unsafe {
            libc::mount(
                c"bpf".as_ptr(),
                target.as_ptr(),
                c"bpf".as_ptr(),
                0,
                std::ptr::null(),
            )
        };
        if rc != 0 {
            return Err(Error::io(
                format!("cannot mount a bpffs on {}", dir.path().display()),
                io::Error::last_os_error(),
            ));
        }
        Ok(BpfFs { dir })
    }

    /// Where it is mounted: the value for the agent's `--bpffs`.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for BpfFs {
    fn drop(&mut self) {
        let Ok(target) = c_path(self.dir.path()) else {
            return;
        };
        // MNT_DETACH: a process still holding a pinned object open must not make the unmount
        // (and with it the test's cleanup) fail.
        // SAFETY: a NUL-terminated path that lives across the call.
        if unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) } != 0 {
            eprintln!(
                "warning: could not unmount bpffs {}: {}",
                self.dir.path().display(),
                io::Error::last_os_error()
            );
        }
    }
}

/// Whether `path` is on a BPF filesystem.
pub fn is_bpffs(path: &Path) -> Result<bool> {
    let c = c_path(path)?;
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid path and a statfs buffer owned by this frame.
    if unsafe { libc::statfs(c.as_ptr(), &mut stat) } != 0 {
        return Err(Error::io(
            format!("cannot statfs {}", path.display()),
            io::Error::last_os_error(),
        ));
    }
    Ok(stat.f_type as i64 == BPF_FS_MAGIC)
}

fn c_path(path: &Path) -> Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| {
        Error::io(
            format!("path {} contains a NUL byte", path.display()),
            io::ErrorKind::InvalidInput.into(),
        )
    })
}
