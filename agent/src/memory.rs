//! Memory in use per cgroup, read from cgroupfs at each tick.
//!
//! Memory is a level, not a flow of events: the kernel already keeps the
//! exact figure per cgroup (the page counter its limits are checked
//! against), so the collector reads it rather than rebuilding it from
//! tracepoints. `memcg:mod_memcg_state` could keep a copy in a map, but it
//! fires on every page charged or uncharged (far hotter than a read per
//! cgroup per tick) and is absent on older kernels. Which files are read is
//! decided once, at start ([`Source::detect`]), and `shadow-agent check`
//! says which:
//!
//! - v2 with the memory controller: `memory.current`, and `anon`/`file`
//!   of `memory.stat`.
//! - otherwise the v1 memory hierarchy at the same relative path (hybrid
//!   hosts): `memory.usage_in_bytes`, and `total_rss`/`total_cache` of
//!   `memory.stat` (hierarchical, like the usage; `rss`/`cache` where the
//!   kernel has no `total_` lines).
//!
//! The time stalled in reclaim is not read here: the kernel programs time
//! it (`Counters::reclaim_stall_ns`).

use std::{
    collections::{HashMap, HashSet},
    fs::File,
    io::Read as _,
    path::{Path, PathBuf},
};

use serde::Serialize;
use shadow_common::{
    mounts::Mounts,
    values::{self, Bytes, ParseError},
};

use crate::collector::Sample;

/// Most bytes read of one memory file: v2 `memory.stat` is about 1.5 KiB
/// on 6.x kernels; anything far larger is not what the kernel writes.
const MAX_FILE: u64 = 64 * 1024;

/// A cgroup's memory at the end of an interval. None where the cgroup
/// has no such file (the v2 root, a cgroup without a v1 memory
/// directory) or the read failed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Memory {
    /// Bytes charged to the cgroup (and its descendants): what its limits
    /// are checked against (v2 `memory.current`, v1
    /// `memory.usage_in_bytes`).
    pub memory_bytes: Option<u64>,
    /// Anonymous memory (heap, stacks, private mappings).
    pub memory_anon_bytes: Option<u64>,
    /// Page cache (file-backed pages, tmpfs/shmem included).
    pub memory_file_bytes: Option<u64>,
}

/// Where memory levels come from on this host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// The v2 tree at this mount has the memory controller.
    V2(PathBuf),
    /// The v1 memory hierarchy mounted here.
    V1(PathBuf),
    /// Neither: memory is not observed.
    None,
}

/// Why one cgroup's memory could not be read.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    /// The file could not be opened or read.
    #[error("reading {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is larger than any the kernel writes.
    #[error("{path} is larger than {MAX_FILE} bytes")]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// The file's contents are not what the kernel writes.
    #[error("parsing {path}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        #[source]
        source: ParseError,
    },
}

impl MemoryError {
    /// True if the cgroup simply has no such file (gone, or never had
    /// one): not worth a warning.
    fn is_absent(&self) -> bool {
        matches!(self, Self::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }
}

impl Source {
    /// v2 if its root lists the memory controller, else v1's memory
    /// hierarchy if mounted.
    pub fn detect(mounts: &Mounts) -> Self {
        if let Some(v2) = &mounts.v2 {
            let controllers = std::fs::read_to_string(v2.join("cgroup.controllers"));
            if controllers.is_ok_and(|c| c.split_ascii_whitespace().any(|c| c == "memory")) {
                return Self::V2(v2.clone());
            }
        }
        match mounts.v1.get("memory") {
            Some(root) => Self::V1(root.clone()),
            None => Self::None,
        }
    }

    /// One line for `shadow-agent check`.
    pub fn describe(&self) -> String {
        match self {
            Self::V2(root) => format!(
                "cgroup v2 memory.current, memory.stat anon/file under {}",
                root.display()
            ),
            Self::V1(root) => format!(
                "cgroup v1 memory.usage_in_bytes, memory.stat total_rss/total_cache under {}",
                root.display()
            ),
            Self::None => "none: no cgroup memory controller is mounted".to_owned(),
        }
    }
}

/// Reads memory levels each tick, reusing one buffer.
///
/// `memory.stat` costs about twice the usage file to produce, and most
/// cgroups of a large host hold still from one tick to the next: the
/// split into anon and file is read again only when the usage moved (a
/// change of composition at exactly the same total is missed until the
/// total moves).
pub struct MemoryReader {
    source: Source,
    buf: String,
    /// Last tick's figures per path, and this tick's being made.
    last: HashMap<String, Memory>,
    next: HashMap<String, Memory>,
    /// Paths already warned about, so a bad file is named once, not every
    /// tick (cleared when it grows large).
    warned: HashSet<String>,
}

impl MemoryReader {
    /// A reader of `source`.
    pub fn new(source: Source) -> Self {
        Self {
            source,
            buf: String::new(),
            last: HashMap::new(),
            next: HashMap::new(),
            warned: HashSet::new(),
        }
    }

    /// Where it reads.
    pub fn source(&self) -> &Source {
        &self.source
    }

    /// Fills in every sample's memory, read now (the end of its interval).
    pub fn fill(&mut self, samples: &mut [Sample]) {
        self.next.clear();
        for s in samples {
            let known = self.last.get(&s.cgroup).copied();
            s.memory = match self.read_after(&s.cgroup, known) {
                Ok(m) => {
                    self.next.insert(s.cgroup.clone(), m);
                    m
                }
                Err(e) => {
                    if !e.is_absent() && self.warned.insert(s.cgroup.clone()) {
                        if self.warned.len() > 1000 {
                            self.warned.clear();
                        }
                        tracing::warn!(cgroup = %s.cgroup, cause = %DisplayChain(&e), "memory not read");
                    }
                    Memory::default()
                }
            };
        }
        // Only this tick's cgroups are remembered: removed ones go.
        std::mem::swap(&mut self.last, &mut self.next);
    }

    /// The memory of cgroup `path` (relative to the v2 root).
    pub fn read(&mut self, path: &str) -> Result<Memory, MemoryError> {
        self.read_after(path, None)
    }

    /// [`MemoryReader::read`], reusing `known`'s anon and file split when
    /// the usage is still `known`'s.
    fn read_after(&mut self, path: &str, known: Option<Memory>) -> Result<Memory, MemoryError> {
        let rel = path.trim_start_matches('/');
        let (dir, usage_file, v2) = match &self.source {
            Source::V2(root) => (root.join(rel), "memory.current", true),
            Source::V1(root) => (root.join(rel), "memory.usage_in_bytes", false),
            Source::None => return Ok(Memory::default()),
        };
        let usage_path = dir.join(usage_file);
        read_bounded(&usage_path, &mut self.buf)?;
        let parsed = if v2 {
            Bytes::parse_v2(&self.buf)
        } else {
            Bytes::parse_v1(&self.buf)
        };
        let usage = match parsed {
            Ok(Bytes::Limit(n)) => n,
            Ok(Bytes::Max) => {
                return Err(MemoryError::Parse {
                    path: usage_path,
                    source: ParseError::new("bytes in use", self.buf.trim()),
                });
            }
            Err(source) => {
                return Err(MemoryError::Parse {
                    path: usage_path,
                    source,
                });
            }
        };
        if let Some(k) = known.filter(|k| k.memory_bytes == Some(usage)) {
            return Ok(k);
        }
        let stat_path = dir.join("memory.stat");
        read_bounded(&stat_path, &mut self.buf)?;
        let bad_stat = |source| MemoryError::Parse {
            path: stat_path.clone(),
            source,
        };
        let (anon, file) = if v2 {
            let [anon, file] =
                values::memory_stat(&self.buf, ["anon", "file"]).map_err(bad_stat)?;
            (anon, file)
        } else {
            let [rss, cache, total_rss, total_cache] =
                values::memory_stat(&self.buf, ["rss", "cache", "total_rss", "total_cache"])
                    .map_err(bad_stat)?;
            (total_rss.or(rss), total_cache.or(cache))
        };
        Ok(Memory {
            memory_bytes: Some(usage),
            memory_anon_bytes: anon,
            memory_file_bytes: file,
        })
    }
}

/// Reads at most [`MAX_FILE`] bytes of `path` into `buf`.
fn read_bounded(path: &Path, buf: &mut String) -> Result<(), MemoryError> {
    buf.clear();
    let io = |source| MemoryError::Io {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(io)?;
    let n = file.take(MAX_FILE + 1).read_to_string(buf).map_err(io)?;
    if n as u64 > MAX_FILE {
        return Err(MemoryError::TooLarge {
            path: path.to_owned(),
        });
    }
    Ok(())
}

/// An error with its causes, `a: b: c`, for one log field.
struct DisplayChain<'a>(&'a dyn std::error::Error);

impl std::fmt::Display for DisplayChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(c) = cause {
            write!(f, ": {c}")?;
            cause = c.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    /// A sample of `/a` carrying `memory`.
    fn sample_of_a(memory: Memory) -> Sample {
        Sample {
            ts: 1.0,
            cgroup: "/a".into(),
            cgroup_id: 1,
            interval_ns: 1,
            usage: agent_ebpf::Counters::default(),
            memory,
        }
    }

    fn tree(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("shadow-memory-{name}-{}", std::process::id()));
        fs::create_dir_all(dir.join("a")).unwrap();
        dir
    }

    #[test]
    fn reads_v2_current_and_stat() {
        let root = tree("v2");
        fs::write(root.join("a/memory.current"), "1052672\n").unwrap();
        fs::write(
            root.join("a/memory.stat"),
            "anon 1000000\nfile 40960\nkernel 8192\n",
        )
        .unwrap();
        let mut r = MemoryReader::new(Source::V2(root.clone()));
        let m = r.read("/a").unwrap();
        assert_eq!(
            m,
            Memory {
                memory_bytes: Some(1_052_672),
                memory_anon_bytes: Some(1_000_000),
                memory_file_bytes: Some(40960),
            }
        );
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn reads_v1_usage_and_the_hierarchical_stat() {
        let root = tree("v1");
        fs::write(root.join("a/memory.usage_in_bytes"), "90112\n").unwrap();
        fs::write(
            root.join("a/memory.stat"),
            "cache 4096\nrss 8192\ntotal_cache 40960\ntotal_rss 49152\n",
        )
        .unwrap();
        let mut r = MemoryReader::new(Source::V1(root.clone()));
        let m = r.read("/a").unwrap();
        assert_eq!(
            (m.memory_bytes, m.memory_anon_bytes, m.memory_file_bytes),
            (Some(90112), Some(49152), Some(40960))
        );
        // Without total_ lines (no hierarchy): the cgroup's own.
        fs::write(root.join("a/memory.stat"), "cache 4096\nrss 8192\n").unwrap();
        let m = r.read("/a").unwrap();
        assert_eq!(
            (m.memory_anon_bytes, m.memory_file_bytes),
            (Some(8192), Some(4096))
        );
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn the_split_is_read_again_only_when_the_usage_moved() {
        let root = tree("cache");
        fs::write(root.join("a/memory.current"), "8192\n").unwrap();
        fs::write(root.join("a/memory.stat"), "anon 4096\nfile 4096\n").unwrap();
        let mut r = MemoryReader::new(Source::V2(root.clone()));
        let mut samples = vec![sample_of_a(Memory::default())];
        r.fill(&mut samples);
        assert_eq!(samples[0].memory.memory_anon_bytes, Some(4096));
        // Same total: the split is not read again (a stat changed behind
        // an unchanged total is seen when the total moves).
        fs::write(root.join("a/memory.stat"), "anon 0\nfile 8192\n").unwrap();
        r.fill(&mut samples);
        assert_eq!(samples[0].memory.memory_anon_bytes, Some(4096));
        fs::write(root.join("a/memory.current"), "12288\n").unwrap();
        r.fill(&mut samples);
        let m = samples[0].memory;
        assert_eq!(
            (m.memory_bytes, m.memory_anon_bytes, m.memory_file_bytes),
            (Some(12288), Some(0), Some(8192))
        );
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn bad_or_missing_files_are_errors_never_panics() {
        let root = tree("bad");
        let mut r = MemoryReader::new(Source::V2(root.clone()));
        assert!(r.read("/a").unwrap_err().is_absent());
        assert!(r.read("/gone").unwrap_err().is_absent());
        for (current, stat) in [
            ("max\n", "anon 1\n"),
            ("-5\n", "anon 1\n"),
            ("12\n", "anon x\n"),
            ("\u{0}\u{1}", ""),
        ] {
            fs::write(root.join("a/memory.current"), current).unwrap();
            fs::write(root.join("a/memory.stat"), stat).unwrap();
            let e = r.read("/a").unwrap_err();
            assert!(
                matches!(e, MemoryError::Parse { .. }),
                "{current:?} {stat:?}: {e}"
            );
        }
        fs::write(root.join("a/memory.current"), "1\n").unwrap();
        fs::write(root.join("a/memory.stat"), "x 1\n".repeat(20_000)).unwrap();
        assert!(matches!(r.read("/a"), Err(MemoryError::TooLarge { .. })));
        // A sample whose files are bad gets no figures, and no panic.
        let mut samples = vec![sample_of_a(Memory {
            memory_bytes: Some(7),
            ..Memory::default()
        })];
        r.fill(&mut samples);
        assert_eq!(samples[0].memory, Memory::default());
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn no_memory_controller_reads_nothing() {
        let mut r = MemoryReader::new(Source::None);
        assert_eq!(r.read("/a").unwrap(), Memory::default());
        let m = Mounts::parse("31 30 0:27 / /x rw - cgroup2 cgroup2 rw");
        // A v2 mount that does not exist lists no controllers.
        assert_eq!(Source::detect(&m), Source::None);
    }
}
