//! A real terminal for tests of full-screen programs: a tmux session of a
//! given size on a private tmux server (its own socket, so the tests never
//! touch anyone's sessions, removed afterwards), driven with keys and read back as text. The
//! server is killed on drop, even when the test fails.

use std::{
    process::Command,
    time::{Duration, Instant},
};

/// One detached tmux session running a shell.
pub struct Tmux {
    socket: std::path::PathBuf,
}

impl Tmux {
    /// Starts a `width`x`height` session running `sh` (UTF-8 on, so box
    /// and block characters come through).
    pub fn start(name: &str, width: u16, height: u16) -> Self {
        let tmux = Self {
            socket: std::env::temp_dir()
                .join(format!("shadow-test-{name}-{}.tmux", std::process::id())),
        };
        let (w, h) = (width.to_string(), height.to_string());
        tmux.run(&[
            "new-session",
            "-d",
            "-s",
            "test",
            "-x",
            &w,
            "-y",
            &h,
            "env",
            "PS1=$ ",
            "sh",
        ]);
        tmux
    }

    /// Runs a tmux command on this server; panics with its stderr if it
    /// fails (a missing tmux says how to install it).
    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-u")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run tmux ({e}): install it (`cargo xtask setup` does)")
            });
        assert!(
            out.status.success(),
            "tmux {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Types `text` and presses Enter.
    pub fn type_line(&self, text: &str) {
        self.run(&["send-keys", "-t", "test", "-l", text]);
        self.run(&["send-keys", "-t", "test", "Enter"]);
    }

    /// Presses one key, in tmux's names (`q`, `Left`, `PageDown`, `C-c`).
    pub fn press(&self, key: &str) {
        self.run(&["send-keys", "-t", "test", key]);
    }

    /// The screen as text, one string per line.
    pub fn screen(&self) -> Vec<String> {
        self.run(&["capture-pane", "-p", "-t", "test"])
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Polls the screen until `check` accepts it; panics after `timeout`
    /// with `what` and the last screen.
    pub fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut(&[String]) -> bool,
    ) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let screen = self.screen();
            if check(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "{what} did not show within {timeout:?}; the screen:\n{}",
                screen.join("\n")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .arg("kill-server")
            .output();
        let _ = std::fs::remove_file(&self.socket);
    }
}
