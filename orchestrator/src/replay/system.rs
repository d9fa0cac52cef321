//! The system-wide forecast on real data (issue 13, part 2): all VMs of
//! the set as the components of one host, the orchestrator's aggregate
//! ([`Aggregator`]) forecasting their sum one step ahead, scored as a
//! single series against the baselines run on the summed series, and the
//! pooling gain: how much less the aggregate band leaves unused than the
//! per-VM reservations together.
//!
//! Clock: the VMs' grids are aligned on their UTC bins; at every bin each
//! VM present steps its own Shadow policy (as in the per-VM replay), then
//! the aggregate sums the forecasts held at that moment, as the engine's
//! cycle does. The summed usage of a bin is observed when every VM
//! present then was observed (else the bin is not scored: a missing
//! sample is a gap in the data, not zero usage); scoring starts one day
//! after the first bin.

use std::fmt::Write as _;

use serde::Serialize;
use shadow_forecast::pinball;

use super::{
    Recommender,
    grid::{Grid, Series},
    policy::{Settings, Shadow},
    run::{Kind, drive, input},
    score::WARMUP,
};
use crate::{
    aggregate::{Aggregator, Sums},
    book::slot,
    capacity::Capacity,
};

/// How a forecast of the summed series fared.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SumScore {
    /// "cpu" or "memory".
    pub resource: &'static str,
    /// "shadow-aggregate" (the diversified band), "shadow-sum-of-bands"
    /// (the VMs' one-step bands added up), "shadow-sum-of-reservations"
    /// (what the VMs reserve: bands over the lead, with margins) or a
    /// baseline.
    pub forecaster: &'static str,
    /// Scored steps.
    pub steps: usize,
    /// Share of scored steps with the sum at or under the band.
    pub coverage: f64,
    /// Pinball loss at Shadow's quantile over the mean of the sum.
    pub npinball: f64,
    /// Σ max(0, Y - U) / Σ Y.
    pub shortfall_total: f64,
    /// Σ max(0, U - Y) / Σ Y.
    pub slack_total: f64,
}

/// The pooling gain of one resource.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Pooling {
    /// "cpu" or "memory".
    pub resource: &'static str,
    /// Σ max(0, U - Y) of the aggregate band over the scored steps.
    pub pooled_slack: f64,
    /// Σ over VMs of max(0, L - y) of their own reservations.
    pub per_vm_slack: f64,
    /// `pooled_slack / per_vm_slack` (the goal: at most 0.6).
    pub ratio: f64,
    /// The aggregate's error correlation at the end.
    pub rho_last: f64,
}

/// Everything `--system` reports.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SystemResult {
    /// Per resource: the aggregate, the sum of reservations, the
    /// baselines on the summed series.
    pub scores: Vec<SumScore>,
    /// Per resource.
    pub pooling: Vec<Pooling>,
}

/// Per bin of the common clock: the summed usage (NaN unless every VM
/// present was observed), the aggregate band, the sum of the VMs'
/// reservations and of their slack.
struct Timeline {
    usage: Vec<f64>,
    band: Vec<f64>,
    band_sum: Vec<f64>,
    reserved: Vec<f64>,
    per_vm_slack: Vec<f64>,
    rho_last: f64,
}

/// Runs the system-wide forecast over `grids` for both resources.
pub fn evaluate(grids: &[Grid], settings: Settings) -> SystemResult {
    let mut out = SystemResult::default();
    for memory in [false, true] {
        let vms: Vec<(&Grid, &Series)> = grids
            .iter()
            .filter_map(|g| g.series(memory).map(|s| (g, s)))
            .collect();
        let Some(&(_, first)) = vms.first() else {
            continue;
        };
        let resource = first.unit.resource();
        let Some(sums) = aggregate(&vms, settings) else {
            continue;
        };
        let summed = Series {
            unit: first.unit,
            y: sums.usage.clone(),
            capacity: None,
        };
        let q = settings.quantile;
        let score = |forecaster, band: &[f64]| score(resource, forecaster, &sums.usage, band, q);
        out.scores.push(score("shadow-aggregate", &sums.band));
        out.scores
            .push(score("shadow-sum-of-bands", &sums.band_sum));
        out.scores
            .push(score("shadow-sum-of-reservations", &sums.reserved));
        for kind in &Kind::BASELINES[1..] {
            if let Some(mut r) = kind.build(&summed) {
                let (band, _) = drive(r.as_mut(), &summed);
                out.scores.push(score(kind.name(), &band));
            }
        }
        let scored = |k: usize| k >= WARMUP && !sums.usage[k].is_nan();
        let (mut pooled, mut per_vm) = (0.0, 0.0);
        for k in (0..sums.usage.len()).filter(|&k| scored(k)) {
            pooled += (sums.band[k] - sums.usage[k]).max(0.0);
            per_vm += sums.per_vm_slack[k];
        }
        out.pooling.push(Pooling {
            resource,
            pooled_slack: pooled,
            per_vm_slack: per_vm,
            ratio: pooled / per_vm,
            rho_last: sums.rho_last,
        });
    }
    out
}

/// Steps every VM's Shadow on the common clock and sums.
fn aggregate(vms: &[(&Grid, &Series)], settings: Settings) -> Option<Timeline> {
    let start = vms.iter().map(|(g, _)| g.bin0).min()?;
    let end = vms.iter().map(|(g, _)| g.bin0 + g.steps as i64).max()?;
    let mut policies = vms
        .iter()
        .map(|(_, s)| Shadow::new(s.unit, settings).ok())
        .collect::<Option<Vec<_>>>()?;
    let bins = (end - start) as usize;
    let mut out = Timeline {
        usage: vec![f64::NAN; bins],
        band: vec![f64::NAN; bins],
        band_sum: vec![f64::NAN; bins],
        reserved: vec![f64::NAN; bins],
        per_vm_slack: vec![0.0; bins],
        rho_last: f64::NAN,
    };
    let mut aggregator = Aggregator::default();
    for b in 0..bins {
        let mut sums = Sums::default();
        let (mut usage, mut reserved, mut slack, mut complete) = (0.0, 0.0, 0.0, true);
        let mut i = usize::MAX;
        for ((g, s), policy) in vms.iter().zip(&mut policies) {
            let Some(k) = (start + b as i64)
                .checked_sub(g.bin0)
                .map(|k| k as usize)
                .filter(|&k| k < g.steps)
            else {
                continue;
            };
            let limit = policy.step(input(s, k)).unwrap_or(0.0);
            i = slot(policy.resource());
            sums.add(i, policy.track(), policy.live());
            let y = s.y[k];
            if y.is_nan() {
                complete = false;
                continue;
            }
            usage += y;
            reserved += limit;
            slack += (limit - y).max(0.0);
        }
        if i == usize::MAX {
            continue;
        }
        let system = aggregator.finish(sums, &Capacity::default())[i];
        out.band[b] = system.upper;
        out.band_sum[b] = system.upper_sum;
        out.rho_last = system.rho;
        if complete {
            out.usage[b] = usage;
            out.reserved[b] = reserved;
            out.per_vm_slack[b] = slack;
        }
    }
    Some(out)
}

/// Scores a band for the summed series from the first day on.
fn score(
    resource: &'static str,
    forecaster: &'static str,
    y: &[f64],
    band: &[f64],
    q: f64,
) -> SumScore {
    let (mut n, mut covered) = (0usize, 0usize);
    let (mut sum_y, mut loss, mut short, mut over) = (0.0, 0.0, 0.0, 0.0);
    for k in WARMUP..y.len() {
        let (y, u) = (y[k], band[k]);
        if y.is_nan() || u.is_nan() {
            continue;
        }
        n += 1;
        covered += usize::from(y <= u);
        sum_y += y;
        loss += pinball(y, u, q);
        short += (y - u).max(0.0);
        over += (u - y).max(0.0);
    }
    SumScore {
        resource,
        forecaster,
        steps: n,
        coverage: covered as f64 / n.max(1) as f64,
        npinball: loss / sum_y,
        shortfall_total: short / sum_y,
        slack_total: over / sum_y,
    }
}

/// One JSON object per score and per pooling figure.
pub fn json_lines(r: &SystemResult) -> String {
    let mut out = String::new();
    for s in &r.scores {
        let _ = writeln!(out, "{}", serde_json::to_string(s).unwrap_or_default());
    }
    for p in &r.pooling {
        let _ = writeln!(out, "{}", serde_json::to_string(p).unwrap_or_default());
    }
    out
}

/// Markdown tables.
pub fn table(r: &SystemResult) -> String {
    let mut out = String::from(
        "| res | forecast of the sum | steps | coverage | npinball | shortfall | slack |\n|---|---|---|---|---|---|---|\n",
    );
    for s in &r.scores {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.3} | {:.4} | {:.4} | {:.3} |",
            s.resource,
            s.forecaster,
            s.steps,
            s.coverage,
            s.npinball,
            s.shortfall_total,
            s.slack_total
        );
    }
    out.push_str(
        "\n| res | pooled band slack | Σ per-VM slack | ratio | rho (last) |\n|---|---|---|---|---|\n",
    );
    for p in &r.pooling {
        let _ = writeln!(
            out,
            "| {} | {:.4e} | {:.4e} | {:.3} | {:.2} |",
            p.resource, p.pooled_slack, p.per_vm_slack, p.ratio, p.rho_last
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::Unit;

    fn grid(name: &str, bin0: i64, y: Vec<f64>) -> Grid {
        Grid {
            name: name.into(),
            bin0,
            steps: y.len(),
            cpu: Some(Series {
                unit: Unit::CpuMhz,
                y,
                capacity: None,
            }),
            memory: None,
        }
    }

    /// Independent noise on many VMs: the sum's band is narrower than the
    /// sum of the bands, so the pooled slack is well under the per-VM
    /// slack, and the aggregate covers the sum about as often as asked.
    #[test]
    fn independent_vms_pool() {
        let mut x = 3u64;
        let mut noise = move || {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 40) as f64 / (1u64 << 24) as f64
        };
        let grids: Vec<Grid> = (0..20)
            .map(|i| {
                let y = (0..1500).map(|_| 100.0 + 50.0 * noise()).collect();
                grid(&format!("vm-{i}"), i64::from(i % 3), y)
            })
            .collect();
        let r = evaluate(&grids, Settings::default());
        assert_eq!(r.pooling.len(), 1);
        let p = &r.pooling[0];
        assert!(p.ratio < 0.6, "pooled / per-VM slack {}", p.ratio);
        assert!(p.rho_last < 0.3, "rho {}", p.rho_last);
        let agg = &r.scores[0];
        assert_eq!(agg.forecaster, "shadow-aggregate");
        assert!(agg.coverage > 0.85, "coverage {}", agg.coverage);
        assert!(r.scores.iter().any(|s| s.forecaster == "p95-last-1h"));
        // The sum of reservations is far more generous than the pooled band.
        let sum = &r.scores[2];
        assert!(sum.slack_total > agg.slack_total);
    }
}
