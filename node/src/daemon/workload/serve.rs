//! The WorkloadService handlers.

use std::sync::Arc;
use std::time::Duration;

use guardian_proto::v1::workload_service_server::WorkloadService;
use guardian_proto::v1::*;
use prost::Message;
use rand::RngCore;
use tonic::{Request, Response, Status};

use super::caller::{admit, identify, Auth, Caller};
use super::{ServeError, Serving};
use crate::ca::{self, leaf};
use crate::keys::{hierarchy, sealing, KeyPath};
use crate::state::namespace::{IssuedCert, Record};
use crate::state::{Command, Response as Applied};
use crate::threshold::envelope::{Domain, Envelope};
use crate::workload::backend;
use crate::workload::challenge;
use crate::workload::refs::{self, Target};

/// How long Attest waits for its certificate record to commit.
const RECORD_TIMEOUT: Duration = Duration::from_secs(10);
/// CRLs are re-signed every period (every node alike) and say the next one is due two periods on.
const CRL_PERIOD_SECS: u64 = 6 * 3600;

/// The gRPC service.
#[derive(Clone)]
pub struct WorkloadServer(pub Arc<Serving>);

fn ns_name(ns: &str) -> Result<(), ServeError> {
    crate::policy::NamespaceName::new(ns).map(|_| ()).map_err(ServeError::BadRequest)
}

#[tonic::async_trait]
impl WorkloadService for WorkloadServer {
    #[tracing::instrument(skip_all, name = "workload.get_challenge", fields(namespace = %req.get_ref().namespace))]
    async fn get_challenge(&self, req: Request<GetChallengeRequest>) -> Result<Response<GetChallengeResponse>, Status> {
        let ns = &req.get_ref().namespace;
        ns_name(ns)?;
        self.0.with_namespace(ns, |_| ())?;
        let node = &self.0.keys;
        let sign = |m: &[u8]| node.key.sign(m).map_err(|e| e.to_string());
        let (nonce, expires_at) = challenge::mint(
            &node.cluster_id,
            node.me,
            node.key.spki_der(),
            ns,
            self.0.now(),
            &mut rand::thread_rng(),
            sign,
        )
        .map_err(ServeError::Internal)?;
        Ok(Response::new(GetChallengeResponse { nonce, expires_at_unix: expires_at as i64 }))
    }

    #[tracing::instrument(skip_all, name = "workload.attest", fields(namespace = %req.get_ref().namespace))]
    async fn attest(&self, req: Request<AttestRequest>) -> Result<Response<AttestResponse>, Status> {
        Ok(Response::new(attest(&self.0, req.into_inner()).await?))
    }

    #[tracing::instrument(skip_all, name = "workload.get_key", fields(namespace = %req.get_ref().namespace, key_path = %req.get_ref().key_path))]
    async fn get_key(&self, req: Request<GetKeyRequest>) -> Result<Response<GetKeyResponse>, Status> {
        let certs = req.peer_certs();
        let req = req.into_inner();
        ns_name(&req.namespace)?;
        let caller = identify(&self.0, &req.namespace, certs, req.fresh_evidence.as_ref()).await?;
        let path = KeyPath::parse(&req.key_path).map_err(|e| ServeError::BadRequest(e.to_string()))?;
        caller.doc.may_read_key(&caller.rule, path.as_str()).map_err(ServeError::Denied)?;
        let recipient = recipient(&caller, req.encryption, &req.recipient_public_key_spki_der)?;
        let (version, value) = key_value(&self.0, &caller.namespace, &path, req.version).await?;
        let secret = protect(&caller.namespace, path.as_str(), version, &value, recipient)?;
        tracing::info!(rule = %caller.rule, version, auth = ?caller.auth, "key released");
        Ok(Response::new(GetKeyResponse { key_path: req.key_path, version, secret: Some(secret) }))
    }

    #[tracing::instrument(skip_all, name = "workload.get_config", fields(namespace = %req.get_ref().namespace))]
    async fn get_config(&self, req: Request<GetConfigRequest>) -> Result<Response<GetConfigResponse>, Status> {
        let certs = req.peer_certs();
        let req = req.into_inner();
        ns_name(&req.namespace)?;
        let caller = identify(&self.0, &req.namespace, certs, req.fresh_evidence.as_ref()).await?;
        let recipient = recipient(&caller, req.encryption, &req.recipient_public_key_spki_der)?;
        Ok(Response::new(config(&self.0, &caller, req.selector, recipient).await?))
    }

    #[tracing::instrument(skip_all, name = "workload.get_ca_bundle", fields(namespace = %req.get_ref().namespace))]
    async fn get_ca_bundle(&self, req: Request<GetCaBundleRequest>) -> Result<Response<GetCaBundleResponse>, Status> {
        let ns = req.into_inner().namespace;
        let (root, cas) = self.0.keys.view.with_state(|s| {
            let versions: Vec<u32> =
                s.namespaces.get(&ns).map(|n| n.versions.keys().rev().copied().collect()).unwrap_or_default();
            let cas: Vec<NamespaceCaCertificate> = versions
                .into_iter()
                .filter_map(|v| {
                    let der = s.keys.namespace_cas.get(&(ns.clone(), v))?;
                    Some(NamespaceCaCertificate { version: v, certificate_der: der.clone() })
                })
                .collect();
            (s.keys.root_ca.clone(), cas)
        });
        let root_ca_der =
            root.ok_or_else(|| ServeError::Unavailable("the root CA certificate is not issued yet".into()))?;
        Ok(Response::new(GetCaBundleResponse { root_ca_der, namespace_cas: cas }))
    }

    #[tracing::instrument(skip_all, name = "workload.get_crl", fields(namespace = %req.get_ref().namespace))]
    async fn get_crl(&self, req: Request<GetCrlRequest>) -> Result<Response<GetCrlResponse>, Status> {
        let req = req.into_inner();
        ns_name(&req.namespace)?;
        Ok(Response::new(crl(&self.0, &req.namespace, req.version).await?))
    }
}

/// Evidence in, certificate out; the certificate is recorded in the log
/// (spending the challenge) before it is returned.
async fn attest(serving: &Serving, req: AttestRequest) -> Result<AttestResponse, ServeError> {
    let ns = req.namespace.as_str();
    ns_name(ns)?;
    let doc = serving.document(ns)?;
    let spki = match &req.subject {
        Some(attest_request::Subject::CsrDer(csr)) => {
            leaf::csr_spki(csr).map_err(|e| ServeError::BadRequest(e.to_string()))?
        }
        Some(attest_request::Subject::PublicKeySpkiDer(spki)) => spki.clone(),
        None => return Err(ServeError::BadRequest("no subject: give a CSR or a public key".into())),
    };
    let admitted = admit(serving, ns, &doc, req.evidence.as_ref(), &req.nonce, &spki)?;
    let version = serving.with_namespace(ns, |n| n.current_version)?;
    let ca_der =
        serving.keys.view.with_state(|s| s.keys.namespace_cas.get(&(ns.to_string(), version)).cloned()).ok_or_else(
            || {
                ServeError::Unavailable(format!(
                    "namespace {ns}'s CA certificate (version {version}) is not issued yet; retry shortly"
                ))
            },
        )?;
    let secret = serving.secret(ns, version).await?;
    let ca_key = ca::namespace_ca_key(&secret).map_err(|e| ServeError::Internal(e.to_string()))?;
    let mut serial = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut serial);
    // Positive, and a non-zero first byte keeps the DER INTEGER exactly 16 bytes (minimal).
    serial[0] = (serial[0] & 0x7f).max(1);
    let subject = match &req.subject {
        Some(attest_request::Subject::CsrDer(csr)) => leaf::Subject::Csr(csr),
        _ => leaf::Subject::PublicKey(&spki),
    };
    let now = serving.now();
    let request = leaf::LeafRequest {
        namespace: ns,
        version,
        rule: &admitted.rule,
        subject,
        requested_validity_secs: req.requested_validity_secs,
        now,
        serial,
    };
    let issued = leaf::issue(&ca_key, &ca_der, &request, &doc.certificates).map_err(|e| match e {
        leaf::LeafError::SanNotAllowed { .. } | leaf::LeafError::BadCsr(_) | leaf::LeafError::BadPublicKey(_) => {
            ServeError::BadRequest(e.to_string())
        }
        other => ServeError::Internal(other.to_string()),
    })?;
    let cert = IssuedCert {
        version,
        rule: admitted.rule.clone(),
        spki_sha256: issued.spki_sha256,
        issued_at: now,
        not_after: issued.not_after,
        tee: admitted.claims.tee.as_str().to_string(),
        measurements: measurements(&admitted.claims),
        issued_by: serving.keys.me,
        subject: [vec![format!("CN={}", admitted.rule)], issued.dns_sans.clone(), issued.uri_sans.clone()]
            .concat()
            .join(", "),
    };
    let record = Record::CertIssued {
        namespace: ns.to_string(),
        serial: hex::encode(serial),
        challenge: admitted.challenge.id,
        challenge_expires: admitted.challenge.expires_at,
        cert,
    };
    propose_record(serving, &record).await?;
    let root = serving.keys.view.with_state(|s| s.keys.root_ca.clone()).unwrap_or_default();
    tracing::info!(rule = %admitted.rule, serial = %hex::encode(serial), "workload certificate issued");
    Ok(AttestResponse {
        certificate_der: issued.der,
        chain_der: vec![ca_der, root],
        expires_at_unix: issued.not_after as i64,
        matched_rule: admitted.rule,
    })
}

/// The measurement registers a certificate is revoked by, as the policy names them.
fn measurements(claims: &crate::attest::Claims) -> std::collections::BTreeMap<String, String> {
    use crate::policy::Register;
    let mut regs = vec![Register::Mrtd, Register::MrConfigId];
    regs.extend((0..4).map(Register::Rtmr));
    regs.extend(claims.pcrs.keys().map(|i| Register::Pcr(*i)));
    regs.into_iter().filter_map(|r| Some((r.to_string(), hex::encode(r.value(claims)?)))).collect()
}

/// Put a node-signed record in the log: directly on the leader, else through it.
pub async fn propose_record(serving: &Serving, record: &Record) -> Result<u64, ServeError> {
    let node = &serving.keys;
    let body = serde_json::to_vec(record).map_err(|e| ServeError::Internal(e.to_string()))?;
    let envelope = Envelope::seal(Domain::Record, &node.cluster_id, node.me, node.key.spki_der(), body, |m| {
        node.key.sign(m).map_err(|e| e.to_string())
    })
    .map_err(|e| ServeError::Internal(e.to_string()))?;
    let leader = node.raft.metrics().borrow().current_leader;
    match leader {
        Some(l) if l == node.me => commit_record(node, envelope).await,
        Some(l) => {
            let envelope_json = serde_json::to_vec(&envelope).map_err(|e| ServeError::Internal(e.to_string()))?;
            let req = ProposeRecordRequest { envelope_json };
            let resp = node
                .peers
                .call(l, RECORD_TIMEOUT, |mut c| async move { c.propose_record(req).await })
                .await
                .map_err(|e| ServeError::Unavailable(format!("the certificate could not be recorded: {e}")))?;
            match resp.refused.is_empty() {
                true => Ok(resp.log_index),
                false => Err(ServeError::Denied(resp.refused)),
            }
        }
        None => Err(ServeError::Unavailable("no leader right now; retry shortly".into())),
    }
}

/// On the leader: commit a record and wait for it to apply. A record the
/// rules refuse (replayed challenge, revoked measurement, ...) is `Denied`.
pub async fn commit_record(node: &crate::daemon::keys::KeyNode, envelope: Envelope) -> Result<u64, ServeError> {
    let unavailable = |why: String| ServeError::Unavailable(format!("the certificate could not be recorded: {why}"));
    let write = node.raft.client_write(Command::Record { envelope, proposed_at: (node.clock)() });
    match tokio::time::timeout(RECORD_TIMEOUT, write).await {
        Ok(Ok(r)) => match r.data {
            Applied::Applied => Ok(r.log_id.index),
            Applied::Rejected { reason } => Err(ServeError::Denied(reason)),
        },
        Ok(Err(e)) => Err(unavailable(e.to_string())),
        Err(_) => Err(unavailable(format!("not committed within {} s", RECORD_TIMEOUT.as_secs()))),
    }
}

/// Where a secret for `caller` goes: plaintext over TLS, or sealed to an X25519 key.
fn recipient(caller: &Caller, encryption: i32, recipient_spki: &[u8]) -> Result<Option<[u8; 32]>, ServeError> {
    let asked = SecretEncryption::try_from(encryption).unwrap_or(SecretEncryption::Unspecified);
    match caller.auth {
        Auth::FreshEvidence => {
            if !recipient_spki.is_empty() {
                return Err(ServeError::BadRequest(
                    "with fresh evidence secrets are sealed to the key the evidence binds; another recipient is refused"
                        .into(),
                ));
            }
            Ok(caller.bound_key)
        }
        Auth::Certificate => {
            let encrypt = asked != SecretEncryption::Unspecified || caller.doc.require_encrypted_secrets;
            if !encrypt {
                return Ok(None);
            }
            if asked != SecretEncryption::Unspecified && asked != SecretEncryption::HpkeX25519Sha256Chacha20poly1305 {
                return Err(ServeError::BadRequest(format!(
                    "encryption {asked:?} is not offered here; use HPKE X25519"
                )));
            }
            if recipient_spki.is_empty() {
                return Err(ServeError::BadRequest(
                    "this namespace requires secrets encrypted to the workload: give an X25519 recipient key".into(),
                ));
            }
            sealing::x25519_public(recipient_spki).map(Some).map_err(|e| ServeError::BadRequest(e.to_string()))
        }
    }
}

fn protect(
    ns: &str,
    path: &str,
    version: u32,
    value: &[u8],
    recipient: Option<[u8; 32]>,
) -> Result<get_key_response::Secret, ServeError> {
    Ok(match recipient {
        None => get_key_response::Secret::PlaintextSecret(value.to_vec()),
        Some(pk) => get_key_response::Secret::EncryptedSecret(
            sealing::seal(&pk, &sealing::key_context(ns, path, version), value, &mut rand::thread_rng())
                .map_err(|e| ServeError::BadRequest(e.to_string()))?,
        ),
    })
}

/// The key at `path`: a stored secret if an admin put one there, else derived from `S(ns, v)`.
async fn key_value(
    serving: &Serving,
    ns: &str,
    path: &KeyPath,
    asked: u32,
) -> Result<(u32, zeroize::Zeroizing<Vec<u8>>), ServeError> {
    if path.is_workload_sealed() {
        return Err(ServeError::BadRequest("sealed/ secrets are delivered through configs".into()));
    }
    if let Some(stored) = serving.stored_secret(ns, path)? {
        if asked != 0 && asked != stored.version {
            return Err(ServeError::NotFound(format!(
                "{} is a stored secret sealed to version {}; ask for that version (or 0)",
                path.as_str(),
                stored.version
            )));
        }
        return serving.open_stored(ns, path, &stored).await;
    }
    let version = serving.with_namespace(ns, |n| n.resolve_version(asked))?.map_err(ServeError::NotFound)?;
    let secret = serving.secret(ns, version).await?;
    let key = hierarchy::derive(&secret, path.purpose());
    Ok((version, zeroize::Zeroizing::new(key.to_vec())))
}

/// A config and everything it references, resolved for `caller`.
async fn config(
    serving: &Serving,
    caller: &Caller,
    selector: Option<get_config_request::Selector>,
    recipient: Option<[u8; 32]>,
) -> Result<GetConfigResponse, ServeError> {
    let ns = &caller.namespace;
    // Only the configs this request resolves are copied out of the state, one at a time.
    let lookup = |n: &str| serving.with_namespace(ns, |x| x.configs.get(n).cloned()).ok().flatten();
    let (name, root) = match selector {
        Some(get_config_request::Selector::Name(name)) => {
            let c =
                lookup(&name).ok_or_else(|| ServeError::NotFound(format!("namespace {ns} has no config {name:?}")))?;
            (name, c)
        }
        Some(get_config_request::Selector::Digest(d)) => serving
            .with_namespace(ns, |x| {
                x.configs.iter().find(|(_, c)| c.digest.as_slice() == d.as_slice()).map(|(n, c)| (n.clone(), c.clone()))
            })?
            .ok_or_else(|| {
                ServeError::NotFound(format!("namespace {ns} has no config with digest {}", hex::encode(&d)))
            })?,
        None => return Err(ServeError::BadRequest("name a config, by name or digest".into())),
    };
    caller.doc.may_read_config(&caller.rule, &name).map_err(ServeError::Denied)?;
    let content = backend::content(&root, &serving.files).map_err(|e| ServeError::Unavailable(e.to_string()))?;
    let fetch = |n: &str| -> Result<Vec<u8>, String> {
        caller.doc.may_read_config(&caller.rule, n)?;
        let c = lookup(n).ok_or_else(|| format!("no config {n:?}"))?;
        backend::content(&c, &serving.files).map_err(|e| e.to_string())
    };
    let plan = refs::plan(&content, fetch).map_err(|e| ServeError::BadRequest(format!("config {name:?}: {e}")))?;
    let mut references = Vec::with_capacity(plan.targets.len());
    for target in &plan.targets {
        let reference = target.as_reference();
        let resolved = match target {
            Target::Config(n) => {
                let digest =
                    serving.with_namespace(ns, |x| x.configs.get(n).map(|c| c.digest.to_vec()))?.unwrap_or_default();
                let content = plan.configs.get(n).cloned().unwrap_or_default();
                ResolvedReference {
                    reference,
                    value: Some(resolved_reference::Value::ConfigContent(content)),
                    config_digest: digest,
                }
            }
            Target::Sealed(n) => {
                let path = format!("{}/{n}", hierarchy::WORKLOAD_SEALED_TYPE);
                let stored = serving.with_namespace(ns, |x| x.secrets.get(&path).cloned())?.ok_or_else(|| {
                    ServeError::NotFound(format!("config {name:?} references {path}, which is not stored"))
                })?;
                caller.doc.may_read_key(&caller.rule, &path).map_err(ServeError::Denied)?;
                let sealed = EncryptedSecret::decode(stored.sealed.as_slice())
                    .map_err(|e| ServeError::Internal(e.to_string()))?;
                ResolvedReference {
                    reference,
                    value: Some(resolved_reference::Value::EncryptedSecret(sealed)),
                    config_digest: vec![],
                }
            }
            Target::Key { key_type, name: n } => {
                let path =
                    KeyPath::parse(&format!("{key_type}/{n}")).map_err(|e| ServeError::BadRequest(e.to_string()))?;
                caller.doc.may_read_key(&caller.rule, path.as_str()).map_err(ServeError::Denied)?;
                let (version, value) = key_value(serving, ns, &path, 0).await?;
                let value = match protect(ns, path.as_str(), version, &value, recipient)? {
                    get_key_response::Secret::PlaintextSecret(v) => resolved_reference::Value::PlaintextSecret(v),
                    get_key_response::Secret::EncryptedSecret(e) => resolved_reference::Value::EncryptedSecret(e),
                };
                ResolvedReference { reference, value: Some(value), config_digest: vec![] }
            }
        };
        references.push(resolved);
    }
    let media_type = root.media_type.clone();
    let digest = root.digest.to_vec();
    Ok(GetConfigResponse { name, digest, media_type, content, references })
}

/// The CRL of `ns`'s CA for `version` (0 = current). Every node builds the
/// same bytes from the same state and period.
async fn crl(serving: &Serving, ns: &str, version: u32) -> Result<GetCrlResponse, ServeError> {
    let doc = serving.document(ns).ok();
    let now = serving.now();
    let (version, revoked, changes) = serving
        .with_namespace(ns, |n| {
            let v = n.resolve_version(version)?;
            let revoked: Vec<([u8; 16], u64)> = n
                .revoked_certs(doc.as_deref())
                .into_iter()
                .filter(|(s, _)| n.certs.get(s).is_some_and(|c| c.version == v))
                .filter_map(|(s, at)| Some((hex::decode(&s).ok()?.try_into().ok()?, at)))
                .collect();
            Ok::<_, String>((v, revoked, n.crl_changes))
        })?
        .map_err(ServeError::NotFound)?;
    let ca_der = serving
        .keys
        .view
        .with_state(|s| s.keys.namespace_cas.get(&(ns.to_string(), version)).cloned())
        .ok_or_else(|| ServeError::Unavailable(format!("namespace {ns}'s CA certificate is not issued yet")))?;
    let secret = serving.secret(ns, version).await?;
    let ca_key = ca::namespace_ca_key(&secret).map_err(|e| ServeError::Internal(e.to_string()))?;
    let this_update = now - now % CRL_PERIOD_SECS;
    let next_update = this_update + 2 * CRL_PERIOD_SECS;
    let applied = serving.keys.view.last_applied().map_or(0, |l| l.index);
    // Grows with the period and with every change to the list inside it.
    let number = (this_update / CRL_PERIOD_SECS) << 20 | (changes & 0xfffff);
    let der = leaf::crl(&ca_key, &ca_der, &revoked, this_update, next_update, number)
        .map_err(|e| ServeError::Internal(e.to_string()))?;
    Ok(GetCrlResponse { crl_der: der, applied_index: applied, next_update_unix: next_update as i64 })
}
