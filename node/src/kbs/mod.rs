//! The CoCo protocols (pure core): what an unmodified Trustee KBS and the
//! CoCo guest components (CDH, attestation agent, kbs-client) send and expect,
//! and the checks and encryption the guardian applies to them. The HTTP
//! shell is [`crate::daemon::coco`]; `docs/coco.md` is the user's guide.
//!
//! - [`vault`]: the Vault KV v1 subset the Trustee KBS's Vault backend uses:
//!   paths, request bodies, the exact response envelope.
//! - [`session`]: KBS sessions: the nonce `/auth` gives, spent by `/attest`.
//! - [`binding`]: the runtime-data digest evidence must carry; CoCo "sample" evidence.
//! - [`evidence`]: CoCo evidence (tdx, az-tdx-vtpm, sample) through the guardian's verifiers.
//! - [`token`]: the node-signed attestation token (passport mode) and the claims it carries.
//! - [`jws`]: compact ES256 JWS under the tokens.
//! - [`jwe`]: resources encrypted to the TEE key (ECDH-ES+A256KW, RSA-OAEP-256; A256GCM).
//! - [`admin`]: admin credentials of the KBS admin endpoints (EdDSA JWTs by an admin key).
//! - [`error`]: KBS errors: the `{"type","detail"}` body and the status the client acts on.

pub mod admin;
pub mod binding;
pub mod error;
pub mod evidence;
pub mod jwe;
pub mod jws;
pub mod session;
pub mod token;
pub mod vault;

pub use error::KbsError;

/// KBS protocol versions served: 0.4.x, as the Trustee KBS (which accepts only 0.4.0).
pub fn version_supported(version: &str) -> bool {
    let mut parts = version.split('.');
    matches!((parts.next(), parts.next(), parts.next(), parts.next()), (Some("0"), Some("4"), Some(p), None) if p.parse::<u32>().is_ok())
}

/// The simulated-TD label CoCo "sample" evidence measures as: sample evidence
/// carries no measurements, so a namespace admits it (development only) with a
/// rule naming the measurements of this label (docs/coco.md).
pub const SAMPLE_LABEL: &str = "coco-sample";

/// The claims of verified CoCo sample evidence: a simulated TD (INSECURE).
pub fn sample_claims() -> crate::attest::Claims {
    use crate::attest::sim::{self, SimMeasurements};
    let m = SimMeasurements::from_label(SAMPLE_LABEL);
    sim::simulated_claims(&m, crate::attest::TdAttributes(sim::DEFAULT_ATTRIBUTES), [0; 64])
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_documented_sample_policy_names_the_sample_measurement() {
        let mrtd = hex::encode(crate::attest::sim::SimMeasurements::from_label(super::SAMPLE_LABEL).mrtd);
        let docs = include_str!("../../../docs/coco.md");
        assert!(docs.contains(&format!("mrtd = \"{mrtd}\"")), "docs/coco.md §3 names another MRTD than {mrtd}");
        let after = docs.split("# sample-policy.toml").nth(1).unwrap();
        let policy = after.split_once('\n').and_then(|(_, p)| p.split("```").next()).unwrap();
        crate::policy::document::NamespaceDocument::parse("default", policy).unwrap();
    }
}
