//! Trace readers: NAB CSV (`timestamp,value`) and the agent's own
//! `observe --format json` lines. Both become equally spaced series: the
//! protocol (BASELINES.md) treats rows as consecutive ticks, as NAB does,
//! and takes the sampling interval as the median spacing.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context as _, bail};

/// One trace to evaluate: a NAB file, or one cgroup of `observe` output.
#[derive(Debug, Clone)]
pub(crate) struct Trace {
    /// File name, plus `:cgroup` for observe output.
    pub name: String,
    /// Median spacing of the timestamps, in seconds.
    pub interval_s: f64,
    pub values: Vec<f64>,
}

/// What to take from observe output.
#[derive(Debug, Clone)]
pub(crate) struct JsonSelect<'a> {
    pub metric: &'a str,
    pub cgroup: Option<&'a str>,
}

/// Reads a trace, telling the formats apart by content (a JSON object per
/// line vs a CSV header).
pub(crate) fn read(path: &Path, select: &JsonSelect<'_>) -> anyhow::Result<Vec<Trace>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let file = path.file_name().map_or_else(
        || path.display().to_string(),
        |f| f.to_string_lossy().into_owned(),
    );
    let series = if text.trim_start().starts_with('{') {
        parse_observe(&file, &text, select)
    } else {
        parse_csv(&file, &text).map(|s| vec![s])
    }
    .with_context(|| format!("parsing {}", path.display()))?;
    if series.is_empty() {
        bail!(
            "{}: no series (check --metric and --cgroup)",
            path.display()
        );
    }
    Ok(series)
}

fn parse_csv(name: &str, text: &str) -> anyhow::Result<Trace> {
    let mut times = Vec::new();
    let mut values = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || (i == 0 && line.starts_with("timestamp")) {
            continue;
        }
        let (ts, v) = line
            .split_once(',')
            .with_context(|| format!("line {}: expected timestamp,value", i + 1))?;
        times.push(
            parse_time(ts.trim())
                .with_context(|| format!("line {}: bad timestamp {ts:?}", i + 1))?,
        );
        let v: f64 = v
            .trim()
            .parse()
            .with_context(|| format!("line {}: bad value {v:?}", i + 1))?;
        values.push(v);
    }
    Ok(Trace {
        name: name.to_owned(),
        interval_s: median_spacing(&times)?,
        values,
    })
}

fn parse_observe(name: &str, text: &str, select: &JsonSelect<'_>) -> anyhow::Result<Vec<Trace>> {
    // Per cgroup, in order of first appearance: (timestamps, rates).
    let mut order: Vec<String> = Vec::new();
    let mut data: HashMap<String, (Vec<f64>, Vec<f64>)> = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let obj: serde_json::Value =
            serde_json::from_str(line).with_context(|| format!("line {}: not JSON", i + 1))?;
        let field = |k: &str| {
            obj.get(k)
                .with_context(|| format!("line {}: no field {k:?}", i + 1))
        };
        let cgroup = field("cgroup")?
            .as_str()
            .with_context(|| format!("line {}: cgroup is not a string", i + 1))?;
        if let Some(want) = select.cgroup
            && !(cgroup == want
                || cgroup
                    .strip_prefix(want)
                    .is_some_and(|r| r.starts_with('/')))
        {
            continue;
        }
        let num = |k: &str| {
            field(k)?
                .as_f64()
                .with_context(|| format!("line {}: {k} is not a number", i + 1))
        };
        let ts = num("ts")?;
        let interval_s = num("interval_ns")? / 1e9;
        let v = num(select.metric)?;
        if interval_s <= 0.0 {
            bail!("line {}: interval_ns must be positive", i + 1);
        }
        let entry = data.entry(cgroup.to_owned()).or_insert_with(|| {
            order.push(cgroup.to_owned());
            (Vec::new(), Vec::new())
        });
        entry.0.push(ts);
        // Per second, so that a stretched interval does not read as a spike.
        entry.1.push(v / interval_s);
    }
    order
        .into_iter()
        .filter_map(|cg| {
            let (times, values) = data.remove(&cg).unwrap_or_default();
            if times.len() < 2 {
                tracing::warn!(cgroup = %cg, "skipped: fewer than two samples");
                return None;
            }
            Some((cg, times, values))
        })
        .map(|(cg, times, values)| {
            Ok(Trace {
                name: format!("{name}:{cg}:{}", select.metric),
                interval_s: median_spacing(&times).with_context(|| format!("cgroup {cg}"))?,
                values,
            })
        })
        .collect()
}

fn median_spacing(times: &[f64]) -> anyhow::Result<f64> {
    let gaps: Vec<f64> = times
        .windows(2)
        .map(|w| w[1] - w[0])
        .filter(|d| *d > 0.0)
        .collect();
    let m = super::metrics::median(gaps);
    if m.is_nan() || m <= 0.0 {
        bail!("need at least two distinct timestamps to know the sampling interval");
    }
    Ok(m)
}

/// `YYYY-MM-DD HH:MM:SS` (or with `T`, optional fraction) as UTC, or a
/// plain number of seconds since the epoch.
fn parse_time(s: &str) -> anyhow::Result<f64> {
    if let Ok(x) = s.parse::<f64>() {
        return Ok(x);
    }
    let (date, time) = s
        .split_once([' ', 'T'])
        .context("expected a date and a time")?;
    let d: Vec<i64> = date.split('-').map(str::parse).collect::<Result<_, _>>()?;
    let time = time.trim_end_matches('Z');
    let t: Vec<f64> = time.split(':').map(str::parse).collect::<Result<_, _>>()?;
    if d.len() != 3 || t.len() != 3 {
        bail!("expected YYYY-MM-DD HH:MM:SS");
    }
    let days = days_from_civil(d[0], d[1], d[2]);
    Ok(days as f64 * 86400.0 + t[0] * 3600.0 + t[1] * 60.0 + t[2])
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_with_nab_timestamps() {
        let s = parse_csv("x.csv", "timestamp,value\n2014-02-14 14:27:00,1.5\n2014-02-14 14:32:00,2\n2014-02-14 14:37:00,0\n").unwrap();
        assert_eq!(s.values, vec![1.5, 2.0, 0.0]);
        assert_eq!(s.interval_s, 300.0);
        assert_eq!(parse_time("1970-01-02 00:00:01").unwrap(), 86401.0);
    }

    #[test]
    fn observe_lines_per_cgroup_as_rates() {
        let text = r#"{"ts": 10.0, "cgroup": "/a", "cgroup_id": 1, "interval_ns": 1000000000, "cpu_ns": 500, "new_field": 1}
{"ts": 10.0, "cgroup": "/b/c", "cgroup_id": 2, "interval_ns": 1000000000, "cpu_ns": 7}
{"ts": 12.0, "cgroup": "/a", "cgroup_id": 1, "interval_ns": 2000000000, "cpu_ns": 800}
"#;
        // /b/c has a single sample: no interval can be derived, it is skipped.
        let all = parse_observe(
            "o.json",
            text,
            &JsonSelect {
                metric: "cpu_ns",
                cgroup: None,
            },
        )
        .unwrap();
        assert_eq!(all.len(), 1);
        let a = parse_observe(
            "o.json",
            text,
            &JsonSelect {
                metric: "cpu_ns",
                cgroup: Some("/a"),
            },
        )
        .unwrap();
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].values, vec![500.0, 400.0]);
        assert_eq!(a[0].interval_s, 2.0);
        assert_eq!(a[0].name, "o.json:/a:cpu_ns");
    }
}
