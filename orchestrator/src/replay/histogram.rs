//! The exponential-bucket histogram that VPA and Autopilot's moving window
//! keep per container (VPA `util/histogram_options.go`, `histogram.go`),
//! with exponentially decaying sample weights.
//!
//! Decay is done the way VPA does it: instead of shrinking every old
//! weight at each step, a new sample gets the weight `w * 2^(s / h)`
//! (growing with its step `s`), so that only weight ratios, which is all
//! a percentile reads, change with time. To keep the weights finite on a
//! host that runs for years, every weight is divided by the same power of
//! two once they grow large: exact in binary floating point, so no ratio
//! moves.

/// Growth of the bucket sizes (VPA's default, 5 %).
const RATIO: f64 = 1.05;
/// Exponent (in half-lives) past which the weights are scaled down.
const RESCALE_AT: f64 = 512.0;

/// Bucket boundaries: bucket 0 is `[0, first)`, bucket `i >= 1` starts at
/// `first * (RATIO^i - 1) / (RATIO - 1)`; the last bucket is open above.
#[derive(Clone, Debug, PartialEq)]
pub struct Buckets {
    first: f64,
    /// Start of each bucket.
    start: Vec<f64>,
}

impl Buckets {
    /// Buckets with a first bucket of size `first` reaching at least `max`.
    /// Computed as the reference harness computes them (the ratio minus
    /// one as a float, `powf`), so that boundaries agree to the last bit.
    pub fn new(first: f64, max: f64) -> Self {
        let growth = RATIO - 1.0;
        let n = ((max * growth / first + 1.0).ln() / RATIO.ln()).ceil() as usize + 1;
        let start = (0..n)
            .map(|i| first * (RATIO.powf(i as f64) - 1.0) / growth)
            .collect();
        Self { first, start }
    }

    /// Number of buckets.
    pub fn len(&self) -> usize {
        self.start.len()
    }

    /// Never true: there is always at least bucket 0.
    pub fn is_empty(&self) -> bool {
        self.start.is_empty()
    }

    /// Index of the bucket holding `v` (values below 0 go to bucket 0).
    pub fn find(&self, v: f64) -> usize {
        if v < self.first {
            return 0;
        }
        let b = ((v * (RATIO - 1.0) / self.first + 1.0).ln() / RATIO.ln()).floor();
        (b.max(0.0) as usize).min(self.len() - 1)
    }

    /// What a percentile landing in bucket `i` reports: the bucket's end
    /// (VPA's `Percentile()`), or the start of the open last bucket.
    pub fn value(&self, i: usize) -> f64 {
        self.start[(i + 1).min(self.len() - 1)]
    }
}

/// A histogram of weighted samples whose weights halve every `half_life`
/// steps.
#[derive(Clone, Debug)]
pub struct DecayingHistogram {
    buckets: Buckets,
    weight: Vec<f64>,
    half_life: f64,
    /// Step whose samples get weight factor 1 (moves on rescaling).
    origin: i64,
}

impl DecayingHistogram {
    /// An empty histogram over `buckets`.
    pub fn new(buckets: Buckets, half_life: f64) -> Self {
        Self {
            weight: vec![0.0; buckets.len()],
            buckets,
            half_life,
            origin: 0,
        }
    }

    /// Bytes held on the heap (weights and bucket starts).
    pub fn heap_bytes(&self) -> usize {
        (self.weight.capacity() + self.buckets.start.capacity()) * size_of::<f64>()
    }

    /// The bucket boundaries.
    pub fn buckets(&self) -> &Buckets {
        &self.buckets
    }

    /// Adds `v` observed at `step` with weight `w` (before decay). Steps
    /// must not go back by more than a few half-lives (they only move
    /// forward here).
    pub fn add(&mut self, v: f64, w: f64, step: i64) {
        let mut exponent = (step - self.origin) as f64 / self.half_life;
        if exponent > RESCALE_AT {
            let halvings = exponent.floor();
            let factor = (-halvings).exp2();
            for x in &mut self.weight {
                *x *= factor;
            }
            self.origin += (halvings * self.half_life).round() as i64;
            exponent = (step - self.origin) as f64 / self.half_life;
        }
        self.weight[self.buckets.find(v)] += w * exponent.exp2();
    }

    /// Adds weight `w` (already decayed relative to the others) to the
    /// bucket of `v`, for callers that manage the decay themselves.
    pub fn add_weight(&mut self, v: f64, w: f64) {
        let b = self.buckets.find(v);
        self.weight[b] += w;
    }

    /// Scales every weight by `factor` (a power of two keeps it exact).
    pub fn scale(&mut self, factor: f64) {
        for x in &mut self.weight {
            *x *= factor;
        }
    }

    /// The `p` percentile: the end of the first bucket whose cumulative
    /// weight reaches `p` times the total; 0 while the histogram is empty.
    /// `extra` adds a weight at a bucket for this query only (VPA's
    /// current aggregation interval).
    pub fn percentile(&self, p: f64, extra: Option<(f64, f64)>) -> f64 {
        // The total is the cumulative sum at the last bucket, summed in the
        // same order as the scan below, so "reaches p * total" compares
        // like with like.
        let (extra_at, extra_w) = match extra {
            Some((v, w)) => (self.buckets.find(v), w),
            None => (usize::MAX, 0.0),
        };
        let total = self.weight.iter().sum::<f64>() + extra_w;
        if total <= 0.0 {
            return 0.0;
        }
        let threshold = p * total;
        let mut cum = 0.0;
        for (b, &w) in self.weight.iter().enumerate() {
            cum += w;
            let with_extra = if b >= extra_at { cum + extra_w } else { cum };
            if with_extra >= threshold {
                return self.buckets.value(b);
            }
        }
        self.buckets.value(self.buckets.len() - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_match_the_protocol() {
        // CPU MHz: f = 1, M = 1e6; memory KB: f = 1e4, M = 1e9.
        let cpu = Buckets::new(1.0, 1e6);
        assert_eq!(cpu.len(), 223);
        assert_eq!(Buckets::new(1e4, 1e9).len(), 176);
        assert_eq!(cpu.find(0.5), 0);
        assert_eq!(cpu.find(1.0), 1);
        // start(2) = 1 + 1.05 = 2.05.
        assert_eq!(cpu.find(2.0), 1);
        assert_eq!(cpu.find(2.1), 2);
        assert!((cpu.value(1) - 2.05).abs() < 1e-12);
        assert_eq!(cpu.find(1e12), cpu.len() - 1);
        // The open last bucket reports its start, as does the one before it.
        assert_eq!(cpu.value(cpu.len() - 1), cpu.value(cpu.len() - 2));
    }

    #[test]
    fn percentile_reads_the_cumulative_weight() {
        let mut h = DecayingHistogram::new(Buckets::new(1.0, 1e6), 1.0);
        assert_eq!(h.percentile(0.9, None), 0.0, "empty");
        // Equal weights at 0.5 and 10: p50 in bucket 0, p90 in 10's bucket.
        h.add(0.5, 1.0, 0);
        h.add(10.0, 1.0, 0);
        assert_eq!(h.percentile(0.5, None), 1.0);
        let b10 = h.buckets().find(10.0);
        assert_eq!(h.percentile(0.9, None), h.buckets().value(b10));
        // A newer sample one half-life later weighs twice as much: weights
        // 1, 1, 2, so p50 is still 10's bucket and p60 is 100's.
        h.add(100.0, 1.0, 1);
        let b100 = h.buckets().find(100.0);
        assert_eq!(h.percentile(0.5, None), h.buckets().value(b10));
        assert_eq!(h.percentile(0.6, None), h.buckets().value(b100));
        // The extra weight counts for the query only.
        assert_eq!(h.percentile(0.2, Some((0.1, 100.0))), 1.0);
        assert_eq!(h.percentile(0.2, None), 1.0);
        assert_eq!(h.percentile(0.3, None), h.buckets().value(b10));
    }

    #[test]
    fn rescaling_keeps_the_ratios() {
        let mut a = DecayingHistogram::new(Buckets::new(1.0, 1e6), 2.0);
        for s in 0..3000 {
            a.add((s % 7) as f64 * 10.0, 1.0, s);
        }
        assert!(a.weight.iter().all(|w| w.is_finite()));
        assert!(a.origin > 0, "rescaled");
        // The newest weights dominate: the last 7 steps cover 0..60.
        let p = a.percentile(0.99, None);
        assert_eq!(p, a.buckets().value(a.buckets().find(60.0)));
    }
}
