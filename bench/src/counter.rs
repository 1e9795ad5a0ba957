//! A fast UDP receive counter for pass rates: one socket in the receiver namespace, drained
//! by `recvmmsg` on its own thread with a large buffer, so the counting itself is cheap and
//! identical for every contender.

use std::{
    net::{SocketAddr, UdpSocket},
    os::fd::AsRawFd,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use anyhow::Context;
use zt_tests::Netns;

const BATCH: usize = 64;
const RCVBUF: libc::c_int = 16 * 1024 * 1024;

pub struct UdpRateCounter {
    count: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl UdpRateCounter {
    pub fn start(ns: &Netns, addr: SocketAddr) -> anyhow::Result<UdpRateCounter> {
        let socket = ns.try_run_in(|| UdpSocket::bind(addr))?.with_context(|| format!("cannot bind UDP {addr}"))?;
        socket.set_read_timeout(Some(Duration::from_millis(50)))?;
        let size = RCVBUF;
        // SAFETY: a valid socket and a c_int option value of the size passed.
        let rc = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                (&raw const size).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        anyhow::ensure!(rc == 0, "cannot enlarge the counter's receive buffer: {}", std::io::Error::last_os_error());
        let count = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s) = (count.clone(), stop.clone());
        let thread =
            std::thread::Builder::new().name("udp rate counter".into()).spawn(move || drain(&socket, &c, &s))?;
        Ok(UdpRateCounter { count, stop, thread: Some(thread) })
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

impl Drop for UdpRateCounter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn drain(socket: &UdpSocket, count: &AtomicU64, stop: &AtomicBool) {
    let mut bufs = vec![[0u8; 256]; BATCH];
    let mut iovs: Vec<libc::iovec> =
        bufs.iter_mut().map(|b| libc::iovec { iov_base: b.as_mut_ptr().cast(), iov_len: b.len() }).collect();
    // SAFETY: mmsghdr is plain old data; zero is a valid (empty) value.
    let mut msgs: Vec<libc::mmsghdr> = (0..BATCH).map(|_| unsafe { std::mem::zeroed() }).collect();
    for (m, iov) in msgs.iter_mut().zip(iovs.iter_mut()) {
        m.msg_hdr.msg_iov = iov;
        m.msg_hdr.msg_iovlen = 1;
    }
    while !stop.load(Ordering::Relaxed) {
        // SAFETY: `msgs` points at BATCH headers whose iovecs point into `bufs`, all alive.
        let n = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                msgs.as_mut_ptr(),
                BATCH as u32,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if n > 0 {
            count.fetch_add(n as u64, Ordering::Relaxed);
        }
    }
}
