//! The guardian daemon (I/O shell): configuration, start-up, the admin and
//! health endpoints, bootstrap from genesis, and graceful shutdown.
//!
//! - [`config`]: the TOML configuration and its checks.
//! - [`node`]: starting a node and its tasks.
//! - [`membership`]: bootstrap, joining, and Raft membership following the member list.
//! - [`joins`]: join requests as members see them (pending until an admin approves).
//! - [`keys`]: the threshold keys on this node: ceremonies, namespace secrets, FROST signing, CA certificates.
//! - [`admin`]: the admin gRPC service (signed commands, status, pending joins).
//! - [`health`]: `/healthz` and `/readyz` over HTTP.
//! - [`workload`]: the workload service (challenge, attest, keys, configs, CA bundle, CRL).
//! - [`coco`]: the CoCo front ends over HTTPS: Vault KV v1 (Trustee KBS backend) and the KBS protocol.

pub mod admin;
pub mod coco;
pub mod config;
pub mod health;
pub mod joins;
pub mod keys;
pub mod membership;
pub mod node;
pub mod workload;

use std::sync::Arc;

use crate::net::ratls::grpc::CredentialResolver;

/// TLS for the admin port: the node is attested by its RA-TLS certificate;
/// clients (guardctl) present none, since every command they send is signed.
pub fn admin_tls(creds: Arc<CredentialResolver>) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_cert_resolver(creds);
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(cfg))
}
