//! Guardian node library.
//!
//! # Layout
//!
//! Pure core (bytes and time in, decisions out; no sockets, files or clock):
//! - [`attest`]: evidence verification (TDX DCAP, Azure TDX vTPM, event logs,
//!   the simulated TEE) producing [`attest::Claims`].
//! - [`policy`]: namespaces and their measurement rules; turns claims into an
//!   allow/deny decision with a reason a person can read.

pub mod attest;
pub mod policy;
