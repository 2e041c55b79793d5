//! The CoCo front ends (I/O shell around [`crate::kbs`]) on the node's
//! `[coco]` port, over HTTPS:
//!
//! - [`vault`]: Vault KV v1 for an unmodified Trustee KBS (`/v1/...`);
//! - [`kbs`]: the KBS protocol for CDH and kbs-client (`/kbs/v0/...`);
//! - [`audit`]: the release audit log.
//!
//! Both read and write the same namespace keys as the workload service: a
//! key stored for `<repo>/<type>/<tag>` is the stored secret `<type>/<tag>`
//! of namespace `<repo>`. A volume key (`pvc/<name>`, `volume/<name>`) never
//! stored is derived from the namespace secret's version [`DERIVE_VERSION`],
//! so it survives restarts, failover, resharing and namespace secret rotation
//! alike; any other key that was never stored is "not found", as in Vault.

pub mod audit;
pub mod kbs;
pub mod vault;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use guardian_proto::v1::EncryptedSecret;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use zeroize::Zeroizing;

use super::workload::{ServeError, Serving};
use crate::attest::tdx::Collateral;
use crate::kbs::session::Sessions;
use crate::kbs::token::{self, Attested, TokenError};
use crate::keys::{hierarchy, sealing, KeyPath};
use crate::state::namespace::{Record, Writer};
use crate::state::tokens::{Need, TokenRefusal};

/// The namespace secret version keys that were never stored derive from.
/// Pinned, so that rotating the namespace secret never changes a PVC key
/// under a volume that is already encrypted with it (see docs/coco.md).
pub const DERIVE_VERSION: u32 = 1;
/// Most requests served at once on the port.
const MAX_IN_FLIGHT: usize = 1024;
/// How long a write waits for this node to apply it after it committed.
const APPLY_WAIT: Duration = Duration::from_secs(10);
/// Largest request body read.
pub const MAX_BODY: usize = 64 * 1024;

/// What the front ends share.
pub struct Coco {
    pub serving: Arc<Serving>,
    pub sessions: Mutex<Sessions>,
    pub audit: audit::Audit,
    /// INSECURE: accept CoCo "sample" evidence (development nodes only).
    pub sample: bool,
    /// Intel collateral for TDX evidence, from the node's `[tee] collateral`.
    pub collateral: Option<Collateral>,
    /// Attestation tokens whose signature this node verified.
    pub verified: Mutex<token::Memo>,
}

impl Coco {
    pub fn now(&self) -> u64 {
        (self.serving.keys.clock)()
    }

    pub fn me(&self) -> u64 {
        self.serving.keys.me
    }

    /// Verify a Bearer attestation token at `now` (see [`token::Memo`]).
    pub fn verify_token(&self, token: &str, now: u64) -> Result<Attested, TokenError> {
        let view = &self.serving.keys.view;
        let identity_of = |id| view.with_state(|s| s.members.get(&id).map(|m| m.identity));
        let cluster = hex::encode(self.serving.keys.cluster_id);
        self.verified.lock().unwrap_or_else(PoisonError::into_inner).verify(token, &cluster, identity_of, now)
    }

    /// How this node verifies KBS evidence.
    pub fn kbs_verifier(&self) -> crate::kbs::evidence::KbsVerifier<'_> {
        crate::kbs::evidence::KbsVerifier {
            verifier: &self.serving.verifier,
            collateral: self.collateral.as_ref(),
            sample: self.sample,
        }
    }

    /// A key's value: the stored secret if there is one, else derived.
    /// Returns the secret version it came from.
    pub async fn value(&self, ns: &str, path: &KeyPath) -> Result<(u32, Zeroizing<Vec<u8>>), ServeError> {
        let stored = self.serving.stored_secret(ns, path)?;
        match stored {
            Some(stored) => self.serving.open_stored(ns, path, &stored).await,
            None if !matches!(path.purpose(), hierarchy::Purpose::Volume(_)) => Err(ServeError::NotFound(format!(
                "namespace {ns} has no key {}: only pvc/ and volume/ keys are derived; others must be stored first",
                path.as_str()
            ))),
            None => {
                let version = self
                    .serving
                    .with_namespace(ns, |n| n.resolve_version(DERIVE_VERSION))?
                    .map_err(|e| ServeError::NotFound(format!("{}: {e}", path.as_str())))?;
                let secret = self.serving.secret(ns, version).await?;
                Ok((version, Zeroizing::new(hierarchy::derive(&secret, path.purpose()).to_vec())))
            }
        }
    }

    /// Store `value` at `path`, sealed to the current version's ingest key,
    /// through the log (authorised `by`).
    pub async fn write(&self, ns: &str, path: &KeyPath, value: &[u8], by: Writer) -> Result<u32, ServeError> {
        let version = self.serving.with_namespace(ns, |n| n.current_version)?;
        let secret = self.serving.secret(ns, version).await?;
        let (_, ingest_public) = sealing::ingest_key(&secret);
        let (version, context) = sealing::stored_secret_context(ns, path, version);
        let sealed: EncryptedSecret = sealing::seal(&ingest_public, &context, value, &mut rand::thread_rng())
            .map_err(|e| ServeError::BadRequest(e.to_string()))?;
        let record = Record::SecretWritten {
            namespace: ns.to_string(),
            key_path: path.as_str().to_string(),
            version,
            sealed: prost::Message::encode_to_vec(&sealed),
            by,
        };
        self.commit(&record).await?;
        Ok(version)
    }

    /// Delete the stored secret at `path` through the log.
    pub async fn delete(&self, ns: &str, path: &KeyPath, by: Writer) -> Result<(), ServeError> {
        if self.serving.stored_secret(ns, path)?.is_none() {
            return Err(ServeError::NotFound(format!("namespace {ns} has no stored secret {}", path.as_str())));
        }
        let record = Record::SecretDeleted { namespace: ns.to_string(), key_path: path.as_str().to_string(), by };
        self.commit(&record).await
    }

    /// Put a write in the log and wait until this node has applied it, so
    /// that a client reading back from the node it wrote to sees its write
    /// (as from Vault); other nodes follow within a heartbeat or two.
    async fn commit(&self, record: &Record) -> Result<(), ServeError> {
        let index = super::workload::serve::propose_record(&self.serving, record).await?;
        let wait = self.serving.keys.raft.wait(Some(APPLY_WAIT));
        match wait.applied_index_at_least(Some(index), "coco write").await {
            Ok(_) => Ok(()),
            Err(e) => Err(ServeError::Unavailable(format!(
                "the write was committed (log index {index}) but not applied here: {e}"
            ))),
        }
    }

    /// Check a presented access token against what a request needs; its id.
    pub fn check_token(&self, token: &str, need: Need<'_>) -> Result<String, TokenRefusal> {
        let now = self.now();
        self.serving.keys.view.with_state(|s| s.check_token(token, need, now).map(str::to_string))
    }

    /// Record an event in the audit log (returns once it is on disk).
    pub async fn audit(
        &self,
        front: &'static str,
        action: &'static str,
        ns: &str,
        key: &KeyPath,
        by: String,
        version: u32,
    ) -> Result<(), String> {
        let entry = audit::Entry {
            at: self.now(),
            node: self.me(),
            front,
            action,
            namespace: ns,
            key: key.as_str(),
            by,
            version,
        };
        self.audit.record(&entry).await
    }
}

/// The HTTP routes of both front ends.
pub fn router(coco: Arc<Coco>) -> Router {
    Router::new()
        .merge(vault::routes())
        .merge(kbs::routes())
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(coco)
}

/// Serve HTTPS on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    coco: Arc<Coco>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let accept = tokio::spawn(crate::net::ratls::grpc::accept_tls(listener, tls, tx));
    let service = hyper_util::service::TowerToHyperService::new(router(coco));
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            s = rx.recv() => match s { Some(Ok(s)) => s, Some(Err(_)) => continue, None => break },
            _ = &mut shutdown => break,
        };
        let service = service.clone();
        let in_flight = in_flight.clone();
        tokio::spawn(async move {
            let Ok(_slot) = in_flight.acquire_owned().await else { return };
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service);
            let _ = conn.await;
        });
    }
    accept.abort();
}

/// TLS for the port: the operator's certificate when configured (what a
/// Trustee KBS with `verify_ssl = true` or a guest's `kbs_cert` pins), else
/// the node's RA-TLS certificate. HTTP/1.1; TLS 1.2 and 1.3 (vaultrs and the
/// CoCo clients use either).
pub fn server_tls(
    configured: Option<&(std::path::PathBuf, std::path::PathBuf)>,
    creds: Arc<crate::net::ratls::grpc::CredentialResolver>,
) -> Result<Arc<rustls::ServerConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth();
    let mut cfg = match configured {
        Some((cert, key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(|i| i.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("coco.tls_cert {}: {e}", cert.display()))?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("coco.tls_key {}: {e}", key.display()))?;
            builder.with_single_cert(chain, key).map_err(|e| format!("coco TLS: {e}"))?
        }
        None => builder.with_cert_resolver(creds),
    };
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}
