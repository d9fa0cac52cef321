//! The hint protocol's parsing and the ledger's rules, without sockets.

use std::time::Duration;

use super::{
    ClientLimits,
    ledger::{self, INITIAL_TRUST, Ledger},
    peer::{self, Caller},
    protocol::{Amounts, Code, Command, Reply, parse_line},
};
use shadow_wire::Resource;

fn limits() -> ClientLimits {
    ClientLimits::new(Amounts {
        cpu: 2.0,
        memory: 8.0 * (1u64 << 30) as f64,
        io: super::UNKNOWN_BANDWIDTH,
        net: super::UNKNOWN_BANDWIDTH,
    })
}

fn code(line: &str) -> Code {
    match parse_line(line.as_bytes(), &limits()) {
        Ok(c) => panic!("{line} accepted: {c:?}"),
        Err(r) => r.code,
    }
}

fn spec(line: &str) -> super::protocol::Spec {
    match parse_line(line.as_bytes(), &limits()) {
        Ok(Command::Hint(s)) => s,
        other => panic!("{line}: {other:?}"),
    }
}

#[test]
fn parses_a_full_hint() {
    let s = spec(
        r#"{"cpu":1.5,"memory":"2GiB","io":1048576,"net":"10MiB","start_in":"30s","duration":"5m","confidence":0.5,"reason":"batch","cgroup":"/a/b"}"#,
    );
    assert_eq!(s.amounts.cpu, 1.5);
    assert_eq!(s.amounts.memory, 2.0 * (1u64 << 30) as f64);
    assert_eq!(s.amounts.io, 1048576.0);
    assert_eq!(s.amounts.net, 10.0 * (1u64 << 20) as f64);
    assert_eq!(s.start_in, Duration::from_secs(30));
    assert_eq!(s.duration, Duration::from_secs(300));
    assert_eq!(s.confidence, 0.5);
    assert_eq!(s.cgroup.as_deref(), Some("/a/b"));
    let minimal = spec(r#"{"cpu":1,"duration":"2s"}"#);
    assert_eq!(minimal.start_in, Duration::ZERO);
    assert_eq!(minimal.confidence, 1.0);
    assert_eq!(
        parse_line(br#"{"cancel":7}"#, &limits()),
        Ok(Command::Cancel(7))
    );
}

#[test]
fn refuses_with_the_documented_codes() {
    let too_long = format!(r#"{{"reason":"{}"}}"#, "x".repeat(5000));
    assert_eq!(code(&too_long), Code::TooLong);
    for garbage in ["", "{", "not json", "{\"cpu\":1,}", "\u{0}"] {
        assert_eq!(code(garbage), Code::Malformed, "{garbage:?}");
    }
    assert_eq!(code(r#"{"cpus":4,"duration":"1s"}"#), Code::UnknownField);
    assert_eq!(code(r#"{"cpu":"4","duration":"1s"}"#), Code::Invalid);
    assert_eq!(code(r#"[1,2]"#), Code::Invalid);
    assert_eq!(code(r#"{"cpu":1}"#), Code::Invalid, "no duration");
    assert_eq!(code(r#"{"duration":"1s"}"#), Code::Invalid, "no amount");
    assert_eq!(code(r#"{"cancel":1,"cpu":1}"#), Code::Invalid);
    assert_eq!(code(r#"{"memory":"2GB","duration":"1s"}"#), Code::Invalid);
    assert_eq!(code(r#"{"cpu":1,"duration":"soon"}"#), Code::Invalid);
    for range in [
        r#"{"cpu":-1,"duration":"1s"}"#,
        r#"{"cpu":1e308,"duration":"1s"}"#,
        r#"{"cpu":5000,"duration":"1s"}"#,
        r#"{"memory":-5,"duration":"1s"}"#,
        r#"{"cpu":1,"duration":"0s"}"#,
        r#"{"cpu":1,"duration":"7h"}"#,
        r#"{"cpu":1,"duration":"-1s"}"#,
        r#"{"cpu":1,"duration":"1s","start_in":"2h"}"#,
        r#"{"cpu":1,"duration":"1s","confidence":1.5}"#,
        r#"{"cpu":1,"duration":"1s","confidence":-0.1}"#,
    ] {
        assert_eq!(code(range), Code::OutOfRange, "{range}");
    }
    assert_eq!(code(r#"{"cancel":-1}"#), Code::Invalid);
}

#[test]
fn replies_have_a_stable_shape() {
    let refused = Reply::Refused(super::Refusal::new(Code::RateLimited, "slow down"));
    assert_eq!(
        serde_json::to_string(&refused).unwrap(),
        r#"{"status":"refused","code":"rate_limited","message":"slow down"}"#
    );
    let back: Reply = serde_json::from_str(r#"{"status":"cancelled","id":3}"#).unwrap();
    assert_eq!(back, Reply::Cancelled { id: 3 });
}

fn caller(uid: u32, cgroup: &str) -> Caller {
    Caller {
        pid: 1,
        uid,
        gid: uid,
        cgroup: cgroup.into(),
    }
}

#[test]
fn callers_name_only_their_own_subtree_unless_root() {
    let a = caller(1000, "/a");
    assert!(peer::authorize(&a, "/a").is_ok());
    assert!(peer::authorize(&a, "/a/job").is_ok());
    assert_eq!(peer::authorize(&a, "/b").unwrap_err().code, Code::Forbidden);
    assert_eq!(
        peer::authorize(&a, "/ab").unwrap_err().code,
        Code::Forbidden
    );
    assert_eq!(peer::authorize(&a, "/").unwrap_err().code, Code::Forbidden);
    assert!(peer::authorize(&caller(0, "/a"), "/b").is_ok());
    assert_eq!(peer::normalize("//a/./b").unwrap_err().code, Code::Invalid);
    assert_eq!(peer::normalize("/a//b/").unwrap(), "/a/b");
    assert_eq!(peer::normalize("/").unwrap(), "/");
    assert!(peer::normalize("/a/../b").is_err());
    assert!(peer::normalize("a").is_err());
    let proc_file = "12:pids:/user.slice\n1:name=systemd:/x\n0::/user.slice/session-1.scope\n";
    assert_eq!(
        peer::v2_cgroup(proc_file).as_deref(),
        Some("/user.slice/session-1.scope")
    );
    assert_eq!(peer::v2_cgroup("0::/\n").as_deref(), Some("/"));
    assert_eq!(peer::v2_cgroup("4:cpu:/x\n"), None);
}

#[test]
fn hints_are_clamped_bounded_and_rate_limited() {
    let mut ledger = Ledger::new(limits());
    let s = spec(r#"{"cpu":4,"memory":"1GiB","start_in":"10s","duration":"5s"}"#);
    let a = ledger.submit("/a", &s, 100.0).unwrap();
    assert_eq!(a.amounts.cpu, 2.0, "clamped to the host's 2 cores");
    assert_eq!(a.clamped, vec!["cpu".to_owned()]);
    assert_eq!((a.start, a.end), (110.0, 115.0));
    assert_eq!(a.trust, INITIAL_TRUST);
    assert_eq!(a.reserve.cpu, 2.0 * INITIAL_TRUST);
    assert_eq!(a.reserve.memory, f64::from(1 << 30) * INITIAL_TRUST);
    for _ in 1..ledger.limits().max_live {
        ledger.submit("/a", &s, 100.0).unwrap();
    }
    assert_eq!(
        ledger.submit("/a", &s, 100.0).unwrap_err().code,
        Code::TooMany
    );
    assert!(ledger.submit("/b", &s, 100.0).is_ok(), "per cgroup");
    let burst = ledger.limits().rate_burst as usize;
    for _ in 0..burst {
        ledger.admit("/caller", 0.0).unwrap();
    }
    assert_eq!(
        ledger.admit("/caller", 0.0).unwrap_err().code,
        Code::RateLimited
    );
    assert!(ledger.admit("/other", 0.0).is_ok(), "per caller cgroup");
    assert!(ledger.admit("/caller", 1.0).is_ok(), "refilled over time");
}

#[test]
fn the_prior_covers_the_window_only() {
    let mut ledger = Ledger::new(limits());
    let s = spec(r#"{"cpu":1,"io":1000,"start_in":"10s","duration":"5s","confidence":0.5}"#);
    let id = ledger.submit("/a", &s, 100.0).unwrap().id;
    assert_eq!(ledger.prior("/a", Resource::Cpu, 108.0, 109.0), None);
    let p = ledger.prior("/a", Resource::Cpu, 109.5, 110.5).unwrap();
    assert_eq!(p.id, id);
    assert!((p.floor - 0.5 * INITIAL_TRUST).abs() < 1e-12);
    assert!(ledger.prior("/a", Resource::Io, 114.0, 115.0).is_some());
    assert_eq!(ledger.prior("/a", Resource::Cpu, 115.0, 116.0), None);
    assert_eq!(ledger.prior("/a", Resource::Net, 111.0, 112.0), None);
    assert_eq!(ledger.prior("/b", Resource::Cpu, 111.0, 112.0), None);
    assert!(ledger.hints_resource("/a", Resource::Io, 100.0));
    assert!(!ledger.hints_resource("/a", Resource::Net, 100.0));
}

#[test]
fn inflated_hints_lose_trust_and_accurate_ones_earn_it() {
    let mut ledger = Ledger::new(limits());
    let s = spec(r#"{"cpu":2,"duration":"4s"}"#);
    ledger.submit("/liar", &s, 0.0).unwrap();
    ledger.submit("/honest", &s, 0.0).unwrap();
    for t in 1..=4 {
        let used = |cpu| Amounts {
            cpu,
            ..Amounts::default()
        };
        ledger.record("/liar", f64::from(t), 1.0, used(0.5));
        ledger.record("/honest", f64::from(t), 1.0, used(2.0));
    }
    assert!(ledger.settle(4.5, 1.0).is_empty(), "grace not over");
    let outcomes = ledger.settle(5.0, 1.0);
    assert_eq!(outcomes.len(), 2);
    assert!(ledger.trust("/liar") < INITIAL_TRUST - 0.15, "{outcomes:?}");
    assert!(ledger.trust("/honest") > INITIAL_TRUST, "{outcomes:?}");
    assert_eq!(ledger.live_count("/liar", 5.0), 0);
    // Trust never reaches zero, and recovers with accurate hints.
    let mut t = 1.0;
    for _ in 0..100 {
        t = ledger::updated_trust(t, 0.0);
    }
    assert_eq!(t, ledger::MIN_TRUST);
    assert!(ledger::updated_trust(t, 1.0) > t);
    assert_eq!(
        ledger::accuracy(
            Amounts {
                memory: 2.0,
                ..Amounts::default()
            },
            Amounts {
                memory: 1.0,
                ..Amounts::default()
            }
        ),
        Some(0.5),
        "memory is judged on the level held"
    );
    assert_eq!(
        ledger::accuracy(Amounts::default(), Amounts::default()),
        None
    );
}

#[test]
fn cancelling_before_the_window_drops_and_within_it_truncates() {
    let mut ledger = Ledger::new(limits());
    let s = spec(r#"{"cpu":1,"start_in":"10s","duration":"10s"}"#);
    let early = ledger.submit("/a", &s, 0.0).unwrap().id;
    let late = ledger.submit("/a", &s, 0.0).unwrap().id;
    ledger.cancel(early, 5.0).unwrap();
    assert_eq!(ledger.cancel(early, 5.0).unwrap_err().code, Code::NotFound);
    ledger.cancel(late, 12.0).unwrap();
    assert_eq!(ledger.prior("/a", Resource::Cpu, 13.0, 14.0), None);
    assert_eq!(
        ledger.settle(14.0, 1.0).len(),
        1,
        "the elapsed part is judged"
    );
    assert!(ledger.trust("/a") < INITIAL_TRUST);
    assert_eq!(ledger.cancel(99, 0.0).unwrap_err().code, Code::NotFound);
}

/// What the shipped unit does to root: no CAP_CHOWN in the bounding set.
/// Then the socket cannot be given to a group root is not in, and the
/// error says so and is one the agent refuses to start on.
#[test]
fn without_cap_chown_a_hint_group_is_a_loud_configuration_error() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("not root: chown to another group fails anyway; checked as root only");
        return;
    }
    let dir = std::env::temp_dir().join(format!("shadow-hint-chown-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new("setpriv")
        .args(["--bounding-set=-chown", "--inh-caps=-chown"])
        .arg(exe)
        .args([
            "hint::tests::bind_without_cap_chown_child",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env("SHADOW_TEST_CHILD_DIR", &dir)
        .output()
        .expect("setpriv (util-linux) runs the child");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(out.status.success() && text.contains("1 passed"), "{text}");
}

#[test]
#[ignore = "run without CAP_CHOWN by without_cap_chown_a_hint_group_is_a_loud_configuration_error"]
fn bind_without_cap_chown_child() {
    let Some(dir) = std::env::var_os("SHADOW_TEST_CHILD_DIR") else {
        return;
    };
    let path = std::path::Path::new(&dir).join("hint.sock");
    let err = super::server::bind(&path, Some("65534")).unwrap_err();
    assert!(err.is_configuration(), "{err}");
    assert!(err.to_string().contains("CAP_CHOWN"), "{err}");
    assert!(!path.exists(), "no socket left that its group cannot reach");
}

/// A pid whose process exited is never trusted, even when the pid now
/// names a live process (here this one, standing in for a reused pid): the
/// pidfd taken at connect is what says whether the caller is still there.
#[test]
fn a_peer_that_exited_is_refused_even_if_its_pid_names_a_live_process() {
    use std::os::fd::{FromRawFd as _, OwnedFd};
    let pidfd_of = |pid: i32| {
        // SAFETY: pidfd_open takes a pid and flags; the descriptor is new.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        assert!(fd >= 0, "{}", std::io::Error::last_os_error());
        // SAFETY: a new descriptor only we own.
        unsafe { OwnedFd::from_raw_fd(fd as i32) }
    };
    let me = std::process::id() as i32;
    let mine = pidfd_of(me);
    let caller = super::peer::identify(me, 1000, 1000, Some(&mine)).expect("alive");
    assert!(caller.cgroup.starts_with('/'));

    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let theirs = pidfd_of(gone.id() as i32);
    gone.wait().unwrap();
    // The connection's pid now names a live process (this one): the old
    // code read its cgroup and credited the hint to it.
    let refused = super::peer::identify(me, 1000, 1000, Some(&theirs)).unwrap_err();
    assert_eq!(refused.code, Code::Identity, "{}", refused.message);
    assert!(refused.message.contains("exited"), "{}", refused.message);
    // No pidfd at all: the pid alone is not trusted either.
    let refused = super::peer::identify(me, 1000, 1000, None).unwrap_err();
    assert_eq!(refused.code, Code::Identity);
}
