//! The journal: every knob's original value, on disk before the knob is
//! first changed, so that a normal exit and the start after a crash (kill
//! -9, power loss) can put it back.
//!
//! Format: `<state dir>/journal.jsonl`, one JSON object per line,
//! `{"cgroup":"/a","knob":"memory.high","path":"/sys/fs/cgroup/a/memory.high","original":"max"}`,
//! appended and fsynced (file, and the directory when the file is new)
//! before the write it protects. `original` is the exact text to write back.
//! A torn last line (no newline) is ignored with a warning: the write it
//! protected never happened, because it waits for the fsync. The journal
//! is removed once every entry has been restored.
//!
//! The state directory (default [`DEFAULT_STATE_DIR`], created 0700) is
//! locked with `flock` while a journal is open, so a second orchestrator
//! cannot "restore" the first one's live settings under it.

use std::{
    collections::HashSet,
    fs::{self, DirBuilder, File, OpenOptions},
    io::{self, Read as _, Write as _},
    os::{
        fd::AsRawFd as _,
        unix::fs::{DirBuilderExt as _, OpenOptionsExt as _},
    },
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use crate::actuator::Knob;

/// Where the journal lives unless configured otherwise: /run is a tmpfs,
/// emptied at boot, which is right because cgroups do not survive a reboot
/// either.
pub const DEFAULT_STATE_DIR: &str = "/run/shadow";

/// The journal's file name in the state directory.
pub const FILE_NAME: &str = "journal.jsonl";

/// A journal larger than this is not ours (10,000 cgroups x 4 knobs at
/// ~200 bytes an entry is 8 MB).
const MAX_LEN: u64 = 64 << 20;

/// One knob's original value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Original {
    /// The cgroup, relative to the v2 root.
    pub cgroup: String,
    /// The knob.
    pub knob: Knob,
    /// The file written (absolute), so restoring needs no layout guesswork.
    pub path: PathBuf,
    /// The exact text to write back.
    pub original: String,
}

/// Why the journal could not be opened, read or written.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// The state directory could not be created or opened.
    #[error("cannot create or open state directory {path}: {source}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Another process holds the state directory.
    #[error("state directory {path} is in use by another shadow-orchestrator ({source})")]
    Locked {
        /// The directory.
        path: PathBuf,
        /// The cause (EWOULDBLOCK).
        #[source]
        source: io::Error,
    },
    /// The journal could not be read.
    #[error("cannot read journal {path}: {source}")]
    Read {
        /// The journal file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The journal is implausibly large.
    #[error("journal {path} is larger than {MAX_LEN} bytes: not a Shadow journal?")]
    TooLarge {
        /// The journal file.
        path: PathBuf,
    },
    /// An entry could not be made durable (the knob write is not made).
    #[error("cannot write journal {path}: {source}")]
    Write {
        /// The journal file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// What a journal held when it was opened.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Contents {
    /// Entries, first per file only (a later one would be a value Shadow
    /// wrote itself, not the original), in the order they were written.
    pub entries: Vec<Original>,
    /// Lines that were torn or unreadable and ignored.
    pub skipped: usize,
}

/// An open, locked journal.
#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    path: PathBuf,
    file: Option<File>,
    /// Held for the flock; closing it releases the directory.
    _lock: File,
}

impl Journal {
    /// Creates `dir` (0700) if needed, locks it and reads any journal that
    /// a previous run left there.
    pub fn open(dir: &Path) -> Result<(Self, Contents), JournalError> {
        let dir_err = |source| JournalError::Dir {
            path: dir.to_path_buf(),
            source,
        };
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(dir_err)?;
        let lock = File::open(dir).map_err(dir_err)?;
        // SAFETY: flock on a descriptor this function owns; no memory involved.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            return Err(JournalError::Locked {
                path: dir.to_path_buf(),
                source: io::Error::last_os_error(),
            });
        }
        let contents = Self::read(dir)?;
        let journal = Self {
            dir: dir.to_path_buf(),
            path: dir.join(FILE_NAME),
            file: None,
            _lock: lock,
        };
        Ok((journal, contents))
    }

    /// Reads the journal in `dir` without locking or creating anything
    /// (what a dry run reports). A missing journal is empty.
    pub fn read(dir: &Path) -> Result<Contents, JournalError> {
        let path = dir.join(FILE_NAME);
        let read_err = |source| JournalError::Read {
            path: path.clone(),
            source,
        };
        let mut bytes = Vec::new();
        match File::open(&path) {
            Ok(f) => f
                .take(MAX_LEN + 1)
                .read_to_end(&mut bytes)
                .map_err(read_err)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Contents::default()),
            Err(e) => return Err(read_err(e)),
        };
        if bytes.len() as u64 > MAX_LEN {
            return Err(JournalError::TooLarge { path });
        }
        Ok(parse(&String::from_utf8_lossy(&bytes), &path))
    }

    /// Appends `entry` and makes it durable before returning.
    pub fn append(&mut self, entry: &Original) -> Result<(), JournalError> {
        let write_err = |source| JournalError::Write {
            path: self.path.clone(),
            source,
        };
        let mut line = serde_json::to_string(entry).map_err(|e| write_err(e.into()))?;
        line.push('\n');
        if self.file.is_none() {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(&self.path)
                .map_err(write_err)?;
            // The file's directory entry must be durable too.
            sync_dir(&self.dir).map_err(write_err)?;
            self.file = Some(file);
        }
        let Some(file) = self.file.as_mut() else {
            return Err(write_err(io::Error::other("journal not open")));
        };
        file.write_all(line.as_bytes()).map_err(write_err)?;
        file.sync_data().map_err(write_err)
    }

    /// Removes the journal once everything in it has been restored.
    pub fn clear(&mut self) -> Result<(), JournalError> {
        self.file = None;
        let write_err = |source| JournalError::Write {
            path: self.path.clone(),
            source,
        };
        match fs::remove_file(&self.path) {
            Ok(()) => sync_dir(&self.dir).map_err(write_err),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(write_err(e)),
        }
    }

    /// The journal file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Parses journal text; `path` only names the file in warnings.
pub fn parse(text: &str, path: &Path) -> Contents {
    let mut contents = Contents::default();
    let mut seen = HashSet::new();
    let mut lines: Vec<&str> = text.split('\n').collect();
    // After the last '\n' is either nothing or a line torn by a crash.
    if let Some(torn) = lines.pop().filter(|l| !l.is_empty()) {
        tracing::warn!(journal = %path.display(), line = %truncate(torn),
            "ignoring the journal's torn last line: the write it protected never happened");
        contents.skipped += 1;
    }
    for line in lines.into_iter().filter(|l| !l.trim().is_empty()) {
        match serde_json::from_str::<Original>(line) {
            Ok(entry) => {
                if seen.insert(entry.path.clone()) {
                    contents.entries.push(entry);
                }
            }
            Err(e) => {
                tracing::warn!(journal = %path.display(), line = %truncate(line), cause = %e,
                    "ignoring an unreadable journal line");
                contents.skipped += 1;
            }
        }
    }
    contents
}

fn truncate(line: &str) -> String {
    line.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    /// A fresh state directory path (not created) removed on drop.
    struct StateDir(PathBuf);

    impl StateDir {
        fn new(name: &str) -> Self {
            static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Self(std::env::temp_dir().join(format!(
                "shadow-journal-{name}-{}-{n}/state",
                std::process::id()
            )))
        }
    }

    impl Drop for StateDir {
        fn drop(&mut self) {
            if let Some(parent) = self.0.parent() {
                let _ = fs::remove_dir_all(parent);
            }
        }
    }

    fn entry(cgroup: &str, knob: Knob, original: &str) -> Original {
        Original {
            cgroup: cgroup.to_owned(),
            knob,
            path: PathBuf::from(format!("/sys/fs/cgroup/x{cgroup}/{knob}")),
            original: original.to_owned(),
        }
    }

    #[test]
    fn round_trip_through_a_reopen() {
        let dir = StateDir::new("round-trip");
        let (mut j, contents) = Journal::open(&dir.0).unwrap();
        assert_eq!(contents, Contents::default());
        let mode = fs::metadata(&dir.0).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "state dir must be private");
        let a = entry("/a", Knob::CpuMax, "max 100000");
        let b = entry("/b", Knob::MemoryLimit, "-1");
        j.append(&a).unwrap();
        j.append(&b).unwrap();
        drop(j);
        let (mut j, contents) = Journal::open(&dir.0).unwrap();
        assert_eq!(contents.entries, [a, b]);
        assert_eq!(contents.skipped, 0);
        j.clear().unwrap();
        assert!(!j.path().exists());
        drop(j);
        assert_eq!(Journal::read(&dir.0).unwrap(), Contents::default());
    }

    #[test]
    fn torn_last_line_is_ignored_and_earlier_lines_kept() {
        let dir = StateDir::new("torn");
        let (mut j, _) = Journal::open(&dir.0).unwrap();
        let a = entry("/a", Knob::CpuShares, "1024");
        j.append(&a).unwrap();
        let path = j.path().to_path_buf();
        drop(j);
        // A crash in the middle of the second append.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(br#"{"cgroup":"/b","knob":"cpu.sha"#).unwrap();
        drop(f);
        let contents = Journal::read(&dir.0).unwrap();
        assert_eq!(contents.entries, std::slice::from_ref(&a));
        assert_eq!(contents.skipped, 1);
        // Even a complete-looking record without its newline is torn: the
        // append had not returned, so its knob was never written.
        let line = serde_json::to_string(&entry("/c", Knob::CpuWeight, "100")).unwrap();
        let text = format!("{}\n{line}", serde_json::to_string(&a).unwrap());
        let contents = parse(&text, &path);
        assert_eq!((contents.entries.len(), contents.skipped), (1, 1));
    }

    #[test]
    fn garbage_lines_are_skipped_and_the_first_original_wins() {
        let first = entry("/a", Knob::MemoryHigh, "max");
        let mut later = first.clone();
        later.original = "1048576".to_owned();
        let text = format!(
            "{}\n\0\0\0\nnot json\n{{\"cgroup\":\"/a\",\"knob\":\"cpu.bogus\",\"path\":\"/x\",\"original\":\"1\"}}\n{}\n\n",
            serde_json::to_string(&first).unwrap(),
            serde_json::to_string(&later).unwrap()
        );
        let contents = parse(&text, Path::new("j"));
        assert_eq!(contents.entries, [first]);
        assert_eq!(contents.skipped, 3);
    }

    #[test]
    fn a_second_open_of_a_locked_directory_is_refused() {
        let dir = StateDir::new("lock");
        let (j, _) = Journal::open(&dir.0).unwrap();
        let err = Journal::open(&dir.0).unwrap_err();
        assert!(matches!(err, JournalError::Locked { .. }), "{err}");
        assert!(err.to_string().contains("another shadow-orchestrator"));
        drop(j);
        assert!(Journal::open(&dir.0).is_ok(), "lock released on drop");
    }

    #[test]
    fn an_oversized_journal_is_refused() {
        let dir = StateDir::new("big");
        fs::create_dir_all(&dir.0).unwrap();
        let f = File::create(dir.0.join(FILE_NAME)).unwrap();
        f.set_len(MAX_LEN + 1).unwrap();
        assert!(matches!(
            Journal::read(&dir.0),
            Err(JournalError::TooLarge { .. })
        ));
    }
}
