//! The bpffs directory that holds zt's pins.
//!
//! Pins only work on a bpf filesystem. The default directory lives under /sys/fs/bpf; when
//! nothing is mounted there (some minimal systems), the agent mounts bpffs itself, as
//! other BPF agents do. A directory elsewhere must already be on a bpffs mount.

use std::{ffi::CString, io, os::unix::ffi::OsStrExt, path::Path};

const BPF_FS_MAGIC: i64 = 0xcafe4a11;
const SYS_FS_BPF: &str = "/sys/fs/bpf";

fn is_bpffs(path: &Path) -> bool {
    let Ok(c) = CString::new(path.as_os_str().as_bytes()) else { return false };
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid path and out pointer.
    unsafe { libc::statfs(c.as_ptr(), &mut st) == 0 && st.f_type as i64 == BPF_FS_MAGIC }
}

/// The deepest existing ancestor of `path` (itself included).
fn existing_ancestor(path: &Path) -> Option<&Path> {
    path.ancestors().find(|p| p.exists())
}

/// Makes sure `dir` can hold pins, mounting bpffs at /sys/fs/bpf if needed.
pub fn ensure(dir: &Path) -> io::Result<()> {
    let probe = existing_ancestor(dir).unwrap_or(Path::new("/"));
    if is_bpffs(probe) {
        return Ok(());
    }
    if dir.starts_with(SYS_FS_BPF) && Path::new(SYS_FS_BPF).is_dir() {
        let src = CString::new("bpf").expect("static");
        let target = CString::new(SYS_FS_BPF).expect("static");
        // SAFETY: valid C strings; mounting bpffs is idempotent in effect.
        let rc = unsafe { libc::mount(src.as_ptr(), target.as_ptr(), src.as_ptr(), 0, std::ptr::null()) };
        if rc != 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(e.kind(), format!("cannot mount bpffs at {SYS_FS_BPF}: {e}")));
        }
        log::info!("mounted bpffs at {SYS_FS_BPF}");
        return Ok(());
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{} is not on a bpf filesystem; mount one (mount -t bpf bpf DIR) or use a directory under {SYS_FS_BPF}", dir.display()),
    ))
}
