//! Per-VM trace files: CSV, plain or zstd-compressed (recognised by the
//! zstd magic number, not the name), with a header naming the columns.
//!
//! Read columns: `ts` (Unix seconds) and any of `cpu_mhz` or `cpu_pct`,
//! `mem_kb`, `cpu_capacity_mhz`, `mem_capacity_kb`; others are ignored.
//! Parsing is bounded (file size, line length, rows) and validated: a bad
//! file is an [`InputError`] naming the file and the line, never a panic
//! and never a silently skipped row. An empty field is a missing value
//! (that column has no sample in that row).

use std::{
    fs::File,
    io::{self, BufRead, BufReader, Read},
    path::{Path, PathBuf},
};

/// Largest decompressed file read (a month of 5-minute rows is < 1 MiB).
pub const MAX_BYTES: u64 = 1 << 30;
/// Longest line.
pub const MAX_LINE: usize = 4096;
/// Most data rows per file.
pub const MAX_ROWS: usize = 10_000_000;

/// The zstd frame magic number.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// Why a trace file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// The file could not be opened or read (or is not valid zstd).
    #[error("{}: {source}", file.display())]
    Io {
        /// The file.
        file: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The content is wrong at a line (1 = the header).
    #[error("{}:{line}: {problem}", file.display())]
    Content {
        /// The file.
        file: PathBuf,
        /// Line number, from 1.
        line: u64,
        /// What is wrong.
        problem: Problem,
    },
}

/// What is wrong with a line.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Problem {
    /// The file has no header line.
    #[error("empty file (no header)")]
    Empty,
    /// The header lacks `ts`.
    #[error("no `ts` column in the header")]
    NoTimestamp,
    /// The header has no usage column: nothing to replay.
    #[error("no usage column (`cpu_mhz`, `cpu_pct` or `mem_kb`) in the header")]
    NoUsage,
    /// A column appears twice, so which one to read is ambiguous.
    #[error("column `{0}` appears twice")]
    DuplicateColumn(String),
    /// Both CPU columns: their units differ, so the replay will not guess.
    #[error("both `cpu_mhz` and `cpu_pct`: give one CPU column")]
    TwoCpuColumns,
    /// A row with a different number of fields than the header.
    #[error("{found} fields, the header has {expected}")]
    FieldCount {
        /// Fields in the header.
        expected: usize,
        /// Fields in this row.
        found: usize,
    },
    /// A field that is not a finite number.
    #[error("`{column}`: {text:?} is not a finite number")]
    NotANumber {
        /// Column name.
        column: &'static str,
        /// The field (truncated).
        text: String,
    },
    /// A usage or capacity below zero.
    #[error("`{column}`: {value} is negative")]
    Negative {
        /// Column name.
        column: &'static str,
        /// The value.
        value: f64,
    },
    /// A row without a timestamp.
    #[error("empty `ts`")]
    NoTime,
    /// A line longer than [`MAX_LINE`].
    #[error("line longer than {MAX_LINE} bytes")]
    LineTooLong,
    /// More than [`MAX_ROWS`] rows.
    #[error("more than {MAX_ROWS} rows")]
    TooManyRows,
    /// More than [`MAX_BYTES`] bytes (after decompression).
    #[error("more than {MAX_BYTES} bytes")]
    TooLarge,
    /// Not text.
    #[error("not UTF-8 text")]
    NotText,
    /// No data row remains (none, or none provisioned).
    #[error("no data row (or none with provisioned capacity)")]
    NoRows,
    /// The rows span more steps than a replay holds.
    #[error("the rows span {steps} steps of 300 s, more than {max}")]
    SpanTooLong {
        /// Steps spanned.
        steps: u64,
        /// The most allowed.
        max: usize,
    },
}

/// The columns read, in this order in [`Row::values`].
pub const COLUMNS: [&str; 5] = [
    "cpu_mhz",
    "cpu_pct",
    "mem_kb",
    "cpu_capacity_mhz",
    "mem_capacity_kb",
];
/// Indices into [`COLUMNS`].
pub const CPU_MHZ: usize = 0;
/// CPU percent.
pub const CPU_PCT: usize = 1;
/// Memory KB.
pub const MEM_KB: usize = 2;
/// Provisioned CPU.
pub const CPU_CAP: usize = 3;
/// Provisioned memory.
pub const MEM_CAP: usize = 4;

/// One data row: its time and the columns of [`COLUMNS`] (NaN = absent
/// from the file or empty in this row).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Row {
    /// Line number in the file.
    pub line: u64,
    /// Unix seconds.
    pub ts: f64,
    /// Values in [`COLUMNS`] order.
    pub values: [f64; 5],
}

/// A parsed file: which columns it has and its rows.
#[derive(Clone, Debug)]
pub struct Table {
    /// Whether each of [`COLUMNS`] is in the header.
    pub present: [bool; 5],
    /// The rows, in file order.
    pub rows: Vec<Row>,
}

/// Reads and parses one trace file.
pub fn read(file: &Path) -> Result<Table, InputError> {
    let io_err = |source| InputError::Io {
        file: file.to_owned(),
        source,
    };
    let mut raw = BufReader::new(File::open(file).map_err(io_err)?);
    let compressed = raw.fill_buf().map_err(io_err)?.starts_with(&ZSTD_MAGIC);
    let reader: Box<dyn Read> = if compressed {
        Box::new(zstd::stream::read::Decoder::with_buffer(raw).map_err(io_err)?)
    } else {
        Box::new(raw)
    };
    parse(BufReader::new(reader.take(MAX_BYTES + 1)), file)
}

/// Parses CSV text; `file` only names it in errors.
pub fn parse(mut reader: impl BufRead, file: &Path) -> Result<Table, InputError> {
    let at = |line: u64, problem| InputError::Content {
        file: file.to_owned(),
        line,
        problem,
    };
    let mut buf = Vec::with_capacity(256);
    let mut bytes = 0u64;
    let mut next_line = |buf: &mut Vec<u8>, line: u64| -> Result<bool, InputError> {
        buf.clear();
        let n = reader
            .by_ref()
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', buf)
            .map_err(|source| InputError::Io {
                file: file.to_owned(),
                source,
            })?;
        bytes += n as u64;
        if bytes > MAX_BYTES {
            return Err(at(line, Problem::TooLarge));
        }
        if buf.last() == Some(&b'\n') {
            buf.pop();
        } else if n > MAX_LINE {
            return Err(at(line, Problem::LineTooLong));
        }
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
        Ok(n > 0)
    };
    if !next_line(&mut buf, 1)? {
        return Err(at(1, Problem::Empty));
    }
    let header = std::str::from_utf8(&buf).map_err(|_| at(1, Problem::NotText))?;
    let (width, ts_at, at_field) = columns(header).map_err(|p| at(1, p))?;
    let mut present = [false; 5];
    for &(c, _) in &at_field {
        present[c] = true;
    }
    let mut rows = Vec::new();
    let mut line = 1u64;
    loop {
        line += 1;
        if !next_line(&mut buf, line)? {
            break;
        }
        if buf.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if rows.len() == MAX_ROWS {
            return Err(at(line, Problem::TooManyRows));
        }
        let text = std::str::from_utf8(&buf).map_err(|_| at(line, Problem::NotText))?;
        rows.push(row(text, width, ts_at, &at_field, line).map_err(|p| at(line, p))?);
    }
    Ok(Table { present, rows })
}

/// Column positions: the header's width, where `ts` is, and where each
/// read column is (index into [`COLUMNS`], field position).
type Layout = (usize, usize, Vec<(usize, usize)>);

fn columns(header: &str) -> Result<Layout, Problem> {
    let names: Vec<&str> = header
        .split(',')
        .map(|n| n.trim().trim_matches('"'))
        .collect();
    for (i, n) in names.iter().enumerate() {
        if names[..i].contains(n) && (*n == "ts" || COLUMNS.contains(n)) {
            return Err(Problem::DuplicateColumn((*n).to_owned()));
        }
    }
    let ts = names
        .iter()
        .position(|&n| n == "ts")
        .ok_or(Problem::NoTimestamp)?;
    let at_field: Vec<(usize, usize)> = COLUMNS
        .iter()
        .enumerate()
        .filter_map(|(c, name)| names.iter().position(|n| n == name).map(|f| (c, f)))
        .collect();
    let has = |c| at_field.iter().any(|&(x, _)| x == c);
    if has(CPU_MHZ) && has(CPU_PCT) {
        return Err(Problem::TwoCpuColumns);
    }
    if !(has(CPU_MHZ) || has(CPU_PCT) || has(MEM_KB)) {
        return Err(Problem::NoUsage);
    }
    Ok((names.len(), ts, at_field))
}

fn row(
    text: &str,
    width: usize,
    ts_at: usize,
    at_field: &[(usize, usize)],
    line: u64,
) -> Result<Row, Problem> {
    let fields: Vec<&str> = text.split(',').collect();
    if fields.len() != width {
        return Err(Problem::FieldCount {
            expected: width,
            found: fields.len(),
        });
    }
    let ts = number("ts", fields[ts_at])?.ok_or(Problem::NoTime)?;
    let mut values = [f64::NAN; 5];
    for &(c, f) in at_field {
        if let Some(v) = number(COLUMNS[c], fields[f])? {
            if v < 0.0 {
                return Err(Problem::Negative {
                    column: COLUMNS[c],
                    value: v,
                });
            }
            values[c] = v;
        }
    }
    Ok(Row { line, ts, values })
}

/// A field as a finite number; None when empty.
fn number(column: &'static str, text: &str) -> Result<Option<f64>, Problem> {
    let t = text.trim().trim_matches('"');
    if t.is_empty() {
        return Ok(None);
    }
    match t.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(Some(v)),
        _ => Err(Problem::NotANumber {
            column,
            text: t.chars().take(40).collect(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(text: &str) -> Result<Table, InputError> {
        parse(text.as_bytes(), Path::new("t.csv"))
    }

    fn problem(text: &str) -> (u64, Problem) {
        match parse_str(text) {
            Err(InputError::Content { line, problem, .. }) => (line, problem),
            other => panic!("expected a content error, got {other:?}"),
        }
    }

    #[test]
    fn reads_the_columns_it_knows() {
        let t = parse_str("ts,cpu_mhz,other,mem_kb\r\n300,1.5,x,2e3\n600,,y,4\n\n").unwrap();
        assert_eq!(t.present, [true, false, true, false, false]);
        assert_eq!(t.rows.len(), 2);
        assert_eq!(t.rows[0].ts, 300.0);
        assert_eq!(t.rows[0].values[CPU_MHZ], 1.5);
        assert_eq!(t.rows[0].values[MEM_KB], 2000.0);
        assert!(t.rows[1].values[CPU_MHZ].is_nan(), "empty field: missing");
        assert!(t.rows[0].values[CPU_CAP].is_nan(), "absent column");
    }

    #[test]
    fn bad_files_name_the_line() {
        assert_eq!(problem(""), (1, Problem::Empty));
        assert_eq!(problem("time,cpu_mhz\n"), (1, Problem::NoTimestamp));
        assert_eq!(problem("ts,disk\n"), (1, Problem::NoUsage));
        assert_eq!(problem("ts,cpu_pct,cpu_mhz\n"), (1, Problem::TwoCpuColumns));
        assert_eq!(
            problem("ts,mem_kb,mem_kb\n"),
            (1, Problem::DuplicateColumn("mem_kb".into()))
        );
        assert_eq!(
            problem("ts,cpu_pct\n0,1\n300,1,2\n"),
            (
                3,
                Problem::FieldCount {
                    expected: 2,
                    found: 3
                }
            )
        );
        assert!(matches!(
            problem("ts,cpu_pct\n0,abc\n").1,
            Problem::NotANumber {
                column: "cpu_pct",
                ..
            }
        ));
        assert!(matches!(
            problem("ts,cpu_pct\n0,inf\n").1,
            Problem::NotANumber { .. }
        ));
        assert!(matches!(
            problem("ts,cpu_pct\n0,1\n300,-1\n"),
            (3, Problem::Negative { .. })
        ));
        assert_eq!(problem("ts,cpu_pct\n,1\n"), (2, Problem::NoTime));
        let long = format!("ts,cpu_pct\n0,{}\n", "1".repeat(MAX_LINE + 10));
        assert_eq!(problem(&long), (2, Problem::LineTooLong));
        assert_eq!(problem("ts,cpu_pct\n0,\u{0}\u{ff}\n").0, 2);
    }

    #[test]
    fn reads_zstd_and_plain_files_alike() {
        let dir = std::env::temp_dir().join(format!("shadow-replay-input-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let text = b"ts,cpu_pct\n0,1\n300,2\n";
        let plain = dir.join("a.csv");
        std::fs::write(&plain, text).unwrap();
        let packed = dir.join("a.csv.zst");
        std::fs::write(&packed, zstd::encode_all(&text[..], 3).unwrap()).unwrap();
        let a = read(&plain).unwrap();
        let b = read(&packed).unwrap();
        // (Debug text: NaN, an absent column, is not equal to itself.)
        assert_eq!(format!("{:?}", a.rows), format!("{:?}", b.rows));
        let broken = dir.join("b.csv.zst");
        std::fs::write(&broken, [0x28, 0xb5, 0x2f, 0xfd, 1, 2, 3]).unwrap();
        assert!(matches!(read(&broken), Err(InputError::Io { .. })));
        assert!(matches!(
            read(&dir.join("missing.csv")),
            Err(InputError::Io { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
