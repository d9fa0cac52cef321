//! What can go wrong when reading or writing a knob.

use std::{io, path::PathBuf};

use super::journal::JournalError;
use super::{
    knob::Knob,
    setting::{InvalidSetting, ParseError},
};

/// A read or write that failed. Refusals by the guardrails are not errors:
/// they are [`super::Outcome::Refused`].
#[derive(Debug, thiserror::Error)]
pub enum ActuatorError {
    /// The cgroup no longer exists (ENOENT on its directory, or ENODEV):
    /// the engine drops it quietly, this is not worth a warning.
    #[error("cgroup {cgroup} is gone ({path})")]
    Gone {
        /// The cgroup, relative to the v2 root.
        cgroup: String,
        /// The file that could not be opened.
        path: PathBuf,
    },
    /// A knob file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The kernel refused a write (EINVAL, EBUSY for a memory limit it
    /// cannot reclaim down to, ...).
    #[error("cannot write {value:?} to {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// What was written.
        value: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A knob file's contents are not what the kernel writes there.
    #[error("unexpected contents in {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        #[source]
        source: ParseError,
    },
    /// A value the kernel would refuse or silently change.
    #[error("refusing to write {path}: {source}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong with the value.
        #[source]
        source: InvalidSetting,
    },
    /// A cgroup path that is not a managed cgroup: not absolute, the root
    /// itself, or with `.`/`..` components that could leave cgroupfs.
    #[error(
        "cgroup path {0:?} must start with '/', name a cgroup below the root, and have no '.' or '..' components"
    )]
    BadCgroup(String),
    /// The knob's controller is not mounted where the knob needs it.
    #[error("{knob} for {cgroup}: {hierarchy} is not mounted on this host")]
    NoController {
        /// The knob.
        knob: Knob,
        /// The cgroup.
        cgroup: String,
        /// "the v2 hierarchy" or "the v1 <controller> controller".
        hierarchy: String,
    },
    /// The journal could not protect a write, so it was not made.
    #[error(transparent)]
    Journal(#[from] JournalError),
}

impl ActuatorError {
    /// True when the cgroup disappeared (drop it, no noise).
    pub fn is_gone(&self) -> bool {
        matches!(self, Self::Gone { .. })
    }
}
