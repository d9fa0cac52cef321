//! Bounds on a decoded message's contents. postcard guarantees the shape;
//! these checks guarantee the values are usable: finite, non-negative,
//! indices in range, lists and strings bounded. The decoder already stops
//! at the list limits (`bounded.rs`, for memory); the counts here also
//! cover messages built locally.

use super::{
    Component, Error, MAX_ITEMS, MAX_STEPS, MAX_STRING, Message, Prediction, PredictionBatch,
    Reservation, Usage, UsageBatch,
};

impl Message {
    /// Checks every field a receiver relies on.
    pub fn validate(&self) -> Result<(), Error> {
        match self {
            Message::Hello(h) => {
                text("host", &h.host)?;
                text("agent", &h.agent)?;
                text("key", &h.key)?;
                if h.tick_ms == 0 {
                    return Err(Invalid::Zero { field: "tick_ms" }.into());
                }
                Ok(())
            }
            Message::Welcome(w) => text("orchestrator", &w.orchestrator),
            Message::Predictions(b) => predictions(b),
            Message::Usage(b) => usage(b),
            Message::Reservations(b) => {
                count("reservations", b.reservations.len())?;
                b.reservations.iter().try_for_each(reservation)
            }
            Message::Error(f) => text("message", &f.message),
            // Fixed-size byte arrays: nothing to bound.
            Message::Challenge(_) | Message::Proof(_) => Ok(()),
        }
    }
}

fn predictions(b: &PredictionBatch) -> Result<(), Error> {
    components(&b.components)?;
    count("predictions", b.predictions.len())?;
    if b.step_ms == 0 {
        return Err(Invalid::Zero { field: "step_ms" }.into());
    }
    let n = b.components.len();
    b.predictions.iter().try_for_each(|p| prediction(p, n))
}

fn prediction(p: &Prediction, components: usize) -> Result<(), Error> {
    index(p.component, components)?;
    if !(p.quantile > 0.0 && p.quantile < 1.0) {
        return Err(Invalid::Quantile(p.quantile).into());
    }
    amount("volatility", p.volatility)?;
    amount("last", p.last)?;
    if p.steps.is_empty() || p.steps.len() > MAX_STEPS {
        return Err(Invalid::Steps {
            count: p.steps.len(),
        }
        .into());
    }
    let mut previous = 0;
    for s in &p.steps {
        if s.ahead <= previous {
            return Err(Invalid::Ahead.into());
        }
        previous = s.ahead;
        amount("point", s.point)?;
        amount("upper", s.upper)?;
    }
    Ok(())
}

fn usage(b: &UsageBatch) -> Result<(), Error> {
    components(&b.components)?;
    count("usage", b.usage.len())?;
    if b.interval_ms == 0 {
        return Err(Invalid::Zero {
            field: "interval_ms",
        }
        .into());
    }
    let n = b.components.len();
    b.usage.iter().try_for_each(|u: &Usage| {
        index(u.component, n)?;
        amount("value", u.value)
    })
}

fn reservation(r: &Reservation) -> Result<(), Error> {
    text("path", &r.path)?;
    amount("reserved", r.reserved)?;
    amount("margin", r.margin)?;
    amount("exceeded", r.exceeded)?;
    amount("slack", r.slack)
}

fn components(list: &[Component]) -> Result<(), Error> {
    count("components", list.len())?;
    list.iter().try_for_each(|c| text("path", &c.path))
}

fn count(list: &'static str, n: usize) -> Result<(), Error> {
    if n > MAX_ITEMS {
        return Err(Invalid::TooMany { list, count: n }.into());
    }
    Ok(())
}

fn index(i: u32, len: usize) -> Result<(), Error> {
    if i as usize >= len {
        return Err(Invalid::Index { index: i, len }.into());
    }
    Ok(())
}

fn amount(field: &'static str, v: f32) -> Result<(), Error> {
    if !(v.is_finite() && v >= 0.0) {
        return Err(Invalid::Amount { field, value: v }.into());
    }
    Ok(())
}

fn text(field: &'static str, s: &str) -> Result<(), Error> {
    if s.len() > MAX_STRING {
        return Err(Invalid::TooLong {
            field,
            len: s.len(),
        }
        .into());
    }
    Ok(())
}

/// What is wrong with a decoded message's contents.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
pub enum Invalid {
    /// A length of time that must be positive is 0.
    #[error("{field} is 0")]
    Zero {
        /// The field.
        field: &'static str,
    },
    /// A band's quantile outside (0, 1).
    #[error("quantile {0} is outside (0, 1)")]
    Quantile(f32),
    /// A prediction without steps or with more than [`MAX_STEPS`].
    #[error("{count} steps, expected 1..={MAX_STEPS}")]
    Steps {
        /// Steps given.
        count: usize,
    },
    /// Steps whose `ahead` does not increase from 1.
    #[error("steps' `ahead` must increase from 1")]
    Ahead,
    /// A list longer than [`MAX_ITEMS`].
    #[error("{count} {list}, at most {MAX_ITEMS} allowed")]
    TooMany {
        /// Which list.
        list: &'static str,
        /// Its length.
        count: usize,
    },
    /// An index past the batch's component table.
    #[error("component index {index} outside the table of {len}")]
    Index {
        /// The index.
        index: u32,
        /// The table's length.
        len: usize,
    },
    /// An amount that is negative, NaN or infinite.
    #[error("{field} {value} is not a finite non-negative number")]
    Amount {
        /// The field.
        field: &'static str,
        /// Its value.
        value: f32,
    },
    /// A string longer than [`MAX_STRING`] bytes.
    #[error("{field} is {len} bytes, at most {MAX_STRING}")]
    TooLong {
        /// The field.
        field: &'static str,
        /// Its length in bytes.
        len: usize,
    },
}
