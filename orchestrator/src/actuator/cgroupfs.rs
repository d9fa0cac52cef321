//! Bounded reads and single writes of cgroup files, with errors that say
//! which file and tell a vanished cgroup apart from a real failure.

use std::{
    fs,
    io::{self, Read as _, Write as _},
    path::Path,
};

use super::error::ActuatorError;

/// No knob file Shadow reads is longer than a few lines; `io.weight` grows
/// a line per device. Anything longer is not a knob file.
const MAX_READ: u64 = 64 * 1024;

/// Reads at most [`MAX_READ`] bytes of `path`, lossily as UTF-8 (the parse
/// refuses whatever is not a number).
pub(crate) fn read(path: &Path, cgroup: &str) -> Result<String, ActuatorError> {
    let mut buf = Vec::new();
    fs::File::open(path)
        .and_then(|f| f.take(MAX_READ).read_to_end(&mut buf))
        .map_err(|source| {
            classify(source, path, cgroup, |source| ActuatorError::Read {
                path: path.to_path_buf(),
                source,
            })
        })?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// Writes `value` to an existing file in one `write(2)` (cgroupfs takes
/// each write as one command), never creating it.
pub(crate) fn write(path: &Path, cgroup: &str, value: &str) -> Result<(), ActuatorError> {
    fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .and_then(|mut f| f.write_all(value.as_bytes()))
        .map_err(|source| {
            classify(source, path, cgroup, |source| ActuatorError::Write {
                path: path.to_path_buf(),
                value: value.to_owned(),
                source,
            })
        })
}

/// ENODEV (the cgroup was removed under an open file) or ENOENT with the
/// directory gone means the cgroup disappeared; ENOENT with the directory
/// present is a missing knob file, a real error.
fn classify(
    source: io::Error,
    path: &Path,
    cgroup: &str,
    other: impl FnOnce(io::Error) -> ActuatorError,
) -> ActuatorError {
    let dir_gone = || path.parent().is_some_and(|d| !d.exists());
    let gone = source.raw_os_error() == Some(libc::ENODEV)
        || (source.kind() == io::ErrorKind::NotFound && dir_gone());
    if gone {
        ActuatorError::Gone {
            cgroup: cgroup.to_owned(),
            path: path.to_path_buf(),
        }
    } else {
        other(source)
    }
}
