use super::*;
use shadow_wire::{Component, Prediction, PredictionBatch, Step};

fn batch(upper: f32, next_report_ms: u32) -> PredictionBatch {
    PredictionBatch {
        at_ms: 0,
        step_ms: 1000,
        components: vec![Component {
            path: "/a".into(),
            id: 1,
        }],
        predictions: vec![Prediction {
            component: 0,
            resource: Resource::Cpu,
            source: Source::Model,
            quantile: 0.95,
            volatility: 0.1,
            last: 1.0,
            next_report_ms,
            steps: (1..=6)
                .map(|a| Step {
                    ahead: a,
                    point: 1.0 + f32::from(a) * 0.1,
                    upper: upper + f32::from(a) * 0.1,
                })
                .collect(),
        }],
    }
}

const LOCAL: Sender = Sender {
    host: None,
    conn: 1,
};

fn key() -> Key {
    Key {
        host: None,
        path: "/a".into(),
    }
}

#[test]
fn holds_forecast_and_looks_ahead() {
    let t0 = Instant::now();
    let mut book = Book::default();
    book.predictions(&LOCAL, &batch(2.0, 5000), t0);
    let track = &mut book.components.get_mut(&key()).unwrap().tracks[0];
    let mut at = |t: Instant| {
        track.observe(0.5, t);
        track.wanted(t, 3)
    };
    // Lead 3 just after arrival: horizons 1..=3 → max upper 2.3.
    assert!((at(t0).unwrap() - 2.3).abs() < 1e-6);
    // Two steps later the held horizons shift: 3..=5 (2.5).
    assert!((at(t0 + Duration::from_secs(2)).unwrap() - 2.5).abs() < 1e-6);
    // Past the last horizon the last one is held.
    assert!((at(t0 + Duration::from_secs(5)).unwrap() - 2.6).abs() < 1e-6);
    // Past its promise plus grace, the forecast is stale: released.
    assert!(at(t0 + Duration::from_secs(8)).is_none());
}

/// Steps 1, 2, ... ahead with these `(point, upper)`.
fn steps(bands: &[(f32, f32)]) -> Vec<Step> {
    bands
        .iter()
        .zip(1..)
        .map(|(&(point, upper), ahead)| Step {
            ahead,
            point,
            upper,
        })
        .collect()
}

/// An on/off service one interval before a burst its forecaster has
/// learnt: quiet points for two intervals, the burst's from the third; the
/// later horizons' bands wide (calibrated over every interval).
fn before_a_burst(resource: Resource, source: Source, lead: u16) -> Reach {
    let mut b = batch(0.0, 5000);
    let p = &mut b.predictions[0];
    (p.resource, p.source) = (resource, source);
    p.steps = steps(&[(0.2, 0.5), (0.2, 1.8), (1.2, 2.4), (1.2, 2.6)]);
    let now = Instant::now();
    let mut book = Book::default();
    book.predictions(&LOCAL, &b, now);
    let track = &mut book.components.get_mut(&key()).unwrap().tracks[slot(resource)];
    track.observe(0.2, now);
    let reach = track.reach(track.live(now).unwrap(), lead);
    assert_eq!(
        track.wanted(now, lead),
        Some(reach.now),
        "margin 0, usage below"
    );
    reach
}

#[test]
fn a_rate_reaches_ahead_on_points_and_the_next_band_width() {
    // Lead 2: the next band (0.5), and the second point plus its width
    // (0.2 + 0.3), not the second band (1.8).
    let r = before_a_burst(Resource::Cpu, Source::Model, 2);
    assert!((r.now - 0.5).abs() < 1e-6, "{r:?}");
    // One interval on, the same forecast expects the burst's point.
    assert!((r.next - 1.5).abs() < 1e-6, "{r:?}");
    // Lead 3 sees the burst's point (1.2 + 0.3), raised ahead of it.
    let r = before_a_burst(Resource::Cpu, Source::Model, 3);
    assert!((r.now - 1.5).abs() < 1e-6, "{r:?}");
}

#[test]
fn timing_that_keeps_missing_loses_the_trust_and_reserves_on_the_bands() {
    let now = Instant::now();
    let mut b = batch(0.0, 5000);
    b.predictions[0].steps = steps(&[(0.2, 0.5), (0.2, 1.8)]);
    let mut book = Book::default();
    book.predictions(&LOCAL, &b, now);
    let track = &mut book.components.get_mut(&key()).unwrap().tracks[0];
    let want = |t: &mut Track| t.want(now, 2, 3).unwrap();
    track.observe(0.2, now);
    assert!(track.trusts_timing());
    assert!((want(track) - 0.5).abs() < 1e-6, "timed: the next band");
    // Demand lands above the timed want (0.5) every fifth interval: more
    // than the 5 % a 0.95 band misses.
    for k in 0..200 {
        want(track);
        track.observe(if k % 5 == 0 { 0.9 } else { 0.2 }, now);
    }
    assert!(!track.trusts_timing());
    assert!((want(track) - 1.8).abs() < 1e-6, "the later band");
    // Missing no more: trusted again within about 50 intervals.
    for _ in 0..150 {
        want(track);
        track.observe(0.2, now);
    }
    assert!(track.trusts_timing());
}

#[test]
fn a_level_or_a_hinted_band_reaches_ahead_on_the_bands() {
    // Memory is a level: how high it can go within the look-ahead.
    let r = before_a_burst(Resource::Memory, Source::Model, 2);
    assert!((r.now - 1.8).abs() < 1e-6 && r.next == r.now, "{r:?}");
    // A hint says when demand comes: its raised band is trusted.
    let r = before_a_burst(Resource::Cpu, Source::Hint, 2);
    assert!((r.now - 1.8).abs() < 1e-6, "{r:?}");
}

#[test]
fn an_agent_that_stops_reporting_usage_releases_within_the_grace() {
    let t0 = Instant::now();
    let mut book = Book::default();
    // It promised its next forecast in 30 s, but usage comes every step.
    book.predictions(&LOCAL, &batch(2.0, 30_000), t0);
    let track = &mut book.components.get_mut(&key()).unwrap().tracks[0];
    assert!(track.wanted(t0, 1).is_none(), "no usage yet: not live");
    track.observe(0.5, t0);
    let grace = Duration::from_secs(USAGE_GRACE_STEPS);
    assert!(track.wanted(t0 + grace, 1).is_some());
    assert!(
        track
            .wanted(t0 + grace + Duration::from_secs(1), 1)
            .is_none()
    );
}

#[test]
fn a_hold_raises_at_once_and_lowers_after_enough_lower_ticks() {
    let mut h = Hold::default();
    assert_eq!(h.update(1.0, 3), 1.0);
    assert_eq!(h.update(2.0, 3), 2.0, "up at once");
    assert_eq!(h.update(0.5, 3), 2.0);
    assert_eq!(h.update(0.7, 3), 2.0);
    assert_eq!(h.update(0.6, 3), 0.7, "down after 3, to their highest");
    assert_eq!(h.update(0.5, 3), 0.7);
    assert_eq!(h.update(0.9, 3), 0.9, "a higher want ends the count");
    assert_eq!(h.update(0.1, 0), 0.1, "hold 0: down at once");
    h.reset();
    assert_eq!(h.update(0.2, 3), 0.2, "after a release: from scratch");
}

#[test]
fn a_drop_the_last_forecast_foresaw_is_taken_at_once_a_dip_is_held() {
    let reach = |now, next| Reach {
        now,
        next,
        timed: now,
    };
    let mut t = Track::default();
    // In a burst whose end the forecast knows: next cycle's band is low.
    assert_eq!(t.settle_want(reach(2.0, 0.5), Some(2.0), 3), Some(2.0));
    assert_eq!(t.settle_want(reach(0.5, 0.5), Some(0.5), 3), Some(0.5));
    // In a burst it expects to go on: a lower band is a dip, held.
    assert_eq!(t.settle_want(reach(2.0, 2.0), Some(2.0), 3), Some(2.0));
    assert_eq!(t.settle_want(reach(0.5, 0.5), Some(0.5), 3), Some(2.0));
    // A forecast that expects the level to stay foresees no drop: the
    // hold runs its course.
    assert_eq!(t.settle_want(reach(0.5, 0.5), Some(0.5), 3), Some(2.0));
    assert_eq!(t.settle_want(reach(0.5, 0.5), Some(0.5), 3), Some(0.5));
    // Within the tolerance of what was foreseen counts as foreseen.
    assert_eq!(t.settle_want(reach(2.0, 1.05), Some(2.0), 3), Some(2.0));
    assert_eq!(t.settle_want(reach(1.0, 1.0), Some(1.0), 3), Some(1.0));
}

#[test]
fn margin_tracks_the_exceedance_rate() {
    let now = Instant::now();
    let mut t = Track {
        reserved: Some(1.0),
        ..Track::default()
    };
    // Usage always above: the margin climbs to its cap.
    for _ in 0..100 {
        t.observe(2.0, now);
    }
    assert_eq!(t.margin, MAX_MARGIN);
    assert!(t.exceeded > 0.8);
    t.margin = 0.5;
    // One exceedance in 20 (the nominal 5 %): the margin stays put on
    // average, so after a cycle it is back where it started.
    let start = t.margin;
    for i in 0..20 {
        t.observe(if i == 0 { 2.0 } else { 0.5 }, now);
    }
    assert!((t.margin - start).abs() < 1e-4, "{} vs {start}", t.margin);
    assert!(t.slack() > 0.0);
}

#[test]
fn usage_above_a_held_down_reservation_leaves_the_margin() {
    let now = Instant::now();
    let mut t = Track {
        reserved: Some(1.0),
        held_down: true,
        ..Track::default()
    };
    for _ in 0..20 {
        t.observe(2.0, now);
    }
    assert_eq!(t.margin, 0.0, "the ceiling, not the margin, holds it down");
    assert!(t.exceeded > 0.3, "still counted as exceeded");
}

#[test]
fn a_surprise_beyond_any_margin_leaves_the_margin() {
    let now = Instant::now();
    let mut t = Track {
        reserved: Some(0.5),
        band: 0.5,
        ..Track::default()
    };
    // A burst at 3x the band: no margin up to MAX_MARGIN would cover it.
    for _ in 0..20 {
        t.observe(1.5, now);
    }
    assert_eq!(t.margin, 0.0, "a burst nobody forecast is not a bias");
    // Usage just above the band: that is a bias, and the margin learns.
    for _ in 0..20 {
        t.observe(0.6, now);
    }
    assert!(t.margin > 0.0);
}

#[test]
fn wanted_never_below_current_usage() {
    let now = Instant::now();
    let mut book = Book::default();
    book.predictions(&LOCAL, &batch(0.5, 5000), now);
    let track = &mut book.components.get_mut(&key()).unwrap().tracks[0];
    track.observe(3.0, now);
    assert_eq!(track.wanted(now, 1), Some(3.0));
}

#[test]
fn one_host_cannot_name_more_components_than_the_cap_and_others_are_unaffected() {
    let usage = |paths: std::ops::Range<usize>| shadow_wire::UsageBatch {
        at_ms: 0,
        interval_ms: 1000,
        components: paths
            .clone()
            .map(|i| Component {
                path: format!("/flood/{i}"),
                id: i as u64,
            })
            .collect(),
        usage: (0..paths.len() as u32)
            .map(|component| shadow_wire::Usage {
                component,
                resource: Resource::Cpu,
                value: 1.0,
            })
            .collect(),
    };
    let mut book = Book::default();
    let now = Instant::now();
    let flooder = Some(Arc::<str>::from("flooder"));
    for start in (0..MAX_COMPONENTS_PER_HOST + 5000).step_by(5000) {
        book.usage(&flooder, &usage(start..start + 5000), now);
    }
    assert_eq!(book.components.len(), MAX_COMPONENTS_PER_HOST);
    // Another host, and this one, still get theirs in.
    book.usage(&Some("guest".into()), &usage(0..10), now);
    book.usage(&None, &usage(0..10), now);
    assert_eq!(book.components.len(), MAX_COMPONENTS_PER_HOST + 20);
    // Once the flood's components expire there is room again.
    book.expire(now + Duration::from_secs(700), Duration::from_secs(600));
    assert!(book.components.is_empty());
    book.usage(&flooder, &usage(0..10), now + Duration::from_secs(700));
    assert_eq!(book.components.len(), 10);
}
