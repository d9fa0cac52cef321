//! Where the cgroup hierarchies are mounted: the v2 tree (identity) and,
//! on hybrid hosts, each v1 controller's tree at the same relative path
//! (where that controller's knobs live). Both binaries need it: the agent
//! to walk and resolve cgroups, the orchestrator to find the knobs.

use std::{
    collections::HashMap,
    fs,
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
}
