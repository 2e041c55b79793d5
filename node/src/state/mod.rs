//! The replicated cluster state and the commands that change it (pure core).
//!
//! Raft orders [`Command`]s; every node applies them with [`ClusterState::apply`].
//! Raft trusts its leader, this cluster does not: each command carries what
//! justifies it (admin signatures, a joiner's evidence) and `apply` checks it
//! again on every node ("validate on apply"). An invalid entry changes nothing
//! and yields [`Response::Rejected`] with the reason.
//!
//! - [`genesis`]: the genesis file that founds a cluster.
//! - [`admin`]: signed admin commands: signatures, quorum, replay protection.
//! - [`apply`]: the node's validate-on-apply rules for every command.
//! - [`namespace`]: a namespace's policy, secret versions, stored secrets,
//!   configs and issued certificates, and the rules for changing them.
//! - [`tokens`]: access tokens of the CoCo front ends (stored hashed).

pub mod admin;
pub mod apply;
pub mod genesis;
pub mod namespace;
pub mod tokens;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::threshold::ceremony::{KeyCommand, KeyState};
use crate::threshold::envelope::Envelope;

/// Raft node id.
pub type NodeId = u64;

/// SHA-256 of a node's RA-TLS public key (its SubjectPublicKeyInfo DER): the
/// identity a node is admitted, pinned and revoked by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeIdentity(#[serde(with = "hex::serde")] pub [u8; 32]);

impl std::fmt::Display for NodeIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(&self.0[..8]))
    }
}

/// Where a member stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemberStatus {
    /// Admitted by an admin, replicating, not yet voting.
    Learner,
    Voter,
}

/// A member of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub id: NodeId,
    /// Peer gRPC address (host:port).
    pub addr: String,
    pub identity: NodeIdentity,
    /// MRTD of the evidence it was admitted with (hex), for operators.
    pub mrtd: String,
    pub status: MemberStatus,
}

/// A command in the Raft log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// The first entry: the genesis members as they were mutually attested.
    /// Each node checks it against the genesis file and what it saw itself.
    Bootstrap { genesis_digest: [u8; 32], members: Vec<Member> },
    /// A signed admin command (protobuf `SignedCommand` bytes), checked on apply.
    Admin {
        #[serde(with = "hex::serde")]
        signed: Vec<u8>,
        /// Time the leader proposed it, used for expiry checks so that every
        /// node reaches the same verdict whatever its own clock says.
        proposed_at: u64,
    },
    /// The leader saw an admitted learner catch up: it becomes a voter.
    /// Needs no signature: the admin decision was the learner's admission.
    Promote { node_id: NodeId },
    /// A key-ceremony step (see [`crate::threshold::ceremony`]), at the
    /// leader's proposal time.
    Key { cmd: KeyCommand, proposed_at: u64 },
    /// A node-signed [`namespace::Record`] (a workload certificate it
    /// issued), checked on apply like everything else.
    Record { envelope: Envelope, proposed_at: u64 },
}

/// What applying a command produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    Applied,
    /// The entry was invalid; nothing changed.
    Rejected {
        reason: String,
    },
}

/// Applies commands to the state. The store calls it for every normal entry;
/// the implementation (in [`admin`] and the daemon) carries what validation
/// needs beyond the state itself (the genesis file, the attestation verifier).
pub trait Applier: Send + Sync + 'static {
    fn apply(&self, state: &mut ClusterState, cmd: &Command) -> Response;
}

/// A joining node's certificate, verified: what a node admits on apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedJoiner {
    pub identity: NodeIdentity,
    /// MRTD of its evidence (hex).
    pub mrtd: String,
}

/// Verifies a joiner's RA-TLS certificate (evidence, binding, guardian
/// policy) as of time `at`, for node `node_id`. Implemented by the RA-TLS
/// peer policy; kept behind a trait so that the state machine stays pure.
pub trait JoinVerifier: Send + Sync {
    fn verify_joiner(&self, node_id: NodeId, certificate: &[u8], at: u64) -> Result<VerifiedJoiner, String>;
}

/// The replicated state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterState {
    /// Set by the bootstrap entry; everything before it is refused.
    pub genesis_digest: Option<[u8; 32]>,
    pub members: BTreeMap<NodeId, Member>,
    /// Identities that were revoked: refused at the handshake, never re-admitted.
    pub revoked: BTreeSet<NodeIdentity>,
    /// Admin Ed25519 public keys by key id (hex of the first 8 bytes of the key).
    pub admins: BTreeMap<String, [u8; 32]>,
    pub admin_quorum: u32,
    /// Nonces (hex) of applied admin commands, with their expiry: a replay is refused.
    pub used_nonces: BTreeMap<String, u64>,
    /// Namespaces by name.
    pub namespaces: BTreeMap<String, namespace::Namespace>,
    /// Workload challenges spent on certificates (hex of their SHA-256), with their expiry.
    pub spent_challenges: BTreeMap<String, u64>,
    /// Count of admin commands applied (a cheap convergence check for tests).
    pub admin_commands_applied: u64,
    /// The cluster's clock: the latest proposal time applied. It never goes
    /// backwards, so a leader cannot backdate a command into the window of an
    /// old one whose nonce has been forgotten.
    pub clock: u64,
    /// The threshold keys' public state and any ceremony in progress.
    pub keys: KeyState,
    /// Access tokens of the CoCo front ends, by id (see [`tokens`]).
    #[serde(default)]
    pub access_tokens: BTreeMap<String, tokens::AccessToken>,
}

#[cfg(test)]
mod tests;
