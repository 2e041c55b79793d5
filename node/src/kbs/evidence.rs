//! Evidence as CoCo attesters put it in `tee-evidence.primary_evidence`,
//! verified with the guardian's own verifiers ([`crate::attest`]) and bound
//! to the KBS session by the runtime-data digest ([`super::binding`]):
//!
//! - `tdx`: `{"quote": base64, "cc_eventlog": base64 | null, ...}`, a DCAP
//!   quote verified with the node's Intel collateral; the CCEL, when sent, is
//!   replayed against the RTMRs;
//! - `az-tdx-vtpm`: the CoCo Azure evidence object (HCL report, TD quote, vTPM
//!   quote) as the gRPC service takes it;
//! - `sample` (development only): CoCo's sample evidence (binding only), or
//!   the guardian's own simulated-TEE evidence (to test measurement policies).
//!
//! Verification uses the loosest options any namespace may allow (SEPT_VE
//! not required, TCB overrides reported): each namespace's policy re-checks
//! the claims at every resource request.

use base64::Engine;
use kbs_types::Tee;
use serde_json::Value;

use super::binding::{self, BindingError};
use crate::attest::tdx::Collateral;
use crate::attest::{AttestError, Claims, Evidence, TeeKind, Verifier, VerifyOptions};

/// Why evidence is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvidenceError {
    #[error("{0} evidence is not supported: use tdx or az-tdx-vtpm")]
    Unsupported(Tee),
    #[error(
        "sample evidence proves nothing and is only accepted by development nodes (coco.insecure_sample_evidence)"
    )]
    SampleDisabled,
    #[error("this node has no Intel collateral for TDX evidence ([tee] collateral)")]
    NoCollateral,
    #[error("malformed {tee} evidence: {why}")]
    Malformed { tee: Tee, why: String },
    #[error("evidence refused: {0}")]
    Refused(AttestError),
    #[error("{0}")]
    Binding(BindingError),
}

/// What verifies KBS evidence on this node.
pub struct KbsVerifier<'a> {
    pub verifier: &'a Verifier,
    /// Intel collateral for the TDX kinds (the node's `[tee] collateral`).
    pub collateral: Option<&'a Collateral>,
    /// INSECURE: accept `sample` evidence (development nodes only).
    pub sample: bool,
}

impl KbsVerifier<'_> {
    /// Whether this node verifies evidence of kind `tee` at all (asked at `/auth`).
    pub fn accepts(&self, tee: Tee) -> Result<(), EvidenceError> {
        match tee {
            Tee::Tdx | Tee::AzTdxVtpm => Ok(()),
            Tee::Sample if self.sample => Ok(()),
            Tee::Sample => Err(EvidenceError::SampleDisabled),
            other => Err(EvidenceError::Unsupported(other)),
        }
    }

    /// Verify `evidence` of kind `tee` bound to `digest` at `now`.
    pub fn verify(&self, tee: Tee, evidence: &Value, digest: &[u8], now: u64) -> Result<Claims, EvidenceError> {
        self.accepts(tee)?;
        let malformed = |why: String| EvidenceError::Malformed { tee, why };
        let b64 = |field: &str| -> Result<Vec<u8>, EvidenceError> {
            let s = evidence.get(field).and_then(Value::as_str).ok_or_else(|| malformed(format!("no {field}")))?;
            base64::engine::general_purpose::STANDARD.decode(s).map_err(|_| malformed(format!("{field} is not base64")))
        };
        let json = || serde_json::to_vec(evidence).map_err(|e| malformed(e.to_string()));
        let collateral = || self.collateral.ok_or(EvidenceError::NoCollateral);
        let (kind, bytes, collateral, event_log) = match tee {
            Tee::Sample if evidence.get("insecure").is_some() => (TeeKind::Sim, json()?, None, None),
            Tee::Sample => {
                binding::check_sample(evidence, digest).map_err(EvidenceError::Binding)?;
                return Ok(super::sample_claims());
            }
            Tee::Tdx => {
                let log = match evidence.get("cc_eventlog") {
                    None | Some(Value::Null) => None,
                    Some(_) => Some(b64("cc_eventlog")?),
                };
                (TeeKind::Tdx, b64("quote")?, Some(collateral()?), log)
            }
            _ => (TeeKind::AzTdxVtpm, json()?, Some(collateral()?), None),
        };
        let opts = VerifyOptions {
            require_sept_ve_disable: false,
            azure_tcb_quirk: true,
            expected_nonce: Some(digest.to_vec()),
            ..VerifyOptions::at(now)
        };
        let ev = Evidence { kind, bytes: &bytes, collateral, event_log: event_log.as_deref() };
        self.verifier.verify(&ev, &opts).map_err(EvidenceError::Refused)
    }
}

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::STANDARD;
    use kbs_types::{Attestation, HashAlgorithm};
    use serde_json::json;

    use super::*;

    macro_rules! data {
        ($p:literal) => {
            include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/attestation/", $p))
        };
    }

    /// The real kbs-client's attestation to the real Trustee KBS (tests/data/coco).
    const CAPTURED: &str = r#"{"init-data":null,"runtime-data":{"nonce":"QaR4v4JxOrRxs2tClOTfi0KNECKeQfxioIaU9B5nRfo=","tee-pubkey":{"kty":"EC","crv":"P-256","alg":"ECDH-ES+A256KW","x":"XUuIBLxWoswN6u07rIF1xz22nS8DqnTeQSPOnOHYutw","y":"yhb6_IDADMsUPe8x8JRorjOmWV_y-ktGGsGDfYldSCA"}},"tee-evidence":{"primary_evidence":{"report_data":"WNA2OocW54DKHRy7Xw+XkAHk+mK0PvBAWQt6hw8SvT+xMsDyQKxnNM3qFkSn2rgB","svn":"1"},"additional_evidence":""}}"#;

    fn digest() -> Vec<u8> {
        let a: Attestation = serde_json::from_str(CAPTURED).unwrap();
        binding::runtime_data_digest(HashAlgorithm::Sha384, &a.runtime_data.nonce, &a.runtime_data.tee_pubkey).unwrap()
    }

    #[test]
    fn real_tdx_and_azure_evidence_verify_up_to_the_session_binding() {
        let verifier = Verifier::default();
        // T1: a real TDX quote, wrapped as the CoCo TDX attester sends it.
        let t1 = Collateral::from_json(data!("phala-dcap-qvl/tdx_quote_collateral.json")).unwrap();
        let kbs = KbsVerifier { verifier: &verifier, collateral: Some(&t1), sample: false };
        let quote = json!({"quote": STANDARD.encode(data!("phala-dcap-qvl/tdx_quote")), "cc_eventlog": null});
        // Signature, collateral and TCB all pass; the quote binds another session's data, so it is refused.
        match kbs.verify(Tee::Tdx, &quote, &digest(), 1_750_377_600) {
            Err(EvidenceError::Refused(AttestError::Binding(_))) => {}
            other => panic!("a real quote from another session: {other:?}"),
        }
        // A1: real Azure TDX vTPM evidence, as CoCo's az-tdx-vtpm attester sends it.
        let a1 = Collateral::from_json(data!("assembled-collateral/dcaprs_2025-02_00806f050000.json")).unwrap();
        let kbs = KbsVerifier { verifier: &verifier, collateral: Some(&a1), sample: false };
        let azure: Value = serde_json::from_slice(data!("trustee/az-tdx-vtpm/evidence-v1.json")).unwrap();
        match kbs.verify(Tee::AzTdxVtpm, &azure, &digest(), 1_739_491_200) {
            Err(EvidenceError::Refused(AttestError::Binding(_))) => {}
            other => panic!("real Azure evidence from another session: {other:?}"),
        }
        // Without collateral, or without a quote, nothing is verified.
        let bare = KbsVerifier { verifier: &verifier, collateral: None, sample: false };
        assert_eq!(bare.verify(Tee::Tdx, &quote, &digest(), 0), Err(EvidenceError::NoCollateral));
        assert!(matches!(
            kbs.verify(Tee::Tdx, &json!({"cc_eventlog": null}), &digest(), 0),
            Err(EvidenceError::Malformed { .. })
        ));
        assert!(matches!(
            kbs.verify(Tee::Tdx, &json!({"quote": "%%"}), &digest(), 0),
            Err(EvidenceError::Malformed { .. })
        ));
    }

    #[test]
    fn sample_evidence_only_where_enabled_and_other_kinds_never() {
        let verifier = Verifier::default();
        let a: Attestation = serde_json::from_str(CAPTURED).unwrap();
        let evidence = &a.tee_evidence.primary_evidence;
        let dev = KbsVerifier { verifier: &verifier, collateral: None, sample: true };
        assert_eq!(dev.verify(Tee::Sample, evidence, &digest(), 0).unwrap(), super::super::sample_claims());
        assert!(matches!(dev.verify(Tee::Sample, evidence, &[0; 48], 0), Err(EvidenceError::Binding(_))));
        let production = KbsVerifier { sample: false, ..dev };
        assert_eq!(production.verify(Tee::Sample, evidence, &digest(), 0), Err(EvidenceError::SampleDisabled));
        for tee in [Tee::Snp, Tee::Sgx, Tee::Se, Tee::Cca] {
            assert_eq!(production.accepts(tee), Err(EvidenceError::Unsupported(tee)));
        }
    }
}
