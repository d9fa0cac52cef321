//! The phases of the memory benchmark's service (`shadow-workload
//! memserve`), in the one form both the workload and `bench memory` read:
//! `SECONDS:MIB,SECONDS:MIB,...`.

use anyhow::{Context as _, ensure};

/// One phase: how long, and the working set.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Phase {
    pub seconds: f64,
    pub mib: f64,
}

/// The phases of `text`, each positive, at least one.
pub fn parse(text: &str) -> anyhow::Result<Vec<Phase>> {
    let phases = text
        .split(',')
        .map(|p| {
            let (s, m) = p
                .split_once(':')
                .with_context(|| format!("phase {p:?} is not SECONDS:MIB"))?;
            let seconds: f64 = s.parse().with_context(|| format!("phase {p:?}: seconds"))?;
            let mib: f64 = m.parse().with_context(|| format!("phase {p:?}: MiB"))?;
            ensure!(
                seconds > 0.0 && mib > 0.0,
                "phase {p:?}: both must be positive"
            );
            Ok(Phase { seconds, mib })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    ensure!(!phases.is_empty(), "no phases");
    Ok(phases)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_are_read_in_order_and_checked() {
        let p = parse("20:128,7.5:640").unwrap();
        assert_eq!(
            p,
            [
                Phase {
                    seconds: 20.0,
                    mib: 128.0
                },
                Phase {
                    seconds: 7.5,
                    mib: 640.0
                }
            ]
        );
        assert!(parse("10").is_err());
        assert!(parse("10:0").is_err());
        assert!(parse("").is_err());
    }
}
