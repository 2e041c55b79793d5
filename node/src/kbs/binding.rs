//! What ties evidence to a KBS session: the CoCo attester puts a digest of
//! the runtime data (the session nonce and the TEE public key) into the
//! evidence's report data, so evidence cannot be replayed into another
//! session nor its resources redirected to another key. The digest is of the
//! RFC 8785 canonical JSON (JCS) of
//! `{"additional-evidence": "", "nonce": <nonce>, "tee-pubkey": <JWK>}`,
//! SHA-384 unless `/auth` selected another hash (the guardian never does).
//!
//! Also the CoCo "sample" evidence (development only): `{"svn", "report_data"}`
//! where report data is that digest, base64. It proves nothing but the binding.

use base64::Engine;
use kbs_types::{HashAlgorithm, TeePubKey};
use serde_json::{json, Value};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BindingError {
    #[error("the TEE public key cannot be put in canonical JSON: {0}")]
    Canonical(String),
    #[error("sample evidence: {0}")]
    Malformed(String),
    #[error("sample evidence: report_data is not the digest of this session's nonce and TEE key")]
    Mismatch,
}

/// The digest evidence must carry for `nonce` and `tee_pubkey`.
pub fn runtime_data_digest(alg: HashAlgorithm, nonce: &str, tee_pubkey: &TeePubKey) -> Result<Vec<u8>, BindingError> {
    let key = serde_json::to_value(tee_pubkey).map_err(|e| BindingError::Canonical(e.to_string()))?;
    let runtime = json!({ "additional-evidence": "", "nonce": nonce, "tee-pubkey": key });
    let canonical = serde_json_canonicalizer::to_vec(&runtime).map_err(|e| BindingError::Canonical(e.to_string()))?;
    Ok(alg.digest(&canonical))
}

/// Check CoCo sample evidence against the expected digest; returns its `svn`.
pub fn check_sample(evidence: &Value, expected: &[u8]) -> Result<String, BindingError> {
    let field = |k: &str| {
        evidence.get(k).and_then(Value::as_str).ok_or_else(|| BindingError::Malformed(format!("no {k} string")))
    };
    let svn = field("svn")?.to_string();
    let report = base64::engine::general_purpose::STANDARD
        .decode(field("report_data")?)
        .map_err(|_| BindingError::Malformed("report_data is not base64".into()))?;
    use subtle::ConstantTimeEq;
    match bool::from(report.as_slice().ct_eq(expected)) {
        true => Ok(svn),
        false => Err(BindingError::Mismatch),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kbs_types::Attestation;

    /// Sent by the real kbs-client to the real Trustee KBS (testdata/coco/kbs-client-vs-trustee-kbs.http.txt).
    const CAPTURED: &str = r#"{"init-data":null,"runtime-data":{"nonce":"QaR4v4JxOrRxs2tClOTfi0KNECKeQfxioIaU9B5nRfo=","tee-pubkey":{"kty":"EC","crv":"P-256","alg":"ECDH-ES+A256KW","x":"XUuIBLxWoswN6u07rIF1xz22nS8DqnTeQSPOnOHYutw","y":"yhb6_IDADMsUPe8x8JRorjOmWV_y-ktGGsGDfYldSCA"}},"tee-evidence":{"primary_evidence":{"report_data":"WNA2OocW54DKHRy7Xw+XkAHk+mK0PvBAWQt6hw8SvT+xMsDyQKxnNM3qFkSn2rgB","svn":"1"},"additional_evidence":""}}"#;

    #[test]
    fn the_real_clients_sample_evidence_binds_its_nonce_and_key() {
        let a: Attestation = serde_json::from_str(CAPTURED).unwrap();
        let digest =
            runtime_data_digest(HashAlgorithm::Sha384, &a.runtime_data.nonce, &a.runtime_data.tee_pubkey).unwrap();
        assert_eq!(check_sample(&a.tee_evidence.primary_evidence, &digest).unwrap(), "1");
        let other = runtime_data_digest(HashAlgorithm::Sha384, "another nonce", &a.runtime_data.tee_pubkey).unwrap();
        assert_eq!(check_sample(&a.tee_evidence.primary_evidence, &other), Err(BindingError::Mismatch));
        assert!(matches!(
            check_sample(&json!({"svn": "1", "report_data": "%%"}), &digest),
            Err(BindingError::Malformed(_))
        ));
        assert!(matches!(check_sample(&json!({"report_data": ""}), &digest), Err(BindingError::Malformed(_))));
    }
}
