//! What the orchestrator holds for the cgroups this agent observes: the
//! latest reservation per (cgroup, resource), owned by the pipeline. Each
//! tick it takes in the batches the transmitter received since the last one
//! and drops what it holds for cgroups no longer observed, so the map never
//! outgrows the live cgroups.
//!
//! A reservation is kept until another one replaces it or its cgroup goes:
//! the orchestrator sends only those that moved, and all of them only now
//! and then (every 30 of its own ticks, whose length the agent does not
//! know), so age says nothing about whether one is still in force.

use std::collections::{HashMap, HashSet};

use shadow_wire::{Reservation, ReservationBatch, Resource};

use crate::collector::Sample;

/// The latest reservation per (cgroup path, resource).
#[derive(Debug, Default)]
pub struct Reservations {
    latest: HashMap<(String, Resource), Reservation>,
}

impl Reservations {
    /// Takes in a batch, newer than those taken before.
    pub fn take(&mut self, batch: ReservationBatch) {
        for r in batch.reservations {
            self.latest.insert((r.path.clone(), r.resource), r);
        }
    }

    /// Drops the reservations of cgroups without a sample this tick (gone,
    /// or outside the agent's scope: never shown either way).
    pub fn retain_observed(&mut self, samples: &[Sample]) {
        if self.latest.is_empty() {
            return;
        }
        let observed: HashSet<&str> = samples.iter().map(|s| s.cgroup.as_str()).collect();
        self.latest
            .retain(|(path, _), _| observed.contains(path.as_str()));
    }

    /// What the orchestrator holds for `cgroup`'s `resource`, if it said.
    pub fn get(&self, cgroup: &str, resource: Resource) -> Option<&Reservation> {
        self.latest.get(&(cgroup.to_owned(), resource))
    }

    /// Forgets everything (another orchestrator: what the last one held is
    /// not what this one will).
    pub fn clear(&mut self) {
        self.latest.clear();
    }

    /// Reservations held.
    pub fn len(&self) -> usize {
        self.latest.len()
    }

    /// True when none are held.
    pub fn is_empty(&self) -> bool {
        self.latest.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use agent_ebpf::Counters;

    use super::*;

    fn reservation(path: &str, resource: Resource, reserved: f32) -> Reservation {
        Reservation {
            path: path.into(),
            resource,
            reserved,
            managed: true,
            margin: 0.1,
            exceeded: 0.0,
            slack: 0.0,
        }
    }

    fn batch(reservations: Vec<Reservation>) -> ReservationBatch {
        ReservationBatch {
            at_ms: 0,
            reservations,
        }
    }

    fn sample(path: &str) -> Sample {
        Sample {
            ts: 0.0,
            cgroup: path.into(),
            cgroup_id: 1,
            interval_ns: 1,
            usage: Counters::default(),
            memory: Default::default(),
        }
    }

    #[test]
    fn the_latest_is_kept_until_replaced() {
        let mut held = Reservations::default();
        held.take(batch(vec![
            reservation("/a", Resource::Cpu, 1.0),
            reservation("/a", Resource::Net, 1e6),
        ]));
        // A later batch with only what moved.
        held.take(batch(vec![reservation("/a", Resource::Cpu, 2.0)]));
        assert_eq!(held.get("/a", Resource::Cpu).unwrap().reserved, 2.0);
        assert_eq!(held.get("/a", Resource::Net).unwrap().reserved, 1e6);
        assert!(held.get("/a", Resource::Io).is_none());
        assert!(held.get("/b", Resource::Cpu).is_none());
    }

    #[test]
    fn cgroups_no_longer_observed_are_dropped() {
        let mut held = Reservations::default();
        held.take(batch(vec![
            reservation("/a", Resource::Cpu, 1.0),
            reservation("/b", Resource::Cpu, 1.0),
            reservation("/b", Resource::Io, 1.0),
        ]));
        held.retain_observed(&[sample("/a"), sample("/c")]);
        assert_eq!(held.len(), 1);
        assert!(held.get("/a", Resource::Cpu).is_some());
        held.retain_observed(&[]);
        assert!(held.is_empty());
    }
}
