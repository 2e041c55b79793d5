//! The cluster's CA certificates: the leader has the root CA certificate and
//! each namespace's CA certificate signed by the cluster (FROST) and records
//! them in the log; every signer first checks that what it is asked to sign
//! is exactly what the replicated state calls for.

use std::sync::Arc;
use std::time::Duration;

use guardian_proto::v1::{SigningIntent, SigningPurpose};

use super::derive::namespace_secret;
use super::signing::sign;
use super::{KeyError, KeyNode};
use crate::ca;
use crate::threshold::ceremony::{GroupKeys, KeyCommand};
use crate::threshold::certs::{namespace_params, root_params};

fn other(e: impl std::fmt::Display) -> KeyError {
    KeyError::Other(e.to_string())
}

/// The namespace CA's Ed25519 public key: derived from `S(ns, v)`.
async fn namespace_key(node: &Arc<KeyNode>, namespace: &str, version: u32) -> Result<[u8; 32], KeyError> {
    let derived = namespace_secret(node, namespace, version, true).await?;
    Ok(ca::namespace_ca_key(&derived.secret).map_err(other)?.public_key())
}

/// The TBSCertificate of a namespace CA, as this node rebuilds it.
pub async fn namespace_tbs(node: &Arc<KeyNode>, namespace: &str, version: u32) -> Result<Vec<u8>, KeyError> {
    let public_key = namespace_key(node, namespace, version).await?;
    let params = node
        .view
        .with_state(|s| namespace_params(&node.cluster_id, s, namespace, version, public_key))
        .map_err(KeyError::Other)?;
    ca::namespace_ca_tbs(&params).map_err(other)
}

/// Refuse to sign anything the replicated state does not call for.
pub async fn check_intent(node: &Arc<KeyNode>, keys: &GroupKeys, intent: &SigningIntent) -> Result<(), KeyError> {
    let expected = match SigningPurpose::try_from(intent.purpose) {
        Ok(SigningPurpose::RootCaCert) => {
            ca::root_ca_tbs(&root_params(&node.cluster_id, keys).map_err(KeyError::Other)?).map_err(other)?
        }
        Ok(SigningPurpose::NamespaceCaCert) => namespace_tbs(node, &intent.namespace, intent.version).await?,
        _ => return Err(other("this node signs only root and namespace CA certificates")),
    };
    if expected != intent.tbs_der {
        return Err(other("the certificate to sign differs from the one the cluster's state calls for"));
    }
    Ok(())
}

/// The root CA certificate's TBS under the current keys, signed by the cluster.
pub async fn sign_root(node: &Arc<KeyNode>) -> Result<(Vec<u8>, super::signing::Signed), KeyError> {
    let keys = node.view.with_state(|s| s.keys.current.clone()).ok_or(KeyError::NoKeys)?;
    let params = root_params(&node.cluster_id, &keys).map_err(KeyError::Other)?;
    let tbs = ca::root_ca_tbs(&params).map_err(other)?;
    let intent = SigningIntent { purpose: SigningPurpose::RootCaCert as i32, tbs_der: tbs, ..Default::default() };
    let signed = sign(node, intent).await?;
    let der = ca::root_ca_cert(&params, &signed.signature).map_err(other)?;
    Ok((der, signed))
}

async fn issue_namespace(node: &Arc<KeyNode>, namespace: &str, version: u32) -> Result<(), KeyError> {
    let tbs = namespace_tbs(node, namespace, version).await?;
    let intent = SigningIntent {
        purpose: SigningPurpose::NamespaceCaCert as i32,
        namespace: namespace.to_string(),
        version,
        tbs_der: tbs.clone(),
        authorizing_index: 0,
    };
    let signed = sign(node, intent).await?;
    let public_key = namespace_key(node, namespace, version).await?;
    let params = node
        .view
        .with_state(|s| namespace_params(&node.cluster_id, s, namespace, version, public_key))
        .map_err(KeyError::Other)?;
    let der = ca::namespace_ca_cert(&params, &signed.signature).map_err(other)?;
    node.propose(KeyCommand::NamespaceCertificate { namespace: namespace.to_string(), version, der }).await
}

/// On the leader: sign and record the root CA certificate once the keys
/// exist, and a CA certificate for every namespace that lacks one.
pub async fn issue(node: Arc<KeyNode>, stop: impl std::future::Future<Output = ()>) {
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = &mut stop => return,
        }
        if node.raft.metrics().borrow().current_leader != Some(node.me) {
            continue;
        }
        let (ready, root, missing) = node.view.with_state(|s| {
            // Every live secret version of every namespace has a CA certificate.
            let missing: Vec<(String, u32)> = s
                .namespaces
                .iter()
                .flat_map(|(n, ns)| ns.versions.keys().map(move |v| (n.clone(), *v)))
                .filter(|k| !s.keys.namespace_cas.contains_key(k))
                .collect();
            (s.keys.current.is_some() && s.keys.ceremony.is_none(), s.keys.root_ca.is_some(), missing)
        });
        if !ready {
            continue;
        }
        if !root {
            let result = match sign_root(&node).await {
                Ok((der, _)) => node.propose(KeyCommand::RootCertificate { der }).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(()) => tracing::info!("root CA certificate signed by the cluster and recorded"),
                Err(e) => tracing::warn!(error = %e, "signing the root CA certificate; will retry"),
            }
            continue;
        }
        for (namespace, version) in missing {
            match issue_namespace(&node, &namespace, version).await {
                Ok(()) => {
                    tracing::info!(%namespace, version, "namespace CA certificate signed by the cluster and recorded")
                }
                Err(e) => {
                    tracing::warn!(%namespace, version, error = %e, "signing the namespace CA certificate; will retry")
                }
            }
        }
    }
}
