//! Networking: RA-TLS (attested TLS between guardian nodes) and its gRPC wiring.
//!
//! - [`ratls`]: certificates carrying attestation evidence bound to the TLS key,
//!   the rustls verifiers that check them against the guardian policy, and the
//!   tonic server / channel glue.

pub mod ratls;
