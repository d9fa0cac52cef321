//! `shadow-agent top`: the agent's pipeline in a live terminal table, for a
//! person at the host (over SSH too): usage, forecast band, reservation and
//! hint trust per cgroup, sorted by any column, with the selected cgroup's
//! CPU history underneath.
//!
//! Layout:
//! - [`state`]: what is shown (entries, history, sort, selection) and how
//!   keys change it; no terminal.
//! - [`view`]: draws a state into a ratatui buffer (pure).
//! - [`screen`]: takes the terminal and gives it back, holds stderr aside.

mod screen;
mod state;
#[cfg(test)]
mod tests;
mod view;

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use ratatui::crossterm::event::{self, Event, KeyEventKind};

use shadow_common::config::{DurationAtLeast, Quantile};

use shadow_common::stop;

use crate::{
    hint,
    pipeline::{Pipeline, Settings},
};
use state::{Action, State};

/// Arguments of `shadow-agent top`.
#[derive(Debug, clap::Args)]
pub struct TopArgs {
    /// Length of one interval, at least 10ms (e.g. 500ms, 1s, 5s).
    #[arg(long, default_value = "1s")]
    pub interval: DurationAtLeast<10>,
    /// Only this cgroup (path relative to the v2 root) and its descendants.
    #[arg(long)]
    pub cgroup: Option<String>,
    /// Quantile of the forecast's upper band (UPPER%).
    #[arg(long, default_value = "0.95")]
    pub quantile: Quantile,
    /// Report to the orchestrator at this Unix socket path (or
    /// `tcp:HOST:PORT`), as `observe --orchestrator` does, and show the
    /// reservations it holds (RSV%). Use it instead of the agent service,
    /// never next to it: the orchestrator would hear this host twice.
    /// Without it, top only watches and runs fine beside the service.
    #[arg(long, value_name = "SOCKET")]
    pub orchestrator: Option<String>,
    /// Take applications' hints on the hint socket (TRUST). Off by
    /// default: the agent service normally holds the socket.
    #[arg(long)]
    pub hints: bool,
    /// The hint socket (with --hints).
    #[arg(long, value_name = "PATH", default_value = hint::DEFAULT_SOCKET)]
    pub hint_socket: PathBuf,
}

impl TopArgs {
    /// The pipeline these flags ask for: always forecasting.
    pub fn settings(&self) -> Settings {
        Settings {
            interval: self.interval.0,
            cgroup: self.cgroup.clone(),
            rescan_every: 10,
            forecast: true,
            quantile: self.quantile.0,
            orchestrator: self.orchestrator.clone(),
            key_file: None,
            key_name: None,
            hint_socket: self.hint_socket.clone(),
            hint_group: None,
            no_hints: !self.hints,
            metrics: None,
            metrics_cgroups: crate::metrics::DEFAULT_MAX_CGROUPS,
        }
    }
}

/// How often keys are looked at between ticks.
const KEY_POLL: Duration = Duration::from_millis(100);

/// Runs the screen until `q`, Esc, Ctrl-C, SIGTERM or SIGHUP.
pub fn run(args: &TopArgs) -> anyhow::Result<()> {
    screen::ensure_terminal()?;
    let mut pipeline = Pipeline::start(&args.settings())?;
    // Before the screen takes the terminal: left on it when top exits.
    for line in pipeline.started() {
        eprintln!("{line}");
    }
    stop::install_handlers();
    let about = about(args, &pipeline);
    // Declared before the screen so it is dropped after it: the held lines
    // are printed once the terminal is back.
    let captured = screen::Captured::start()?;
    let mut screen = screen::Screen::enter()?;
    let mut state = State::new(about.clone(), args.interval.0.as_secs_f64());
    let mut deadline = Instant::now() + args.interval.0;
    loop {
        let size = screen
            .terminal
            .size()
            .context("reading the terminal size")?;
        let page = view::page(size.into());
        screen
            .terminal
            .draw(|frame| view::render(&state, frame))
            .context("drawing")?;
        let wait = deadline
            .saturating_duration_since(Instant::now())
            .min(KEY_POLL);
        if event::poll(wait).context("reading keys")? {
            // Resizes need nothing more: the next draw uses the new size.
            if let Event::Key(key) = event::read().context("reading keys")?
                && key.kind != KeyEventKind::Release
                && state.key(key, page) == Action::Quit
            {
                break;
            }
        }
        // SIGHUP means the terminal went away (top reads no configuration
        // file to reload).
        if stop::requested() || stop::reload_requested() {
            break;
        }
        let now = Instant::now();
        if now >= deadline {
            // After a stall (a suspended terminal), restart the clock
            // rather than catching up with a burst of short ticks.
            deadline = if now > deadline + args.interval.0 {
                now + args.interval.0
            } else {
                deadline + args.interval.0
            };
            let rows = pipeline.tick()?;
            state.update(&rows, pipeline.cgroups(), page);
            if let Some(line) = captured.last() {
                state.about = format!("{about} | {line}");
            }
        }
    }
    drop(screen);
    drop(captured);
    Ok(())
}

/// The title's description of what runs.
fn about(args: &TopArgs, pipeline: &Pipeline) -> String {
    let scope = args.cgroup.as_deref().unwrap_or("/");
    let hints = if pipeline.hints_on() { "on" } else { "off" };
    let reporting = match &args.orchestrator {
        Some(target) => format!("reporting to {target}"),
        None => "watching only".to_owned(),
    };
    format!("{scope}, {:?}, hints {hints}, {reporting}", args.interval.0)
}
