//! TLS for the workload port: the node presents its RA-TLS certificate (a
//! workload checks it talks to an attested guardian); a client certificate is
//! optional and, when given, only its handshake signature is checked here.
//! Whether the certificate was issued by the namespace CA, and is still good,
//! is decided per request by the service against the replicated state, which
//! a TLS verifier cannot see.

use std::sync::Arc;

use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::NoServerSessionStorage;
use rustls::DistinguishedName;

use crate::net::ratls::grpc::CredentialResolver;
use crate::net::ratls::verify::{algorithms, tls13_only_signatures};

/// Accepts any client certificate whose holder proves possession of its key.
#[derive(Debug)]
struct ProofOfPossession {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for ProofOfPossession {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        // Fresh-evidence requests and the public calls (challenge, CA bundle, CRL) come without one.
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        // Deferred to the service (see the module doc); nothing is served on it before that.
        Ok(ClientCertVerified::assertion())
    }

    tls13_only_signatures!();
}

/// Server config of the workload port: TLS 1.3, ALPN h2, optional client certificates.
pub fn server_tls(creds: Arc<CredentialResolver>) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(Arc::new(ProofOfPossession { algorithms: algorithms() }))
        .with_cert_resolver(creds);
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    // No resumption: a resumed session would skip the client certificate check's inputs.
    cfg.session_storage = Arc::new(NoServerSessionStorage {});
    cfg.send_tls13_tickets = 0;
    Ok(Arc::new(cfg))
}
