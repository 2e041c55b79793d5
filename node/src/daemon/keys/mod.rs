//! The threshold keys on one node (I/O shell around [`crate::threshold`]).
//!
//! - [`ceremony`]: takes part in DKG and resharing: deals, sends and checks
//!   secret shares, complains, announces its new shares; on the leader,
//!   starts and aborts ceremonies.
//! - [`derive`]: namespace secrets `S(ns, v)`: gathers t BLS signature
//!   shares from peers, verifies each, combines, caches the result sealed.
//! - [`signing`]: FROST signing: the coordinator, the signer's nonces, and
//!   the check that a committed entry calls for what is being signed.
//! - [`ca`]: the root CA and namespace CA certificates, signed by the cluster.
//! - [`recovery`]: escrow of this node's shares to the recovery admins; on
//!   a fresh node of a cluster being rebuilt, the admins' shares and the
//!   restore.
//! - [`peers`]: cached RA-TLS channels to the other members.
//!
//! Peers caught returning invalid shares are recorded in [`Suspects`]
//! (logged, counted in `/metrics`, shown by `guardctl status`).

pub mod ca;
pub mod ceremony;
pub mod derive;
pub mod peers;
pub mod recovery;
pub mod signing;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use guardian_proto::v1::RoundMessage;
use zeroize::Zeroizing;

use super::config::Byzantine;
use crate::net::ratls::cert::NodeKey;
use crate::net::ratls::Clock;
use crate::raft::types::Raft;
use crate::state::{Command, NodeId};
use crate::store::{SecretStore, StateView};
use crate::threshold::ceremony::Params;
use crate::threshold::ceremony::{KeyCommand, KeyMsg};
use crate::threshold::envelope::{Domain, Envelope};
use crate::threshold::escrow::{RecoveredRoot, RecoveryConfig, RestorePin};

/// What one node knows and holds for the threshold keys.
pub struct KeyNode {
    pub me: NodeId,
    pub cluster_id: [u8; 16],
    /// Shares needed (the genesis threshold).
    pub threshold: u16,
    pub key: Arc<NodeKey>,
    pub secrets: SecretStore,
    pub view: StateView,
    pub raft: Raft,
    pub peers: peers::Peers,
    pub clock: Clock,
    pub suspects: Suspects,
    pub nonces: signing::NonceStore,
    /// Test-only faults (simulated TEE only).
    pub byzantine: Byzantine,
    /// Recovery admins the keys are escrowed to (genesis).
    pub recovery: Option<RecoveryConfig>,
    /// The keys a cluster being rebuilt must restore (genesis).
    pub restore: Option<RestorePin>,
    /// The whole keys rebuilt from admin shares: only on the one fresh node
    /// `guardctl recover` chose, only in memory, only until dealt out.
    pub recovered: Mutex<Option<RecoveredRoot>>,
}

/// Why a key operation failed.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the cluster has no threshold keys yet (the DKG has not completed)")]
    NoKeys,
    #[error("this node holds no share of key epoch {0}")]
    NoShare(u64),
    #[error(
        "only {valid} usable shares of the {needed} needed (invalid from nodes {culprits:?}, no answer from nodes {unreachable:?}); no result rather than a wrong one"
    )]
    NotEnoughShares { valid: usize, needed: usize, culprits: Vec<NodeId>, unreachable: Vec<NodeId> },
    #[error("namespace {0:?} does not exist")]
    UnknownNamespace(String),
    #[error("sealed store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("{0}")]
    Other(String),
}

impl KeyNode {
    /// What the key rules need (as the genesis file says).
    pub fn params(&self) -> Params<'_> {
        Params {
            cluster_id: &self.cluster_id,
            threshold: self.threshold,
            recovery: self.recovery.as_ref(),
            restore: self.restore.as_ref(),
        }
    }

    pub fn holds_recovered(&self) -> bool {
        self.recovered.lock().unwrap_or_else(PoisonError::into_inner).is_some()
    }

    /// Sign a ceremony message with this node's key.
    pub fn envelope(&self, body: Vec<u8>) -> Result<Envelope, KeyError> {
        Envelope::seal(Domain::KeyMessage, &self.cluster_id, self.me, self.key.spki_der(), body, |m| {
            self.key.sign(m).map_err(|e| e.to_string())
        })
        .map_err(|e| KeyError::Other(e.to_string()))
    }

    /// Put a signed ceremony message in the log: directly on the leader,
    /// else through the leader's peer service.
    #[tracing::instrument(skip_all, fields(node = self.me))]
    pub async fn submit(&self, msg: &KeyMsg) -> Result<(), KeyError> {
        let body = serde_json::to_vec(msg).map_err(|e| KeyError::Other(e.to_string()))?;
        let envelope = self.envelope(body)?;
        let leader = self.raft.metrics().borrow().current_leader;
        match leader {
            Some(l) if l == self.me => self.propose(KeyCommand::Signed(envelope)).await,
            Some(l) => {
                let json = Zeroizing::new(serde_json::to_vec(&envelope).map_err(|e| KeyError::Other(e.to_string()))?);
                // The session is inside the signed message; the leader reads it there.
                let body = guardian_proto::v1::round_message::Body::PublicPackage(json.to_vec());
                self.peers.send_round(l, RoundMessage { session: None, round: 1, body: Some(body) }).await
            }
            None => Err(KeyError::Other("no leader".into())),
        }
    }

    /// On the leader: put a key command in the log and wait for it to apply.
    pub async fn propose(&self, cmd: KeyCommand) -> Result<(), KeyError> {
        let proposed_at = (self.clock)();
        let write = self.raft.client_write(Command::Key { cmd, proposed_at });
        match tokio::time::timeout(std::time::Duration::from_secs(10), write).await {
            Ok(Ok(r)) => match r.data {
                crate::state::Response::Applied => Ok(()),
                crate::state::Response::Rejected { reason } => Err(KeyError::Other(reason)),
            },
            Ok(Err(e)) => Err(KeyError::Other(e.to_string())),
            Err(_) => Err(KeyError::Other("not committed within 10 s".into())),
        }
    }
}

/// A peer caught sending invalid shares, as this node saw it.
#[derive(Debug, Clone)]
pub struct Suspect {
    pub invalid_shares: u64,
    pub last_reason: String,
    pub last_at: u64,
}

/// Peers this node caught misbehaving (not replicated: each node reports
/// what it saw itself).
#[derive(Default)]
pub struct Suspects(Mutex<BTreeMap<NodeId, Suspect>>);

impl Suspects {
    pub fn report(&self, node: NodeId, what: &str, now: u64) {
        tracing::warn!(culprit = node, what, "peer returned an invalid threshold share; excluded from this result");
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let s = map.entry(node).or_insert(Suspect { invalid_shares: 0, last_reason: String::new(), last_at: 0 });
        s.invalid_shares += 1;
        s.last_reason = what.to_string();
        s.last_at = now;
    }

    pub fn snapshot(&self) -> BTreeMap<NodeId, Suspect> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}
