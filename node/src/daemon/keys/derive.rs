//! Namespace secrets by threshold PRF: `S(ns, v)` is HKDF over the unique
//! BLS threshold signature on the label `guardian/ns/v1 ‖ cluster ‖ ns ‖ v`.
//!
//! The deriving node asks every other holder for its signature share at
//! once. With t shares in hand it combines them and checks the one result
//! against the group key (`bls::combine_fast`): a result that verifies is the
//! unique signature, so it is correct. If it does not verify, every share is
//! checked against its holder's public key share; the invalid ones are
//! excluded and their senders reported, and more shares are awaited. Shares
//! that arrive after the result are still checked for a moment, so a liar is
//! reported even when it was not needed. With fewer than t usable shares the
//! derivation fails: no result rather than a wrong one. The combined
//! signature lives only in memory (zeroized); the derived secret is cached
//! sealed, so each namespace secret is gathered once per node.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use guardian_proto::v1::{EvalShareRequest, EvalShareResponse};
use tokio::task::JoinSet;
use tonic::Status;
use zeroize::Zeroizing;

use super::ceremony::load_shares;
use super::{KeyError, KeyNode};
use crate::state::NodeId;
use crate::threshold::{bls, share_index};

/// How long the deriving node waits for peers' shares.
const SHARE_TIMEOUT: Duration = Duration::from_secs(3);

/// How long answers not needed for the result are still checked (to name liars).
const GRACE: Duration = Duration::from_millis(500);

/// A derived namespace secret and how it was obtained.
pub struct Derived {
    pub secret: Zeroizing<[u8; 32]>,
    /// Holders whose valid shares were combined (empty when cached).
    pub contributors: Vec<NodeId>,
    /// Holders whose shares did not verify.
    pub culprits: Vec<NodeId>,
    pub cached: bool,
    pub elapsed: Duration,
}

/// A check value for a namespace secret: equal across nodes if and only if
/// they derived the same secret, and useless for recovering it.
pub fn check_value(secret: &[u8; 32]) -> [u8; 32] {
    let hk = hkdf::Hkdf::<sha2::Sha256>::from_prk(secret).unwrap_or_else(|_| hkdf::Hkdf::new(None, secret));
    let mut okm = Zeroizing::new([0u8; 32]);
    // 32 bytes is far below HKDF-SHA256's output limit, so expand cannot fail.
    let _ = hk.expand(b"guardian/key-check/v1", okm.as_mut());
    sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(okm.as_slice())).into()
}

fn cache_key(namespace: &str, version: u32) -> Vec<u8> {
    let mut k = b"ns/".to_vec();
    k.extend_from_slice(&(namespace.len() as u32).to_be_bytes());
    k.extend_from_slice(namespace.as_bytes());
    k.extend_from_slice(&version.to_be_bytes());
    k
}

/// The namespace exists and `version` (not 0) is live in it.
fn check_namespace(state: &crate::state::ClusterState, namespace: &str, version: u32) -> Result<(), KeyError> {
    let ns = state.namespaces.get(namespace).ok_or_else(|| KeyError::UnknownNamespace(namespace.to_string()))?;
    match version {
        0 => Err(KeyError::Other("secret version 0 is not a version (it means current only in requests)".into())),
        v => ns.resolve_version(v).map(|_| ()).map_err(|e| KeyError::Other(format!("namespace {namespace:?}: {e}"))),
    }
}

/// `S(namespace, version)`, from the sealed cache or gathered from t holders.
#[tracing::instrument(skip_all, fields(namespace, version))]
pub async fn namespace_secret(
    node: &Arc<KeyNode>,
    namespace: &str,
    version: u32,
    use_cache: bool,
) -> Result<Derived, KeyError> {
    let started = Instant::now();
    let (current, applied) = node
        .view
        .with_state(|s| {
            check_namespace(s, namespace, version)?;
            Ok::<_, KeyError>(s.keys.current.clone())
        })?
        .map(|k| (k, node.view.last_applied().map_or(0, |l| l.index)))
        .ok_or(KeyError::NoKeys)?;
    let key = cache_key(namespace, version);
    if use_cache {
        if let Some(bytes) = node.secrets.get(&key)? {
            let secret: [u8; 32] = bytes.as_slice().try_into().map_err(|_| KeyError::Other("corrupt cache".into()))?;
            let secret = Zeroizing::new(secret);
            let elapsed = started.elapsed();
            return Ok(Derived { secret, contributors: vec![], culprits: vec![], cached: true, elapsed });
        }
    }
    let label = bls::namespace_label(&node.cluster_id, namespace, version);
    let public = current.bls_public().map_err(KeyError::Other)?;
    let needed = current.threshold as usize;

    // Shares as received, not yet verified: combining t of them and checking
    // the one result is cheaper than checking each (see `bls::combine_fast`).
    let mut shares: BTreeMap<u16, Vec<u8>> = BTreeMap::new();
    let (mut culprits, mut unreachable) = (Vec::new(), Vec::new());
    if let (Some(x), true) = (share_index(node.me), current.holders.contains(&node.me)) {
        if let Some(own) = load_shares(node, current.epoch)? {
            shares.insert(x, bls::sign_share(&own.bls, &label).to_vec());
        }
    }
    let mut asks = JoinSet::new();
    for peer in current.holders.iter().copied().filter(|p| *p != node.me) {
        let node = node.clone();
        let req = EvalShareRequest {
            namespace: namespace.to_string(),
            version,
            epoch: current.epoch,
            min_applied_index: applied,
        };
        asks.spawn(async move {
            (peer, node.peers.call(peer, SHARE_TIMEOUT, |mut c| async move { c.eval_share(req).await }).await)
        });
    }
    let combined = loop {
        if shares.len() >= needed {
            match bls::combine_fast(&public, &shares, &label) {
                Ok(c) => {
                    report(node, &c.culprits, &mut culprits);
                    shares.retain(|x, _| !c.culprits.contains(x));
                    break c;
                }
                Err(bls::BlsError::NotEnoughShares { culprits: bad, .. }) => {
                    report(node, &bad, &mut culprits);
                    shares.retain(|x, _| !bad.contains(x));
                }
                Err(e) => return Err(KeyError::Other(e.to_string())),
            }
        }
        let Some(joined) = asks.join_next().await else {
            let valid = shares.len();
            return Err(KeyError::NotEnoughShares { valid, needed, culprits, unreachable });
        };
        let Ok((peer, answer)) = joined else { continue };
        match (answer, share_index(peer)) {
            (Ok(r), Some(x)) if r.share_index == u64::from(x) && r.epoch == current.epoch => {
                shares.insert(x, Zeroizing::new(r.secret_signature_share).to_vec());
            }
            (Ok(_), _) => report(node, &[share_index(peer).unwrap_or_default()], &mut culprits),
            (Err(e), _) => {
                tracing::debug!(peer, error = %e, "no evaluation share");
                unreachable.push(peer);
            }
        }
    };
    // Answers still on their way are checked in the background, so a peer
    // returning invalid shares is reported even when it was not needed.
    tokio::spawn(check_late(node.clone(), asks, public, label.clone()));
    let contributors: Vec<NodeId> = shares.keys().take(needed).map(|x| NodeId::from(*x)).collect();
    let secret = bls::namespace_secret(&combined.signature, &label);
    node.secrets.put(&key, secret.as_slice())?;
    Ok(Derived { secret, contributors, culprits, cached: false, elapsed: started.elapsed() })
}

/// Record peers (by share index) whose evaluation shares were invalid.
fn report(node: &KeyNode, bad: &[u16], culprits: &mut Vec<NodeId>) {
    for x in bad {
        node.suspects.report(NodeId::from(*x), "invalid BLS evaluation share", (node.clock)());
        culprits.push(NodeId::from(*x));
    }
}

type Answer = (NodeId, Result<EvalShareResponse, String>);

/// Verify the evaluation shares that arrive within [`GRACE`] after a
/// derivation completed, and report the invalid ones.
async fn check_late(node: Arc<KeyNode>, mut asks: JoinSet<Answer>, public: bls::BlsPublic, label: Vec<u8>) {
    let deadline = tokio::time::Instant::now() + GRACE;
    while let Ok(Some(Ok((peer, Ok(r))))) = tokio::time::timeout_at(deadline, asks.join_next()).await {
        let x = share_index(peer).unwrap_or_default();
        if !bls::verify_sign_share(&public, x, &label, &r.secret_signature_share) {
            report(&node, &[x], &mut Vec::new());
        }
    }
    asks.abort_all();
}

/// The peer service's answer to EvalShare: this node's signature share on
/// the namespace label it builds itself (so it only ever evaluates the PRF
/// on namespace labels).
#[tracing::instrument(skip_all, fields(peer))]
pub async fn eval_share(node: &KeyNode, req: &EvalShareRequest) -> Result<EvalShareResponse, Status> {
    // A caller ahead of this node (a namespace it has not applied yet) waits briefly.
    let deadline = Instant::now() + Duration::from_secs(2);
    while node.view.last_applied().map_or(0, |l| l.index) < req.min_applied_index && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let current = node
        .view
        .with_state(|s| {
            check_namespace(s, &req.namespace, req.version)?;
            s.keys.current.clone().ok_or(KeyError::NoKeys)
        })
        .map_err(|e| Status::failed_precondition(e.to_string()))?;
    if req.epoch != current.epoch {
        return Err(Status::failed_precondition(format!(
            "key epoch {} is not current here (epoch {} is)",
            req.epoch, current.epoch
        )));
    }
    let x = share_index(node.me).ok_or_else(|| Status::internal("node id out of range"))?;
    let shares = load_shares(node, current.epoch)
        .map_err(|e| Status::internal(e.to_string()))?
        .ok_or_else(|| Status::failed_precondition(format!("this node holds no share of epoch {}", current.epoch)))?;
    let mut label = bls::namespace_label(&node.cluster_id, &req.namespace, req.version);
    if node.byzantine.corrupt_bls_shares {
        tracing::warn!("INSECURE test fault: answering with a corrupted BLS share");
        label.extend_from_slice(b"/corrupted");
    }
    Ok(EvalShareResponse {
        share_index: u64::from(x),
        epoch: current.epoch,
        secret_signature_share: bls::sign_share(&shares.bls, &label).to_vec(),
    })
}
