//! Per-cgroup series under a cap: at most `max_cgroups` cgroups have their
//! own, admitted in the order they first show activity (the root `/`
//! always), kept while active and dropped with their place freed after
//! [`DROP_AFTER_TICKS`] ticks without activity.

use std::collections::HashMap;

use prometheus_client::metrics::{counter::Counter, gauge::Gauge};

use super::{CounterF, DROP_AFTER_TICKS, GaugeF, Labels, families::Families};
use crate::pipeline::Row;

/// The cgroups that have series, by path.
#[derive(Default)]
pub(super) struct Cgroups {
    by_path: HashMap<String, Seen>,
}

impl Cgroups {
    /// Records tick `now`'s rows in their cgroups' series, admitting new
    /// cgroups while fewer than `max` have series, and drops the series of
    /// cgroups idle for long. Returns the rows whose cgroup found no place.
    pub(super) fn record(&mut self, f: &Families, rows: &[Row], now: u64, max: usize) -> i64 {
        let mut unlabelled = 0;
        for row in rows {
            let cgroup = &row.sample.cgroup;
            if !self.by_path.contains_key(cgroup) {
                if cgroup != "/" && self.by_path.len() >= max {
                    unlabelled += 1;
                    continue;
                }
                self.by_path.insert(
                    cgroup.clone(),
                    Seen {
                        tick: now,
                        upper: None,
                        series: CgroupSeries::new(f, cgroup),
                    },
                );
            }
            let Some(seen) = self.by_path.get_mut(cgroup) else {
                continue;
            };
            seen.tick = now;
            let upper_before = seen.upper;
            seen.upper = row.forecast.map(|fc| fc.cpu_upper_cores);
            seen.series.record(f, row, upper_before);
        }
        // Idle (or gone) for long: the series go, the place is freed.
        self.by_path.retain(|_, seen| {
            let keep = now - seen.tick < DROP_AFTER_TICKS;
            if !keep {
                seen.series.forget(f);
            }
            keep
        });
        unlabelled
    }

    /// Cgroups that have series.
    pub(super) fn len(&self) -> usize {
        self.by_path.len()
    }
}

/// A cgroup with series: when it was last active, its upper band for the
/// coming interval (what the next interval's demand is judged by), and
/// handles on its series, so a tick neither hashes nor allocates labels.
struct Seen {
    tick: u64,
    upper: Option<f64>,
    series: CgroupSeries,
}

/// One cgroup's series. Those that only some cgroups have (a forecast, a
/// reservation, a trust) are made when first needed: a missing series
/// says "none", where 0 would say "zero".
struct CgroupSeries {
    label: Labels,
    cpu: CounterF,
    runq: CounterF,
    faults: Counter,
    io_read: Counter,
    io_write: Counter,
    io_ops: Counter,
    tx: Counter,
    rx: Counter,
    reclaim: CounterF,
    /// Made when the cgroup's memory is first known.
    memory: Option<Gauge>,
    forecast: Option<(GaugeF, GaugeF, CounterF, CounterF)>,
    reserved: Option<(GaugeF, Gauge)>,
    trust: Option<GaugeF>,
}

impl CgroupSeries {
    /// The always-present series of a newly admitted cgroup.
    fn new(f: &Families, cgroup: &str) -> Self {
        let label = vec![("cgroup".to_owned(), cgroup.to_owned())];
        Self {
            cpu: f.cpu_seconds.get_or_create_owned(&label),
            runq: f.runq_seconds.get_or_create_owned(&label),
            faults: f.page_faults.get_or_create_owned(&label),
            io_read: f.io_bytes.get_or_create_owned(&with(&label, IO_READ)),
            io_write: f.io_bytes.get_or_create_owned(&with(&label, IO_WRITE)),
            io_ops: f.io_ops.get_or_create_owned(&label),
            tx: f.net_bytes.get_or_create_owned(&with(&label, NET_TX)),
            rx: f.net_bytes.get_or_create_owned(&with(&label, NET_RX)),
            reclaim: f.reclaim_seconds.get_or_create_owned(&label),
            memory: None,
            forecast: None,
            reserved: None,
            trust: None,
            label,
        }
    }

    /// One active cgroup's interval; `upper_before` is the band that was
    /// forecast for it.
    fn record(&mut self, f: &Families, row: &Row, upper_before: Option<f64>) {
        let u = &row.sample.usage;
        self.cpu.inc_by(u.cpu_ns as f64 / 1e9);
        self.runq.inc_by(u.runq_delay_ns as f64 / 1e9);
        self.faults.inc_by(u.page_faults);
        self.io_read.inc_by(u.io_read_bytes);
        self.io_write.inc_by(u.io_write_bytes);
        self.io_ops.inc_by(u.io_ops);
        self.tx.inc_by(u.net_tx_bytes);
        self.rx.inc_by(u.net_rx_bytes);
        self.reclaim.inc_by(u.reclaim_stall_ns as f64 / 1e9);
        if let Some(bytes) = row.sample.memory.memory_bytes {
            self.memory
                .get_or_insert_with(|| f.memory_bytes.get_or_create_owned(&self.label))
                .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        }
        if let Some(fc) = row.forecast {
            let (point, upper, shortfall, slack) = self.forecast.get_or_insert_with(|| {
                (
                    f.forecast.get_or_create_owned(&self.label),
                    f.upper.get_or_create_owned(&self.label),
                    f.shortfall.get_or_create_owned(&self.label),
                    f.slack.get_or_create_owned(&self.label),
                )
            });
            point.set(fc.cpu_forecast_cores);
            upper.set(fc.cpu_upper_cores);
            if let Some(band) = upper_before {
                let secs = row.sample.interval_ns as f64 / 1e9;
                let gap = fc.cpu_demand_cores - band;
                shortfall.inc_by(gap.max(0.0) * secs);
                slack.inc_by((-gap).max(0.0) * secs);
            }
            if let Some(t) = fc.hint_trust {
                self.trust
                    .get_or_insert_with(|| f.trust.get_or_create_owned(&self.label))
                    .set(t);
            }
        }
        if let Some(r) = row.reservation {
            let (reserved, managed) = self.reserved.get_or_insert_with(|| {
                (
                    f.reserved.get_or_create_owned(&self.label),
                    f.managed.get_or_create_owned(&self.label),
                )
            });
            reserved.set(r.cpu_reserved_cores);
            managed.set(i64::from(r.cpu_reservation_managed));
        }
    }

    /// Drops every series of a cgroup.
    fn forget(&self, f: &Families) {
        let one = &self.label;
        for family in [
            &f.cpu_seconds,
            &f.runq_seconds,
            &f.shortfall,
            &f.slack,
            &f.reclaim_seconds,
        ] {
            family.remove(one);
        }
        for family in [&f.forecast, &f.upper, &f.reserved, &f.trust] {
            family.remove(one);
        }
        f.page_faults.remove(one);
        f.io_ops.remove(one);
        f.managed.remove(one);
        f.memory_bytes.remove(one);
        for extra in [IO_READ, IO_WRITE] {
            f.io_bytes.remove(&with(one, extra));
        }
        for extra in [NET_TX, NET_RX] {
            f.net_bytes.remove(&with(one, extra));
        }
    }
}

/// The extra label of the I/O and network byte counters.
const IO_READ: (&str, &str) = ("op", "read");
const IO_WRITE: (&str, &str) = ("op", "write");
const NET_TX: (&str, &str) = ("direction", "tx");
const NET_RX: (&str, &str) = ("direction", "rx");

/// `label` with one more pair: what `new` makes and `forget` removes.
fn with(label: &Labels, (key, value): (&str, &str)) -> Labels {
    let mut l = label.clone();
    l.push((key.to_owned(), value.to_owned()));
    l
}
