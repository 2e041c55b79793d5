//! RA-TLS end to end: real sockets on 127.0.0.1, real TLS, the simulated TEE,
//! and a tiny AdminService that reports who called it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use guardian_proto::v1::*;
use guardian_proto::{AdminService, AdminServiceClient, AdminServiceServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tonic::{Request, Response, Status};

use super::cert::{build_certificate, evidence_oid_content, issue, CertRequest, Credentials, NodeKey};
use super::grpc::{client_tls, connect_peer, peer_identity, peer_node, serve_with, server_tls, ConnectError};
use super::verify::{inspect_peer, AttestingPeerPolicy, ExtraCheck, PeerId, PeerPolicy, PeerRejection};
use super::{Clock, CredentialResolver, ServeOptions};
use crate::attest::sim::{SimMeasurements, SimTee, SimTrust};
use crate::attest::Verifier;
use crate::policy::{NamespacePolicy, PolicySet};
use crate::state::NodeIdentity;

const CLUSTER: [u8; 16] = [0x42; 16];
const NOW: u64 = 1_800_000_000;
const DAY: u64 = 24 * 3600;

fn tee(seed: u8, label: &str) -> SimTee {
    SimTee::new(&[seed; 32], SimMeasurements::from_label(label))
}

/// The guardian policy: sim evidence with the "guardian" measurements.
fn guardian_policy() -> NamespacePolicy {
    let m = SimMeasurements::from_label("guardian");
    let toml = format!(
        "[namespaces.guardian]\ntees = [\"sim\"]\naccepted_tcb_status = [\"Simulated\"]\n\
         [[namespaces.guardian.tdx]]\nname = \"guardian-sim\"\nmrtd = \"{}\"\nrtmr0 = \"{}\"\nrtmr1 = \"{}\"\n\
         rtmr2 = \"{}\"\nrtmr3 = \"{}\"\n",
        hex::encode(m.mrtd),
        hex::encode(m.rtmr[0]),
        hex::encode(m.rtmr[1]),
        hex::encode(m.rtmr[2]),
        hex::encode(m.rtmr[3]),
    );
    PolicySet::from_toml(&toml).unwrap().namespace("guardian").unwrap().clone()
}

/// Sim keys of seeds 1..=9 are trusted (so a wrong measurement is refused by
/// the policy, not by the signature).
fn policy_with(extra: Option<ExtraCheck>) -> Arc<dyn PeerPolicy> {
    let keys: Vec<[u8; 32]> = (1..=9).map(|s| tee(s, "x").public_key()).collect();
    let verifier = Verifier { sim: Some(SimTrust::insecure_for_development(&keys).unwrap()), ..Verifier::default() };
    let mut p = AttestingPeerPolicy::new(CLUSTER, Arc::new(verifier), guardian_policy());
    if let Some(extra) = extra {
        p = p.with_extra(extra);
    }
    Arc::new(p)
}

fn policy() -> Arc<dyn PeerPolicy> {
    policy_with(None)
}

fn clock_at(t: u64) -> (Clock, Arc<AtomicU64>) {
    let cell = Arc::new(AtomicU64::new(t));
    let c = cell.clone();
    (Arc::new(move || c.load(Ordering::SeqCst)), cell)
}

fn fixed_clock() -> Clock {
    clock_at(NOW).0
}

fn creds(key: &NodeKey, node_id: u64, label: &str) -> Credentials {
    let req = CertRequest { cluster_id: CLUSTER, node_id, now: NOW, lifetime: DAY };
    issue(key, &req, &tee(node_id as u8, label)).unwrap()
}

fn node(node_id: u64) -> Arc<CredentialResolver> {
    CredentialResolver::new(creds(&NodeKey::generate().unwrap(), node_id, "guardian")).unwrap()
}

/// Credentials around a hand-built certificate (for the refusal cases).
fn raw_creds(key: &NodeKey, node_id: u64, cert: rustls::pki_types::CertificateDer<'static>) -> Credentials {
    Credentials {
        cert,
        key: rustls::pki_types::PrivateKeyDer::Pkcs8(key.pkcs8_der().to_vec().into()),
        cluster_id: CLUSTER,
        node_id,
        identity: key.identity(),
        not_before: NOW - 60,
        not_after: NOW + DAY,
    }
}

/// The evidence extnValue of a certificate.
fn extension_value(cert: &[u8]) -> Vec<u8> {
    let (_, c) = x509_parser::parse_x509_certificate(cert).unwrap();
    let oid = evidence_oid_content();
    c.extensions().iter().find(|e| e.oid.as_bytes() == oid.as_slice()).unwrap().value.to_vec()
}

/// What the test service saw of each caller.
type Seen = Arc<Mutex<Vec<(Option<NodeIdentity>, Option<PeerId>)>>>;

/// An AdminService that answers `status` with its node id and the caller's identity.
struct TestAdmin {
    node_id: u64,
    seen: Seen,
}

fn unimplemented<T>() -> Result<Response<T>, Status> {
    Err(Status::unimplemented("test service"))
}

#[tonic::async_trait]
impl AdminService for TestAdmin {
    async fn submit(&self, _: Request<SubmitRequest>) -> Result<Response<SubmitResponse>, Status> {
        unimplemented()
    }
    async fn propose(&self, _: Request<ProposeRequest>) -> Result<Response<ProposeResponse>, Status> {
        unimplemented()
    }
    async fn approve(&self, _: Request<ApproveRequest>) -> Result<Response<ApproveResponse>, Status> {
        unimplemented()
    }
    async fn list_proposals(
        &self,
        _: Request<ListProposalsRequest>,
    ) -> Result<Response<ListProposalsResponse>, Status> {
        unimplemented()
    }
    async fn status(&self, req: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        let (identity, node) = (peer_identity(&req), peer_node(&req));
        self.seen.lock().unwrap().push((identity, node));
        let caller = identity.map(|i| hex::encode(i.0)).unwrap_or_default();
        Ok(Response::new(StatusResponse { node_id: self.node_id, cluster_id: caller, ..Default::default() }))
    }
    async fn get_cluster_policy(
        &self,
        _: Request<GetClusterPolicyRequest>,
    ) -> Result<Response<GetClusterPolicyResponse>, Status> {
        unimplemented()
    }
    async fn list_namespaces(
        &self,
        _: Request<ListNamespacesRequest>,
    ) -> Result<Response<ListNamespacesResponse>, Status> {
        unimplemented()
    }
    async fn get_namespace(&self, _: Request<GetNamespaceRequest>) -> Result<Response<GetNamespaceResponse>, Status> {
        unimplemented()
    }
    async fn list_certificates(
        &self,
        _: Request<ListCertificatesRequest>,
    ) -> Result<Response<ListCertificatesResponse>, Status> {
        unimplemented()
    }
    async fn audit_log(&self, _: Request<AuditLogRequest>) -> Result<Response<AuditLogResponse>, Status> {
        unimplemented()
    }
    async fn list_join_requests(
        &self,
        _: Request<ListJoinRequestsRequest>,
    ) -> Result<Response<ListJoinRequestsResponse>, Status> {
        unimplemented()
    }
    async fn get_node_evidence(
        &self,
        _: Request<GetNodeEvidenceRequest>,
    ) -> Result<Response<GetNodeEvidenceResponse>, Status> {
        unimplemented()
    }
    async fn get_ca_certificates(
        &self,
        _: Request<GetCaCertificatesRequest>,
    ) -> Result<Response<GetCaCertificatesResponse>, Status> {
        unimplemented()
    }
    async fn probe_keys(&self, _: Request<ProbeKeysRequest>) -> Result<Response<ProbeKeysResponse>, Status> {
        unimplemented()
    }
    async fn get_recovery_escrow(
        &self,
        _: Request<GetRecoveryEscrowRequest>,
    ) -> Result<Response<GetRecoveryEscrowResponse>, Status> {
        unimplemented()
    }
    async fn recover(&self, _: Request<RecoverRequest>) -> Result<Response<RecoverResponse>, Status> {
        unimplemented()
    }
}

struct Server {
    addr: SocketAddr,
    seen: Seen,
    refused: Arc<Mutex<Vec<PeerRejection>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
}

impl Server {
    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(5), self.task).await.unwrap().unwrap().unwrap();
    }

    fn refused(&self) -> Vec<PeerRejection> {
        self.refused.lock().unwrap().clone()
    }
}

async fn start(node_id: u64, creds: Arc<CredentialResolver>, policy: Arc<dyn PeerPolicy>, clock: Clock) -> Server {
    start_with_timeout(node_id, creds, policy, clock, Duration::from_secs(5)).await
}

async fn start_with_timeout(
    node_id: u64,
    creds: Arc<CredentialResolver>,
    policy: Arc<dyn PeerPolicy>,
    clock: Clock,
    handshake_timeout: Duration,
) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let refused = Arc::new(Mutex::new(Vec::new()));
    let tls = server_tls(creds, policy, clock).unwrap();
    let router = tonic::transport::Server::builder()
        .add_service(AdminServiceServer::new(TestAdmin { node_id, seen: seen.clone() }));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let r = refused.clone();
    let opts = ServeOptions {
        handshake_timeout,
        on_rejection: Some(Arc::new(move |_, rej: &PeerRejection| r.lock().unwrap().push(rej.clone()))),
        ..ServeOptions::default()
    };
    let task = tokio::spawn(serve_with(listener, tls, router, async { drop(stopped.await) }, opts));
    Server { addr, seen, refused, stop: Some(stop), task }
}

/// Connect and call `status`: the peer the client saw, and the response.
async fn call(
    addr: SocketAddr,
    creds: Arc<CredentialResolver>,
    policy: Arc<dyn PeerPolicy>,
    clock: Clock,
    expected: Option<u64>,
) -> Result<(PeerId, StatusResponse), String> {
    let tls = client_tls(creds, policy, clock, expected).unwrap();
    let (channel, peer) = connect_peer(addr, tls).await.map_err(|e| e.to_string())?;
    let resp =
        AdminServiceClient::new(channel).status(StatusRequest {}).await.map_err(|s| format!("rpc failed: {s}"))?;
    Ok((peer, resp.into_inner()))
}

/// Wait (briefly) until the server recorded a refusal, and return it.
async fn refusal(server: &Server) -> PeerRejection {
    for _ in 0..100 {
        if let Some(r) = server.refused().into_iter().next() {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the server recorded no refusal")
}

#[tokio::test]
async fn mutual_success_both_sides_see_each_other() {
    let (a, b) = (node(1), node(2));
    let server = start(1, a.clone(), policy(), fixed_clock()).await;
    let (peer, resp) = call(server.addr, b.clone(), policy(), fixed_clock(), Some(1)).await.unwrap();
    // The client saw node 1 with A's key; the server saw node 2 with B's key.
    assert_eq!(peer.node_id, 1);
    assert_eq!(peer.identity, a.credentials().identity);
    assert_eq!(peer.cluster_id, CLUSTER);
    assert_eq!(resp.node_id, 1);
    assert_eq!(resp.cluster_id, hex::encode(b.credentials().identity.0));
    let seen = server.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].0, Some(b.credentials().identity));
    assert_eq!(seen[0].1.map(|p| p.node_id), Some(2));
    assert!(server.refused().is_empty());

    // Dialling with the wrong expected node id is refused by the client.
    let err = call(server.addr, b.clone(), policy(), fixed_clock(), Some(3)).await.unwrap_err();
    assert!(err.contains("dialled node 3, but the peer is node 1"), "{err}");
    // Without an expectation any attested node will do.
    assert!(call(server.addr, b, policy(), fixed_clock(), None).await.is_ok());
    server.stop().await;
}

#[tokio::test]
async fn the_policy_check_returns_what_it_verified() {
    let a = creds(&NodeKey::generate().unwrap(), 1, "guardian");
    let info = inspect_peer(&a.cert, &[], NOW, &*policy(), None).unwrap();
    assert_eq!(info.node_id, 1);
    assert_eq!(info.identity, a.identity);
    assert_eq!(info.claims.mrtd, hex::encode(SimMeasurements::from_label("guardian").mrtd));
    assert_eq!(info.claims.tcb_status, crate::attest::TcbStatus::Simulated);
    assert_eq!(info.claims.rule, "guardian-sim");
    let extra = a.cert.clone();
    assert_eq!(inspect_peer(&a.cert, &[extra], NOW, &*policy(), None), Err(PeerRejection::Chain(2)));
}

#[tokio::test]
async fn wrong_measurement_is_refused_on_both_sides() {
    let evil = CredentialResolver::new(creds(&NodeKey::generate().unwrap(), 5, "not-guardian")).unwrap();
    let good = node(2);

    // Client side: the server runs another measurement.
    let server = start(5, evil.clone(), policy(), fixed_clock()).await;
    let err = call(server.addr, good.clone(), policy(), fixed_clock(), None).await.unwrap_err();
    assert!(err.contains("peer measurement not allowed by the guardian policy: MRTD"), "{err}");
    server.stop().await;

    // Server side: the client runs another measurement.
    let r = server_refusal(good, evil).await;
    assert!(matches!(r, PeerRejection::Policy(_)), "{r}");
    assert!(r.to_string().starts_with("peer measurement not allowed by the guardian policy"), "{r}");
}

/// Have `client` call a server holding `server_creds`; return why the server
/// refused it, after checking the service never saw the call.
async fn server_refusal(server_creds: Arc<CredentialResolver>, client: Arc<CredentialResolver>) -> PeerRejection {
    let server = start(2, server_creds, policy(), fixed_clock()).await;
    assert!(call(server.addr, client, policy(), fixed_clock(), None).await.is_err());
    let r = refusal(&server).await;
    assert!(server.seen.lock().unwrap().is_empty());
    server.stop().await;
    r
}

#[tokio::test]
async fn a_debug_td_is_refused_at_the_handshake() {
    // The guardian's own measurements, but a TD whose debug bit is set: its memory is readable by the host.
    let debug_tee = tee(5, "guardian").with_td_attributes(1 << 28 | 1);
    let req = CertRequest { cluster_id: CLUSTER, node_id: 5, now: NOW, lifetime: DAY };
    let debug = CredentialResolver::new(issue(&NodeKey::generate().unwrap(), &req, &debug_tee).unwrap()).unwrap();
    let r = server_refusal(node(2), debug).await;
    assert!(matches!(r, PeerRejection::Attestation(_)), "{r}");
    assert!(r.to_string().contains("debug mode is enabled"), "{r}");
}

#[tokio::test]
async fn a_certificate_without_evidence_is_refused() {
    let key = NodeKey::generate().unwrap();
    let plain = build_certificate(&key, &CLUSTER, 6, NOW - 60, NOW + DAY, None).unwrap();
    let plain = CredentialResolver::new(raw_creds(&key, 6, plain)).unwrap();
    // A generic rcgen self-signed certificate (no guardian URI either).
    let rogue_key = rcgen::KeyPair::generate().unwrap();
    let rogue_cert =
        rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap().self_signed(&rogue_key).unwrap();
    let rogue = CredentialResolver::new(Credentials {
        cert: rogue_cert.der().clone(),
        key: rustls::pki_types::PrivateKeyDer::Pkcs8(rogue_key.serialize_der().into()),
        ..raw_creds(&key, 6, plain.credentials().cert)
    })
    .unwrap();
    let good = node(2);

    let server = start(6, plain.clone(), policy(), fixed_clock()).await;
    let err = call(server.addr, good.clone(), policy(), fixed_clock(), None).await.unwrap_err();
    assert!(err.contains("peer certificate has no Guardian evidence extension"), "{err}");
    server.stop().await;

    let server = start(2, good, policy(), fixed_clock()).await;
    assert!(call(server.addr, plain, policy(), fixed_clock(), None).await.is_err());
    assert_eq!(refusal(&server).await, PeerRejection::NoEvidence);
    server.refused.lock().unwrap().clear();
    assert!(call(server.addr, rogue, policy(), fixed_clock(), None).await.is_err());
    let r = refusal(&server).await;
    assert!(matches!(r, PeerRejection::NoNodeUri(_)), "{r}");
    server.stop().await;
}

#[tokio::test]
async fn replayed_evidence_is_refused() {
    let a_key = NodeKey::generate().unwrap();
    let a = creds(&a_key, 1, "guardian");
    let ev = extension_value(&a.cert);
    let check = |cert: rustls::pki_types::CertificateDer<'static>| inspect_peer(&cert, &[], NOW, &*policy(), None);

    // A's evidence in a certificate for another key: same cluster, node, dates.
    let c_key = NodeKey::generate().unwrap();
    let moved = build_certificate(&c_key, &CLUSTER, 1, a.not_before, a.not_after, Some(&ev)).unwrap();
    assert_eq!(check(moved.clone()), Err(PeerRejection::Binding));
    // Same key, other dates (stretching an old certificate's life).
    let stretched = build_certificate(&a_key, &CLUSTER, 1, a.not_before, a.not_after + DAY, Some(&ev)).unwrap();
    assert_eq!(check(stretched), Err(PeerRejection::Binding));
    // Evidence made for another cluster, presented as this cluster's.
    let other =
        issue(&a_key, &CertRequest { cluster_id: [7; 16], node_id: 1, now: NOW, lifetime: DAY }, &tee(1, "guardian"))
            .unwrap();
    let relabelled =
        build_certificate(&a_key, &CLUSTER, 1, other.not_before, other.not_after, Some(&extension_value(&other.cert)))
            .unwrap();
    assert_eq!(check(relabelled), Err(PeerRejection::Binding));
    // And the other cluster's own certificate is refused for its cluster.
    assert!(matches!(check(other.cert), Err(PeerRejection::WrongCluster { .. })));
    // Node id in the SAN is not part of the binding; pinning is the extra hook's job.
    assert!(check(build_certificate(&a_key, &CLUSTER, 9, a.not_before, a.not_after, Some(&ev)).unwrap()).is_ok());

    // Over the wire: the server presents the moved certificate with its own key.
    let thief = CredentialResolver::new(raw_creds(&c_key, 1, moved)).unwrap();
    let server = start(1, thief, policy(), fixed_clock()).await;
    let err = call(server.addr, node(2), policy(), fixed_clock(), None).await.unwrap_err();
    assert!(err.contains("evidence is bound to another key or certificate (report_data mismatch)"), "{err}");
    server.stop().await;
}

#[tokio::test]
async fn an_expired_certificate_is_refused() {
    let (a, b) = (node(1), node(2));
    let expired_at = a.credentials().not_after;
    let (late, _) = clock_at(expired_at + 1);
    // The client's clock is past the server's certificate.
    let server = start(1, a.clone(), policy(), fixed_clock()).await;
    let err = call(server.addr, b.clone(), policy(), late.clone(), None).await.unwrap_err();
    assert!(err.contains("certificate expired at 2027-01-"), "{err}");
    server.stop().await;
    // The server's clock is past the client's certificate.
    let server = start(1, a, policy(), late).await;
    assert!(call(server.addr, b.clone(), policy(), fixed_clock(), None).await.is_err());
    assert!(matches!(refusal(&server).await, PeerRejection::Expired(_)));
    server.stop().await;
    // Not yet valid either.
    let early = b.credentials().not_before - 1;
    let r = inspect_peer(&b.credentials().cert, &[], early, &*policy(), None).unwrap_err();
    assert!(r.to_string().starts_with("certificate is not valid before"), "{r}");
}

#[tokio::test]
async fn the_extra_hook_can_refuse_a_revoked_node() {
    let (a, b) = (node(1), node(2));
    let revoked = b.credentials().identity;
    let extra: ExtraCheck =
        Arc::new(
            move |peer, _claims| {
                if peer.identity == revoked {
                    Err(format!("peer node {} is revoked", peer.node_id))
                } else {
                    Ok(())
                }
            },
        );
    let server = start(1, a.clone(), policy_with(Some(extra.clone())), fixed_clock()).await;
    assert!(call(server.addr, b.clone(), policy(), fixed_clock(), None).await.is_err());
    assert_eq!(refusal(&server).await, PeerRejection::Refused("peer node 2 is revoked".into()));
    // Node 3 is fine.
    assert!(call(server.addr, node(3), policy(), fixed_clock(), None).await.is_ok());
    server.stop().await;
    // Client side: refusing to talk to revoked node 2 as a server.
    let server = start(2, b, policy(), fixed_clock()).await;
    let err = call(server.addr, a, policy_with(Some(extra)), fixed_clock(), None).await.unwrap_err();
    assert!(err.contains("peer node 2 is revoked"), "{err}");
    server.stop().await;
}

#[tokio::test]
async fn garbage_and_idle_connections_do_not_block_good_clients() {
    let a = node(1);
    let server = start_with_timeout(1, a, policy(), fixed_clock(), Duration::from_millis(1500)).await;
    // An idle connection that never says anything, and one that sends garbage.
    let mut idle = TcpStream::connect(server.addr).await.unwrap();
    let mut garbage = TcpStream::connect(server.addr).await.unwrap();
    garbage.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n\x16\x03\x01\xff\xff garbage").await.unwrap();
    // Half a ClientHello, then silence.
    let mut stalled = TcpStream::connect(server.addr).await.unwrap();
    stalled.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]).await.unwrap();

    let started = std::time::Instant::now();
    let (peer, _) =
        tokio::time::timeout(Duration::from_secs(3), call(server.addr, node(2), policy(), fixed_clock(), None))
            .await
            .expect("a good client is served while others stall")
            .unwrap();
    assert_eq!(peer.node_id, 1);
    assert!(started.elapsed() < Duration::from_millis(1200), "good client waited {:?}", started.elapsed());

    // The server drops the garbage connection, and the idle ones after the handshake timeout.
    let mut buf = [0u8; 64];
    for (name, conn) in [("garbage", &mut garbage), ("idle", &mut idle), ("stalled", &mut stalled)] {
        let read = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match conn.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => continue, // a TLS alert, then EOF
                }
            }
        })
        .await;
        assert!(read.is_ok(), "{name} connection was not closed");
    }
    assert!(server.refused().is_empty());
    // Still serving.
    assert!(call(server.addr, node(3), policy(), fixed_clock(), None).await.is_ok());
    server.stop().await;
}

#[tokio::test]
async fn renewed_credentials_are_used_by_new_connections() {
    let key = NodeKey::generate().unwrap();
    let a = CredentialResolver::new(creds(&key, 1, "guardian")).unwrap();
    let b_key = NodeKey::generate().unwrap();
    let b = CredentialResolver::new(creds(&b_key, 2, "guardian")).unwrap();
    let (clock, time) = clock_at(NOW);
    let server = start(1, a.clone(), policy(), clock.clone()).await;
    let first = a.credentials();
    let (peer, _) = call(server.addr, b.clone(), policy(), clock.clone(), Some(1)).await.unwrap();
    assert_eq!(peer.not_after, first.not_after);
    // An established channel keeps working across the renewal.
    let tls = client_tls(b.clone(), policy(), clock.clone(), Some(1)).unwrap();
    let (channel, _) = connect_peer(server.addr, tls).await.unwrap();
    let mut old = AdminServiceClient::new(channel);
    old.status(StatusRequest {}).await.unwrap();

    // Later, with under a third of the lifetime left: renew with fresh evidence, same key.
    let later = NOW + 17 * 3600;
    time.store(later, Ordering::SeqCst);
    assert!(!a.needs_renewal(NOW + 15 * 3600));
    assert!(a.needs_renewal(later));
    let req = CertRequest { cluster_id: CLUSTER, node_id: 1, now: later, lifetime: DAY };
    a.renew(issue(&key, &req, &tee(1, "guardian")).unwrap()).unwrap();
    assert!(!a.needs_renewal(later));
    // The client renews too; the server sees its new certificate.
    b.renew(issue(&b_key, &CertRequest { node_id: 2, ..req }, &tee(2, "guardian")).unwrap()).unwrap();

    let (peer, _) = call(server.addr, b.clone(), policy(), clock.clone(), Some(1)).await.unwrap();
    assert_eq!(peer.not_after, later + DAY);
    assert_eq!(peer.identity, first.identity);
    let seen = server.seen.lock().unwrap().clone();
    assert_eq!(seen.last().and_then(|s| s.1).map(|p| p.not_after), Some(later + DAY));
    old.status(StatusRequest {}).await.unwrap();

    // The renewed certificates keep working after the first ones expired.
    time.store(first.not_after + 10, Ordering::SeqCst);
    assert!(call(server.addr, b.clone(), policy(), clock.clone(), Some(1)).await.is_ok());

    // Renewal cannot change who the node is.
    let wrong = creds(&NodeKey::generate().unwrap(), 7, "guardian");
    assert!(a.renew(wrong).unwrap_err().to_string().contains("cannot replace node 1"));
    server.stop().await;
}

#[tokio::test]
async fn connect_errors_say_what_happened() {
    // Nothing listening.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let tls = client_tls(node(2), policy(), fixed_clock(), None).unwrap();
    match connect_peer(addr, tls).await {
        Err(ConnectError::Transport { .. }) => {}
        other => panic!("expected a transport error, got {:?}", other.map(|(_, p)| p)),
    }
}

/// Sim evidence plus an event log padding the extension to exactly its limit.
struct Padded(SimTee, usize);

impl super::EvidenceSource for Padded {
    fn evidence(&self, report_data: &[u8; 64]) -> Result<(crate::attest::TeeKind, Vec<u8>), String> {
        super::EvidenceSource::evidence(&self.0, report_data)
    }
    fn event_log(&self) -> Option<Vec<u8>> {
        Some(vec![0xee; self.1])
    }
}

#[tokio::test]
async fn a_certificate_at_the_size_limit_still_crosses_the_handshake() {
    use super::cert::{CertError, MAX_EVIDENCE_EXTENSION};
    let key = NodeKey::generate().unwrap();
    let sim_len = tee(1, "guardian").evidence(&[0; 64]).len();
    // version + kind record + evidence record + event-log record headers.
    let pad = MAX_EVIDENCE_EXTENSION - (1 + 6 + 5 + sim_len + 5);
    let req = CertRequest { cluster_id: CLUSTER, node_id: 1, now: NOW, lifetime: DAY };
    let too_big = issue(&key, &req, &Padded(tee(1, "guardian"), pad + 1));
    assert!(matches!(too_big, Err(CertError::TooLarge(_))), "{too_big:?}");
    let big = issue(&key, &req, &Padded(tee(1, "guardian"), pad)).unwrap();
    assert!(big.cert.len() > MAX_EVIDENCE_EXTENSION);
    // The server receives the whole certificate and refuses it on its merits
    // (the padding is not an event log), not on its size.
    let server = start(2, node(2), policy(), fixed_clock()).await;
    let big = CredentialResolver::new(big).unwrap();
    assert!(call(server.addr, big, policy(), fixed_clock(), None).await.is_err());
    let r = refusal(&server).await;
    assert!(r.to_string().contains("event log"), "{r}");
    server.stop().await;
}
