//! Throughput on many series at once: the set's (VM, resource) series
//! replicated to `n`, every series stepped in turn at each step, as a host
//! steps all its cgroups at each tick. With thousands of series, each
//! one's state is out of cache when its turn comes, which is what the
//! per-VM replay (one series at a time, state hot) does not show.

use std::{fmt::Write as _, time::Instant};

use serde::Serialize;

use super::{
    grid::{Grid, Series},
    report::label,
    run::{Kind, input, thread_cpu},
};

/// One recommender's throughput.
#[derive(Clone, Debug, Serialize)]
pub struct Speed {
    /// The recommender ("shadow" with its settings in the table).
    pub recommender: &'static str,
    /// Shadow's band quantile (absent for the baselines).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quantile: Option<f64>,
    /// Series stepped together.
    pub series: usize,
    /// Steps taken (series x steps, missing ones included).
    pub vm_steps: u64,
    /// CPU time per step, in nanoseconds.
    pub ns_per_update: f64,
    /// Steps per second of CPU time on one core.
    pub vm_steps_per_s: f64,
    /// Wall time per step, in nanoseconds (on a shared machine, above the
    /// CPU time by the waits for a core).
    pub wall_ns_per_update: f64,
    /// State kept per series, in bytes.
    pub bytes_per_series: usize,
    #[serde(skip)]
    kind: Kind,
}

/// Measures every recommender of `kinds` on `n` series.
pub fn measure(grids: &[Grid], kinds: &[Kind], n: usize) -> Vec<Speed> {
    let pool: Vec<&Series> = [false, true]
        .iter()
        .flat_map(|&memory| grids.iter().filter_map(move |g| g.series(memory)))
        .collect();
    let mut out = Vec::new();
    if pool.is_empty() || n == 0 {
        return out;
    }
    for kind in kinds {
        let mut series = Vec::with_capacity(n);
        let mut recs = Vec::with_capacity(n);
        for s in pool.iter().cycle().take(n * pool.len()) {
            if recs.len() == n {
                break;
            }
            if let Some(r) = kind.build(s) {
                series.push(*s);
                recs.push(r);
            }
        }
        if recs.is_empty() {
            continue;
        }
        let bytes = recs.iter().map(|r| r.state_bytes()).sum::<usize>() / recs.len();
        let longest = series.iter().map(|s| s.y.len()).max().unwrap_or(0);
        let mut sink = 0.0;
        let mut steps = 0u64;
        let (start, cpu) = (Instant::now(), thread_cpu());
        for k in 0..longest {
            for (r, s) in recs.iter_mut().zip(&series) {
                if k < s.y.len() {
                    sink += r.step(input(s, k)).unwrap_or(0.0);
                    steps += 1;
                }
            }
        }
        let secs = thread_cpu().saturating_sub(cpu).as_secs_f64();
        let wall = start.elapsed().as_secs_f64();
        std::hint::black_box(sink);
        out.push(Speed {
            recommender: kind.name(),
            quantile: match kind {
                Kind::Shadow(s) => Some(s.quantile),
                _ => None,
            },
            series: recs.len(),
            vm_steps: steps,
            ns_per_update: secs * 1e9 / steps.max(1) as f64,
            vm_steps_per_s: steps as f64 / secs.max(1e-12),
            wall_ns_per_update: wall * 1e9 / steps.max(1) as f64,
            bytes_per_series: bytes,
            kind: *kind,
        });
    }
    out
}

/// One JSON object per recommender.
pub fn json_lines(rows: &[Speed]) -> String {
    rows.iter()
        .map(|r| serde_json::to_string(r).unwrap_or_default() + "\n")
        .collect()
}

/// A Markdown table.
pub fn table(rows: &[Speed]) -> String {
    let mut out = String::from(
        "| recommender | series | VM-steps | ns/update (CPU) | VM-steps/s (one core) | ns/update (wall) | bytes/series |\n|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.0} | {:.0} | {:.0} | {} |",
            label(&r.kind),
            r.series,
            r.vm_steps,
            r.ns_per_update,
            r.vm_steps_per_s,
            r.wall_ns_per_update,
            r.bytes_per_series
        );
    }
    out
}
