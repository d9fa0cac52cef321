//! The five standard recommenders of the fleet protocol
//! (`shared/data/traces/bitbrains/PROTOCOL.md`, section 4), online: each
//! is told one step at a time what was observed at the step before and
//! answers with the limit for the current step, in constant time per step
//! (a histogram scan, or a window of at most a day). None refits over the
//! history, so they cost what they would cost on a host.

use std::collections::VecDeque;

use shadow_forecast::percentile;

use super::histogram::{Buckets, DecayingHistogram};
use super::{Input, Recommender, Unit};

/// Steps per hour and per day (5-minute steps).
const HOUR: usize = 12;
const DAY: usize = 288;

/// The provisioned capacity at the step (the operator's manual limit),
/// carried over steps without a sample.
#[derive(Debug, Default)]
pub struct Manual {
    last: Option<f64>,
}

impl Recommender for Manual {
    fn step(&mut self, input: Input) -> Option<f64> {
        if input.capacity.is_some() {
            self.last = input.capacity;
        }
        self.last
    }

    fn state_bytes(&self) -> usize {
        size_of::<Self>()
    }
}

/// Kubernetes VPA's recommender target with default flags: 1.15 x the p90
/// of a decaying histogram (half-life 24 h) of every CPU sample; for
/// memory, of each 24-hour interval's peak.
#[derive(Debug)]
pub enum Vpa {
    /// CPU: every observed sample, weight 1.
    Cpu {
        /// The samples.
        hist: DecayingHistogram,
        /// Steps seen.
        k: i64,
    },
    /// Memory: one sample per aggregation interval, its peak.
    Memory(Box<VpaMemory>),
}

/// VPA's memory state: the completed intervals' peaks, and the running
/// peak of the current one (VPA updates it in place).
#[derive(Debug)]
pub struct VpaMemory {
    done: DecayingHistogram,
    /// Steps seen.
    k: i64,
    /// Index of the interval whose running peak is held.
    interval: i64,
    /// Running peak of that interval (None: nothing observed in it yet).
    peak: Option<f64>,
    /// Exponent of the weight of interval 0 after rescaling: interval j
    /// weighs `2^(j + 1 - shift)` (decayed from the interval's end; the
    /// interval and the half-life are both a day, so weights are exact
    /// powers of two).
    shift: i64,
}

/// Percentile and margin of VPA's target.
const VPA_P: f64 = 0.90;
const VPA_MARGIN: f64 = 1.15;

impl Vpa {
    /// VPA for a resource measured in `unit`.
    pub fn new(unit: Unit) -> Self {
        let hist = DecayingHistogram::new(unit.buckets(), DAY as f64);
        if unit.is_memory() {
            Self::Memory(Box::new(VpaMemory {
                done: hist,
                k: 0,
                interval: 0,
                peak: None,
                shift: 0,
            }))
        } else {
            Self::Cpu { hist, k: 0 }
        }
    }
}

impl Recommender for Vpa {
    fn step(&mut self, input: Input) -> Option<f64> {
        match self {
            Self::Cpu { hist, k } => {
                if let Some(y) = input.previous {
                    hist.add(y, 1.0, *k - 1);
                }
                *k += 1;
                Some(VPA_MARGIN * hist.percentile(VPA_P, None))
            }
            Self::Memory(m) => Some(VPA_MARGIN * m.step(input.previous)),
        }
    }

    fn state_bytes(&self) -> usize {
        size_of::<Self>()
            + match self {
                Self::Cpu { hist, .. } => hist.heap_bytes(),
                Self::Memory(m) => size_of::<VpaMemory>() + m.done.heap_bytes(),
            }
    }
}

impl VpaMemory {
    fn step(&mut self, previous: Option<f64>) -> f64 {
        let k = self.k;
        self.k += 1;
        if k == 0 {
            return 0.0;
        }
        // The interval holding step k - 1.
        let current = (k - 1) / DAY as i64;
        if current != self.interval {
            if let Some(peak) = self.peak.take() {
                self.close(peak);
            }
            self.interval = current;
        }
        if let Some(y) = previous {
            self.peak = Some(self.peak.map_or(y, |p| p.max(y)));
        }
        let extra = self.peak.map(|p| (p, self.weight(self.interval)));
        self.done.percentile(VPA_P, extra)
    }

    /// Weight of interval `j`'s peak: `2^(j + 1)`, with every weight
    /// divided by the same power of two once they grow large.
    fn weight(&self, j: i64) -> f64 {
        ((j + 1 - self.shift) as f64).exp2()
    }

    fn close(&mut self, peak: f64) {
        if self.interval + 1 - self.shift > 512 {
            self.done.scale((-512.0f64).exp2());
            self.shift += 512;
        }
        self.done.add_weight(peak, self.weight(self.interval));
    }
}

/// Autopilot's moving-window recommender (Rzadca et al. 2020, §3.2):
/// CPU the p95 of a load-weighted decaying histogram (half-life 12 h),
/// memory a decaying peak (half-life 48 h) at histogram resolution; then
/// +10 % and the highest recommendation of the last hour.
#[derive(Debug)]
pub struct Autopilot {
    raw: Raw,
    /// The last hour's recommendations (x 1.10), newest at `k % HOUR`.
    recent: [f64; HOUR],
    k: usize,
}

#[derive(Debug)]
enum Raw {
    Cpu(DecayingHistogram),
    Memory {
        buckets: Buckets,
        /// max over positive samples s of log2(y[s]) + s / h.
        best: f64,
        /// Whether any sample was observed (zero or not).
        seen: bool,
    },
}

const AP_CPU_HALF_LIFE: f64 = (12 * HOUR) as f64;
const AP_MEM_HALF_LIFE: f64 = (48 * HOUR) as f64;
const AP_P: f64 = 0.95;
const AP_MARGIN: f64 = 1.10;

impl Autopilot {
    /// Autopilot for a resource measured in `unit`.
    pub fn new(unit: Unit) -> Self {
        let raw = if unit.is_memory() {
            Raw::Memory {
                buckets: unit.buckets(),
                best: f64::NEG_INFINITY,
                seen: false,
            }
        } else {
            Raw::Cpu(DecayingHistogram::new(unit.buckets(), AP_CPU_HALF_LIFE))
        };
        Self {
            raw,
            recent: [0.0; HOUR],
            k: 0,
        }
    }
}

impl Recommender for Autopilot {
    fn step(&mut self, input: Input) -> Option<f64> {
        let k = self.k;
        self.k += 1;
        let s = k as i64 - 1;
        let raw = match &mut self.raw {
            Raw::Cpu(hist) => {
                // Load-adjusted: each sample weighs its own value, so
                // idle samples carry no weight.
                if let Some(y) = input.previous.filter(|&y| y > 0.0) {
                    hist.add(y, y, s);
                }
                hist.percentile(AP_P, None)
            }
            Raw::Memory {
                buckets,
                best,
                seen,
            } => {
                if let Some(y) = input.previous {
                    *seen = true;
                    if y > 0.0 {
                        *best = best.max(y.log2() + s as f64 / AP_MEM_HALF_LIFE);
                    }
                }
                if *seen {
                    let peak = (*best - s as f64 / AP_MEM_HALF_LIFE).exp2();
                    buckets.value(buckets.find(peak))
                } else {
                    0.0
                }
            }
        };
        self.recent[k % HOUR] = AP_MARGIN * raw;
        Some(self.recent.iter().copied().fold(0.0, f64::max))
    }

    fn state_bytes(&self) -> usize {
        size_of::<Self>()
            + match &self.raw {
                Raw::Cpu(hist) => hist.heap_bytes(),
                Raw::Memory { buckets, .. } => buckets.len() * size_of::<f64>(),
            }
    }
}

/// 1.10 x the highest observed sample of the last 24 hours; an empty
/// window keeps the previous limit.
#[derive(Debug)]
pub struct Max24h {
    /// Observed (step, value) in the window, values decreasing (a
    /// monotonic queue: amortised O(1) per step).
    window: VecDeque<(usize, f64)>,
    last: Option<f64>,
    k: usize,
}

impl Default for Max24h {
    fn default() -> Self {
        Self {
            window: VecDeque::with_capacity(DAY + 1),
            last: None,
            k: 0,
        }
    }
}

impl Recommender for Max24h {
    fn step(&mut self, input: Input) -> Option<f64> {
        let k = self.k;
        self.k += 1;
        if let Some(y) = input.previous {
            while self.window.back().is_some_and(|&(_, v)| v <= y) {
                self.window.pop_back();
            }
            self.window.push_back((k - 1, y));
        }
        while self.window.front().is_some_and(|&(s, _)| s + DAY < k) {
            self.window.pop_front();
        }
        if let Some(&(_, max)) = self.window.front() {
            self.last = Some(1.10 * max);
        }
        self.last
    }

    fn state_bytes(&self) -> usize {
        size_of::<Self>() + self.window.capacity() * size_of::<(usize, f64)>()
    }
}

/// 1.15 x the 95th percentile (linear interpolation) of the observed
/// samples of the last hour; an empty window keeps the previous limit.
#[derive(Debug, Default)]
pub struct P95Last1h {
    /// The last hour's samples, newest at `(k - 1) % HOUR`.
    window: [Option<f64>; HOUR],
    last: Option<f64>,
    k: usize,
}

impl Recommender for P95Last1h {
    fn step(&mut self, input: Input) -> Option<f64> {
        let k = self.k;
        self.k += 1;
        if k > 0 {
            self.window[(k - 1) % HOUR] = input.previous;
        }
        let mut seen = [0.0; HOUR];
        let mut n = 0;
        for v in self.window.iter().flatten() {
            seen[n] = *v;
            n += 1;
        }
        if let Some(p) = percentile(&mut seen[..n], 0.95) {
            self.last = Some(1.15 * p);
        }
        self.last
    }

    fn state_bytes(&self) -> usize {
        size_of::<Self>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `r` over `ys` (None = missing), returning L per step.
    fn run(r: &mut dyn Recommender, ys: &[Option<f64>]) -> Vec<Option<f64>> {
        (0..ys.len())
            .map(|k| {
                r.step(Input {
                    previous: k.checked_sub(1).and_then(|j| ys[j]),
                    capacity: None,
                })
            })
            .collect()
    }

    #[test]
    fn manual_carries_capacity_over_missing_steps() {
        let mut m = Manual::default();
        let cap = |c| Input {
            previous: None,
            capacity: c,
        };
        assert_eq!(m.step(cap(None)), None);
        assert_eq!(m.step(cap(Some(4.0))), Some(4.0));
        assert_eq!(m.step(cap(None)), Some(4.0));
        assert_eq!(m.step(cap(Some(2.0))), Some(2.0));
    }

    #[test]
    fn max_24h_slides_and_keeps_its_limit_when_empty() {
        let mut ys = vec![Some(1.0); 400];
        ys[10] = Some(5.0);
        for y in &mut ys[300..] {
            *y = None;
        }
        let l = run(&mut Max24h::default(), &ys);
        assert_eq!(l[0], None);
        assert_eq!(l[1], Some(1.1));
        assert!((l[11].unwrap() - 5.5).abs() < 1e-12);
        // Step 10 leaves the window [k - 288, k - 1] at k = 299.
        assert!((l[298].unwrap() - 5.5).abs() < 1e-12);
        assert_eq!(l[299], Some(1.1));
        // No sample in the window from k = 300 + 288: the limit stays.
        assert_eq!(l[399], Some(1.1));
    }

    #[test]
    fn p95_last_hour_interpolates() {
        let ys: Vec<Option<f64>> = (0..30).map(|i| Some(f64::from(i))).collect();
        let l = run(&mut P95Last1h::default(), &ys);
        assert_eq!(l[0], None);
        assert_eq!(l[1], Some(0.0));
        // k = 20: window 8..=19, p95 at position 10.45 → 18.45.
        assert!((l[20].unwrap() - 1.15 * 18.45).abs() < 1e-9);
    }

    #[test]
    fn vpa_cpu_is_a_margin_over_the_decayed_p90() {
        // 9 low samples and 1 high, equal weights (same step would be
        // needed for equal decay; one half-life is 288 steps, so 10
        // steps decay by ~2 %): p90 sits at the low value's bucket end.
        let mut ys = vec![Some(10.0); 9];
        ys.push(Some(1000.0));
        ys.push(None);
        let l = run(&mut Vpa::new(Unit::CpuMhz), &ys);
        assert_eq!(l[0], Some(0.0), "empty histogram");
        let b = Buckets::new(1.0, 1e6);
        let low = 1.15 * b.value(b.find(10.0));
        let high = 1.15 * b.value(b.find(1000.0));
        assert_eq!(l[9], Some(low));
        // With the newest weighing slightly more than a tenth: high.
        assert_eq!(l[10], Some(high));
    }

    #[test]
    fn vpa_memory_counts_one_peak_per_day() {
        // Day 0 peaks at 5e6 once, then 1e6. Day j's peak weighs 2^(j+1):
        // on day 2, day 0 holds 2 of 14 (> 10 %), so p90 stays at 5e6; on
        // day 3, 2 of 30 (< 10 %), and p90 falls to the 1e6 bucket.
        let mut ys = vec![Some(1e6); 4 * DAY];
        ys[5] = Some(5e6);
        let l = run(&mut Vpa::new(Unit::MemKb), &ys);
        let b = Buckets::new(1e4, 1e9);
        let (high, low) = (b.value(b.find(5e6)), b.value(b.find(1e6)));
        assert_eq!(l[7], Some(1.15 * high));
        assert_eq!(l[3 * DAY - 1], Some(1.15 * high));
        assert_eq!(l[4 * DAY - 1], Some(1.15 * low));
    }

    #[test]
    fn autopilot_memory_peak_decays_and_the_hour_max_holds() {
        let mut ys = vec![Some(0.0); 2];
        ys.extend(std::iter::repeat_n(Some(1e6), 1));
        ys.extend(std::iter::repeat_n(None, 2000));
        let l = run(&mut Autopilot::new(Unit::MemKb), &ys);
        let b = Buckets::new(1e4, 1e9);
        assert_eq!(l[0], Some(0.0));
        // Only a zero seen: the first bucket's end, f.
        assert!((l[1].unwrap() - 1.10 * 1e4).abs() < 1e-6);
        assert_eq!(l[3], Some(1.10 * b.value(b.find(1e6))));
        // 48 h (576 steps) after the sample the peak has halved; the
        // hour's max still holds that 11 steps later.
        let at = 3 + 576 + 11;
        assert_eq!(l[at], Some(1.10 * b.value(b.find(0.5e6))));
    }

    #[test]
    fn autopilot_cpu_ignores_idle_samples() {
        let mut ys = vec![Some(0.0); 100];
        ys.push(Some(50.0));
        ys.push(Some(0.0));
        ys.push(None);
        let l = run(&mut Autopilot::new(Unit::CpuMhz), &ys);
        assert_eq!(l[100], Some(0.0));
        let b = Buckets::new(1.0, 1e6);
        assert_eq!(l[101], Some(1.10 * b.value(b.find(50.0))));
        assert_eq!(l[102], l[101]);
    }
}
