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

use crate::raft::service::not_yet;
use crate::raft::types::Raft;
use crate::state::genesis::Genesis;
use crate::state::{admin, Command, MemberStatus as Role, Response as Applied};
use crate::store::StateView;

/// How long Submit waits for its entry to commit.
const COMMIT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

pub struct AdminServer {
    pub node_id: u64,
    pub raft: Raft,
    pub state: StateView,
    pub genesis: Genesis,
    pub clock: crate::net::ratls::Clock,
    pub joins: std::sync::Arc<super::joins::PendingJoins>,
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
                MemberStatus {
                    node_id: mem.id,
                    address: mem.addr.clone(),
                    role: role as i32,
                    health: NodeHealth::Unspecified as i32,
                    evidence_kind: EvidenceKind::Unspecified as i32,
                    measurements: [("mrtd".to_string(), hex::decode(&mem.mrtd).unwrap_or_default())].into(),
                    matched_index: matched,
                    last_contact_unix: 0,
                    invalid_shares: 0,
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
            threshold: Some(ThresholdStatus { threshold: self.genesis.threshold, ..Default::default() }),
            alarms: Vec::new(),
            version: env!("CARGO_PKG_VERSION").to_string(),
        }))
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
            s.namespaces.iter().map(|n| NamespaceSummary { namespace: n.clone(), ..Default::default() }).collect()
        });
        Ok(Response::new(ListNamespacesResponse { namespaces }))
    }
    async fn get_namespace(&self, _r: Request<GetNamespaceRequest>) -> Result<Response<GetNamespaceResponse>, Status> {
        not_yet("namespace details")
    }
    async fn list_certificates(
        &self,
        _r: Request<ListCertificatesRequest>,
    ) -> Result<Response<ListCertificatesResponse>, Status> {
        not_yet("certificates")
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
