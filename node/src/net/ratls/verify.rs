//! Checking a peer's RA-TLS certificate, and the rustls verifiers that do it
//! during the handshake.
//!
//! [`inspect_peer`] is the whole check: exactly one certificate; parse it
//! ([`PeerCertificate::parse`]: SAN URI, evidence extension, the report_data
//! this certificate's key and dates imply); validity at the [`Clock`]'s time;
//! the node id the caller meant to dial; then the node's [`PeerPolicy`].
//! [`AttestingPeerPolicy`] is the policy a guardian uses: same cluster, evidence
//! verifies and is bound to exactly this certificate, the guardian measurement
//! policy allows it, and the `extra` hook (revocation, identity pinning) agrees.
//!
//! The self-signature on a peer certificate is not checked, on purpose: it adds
//! nothing. The TLS handshake proves possession of the certificate's key, and
//! the evidence binds that key, the cluster and the validity window; a
//! certificate whose other fields were altered by someone without the key is
//! useless to them. The node id in the SAN is as trustworthy as the attested
//! key holder; pin it to the identity through the `extra` hook.

use std::fmt;
use std::sync::{Arc, RwLock};

use rustls::client::danger::{ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DistinguishedName, OtherError};
use x509_parser::extensions::GeneralName;

use super::cert::{evidence_oid_content, EvidenceExtension};
use super::Clock;
use crate::attest::tdx::Collateral;
use crate::attest::{AttestError, Claims, Evidence, TcbStatus, TeeKind, Verifier};
use crate::policy::{Decision, NamespacePolicy};
use crate::state::{NodeId, NodeIdentity};

/// Why a peer was refused. The message is for the operator reading the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerRejection {
    #[error("peer certificate is malformed: {0}")]
    Malformed(String),
    #[error("peer sent {0} certificates; a guardian node presents exactly one self-signed certificate")]
    Chain(usize),
    #[error("certificate is not valid before {0} (check both clocks)")]
    NotYetValid(String),
    #[error("certificate expired at {0}")]
    Expired(String),
    #[error("peer certificate does not name a guardian node: {0}")]
    NoNodeUri(String),
    #[error("peer certificate has no Guardian evidence extension")]
    NoEvidence,
    #[error("peer certificate's Guardian evidence extension is malformed: {0}")]
    BadEvidence(String),
    #[error("peer belongs to cluster {found}, not to this cluster ({expected})")]
    WrongCluster { found: String, expected: String },
    #[error("dialled node {expected}, but the peer is node {found}")]
    UnexpectedNode { expected: NodeId, found: NodeId },
    #[error("evidence is bound to another key or certificate (report_data mismatch)")]
    Binding,
    #[error("no collateral for the peer's {kind} evidence: {reason}")]
    Collateral { kind: TeeKind, reason: String },
    #[error("peer evidence did not verify: {0}")]
    Attestation(AttestError),
    #[error("peer measurement not allowed by the guardian policy: {0}")]
    Policy(String),
    /// Refused by the node's own check (revocation, identity pinning): the message as given.
    #[error("{0}")]
    Refused(String),
}

/// A parsed peer certificate: who it claims to be, its evidence, and the
/// report_data that evidence must carry to be bound to this certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCertificate {
    pub node_id: NodeId,
    pub cluster_id: [u8; 16],
    pub identity: NodeIdentity,
    pub kind: TeeKind,
    pub evidence: Vec<u8>,
    pub event_log: Option<Vec<u8>>,
    pub expected_report_data: [u8; 64],
    pub not_before: u64,
    pub not_after: u64,
}

/// Who a connection's peer is (from its certificate, already verified by the handshake).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerId {
    pub node_id: NodeId,
    pub cluster_id: [u8; 16],
    pub identity: NodeIdentity,
    pub not_before: u64,
    pub not_after: u64,
}

impl From<&PeerCertificate> for PeerId {
    fn from(p: &PeerCertificate) -> Self {
        PeerId {
            node_id: p.node_id,
            cluster_id: p.cluster_id,
            identity: p.identity,
            not_before: p.not_before,
            not_after: p.not_after,
        }
    }
}

/// What a verified peer's claims said, for logs and status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimsSummary {
    pub kind: TeeKind,
    pub mrtd: String,
    pub tcb_status: TcbStatus,
    /// Guardian policy rule that allowed it.
    pub rule: String,
}

/// An accepted peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    pub node_id: NodeId,
    pub identity: NodeIdentity,
    pub claims: ClaimsSummary,
}

/// The node's decision on a parsed, currently valid peer certificate.
pub trait PeerPolicy: Send + Sync + fmt::Debug {
    fn check(&self, peer: &PeerCertificate, now: u64) -> Result<PeerInfo, PeerRejection>;
}

/// `guardian://<32 lowercase hex>/node/<decimal id>` → (cluster id, node id).
pub fn parse_node_uri(uri: &str) -> Result<([u8; 16], NodeId), String> {
    let rest = uri.strip_prefix("guardian://").ok_or_else(|| format!("{uri:?} is not a guardian:// URI"))?;
    let (cluster, node) = rest.split_once("/node/").ok_or_else(|| format!("{uri:?} has no /node/<id>"))?;
    let bad_cluster = || format!("{uri:?}: the cluster id must be 32 lowercase hex digits");
    if cluster.len() != 32 || !cluster.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return Err(bad_cluster());
    }
    let cluster_id: [u8; 16] = hex::decode(cluster).ok().and_then(|v| v.try_into().ok()).ok_or_else(bad_cluster)?;
    let node_id: NodeId = node
        .parse()
        .ok()
        .filter(|id: &NodeId| id.to_string() == node)
        .ok_or_else(|| format!("{uri:?}: the node id must be a decimal number"))?;
    Ok((cluster_id, node_id))
}

impl PeerCertificate {
    /// Parse a peer certificate: node URI, evidence extension, dates, and the
    /// report_data its evidence must carry. Does not check the time or the evidence.
    pub fn parse(der: &[u8]) -> Result<Self, PeerRejection> {
        let malformed = |e: String| PeerRejection::Malformed(e);
        let (rest, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| malformed(e.to_string()))?;
        if !rest.is_empty() {
            return Err(malformed(format!("{} trailing bytes after the certificate", rest.len())));
        }
        let ts = |t: i64, what: &str| u64::try_from(t).map_err(|_| malformed(format!("{what} is before 1970")));
        let not_before = ts(cert.validity().not_before.timestamp(), "notBefore")?;
        let not_after = ts(cert.validity().not_after.timestamp(), "notAfter")?;

        let san = cert
            .subject_alternative_name()
            .map_err(|e| malformed(format!("subjectAltName: {e}")))?
            .ok_or_else(|| PeerRejection::NoNodeUri("no subjectAltName".into()))?;
        let uris: Vec<&str> = san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::URI(u) if u.starts_with("guardian://") => Some(*u),
                _ => None,
            })
            .collect();
        let [uri] = uris[..] else {
            return Err(PeerRejection::NoNodeUri(format!(
                "{} guardian:// URIs in subjectAltName, expected one",
                uris.len()
            )));
        };
        let (cluster_id, node_id) = parse_node_uri(uri).map_err(PeerRejection::NoNodeUri)?;

        let oid = evidence_oid_content();
        let exts: Vec<_> = cert.extensions().iter().filter(|e| e.oid.as_bytes() == oid.as_slice()).collect();
        let ext = match exts[..] {
            [] => return Err(PeerRejection::NoEvidence),
            [one] => one,
            _ => return Err(PeerRejection::BadEvidence("the extension appears more than once".into())),
        };
        let ev = EvidenceExtension::from_extension_value(ext.value).map_err(PeerRejection::BadEvidence)?;

        let spki = cert.public_key().raw;
        Ok(PeerCertificate {
            node_id,
            cluster_id,
            identity: super::identity_of(spki),
            kind: ev.kind,
            evidence: ev.evidence,
            event_log: ev.event_log,
            expected_report_data: super::report_data(&cluster_id, spki, not_before, not_after),
            not_before,
            not_after,
        })
    }

    /// Is the certificate valid at `now`?
    pub fn check_validity(&self, now: u64) -> Result<(), PeerRejection> {
        if now < self.not_before {
            return Err(PeerRejection::NotYetValid(crate::rfc3339::format(self.not_before)));
        }
        if now > self.not_after {
            return Err(PeerRejection::Expired(crate::rfc3339::format(self.not_after)));
        }
        Ok(())
    }
}

/// The whole check of a peer's certificate chain at time `now`.
pub fn inspect_peer(
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    now: u64,
    policy: &dyn PeerPolicy,
    expected_node: Option<NodeId>,
) -> Result<PeerInfo, PeerRejection> {
    if !intermediates.is_empty() {
        return Err(PeerRejection::Chain(intermediates.len() + 1));
    }
    let peer = PeerCertificate::parse(end_entity)?;
    peer.check_validity(now)?;
    if let Some(expected) = expected_node {
        if peer.node_id != expected {
            return Err(PeerRejection::UnexpectedNode { expected, found: peer.node_id });
        }
    }
    policy.check(&peer, now)
}

/// Finds Intel collateral for a peer's TDX evidence. Called inside the TLS
/// handshake, so it must not block on the network: serve it from a cache.
pub type CollateralSource = Arc<dyn Fn(&PeerCertificate) -> Result<Option<Arc<Collateral>>, String> + Send + Sync>;
/// The node's last word on an attested peer (revocation, identity pinning).
pub type ExtraCheck = Arc<dyn Fn(&PeerCertificate, &Claims) -> Result<(), String> + Send + Sync>;

/// The guardian's peer policy: same cluster, evidence verified and bound to
/// this certificate, guardian measurement policy, then `extra`.
pub struct AttestingPeerPolicy {
    cluster_id: [u8; 16],
    verifier: Arc<Verifier>,
    collateral: CollateralSource,
    guardian_policy: RwLock<Arc<NamespacePolicy>>,
    extra: ExtraCheck,
}

impl fmt::Debug for AttestingPeerPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AttestingPeerPolicy")
            .field("cluster_id", &hex::encode(self.cluster_id))
            .field("guardian_policy", &self.guardian_policy().name)
            .finish_non_exhaustive()
    }
}

impl AttestingPeerPolicy {
    /// No collateral (TDX peers are then refused with "no collateral supplied")
    /// and no extra check, until set.
    pub fn new(cluster_id: [u8; 16], verifier: Arc<Verifier>, guardian_policy: NamespacePolicy) -> Self {
        AttestingPeerPolicy {
            cluster_id,
            verifier,
            collateral: Arc::new(|_| Ok(None)),
            guardian_policy: RwLock::new(Arc::new(guardian_policy)),
            extra: Arc::new(|_, _| Ok(())),
        }
    }

    pub fn with_collateral(mut self, source: CollateralSource) -> Self {
        self.collateral = source;
        self
    }

    /// The same collateral for every peer (a single-platform cluster).
    pub fn with_fixed_collateral(self, collateral: Option<Collateral>) -> Self {
        let collateral = collateral.map(Arc::new);
        self.with_collateral(Arc::new(move |_| Ok(collateral.clone())))
    }

    pub fn with_extra(mut self, extra: ExtraCheck) -> Self {
        self.extra = extra;
        self
    }

    /// Replace the guardian measurement policy (after an admin changed it);
    /// applies to every handshake from now on.
    pub fn set_guardian_policy(&self, policy: NamespacePolicy) {
        *self.guardian_policy.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(policy);
    }

    pub fn guardian_policy(&self) -> Arc<NamespacePolicy> {
        self.guardian_policy.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl PeerPolicy for AttestingPeerPolicy {
    fn check(&self, peer: &PeerCertificate, now: u64) -> Result<PeerInfo, PeerRejection> {
        if peer.cluster_id != self.cluster_id {
            return Err(PeerRejection::WrongCluster {
                found: hex::encode(peer.cluster_id),
                expected: hex::encode(self.cluster_id),
            });
        }
        let collateral = match peer.kind {
            TeeKind::Tdx | TeeKind::AzTdxVtpm => {
                (self.collateral)(peer).map_err(|reason| PeerRejection::Collateral { kind: peer.kind, reason })?
            }
            TeeKind::Sim => None,
        };
        let policy = self.guardian_policy();
        let opts = crate::attest::VerifyOptions {
            expected_nonce: Some(peer.expected_report_data.to_vec()),
            ..policy.verify_options(now)
        };
        let evidence = Evidence {
            kind: peer.kind,
            bytes: &peer.evidence,
            collateral: collateral.as_deref(),
            event_log: peer.event_log.as_deref(),
        };
        let claims = self.verifier.verify(&evidence, &opts).map_err(|e| match e {
            AttestError::Binding(_) => PeerRejection::Binding,
            e => PeerRejection::Attestation(e),
        })?;
        // The nonce check above is a prefix check on report_data; with 64 bytes
        // it is exact. Check again here so a change there cannot weaken this.
        if matches!(claims.tee, TeeKind::Tdx | TeeKind::Sim) && claims.td.report_data != peer.expected_report_data {
            return Err(PeerRejection::Binding);
        }
        let rule = match policy.evaluate(&claims) {
            Decision::Allow { rule } => rule,
            Decision::Deny { reason } => return Err(PeerRejection::Policy(reason)),
        };
        (self.extra)(peer, &claims).map_err(PeerRejection::Refused)?;
        Ok(PeerInfo {
            node_id: peer.node_id,
            identity: peer.identity,
            claims: ClaimsSummary {
                kind: claims.tee,
                mrtd: hex::encode(claims.td.mrtd),
                tcb_status: claims.tcb_status,
                rule,
            },
        })
    }
}

/// Validate-on-apply for joins: the same checks as a handshake, at the
/// entry's proposal time. Use a policy without a membership `extra` check:
/// the state machine does its own membership checks.
impl crate::state::JoinVerifier for AttestingPeerPolicy {
    fn verify_joiner(
        &self,
        node_id: NodeId,
        certificate: &[u8],
        at: u64,
    ) -> Result<crate::state::VerifiedJoiner, String> {
        let cert = CertificateDer::from(certificate);
        let info =
            inspect_peer(&cert, &[], at, self, None).map_err(|e| format!("joiner's certificate refused: {e}"))?;
        if info.node_id != node_id {
            return Err(format!("the joiner's certificate is node {}'s, not node {node_id}'s", info.node_id));
        }
        Ok(crate::state::VerifiedJoiner { identity: info.identity, mrtd: info.claims.mrtd })
    }
}

/// The rustls error carrying a rejection (recoverable with [`rejection_of`]).
pub fn to_rustls(rejection: PeerRejection) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(rejection))))
}

/// The rejection inside a rustls error, or inside an I/O error from tokio-rustls.
pub fn rejection_of<'e>(err: &'e (dyn std::error::Error + 'static)) -> Option<&'e PeerRejection> {
    let tls = match err.downcast_ref::<std::io::Error>() {
        Some(io) => io.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()),
        None => err.downcast_ref::<rustls::Error>(),
    }?;
    match tls {
        rustls::Error::InvalidCertificate(CertificateError::Other(other)) => other.0.downcast_ref::<PeerRejection>(),
        _ => None,
    }
}

/// Signature algorithms accepted in handshakes (the ring provider's).
pub(crate) fn algorithms() -> WebPkiSupportedAlgorithms {
    super::provider().signature_verification_algorithms
}

/// Guardian speaks TLS 1.3 only, on every port.
pub(crate) fn tls12_refused() -> rustls::Error {
    rustls::Error::General("TLS 1.2 is not used by guardian nodes".into())
}

/// The signature methods of a rustls certificate verifier that speaks TLS
/// 1.3 only and checks handshake signatures with its `algorithms` field
/// (every guardian verifier: one definition instead of one per verifier).
macro_rules! tls13_only_signatures {
    () => {
        fn verify_tls12_signature(
            &self,
            _message: &[u8],
            _cert: &rustls::pki_types::CertificateDer<'_>,
            _dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            Err($crate::net::ratls::verify::tls12_refused())
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &rustls::pki_types::CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
        }

        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.algorithms.supported_schemes()
        }
    };
}
pub(crate) use tls13_only_signatures;

/// Verifies the server's certificate on a client connection to a guardian node.
pub struct AttestedServerVerifier {
    policy: Arc<dyn PeerPolicy>,
    clock: Clock,
    expected_node: Option<NodeId>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl fmt::Debug for AttestedServerVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AttestedServerVerifier")
            .field("policy", &self.policy)
            .field("expected_node", &self.expected_node)
            .finish_non_exhaustive()
    }
}

impl AttestedServerVerifier {
    /// `expected_node`: the node id the caller means to dial, if it knows it.
    pub fn new(policy: Arc<dyn PeerPolicy>, clock: Clock, expected_node: Option<NodeId>) -> Self {
        AttestedServerVerifier { policy, clock, expected_node, algorithms: algorithms() }
    }
}

impl ServerCertVerifier for AttestedServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // DNS names are ignored: the identity is the attested key.
        let info = inspect_peer(end_entity, intermediates, (self.clock)(), &*self.policy, self.expected_node)
            .map_err(to_rustls)?;
        tracing::debug!(node = info.node_id, identity = %info.identity, mrtd = %info.claims.mrtd, "server attested");
        Ok(ServerCertVerified::assertion())
    }

    tls13_only_signatures!();
}

/// Verifies the client's certificate on a guardian node's listener. Client
/// authentication is mandatory.
pub struct AttestedClientVerifier {
    policy: Arc<dyn PeerPolicy>,
    clock: Clock,
    algorithms: WebPkiSupportedAlgorithms,
}

impl fmt::Debug for AttestedClientVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AttestedClientVerifier").field("policy", &self.policy).finish_non_exhaustive()
    }
}

impl AttestedClientVerifier {
    pub fn new(policy: Arc<dyn PeerPolicy>, clock: Clock) -> Self {
        AttestedClientVerifier { policy, clock, algorithms: algorithms() }
    }
}

impl ClientCertVerifier for AttestedClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let info = inspect_peer(end_entity, intermediates, (self.clock)(), &*self.policy, None).map_err(to_rustls)?;
        tracing::debug!(node = info.node_id, identity = %info.identity, mrtd = %info.claims.mrtd, "client attested");
        Ok(ClientCertVerified::assertion())
    }

    tls13_only_signatures!();
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn node_uris_are_strict() {
        let c = "00112233445566778899aabbccddeeff";
        assert_eq!(parse_node_uri(&format!("guardian://{c}/node/3")).unwrap().1, 3);
        for bad in [
            format!("guardian://{c}/node/03"),
            format!("guardian://{c}/node/+3"),
            format!("guardian://{c}/node/"),
            format!("guardian://{c}/node/3/x"),
            format!("guardian://{}/node/3", c.to_uppercase()),
            format!("guardian://{}/node/3", &c[..30]),
            format!("https://{c}/node/3"),
            "guardian://".to_string(),
            format!("guardian://{c}/node/99999999999999999999999"),
        ] {
            assert!(parse_node_uri(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn garbage_certificates_are_refused_without_panicking() {
        for junk in [&b""[..], b"\x30", b"\x30\x82\xff\xff", &[0u8; 300]] {
            assert!(matches!(PeerCertificate::parse(junk), Err(PeerRejection::Malformed(_))));
        }
    }

    #[test]
    fn rejections_survive_the_rustls_and_io_wrapping() {
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, to_rustls(PeerRejection::NoEvidence));
        assert_eq!(rejection_of(&io), Some(&PeerRejection::NoEvidence));
        assert_eq!(rejection_of(&rustls::Error::General("x".into())), None);
    }
}
