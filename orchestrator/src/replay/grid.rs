//! A trace's rows on the protocol's regular grid (PROTOCOL.md §3):
//! UTC-aligned 300-s bins, several rows in one bin merged by the
//! column-wise maximum, a bin without a row a missing step (NaN), and
//! rows of a VM that was not provisioned discarded.

use std::path::Path;

use super::Unit;
use super::input::{self, CPU_CAP, CPU_MHZ, CPU_PCT, InputError, MEM_CAP, MEM_KB, Problem, Table};

/// One step, in seconds.
pub const STEP_S: i64 = 300;
/// Steps per UTC day.
pub const STEPS_PER_DAY: i64 = 288;
/// Most steps per series (about 20 years of 5-minute steps): bounds the
/// memory a malformed timestamp could ask for.
pub const MAX_STEPS: usize = 1 << 21;

/// One resource of one VM on the grid.
#[derive(Clone, Debug)]
pub struct Series {
    /// Unit of the values (chooses the histogram buckets of the baselines).
    pub unit: Unit,
    /// Usage per step, NaN where missing.
    pub y: Vec<f64>,
    /// Provisioned capacity per step (the manual baseline), NaN where
    /// missing; None when the file has no such column.
    pub capacity: Option<Vec<f64>>,
}

/// One VM's trace on the grid.
#[derive(Clone, Debug)]
pub struct Grid {
    /// The VM's name (the file name without its extensions).
    pub name: String,
    /// First bin, `floor(ts / 300)` of the earliest kept row.
    pub bin0: i64,
    /// Number of steps.
    pub steps: usize,
    /// CPU, if the file has a CPU column.
    pub cpu: Option<Series>,
    /// Memory, if the file has `mem_kb`.
    pub memory: Option<Series>,
}

impl Grid {
    /// The UTC calendar day of step `k`.
    pub fn day(&self, k: usize) -> i64 {
        (self.bin0 + k as i64).div_euclid(STEPS_PER_DAY)
    }

    /// Start of step `k` in Unix seconds.
    pub fn time(&self, k: usize) -> f64 {
        ((self.bin0 + k as i64) * STEP_S) as f64
    }

    /// The series of `resource` (`true`: memory).
    pub fn series(&self, memory: bool) -> Option<&Series> {
        if memory {
            self.memory.as_ref()
        } else {
            self.cpu.as_ref()
        }
    }
}

/// Reads a trace file onto the grid.
pub fn load(file: &Path) -> Result<Grid, InputError> {
    let table = input::read(file)?;
    from_table(&table, file)
}

/// The VM's name: the file name up to its first dot.
pub fn name_of(file: &Path) -> String {
    let name = file.file_name().map_or_else(
        || file.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    name.split('.').next().unwrap_or_default().to_owned()
}

/// Puts a parsed file on the grid. A row whose provisioned capacities
/// (those the file has) are all 0 is discarded: the VM did not exist then
/// (PROTOCOL.md §3 rule 1; files without capacity columns keep every row).
pub fn from_table(table: &Table, file: &Path) -> Result<Grid, InputError> {
    let error = |line, problem| InputError::Content {
        file: file.to_owned(),
        line,
        problem,
    };
    let caps: Vec<usize> = [CPU_CAP, MEM_CAP]
        .into_iter()
        .filter(|&c| table.present[c])
        .collect();
    let live = |r: &input::Row| caps.is_empty() || caps.iter().any(|&c| r.values[c] != 0.0);
    let bin = |r: &input::Row| (r.ts / STEP_S as f64).floor() as i64;
    let kept = table.rows.iter().filter(|r| live(r));
    let (Some(bin0), Some(last)) = (
        kept.clone().map(bin).min(),
        kept.clone().max_by_key(|r| bin(r)),
    ) else {
        return Err(error(1, Problem::NoRows));
    };
    let span = (bin(last) - bin0) as u64 + 1;
    if span > MAX_STEPS as u64 {
        return Err(error(
            last.line,
            Problem::SpanTooLong {
                steps: span,
                max: MAX_STEPS,
            },
        ));
    }
    let steps = span as usize;
    let mut columns = [(); 5].map(|()| vec![f64::NAN; steps]);
    for r in kept {
        let k = (bin(r) - bin0) as usize;
        for (c, column) in columns.iter_mut().enumerate() {
            let v = r.values[c];
            // Column-wise maximum; NaN (no value) never wins.
            if !v.is_nan() && (column[k].is_nan() || v > column[k]) {
                column[k] = v;
            }
        }
    }
    let [cpu_mhz, cpu_pct, mem_kb, cpu_cap, mem_cap] = columns;
    let take = |c: usize, v: Vec<f64>| table.present[c].then_some(v);
    let cpu = match (take(CPU_MHZ, cpu_mhz), take(CPU_PCT, cpu_pct)) {
        (Some(y), _) => Some(Series {
            unit: Unit::CpuMhz,
            y,
            capacity: take(CPU_CAP, cpu_cap),
        }),
        (None, Some(y)) => Some(Series {
            unit: Unit::CpuPct,
            y,
            capacity: None,
        }),
        (None, None) => None,
    };
    let memory = take(MEM_KB, mem_kb).map(|y| Series {
        unit: Unit::MemKb,
        y,
        capacity: take(MEM_CAP, mem_cap),
    });
    Ok(Grid {
        name: name_of(file),
        bin0,
        steps,
        cpu,
        memory,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(text: &str) -> Result<Grid, InputError> {
        let t = input::parse(text.as_bytes(), Path::new("vm-7.csv.zst"))?;
        from_table(&t, Path::new("vm-7.csv.zst"))
    }

    #[test]
    fn bins_merge_by_max_and_gaps_are_missing() {
        // Bin 99: not provisioned, discarded. Bin 100: two rows (301-s
        // drift). Bin 101: none (missing). Bin 102: an empty row and a
        // full one.
        let g = grid(
            "ts,cpu_mhz,cpu_capacity_mhz,mem_kb,mem_capacity_kb\n\
             29700,0,0,0,0\n\
             30000,5,10,100,1000\n\
             30299,7,10,90,1000\n\
             30600,,,,\n\
             30700,1,10,80,2000\n",
        )
        .unwrap();
        assert_eq!(g.name, "vm-7");
        assert_eq!(g.bin0, 100);
        assert_eq!(g.steps, 3);
        let cpu = g.cpu.as_ref().unwrap();
        assert_eq!(cpu.unit, Unit::CpuMhz);
        assert_eq!(cpu.y[0], 7.0);
        assert!(cpu.y[1].is_nan());
        assert_eq!(cpu.y[2], 1.0);
        let mem = g.memory.as_ref().unwrap();
        assert_eq!(mem.y[0], 100.0);
        assert_eq!(mem.capacity.as_ref().unwrap()[2], 2000.0);
        // Day = floor(bin / 288).
        assert_eq!(g.day(0), 0);
        assert_eq!(g.day(188), 1);
    }

    #[test]
    fn cpu_percent_files_keep_every_row() {
        let g = grid("ts,cpu_pct\n0,0\n86400,3\n").unwrap();
        assert_eq!(g.steps, 289);
        assert!(g.memory.is_none());
        let cpu = g.cpu.unwrap();
        assert_eq!(cpu.unit, Unit::CpuPct);
        assert!(cpu.capacity.is_none());
        assert_eq!(cpu.y[288], 3.0);
    }

    #[test]
    fn empty_or_absurd_spans_are_errors() {
        assert!(matches!(
            grid("ts,cpu_mhz,cpu_capacity_mhz\n0,1,0\n"),
            Err(InputError::Content {
                problem: Problem::NoRows,
                ..
            })
        ));
        assert!(matches!(
            grid("ts,cpu_pct\n0,1\n1e12,1\n"),
            Err(InputError::Content {
                line: 3,
                problem: Problem::SpanTooLong { .. },
                ..
            })
        ));
    }
}
