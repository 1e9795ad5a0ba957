//! `cargo xtask setup`: installs what building the kernel programs needs, idempotently.
//!
//! 1. The nightly toolchain's rust-src (for `-Z build-std=core` on the BPF target).
//! 2. bpf-linker, built against the nightly's *own* LLVM library (the versions must match
//!    exactly, and no LLVM package is needed): a prefix directory with `libLLVM.so`
//!    symlinked to the nightly's library is handed to bpf-linker's build as LLVM_PREFIX.
//!    It is installed in `$CARGO_HOME/bin`, where zt-agent's build script finds it.
//! 3. make, nftables, iptables, iperf3, nmap, hping3, chromium and tesseract-ocr (apt, as root):
//!    make for the agent's allocator (jemalloc, built from source by its crate), the
//!    contenders and the bulk-TCP load of `cargo xtask bench`, the attackers of the detection
//!    and rate-limit tests, and the headless browser and OCR that look at `ztctl flows map`'s
//!    pictures in the map test.
//! 4. The `kubernetes-validate` Python package (pip): the Kubernetes schemas the manifests
//!    in `deploy/kubernetes/` are tested against.

use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, bail};

use crate::shell;

const BPF_LINKER_VERSION: &str = "0.13.0";
pub const NIGHTLY: &str = "nightly";

pub fn cargo_home() -> PathBuf {
    env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env::var_os("HOME").unwrap_or_default()).join(".cargo"))
}

pub fn run() -> anyhow::Result<()> {
    check_nightly()?;
    ensure_rust_src()?;
    ensure_bpf_linker()?;
    check_tools()?;
    ensure_kubernetes_validate();
    eprintln!("xtask setup: ready — `cargo build --release` builds the eBPF object and the binaries");
    Ok(())
}

fn nightly_sysroot() -> Option<PathBuf> {
    shell::output(Command::new("rustc").arg(format!("+{NIGHTLY}")).args(["--print", "sysroot"]))
        .map(|s| PathBuf::from(s.trim()))
}

fn check_nightly() -> anyhow::Result<()> {
    match shell::output(Command::new("rustc").arg(format!("+{NIGHTLY}")).arg("--version")) {
        Some(v) => {
            eprintln!("xtask setup: nightly toolchain present ({})", v.trim());
            Ok(())
        }
        None => bail!(
            "the `{NIGHTLY}` Rust toolchain is not installed; the kernel programs need it \
             (install it with `rustup toolchain install {NIGHTLY}`), then run setup again"
        ),
    }
}

fn ensure_rust_src() -> anyhow::Result<()> {
    let sysroot = nightly_sysroot().context("cannot ask the nightly rustc for its sysroot")?;
    if sysroot.join("lib/rustlib/src/rust/library/core").is_dir() {
        eprintln!("xtask setup: rust-src for {NIGHTLY} present");
        return Ok(());
    }
    eprintln!("xtask setup: installing rust-src for {NIGHTLY} (needed for -Z build-std=core)");
    shell::run(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", NIGHTLY]))
}

/// The nightly's LLVM shared library, e.g. `libLLVM.so.22.1-rust-1.97.0-nightly`.
fn nightly_llvm() -> anyhow::Result<(PathBuf, u32)> {
    let sysroot = nightly_sysroot().context("cannot ask the nightly rustc for its sysroot")?;
    let lib = sysroot.join("lib");
    let mut found = None;
    for entry in std::fs::read_dir(&lib).with_context(|| format!("cannot read {}", lib.display()))? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if let Some(rest) = name.strip_prefix("libLLVM.so.")
            && name.contains("-rust-")
        {
            let major: u32 = rest.split(['.', '-']).next().unwrap_or("").parse().unwrap_or(0);
            found = Some((lib.join(&name), major));
        }
    }
    found.filter(|(_, major)| *major > 0).with_context(|| {
        format!(
            "the nightly toolchain at {} ships no libLLVM.so.*-rust-* to build bpf-linker against",
            sysroot.display()
        )
    })
}

fn linker_works(linker: &Path) -> bool {
    shell::output(Command::new(linker).arg("--version")).is_some_and(|v| v.contains(BPF_LINKER_VERSION))
}

fn ensure_bpf_linker() -> anyhow::Result<()> {
    let home = cargo_home();
    let linker = home.join("bin/bpf-linker");
    if linker_works(&linker) {
        eprintln!("xtask setup: bpf-linker {BPF_LINKER_VERSION} present at {}", linker.display());
        return Ok(());
    }
    let (llvm, major) = nightly_llvm()?;
    let prefix = home.join("zt-llvm-prefix");
    let prefix_lib = prefix.join("lib");
    std::fs::create_dir_all(&prefix_lib).with_context(|| format!("cannot create {}", prefix_lib.display()))?;
    let soname = llvm.file_name().expect("library has a file name");
    for link in [prefix_lib.join("libLLVM.so"), prefix_lib.join(soname)] {
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&llvm, &link)
            .with_context(|| format!("cannot link {} to {}", link.display(), llvm.display()))?;
    }
    eprintln!(
        "xtask setup: building bpf-linker {BPF_LINKER_VERSION} against {} (LLVM {major}); this takes about a minute",
        llvm.display()
    );
    shell::run(
        Command::new("cargo")
            .args(["install", "bpf-linker", "--version", BPF_LINKER_VERSION, "--no-default-features"])
            .args(["--features", &format!("llvm-{major}")])
            .arg("--root")
            .arg(&home)
            .arg("--force")
            .env("LLVM_PREFIX", &prefix),
    )?;
    if !linker_works(&linker) {
        bail!("bpf-linker was installed at {} but does not run; see the build output above", linker.display());
    }
    eprintln!("xtask setup: bpf-linker installed at {}", linker.display());
    Ok(())
}

/// Tools the tests, the demo and the benchmarks use. `ip`/`tc` (iproute2) are part of the
/// base system and only reported; nftables, iptables and iperf3 are what `cargo xtask
/// bench` measures zt against, nmap and hping3 are the real attackers the detection and
/// rate-limit tests run, and chromium and tesseract render and read the maps of the map
/// test, so they are installed with apt when missing (as root).
fn check_tools() -> anyhow::Result<()> {
    let found = |tool: &str| {
        env::split_paths(&env::var_os("PATH").unwrap_or_default())
            .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
            .any(|d| d.join(tool).is_file())
    };
    for tool in ["ip", "tc"] {
        if !found(tool) {
            eprintln!("xtask setup: note: `{tool}` is not installed; tests that need it will fail");
        }
    }
    // (binary that proves the package is present, Debian package)
    let wanted = [
        ("make", "make"),
        ("nft", "nftables"),
        ("iptables-legacy", "iptables"),
        ("iperf3", "iperf3"),
        ("nmap", "nmap"),
        ("hping3", "hping3"),
        ("chromium", "chromium"),
        ("tesseract", "tesseract-ocr"),
    ];
    let missing: Vec<&str> = wanted.iter().filter(|(bin, _)| !found(bin)).map(|(_, pkg)| *pkg).collect();
    if missing.is_empty() {
        eprintln!("xtask setup: make, nftables, iptables, iperf3, nmap, hping3, chromium and tesseract-ocr present");
        return Ok(());
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 || !found("apt-get") {
        eprintln!(
            "xtask setup: note: {} not installed (needed by `cargo xtask bench` and the tests); install them with \
             `apt-get install -y {}` as root",
            missing.join(" and "),
            missing.join(" ")
        );
        return Ok(());
    }
    eprintln!("xtask setup: installing {} for the benchmarks and tests", missing.join(" and "));
    let installed = shell::run(Command::new("apt-get").arg("update")).and_then(|()| {
        shell::run(
            Command::new("apt-get").args(["install", "-y"]).args(&missing).env("DEBIAN_FRONTEND", "noninteractive"),
        )
    });
    // Building and the demo go on without them; the tests that need one say which.
    if let Err(e) = installed {
        eprintln!(
            "xtask setup: note: could not install {} ({e:#}); `cargo xtask bench` needs them: \
             `apt-get install -y {}`",
            missing.join(" and "),
            missing.join(" ")
        );
    }
    Ok(())
}

/// The validator of `tests/e2e/deploy.rs`; installed with pip when missing. A failure is
/// reported, not fatal: building needs none of it, and the test says what is missing.
fn ensure_kubernetes_validate() {
    const PACKAGE: &str = "kubernetes-validate";
    if shell::output(Command::new(PACKAGE).arg("--version")).is_some() {
        eprintln!("xtask setup: {PACKAGE} present");
        return;
    }
    eprintln!("xtask setup: installing {PACKAGE} (pip) for the manifest tests");
    let installed = shell::run(Command::new("python3").args(["-m", "pip", "install", "--quiet", PACKAGE]));
    if let Err(e) = installed {
        eprintln!("xtask setup: note: could not install {PACKAGE} ({e:#}); `python3 -m pip install {PACKAGE}`");
    }
}
