//! Tests of the virtual interface: golden vectors, framing, validation and
//! the handshake. Pure and in-memory (a `UnixStream` pair at most), so they
//! run without privileges.

mod framing;
mod handshake;
mod samples;
mod validation;
mod vectors;
