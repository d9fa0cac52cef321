//! `cargo xtask dist`: a tarball with what a host needs (docs/install.md).

use std::{fs, path::Path, process::Command};

use anyhow::Context as _;

use crate::{
    build::{self, binary},
    cmd,
};

/// Builds everything and packs binaries, units, the example configuration
/// and the docs into `target/dist/shadow-<version>-<arch>.tar.gz`.
pub fn run() -> anyhow::Result<()> {
    build::all()?;
    let root = cmd::root();
    let name = format!(
        "shadow-{}-{}",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::ARCH
    );
    let dist = root.join("target/dist");
    let dir = dist.join(&name);
    let _ = fs::remove_dir_all(&dir);
    for sub in ["bin", "systemd", "etc", "docs"] {
        fs::create_dir_all(dir.join(sub)).with_context(|| format!("creating {sub}/"))?;
    }
    for bin in ["shadow-agent", "shadow-orchestrator"] {
        copy(&binary(bin), &dir.join("bin").join(bin))?;
    }
    for unit in ["shadow-agent.service", "shadow-orchestrator.service"] {
        copy(
            &root.join("dist").join(unit),
            &dir.join("systemd").join(unit),
        )?;
    }
    copy(&root.join("dist/shadow.toml"), &dir.join("etc/shadow.toml"))?;
    copy(&root.join("README.md"), &dir.join("README.md"))?;
    for doc in fs::read_dir(root.join("docs")).context("reading docs/")? {
        let path = doc?.path();
        if path.extension().is_some_and(|e| e == "md") {
            copy(
                &path,
                &dir.join("docs").join(path.file_name().context("name")?),
            )?;
        }
    }
    let tarball = dist.join(format!("{name}.tar.gz"));
    cmd::run(
        Command::new("tar")
            .arg("czf")
            .arg(&tarball)
            .arg("-C")
            .arg(&dist)
            .arg(&name),
    )?;
    println!("{}", tarball.display());
    Ok(())
}

fn copy(from: &Path, to: &Path) -> anyhow::Result<()> {
    fs::copy(from, to)
        .map(drop)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))
}
