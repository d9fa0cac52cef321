//! Arbitrary bytes into the hint socket's request parser, as one line
//! (what the server hands it after bounding the line). Any panic is a bug;
//! refusals are fine. Whatever is accepted must be within the limits, and
//! a hint must survive the ledger (clamping, the prior, judging).

#![no_main]

use libfuzzer_sys::fuzz_target;
use shadow_wire::Resource;
use shadow_agent::{hint::{Amounts, ClientLimits, Command, Ledger, parse_line}};

fuzz_target!(|data: &[u8]| {
    let limits = ClientLimits::new(Amounts {
        cpu: 2.0,
        memory: 8e9,
        io: 1e11,
        net: 1e11,
    });
    match parse_line(data, &limits) {
        Ok(Command::Hint(spec)) => {
            assert!(spec.duration <= limits.max_duration && !spec.duration.is_zero());
            assert!(spec.start_in <= limits.max_start_in);
            assert!((0.0..=1.0).contains(&spec.confidence));
            for (_, v) in spec.amounts.named() {
                assert!(v.is_finite() && v >= 0.0);
            }
            let mut ledger = Ledger::new(limits);
            let a = ledger.submit("/x", &spec, 1000.0).expect("an empty ledger takes it");
            assert!(a.amounts.cpu <= limits.capacity.cpu);
            let p = ledger.prior("/x", Resource::Cpu, a.start, a.end);
            assert!(p.is_none_or(|p| p.floor.is_finite() && p.floor <= limits.capacity.cpu));
            ledger.record("/x", a.end, a.end - a.start, spec.amounts);
            for o in ledger.settle(a.end + 1.0, 0.0) {
                assert!((0.0..=1.0).contains(&o.trust));
            }
        }
        Ok(Command::Cancel(_)) => {}
        Err(refusal) => assert!(!refusal.message.is_empty()),
    }
});
