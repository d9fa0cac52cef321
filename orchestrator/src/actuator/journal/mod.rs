//! The journal: every knob's original value, on disk before the knob is
//! first changed, so that a normal exit and the start after a crash (kill
//! -9, power loss) can put it back.
//!
//! Format: `<state dir>/journal.jsonl`, one JSON object per line,
//! `{"cgroup":"/a","knob":"memory.high","path":"/sys/fs/cgroup/a/memory.high","original":"max","id":4242}`,
//! appended and fsynced (file, and the directory when the file is new)
//! before the write it protects. `original` is the exact text to write back.
//! A torn last line (no newline) is ignored with a warning: the write it
//! protected never happened, because it waits for the fsync (and the
//! next open cuts it off). After a restore the journal is replaced
//! whole, never emptied first ([`Journal::replace`]): the remaining entries
//! go to a temporary file, fsynced, renamed over the journal. It is
//! removed once every entry has been restored.
//!
//! A failed append (a full disk cuts the line short) is cut back to the
//! last whole entry before the error is returned, so no fragment is left
//! for the next entry to be glued to (which would make that entry
//! unreadable although its knob was written). Lines rather than
//! length-prefixed records: truncating shrinks a file without needing a
//! free block, and the file stays readable with `cat`.
//!
//! The state directory (default [`DEFAULT_STATE_DIR`], created 0700) must
//! belong to the orchestrator's user and not be writable by group or
//! others: whoever can write there can forge originals that a restore
//! writes as root. It is locked with `flock` while a journal is open, so a
//! second orchestrator cannot "restore" the first one's live settings under
//! it.

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

/// Where [`Journal::replace`] writes the new journal before renaming it.
const TEMP_NAME: &str = "journal.jsonl.new";

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
    /// The inode number of the directory holding `path` when the original
    /// was read: on cgroupfs the cgroup's id, never reused while the host
    /// runs. A cgroup removed and created again at the same path has
    /// another, and the old original is not written to it. None in
    /// journals written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
}

/// The id [`Original::id`] records for the knob file `path`: its
/// directory's inode number, if it can be read.
pub fn cgroup_id(path: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt as _;
    fs::metadata(path.parent()?).ok().map(|m| m.ino())
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
    /// The state directory could be changed by someone other than the
    /// orchestrator's user: whoever can write there could forge originals
    /// that a restore writes to cgroups as root.
    #[error(
        "state directory {path} is {problem}: it must be owned by the user running the orchestrator (root) and not writable by group or others (e.g. chown root: {path} && chmod 0700 {path})"
    )]
    Unsafe {
        /// The directory.
        path: PathBuf,
        /// What is wrong with it.
        problem: UnsafeDir,
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

/// Why a state directory is refused.
#[derive(Debug, thiserror::Error)]
pub enum UnsafeDir {
    /// Owned by another user.
    #[error("owned by uid {owner}, not uid {euid}")]
    Owner {
        /// Its owner.
        owner: u32,
        /// Ours.
        euid: u32,
    },
    /// Group or others may create or replace files in it.
    #[error("writable by group or others (mode {mode:04o})")]
    Writable {
        /// Its permission bits.
        mode: u32,
    },
    /// Not a directory.
    #[error("not a directory")]
    NotDir,
}

/// Refuses a state directory (opened as `dir`) that anyone but this
/// process's user could write to.
fn check_dir(path: &Path, dir: &File) -> Result<(), JournalError> {
    use std::os::unix::fs::MetadataExt as _;
    let meta = dir.metadata().map_err(|source| JournalError::Dir {
        path: path.to_path_buf(),
        source,
    })?;
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    let problem = if !meta.is_dir() {
        Some(UnsafeDir::NotDir)
    } else if meta.uid() != euid {
        Some(UnsafeDir::Owner {
            owner: meta.uid(),
            euid,
        })
    } else if meta.mode() & 0o022 != 0 {
        Some(UnsafeDir::Writable {
            mode: meta.mode() & 0o7777,
        })
    } else {
        None
    };
    match problem {
        Some(problem) => Err(JournalError::Unsafe {
            path: path.to_path_buf(),
            problem,
        }),
        None => Ok(()),
    }
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
    /// Bytes of whole entries in `file`: a failed append is cut back to it.
    len: u64,
    /// A failed append could not be cut back: nothing more is appended
    /// (a knob it would protect is not written) until the file is rewritten.
    broken: bool,
    /// Held for the flock; closing it releases the directory.
    _lock: File,
}

impl Journal {
    /// Creates `dir` (0700) if needed, checks that only this process's
    /// user can write to it, locks it and reads any journal that a previous
    /// run left there.
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
        check_dir(dir, &lock)?;
        // SAFETY: flock on a descriptor this function owns; no memory involved.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            return Err(JournalError::Locked {
                path: dir.to_path_buf(),
                source: io::Error::last_os_error(),
            });
        }
        let path = dir.join(FILE_NAME);
        let bytes = read_bytes(&path)?;
        let contents = parse(&String::from_utf8_lossy(&bytes), &path);
        // A torn last line is ignored; cut it off too, so that nothing
        // appended later is glued to it.
        let whole = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        if whole < bytes.len() {
            OpenOptions::new()
                .write(true)
                .open(&path)
                .and_then(|f| f.set_len(whole as u64))
                .map_err(|source| JournalError::Write {
                    path: path.clone(),
                    source,
                })?;
        }
        let journal = Self {
            dir: dir.to_path_buf(),
            path,
            file: None,
            len: 0,
            broken: false,
            _lock: lock,
        };
        Ok((journal, contents))
    }

    /// Reads the journal in `dir` without locking or creating anything
    /// (what a dry run reports). A missing journal is empty.
    pub fn read(dir: &Path) -> Result<Contents, JournalError> {
        let path = dir.join(FILE_NAME);
        let bytes = read_bytes(&path)?;
        Ok(parse(&String::from_utf8_lossy(&bytes), &path))
    }

    /// Appends `entry` and makes it durable before returning. On an error
    /// the file holds what it held before (see the module doc).
    pub fn append(&mut self, entry: &Original) -> Result<(), JournalError> {
        let write_err = |source| JournalError::Write {
            path: self.path.clone(),
            source,
        };
        if self.broken {
            return Err(write_err(io::Error::other(
                "an earlier failed append could not be cut back",
            )));
        }
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
            self.len = file.metadata().map_err(write_err)?.len();
            self.file = Some(file);
        }
        let Some(file) = self.file.as_mut() else {
            return Err(write_err(io::Error::other("journal not open")));
        };
        let written = file
            .write_all(line.as_bytes())
            .and_then(|()| file.sync_data());
        if let Err(e) = written {
            // Truncating frees blocks, so it works on a full disk too.
            if let Err(cut) = file.set_len(self.len).and_then(|()| file.sync_data()) {
                tracing::error!(journal = %self.path.display(), cause = %cut,
                    "cannot cut a failed journal append back; no knob is written until the journal is rewritten");
                self.broken = true;
                self.file = None;
            }
            return Err(write_err(e));
        }
        self.len += line.len() as u64;
        Ok(())
    }

    /// Makes the journal hold exactly `entries`, never emptying it first:
    /// they are written to a temporary file, fsynced and renamed over the
    /// journal, then the directory is fsynced. A crash or a full disk at any
    /// point leaves the old journal or the new one, never none and never a
    /// mix. With no entries the journal is removed (nothing is left to
    /// protect).
    pub fn replace(&mut self, entries: &[Original]) -> Result<(), JournalError> {
        if entries.is_empty() {
            return self.clear();
        }
        let write_err = |source| JournalError::Write {
            path: self.path.clone(),
            source,
        };
        let temp = self.dir.join(TEMP_NAME);
        let mut text = String::new();
        for entry in entries {
            text.push_str(&serde_json::to_string(entry).map_err(|e| write_err(e.into()))?);
            text.push('\n');
        }
        let written = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temp)
            .and_then(|mut f| {
                f.write_all(text.as_bytes())?;
                f.sync_all()
            })
            .and_then(|()| fs::rename(&temp, &self.path));
        if let Err(e) = written {
            let _ = fs::remove_file(&temp);
            return Err(write_err(e));
        }
        // The open handle (if any) is on the old file: the next append
        // opens the new one.
        self.file = None;
        self.broken = false;
        sync_dir(&self.dir).map_err(write_err)
    }

    /// Removes the journal once everything in it has been restored.
    fn clear(&mut self) -> Result<(), JournalError> {
        self.file = None;
        self.broken = false;
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

/// The journal's bytes (none if it does not exist), refusing one larger
/// than [`MAX_LEN`].
fn read_bytes(path: &Path) -> Result<Vec<u8>, JournalError> {
    let read_err = |source| JournalError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut bytes = Vec::new();
    match File::open(path) {
        Ok(f) => f
            .take(MAX_LEN + 1)
            .read_to_end(&mut bytes)
            .map_err(read_err)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(bytes),
        Err(e) => return Err(read_err(e)),
    };
    if bytes.len() as u64 > MAX_LEN {
        return Err(JournalError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    Ok(bytes)
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
mod tests;
