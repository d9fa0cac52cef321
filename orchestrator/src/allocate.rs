//! Fitting the managed reservations within the host's capacity.
//!
//! Order when the wanted total exceeds capacity:
//! 1. every managed cgroup gets its floor (if even the floors do not fit,
//!    the configuration over-commits the host: floors are scaled down in
//!    proportion and a warning says so);
//! 2. then priority groups, highest first, get what they want above their
//!    floor; the group where capacity runs out shares what is left in
//!    proportion to what each wants above its floor; lower groups stay at
//!    their floors.

/// One managed cgroup's request for one resource.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Want {
    /// Higher goes first.
    pub priority: i32,
    /// Configured floor.
    pub floor: f64,
    /// Configured ceiling.
    pub ceiling: f64,
    /// What its forecast asks for.
    pub wanted: f64,
}

/// Grants per want (same order), and whether the floors alone exceeded
/// capacity.
pub fn allocate(wants: &[Want], capacity: Option<f64>) -> (Vec<f64>, bool) {
    let targets: Vec<f64> = wants
        .iter()
        .map(|w| w.wanted.clamp(w.floor, w.ceiling.max(w.floor)))
        .collect();
    let Some(capacity) = capacity else {
        return (targets, false);
    };
    if targets.iter().sum::<f64>() <= capacity {
        return (targets, false);
    }
    let floors: f64 = wants.iter().map(|w| w.floor).sum();
    if floors >= capacity {
        let scale = if floors > 0.0 { capacity / floors } else { 0.0 };
        return (
            wants.iter().map(|w| w.floor * scale).collect(),
            floors > capacity,
        );
    }
    let mut granted: Vec<f64> = wants.iter().map(|w| w.floor).collect();
    let mut left = capacity - floors;
    let mut priorities: Vec<i32> = wants.iter().map(|w| w.priority).collect();
    priorities.sort_unstable_by(|a, b| b.cmp(a));
    priorities.dedup();
    for p in priorities {
        let group = (0..wants.len()).filter(|&i| wants[i].priority == p);
        let extra: f64 = group.clone().map(|i| targets[i] - wants[i].floor).sum();
        let share = if extra <= left { 1.0 } else { left / extra };
        for i in group {
            granted[i] += (targets[i] - wants[i].floor) * share;
        }
        left -= extra * share;
        if left <= 0.0 {
            break;
        }
    }
    (granted, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn want(priority: i32, floor: f64, ceiling: f64, wanted: f64) -> Want {
        Want {
            priority,
            floor,
            ceiling,
            wanted,
        }
    }

    #[test]
    fn clamps_within_bounds_when_capacity_suffices() {
        let (g, over) = allocate(&[want(0, 0.5, 2.0, 3.0), want(0, 0.5, 2.0, 0.1)], Some(8.0));
        assert_eq!(g, vec![2.0, 0.5]);
        assert!(!over);
    }

    #[test]
    fn priority_order_when_short() {
        let wants = [
            want(0, 0.5, 4.0, 4.0),
            want(10, 0.5, 4.0, 3.0),
            want(10, 0.5, 4.0, 2.0),
        ];
        // Capacity 4: floors 1.5, then priority 10 wants 2.5 + 1.5 = 4 more
        // but 2.5 is left: shared in proportion (2.5:1.5).
        let (g, _) = allocate(&wants, Some(4.0));
        assert!((g.iter().sum::<f64>() - 4.0).abs() < 1e-9);
        assert_eq!(g[0], 0.5);
        assert!((g[1] - (0.5 + 2.5 * 2.5 / 4.0)).abs() < 1e-9);
        assert!((g[2] - (0.5 + 1.5 * 2.5 / 4.0)).abs() < 1e-9);
    }

    #[test]
    fn floors_scaled_when_over_committed() {
        let (g, over) = allocate(&[want(0, 3.0, 4.0, 4.0), want(0, 3.0, 4.0, 4.0)], Some(4.0));
        assert_eq!(g, vec![2.0, 2.0]);
        assert!(over);
    }
}
