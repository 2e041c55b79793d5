//! Key-ceremony messages signed by the sending node's RA-TLS key.
//!
//! Ceremony messages reach Raft through the leader, and Raft trusts its
//! leader; this cluster does not. Each message is signed with the sender's
//! node key (ECDSA P-256, the key its RA-TLS certificate attests), over the
//! cluster id and the sender's node id, so a relaying leader can neither
//! forge nor alter one, and a complaint can prove what a dealer sent.
//! The signer is the node's identity: SHA-256 of the SPKI carried here must
//! equal the identity the cluster admitted it with.

use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::state::{NodeId, NodeIdentity};

/// What a signed message is, bound into the signature so that a message of
/// one kind can never pass for another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Domain {
    /// A key-ceremony message.
    KeyMessage,
    /// A record for the log (e.g. a workload certificate a node issued).
    Record,
    /// A workload challenge (nonce) a node issued.
    Challenge,
}

impl Domain {
    fn context(self) -> &'static [u8] {
        match self {
            Domain::KeyMessage => b"guardian/v1/key-message",
            Domain::Record => b"guardian/v1/record",
            Domain::Challenge => b"guardian/v1/workload-challenge",
        }
    }
}

/// Why an envelope was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("node {0}'s signing key is not the identity the cluster admitted it with")]
    WrongIdentity(NodeId),
    #[error("node {0}'s signing key is not an ECDSA P-256 key")]
    BadKey(NodeId),
    #[error("bad signature on node {0}'s message")]
    BadSignature(NodeId),
    #[error("could not sign: {0}")]
    Signing(String),
}

/// A message and its sender's signature.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub from: NodeId,
    /// The sender's SubjectPublicKeyInfo DER (its identity is the SHA-256 of it).
    #[serde(with = "hex::serde")]
    pub spki: Vec<u8>,
    #[serde(with = "hex::serde")]
    pub body: Vec<u8>,
    /// ECDSA P-256 / SHA-256, ASN.1 DER.
    #[serde(with = "hex::serde")]
    pub signature: Vec<u8>,
}

// The body may hold secret shares (point-to-point messages): never print it.
impl std::fmt::Debug for Envelope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Envelope").field("from", &self.from).field("body_len", &self.body.len()).finish()
    }
}

fn signing_input(domain: Domain, cluster_id: &[u8; 16], from: NodeId, body: &[u8]) -> Vec<u8> {
    let context = domain.context();
    let mut input = Vec::with_capacity(context.len() + 1 + 16 + 8 + body.len());
    input.extend_from_slice(context);
    input.push(0);
    input.extend_from_slice(cluster_id);
    input.extend_from_slice(&from.to_be_bytes());
    input.extend_from_slice(body);
    input
}

impl Envelope {
    /// Sign `body` of kind `domain` as node `from`.
    pub fn seal(
        domain: Domain,
        cluster_id: &[u8; 16],
        from: NodeId,
        spki: Vec<u8>,
        body: Vec<u8>,
        sign: impl FnOnce(&[u8]) -> Result<Vec<u8>, String>,
    ) -> Result<Self, EnvelopeError> {
        let signature = sign(&signing_input(domain, cluster_id, from, &body)).map_err(EnvelopeError::Signing)?;
        Ok(Envelope { from, spki, body, signature })
    }

    /// The body of a message of kind `domain`, if the signature is valid and the key is `identity`.
    pub fn open(&self, domain: Domain, cluster_id: &[u8; 16], identity: &NodeIdentity) -> Result<&[u8], EnvelopeError> {
        if NodeIdentity(Sha256::digest(&self.spki).into()) != *identity {
            return Err(EnvelopeError::WrongIdentity(self.from));
        }
        let key = VerifyingKey::from_public_key_der(&self.spki).map_err(|_| EnvelopeError::BadKey(self.from))?;
        let sig = Signature::from_der(&self.signature).map_err(|_| EnvelopeError::BadSignature(self.from))?;
        key.verify(&signing_input(domain, cluster_id, self.from, &self.body), &sig)
            .map_err(|_| EnvelopeError::BadSignature(self.from))?;
        Ok(&self.body)
    }
}
