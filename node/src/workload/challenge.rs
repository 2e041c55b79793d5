//! Workload challenges and the evidence binding.
//!
//! A challenge is a fresh nonce a node signs with its own key (a
//! [`Domain::Challenge`] envelope over the namespace, times and 16 random
//! bytes), so that any member, not only the one that issued it, can check it
//! after a failover without a shared secret. A challenge is spent when the
//! certificate it was used for is recorded in the log, so it is good for one
//! attestation cluster-wide; fresh-evidence requests spend it per node (see
//! docs/workloads.md for why that suffices).

use std::collections::BTreeMap;

use rand::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha512};

use crate::state::{NodeId, NodeIdentity};
use crate::threshold::envelope::{Domain, Envelope};

/// How long a challenge is good for.
pub const CHALLENGE_TTL_SECS: u64 = 120;
/// Largest challenge accepted (an envelope with a P-256 key and signature is ~600 bytes).
const MAX_CHALLENGE: usize = 2048;

const BINDING_LABEL: &[u8] = b"guardian/v1/workload-attest";

/// Why a challenge was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChallengeError {
    #[error("the nonce is not a challenge from this cluster: {0}; ask for one with GetChallenge")]
    Malformed(String),
    #[error("the challenge was issued for namespace {issued:?}, not {asked:?}")]
    WrongNamespace { issued: String, asked: String },
    #[error("the challenge was issued by node {0}, which is not a member")]
    UnknownIssuer(NodeId),
    #[error("the challenge's signature does not verify")]
    BadSignature,
    #[error("the challenge expired; ask for a new one")]
    Expired,
    #[error("the challenge was already used; ask for a new one")]
    Replayed,
}

#[derive(Serialize, Deserialize)]
struct Body {
    namespace: String,
    issued_at: u64,
    expires_at: u64,
    #[serde(with = "hex::serde")]
    random: [u8; 16],
}

/// A checked challenge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checked {
    /// SHA-256 of the challenge bytes: what spending it records.
    pub id: [u8; 32],
    pub expires_at: u64,
}

/// Issue a challenge for `namespace` as node `me`.
pub fn mint<R: RngCore + CryptoRng>(
    cluster_id: &[u8; 16],
    me: NodeId,
    spki: Vec<u8>,
    namespace: &str,
    now: u64,
    rng: &mut R,
    sign: impl FnOnce(&[u8]) -> Result<Vec<u8>, String>,
) -> Result<(Vec<u8>, u64), String> {
    let mut random = [0u8; 16];
    rng.fill_bytes(&mut random);
    let expires_at = now + CHALLENGE_TTL_SECS;
    let body = Body { namespace: namespace.to_string(), issued_at: now, expires_at, random };
    let body = serde_json::to_vec(&body).map_err(|e| e.to_string())?;
    let envelope = Envelope::seal(Domain::Challenge, cluster_id, me, spki, body, sign).map_err(|e| e.to_string())?;
    Ok((serde_json::to_vec(&envelope).map_err(|e| e.to_string())?, expires_at))
}

/// Check a challenge presented with evidence for `namespace` at `now`.
pub fn check(
    nonce: &[u8],
    cluster_id: &[u8; 16],
    namespace: &str,
    identity_of: impl Fn(NodeId) -> Option<NodeIdentity>,
    now: u64,
) -> Result<Checked, ChallengeError> {
    if nonce.len() > MAX_CHALLENGE {
        return Err(ChallengeError::Malformed("too long".into()));
    }
    let envelope: Envelope = serde_json::from_slice(nonce).map_err(|e| ChallengeError::Malformed(e.to_string()))?;
    let identity = identity_of(envelope.from).ok_or(ChallengeError::UnknownIssuer(envelope.from))?;
    let body = envelope.open(Domain::Challenge, cluster_id, &identity).map_err(|_| ChallengeError::BadSignature)?;
    let body: Body = serde_json::from_slice(body).map_err(|e| ChallengeError::Malformed(e.to_string()))?;
    if body.namespace != namespace {
        return Err(ChallengeError::WrongNamespace { issued: body.namespace, asked: namespace.to_string() });
    }
    if now > body.expires_at || body.expires_at.saturating_sub(body.issued_at) > CHALLENGE_TTL_SECS {
        return Err(ChallengeError::Expired);
    }
    Ok(Checked { id: Sha256::digest(nonce).into(), expires_at: body.expires_at })
}

/// What the workload's evidence must carry (report_data, or the vTPM quote
/// nonce): SHA-512(label ‖ 0 ‖ nonce ‖ SHA-256(SPKI DER of the workload key)).
pub fn binding(nonce: &[u8], spki_der: &[u8]) -> [u8; 64] {
    let key_hash = Sha256::digest(spki_der);
    Sha512::new()
        .chain_update(BINDING_LABEL)
        .chain_update([0])
        .chain_update(nonce)
        .chain_update(key_hash)
        .finalize()
        .into()
}

/// Challenges a node has seen spent on fresh-evidence requests (per node, in
/// memory), forgotten once expired.
#[derive(Default)]
pub struct Spent(std::sync::Mutex<BTreeMap<[u8; 32], u64>>);

impl Spent {
    /// Spend `c` at `now`; refuse it if it was spent before.
    pub fn spend(&self, c: &Checked, now: u64) -> Result<(), ChallengeError> {
        let mut map = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        map.retain(|_, expires| *expires >= now);
        if map.insert(c.id, c.expires_at).is_some() {
            return Err(ChallengeError::Replayed);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::ratls::cert::NodeKey;

    fn minted(key: &NodeKey, ns: &str, now: u64) -> Vec<u8> {
        let sign = |m: &[u8]| key.sign(m).map_err(|e| e.to_string());
        mint(&[1; 16], 3, key.spki_der(), ns, now, &mut rand::thread_rng(), sign).unwrap().0
    }

    #[test]
    fn any_member_checks_a_challenge_and_refuses_a_forged_stale_or_misdirected_one() {
        let key = NodeKey::generate().unwrap();
        let id = key.identity();
        let members = |n: NodeId| (n == 3).then_some(id);
        let nonce = minted(&key, "demo", 1000);
        let c = check(&nonce, &[1; 16], "demo", members, 1010).unwrap();
        assert_eq!(c.expires_at, 1000 + CHALLENGE_TTL_SECS);
        assert!(matches!(check(&nonce, &[1; 16], "other", members, 1010), Err(ChallengeError::WrongNamespace { .. })));
        assert_eq!(check(&nonce, &[2; 16], "demo", members, 1010), Err(ChallengeError::BadSignature));
        assert_eq!(
            check(&nonce, &[1; 16], "demo", members, 1000 + CHALLENGE_TTL_SECS + 1),
            Err(ChallengeError::Expired)
        );
        assert_eq!(check(&nonce, &[1; 16], "demo", |_| None, 1010), Err(ChallengeError::UnknownIssuer(3)));
        let stranger = NodeKey::generate().unwrap();
        let forged = minted(&stranger, "demo", 1000);
        assert_eq!(check(&forged, &[1; 16], "demo", members, 1010), Err(ChallengeError::BadSignature));
        assert!(matches!(check(b"garbage", &[1; 16], "demo", members, 1010), Err(ChallengeError::Malformed(_))));
        let spent = Spent::default();
        spent.spend(&c, 1010).unwrap();
        assert_eq!(spent.spend(&c, 1011), Err(ChallengeError::Replayed));
    }

    #[test]
    fn the_binding_covers_nonce_and_key() {
        let b = binding(b"n", b"key");
        assert_ne!(b, binding(b"n2", b"key"));
        assert_ne!(b, binding(b"n", b"key2"));
        assert_eq!(b, binding(b"n", b"key"));
    }
}
