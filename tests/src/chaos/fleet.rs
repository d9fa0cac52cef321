//! The managed cgroups of a chaos run and every knob file they have.

use std::{collections::BTreeMap, fs, os::unix::fs::MetadataExt as _, path::PathBuf};

use anyhow::Context as _;
use shadow_common::mounts::Mounts;
use shadow_orchestrator::actuator::Knob;

use crate::{
    TestCgroup,
    sandbox::{CpuHierarchy, Sandbox},
};

/// `/shadow-chaos-<pid>` and its children `c00`, `c01`, ..., each under a
/// static half-core quota; removed on drop (children first).
pub(crate) struct Fleet {
    /// The children, in order.
    pub(crate) members: Vec<Sandbox>,
    /// Each child's cgroup id (its v2 directory's inode), as an agent
    /// would report it.
    pub(crate) ids: Vec<u64>,
    /// The parent; after the children in the struct so it drops last.
    pub(crate) parent: TestCgroup,
    /// Every knob file of every child and its value before any start.
    originals: BTreeMap<PathBuf, String>,
}

impl Fleet {
    pub(crate) fn create(count: usize) -> anyhow::Result<Self> {
        let hierarchy = CpuHierarchy::detect()?;
        let parent_path = format!("/shadow-chaos-{}", std::process::id());
        let v1: &[&str] = match hierarchy {
            CpuHierarchy::V1 => &["cpu"],
            CpuHierarchy::V2 => &[],
        };
        let parent = TestCgroup::create(&parent_path, v1)?;
        if hierarchy == CpuHierarchy::V2 {
            // Our own cgroup: its children need the cpu controller.
            fs::write(parent.v2_dir().join("cgroup.subtree_control"), "+cpu")
                .context("enabling cpu for the chaos cgroups")?;
        }
        let mut members = Vec::new();
        let mut ids = Vec::new();
        for i in 0..count {
            let sandbox = Sandbox::create(&format!("{parent_path}/c{i:02}"), 0.5, false)?;
            ids.push(fs::metadata(sandbox.cg.v2_dir())?.ino());
            members.push(sandbox);
        }
        let mut fleet = Self {
            members,
            ids,
            parent,
            originals: BTreeMap::new(),
        };
        fleet.originals = fleet.knobs()?;
        anyhow::ensure!(
            !fleet.originals.is_empty(),
            "the chaos cgroups have no knob files"
        );
        Ok(fleet)
    }

    /// The glob that opts the children in.
    pub(crate) fn glob(&self) -> String {
        format!("{}/*", self.parent.path)
    }

    /// Every knob file of every child (in whichever hierarchies it
    /// exists) and its value now.
    fn knobs(&self) -> anyhow::Result<BTreeMap<PathBuf, String>> {
        let mounts = Mounts::from_system()?;
        let mut out = BTreeMap::new();
        for m in &self.members {
            for knob in Knob::ALL {
                let dir = if knob.is_v2() {
                    Some(m.cg.v2_dir().to_path_buf())
                } else {
                    mounts.v1_dir(knob.controller(), &m.cg.path)
                };
                let Some(file) = dir.map(|d| d.join(knob.file_name())) else {
                    continue;
                };
                if let Ok(text) = fs::read_to_string(&file) {
                    out.insert(file, text.trim().to_owned());
                }
            }
        }
        Ok(out)
    }

    /// How many knobs differ from their originals now (raised by a
    /// running orchestrator, or lost after one stopped).
    pub(crate) fn changed(&self) -> anyhow::Result<Vec<String>> {
        let now = self.knobs()?;
        Ok(self
            .originals
            .iter()
            .filter(|(file, was)| now.get(*file) != Some(was))
            .map(|(file, was)| {
                format!(
                    "{}: {was:?} before, {:?} now",
                    file.display(),
                    now.get(file)
                )
            })
            .collect())
    }

    /// Knobs checked and lost now; the lost ones are printed.
    pub(crate) fn check(&self, phase: &str) -> anyhow::Result<(u64, u64)> {
        let lost = self.changed()?;
        for l in &lost {
            eprintln!("chaos: {phase}: knob lost: {l}");
        }
        eprintln!(
            "chaos: {phase}: {} knobs checked, {} lost",
            self.originals.len(),
            lost.len()
        );
        Ok((self.originals.len() as u64, lost.len() as u64))
    }
}
