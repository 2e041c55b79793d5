//! The peer gRPC service: Raft RPCs into the local Raft node, join
//! requests, and the threshold protocols (ceremony messages, evaluation
//! shares, FROST signing rounds; see `daemon::keys`).

use guardian_proto::v1::peer_service_server::PeerService;
use guardian_proto::v1::{
    raft_response, round_message, EvalShareRequest, EvalShareResponse, FrostCommitRequest, FrostCommitResponse,
    FrostSignRequest, FrostSignResponse, JoinRequest, JoinResponse, ProposeRecordRequest, ProposeRecordResponse,
    RaftCodec, RaftRequest, RaftResponse, RoundAck, RoundMessage,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::{Request, Response, Status};

use zeroize::Zeroizing;

use super::types::Raft;
use crate::daemon::joins::PendingJoins;
use crate::daemon::keys::{self, KeyNode};
use crate::net::ratls::grpc::{peer_leaf, peer_node};
use crate::store::StateView;
use crate::threshold::ceremony::KeyCommand;
use crate::threshold::envelope::Envelope;

pub struct PeerServer {
    pub raft: Raft,
    pub state: StateView,
    pub joins: std::sync::Arc<PendingJoins>,
    pub keys: std::sync::Arc<KeyNode>,
}

impl PeerServer {
    /// Re-check the caller on every request, not only at the handshake: a
    /// connection opened before a revocation must not outlive it.
    fn admit<T>(&self, req: &Request<T>) -> Result<u64, Status> {
        let peer = peer_node(req).ok_or_else(|| Status::unauthenticated("no attested peer certificate"))?;
        self.state.with_state(|s| {
            if s.revoked.contains(&peer.identity) {
                return Err(Status::permission_denied(format!("node {} is revoked", peer.node_id)));
            }
            if s.genesis_digest.is_some() && s.members.get(&peer.node_id).map(|m| m.identity) != Some(peer.identity) {
                return Err(Status::permission_denied(format!(
                    "node {} is not a member with this identity",
                    peer.node_id
                )));
            }
            Ok(peer.node_id)
        })
    }

    /// A ceremony message from member `from`: a signed public message for
    /// the log (this node must be the leader), or a secret deal for this node.
    async fn round(&self, from: u64, msg: RoundMessage) -> Result<(), String> {
        let (public, bytes) = match msg.body {
            Some(round_message::Body::PublicPackage(b)) => (true, Zeroizing::new(b)),
            Some(round_message::Body::SecretSharePackage(b)) => (false, Zeroizing::new(b)),
            _ => return Err("unsupported round message".into()),
        };
        let envelope: Envelope = serde_json::from_slice(&bytes).map_err(|_| "not a signed key message")?;
        if envelope.from != from {
            return Err(format!("node {from} may only send its own messages"));
        }
        if public {
            if self.raft.metrics().borrow().current_leader != Some(self.keys.me) {
                return Err("this node is not the leader".into());
            }
            return self.keys.propose(KeyCommand::Signed(envelope)).await.map_err(|e| e.to_string());
        }
        if let Some(complaint) = keys::ceremony::receive(&self.keys, from, &envelope).map_err(|e| e.to_string())? {
            let node = self.keys.clone();
            tokio::spawn(async move {
                if let Err(e) = node.submit(&complaint).await {
                    tracing::warn!(error = %e, "filing a complaint");
                }
            });
        }
        Ok(())
    }
}

fn decode<T: DeserializeOwned>(req: &RaftRequest) -> Result<T, Status> {
    if req.codec != RaftCodec::Json as i32 {
        return Err(Status::invalid_argument("unsupported Raft codec"));
    }
    serde_json::from_slice(&req.payload).map_err(|e| Status::invalid_argument(format!("bad Raft payload: {e}")))
}

/// Package an openraft result: a Raft error is the remote's decision, carried as such.
fn encode<T: Serialize, E: Serialize>(result: Result<T, E>) -> Result<Response<RaftResponse>, Status> {
    let result = match result {
        Ok(v) => raft_response::Result::Payload(to_json(&v)?),
        Err(e) => raft_response::Result::RaftError(to_json(&e)?),
    };
    Ok(Response::new(RaftResponse { codec: RaftCodec::Json as i32, result: Some(result) }))
}

fn to_json<T: Serialize>(v: &T) -> Result<Vec<u8>, Status> {
    serde_json::to_vec(v).map_err(|e| Status::internal(format!("encoding Raft response: {e}")))
}

/// The answer for an RPC whose feature is not in this version.
pub fn not_yet<T>(what: &str) -> Result<Response<T>, Status> {
    Err(Status::unimplemented(format!("{what} arrives with a later version")))
}

#[tonic::async_trait]
impl PeerService for PeerServer {
    #[tracing::instrument(skip_all, name = "peer.append_entries")]
    async fn append_entries(&self, req: Request<RaftRequest>) -> Result<Response<RaftResponse>, Status> {
        self.admit(&req)?;
        encode(self.raft.append_entries(decode(req.get_ref())?).await)
    }

    #[tracing::instrument(skip_all, name = "peer.vote")]
    async fn vote(&self, req: Request<RaftRequest>) -> Result<Response<RaftResponse>, Status> {
        self.admit(&req)?;
        encode(self.raft.vote(decode(req.get_ref())?).await)
    }

    #[tracing::instrument(skip_all, name = "peer.install_snapshot")]
    async fn install_snapshot(&self, req: Request<RaftRequest>) -> Result<Response<RaftResponse>, Status> {
        self.admit(&req)?;
        encode(self.raft.install_snapshot(decode(req.get_ref())?).await)
    }

    /// Open to attested non-members: the handshake checked the evidence
    /// against the guardian policy; membership is what this decides.
    #[tracing::instrument(skip_all, name = "peer.join")]
    async fn join(&self, req: Request<JoinRequest>) -> Result<Response<JoinResponse>, Status> {
        let cert = peer_leaf(&req).ok_or_else(|| Status::unauthenticated("no attested peer certificate"))?;
        Ok(Response::new(self.joins.answer(&self.state, &cert, req.get_ref())))
    }

    #[tracing::instrument(skip_all, name = "peer.threshold_round")]
    async fn threshold_round(&self, req: Request<RoundMessage>) -> Result<Response<RoundAck>, Status> {
        let from = self.admit(&req)?;
        let ack = match self.round(from, req.into_inner()).await {
            Ok(()) => RoundAck { accepted: true, message: String::new() },
            Err(message) => RoundAck { accepted: false, message },
        };
        Ok(Response::new(ack))
    }

    #[tracing::instrument(skip_all, name = "peer.eval_share")]
    async fn eval_share(&self, req: Request<EvalShareRequest>) -> Result<Response<EvalShareResponse>, Status> {
        self.admit(&req)?;
        keys::derive::eval_share(&self.keys, req.get_ref()).await.map(Response::new)
    }

    #[tracing::instrument(skip_all, name = "peer.frost_commit")]
    async fn frost_commit(&self, req: Request<FrostCommitRequest>) -> Result<Response<FrostCommitResponse>, Status> {
        self.admit(&req)?;
        keys::signing::frost_commit(&self.keys, req.get_ref()).await.map(Response::new)
    }

    #[tracing::instrument(skip_all, name = "peer.propose_record")]
    async fn propose_record(
        &self,
        req: Request<ProposeRecordRequest>,
    ) -> Result<Response<ProposeRecordResponse>, Status> {
        let from = self.admit(&req)?;
        let envelope: Envelope = serde_json::from_slice(&req.get_ref().envelope_json)
            .map_err(|e| Status::invalid_argument(format!("not an envelope: {e}")))?;
        if envelope.from != from {
            return Err(Status::permission_denied(format!("node {from} forwarded node {}'s record", envelope.from)));
        }
        if self.raft.metrics().borrow().current_leader != Some(self.keys.me) {
            return Err(Status::unavailable("not the leader"));
        }
        match crate::daemon::workload::serve::commit_record(&self.keys, envelope).await {
            Ok(log_index) => Ok(Response::new(ProposeRecordResponse { log_index, refused: String::new() })),
            Err(crate::daemon::workload::ServeError::Denied(refused)) => {
                Ok(Response::new(ProposeRecordResponse { log_index: 0, refused }))
            }
            Err(e) => Err(e.into()),
        }
    }

    #[tracing::instrument(skip_all, name = "peer.frost_sign")]
    async fn frost_sign(&self, req: Request<FrostSignRequest>) -> Result<Response<FrostSignResponse>, Status> {
        self.admit(&req)?;
        keys::signing::frost_sign(&self.keys, req.get_ref()).await.map(Response::new)
    }
}
