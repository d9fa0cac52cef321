//! What `top` shows, independent of any terminal: one entry per cgroup with
//! its latest figures and a bounded CPU history, the sort order and the
//! selection. Keys change it, ticks feed it; [`super::view`] draws it.

use std::{
    cmp::Ordering,
    collections::{HashMap, VecDeque},
};

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use crate::pipeline::Row;

/// Points of CPU history kept per cgroup (5 minutes at the default 1s).
pub(crate) const HISTORY: usize = 300;

/// A column of the table, in screen order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Column {
    Cgroup,
    Cpu,
    Runq,
    Next,
    Upper,
    Rsv,
    Trust,
    Io,
    Net,
    Mem,
}

impl Column {
    pub(crate) const ALL: [Column; 10] = [
        Column::Cgroup,
        Column::Cpu,
        Column::Runq,
        Column::Next,
        Column::Upper,
        Column::Rsv,
        Column::Trust,
        Column::Io,
        Column::Net,
        Column::Mem,
    ];

    pub(crate) fn label(self) -> &'static str {
        match self {
            Column::Cgroup => "CGROUP",
            Column::Cpu => "CPU%",
            Column::Runq => "RUNQ",
            Column::Next => "NEXT%",
            Column::Upper => "UPPER%",
            Column::Rsv => "RSV%",
            Column::Trust => "TRUST",
            Column::Io => "IO",
            Column::Net => "NET",
            Column::Mem => "MEM",
        }
    }

    fn index(self) -> usize {
        Self::ALL.iter().position(|&c| c == self).unwrap_or(0)
    }

    fn step(self, by: isize) -> Column {
        let n = Self::ALL.len() as isize;
        Self::ALL[(self.index() as isize + by).rem_euclid(n) as usize]
    }
}

/// One point of a cgroup's history, in percent of one core.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Point {
    pub(crate) cpu: f64,
    pub(crate) upper: Option<f64>,
}

/// One cgroup's latest interval, in the units shown.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Entry {
    pub(crate) cgroup: String,
    /// CPU used, percent of one core.
    pub(crate) cpu: f64,
    /// Time its tasks waited on a run queue, ms per second.
    pub(crate) runq_ms: f64,
    /// Forecast demand and its upper band for the next interval, percent.
    pub(crate) next: Option<f64>,
    pub(crate) upper: Option<f64>,
    /// The orchestrator's reservation, percent, and whether it writes it.
    pub(crate) rsv: Option<(f64, bool)>,
    /// Trust earned by the cgroup's hints, 0..=1.
    pub(crate) trust: Option<f64>,
    /// Block I/O and network traffic, bytes per second (both directions).
    pub(crate) io: f64,
    pub(crate) net: f64,
    /// Memory in use at the end of the interval, bytes (None: unknown).
    pub(crate) mem: Option<f64>,
    /// Oldest first, at most [`HISTORY`] points.
    pub(crate) history: VecDeque<Point>,
}

impl Entry {
    fn from_row(row: &Row) -> Self {
        let s = &row.sample;
        let secs = (s.interval_ns as f64 / 1e9).max(1e-9);
        let per_s = |v: u64| v as f64 / secs;
        let u = &s.usage;
        Self {
            cgroup: s.cgroup.clone(),
            cpu: per_s(u.cpu_ns) / 1e7,
            runq_ms: per_s(u.runq_delay_ns) / 1e6,
            next: row.forecast.map(|f| f.cpu_forecast_cores * 100.0),
            upper: row.forecast.map(|f| f.cpu_upper_cores * 100.0),
            rsv: row
                .reservation
                .map(|r| (r.cpu_reserved_cores * 100.0, r.cpu_reservation_managed)),
            trust: row.forecast.and_then(|f| f.hint_trust),
            io: per_s(u.io_read_bytes + u.io_write_bytes),
            net: per_s(u.net_tx_bytes + u.net_rx_bytes),
            mem: s.memory.memory_bytes.map(|b| b as f64),
            history: VecDeque::new(),
        }
    }

    /// The value sorted on for `column` (None sorts below every number).
    fn key(&self, column: Column) -> Option<f64> {
        match column {
            Column::Cgroup => None,
            Column::Cpu => Some(self.cpu),
            Column::Runq => Some(self.runq_ms),
            Column::Next => self.next,
            Column::Upper => self.upper,
            Column::Rsv => self.rsv.map(|(v, _)| v),
            Column::Trust => self.trust,
            Column::Io => Some(self.io),
            Column::Net => Some(self.net),
            Column::Mem => self.mem,
        }
    }
}

/// What a key asks the main loop to do.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Action {
    Continue,
    Quit,
}

/// Everything on screen.
#[derive(Debug)]
pub(crate) struct State {
    /// Sorted by `sort` (`descending`), ties by cgroup path.
    pub(crate) entries: Vec<Entry>,
    pub(crate) sort: Column,
    pub(crate) descending: bool,
    /// Index of the selected entry.
    pub(crate) selected: usize,
    /// First entry shown (the table scrolls to keep the selection in view).
    pub(crate) offset: usize,
    /// Cgroups the agent knows (in scope or not).
    pub(crate) known: usize,
    /// What the header says about the agent (interval, scope, hints,
    /// orchestrator).
    pub(crate) about: String,
    /// Seconds per history point.
    pub(crate) interval_s: f64,
}

impl State {
    pub(crate) fn new(about: String, interval_s: f64) -> Self {
        Self {
            entries: Vec::new(),
            sort: Column::Cpu,
            descending: true,
            selected: 0,
            offset: 0,
            known: 0,
            about,
            interval_s,
        }
    }

    /// Takes one tick's rows: cgroups that did not report are dropped with
    /// their history, the others get a new point. The selection stays on
    /// the same cgroup when it is still there.
    pub(crate) fn update(&mut self, rows: &[Row], known: usize, page: usize) {
        let chosen = self.selected_cgroup().map(str::to_owned);
        let mut old: HashMap<String, Entry> = self
            .entries
            .drain(..)
            .map(|e| (e.cgroup.clone(), e))
            .collect();
        self.entries = rows
            .iter()
            .map(|row| {
                let mut e = Entry::from_row(row);
                if let Some(prev) = old.remove(&e.cgroup) {
                    e.history = prev.history;
                }
                if e.history.len() == HISTORY {
                    e.history.pop_front();
                }
                e.history.push_back(Point {
                    cpu: e.cpu,
                    upper: e.upper,
                });
                e
            })
            .collect();
        self.known = known;
        self.resort(chosen.as_deref(), page);
    }

    pub(crate) fn selected_cgroup(&self) -> Option<&str> {
        self.entries.get(self.selected).map(|e| e.cgroup.as_str())
    }

    /// Applies a key; `page` is how many rows the table shows.
    pub(crate) fn key(&mut self, key: KeyEvent, page: usize) -> Action {
        let page = page.max(1);
        let last = self.entries.len().saturating_sub(1);
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        match key.code {
            KeyCode::Char('q') | KeyCode::Esc => return Action::Quit,
            KeyCode::Char('c') if ctrl => return Action::Quit,
            KeyCode::Right | KeyCode::Tab | KeyCode::Char('s') | KeyCode::Char('>') => {
                self.sort_by(self.sort.step(1), page);
            }
            KeyCode::Left | KeyCode::BackTab | KeyCode::Char('<') => {
                self.sort_by(self.sort.step(-1), page);
            }
            KeyCode::Char('r') => {
                self.descending = !self.descending;
                let chosen = self.selected_cgroup().map(str::to_owned);
                self.resort(chosen.as_deref(), page);
            }
            KeyCode::Up | KeyCode::Char('k') => self.select(self.selected.saturating_sub(1), page),
            KeyCode::Down | KeyCode::Char('j') => self.select(self.selected + 1, page),
            KeyCode::PageUp => self.select(self.selected.saturating_sub(page), page),
            KeyCode::PageDown => self.select(self.selected + page, page),
            KeyCode::Home | KeyCode::Char('g') => self.select(0, page),
            KeyCode::End | KeyCode::Char('G') => self.select(last, page),
            _ => {}
        }
        Action::Continue
    }

    /// Sorts on another column: numbers biggest first, paths A to Z.
    fn sort_by(&mut self, column: Column, page: usize) {
        self.sort = column;
        self.descending = column != Column::Cgroup;
        let chosen = self.selected_cgroup().map(str::to_owned);
        self.resort(chosen.as_deref(), page);
    }

    fn resort(&mut self, chosen: Option<&str>, page: usize) {
        let (sort, descending) = (self.sort, self.descending);
        self.entries.sort_by(|a, b| {
            let order = match sort {
                Column::Cgroup => a.cgroup.cmp(&b.cgroup),
                _ => compare(a.key(sort), b.key(sort)),
            };
            let order = if descending { order.reverse() } else { order };
            order.then_with(|| a.cgroup.cmp(&b.cgroup))
        });
        let at = chosen
            .and_then(|c| self.entries.iter().position(|e| e.cgroup == c))
            .unwrap_or(self.selected);
        self.select(at, page);
    }

    /// Moves the selection (clamped) and scrolls just enough to show it.
    fn select(&mut self, index: usize, page: usize) {
        self.selected = index.min(self.entries.len().saturating_sub(1));
        self.offset = visible_offset(self.offset, self.selected, page, self.entries.len());
    }
}

/// First row to show so that `selected` is on a page of `page` rows,
/// moving as little as possible from `offset`, and not leaving blank rows
/// at the end when there are enough entries.
pub(crate) fn visible_offset(offset: usize, selected: usize, page: usize, len: usize) -> usize {
    let page = page.max(1);
    let offset = if selected < offset {
        selected
    } else if selected >= offset + page {
        selected + 1 - page
    } else {
        offset
    };
    offset.min(len.saturating_sub(page))
}

/// Numbers in order, a missing value below all of them.
fn compare(a: Option<f64>, b: Option<f64>) -> Ordering {
    match (a, b) {
        (Some(a), Some(b)) => a.total_cmp(&b),
        (Some(_), None) => Ordering::Greater,
        (None, Some(_)) => Ordering::Less,
        (None, None) => Ordering::Equal,
    }
}
