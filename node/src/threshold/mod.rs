//! Threshold root secrets (pure core): no node, leader or admin ever holds
//! them whole (except one fresh node during admin recovery, see [`escrow`]). See `docs/keys.md`.
//!
//! # Layout
//!
//! - [`bls`]: BLS12-381 Feldman VSS (Joint-Feldman DKG, resharing) and the
//!   threshold PRF behind namespace secrets `S(ns, v)`.
//! - [`frost`]: the FROST Ed25519 root CA key: DKG (frost-ed25519),
//!   resharing, threshold signing with culprit detection.
//! - [`envelope`]: messages signed by a node's RA-TLS key, so a leader that
//!   relays them cannot forge or alter them.
//! - [`ceremony`]: the replicated key state and the rules every node applies
//!   to DKG and resharing entries (validate on apply).
//! - [`certs`]: the root and namespace CA certificates in the replicated
//!   state, checked on apply against what the state calls for.
//! - [`escrow`]: admin recovery: the root keys escrowed `k`-of-`m` to
//!   recovery admins (HPKE), opened by them, and rebuilt on a fresh node.
//!
//! The I/O around it (sending shares, gathering evaluation and signature
//! shares, sealing shares at rest) is in `daemon::keys`.

pub mod bls;
pub mod ceremony;
pub mod certs;
pub mod envelope;
pub mod escrow;
pub mod frost;

#[cfg(test)]
mod escrow_tests;
#[cfg(test)]
mod tests;

use crate::state::NodeId;

/// A node's share index in both sharings: its node id, which must fit the
/// FROST identifier space (1..=65535).
pub fn share_index(node: NodeId) -> Option<u16> {
    u16::try_from(node).ok().filter(|x| *x != 0)
}
