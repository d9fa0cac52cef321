//! The `[agent]` table of Shadow's configuration file, and the pieces both
//! binaries use to read that one file.
//!
//! Agent and orchestrator share `/etc/shadow/shadow.toml`: the top level
//! belongs to the orchestrator, `[agent]` to the agent. Each binary reads
//! the whole file but checks only its own part strictly; the orchestrator
//! also checks `[agent]` (it embeds [`AgentConfig`]), so
//! `shadow-orchestrator --check-config` vets the whole file. Values are
//! checked while they are parsed (the newtypes below), so a refusal names
//! the line of the offending value, not only the key.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use serde::Deserialize;

/// Where both binaries look when no `--config` is given.
pub const DEFAULT_PATH: &str = "/etc/shadow/shadow.toml";

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
    /// The file is not valid TOML, does not match the schema, or a value is
    /// out of range; the message names the line and what to write instead.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// toml's message, with line, column and the offending text.
        message: String,
    },
    /// A value is wrong in a way only the whole file shows.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong and how to fix it.
        message: String,
    },
}

/// Reads `path` and parses it as `T` (see [`parse`]).
pub fn load<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(&text, path)
}

/// Parses configuration text as `T`; `path` only names it in errors.
pub fn parse<T: serde::de::DeserializeOwned>(text: &str, path: &Path) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

/// The file to read: the one named on the command line (which must exist),
/// else [`DEFAULT_PATH`] if it exists, else none (built-in defaults).
pub fn choose(flag: Option<&Path>) -> Option<PathBuf> {
    match flag {
        Some(p) => Some(p.to_owned()),
        None => Some(PathBuf::from(DEFAULT_PATH)).filter(|p| p.exists()),
    }
}

/// The agent's settings in the shared file (`[agent]`). Every key is
/// optional; a flag on the command line overrides the key.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// Length of one observation interval (>= 10ms).
    pub interval: Option<DurationAtLeast<10>>,
    /// What `observe` prints: "json", "table" or "none".
    pub format: Option<Format>,
    /// Only this cgroup (path under the v2 root) and its descendants.
    pub cgroup: Option<CgroupPath>,
    /// Intervals between full walks of the cgroup tree (1..=3600).
    pub rescan_every: Option<RescanEvery>,
    /// Forecast each cgroup's CPU demand.
    pub forecast: Option<bool>,
    /// Quantile of the forecasts' upper band (strictly between 0 and 1).
    pub quantile: Option<Quantile>,
    /// The orchestrator to report to: a Unix socket path or "tcp:HOST:PORT".
    pub orchestrator: Option<String>,
    /// File holding this agent's key (hex, mode 0600/0400, owned by root),
    /// proved to an orchestrator that asks (remote agents over TCP).
    pub key_file: Option<PathBuf>,
    /// The name the orchestrator knows that key by (its `[[peer]] name`);
    /// default: this host's name.
    pub key_name: Option<String>,
    /// Unix socket applications send hints to.
    pub hint_socket: Option<PathBuf>,
    /// Group owning the hint socket (its members may hint).
    pub hint_group: Option<String>,
    /// Whether to open the hint socket at all.
    pub hints: Option<bool>,
    /// Address of the Prometheus endpoint (off unless set), e.g.
    /// "127.0.0.1:9465".
    pub metrics: Option<String>,
    /// Most cgroups with their own metric series (1..=100000).
    pub metrics_cgroups: Option<MetricsCgroups>,
}

/// The cap on per-cgroup metric series.
pub type MetricsCgroups = InRange<1, 100_000>;

/// How many intervals between full walks of the cgroup tree.
pub type RescanEvery = InRange<1, 3600>;

/// A whole number within `MIN..=MAX`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "u64")]
pub struct InRange<const MIN: u64, const MAX: u64>(pub u64);

impl<const MIN: u64, const MAX: u64> TryFrom<u64> for InRange<MIN, MAX> {
    type Error = String;
    fn try_from(n: u64) -> Result<Self, String> {
        if (MIN..=MAX).contains(&n) {
            Ok(Self(n))
        } else {
            Err(format!("{n} is outside {MIN}..={MAX}"))
        }
    }
}

impl<const MIN: u64, const MAX: u64> std::str::FromStr for InRange<MIN, MAX> {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let n: u64 = text
            .parse()
            .map_err(|_| format!("{text:?} is not a whole number in {MIN}..={MAX}"))?;
        Self::try_from(n)
    }
}

/// The file as the agent reads it: `[agent]`, and nothing it checks else.
/// (No `deny_unknown_fields` here: the top level is the orchestrator's.)
#[derive(Debug, Default, Deserialize)]
pub struct AgentFile {
    /// The `[agent]` table.
    #[serde(default)]
    pub agent: AgentConfig,
}

/// Output format of `observe`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// One JSON object per cgroup per interval.
    Json,
    /// A table of the busiest cgroups, refreshed every interval.
    Table,
    /// Nothing on stdout: for a service that only reports to the
    /// orchestrator (`--orchestrator`).
    None,
}

/// A duration written as text ("500ms", "1s"), at least `MIN_MS`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct DurationAtLeast<const MIN_MS: u64>(pub Duration);

impl<const MIN_MS: u64> TryFrom<String> for DurationAtLeast<MIN_MS> {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        text.parse()
    }
}

impl<const MIN_MS: u64> std::str::FromStr for DurationAtLeast<MIN_MS> {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let d = crate::duration::parse(text)?;
        if d < Duration::from_millis(MIN_MS) {
            return Err(format!("{text:?} is below the minimum of {MIN_MS}ms"));
        }
        Ok(Self(d))
    }
}

/// A quantile strictly between 0 and 1.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
#[serde(try_from = "f64")]
pub struct Quantile(pub f64);

impl TryFrom<f64> for Quantile {
    type Error = String;
    fn try_from(q: f64) -> Result<Self, String> {
        if q > 0.0 && q < 1.0 {
            Ok(Self(q))
        } else {
            Err(format!(
                "{q} is not a quantile strictly between 0 and 1 (e.g. 0.95)"
            ))
        }
    }
}

impl std::str::FromStr for Quantile {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let q: f64 = text
            .parse()
            .map_err(|_| format!("{text:?} is not a number (e.g. 0.95)"))?;
        Self::try_from(q)
    }
}

/// A cgroup path relative to the v2 root, starting with '/'.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct CgroupPath(pub String);

impl TryFrom<String> for CgroupPath {
    type Error = String;
    fn try_from(path: String) -> Result<Self, String> {
        if path.starts_with('/') && !path.split('/').any(|s| s == "..") {
            Ok(Self(path))
        } else {
            Err(format!(
                "{path:?} must be a path under the cgroup v2 root starting with '/' (e.g. \"/system.slice\"), without '..'"
            ))
        }
    }
}

impl AgentConfig {
    /// Loads `[agent]` from the file [`choose`] picks, or the defaults.
    pub fn load(flag: Option<&Path>) -> Result<(Self, Option<PathBuf>), ConfigError> {
        match choose(flag) {
            Some(path) => Ok((load::<AgentFile>(&path)?.agent, Some(path))),
            None => Ok((Self::default(), None)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(text: &str) -> Result<AgentConfig, ConfigError> {
        parse::<AgentFile>(text, Path::new("shadow.toml")).map(|f| f.agent)
    }

    #[test]
    fn every_key() {
        let c = agent(
            r#"
            tick = "1s"           # the orchestrator's: not the agent's business
            [agent]
            interval = "500ms"
            format = "none"
            cgroup = "/system.slice"
            rescan_every = 20
            forecast = true
            quantile = 0.9
            orchestrator = "tcp:10.0.0.1:7370"
            hint_socket = "/run/x.sock"
            hint_group = "shadow"
            hints = false
            "#,
        )
        .unwrap();
        assert_eq!(c.interval.unwrap().0, Duration::from_millis(500));
        assert_eq!(c.format, Some(Format::None));
        assert_eq!(c.cgroup.unwrap().0, "/system.slice");
        assert_eq!(c.rescan_every, Some(InRange(20)));
        assert_eq!(c.quantile, Some(Quantile(0.9)));
        assert_eq!(c.hints, Some(false));
    }

    #[test]
    fn no_agent_table_means_defaults() {
        assert_eq!(agent("lead = 3\n").unwrap(), AgentConfig::default());
    }

    #[test]
    fn refusals_name_the_line_and_the_fix() {
        let cases = [
            ("[agent]\nintervall = \"1s\"\n", "line 2", "expected one of"),
            (
                "[agent]\n\ninterval = \"5ms\"\n",
                "line 3",
                "minimum of 10ms",
            ),
            (
                "[agent]\nquantile = 1.5\n",
                "line 2",
                "strictly between 0 and 1",
            ),
            ("[agent]\nformat = \"xml\"\n", "line 2", "json"),
            (
                "[agent]\ncgroup = \"system.slice\"\n",
                "line 2",
                "starting with '/'",
            ),
            ("[agent]\nrescan_every = 0\n", "line 2", "1..=3600"),
            ("[agent]\nforecast = \"yes\"\n", "line 2", "bool"),
        ];
        for (text, line, fix) in cases {
            let e = agent(text).unwrap_err().to_string();
            assert!(e.starts_with("shadow.toml: "), "{e}");
            assert!(e.contains(line) && e.contains(fix), "{text:?}: {e}");
        }
    }

    #[test]
    fn a_missing_named_file_is_an_error_and_no_default_file_is_fine() {
        let e = AgentConfig::load(Some(Path::new("/nonexistent/shadow.toml"))).unwrap_err();
        assert!(
            e.to_string()
                .contains("cannot read /nonexistent/shadow.toml")
        );
        let default = Path::new(DEFAULT_PATH);
        assert_eq!(choose(None).is_some(), default.exists());
        assert_eq!(
            choose(Some(Path::new("/x.toml"))),
            Some(PathBuf::from("/x.toml"))
        );
    }
}
