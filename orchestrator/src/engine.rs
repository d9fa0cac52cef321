//! The pre-allocation engine: each tick, turns the held forecasts into
//! reservations for the managed cgroups (within floors, ceilings and
//! capacity) and recommendations for all others.

use std::{sync::Arc, time::Instant};

use shadow_agent::wire::{self, Resource};

use crate::{
    aggregate::{Aggregator, SystemForecast},
    allocate::{Want, allocate},
    book::{Book, Key, slot},
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
    /// The cgroup's latest usage (a hard limit never goes below it).
    pub usage: f64,
    /// Why, for the log and the dry-run lines.
    pub reason: String,
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
    pub book: Book,
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

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The host's capacity.
    pub fn capacity(&self) -> &Capacity {
        &self.capacity
    }

    /// One decision cycle at `now`.
    pub fn cycle(&mut self, now: Instant) -> Cycle {
        self.ticks += 1;
        let system = self.aggregator.cycle(&self.book, &self.capacity, now);
        let lead = self.config.lead();
        let mut decisions = Vec::new();
        let mut over_committed = Vec::new();
        for resource in [Resource::Cpu, Resource::Memory, Resource::Io] {
            let i = slot(resource);
            let mut managed: Vec<(&Key, Want)> = Vec::new();
            for (key, tracks) in &mut self.book.components {
                let track = &mut tracks[i];
                let rule = match &key.host {
                    None => self.config.rule_for(&key.path),
                    Some(_) => None,
                };
                let bounds = rule.and_then(|r| r.bounds(resource).map(|b| (r.priority, b)));
                let wanted = track.wanted(now, lead);
                match (bounds, wanted) {
                    (Some((priority, b)), Some(w)) => managed.push((
                        key,
                        Want {
                            priority,
                            floor: b.floor.0,
                            ceiling: b.ceiling.0,
                            wanted: f64::from(w),
                        },
                    )),
                    (Some(_), None) => {
                        if track.reserved.take().is_some() {
                            decisions.push(Decision {
                                path: key.path.clone(),
                                resource,
                                amount: None,
                                usage: track.usage.map_or(0.0, |u| f64::from(u.0)),
                                reason:
                                    "no live forecast (agent overdue or cgroup idle): releasing"
                                        .into(),
                            });
                        }
                    }
                    // Recommendation only.
                    (None, w) => track.reserved = w,
                }
            }
            let wants: Vec<Want> = managed.iter().map(|m| m.1).collect();
            let (granted, over) = allocate(&wants, self.capacity.of(resource));
            if over {
                over_committed.push(resource);
            }
            let keys: Vec<Key> = managed.into_iter().map(|m| m.0.clone()).collect();
            for ((key, want), amount) in keys.into_iter().zip(wants).zip(granted) {
                let track = &mut self
                    .book
                    .components
                    .get_mut(&key)
                    .expect("key from this map")[i];
                let previous = track.reserved.map(f64::from);
                let changed = previous.is_none_or(|p| (amount - p).abs() > REWRITE * p.max(1e-9));
                if !changed {
                    continue;
                }
                track.reserved = Some(amount as f32);
                decisions.push(Decision {
                    path: key.path.clone(),
                    resource,
                    amount: Some(amount),
                    usage: track.usage.map_or(0.0, |u| f64::from(u.0)),
                    reason: format!(
                        "forecast {:.4} x (1 + margin {:.2}), floor {}, ceiling {}{}",
                        want.wanted / f64::from(1.0 + track.margin),
                        track.margin,
                        want.floor,
                        want.ceiling,
                        if amount + 1e-9 < want.wanted.min(want.ceiling) {
                            ", cut to fit capacity"
                        } else {
                            ""
                        }
                    ),
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
    /// `previous`, so the next tick tries again.
    pub fn not_applied(&mut self, d: &Decision, previous: Option<f32>) {
        let key = Key {
            host: None,
            path: d.path.clone(),
        };
        if let Some(tracks) = self.book.components.get_mut(&key) {
            tracks[slot(d.resource)].reserved = previous;
        }
    }

    /// The reservation state to send to the agent(s) of `host`: what
    /// changed since last sent, or everything every [`RESEND_EVERY`] ticks.
    pub fn reservations(&mut self, host: &Option<Arc<str>>, at_ms: u64) -> wire::ReservationBatch {
        let full = self.ticks % RESEND_EVERY == 1;
        let mut out = Vec::new();
        for (key, tracks) in &mut self.book.components {
            if &key.host != host {
                continue;
            }
            let managed = key.host.is_none() && self.config.rule_for(&key.path).is_some();
            for resource in Resource::ALL {
                let t = &mut tracks[slot(resource)];
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
                out.push(wire::Reservation {
                    path: key.path.clone(),
                    resource,
                    reserved,
                    managed: managed
                        && self
                            .config
                            .rule_for(&key.path)
                            .and_then(|r| r.bounds(resource))
                            .is_some(),
                    margin: t.margin,
                    exceeded: t.exceeded,
                    slack: t.slack(),
                });
            }
        }
        wire::ReservationBatch {
            at_ms,
            reservations: out,
        }
    }
}
