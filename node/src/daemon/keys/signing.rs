//! FROST threshold signing between nodes.
//!
//! The coordinator (any holder) asks the other holders for fresh nonce
//! commitments, picks t of them, sends each the signing package, verifies
//! the signature shares (culprits are reported and excluded, and the round
//! is retried without them) and aggregates. A signer keeps its nonces in
//! memory only, uses them once and erases them; before committing and again
//! before signing it rebuilds the message from the replicated state and
//! refuses anything no committed entry calls for ([`super::ca::check_intent`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use guardian_proto::v1::{
    FrostCommitRequest, FrostCommitResponse, FrostSignRequest, FrostSignResponse, SessionRef, SigningIntent,
    ThresholdProtocol,
};
use rand::RngCore;
use tokio::task::JoinSet;
use tonic::Status;

use super::ceremony::load_shares;
use super::{KeyError, KeyNode};
use crate::state::NodeId;
use crate::threshold::{frost, share_index};

/// How long a signer keeps unused nonces.
const NONCE_TTL: Duration = Duration::from_secs(30);
/// How long the coordinator waits for each round's answers.
const ROUND_TIMEOUT: Duration = Duration::from_secs(3);
/// Rounds the coordinator tries, excluding culprits each time.
const ATTEMPTS: usize = 3;

/// A signer's nonces by session, in memory only.
#[derive(Default)]
pub struct NonceStore(Mutex<HashMap<[u8; 32], (Instant, frost::Nonces)>>);

impl NonceStore {
    fn put(&self, session: [u8; 32], nonces: frost::Nonces) {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        map.retain(|_, (at, _)| at.elapsed() < NONCE_TTL);
        map.insert(session, (Instant::now(), nonces));
    }

    /// The session's nonces, removed: they can be used once only.
    fn take(&self, session: &[u8; 32]) -> Option<frost::Nonces> {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        map.remove(session).filter(|(at, _)| at.elapsed() < NONCE_TTL).map(|(_, n)| n)
    }
}

/// A threshold signature and who made it.
pub struct Signed {
    pub signature: [u8; 64],
    pub signers: Vec<NodeId>,
    pub culprits: Vec<NodeId>,
    pub elapsed: Duration,
}

fn session_ref(session: &[u8; 32], epoch: u64) -> SessionRef {
    SessionRef { session_id: session.to_vec(), protocol: ThresholdProtocol::FrostSign as i32, epoch }
}

fn session_of(r: Option<&SessionRef>, epoch: u64) -> Result<[u8; 32], Status> {
    let r = r.ok_or_else(|| Status::invalid_argument("no session"))?;
    if r.protocol != ThresholdProtocol::FrostSign as i32 {
        return Err(Status::invalid_argument("not a FROST signing session"));
    }
    if r.epoch != epoch {
        return Err(Status::failed_precondition(format!("key epoch {} is not current (epoch {epoch} is)", r.epoch)));
    }
    r.session_id.as_slice().try_into().map_err(|_| Status::invalid_argument("session id must be 32 bytes"))
}

/// Sign `intent.tbs_der` with the cluster's FROST key.
#[tracing::instrument(skip_all, fields(purpose = intent.purpose))]
pub async fn sign(node: &Arc<KeyNode>, intent: SigningIntent) -> Result<Signed, KeyError> {
    let started = Instant::now();
    let current = node.view.with_state(|s| s.keys.current.clone()).ok_or(KeyError::NoKeys)?;
    let public = current.frost_public().map_err(KeyError::Other)?;
    let needed = current.threshold as usize;
    let mut excluded: Vec<NodeId> = Vec::new();
    let mut culprits: Vec<NodeId> = Vec::new();
    let mut unreachable: Vec<NodeId> = Vec::new();
    for _ in 0..ATTEMPTS {
        let mut session = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut session);
        let sref = session_ref(&session, current.epoch);
        // Round 1: commitments from every holder not excluded; the first t win.
        let peers = current.holders.iter().copied().filter(|p| !excluded.contains(p));
        let mut asks = fan_out(node, peers, |_| {
            Ask::Commit(FrostCommitRequest { session: Some(sref.clone()), intent: Some(intent.clone()) })
        });
        let mut commitments: BTreeMap<u16, Vec<u8>> = BTreeMap::new();
        while commitments.len() < needed {
            let Some(Ok((peer, answer))) = asks.join_next().await else { break };
            match (answer, share_index(peer)) {
                (Ok(Answer::Commit(r)), Some(x)) => {
                    commitments.insert(x, r.commitments);
                }
                (Err(e), _) => {
                    tracing::debug!(peer, error = %e, "no FROST commitment");
                    unreachable.push(peer);
                    excluded.push(peer);
                }
                _ => {}
            }
        }
        asks.abort_all();
        if commitments.len() < needed {
            break;
        }
        let package =
            frost::signing_package(&commitments, &intent.tbs_der).map_err(|e| KeyError::Other(e.to_string()))?;
        // Round 2: signature shares from the chosen t.
        let signers = commitments.keys().map(|x| NodeId::from(*x));
        let mut asks = fan_out(node, signers, |_| {
            Ask::Sign(FrostSignRequest {
                session: Some(sref.clone()),
                intent: Some(intent.clone()),
                signing_package: package.clone(),
            })
        });
        let mut shares: BTreeMap<u16, Vec<u8>> = BTreeMap::new();
        let mut missing = false;
        while let Some(Ok((peer, answer))) = asks.join_next().await {
            match (answer, share_index(peer)) {
                (Ok(Answer::Sign(r)), Some(x)) => {
                    shares.insert(x, r.signature_share);
                }
                (Err(e), _) => {
                    tracing::debug!(peer, error = %e, "no FROST signature share");
                    unreachable.push(peer);
                    excluded.push(peer);
                    missing = true;
                }
                _ => {}
            }
        }
        if missing {
            continue;
        }
        match frost::aggregate(&public, &package, &shares) {
            Ok(signature) => {
                let signers = shares.keys().map(|x| NodeId::from(*x)).collect();
                return Ok(Signed { signature, signers, culprits, elapsed: started.elapsed() });
            }
            Err(frost::FrostError::InvalidShares { culprits: bad }) => {
                for x in bad {
                    let peer = NodeId::from(x);
                    node.suspects.report(peer, "invalid FROST signature share", (node.clock)());
                    culprits.push(peer);
                    excluded.push(peer);
                }
            }
            Err(e) => return Err(KeyError::Other(e.to_string())),
        }
    }
    let valid = current.holders.len().saturating_sub(excluded.len());
    unreachable.sort_unstable();
    unreachable.dedup();
    Err(KeyError::NotEnoughShares { valid, needed, culprits, unreachable })
}

/// A signing-round request to one signer, and its answer.
enum Ask {
    Commit(FrostCommitRequest),
    Sign(FrostSignRequest),
}

enum Answer {
    Commit(FrostCommitResponse),
    Sign(FrostSignResponse),
}

/// Ask every signer in `peers` at once; this node answers itself in process.
fn fan_out(
    node: &Arc<KeyNode>,
    peers: impl Iterator<Item = NodeId>,
    ask: impl Fn(NodeId) -> Ask,
) -> JoinSet<(NodeId, Result<Answer, String>)> {
    let mut set = JoinSet::new();
    for peer in peers {
        let (node, ask) = (node.clone(), ask(peer));
        set.spawn(async move {
            let local = peer == node.me;
            let message = |s: Status| s.message().to_string();
            let answer = match ask {
                Ask::Commit(req) if local => frost_commit(&node, &req).await.map(Answer::Commit).map_err(message),
                Ask::Commit(req) => node
                    .peers
                    .call(peer, ROUND_TIMEOUT, |mut c| async move { c.frost_commit(req).await })
                    .await
                    .map(Answer::Commit),
                Ask::Sign(req) if local => frost_sign(&node, &req).await.map(Answer::Sign).map_err(message),
                Ask::Sign(req) => node
                    .peers
                    .call(peer, ROUND_TIMEOUT, |mut c| async move { c.frost_sign(req).await })
                    .await
                    .map(Answer::Sign),
            };
            (peer, answer)
        });
    }
    set
}

/// Signer, round 1: check the intent, commit to fresh nonces, keep them in memory.
#[tracing::instrument(skip_all)]
pub async fn frost_commit(node: &Arc<KeyNode>, req: &FrostCommitRequest) -> Result<FrostCommitResponse, Status> {
    let (shares, session, x) = signer(node, req.session.as_ref(), req.intent.as_ref()).await?;
    let (nonces, commitments) =
        frost::commit(&shares.frost, &mut rand::rngs::OsRng).map_err(|e| Status::internal(e.to_string()))?;
    node.nonces.put(session, nonces);
    Ok(FrostCommitResponse { identifier: x.to_be_bytes().to_vec(), commitments })
}

/// Signer, round 2: the session's nonces are used once and erased.
#[tracing::instrument(skip_all)]
pub async fn frost_sign(node: &Arc<KeyNode>, req: &FrostSignRequest) -> Result<FrostSignResponse, Status> {
    let (shares, session, x) = signer(node, req.session.as_ref(), req.intent.as_ref()).await?;
    let nonces = node
        .nonces
        .take(&session)
        .ok_or_else(|| Status::failed_precondition("no nonces for this session (expired or already used)"))?;
    let tbs = req.intent.as_ref().map(|i| i.tbs_der.as_slice()).unwrap_or_default();
    let mut share = frost::sign(&shares.frost, nonces, &req.signing_package, tbs)
        .map_err(|e| Status::invalid_argument(format!("refusing to sign: {e}")))?;
    if node.byzantine.corrupt_frost_shares {
        tracing::warn!("INSECURE test fault: answering with a corrupted FROST share");
        if let Some(b) = share.last_mut() {
            *b ^= 0x01;
        }
    }
    Ok(FrostSignResponse { identifier: x.to_be_bytes().to_vec(), signature_share: share })
}

async fn signer(
    node: &Arc<KeyNode>,
    session: Option<&SessionRef>,
    intent: Option<&SigningIntent>,
) -> Result<(super::ceremony::Shares, [u8; 32], u16), Status> {
    let current = node
        .view
        .with_state(|s| s.keys.current.clone())
        .ok_or_else(|| Status::failed_precondition("no threshold keys yet"))?;
    let session = session_of(session, current.epoch)?;
    let intent = intent.ok_or_else(|| Status::invalid_argument("no signing intent"))?;
    super::ca::check_intent(node, &current, intent).await.map_err(|e| Status::permission_denied(e.to_string()))?;
    let x = share_index(node.me).ok_or_else(|| Status::internal("node id out of range"))?;
    let shares = load_shares(node, current.epoch)
        .map_err(|e| Status::internal(e.to_string()))?
        .ok_or_else(|| Status::failed_precondition(format!("this node holds no share of epoch {}", current.epoch)))?;
    Ok((shares, session, x))
}
