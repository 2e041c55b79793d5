//! The cluster's CA certificates as replicated state, and the rules every
//! node applies before recording one.
//!
//! A certificate enters the log only with a valid signature by the FROST
//! group key over exactly the TBSCertificate the node rebuilds itself from
//! the state ([`crate::ca`] builds both deterministically), so a leader
//! cannot record a certificate the cluster did not sign. That a namespace
//! CA's key really derives from `S(ns, v)` is checked by every signer before
//! it signs (`daemon::keys::ca::check_intent`): a signature needs t signers,
//! so at least one honest node checked it.

use x509_parser::prelude::FromDer;

use super::ceremony::GroupKeys;
use crate::ca::{self, NamespaceCaParams, RootCaParams};
use crate::state::ClusterState;

/// The root CA's fixed parameters under the current keys.
pub fn root_params(cluster_id: &[u8; 16], keys: &GroupKeys) -> Result<RootCaParams, String> {
    let group_key = keys.frost_public()?.verifying_key();
    Ok(RootCaParams { cluster_id: *cluster_id, group_key, not_before: keys.created_at })
}

/// A namespace CA's parameters, given its public key.
pub fn namespace_params(
    cluster_id: &[u8; 16],
    state: &ClusterState,
    namespace: &str,
    version: u32,
    public_key: [u8; 32],
) -> Result<NamespaceCaParams, String> {
    let keys = state.keys.current.as_ref().ok_or("no threshold keys yet")?;
    let ns = state.namespaces.get(namespace).ok_or_else(|| format!("no namespace {namespace:?}"))?;
    // A version's CA starts when the version does (creation, or the rotation to it).
    let created =
        *ns.versions.get(&version).ok_or_else(|| format!("namespace {namespace:?} has no live version {version}"))?;
    Ok(NamespaceCaParams {
        root: root_params(cluster_id, keys)?,
        namespace: namespace.to_string(),
        version,
        public_key,
        // A namespace created before the keys existed starts with them.
        not_before: created.max(keys.created_at),
    })
}

/// The Ed25519 subject key of a CA certificate.
pub fn subject_key(der: &[u8]) -> Result<[u8; 32], String> {
    signature_and_key(der).map(|(_, key)| key)
}

/// The signature and subject key of a certificate.
fn signature_and_key(der: &[u8]) -> Result<([u8; 64], [u8; 32]), String> {
    let (rest, cert) =
        x509_parser::certificate::X509Certificate::from_der(der).map_err(|e| format!("not a certificate: {e}"))?;
    if !rest.is_empty() {
        return Err("trailing bytes after the certificate".into());
    }
    let sig: [u8; 64] = cert.signature_value.data.as_ref().try_into().map_err(|_| "not an Ed25519 signature")?;
    let key: [u8; 32] =
        cert.public_key().subject_public_key.data.as_ref().try_into().map_err(|_| "not an Ed25519 key")?;
    Ok((sig, key))
}

/// Record the root CA certificate after checking it is the one the state calls for.
pub fn set_root(cluster_id: &[u8; 16], state: &mut ClusterState, der: &[u8]) -> Result<(), String> {
    let keys = state.keys.current.as_ref().ok_or("no threshold keys yet")?;
    if state.keys.root_ca.is_some() {
        return Err("the root CA certificate is already recorded".into());
    }
    let (sig, _) = signature_and_key(der)?;
    let expected = ca::root_ca_cert(&root_params(cluster_id, keys)?, &sig).map_err(|e| e.to_string())?;
    if expected != der {
        return Err("root CA certificate differs from the one the cluster's state calls for".into());
    }
    state.keys.root_ca = Some(der.to_vec());
    Ok(())
}

/// Record a namespace CA certificate after checking it.
pub fn set_namespace(
    cluster_id: &[u8; 16],
    state: &mut ClusterState,
    namespace: &str,
    version: u32,
    der: &[u8],
) -> Result<(), String> {
    if state.keys.namespace_cas.contains_key(&(namespace.to_string(), version)) {
        return Err(format!("namespace {namespace:?} already has a CA certificate for version {version}"));
    }
    let (sig, key) = signature_and_key(der)?;
    let params = namespace_params(cluster_id, state, namespace, version, key)?;
    let expected = ca::namespace_ca_cert(&params, &sig).map_err(|e| e.to_string())?;
    if expected != der {
        return Err("namespace CA certificate differs from the one the cluster's state calls for".into());
    }
    state.keys.namespace_cas.insert((namespace.to_string(), version), der.to_vec());
    Ok(())
}
