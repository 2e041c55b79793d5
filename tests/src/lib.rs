//! Shared fixtures for Guardian's integration tests.
//!
//! # Layout
//! - [`bin`]: locating and running the workspace's binaries (`guardctl`).
//! - [`fixtures`]: loading the real evidence kept in `tests/data/attestation/`.
//! - [`cluster`]: real multi-process clusters (`guardian` processes on 127.0.0.1) driven through `guardctl`.
//! - [`faults`]: a fault-injecting TCP transport between cluster nodes (partitions).
//! - [`workload`]: the simulated workload's policy and guardctl answers, for the workload tests.
//! - [`coco`]: an HTTPS client for the CoCo port (replays captured requests as they were).
//! - [`kbs_client`]: the client side of the KBS protocol, written from the protocol description
//!   alone (not from guardian code), to check the guardian as the real CoCo client would.
//! - [`cases`]: the attestation cases (T1–T9, B1–B7, A1–A2) with their expected verdicts,
//!   as listed in `tests/data/attestation/README.md`.

pub mod bin;
pub mod cases;
pub mod cluster;
pub mod coco;
pub mod faults;
pub mod fixtures;
pub mod kbs_client;
pub mod workload;
