//! What the orchestrator knows about each component: the forecast it holds
//! (the last one its agent sent), the latest realised usage, and how well
//! the reservations made from those forecasts have fared.
//!
//! The margin over the forecast's band adapts from realised usage
//! (stochastic quantile tracking): each interval whose usage exceeded the
//! reservation raises it by `ETA * (1 - p)`, each other interval lowers it
//! by `ETA * p`, so it settles where usage exceeds the reservation a share
//! `p = 1 - quantile` of the time, whatever the forecaster's own bias.
//! It corrects a bias, not a surprise: usage beyond what the largest
//! margin could have bought (a burst nobody forecast) leaves it as it is,
//! so one unforeseen burst does not hold every later reservation up.
//!
//! Control is asymmetric ([`Hold`]): a higher want is taken at once; a
//! lower one only after it has stayed lower for `hold` ticks, and then to
//! the highest want of those ticks, unless the forecast of the cycle
//! before foresaw the lower band ([`FORESEEN`]).

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::{Duration, Instant},
};

use shadow_wire::{Resource, Source};

/// Step of the margin's quantile tracking.
const ETA: f32 = 0.05;
/// The margin never exceeds this (a reservation of at most twice the band).
pub const MAX_MARGIN: f32 = 1.0;
/// Weight of the newest interval in the exceeded/slack averages (about the
/// last 50 intervals).
const ALPHA: f32 = 0.02;
/// Usage at or above this share of the reservation counts as exceeding it.
const AT_CAP: f32 = 0.97;
/// Memory reservations are held this many times longer than the others.
/// A memory level given back too early is reclaimed and then faulted in
/// again, which costs far more than a CPU quota changed twice; Autopilot
/// decays memory peaks with a half-life four times its CPU one (48 h and
/// 12 h) for that reason. On the public Bitbrains set (docs/benchmarks.md)
/// it keeps the median memory slack at 0.21 with no seriously impacted
/// VM-day, where the CPU's hold would impact 0.3 % of them.
pub const MEMORY_HOLD_FACTOR: u16 = 4;

/// The hold of `resource`'s reservations for a configured `hold`.
pub fn hold_for(resource: Resource, hold: u16) -> u16 {
    match resource {
        Resource::Memory => hold.saturating_mul(MEMORY_HOLD_FACTOR),
        Resource::Cpu | Resource::Io | Resource::Net => hold,
    }
}

/// A lower band counts as foreseen when the last cycle's forecast expected
/// it within this factor: the hold guards against a band that dips for a
/// tick and comes back, which its forecast did not see coming; a drop the
/// forecast saw coming one interval ahead (a burst whose end a learnt
/// period knows) is taken at once instead of holding the burst's level
/// `hold` ticks longer.
pub const FORESEEN: f32 = 1.1;

/// Steps without usage after which an agent counts as gone.
pub const USAGE_GRACE_STEPS: u64 = 3;
/// Horizons held per forecast: the agent's forecasters serve up to
/// [`shadow_forecast::MAX_HORIZON`]; further ones are dropped.
pub const HELD_STEPS: usize = shadow_forecast::MAX_HORIZON;

/// A component: a cgroup on the orchestrator's host (`host` is None, from a
/// local agent) or inside a remote agent's guest.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    /// Remote agent's host name; None for this host.
    pub host: Option<Arc<str>>,
    /// cgroup path relative to the v2 root.
    pub path: String,
}

/// The forecast held for one component and resource. Kept compact (one
/// of these per component and resource is what a cycle walks through).
#[derive(Clone, Copy, Debug)]
pub struct Held {
    /// Point forecast per horizon, in increasing `ahead`.
    points: [f32; HELD_STEPS],
    /// Upper band per horizon.
    uppers: [f32; HELD_STEPS],
    /// Ticks ahead of each horizon.
    aheads: [u16; HELD_STEPS],
    len: u8,
    /// Whether the band came from a hint.
    pub source: Source,
    /// Length of one step, in milliseconds.
    step_ms: u32,
    /// Milliseconds after `received` when the agent becomes overdue.
    valid_ms: u32,
    /// When it arrived.
    received: Instant,
    /// The connection it came over (released when that one closes).
    origin: u64,
    /// Quantile of the bands.
    pub quantile: f32,
    /// The resource is a level (memory), not a rate.
    level: bool,
    /// Typical one-step error.
    pub volatility: f32,
}

impl Held {
    /// Holds a prediction whose steps are `step_ms` long, received over
    /// connection `origin`.
    pub fn new(p: &shadow_wire::Prediction, step_ms: u32, origin: u64, now: Instant) -> Self {
        let mut held = Self {
            points: [0.0; HELD_STEPS],
            uppers: [0.0; HELD_STEPS],
            aheads: [0; HELD_STEPS],
            len: p.steps.len().min(HELD_STEPS) as u8,
            source: p.source,
            step_ms: step_ms.max(1),
            // Two missed ticks of grace past the promised next report.
            valid_ms: p.next_report_ms.saturating_add(step_ms.saturating_mul(2)),
            received: now,
            origin,
            quantile: p.quantile,
            volatility: p.volatility,
            level: p.resource == Resource::Memory,
        };
        for (i, s) in p.steps.iter().take(HELD_STEPS).enumerate() {
            held.aheads[i] = s.ahead;
            held.points[i] = s.point;
            held.uppers[i] = s.upper.max(s.point);
        }
        held
    }

    /// The forecast as seen at `now`, or None if the agent is overdue.
    /// The elapsed time is worked out once here: a cycle asks each held
    /// forecast several questions, and 40,000 of them per tick add up.
    pub fn live(&self, now: Instant) -> Option<Live<'_>> {
        let d = now.saturating_duration_since(self.received);
        let ms = d.as_secs().saturating_mul(1000) + u64::from(d.subsec_millis());
        if ms > u64::from(self.valid_ms) {
            return None;
        }
        let step = u64::from(self.step_ms);
        let elapsed = ((ms + step / 2) / step).min(u64::from(u16::MAX)) as u16;
        Some(Live {
            held: self,
            elapsed,
        })
    }
}

/// A held forecast at one moment: its horizons shifted by the whole steps
/// elapsed since it was made.
#[derive(Clone, Copy, Debug)]
pub struct Live<'a> {
    held: &'a Held,
    elapsed: u16,
}

impl Live<'_> {
    /// Index of the horizon covering the interval that ends `k` steps from
    /// now (k = 0: the one ending now, or the first horizon if the forecast
    /// is that fresh); past the last horizon, the last one.
    fn index(&self, k: u16) -> Option<usize> {
        let len = usize::from(self.held.len);
        if len == 0 {
            return None;
        }
        let ahead = self.elapsed.saturating_add(k).max(1);
        Some(
            self.held.aheads[..len]
                .iter()
                .position(|&a| a >= ahead)
                .unwrap_or(len - 1),
        )
    }

    /// `(point, upper)` for the interval ending `k` steps from now.
    pub fn at(&self, k: u16) -> (f32, f32) {
        self.index(k)
            .map_or((0.0, 0.0), |i| (self.held.points[i], self.held.uppers[i]))
    }

    /// What must be waiting so demand does not outrun the knob over the
    /// next `lead` intervals (the band the reservation is made from), with
    /// the timing the forecast claims trusted (`timed`) or not.
    ///
    /// A level (memory), a band a hint raised, or a forecast whose timing
    /// has not earned trust: the highest upper band of those intervals. A
    /// level's band is how high it can go, and a hint says when demand
    /// comes, so both are trusted as they are.
    ///
    /// A rate whose timing is trusted: the next interval's upper band, and
    /// for the later ones their point plus that band's width above its
    /// point. The point says what the forecaster knows of when demand
    /// comes (a learnt period moves it to the burst's ticks); the next
    /// interval's width says how far demand strays from it. A later
    /// horizon's own band is calibrated over every interval, so for a
    /// service with bursts at times no model knows it sits at the burst
    /// level through every gap (a tenth of the two-ahead intervals start a
    /// burst): reserving on it holds the burst level all the time, which a
    /// static quota does as well. Where the timing is unknown this follows
    /// demand one interval ahead, as a reactive allocator does; where it is
    /// known, it raises before the burst (docs/orchestrator.md).
    ///
    /// `next` is what the forecast expects the reach to be one interval
    /// on. A level's is its reach now: memory given back early is
    /// reclaimed and faulted in again, so a level is lowered only after
    /// its (longer) hold, whatever its forecast expects.
    pub fn reach(&self, lead: u16, timed: bool) -> Reach {
        let timed_now = self.reach_from(1, lead, true);
        let now = if timed {
            timed_now
        } else {
            self.reach_from(1, lead, false)
        };
        let next = if self.held.level {
            now
        } else {
            self.reach_from(2, lead, timed)
        };
        Reach {
            now,
            next,
            timed: timed_now,
        }
    }

    /// The reach over `lead` intervals from the one ending `from` steps
    /// from now (see [`Live::reach`]).
    fn reach_from(&self, from: u16, lead: u16, timed: bool) -> f32 {
        let lead = lead.max(1);
        let (Some(next), Some(start), Some(last)) = (
            self.index(1),
            self.index(from),
            self.index(from.saturating_add(lead - 1)),
        ) else {
            return 0.0;
        };
        let held = self.held;
        if !timed || held.level || held.source == Source::Hint {
            return held.uppers[start..=last]
                .iter()
                .copied()
                .fold(0.0, f32::max);
        }
        let width = held.uppers[next] - held.points[next];
        let first = if from <= 1 { held.uppers[next] } else { 0.0 };
        held.points[start..=last]
            .iter()
            .fold(first, |m, &p| m.max(p + width))
    }
}

/// What must be waiting ([`Live::reach`]): over the next `lead` intervals
/// (`now`), and what the same forecast expects that to be one interval
/// later (`next`), so that the next cycle can tell a drop it foresaw from
/// a dip it did not.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Reach {
    /// Over the next `lead` intervals.
    pub now: f32,
    /// Over the `lead` intervals from the one after the next.
    pub next: f32,
    /// `now` with the forecast's timing trusted, for the track to judge
    /// that timing by (equal to `now` when it is trusted).
    pub timed: f32,
}

/// One component's state for one resource.
#[derive(Clone, Copy, Debug, Default)]
pub struct Track {
    /// The forecast held.
    pub forecast: Option<Held>,
    /// Latest realised usage and when it arrived.
    pub usage: Option<(f32, Instant)>,
    /// Reservation (or recommendation) in force.
    pub reserved: Option<f32>,
    /// Relative margin added to the band.
    pub margin: f32,
    /// Recent share of intervals whose usage exceeded the reservation.
    pub exceeded: f32,
    /// Reservation last told to the agent.
    pub reported: Option<f32>,
    /// The reservation in force is held down by its ceiling or by capacity,
    /// not by the forecast: usage above it then says nothing about the
    /// margin, which cannot buy more.
    pub held_down: bool,
    /// The band (before the margin) the reservation in force came from.
    pub band: f32,
    /// What the forecast of the last cycle expected the band to be at this
    /// one (None: no forecast then).
    expected: Option<f32>,
    /// The want the forecast's timing gave at the last cycle, and the
    /// recent share of intervals whose usage exceeded it
    /// ([`Track::trusts_timing`]).
    timed_want: Option<f32>,
    timed_misses: f32,
    /// What the component wants, raised at once and lowered late.
    pub hold: Hold,
    used: f32,
    unused: f32,
}

/// A want that rises at once and falls only after `ticks` lower ones in a
/// row, to the highest of them: a band that dips for a tick between two
/// bursts does not give back what the next one needs, and a band that has
/// come down stays down.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Hold {
    level: Option<f32>,
    lower_ticks: u16,
    lower_peak: f32,
}

impl Hold {
    /// Takes this tick's want; returns the want held.
    pub fn update(&mut self, want: f32, ticks: u16) -> f32 {
        let level = match self.level {
            Some(level) if want < level => {
                self.lower_ticks += 1;
                self.lower_peak = self.lower_peak.max(want);
                if self.lower_ticks < ticks {
                    return level;
                }
                self.lower_peak
            }
            _ => want,
        };
        *self = Self {
            level: Some(level),
            lower_ticks: 0,
            lower_peak: 0.0,
        };
        level
    }

    /// Forgets the level (the reservation was released).
    pub fn reset(&mut self) {
        *self = Self::default();
    }
}

impl Track {
    /// Recent mean of unused reservation relative to mean usage.
    pub fn slack(&self) -> f32 {
        if self.used > 0.0 {
            self.unused / self.used
        } else {
            0.0
        }
    }

    /// Learns from one interval's realised usage.
    pub fn observe(&mut self, value: f32, now: Instant) {
        self.usage = Some((value, now));
        if let Some(t) = self.timed_want {
            let miss = f32::from(u8::from(value > t));
            self.timed_misses += ALPHA * (miss - self.timed_misses);
        }
        let Some(reserved) = self.reserved else {
            return;
        };
        let p = self
            .forecast
            .map_or(0.05, |f| (1.0 - f.quantile).clamp(0.001, 0.5));
        // A hard cap censors demand: usage pinned at the reservation means
        // demand was at least that, so it counts as exceeding it.
        let over = value >= AT_CAP * reserved;
        // Beyond what the largest margin buys: a surprise, not a bias.
        let surprise = self.band > 0.0 && value > self.band * (1.0 + MAX_MARGIN);
        self.margin = if over && (self.held_down || surprise) {
            self.margin
        } else if over {
            self.margin + ETA * (1.0 - p)
        } else {
            self.margin - ETA * p
        }
        .clamp(0.0, MAX_MARGIN);
        self.exceeded += ALPHA * (f32::from(u8::from(over)) - self.exceeded);
        self.used += ALPHA * (value - self.used);
        self.unused += ALPHA * ((reserved - value).max(0.0) - self.unused);
    }

    /// What this component should have over the next `lead` intervals: its
    /// band raised by its margin, and never below what it uses now. None
    /// if its agent is overdue (the reservation is then released).
    pub fn wanted(&self, now: Instant, lead: u16) -> Option<f32> {
        self.wanted_at(self.live(now).map(|l| self.reach(l, lead)))
    }

    /// Whether the reservation trusts the timing the forecast claims (see
    /// [`Live::reach`]): while reserving on it (the want it gives, margin
    /// included) misses no more than the share `1 - quantile` of recent
    /// intervals (about the last 50) that the band is meant to miss. A
    /// series whose demand keeps straying above the next interval's width
    /// at later ticks (noisy, drifting, bursts its forecaster cannot place
    /// often) loses the trust and is reserved on its later bands, which
    /// are calibrated for it; it earns it back by missing less.
    pub fn trusts_timing(&self) -> bool {
        let p = self
            .forecast
            .map_or(0.05, |f| (1.0 - f.quantile).clamp(0.001, 0.5));
        self.timed_misses <= p
    }

    /// The reach of `live` this track reserves from.
    pub fn reach(&self, live: Live<'_>, lead: u16) -> Reach {
        live.reach(lead, self.trusts_timing())
    }

    /// [`Track::wanted`] with the reach of the forecast held at the moment
    /// (None: no live forecast) already worked out.
    pub fn wanted_at(&self, reach: Option<Reach>) -> Option<f32> {
        let band = reach?.now * (1.0 + self.margin);
        let current = self.usage.map_or(0.0, |u| u.0);
        Some(band.max(current))
    }

    /// Takes this cycle's reach (before the margin) and want (None: no
    /// live forecast): remembers the band, for the margin to tell a bias
    /// from a surprise, and returns the want held ([`Hold`]: up at once,
    /// down after `hold` lower ones, or at once to a band the last cycle's
    /// forecast foresaw: [`FORESEEN`]). The engine and the fleet replay
    /// both decide through here.
    pub fn settle_want(&mut self, reach: Reach, want: Option<f32>, hold: u16) -> Option<f32> {
        let foreseen = self.expected.is_some_and(|e| e <= reach.now * FORESEEN);
        self.band = reach.now;
        self.timed_want = want.map(|_| reach.timed * (1.0 + self.margin));
        // Only a drop the forecast predicts (its next band lower than this
        // one) is remembered: a forecast that expects things to stay as
        // they are foresees nothing about a dip.
        self.expected = want
            .filter(|_| reach.next * FORESEEN < reach.now)
            .map(|_| reach.next);
        match want {
            Some(w) => Some(self.hold.update(w, if foreseen { 0 } else { hold })),
            None => {
                self.hold.reset();
                None
            }
        }
    }

    /// [`Track::settle_want`] with the band and want worked out from the
    /// forecast held at `now` (the engine works them out itself, seeing
    /// each forecast once per cycle for its sums too).
    pub fn want(&mut self, now: Instant, lead: u16, hold: u16) -> Option<f32> {
        let reach = self.live(now).map(|l| self.reach(l, lead));
        let want = self.wanted_at(reach);
        self.settle_want(reach.unwrap_or_default(), want, hold)
    }

    /// The held forecast at `now`, if its agent is still reporting: it
    /// promised a forecast by `next_report_ms` (plus grace), and it sends
    /// usage every step, so usage older than [`USAGE_GRACE_STEPS`] steps
    /// means the agent is gone or hung even if its forecast's promise
    /// runs longer. Its reservation is then released within those steps.
    pub fn live(&self, now: Instant) -> Option<Live<'_>> {
        let held = self.forecast.as_ref()?;
        let grace = u64::from(held.step_ms) * USAGE_GRACE_STEPS;
        let reporting = self.usage.is_some_and(|(_, at)| {
            now.saturating_duration_since(at).as_millis() <= u128::from(grace)
        });
        reporting.then(|| held.live(now)).flatten()
    }
}

/// Whether the configuration opts a component in, worked out once per
/// component rather than matching every glob every tick.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Optin {
    /// Not looked up yet.
    #[default]
    Unknown,
    /// Recommendations only.
    No,
    /// Managed under this rule (index into the configuration's rules).
    Rule(usize),
}

/// One component.
#[derive(Clone, Copy, Debug, Default)]
pub struct Record {
    /// One track per resource, in [`Resource::ALL`] order.
    pub tracks: [Track; 4],
    /// Whether it is managed.
    pub optin: Optin,
}

/// Most components one host's agents may have in the book (the design's
/// 10,000+ cgroups per host, with room): a remote peer cannot grow the
/// orchestrator's memory without bound by naming ever new paths.
pub const MAX_COMPONENTS_PER_HOST: usize = 16_384;

/// Every component.
#[derive(Default)]
pub struct Book {
    /// Per component, its tracks.
    pub components: HashMap<Key, Record>,
    /// Components per host key, kept with `components`.
    per_host: HashMap<Option<Arc<str>>, usize>,
    /// Hosts told (in the log) that they are at the cap, until an expiry
    /// makes room.
    at_cap: HashSet<Option<Arc<str>>>,
}

/// Index of a resource in a component's tracks.
pub fn slot(resource: Resource) -> usize {
    match resource {
        Resource::Cpu => 0,
        Resource::Memory => 1,
        Resource::Io => 2,
        Resource::Net => 3,
    }
}

/// Who sent a batch: the agent's host (None: this host) and the
/// connection it came over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sender {
    /// Remote agent's host name; None for an agent of this host.
    pub host: Option<Arc<str>>,
    /// The connection's number.
    pub conn: u64,
}

impl Book {
    /// Takes in a prediction batch from `sender`.
    pub fn predictions(&mut self, sender: &Sender, b: &shadow_wire::PredictionBatch, now: Instant) {
        for p in &b.predictions {
            let Some(c) = b.components.get(p.component as usize) else {
                continue;
            };
            let Some(record) = self.entry(&sender.host, &c.path) else {
                continue;
            };
            record.tracks[slot(p.resource)].forecast =
                Some(Held::new(p, b.step_ms, sender.conn, now));
        }
    }

    /// Drops the forecasts `sender` sent (its connection closed), so the
    /// next cycle releases what was reserved from them. Forecasts another
    /// connection sent for the same cgroups stay.
    pub fn sender_gone(&mut self, sender: &Sender) {
        for (key, record) in &mut self.components {
            if key.host != sender.host {
                continue;
            }
            for track in &mut record.tracks {
                if track.forecast.is_some_and(|f| f.origin == sender.conn) {
                    track.forecast = None;
                }
            }
        }
    }

    /// Takes in a usage batch from the agent of `host`.
    pub fn usage(&mut self, host: &Option<Arc<str>>, b: &shadow_wire::UsageBatch, now: Instant) {
        for u in &b.usage {
            let Some(c) = b.components.get(u.component as usize) else {
                continue;
            };
            if let Some(record) = self.entry(host, &c.path) {
                record.tracks[slot(u.resource)].observe(u.value, now);
            }
        }
    }

    /// The record of `path` on `host`, made if new, unless `host` is at
    /// [`MAX_COMPONENTS_PER_HOST`] (then None, and one warning per host).
    fn entry(&mut self, host: &Option<Arc<str>>, path: &str) -> Option<&mut Record> {
        let key = Key {
            host: host.clone(),
            path: path.to_owned(),
        };
        if !self.components.contains_key(&key) {
            let count = self.per_host.entry(host.clone()).or_default();
            if *count >= MAX_COMPONENTS_PER_HOST {
                if self.at_cap.insert(host.clone()) {
                    tracing::warn!(
                        host = host.as_deref().unwrap_or("local"),
                        cap = MAX_COMPONENTS_PER_HOST,
                        "a host's agents named more components than the cap; new ones are ignored until old ones expire"
                    );
                }
                return None;
            }
            *count += 1;
        }
        Some(self.components.entry(key).or_default())
    }

    /// Forgets components whose agent has said nothing for `idle`
    /// (removed cgroups, departed agents).
    pub fn expire(&mut self, now: Instant, idle: Duration) {
        let per_host = &mut self.per_host;
        self.components.retain(|key, entry| {
            let live = entry.tracks.iter().any(|t| {
                let last = t
                    .usage
                    .map(|u| u.1)
                    .into_iter()
                    .chain(t.forecast.map(|f| f.received));
                last.into_iter()
                    .any(|at| now.saturating_duration_since(at) < idle)
            });
            if !live && let Some(n) = per_host.get_mut(&key.host) {
                *n = n.saturating_sub(1);
            }
            live
        });
        self.per_host.retain(|_, n| *n > 0);
        let per_host = &self.per_host;
        self.at_cap.retain(|h| {
            per_host
                .get(h)
                .is_some_and(|&n| n >= MAX_COMPONENTS_PER_HOST)
        });
    }
}

#[cfg(test)]
mod tests;
