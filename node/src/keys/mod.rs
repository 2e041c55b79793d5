//! Namespace keys (pure core): what a namespace hands out, all derived from
//! its secret `S(ns, v)` (docs/keys.md §1). No I/O, no clock.
//!
//! # Layout
//!
//! - [`hierarchy`]: child keys by HKDF with typed, domain-separated labels:
//!   volume (PVC) keys and application secrets by name, the namespace CA
//!   seed, the namespace ingest key; key paths (`<type>/<name>`).
//! - [`sealing`]: HPKE to X25519 recipients: stored secrets sealed to the
//!   ingest key, keys sealed to workloads.

pub mod hierarchy;
pub mod sealing;

pub use hierarchy::{KeyName, KeyPath};

/// Why a namespace key operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeysError {
    #[error("invalid key name {name:?}: {why}")]
    BadName { name: String, why: &'static str },
}
