//! Log setup shared by both binaries: tracing to stderr, level from
//! `SHADOW_LOG` (e.g. `info`, `debug`, `shadow_orchestrator=debug`),
//! human-readable by default (coloured only on a terminal), one JSON object
//! per line with `SHADOW_LOG_FORMAT=json` for log collectors.

use tracing_subscriber::EnvFilter;

/// Installs the subscriber; `default` is the level when `SHADOW_LOG` is
/// unset or invalid.
pub fn init(default: &str) {
    let filter = EnvFilter::try_from_env("SHADOW_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("SHADOW_LOG_FORMAT").is_ok_and(|f| f == "json") {
        builder.json().init();
    } else {
        builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
    }
}
