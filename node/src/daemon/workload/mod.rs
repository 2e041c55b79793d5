//! The workload service (I/O shell around [`crate::workload`]): challenges,
//! attestation to a leaf certificate, keys, configs, CA bundle and CRL, on
//! the node's workload port. Every node serves it; a certificate a node
//! issues is recorded in the log first, so every node knows it, can revoke
//! it, and serves its holder after a failover.
//!
//! - [`tls`]: the port's TLS (RA-TLS server certificate, optional client certificate).
//! - [`caller`]: who is asking: a certificate (mTLS) or fresh evidence, and what they may read.
//! - [`serve`]: the gRPC handlers.

pub mod caller;
pub mod serve;
pub mod tls;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tonic::Status;
use zeroize::Zeroizing;

use super::keys::{KeyError, KeyNode};
use crate::attest::Verifier;
use crate::keys::{sealing, KeyPath};
use crate::policy::document::NamespaceDocument;
use crate::state::namespace::{Namespace, StoredSecret};
use crate::workload::backend::FileBackend;
use crate::workload::challenge::Spent;
use guardian_proto::v1::EncryptedSecret;
use prost::Message;

/// Why a workload request failed; each maps to one gRPC code.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("namespace {0:?} does not exist")]
    NoNamespace(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Denied(String),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl From<ServeError> for Status {
    fn from(e: ServeError) -> Status {
        let msg = e.to_string();
        match e {
            ServeError::NoNamespace(_) | ServeError::NotFound(_) => Status::not_found(msg),
            ServeError::Denied(_) => Status::permission_denied(msg),
            ServeError::Unauthenticated(_) => Status::unauthenticated(msg),
            ServeError::BadRequest(_) => Status::invalid_argument(msg),
            ServeError::Unavailable(_) => Status::unavailable(msg),
            ServeError::Internal(_) => Status::internal(msg),
        }
    }
}

impl From<KeyError> for ServeError {
    fn from(e: KeyError) -> Self {
        match e {
            KeyError::UnknownNamespace(n) => ServeError::NoNamespace(n),
            other => ServeError::Unavailable(other.to_string()),
        }
    }
}

/// A namespace secret held in memory, shared by the requests that use it.
type SharedSecret = Arc<Zeroizing<[u8; 32]>>;

/// Most verified client certificates remembered (then the memo starts over).
const MAX_MEMO: usize = 16_384;

/// What the workload service keeps between requests.
pub struct Serving {
    pub keys: Arc<KeyNode>,
    pub verifier: Arc<Verifier>,
    pub files: FileBackend,
    /// Challenges spent on fresh-evidence requests at this node.
    spent: Spent,
    /// Parsed policy documents by namespace, with the policy version parsed.
    docs: Mutex<HashMap<String, (u64, Arc<NamespaceDocument>)>>,
    /// Namespace secrets in memory (zeroized on drop), so the hot path does
    /// not unseal from disk each time.
    secrets: Mutex<HashMap<(String, u32), SharedSecret>>,
    /// Client certificates whose CA signature was verified: SHA-256 of the DER → (namespace, serial).
    verified: Mutex<HashMap<[u8; 32], (String, String)>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Serving {
    pub fn new(keys: Arc<KeyNode>, verifier: Arc<Verifier>, files: FileBackend) -> Self {
        Serving {
            keys,
            verifier,
            files,
            spent: Spent::default(),
            docs: Mutex::default(),
            secrets: Mutex::default(),
            verified: Mutex::default(),
        }
    }

    fn now(&self) -> u64 {
        (self.keys.clock)()
    }

    /// Read the namespace from the replicated state.
    pub fn with_namespace<T>(&self, name: &str, f: impl FnOnce(&Namespace) -> T) -> Result<T, ServeError> {
        self.keys
            .view
            .with_state(|s| s.namespaces.get(name).map(f))
            .ok_or_else(|| ServeError::NoNamespace(name.to_string()))
    }

    /// The namespace's policy, parsed once per policy version.
    pub fn document(&self, name: &str) -> Result<Arc<NamespaceDocument>, ServeError> {
        // The hot path reads only the version; the text is copied on a cache miss.
        let current = self.with_namespace(name, |n| n.policy_version)?;
        if let Some((v, doc)) = lock(&self.docs).get(name) {
            if *v == current {
                return Ok(doc.clone());
            }
        }
        let (version, text) = self.with_namespace(name, |n| (n.policy_version, n.policy.clone()))?;
        let text = text.ok_or_else(|| {
            ServeError::Denied(format!(
                "namespace {name} has no policy yet, so it admits no workload (guardctl policy set)"
            ))
        })?;
        let doc = Arc::new(NamespaceDocument::parse(name, &text).map_err(|e| ServeError::Internal(e.to_string()))?);
        lock(&self.docs).insert(name.to_string(), (version, doc.clone()));
        Ok(doc)
    }

    /// `S(ns, v)` for a live version `v`.
    pub async fn secret(&self, name: &str, version: u32) -> Result<SharedSecret, ServeError> {
        let key = (name.to_string(), version);
        if let Some(s) = lock(&self.secrets).get(&key) {
            return Ok(s.clone());
        }
        let derived = super::keys::derive::namespace_secret(&self.keys, name, version, true).await?;
        let secret = Arc::new(derived.secret);
        lock(&self.secrets).insert(key, secret.clone());
        Ok(secret)
    }

    /// The stored secret at `path`, if an admin (or a CoCo front end) put one there.
    pub fn stored_secret(&self, ns: &str, path: &KeyPath) -> Result<Option<StoredSecret>, ServeError> {
        self.with_namespace(ns, |n| n.secrets.get(path.as_str()).cloned())
    }

    /// Open a stored secret with the ingest key of the version it is sealed to.
    pub async fn open_stored(
        &self,
        ns: &str,
        path: &KeyPath,
        stored: &StoredSecret,
    ) -> Result<(u32, Zeroizing<Vec<u8>>), ServeError> {
        let secret = self.secret(ns, stored.version).await?;
        let (ingest, _) = sealing::ingest_key(&secret);
        let sealed =
            EncryptedSecret::decode(stored.sealed.as_slice()).map_err(|e| ServeError::Internal(e.to_string()))?;
        let context = sealing::put_context(ns, path.as_str(), stored.version);
        let value = sealing::open(&ingest, &context, &sealed).map_err(|e| ServeError::Internal(e.to_string()))?;
        Ok((stored.version, value))
    }

    /// Remember a verified client certificate.
    fn remember(&self, der_hash: [u8; 32], namespace: &str, serial: &str) {
        let mut memo = lock(&self.verified);
        if memo.len() >= MAX_MEMO {
            memo.clear();
        }
        memo.insert(der_hash, (namespace.to_string(), serial.to_string()));
    }

    fn recall(&self, der_hash: &[u8; 32]) -> Option<(String, String)> {
        lock(&self.verified).get(der_hash).cloned()
    }
}
