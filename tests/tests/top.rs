//! `shadow-agent top` in a real 80x24 terminal (tmux): it shows a busy
//! cgroup near 100% CPU, re-sorts on keys, draws the selected cgroup's CPU
//! history and gives the terminal back on `q` with exit status 0.

use std::{process::Command, time::Duration};

use shadow_tests::{ChildGuard, TestCgroup, agent_bin, require_root, tmux::Tmux, workload};

/// The table line of the cgroup whose path ends with `/name` (paths may be
/// cut on the left), as whitespace-separated cells.
fn row<'a>(screen: &'a [String], name: &str) -> Option<Vec<&'a str>> {
    let suffix = format!("/{name}");
    screen
        .iter()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|cells| cells.first().is_some_and(|c| c.ends_with(&suffix)))
}

/// Screen line index of the row of `name`.
fn line_of(screen: &[String], name: &str) -> Option<usize> {
    let suffix = format!("/{name} ");
    screen.iter().position(|l| l.contains(&suffix))
}

/// The CPU% cell of `name`'s row.
fn cpu_of(screen: &[String], name: &str) -> Option<f64> {
    row(screen, name)?.get(1)?.parse().ok()
}

#[test]
fn top_lists_sorts_charts_and_quits_cleanly() {
    require_root();
    let parent = TestCgroup::new("top", &[]);
    let busy = parent.child("busy", &[]);
    let idle = parent.child("idle", &[]);
    let tmux = Tmux::start("top", 80, 24);
    tmux.type_line(&format!(
        "{} top --interval 500ms --cgroup {}; echo top-exited=$?",
        agent_bin().display(),
        parent.path
    ));
    tmux.wait_for("top's header", Duration::from_secs(60), |s| {
        s.iter()
            .any(|l| l.starts_with("CGROUP") && l.contains("▼CPU%"))
    });
    // Started after the probes are attached, so both are seen from their
    // first event.
    let spinner = ChildGuard(busy.spawn(&mut workload(&["burn", "120"])));
    let sleeper =
        ChildGuard(idle.spawn(Command::new("sh").args(["-c", "while :; do sleep 0.2; done"])));

    let screen = tmux.wait_for("busy near 100% CPU", Duration::from_secs(30), |s| {
        cpu_of(s, "busy").is_some_and(|c| (70.0..=115.0).contains(&c)) && row(s, "idle").is_some()
    });
    let (b, i) = (
        line_of(&screen, "busy").unwrap(),
        line_of(&screen, "idle").unwrap(),
    );
    assert!(b < i, "by CPU, busy first:\n{}", screen.join("\n"));
    assert!(
        cpu_of(&screen, "idle").unwrap() < 20.0,
        "idle is busy:\n{}",
        screen.join("\n")
    );
    // Forecast and band are on by default.
    let cells = row(&screen, "busy").unwrap();
    let (next, upper): (f64, f64) = (cells[3].parse().unwrap(), cells[4].parse().unwrap());
    assert!(next > 30.0 && upper >= next, "forecast of busy: {cells:?}");

    // Home selects the top row (busy): the chart is its CPU history.
    tmux.press("Home");
    let screen = tmux.wait_for("busy's chart", Duration::from_secs(10), |s| {
        s.iter()
            .any(|l| l.starts_with("CPU% ") && l.contains("/busy now"))
    });
    let chart = screen.iter().position(|l| l.starts_with("CPU% ")).unwrap();
    assert!(
        screen[chart + 1..screen.len() - 1]
            .iter()
            .any(|l| l.contains('█')),
        "no bars under the chart title:\n{}",
        screen.join("\n")
    );
    assert!(screen.last().unwrap().starts_with("q quit"), "no key line");

    // Left: sort by CGROUP, A to Z; r: Z to A.
    tmux.press("Left");
    let screen = tmux.wait_for("sort by CGROUP", Duration::from_secs(10), |s| {
        s.iter().any(|l| l.starts_with("CGROUP▲")) && line_of(s, "busy").is_some()
    });
    assert!(!screen.iter().any(|l| l.contains("▼CPU%")));
    assert!(line_of(&screen, "busy") < line_of(&screen, "idle"));
    tmux.press("r");
    let screen = tmux.wait_for("sort by CGROUP reversed", Duration::from_secs(10), |s| {
        s.iter().any(|l| l.starts_with("CGROUP▼"))
            && line_of(s, "busy").is_some()
            && line_of(s, "idle").is_some()
    });
    assert!(
        line_of(&screen, "idle") < line_of(&screen, "busy"),
        "Z to A:\n{}",
        screen.join("\n")
    );

    tmux.press("q");
    let screen = tmux.wait_for("top's exit", Duration::from_secs(10), |s| {
        s.iter().any(|l| l.starts_with("top-exited="))
    });
    assert!(
        screen.iter().any(|l| l == "top-exited=0"),
        "top failed:\n{}",
        screen.join("\n")
    );
    // The shell's screen is back: no table left on it.
    assert!(
        !screen
            .iter()
            .any(|l| l.starts_with("CGROUP") || l.starts_with("q quit")),
        "the terminal was not restored:\n{}",
        screen.join("\n")
    );
    assert!(screen.iter().any(|l| l.contains("shadow-agent: observing")));

    // Children before their cgroups, cgroups before their parent.
    drop((spinner, sleeper, tmux));
    drop((busy, idle));
}

/// Ctrl-C (a key in raw mode, not a signal) quits as cleanly as `q`.
#[test]
fn ctrl_c_quits_cleanly() {
    require_root();
    let cg = TestCgroup::new("top-ctrl-c", &[]);
    let tmux = Tmux::start("top-ctrl-c", 80, 24);
    tmux.type_line(&format!(
        "{} top --cgroup {}; echo top-exited=$?",
        agent_bin().display(),
        cg.path
    ));
    tmux.wait_for("top's header", Duration::from_secs(60), |s| {
        s.iter().any(|l| l.starts_with("CGROUP"))
    });
    tmux.press("C-c");
    let screen = tmux.wait_for("top's exit", Duration::from_secs(10), |s| {
        s.iter().any(|l| l.starts_with("top-exited="))
    });
    assert!(
        screen.iter().any(|l| l == "top-exited=0")
            && !screen.iter().any(|l| l.starts_with("CGROUP")),
        "not a clean exit:\n{}",
        screen.join("\n")
    );
}
