//! The cgroup id → path index.
//!
//! A component is a cgroup path relative to the v2 root (as in
//! `/proc/<pid>/cgroup`'s `0::` line). The kernel keys counters by the v2
//! cgroup id, which is the inode number of the cgroup's directory.

use std::{
    collections::HashMap,
    fs,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

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
    use shadow_common::mounts::Mounts;

    use super::*;

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
