//! Building the BPF object and the release binaries that embed it.

use std::{path::PathBuf, process::Command};

use crate::{
    cmd::{self, cargo},
    setup,
};

/// Where `build-ebpf` leaves the object; the agent's build script embeds it.
pub fn ebpf_object() -> PathBuf {
    cmd::root().join("target/ebpf/bpfel-unknown-none/release/shadow-ebpf")
}

/// `cargo xtask build-ebpf`: the BPF object, with the pinned nightly and
/// bpf-linker (installed first if missing).
pub fn ebpf() -> anyhow::Result<()> {
    setup::run()?;
    let path = format!(
        "{}:{}",
        setup::tools_dir().join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    // BTF in the object gives readable verifier logs; the cfg tells
    // aya-ebpf which architecture's pt_regs to use.
    let flags = [
        "--cfg=bpf_target_arch=\"x86_64\"",
        "-Cdebuginfo=2",
        "-Clink-arg=--btf",
    ]
    .join("\x1f");
    cmd::run(
        cargo(Some(setup::NIGHTLY))
            .args([
                "build",
                "--release",
                "-p",
                "agent-ebpf",
                "--bin",
                "shadow-ebpf",
            ])
            .args(["--features", "ebpf", "--target", "bpfel-unknown-none"])
            .args(["-Z", "build-std=core", "--target-dir", "target/ebpf"])
            .env("CARGO_ENCODED_RUSTFLAGS", flags)
            .env("PATH", path),
    )?;
    eprintln!("xtask: BPF object at {}", ebpf_object().display());
    Ok(())
}

/// `cargo xtask build`: the BPF object, then release binaries embedding it.
pub fn all() -> anyhow::Result<()> {
    ebpf()?;
    cmd::run(cargo(None).args([
        "build",
        "--release",
        "-p",
        "shadow-agent",
        "-p",
        "shadow-orchestrator",
    ]))
}

/// Path of a release binary built by [`all`].
pub fn binary(name: &str) -> PathBuf {
    cmd::root().join("target/release").join(name)
}

/// `cargo release build` of the given packages/binaries.
pub fn cargo_release(args: &[&str]) -> Command {
    let mut cmd = cargo(None);
    cmd.args(["build", "--release"]).args(args);
    cmd
}
