//! The admin gRPC service: signed commands in, cluster status out.
//!
//! Commands are checked here first, so a bad one gets an immediate, specific
//! error, and then again by every node when the entry is applied.

use guardian_proto::v1::admin_service_server::AdminService;
use guardian_proto::v1::*;
use openraft::error::{ClientWriteError, RaftError};
use prost::Message;
use sha2::{Digest, Sha256};
use tonic::{Request, Response, Status};

use super::keys;
use crate::raft::service::not_yet;
use crate::raft::types::Raft;
use crate::state::genesis::Genesis;
use crate::state::namespace::ConfigSource;
use crate::state::{admin, Command, MemberStatus as Role, Response as Applied};
use crate::store::StateView;
use crate::threshold::ceremony::KeyState;

/// How long Submit waits for its entry to commit.
const COMMIT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

pub struct AdminServer {
    pub node_id: u64,
    pub raft: Raft,
    pub state: StateView,
    pub genesis: Genesis,
    pub clock: crate::net::ratls::Clock,
    pub joins: std::sync::Arc<super::joins::PendingJoins>,
    pub keys: std::sync::Arc<super::keys::KeyNode>,
}

#[tonic::async_trait]
impl AdminService for AdminServer {
    #[tracing::instrument(skip_all, name = "admin.submit")]
    async fn submit(&self, req: Request<SubmitRequest>) -> Result<Response<SubmitResponse>, Status> {
        let signed = match req.into_inner().command {
            Some(submit_request::Command::SignedCommand(s)) => s,
            Some(submit_request::Command::ProposalId(_)) => return not_yet("submitting proposals"),
            None => return Err(Status::invalid_argument("no command")),
        };
        let bytes = signed.encode_to_vec();
        let now = (self.clock)();
        self.state
            .with_state(|s| admin::check(s, &self.genesis.cluster_id, &bytes, now))
            .map_err(Status::permission_denied)?;
        let command_id = Sha256::digest(&bytes).to_vec();
        // A leader cut off from its quorum cannot commit; say so instead of
        // hanging. The entry may still commit later (or be discarded when a
        // new leader's log replaces it): the caller must check, not resend.
        let write = self.raft.client_write(Command::Admin { signed: bytes, proposed_at: now });
        let Ok(outcome) = tokio::time::timeout(COMMIT_TIMEOUT, write).await else {
            return Err(Status::deadline_exceeded(format!(
                "not committed within {} s: this leader may have lost its quorum; the command may still commit, so check (e.g. guardctl status) before signing it again",
                COMMIT_TIMEOUT.as_secs()
            )));
        };
        match outcome {
            Ok(resp) => match resp.data {
                Applied::Applied => {
                    Ok(Response::new(SubmitResponse { command_id, log_index: resp.log_id.index, new_version: 0 }))
                }
                Applied::Rejected { reason } => Err(Status::failed_precondition(reason)),
            },
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(Status::unavailable(match f.leader_id {
                    Some(id) => format!("not the leader; the leader is node {id}"),
                    None => "not the leader, and no leader is known yet; retry shortly".to_string(),
                }))
            }
            Err(e) => Err(Status::unavailable(format!("could not commit: {e}"))),
        }
    }

    #[tracing::instrument(skip_all, name = "admin.status")]
    async fn status(&self, _req: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        let m = self.raft.metrics().borrow().clone();
        let state = self.state.state();
        let suspects = self.keys.suspects.snapshot();
        let members = state
            .members
            .values()
            .map(|mem| {
                let role = match mem.status {
                    Role::Voter => NodeRole::Voter,
                    Role::Learner => NodeRole::Learner,
                };
                let matched = m
                    .replication
                    .as_ref()
                    .and_then(|r| r.get(&mem.id).cloned().flatten())
                    .map(|l| l.index)
                    .unwrap_or_default();
                let suspect = suspects.get(&mem.id);
                let health = if suspect.is_some() || state.keys.culprits.contains_key(&mem.id) {
                    NodeHealth::Suspect
                } else {
                    NodeHealth::Unspecified
                };
                MemberStatus {
                    node_id: mem.id,
                    address: mem.addr.clone(),
                    role: role as i32,
                    health: health as i32,
                    evidence_kind: EvidenceKind::Unspecified as i32,
                    measurements: [("mrtd".to_string(), hex::decode(&mem.mrtd).unwrap_or_default())].into(),
                    matched_index: matched,
                    last_contact_unix: 0,
                    invalid_shares: suspect.map_or(0, |s| s.invalid_shares),
                }
            })
            .collect();
        Ok(Response::new(StatusResponse {
            cluster_id: hex::encode(self.genesis.cluster_id),
            node_id: self.node_id,
            leader_id: m.current_leader.unwrap_or_default(),
            term: m.current_term,
            last_applied_index: m.last_applied.map(|l| l.index).unwrap_or_default(),
            committed_index: m.last_log_index.unwrap_or_default(),
            members,
            threshold: Some(threshold_status(&state.keys, &self.genesis)),
            alarms: alarms(&state.keys, &suspects),
            version: env!("CARGO_PKG_VERSION").to_string(),
        }))
    }

    #[tracing::instrument(skip_all, name = "admin.get_ca_certificates")]
    async fn get_ca_certificates(
        &self,
        req: Request<GetCaCertificatesRequest>,
    ) -> Result<Response<GetCaCertificatesResponse>, Status> {
        let ns = &req.get_ref().namespace;
        let (root, namespace) = self.state.with_state(|s| {
            let current = match s.namespaces.get(ns) {
                Some(n) => n.current_version,
                None if ns.is_empty() => 0,
                None => return Err(Status::not_found(format!("namespace {ns:?} does not exist"))),
            };
            let namespace = s.keys.namespace_cas.get(&(ns.clone(), current)).cloned();
            Ok((s.keys.root_ca.clone(), namespace))
        })?;
        let root_ca_der = root.ok_or_else(|| {
            Status::unavailable("the root CA certificate is not issued yet (the key generation is still running)")
        })?;
        let namespace_ca_der = match namespace {
            Some(der) => der,
            None if ns.is_empty() => Vec::new(),
            None => return Err(Status::unavailable(format!("namespace {ns:?}'s CA certificate is not issued yet"))),
        };
        Ok(Response::new(GetCaCertificatesResponse { root_ca_der, namespace_ca_der }))
    }

    #[tracing::instrument(skip_all, name = "admin.probe_keys")]
    async fn probe_keys(&self, req: Request<ProbeKeysRequest>) -> Result<Response<ProbeKeysResponse>, Status> {
        let req = req.into_inner();
        let version = match req.version {
            0 => self.state.with_state(|s| s.namespaces.get(&req.namespace).map_or(1, |n| n.current_version)),
            v => v,
        };
        let mut resp = ProbeKeysResponse {
            epoch: self.state.with_state(|s| s.keys.current.as_ref().map_or(0, |k| k.epoch)),
            ..Default::default()
        };
        match keys::derive::namespace_secret(&self.keys, &req.namespace, version, !req.bypass_cache).await {
            Ok(d) => {
                resp.secret_check = keys::derive::check_value(&d.secret).to_vec();
                resp.contributors = d.contributors;
                resp.culprits = d.culprits;
                resp.derive_micros = d.elapsed.as_micros() as u64;
            }
            Err(e) => resp.derive_error = e.to_string(),
        }
        if req.sign {
            match keys::ca::sign_root(&self.keys).await {
                Ok((_, s)) => {
                    resp.signers = s.signers;
                    resp.sign_culprits = s.culprits;
                    resp.sign_micros = s.elapsed.as_micros() as u64;
                }
                Err(e) => resp.sign_error = e.to_string(),
            }
        }
        Ok(Response::new(resp))
    }

    #[tracing::instrument(skip_all, name = "admin.get_recovery_escrow")]
    async fn get_recovery_escrow(
        &self,
        _req: Request<GetRecoveryEscrowRequest>,
    ) -> Result<Response<GetRecoveryEscrowResponse>, Status> {
        let json = keys::recovery::export(&self.keys).map_err(|e| Status::failed_precondition(e.to_string()))?;
        Ok(Response::new(GetRecoveryEscrowResponse { escrow_json: json.unwrap_or_default() }))
    }

    // skip_all: the request carries the admins' shares of the root keys.
    #[tracing::instrument(skip_all, name = "admin.recover")]
    async fn recover(&self, req: Request<RecoverRequest>) -> Result<Response<RecoverResponse>, Status> {
        let message = keys::recovery::accept(&self.keys, req.into_inner())
            .map_err(|e| Status::failed_precondition(e.to_string()))?;
        Ok(Response::new(RecoverResponse { message }))
    }

    async fn propose(&self, _r: Request<ProposeRequest>) -> Result<Response<ProposeResponse>, Status> {
        not_yet("proposals")
    }
    async fn approve(&self, _r: Request<ApproveRequest>) -> Result<Response<ApproveResponse>, Status> {
        not_yet("proposals")
    }
    async fn list_proposals(
        &self,
        _r: Request<ListProposalsRequest>,
    ) -> Result<Response<ListProposalsResponse>, Status> {
        not_yet("proposals")
    }
    async fn get_cluster_policy(
        &self,
        _r: Request<GetClusterPolicyRequest>,
    ) -> Result<Response<GetClusterPolicyResponse>, Status> {
        not_yet("policy listing")
    }
    async fn list_namespaces(
        &self,
        _r: Request<ListNamespacesRequest>,
    ) -> Result<Response<ListNamespacesResponse>, Status> {
        let namespaces = self.state.with_state(|s| {
            s.namespaces
                .iter()
                .map(|(n, ns)| NamespaceSummary {
                    namespace: n.clone(),
                    current_secret_version: ns.current_version,
                    policy_version: ns.policy_version,
                })
                .collect()
        });
        Ok(Response::new(ListNamespacesResponse { namespaces }))
    }
    #[tracing::instrument(skip_all, name = "admin.get_namespace")]
    async fn get_namespace(&self, r: Request<GetNamespaceRequest>) -> Result<Response<GetNamespaceResponse>, Status> {
        let name = r.into_inner().namespace;
        let ns = self
            .state
            .with_state(|s| s.namespaces.get(&name).cloned())
            .ok_or_else(|| Status::not_found(format!("namespace {name:?} does not exist")))?;
        // The ingest key needs the namespace secret; without threshold keys there is none yet.
        let ingest_public_key = match keys::derive::namespace_secret(&self.keys, &name, ns.current_version, true).await
        {
            Ok(d) => crate::keys::sealing::ingest_key(&d.secret).1.to_vec(),
            Err(e) => {
                tracing::debug!(error = %e, "no ingest key");
                Vec::new()
            }
        };
        let configs = ns
            .configs
            .iter()
            .map(|(n, c)| {
                let (content, backend_uri) = match &c.source {
                    ConfigSource::Inline(b) => (b.clone(), String::new()),
                    ConfigSource::Uri(u) => (Vec::new(), u.clone()),
                };
                ConfigInfo {
                    name: n.clone(),
                    digest: c.digest.to_vec(),
                    media_type: c.media_type.clone(),
                    content,
                    backend_uri,
                }
            })
            .collect();
        Ok(Response::new(GetNamespaceResponse {
            summary: Some(NamespaceSummary {
                namespace: name,
                current_secret_version: ns.current_version,
                policy_version: ns.policy_version,
            }),
            policy: ns.policy.clone().map(|toml| NamespacePolicy { toml }),
            active_secret_versions: ns.versions.keys().copied().collect(),
            ingest_public_key,
            stored_keys: ns
                .secrets
                .iter()
                .map(|(p, s)| StoredKeyInfo { key_path: p.clone(), written_at_unix: s.written_at, version: s.version })
                .collect(),
            configs,
            access_token_ids: vec![],
        }))
    }

    #[tracing::instrument(skip_all, name = "admin.list_certificates")]
    async fn list_certificates(
        &self,
        r: Request<ListCertificatesRequest>,
    ) -> Result<Response<ListCertificatesResponse>, Status> {
        let name = r.into_inner().namespace;
        let ns = self
            .state
            .with_state(|s| s.namespaces.get(&name).cloned())
            .ok_or_else(|| Status::not_found(format!("namespace {name:?} does not exist")))?;
        let doc = ns.document(&name).ok().flatten();
        let mut certificates: Vec<IssuedCertificate> = ns
            .certs
            .iter()
            .map(|(serial, c)| IssuedCertificate {
                serial: hex::decode(serial).unwrap_or_default(),
                subject: c.subject.clone(),
                matched_rule: c.rule.clone(),
                not_after_unix: c.not_after as i64,
                revoked: ns.revocation(serial, c, doc.as_ref()).is_some(),
            })
            .collect();
        certificates.sort_by_key(|c| std::cmp::Reverse(c.not_after_unix));
        Ok(Response::new(ListCertificatesResponse { certificates, next_page_token: String::new() }))
    }
    async fn audit_log(&self, _r: Request<AuditLogRequest>) -> Result<Response<AuditLogResponse>, Status> {
        not_yet("the audit log")
    }
    #[tracing::instrument(skip_all, name = "admin.list_join_requests")]
    async fn list_join_requests(
        &self,
        _r: Request<ListJoinRequestsRequest>,
    ) -> Result<Response<ListJoinRequestsResponse>, Status> {
        let requests = self.state.with_state(|s| self.joins.list(s));
        Ok(Response::new(ListJoinRequestsResponse { requests }))
    }
    async fn get_node_evidence(
        &self,
        _r: Request<GetNodeEvidenceRequest>,
    ) -> Result<Response<GetNodeEvidenceResponse>, Status> {
        not_yet("node evidence")
    }
}

/// The threshold keys as `guardctl status` shows them.
fn threshold_status(keys: &KeyState, genesis: &Genesis) -> ThresholdStatus {
    let epoch = keys.current.as_ref().map_or(0, |k| k.epoch);
    ThresholdStatus {
        threshold: u32::from(genesis.threshold),
        shares: keys.current.as_ref().map_or(0, |k| k.holders.len() as u32),
        bls_epoch: epoch,
        frost_epoch: epoch,
        resharing: keys.ceremony.is_some(),
        escrow_epoch: keys.escrow.as_ref().map_or(0, |e| e.keys.epoch),
        escrow_holders: keys.escrow.as_ref().map_or(0, |e| e.deals.len() as u32),
        escrow_complete: keys.escrow.as_ref().is_some_and(|e| e.complete()),
        awaiting_recovery: genesis.restore.is_some() && keys.current.is_none(),
    }
}

/// Ceremony culprits (proven, replicated) and peers this node caught
/// returning invalid shares (its own observation).
fn alarms(keys: &KeyState, suspects: &std::collections::BTreeMap<u64, super::keys::Suspect>) -> Vec<Alarm> {
    let proven = keys.culprits.iter().map(|(id, why)| Alarm {
        raised_at_unix: 0,
        node_id: *id,
        message: format!("disqualified from holding key shares: {why}"),
    });
    let seen = suspects.iter().map(|(id, s)| Alarm {
        raised_at_unix: s.last_at as i64,
        node_id: *id,
        message: format!("returned {} invalid threshold share(s); last: {}", s.invalid_shares, s.last_reason),
    });
    let failure = keys.last_failure.iter().map(|f| Alarm { raised_at_unix: 0, node_id: 0, message: f.clone() });
    proven.chain(seen).chain(failure).collect()
}
