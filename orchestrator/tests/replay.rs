//! The fleet replay on the real public set: the five baselines must
//! reproduce BASELINES.md's figures to the printed digits, and Shadow
//! must keep the goals it meets.
//!
//! The traces live in the shared data folder beside the repository
//! (`../shared/data/traces/bitbrains`, as the agent's NAB backtest test
//! finds its traces). Missing data is an error, not a pass, so a broken
//! checkout cannot look green.

use std::path::PathBuf;

use shadow_orchestrator::replay::{
    cli::load,
    grid::Grid,
    policy::Settings,
    report::{dominance, printed},
    run::{Kind, replay},
    system::evaluate,
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

/// Shadow at the shipped defaults, and its quantile sweep, on the public
/// set: holds the goals of issue 13 that are met (median relative slack
/// at most 0.12 for CPU and 0.23 for memory; seriously impacted VM-days
/// at most 0.005 for CPU and 0.001 for memory; the sweep dominates every
/// baseline's (slack, impacted) point) as regression guards. The goal not
/// met (CPU mean violation share at most 0.005) is reported in
/// docs/benchmarks.md, not asserted.
#[test]
fn shadow_is_lean_and_its_sweep_dominates_the_baselines() {
    let grids = public_set();
    let mut kinds = Kind::BASELINES.to_vec();
    for quantile in [0.95, 0.8, 0.9, 0.99] {
        kinds.push(Kind::Shadow(Settings {
            quantile,
            ..Settings::default()
        }));
    }
    let rows = replay(&grids, &kinds);
    let default = |resource: &str| {
        rows.iter()
            .find(|r| r.resource == resource && r.kind == Kind::Shadow(Settings::default()))
            .map(|r| r.summary)
            .unwrap()
    };
    let (cpu, memory) = (default("cpu"), default("memory"));
    assert!(cpu.rel_slack_median <= 0.12, "{cpu:?}");
    assert!(cpu.seriously_impacted_share <= 0.005, "{cpu:?}");
    assert!(memory.rel_slack_median <= 0.23, "{memory:?}");
    assert!(memory.seriously_impacted_share <= 0.001, "{memory:?}");
    for d in dominance(&rows) {
        assert!(d.by_lead.is_some(), "{d:?} not dominated");
    }
}

/// The orchestrator's aggregate of all VMs, one step ahead: coverage
/// within 0.93..=0.97 and the pooled band's slack at most 0.6x the VMs'
/// own slack (issue 13's goals, met); and the lowest npinball of every
/// forecast of the sum.
#[test]
fn the_system_wide_forecast_is_calibrated_and_pools() {
    let result = evaluate(&public_set(), Settings::default());
    for resource in ["cpu", "memory"] {
        let of = |name: &str| {
            result
                .scores
                .iter()
                .find(|s| s.resource == resource && s.forecaster == name)
                .unwrap()
        };
        let aggregate = of("shadow-aggregate");
        assert!((0.93..=0.97).contains(&aggregate.coverage), "{aggregate:?}");
        for s in result.scores.iter().filter(|s| s.resource == resource) {
            assert!(aggregate.npinball <= s.npinball, "{s:?} vs {aggregate:?}");
        }
        let pooling = result
            .pooling
            .iter()
            .find(|p| p.resource == resource)
            .unwrap();
        assert!(pooling.ratio <= 0.6, "{pooling:?}");
    }
}
