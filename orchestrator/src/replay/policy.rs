//! Shadow as a fleet-replay recommender: the code a host runs, one
//! 5-minute sample per step.
//!
//! Per step, as on a host where the agent samples the VM's cgroup every
//! interval and the orchestrator decides once per interval:
//! 1. the agent's [`Forecaster`] takes the sample of the step before, and
//!    its [`Reporter`] decides whether the new forecast is worth sending
//!    (band moved, breach, heartbeat); a sent forecast is packed as the
//!    transmitter packs it ([`Prediction::of_forecast`]);
//! 2. the orchestrator's [`Track`] takes the realised usage (its margin
//!    learns from whether usage exceeded the reservation in force) and,
//!    if one was sent, holds the new forecast;
//! 3. the reservation is [`Track::want`], the engine's own decision: the
//!    reach over the look-ahead ([`Live::reach`]), times (1 + margin), never
//!    below current usage, held (up at once, down after the shipped
//!    `hold` lower steps); a managed reservation moves only when
//!    [`crate::engine::worth_rewriting`] says the move is worth a write;
//!    a forecast gone stale (no usage for 3 steps, or silent past its
//!    heartbeat and grace) releases it, and a released reservation
//!    protects nothing (limit 0).
//!
//! Not in play here: capacity and priorities (each VM is replayed alone),
//! floors and ceilings (none configured), the actuator's rate limit and
//! cooldown (1 s and 2 s, far below a 5-minute step), hints.
//!
//! Memory is a level, not a rate. The forecaster models the value it is
//! given, so it is given the level itself (KB in use): its point is the
//! expected level, its band how high the level may be at each horizon,
//! and the reservation the highest band within the look-ahead, which is
//! what a level needs (a rate would ask how much arrives per step).

use std::time::{Duration, Instant};

use shadow_forecast::{Config, Error, Forecaster, MAX_HORIZON, Reporter, ReporterConfig};
use shadow_wire::{Prediction, Resource, Source};

use super::{Input, Recommender, Unit};
use crate::{
    book::{Held, Live, Track, hold_for},
    config::DEFAULT_HOLD,
    engine::worth_rewriting,
};

/// Shadow's settings in the replay.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Settings {
    /// Quantile of the forecaster's upper band.
    pub quantile: f64,
    /// Steps the reservation looks ahead (see [`default_lead`]).
    pub lead: u16,
    /// Horizons the forecaster serves: [`MAX_HORIZON`] as on a host (an
    /// agent that transmits forecasts them all); fewer cost less per
    /// update, and the orchestrator then holds the last one beyond them.
    pub horizon: usize,
}

/// Look-ahead in the replay: the orchestrator's shipped default (3
/// steps), since benchmarks run the shipped defaults. It is in the
/// agent's steps (the held forecast's horizons), so here it reaches 15
/// minutes ahead; `--lead 1` is the least a decision made every step
/// needs.
pub fn default_lead() -> u16 {
    crate::config::Config::default().lead()
}

impl Default for Settings {
    /// The shipped defaults: the forecaster's own quantile, the
    /// orchestrator's lead, every horizon.
    fn default() -> Self {
        Self {
            // (Config::new fails only for an invalid interval.)
            quantile: Config::new(STEP_S as f64).map_or(0.95, |c| c.quantile()),
            lead: default_lead(),
            horizon: MAX_HORIZON,
        }
    }
}

/// One step, in seconds.
const STEP_S: u64 = 300;

/// Shadow's policy for one VM and resource.
#[derive(Debug)]
pub struct Shadow {
    forecaster: Forecaster,
    reporter: Reporter,
    track: Track,
    /// The band's quantile and the heartbeat, as the transmitter sends them.
    wire: (f32, u32),
    resource: Resource,
    lead: u16,
    /// Replay clock: step k is `start + k * STEP_S`.
    start: Instant,
    k: u64,
}

impl Shadow {
    /// The policy for a series in `unit`.
    pub fn new(unit: Unit, settings: Settings) -> Result<Self, Error> {
        let interval_s = STEP_S as f64;
        let config = Config::new(interval_s)?
            .with_horizon(settings.horizon)?
            .with_quantile(settings.quantile)?;
        let reporting = ReporterConfig::for_interval(interval_s);
        Ok(Self {
            forecaster: Forecaster::new(config),
            reporter: Reporter::new(reporting),
            track: Track::default(),
            wire: (
                settings.quantile as f32,
                (reporting.heartbeat_s * 1e3) as u32,
            ),
            resource: if unit.is_memory() {
                Resource::Memory
            } else {
                Resource::Cpu
            },
            lead: settings.lead.clamp(1, MAX_HORIZON as u16),
            start: Instant::now(),
            k: 0,
        })
    }

    /// The orchestrator's state for this series (margin, exceedances).
    pub fn track(&self) -> &Track {
        &self.track
    }

    /// The forecast the orchestrator holds, seen at the current step's
    /// decision (what the engine hands the system-wide aggregate).
    pub fn live(&self) -> Option<Live<'_>> {
        let now = self.now(self.k.saturating_sub(1));
        self.track.live(now)
    }

    /// The resource, as the wire protocol names it.
    pub fn resource(&self) -> Resource {
        self.resource
    }

    fn now(&self, k: u64) -> Instant {
        self.start + Duration::from_secs(k * STEP_S)
    }
}

impl Recommender for Shadow {
    fn step(&mut self, input: Input) -> Option<f64> {
        let k = self.k;
        self.k += 1;
        let now = self.now(k);
        if let Some(y) = input.previous.filter(|_| k > 0) {
            let t = ((k - 1) * STEP_S) as f64;
            let sent = match self.forecaster.update(t, y) {
                Ok(_) => {
                    let f = self.forecaster.forecast();
                    self.reporter.offer(y, &f).map(|_| {
                        Prediction::of_forecast(0, (self.resource, Source::Model), self.wire, y, &f)
                    })
                }
                // A refused sample (negative or not finite: the input
                // layer already refuses those) sends nothing.
                Err(_) => None,
            };
            // The agent sends the usage, then the forecast.
            self.track.observe(y as f32, now);
            if let Some(p) = sent {
                self.track.forecast = Some(Held::new(&p, (STEP_S * 1000) as u32, 0, now));
            }
        }
        match self
            .track
            .want(now, self.lead, hold_for(self.resource, DEFAULT_HOLD))
        {
            Some(w) if worth_rewriting(self.track.reserved, f64::from(w)) => {
                self.track.reserved = Some(w);
            }
            Some(_) => {}
            None => self.track.reserved = None,
        }
        Some(self.track.reserved.map_or(0.0, f64::from))
    }

    /// Everything is inline: the forecaster's fixed-size state, the
    /// reporter's last sent forecast, the book's track with its held
    /// forecast.
    fn state_bytes(&self) -> usize {
        size_of::<Self>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(s: &mut Shadow, ys: &[Option<f64>]) -> Vec<f64> {
        (0..ys.len())
            .map(|k| {
                s.step(Input {
                    previous: k.checked_sub(1).and_then(|j| ys[j]),
                    capacity: None,
                })
                .unwrap()
            })
            .collect()
    }

    #[test]
    fn reserves_above_a_noisy_level_and_rarely_breaks() {
        let mut x = 7u64;
        let ys: Vec<Option<f64>> = (0..3000)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                Some(100.0 + (x >> 40) as f64 / (1u64 << 24) as f64 * 20.0)
            })
            .collect();
        let mut s = Shadow::new(Unit::CpuMhz, Settings::default()).unwrap();
        let l = run(&mut s, &ys);
        assert_eq!(l[0], 0.0, "nothing to go on yet");
        let tail = 1000..3000;
        let breaks = tail.clone().filter(|&k| ys[k].unwrap() > l[k]).count();
        let share = breaks as f64 / tail.len() as f64;
        assert!(share < 0.06, "violation share {share}");
        let mean = tail.clone().map(|k| l[k]).sum::<f64>() / tail.len() as f64;
        assert!(mean > 110.0 && mean < 130.0, "mean limit {mean}");
        assert!(s.track().margin >= 0.0);
    }

    #[test]
    fn a_long_silence_releases_and_the_next_samples_restart() {
        let mut ys: Vec<Option<f64>> = vec![Some(50.0); 100];
        ys.extend(std::iter::repeat_n(None, 100));
        ys.extend(std::iter::repeat_n(Some(50.0), 10));
        let mut s = Shadow::new(Unit::MemKb, Settings::default()).unwrap();
        let l = run(&mut s, &ys);
        assert!(l[100] >= 50.0);
        // Heartbeat 30 steps + 2 of grace after the last report: released.
        assert_eq!(l[199], 0.0);
        assert_eq!(l[200], 0.0, "still nothing sent");
        assert!(l[202] >= 50.0, "reserved again from the first sample");
    }
}
