//! `observe --forecast`: the shadows forecast each cgroup's CPU demand.

use std::time::Duration;

use shadow_tests::{Agent, TestCgroup, finish, workload};

/// A cgroup that burns one CPU for 4 s: the forecast follows it (its mean
/// over the second half is within 30% of the mean usage there) and the upper
/// band is never below the point forecast.
#[test]
fn forecast_follows_a_steady_workload() {
    let cg = TestCgroup::new("forecast", &[]);
    let agent = Agent::start_with(&cg.path, "250ms", &["--forecast"]);
    finish(cg.spawn(&mut workload(&["burn", "4"])));
    let samples = agent.stop(Duration::from_millis(300));
    let rows: Vec<_> = samples
        .iter()
        .filter(|s| s["cgroup"] == cg.path.as_str())
        .collect();
    assert!(rows.len() >= 12, "too few intervals: {}", rows.len());
    for r in &rows {
        let (point, upper) = (
            r["cpu_forecast_cores"].as_f64().unwrap(),
            r["cpu_upper_cores"].as_f64().unwrap(),
        );
        assert!(point >= 0.0 && upper >= point, "bad forecast in {r}");
    }
    let half = &rows[rows.len() / 2..rows.len() - 2];
    let mean = |field: &str| {
        half.iter().map(|r| r[field].as_f64().unwrap()).sum::<f64>() / half.len() as f64
    };
    let (used, forecast) = (mean("cpu_demand_cores"), mean("cpu_forecast_cores"));
    eprintln!("mean usage {used:.3} cores, mean forecast {forecast:.3} cores");
    assert!(used > 0.2, "the workload barely ran ({used} cores)");
    assert!(
        (forecast / used - 1.0).abs() < 0.3,
        "forecast {forecast} vs usage {used}"
    );
}
