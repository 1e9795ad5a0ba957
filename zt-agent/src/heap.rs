//! The agent's heap: one arena for every thread, and freed memory given back.
//!
//! Compiling a large policy peaks far above what the agent keeps (a 10k-rule push: ~60 MiB
//! of heap at its height, ~12 MiB live after), and so does the conntrack sweep's walk of a
//! full table. The C allocator keeps freed heap resident unless asked, and gives each
//! thread that allocates its own arena — a compile on one blocking thread, the next on
//! another, each leaving a heap as large as its peak and too fragmented to return. So the
//! agent uses one arena (its threads seldom allocate at once: no measurable contention) and
//! hands freed pages back after each compile and sweep. Measured after six pushes of a
//! 10k-rule policy over 1,000 peer identities: 100 MiB resident before, 34 MiB after; of
//! 10k rules over 10,000 CIDR peers, with a full conntrack table: 359 MiB before, 66 MiB.

/// One heap for every thread. Call first thing in `main`, before other threads exist.
pub fn limit_arenas() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only changes the allocator's tuning.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// Gives the memory freed since the last call back to the system. Call when a large
/// temporary (a compile, a sweep) has been dropped; takes about a millisecond.
pub fn release() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only returns free heap pages to the kernel; it does not touch
    // memory in use.
    unsafe {
        libc::malloc_trim(0);
    }
}
