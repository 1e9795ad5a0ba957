//! The agent's heap: jemalloc, and freed memory given back after large temporaries.
//!
//! Compiling a large policy peaks far above what the agent keeps (a 10k-rule push: ~60 MiB
//! of heap at its height, ~12 MiB live after), and so does the conntrack sweep's walk of a
//! full table; [`release`] hands the freed pages back after each compile and sweep.
//!
//! Why jemalloc rather than the C library's allocator: a compile is millions of small
//! allocations (label maps, strings, the closure's keys) made and freed in bursts, and the
//! C allocator spent a third of a cluster compile in its own bookkeeping (consolidating and
//! unlinking free chunks). Measured side by side on one 10,000-pod cluster event: see
//! docs/design.md, "The heap".

/// The allocator `zt-agent` installs (`#[global_allocator]` in its `main`).
pub type Heap = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read when it starts (its `malloc_conf`): one arena for every thread.
/// A compile's work is spread over short-lived threads (`zt_policy::parallel`); with an
/// arena per thread each kept its own share of the peak, and a cluster push peaked at 145
/// MiB instead of 115-118. Threads still allocate without contention from their own caches.
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static MALLOC_CONF: &u8 = &CONF.to_bytes_with_nul()[0];
const CONF: &std::ffi::CStr = c"narenas:1";

/// Gives the memory freed since the last call back to the system. Call when a large
/// temporary (a compile, a sweep) has been dropped.
pub fn release() {
    if !purge() {
        log::debug!("heap: jemalloc refused to purge its arenas");
    }
}

/// `arena.<MALLCTL_ARENAS_ALL>.purge`: every arena's unused dirty pages back to the kernel
/// now, instead of over jemalloc's decay time (seconds). True when jemalloc did it.
fn purge() -> bool {
    const PURGE_ALL: &[u8] = b"arena.4096.purge\0";
    // SAFETY: a NUL-terminated control name that neither reads nor writes a value.
    let rc = unsafe {
        tikv_jemalloc_sys::mallctl(
            PURGE_ALL.as_ptr().cast(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            0,
        )
    };
    rc == 0
}

/// The unit tests run on the agent's allocator too.
#[cfg(test)]
#[global_allocator]
static TEST_HEAP: Heap = Heap {};

#[cfg(test)]
mod tests {
    fn resident_kib() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    #[test]
    fn jemalloc_runs_with_one_arena() {
        let mut narenas: u32 = 0;
        let mut len = std::mem::size_of::<u32>();
        // SAFETY: a NUL-terminated control name read into a value of its type (unsigned).
        let rc = unsafe {
            tikv_jemalloc_sys::mallctl(
                c"opt.narenas".as_ptr(),
                (&raw mut narenas).cast(),
                &mut len,
                std::ptr::null_mut(),
                0,
            )
        };
        assert_eq!((rc, narenas), (0, 1), "jemalloc read MALLOC_CONF");
    }

    #[test]
    fn released_memory_leaves_the_resident_set_at_once() {
        const MIB: usize = 1 << 20;
        let before = resident_kib();
        // Many page-sized blocks, as a compile leaves them, touched so they are resident.
        let blocks: Vec<Vec<u8>> = (0..128 * MIB / 4096).map(|i| vec![i as u8 | 1; 4096]).collect();
        let filled = resident_kib();
        assert!(filled > before + 100 * 1024, "the blocks are resident: {before} -> {filled} KiB");
        drop(blocks);
        assert!(super::purge(), "jemalloc purges every arena");
        let after = resident_kib();
        // Other tests of this binary allocate meanwhile; what is held back is far less
        // than the 128 MiB freed (jemalloc alone would keep them for its decay time).
        assert!(after < filled - 96 * 1024, "freed memory is returned: {filled} -> {after} KiB");
    }
}
