//! Builds the kernel programs (zt-ebpf) with the nightly toolchain for the BPF target and
//! places the object in OUT_DIR, where `datapath` embeds it.
//!
//! `cargo xtask setup` installs what this needs: the nightly's rust-src and a bpf-linker
//! built against the nightly's own LLVM, in `$CARGO_HOME/bin`.

use std::{env, path::PathBuf};

fn main() -> anyhow::Result<()> {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let root = manifest.parent().expect("zt-agent lives in the workspace").to_path_buf();
    let ebpf = root.join("zt-ebpf");
    let common = root.join("zt-common");
    println!("cargo:rerun-if-changed={}", common.display());

    // bpf-linker lives in $CARGO_HOME/bin, which is not always on PATH (e.g. under sudo).
    let cargo_home = env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    if let Some(bin) = cargo_home.map(|h| h.join("bin")) {
        let mut paths: Vec<PathBuf> = env::split_paths(&env::var_os("PATH").unwrap_or_default()).collect();
        if !paths.contains(&bin) {
            paths.push(bin);
            // SAFETY: build scripts are single-threaded at this point.
            unsafe { env::set_var("PATH", env::join_paths(paths)?) };
        }
    }
    let have_linker =
        env::split_paths(&env::var_os("PATH").unwrap_or_default()).any(|p| p.join("bpf-linker").is_file());
    if !have_linker && env::var_os("AYA_BUILD_SKIP").is_none() {
        anyhow::bail!("bpf-linker is not installed; run `cargo xtask setup` once, then build again");
    }

    let ebpf_dir = ebpf.to_str().expect("workspace path is UTF-8");
    aya_build::build_ebpf(
        [aya_build::Package { name: "zt-ebpf", root_dir: ebpf_dir, ..Default::default() }],
        aya_build::Toolchain::default(),
    )
}
