//! The pre-allocation engine: each tick, turns the held forecasts into
//! reservations for the managed cgroups (within floors, ceilings and
//! capacity) and recommendations for all others.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use shadow_wire::{PredictionBatch, Resource, UsageBatch};

use crate::{
    aggregate::{Aggregator, Sums, SystemForecast},
    allocate::{Want, allocate},
    book::{Book, Key, Optin, Reach, Record, Sender, hold_for, slot},
    capacity::Capacity,
    config::Config,
};

/// Relative change below which a managed reservation is not rewritten:
/// knob writes cost the kernel work and are rate limited.
const REWRITE: f64 = 0.02;
/// Relative change that makes a reservation worth telling the agent.
const RESEND: f32 = 0.05;
/// Ticks between full resends of the reservation state to agents.
const RESEND_EVERY: u64 = 30;

/// Resources with cgroup knobs (network has none).
const MANAGEABLE: [Resource; 3] = [Resource::Cpu, Resource::Memory, Resource::Io];

/// A reservation to write to a managed cgroup.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// cgroup path relative to the v2 root.
    pub path: String,
    /// The resource.
    pub resource: Resource,
    /// Amount to reserve, in the resource's unit; None releases it (the
    /// cgroup's own values are restored).
    pub amount: Option<f64>,
    /// Reservation in force before this decision.
    pub previous: Option<f32>,
    /// The cgroup's latest usage (a hard limit never goes below it).
    pub usage: f64,
    /// The configured ceiling of the resource for this cgroup.
    pub ceiling: f64,
    /// Why, for the log and the dry-run lines (formatted only when a write
    /// is made: most decisions of a large host never reach one).
    pub reason: Reason,
}

/// What one tick decided.
pub struct Cycle {
    /// The system-wide forecast per resource, in [`Resource::ALL`] order.
    pub system: [SystemForecast; 4],
    /// Writes to make.
    pub decisions: Vec<Decision>,
    /// Resources whose managed floors alone exceed capacity.
    pub over_committed: Vec<Resource>,
}

/// The engine's state between ticks.
pub struct Engine {
    config: Config,
    capacity: Capacity,
    /// Everything known about the components.
    book: Book,
    aggregator: Aggregator,
    ticks: u64,
}

impl Engine {
    /// An engine over `config` and the host's `capacity`.
    pub fn new(config: Config, capacity: Capacity) -> Self {
        Self {
            config,
            capacity,
            book: Book::default(),
            aggregator: Aggregator::default(),
            ticks: 0,
        }
    }

    /// Takes a reloaded configuration and capacity, keeping everything
    /// learnt (forecasts, margins, the system's correlation). Returns the
    /// (cgroup, resource) pairs that were managed and no longer are: their
    /// knobs must go back to the originals. Pairs still managed, perhaps
    /// under new bounds, are fitted to them by the next cycle.
    pub fn reconfigure(&mut self, config: Config, capacity: Capacity) -> Vec<(String, Resource)> {
        let mut released = Vec::new();
        for (key, entry) in &mut self.book.components {
            if entry.optin == Optin::Unknown {
                continue;
            }
            let new = optin(&config, key);
            for resource in MANAGEABLE {
                let managed_by = |optin: Optin, config: &Config| match optin {
                    Optin::Rule(r) => config.manage[r].bounds(resource).is_some(),
                    Optin::No | Optin::Unknown => false,
                };
                let (was, is) = (
                    managed_by(entry.optin, &self.config),
                    managed_by(new, &config),
                );
                if was != is {
                    // A recommendation was never written, and a written
                    // reservation is about to be undone: either way the
                    // next cycle decides afresh.
                    entry.tracks[slot(resource)].reserved = None;
                }
                if was && !is {
                    released.push((key.path.clone(), resource));
                }
            }
            entry.optin = new;
        }
        self.config = config;
        self.capacity = capacity;
        released
    }

    /// Takes in a prediction batch from `sender`.
    pub fn predictions(&mut self, sender: &Sender, b: &PredictionBatch, now: Instant) {
        self.book.predictions(sender, b, now);
    }

    /// Takes in a usage batch from the agent of `host`.
    pub fn usage(&mut self, host: &Option<Arc<str>>, b: &UsageBatch, now: Instant) {
        self.book.usage(host, b, now);
    }

    /// An agent's connection closed: the forecasts it sent are dropped, so
    /// the next cycle releases what was reserved from them (another agent
    /// reporting the same cgroups keeps them, or brings them back with its
    /// next forecast).
    pub fn agent_gone(&mut self, sender: &Sender) {
        self.book.sender_gone(sender);
    }

    /// Forgets components nobody has reported on for `idle`.
    pub fn expire(&mut self, now: Instant, idle: Duration) {
        self.book.expire(now, idle);
    }

    /// Every component known, with its state (for metrics and status).
    pub fn components(&self) -> impl ExactSizeIterator<Item = (&Key, &Record)> {
        self.book.components.iter()
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The host's capacity.
    pub fn capacity(&self) -> &Capacity {
        &self.capacity
    }

    /// One decision cycle at `now`: a single pass over the book (it is the
    /// largest structure here; one pass keeps the cycle memory-bound once)
    /// that sums the system forecast, updates recommendations and collects
    /// what the managed cgroups want; then the managed wants are fitted
    /// within capacity.
    pub fn cycle(&mut self, now: Instant) -> Cycle {
        self.ticks += 1;
        let lead = self.config.lead();
        let hold = self.config.hold();
        let mut sums = Sums::default();
        let mut decisions = Vec::new();
        let mut wants: [Vec<(Key, Want)>; 4] = Default::default();
        for (key, entry) in &mut self.book.components {
            // Each held forecast is seen at `now` once, for both uses.
            let lives = entry.tracks.each_ref().map(|t| t.live(now));
            if key.host.is_none() {
                for (i, t) in entry.tracks.iter().enumerate() {
                    sums.add(i, t, lives[i]);
                }
            }
            let reaches: [Option<Reach>; 4] =
                std::array::from_fn(|i| lives[i].map(|l| entry.tracks[i].reach(l, lead)));
            let wanted: [Option<f32>; 4] =
                std::array::from_fn(|i| entry.tracks[i].wanted_at(reaches[i]));
            if entry.optin == Optin::Unknown {
                entry.optin = optin(&self.config, key);
            }
            let rule = match entry.optin {
                Optin::Rule(r) => Some(&self.config.manage[r]),
                Optin::No | Optin::Unknown => None,
            };
            for resource in MANAGEABLE {
                let track = &mut entry.tracks[slot(resource)];
                let wanted = track.settle_want(
                    reaches[slot(resource)].unwrap_or_default(),
                    wanted[slot(resource)],
                    hold_for(resource, hold),
                );
                let Some(rule) = rule.filter(|r| r.bounds(resource).is_some()) else {
                    // Recommendation only.
                    track.reserved = wanted;
                    continue;
                };
                let bounds = rule.bounds(resource).expect("filtered above");
                match wanted {
                    Some(w) => wants[slot(resource)].push((
                        key.clone(),
                        Want {
                            priority: rule.priority,
                            floor: bounds.floor.0,
                            ceiling: bounds.ceiling.0,
                            wanted: f64::from(w),
                        },
                    )),
                    None => {
                        if let Some(previous) = track.reserved.take() {
                            decisions.push(Decision {
                                path: key.path.clone(),
                                resource,
                                amount: None,
                                previous: Some(previous),
                                usage: track.usage.map_or(0.0, |u| f64::from(u.0)),
                                ceiling: bounds.ceiling.0,
                                reason: Reason::Release,
                            });
                        }
                    }
                }
            }
        }
        let system = self.aggregator.finish(sums, &self.capacity);
        let mut over_committed = Vec::new();
        for resource in MANAGEABLE {
            let managed = std::mem::take(&mut wants[slot(resource)]);
            let list: Vec<Want> = managed.iter().map(|m| m.1).collect();
            let (granted, over) = allocate(&list, self.capacity.of(resource));
            if over {
                over_committed.push(resource);
            }
            for ((key, want), amount) in managed.into_iter().zip(granted) {
                let Some(entry) = self.book.components.get_mut(&key) else {
                    continue;
                };
                let track = &mut entry.tracks[slot(resource)];
                track.held_down = amount + 1e-9 < want.wanted;
                let previous = track.reserved;
                if !worth_rewriting(previous, amount) {
                    continue;
                }
                track.reserved = Some(amount as f32);
                decisions.push(Decision {
                    path: key.path,
                    resource,
                    amount: Some(amount),
                    previous,
                    usage: track.usage.map_or(0.0, |u| f64::from(u.0)),
                    ceiling: want.ceiling,
                    reason: Reason::Reserve {
                        want,
                        amount,
                        margin: track.margin,
                    },
                });
            }
        }
        Cycle {
            system,
            decisions,
            over_committed,
        }
    }

    /// A decision could not be applied: the reservation in force is still
    /// the previous one, so the next tick tries again.
    pub fn not_applied(&mut self, d: &Decision) {
        let key = Key {
            host: None,
            path: d.path.clone(),
        };
        if let Some(entry) = self.book.components.get_mut(&key) {
            entry.tracks[slot(d.resource)].reserved = d.previous;
        }
    }

    /// The reservation state to send to the agent(s) of `host`: what
    /// changed since last sent, or everything every [`RESEND_EVERY`] ticks.
    pub fn reservations(
        &mut self,
        host: &Option<Arc<str>>,
        at_ms: u64,
    ) -> shadow_wire::ReservationBatch {
        let full = self.ticks % RESEND_EVERY == 1;
        let mut out = Vec::new();
        for (key, entry) in &mut self.book.components {
            if &key.host != host {
                continue;
            }
            let rule = match entry.optin {
                Optin::Rule(r) => Some(&self.config.manage[r]),
                Optin::No | Optin::Unknown => None,
            };
            for resource in Resource::ALL {
                let t = &mut entry.tracks[slot(resource)];
                let Some(reserved) = t.reserved else {
                    continue;
                };
                let moved = t
                    .reported
                    .is_none_or(|r| (reserved - r).abs() > RESEND * r.max(1e-9));
                if !(full || moved) {
                    continue;
                }
                t.reported = Some(reserved);
                out.push(shadow_wire::Reservation {
                    path: key.path.clone(),
                    resource,
                    reserved,
                    managed: rule.is_some_and(|r| r.bounds(resource).is_some()),
                    margin: t.margin,
                    exceeded: t.exceeded,
                    slack: t.slack(),
                });
            }
        }
        shadow_wire::ReservationBatch {
            at_ms,
            reservations: out,
        }
    }
}

/// Whether a managed reservation should move from `previous` to `amount`:
/// moves under [`REWRITE`] are not worth a knob write. Shared with the
/// fleet replay, which applies the same rule.
pub fn worth_rewriting(previous: Option<f32>, amount: f64) -> bool {
    previous
        .map(f64::from)
        .is_none_or(|p| (amount - p).abs() > REWRITE * p.max(1e-9))
}

/// Whether the configuration opts `key` in: only cgroups of this host can
/// be written.
fn optin(config: &Config, key: &Key) -> Optin {
    if key.host.is_some() {
        return Optin::No;
    }
    config
        .manage
        .iter()
        .position(|r| crate::config::glob_match(&r.cgroup.0, &key.path))
        .map_or(Optin::No, Optin::Rule)
}

/// Why a decision was made.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Reason {
    /// A reservation from the forecast.
    Reserve {
        /// What the component wanted and its bounds.
        want: Want,
        /// What it got.
        amount: f64,
        /// Its margin at the time.
        margin: f32,
    },
    /// The forecast went stale: back to the original values.
    Release,
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Reason::Release => {
                write!(
                    f,
                    "no live forecast (agent overdue or cgroup gone): releasing"
                )
            }
            Reason::Reserve {
                want,
                amount,
                margin,
            } => {
                let cut = if amount + 1e-9 < want.wanted.min(want.ceiling) {
                    ", cut to fit capacity"
                } else {
                    ""
                };
                write!(
                    f,
                    "wanted {:.4} (band x (1 + margin {margin:.2}), or usage) within floor {} and ceiling {}{cut}",
                    want.wanted, want.floor, want.ceiling,
                )
            }
        }
    }
}

#[cfg(test)]
mod tests;
