//! Namespace keys (pure core): what a namespace hands out, all derived from
//! its secret `S(ns, v)` (docs/keys.md §1). No I/O, no clock.
//!
//! # Layout
//!
//! - [`hierarchy`]: child keys by HKDF with typed, domain-separated labels:
//!   volume (PVC) keys and application secrets by name, the namespace CA
//!   seed, the key that encrypts stored secrets.
//! - [`stored`]: secrets written by admins, encrypted under the namespace
//!   secret before they enter the replicated state.

pub mod hierarchy;
pub mod stored;

/// Why a namespace key operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeysError {
    #[error("invalid key name {name:?}: {why}")]
    BadName { name: String, why: &'static str },
    #[error("stored secret {name:?} does not decrypt under namespace {namespace} version {version}: wrong version, or the record was altered")]
    Undecryptable { namespace: String, name: String, version: u32 },
    #[error("stored secret too large: {len} bytes, at most {max}")]
    TooLarge { len: usize, max: usize },
}
