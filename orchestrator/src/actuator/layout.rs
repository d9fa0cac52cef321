//! Where each knob of a cgroup lives on this host.
//!
//! A cgroup is named by its path relative to the v2 root ("/shadow-demo/a").
//! On a pure v2 host its knobs are files in that v2 directory, for each
//! controller its parent enabled. On a hybrid host the v2 tree carries
//! identity only and each controller is a v1 hierarchy with the same
//! relative path below its own mount.

use std::{
    collections::HashMap,
    path::{Component, Path, PathBuf},
};

use shadow_common::mounts::{CgroupError, Mounts};

use super::{
    cgroupfs,
    error::ActuatorError,
    knob::{Knob, Resource, ResourceKnobs},
};

/// The cgroup mounts the actuator writes under.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Layout {
    v2: Option<PathBuf>,
    v1: HashMap<String, PathBuf>,
}

impl Layout {
    /// The mounts found in mountinfo (see [`Mounts`]).
    pub fn from_mounts(mounts: &Mounts) -> Self {
        Self {
            v2: mounts.v2.clone(),
            v1: mounts.v1.clone(),
        }
    }

    /// This host's mounts.
    pub fn from_system() -> Result<Self, CgroupError> {
        Mounts::from_system().map(|m| Self::from_mounts(&m))
    }

    /// Arbitrary roots, for tests over a directory tree mimicking cgroupfs:
    /// `v2` as the v2 mount, `v1` as (controller, mount) pairs.
    pub fn new<'a>(v2: Option<PathBuf>, v1: impl IntoIterator<Item = (&'a str, PathBuf)>) -> Self {
        Self {
            v2,
            v1: v1.into_iter().map(|(c, p)| (c.to_owned(), p)).collect(),
        }
    }

    /// The directory holding `knob` for `cgroup`.
    pub fn dir(&self, cgroup: &str, knob: Knob) -> Result<PathBuf, ActuatorError> {
        let rel = relative(cgroup)?;
        let (root, hierarchy) = if knob.is_v2() {
            (self.v2.as_ref(), "the v2 hierarchy".to_owned())
        } else {
            let c = knob.controller();
            (self.v1.get(c), format!("the v1 {c} controller"))
        };
        let root = root.ok_or_else(|| ActuatorError::NoController {
            knob,
            cgroup: cgroup.to_owned(),
            hierarchy,
        })?;
        Ok(root.join(rel))
    }

    /// The file of `knob` for `cgroup`.
    pub fn file(&self, cgroup: &str, knob: Knob) -> Result<PathBuf, ActuatorError> {
        Ok(self.dir(cgroup, knob)?.join(knob.file_name()))
    }

    /// The v2 controllers available to `cgroup` (its `cgroup.controllers`,
    /// which lists what the parent's `cgroup.subtree_control` enabled).
    /// Empty when there is no v2 mount.
    pub fn v2_controllers(&self, cgroup: &str) -> Result<Vec<String>, ActuatorError> {
        let rel = relative(cgroup)?;
        let Some(v2) = &self.v2 else {
            return Ok(Vec::new());
        };
        let text = cgroupfs::read(&v2.join(rel).join("cgroup.controllers"), cgroup)?;
        Ok(text.split_ascii_whitespace().map(str::to_owned).collect())
    }

    /// The knobs that exist for `resource` of `cgroup` on this host, soft
    /// first: the v2 ones when the resource's v2 controller is enabled for
    /// the cgroup, else the v1 ones when that controller is mounted and the
    /// cgroup exists there. Only knobs whose file exists are listed
    /// (`io.weight` needs blk-iocost, `blkio.bfq.weight` needs BFQ).
    /// `Resource::Net` has none. A cgroup missing from v2 is `Gone`.
    pub fn knobs_for(&self, cgroup: &str, resource: Resource) -> Result<Vec<Knob>, ActuatorError> {
        let (Some(v2c), Some(v1c)) = (resource.v2_controller(), resource.v1_controller()) else {
            return Ok(Vec::new());
        };
        let v2 = self.v2.is_some() && self.v2_controllers(cgroup)?.iter().any(|c| c == v2c);
        if !v2 && !self.v1.contains_key(v1c) {
            return Ok(Vec::new());
        }
        let mut knobs = Vec::new();
        for &knob in resource.knobs(v2) {
            if self.file(cgroup, knob)?.is_file() {
                knobs.push(knob);
            }
        }
        Ok(knobs)
    }

    /// True if `path` lies below one of the cgroup mounts: the journal only
    /// ever restores files there.
    pub fn contains(&self, path: &Path) -> bool {
        let clean = path.is_absolute()
            && path
                .components()
                .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
        clean
            && self
                .v2
                .iter()
                .chain(self.v1.values())
                .any(|root| path.starts_with(root) && path != root)
    }
}

/// `cgroup` without its leading '/', refused if it is the root or could
/// leave the mount ("." or ".." components, doubled slashes are fine).
fn relative(cgroup: &str) -> Result<&str, ActuatorError> {
    let rel = cgroup
        .strip_prefix('/')
        .map(|r| r.trim_matches('/'))
        .filter(|r| !r.is_empty() && !r.contains('\0'))
        .filter(|r| {
            Path::new(r)
                .components()
                .all(|c| matches!(c, Component::Normal(_)))
        });
    rel.ok_or_else(|| ActuatorError::BadCgroup(cgroup.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actuator::fake::FakeTree;

    #[test]
    fn cgroup_paths_cannot_escape_or_name_the_root() {
        for bad in ["", "/", "a", "/a/../b", "/./a", "/a/..", "//", "/a\0b"] {
            assert!(relative(bad).is_err(), "{bad:?}");
        }
        assert_eq!(relative("/a/b").unwrap(), "a/b");
        assert_eq!(relative("/a/b/").unwrap(), "a/b");
    }

    #[test]
    fn v2_knobs_where_the_controller_is_enabled_else_v1() {
        let tree = FakeTree::new("layout");
        // cpu enabled in v2; memory and io only on v1.
        tree.v2_cgroup("/g", &["cpu"]);
        tree.v1_cgroup("/g");
        let layout = tree.layout();
        assert_eq!(
            layout.knobs_for("/g", Resource::Cpu).unwrap(),
            [Knob::CpuWeight, Knob::CpuMax]
        );
        assert_eq!(
            layout.knobs_for("/g", Resource::Memory).unwrap(),
            [Knob::MemorySoftLimit, Knob::MemoryLimit]
        );
        assert_eq!(
            layout.knobs_for("/g", Resource::Io).unwrap(),
            [Knob::BlkioWeight]
        );
        assert!(layout.knobs_for("/g", Resource::Net).unwrap().is_empty());
        assert_eq!(
            layout.file("/g", Knob::CpuShares).unwrap(),
            tree.root.join("cpu/g/cpu.shares")
        );
        assert_eq!(
            layout.file("/g", Knob::CpuMax).unwrap(),
            tree.root.join("unified/g/cpu.max")
        );
    }

    #[test]
    fn missing_cgroup_is_gone_and_missing_mount_is_named() {
        let tree = FakeTree::new("layout-gone");
        let layout = tree.layout();
        let err = layout.knobs_for("/nope", Resource::Cpu).unwrap_err();
        assert!(err.is_gone(), "{err}");
        let layout = Layout::new(None, []);
        let err = layout.file("/a", Knob::CpuShares).unwrap_err();
        assert!(err.to_string().contains("v1 cpu controller"), "{err}");
        // No v2 and no v1 memory: nothing to write, not an error.
        assert!(layout.knobs_for("/a", Resource::Memory).unwrap().is_empty());
    }

    #[test]
    fn contains_only_paths_below_a_mount() {
        let layout = Layout::new(
            Some("/sys/fs/cgroup/unified".into()),
            [("memory", PathBuf::from("/sys/fs/cgroup/memory"))],
        );
        assert!(layout.contains(Path::new("/sys/fs/cgroup/memory/a/memory.limit_in_bytes")));
        assert!(layout.contains(Path::new("/sys/fs/cgroup/unified/a/cpu.max")));
        assert!(!layout.contains(Path::new("/sys/fs/cgroup/memory")));
        assert!(!layout.contains(Path::new("/sys/fs/cgroup/memory/../../../etc/passwd")));
        assert!(!layout.contains(Path::new("/etc/passwd")));
        assert!(!layout.contains(Path::new("memory/a")));
    }
}
