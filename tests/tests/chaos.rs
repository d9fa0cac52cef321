//! Fault injection sized for CI: the code of `cargo xtask chaos`
//! (shadow_tests::chaos) with 10 kills, 12 cgroups, 100 idle connections
//! and 10 slowloris handshakes. Every knob comes back after SIGKILLs, a
//! full disk and a broken configuration; the good agent is never late
//! while peers misbehave; a killed agent's reservation is released within
//! two ticks.

use shadow_tests::chaos::{Options, run};

#[test]
fn nothing_is_lost_and_the_good_agent_is_never_late() {
    // A fixed seed: a failure here can be replayed with
    // `cargo xtask chaos --seed 15 ...`.
    let outcome = run(&Options::ci(15)).unwrap_or_else(|e| panic!("{e:#}"));
    let s = &outcome.summary;
    eprintln!("{}", serde_json::to_string(s).unwrap());
    assert_eq!(
        s.kills, 12,
        "10 in the loop, one with a full disk, one before --restore"
    );
    assert!(s.knobs_checked > 0);
    assert_eq!(s.knobs_lost, 0, "{s:?}");
    assert_eq!(s.good_agent_late_ticks, 0, "{s:?}");
    // The 100 idle and 10 slowloris connections are cut by the handshake
    // deadline or refused as Busy, and the wrong key is refused.
    assert!(s.peers_refused >= 111, "{s:?}");
    assert!(outcome.failures.is_empty(), "{:#?}", outcome.failures);
}
