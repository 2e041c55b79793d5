//! Guardian node library.
//!
//! # Layout
//!
//! Pure core (bytes and time in, decisions out; no sockets, files or clock):
//! - [`attest`]: evidence verification (TDX DCAP, Azure TDX vTPM, event logs,
//!   the simulated TEE) producing [`attest::Claims`].
//! - [`policy`]: namespaces and their measurement rules; turns claims into an
//!   allow/deny decision with a reason a person can read.
//! - [`threshold`]: the threshold root keys: BLS and FROST sharings, DKG and
//!   resharing rules, the threshold PRF, signed ceremony messages.
//! - [`keys`]: the namespace key hierarchy (child keys of `S(ns, v)` by
//!   typed HKDF labels) and secrets sealed with HPKE (stored secrets, keys
//!   released to workloads).
//! - [`ca`]: certificate profiles of the root and namespace CAs, built in two
//!   passes around a threshold signature; workload leaf certificates and CRLs.
//! - [`workload`]: the workload serving path: challenges and the evidence
//!   binding, config references, config backends.
//! - [`kbs`]: the CoCo protocols: Vault KV v1 shapes, KBS sessions, evidence
//!   binding, node-signed attestation tokens, JWE to the TEE key.
//! - [`state`]: the replicated cluster state, its commands and their
//!   validate-on-apply rules; genesis; signed admin commands.
//! - [`rfc3339`]: the time format shown and read everywhere.
//!
//! I/O shell:
//! - [`raft`]: openraft type configuration, network and peer-service glue.
//! - [`store`]: sled-backed Raft log and state machine, sealed at rest.
//! - [`net`]: RA-TLS (attested TLS between nodes) and gRPC wiring.
//! - [`daemon`]: the `guardian` daemon: configuration, start-up, admin and
//!   health endpoints, bootstrap, shutdown.

pub mod attest;
pub mod ca;
pub mod daemon;
pub mod kbs;
pub mod keys;
pub mod net;
pub mod policy;
pub mod raft;
pub mod rfc3339;
pub mod state;
pub mod store;
pub mod threshold;
pub mod workload;
