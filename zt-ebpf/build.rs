//! Linker settings for the kernel programs.
//!
//! bpf-linker asks LLVM by default to expand only `memcpy` itself and in order (a pattern
//! some offloading JITs match), which leaves every other small `memset` or `memmove` a
//! call into a byte-by-byte loop: zeroing part of a flow key or the packet scratch cost a
//! call and a dozen iterations per packet. Without that setting LLVM expands them into a
//! few stores, as the BPF backend does for C.

fn main() {
    println!("cargo:rustc-link-arg=--disable-expand-memcpy-in-order");
}
