use super::*;

/// Every knob: the text the kernel shows parses, and formatting the parsed
/// value gives text the kernel accepts and shows back the same.
#[test]
fn every_knob_round_trips_kernel_text() {
    let cases: &[(Knob, &str, Option<&str>, Setting, &str)] = &[
        (
            Knob::CpuMax,
            "max 100000\n",
            None,
            Setting::CpuQuota(CpuQuota::unlimited(100_000)),
            "max 100000",
        ),
        (
            Knob::CpuMax,
            "50000 100000\n",
            None,
            Setting::CpuQuota(CpuQuota {
                quota_us: Some(50_000),
                period_us: 100_000,
            }),
            "50000 100000",
        ),
        (
            Knob::CpuCfsQuota,
            "-1\n",
            Some("100000\n"),
            Setting::CpuQuota(CpuQuota::unlimited(100_000)),
            "-1",
        ),
        (
            Knob::CpuCfsQuota,
            "25000\n",
            Some("50000\n"),
            Setting::CpuQuota(CpuQuota {
                quota_us: Some(25_000),
                period_us: 50_000,
            }),
            "25000",
        ),
        (Knob::CpuWeight, "100\n", None, Setting::Weight(100), "100"),
        (
            Knob::CpuShares,
            "1024\n",
            None,
            Setting::Weight(1024),
            "1024",
        ),
        (
            Knob::IoWeight,
            "default 100\n8:0 200\n",
            None,
            Setting::Weight(100),
            "default 100",
        ),
        (
            Knob::BlkioWeight,
            "100\n",
            None,
            Setting::Weight(100),
            "100",
        ),
        (
            Knob::MemoryLow,
            "0\n",
            None,
            Setting::Bytes(Bytes::Limit(0)),
            "0",
        ),
        (
            Knob::MemoryHigh,
            "max\n",
            None,
            Setting::Bytes(Bytes::Max),
            "max",
        ),
        (
            Knob::MemorySoftLimit,
            "9223372036854771712\n",
            None,
            Setting::Bytes(Bytes::Max),
            "-1",
        ),
        (
            Knob::MemoryLimit,
            "99999744\n",
            None,
            Setting::Bytes(Bytes::Limit(99_999_744)),
            "99999744",
        ),
    ];
    for (knob, text, companion, setting, written) in cases {
        let parsed = knob.parse(text, *companion).unwrap();
        assert_eq!(parsed, *setting, "{knob} {text:?}");
        assert_eq!(knob.format(&parsed).unwrap(), *written, "{knob}");
    }
    // Every knob is covered.
    for k in Knob::ALL {
        assert!(cases.iter().any(|c| c.0 == k), "{k} has no case");
    }
}

#[test]
fn bad_contents_are_errors_not_panics() {
    let bad = [
        "",
        "\n",
        "abc",
        "-5",
        "1 2 3",
        "max",
        "99999999999999999999999",
        "+1",
        " 1 0x10",
        "\u{fffd}",
    ];
    for knob in Knob::ALL {
        for text in bad {
            // Some of these are valid for some knobs ("max" on memory.high):
            // the point is that nothing panics and nonsense is refused.
            let _ = knob.parse(text, Some(text));
        }
    }
    assert!(Knob::CpuMax.parse("max", None).is_err());
    assert!(Knob::CpuMax.parse("max 100000 1", None).is_err());
    assert!(Knob::CpuMax.parse("-1 100000", None).is_err());
    assert!(Knob::CpuCfsQuota.parse("-2", Some("100000")).is_err());
    assert!(Knob::CpuCfsQuota.parse("5000", None).is_err());
    assert!(Knob::CpuShares.parse("1024 ", None).is_ok());
    assert!(Knob::CpuShares.parse("-1", None).is_err());
    assert!(Knob::MemoryLimit.parse("max", None).is_err());
    assert!(
        Knob::MemoryHigh
            .parse("18446744073709551616", None)
            .is_err()
    );
    assert!(Knob::IoWeight.parse("default x", None).is_err());
    let err = Knob::CpuWeight.parse(&"9".repeat(500), None).unwrap_err();
    assert_eq!(err.found.len(), 64, "error text is bounded");
}

#[test]
fn v1_unlimited_is_recognised_for_any_page_size() {
    for page in [4096u64, 16384, 65536] {
        let max = (i64::MAX as u64) / page * page;
        assert_eq!(Bytes::parse_v1(&max.to_string()), Ok(Bytes::Max));
    }
    assert_eq!(Bytes::parse_v1("1099511627776"), Ok(Bytes::Limit(1 << 40)));
}

#[test]
fn weights_out_of_range_are_refused() {
    let refuse = [
        (Knob::CpuWeight, 0),
        (Knob::CpuWeight, 10_001),
        (Knob::CpuShares, 1),
        (Knob::CpuShares, 262_145),
        (Knob::IoWeight, 0),
        (Knob::BlkioWeight, 0),
        (Knob::BlkioWeight, 1_001),
    ];
    for (k, w) in refuse {
        let err = k.format(&Setting::Weight(w)).unwrap_err();
        assert!(
            matches!(err, InvalidSetting::OutOfRange { value, .. } if value == w),
            "{k} {w}: {err}"
        );
    }
    for k in [
        Knob::CpuWeight,
        Knob::CpuShares,
        Knob::IoWeight,
        Knob::BlkioWeight,
    ] {
        let r = k.weight_range().unwrap();
        assert!(k.format(&Setting::Weight(*r.start())).is_ok());
        assert!(k.format(&Setting::Weight(*r.end())).is_ok());
    }
}

#[test]
fn wrong_kinds_and_bad_quotas_are_refused() {
    assert!(matches!(
        Knob::CpuMax.format(&Setting::Weight(100)),
        Err(InvalidSetting::WrongKind { .. })
    ));
    assert!(matches!(
        Knob::MemoryLow.format(&Setting::Weight(100)),
        Err(InvalidSetting::WrongKind { .. })
    ));
    assert!(matches!(
        Knob::CpuWeight.format(&Setting::Bytes(Bytes::Max)),
        Err(InvalidSetting::WrongKind { .. })
    ));
    let q = |quota_us, period_us| {
        Setting::CpuQuota(CpuQuota {
            quota_us,
            period_us,
        })
    };
    // The kernel refuses a quota under 1 ms (EINVAL, checked on 6.18).
    assert!(Knob::CpuCfsQuota.format(&q(Some(500), 100_000)).is_err());
    assert!(Knob::CpuMax.format(&q(Some(1_000), 999)).is_err());
    assert!(Knob::CpuMax.format(&q(None, 1_000_001)).is_err());
    assert!(Knob::CpuMax.format(&q(Some(1_000), 1_000)).is_ok());
}

#[test]
fn cores_and_quota_convert_both_ways() {
    let q = CpuQuota::from_cores(1.5, 100_000);
    assert_eq!(q.quota_us, Some(150_000));
    assert!((q.cores() - 1.5).abs() < 1e-12);
    // Rounded up: never less CPU than asked for.
    assert_eq!(
        CpuQuota::from_cores(0.333_333, 100_000).quota_us,
        Some(33_334)
    );
    // Kept within the kernel's limits; nonsense ends at the minimum.
    assert_eq!(
        CpuQuota::from_cores(0.0, 100_000).quota_us,
        Some(MIN_CFS_US)
    );
    assert_eq!(
        CpuQuota::from_cores(-3.0, 100_000).quota_us,
        Some(MIN_CFS_US)
    );
    assert_eq!(
        CpuQuota::from_cores(f64::NAN, 100_000).quota_us,
        Some(MIN_CFS_US)
    );
    assert_eq!(
        CpuQuota::from_cores(1e30, 100_000).quota_us,
        Some(MAX_CFS_QUOTA_US)
    );
    assert_eq!(
        CpuQuota::from_cores(f64::INFINITY, 50_000),
        CpuQuota::unlimited(50_000)
    );
    assert_eq!(CpuQuota::unlimited(100_000).cores(), f64::INFINITY);
}

#[test]
fn weights_from_shares() {
    assert_eq!(weight_from_share(Knob::CpuWeight, 1.0), Some(100));
    assert_eq!(weight_from_share(Knob::CpuShares, 2.0), Some(2048));
    assert_eq!(weight_from_share(Knob::BlkioWeight, 50.0), Some(1000));
    assert_eq!(weight_from_share(Knob::IoWeight, 0.0), Some(1));
    assert_eq!(weight_from_share(Knob::CpuShares, f64::NAN), Some(2));
    assert_eq!(weight_from_share(Knob::MemoryLow, 1.0), None);
    assert_eq!(cpu_weight_from_shares(2), 1);
    assert_eq!(cpu_weight_from_shares(262_144), 10_000);
    assert_eq!(cpu_weight_from_shares(1024), 39);
}

#[test]
fn memory_is_page_aligned_and_ordered() {
    assert_eq!(
        Bytes::Limit(100_000_001).page_aligned(4096),
        Bytes::Limit(99_999_744)
    );
    assert_eq!(Bytes::Max.page_aligned(4096), Bytes::Max);
    // Unlimited gives more than any limit, so going to "max" is a raise.
    assert!(Setting::Bytes(Bytes::Max).amount() > Setting::Bytes(Bytes::Limit(u64::MAX)).amount());
    assert!(
        Setting::CpuQuota(CpuQuota::from_cores(2.0, 100_000)).amount()
            > Setting::CpuQuota(CpuQuota::from_cores(1.0, 10_000)).amount()
    );
}
