//! RA-TLS channels to the other members, opened once and reused: a key
//! operation must not pay for a fresh attested handshake per share.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use std::time::Duration;

use guardian_proto::v1::peer_service_client::PeerServiceClient;
use guardian_proto::v1::RoundMessage;
use tonic::transport::Channel;

use super::KeyError;
use crate::raft::network::Connector;
use crate::state::NodeId;
use crate::store::StateView;

pub struct Peers {
    connector: Arc<dyn Connector>,
    view: StateView,
    open: Mutex<BTreeMap<NodeId, (String, Channel)>>,
}

impl Peers {
    pub fn new(connector: Arc<dyn Connector>, view: StateView) -> Self {
        Peers { connector, view, open: Mutex::default() }
    }

    /// A client for member `node`, at the address the replicated state gives.
    pub async fn client(&self, node: NodeId) -> Result<PeerServiceClient<Channel>, KeyError> {
        let addr = self
            .view
            .with_state(|s| s.members.get(&node).map(|m| m.addr.clone()))
            .ok_or_else(|| KeyError::Other(format!("node {node} is not a member")))?;
        let cached = self.open.lock().unwrap_or_else(PoisonError::into_inner).get(&node).cloned();
        if let Some((a, channel)) = cached {
            if a == addr {
                return Ok(PeerServiceClient::new(channel).max_decoding_message_size(16 << 20));
            }
        }
        let channel = self
            .connector
            .connect(node, addr.clone())
            .await
            .map_err(|e| KeyError::Other(format!("node {node} unreachable: {e}")))?;
        self.open.lock().unwrap_or_else(PoisonError::into_inner).insert(node, (addr, channel.clone()));
        Ok(PeerServiceClient::new(channel).max_decoding_message_size(16 << 20))
    }

    /// Forget the channel to `node` after a transport failure, so the next
    /// call reconnects (and re-attests).
    fn forget(&self, node: NodeId) {
        self.open.lock().unwrap_or_else(PoisonError::into_inner).remove(&node);
    }

    /// One call to member `node`, bounded by `timeout`. A channel that failed
    /// is dropped, so the next call reconnects.
    pub async fn call<R, F, Fut>(&self, node: NodeId, timeout: Duration, f: F) -> Result<R, String>
    where
        F: FnOnce(PeerServiceClient<Channel>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<R>, tonic::Status>>,
    {
        let client = self.client(node).await.map_err(|e| e.to_string())?;
        match tokio::time::timeout(timeout, f(client)).await {
            Ok(Ok(r)) => Ok(r.into_inner()),
            Ok(Err(s)) => {
                if matches!(s.code(), tonic::Code::Unavailable | tonic::Code::Unknown) {
                    self.forget(node);
                }
                Err(s.message().to_string())
            }
            Err(_) => Err("timed out".into()),
        }
    }

    /// Send a ceremony message to member `node`; `Ok` once it accepted it.
    /// The leader answers a public message only once it is committed, hence
    /// the long timeout.
    pub async fn send_round(&self, node: NodeId, msg: RoundMessage) -> Result<(), KeyError> {
        let ack = self
            .call(node, Duration::from_secs(15), |mut c| async move { c.threshold_round(msg).await })
            .await
            .map_err(|e| KeyError::Other(format!("node {node}: {e}")))?;
        match ack.accepted {
            true => Ok(()),
            false => Err(KeyError::Other(format!("node {node} refused: {}", ack.message))),
        }
    }
}
