//! Verified Intel collateral: CRLs, TCB info and QE identity, each checked
//! against Intel's root once, and the time window in which all of it is valid.
//!
//! A [`VerifiedCollateral`] is what the cache keeps. It holds no per-quote
//! state, so reusing it for another quote from the same platform family skips
//! only work whose inputs are byte-identical; the time window is rechecked on
//! every use.

use dcap_qvl::qe_identity::QeIdentity;
use dcap_qvl::tcb_info::TcbInfo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, TrustAnchor, UnixTime};
use sha2::{Digest, Sha256};
use webpki::{CertRevocationList, OwnedCertRevocationList};
use x509_cert::der::Decode;

use super::tcb::TcbLevels;
use crate::attest::{AttestError, Result};
use crate::rfc3339;

/// Intel's SGX/TDX provisioning root, the default trust anchor.
pub const INTEL_SGX_ROOT_CA_DER: &[u8] = include_bytes!("intel_sgx_root_ca.der");

/// Intel's PKI uses ECDSA P-256 with SHA-256 throughout; accept nothing else.
pub(super) const SIG_ALG: &dyn rustls_pki_types::SignatureVerificationAlgorithm = webpki::ring::ECDSA_P256_SHA256;

/// Intel collateral for one platform family (FMSPC), as fetched from PCS/PCCS.
#[derive(Debug, Clone)]
pub struct Collateral {
    inner: dcap_qvl::QuoteCollateralV3,
    /// SHA-256 over the collateral's content: the cache key.
    id: [u8; 32],
}

impl Collateral {
    /// Parse dcap-qvl `QuoteCollateralV3` JSON.
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        let inner: dcap_qvl::QuoteCollateralV3 = serde_json::from_slice(bytes)
            .map_err(|e| AttestError::Collateral(format!("not QuoteCollateralV3 JSON: {e}")))?;
        Ok(Self::new(inner))
    }

    pub fn new(inner: dcap_qvl::QuoteCollateralV3) -> Self {
        let mut h = Sha256::new();
        for part in [
            inner.pck_crl_issuer_chain.as_bytes(),
            &inner.root_ca_crl,
            &inner.pck_crl,
            inner.tcb_info_issuer_chain.as_bytes(),
            inner.tcb_info.as_bytes(),
            &inner.tcb_info_signature,
            inner.qe_identity_issuer_chain.as_bytes(),
            inner.qe_identity.as_bytes(),
            &inner.qe_identity_signature,
            inner.pck_certificate_chain.as_deref().unwrap_or("").as_bytes(),
        ] {
            // Length-prefix each field so that moving bytes between fields changes the id.
            h.update((part.len() as u64).to_le_bytes());
            h.update(part);
        }
        Collateral { inner, id: h.finalize().into() }
    }

    pub fn id(&self) -> &[u8; 32] {
        &self.id
    }

    pub fn inner(&self) -> &dcap_qvl::QuoteCollateralV3 {
        &self.inner
    }
}

/// The interval in which every dated item seen so far is valid, with the items
/// kept so that a failure can name the one that is out of its window.
#[derive(Debug, Clone, Default)]
pub struct Window {
    not_before: u64,
    not_after: u64,
    items: Vec<(String, u64, u64)>,
}

impl Window {
    pub fn new() -> Self {
        Window { not_before: 0, not_after: u64::MAX, items: Vec::new() }
    }

    pub fn add(&mut self, what: impl Into<String>, not_before: u64, not_after: u64) {
        self.not_before = self.not_before.max(not_before);
        self.not_after = self.not_after.min(not_after);
        self.items.push((what.into(), not_before, not_after));
    }

    /// Add a certificate's validity period.
    pub fn add_cert(&mut self, what: &str, der: &[u8]) -> Result<()> {
        let cert = x509_cert::Certificate::from_der(der)
            .map_err(|e| AttestError::Collateral(format!("{what}: not a DER certificate: {e}")))?;
        let v = &cert.tbs_certificate.validity;
        self.add(what, v.not_before.to_unix_duration().as_secs(), v.not_after.to_unix_duration().as_secs());
        Ok(())
    }

    /// Fails, naming the first item not valid at `now`, unless all are.
    pub fn check(&self, now: u64) -> Result<()> {
        if (self.not_before..=self.not_after).contains(&now) {
            return Ok(());
        }
        for (what, nb, na) in &self.items {
            if now < *nb {
                return Err(AttestError::CollateralTime(format!(
                    "{what} is not valid before {} (verifying at {})",
                    rfc3339::format(*nb),
                    rfc3339::format(now)
                )));
            }
            if now > *na {
                return Err(AttestError::CollateralTime(format!(
                    "{what} expired at {} (verifying at {})",
                    rfc3339::format(*na),
                    rfc3339::format(now)
                )));
            }
        }
        Ok(())
    }
}

fn parse_rfc3339(s: &str, what: &str) -> Result<u64> {
    crate::rfc3339::parse(s).ok_or_else(|| AttestError::Collateral(format!("{what} is not an RFC 3339 time: {s:?}")))
}

/// The trust anchor certificate for all Intel-signed material.
#[derive(Debug, Clone)]
pub struct TrustRoot {
    der: CertificateDer<'static>,
}

impl TrustRoot {
    pub fn intel() -> Self {
        TrustRoot { der: CertificateDer::from(INTEL_SGX_ROOT_CA_DER) }
    }

    /// A custom root (a test PKI, or a pinned re-issue of Intel's root).
    pub fn from_der(der: Vec<u8>) -> Result<Self> {
        let root = TrustRoot { der: CertificateDer::from(der) };
        root.anchor()?;
        Ok(root)
    }

    pub fn anchor(&self) -> Result<TrustAnchor<'_>> {
        webpki::anchor_from_trusted_cert(&self.der)
            .map_err(|e| AttestError::CertChain(format!("trust root is not usable: {e}")))
    }

    pub fn der(&self) -> &[u8] {
        &self.der
    }
}

/// Collateral whose signatures and chains have been verified.
pub struct VerifiedCollateral {
    pub levels: TcbLevels,
    pub qe_identity: QeIdentity,
    /// Root CA CRL (signature verified) and PCK CRL (verified when used).
    pub crls: [CertRevocationList<'static>; 2],
    /// Validity of every dated item in the collateral and its signer chains.
    pub window: Window,
}

impl VerifiedCollateral {
    /// Verify collateral against `root` at time `now`.
    #[tracing::instrument(skip_all, name = "tdx.collateral.verify")]
    pub fn verify(c: &Collateral, root: &TrustRoot, now: u64) -> Result<Self> {
        let c = &c.inner;
        let anchor = root.anchor()?;

        // Dates first: they only ever reject, and a stale bundle is the common
        // failure, so say so before reporting anything else.
        let tcb_info: TcbInfo =
            serde_json::from_str(&c.tcb_info).map_err(|e| AttestError::Collateral(format!("TCB info JSON: {e}")))?;
        let qe_identity: QeIdentity = serde_json::from_str(&c.qe_identity)
            .map_err(|e| AttestError::Collateral(format!("QE identity JSON: {e}")))?;
        let tcb_chain = pem_certs(c.tcb_info_issuer_chain.as_bytes(), "TCB info issuer chain")?;
        let qe_chain = pem_certs(c.qe_identity_issuer_chain.as_bytes(), "QE identity issuer chain")?;
        let mut window = Window::new();
        window.add(
            "TCB info",
            parse_rfc3339(&tcb_info.issue_date, "TCB info issueDate")?,
            parse_rfc3339(&tcb_info.next_update, "TCB info nextUpdate")?,
        );
        window.add(
            "QE identity",
            parse_rfc3339(&qe_identity.issue_date, "QE identity issueDate")?,
            parse_rfc3339(&qe_identity.next_update, "QE identity nextUpdate")?,
        );
        add_crl(&mut window, "root CA CRL", &c.root_ca_crl)?;
        add_crl(&mut window, "PCK CRL", &c.pck_crl)?;
        window.add_cert("Intel root CA certificate", root.der())?;
        if let Some(leaf) = tcb_chain.first() {
            window.add_cert("TCB info signing certificate", leaf)?;
        }
        if let Some(leaf) = qe_chain.first() {
            window.add_cert("QE identity signing certificate", leaf)?;
        }
        window.check(now)?;

        let time = unix_time(now);
        let crls: [CertRevocationList<'static>; 2] = [
            OwnedCertRevocationList::from_der_verified(&c.root_ca_crl, &anchor.subject_public_key_info, &[SIG_ALG])
                .map_err(|e| AttestError::Collateral(format!("root CA CRL: {e}")))?
                .into(),
            OwnedCertRevocationList::from_der(&c.pck_crl)
                .map_err(|e| AttestError::Collateral(format!("PCK CRL: {e}")))?
                .into(),
        ];
        let crl_refs = [&crls[0], &crls[1]];
        webpki::check_single_cert_revocation(root.der(), &crl_refs, &[SIG_ALG], time)
            .map_err(|e| webpki_error("Intel root CA revocation check", e))?;

        verify_signed_json("TCB info", &tcb_chain, c.tcb_info.as_bytes(), &c.tcb_info_signature, &anchor, &crls, time)?;
        if qe_chain != tcb_chain {
            verify_signed_json(
                "QE identity",
                &qe_chain,
                c.qe_identity.as_bytes(),
                &c.qe_identity_signature,
                &anchor,
                &crls,
                time,
            )?;
        } else {
            let key = p256_public_key(&qe_chain[0], "QE identity signing certificate")?;
            verify_p256(&key, c.qe_identity.as_bytes(), &c.qe_identity_signature)
                .map_err(|_| AttestError::Signature("QE identity is not signed by its issuer chain".into()))?;
        }

        Ok(VerifiedCollateral { levels: TcbLevels::new(tcb_info), qe_identity, crls, window })
    }
}

/// Verify an Intel-signed JSON document: its signer must chain directly to the
/// root, must not be revoked, and must have signed exactly these bytes.
fn verify_signed_json(
    what: &str,
    chain: &[CertificateDer<'static>],
    body: &[u8],
    signature: &[u8],
    anchor: &TrustAnchor<'_>,
    crls: &[CertRevocationList<'static>; 2],
    time: UnixTime,
) -> Result<()> {
    let path = verify_chain(what, chain, anchor, crls, time)?;
    if path != 1 {
        return Err(AttestError::CertChain(format!("{what} signer must be issued directly by the root CA")));
    }
    let key = p256_public_key(&chain[0], &format!("{what} signing certificate"))?;
    verify_p256(&key, body, signature)
        .map_err(|_| AttestError::Signature(format!("{what} is not signed by its issuer chain")))
}

/// Verify `chain[0]` up to the anchor through `chain[1..]`, with revocation
/// checked at every level. Returns the length of the verified path (leaf
/// included, anchor excluded).
pub(super) fn verify_chain(
    what: &str,
    chain: &[CertificateDer<'static>],
    anchor: &TrustAnchor<'_>,
    crls: &[CertRevocationList<'static>; 2],
    time: UnixTime,
) -> Result<usize> {
    // Intel chains are leaf + at most an intermediate + root; a long list is
    // only a way to make the path builder burn CPU.
    const MAX_INTERMEDIATES: usize = 4;
    let [leaf, intermediates @ ..] = chain else {
        return Err(AttestError::CertChain(format!("{what}: no certificate")));
    };
    if intermediates.len() > MAX_INTERMEDIATES {
        return Err(AttestError::CertChain(format!(
            "{what}: {} intermediate certificates, at most {MAX_INTERMEDIATES} allowed",
            intermediates.len()
        )));
    }
    let leaf =
        webpki::EndEntityCert::try_from(leaf).map_err(|e| webpki_error(&format!("{what} leaf certificate"), e))?;
    let crl_refs = [&crls[0], &crls[1]];
    let revocation = webpki::RevocationOptionsBuilder::new(&crl_refs)
        .map_err(|_| AttestError::Collateral("no CRLs".into()))?
        .with_depth(webpki::RevocationCheckDepth::Chain)
        .with_status_policy(webpki::UnknownStatusPolicy::Deny)
        .with_expiration_policy(webpki::ExpirationPolicy::Enforce)
        .build();
    let path = leaf
        .verify_for_usage(
            &[SIG_ALG],
            std::slice::from_ref(anchor),
            intermediates,
            time,
            webpki::KeyUsage::server_auth(),
            Some(revocation),
            None,
        )
        .map_err(|e| webpki_error(what, e))?;
    Ok(1 + path.intermediate_certificates().count())
}

/// Map a webpki failure to the error a user can act on.
pub(super) fn webpki_error(what: &str, e: webpki::Error) -> AttestError {
    use webpki::Error::*;
    match e {
        CertExpired { .. } | CertNotValidYet { .. } | CrlExpired { .. } => {
            AttestError::CollateralTime(format!("{what}: {e}"))
        }
        CertRevoked => AttestError::CertChain(format!("{what}: certificate is revoked by Intel's CRL")),
        InvalidCrlSignatureForPublicKey | UnknownRevocationStatus => AttestError::Collateral(format!("{what}: {e:?}")),
        other => AttestError::CertChain(format!("{what}: {other:?}")),
    }
}

pub(super) fn unix_time(now: u64) -> UnixTime {
    UnixTime::since_unix_epoch(std::time::Duration::from_secs(now))
}

pub fn pem_certs(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>> {
    // Quotes often carry the chain NUL-terminated; PEM parsing ignores what
    // lies outside the armour, so trailing NULs are harmless.
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| AttestError::Malformed(format!("{what}: bad PEM: {e}")))?;
    if certs.is_empty() {
        return Err(AttestError::Malformed(format!("{what}: no certificate")));
    }
    Ok(certs)
}

fn add_crl(window: &mut Window, what: &str, der: &[u8]) -> Result<()> {
    let crl = x509_cert::crl::CertificateList::from_der(der)
        .map_err(|e| AttestError::Collateral(format!("{what}: not a DER CRL: {e}")))?;
    let tbs = &crl.tbs_cert_list;
    window.add(
        what,
        tbs.this_update.to_unix_duration().as_secs(),
        tbs.next_update.map_or(u64::MAX, |t| t.to_unix_duration().as_secs()),
    );
    Ok(())
}

/// The uncompressed P-256 point of a certificate's subject key.
pub(super) fn p256_public_key(der: &[u8], what: &str) -> Result<[u8; 65]> {
    let cert = x509_cert::Certificate::from_der(der)
        .map_err(|e| AttestError::CertChain(format!("{what}: not a DER certificate: {e}")))?;
    cert.tbs_certificate
        .subject_public_key_info
        .subject_public_key
        .as_bytes()
        .and_then(|b| <[u8; 65]>::try_from(b).ok())
        .ok_or_else(|| AttestError::CertChain(format!("{what}: key is not an uncompressed P-256 point")))
}

/// Verify a raw `r || s` ECDSA P-256 SHA-256 signature.
pub(super) fn verify_p256(point: &[u8; 65], msg: &[u8], sig: &[u8]) -> std::result::Result<(), ()> {
    ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, point)
        .verify(msg, sig)
        .map_err(|_| ())
}
