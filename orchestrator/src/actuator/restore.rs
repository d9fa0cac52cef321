//! Putting journaled originals back: at exit ([`Actuator::restore_all`])
//! and, at the next start, whatever a crashed run left in the journal.

use std::path::Path;

use super::journal::{self, Original};
use super::{Actuator, ActuatorError, Mode, cgroupfs};

/// What a restore did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RestoreReport {
    /// Originals written back.
    pub restored: Vec<Original>,
    /// Cgroups that disappeared meanwhile: dropped, nothing to restore.
    pub gone: Vec<Original>,
    /// Originals the kernel refused (EBUSY for a memory limit below what
    /// the cgroup now uses, ...). They stay journaled and are retried by
    /// the next `restore_all` or the next start.
    pub failed: Vec<Failure>,
    /// Entries naming a file outside the cgroup mounts or not the knob's
    /// file: never written, dropped from the journal.
    pub refused: Vec<Original>,
    /// Entries for a cgroup that was removed and created again at the same
    /// path since (another id): the original was the old cgroup's, so it is
    /// not written; dropped from the journal with a warning.
    pub stale: Vec<Original>,
    /// Dry run: what a real run would restore, left in the journal.
    pub pending: Vec<Original>,
    /// Journal lines that were torn or unreadable.
    pub skipped_lines: usize,
}

/// An original that could not be written back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// The journal entry.
    pub entry: Original,
    /// Why (the error's message, with the path).
    pub cause: String,
}

impl Actuator {
    /// Writes every original this run changed back, last changed first,
    /// then empties the journal. Cgroups that disappeared are dropped at
    /// debug level; originals the kernel refuses stay journaled (see
    /// [`RestoreReport::failed`]). Guardrails do not apply: restoring is always
    /// allowed. In a dry run, prints the restores and writes nothing.
    pub fn restore_all(&mut self) -> Result<RestoreReport, ActuatorError> {
        let entries = std::mem::take(&mut self.originals);
        self.journaled.clear();
        match self.mode {
            Mode::Write => self.restore(entries, "restore on exit"),
            Mode::DryRun => {
                for entry in entries.iter().rev() {
                    self.print_restore(entry, "restore on exit");
                }
                self.dry_values.clear();
                Ok(RestoreReport {
                    pending: entries,
                    ..RestoreReport::default()
                })
            }
        }
    }

    /// Writes back the originals `which` selects (last changed first) and
    /// keeps the others journaled: what a reload does for the cgroups it no
    /// longer manages. In a dry run, prints the restores and writes nothing.
    pub fn restore_matching(
        &mut self,
        which: impl Fn(&Original) -> bool,
        reason: &str,
    ) -> Result<RestoreReport, ActuatorError> {
        let (chosen, kept): (Vec<Original>, Vec<Original>) = std::mem::take(&mut self.originals)
            .into_iter()
            .partition(which);
        self.journaled = kept.iter().map(|e| e.path.clone()).collect();
        self.originals = kept;
        match self.mode {
            Mode::Write if chosen.is_empty() => Ok(RestoreReport::default()),
            Mode::Write => self.restore(chosen, reason),
            Mode::DryRun => {
                for entry in chosen.iter().rev() {
                    self.print_restore(entry, reason);
                    self.dry_values.remove(&entry.path);
                }
                Ok(RestoreReport {
                    pending: chosen,
                    ..RestoreReport::default()
                })
            }
        }
    }

    /// Writes `entries` back (last first); the journal keeps this run's
    /// other originals and the failures, which join the originals.
    pub(super) fn restore(
        &mut self,
        entries: Vec<Original>,
        reason: &str,
    ) -> Result<RestoreReport, ActuatorError> {
        let mut report = RestoreReport::default();
        for entry in entries.into_iter().rev() {
            let path = &entry.path;
            if !self.layout.contains(path)
                || path.file_name() != Some(entry.knob.file_name().as_ref())
            {
                tracing::warn!(path = %path.display(), knob = %entry.knob,
                    "journal entry is not a knob file under the cgroup mounts; dropped");
                report.refused.push(entry);
                continue;
            }
            if let Some(id) = entry.id
                && let Some(now) = journal::cgroup_id(path)
                && now != id
            {
                tracing::warn!(cgroup = %entry.cgroup, knob = %entry.knob, journaled_id = id, id = now,
                    "the cgroup was created again since its original was journaled; not restoring the old cgroup's value");
                report.stale.push(entry);
                continue;
            }
            let old = current_text(path, &entry.cgroup);
            match cgroupfs::write(path, &entry.cgroup, &entry.original) {
                Ok(()) => {
                    tracing::info!(cgroup = %entry.cgroup, knob = %entry.knob, old = %old,
                        new = %entry.original, reason, "cgroup knob restored");
                    report.restored.push(entry);
                }
                Err(e) if e.is_gone() => {
                    tracing::debug!(cgroup = %entry.cgroup, knob = %entry.knob,
                        "cgroup gone; nothing to restore");
                    report.gone.push(entry);
                }
                Err(e) => {
                    tracing::warn!(cgroup = %entry.cgroup, knob = %entry.knob, cause = %e,
                        "cannot restore the original; kept in the journal to retry");
                    report.failed.push(Failure {
                        entry,
                        cause: e.to_string(),
                    });
                }
            }
        }
        // Failures were collected last-first; keep them in journal order.
        report.failed.reverse();
        for failure in &report.failed {
            self.journaled.insert(failure.entry.path.clone());
            self.originals.push(failure.entry.clone());
        }
        if let Some(journal) = &mut self.journal
            && let Err(e) = journal.replace(&self.originals)
        {
            // The old journal is still there, whole: it protects every knob
            // still raised, plus some already restored, whose entries hold
            // the value they have now. Safe; rewritten at the next restore.
            tracing::warn!(journal = %journal.path().display(), cause = %e,
                "cannot rewrite the journal after a restore; it keeps entries already restored");
        }
        Ok(report)
    }

    /// Dry run: one line for a restore a real run would make.
    pub(super) fn print_restore(&mut self, entry: &Original, reason: &str) {
        let old = self
            .dry_values
            .get(&entry.path)
            .cloned()
            .unwrap_or_else(|| current_text(&entry.path, &entry.cgroup));
        self.print(&entry.cgroup, entry.knob, &old, &entry.original, reason);
    }
}

/// A file's first line for logs ("?" if unreadable).
fn current_text(path: &Path, cgroup: &str) -> String {
    cgroupfs::read(path, cgroup)
        .ok()
        .and_then(|t| t.lines().next().map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned())
}
