//! Line charts as standalone SVG, so people can look at a run instead of
//! reading it: usage, forecast band and reservation over time.
//!
//! A chart is a stack of panels sharing the x axis; each panel has its own
//! y axis and any number of series. No dependency: SVG polylines are all
//! these charts need, and the output opens in any browser.

use std::fmt::Write as _;

/// One line.
#[derive(Clone, Debug)]
pub struct Series {
    /// Legend text.
    pub name: String,
    /// Stroke colour (any SVG colour).
    pub color: &'static str,
    /// Dashed (bands) or solid.
    pub dashed: bool,
    /// `(x, y)` points; non-finite ones break the line.
    pub points: Vec<(f64, f64)>,
}

impl Series {
    /// A solid line.
    pub fn line(name: &str, color: &'static str, points: Vec<(f64, f64)>) -> Self {
        Self {
            name: name.to_owned(),
            color,
            dashed: false,
            points,
        }
    }

    /// A dashed line.
    pub fn dashed(name: &str, color: &'static str, points: Vec<(f64, f64)>) -> Self {
        Self {
            dashed: true,
            ..Self::line(name, color, points)
        }
    }
}

/// One panel: a y axis and its series.
#[derive(Clone, Debug)]
pub struct Panel {
    /// Title above the panel.
    pub title: String,
    /// Unit of the y axis.
    pub y_label: String,
    /// The lines.
    pub series: Vec<Series>,
}

const WIDTH: f64 = 960.0;
const PANEL_HEIGHT: f64 = 240.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 180.0;
const TOP: f64 = 50.0;
const GAP: f64 = 50.0;

/// Renders `panels` stacked over a shared x axis labelled `x_label`.
pub fn svg(title: &str, x_label: &str, panels: &[Panel]) -> String {
    let xs = panels
        .iter()
        .flat_map(|p| &p.series)
        .flat_map(|s| &s.points)
        .map(|p| p.0)
        .filter(|x| x.is_finite());
    let (x0, x1) = range(xs);
    let height = TOP + panels.len() as f64 * (PANEL_HEIGHT + GAP) + 20.0;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="{LEFT}" y="20" font-size="15">{}</text>"#,
        escape(title)
    );
    for (i, panel) in panels.iter().enumerate() {
        let top = TOP + i as f64 * (PANEL_HEIGHT + GAP);
        draw_panel(&mut out, panel, top, (x0, x1));
    }
    let _ = writeln!(
        out,
        r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
        LEFT + (WIDTH - LEFT - RIGHT) / 2.0,
        height - 8.0,
        escape(x_label)
    );
    out.push_str("</svg>\n");
    out
}

fn draw_panel(out: &mut String, panel: &Panel, top: f64, (x0, x1): (f64, f64)) {
    let ys = panel
        .series
        .iter()
        .flat_map(|s| &s.points)
        .map(|p| p.1)
        .filter(|y| y.is_finite());
    let (_, y1) = range(ys.chain([0.0]));
    let (y0, y1) = (0.0, if y1 > 0.0 { y1 * 1.05 } else { 1.0 });
    let w = WIDTH - LEFT - RIGHT;
    let h = PANEL_HEIGHT;
    let px = |x: f64| LEFT + (x - x0) / (x1 - x0) * w;
    let py = |y: f64| top + h - (y - y0) / (y1 - y0) * h;
    let _ = writeln!(
        out,
        r#"<text x="{LEFT}" y="{}" font-weight="bold">{}</text>"#,
        top - 6.0,
        escape(&panel.title)
    );
    let _ = writeln!(
        out,
        r##"<rect x="{LEFT}" y="{top}" width="{w}" height="{h}" fill="none" stroke="#999"/>"##
    );
    for k in 0..=4 {
        let y = y0 + (y1 - y0) * f64::from(k) / 4.0;
        let (right, at, label_x, label_y) = (LEFT + w, py(y), LEFT - 6.0, py(y) + 4.0);
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" x2="{right}" y1="{at}" y2="{at}" stroke="#eee"/><text x="{label_x}" y="{label_y}" text-anchor="end">{}</text>"##,
            tick(y)
        );
        let x = x0 + (x1 - x0) * f64::from(k) / 4.0;
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
            px(x),
            top + h + 15.0,
            tick(x)
        );
    }
    let middle = top + h / 2.0;
    let _ = writeln!(
        out,
        r#"<text x="14" y="{middle}" transform="rotate(-90 14 {middle})" text-anchor="middle">{}</text>"#,
        escape(&panel.y_label)
    );
    for (i, s) in panel.series.iter().enumerate() {
        let dash = if s.dashed {
            r#" stroke-dasharray="6 3""#
        } else {
            ""
        };
        for run in s.points.split(|p| !(p.0.is_finite() && p.1.is_finite())) {
            if run.is_empty() {
                continue;
            }
            let pts: Vec<String> = run
                .iter()
                .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y.clamp(y0, y1))))
                .collect();
            let _ = writeln!(
                out,
                r#"<polyline fill="none" stroke="{}" stroke-width="1.5"{dash} points="{}"/>"#,
                s.color,
                pts.join(" ")
            );
        }
        let ly = top + 14.0 + i as f64 * 18.0;
        let lx = LEFT + w + 12.0;
        let _ = writeln!(
            out,
            r#"<line x1="{lx}" x2="{}" y1="{ly}" y2="{ly}" stroke="{}" stroke-width="2"{dash}/><text x="{}" y="{}">{}</text>"#,
            lx + 20.0,
            s.color,
            lx + 26.0,
            ly + 4.0,
            escape(&s.name)
        );
    }
}

/// Min and max, widened when empty or flat so the scale is never 0-wide.
fn range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if hi - lo < 1e-12 {
        return (lo, lo + 1.0);
    }
    (lo, hi)
}

fn tick(v: f64) -> String {
    let a = v.abs();
    if a >= 1e9 {
        format!("{:.1}G", v / 1e9)
    } else if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else if a >= 10.0 || a == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_every_series_and_escapes_text() {
        let panel = Panel {
            title: "cpu <cores>".into(),
            y_label: "cores".into(),
            series: vec![
                Series::line("usage", "black", vec![(0.0, 1.0), (1.0, 2.0), (2.0, 1.5)]),
                Series::dashed(
                    "band",
                    "blue",
                    vec![(0.0, 1.5), (1.0, f64::NAN), (2.0, 2.0), (3.0, 2.5)],
                ),
            ],
        };
        let s = svg("run & result", "seconds", &[panel.clone(), panel]);
        assert!(s.starts_with("<svg") && s.ends_with("</svg>\n"));
        assert!(s.contains("run &amp; result") && s.contains("cpu &lt;cores&gt;"));
        // usage: 1 polyline per panel; band: broken by the NaN into 2 runs.
        assert_eq!(s.matches("<polyline").count(), 2 * (1 + 2));
        assert_eq!(s.matches("stroke-dasharray").count(), 2 * (2 + 1));
    }

    #[test]
    fn empty_and_flat_data_do_not_divide_by_zero() {
        let panel = Panel {
            title: "t".into(),
            y_label: "y".into(),
            series: vec![Series::line("flat", "red", vec![(5.0, 0.0), (5.0, 0.0)])],
        };
        let s = svg("t", "x", &[panel]);
        assert!(!s.contains("NaN") && !s.contains("inf"));
        let s = svg("t", "x", &[]);
        assert!(s.contains("</svg>"));
    }
}
