//! What a guest boots: Debian's 6.1 kernel and a small initramfs, fetched
//! and built once into `target/vm/` (DESIGN.md, "Guests").
//!
//! The kernel is the package that `linux-image-amd64` depends on, unpacked
//! with `dpkg-deb`; its package ships no `modules.dep`, so `depmod` makes
//! one. The initramfs is busybox-static, the modules that mount the host's
//! root over 9p (in the order `modprobe --show-depends` gives: busybox
//! `insmod` resolves no dependencies) and `init.sh`.

use std::{
    fs,
    io::Write as _,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, bail};

use crate::cmd;

/// The modules stage 1 needs to mount the root: virtio PCI, 9p, overlayfs.
/// Everything else is loaded in the guest with `modprobe` from the bound
/// module tree.
const ROOT_MODULES: &[&str] = &["virtio_pci", "9pnet_virtio", "9p", "overlay"];
const BUSYBOX: &str = "/bin/busybox";

/// A guest kernel and initramfs ready to boot.
pub struct Image {
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
    /// The unpacked `lib/modules`, bound over the guest's `/lib/modules`.
    pub modules: PathBuf,
    pub version: String,
}

/// Where everything guest-related is cached.
pub fn dir() -> PathBuf {
    cmd::root().join("target/vm")
}

/// The kernel (fetched if no kernel was unpacked yet) and the initramfs
/// (rebuilt when `init.sh` changed).
pub fn prepare() -> anyhow::Result<Image> {
    let kernel_dir = dir().join("kernel");
    let version = match unpacked_version(&kernel_dir) {
        Some(v) => v,
        None => fetch_kernel(&kernel_dir)?,
    };
    let image = Image {
        kernel: kernel_dir.join(format!("boot/vmlinuz-{version}")),
        initramfs: dir().join(format!("initramfs-{version}.cpio")),
        modules: kernel_dir.join("lib/modules"),
        version,
    };
    let init = include_str!("init.sh");
    let stamp = dir().join("initramfs.init");
    if !image.initramfs.exists() || fs::read_to_string(&stamp).ok().as_deref() != Some(init) {
        build_initramfs(&image, init)?;
        fs::write(&stamp, init)?;
    }
    Ok(image)
}

/// The version of a kernel already unpacked under `kernel_dir`, if any.
fn unpacked_version(kernel_dir: &Path) -> Option<String> {
    fs::read_dir(kernel_dir.join("boot"))
        .ok()?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .find_map(|n| n.strip_prefix("vmlinuz-").map(str::to_owned))
        .filter(|v| {
            kernel_dir
                .join("lib/modules")
                .join(v)
                .join("modules.dep")
                .exists()
        })
}

/// Downloads and unpacks the kernel package `linux-image-amd64` points to
/// today; returns its version (`6.1.0-57-amd64`).
fn fetch_kernel(kernel_dir: &Path) -> anyhow::Result<String> {
    let package = kernel_package()?;
    let version = package
        .strip_prefix("linux-image-")
        .with_context(|| format!("unexpected kernel package name {package:?}"))?
        .to_owned();
    let download = dir().join("download");
    let _ = fs::remove_dir_all(&download);
    fs::create_dir_all(&download)?;
    eprintln!("xtask: fetching the guest kernel {package} (about 70 MB)");
    let fetch = || {
        cmd::run_in(
            &download,
            Command::new("apt-get").args(["download", &package]),
        )
    };
    fetch().or_else(|_| {
        // A fresh machine may have no package lists yet.
        cmd::run(Command::new("apt-get").args(["update", "-q"]))?;
        fetch()
    })?;
    let deb = fs::read_dir(&download)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .context("apt-get download left no .deb")?;
    let _ = fs::remove_dir_all(kernel_dir);
    cmd::run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(kernel_dir))?;
    cmd::run(
        Command::new("depmod")
            .arg("-b")
            .arg(kernel_dir)
            .arg(&version),
    )?;
    fs::remove_dir_all(&download)?;
    Ok(version)
}

/// `linux-image-6.1.0-57-amd64`: the dependency of `linux-image-amd64`.
fn kernel_package() -> anyhow::Result<String> {
    let out = cmd::output(Command::new("apt-cache").args(["depends", "linux-image-amd64"]))
        .context("`apt-cache depends linux-image-amd64` failed: is this a Debian host?")?;
    out.lines()
        .find_map(|l| l.trim().strip_prefix("Depends: "))
        .map(str::to_owned)
        .context("linux-image-amd64 depends on no kernel package")
}

/// Writes the initramfs: busybox, the root modules in load order, `init`.
fn build_initramfs(image: &Image, init: &str) -> anyhow::Result<()> {
    let staging = dir().join("initramfs");
    let _ = fs::remove_dir_all(&staging);
    fs::create_dir_all(staging.join("bin"))?;
    fs::create_dir_all(staging.join("modules"))?;
    check_static(Path::new(BUSYBOX))?;
    fs::copy(BUSYBOX, staging.join("bin/busybox"))?;
    let mut order = String::new();
    for (i, module) in module_files(image)?.iter().enumerate() {
        let name = format!(
            "{i:02}-{}",
            module.file_name().context("module path")?.to_string_lossy()
        );
        fs::copy(module, staging.join("modules").join(&name))
            .with_context(|| format!("copying {}", module.display()))?;
        order.push_str(&name);
        order.push('\n');
    }
    fs::write(staging.join("modules/order"), order)?;
    let init_path = staging.join("init");
    fs::write(&init_path, init)?;
    fs::set_permissions(&init_path, fs::Permissions::from_mode(0o755))?;
    cpio(&staging, &image.initramfs)?;
    fs::remove_dir_all(&staging)?;
    eprintln!("xtask: guest initramfs at {}", image.initramfs.display());
    Ok(())
}

/// The `.ko` files of [`ROOT_MODULES`] and their dependencies, each once,
/// dependencies first.
fn module_files(image: &Image) -> anyhow::Result<Vec<PathBuf>> {
    let base = image
        .modules
        .parent()
        .and_then(Path::parent)
        .context("module tree")?;
    let mut files: Vec<PathBuf> = Vec::new();
    for module in ROOT_MODULES {
        let out = cmd::output(Command::new("modprobe").arg("-d").arg(base).args([
            "-S",
            &image.version,
            "--show-depends",
            module,
        ]))
        .with_context(|| format!("`modprobe --show-depends {module}` failed"))?;
        for line in out.lines() {
            let Some(path) = line.strip_prefix("insmod ") else {
                bail!("unexpected `modprobe --show-depends {module}` line {line:?}");
            };
            let path = PathBuf::from(path.trim());
            if !files.contains(&path) {
                files.push(path);
            }
        }
    }
    Ok(files)
}

/// A dynamically linked busybox cannot run before the root is mounted.
fn check_static(path: &Path) -> anyhow::Result<()> {
    let bytes = fs::read(path)
        .with_context(|| format!("{} is missing: install busybox-static", path.display()))?;
    if has_interpreter(&bytes)
        .with_context(|| format!("{} is not an ELF64 file", path.display()))?
    {
        bail!(
            "{} is dynamically linked: install busybox-static",
            path.display()
        );
    }
    Ok(())
}

/// Whether an ELF64 little-endian executable names a program interpreter
/// (a `PT_INTERP` program header): then it is dynamically linked.
fn has_interpreter(elf: &[u8]) -> Option<bool> {
    const PT_INTERP: u32 = 3;
    let u16_at = |at: usize| Some(u16::from_le_bytes(elf.get(at..at + 2)?.try_into().ok()?));
    let u32_at = |at: usize| Some(u32::from_le_bytes(elf.get(at..at + 4)?.try_into().ok()?));
    let u64_at = |at: usize| Some(u64::from_le_bytes(elf.get(at..at + 8)?.try_into().ok()?));
    if elf.get(..5)? != b"\x7fELF\x02" {
        return None;
    }
    let phoff = usize::try_from(u64_at(0x20)?).ok()?;
    let (entsize, count) = (usize::from(u16_at(0x36)?), usize::from(u16_at(0x38)?));
    (0..count)
        .map(|i| u32_at(phoff + i * entsize))
        .try_fold(false, |found, kind| Some(found || kind? == PT_INTERP))
}

/// `cpio -o -H newc` of everything under `from`, into `to`.
fn cpio(from: &Path, to: &Path) -> anyhow::Result<()> {
    let mut names = Vec::new();
    collect(from, from, &mut names)?;
    let out = fs::File::create(to).with_context(|| format!("creating {}", to.display()))?;
    let mut child = Command::new("cpio")
        .args(["-o", "-H", "newc", "--quiet"])
        .current_dir(from)
        .stdin(Stdio::piped())
        .stdout(out)
        .spawn()
        .context("could not start cpio (Debian package cpio)")?;
    child
        .stdin
        .take()
        .context("cpio stdin")?
        .write_all(names.join("\n").as_bytes())?;
    let status = child.wait()?;
    if !status.success() {
        bail!("cpio failed ({status})");
    }
    Ok(())
}

/// Every path under `dir`, relative to `base`, parents before children.
fn collect(base: &Path, dir: &Path, names: &mut Vec<String>) -> anyhow::Result<()> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        names.push(path.strip_prefix(base)?.to_string_lossy().into_owned());
        if path.is_dir() {
            collect(base, &path, names)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::has_interpreter;

    #[test]
    fn a_dynamic_executable_is_told_from_a_static_one() {
        let dynamic = std::fs::read("/bin/sh").expect("/bin/sh");
        assert_eq!(has_interpreter(&dynamic), Some(true));
        let mut fake_static = dynamic.clone();
        fake_static[0x38] = 0; // no program headers
        fake_static[0x39] = 0;
        assert_eq!(has_interpreter(&fake_static), Some(false));
        assert_eq!(has_interpreter(b"#!/bin/sh\n"), None);
    }
}
