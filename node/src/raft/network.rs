//! openraft's network over the peer gRPC service.
//!
//! openraft requests and responses travel as serde_json bytes inside
//! `RaftRequest`/`RaftResponse`. Failures are mapped so Raft can tell them
//! apart: no connection → `Unreachable` (back off), a Raft error decided by
//! the remote node → `RemoteError`, anything else → `Network`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use guardian_proto::v1::peer_service_client::PeerServiceClient;
use guardian_proto::v1::{raft_response, RaftCodec, RaftRequest, RaftResponse};
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::transport::Channel;

use super::types::{NodeAddr, TypeConfig};
use crate::state::NodeId;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Opens an (attested) channel to a peer. The daemon implements it with RA-TLS.
pub trait Connector: Send + Sync + 'static {
    fn connect(&self, target: NodeId, addr: String) -> BoxFuture<'static, Result<Channel, String>>;
}

/// Creates one [`PeerClient`] per target node.
#[derive(Clone)]
pub struct Network {
    pub connector: Arc<dyn Connector>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &NodeAddr) -> PeerClient {
        PeerClient { target, addr: node.addr.clone(), connector: self.connector.clone(), client: None }
    }
}

/// The Raft client for one peer; connects lazily and reconnects after a failure.
pub struct PeerClient {
    target: NodeId,
    addr: String,
    connector: Arc<dyn Connector>,
    client: Option<PeerServiceClient<Channel>>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Failure(String);

#[derive(Clone, Copy)]
enum Rpc {
    AppendEntries,
    Vote,
    InstallSnapshot,
}

impl PeerClient {
    async fn call<Req, Resp, E>(&mut self, rpc: Rpc, req: &Req) -> Result<Resp, RPCError<NodeId, NodeAddr, E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let payload = serde_json::to_vec(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let request = RaftRequest { codec: RaftCodec::Json as i32, payload };
        let client = match &mut self.client {
            Some(c) => c,
            None => {
                let channel = self
                    .connector
                    .connect(self.target, self.addr.clone())
                    .await
                    .map_err(|e| RPCError::Unreachable(Unreachable::new(&Failure(e))))?;
                self.client.insert(PeerServiceClient::new(channel))
            }
        };
        let result = match rpc {
            Rpc::AppendEntries => client.append_entries(request).await,
            Rpc::Vote => client.vote(request).await,
            Rpc::InstallSnapshot => client.install_snapshot(request).await,
        };
        let response: RaftResponse = match result {
            Ok(r) => r.into_inner(),
            Err(status) => {
                // The channel may be broken (peer restarted, certificate renewed): reconnect next time.
                self.client = None;
                let f = Failure(format!("peer {} ({}): {}", self.target, self.addr, status.message()));
                return Err(match status.code() {
                    tonic::Code::Unavailable | tonic::Code::Unknown => RPCError::Unreachable(Unreachable::new(&f)),
                    _ => RPCError::Network(NetworkError::new(&f)),
                });
            }
        };
        match response.result {
            Some(raft_response::Result::Payload(p)) => {
                serde_json::from_slice(&p).map_err(|e| RPCError::Network(NetworkError::new(&e)))
            }
            Some(raft_response::Result::RaftError(e)) => {
                let e: E = serde_json::from_slice(&e).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
                Err(RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            Some(raft_response::Result::Error(d)) => Err(RPCError::Network(NetworkError::new(&Failure(d.message)))),
            None => Err(RPCError::Network(NetworkError::new(&Failure("empty Raft response".into())))),
        }
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, NodeAddr, RaftError<NodeId>>> {
        self.call(Rpc::AppendEntries, &rpc).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RPCError<NodeId, NodeAddr, RaftError<NodeId, InstallSnapshotError>>>
    {
        self.call(Rpc::InstallSnapshot, &rpc).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        _option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, NodeAddr, RaftError<NodeId>>> {
        self.call(Rpc::Vote, &rpc).await
    }
}
