//! The terminal while `top` owns it: raw mode and the alternate screen,
//! given back on every way out (return, error, panic), and stderr held
//! aside so log lines do not scribble over the table.

use std::{
    fs::File,
    io::{BufRead as _, BufReader},
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    sync::{Arc, Mutex},
    thread::JoinHandle,
};

use anyhow::Context as _;
use ratatui::DefaultTerminal;

/// Log lines kept while the screen is ours (older ones are dropped).
const KEEP: usize = 200;

/// The terminal in raw mode on the alternate screen; restored on drop.
/// Ratatui's panic hook restores it too before the panic message prints.
pub(crate) struct Screen {
    pub(crate) terminal: DefaultTerminal,
}

impl Screen {
    pub(crate) fn enter() -> anyhow::Result<Self> {
        ensure_terminal()?;
        match ratatui::try_init() {
            Ok(terminal) => Ok(Self { terminal }),
            Err(e) => {
                // Raw mode may be on even though the rest failed.
                let _ = ratatui::crossterm::terminal::disable_raw_mode();
                Err(e).context("taking over the terminal")
            }
        }
    }
}

/// Refuses early, before any probe is attached, when there is no terminal
/// to draw on.
pub(crate) fn ensure_terminal() -> anyhow::Result<()> {
    use std::io::IsTerminal as _;
    anyhow::ensure!(
        std::io::stdout().is_terminal() && std::io::stdin().is_terminal(),
        "top draws on a terminal and reads keys from it, but stdin or stdout is not one \
         (for a pipe or a log, use `shadow-agent observe --format table` or `--format json`)"
    );
    Ok(())
}

impl Drop for Screen {
    fn drop(&mut self) {
        ratatui::restore();
    }
}

/// stderr redirected into a pipe; the lines are kept, the newest shown in
/// the title, and all written to the real stderr when this is dropped.
pub(crate) struct Captured {
    saved: OwnedFd,
    lines: Arc<Mutex<Vec<String>>>,
    reader: Option<JoinHandle<()>>,
}

impl Captured {
    pub(crate) fn start() -> anyhow::Result<Self> {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors pipe writes.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(std::io::Error::last_os_error()).context("creating a pipe for stderr");
        }
        // SAFETY: pipe2 succeeded, so both are open descriptors we own.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: fcntl/dup on fd 2 have no memory-safety preconditions.
        let saved = unsafe { libc::fcntl(libc::STDERR_FILENO, libc::F_DUPFD_CLOEXEC, 3) };
        if saved < 0 {
            return Err(std::io::Error::last_os_error()).context("saving stderr");
        }
        // SAFETY: `saved` is a fresh descriptor we own.
        let saved = unsafe { OwnedFd::from_raw_fd(saved) };
        // SAFETY: both descriptors are open; fd 2 now points at the pipe
        // (`write` closes on drop, the copy in fd 2 stays).
        if unsafe { libc::dup2(write.as_raw_fd(), libc::STDERR_FILENO) } < 0 {
            return Err(std::io::Error::last_os_error()).context("redirecting stderr");
        }
        drop(write);
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(File::from(read)).lines() {
                let Ok(line) = line else { break };
                let mut kept = sink.lock().unwrap_or_else(|p| p.into_inner());
                if kept.len() == KEEP {
                    kept.remove(0);
                }
                kept.push(line);
            }
        });
        Ok(Self {
            saved,
            lines,
            reader: Some(reader),
        })
    }

    /// The newest line written to stderr, if any.
    pub(crate) fn last(&self) -> Option<String> {
        let kept = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        kept.last().cloned()
    }
}

impl Drop for Captured {
    fn drop(&mut self) {
        // SAFETY: both descriptors are open; this closes the pipe's last
        // write end, so the reader sees the end and stops.
        unsafe { libc::dup2(self.saved.as_raw_fd(), libc::STDERR_FILENO) };
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        let kept = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        for line in kept.iter() {
            eprintln!("{line}");
        }
    }
}
