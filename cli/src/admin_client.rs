//! Talking to a node's admin port: TLS where the node must present valid
//! RA-TLS evidence accepted by the genesis guardian policy; guardctl presents
//! no certificate (its commands are signed instead).

use std::sync::Arc;

use guardian_node::attest::sim::SimTrust;
use guardian_node::attest::Verifier;
use guardian_node::net::ratls::grpc;
use guardian_node::net::ratls::system_clock;
use guardian_node::net::ratls::verify::{AttestedServerVerifier, AttestingPeerPolicy};
use guardian_proto::v1::admin_service_client::AdminServiceClient;
use tonic::transport::Channel;

use crate::cluster::{ClusterFile, NodeEntry};
use crate::UsageError;

pub struct Admin {
    policy: Arc<AttestingPeerPolicy>,
}

impl Admin {
    pub fn new(cluster: &ClusterFile) -> anyhow::Result<Self> {
        let genesis = cluster.genesis()?;
        let mut verifier = Verifier::default();
        if !cluster.insecure_sim_keys.is_empty() {
            let keys = crate::hex_keys(&cluster.insecure_sim_keys, "cluster.json insecure_sim_keys")?;
            verifier.sim = Some(SimTrust::insecure_for_development(&keys)?);
        }
        let policy =
            Arc::new(AttestingPeerPolicy::new(genesis.cluster_id, Arc::new(verifier), genesis.guardian_policy.clone()));
        Ok(Admin { policy })
    }

    /// The genesis guardian policy, as guardctl checks nodes against it.
    pub fn policy(&self) -> &AttestingPeerPolicy {
        &self.policy
    }

    /// The same policy, shared (for other attested connections, e.g. workload ports).
    pub fn shared_policy(&self) -> Arc<AttestingPeerPolicy> {
        self.policy.clone()
    }

    /// An admin client for one node; the node must prove it is that node.
    pub async fn connect(&self, node: &NodeEntry) -> anyhow::Result<AdminServiceClient<Channel>> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AttestedServerVerifier::new(
                self.policy.clone(),
                system_clock(),
                Some(node.id),
            )))
            .with_no_client_auth();
        cfg.alpn_protocols = vec![b"h2".to_vec()];
        let addr = node.admin_addr.parse().map_err(|e| UsageError(format!("node {} admin address: {e}", node.id)))?;
        let channel = tokio::time::timeout(std::time::Duration::from_secs(5), grpc::connect(addr, Arc::new(cfg)))
            .await
            .map_err(|_| anyhow::anyhow!("node {}: connection timed out", node.id))??;
        Ok(AdminServiceClient::new(channel))
    }
}

/// Ask one node (`only`), or each node in turn until one answers, and
/// return the first answer with the id of the node that gave it.
pub async fn ask_first<T, F, Fut>(cluster: &ClusterFile, only: Option<u64>, mut ask: F) -> anyhow::Result<(u64, T)>
where
    F: FnMut(AdminServiceClient<Channel>) -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    let admin = Admin::new(cluster)?;
    let mut last = String::from("no such node in cluster.json");
    for n in cluster.nodes.iter().filter(|n| only.is_none_or(|id| id == n.id)) {
        let reply = match admin.connect(n).await {
            Ok(c) => ask(c).await.map_err(|e| e.message().to_string()),
            Err(e) => Err(format!("{e:#}")),
        };
        match reply {
            Ok(r) => return Ok((n.id, r.into_inner())),
            Err(e) => last = format!("node {}: {e}", n.id),
        }
    }
    Err(anyhow::anyhow!("no node answered: {last}"))
}
