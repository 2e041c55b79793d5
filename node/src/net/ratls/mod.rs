//! RA-TLS: TLS between guardian nodes where each certificate carries the node's
//! attestation evidence, bound to the certificate's key.
//!
//! # Binding
//!
//! Each node certificate is self-signed by the node's key and carries, in a
//! private non-critical extension ([`cert::EVIDENCE_OID`]), TEE evidence whose
//! 64-byte report_data is
//!
//! ```text
//! SHA-512(RA_TLS_CONTEXT || 0x00 || cluster_id (16) || SHA-256(SPKI DER) (32)
//!         || not_before (u64 BE, unix s) || not_after (u64 BE, unix s))
//! ```
//!
//! ([`report_data`]). Evidence therefore cannot be moved to another key, another
//! cluster or another validity window, and it expires with the certificate.
//! Certificates are short-lived (default 24 h) and renewed with fresh evidence
//! ([`CredentialResolver::renew`]) before a third of their lifetime is left.
//!
//! The TLS handshake proves possession of the key (CertificateVerify); the
//! evidence proves the key was generated inside an attested TEE running a
//! measurement the guardian policy accepts. There is no CA: the identity of a
//! node is its key ([`NodeIdentity`] = SHA-256 of the SPKI DER), which the
//! replicated state pins and revokes (through [`AttestingPeerPolicy`]'s `extra`
//! hook).
//!
//! # Modules
//!
//! - [`cert`]: node keys, the evidence extension and certificate issuance.
//! - [`verify`]: parsing a peer certificate, the [`PeerPolicy`] it is checked
//!   against, and the rustls client / server verifiers.
//! - [`grpc`]: rustls configs, the swappable credential resolver, the TLS accept
//!   loop for tonic, and channels.

pub mod cert;
pub mod grpc;
pub mod verify;

#[cfg(test)]
mod tests;

use std::sync::{Arc, OnceLock};

use sha2::{Digest, Sha256, Sha512};

use crate::state::NodeIdentity;

pub use cert::{
    issue, CertError, CertRequest, Credentials, EvidenceExtension, EvidenceSource, NodeKey, DEFAULT_LIFETIME,
    EVIDENCE_OID,
};
pub use grpc::{
    client_tls, connect, connect_peer, peer_identity, peer_node, serve, serve_with, server_tls, ConnectError,
    CredentialResolver, RejectionHook, ServeOptions,
};
pub use verify::{
    inspect_peer, AttestedClientVerifier, AttestedServerVerifier, AttestingPeerPolicy, ClaimsSummary, CollateralSource,
    ExtraCheck, PeerCertificate, PeerId, PeerInfo, PeerPolicy, PeerRejection,
};

/// Current time in seconds since the Unix epoch. Verification reads the time
/// through this, so tests (and a node with a better time source) control it.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The system clock (0 if the system time is before 1970).
pub fn system_clock() -> Clock {
    Arc::new(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0))
}

/// The report_data a node's evidence must carry for a certificate with this
/// cluster, key (SubjectPublicKeyInfo DER) and validity window.
pub fn report_data(cluster_id: &[u8; 16], spki_der: &[u8], not_before: u64, not_after: u64) -> [u8; 64] {
    let mut data = Vec::with_capacity(16 + 32 + 16);
    data.extend_from_slice(cluster_id);
    data.extend_from_slice(&Sha256::digest(spki_der));
    data.extend_from_slice(&not_before.to_be_bytes());
    data.extend_from_slice(&not_after.to_be_bytes());
    Sha512::digest(guardian_proto::with_context(guardian_proto::RA_TLS_CONTEXT, &data)).into()
}

/// A node's identity: SHA-256 of its SubjectPublicKeyInfo DER.
pub fn identity_of(spki_der: &[u8]) -> NodeIdentity {
    NodeIdentity(Sha256::digest(spki_der).into())
}

/// The crypto provider every RA-TLS config uses (ring), built once.
pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    static PROVIDER: OnceLock<Arc<rustls::crypto::CryptoProvider>> = OnceLock::new();
    PROVIDER.get_or_init(|| Arc::new(rustls::crypto::ring::default_provider())).clone()
}
