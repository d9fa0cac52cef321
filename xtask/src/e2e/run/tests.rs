//! Tests of `run`.

use super::*;

#[test]
fn shadow_s_file_holds_only_the_rule_and_the_swept_key() {
    let setup = Setup {
        scenario: Scenario::Periodic,
        load: Load::Custom {
            command: String::new(),
            pattern: super::super::load::tests::pattern(),
        },
        hierarchy: CpuHierarchy::V1,
        initial_cores: 0.6,
        mean_cores: 0.5,
        mean_from: String::new(),
        tick: Duration::from_millis(500),
        floor: 0.2,
        ceiling: 1.9,
        hint_ahead: Duration::from_secs(3),
        lead: None,
        cpus: 2.0,
        work_rate: 1.0,
    };
    let c = shadow_config(&setup, "/s", None);
    assert_eq!(
        c,
        "[[manage]]\ncgroup = \"/s\"\ncpu = { floor = 0.2, ceiling = 1.9 }\n"
    );
    assert!(!c.contains("cooldown") && !c.contains("min_interval"));
    let c = shadow_config(
        &Setup {
            lead: Some(1),
            ..setup
        },
        "/s",
        Some(0.9),
    );
    assert!(c.starts_with("lead = 1\n") && c.ends_with("[agent]\nquantile = 0.9\n"));
}
