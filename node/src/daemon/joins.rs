//! Join requests as a member sees them: the answer to `PeerService.Join`, and
//! the pending requests an admin lists and approves (`guardctl node approve`).
//!
//! Pending requests live in memory only, on each node the joiner asked; the
//! joiner asks every member it knows again every few seconds, so a restarted
//! member learns them back. What makes a joiner a member is the signed
//! `ApproveNodeJoin` entry, which carries the joiner's certificate so every
//! node verifies it again when it applies the entry.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use guardian_proto::v1::{EvidenceKind, JoinMember, JoinRequest, JoinRequestInfo, JoinResponse, JoinState};
use rustls::pki_types::CertificateDer;

use crate::attest::TeeKind;
use crate::net::ratls::verify::{inspect_peer, PeerInfo, PeerPolicy};
use crate::net::ratls::Clock;
use crate::state::{admin, ClusterState, MemberStatus, NodeId, NodeIdentity};
use crate::store::StateView;

/// At most this many pending requests are kept (all from attested nodes).
const MAX_PENDING: usize = 64;
/// A request not repeated for this long is forgotten.
const PENDING_TTL_SECS: u64 = 600;

struct Pending {
    address: String,
    certificate: Vec<u8>,
    info: PeerInfo,
    version: String,
    first_seen: u64,
    last_seen: u64,
}

/// The join requests this node has seen and verified.
pub struct PendingJoins {
    /// The guardian policy without membership checks: a joiner is not a member yet.
    policy: Arc<dyn PeerPolicy>,
    clock: Clock,
    pending: Mutex<BTreeMap<NodeId, Pending>>,
}

impl PendingJoins {
    pub fn new(policy: Arc<dyn PeerPolicy>, clock: Clock) -> Self {
        PendingJoins { policy, clock, pending: Mutex::default() }
    }

    /// Answer a join request that arrived over RA-TLS with `certificate`.
    pub fn answer(&self, view: &StateView, certificate: &[u8], req: &JoinRequest) -> JoinResponse {
        let now = (self.clock)();
        // Verified again here, outside the state lock: the handshake's check
        // also applied membership rules and kept no claims, while what is
        // listed for an admin must be exactly what passed the guardian policy.
        // Joiners ask every few seconds, so this is not a hot path.
        let info = inspect_peer(&CertificateDer::from(certificate), &[], now, self.policy.as_ref(), None);
        view.with_state(|state| {
            let members = state
                .members
                .values()
                .map(|m| JoinMember { node_id: m.id, address: m.addr.clone(), tls_key_sha256: m.identity.0.to_vec() })
                .collect();
            match info {
                Ok(info) => self.answer_verified(state, info, certificate, req, now, members),
                Err(e) => JoinResponse {
                    node_id: 0,
                    state: JoinState::Refused as i32,
                    message: format!("certificate refused: {e}"),
                    members,
                },
            }
        })
    }

    fn answer_verified(
        &self,
        state: &ClusterState,
        info: PeerInfo,
        certificate: &[u8],
        req: &JoinRequest,
        now: u64,
        members: Vec<JoinMember>,
    ) -> JoinResponse {
        let id = info.node_id;
        let (state_now, message) = match self.decide(state, id, info.identity, &req.address) {
            Ok(Some(status)) => (status, String::new()),
            Ok(None) => {
                self.record(id, certificate, info, req, now);
                (JoinState::PendingApproval, format!("waiting for an admin to run `guardctl node approve {id}`"))
            }
            Err(message) => (JoinState::Refused, message),
        };
        JoinResponse { node_id: id, state: state_now as i32, message, members }
    }

    /// Where `id` with `identity` stands: a member (Some), pending (None), or refused.
    fn decide(
        &self,
        state: &ClusterState,
        id: NodeId,
        identity: NodeIdentity,
        address: &str,
    ) -> Result<Option<JoinState>, String> {
        if state.revoked.contains(&identity) {
            return Err(format!(
                "identity {identity} was revoked; a revoked node cannot rejoin (a new node needs a new data directory, hence a new identity)"
            ));
        }
        if state.genesis_digest.is_none() {
            return Err("this cluster is not bootstrapped yet; retry later".into());
        }
        if let Some(m) = state.members.get(&id) {
            if m.identity != identity {
                return Err(format!("node id {id} belongs to another identity; give the new node another node_id"));
            }
            return Ok(Some(match m.status {
                MemberStatus::Learner => JoinState::Learner,
                MemberStatus::Voter => JoinState::Voter,
            }));
        }
        if let Some(m) = state.members.values().find(|m| m.identity == identity) {
            return Err(format!("identity {identity} is already node {}", m.id));
        }
        admin::check_address(address)?;
        Ok(None)
    }

    fn record(&self, id: NodeId, certificate: &[u8], info: PeerInfo, req: &JoinRequest, now: u64) {
        let Ok(mut pending) = self.pending.lock() else { return };
        pending.retain(|_, p| p.last_seen + PENDING_TTL_SECS >= now);
        let first_seen = match pending.get(&id) {
            // The same node asking again keeps its place; another key for the
            // same id replaces it (the admin sees the identity before approving).
            Some(p) if p.info.identity == info.identity => p.first_seen,
            _ => now,
        };
        if !pending.contains_key(&id) && pending.len() >= MAX_PENDING {
            tracing::warn!(node = id, "too many pending join requests; ignoring this one");
            return;
        }
        if first_seen == now {
            tracing::info!(node = id, identity = %info.identity, address = %req.address, "join request pending approval");
        }
        pending.insert(
            id,
            Pending {
                address: req.address.clone(),
                certificate: certificate.to_vec(),
                info,
                version: req.version.clone(),
                first_seen,
                last_seen: now,
            },
        );
    }

    /// The pending requests, for `guardctl node joins` / `node approve`.
    /// Requests from nodes that have since been admitted or revoked are dropped.
    pub fn list(&self, state: &ClusterState) -> Vec<JoinRequestInfo> {
        let now = (self.clock)();
        let Ok(mut pending) = self.pending.lock() else { return Vec::new() };
        pending.retain(|id, p| {
            p.last_seen + PENDING_TTL_SECS >= now
                && !state.members.contains_key(id)
                && !state.revoked.contains(&p.info.identity)
        });
        pending
            .iter()
            .map(|(id, p)| JoinRequestInfo {
                node_id: *id,
                address: p.address.clone(),
                certificate: p.certificate.clone(),
                tls_key_sha256: p.info.identity.0.to_vec(),
                evidence_kind: evidence_kind(p.info.claims.kind) as i32,
                measurements: [("mrtd".to_string(), hex::decode(&p.info.claims.mrtd).unwrap_or_default())].into(),
                policy_rule: p.info.claims.rule.clone(),
                version: p.version.clone(),
                first_seen_unix: p.first_seen as i64,
                last_seen_unix: p.last_seen as i64,
            })
            .collect()
    }
}

pub fn evidence_kind(kind: TeeKind) -> EvidenceKind {
    match kind {
        TeeKind::Tdx => EvidenceKind::Tdx,
        TeeKind::AzTdxVtpm => EvidenceKind::AzTdxVtpm,
        TeeKind::Sim => EvidenceKind::Sim,
    }
}
