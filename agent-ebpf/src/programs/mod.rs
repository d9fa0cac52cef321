//! One module per hook family.

mod block;
mod fault;
mod net;
mod sched;
