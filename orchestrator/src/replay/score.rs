//! Scoring as in PROTOCOL.md §5 (Autopilot's metrics, Rzadca et al. 2020
//! §4.1.1): per VM-day, then per set, resource and recommender.
//!
//! A step is scored from the second day on, where usage was observed and
//! the recommender had a limit; a VM-day counts when it has at least half
//! a day of scored steps. Which VM-days count depends on the data only,
//! so every recommender is scored on the same steps.

use shadow_forecast::percentile;

/// Steps of history before scoring starts (one day).
pub const WARMUP: usize = 288;
/// Scored steps a VM-day needs.
pub const MIN_DAY_STEPS: usize = 144;
/// Violation share above which a VM-day is seriously impacted.
pub const SERIOUS: f64 = 0.05;
/// Relative move that counts as a limit change.
pub const CHANGE_REL: f64 = 0.01;

/// One scored VM-day.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct VmDay {
    /// UTC day number.
    pub day: i64,
    /// Scored steps.
    pub scored: usize,
    /// Mean limit over the scored steps.
    pub mean_limit: f64,
    /// Linear 95th percentile of usage over the scored steps.
    pub p95_usage: f64,
    /// `(mean_limit - p95_usage) / mean_limit`, clipped below at -1.
    pub rel_slack: f64,
    /// Share of scored steps with usage strictly above the limit.
    pub violation_share: f64,
    /// Limit changes over 1 % among the day's grid steps.
    pub changes: u32,
    /// Sums over the scored steps: usage, max(0, y - L), max(0, L - y).
    pub sum_usage: f64,
    /// Σ max(0, y - L).
    pub sum_short: f64,
    /// Σ max(0, L - y).
    pub sum_over: f64,
}

/// Scores one VM's resource: usage `y` and limits `limit` per grid step
/// (NaN = missing / no limit), `day(k)` the UTC day of step k.
pub fn score_vm(y: &[f64], limit: &[f64], day: impl Fn(usize) -> i64) -> Vec<VmDay> {
    let mut out = Vec::new();
    let mut usage = Vec::with_capacity(288);
    let mut k = 0;
    while k < y.len() {
        let d = day(k);
        let start = k;
        while k < y.len() && day(k) == d {
            k += 1;
        }
        usage.clear();
        let (mut sum_l, mut violations) = (0.0, 0usize);
        let (mut sum_usage, mut sum_short, mut sum_over) = (0.0, 0.0, 0.0);
        let mut changes = 0u32;
        for j in start..k {
            if j > WARMUP && changed(limit[j - 1], limit[j]) {
                changes += 1;
            }
            let (yj, lj) = (y[j], limit[j]);
            if j < WARMUP || yj.is_nan() || lj.is_nan() {
                continue;
            }
            usage.push(yj);
            sum_l += lj;
            violations += usize::from(yj > lj);
            sum_usage += yj;
            sum_short += (yj - lj).max(0.0);
            sum_over += (lj - yj).max(0.0);
        }
        let scored = usage.len();
        if scored < MIN_DAY_STEPS {
            continue;
        }
        let mean_limit = sum_l / scored as f64;
        let p95_usage = percentile(&mut usage, 0.95).unwrap_or(0.0);
        out.push(VmDay {
            day: d,
            scored,
            mean_limit,
            p95_usage,
            rel_slack: rel_slack(mean_limit, p95_usage),
            violation_share: violations as f64 / scored as f64,
            changes,
            sum_usage,
            sum_short,
            sum_over,
        });
    }
    out
}

/// Whether the limit moved by more than [`CHANGE_REL`] (from 0: at all);
/// steps without a limit on either side do not count.
fn changed(before: f64, after: f64) -> bool {
    if before.is_nan() || after.is_nan() {
        return false;
    }
    if before == 0.0 {
        after != 0.0
    } else {
        (after - before).abs() > CHANGE_REL * before.abs()
    }
}

/// Relative slack of a VM-day, clipped below at -1; a zero mean limit
/// scores 0 if usage was zero too, else -1.
pub fn rel_slack(mean_limit: f64, p95_usage: f64) -> f64 {
    if mean_limit > 0.0 {
        ((mean_limit - p95_usage) / mean_limit).max(-1.0)
    } else if p95_usage > 0.0 {
        -1.0
    } else {
        0.0
    }
}

/// Figures of one (resource, recommender) over a set of VMs.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct Summary {
    /// VMs with at least one VM-day.
    pub vms: usize,
    /// VM-days scored.
    pub vm_days: usize,
    /// Median relative slack over VM-days.
    pub rel_slack_median: f64,
    /// Mean relative slack over VM-days.
    pub rel_slack_mean: f64,
    /// Mean violation share over VM-days.
    pub violation_share_mean: f64,
    /// Share of VM-days with a violation share above 5 %.
    pub seriously_impacted_share: f64,
    /// Median limit changes per VM-day.
    pub limit_changes_median: f64,
    /// Σ max(0, y - L) / Σ y over all scored steps.
    pub shortfall_total: f64,
    /// Σ max(0, L - y) / Σ y over all scored steps.
    pub slack_total: f64,
}

/// Collects VM-days of one (resource, recommender) across VMs.
#[derive(Clone, Debug, Default)]
pub struct Tally {
    vms: usize,
    rel_slack: Vec<f64>,
    changes: Vec<f64>,
    violations: f64,
    impacted: usize,
    sums: (f64, f64, f64),
}

impl Tally {
    /// Adds one VM's VM-days.
    pub fn add(&mut self, days: &[VmDay]) {
        if days.is_empty() {
            return;
        }
        self.vms += 1;
        for d in days {
            self.rel_slack.push(d.rel_slack);
            self.changes.push(f64::from(d.changes));
            self.violations += d.violation_share;
            self.impacted += usize::from(d.violation_share > SERIOUS);
            self.sums.0 += d.sum_usage;
            self.sums.1 += d.sum_short;
            self.sums.2 += d.sum_over;
        }
    }

    /// The figures.
    pub fn summary(&self) -> Summary {
        let n = self.rel_slack.len();
        let per_day = |x: f64| if n > 0 { x / n as f64 } else { f64::NAN };
        let total = |x: f64| {
            if self.sums.0 > 0.0 {
                x / self.sums.0
            } else {
                f64::NAN
            }
        };
        Summary {
            vms: self.vms,
            vm_days: n,
            rel_slack_median: median(&self.rel_slack),
            rel_slack_mean: per_day(self.rel_slack.iter().sum()),
            violation_share_mean: per_day(self.violations),
            seriously_impacted_share: per_day(self.impacted as f64),
            limit_changes_median: median(&self.changes),
            shortfall_total: total(self.sums.1),
            slack_total: total(self.sums.2),
        }
    }
}

/// Median (mean of the middle two for an even count); NaN when empty.
fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_unstable_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => v[n / 2],
        _ => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two days of warm-up-free steps: a day is 288 steps, so day 0 is
    /// the warm-up and only day 1 is scored.
    #[test]
    fn scores_a_hand_made_day() {
        let n = 2 * 288;
        let mut y = vec![1.0; n];
        let mut l = vec![2.0; n];
        // Day 1: 20 violations (y = 3 > L = 2) → share 20/288 > 5 %.
        for v in &mut y[300..320] {
            *v = 3.0;
        }
        // One limit change inside day 1 (and one back).
        for v in &mut l[400..401] {
            *v = 2.1;
        }
        // A missing step is not scored but the day still counts.
        y[500] = f64::NAN;
        let days = score_vm(&y, &l, |k| (k / 288) as i64);
        assert_eq!(days.len(), 1, "day 0 is history only");
        let d = days[0];
        assert_eq!(d.day, 1);
        assert_eq!(d.scored, 287);
        assert!((d.violation_share - 20.0 / 287.0).abs() < 1e-12);
        assert_eq!(d.changes, 2);
        // p95 of 267 ones and 20 threes: position 0.95 * 286 = 271.7 in
        // the sorted values → 3.
        assert_eq!(d.p95_usage, 3.0);
        let mean_l = (286.0 * 2.0 + 2.1) / 287.0;
        assert!((d.mean_limit - mean_l).abs() < 1e-12);
        assert!((d.rel_slack - (mean_l - 3.0) / mean_l).abs() < 1e-12);
        assert!((d.sum_short - 20.0).abs() < 1e-12);
        let mut t = Tally::default();
        t.add(&days);
        t.add(&[]);
        let s = t.summary();
        assert_eq!((s.vms, s.vm_days), (1, 1));
        assert_eq!(s.seriously_impacted_share, 1.0);
        assert_eq!(s.limit_changes_median, 2.0);
        assert!((s.shortfall_total - 20.0 / d.sum_usage).abs() < 1e-12);
    }

    #[test]
    fn short_days_and_missing_limits_are_not_scored() {
        let n = 288 + 100;
        let days = score_vm(&vec![1.0; n], &vec![1.0; n], |k| (k / 288) as i64);
        assert!(days.is_empty(), "100 scored steps < 144");
        let mut l = vec![1.0; 3 * 288];
        for v in &mut l[288..288 + 200] {
            *v = f64::NAN;
        }
        let days = score_vm(&vec![1.0; 3 * 288], &l, |k| (k / 288) as i64);
        assert_eq!(days.iter().map(|d| d.day).collect::<Vec<_>>(), vec![2]);
    }

    #[test]
    fn slack_edges_and_change_rule() {
        assert_eq!(rel_slack(0.0, 0.0), 0.0);
        assert_eq!(rel_slack(0.0, 1.0), -1.0);
        assert_eq!(rel_slack(1.0, 5.0), -1.0);
        assert_eq!(rel_slack(4.0, 1.0), 0.75);
        assert!(changed(0.0, 1e-9));
        assert!(!changed(0.0, 0.0));
        assert!(!changed(100.0, 101.0));
        assert!(changed(100.0, 101.01));
        assert!(!changed(f64::NAN, 1.0));
        assert_eq!(median(&[3.0, 1.0, 2.0, 10.0]), 2.5);
    }
}
