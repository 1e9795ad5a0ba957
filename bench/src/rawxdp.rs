//! Two-instruction XDP programs loaded with bpf(2) directly, for the end-to-end section:
//!
//! - `XDP_TX`, run by BPF_PROG_TEST_RUN in *live frames* mode on the sender's veth: the
//!   kernel turns XDP_TX into a redirect out of that device, so each run sends one frame to
//!   the peer namespace. That is a saturating, bounded generator that costs tens of
//!   nanoseconds a frame, so the receiver's filter — not the sender — limits the rate.
//! - `XDP_PASS`, attached (native mode, by a BPF link) to the receiver's veth for the
//!   contenders that have no XDP program of their own (no filter, nftables, iptables): a veth
//!   only accepts redirected frames when its receive NAPI runs, which an XDP program
//!   enables. Every contender thus receives through the same path.
//!
//! Frames only ever go from one test namespace's veth to its peer.

use std::{
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    sync::atomic::{AtomicBool, Ordering},
};

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_TEST_RUN: libc::c_long = 10;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_XDP: u32 = 37;
const BPF_F_TEST_XDP_LIVE_FRAMES: u32 = 1 << 1;
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;
const XDP_PASS: i32 = 2;
const XDP_TX: i32 = 3;
/// Frames per kernel batch in live-frames mode (the kernel's maximum is 256).
const BATCH: u32 = 64;

#[repr(C)]
#[derive(Default)]
struct ProgLoad {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
}

#[repr(C)]
#[derive(Default)]
struct TestRun {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    /// Explicit, so it is zero: the kernel rejects nonzero bytes past the fields it knows.
    _pad: u32,
}

#[repr(C)]
#[derive(Default)]
struct LinkCreate {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
}

/// `struct xdp_md` as BPF_PROG_TEST_RUN takes it for context input.
#[repr(C)]
#[derive(Default)]
struct XdpMd {
    data: u32,
    data_end: u32,
    data_meta: u32,
    ingress_ifindex: u32,
    rx_queue_index: u32,
    egress_ifindex: u32,
}

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<i32> {
    // SAFETY: `attr` is a live, initialised bpf_attr prefix of the size passed.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut T, size_of::<T>() as u32) };
    if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(rc as i32) }
}

/// A loaded program that returns `action` for every packet.
pub struct XdpProgram {
    fd: OwnedFd,
}

impl XdpProgram {
    pub fn tx() -> io::Result<XdpProgram> {
        XdpProgram::returning(XDP_TX, b"zt_bench_tx")
    }

    pub fn pass() -> io::Result<XdpProgram> {
        XdpProgram::returning(XDP_PASS, b"zt_bench_pass")
    }

    fn returning(action: i32, name: &[u8]) -> io::Result<XdpProgram> {
        // r0 = action; exit
        let insns: [u64; 2] = [0xb7 | (u64::from(action as u32) << 32), 0x95];
        let license = c"GPL";
        let mut prog_name = [0u8; 16];
        prog_name[..name.len()].copy_from_slice(name);
        let mut attr = ProgLoad {
            prog_type: BPF_PROG_TYPE_XDP,
            insn_cnt: insns.len() as u32,
            insns: insns.as_ptr() as u64,
            license: license.as_ptr() as u64,
            prog_name,
            ..Default::default()
        };
        let fd = bpf(BPF_PROG_LOAD, &mut attr)?;
        // SAFETY: the kernel just returned this descriptor to us.
        Ok(XdpProgram { fd: unsafe { OwnedFd::from_raw_fd(fd) } })
    }

    /// Attaches in native mode to `ifindex` of the calling thread's namespace; detached
    /// when the returned link is dropped.
    pub fn attach_native(&self, ifindex: u32) -> io::Result<OwnedFd> {
        let mut attr = LinkCreate {
            prog_fd: self.fd.as_raw_fd() as u32,
            target_ifindex: ifindex,
            attach_type: BPF_XDP,
            flags: XDP_FLAGS_DRV_MODE,
        };
        let fd = bpf(BPF_LINK_CREATE, &mut attr)?;
        // SAFETY: as above.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    /// Sends `frame` out of `ifindex` (of the calling thread's namespace) in calls of
    /// `per_call` frames until `stop` is set; returns the frames handed to the device.
    pub fn flood(&self, ifindex: u32, frame: &[u8], per_call: u32, stop: &AtomicBool) -> io::Result<u64> {
        let mut ctx = XdpMd { data_end: frame.len() as u32, ingress_ifindex: ifindex, ..Default::default() };
        let mut sent = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let mut attr = TestRun {
                prog_fd: self.fd.as_raw_fd() as u32,
                data_size_in: frame.len() as u32,
                data_in: frame.as_ptr() as u64,
                repeat: per_call,
                ctx_size_in: size_of::<XdpMd>() as u32,
                ctx_in: &raw mut ctx as u64,
                flags: BPF_F_TEST_XDP_LIVE_FRAMES,
                batch_size: BATCH,
                ..Default::default()
            };
            match bpf(BPF_PROG_TEST_RUN, &mut attr) {
                Ok(_) => sent += u64::from(per_call),
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(sent)
    }
}

/// The index of interface `name` in the calling thread's namespace.
pub fn ifindex(name: &str) -> io::Result<u32> {
    let c = std::ffi::CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: a NUL-terminated string that lives across the call.
    match unsafe { libc::if_nametoindex(c.as_ptr()) } {
        0 => Err(io::Error::last_os_error()),
        i => Ok(i),
    }
}
