//! The actuator: reads and writes cgroup knobs within guardrails, and
//! journals every original value first so that it can be put back.
//!
//! Layout:
//! - [`knob`]: the knobs of both layouts, soft or hard, and the resources.
//! - [`setting`]: knob values, parsed and formatted as the kernel does.
//! - [`layout`]: where a cgroup's knobs live (v2 or a v1 controller mount).
//! - [`guardrails`]: rate limit and cooldown per knob (pure, time passed in).
//! - `restore`: putting journaled originals back (at exit, after a crash).
//!
//! See docs/actuator.md for the mapping and the semantics.

mod cgroupfs;
mod error;
#[cfg(any(test, feature = "fake-cgroupfs"))]
pub mod fake;
pub mod guardrails;
pub mod journal;
pub mod knob;
pub mod layout;
mod restore;
pub mod setting;

use std::{
    collections::{HashMap, HashSet},
    io::{self, Write as _},
    path::{Path, PathBuf},
    time::Instant,
};

pub use error::ActuatorError;
pub use guardrails::{Direction, Guardrails, Refusal};
pub use knob::{Knob, Resource, ResourceKnobs};
pub use layout::Layout;
pub use restore::{Failure, RestoreReport};
pub use setting::{Bytes, CpuQuota, InvalidSetting, ParseError, Setting};

use guardrails::History;
use journal::{Journal, Original};

/// Whether writes are made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Journal and write.
    Write,
    /// Print each write as a JSON line on the output and make none: no
    /// knob, no journal, no state directory is touched.
    DryRun,
}

/// What [`Actuator::write`] did.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// The knob was changed from `old` to `new`.
    Written {
        /// The value before.
        old: Setting,
        /// The value now.
        new: Setting,
    },
    /// Dry run: the knob would have been changed (and was not).
    DryRun {
        /// The value now.
        old: Setting,
        /// The value that would have been written.
        new: Setting,
    },
    /// The knob already had this value; nothing was written.
    Unchanged,
    /// A guardrail refused the write; nothing was written.
    Refused(Refusal),
}

/// Something to print dry-run lines to (stdout unless a test captures it).
pub type Output = Box<dyn io::Write + Send>;

/// Reads and writes cgroup knobs under one [`Layout`], journaling originals.
pub struct Actuator {
    layout: Layout,
    mode: Mode,
    guardrails: Guardrails,
    /// Some in `Write` mode.
    journal: Option<Journal>,
    /// This run's originals, in the order they were first changed.
    originals: Vec<Original>,
    /// Files whose original is already in `originals` (and the journal).
    journaled: HashSet<PathBuf>,
    history: HashMap<(String, Knob), History>,
    /// Recent CPU usage (cores) per cgroup, as the engine last told it.
    cpu_usage: HashMap<String, f64>,
    /// Dry run: the text each file would hold now, for the restore lines.
    dry_values: HashMap<PathBuf, String>,
    page_size: u64,
    out: Output,
}

impl Actuator {
    /// Opens the journal in `state_dir` and, before anything else, restores
    /// whatever a previous run left in it (it crashed or was killed). In
    /// `DryRun` nothing is restored: the leftovers are printed as the
    /// writes a real run would make, and reported as `pending`.
    pub fn open(
        layout: Layout,
        state_dir: &Path,
        mode: Mode,
        guardrails: Guardrails,
    ) -> Result<(Self, RestoreReport), ActuatorError> {
        Self::open_with_output(layout, state_dir, mode, guardrails, Box::new(io::stdout()))
    }

    /// [`Actuator::open`] with dry-run lines going to `out`.
    pub fn open_with_output(
        layout: Layout,
        state_dir: &Path,
        mode: Mode,
        guardrails: Guardrails,
        out: Output,
    ) -> Result<(Self, RestoreReport), ActuatorError> {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        let mut act = Self {
            layout,
            mode,
            guardrails,
            journal: None,
            originals: Vec::new(),
            journaled: HashSet::new(),
            history: HashMap::new(),
            cpu_usage: HashMap::new(),
            dry_values: HashMap::new(),
            page_size: u64::try_from(page).unwrap_or(4096),
            out,
        };
        let report = match mode {
            Mode::Write => {
                let (journal, leftover) = Journal::open(state_dir)?;
                act.journal = Some(journal);
                let mut report = act.restore(leftover.entries, "restore after a crash")?;
                report.skipped_lines = leftover.skipped;
                report
            }
            Mode::DryRun => {
                let leftover = journal::Journal::read(state_dir)?;
                let mut report = RestoreReport {
                    skipped_lines: leftover.skipped,
                    ..RestoreReport::default()
                };
                for entry in leftover.entries.iter().rev() {
                    act.print_restore(entry, "restore after a crash");
                }
                report.pending = leftover.entries;
                report
            }
        };
        Ok((act, report))
    }

    /// The layout this actuator writes under.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Replaces the rate limit and cooldown (a configuration reload); the
    /// history of past writes is kept, so a reload does not reset them.
    pub fn set_guardrails(&mut self, guardrails: Guardrails) {
        self.guardrails = guardrails;
    }

    /// The mode it was opened in.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Originals of the knobs this run has changed (or, in a dry run,
    /// would have), in the order they were first changed.
    pub fn originals(&self) -> &[Original] {
        &self.originals
    }

    /// The current value of `knob` for `cgroup`, from the kernel.
    pub fn read(&self, cgroup: &str, knob: Knob) -> Result<Setting, ActuatorError> {
        let path = self.layout.file(cgroup, knob)?;
        let text = cgroupfs::read(&path, cgroup)?;
        let companion = match knob.companion_file() {
            Some(name) => Some(cgroupfs::read(&path.with_file_name(name), cgroup)?),
            None => None,
        };
        knob.parse(&text, companion.as_deref())
            .map_err(|source| ActuatorError::Parse { path, source })
    }

    /// Tells the actuator how many cores `cgroup` used recently: a CPU
    /// quota is never lowered below it (nor below `Guardrails::cpu_floor_cores`).
    /// The value `knob` of `cgroup` had before this run first changed it,
    /// if it did: what releasing a reservation goes back to.
    pub fn original(&self, cgroup: &str, knob: Knob) -> Option<Result<Setting, ActuatorError>> {
        let entry = self
            .originals
            .iter()
            .find(|e| e.cgroup == cgroup && e.knob == knob)?;
        let companion = match knob.companion_file() {
            Some(name) => match cgroupfs::read(&entry.path.with_file_name(name), cgroup) {
                Ok(text) => Some(text),
                Err(e) => return Some(Err(e)),
            },
            None => None,
        };
        Some(
            knob.parse(&entry.original, companion.as_deref())
                .map_err(|source| ActuatorError::Parse {
                    path: entry.path.clone(),
                    source,
                }),
        )
    }

    pub fn note_cpu_usage(&mut self, cgroup: &str, cores: f64) {
        if cores.is_finite() && cores >= 0.0 {
            self.cpu_usage.insert(cgroup.to_owned(), cores);
        }
    }

    /// Forgets a cgroup that disappeared (its history and usage). Its
    /// journaled originals stay: restoring them later finds it gone and
    /// drops them quietly.
    pub fn forget(&mut self, cgroup: &str) {
        self.history.retain(|(c, _), _| c != cgroup);
        self.cpu_usage.remove(cgroup);
    }

    /// Sets `knob` of `cgroup` to `new` at time `now`, unless a guardrail
    /// refuses: the knob was written less than `min_interval` ago, it is a
    /// lowering less than `cooldown` after a raise, or it lowers a hard cap
    /// below what the cgroup uses. Memory values are rounded down to whole
    /// pages first, as the kernel would. The original value is journaled
    /// (fsynced) before the first write to each knob. One log line per
    /// write; in a dry run one JSON line on the output instead, and nothing
    /// is written.
    pub fn write(
        &mut self,
        cgroup: &str,
        knob: Knob,
        new: Setting,
        reason: &str,
        now: Instant,
    ) -> Result<Outcome, ActuatorError> {
        self.write_as(cgroup, knob, new, reason, now, true)
    }

    /// Puts `knob` back to `original` (a release), like
    /// [`Actuator::write`] except that a hard cap may go below usage: the
    /// original is the operator's own setting, which the cgroup ran under
    /// before Shadow, and the usage known is the last one a now dead agent
    /// sent, which would otherwise hold a released quota up for as long as
    /// the agent stays away. A memory limit still never goes below the
    /// usage the kernel reports at that moment (the release waits for it).
    /// The rate limit and the cooldown still apply.
    pub fn put_back(
        &mut self,
        cgroup: &str,
        knob: Knob,
        original: Setting,
        reason: &str,
        now: Instant,
    ) -> Result<Outcome, ActuatorError> {
        self.write_as(cgroup, knob, original, reason, now, false)
    }

    fn write_as(
        &mut self,
        cgroup: &str,
        knob: Knob,
        new: Setting,
        reason: &str,
        now: Instant,
        above_usage: bool,
    ) -> Result<Outcome, ActuatorError> {
        let path = self.layout.file(cgroup, knob)?;
        let new = match new {
            Setting::Bytes(b) => Setting::Bytes(b.page_aligned(self.page_size)),
            other => other,
        };
        let invalid = |source| ActuatorError::Invalid {
            path: path.clone(),
            source,
        };
        let text = knob.format(&new).map_err(invalid)?;
        let old = self.read(cgroup, knob)?;
        if let (Knob::CpuCfsQuota, Setting::CpuQuota(o), Setting::CpuQuota(n)) = (knob, old, new)
            && o.period_us != n.period_us
        {
            return Err(invalid(InvalidSetting::PeriodMismatch {
                current: o.period_us,
                new: n.period_us,
            }));
        }
        if old == new {
            return Ok(Outcome::Unchanged);
        }
        let direction = Direction::of(old.amount(), new.amount());
        let key = (cgroup.to_owned(), knob);
        let history = self.history.get(&key).copied().unwrap_or_default();
        if let Err(refusal) = history.check(&self.guardrails, direction, now) {
            return Ok(Outcome::Refused(refusal));
        }
        // A memory limit is checked against the kernel's usage now, even on
        // a release; only the CPU check, on an agent's last report, is
        // skipped by a release.
        if direction == Direction::Lower
            && (above_usage || matches!(new, Setting::Bytes(_)))
            && knob.is_hard()
            && let Some(refusal) = self.below_usage(cgroup, knob, &new)?
        {
            return Ok(Outcome::Refused(refusal));
        }
        let old_text = knob.format_raw(&old);
        if !self.journaled.contains(&path) {
            let entry = Original {
                cgroup: cgroup.to_owned(),
                knob,
                path: path.clone(),
                original: old_text.clone(),
                id: journal::cgroup_id(&path),
            };
            if let Some(journal) = &mut self.journal {
                journal.append(&entry)?;
            }
            self.journaled.insert(path.clone());
            self.originals.push(entry);
        }
        let outcome = match self.mode {
            Mode::DryRun => {
                self.print(cgroup, knob, &old_text, &text, reason);
                self.dry_values.insert(path, text);
                Outcome::DryRun { old, new }
            }
            Mode::Write => {
                cgroupfs::write(&path, cgroup, &text)?;
                tracing::info!(cgroup, knob = %knob, old = %old_text, new = %text, reason,
                    "cgroup knob written");
                Outcome::Written { old, new }
            }
        };
        self.history.entry(key).or_default().record(direction, now);
        Ok(outcome)
    }

    /// A refusal if lowering hard cap `knob` to `new` goes below usage.
    fn below_usage(
        &self,
        cgroup: &str,
        knob: Knob,
        new: &Setting,
    ) -> Result<Option<Refusal>, ActuatorError> {
        match new {
            Setting::Bytes(limit) => {
                let Some(file) = knob.usage_file() else {
                    return Ok(None);
                };
                let path = self.layout.dir(cgroup, knob)?.join(file);
                let text = cgroupfs::read(&path, cgroup)?;
                let usage = match Bytes::parse_v1(&text) {
                    Ok(b) => b.as_u64(),
                    Err(source) => return Err(ActuatorError::Parse { path, source }),
                };
                Ok(
                    (limit.as_u64() < usage).then_some(Refusal::BelowMemoryUsage {
                        limit: limit.as_u64(),
                        usage,
                    }),
                )
            }
            Setting::CpuQuota(q) => {
                let recent = self.cpu_usage.get(cgroup).copied().unwrap_or(0.0);
                let needed = recent.max(self.guardrails.cpu_floor_cores);
                Ok((q.cores() < needed).then_some(Refusal::BelowCpuUsage {
                    cores: q.cores(),
                    needed,
                }))
            }
            Setting::Weight(_) => Ok(None),
        }
    }

    /// One dry-run line: {"cgroup","knob","old","new","reason"}.
    fn print(&mut self, cgroup: &str, knob: Knob, old: &str, new: &str, reason: &str) {
        let line = serde_json::json!({
            "cgroup": cgroup, "knob": knob, "old": old, "new": new, "reason": reason,
        });
        if let Err(e) = writeln!(self.out, "{line}").and_then(|()| self.out.flush()) {
            tracing::warn!(cause = %e, "cannot print a dry-run line");
        }
    }
}

#[cfg(test)]
mod tests;
