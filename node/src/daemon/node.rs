//! Starting and running one guardian node.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use guardian_proto::v1::admin_service_server::AdminServiceServer;
use guardian_proto::v1::peer_service_server::PeerServiceServer;
use guardian_proto::v1::workload_service_server::WorkloadServiceServer;
use openraft::{Config as RaftConfig, SnapshotPolicy};
use tokio::sync::watch;

use super::admin::AdminServer;
use super::config::{Config, TeeConfig};
use super::health::{self, Health};
use super::joins::PendingJoins;
use super::keys::peers::Peers;
use super::keys::signing::NonceStore;
use super::keys::{KeyNode, Suspects};
use super::membership::{ask_to_join, bootstrap, membership_check, reconcile, Me, Observed, Provisional};
use crate::attest::sim::{SimMeasurements, SimTee, SimTrust};
use crate::attest::Verifier;
use crate::net::ratls::cert::{self, CertRequest, EvidenceSource, NodeKey};
use crate::net::ratls::grpc::{self, CredentialResolver};
use crate::net::ratls::verify::{AttestingPeerPolicy, PeerPolicy};
use crate::net::ratls::{system_clock, Clock};
use crate::raft::network::{BoxFuture, Connector, Network};
use crate::raft::service::PeerServer;
use crate::raft::types::Raft;
use crate::state::apply::NodeApplier;
use crate::state::genesis::Genesis;
use crate::state::NodeId;
use crate::store::{self, Sealer, StateView};

/// Lifetime of RA-TLS certificates; renewed with fresh evidence well before expiry.
const CERT_LIFETIME: u64 = 24 * 3600;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StartError(String);

fn err(context: &str) -> impl Fn(String) -> StartError + '_ {
    move |e| StartError(format!("{context}: {e}"))
}

/// Load the sealed node key, or make and seal one.
fn node_key(dir: &Path, sealer: &dyn Sealer) -> Result<NodeKey, StartError> {
    const AAD: &[u8] = b"guardian/node-key";
    let path = dir.join("node.key.sealed");
    match std::fs::read(&path) {
        Ok(sealed) => {
            let der = sealer.unseal(AAD, &sealed).map_err(|e| err("unsealing the node key")(e.to_string()))?;
            NodeKey::from_pkcs8_der(&der).map_err(|e| err("node key")(e.to_string()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = NodeKey::generate().map_err(|e| err("generating the node key")(e.to_string()))?;
            let sealed = sealer.seal(AAD, &key.pkcs8_der()).map_err(|e| err("sealing the node key")(e.to_string()))?;
            write_durably(&path, &sealed).map_err(|e| err("writing the node key")(e.to_string()))?;
            Ok(key)
        }
        Err(e) => Err(err("reading the node key")(e.to_string())),
    }
}

/// Write a file so that it survives a crash: temp file, fsync, rename, fsync the directory.
fn write_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Opens RA-TLS channels to peers, insisting the peer is the node we meant.
struct RaTlsConnector {
    creds: Arc<CredentialResolver>,
    policy: Arc<dyn PeerPolicy>,
    clock: Clock,
    source: Option<std::net::IpAddr>,
}

impl Connector for RaTlsConnector {
    fn connect(&self, target: NodeId, addr: String) -> BoxFuture<'static, Result<tonic::transport::Channel, String>> {
        let tls = grpc::client_tls(self.creds.clone(), self.policy.clone(), self.clock.clone(), Some(target));
        let source = self.source;
        Box::pin(async move {
            let tls = tls.map_err(|e| e.to_string())?;
            let addr: SocketAddr = tokio::net::lookup_host(&addr)
                .await
                .map_err(|e| e.to_string())?
                .next()
                .ok_or_else(|| format!("{addr} does not resolve"))?;
            grpc::connect_from(addr, source, tls).await.map_err(|e| e.to_string())
        })
    }
}

struct Ready {
    raft: Raft,
    state: StateView,
    me: NodeId,
    founder: bool,
    keys: Arc<KeyNode>,
}

impl Health for Ready {
    fn metrics(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let (epoch, holders, running) = self.state.with_state(|s| {
            let k = &s.keys;
            (
                k.current.as_ref().map_or(0, |c| c.epoch),
                k.current.as_ref().map_or(0, |c| c.holders.len()),
                k.ceremony.is_some(),
            )
        });
        let applied = self.raft.metrics().borrow().last_applied.map_or(0, |l| l.index);
        let mut gauge = |name: &str, help: &str, value: u64| {
            let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}\n");
        };
        gauge("guardian_raft_last_applied_index", "Last Raft log index this node applied.", applied);
        gauge("guardian_key_epoch", "Threshold key epoch in force (0 before the DKG completes).", epoch);
        gauge("guardian_key_holders", "Nodes holding a share of the current key epoch.", holders as u64);
        gauge("guardian_key_ceremony_running", "1 while a DKG or resharing is running.", u64::from(running));
        let name = "guardian_threshold_invalid_shares_total";
        let _ = write!(
            out,
            "# HELP {name} Invalid threshold shares this node caught, by sending peer.\n# TYPE {name} counter\n"
        );
        for (peer, s) in self.keys.suspects.snapshot() {
            let _ = writeln!(out, "{name}{{peer=\"{peer}\"}} {}", s.invalid_shares);
        }
        out
    }

    fn ready(&self) -> Result<(), String> {
        let (bootstrapped, member) =
            self.state.with_state(|s| (s.genesis_digest.is_some(), s.members.contains_key(&self.me)));
        if !bootstrapped {
            return Err(if self.founder { "not bootstrapped yet" } else { "waiting to be admitted" }.into());
        }
        if !member {
            // It applied its own revocation: it must not look healthy to an orchestrator.
            return Err("this node is not a member of the cluster (revoked)".into());
        }
        match self.raft.metrics().borrow().current_leader {
            Some(_) => Ok(()),
            None => Err("no leader".into()),
        }
    }
}

/// Run a node until `shutdown` resolves.
pub async fn run(
    config: Config,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let genesis_text =
        std::fs::read_to_string(&config.genesis).map_err(|e| err("reading the genesis file")(e.to_string()))?;
    let genesis = Genesis::parse(&genesis_text).map_err(|e| StartError(e.to_string()))?;
    // A genesis member is reached at its genesis address; any other node is
    // a joiner and says where it can be reached.
    let founder = genesis.member(config.node_id).is_some();
    let advertise = match (genesis.member(config.node_id), &config.peer_advertise) {
        (Some(m), Some(a)) if *a != m.addr => {
            return Err(StartError(format!(
                "peer_advertise {a} differs from node {}'s address {} in the genesis file",
                config.node_id, m.addr
            )))
        }
        (Some(m), _) => m.addr.clone(),
        (None, Some(a)) => a.clone(),
        (None, None) => {
            return Err(StartError(format!(
                "node {} is not in the genesis file, so it joins the running cluster: set peer_advertise (--peer-advertise) to the host:port other nodes reach its peer port at",
                config.node_id
            )))
        }
    };
    std::fs::create_dir_all(&config.data_dir).map_err(|e| err("creating the data directory")(e.to_string()))?;
    let clock = system_clock();

    let mut byzantine = super::config::Byzantine::default();
    let (source, verifier, mrtd): (Box<dyn EvidenceSource>, Arc<Verifier>, String) = match &config.tee {
        TeeConfig::InsecureSim { seed, trusted_keys, label, byzantine: faults } => {
            if *faults != super::config::Byzantine::default() {
                tracing::warn!(?faults, "INSECURE test faults enabled: this node will lie to its peers");
                byzantine = *faults;
            }
            tracing::warn!("INSECURE simulated TEE: this node proves nothing about its hardware; development only");
            let m = SimMeasurements::from_label(label);
            let mrtd = hex::encode(m.mrtd);
            let tee = SimTee::new(seed, m);
            let mut keys = trusted_keys.clone();
            keys.push(tee.public_key());
            let trust = SimTrust::insecure_for_development(&keys).map_err(|e| StartError(e.to_string()))?;
            (Box::new(tee), Arc::new(Verifier { sim: Some(trust), ..Verifier::default() }), mrtd)
        }
        TeeConfig::Tdx { .. } => {
            return Err(StartError(
                "TDX quote generation inside the guest is not available in this build yet; use the simulated TEE for development".into(),
            ))
        }
    };
    let sealer: Arc<dyn Sealer> =
        store::open_sealer(&config.sealer, &config.data_dir).map_err(|e| err("opening the sealer")(e.to_string()))?;
    let key = Arc::new(node_key(&config.data_dir, sealer.as_ref())?);
    let issue = {
        let cluster_id = genesis.cluster_id;
        let node_id = config.node_id;
        move |key: &NodeKey, now: u64| {
            cert::issue(key, &CertRequest { cluster_id, node_id, now, lifetime: CERT_LIFETIME }, source.as_ref())
                .map_err(|e| StartError(format!("issuing the RA-TLS certificate: {e}")))
        }
    };
    let creds = CredentialResolver::new(issue(&key, clock())?).map_err(|e| err("TLS credentials")(e.to_string()))?;
    tracing::info!(node = config.node_id, identity = %key.identity(), "node identity");

    // The guardian policy alone, without this node's membership checks: for
    // joiners, who are not members yet (and on apply, where the state machine
    // checks membership itself).
    let bare_policy =
        Arc::new(AttestingPeerPolicy::new(genesis.cluster_id, verifier.clone(), genesis.guardian_policy.clone()));
    let applier = Arc::new(NodeApplier { genesis: genesis.clone(), joiners: bare_policy.clone() });
    let (log, sm, secrets) =
        store::open(&config.data_dir, sealer.clone(), applier).map_err(|e| err("opening the store")(e.to_string()))?;
    let view = sm.view();
    if let Some(recorded) = view.with_state(|s| s.genesis_digest) {
        if recorded != genesis.digest {
            return Err(StartError(format!(
                "{} is not the genesis file this cluster was founded with (its SHA-256 differs from the one recorded at bootstrap); restore the original file",
                config.genesis.display()
            )));
        }
    }
    let observed: Observed = Arc::default();
    let provisional: Provisional = Arc::default();
    let workload_verifier = verifier.clone();
    let policy: Arc<dyn PeerPolicy> = Arc::new(
        AttestingPeerPolicy::new(genesis.cluster_id, verifier, genesis.guardian_policy.clone())
            .with_extra(membership_check(&genesis, view.clone(), observed.clone(), provisional.clone())),
    );
    let joins = Arc::new(PendingJoins::new(bare_policy, clock.clone()));

    let raft_config = RaftConfig {
        cluster_name: hex::encode(genesis.cluster_id),
        heartbeat_interval: config.heartbeat_ms,
        election_timeout_min: config.election_timeout_ms,
        election_timeout_max: config.election_timeout_ms * 2,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_every),
        max_in_snapshot_log_to_keep: config.snapshot_keep_logs,
        ..Default::default()
    }
    .validate()
    .map_err(|e| err("Raft configuration")(e.to_string()))?;
    let connector: Arc<dyn Connector> = Arc::new(RaTlsConnector {
        creds: creds.clone(),
        policy: policy.clone(),
        clock: clock.clone(),
        source: config.peer_source_ip,
    });
    let network = Network { connector: connector.clone() };
    let raft = Raft::new(config.node_id, Arc::new(raft_config), network, log, sm)
        .await
        .map_err(|e| err("starting Raft")(e.to_string()))?;
    let keys = Arc::new(KeyNode {
        me: config.node_id,
        cluster_id: genesis.cluster_id,
        threshold: genesis.threshold,
        key: key.clone(),
        secrets,
        view: view.clone(),
        raft: raft.clone(),
        peers: Peers::new(connector.clone(), view.clone()),
        clock: clock.clone(),
        suspects: Suspects::default(),
        nonces: NonceStore::default(),
        byzantine,
        recovery: genesis.recovery.clone(),
        restore: genesis.restore.clone(),
        recovered: std::sync::Mutex::new(None),
    });

    // One shutdown signal fans out to every task.
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };

    let peer_listener = tokio::net::TcpListener::bind(config.peer_listen)
        .await
        .map_err(|e| err("binding the peer port")(e.to_string()))?;
    let admin_listener = tokio::net::TcpListener::bind(config.admin_listen)
        .await
        .map_err(|e| err("binding the admin port")(e.to_string()))?;
    let health_listener = tokio::net::TcpListener::bind(config.health_listen)
        .await
        .map_err(|e| err("binding the health port")(e.to_string()))?;

    let peer_tls =
        grpc::server_tls(creds.clone(), policy.clone(), clock.clone()).map_err(|e| err("peer TLS")(e.to_string()))?;
    // Connections are re-established (and so re-attested) at least this often,
    // so an expired certificate or revoked peer cannot keep an old one open.
    let peer_router = tonic::transport::Server::builder().max_connection_age(Duration::from_secs(600)).add_service(
        PeerServiceServer::new(PeerServer {
            raft: raft.clone(),
            state: view.clone(),
            joins: joins.clone(),
            keys: keys.clone(),
        })
        .max_decoding_message_size(64 << 20),
    );
    let peer_task = tokio::spawn(grpc::serve(peer_listener, peer_tls, peer_router, stopped(stop_rx.clone())));

    let admin_tls = super::admin_tls(creds.clone()).map_err(|e| err("admin TLS")(e.to_string()))?;
    let admin_router = tonic::transport::Server::builder().add_service(AdminServiceServer::new(AdminServer {
        node_id: config.node_id,
        raft: raft.clone(),
        state: view.clone(),
        genesis: genesis.clone(),
        clock: clock.clone(),
        joins,
        keys: keys.clone(),
    }));
    let admin_task = tokio::spawn(grpc::serve(admin_listener, admin_tls, admin_router, stopped(stop_rx.clone())));

    // The workload port: RA-TLS server certificate, optional client certificates.
    let files = crate::workload::backend::FileBackend { roots: config.workload_config_dirs.clone() };
    let serving = Arc::new(super::workload::Serving::new(keys.clone(), workload_verifier, files));
    let workload_task = match config.workload_listen {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| err("binding the workload port")(e.to_string()))?;
            let tls =
                super::workload::tls::server_tls(creds.clone()).map_err(|e| err("workload TLS")(e.to_string()))?;
            let router = tonic::transport::Server::builder()
                .add_service(WorkloadServiceServer::new(super::workload::serve::WorkloadServer(serving.clone())));
            Some(tokio::spawn(grpc::serve(listener, tls, router, stopped(stop_rx.clone()))))
        }
        None => None,
    };
    // The CoCo port: Vault KV v1 and the KBS protocol over HTTPS.
    let coco_task = match &config.coco {
        Some(c) => {
            let listener = tokio::net::TcpListener::bind(c.listen)
                .await
                .map_err(|e| err("binding the coco port")(e.to_string()))?;
            let tls = super::coco::server_tls(c.tls.as_ref(), creds.clone()).map_err(err("coco TLS"))?;
            let collateral = match &config.tee {
                TeeConfig::Tdx { collateral: Some(path) } => Some(
                    std::fs::read(path)
                        .map_err(|e| e.to_string())
                        .and_then(|b| crate::attest::tdx::Collateral::from_json(&b).map_err(|e| e.to_string()))
                        .map_err(err("reading tee.collateral"))?,
                ),
                _ => None,
            };
            let audit = super::coco::audit::Audit::open(&config.data_dir.join("audit.jsonl"))
                .map_err(|e| err("opening the audit log")(e.to_string()))?;
            if c.insecure_sample_evidence {
                tracing::warn!(
                    "INSECURE: the coco port accepts CoCo sample evidence, which proves nothing (development only)"
                );
            }
            let coco = Arc::new(super::coco::Coco {
                serving: serving.clone(),
                sessions: Default::default(),
                audit,
                sample: c.insecure_sample_evidence,
                collateral,
                verified: Default::default(),
            });
            Some(tokio::spawn(super::coco::serve(listener, tls, coco, stopped(stop_rx.clone()))))
        }
        None => None,
    };

    let ready =
        Arc::new(Ready { raft: raft.clone(), state: view.clone(), me: config.node_id, founder, keys: keys.clone() });
    let health_task = tokio::spawn(health::serve(health_listener, ready, stopped(stop_rx.clone())));

    // Founders bootstrap from the genesis file; other nodes ask to join.
    let boot_task = if founder {
        let me = Me { id: config.node_id, identity: key.identity(), mrtd };
        tokio::spawn(bootstrap(
            raft.clone(),
            genesis.clone(),
            me,
            view.clone(),
            observed,
            connector.clone(),
            stopped(stop_rx.clone()),
        ))
    } else {
        tokio::spawn(ask_to_join(
            genesis.clone(),
            config.node_id,
            advertise.clone(),
            view.clone(),
            provisional,
            connector,
            stopped(stop_rx.clone()),
        ))
    };
    let members_task = tokio::spawn(reconcile(raft.clone(), config.node_id, view.clone(), stopped(stop_rx.clone())));
    let ceremony_task = tokio::spawn(super::keys::ceremony::run(keys.clone(), stopped(stop_rx.clone())));
    let ca_task = tokio::spawn(super::keys::ca::issue(keys.clone(), stopped(stop_rx.clone())));
    let renew_task = tokio::spawn({
        let creds = creds.clone();
        let clock = clock.clone();
        let stop = stopped(stop_rx.clone());
        async move {
            tokio::pin!(stop);
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(60)) => {}
                    _ = &mut stop => return,
                }
                if creds.needs_renewal(clock()) {
                    match issue(&key, clock()).map(|c| creds.renew(c)) {
                        Ok(Ok(())) => tracing::info!("renewed the RA-TLS certificate with fresh evidence"),
                        Ok(Err(e)) => tracing::error!(error = %e, "installing the renewed certificate failed"),
                        Err(e) => tracing::error!(error = %e, "renewing the RA-TLS certificate failed"),
                    }
                }
            }
        }
    });
    let workload = config.workload_listen.map(|a| a.to_string()).unwrap_or_else(|| "off".into());
    let coco = config.coco.as_ref().map(|c| c.listen.to_string()).unwrap_or_else(|| "off".into());
    tracing::info!(node = config.node_id, peer = %advertise, admin = %config.admin_listen, health = %config.health_listen, %workload, %coco, "guardian node started");

    shutdown.await;
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    if let Err(e) = raft.shutdown().await {
        tracing::warn!(error = %e, "Raft shutdown");
    }
    for t in [boot_task, renew_task, members_task, ceremony_task, ca_task] {
        let _ = t.await;
    }
    let _ = health_task.await;
    let _ = peer_task.await;
    let _ = admin_task.await;
    if let Some(t) = workload_task {
        let _ = t.await;
    }
    if let Some(t) = coco_task {
        let _ = t.await;
    }
    tracing::info!("stopped");
    Ok(())
}
