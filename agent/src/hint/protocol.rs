//! The hint socket's messages: one JSON object per line each way
//! (docs/hints.md). Parsing is pure: bytes in, a [`Command`] or a
//! [`Refusal`] out, never a panic, so it is unit-tested and fuzzed.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ClientLimits;

/// One request line as sent. Every field is optional here so that a
/// missing one gets a clear refusal from [`parse_line`] rather than serde's
/// wording; unknown fields are refused (a typo such as `"cpus"` must not
/// silently hint nothing).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// CPU in cores (1.5 = one and a half CPUs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<f64>,
    /// Memory in bytes, or a string with a binary unit ("2GiB").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Amount>,
    /// Block I/O bandwidth in bytes/s, or with a unit ("100MiB").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub io: Option<Amount>,
    /// Network bandwidth in bytes/s, or with a unit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net: Option<Amount>,
    /// Delay before the demand starts ("30s"; default "0s").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_in: Option<String>,
    /// How long the demand lasts ("5m"); required for a hint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    /// How sure the caller is, 0..=1 (default 1); scales the band.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f64>,
    /// Free text for the logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The cgroup the hint is for (default: the caller's own); only one at
    /// or below the caller's own, unless the caller is root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
    /// Cancel the hint with this id instead (no other field allowed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel: Option<u64>,
}

/// An amount as written: a number, or a string with a unit.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Amount {
    /// A plain number (bytes or bytes/s).
    Number(f64),
    /// A string such as "2GiB".
    Text(String),
}

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Amount;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a number of bytes or a string such as \"2GiB\"")
            }
            fn visit_f64<E>(self, v: f64) -> Result<Amount, E> {
                Ok(Amount::Number(v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Amount, E> {
                Ok(Amount::Number(v as f64))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Amount, E> {
                Ok(Amount::Number(v as f64))
            }
            fn visit_str<E>(self, v: &str) -> Result<Amount, E> {
                Ok(Amount::Text(v.to_owned()))
            }
        }
        d.deserialize_any(Visitor)
    }
}

impl Amount {
    fn bytes(&self) -> Result<f64, String> {
        match self {
            Amount::Number(n) => Ok(*n),
            Amount::Text(t) => shadow_common::units::parse_bytes(t),
        }
    }
}

/// Amounts per resource, in the wire protocol's units (cores, bytes,
/// bytes/s, bytes/s); 0 = not hinted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Amounts {
    /// Cores.
    pub cpu: f64,
    /// Bytes.
    pub memory: f64,
    /// Block I/O, bytes/s.
    pub io: f64,
    /// Network, bytes/s.
    pub net: f64,
}

impl Amounts {
    /// Each amount times `k`.
    pub fn scaled(self, k: f64) -> Self {
        Self {
            cpu: self.cpu * k,
            memory: self.memory * k,
            io: self.io * k,
            net: self.net * k,
        }
    }

    /// (name, value) pairs in protocol order.
    pub fn named(&self) -> [(&'static str, f64); 4] {
        [
            ("cpu", self.cpu),
            ("memory", self.memory),
            ("io", self.io),
            ("net", self.net),
        ]
    }
}

/// A hint that passed validation (amounts not yet clamped to capacity).
#[derive(Clone, Debug, PartialEq)]
pub struct Spec {
    /// What the caller expects to use.
    pub amounts: Amounts,
    /// When the demand starts, from now.
    pub start_in: Duration,
    /// How long it lasts.
    pub duration: Duration,
    /// The caller's confidence, 0..=1.
    pub confidence: f64,
    /// Free text for the logs.
    pub reason: Option<String>,
    /// The cgroup named, if any (normalised later, with the caller known).
    pub cgroup: Option<String>,
}

/// What a valid line asks for.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// Announce demand.
    Hint(Spec),
    /// Withdraw a hint by id.
    Cancel(u64),
}

/// Machine-readable reasons for a refusal (stable names, snake_case on the
/// wire; docs/hints.md lists them all).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Code {
    /// The line exceeded the maximum length (connection closed).
    TooLong,
    /// The line is not JSON (connection closed).
    Malformed,
    /// A field the protocol does not know.
    UnknownField,
    /// JSON of the wrong shape: wrong type, missing or conflicting fields.
    Invalid,
    /// An amount, duration or confidence outside its allowed range.
    OutOfRange,
    /// The caller may not hint for (or cancel) that cgroup.
    Forbidden,
    /// The named cgroup does not exist.
    NoCgroup,
    /// The cgroup is outside what this agent observes.
    NotObserved,
    /// Too many live hints for that cgroup (or on the host).
    TooMany,
    /// The caller's cgroup sends requests faster than the rate limit.
    RateLimited,
    /// No live hint with that id.
    NotFound,
    /// The caller's identity (its cgroup) could not be established.
    Identity,
    /// Too many connections open (connection closed).
    Busy,
    /// Nothing arrived for too long (connection closed).
    Idle,
}

impl Code {
    /// True for refusals after which the server closes the connection:
    /// the stream can no longer be trusted to be in step (garbage, a line
    /// cut off) or the client is not using it.
    pub fn closes(self) -> bool {
        matches!(
            self,
            Code::TooLong | Code::Malformed | Code::Busy | Code::Idle
        )
    }
}

/// A refusal with a message for people.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Refusal {
    /// Machine-readable reason.
    pub code: Code,
    /// Human-readable explanation.
    pub message: String,
}

impl Refusal {
    /// A refusal with `code` and `message`.
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// One reply line.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Reply {
    /// The hint is live.
    Accepted(Accepted),
    /// The hint with `id` was withdrawn.
    Cancelled {
        /// Its id.
        id: u64,
    },
    /// Refused; nothing changed.
    Refused(Refusal),
}

/// What an accepted hint will do.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Accepted {
    /// Id for cancelling it.
    pub id: u64,
    /// The cgroup it applies to (path relative to the v2 root).
    pub cgroup: String,
    /// Window start, Unix seconds.
    pub start: f64,
    /// Window end, Unix seconds.
    pub end: f64,
    /// The amounts after clamping to the host's capacity.
    pub amounts: Amounts,
    /// Names of the amounts that were clamped.
    pub clamped: Vec<String>,
    /// The cgroup's earned trust now, 0..=1.
    pub trust: f64,
    /// The confidence the caller gave.
    pub confidence: f64,
    /// The floor the forecast's upper band gets in the window:
    /// amounts × confidence × trust (at today's trust); memory is a level,
    /// carried by the memory forecast's band.
    pub reserve: Amounts,
}

/// Parses and validates one request line (without its newline).
pub fn parse_line(line: &[u8], limits: &ClientLimits) -> Result<Command, Refusal> {
    if line.len() > limits.max_line {
        return Err(Refusal::new(
            Code::TooLong,
            format!("a line may be at most {} bytes", limits.max_line),
        ));
    }
    let request: Request = serde_json::from_slice(line).map_err(|e| {
        use serde_json::error::Category;
        let text = e.to_string();
        match e.classify() {
            Category::Data if text.starts_with("unknown field") => {
                Refusal::new(Code::UnknownField, text)
            }
            Category::Data => Refusal::new(Code::Invalid, text),
            _ => Refusal::new(Code::Malformed, format!("not a JSON object: {text}")),
        }
    })?;
    validate(request, limits)
}

/// Checks a decoded request's fields and ranges.
pub fn validate(r: Request, limits: &ClientLimits) -> Result<Command, Refusal> {
    if let Some(id) = r.cancel {
        let alone = Request {
            cancel: Some(id),
            ..Request::default()
        };
        if r != alone {
            return Err(Refusal::new(
                Code::Invalid,
                "\"cancel\" takes no other field",
            ));
        }
        return Ok(Command::Cancel(id));
    }
    let out_of_range = |m: String| Refusal::new(Code::OutOfRange, m);
    let bytes = |name: &str, a: &Option<Amount>| -> Result<f64, Refusal> {
        match a {
            None => Ok(0.0),
            Some(a) => a
                .bytes()
                .map_err(|e| Refusal::new(Code::Invalid, format!("{name}: {e}"))),
        }
    };
    let amounts = Amounts {
        cpu: r.cpu.unwrap_or(0.0),
        memory: bytes("memory", &r.memory)?,
        io: bytes("io", &r.io)?,
        net: bytes("net", &r.net)?,
    };
    let absurd = limits.capacity.scaled(limits.absurd_factor);
    for ((name, v), (_, max)) in amounts.named().into_iter().zip(absurd.named()) {
        if !(v.is_finite() && v >= 0.0) {
            return Err(out_of_range(format!(
                "{name} must be a non-negative number, got {v}"
            )));
        }
        if v > max {
            return Err(out_of_range(format!(
                "{name} = {v} is absurd for this host (more than {} times its capacity {})",
                limits.absurd_factor,
                max / limits.absurd_factor
            )));
        }
    }
    if amounts.named().iter().all(|&(_, v)| v == 0.0) {
        return Err(Refusal::new(
            Code::Invalid,
            "nothing to reserve: give at least one of cpu, memory, io, net",
        ));
    }
    let duration = match &r.duration {
        None => return Err(Refusal::new(Code::Invalid, "\"duration\" is required")),
        Some(t) => span("duration", t)?,
    };
    if duration.is_zero() || duration > limits.max_duration {
        return Err(out_of_range(format!(
            "duration must be above 0 and at most {:?}",
            limits.max_duration
        )));
    }
    let start_in = match &r.start_in {
        None => Duration::ZERO,
        Some(t) => span("start_in", t)?,
    };
    if start_in > limits.max_start_in {
        return Err(out_of_range(format!(
            "start_in must be at most {:?}",
            limits.max_start_in
        )));
    }
    let confidence = r.confidence.unwrap_or(1.0);
    if !(0.0..=1.0).contains(&confidence) {
        return Err(out_of_range(format!(
            "confidence must be between 0 and 1, got {confidence}"
        )));
    }
    if r.reason.as_ref().is_some_and(|t| t.len() > MAX_REASON) {
        return Err(out_of_range(format!(
            "reason may be at most {MAX_REASON} bytes"
        )));
    }
    Ok(Command::Hint(Spec {
        amounts,
        start_in,
        duration,
        confidence,
        reason: r.reason,
        cgroup: r.cgroup,
    }))
}

/// Longest `reason` kept (it only goes to the logs).
pub const MAX_REASON: usize = 256;

fn span(name: &str, text: &str) -> Result<Duration, Refusal> {
    shadow_common::duration::parse(text).map_err(|e| {
        // duration::parse says "out of range" for negative and huge values.
        let code = if e.contains("out of range") {
            Code::OutOfRange
        } else {
            Code::Invalid
        };
        Refusal::new(code, format!("{name}: {e}"))
    })
}
