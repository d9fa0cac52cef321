//! One module per hook family.

mod block;
mod empty;
mod fault;
mod net;
mod reclaim;
mod sched;
