//! Tests of the per-cgroup shadows: forecasts, hints, the quiet band, memory.

use agent_ebpf::Counters;

use super::*;

/// The CPUs the tests' agent may use.
const CPUS: f64 = 4.0;

/// A ledger on a host with 8 CPUs and plenty of everything else.
fn ledger() -> Ledger {
    use crate::hint::{Amounts, ClientLimits};
    Ledger::new(ClientLimits::new(Amounts {
        cpu: 8.0,
        memory: 1e12,
        io: 1e12,
        net: 1e12,
    }))
}

/// Submits the hint `json` for /c1 at `now`; its id.
fn hint(ledger: &mut Ledger, json: &[u8], now: f64) -> u64 {
    let Ok(crate::hint::protocol::Command::Hint(spec)) =
        crate::hint::parse_line(json, ledger.limits())
    else {
        panic!("hint refused")
    };
    ledger.submit("/c1", &spec, now).unwrap().id
}

fn sample(id: u64, ts: f64, cores: f64, io_bytes: u64) -> Sample {
    Sample {
        ts,
        cgroup: format!("/c{id}"),
        cgroup_id: id,
        interval_ns: 1_000_000_000,
        usage: Counters {
            cpu_ns: (cores * 1e9) as u64,
            io_write_bytes: io_bytes,
            ..Counters::default()
        },
        memory: Default::default(),
    }
}

#[test]
fn steady_demand_is_forecast_with_a_band_above_it() {
    let mut shadows = Shadows::new(Duration::from_secs(1), 0.95, 1, CPUS).unwrap();
    let mut observations = Vec::new();
    let mut sent = 0;
    for i in 0..300 {
        // 1.5 cores with a small wobble.
        let cores = 1.5 + 0.1 * ((i % 7) as f64 / 7.0 - 0.5);
        observations.clear();
        shadows.observe(&sample(1, f64::from(i), cores, 0), &mut observations);
        sent += usize::from(observations[0].send);
    }
    assert_eq!(observations.len(), 1, "no I/O or network used: CPU only");
    let f = Shadows::cpu_forecast(&observations).expect("a forecast");
    assert!((f.cpu_forecast_cores - 1.5).abs() < 0.1, "{f:?}");
    assert!(f.cpu_upper_cores >= f.cpu_forecast_cores, "{f:?}");
    assert!(
        f.cpu_upper_cores < 2.0,
        "band too wide for a steady series: {f:?}"
    );
    // A steady series reports rarely: far fewer than one per tick.
    assert!(sent < 60, "{sent} reports in 300 ticks");
}

#[test]
fn demand_counts_waiting_but_never_more_than_the_cpus() {
    let mut shadows = Shadows::new(Duration::from_secs(1), 0.95, 1, CPUS).unwrap();
    let mut out = Vec::new();
    let mut s = sample(1, 1.0, 0.25, 0);
    s.usage.runq_delay_ns = 250_000_000;
    shadows.observe(&s, &mut out);
    assert_eq!(out[0].value, 0.5, "ran + waited");
    // Many threads queued: the summed waits exceed what the CPUs could
    // serve.
    out.clear();
    let mut s = sample(1, 2.0, 0.5, 0);
    s.usage.runq_delay_ns = (CPUS * 4.0 * 1e9) as u64;
    shadows.observe(&s, &mut out);
    assert_eq!(out[0].value, CPUS);
}

#[test]
fn io_is_forecast_once_used() {
    let mut shadows = Shadows::new(Duration::from_secs(1), 0.95, 6, CPUS).unwrap();
    let mut observations = Vec::new();
    shadows.observe(&sample(1, 1.0, 0.5, 0), &mut observations);
    assert_eq!(observations.len(), 1);
    observations.clear();
    shadows.observe(&sample(1, 2.0, 0.5, 4096), &mut observations);
    let io = observations
        .iter()
        .find(|r| r.resource == Resource::Io)
        .unwrap();
    assert_eq!(io.value, 4096.0);
    assert_eq!(io.forecast.unwrap().horizon, 6);
    assert!(io.send, "a new series' first forecast is sent");
}

#[test]
fn a_hint_raises_the_band_in_its_window_only_and_is_judged() {
    use crate::hint::ledger::INITIAL_TRUST;
    let mut ledger = ledger();
    let id = hint(
        &mut ledger,
        br#"{"cpu":4,"net":1000,"start_in":"10s","duration":"5s"}"#,
        100.0,
    );
    let mut shadows = Shadows::new(Duration::from_secs(1), 0.95, 6, CPUS).unwrap();
    let mut out = Vec::new();
    let mut seen = Vec::new();
    for t in 90..=120 {
        out.clear();
        shadows.observe_hinted(
            &sample(1, f64::from(t), 0.5, 0),
            Some(&mut ledger),
            &mut out,
        );
        let cpu = out[0];
        let f = Shadows::cpu_forecast(&out).unwrap();
        seen.push((t, f.cpu_upper_cores, cpu.source, cpu.hint, cpu.send));
        // The next interval (t, t+1] overlaps the window [110, 115).
        let inside = (110..=114).contains(&t);
        assert_eq!(f.hint_id.is_some(), inside, "t={t}: {seen:?}");
        if inside {
            assert_eq!(f.hint_id, Some(id));
            assert!(f.cpu_upper_cores >= 4.0 * INITIAL_TRUST, "t={t}");
            assert_eq!(cpu.source, Source::Hint);
            assert!(cpu.send, "hinted forecasts are always sent");
            assert!(
                out.iter().any(|r| r.resource == Resource::Net),
                "net series made for the hint"
            );
        } else if !(104..=116).contains(&t) {
            assert!(f.cpu_upper_cores < 2.0, "t={t}: {seen:?}");
            assert_eq!(cpu.source, Source::Model);
        }
        ledger.settle(f64::from(t), 1.0);
    }
    // Hinted 4 cores (and 1000 B/s), used 0.5 (and nothing): trusted less.
    assert!(
        ledger.trust("/c1") < INITIAL_TRUST - 0.2,
        "{}",
        ledger.trust("/c1")
    );
}

#[test]
fn between_announced_bursts_the_band_comes_down_to_the_quiet_level() {
    let mut ledger = ledger();
    let mut hinted = Shadows::new(Duration::from_secs(1), 0.95, 3, CPUS).unwrap();
    let mut blind = Shadows::new(Duration::from_secs(1), 0.95, 3, CPUS).unwrap();
    let (mut out, mut blind_out) = (Vec::new(), Vec::new());
    let (mut quiet_bands, mut blind_bands, mut window_bands) = (vec![], vec![], vec![]);
    // 0.3 cores, bursts of 1.5 cores for 3 s at irregular gaps of 8 to
    // 17 s (nothing a model could learn the timing of), each announced
    // 4 s ahead.
    let mut next_burst = 10u64;
    let mut lcg = 12345u64;
    for t in 0..600u64 {
        let ts = 1000.0 + t as f64;
        if t + 4 == next_burst {
            hint(
                &mut ledger,
                br#"{"cpu":1.5,"start_in":"4s","duration":"3s"}"#,
                ts,
            );
        }
        // The sample at `ts` is the interval ending there.
        let in_burst = t > next_burst && t <= next_burst + 3;
        let cores = if in_burst { 1.5 } else { 0.3 };
        out.clear();
        hinted.observe_hinted(&sample(1, ts, cores, 0), Some(&mut ledger), &mut out);
        blind_out.clear();
        blind.observe(&sample(1, ts, cores, 0), &mut blind_out);
        let (f, b) = (out[0].forecast.unwrap(), blind_out[0].forecast.unwrap());
        let top = |f: &Forecast| f.upper[..3].iter().copied().fold(0.0, f64::max);
        // Quiet stretches: the next three intervals are outside every
        // window (and not just after one).
        let quiet = t > next_burst + 4 || t + 4 < next_burst;
        if t >= 200 && quiet && t < next_burst {
            quiet_bands.push(top(&f));
            blind_bands.push(top(&b));
        }
        if t >= 200 && t + 1 == next_burst {
            window_bands.push(f.upper[1]);
        }
        ledger.settle(ts, 1.5);
        if t == next_burst + 3 {
            lcg = lcg
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            next_burst += 8 + (lcg >> 33) % 10;
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (q, b) = (median(&mut quiet_bands), median(&mut blind_bands));
    assert!(
        b > 1.0,
        "the model alone holds the band near the bursts: {b}"
    );
    assert!(
        q < 0.5,
        "announced bursts: the band between them is quiet: {q}"
    );
    assert!(
        window_bands.iter().all(|&w| w >= 1.5 * 0.5),
        "inside a window the band is the hint's: {window_bands:?}"
    );
}

/// A sample with a known memory level of `bytes`.
fn with_memory(mut s: Sample, bytes: u64) -> Sample {
    s.memory.memory_bytes = Some(bytes);
    s
}

#[test]
fn memory_is_forecast_as_a_level_once_known() {
    const MIB: f64 = 1024.0 * 1024.0;
    let mut shadows = Shadows::new(Duration::from_secs(1), 0.95, 6, CPUS).unwrap();
    let mut out = Vec::new();
    // Unknown level: no memory series (an unknown is not a zero).
    shadows.observe(&sample(1, 0.0, 0.1, 0), &mut out);
    assert!(out.iter().all(|o| o.resource != Resource::Memory));
    // A working set of 512 MiB with a small wobble, then a jump to
    // 1 GiB that stays: a level with a rare jump.
    let mut last = None;
    for t in 1..400u64 {
        let level = if t < 300 { 512.0 } else { 1024.0 } * MIB + (t % 5) as f64 * 64e3;
        out.clear();
        shadows.observe(
            &with_memory(sample(1, t as f64, 0.1, 0), level as u64),
            &mut out,
        );
        let m = out.iter().find(|o| o.resource == Resource::Memory).unwrap();
        assert_eq!(m.value, level.floor());
        assert_eq!(
            m.forecast.unwrap().horizon,
            6,
            "forecast over the look-ahead"
        );
        if t == 299 {
            let f = Shadows::memory_forecast(&out).unwrap();
            assert!((f.memory_forecast_bytes / MIB - 512.0).abs() < 8.0, "{f:?}");
            assert!(f.memory_upper_bytes >= f.memory_forecast_bytes, "{f:?}");
            assert!(f.memory_upper_bytes < 560.0 * MIB, "band too wide: {f:?}");
        }
        last = Shadows::memory_forecast(&out);
        // The jump is followed within two ticks (a rare jump cannot
        // be foreseen: the tick of the jump itself is a miss).
        if t == 302 {
            let f = last.unwrap();
            assert!(
                (f.memory_forecast_bytes / MIB - 1024.0).abs() < 16.0,
                "{f:?}"
            );
        }
    }
    // A hundred intervals after the jump the level is the new one.
    let f = last.unwrap();
    assert!(
        (f.memory_forecast_bytes / MIB - 1024.0).abs() < 16.0,
        "{f:?}"
    );
    assert!(f.memory_upper_bytes >= 1000.0 * MIB, "{f:?}");
}

#[test]
fn a_memory_hint_raises_the_memory_band_and_is_judged_on_the_level() {
    use crate::hint::ledger::INITIAL_TRUST;
    const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
    let mut ledger = ledger();
    let id = hint(
        &mut ledger,
        br#"{"memory":"2GiB","start_in":"10s","duration":"5s"}"#,
        100.0,
    );
    let mut shadows = Shadows::new(Duration::from_secs(1), 0.95, 6, CPUS).unwrap();
    let mut out = Vec::new();
    for t in 90..=120 {
        out.clear();
        // Holds 1 GiB throughout: half of what was announced.
        let s = with_memory(sample(1, f64::from(t), 0.1, 0), 1 << 30);
        shadows.observe_hinted(&s, Some(&mut ledger), &mut out);
        let m = *out.iter().find(|o| o.resource == Resource::Memory).unwrap();
        let f = m.forecast.unwrap();
        if (110..=114).contains(&t) {
            assert_eq!(m.hint, Some(id), "t={t}");
            assert_eq!(m.source, Source::Hint, "t={t}");
            assert!(f.upper[0] >= 2.0 * GIB * INITIAL_TRUST, "t={t}: {f:?}");
            assert!(m.send, "hinted forecasts are always sent");
        } else if !(104..=116).contains(&t) {
            assert_eq!(m.source, Source::Model, "t={t}");
            assert!(f.upper[0] < 1.2 * GIB, "t={t}: {f:?}");
        }
        ledger.settle(f64::from(t), 1.0);
    }
    // Used half the hinted level: trusted less, but not as little as
    // a hint of which nothing came.
    let trust = ledger.trust("/c1");
    assert!(trust < INITIAL_TRUST && trust > 0.5, "{trust}");
}

#[test]
fn shadows_are_per_cgroup_and_dropped_with_it() {
    let mut shadows = Shadows::new(Duration::from_secs(1), 0.95, 1, CPUS).unwrap();
    let mut out = Vec::new();
    shadows.observe(&sample(1, 1.0, 1.0, 0), &mut out);
    shadows.observe(&sample(2, 1.0, 0.0, 0), &mut out);
    assert_eq!(shadows.len(), 2);
    shadows.retain_only(&[sample(2, 2.0, 0.0, 0)]);
    assert_eq!(shadows.len(), 1);
    // A time that goes backwards is refused, not a panic.
    out.clear();
    shadows.observe(&sample(2, 0.5, 1.0, 0), &mut out);
    assert!(out[0].forecast.is_none());
    assert!(Shadows::new(Duration::ZERO, 0.95, 1, CPUS).is_err());
}
