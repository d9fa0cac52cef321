//! The last few hundred values of a series, for the parts that look back a
//! whole period (seasonal naive, the period detector).

/// Reach in values: the lags the seasonal parts may use are below this. A
/// day of 5-minute samples is 288 ticks and five minutes of 1-second samples
/// is 300; 320 covers both plus the horizon, at 1.25 KiB (f32: usage needs
/// relative, not absolute, precision).
pub(crate) const RING: usize = 320;
/// Values kept beyond [`RING`], so that what was read at lag `k` can be read
/// again up to `SLACK` ticks later, at lag `k + SLACK`: the forecasts made
/// at an origin are re-derived when their target arrives (up to
/// `MAX_HORIZON` ticks later), and the period detector's variogram is
/// brought up to date in batches.
pub(crate) const SLACK: usize = 16;
/// Values stored.
const CAP: usize = RING + SLACK;

/// The indices first (`repr(C)`), so they share a cache line with the
/// start of the values instead of adding one at the end.
#[derive(Debug, Clone)]
#[repr(C)]
pub(crate) struct Ring {
    /// Index of the newest value.
    head: u16,
    /// Values stored (at most [`CAP`]).
    stored: u16,
    buf: [f32; CAP],
}

impl Ring {
    pub(crate) fn new() -> Self {
        Self {
            buf: [0.0; CAP],
            head: (CAP - 1) as u16,
            stored: 0,
        }
    }

    pub(crate) fn push(&mut self, y: f32) {
        let head = if self.head as usize + 1 == CAP {
            0
        } else {
            self.head + 1
        };
        self.head = head;
        self.buf[head as usize] = y;
        if (self.stored as usize) < CAP {
            self.stored += 1;
        }
    }

    /// Values held within reach (at most [`RING`]).
    pub(crate) fn len(&self) -> usize {
        (self.stored as usize).min(RING)
    }

    /// The value `lag` ticks before the newest (`lag = 0` is the newest).
    /// Callers keep `lag < len()`, or `lag < len() + d` for a value that
    /// was within reach `d <= SLACK` ticks ago.
    #[inline]
    pub(crate) fn get(&self, lag: usize) -> f32 {
        debug_assert!(lag < self.stored as usize);
        let head = self.head as usize;
        let i = if lag <= head {
            head - lag
        } else {
            head + CAP - lag
        };
        self.buf[i]
    }
}

impl Ring {
    /// Starts loading the values at lags `lo..=hi` (`hi - lo < 16`, so at
    /// most two cache lines), which an update is about to read. See
    /// [`prefetch`].
    #[inline]
    pub(crate) fn prefetch(&self, lo: usize, hi: usize) {
        debug_assert!(lo <= hi && hi - lo < 16);
        let hi = hi.min(CAP - 1);
        for lag in [lo.min(hi), hi] {
            let head = self.head as usize;
            let i = if lag <= head {
                head - lag
            } else {
                head + CAP - lag
            };
            prefetch(&raw const self.buf[i]);
        }
    }

    /// `out[i] = v - value (first_lag + i) ticks before v`, where `v` is the
    /// value `delay` ticks before the newest, for a full ring, read as at
    /// most two contiguous stretches (no per-element wrap-around test), so
    /// callers' loops vectorise.
    pub(crate) fn diffs_from(&self, delay: usize, first_lag: usize, out: &mut [f32]) {
        debug_assert!(self.len() == RING && delay + first_lag + out.len() <= self.stored as usize);
        let head = self.head as usize;
        let y = self.get(delay);
        for (i, o) in out.iter_mut().enumerate() {
            let lag = delay + first_lag + i;
            let idx = if lag <= head {
                head - lag
            } else {
                head + CAP - lag
            };
            *o = y - self.buf[idx];
        }
    }
}

/// Hints the CPU to start loading the cache line holding `p` now (any
/// address: nothing is read through it). An
/// update reads a few dozen cache lines of its series' state, which is cold
/// when thousands of series are updated in turn; asking for them all at
/// the start lets the loads overlap instead of waiting for each in turn.
/// Only this series' own state is asked for (the next series is not known
/// here). No effect on any result.
#[inline(always)]
pub(crate) fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is only a hint: it cannot fault and changes no
    // state the program can observe; SSE is part of the x86_64 baseline.
    unsafe {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_T0>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lags_wrap_around() {
        let mut r = Ring::new();
        for i in 0..(CAP + 5) {
            r.push(i as f32);
        }
        assert_eq!(r.len(), RING);
        assert_eq!(r.get(0), (CAP + 4) as f32);
        assert_eq!(r.get(RING - 1), (SLACK + 5) as f32);
        assert_eq!(r.get(CAP - 1), 5.0);
        // Every head position: the contiguous reads agree with `get`.
        for _ in 0..CAP {
            r.push(r.get(0) + 1.5);
            let mut d = [0.0; 47];
            for delay in [0, 7] {
                r.diffs_from(delay, 2, &mut d);
                for (i, v) in d.iter().enumerate() {
                    assert_eq!(*v, r.get(delay) - r.get(delay + i + 2));
                }
            }
        }
    }
}
