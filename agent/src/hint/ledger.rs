//! The live hints, the per-cgroup rate limits and the trust each cgroup has
//! earned. Pure: no I/O, time (Unix seconds) is an argument, so the rules
//! are tested with plain `#[test]`s.
//!
//! Trust. A hint's prior is `amount × confidence × trust`. When a hint's
//! window is over, the realised mean usage over the window is compared
//! with the hinted amount, per resource that was hinted (CPU, memory,
//! block I/O, network; for memory, a level, the mean level held over the
//! window, 0 where the cgroup's memory could not be read):
//! `accuracy = mean over resources of min(1, used / hinted)`, and
//! `trust ← clamp(trust + RATE × (accuracy − trust), MIN_TRUST, 1)`.
//! Inflated hints lower trust in proportion to how inflated they were; an
//! accurate (or under-stated) hint raises it. Trust starts at
//! [`INITIAL_TRUST`], below 1, so that accurate hints have room to earn
//! more; it never reaches 0, so a component can earn it back.

use std::collections::HashMap;

use super::{
    ClientLimits,
    protocol::{Accepted, Amounts, Code, Refusal, Spec},
};
use shadow_wire::Resource;

/// Trust of a cgroup that has not hinted before.
pub const INITIAL_TRUST: f64 = 0.8;
/// Weight of the latest hint's accuracy in the trust (an EWMA).
pub const TRUST_RATE: f64 = 0.4;
/// Trust never falls below this.
pub const MIN_TRUST: f64 = 0.05;
/// Cgroups whose trust is remembered; beyond this, new ones keep the
/// initial trust (bounded memory whatever clients do).
const MAX_TRUSTED: usize = 65_536;
/// Rate-limit buckets kept before full (idle) ones are dropped.
const MAX_BUCKETS: usize = 1024;

/// One live hint.
#[derive(Clone, Debug)]
struct Hint {
    id: u64,
    start: f64,
    end: f64,
    amounts: Amounts,
    confidence: f64,
    /// Usage integrated over the part of the window seen (unit × s).
    used: Amounts,
}

/// A hint's floor under a forecast.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Prior {
    /// Amount × confidence × trust.
    pub floor: f64,
    /// Which hint.
    pub id: u64,
}

/// A hint whose window is over and what it did to its cgroup's trust.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    /// The hint.
    pub id: u64,
    /// Its cgroup.
    pub cgroup: String,
    /// Its accuracy (None: nothing measurable was hinted).
    pub accuracy: Option<f64>,
    /// The cgroup's trust afterwards.
    pub trust: f64,
}

/// A token bucket.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at: f64,
}

/// Live hints by cgroup, rate limits by caller cgroup, trust by cgroup.
#[derive(Debug)]
pub struct Ledger {
    /// What the socket did so far (for the metrics).
    pub counts: Counts,
    limits: ClientLimits,
    next_id: u64,
    live: HashMap<String, Vec<Hint>>,
    total: usize,
    trust: HashMap<String, f64>,
    buckets: HashMap<String, Bucket>,
}

/// Requests the hint socket answered, since the start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Hints accepted.
    pub accepted: u64,
    /// Requests refused (any code).
    pub refused: u64,
    /// Hints whose window ended and were judged against usage.
    pub judged: u64,
}

impl Ledger {
    /// An empty ledger under `limits`.
    pub fn new(limits: ClientLimits) -> Self {
        Self {
            counts: Counts::default(),
            limits,
            next_id: 1,
            live: HashMap::new(),
            total: 0,
            trust: HashMap::new(),
            buckets: HashMap::new(),
        }
    }

    /// The limits it enforces.
    pub fn limits(&self) -> &ClientLimits {
        &self.limits
    }

    /// Takes one request token from `caller`'s cgroup, or refuses.
    pub fn admit(&mut self, caller: &str, now: f64) -> Result<(), Refusal> {
        let (burst, rate) = (self.limits.rate_burst, self.limits.rate_per_s);
        if self.buckets.len() >= MAX_BUCKETS && !self.buckets.contains_key(caller) {
            self.buckets
                .retain(|_, b| b.tokens + (now - b.at).max(0.0) * rate < burst);
        }
        let b = self.buckets.entry(caller.to_owned()).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        b.tokens = (b.tokens + (now - b.at).max(0.0) * rate).min(burst);
        b.at = now;
        if b.tokens < 1.0 {
            return Err(Refusal::new(
                Code::RateLimited,
                format!(
                    "cgroup {caller} sends more than {rate} requests/s (burst {burst}); retry in {:.1}s",
                    (1.0 - b.tokens) / rate
                ),
            ));
        }
        b.tokens -= 1.0;
        Ok(())
    }

    /// Makes `spec` live for `cgroup` (already authorised), clamped to the
    /// host's capacity.
    pub fn submit(&mut self, cgroup: &str, spec: &Spec, now: f64) -> Result<Accepted, Refusal> {
        let live = self.live_count(cgroup, now);
        if live >= self.limits.max_live {
            return Err(Refusal::new(
                Code::TooMany,
                format!(
                    "cgroup {cgroup} already has {live} live hints (at most {}); cancel one or wait",
                    self.limits.max_live
                ),
            ));
        }
        if self.total >= self.limits.max_total {
            return Err(Refusal::new(
                Code::TooMany,
                format!("the host holds {} live hints already", self.total),
            ));
        }
        let (amounts, clamped) = clamp(spec.amounts, self.limits.capacity);
        let start = now + spec.start_in.as_secs_f64();
        let hint = Hint {
            id: self.next_id,
            start,
            end: start + spec.duration.as_secs_f64(),
            amounts,
            confidence: spec.confidence,
            used: Amounts::default(),
        };
        self.next_id += 1;
        let trust = self.trust(cgroup);
        let reserve = amounts.scaled(spec.confidence * trust);
        let accepted = Accepted {
            id: hint.id,
            cgroup: cgroup.to_owned(),
            start: hint.start,
            end: hint.end,
            amounts,
            clamped,
            trust,
            confidence: spec.confidence,
            reserve,
        };
        self.live.entry(cgroup.to_owned()).or_default().push(hint);
        self.total += 1;
        Ok(accepted)
    }

    /// The cgroup of live hint `id`, for the caller's authorisation.
    pub fn cgroup_of(&self, id: u64) -> Option<&str> {
        self.live
            .iter()
            .find(|(_, hints)| hints.iter().any(|h| h.id == id))
            .map(|(c, _)| c.as_str())
    }

    /// Withdraws hint `id`: before its window it simply goes; within it,
    /// the window ends now and the elapsed part is still judged (so a hint
    /// cannot escape its verdict by being cancelled at the last moment).
    pub fn cancel(&mut self, id: u64, now: f64) -> Result<(), Refusal> {
        let not_found = || Refusal::new(Code::NotFound, format!("no live hint with id {id}"));
        let cgroup = self.cgroup_of(id).ok_or_else(not_found)?.to_owned();
        let hints = self.live.get_mut(&cgroup).ok_or_else(not_found)?;
        let i = hints
            .iter()
            .position(|h| h.id == id)
            .ok_or_else(not_found)?;
        let h = &mut hints[i];
        if h.end <= now {
            return Err(not_found());
        }
        if now <= h.start {
            hints.swap_remove(i);
            self.total -= 1;
            if hints.is_empty() {
                self.live.remove(&cgroup);
            }
        } else {
            h.end = now;
        }
        Ok(())
    }

    /// Hints of `cgroup` whose window has not ended at `now`.
    pub fn live_count(&self, cgroup: &str, now: f64) -> usize {
        self.live
            .get(cgroup)
            .map_or(0, |h| h.iter().filter(|h| h.end > now).count())
    }

    /// True if a hint of `cgroup` for `resource` has not ended at `now`
    /// (its forecast series should exist even if it was never used).
    pub fn hints_resource(&self, cgroup: &str, resource: Resource, now: f64) -> bool {
        self.live.get(cgroup).is_some_and(|hints| {
            hints
                .iter()
                .any(|h| h.end > now && amount(&h.amounts, resource) > 0.0)
        })
    }

    /// The highest floor the live hints of `cgroup` put under `resource`
    /// for the interval `(from, to]`: hints whose window overlaps it.
    pub fn prior(&self, cgroup: &str, resource: Resource, from: f64, to: f64) -> Option<Prior> {
        let trust = self.trust(cgroup);
        self.live
            .get(cgroup)?
            .iter()
            .filter(|h| h.start < to && h.end > from)
            .map(|h| Prior {
                floor: amount(&h.amounts, resource) * h.confidence * trust,
                id: h.id,
            })
            .filter(|p| p.floor > 0.0)
            .max_by(|a, b| a.floor.total_cmp(&b.floor))
    }

    /// Adds one interval's realised usage of `cgroup` (the interval that
    /// ended at `end`, `interval_s` long) to the hints it overlaps.
    pub fn record(&mut self, cgroup: &str, end: f64, interval_s: f64, usage: Amounts) {
        let Some(hints) = self.live.get_mut(cgroup) else {
            return;
        };
        for h in hints {
            let overlap = (end.min(h.end) - (end - interval_s).max(h.start)).max(0.0);
            if overlap > 0.0 {
                let u = usage.scaled(overlap);
                h.used.cpu += u.cpu;
                h.used.memory += u.memory;
                h.used.io += u.io;
                h.used.net += u.net;
            }
        }
    }

    /// Judges and drops the hints whose window ended before `now - grace`
    /// (grace lets the last interval's usage arrive first); updates trust.
    /// A cgroup absent from the samples used nothing, which counts.
    pub fn settle(&mut self, now: f64, grace: f64) -> Vec<Outcome> {
        let mut outcomes = Vec::new();
        let mut emptied = Vec::new();
        for (cgroup, hints) in &mut self.live {
            let mut i = 0;
            while i < hints.len() {
                if hints[i].end + grace > now {
                    i += 1;
                    continue;
                }
                let h = hints.swap_remove(i);
                self.total -= 1;
                let span = (h.end - h.start).max(1e-9);
                let accuracy = accuracy(h.amounts, h.used.scaled(1.0 / span));
                let before = self.trust.get(cgroup).copied().unwrap_or(INITIAL_TRUST);
                let trust = accuracy.map_or(before, |a| updated_trust(before, a));
                if self.trust.len() < MAX_TRUSTED || self.trust.contains_key(cgroup) {
                    self.trust.insert(cgroup.clone(), trust);
                }
                self.counts.judged += 1;
                outcomes.push(Outcome {
                    id: h.id,
                    cgroup: cgroup.clone(),
                    accuracy,
                    trust,
                });
            }
            if hints.is_empty() {
                emptied.push(cgroup.clone());
            }
        }
        for c in emptied {
            self.live.remove(&c);
        }
        outcomes
    }

    /// The trust `cgroup` has earned (initial if it never hinted).
    pub fn trust(&self, cgroup: &str) -> f64 {
        self.trust.get(cgroup).copied().unwrap_or(INITIAL_TRUST)
    }
}

fn amount(a: &Amounts, resource: Resource) -> f64 {
    match resource {
        Resource::Cpu => a.cpu,
        Resource::Memory => a.memory,
        Resource::Io => a.io,
        Resource::Net => a.net,
    }
}

/// Each amount capped at `capacity`; the names of those that were.
pub fn clamp(amounts: Amounts, capacity: Amounts) -> (Amounts, Vec<String>) {
    let mut clamped = Vec::new();
    let mut cap = |name: &str, v: f64, max: f64| {
        if v > max {
            clamped.push(name.to_owned());
            max
        } else {
            v
        }
    };
    let out = Amounts {
        cpu: cap("cpu", amounts.cpu, capacity.cpu),
        memory: cap("memory", amounts.memory, capacity.memory),
        io: cap("io", amounts.io, capacity.io),
        net: cap("net", amounts.net, capacity.net),
    };
    (out, clamped)
}

/// Mean of min(1, used / hinted) over the measured resources hinted (CPU,
/// I/O, network); None if none was hinted.
pub fn accuracy(hinted: Amounts, used_mean: Amounts) -> Option<f64> {
    let pairs = [
        (hinted.cpu, used_mean.cpu),
        (hinted.memory, used_mean.memory),
        (hinted.io, used_mean.io),
        (hinted.net, used_mean.net),
    ];
    let scores: Vec<f64> = pairs
        .iter()
        .filter(|(h, _)| *h > 0.0)
        .map(|(h, u)| (u / h).clamp(0.0, 1.0))
        .collect();
    (!scores.is_empty()).then(|| scores.iter().sum::<f64>() / scores.len() as f64)
}

/// Trust after a hint of `accuracy` (see the module's docs).
pub fn updated_trust(trust: f64, accuracy: f64) -> f64 {
    (trust + TRUST_RATE * (accuracy - trust)).clamp(MIN_TRUST, 1.0)
}
