//! Validation: a message that decodes but carries values a receiver cannot
//! use is refused as `Invalid`, both by `validate` and on the way in.

use super::samples;
use crate::{
    Compression, Error, MAX_ITEMS, MAX_STEPS, MAX_STRING, Message, Step, decode_body, encode,
};

/// Applies `change` to a sample and expects the receiver to refuse it.
fn refused(mut msg: Message, change: impl FnOnce(&mut Message)) {
    change(&mut msg);
    assert!(matches!(msg.validate(), Err(Error::Invalid(_))), "{msg:?}");
    let f = encode(&msg, Compression::Off).expect("encode");
    match decode_body(&f[4..]) {
        Err(Error::Invalid(why)) => assert!(!why.to_string().is_empty()),
        other => panic!("{other:?}"),
    }
}

fn batch(msg: &mut Message) -> &mut crate::PredictionBatch {
    match msg {
        Message::Predictions(b) => b,
        _ => unreachable!(),
    }
}

fn usage(msg: &mut Message) -> &mut crate::UsageBatch {
    match msg {
        Message::Usage(b) => b,
        _ => unreachable!(),
    }
}

fn reservation(msg: &mut Message) -> &mut crate::Reservation {
    match msg {
        Message::Reservations(b) => &mut b.reservations[0],
        _ => unreachable!(),
    }
}

#[test]
fn samples_are_valid() {
    for (name, msg) in samples::all() {
        msg.validate().expect(name);
    }
    samples::batch().validate().expect("batch");
}

#[test]
fn non_finite_and_negative_amounts() {
    let p = samples::predictions;
    refused(p(), |m| batch(m).predictions[0].steps[0].point = f32::NAN);
    refused(p(), |m| {
        batch(m).predictions[0].steps[1].upper = f32::INFINITY
    });
    refused(p(), |m| batch(m).predictions[0].volatility = -0.5);
    refused(p(), |m| batch(m).predictions[1].last = f32::NEG_INFINITY);
    refused(samples::usage(), |m| usage(m).usage[1].value = -1.0);
    refused(samples::usage(), |m| usage(m).usage[0].value = f32::NAN);
    let r = samples::reservations;
    refused(r(), |m| reservation(m).reserved = f32::NAN);
    refused(r(), |m| reservation(m).margin = -0.1);
    refused(r(), |m| reservation(m).exceeded = f32::INFINITY);
    refused(r(), |m| reservation(m).slack = -2.0);
}

#[test]
fn quantile_outside_the_open_unit_interval() {
    for q in [0.0, 1.0, -0.5, 1.5, f32::NAN] {
        refused(samples::predictions(), |m| {
            batch(m).predictions[0].quantile = q
        });
    }
}

#[test]
fn component_index_out_of_range() {
    refused(samples::predictions(), |m| {
        batch(m).predictions[1].component = 2
    });
    refused(samples::predictions(), |m| {
        batch(m).predictions[0].component = u32::MAX
    });
    refused(samples::usage(), |m| usage(m).usage[0].component = 1);
    refused(samples::predictions(), |m| batch(m).components.clear());
}

#[test]
fn steps_must_be_present_increasing_from_one_and_bounded() {
    let step = |ahead| Step {
        ahead,
        point: 1.0,
        upper: 2.0,
    };
    let steps = |m: &mut Message, s: Vec<Step>| batch(m).predictions[0].steps = s;
    refused(samples::predictions(), |m| steps(m, vec![]));
    refused(samples::predictions(), |m| steps(m, vec![step(0)]));
    refused(samples::predictions(), |m| steps(m, vec![step(2), step(2)]));
    refused(samples::predictions(), |m| steps(m, vec![step(6), step(1)]));
    let most: Vec<Step> = (1..=MAX_STEPS as u16).map(step).collect();
    let mut ok = samples::predictions();
    steps(&mut ok, most.clone());
    ok.validate().expect("MAX_STEPS steps");
    // One more: `validate` refuses it, and the decoder stops at the limit.
    let mut more = most;
    more.push(step(MAX_STEPS as u16 + 1));
    let mut long = samples::predictions();
    steps(&mut long, more);
    assert!(matches!(long.validate(), Err(Error::Invalid(_))));
    too_long_to_decode(&long);
}

/// Lists over their limit are refused while decoding (see `bounded.rs`).
fn too_long_to_decode(msg: &Message) {
    let f = encode(msg, Compression::Off).expect("encode");
    match decode_body(&f[4..]) {
        // postcard keeps no text for custom errors: only the kind.
        Err(Error::Decode(postcard::Error::SerdeDeCustom)) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn lists_longer_than_max_items() {
    let mut full = samples::usage();
    let list = &mut usage(&mut full).usage;
    let one = list[0];
    list.resize(MAX_ITEMS, one);
    full.validate().expect("MAX_ITEMS entries");
    let f = encode(&full, Compression::Auto).expect("encode");
    assert_eq!(decode_body(&f[4..]).expect("decode"), full);
    usage(&mut full).usage.push(one);
    assert!(matches!(full.validate(), Err(Error::Invalid(_))));
    too_long_to_decode(&full);
    let mut tables = samples::predictions();
    let c = batch(&mut tables).components[0].clone();
    batch(&mut tables).components.resize(MAX_ITEMS + 1, c);
    too_long_to_decode(&tables);
}

#[test]
fn zero_intervals() {
    refused(samples::hello(), |m| match m {
        Message::Hello(h) => h.tick_ms = 0,
        _ => unreachable!(),
    });
    refused(samples::predictions(), |m| batch(m).step_ms = 0);
    refused(samples::usage(), |m| usage(m).interval_ms = 0);
}

#[test]
fn strings_longer_than_max_string() {
    let long = "a".repeat(MAX_STRING + 1);
    let exact = "a".repeat(MAX_STRING);
    let mut ok = samples::reservations();
    reservation(&mut ok).path = exact;
    ok.validate().expect("MAX_STRING bytes");
    refused(samples::hello(), |m| match m {
        Message::Hello(h) => h.host = long.clone(),
        _ => unreachable!(),
    });
    refused(samples::hello(), |m| match m {
        Message::Hello(h) => h.agent = long.clone(),
        _ => unreachable!(),
    });
    refused(samples::welcome(), |m| match m {
        Message::Welcome(w) => w.orchestrator = long.clone(),
        _ => unreachable!(),
    });
    refused(samples::predictions(), |m| {
        batch(m).components[1].path = long.clone()
    });
    refused(samples::usage(), |m| {
        usage(m).components[0].path = long.clone()
    });
    refused(samples::reservations(), |m| {
        reservation(m).path = long.clone()
    });
    refused(samples::error(), |m| match m {
        Message::Error(f) => f.message = long.clone(),
        _ => unreachable!(),
    });
}
