//! Shadow's orchestrator: turns the agents' forecasts into cgroup knob
//! settings that are in place before the demand arrives, and undoes them.
//!
//! Layout:
//! - [`actuator`]: which cgroup knobs exist on this host (v2 or v1 per
//!   controller), their values in the kernel's own formats, and guarded
//!   writes (rate limit, cooldown, never a hard cap below usage, dry-run).
//! - [`journal`]: every original value, fsynced before the first write that
//!   changes it, so a normal exit and the start after a crash put it back.

pub mod actuator;
pub mod journal;
