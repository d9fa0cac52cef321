//! cgroup mounts and the cgroup id → path index.
//!
//! A component is a cgroup path relative to the v2 root (as in
//! `/proc/<pid>/cgroup`'s `0::` line). The kernel keys counters by the v2
//! cgroup id, which is the inode number of the cgroup's directory. On hybrid
//! hosts the same relative path under a v1 controller's mount is where that
//! controller's knobs live.

use std::{
    collections::HashMap,
    fs,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

/// Why the cgroup mounts could not be found or read.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// /proc/self/mountinfo could not be read.
    #[error("cannot read /proc/self/mountinfo: {0}")]
    MountInfo(#[source] std::io::Error),
    /// No cgroup2 file system is mounted.
    #[error("no cgroup v2 hierarchy is mounted (mount -t cgroup2 none /sys/fs/cgroup/unified)")]
    NoV2,
}

/// Where the cgroup hierarchies are mounted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mounts {
    /// Mount point of the v2 hierarchy.
    pub v2: Option<PathBuf>,
    /// v1 controller name → mount point (`cpu` → `/sys/fs/cgroup/cpu`).
    pub v1: HashMap<String, PathBuf>,
}

impl Mounts {
    /// Reads this process's mount table.
    pub fn from_system() -> Result<Self, CgroupError> {
        let text = fs::read_to_string("/proc/self/mountinfo").map_err(CgroupError::MountInfo)?;
        Ok(Self::parse(&text))
    }

    /// Parses mountinfo text (proc(5)).
    pub fn parse(mountinfo: &str) -> Self {
        let mut mounts = Self::default();
        for line in mountinfo.lines() {
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let mount_point = left.split(' ').nth(4);
            let mut right = right.split(' ');
            let (Some(mount_point), Some(fstype), Some(options)) =
                (mount_point, right.next(), right.nth(1))
            else {
                continue;
            };
            let path = PathBuf::from(unescape(mount_point));
            match fstype {
                "cgroup2" => mounts.v2 = mounts.v2.or(Some(path)),
                "cgroup" => {
                    for opt in options.split(',') {
                        // Mount options that are not controller names.
                        let option = matches!(
                            opt,
                            "rw" | "ro"
                                | "xattr"
                                | "noprefix"
                                | "clone_children"
                                | "cpuset_v2_mode"
                                | "favordynmods"
                        );
                        if !option && !opt.contains('=') {
                            mounts
                                .v1
                                .entry(opt.to_owned())
                                .or_insert_with(|| path.clone());
                        }
                    }
                }
                _ => {}
            }
        }
        mounts
    }

    /// The v2 mount point, or an error saying how to get one.
    pub fn v2_root(&self) -> Result<&Path, CgroupError> {
        self.v2.as_deref().ok_or(CgroupError::NoV2)
    }

    /// Directory of cgroup `path` (relative to the v2 root) under v1
    /// controller `controller`, if that controller is mounted on v1.
    pub fn v1_dir(&self, controller: &str, path: &str) -> Option<PathBuf> {
        Some(self.v1.get(controller)?.join(path.trim_start_matches('/')))
    }
}

/// mountinfo escapes spaces, tabs, newlines and backslashes as octal.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let code = rest
            .get(i + 1..i + 4)
            .and_then(|o| u8::from_str_radix(o, 8).ok());
        match code {
            Some(c) => {
                out.push(char::from(c));
                rest = &rest[i + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The v2 cgroup id of directory `dir` (its inode number).
pub fn id_of(dir: &Path) -> std::io::Result<u64> {
    Ok(fs::metadata(dir)?.ino())
}

/// cgroup id → path. A full walk of the v2 tree finds every cgroup (and
/// so which ones are gone); a single unknown id is resolved directly from
/// the kernel with [`resolve`], without a walk.
#[derive(Debug)]
pub struct Index {
    root: PathBuf,
    paths: HashMap<u64, String>,
}

/// The path of cgroup `id` under the v2 mount `root`, asked of the kernel:
/// cgroupfs accepts the id as a file handle (`FILEID_KERNFS`), so
/// `open_by_handle_at` opens the directory and /proc names it. None if the
/// cgroup no longer exists (or handles are not allowed: needs
/// CAP_DAC_READ_SEARCH).
pub fn resolve(root: &Path, id: u64) -> Option<String> {
    use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
    const FILEID_KERNFS: i32 = 0xfe;
    #[repr(C)]
    struct Handle {
        handle_bytes: u32,
        handle_type: i32,
        id: u64,
    }
    let mount = fs::File::open(root).ok()?;
    let handle = Handle {
        handle_bytes: 8,
        handle_type: FILEID_KERNFS,
        id,
    };
    // SAFETY: `handle` is a valid `struct file_handle` with 8 bytes of
    // payload; the returned descriptor is owned below.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_by_handle_at,
            mount.as_raw_fd(),
            std::ptr::from_ref(&handle),
            libc::O_RDONLY | libc::O_CLOEXEC | libc::O_DIRECTORY,
        )
    };
    if fd < 0 {
        return None;
    }
    // SAFETY: a fresh descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let target = fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).ok()?;
    let rel = target.strip_prefix(root).ok()?;
    Some(format!("/{}", rel.to_string_lossy()))
}

/// Walks the v2 tree at `root`: every cgroup's id and path. Directories that
/// vanish mid-walk are skipped: cgroups come and go while we look.
pub fn scan(root: &Path) -> HashMap<u64, String> {
    let mut paths = HashMap::new();
    let mut stack = vec![(root.to_path_buf(), String::from("/"))];
    while let Some((dir, path)) = stack.pop() {
        let Ok(id) = id_of(&dir) else { continue };
        paths.insert(id, path.clone());
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                let name = entry.file_name().to_string_lossy().into_owned();
                let child = if path == "/" {
                    format!("/{name}")
                } else {
                    format!("{path}/{name}")
                };
                stack.push((entry.path(), child));
            }
        }
    }
    paths
}

impl Index {
    /// An index of the v2 tree at `root`, scanned once.
    pub fn new(root: PathBuf) -> Self {
        let mut index = Self {
            root,
            paths: HashMap::new(),
        };
        index.rescan();
        index
    }

    /// The path of cgroup `id`, if it existed at the last scan.
    pub fn path(&self, id: u64) -> Option<&str> {
        self.paths.get(&id).map(String::as_str)
    }

    /// Number of cgroups at the last scan.
    pub fn len(&self) -> usize {
        self.paths.len()
    }

    /// True when the last scan found nothing (not even the root).
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    /// Walks the whole tree again, here and now.
    pub fn rescan(&mut self) {
        self.paths = scan(&self.root);
    }

    /// Replaces the index with the result of a walk done elsewhere.
    pub fn replace(&mut self, paths: HashMap<u64, String>) {
        self.paths = paths;
    }

    /// Looks up one unknown id in the kernel and remembers it.
    pub fn resolve(&mut self, id: u64) -> Option<&str> {
        if !self.paths.contains_key(&id) {
            let path = resolve(&self.root, id)?;
            self.paths.insert(id, path);
        }
        self.path(id)
    }

    /// The v2 mount point this index walks.
    pub fn root(&self) -> &Path {
        &self.root
    }
}

/// True if `path` is `filter` or below it (`/a` matches `/a` and `/a/b`,
/// not `/ab`).
pub fn is_within(path: &str, filter: &str) -> bool {
    let filter = filter.trim_end_matches('/');
    filter.is_empty()
        || path == filter
        || path
            .strip_prefix(filter)
            .is_some_and(|rest| rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
30 25 0:26 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
33 30 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
34 30 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 30 0:31 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
36 30 0:32 / /sys/fs/cgroup/blk\\040io rw,relatime - cgroup cgroup rw,blkio";

    #[test]
    fn parses_hybrid_layout() {
        let m = Mounts::parse(HYBRID);
        assert_eq!(m.v2.as_deref(), Some(Path::new("/sys/fs/cgroup/unified")));
        assert_eq!(m.v1["cpu"], Path::new("/sys/fs/cgroup/cpu"));
        assert_eq!(m.v1["blkio"], Path::new("/sys/fs/cgroup/blk io"));
        assert!(!m.v1.contains_key("xattr") && !m.v1.contains_key("name=systemd"));
        assert_eq!(
            m.v1_dir("cpu", "/a/b").unwrap(),
            Path::new("/sys/fs/cgroup/cpu/a/b")
        );
        assert!(m.v1_dir("memory", "/a").is_none());
    }

    #[test]
    fn no_v2_is_an_error_with_a_fix() {
        let m = Mounts::parse("33 30 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu");
        let err = m.v2_root().unwrap_err().to_string();
        assert!(err.contains("mount -t cgroup2"), "{err}");
    }

    #[test]
    fn filter_matches_subtree_only() {
        assert!(is_within("/a", "/a"));
        assert!(is_within("/a/b", "/a/"));
        assert!(!is_within("/ab", "/a"));
        assert!(is_within("/anything", "/"));
    }

    #[test]
    fn index_maps_inodes_to_paths() {
        let dir = std::env::temp_dir().join(format!("shadow-index-{}", std::process::id()));
        fs::create_dir_all(dir.join("a/b")).unwrap();
        let index = Index::new(dir.clone());
        let id = id_of(&dir.join("a/b")).unwrap();
        assert_eq!(index.path(id), Some("/a/b"));
        assert_eq!(index.path(id_of(&dir).unwrap()), Some("/"));
        assert_eq!(index.len(), 3);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn resolves_a_real_cgroup_id_from_the_kernel() {
        // The v2 root always exists; resolving needs CAP_DAC_READ_SEARCH,
        // which the agent (root) has. Unprivileged runs check the refusal.
        let mounts = Mounts::from_system().unwrap();
        let root = mounts.v2_root().expect("these hosts mount cgroup v2");
        let id = id_of(root).unwrap();
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            assert_eq!(resolve(root, id).as_deref(), Some("/"));
            assert_eq!(resolve(root, u64::MAX), None);
        } else {
            assert_eq!(resolve(root, id), None);
        }
    }
}
