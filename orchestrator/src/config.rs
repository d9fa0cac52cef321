//! The orchestrator's configuration file (TOML).
//!
//! Only what an operator must decide is configurable: where to listen,
//! which cgroups may be written and within which bounds, and the
//! bandwidths the host cannot tell by itself. Unknown keys are refused, so
//! a typo never silently leaves a guardrail out.

use std::{path::Path, path::PathBuf, time::Duration};

use serde::Deserialize;
use shadow_agent::{units::parse_bytes, wire::Resource};

/// Default Unix socket agents connect to.
pub const DEFAULT_SOCKET: &str = "/run/shadow/orchestrator.sock";

/// Why the configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML or does not match the schema; the message
    /// names the line and the key.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// toml's message, with line and column.
        message: String,
    },
    /// A value is out of range.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong and how to fix it.
        message: String,
    },
}

/// The whole file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Unix socket for local agents.
    pub socket: Option<PathBuf>,
    /// TCP address for remote agents (off unless set), e.g. "0.0.0.0:7370".
    pub tcp: Option<String>,
    /// Directory of the journal.
    pub state_dir: Option<PathBuf>,
    /// Address of the Prometheus endpoint (off unless set), e.g.
    /// "127.0.0.1:9464".
    pub metrics: Option<String>,
    /// Length of one decision cycle, e.g. "1s".
    pub tick: Option<String>,
    /// Ticks ahead the reservation looks: it covers the highest upper band
    /// over horizons 1..=lead, so it is raised before the demand arrives.
    pub lead: Option<u16>,
    /// Least time between two writes to one knob, e.g. "1s".
    pub min_interval: Option<String>,
    /// Least time between raising a knob and lowering it again, e.g. "30s":
    /// raises are never delayed, lowerings wait so a knob does not flap.
    pub cooldown: Option<String>,
    /// Host capacity overrides and the bandwidths the host cannot report.
    #[serde(default)]
    pub capacity: CapacityConfig,
    /// The cgroups the orchestrator may write; all others get
    /// recommendations only.
    #[serde(default)]
    pub manage: Vec<Rule>,
}

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
    pub cgroup: String,
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

/// Floor and ceiling of one resource's reservation for a managed cgroup.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bounds {
    /// Never reserve less.
    pub floor: Amount,
    /// Never reserve more.
    pub ceiling: Amount,
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
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses and checks configuration text (`path` only names it in errors).
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        config.check().map_err(|message| ConfigError::Invalid {
            path: path.to_owned(),
            message,
        })?;
        Ok(config)
    }

    fn check(&self) -> Result<(), String> {
        if let Some(tick) = &self.tick {
            let d = shadow_agent::duration::parse(tick)?;
            if d < Duration::from_millis(100) {
                return Err(format!("tick = {tick:?} is below the 100ms minimum"));
            }
        }
        for (key, value) in [
            ("min_interval", &self.min_interval),
            ("cooldown", &self.cooldown),
        ] {
            if let Some(v) = value {
                shadow_agent::duration::parse(v).map_err(|e| format!("{key} = {v:?}: {e}"))?;
            }
        }
        if let Some(lead) = self.lead
            && !(1..=shadow_agent::forecast::MAX_HORIZON as u16).contains(&lead)
        {
            return Err(format!(
                "lead = {lead} is outside 1..={}",
                shadow_agent::forecast::MAX_HORIZON
            ));
        }
        for (i, rule) in self.manage.iter().enumerate() {
            if !rule.cgroup.starts_with('/') {
                return Err(format!(
                    "manage[{i}].cgroup = {:?} must start with '/' (a path relative to the v2 root)",
                    rule.cgroup
                ));
            }
            if rule.cgroup == "/" {
                return Err(format!(
                    "manage[{i}].cgroup = \"/\" would manage the root cgroup, which has no knobs"
                ));
            }
            for resource in [Resource::Cpu, Resource::Memory, Resource::Io] {
                if let Some(b) = rule.bounds(resource)
                    && b.floor.0 > b.ceiling.0
                {
                    return Err(format!(
                        "manage[{i}].{}: floor {} is above ceiling {}",
                        resource.name(),
                        b.floor.0,
                        b.ceiling.0
                    ));
                }
            }
        }
        Ok(())
    }

    /// The decision cycle.
    pub fn tick(&self) -> Duration {
        self.tick
            .as_deref()
            .and_then(|t| shadow_agent::duration::parse(t).ok())
            .unwrap_or(Duration::from_secs(1))
    }

    /// The actuator's rate limit and cooldown (defaults: 1 s and 30 s).
    pub fn limits(&self) -> crate::actuator::Limits {
        let parse = |v: &Option<String>| {
            v.as_deref()
                .and_then(|t| shadow_agent::duration::parse(t).ok())
        };
        let default = crate::actuator::Limits::default();
        crate::actuator::Limits {
            min_interval: parse(&self.min_interval).unwrap_or(default.min_interval),
            cooldown: parse(&self.cooldown).unwrap_or(default.cooldown),
            ..default
        }
    }

    /// Horizons the reservations look ahead.
    pub fn lead(&self) -> u16 {
        self.lead.unwrap_or(3)
    }

    /// The first rule that opts `path` in, if any.
    pub fn rule_for(&self, path: &str) -> Option<&Rule> {
        self.manage.iter().find(|r| glob_match(&r.cgroup, path))
    }
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
        assert_eq!(
            c.limits().cooldown,
            crate::actuator::Limits::default().cooldown
        );
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
        assert_eq!(c.limits().cooldown, Duration::from_secs(5));
        assert_eq!(c.limits().min_interval, Duration::from_secs(1));
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
        let e = parse("sockett = \"/x\"\n").unwrap_err().to_string();
        assert!(e.contains("sockett") && e.contains("line 1"), "{e}");
        let e = parse("[[manage]]\ncgroup = \"demo\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("must start with '/'"), "{e}");
        let e = parse("[[manage]]\ncgroup = \"/d\"\ncpu = { floor = 3, ceiling = 1 }\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("above ceiling"), "{e}");
        let e = parse("[capacity]\nmemory = \"2GB\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown unit"), "{e}");
        let e = parse("tick = \"1ms\"\n").unwrap_err().to_string();
        assert!(e.contains("100ms"), "{e}");
    }
}
