//! The fleet replay on the real public set: the five baselines must
//! reproduce BASELINES.md's figures to the printed digits.
//!
//! The traces live in the shared data folder beside the repository
//! (`../shared/data/traces/bitbrains`, as the agent's NAB backtest test
//! finds its traces). Missing data is an error, not a pass, so a broken
//! checkout cannot look green.

use std::path::PathBuf;

use shadow_orchestrator::replay::{
    cli::load,
    grid::Grid,
    report::printed,
    run::{Kind, replay},
};

fn folder() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/traces/bitbrains")
}

fn public_set() -> Vec<Grid> {
    let dir = folder();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| {
            panic!(
                "Bitbrains traces not found at {} ({e}); they live in the shared data folder beside the repository",
                dir.display()
            )
        })
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".csv.zst"))
        .collect();
    files.sort();
    assert_eq!(
        files.len(),
        96,
        "expected the 96 public VMs in {}",
        dir.display()
    );
    load(&files).expect("the public traces load")
}

/// BASELINES.md's rows: (resource, recommender, VMs, VM-days, the seven
/// printed figures).
fn published() -> Vec<(String, String, usize, usize, Vec<String>)> {
    let path = folder().join("BASELINES.md");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{} not readable: {e}", path.display()));
    text.lines()
        .filter(|l| l.starts_with("| PUBLIC |"))
        .map(|l| {
            let f: Vec<String> = l
                .trim_matches('|')
                .split('|')
                .map(|s| s.trim().to_owned())
                .collect();
            let resource = if f[1] == "mem" { "memory" } else { "cpu" };
            (
                resource.to_owned(),
                f[2].clone(),
                f[3].parse().unwrap(),
                f[4].parse().unwrap(),
                f[5..12].to_vec(),
            )
        })
        .collect()
}

#[test]
fn baselines_reproduce_the_published_figures() {
    let grids = public_set();
    let rows = replay(&grids, &Kind::BASELINES);
    let expected = published();
    assert_eq!(
        expected.len(),
        10,
        "5 baselines x 2 resources in BASELINES.md"
    );
    assert_eq!(rows.len(), expected.len());
    for (resource, name, vms, vm_days, figures) in expected {
        let row = rows
            .iter()
            .find(|r| r.resource == resource && r.kind.name() == name)
            .unwrap_or_else(|| panic!("no row for {resource} {name}"));
        let got = printed(&row.summary);
        assert_eq!(
            (row.summary.vms, row.summary.vm_days, got.to_vec()),
            (vms, vm_days, figures),
            "{resource} {name}"
        );
    }
}
