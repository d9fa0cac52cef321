//! The orchestrator's configuration file (TOML).
//!
//! Only what an operator must decide is configurable: where to listen,
//! which cgroups may be written and within which bounds, and the
//! bandwidths the host cannot tell by itself. Unknown keys are refused, so
//! a typo never silently leaves a guardrail out.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use serde::Deserialize;
use shadow_common::config::{AgentConfig, DurationAtLeast, InRange};
pub use shadow_common::config::{ConfigError, DEFAULT_PATH, choose};
use shadow_common::units::parse_bytes;
use shadow_wire::Resource;

/// Default Unix socket agents connect to.
pub const DEFAULT_SOCKET: &str = "/run/shadow/orchestrator.sock";

/// The whole file: the orchestrator's keys at the top level, the agent's
/// under `[agent]` (checked here too, so one check vets the whole file).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Unix socket for local agents.
    pub socket: Option<PathBuf>,
    /// TCP address for remote agents (off unless set), e.g. "0.0.0.0:7370".
    pub tcp: Option<String>,
    /// Accept TCP agents without authentication: only where every host
    /// that can reach the port is trusted. Without it, a `tcp` listener
    /// with no `[[peer]]` refuses to start.
    pub insecure_tcp: Option<bool>,
    /// The remote agents that may connect over TCP, each with its key.
    #[serde(default)]
    pub peer: Vec<PeerKey>,
    /// Directory of the journal.
    pub state_dir: Option<PathBuf>,
    /// Address of the Prometheus endpoint (off unless set), e.g.
    /// "127.0.0.1:9464".
    pub metrics: Option<String>,
    /// Length of one decision cycle, e.g. "1s" (>= 100ms).
    pub tick: Option<DurationAtLeast<100>>,
    /// Ticks ahead the reservation looks: it covers the highest upper band
    /// over horizons 1..=lead, so it is raised before the demand arrives.
    pub lead: Option<Lead>,
    /// Ticks a lower want must last before a reservation comes down (it
    /// goes up at once, and a rate comes down at once to a band the last
    /// cycle's forecast predicted: `book::FORESEEN`).
    pub hold: Option<HoldTicks>,
    /// Least time between a write to a knob and a lowering of it, e.g. "1s".
    pub min_interval: Option<DurationAtLeast<0>>,
    /// Least time between raising a knob and lowering it again, e.g. "2s":
    /// raises are never delayed, lowerings wait so a knob does not flap.
    pub cooldown: Option<DurationAtLeast<0>>,
    /// Host capacity overrides and the bandwidths the host cannot report.
    #[serde(default)]
    pub capacity: CapacityConfig,
    /// The cgroups the orchestrator may write; all others get
    /// recommendations only.
    #[serde(default)]
    pub manage: Vec<Rule>,
    /// The agent's table (`shadow_common::config`).
    #[serde(default)]
    pub agent: AgentConfig,
}

/// A remote agent allowed over TCP: it proves it holds the key in
/// `key_file`, and its reservations are kept under `name`, whatever host
/// name its Hello claims.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerKey {
    /// The agent's identity (its `[agent] key_name`).
    pub name: PeerName,
    /// File holding the key as hex, mode 0600 or 0400, owned by root.
    pub key_file: PathBuf,
}

/// A peer's name: 1 to 253 letters, digits, '.', '_' or '-'.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct PeerName(pub String);

impl TryFrom<String> for PeerName {
    type Error = String;
    fn try_from(name: String) -> Result<Self, String> {
        let ok = (1..=253).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if ok {
            Ok(Self(name))
        } else {
            Err(format!(
                "{name:?}: a peer name is 1 to 253 letters, digits, '.', '_' or '-' (e.g. \"vm-12\")"
            ))
        }
    }
}

/// Ticks a lower want must last before a reservation is lowered.
pub type HoldTicks = InRange<0, 600>;

/// Default [`Config::hold`]: 3 ticks keeps a band that dips between two
/// close bursts from giving back what the second needs, and lowers within
/// seconds once demand has gone (memory holds 4 times as long:
/// [`crate::book::MEMORY_HOLD_FACTOR`]). On the public Bitbrains set
/// (docs/benchmarks.md) it is where the median CPU slack stays under 0.12
/// with under 0.5 % of VM-days seriously impacted (2 impacts 0.5 %, 4
/// leaves 0.12 slack).
pub const DEFAULT_HOLD: u16 = 3;

/// Horizons the reservation looks ahead, 1..=`MAX_HORIZON`.
pub type Lead = InRange<1, { shadow_forecast::MAX_HORIZON as u64 }>;

/// Capacity per resource; unset CPU and memory are read from the host,
/// unset I/O and network bandwidth mean "unknown" (no capacity check).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapacityConfig {
    /// CPU cores.
    pub cpu: Option<f64>,
    /// Memory, bytes or with a unit ("30GiB").
    pub memory: Option<Amount>,
    /// Block I/O bandwidth of the devices, bytes/s or with a unit.
    pub io: Option<Amount>,
    /// Network bandwidth of the links, bytes/s or with a unit.
    pub net: Option<Amount>,
}

/// An amount written as a number or as a string with a binary unit.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
#[serde(try_from = "AmountText")]
pub struct Amount(pub f64);

#[derive(Deserialize)]
#[serde(untagged)]
enum AmountText {
    Number(f64),
    Text(String),
}

impl TryFrom<AmountText> for Amount {
    type Error = String;
    fn try_from(v: AmountText) -> Result<Self, String> {
        let n = match v {
            AmountText::Number(n) => n,
            AmountText::Text(t) => parse_bytes(&t)?,
        };
        if !(n.is_finite() && n >= 0.0) {
            return Err(format!("{n} is not a non-negative amount"));
        }
        Ok(Amount(n))
    }
}

/// Which cgroups may be written, and within which bounds.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// cgroup path relative to the v2 root, with `*` (one path segment) and
    /// `**` (any depth) wildcards, e.g. "/shadow-demo/*".
    pub cgroup: Glob,
    /// Higher goes first when the managed reservations exceed capacity.
    #[serde(default)]
    pub priority: i32,
    /// CPU bounds in cores; unset: CPU knobs are not written.
    pub cpu: Option<Bounds>,
    /// Memory bounds; unset: memory knobs are not written.
    pub memory: Option<Bounds>,
    /// Block I/O bounds (bytes/s, turned into a weight); unset: not written.
    pub io: Option<Bounds>,
}

/// A rule's cgroup pattern: under the v2 root, never the root itself
/// (it has no knobs).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Glob(pub String);

impl TryFrom<String> for Glob {
    type Error = String;
    fn try_from(pattern: String) -> Result<Self, String> {
        if !pattern.starts_with('/') {
            return Err(format!(
                "{pattern:?} must start with '/' (a path relative to the v2 root, e.g. \"/machine.slice/*\")"
            ));
        }
        if pattern.split('/').all(str::is_empty) {
            return Err("\"/\" would manage the root cgroup, which has no knobs".into());
        }
        Ok(Self(pattern))
    }
}

/// Floor and ceiling of one resource's reservation for a managed cgroup.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(try_from = "BoundsText")]
pub struct Bounds {
    /// Never reserve less.
    pub floor: Amount,
    /// Never reserve more.
    pub ceiling: Amount,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BoundsText {
    floor: Amount,
    ceiling: Amount,
}

impl TryFrom<BoundsText> for Bounds {
    type Error = String;
    fn try_from(b: BoundsText) -> Result<Self, String> {
        if b.floor.0 > b.ceiling.0 {
            return Err(format!(
                "floor {} is above ceiling {}: swap them or lower the floor",
                b.floor.0, b.ceiling.0
            ));
        }
        Ok(Self {
            floor: b.floor,
            ceiling: b.ceiling,
        })
    }
}

impl Rule {
    /// The bounds of `resource`, if this rule manages it.
    pub fn bounds(&self, resource: Resource) -> Option<Bounds> {
        match resource {
            Resource::Cpu => self.cpu,
            Resource::Memory => self.memory,
            Resource::Io => self.io,
            Resource::Net => None,
        }
    }
}

impl Config {
    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        shadow_common::config::load(path)
    }

    /// Parses and checks configuration text (`path` only names it in errors).
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        shadow_common::config::parse(text, path)
    }

    /// The decision cycle (default 1 s).
    pub fn tick(&self) -> Duration {
        self.tick.map_or(Duration::from_secs(1), |t| t.0)
    }

    /// The actuator's rate limit and cooldown (defaults: 1 s and 2 s).
    pub fn guardrails(&self) -> crate::actuator::Guardrails {
        let default = crate::actuator::Guardrails::default();
        crate::actuator::Guardrails {
            min_interval: self.min_interval.map_or(default.min_interval, |d| d.0),
            cooldown: self.cooldown.map_or(default.cooldown, |d| d.0),
            ..default
        }
    }

    /// Horizons the reservations look ahead (default 3).
    pub fn lead(&self) -> u16 {
        self.lead.map_or(3, |l| l.0 as u16)
    }

    /// Ticks a lower want must last before a reservation comes down.
    pub fn hold(&self) -> u16 {
        self.hold.map_or(DEFAULT_HOLD, |h| h.0 as u16)
    }

    /// The keys that differ between `self` and `new` but are only read at
    /// start (listeners, the journal): a reload leaves them as they were.
    pub fn restart_only_changes(&self, new: &Config) -> Vec<&'static str> {
        let mut keys = Vec::new();
        if self.socket != new.socket {
            keys.push("socket");
        }
        if self.tcp != new.tcp {
            keys.push("tcp");
        }
        if self.insecure_tcp != new.insecure_tcp {
            keys.push("insecure_tcp");
        }
        if self.peer != new.peer {
            keys.push("peer");
        }
        if self.state_dir != new.state_dir {
            keys.push("state_dir");
        }
        if self.metrics != new.metrics {
            keys.push("metrics");
        }
        keys
    }

    /// The first rule that opts `path` in, if any.
    pub fn rule_for(&self, path: &str) -> Option<&Rule> {
        self.manage.iter().find(|r| glob_match(&r.cgroup.0, path))
    }
}

/// The `state_dir` the file at `path` names, read leniently (any valid
/// TOML with a string `state_dir` at the top): where to restore from when
/// the file as a whole does not load.
pub fn salvage_state_dir(path: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(path).ok()?;
    let table: toml::Table = text.parse().ok()?;
    table.get("state_dir")?.as_str().map(PathBuf::from)
}

/// Matches a cgroup path against a pattern: `*` matches within one path
/// segment, `**` matches any number of whole segments (including none).
pub fn glob_match(pattern: &str, path: &str) -> bool {
    let pattern: Vec<&str> = pattern.split('/').filter(|s| !s.is_empty()).collect();
    let path: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    segments_match(&pattern, &path)
}

fn segments_match(pattern: &[&str], path: &[&str]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((&"**", rest)) => (0..=path.len()).any(|skip| segments_match(rest, &path[skip..])),
        Some((first, rest)) => path
            .split_first()
            .is_some_and(|(p, tail)| segment_match(first, p) && segments_match(rest, tail)),
    }
}

/// `*` within one segment: any run of characters.
fn segment_match(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((prefix, rest)) => {
            let Some(text) = text.strip_prefix(prefix) else {
                return false;
            };
            (0..=text.len())
                .filter(|&i| text.is_char_boundary(i))
                .any(|i| segment_match(rest, &text[i..]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("test.toml"))
    }

    #[test]
    fn the_annotated_example_is_valid_and_says_the_defaults() {
        let c = parse(include_str!("../../dist/shadow.toml")).unwrap();
        assert_eq!(c.tick(), Duration::from_secs(1));
        assert_eq!(c.lead(), 3);
        assert_eq!(c.hold(), DEFAULT_HOLD);
        assert_eq!(c.guardrails(), crate::actuator::Guardrails::default());
        assert!(
            c.manage.is_empty(),
            "the example manages nothing until edited"
        );
    }

    #[test]
    fn globs() {
        assert!(glob_match("/demo/*", "/demo/a"));
        assert!(!glob_match("/demo/*", "/demo/a/b"));
        assert!(!glob_match("/demo/*", "/demo"));
        assert!(glob_match("/demo/**", "/demo/a/b"));
        assert!(glob_match("/demo/**", "/demo"));
        assert!(glob_match(
            "/**/web-*.service",
            "/system.slice/web-1.service"
        ));
        assert!(!glob_match(
            "/**/web-*.service",
            "/system.slice/db-1.service"
        ));
        assert!(glob_match("/a", "/a/"));
        assert!(!glob_match("/a", "/ab"));
    }

    #[test]
    fn full_file() {
        let c = parse(
            r#"
            socket = "/tmp/o.sock"
            tick = "500ms"
            lead = 4
            cooldown = "5s"
            [capacity]
            io = "200MiB"
            [[manage]]
            cgroup = "/demo/*"
            priority = 5
            cpu = { floor = 0.1, ceiling = 2 }
            memory = { floor = "64MiB", ceiling = "1GiB" }
            "#,
        )
        .unwrap();
        assert_eq!(c.tick(), Duration::from_millis(500));
        assert_eq!(c.guardrails().cooldown, Duration::from_secs(5));
        assert_eq!(c.guardrails().min_interval, Duration::from_secs(1));
        assert_eq!(c.capacity.io, Some(Amount(200.0 * 1024.0 * 1024.0)));
        let rule = c.rule_for("/demo/x").unwrap();
        assert_eq!(rule.priority, 5);
        assert_eq!(
            rule.bounds(Resource::Memory).unwrap().ceiling.0,
            1024.0 * 1024.0 * 1024.0
        );
        assert!(c.rule_for("/other").is_none());
    }

    #[test]
    fn refuses_mistakes_with_line_and_fix() {
        let cases = [
            ("sockett = \"/x\"\n", "line 1", "expected one of"),
            (
                "\n[[manage]]\ncgroup = \"demo\"\n",
                "line 3",
                "must start with '/'",
            ),
            ("[[manage]]\ncgroup = \"/\"\n", "line 2", "root cgroup"),
            (
                "[[manage]]\ncgroup = \"/d\"\ncpu = { floor = 3, ceiling = 1 }\n",
                "line 3",
                "above ceiling 1: swap them",
            ),
            ("[capacity]\nmemory = \"2GB\"\n", "line 2", "unknown unit"),
            ("tick = \"1ms\"\n", "line 1", "minimum of 100ms"),
            ("lead = 9\n", "line 1", "outside 1..=6"),
            (
                "[agent]\nquantile = 2.0\n",
                "line 2",
                "strictly between 0 and 1",
            ),
            ("cooldown = 30\n", "line 1", "string"),
        ];
        for (text, line, fix) in cases {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.starts_with("test.toml: "), "{e}");
            assert!(e.contains(line) && e.contains(fix), "{text:?}: {e}");
        }
    }

    #[test]
    fn a_reload_names_the_keys_that_need_a_restart() {
        let old = parse("socket = \"/a\"\ntick = \"1s\"\n").unwrap();
        let new = parse("socket = \"/b\"\ntick = \"2s\"\nmetrics = \"127.0.0.1:1\"\n").unwrap();
        assert_eq!(old.restart_only_changes(&new), vec!["socket", "metrics"]);
        assert!(old.restart_only_changes(&old).is_empty());
    }

    #[test]
    fn the_state_dir_is_salvaged_from_a_file_the_schema_refuses() {
        let dir = std::env::temp_dir().join(format!("shadow-salvage-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("shadow.toml");
        std::fs::write(&file, "state_dir = \"/x/state\"\nbogus = 1\n").unwrap();
        assert!(Config::load(&file).is_err());
        assert_eq!(salvage_state_dir(&file), Some(PathBuf::from("/x/state")));
        std::fs::write(&file, "state_dir = \"/x\"\n[[manage]\n").unwrap();
        assert_eq!(salvage_state_dir(&file), None, "not TOML at all");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_agent_table_is_checked_and_kept() {
        let c = parse("lead = 2\n[agent]\ninterval = \"2s\"\n").unwrap();
        assert_eq!(c.agent.interval.unwrap().0, Duration::from_secs(2));
    }
}
