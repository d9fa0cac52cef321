//! The screen drawn from hand-made rows on ratatui's TestBackend: sorting,
//! selection, scrolling, truncation and the 80x24 layout.

use agent_ebpf::Counters;
use ratatui::{
    Terminal,
    backend::TestBackend,
    crossterm::event::{KeyCode, KeyEvent, KeyModifiers},
};

use super::{
    state::{Action, Column, HISTORY, Point, State},
    view,
};
use crate::{
    collector::Sample,
    pipeline::{CpuReservation, Row},
    shadow::CpuForecast,
};

/// A one-second interval of `cgroup` using `cpu` cores, with a forecast of
/// `next` cores (upper band 1.5x) and optionally a reservation.
fn row(cgroup: &str, cpu: f64, next: f64, rsv: Option<(f64, bool)>) -> Row {
    Row {
        sample: Sample {
            ts: 0.0,
            cgroup: cgroup.to_owned(),
            cgroup_id: 1,
            interval_ns: 1_000_000_000,
            usage: Counters {
                cpu_ns: (cpu * 1e9) as u64,
                runq_delay_ns: (cpu * 1e8) as u64,
                io_read_bytes: 3 * 1024 * 1024,
                net_tx_bytes: 1500,
                ..Counters::default()
            },
            memory: crate::memory::Memory {
                memory_bytes: Some(3 << 29),
                ..Default::default()
            },
        },
        forecast: Some(CpuForecast {
            cpu_demand_cores: cpu,
            cpu_forecast_cores: next,
            cpu_upper_cores: next * 1.5,
            cpu_volatility_cores: 0.0,
            hint_active: false,
            hint_id: None,
            hint_trust: None,
        }),
        memory_forecast: None,
        reservation: rsv.map(|(cores, managed)| CpuReservation {
            cpu_reserved_cores: cores,
            cpu_reservation_managed: managed,
        }),
    }
}

fn sample_rows() -> Vec<Row> {
    vec![
        row("/system.slice/sshd.service", 0.02, 0.03, None),
        row("/machine.slice/vm-a", 0.98, 0.95, Some((1.2, true))),
        row("/machine.slice/vm-b", 0.40, 0.5, Some((0.6, false))),
        row("/user.slice", 0.10, 0.1, None),
    ]
}

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

fn state_with(rows: &[Row]) -> State {
    let mut s = State::new("/, 1s, hints off, watching only".into(), 1.0);
    s.update(rows, 42, 10);
    s
}

/// The screen as lines of text.
fn screen(state: &State, width: u16, height: u16) -> Vec<String> {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|f| view::render(state, f)).unwrap();
    let buf = terminal.backend().buffer();
    (0..height)
        .map(|y| (0..width).map(|x| buf[(x, y)].symbol()).collect::<String>())
        .collect()
}

/// Cgroups in the order the table lists them.
fn order(state: &State) -> Vec<&str> {
    state.entries.iter().map(|e| e.cgroup.as_str()).collect()
}

#[test]
fn sorts_by_cpu_first_then_by_the_chosen_column_and_reverses() {
    let mut s = state_with(&sample_rows());
    assert_eq!(
        order(&s),
        [
            "/machine.slice/vm-a",
            "/machine.slice/vm-b",
            "/user.slice",
            "/system.slice/sshd.service"
        ]
    );
    // Left from CPU% is CGROUP, A to Z.
    s.key(key(KeyCode::Left), 10);
    assert_eq!(s.sort, Column::Cgroup);
    assert_eq!(
        order(&s),
        [
            "/machine.slice/vm-a",
            "/machine.slice/vm-b",
            "/system.slice/sshd.service",
            "/user.slice"
        ]
    );
    s.key(key(KeyCode::Char('r')), 10);
    assert_eq!(order(&s)[0], "/user.slice");
    // RSV%: cgroups without a reservation go last.
    for _ in 0..5 {
        s.key(key(KeyCode::Tab), 10);
    }
    assert_eq!(s.sort, Column::Rsv);
    assert!(s.descending);
    assert_eq!(
        order(&s)[..2],
        ["/machine.slice/vm-a", "/machine.slice/vm-b"]
    );
    let lines = screen(&s, 80, 24);
    assert!(lines[1].contains("▼RSV%"), "header: {}", lines[1]);
    assert!(!lines[1].contains("▼CPU%"), "header: {}", lines[1]);
}

#[test]
fn the_selection_follows_its_cgroup_across_sorts_and_ticks() {
    let mut s = state_with(&sample_rows());
    s.key(key(KeyCode::Down), 10);
    assert_eq!(s.selected_cgroup(), Some("/machine.slice/vm-b"));
    s.key(key(KeyCode::Char('r')), 10);
    assert_eq!(s.selected_cgroup(), Some("/machine.slice/vm-b"));
    s.update(&sample_rows()[1..], 42, 10);
    assert_eq!(s.selected_cgroup(), Some("/machine.slice/vm-b"));
    s.key(key(KeyCode::End), 10);
    assert_eq!(s.selected_cgroup(), Some("/machine.slice/vm-a"));
    s.key(key(KeyCode::Home), 10);
    s.key(key(KeyCode::Up), 10);
    assert_eq!(s.selected, 0);
    // The selected cgroup is gone: the selection stays in range.
    s.key(key(KeyCode::End), 10);
    s.update(&sample_rows()[..1], 42, 10);
    assert_eq!(s.selected, 0);
    assert_eq!(s.selected_cgroup(), Some("/system.slice/sshd.service"));
}

#[test]
fn page_keys_scroll_and_keep_the_selection_on_screen() {
    let rows: Vec<Row> = (0..40)
        .map(|i| row(&format!("/vm-{i:02}"), f64::from(40 - i) / 10.0, 0.1, None))
        .collect();
    let mut s = state_with(&rows);
    let page = view::page(ratatui::layout::Rect::new(0, 0, 80, 24));
    assert_eq!(page, 14, "80x24 leaves 14 table rows");
    s.key(key(KeyCode::PageDown), page);
    s.key(key(KeyCode::PageDown), page);
    assert_eq!(s.selected, 28);
    let lines = screen(&s, 80, 24);
    let selected_line = lines.iter().position(|l| l.starts_with("/vm-28")).unwrap();
    assert_eq!(selected_line, 15, "the selection is the last row shown");
    assert!(lines[2].starts_with("/vm-15"), "first row: {}", lines[2]);
    s.key(key(KeyCode::PageUp), page);
    assert_eq!(s.selected, 14);
    let lines = screen(&s, 80, 24);
    assert!(lines[2].starts_with("/vm-14"), "first row: {}", lines[2]);
    s.key(key(KeyCode::End), page);
    assert_eq!(s.selected_cgroup(), Some("/vm-39"));
    assert!(screen(&s, 80, 24)[15].starts_with("/vm-39"));
}

#[test]
fn quits_on_q_esc_and_ctrl_c_only() {
    let mut s = state_with(&sample_rows());
    assert_eq!(s.key(key(KeyCode::Char('x')), 10), Action::Continue);
    assert_eq!(s.key(key(KeyCode::Char('c')), 10), Action::Continue);
    assert_eq!(s.key(key(KeyCode::Char('q')), 10), Action::Quit);
    assert_eq!(s.key(key(KeyCode::Esc), 10), Action::Quit);
    let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
    assert_eq!(s.key(ctrl_c, 10), Action::Quit);
}

#[test]
fn an_80x24_screen_has_every_column_title_chart_and_keys() {
    let s = state_with(&sample_rows());
    let lines = screen(&s, 80, 24);
    for (i, l) in lines.iter().enumerate() {
        eprintln!("{i:2}|{l}|");
    }
    assert!(lines[0].starts_with("shadow-agent top | 4/42 cgroups | /, 1s, hints off"));
    for label in [
        "CGROUP", "▼CPU%", "RUNQ", "NEXT%", "UPPER%", "RSV%", "TRUST", "IO", "NET", "MEM",
    ] {
        assert!(lines[1].contains(label), "{label} missing: {}", lines[1]);
    }
    assert!(
        lines[1].ends_with("MEM"),
        "header not right-aligned: {}",
        lines[1]
    );
    // vm-a: 98% CPU, 98 ms/s run queue, forecast 95 (upper 142.5),
    // reserved 120 and managed, 3 MiB/s read, 1.5 KiB/s sent, 1.5 GiB in
    // use.
    let vm_a = &lines[2];
    // With ten numeric columns the path column is 15 wide: cut on the left.
    assert!(vm_a.starts_with("…ine.slice/vm-a "), "{vm_a}");
    let cells: Vec<&str> = vm_a.split_whitespace().collect();
    assert_eq!(
        cells,
        [
            "…ine.slice/vm-a",
            "98.0",
            "98.0",
            "95.0",
            "142.5",
            "120.0*",
            "-",
            "3.0M",
            "1.5K",
            "1.5G"
        ]
    );
    assert!(
        lines[4].contains("/user.slice") && lines[4].contains(" - "),
        "{}",
        lines[4]
    );
    // The chart of the selected cgroup (vm-a), then the keys.
    assert!(
        lines[16].starts_with("CPU% /machine.slice/vm-a now 98.0 next 95.0 upper 142.5"),
        "{}",
        lines[16]
    );
    assert!(
        lines[17..23]
            .iter()
            .any(|l| l.trim_end().ends_with('█') || l.contains('▇') || l.contains('▆')),
        "no bar"
    );
    assert!(lines[23].starts_with("q quit"));
}

#[test]
fn narrow_terminals_drop_columns_and_cut_paths_from_the_left() {
    let long = "/machine.slice/machine-qemu\\x2d42\\x2dcustomer\\x2dweb.scope/vcpu3";
    let s = state_with(&[row(long, 0.5, 0.5, None)]);
    let lines = screen(&s, 80, 24);
    let (columns, name) = view::layout(80);
    assert_eq!(columns.len(), 10);
    assert_eq!(name, 15);
    let shown: String = lines[2].chars().take(15).collect();
    let tail: String = long.chars().skip(long.chars().count() - 14).collect();
    assert_eq!(shown, format!("…{tail}"));
    let lines = screen(&s, 50, 24);
    assert!(
        !lines[1].contains("TRUST") && !lines[1].contains("RSV%"),
        "{}",
        lines[1]
    );
    assert!(
        lines[1].contains("▼CPU%") && lines[1].contains("NEXT%"),
        "{}",
        lines[1]
    );
    assert!(lines.iter().all(|l| l.chars().count() == 50));
    assert!(
        lines[2].ends_with("vcpu3") || lines[2].contains("vcpu3 "),
        "{}",
        lines[2]
    );
    // Tiny terminals still draw (no panic) the table and keys.
    let lines = screen(&s, 20, 5);
    assert!(lines[1].starts_with("CGROUP"), "{:?}", lines);
}

#[test]
fn history_is_bounded_and_dropped_with_its_cgroup() {
    let mut s = state_with(&sample_rows());
    for _ in 0..HISTORY + 50 {
        s.update(&sample_rows(), 42, 10);
    }
    assert!(s.entries.iter().all(|e| e.history.len() == HISTORY));
    s.update(&sample_rows()[..1], 42, 10);
    assert_eq!(s.entries.len(), 1);
    s.update(&sample_rows(), 42, 10);
    let vm_a = s
        .entries
        .iter()
        .find(|e| e.cgroup == "/machine.slice/vm-a")
        .unwrap();
    assert_eq!(vm_a.history.len(), 1, "a cgroup that went away starts over");
}

#[test]
fn the_chart_keeps_peaks_when_it_squeezes_the_history() {
    let mut points: Vec<Point> = (0..300)
        .map(|_| Point {
            cpu: 10.0,
            upper: Some(20.0),
        })
        .collect();
    points[1].cpu = 250.0;
    let (bars, per) = view::buckets(&points, 78);
    assert_eq!(per, 4);
    assert_eq!(bars.len(), 75);
    assert_eq!(bars[0].cpu, 250.0, "the peak survives");
    assert!(
        bars[1..]
            .iter()
            .all(|b| b.cpu == 10.0 && b.upper == Some(20.0))
    );
    // Fewer points than columns: one bar each.
    let (bars, per) = view::buckets(&points[..5], 78);
    assert_eq!((bars.len(), per), (5, 1));
}

#[test]
fn rates_fit_their_column() {
    assert_eq!(view::rate(0.0), "0");
    assert_eq!(view::rate(1000.0), "1000");
    assert_eq!(view::rate(1536.0), "1.5K");
    assert_eq!(view::rate(1023.0 * 1024.0), "1023K");
    assert_eq!(view::rate(3.0 * 1024.0 * 1024.0), "3.0M");
    assert_eq!(view::rate(12.4 * 1024.0 * 1024.0 * 1024.0), "12G");
    assert_eq!(view::truncate_left("/a/b", 10), "/a/b");
    assert_eq!(view::truncate_left("/abcdef/ghij", 6), "…/ghij");
}
