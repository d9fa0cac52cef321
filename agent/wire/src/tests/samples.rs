//! One message of every kind, with values chosen to be exact in `f32` so
//! the golden vectors and their hex in docs/protocol.md read cleanly.

use crate::{
    Challenge, Code, Component, Failure, Hello, Message, Prediction, PredictionBatch, Proof,
    Reservation, ReservationBatch, Resource, Source, Step, Usage, UsageBatch, Welcome,
    auth::{self, Key},
};

/// 2026-01-01T00:00:00Z in milliseconds since the Unix epoch.
pub(super) const AT_MS: u64 = 1_767_225_600_000;

pub(super) fn hello() -> Message {
    Message::Hello(Hello {
        version: 2,
        host: "node-7".into(),
        agent: "shadow".into(),
        tick_ms: 1000,
        key: "vm-7".into(),
    })
}

/// The documented example key: bytes 0x00..=0x1f.
pub(super) fn key() -> Key {
    let hex: String = (0u8..32).map(|b| format!("{b:02x}")).collect();
    Key::from_hex(&hex, "sample").expect("sample key")
}

/// Nonce bytes 0x20..=0x3f.
pub(super) fn challenge() -> Message {
    let mut nonce = [0; auth::LEN];
    for (i, b) in nonce.iter_mut().enumerate() {
        *b = 0x20 + i as u8;
    }
    Message::Challenge(Challenge { nonce })
}

/// The proof of [`key`] for [`challenge`] after [`hello`].
pub(super) fn proof() -> Message {
    let Message::Challenge(c) = challenge() else {
        unreachable!()
    };
    let frame = crate::encode(&hello(), crate::Compression::Off).expect("encode");
    Message::Proof(Proof {
        mac: auth::proof(&key(), &c.nonce, &frame[5..]),
    })
}

pub(super) fn welcome() -> Message {
    Message::Welcome(Welcome {
        version: 2,
        orchestrator: "node-7".into(),
        max_frame: 4 << 20,
    })
}

fn nginx() -> Component {
    Component {
        path: "/system.slice/nginx.service".into(),
        id: 4242,
    }
}

pub(super) fn predictions() -> Message {
    Message::Predictions(PredictionBatch {
        at_ms: AT_MS,
        step_ms: 1000,
        components: vec![
            nginx(),
            Component {
                path: "/user.slice".into(),
                id: 17,
            },
        ],
        predictions: vec![
            Prediction {
                component: 0,
                resource: Resource::Cpu,
                source: Source::Model,
                quantile: 0.95,
                volatility: 0.125,
                last: 1.5,
                next_report_ms: 5000,
                steps: vec![step(1, 1.5, 2.0), step(6, 1.25, 2.5)],
            },
            Prediction {
                component: 1,
                resource: Resource::Memory,
                source: Source::Hint,
                quantile: 0.99,
                volatility: 1_048_576.0,
                last: 268_435_456.0,
                next_report_ms: 10_000,
                steps: vec![step(1, 268_435_456.0, 301_989_888.0)],
            },
        ],
    })
}

pub(super) fn usage() -> Message {
    Message::Usage(UsageBatch {
        at_ms: AT_MS + 1000,
        interval_ms: 1000,
        components: vec![nginx()],
        usage: vec![
            Usage {
                component: 0,
                resource: Resource::Cpu,
                value: 1.75,
            },
            Usage {
                component: 0,
                resource: Resource::Net,
                value: 125_000.0,
            },
        ],
    })
}

pub(super) fn reservations() -> Message {
    Message::Reservations(ReservationBatch {
        at_ms: AT_MS + 1000,
        reservations: vec![
            Reservation {
                path: "/system.slice/nginx.service".into(),
                resource: Resource::Cpu,
                reserved: 2.5,
                managed: true,
                margin: 0.125,
                exceeded: 0.0625,
                slack: 0.25,
            },
            Reservation {
                path: "/user.slice".into(),
                resource: Resource::Memory,
                reserved: 536_870_912.0,
                managed: false,
                margin: 0.0,
                exceeded: 0.0,
                slack: 0.5,
            },
        ],
    })
}

pub(super) fn error() -> Message {
    Message::Error(Failure {
        code: Code::Incompatible,
        message: "peer speaks protocol version 3, this build speaks 2".into(),
    })
}

/// A batch large enough to be compressed: 16 components, every resource,
/// horizons 1 and 6, values from a fixed formula.
pub(super) fn batch() -> Message {
    let components = (0..16)
        .map(|i| Component {
            path: format!("/system.slice/service-{}.service", 1000 + i),
            id: 5000 + i,
        })
        .collect();
    let mut predictions = Vec::new();
    for c in 0..16u32 {
        for (r, &resource) in Resource::ALL.iter().enumerate() {
            let base = (c as f32 + 1.0) * 0.25 + r as f32;
            predictions.push(Prediction {
                component: c,
                resource,
                source: Source::Model,
                quantile: 0.95,
                volatility: base / 8.0,
                last: base,
                next_report_ms: 1000,
                steps: vec![step(1, base, base * 1.5), step(6, base, base * 2.0)],
            });
        }
    }
    Message::Predictions(PredictionBatch {
        at_ms: AT_MS,
        step_ms: 1000,
        components,
        predictions,
    })
}

fn step(ahead: u16, point: f32, upper: f32) -> Step {
    Step {
        ahead,
        point,
        upper,
    }
}

/// Every uncompressed sample, named as its golden vector file.
pub(super) fn all() -> Vec<(&'static str, Message)> {
    vec![
        ("hello", hello()),
        ("welcome", welcome()),
        ("predictions", predictions()),
        ("usage", usage()),
        ("reservations", reservations()),
        ("error", error()),
        ("challenge", challenge()),
        ("proof", proof()),
    ]
}
