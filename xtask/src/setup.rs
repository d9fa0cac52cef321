//! `cargo xtask setup`: installs what is missing, idempotently.
//!
//! The BPF crate needs a nightly with `rust-src` (`-Z build-std=core` for
//! `bpfel-unknown-none`) and bpf-linker. bpf-linker has no prebuilt binary
//! reachable here, so it is built from crates.io against the nightly's own
//! `libLLVM`: a small prefix folder links that library under the names the
//! build looks for (DESIGN.md, "Environment facts").

use std::{fs, os::unix::fs::PermissionsExt as _, path::PathBuf, process::Command};

use anyhow::{Context as _, bail};

use crate::{
    cmd::{self, cargo},
    vm,
};

/// The dated nightly that builds the BPF object (rustc 1.97, LLVM 22).
pub const NIGHTLY: &str = "nightly-2026-05-20";
const BPF_LINKER_VERSION: &str = "0.13.0";
/// Debian packages: losetup and setpriv (util-linux) for the block tests
/// and the pgbench benchmark, perf for the overhead benchmark, tmux for the
/// `top` test (a real terminal), PostgreSQL 15 with pgbench for `bench e2e
/// --scenario pgbench` (it runs a private cluster; the package's own
/// cluster is not used); QEMU, busybox-static, kmod and cpio for the guests
/// of `cargo xtask vm` (docs/guests.md).
const DEBIAN_PACKAGES: &[(&str, &str)] = &[
    ("losetup", "util-linux"),
    ("setpriv", "util-linux"),
    ("perf", "linux-perf"),
    ("tmux", "tmux"),
    ("/usr/lib/postgresql/15/bin/postgres", "postgresql"),
    ("pgbench", "postgresql"),
    ("qemu-system-x86_64", "qemu-system-x86"),
    ("busybox", "busybox-static"),
    ("depmod", "kmod"),
    ("cpio", "cpio"),
];

pub fn run() -> anyhow::Result<()> {
    nightly()?;
    bpf_linker()?;
    debian_packages()?;
    // The guest kernel and initramfs: fetched and built once, then cached.
    vm::image::prepare()?;
    eprintln!("xtask: setup complete");
    Ok(())
}

fn nightly() -> anyhow::Result<()> {
    let installed = cmd::output(Command::new("rustup").args(["toolchain", "list"]))
        .context("rustup is needed to install the BPF toolchain")?;
    let has_src = installed.lines().any(|l| l.starts_with(NIGHTLY))
        && cmd::output(Command::new("rustup").args([
            "component",
            "list",
            "--installed",
            "--toolchain",
            NIGHTLY,
        ]))
        .is_some_and(|c| c.lines().any(|l| l.starts_with("rust-src")));
    if has_src {
        eprintln!("xtask: {NIGHTLY} with rust-src: present");
        return Ok(());
    }
    eprintln!("xtask: installing {NIGHTLY} with rust-src (for the BPF target)");
    cmd::run(Command::new("rustup").args([
        "toolchain",
        "install",
        NIGHTLY,
        "--profile",
        "minimal",
        "--component",
        "rust-src",
    ]))
}

/// Where bpf-linker is installed: the project's own tools folder, so it is
/// tied to the pinned nightly and never clashes with another install.
pub fn tools_dir() -> PathBuf {
    cmd::root().join("target").join("tools")
}

fn bpf_linker() -> anyhow::Result<()> {
    let bin = tools_dir().join("bin").join("bpf-linker");
    if cmd::output(Command::new(&bin).arg("--version")).is_some() {
        eprintln!("xtask: bpf-linker: present ({})", bin.display());
        return Ok(());
    }
    let (major, libllvm) = nightly_llvm()?;
    eprintln!(
        "xtask: building bpf-linker {BPF_LINKER_VERSION} against {NIGHTLY}'s LLVM {major} (about 2 minutes)"
    );
    let prefix = llvm_prefix(&libllvm)?;
    let path = format!(
        "{}:{}",
        prefix.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    cmd::run(
        cargo(None)
            .args([
                "install",
                "bpf-linker",
                "--locked",
                "--version",
                BPF_LINKER_VERSION,
            ])
            .args([
                "--no-default-features",
                "--features",
                &format!("llvm-{major}"),
            ])
            .arg("--root")
            .arg(tools_dir())
            .env("LLVM_PREFIX", &prefix)
            .env("PATH", path),
    )
}

/// The LLVM major of the nightly (from `rustc -vV`) and its `libLLVM` file.
fn nightly_llvm() -> anyhow::Result<(u32, PathBuf)> {
    let vv = cmd::output(Command::new("rustc").arg(format!("+{NIGHTLY}")).arg("-vV"))
        .with_context(|| format!("`rustc +{NIGHTLY} -vV` failed"))?;
    let version = vv
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .context("rustc -vV does not report an LLVM version")?;
    let major: u32 = version
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .with_context(|| format!("unexpected LLVM version {version:?}"))?;
    let sysroot = cmd::output(
        Command::new("rustc")
            .arg(format!("+{NIGHTLY}"))
            .args(["--print", "sysroot"]),
    )
    .context("rustc --print sysroot failed")?;
    let lib = PathBuf::from(sysroot.trim()).join("lib");
    let libllvm = fs::read_dir(&lib)
        .with_context(|| format!("reading {}", lib.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("libLLVM.so.{major}")))
        })
        .with_context(|| format!("no libLLVM.so.{major}* in {}", lib.display()))?;
    Ok((major, libllvm))
}

/// A folder that looks like an LLVM install to bpf-linker's build: `lib/`
/// links the nightly's libLLVM under its soname and as `libLLVM.so`; `bin/`
/// holds an `llvm-config` (the build only checks that it exists).
fn llvm_prefix(libllvm: &std::path::Path) -> anyhow::Result<PathBuf> {
    let prefix = tools_dir().join("llvm-prefix");
    let lib = prefix.join("lib");
    let bin = prefix.join("bin");
    fs::create_dir_all(&lib)?;
    fs::create_dir_all(&bin)?;
    let name = libllvm.file_name().context("libLLVM has no file name")?;
    for link in [lib.join(name), lib.join("libLLVM.so")] {
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink(libllvm, &link)
            .with_context(|| format!("linking {}", link.display()))?;
    }
    let config = bin.join("llvm-config");
    fs::write(
        &config,
        "#!/bin/sh\necho 'llvm-config stand-in for bpf-linker builds' >&2\nexit 1\n",
    )?;
    fs::set_permissions(&config, fs::Permissions::from_mode(0o755))?;
    Ok(prefix)
}

fn debian_packages() -> anyhow::Result<()> {
    let mut missing: Vec<&str> = DEBIAN_PACKAGES
        .iter()
        .filter(|(bin, _)| {
            cmd::output(Command::new("sh").args(["-c", &format!("command -v {bin}")])).is_none()
        })
        .map(|(_, pkg)| *pkg)
        .collect();
    missing.dedup();
    if missing.is_empty() {
        eprintln!("xtask: Debian packages: present");
        return Ok(());
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "missing Debian packages {missing:?}: run `cargo xtask setup` as root or `apt-get install {}`",
            missing.join(" ")
        );
    }
    eprintln!("xtask: installing Debian packages {missing:?}");
    cmd::run(Command::new("apt-get").arg("update").arg("-q"))?;
    cmd::run(
        Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}
