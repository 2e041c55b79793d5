//! The platform's PCK certificate chain: verified to Intel's root with the
//! collateral's CRLs, then reduced to the facts later checks need (the PCK
//! public key and the platform SVNs).

use rustls_pki_types::CertificateDer;

use super::collateral::{p256_public_key, pem_certs, unix_time, verify_chain, TrustRoot, VerifiedCollateral, Window};
use super::tcb::PlatformSvns;
use crate::attest::{AttestError, Result};

/// A verified PCK chain.
pub struct VerifiedPck {
    /// PCK public key (uncompressed P-256 point) that signs QE reports.
    pub key: [u8; 65],
    pub svns: PlatformSvns,
    /// Validity of the PCK leaf and its intermediates.
    pub window: Window,
}

impl VerifiedPck {
    #[tracing::instrument(skip_all, name = "tdx.pck.verify")]
    pub fn verify(chain_pem: &[u8], collateral: &VerifiedCollateral, root: &TrustRoot, now: u64) -> Result<Self> {
        let chain: Vec<CertificateDer<'static>> = pem_certs(chain_pem, "PCK certificate chain")?;
        let mut window = Window::new();
        for (i, cert) in chain.iter().enumerate() {
            let what = if i == 0 { "PCK certificate" } else { "PCK issuer certificate" };
            window.add_cert(what, cert)?;
        }
        window.check(now)?;
        verify_chain("PCK certificate chain", &chain, &root.anchor()?, &collateral.crls, unix_time(now))?;
        let leaf = &chain[0];
        let ext = dcap_qvl::intel::parse_pck_extension(leaf)
            .map_err(|e| AttestError::CertChain(format!("PCK certificate has no usable Intel SGX extension: {e}")))?;
        Ok(VerifiedPck {
            key: p256_public_key(leaf, "PCK certificate")?,
            svns: PlatformSvns { fmspc: ext.fmspc, cpu_svn: ext.cpu_svn, pce_svn: ext.pce_svn },
            window,
        })
    }
}
