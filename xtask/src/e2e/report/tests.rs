//! Tests of `report`.

use super::*;

#[test]
fn the_table_shows_median_and_range() {
    let p = Policy::Static { cores: 0.5 };
    let pt = |p99: f64| stats::Point {
        p99_ms: p99,
        throttled_s: 1.0,
        reserved_core_s: 50.0,
        used_core_s: 40.0,
        neighbour_work_core_s: f64::NAN,
    };
    let rows = stats::summarize(&[p], &[(p, pt(10.0)), (p, pt(30.0)), (p, pt(20.0))]);
    let t = table(&rows);
    assert!(
        t.contains("| static | 0.500 | 3 | 20.0 [10.0–30.0] | 1.00 [1.00–1.00] |"),
        "{t}"
    );
    assert!(t.trim_end().ends_with("| - |"), "{t}");
}

#[test]
fn every_point_of_a_curve_gets_a_mark() {
    let m = marked(&[(1.0, 1.0), (2.0, 3.0)], 0.2, 0.2);
    // The curve, then per point a break and a two-stroke cross.
    assert_eq!(m.len(), 2 + 2 * (1 + 5));
    assert_eq!(m[..2], [(1.0, 1.0), (2.0, 3.0)]);
    assert!(m[2].0.is_nan());
    assert_eq!(m[3], (0.9, 1.0));
}

#[test]
fn a_cross_is_two_strokes() {
    let c = cross(1.0, 2.0, 0.1, 0.2);
    assert_eq!(c.len(), 5);
    assert!(c[2].0.is_nan());
    assert_eq!((c[0], c[4]), ((0.9, 2.0), (1.0, 2.2)));
}
