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
                if h.tick_ms == 0 {
                    return invalid("tick_ms is 0");
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
        }
    }
}

fn predictions(b: &PredictionBatch) -> Result<(), Error> {
    components(&b.components)?;
    count("predictions", b.predictions.len())?;
    if b.step_ms == 0 {
        return invalid("step_ms is 0");
    }
    let n = b.components.len();
    b.predictions.iter().try_for_each(|p| prediction(p, n))
}

fn prediction(p: &Prediction, components: usize) -> Result<(), Error> {
    index(p.component, components)?;
    if !(p.quantile > 0.0 && p.quantile < 1.0) {
        return invalid(format!("quantile {} is outside (0, 1)", p.quantile));
    }
    amount("volatility", p.volatility)?;
    amount("last", p.last)?;
    if p.steps.is_empty() || p.steps.len() > MAX_STEPS {
        return invalid(format!("{} steps, expected 1..={MAX_STEPS}", p.steps.len()));
    }
    let mut previous = 0;
    for s in &p.steps {
        if s.ahead <= previous {
            return invalid("steps' `ahead` must increase from 1");
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
        return invalid("interval_ms is 0");
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

fn count(what: &str, n: usize) -> Result<(), Error> {
    if n > MAX_ITEMS {
        return invalid(format!("{n} {what}, at most {MAX_ITEMS} allowed"));
    }
    Ok(())
}

fn index(i: u32, len: usize) -> Result<(), Error> {
    if i as usize >= len {
        return invalid(format!("component index {i} outside the table of {len}"));
    }
    Ok(())
}

fn amount(what: &str, v: f32) -> Result<(), Error> {
    if !(v.is_finite() && v >= 0.0) {
        return invalid(format!("{what} {v} is not a finite non-negative number"));
    }
    Ok(())
}

fn text(what: &str, s: &str) -> Result<(), Error> {
    if s.len() > MAX_STRING {
        return invalid(format!("{what} is {} bytes, at most {MAX_STRING}", s.len()));
    }
    Ok(())
}

fn invalid<T>(why: impl Into<String>) -> Result<T, Error> {
    Err(Error::Invalid(why.into()))
}
