//! Backtest tests: synthetic series through the whole pipeline, and the
//! public NAB traces when they are present.

use super::*;

fn args(files: Vec<PathBuf>, model: Vec<ModelChoice>) -> BacktestArgs {
    BacktestArgs {
        files,
        format: Format::Json,
        model,
        quantile: vec![0.95],
        horizons: vec![1, 6],
        metric: "cpu_ns".into(),
        cgroup: None,
        season: None,
        residual_window: None,
        vpa_half_life: None,
        report_change: 0.10,
        report_heartbeat: 30.0,
        summary: false,
        plot: None,
    }
}

#[test]
fn every_model_scores_a_synthetic_series() {
    let values: Vec<f64> = (0..600)
        .map(|t| 10.0 + ((t % 24) as f64 - 12.0).abs())
        .collect();
    let series = Trace {
        name: "saw".into(),
        interval_s: 300.0,
        values,
    };
    let p = Protocol::for_interval(300.0, vec![1, 6], 0.95);
    assert_eq!((p.season, p.window), (288, 288));
    for model in [
        Model::Shadow,
        Model::Naive,
        Model::SeasonalNaive,
        Model::Ewma,
        Model::Vpa,
    ] {
        let (rows, _) = evaluate(&series, model, &p).unwrap();
        assert_eq!(rows.len(), 2);
        for r in &rows {
            assert_eq!(
                r.metrics.points as usize,
                600 - 299 - r.horizon,
                "{model:?}"
            );
            assert!(r.metrics.npinball.is_finite(), "{model:?}");
        }
    }
}

/// The one end-to-end check on real data: runs Shadow on the public NAB
/// traces. Missing data is an error, not a pass, so a broken checkout cannot
/// look green.
///
/// Holds the calibration targets (mean coverage of the 0.95 band in
/// 0.93..0.97, no file below 0.85) and, as a regression guard, a median
/// npinball below the naive reference (0.0660 / 0.0667 in BASELINES.md).
/// The accuracy target (below seasonal naive's 0.0543 / 0.0544) is
/// met by a small margin (0.0507 / 0.0500 measured, set by one file,
/// `c6585a`) and is deliberately not asserted: see docs/benchmarks.md.
#[test]
fn nab_backtest_meets_targets() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/traces/nab");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| {
            panic!(
                "NAB traces not found at {} ({e}); they live in the shared data folder beside the repository",
                dir.display()
            )
        })
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "csv"))
        .collect();
    files.sort();
    assert_eq!(
        files.len(),
        12,
        "expected the 12 public NAB traces in {}",
        dir.display()
    );
    let mut panels = Vec::new();
    let rows = evaluate_files(&args(files, vec![ModelChoice::Shadow]), Some(&mut panels)).unwrap();
    // One panel per file for --plot: realised, forecast, band, held band.
    assert_eq!(panels.len(), 12);
    assert!(panels.iter().all(|p| p.series.len() == 4));
    for a in report::aggregate(&rows) {
        let naive = if a.horizon == 1 { 0.0660 } else { 0.0667 };
        assert!(
            a.npinball_median < naive,
            "h={} median npinball {}",
            a.horizon,
            a.npinball_median
        );
        assert!(
            (0.93..=0.97).contains(&a.coverage_mean),
            "h={} coverage {}",
            a.horizon,
            a.coverage_mean
        );
        assert!(
            a.coverage_min >= 0.85,
            "h={} min coverage {}",
            a.horizon,
            a.coverage_min
        );
    }
}
