//! RA-TLS for tonic: rustls configs, the swappable credential resolver, the
//! TLS accept loop that feeds a tonic router, and client channels.
//!
//! tonic's built-in TLS has no hook for custom verifiers, so TLS is done here:
//! the server accepts TCP, runs the rustls handshake in its own task under a
//! timeout, and hands finished streams to `serve_with_incoming_shutdown` (tonic
//! still exposes the peer's certificates through `Request::peer_certs`). The
//! client dials with `Endpoint::connect_with_connector`, scheme `http` because
//! TLS happens in the connector; ALPN is `h2` on both sides.
//!
//! In TLS 1.3 the client finishes its handshake before the server has checked
//! the client's certificate: a client the server refuses sees the failure on
//! its first RPC, not when connecting.
//!
//! Session resumption is off on both sides: every connection runs the full
//! attested check, so an expired or revoked peer cannot resume its way in.
//! Established connections are not re-checked; bound their age (tonic's
//! `max_connection_age`) so they are re-attested periodically.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::client::{ResolvesClientCert, Resumption};
use rustls::server::{ClientHello, NoServerSessionStorage, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, ServerConfig, SignatureScheme};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;
use tokio_rustls::server::TlsStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tonic::transport::server::Router;
use tonic::transport::{Channel, Endpoint, Uri};

use super::cert::Credentials;
use super::verify::{
    rejection_of, AttestedClientVerifier, AttestedServerVerifier, PeerCertificate, PeerId, PeerPolicy, PeerRejection,
};
use super::{provider, Clock};
use crate::state::{NodeId, NodeIdentity};

/// Default bound on a server-side TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Default bound on TCP connect plus TLS handshake when dialling.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

struct Active {
    certified: Arc<CertifiedKey>,
    creds: Credentials,
}

/// This node's current certificate and key, swappable while listeners and
/// channels are live: new handshakes use whatever was installed last.
pub struct CredentialResolver {
    current: RwLock<Arc<Active>>,
}

impl std::fmt::Debug for CredentialResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialResolver").field("current", &self.active().creds).finish()
    }
}

impl CredentialResolver {
    pub fn new(creds: Credentials) -> Result<Arc<Self>, rustls::Error> {
        let active = Self::load(creds)?;
        Ok(Arc::new(CredentialResolver { current: RwLock::new(active) }))
    }

    fn load(creds: Credentials) -> Result<Arc<Active>, rustls::Error> {
        let certified = CertifiedKey::from_der(vec![creds.cert.clone()], creds.key.clone_key(), &provider())?;
        Ok(Arc::new(Active { certified: Arc::new(certified), creds }))
    }

    fn active(&self) -> Arc<Active> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Install a freshly attested certificate. It must name the same cluster
    /// and node; the key may be the same (usual) or new.
    pub fn renew(&self, new: Credentials) -> Result<(), rustls::Error> {
        let old = self.active();
        if new.cluster_id != old.creds.cluster_id || new.node_id != old.creds.node_id {
            return Err(rustls::Error::General(format!(
                "renewal for node {} of cluster {} cannot replace node {} of cluster {}",
                new.node_id,
                hex::encode(new.cluster_id),
                old.creds.node_id,
                hex::encode(old.creds.cluster_id)
            )));
        }
        let active = Self::load(new)?;
        tracing::info!(
            node = active.creds.node_id,
            identity = %active.creds.identity,
            not_after = %crate::rfc3339::format(active.creds.not_after),
            "installed renewed RA-TLS certificate"
        );
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = active;
        Ok(())
    }

    /// True when less than a third of the current certificate's lifetime is left.
    pub fn needs_renewal(&self, now: u64) -> bool {
        self.active().creds.needs_renewal(now)
    }

    /// The credentials currently served.
    pub fn credentials(&self) -> Credentials {
        self.active().creds.clone()
    }
}

impl ResolvesServerCert for CredentialResolver {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.active().certified.clone())
    }
}

impl ResolvesClientCert for CredentialResolver {
    fn resolve(&self, _root_hint_subjects: &[&[u8]], _sigschemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.active().certified.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Server config: TLS 1.3 only, client certificates mandatory and attested,
/// ALPN h2, no resumption.
pub fn server_tls(
    creds: Arc<CredentialResolver>,
    policy: Arc<dyn PeerPolicy>,
    clock: Clock,
) -> Result<Arc<ServerConfig>, rustls::Error> {
    let mut cfg = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(Arc::new(AttestedClientVerifier::new(policy, clock)))
        .with_cert_resolver(creds);
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    cfg.session_storage = Arc::new(NoServerSessionStorage {});
    cfg.send_tls13_tickets = 0;
    Ok(Arc::new(cfg))
}

/// Client config: TLS 1.3 only, the server attested (and, when
/// `expected_node` is given, it must be that node), our certificate presented,
/// ALPN h2, no resumption.
pub fn client_tls(
    creds: Arc<CredentialResolver>,
    policy: Arc<dyn PeerPolicy>,
    clock: Clock,
    expected_node: Option<NodeId>,
) -> Result<Arc<ClientConfig>, rustls::Error> {
    let mut cfg = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AttestedServerVerifier::new(policy, clock, expected_node)))
        .with_client_cert_resolver(creds);
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    cfg.resumption = Resumption::disabled();
    Ok(Arc::new(cfg))
}

/// Called with the peer address when a handshake is refused by the peer policy.
pub type RejectionHook = Arc<dyn Fn(SocketAddr, &PeerRejection) + Send + Sync>;

/// Knobs of [`serve_with`].
#[derive(Clone)]
pub struct ServeOptions {
    /// Bound on each TLS handshake (garbage and stalled clients are dropped).
    pub handshake_timeout: Duration,
    /// Handshakes in progress at once; connections beyond are dropped.
    pub max_pending_handshakes: usize,
    /// Observer of refused peers (metrics, tests), besides the `warn` log.
    pub on_rejection: Option<RejectionHook>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions { handshake_timeout: HANDSHAKE_TIMEOUT, max_pending_handshakes: 1024, on_rejection: None }
    }
}

impl std::fmt::Debug for ServeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeOptions")
            .field("handshake_timeout", &self.handshake_timeout)
            .field("max_pending_handshakes", &self.max_pending_handshakes)
            .field("on_rejection", &self.on_rejection.is_some())
            .finish()
    }
}

/// Serve `router` over RA-TLS on `listener` until `shutdown` completes, with
/// default [`ServeOptions`].
pub async fn serve(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    router: Router,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    serve_with(listener, tls, router, shutdown, ServeOptions::default()).await
}

/// [`serve`] with explicit options.
pub async fn serve_with(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    router: Router,
    shutdown: impl Future<Output = ()>,
    opts: ServeOptions,
) -> Result<(), tonic::transport::Error> {
    let (tx, rx) = mpsc::channel::<Result<TlsStream<TcpStream>, std::io::Error>>(64);
    let accept = tokio::spawn(accept_loop(listener, TlsAcceptor::from(tls), tx, opts));
    let result = router.serve_with_incoming_shutdown(tokio_stream::wrappers::ReceiverStream::new(rx), shutdown).await;
    // Dropping the loop's JoinSet aborts handshakes still in progress.
    accept.abort();
    result
}

/// Accept TCP connections on `listener` and hand each completed TLS
/// handshake to `tx` (for servers other than tonic, e.g. the CoCo HTTPS port).
pub async fn accept_tls(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    tx: mpsc::Sender<Result<TlsStream<TcpStream>, std::io::Error>>,
) {
    accept_loop(listener, TlsAcceptor::from(tls), tx, ServeOptions::default()).await
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    tx: mpsc::Sender<Result<TlsStream<TcpStream>, std::io::Error>>,
    opts: ServeOptions,
) {
    let slots = Arc::new(Semaphore::new(opts.max_pending_handshakes.max(1)));
    let mut handshakes = JoinSet::new();
    loop {
        let (tcp, peer) = tokio::select! {
            _ = tx.closed() => return,
            Some(_) = handshakes.join_next(), if !handshakes.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Usually out of file descriptors: back off instead of spinning.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "too many TLS handshakes in progress; connection dropped");
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, tx, opts) = (acceptor.clone(), tx.clone(), opts.clone());
        handshakes.spawn(async move {
            let _slot = slot;
            match tokio::time::timeout(opts.handshake_timeout, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => {
                    let _ = tx.send(Ok(stream)).await;
                }
                Ok(Err(e)) => match rejection_of(&e) {
                    Some(rejection) => {
                        tracing::warn!(%peer, reason = %rejection, "refused RA-TLS client");
                        if let Some(hook) = &opts.on_rejection {
                            hook(peer, rejection);
                        }
                    }
                    None => tracing::debug!(%peer, error = %e, "TLS handshake failed; connection dropped"),
                },
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out; connection dropped"),
            }
        });
    }
}

/// Why dialling a node failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("refused node at {addr}: {rejection}")]
    Rejected { addr: SocketAddr, rejection: PeerRejection },
    #[error("cannot connect to {addr}: {message}")]
    Transport { addr: SocketAddr, message: String },
}

/// Dial a guardian node over RA-TLS.
pub async fn connect(addr: SocketAddr, tls: Arc<ClientConfig>) -> Result<Channel, ConnectError> {
    connect_peer(addr, tls).await.map(|(channel, _)| channel)
}

/// [`connect`], with the TCP connection made from local address `source`
/// (a multi-homed host choosing its interface; `None`: the OS chooses).
pub async fn connect_from(
    addr: SocketAddr,
    source: Option<std::net::IpAddr>,
    tls: Arc<ClientConfig>,
) -> Result<Channel, ConnectError> {
    connect_peer_from(addr, source, tls).await.map(|(channel, _)| channel)
}

async fn dial(addr: SocketAddr, source: Option<std::net::IpAddr>) -> std::io::Result<TcpStream> {
    let Some(ip) = source else { return TcpStream::connect(addr).await };
    let socket = if ip.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.bind(SocketAddr::new(ip, 0))?;
    socket.connect(addr).await
}

/// Dial a guardian node over RA-TLS, and say who answered (as verified on
/// the first connection; the channel reconnects through the same checks).
pub async fn connect_peer(addr: SocketAddr, tls: Arc<ClientConfig>) -> Result<(Channel, PeerId), ConnectError> {
    connect_peer_from(addr, None, tls).await
}

async fn connect_peer_from(
    addr: SocketAddr,
    source: Option<std::net::IpAddr>,
    tls: Arc<ClientConfig>,
) -> Result<(Channel, PeerId), ConnectError> {
    let seen: Arc<Mutex<Option<Result<PeerId, PeerRejection>>>> = Arc::new(Mutex::new(None));
    let record = seen.clone();
    let connector = tower::service_fn(move |_: Uri| {
        let (tls, record) = (tls.clone(), record.clone());
        async move {
            let handshake = async {
                let tcp = dial(addr, source).await?;
                let _ = tcp.set_nodelay(true);
                TlsConnector::from(tls).connect(addr.ip().into(), tcp).await
            };
            let outcome = tokio::time::timeout(CONNECT_TIMEOUT, handshake)
                .await
                .unwrap_or_else(|_| Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out")));
            let set = |v| *record.lock().unwrap_or_else(|e| e.into_inner()) = Some(v);
            match outcome {
                Ok(stream) => {
                    let peer = stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .map(|c| PeerCertificate::parse(c));
                    if let Some(Ok(peer)) = peer {
                        set(Ok(PeerId::from(&peer)));
                    }
                    Ok(TokioIo::new(stream))
                }
                Err(e) => {
                    if let Some(rejection) = rejection_of(&e) {
                        tracing::warn!(%addr, reason = %rejection, "refused RA-TLS server");
                        set(Err(rejection.clone()));
                    }
                    Err(e)
                }
            }
        }
    });
    let transport = |e: &dyn std::error::Error| ConnectError::Transport { addr, message: error_chain(e) };
    let endpoint = Endpoint::from_shared(format!("http://{addr}")).map_err(|e| transport(&e))?;
    let result = endpoint.connect_with_connector(connector).await;
    let seen = seen.lock().unwrap_or_else(|e| e.into_inner()).take();
    match (result, seen) {
        (Ok(channel), Some(Ok(peer))) => Ok((channel, peer)),
        (Ok(_), _) => {
            Err(ConnectError::Transport { addr, message: "connected, but the peer's certificate was not seen".into() })
        }
        (Err(_), Some(Err(rejection))) => Err(ConnectError::Rejected { addr, rejection }),
        (Err(e), _) => Err(transport(&e)),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// The caller's certificate (DER), on a request that came in over RA-TLS.
pub fn peer_leaf<T>(req: &tonic::Request<T>) -> Option<CertificateDerOwned> {
    req.peer_certs().and_then(|certs| certs.first().cloned())
}

type CertificateDerOwned = rustls::pki_types::CertificateDer<'static>;

/// The caller's identity (SHA-256 of its certificate's SPKI DER), on a
/// request that came in over RA-TLS.
pub fn peer_identity<T>(req: &tonic::Request<T>) -> Option<NodeIdentity> {
    let leaf = peer_leaf(req)?;
    let (_, cert) = x509_parser::parse_x509_certificate(&leaf).ok()?;
    Some(super::identity_of(cert.public_key().raw))
}

/// The caller's node id, cluster and identity, on a request that came in over RA-TLS.
pub fn peer_node<T>(req: &tonic::Request<T>) -> Option<PeerId> {
    PeerCertificate::parse(&peer_leaf(req)?).ok().map(|p| PeerId::from(&p))
}
