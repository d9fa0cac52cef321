//! Draws a [`State`] into a buffer: a title line, the cgroup table, the
//! selected cgroup's CPU history and a line of keys. Pure (state in, cells
//! out) so tests check the screen without a terminal. Only text attributes
//! (bold, reverse), no colours: it must read the same in any terminal.

use ratatui::{
    Frame,
    buffer::Buffer,
    layout::Rect,
    style::{Modifier, Style},
};

use super::state::{Column, Entry, Point, State};

/// Keys, at the bottom.
const FOOTER: &str = "q quit | Up/Down/PgUp/PgDn/Home/End select | Left/Right/Tab sort | r reverse";
/// The CGROUP column never gets narrower than this; columns are dropped
/// instead (in [`DROP_ORDER`]).
const MIN_CGROUP: u16 = 12;
/// Columns given up first when the terminal is narrow.
const DROP_ORDER: [Column; 8] = [
    Column::Trust,
    Column::Rsv,
    Column::Mem,
    Column::Runq,
    Column::Net,
    Column::Io,
    Column::Upper,
    Column::Next,
];

/// Draws the whole screen.
pub(crate) fn render(state: &State, frame: &mut Frame) {
    let area = frame.area();
    draw(state, area, frame.buffer_mut());
}

/// Rows of the table body on a screen of this size (what Page Up/Down
/// move by).
pub(crate) fn page(area: Rect) -> usize {
    usize::from(split(area).1.height.saturating_sub(1))
}

/// Title, table (header included), chart, footer.
fn split(area: Rect) -> (Rect, Rect, Rect, Rect) {
    let line = |y: u16, height: u16| Rect::new(area.x, y, area.width, height);
    let footer = u16::from(area.height >= 2);
    let title = u16::from(area.height >= 3);
    // The chart only where the table keeps a few rows.
    let chart = match area.height {
        h if h >= 20 => 7,
        h if h >= 12 => 4,
        _ => 0,
    };
    let table = area.height - footer - title - chart;
    (
        line(area.y, title),
        line(area.y + title, table),
        line(area.y + title + table, chart),
        line(area.y + title + table + chart, footer),
    )
}

fn draw(state: &State, area: Rect, buf: &mut Buffer) {
    let (title, table, chart, footer) = split(area);
    let shown = state.entries.len();
    let head = format!(
        "shadow-agent top | {shown}/{} cgroups | {}",
        state.known, state.about
    );
    put(
        buf,
        title,
        0,
        &head,
        Style::new().add_modifier(Modifier::BOLD),
    );
    draw_table(state, table, buf);
    if let Some(e) = state.entries.get(state.selected)
        && chart.height > 0
    {
        draw_chart(e, state.interval_s, chart, buf);
    }
    put(buf, footer, 0, FOOTER, Style::new());
}

/// Which columns fit in `width`, and the width left for CGROUP.
pub(crate) fn layout(width: u16) -> (Vec<Column>, u16) {
    let mut columns: Vec<Column> = Column::ALL.to_vec();
    let used = |cols: &[Column]| -> u16 {
        cols.iter()
            .filter(|&&c| c != Column::Cgroup)
            .map(|&c| width_of(c) + 1)
            .sum()
    };
    for drop in DROP_ORDER {
        if width.saturating_sub(used(&columns)) >= MIN_CGROUP {
            break;
        }
        columns.retain(|&c| c != drop);
    }
    let left = width.saturating_sub(used(&columns));
    (columns, left)
}

/// Width of a numeric column (room for its label and the sort mark).
fn width_of(column: Column) -> u16 {
    match column {
        Column::Upper | Column::Rsv => 7,
        _ => 6,
    }
}

fn draw_table(state: &State, area: Rect, buf: &mut Buffer) {
    if area.height == 0 {
        return;
    }
    let (columns, cgroup_width) = layout(area.width);
    let mark = if state.descending { "▼" } else { "▲" };
    let mut header = String::new();
    for &c in &columns {
        let label = if c == state.sort {
            match c {
                Column::Cgroup => format!("{}{mark}", c.label()),
                _ => format!("{mark}{}", c.label()),
            }
        } else {
            c.label().to_owned()
        };
        push_cell(&mut header, c, &label, cgroup_width);
    }
    put(
        buf,
        area,
        0,
        &header,
        Style::new().add_modifier(Modifier::BOLD),
    );
    let body = usize::from(area.height - 1);
    if state.entries.is_empty() {
        put(
            buf,
            area,
            1,
            "waiting for the first interval...",
            Style::new(),
        );
        return;
    }
    let offset =
        super::state::visible_offset(state.offset, state.selected, body, state.entries.len());
    for (i, e) in state.entries.iter().enumerate().skip(offset).take(body) {
        let mut line = String::new();
        for &c in &columns {
            push_cell(&mut line, c, &cell(e, c), cgroup_width);
        }
        let style = if i == state.selected {
            Style::new().add_modifier(Modifier::REVERSED)
        } else {
            Style::new()
        };
        let pad = usize::from(area.width).saturating_sub(line.chars().count());
        line.extend(std::iter::repeat_n(' ', pad));
        put(buf, area, (i - offset + 1) as u16, &line, style);
    }
}

/// Appends one column's text, aligned (paths left, numbers right).
fn push_cell(line: &mut String, column: Column, text: &str, cgroup_width: u16) {
    match column {
        Column::Cgroup => {
            let w = usize::from(cgroup_width);
            let t = truncate_left(text, w);
            line.push_str(&format!("{t:<w$}"));
        }
        _ => {
            let w = usize::from(width_of(column));
            line.push_str(&format!(" {text:>w$}"));
        }
    }
}

/// One cell's text.
fn cell(e: &Entry, column: Column) -> String {
    let opt = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), percent);
    match column {
        Column::Cgroup => e.cgroup.clone(),
        Column::Cpu => percent(e.cpu),
        Column::Runq => percent(e.runq_ms),
        Column::Next => opt(e.next),
        Column::Upper => opt(e.upper),
        // A trailing '*' marks a reservation the orchestrator writes.
        Column::Rsv => match e.rsv {
            Some((v, managed)) => format!("{}{}", percent(v), if managed { "*" } else { " " }),
            None => "- ".to_owned(),
        },
        Column::Trust => e
            .trust
            .map_or_else(|| "-".to_owned(), |t| format!("{t:.2}")),
        Column::Io => rate(e.io),
        Column::Net => rate(e.net),
        Column::Mem => e.mem.map_or_else(|| "-".to_owned(), rate),
    }
}

/// One decimal while it fits in six characters.
fn percent(v: f64) -> String {
    if v.abs() < 999.95 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

/// Bytes per second in binary units, at most five characters (`1023K`,
/// `1.5M`).
pub(crate) fn rate(bytes: f64) -> String {
    const UNITS: [&str; 5] = ["", "K", "M", "G", "T"];
    let mut v = bytes.max(0.0);
    let mut unit = 0;
    while v >= 1023.5 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit > 0 && v < 9.95 {
        format!("{v:.1}{}", UNITS[unit])
    } else {
        format!("{v:.0}{}", UNITS[unit])
    }
}

/// Keeps the end of a path (the part that names the cgroup), marking the
/// cut with '…'.
pub(crate) fn truncate_left(text: &str, width: usize) -> String {
    let n = text.chars().count();
    if n <= width {
        return text.to_owned();
    }
    if width == 0 {
        return String::new();
    }
    let tail: String = text.chars().skip(n - (width - 1)).collect();
    format!("…{tail}")
}

/// The selected cgroup's CPU: a title line with its figures, then one bar
/// per column (the newest on the right) and its upper band as `-` where it
/// is above the bar.
fn draw_chart(e: &Entry, interval_s: f64, area: Rect, buf: &mut Buffer) {
    let width = usize::from(area.width);
    let points: Vec<Point> = e.history.iter().copied().collect();
    let (bars, per_bar) = buckets(&points, width.max(1));
    let top = scale_top(&bars);
    let opt = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), percent);
    let span = (points.len() as f64 * interval_s).round();
    let squeeze = if per_bar > 1 {
        format!(", a bar = max of {:.0}s", per_bar as f64 * interval_s)
    } else {
        String::new()
    };
    let figures = format!(
        " now {} next {} upper {} | last {span:.0}s{squeeze}, top {top:.0}",
        percent(e.cpu),
        opt(e.next),
        opt(e.upper),
    );
    let name_width = width.saturating_sub(figures.chars().count() + 5);
    let title = format!("CPU% {}{figures}", truncate_left(&e.cgroup, name_width));
    put(
        buf,
        area,
        0,
        &title,
        Style::new().add_modifier(Modifier::BOLD),
    );
    let rows = usize::from(area.height.saturating_sub(1));
    if rows == 0 {
        return;
    }
    const EIGHTHS: [&str; 9] = [" ", "▁", "▂", "▃", "▄", "▅", "▆", "▇", "█"];
    let bottom = area.y + area.height - 1;
    let first = area.x + (width - bars.len()) as u16;
    for (i, p) in bars.iter().enumerate() {
        let x = first + i as u16;
        let eighths = (p.cpu / top * (rows * 8) as f64).round().max(0.0) as usize;
        for row in 0..rows {
            let filled = eighths.saturating_sub(row * 8).min(8);
            // Non-zero use always shows at least a sliver.
            let filled = if row == 0 && filled == 0 && p.cpu > 0.05 {
                1
            } else {
                filled
            };
            if let Some(cell) = buf.cell_mut((x, bottom - row as u16)) {
                cell.set_symbol(EIGHTHS[filled]);
            }
        }
        if let Some(upper) = p.upper {
            let row = ((upper / top * rows as f64).ceil() as usize).clamp(1, rows) - 1;
            if eighths <= row * 8
                && let Some(cell) = buf.cell_mut((x, bottom - row as u16))
            {
                cell.set_symbol("-");
            }
        }
    }
}

/// Groups the history into at most `width` bars (the maximum of each
/// group, so short peaks stay visible), newest last; returns the bars and
/// how many points each holds.
pub(crate) fn buckets(points: &[Point], width: usize) -> (Vec<Point>, usize) {
    let per = points.len().div_ceil(width).max(1);
    // Groups are aligned on the newest point so it is always a bar's last.
    let skip = points.len() % per;
    let mut bars = Vec::new();
    if skip > 0 {
        bars.push(max_of(&points[..skip]));
    }
    bars.extend(points[skip..].chunks(per).map(max_of));
    (bars, per)
}

fn max_of(points: &[Point]) -> Point {
    let cpu = points.iter().map(|p| p.cpu).fold(0.0, f64::max);
    let upper = points.iter().filter_map(|p| p.upper).reduce(f64::max);
    Point { cpu, upper }
}

/// The chart's full scale: 100% (one core) or the next multiple of 50
/// above everything drawn.
fn scale_top(bars: &[Point]) -> f64 {
    let peak = bars
        .iter()
        .map(|p| p.cpu.max(p.upper.unwrap_or(0.0)))
        .fold(0.0, f64::max);
    ((peak / 50.0).ceil() * 50.0).max(100.0)
}

/// Writes `text` on line `row` of `area`, clipped to its width.
fn put(buf: &mut Buffer, area: Rect, row: u16, text: &str, style: Style) {
    if row < area.height {
        buf.set_stringn(area.x, area.y + row, text, usize::from(area.width), style);
    }
}
