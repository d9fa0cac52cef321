//! The messages of the virtual interface, as Rust types.
//!
//! The byte layout is postcard's encoding of these types (docs/protocol.md
//! spells it out field by field), so the order of variants and fields here
//! *is* the protocol: reordering them is a protocol version change.
//!
//! Batches name each component once in a table and refer to it by index, so
//! a path is not repeated for every resource and horizon.

use serde::{Deserialize, Serialize};

/// Everything that can travel in one frame.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Message {
    /// Agent → orchestrator, first frame of every connection.
    Hello(Hello),
    /// Orchestrator → agent, the answer to an acceptable `Hello`.
    Welcome(Welcome),
    /// Agent → orchestrator: forecasts.
    Predictions(PredictionBatch),
    /// Agent → orchestrator: what was actually used (to judge forecasts).
    Usage(UsageBatch),
    /// Orchestrator → agent: what is reserved for its components and why.
    Reservations(ReservationBatch),
    /// Either way: the sender refuses something and says why; the
    /// connection is closed after it.
    Error(Failure),
    /// Orchestrator → remote agent, after its `Hello`: prove you hold the
    /// key `Hello.key` names ([`super::auth`]).
    Challenge(Challenge),
    /// Remote agent → orchestrator: the answer to a `Challenge`.
    Proof(Proof),
}

/// A fresh random nonce the agent must sign.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Challenge {
    /// 32 random bytes.
    pub nonce: [u8; super::auth::LEN],
}

/// HMAC-SHA256 over the challenge and the agent's Hello.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proof {
    /// The MAC ([`super::auth::proof`]).
    pub mac: [u8; super::auth::LEN],
}

/// Opens a connection. Its first field, `version`, keeps its place in every
/// protocol version, so a peer can always read it and refuse clearly.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    /// Protocol version the agent speaks ([`super::VERSION`]).
    pub version: u16,
    /// Host name of the agent's machine (a guest VM's own name when remote).
    pub host: String,
    /// Identifies the agent on that host (several agents may share one).
    pub agent: String,
    /// The agent's tick, in milliseconds: forecast steps are multiples of it.
    pub tick_ms: u32,
    /// Name of the key the agent proves its identity with when the
    /// orchestrator asks (remote agents); empty if it has none. When it is
    /// proven, this name, not `host`, is the agent's identity.
    pub key: String,
}

/// Accepts a connection.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Welcome {
    /// Protocol version the orchestrator speaks.
    pub version: u16,
    /// Name of the orchestrator (its host).
    pub orchestrator: String,
    /// Largest frame body the orchestrator accepts, in bytes.
    pub max_frame: u32,
}

/// The kinds of resources, each in one unit throughout the protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Resource {
    /// CPU, in cores (CPU-seconds per second).
    Cpu,
    /// Memory, in bytes.
    Memory,
    /// Block I/O, in bytes per second (read + write).
    Io,
    /// Network, in bytes per second (received + sent).
    Net,
}

impl Resource {
    /// Every resource, in protocol order.
    pub const ALL: [Resource; 4] = [Resource::Cpu, Resource::Memory, Resource::Io, Resource::Net];

    /// Lower-case name used in logs, JSON and configuration.
    pub fn name(self) -> &'static str {
        match self {
            Resource::Cpu => "cpu",
            Resource::Memory => "memory",
            Resource::Io => "io",
            Resource::Net => "net",
        }
    }
}

/// A component named once per batch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Component {
    /// cgroup path relative to the v2 root, as in `/proc/<pid>/cgroup`
    /// (`/` is the root). For a remote agent, the path inside its guest.
    pub path: String,
    /// The cgroup's v2 id on the agent's host (0 if unknown). Lets the
    /// receiver tell a recreated cgroup from the old one at the same path.
    pub id: u64,
}

/// Where an upper band came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Source {
    /// The component's forecaster.
    Model,
    /// An application's hint, which raised the band above the model's.
    Hint,
}

/// The forecast of one component and resource at one horizon.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// How far ahead, in agent ticks (1 = the next tick).
    pub ahead: u16,
    /// Expected usage.
    pub point: f32,
    /// Upper band at the prediction's quantile.
    pub upper: f32,
}

/// One component's forecast for one resource.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// Index into the batch's component table.
    pub component: u32,
    /// Which resource; values are in its unit.
    pub resource: Resource,
    /// Where the band came from.
    pub source: Source,
    /// Quantile the upper bands aim at (realised usage above the band a
    /// share `1 - quantile` of the time).
    pub quantile: f32,
    /// Recent typical one-step error, in the resource's unit.
    pub volatility: f32,
    /// The latest usage the forecast was made from.
    pub last: f32,
    /// Milliseconds until this component's next report at the latest (its
    /// heartbeat); until then the receiver should hold this forecast.
    pub next_report_ms: u32,
    /// Forecasts by horizon, in increasing `ahead`.
    #[serde(deserialize_with = "super::bounded::steps")]
    pub steps: Vec<Step>,
}

/// Forecasts made at one tick.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PredictionBatch {
    /// When the forecasts were made, in milliseconds since the Unix epoch
    /// (agent's clock).
    pub at_ms: u64,
    /// Length of one step (the agent's tick), in milliseconds.
    pub step_ms: u32,
    /// Components referred to by index below.
    #[serde(deserialize_with = "super::bounded::items")]
    pub components: Vec<Component>,
    /// The forecasts.
    #[serde(deserialize_with = "super::bounded::items")]
    pub predictions: Vec<Prediction>,
}

/// One component's realised usage of one resource over an interval.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// Index into the batch's component table.
    pub component: u32,
    /// Which resource; the value is in its unit.
    pub resource: Resource,
    /// Mean usage over the interval (for CPU, demand: ran + waited to run,
    /// which a quota does not cap; for memory, a level, the bytes in use at
    /// the interval's end).
    pub value: f32,
}

/// Realised usage over the interval that ended at `at_ms`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UsageBatch {
    /// End of the interval, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// Length of the interval, in milliseconds.
    pub interval_ms: u32,
    /// Components referred to by index below.
    #[serde(deserialize_with = "super::bounded::items")]
    pub components: Vec<Component>,
    /// The usage figures.
    #[serde(deserialize_with = "super::bounded::items")]
    pub usage: Vec<Usage>,
}

/// What the orchestrator holds for one component and resource.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reservation {
    /// cgroup path relative to the v2 root.
    pub path: String,
    /// Which resource; amounts are in its unit.
    pub resource: Resource,
    /// Amount reserved now (written to the cgroup's knobs if `managed`,
    /// else only recommended).
    pub reserved: f32,
    /// True if the orchestrator writes this cgroup's knobs; false if the
    /// configuration did not opt it in and this is a recommendation.
    pub managed: bool,
    /// Relative margin added to the forecast's band, adapted from the
    /// figures below.
    pub margin: f32,
    /// Share of recent intervals whose usage exceeded the reservation.
    pub exceeded: f32,
    /// Recent mean of (reserved - used) / used, where reserved > used.
    pub slack: f32,
}

/// Reservations, sent to an agent for its components.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReservationBatch {
    /// When they were decided, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// The reservations.
    #[serde(deserialize_with = "super::bounded::items")]
    pub reservations: Vec<Reservation>,
}

/// Why a peer refuses; the numbers are stable across versions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Code {
    /// The peers speak different protocol versions.
    Incompatible,
    /// A frame could not be decoded or failed validation.
    Malformed,
    /// A frame was larger than the receiver's limit.
    TooLarge,
    /// A valid message that is not allowed at this point (e.g. no Hello).
    Unexpected,
    /// The receiver failed on its own side.
    Internal,
    /// The peer did not prove who it is: unknown key name, wrong proof, or
    /// no key where one is required.
    Unauthenticated,
    /// The receiver is at its limit of connections: try again later.
    Busy,
}

/// A refusal, with a message for people.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    /// Machine-readable reason.
    pub code: Code,
    /// Human-readable explanation.
    pub message: String,
}

impl Prediction {
    /// The wire form of one series' forecast `f` (of a resource, from a
    /// source, with its band's quantile and the agent's next report due
    /// within `next_report_ms`), made from the usage `last`: what the
    /// orchestrator holds until the series reports again. The agent's
    /// transmitter and the fleet replay both build it here, so the replay's
    /// orchestrator holds exactly what a host's would.
    pub fn of_forecast(
        component: u32,
        (resource, source): (Resource, Source),
        (quantile, next_report_ms): (f32, u32),
        last: f64,
        f: &shadow_forecast::Forecast,
    ) -> Self {
        Self {
            component,
            resource,
            source,
            quantile,
            volatility: f.volatility as f32,
            last: last as f32,
            next_report_ms,
            steps: (0..f.horizon)
                .map(|h| Step {
                    ahead: h as u16 + 1,
                    point: f.point[h] as f32,
                    upper: f.upper[h] as f32,
                })
                .collect(),
        }
    }
}
