//! BPF filesystems for the agent's `--bpffs` pins in tests.
//!
//! [`BpfFs`] mounts a private, empty bpffs per test in a scratch directory: it is inherited
//! by every process the test starts (also through `ip netns exec`), and each test's pins
//! stay apart from every other test's and from a real agent's on the same machine.
//! [`HostPinDir`] names a directory under the host's `/sys/fs/bpf` instead, for tests of
//! what operators do: nothing is mounted for the agent there, so it must find a bpffs that
//! outlives it by itself.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

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
        let rc = unsafe { libc::mount(c"bpf".as_ptr(), target.as_ptr(), c"bpf".as_ptr(), 0, std::ptr::null()) };
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
            eprintln!("warning: could not unmount bpffs {}: {}", self.dir.path().display(), io::Error::last_os_error());
        }
    }
}

/// Whether `path` is on a BPF filesystem.
pub fn is_bpffs(path: &Path) -> Result<bool> {
    let c = c_path(path)?;
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid path and a statfs buffer owned by this frame.
    if unsafe { libc::statfs(c.as_ptr(), &mut stat) } != 0 {
        return Err(Error::io(format!("cannot statfs {}", path.display()), io::Error::last_os_error()));
    }
    Ok(stat.f_type as i64 == BPF_FS_MAGIC)
}

fn c_path(path: &Path) -> Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| {
        Error::io(format!("path {} contains a NUL byte", path.display()), io::ErrorKind::InvalidInput.into())
    })
}

/// A pin directory under the host's `/sys/fs/bpf`, named for this test: what operators
/// use. Unlike [`BpfFs`], nothing is mounted for the test: the agent must find (or mount)
/// the host's bpffs itself, also from the private mount namespace `ip netns exec` gives
/// it. On drop every pin in it is unlinked — which detaches pinned links — and the
/// directory removed.
#[derive(Debug)]
pub struct HostPinDir {
    path: PathBuf,
}

impl HostPinDir {
    /// Names a directory that does not exist yet; the agent creates it.
    pub fn new(label: &str) -> HostPinDir {
        let name = format!("zt-tests-{}-{}-{label}", std::process::id(), crate::names::next_sequence());
        HostPinDir { path: Path::new("/sys/fs/bpf").join(name) }
    }

    /// The value for the agent's `--bpffs`.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for HostPinDir {
    fn drop(&mut self) {
        if self.path.exists()
            && let Err(e) = std::fs::remove_dir_all(&self.path)
        {
            eprintln!("warning: could not remove the pins under {}: {e}", self.path.display());
        }
    }
}

/// Creates a BPF hash map of `(key size, value size, max entries)` holding `entries` and
/// pins it at `path` (on a bpffs): a stand-in for a map an agent of another version left,
/// made with raw syscalls so it depends on nothing the agent does.
pub fn pin_hash_map(path: &Path, (key_size, value_size, max_entries): (u32, u32, u32), entries: &[(&[u8], &[u8])]) {
    #[repr(C)]
    struct MapCreate {
        map_type: u32,
        key_size: u32,
        value_size: u32,
        max_entries: u32,
        rest: [u8; 112],
    }
    const BPF_MAP_CREATE: libc::c_long = 0;
    const BPF_MAP_TYPE_HASH: u32 = 1;
    let create = MapCreate { map_type: BPF_MAP_TYPE_HASH, key_size, value_size, max_entries, rest: [0; 112] };
    let fd = bpf(BPF_MAP_CREATE, &create);
    for (key, value) in entries {
        assert_eq!((key.len(), value.len()), (key_size as usize, value_size as usize), "entry sizes");
        update(fd, key, value);
    }
    let c_path = c_path(path).expect("pin path");
    bpf(BPF_OBJ_PIN, &PathAttr { pathname: c_path.as_ptr() as u64, bpf_fd: fd, file_flags: 0, rest: [0; 112] });
    // SAFETY: closing the descriptor made above; the pin keeps the map alive.
    unsafe { libc::close(fd as i32) };
}

/// Writes `entries` (key bytes, value bytes) into the BPF map pinned at `path`, as a
/// program or another process would: for tests that need a map filled, e.g. a full
/// connection-tracking table.
pub fn fill_pinned_map<'a>(path: &Path, entries: impl IntoIterator<Item = (&'a [u8], &'a [u8])>) -> usize {
    let c_path = c_path(path).expect("pin path");
    let fd = bpf(BPF_OBJ_GET, &PathAttr { pathname: c_path.as_ptr() as u64, bpf_fd: 0, file_flags: 0, rest: [0; 112] });
    let mut written = 0;
    for (key, value) in entries {
        update(fd, key, value);
        written += 1;
    }
    // SAFETY: closing the descriptor BPF_OBJ_GET returned.
    unsafe { libc::close(fd as i32) };
    written
}

const BPF_OBJ_PIN: libc::c_long = 6;
const BPF_OBJ_GET: libc::c_long = 7;

/// The bpf_attr of BPF_OBJ_PIN and BPF_OBJ_GET, zero-padded to the size the kernel checks.
#[repr(C)]
struct PathAttr {
    pathname: u64,
    bpf_fd: u32,
    file_flags: u32,
    rest: [u8; 112],
}

/// `bpf(cmd, attr)`; panics with the error (these helpers serve tests).
fn bpf<T>(cmd: libc::c_long, attr: &T) -> u32 {
    // SAFETY: `attr` is a zero-padded bpf_attr variant for `cmd` whose pointers are valid
    // for the call.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *const T, std::mem::size_of::<T>()) };
    assert!(rc >= 0, "bpf({cmd}): {}", io::Error::last_os_error());
    rc as u32
}

/// BPF_MAP_UPDATE_ELEM of one entry; key and value must have the map's sizes.
fn update(fd: u32, key: &[u8], value: &[u8]) {
    #[repr(C)]
    struct Update {
        map_fd: u32,
        _pad: u32,
        key: u64,
        value: u64,
        flags: u64,
        rest: [u8; 96],
    }
    const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
    let attr =
        Update { map_fd: fd, _pad: 0, key: key.as_ptr() as u64, value: value.as_ptr() as u64, flags: 0, rest: [0; 96] };
    bpf(BPF_MAP_UPDATE_ELEM, &attr);
}
