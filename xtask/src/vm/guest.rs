//! One guest, booted for one command: QEMU under TCG (this host's
//! `/dev/kvm` cannot boot a stock kernel, DESIGN.md "Guests"), the host's
//! `/` shared read-only over 9p, a per-run job folder shared read-write for
//! the command and its exit status, the serial console as its output.

use std::{
    fs,
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use super::image::{self, Image};
use crate::stop;

/// Host variables a command keeps in the guest (the rest of the
/// environment is the guest's own).
const FORWARDED_ENV: &[&str] = &["PATH", "HOME", "RUST_LOG", "RUST_BACKTRACE"];
const FORWARDED_PREFIX: &str = "SHADOW_";
/// The size of the guest's scratch disk (`/tmp`).
const SCRATCH_BYTES: u64 = 16 << 30;

/// The guest's size and how long its command may take.
#[derive(Debug, Clone, clap::Args)]
pub struct GuestOpts {
    /// Guest memory, MiB (the overlay on the root lives in it too).
    #[arg(long = "vm-memory", default_value_t = Self::default().memory_mib, value_name = "MIB")]
    pub memory_mib: u32,
    /// Guest vCPUs (multi-threaded TCG: one host thread each).
    #[arg(long = "vm-cpus", default_value_t = Self::default().cpus, value_name = "N")]
    pub cpus: u32,
    /// The guest is stopped after this many seconds, whatever it is doing.
    #[arg(long = "vm-timeout", default_value_t = Self::default().timeout_s, value_name = "SECONDS")]
    pub timeout_s: u64,
}

impl Default for GuestOpts {
    /// Two vCPUs like the host; 2 GiB, room for the memory tests' working
    /// sets; 30 minutes, three times what the guest tier takes.
    fn default() -> Self {
        Self {
            memory_mib: 2048,
            cpus: 2,
            timeout_s: 1800,
        }
    }
}

/// Boots a guest, runs `argv` in `cwd` as root, hands each console line to
/// `on_line` and returns the command's exit status. The guest is always
/// stopped and its job folder removed, also on timeout and Ctrl-C.
pub fn run(
    image: &Image,
    opts: &GuestOpts,
    cwd: &Path,
    argv: &[String],
    on_line: &mut dyn FnMut(&str),
) -> anyhow::Result<i32> {
    let job = Job::create(image, cwd, argv)?;
    let result = boot(image, opts, &job, on_line);
    let status = job.status();
    job.remove();
    result?;
    status
}

/// The folder shared with one guest: stage 2, the command, its status.
struct Job {
    dir: PathBuf,
}

impl Job {
    fn create(image: &Image, cwd: &Path, argv: &[String]) -> anyhow::Result<Self> {
        let dir = image::dir().join(format!("job-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let job = Self { dir };
        let stage2 = job.stage2();
        fs::write(&stage2, include_str!("stage2.sh"))?;
        fs::set_permissions(&stage2, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
        fs::write(
            job.dir.join("modules"),
            image.modules.to_string_lossy().as_bytes(),
        )?;
        fs::write(job.dir.join("command.sh"), command_script(cwd, argv))?;
        fs::File::create(job.scratch())?.set_len(SCRATCH_BYTES)?;
        Ok(job)
    }

    fn stage2(&self) -> PathBuf {
        self.dir.join("stage2.sh")
    }

    /// The guest's `/tmp` disk (sparse: it takes what the guest writes).
    fn scratch(&self) -> PathBuf {
        self.dir.join("scratch.img")
    }

    fn status(&self) -> anyhow::Result<i32> {
        let path = self.dir.join("status");
        let text = fs::read_to_string(&path).context(
            "the guest stopped before its command finished (timeout, Ctrl-C or a kernel panic; see the console above)",
        )?;
        text.trim()
            .parse()
            .with_context(|| format!("unexpected exit status {text:?}"))
    }

    fn remove(self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// `cd CWD && exec ARGV`, with the forwarded variables, every word quoted.
fn command_script(cwd: &Path, argv: &[String]) -> String {
    let mut script = String::from("#!/bin/sh\n");
    for (key, value) in std::env::vars() {
        if FORWARDED_ENV.contains(&key.as_str()) || key.starts_with(FORWARDED_PREFIX) {
            script.push_str(&format!("export {key}={}\n", quote(&value)));
        }
    }
    script.push_str(&format!(
        "cd {} || exit 125\nexec",
        quote(&cwd.to_string_lossy())
    ));
    for arg in argv {
        script.push(' ');
        script.push_str(&quote(arg));
    }
    script.push('\n');
    script
}

/// A POSIX shell single-quoted word.
fn quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

fn boot(
    image: &Image,
    opts: &GuestOpts,
    job: &Job,
    on_line: &mut dyn FnMut(&str),
) -> anyhow::Result<()> {
    let stage2 = job.stage2();
    let stage2 = stage2.to_string_lossy();
    if stage2.contains(char::is_whitespace) {
        bail!("the workspace path {stage2:?} has a space: the kernel command line cannot carry it");
    }
    let mut qemu = Command::new("qemu-system-x86_64");
    qemu.args(["-accel", "tcg,thread=multi,tb-size=256"])
        .args(["-cpu", "max", "-machine", "q35,smm=off"])
        // qboot: a firmware that boots a kernel in milliseconds, silently.
        .args(["-bios", "/usr/share/qemu/qboot.rom"])
        .args(["-m", &opts.memory_mib.to_string()])
        .args(["-smp", &opts.cpus.to_string()])
        .args(["-display", "none", "-serial", "stdio", "-monitor", "none"])
        .args(["-nic", "none", "-no-reboot"])
        .arg("-kernel")
        .arg(&image.kernel)
        .arg("-initrd")
        .arg(&image.initramfs)
        .arg("-append")
        .arg(format!(
            "console=ttyS0 quiet loglevel=3 panic=-1 shadow.stage2={stage2}"
        ))
        .args([
            "-virtfs",
            "local,path=/,mount_tag=root,security_model=none,readonly=on,multidevs=remap",
        ])
        .arg("-virtfs")
        .arg(format!(
            "local,path={},mount_tag=job,security_model=none",
            job.dir.display()
        ))
        .arg("-drive")
        .arg(format!(
            "file={},if=virtio,format=raw,cache=unsafe",
            job.scratch().display()
        ))
        // A terminal on stdin would be put in raw mode and Ctrl-C would go
        // to the guest instead of stopping it.
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    let mut child = qemu
        .spawn()
        .context("could not start qemu-system-x86_64 (Debian package qemu-system-x86)")?;
    let lines = console(&mut child)?;
    let deadline = Instant::now() + Duration::from_secs(opts.timeout_s);
    loop {
        match lines.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => on_line(line.trim_end_matches('\r')),
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if stop::requested() {
            let _ = child.kill();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "the guest ran longer than {} s and was stopped",
                opts.timeout_s
            );
        }
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("qemu-system-x86_64 failed ({status})");
    }
    Ok(())
}

/// The guest's console, line by line, from a reader thread (so the caller
/// can watch the deadline while the guest is silent).
fn console(child: &mut Child) -> anyhow::Result<mpsc::Receiver<String>> {
    let stdout = child.stdout.take().context("qemu stdout")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    Ok(rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_quoted_for_the_guest_shell() {
        assert_eq!(quote("plain"), "'plain'");
        assert_eq!(quote("it's"), r"'it'\''s'");
        let script = command_script(Path::new("/w"), &["a b".into(), "--x=$y".into()]);
        assert!(script.ends_with("cd '/w' || exit 125\nexec 'a b' '--x=$y'\n"));
    }
}
