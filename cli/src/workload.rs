//! `guardctl workload`: play an attested workload against a cluster's
//! workload ports (development and tests: the evidence comes from the
//! cluster's INSECURE simulated workload TEE). What a real workload does,
//! call by call, is in docs/workloads.md; this is that sequence.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use guardian_node::attest::sim::{SimMeasurements, SimTee};
use guardian_node::keys::sealing;
use guardian_node::net::ratls::grpc;
use guardian_node::net::ratls::system_clock;
use guardian_node::net::ratls::verify::AttestedServerVerifier;
use guardian_node::workload::challenge::binding;
use guardian_proto::v1::workload_service_client::WorkloadServiceClient;
use guardian_proto::v1::*;
use serde_json::json;
use tonic::transport::Channel;

use crate::cluster::{ClusterFile, NodeEntry};
use crate::output::out;
use crate::UsageError;

/// Measurements label of the demo workload (its policy rule names these).
pub const DEMO_WORKLOAD_LABEL: &str = "guardian-demo-app";

/// Files a workload identity is kept in (`--identity DIR`).
const CERT: &str = "cert.der";
const KEY: &str = "key.der";
const CHAIN: &str = "chain.json";

/// A workload's certificate and key, as `workload attest` wrote them.
pub struct Identity {
    pub cert: Vec<u8>,
    pub chain: Vec<Vec<u8>>,
    pub key_pkcs8: zeroize::Zeroizing<Vec<u8>>,
}

impl Identity {
    pub fn load(dir: &Path) -> Result<Self, UsageError> {
        let read = |f: &str| {
            std::fs::read(dir.join(f)).map_err(|e| {
                UsageError(format!(
                    "{}: {e} (run `guardctl workload attest --out {}`)",
                    dir.join(f).display(),
                    dir.display()
                ))
            })
        };
        let chain: Vec<String> = serde_json::from_slice(&read(CHAIN)?).map_err(|e| UsageError(e.to_string()))?;
        Ok(Identity {
            cert: read(CERT)?,
            chain: chain.iter().filter_map(|c| hex::decode(c).ok()).collect(),
            key_pkcs8: zeroize::Zeroizing::new(read(KEY)?),
        })
    }

    fn save(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join(CERT), &self.cert)?;
        let chain: Vec<String> = self.chain.iter().map(hex::encode).collect();
        std::fs::write(dir.join(CHAIN), serde_json::to_vec(&chain)?)?;
        crate::devup::write_secret(&dir.join(KEY), self.key_pkcs8.as_slice())?;
        Ok(())
    }
}

/// A connection to one node's workload port; the node must prove it is that node (RA-TLS).
pub async fn connect(
    cluster: &ClusterFile,
    node: &NodeEntry,
    identity: Option<&Identity>,
) -> anyhow::Result<WorkloadServiceClient<Channel>> {
    let admin = crate::admin_client::Admin::new(cluster)?;
    let policy = admin.shared_policy();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AttestedServerVerifier::new(policy, system_clock(), Some(node.id))));
    let mut cfg = match identity {
        Some(id) => {
            let chain =
                [&id.cert].into_iter().chain(&id.chain).map(|c| rustls::pki_types::CertificateDer::from(c.clone()));
            let key = rustls::pki_types::PrivateKeyDer::Pkcs8(id.key_pkcs8.to_vec().into());
            builder.with_client_auth_cert(chain.collect(), key)?
        }
        None => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    let addr = node
        .workload_addr
        .as_deref()
        .ok_or_else(|| UsageError(format!("node {} serves no workload port (cluster.json)", node.id)))?
        .parse()
        .map_err(|e| UsageError(format!("node {} workload address: {e}", node.id)))?;
    let channel = tokio::time::timeout(std::time::Duration::from_secs(5), grpc::connect(addr, Arc::new(cfg)))
        .await
        .map_err(|_| Unreachable(format!("node {}: connection timed out", node.id)))?
        .map_err(|e| Unreachable(format!("node {}: {e}", node.id)))?;
    Ok(WorkloadServiceClient::new(channel))
}

/// A node that could not be reached (another may answer).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Unreachable(String);

/// Run `call` on node `only`, or on each node with a workload port in turn
/// until one answers, as a workload given several endpoints does: a node
/// that cannot be reached or answers Unavailable is skipped; any other
/// answer, a refusal included, is final.
pub async fn on_any_node<'c, T, Fut>(
    cluster: &'c ClusterFile,
    only: Option<u64>,
    mut call: impl FnMut(&'c NodeEntry) -> Fut,
) -> anyhow::Result<(&'c NodeEntry, T)>
where
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    pick(cluster, only)?;
    let mut last = None;
    for node in cluster.nodes.iter().filter(|n| n.workload_addr.is_some() && only.is_none_or(|id| id == n.id)) {
        match call(node).await {
            Ok(v) => return Ok((node, v)),
            Err(e) if skippable(&e) => {
                eprintln!("guardctl: node {}: {e:#}; trying the next node", node.id);
                last = Some(e);
            }
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("no node answered")))
}

fn skippable(e: &anyhow::Error) -> bool {
    e.downcast_ref::<Unreachable>().is_some()
        || e.downcast_ref::<tonic::Status>().is_some_and(|s| s.code() == tonic::Code::Unavailable)
}

/// The cluster's simulated workload TEE (INSECURE), with the measurements of `label`.
pub fn sim_workload(cluster: &ClusterFile, label: &str) -> Result<SimTee, UsageError> {
    let seed = cluster
        .insecure_workload_seed
        .as_deref()
        .and_then(|s| hex::decode(s).ok())
        .and_then(|s| <[u8; 32]>::try_from(s).ok())
        .ok_or_else(|| UsageError("cluster.json has no simulated workload TEE (insecure_workload_seed)".into()))?;
    Ok(SimTee::new(&seed, SimMeasurements::from_label(label)))
}

/// Evidence from the simulated workload TEE bound to `nonce` and `spki`.
pub fn sim_evidence(tee: &SimTee, nonce: &[u8], spki: &[u8]) -> Evidence {
    Evidence { kind: EvidenceKind::Sim as i32, evidence: tee.evidence(&binding(nonce, spki)), ..Default::default() }
}

/// The node to use: `only`, or the first listed with a workload port.
pub fn pick(cluster: &ClusterFile, only: Option<u64>) -> Result<&NodeEntry, UsageError> {
    cluster
        .nodes
        .iter()
        .find(|n| n.workload_addr.is_some() && only.is_none_or(|id| id == n.id))
        .ok_or_else(|| UsageError("no such node with a workload port in cluster.json".into()))
}

/// Attest as the simulated workload and get a certificate for a new P-256 key.
pub async fn attest(
    cluster: &ClusterFile,
    node: &NodeEntry,
    namespace: &str,
    label: &str,
    validity: u32,
) -> anyhow::Result<(Identity, AttestResponse)> {
    let tee = sim_workload(cluster, label)?;
    let mut client = connect(cluster, node, None).await?;
    request_certificate(&mut client, &tee, namespace, validity).await
}

/// Challenge, evidence from `tee` bound to a new P-256 key, certificate: on an open connection.
pub async fn request_certificate(
    client: &mut WorkloadServiceClient<Channel>,
    tee: &SimTee,
    namespace: &str,
    validity: u32,
) -> anyhow::Result<(Identity, AttestResponse)> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let spki = rcgen::PublicKeyData::subject_public_key_info(&key);
    let nonce =
        client.get_challenge(GetChallengeRequest { namespace: namespace.to_string() }).await?.into_inner().nonce;
    let req = AttestRequest {
        namespace: namespace.to_string(),
        evidence: Some(sim_evidence(tee, &nonce, &spki)),
        nonce,
        subject: Some(attest_request::Subject::PublicKeySpkiDer(spki)),
        requested_validity_secs: validity,
    };
    let resp = client.attest(req).await?.into_inner();
    let identity = Identity {
        cert: resp.certificate_der.clone(),
        chain: resp.chain_der.clone(),
        key_pkcs8: zeroize::Zeroizing::new(key.serialize_der()),
    };
    Ok((identity, resp))
}

/// How a key request authenticates.
#[derive(Clone, Copy)]
pub enum KeyAuth<'a> {
    Certificate(&'a Identity),
    /// Fresh simulated evidence with this measurements label.
    FreshEvidence(&'a str),
}

/// A key from one node: (version, plaintext key).
pub async fn get_key(
    cluster: &ClusterFile,
    node: &NodeEntry,
    namespace: &str,
    path: &str,
    version: u32,
    auth: KeyAuth<'_>,
) -> anyhow::Result<(u32, zeroize::Zeroizing<Vec<u8>>)> {
    let (identity, fresh) = match auth {
        KeyAuth::Certificate(id) => (Some(id), None),
        KeyAuth::FreshEvidence(label) => (None, Some(sim_workload(cluster, label)?)),
    };
    let mut client = connect(cluster, node, identity).await?;
    request_key(&mut client, namespace, path, version, fresh.as_ref()).await
}

/// A key on an open connection: authenticated by the connection's client
/// certificate, or (with `fresh`) by new evidence from that TEE bound to a
/// new X25519 key, which the key then comes sealed to.
pub async fn request_key(
    client: &mut WorkloadServiceClient<Channel>,
    namespace: &str,
    path: &str,
    version: u32,
    fresh: Option<&SimTee>,
) -> anyhow::Result<(u32, zeroize::Zeroizing<Vec<u8>>)> {
    let mut req = GetKeyRequest { namespace: namespace.into(), key_path: path.into(), version, ..Default::default() };
    let mut opener = None;
    if let Some(tee) = fresh {
        let (sk, pk) = sealing::generate(&mut rand::thread_rng());
        let spki = sealing::x25519_spki(&pk);
        let nonce = client.get_challenge(GetChallengeRequest { namespace: namespace.into() }).await?.into_inner().nonce;
        req.fresh_evidence =
            Some(FreshEvidence { evidence: Some(sim_evidence(tee, &nonce, &spki)), nonce, public_key_spki_der: spki });
        opener = Some(sk);
    }
    let resp = client.get_key(req).await?.into_inner();
    let value = match (resp.secret, opener) {
        (Some(get_key_response::Secret::PlaintextSecret(v)), _) => zeroize::Zeroizing::new(v),
        (Some(get_key_response::Secret::EncryptedSecret(e)), Some(sk)) => {
            sealing::open(&sk, &sealing::key_context(namespace, path, resp.version), &e)?
        }
        _ => anyhow::bail!("the node answered without a key this workload can read"),
    };
    Ok((resp.version, value))
}

#[derive(clap::Subcommand)]
pub enum WorkloadCmd {
    /// Attest as the dev cluster's simulated workload (INSECURE) and save the certificate and key.
    Attest {
        #[arg(long)]
        namespace: String,
        /// Directory to write cert.der, chain.json and key.der to.
        #[arg(long)]
        out: PathBuf,
        /// Measurements label of the simulated workload.
        #[arg(long, default_value = DEMO_WORKLOAD_LABEL)]
        label: String,
        /// Requested certificate lifetime in seconds (0 = the profile's default).
        #[arg(long, default_value_t = 0)]
        validity: u32,
        #[command(flatten)]
        at: At,
    },
    /// Fetch a key by mTLS with a saved certificate, or with fresh simulated evidence.
    Key {
        #[arg(long)]
        namespace: String,
        /// Key path, e.g. pvc/db-data.
        path: String,
        /// Secret version (0 = current).
        #[arg(long, default_value_t = 0)]
        version: u32,
        /// Directory `workload attest` wrote (mTLS).
        #[arg(long, conflicts_with = "fresh")]
        identity: Option<PathBuf>,
        /// Authenticate with fresh simulated evidence instead (the key comes sealed to a new X25519 key).
        #[arg(long)]
        fresh: bool,
        #[arg(long, default_value = DEMO_WORKLOAD_LABEL)]
        label: String,
        #[command(flatten)]
        at: At,
    },
    /// Fetch a config with its references resolved (mTLS with a saved certificate).
    Config {
        #[arg(long)]
        namespace: String,
        name: String,
        #[arg(long)]
        identity: PathBuf,
        #[command(flatten)]
        at: At,
    },
}

/// Which cluster and node (its workload port), and the output format.
pub use crate::nsctl::ReadArgs as At;

pub fn run(cmd: WorkloadCmd) -> anyhow::Result<ExitCode> {
    tokio::runtime::Runtime::new()?.block_on(async move {
        match cmd {
            WorkloadCmd::Attest { namespace, out: dir, label, validity, at } => {
                let cluster = ClusterFile::load(&at.cluster)?;
                let (node, (identity, resp)) =
                    on_any_node(&cluster, at.node, |n| attest(&cluster, n, &namespace, &label, validity)).await?;
                identity.save(&dir)?;
                if at.json {
                    out!("{}", json!({"node": node.id, "rule": resp.matched_rule, "expires_at": resp.expires_at_unix, "dir": dir}));
                } else {
                    out!("node {} issued a certificate (rule {:?}, expires {}); saved in {}", node.id, resp.matched_rule, guardian_node::rfc3339::format(resp.expires_at_unix as u64), dir.display());
                }
            }
            WorkloadCmd::Key { namespace, path, version, identity, fresh, label, at } => {
                let cluster = ClusterFile::load(&at.cluster)?;
                let loaded = identity.as_deref().map(Identity::load).transpose()?;
                let auth = match (&loaded, fresh) {
                    (Some(id), false) => KeyAuth::Certificate(id),
                    (None, true) => KeyAuth::FreshEvidence(&label),
                    _ => return Err(UsageError("give --identity DIR (mTLS) or --fresh".into()).into()),
                };
                let (node, (version, value)) =
                    on_any_node(&cluster, at.node, |n| get_key(&cluster, n, &namespace, &path, version, auth)).await?;
                let check = fingerprint(&value);
                if at.json {
                    out!("{}", json!({"node": node.id, "path": path, "version": version, "len": value.len(), "check": check}));
                } else {
                    out!("node {} served {path} v{version} ({} bytes, fingerprint {check})", node.id, value.len());
                }
            }
            WorkloadCmd::Config { namespace, name, identity, at } => {
                let cluster = ClusterFile::load(&at.cluster)?;
                let id = Identity::load(&identity)?;
                let req = GetConfigRequest {
                    namespace,
                    selector: Some(get_config_request::Selector::Name(name)),
                    ..Default::default()
                };
                let (node, resp) = on_any_node(&cluster, at.node, |n| async {
                    let mut client = connect(&cluster, n, Some(&id)).await?;
                    Ok(client.get_config(req.clone()).await?.into_inner())
                })
                .await?;
                let refs: Vec<serde_json::Value> = resp.references.iter().map(describe_reference).collect();
                if at.json {
                    out!("{}", json!({"node": node.id, "name": resp.name, "digest": hex::encode(&resp.digest), "content": String::from_utf8_lossy(&resp.content), "references": refs}));
                } else {
                    out!("config {} ({}, sha256 {})\n{}", resp.name, resp.media_type, hex::encode(&resp.digest), String::from_utf8_lossy(&resp.content));
                    for r in refs {
                        out!("  {r}");
                    }
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// A short fingerprint of a key for display and comparison: equal keys give equal fingerprints,
/// and it reveals nothing useful about the key.
pub fn fingerprint(value: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::new_with_prefix(b"guardian/key-fingerprint/v1\0").chain_update(value).finalize()[..8])
}

/// A resolved reference for display: never the secret itself, only its size.
pub fn describe_reference(r: &ResolvedReference) -> serde_json::Value {
    let value = match &r.value {
        Some(resolved_reference::Value::ConfigContent(c)) => json!({"config_bytes": c.len()}),
        Some(resolved_reference::Value::PlaintextSecret(s)) => json!({"secret_bytes": s.len()}),
        Some(resolved_reference::Value::EncryptedSecret(e)) => json!({"sealed_to": hex::encode(&e.recipient_key_id)}),
        None => json!(null),
    };
    json!({"reference": r.reference, "value": value})
}
