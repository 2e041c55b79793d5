//! Who is asking: a workload holding a certificate the namespace CA issued
//! (mTLS), or one presenting fresh evidence; and the checks each passes.

use std::sync::Arc;

use guardian_proto::v1::{Evidence as EvidenceMsg, EvidenceKind, FreshEvidence};
use rustls::pki_types::CertificateDer;
use sha2::{Digest, Sha256};

use super::{ServeError, Serving};
use crate::attest::tdx::Collateral;
use crate::attest::{Claims, Evidence, TeeKind};
use crate::ca::leaf;
use crate::policy::document::NamespaceDocument;
use crate::policy::Decision;
use crate::state::namespace::CertRefusal;
use crate::workload::challenge::{self, Checked};

/// How the caller proved what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// mTLS with a certificate the namespace CA issued: the handshake proved the key.
    Certificate,
    /// Evidence bound to a challenge and an X25519 key, in the request itself.
    FreshEvidence,
}

/// An authenticated workload.
#[derive(Debug, Clone)]
pub struct Caller {
    pub namespace: String,
    /// The policy rule that admits it (for grants).
    pub rule: String,
    pub auth: Auth,
    /// The X25519 key fresh evidence bound: secrets for this caller are sealed to it.
    pub bound_key: Option<[u8; 32]>,
    pub doc: Arc<NamespaceDocument>,
}

/// Verified evidence of a workload that the namespace policy admits.
pub struct Admitted {
    pub claims: Claims,
    pub rule: String,
    pub challenge: Checked,
}

/// Check `evidence` for `namespace`: the challenge, the binding to the nonce
/// and the workload key `spki`, the evidence itself, and the policy.
pub fn admit(
    serving: &Serving,
    namespace: &str,
    doc: &NamespaceDocument,
    evidence: Option<&EvidenceMsg>,
    nonce: &[u8],
    spki: &[u8],
) -> Result<Admitted, ServeError> {
    let now = serving.now();
    let node = &serving.keys;
    let identity_of = |id| node.view.with_state(|s| s.members.get(&id).map(|m| m.identity));
    let checked = challenge::check(nonce, &node.cluster_id, namespace, identity_of, now)
        .map_err(|e| ServeError::Denied(e.to_string()))?;
    let evidence = evidence.ok_or_else(|| ServeError::BadRequest("no evidence".into()))?;
    let kind = match EvidenceKind::try_from(evidence.kind) {
        Ok(EvidenceKind::Tdx) => TeeKind::Tdx,
        Ok(EvidenceKind::AzTdxVtpm) => TeeKind::AzTdxVtpm,
        Ok(EvidenceKind::Sim) => TeeKind::Sim,
        _ => return Err(ServeError::BadRequest("unknown evidence kind: use tdx, az-tdx-vtpm or sim".into())),
    };
    let collateral = evidence
        .collateral
        .as_ref()
        .map(|c| Collateral::from_json(&c.data))
        .transpose()
        .map_err(|e| ServeError::BadRequest(e.to_string()))?;
    let mut opts = doc.workloads.verify_options(now);
    opts.expected_nonce = Some(challenge::binding(nonce, spki).to_vec());
    let ev = Evidence {
        kind,
        bytes: &evidence.evidence,
        collateral: collateral.as_ref(),
        event_log: (!evidence.event_log.is_empty()).then_some(evidence.event_log.as_slice()),
    };
    let claims =
        serving.verifier.verify(&ev, &opts).map_err(|e| ServeError::Denied(format!("evidence refused: {e}")))?;
    match doc.workloads.evaluate(&claims) {
        Decision::Allow { rule } => Ok(Admitted { claims, rule, challenge: checked }),
        Decision::Deny { reason } => Err(ServeError::Denied(reason)),
    }
}

/// Authenticate a key or config request for `namespace`.
pub async fn identify(
    serving: &Serving,
    namespace: &str,
    peer_certs: Option<Arc<Vec<CertificateDer<'static>>>>,
    fresh: Option<&FreshEvidence>,
) -> Result<Caller, ServeError> {
    let doc = serving.document(namespace)?;
    if let Some(fresh) = fresh {
        let bound = crate::keys::sealing::x25519_public(&fresh.public_key_spki_der)
            .map_err(|e| ServeError::BadRequest(format!("fresh evidence must bind an X25519 key: {e}")))?;
        let admitted =
            admit(serving, namespace, &doc, fresh.evidence.as_ref(), &fresh.nonce, &fresh.public_key_spki_der)?;
        serving.spent.spend(&admitted.challenge, serving.now()).map_err(|e| ServeError::Denied(e.to_string()))?;
        return Ok(Caller {
            namespace: namespace.to_string(),
            rule: admitted.rule,
            auth: Auth::FreshEvidence,
            bound_key: Some(bound),
            doc,
        });
    }
    let leaf_der = peer_certs.as_ref().and_then(|c| c.first()).ok_or_else(|| {
        ServeError::Unauthenticated(
            "no client certificate and no fresh evidence: attest first (Attest) and connect with the certificate"
                .into(),
        )
    })?;
    let serial = certificate_serial(serving, namespace, leaf_der.as_ref())?;
    let now = serving.now();
    let rule = serving.with_namespace(namespace, |ns| match ns.cert_status(&serial, Some(&doc), now) {
        Ok(cert) => Ok(cert.rule.clone()),
        Err(e @ CertRefusal::Expired(_)) => Err(ServeError::Unauthenticated(e.to_string())),
        Err(e) => Err(ServeError::Denied(e.to_string())),
    })??;
    Ok(Caller { namespace: namespace.to_string(), rule, auth: Auth::Certificate, bound_key: None, doc })
}

/// The serial of a client certificate that `namespace`'s CA issued (its
/// signature verified once, then remembered by the certificate's hash).
fn certificate_serial(serving: &Serving, namespace: &str, der: &[u8]) -> Result<String, ServeError> {
    let hash: [u8; 32] = Sha256::digest(der).into();
    if let Some((ns, serial)) = serving.recall(&hash) {
        return match ns == namespace {
            true => Ok(serial),
            false => Err(wrong_namespace(namespace)),
        };
    }
    let parsed = leaf::parse_leaf(der).map_err(|e| ServeError::Unauthenticated(format!("client certificate: {e}")))?;
    let serial = hex::encode(parsed.serial16().ok_or_else(|| wrong_namespace(namespace))?);
    let (version, spki_sha256) = serving
        .with_namespace(namespace, |ns| ns.certs.get(&serial).map(|c| (c.version, c.spki_sha256)))?
        .ok_or_else(|| wrong_namespace(namespace))?;
    let ca_der = serving
        .keys
        .view
        .with_state(|s| s.keys.namespace_cas.get(&(namespace.to_string(), version)).cloned())
        .ok_or_else(|| {
            ServeError::Unavailable(format!("namespace {namespace} has no CA certificate for version {version}"))
        })?;
    let ca_public = crate::threshold::certs::subject_key(&ca_der).map_err(ServeError::Internal)?;
    leaf::verify_leaf_signature(der, &ca_public).map_err(|_| wrong_namespace(namespace))?;
    if parsed.spki_sha256 != spki_sha256 {
        return Err(ServeError::Denied("the certificate's key is not the one recorded for its serial".into()));
    }
    serving.remember(hash, namespace, &serial);
    Ok(serial)
}

fn wrong_namespace(namespace: &str) -> ServeError {
    ServeError::Denied(format!("the client certificate was not issued by namespace {namespace}'s CA"))
}
