//! vTPM AK certificate: key match with HCLAkPub and chain to configured Azure roots.
//!
//! Azure provisions each vTPM with an AK certificate (NV index 0x01C101D0)
//! issued by "Global Virtual TPM CA - NN", which chains to Microsoft's vTPM
//! roots. The certificate adds a Microsoft statement about the AK on top of
//! the hardware binding (TD quote -> HCL variable data -> AK).
//!
//! Crates: `x509-cert` to parse and `rsa` to verify. Azure's vTPM PKI is RSA
//! only (PKCS#1 v1.5 with SHA-256/384), and a TPM AK certificate is not a TLS
//! certificate: webpki would insist on TLS-style EKUs and name constraints
//! semantics that do not apply, and could not tell which issuer was missing.
//! The chain logic here is small: match issuer name, verify the signature,
//! check validity at `now` and CA-ness of intermediates, depth-limited.

use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::pkcs8::DecodePublicKey;
use rsa::signature::Verifier;
use rsa::RsaPublicKey;
use sha2::{Sha256, Sha384, Sha512};
use x509_cert::der::asn1::ObjectIdentifier;
use x509_cert::der::oid::AssociatedOid;
use x509_cert::der::{Decode, Encode, Header, Reader, SliceReader};
use x509_cert::ext::pkix::{BasicConstraints, KeyUsage};
use x509_cert::Certificate;

use crate::attest::{AttestError, Result};

const SHA256_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
const SHA384_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.12");
const SHA512_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.13");

/// Longest chain from the AK certificate to a root (leaf, intermediates, root).
const MAX_DEPTH: usize = 6;

/// Trust anchors for Azure vTPM AK certificates. `Default` = none configured:
/// an AK certificate, when present, must still carry HCLAkPub, but is not
/// chained; when roots are configured, an AK certificate is required.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AzureTrust {
    /// DER root certificates (for example "Azure Virtual TPM Root Certificate
    /// Authority 2023", "Microsoft RSA Devices Root CA 2021").
    pub ak_roots: Vec<Vec<u8>>,
    /// DER intermediates that may complete a chain ("Global Virtual TPM CA - NN").
    pub ak_intermediates: Vec<Vec<u8>>,
}

impl AzureTrust {
    pub fn roots_configured(&self) -> bool {
        !self.ak_roots.is_empty()
    }
}

/// The DER certificate at the start of `bytes`, without trailing zero
/// padding (Azure's NV index holds the certificate in a zero-filled buffer).
/// Any non-zero byte after the certificate is an error.
pub fn trim_der(bytes: &[u8]) -> Result<&[u8]> {
    let bad = |e: String| AttestError::Malformed(format!("AK certificate: {e}"));
    let mut r = SliceReader::new(bytes).map_err(|e| bad(e.to_string()))?;
    let header = Header::decode(&mut r).map_err(|e| bad(format!("not DER: {e}")))?;
    let total = (r.position() + header.length).map_err(|e| bad(e.to_string()))?;
    let total = usize::try_from(total).map_err(|e| bad(e.to_string()))?;
    let (cert, rest) = bytes
        .split_at_checked(total)
        .ok_or_else(|| bad(format!("DER says {total} bytes, only {} supplied", bytes.len())))?;
    if rest.iter().any(|&b| b != 0) {
        return Err(bad(format!("{} bytes of non-zero data after the DER certificate", rest.len())));
    }
    Ok(cert)
}

/// Decode PEM (one `CERTIFICATE` block) to DER, trimming Azure's zero padding.
pub fn pem_to_der(pem: &str) -> Result<Vec<u8>> {
    use base64::Engine as _;
    let bad = |m: &str| AttestError::Malformed(format!("AK certificate PEM: {m}"));
    let body = pem
        .split("-----BEGIN CERTIFICATE-----")
        .nth(1)
        .and_then(|s| s.split("-----END CERTIFICATE-----").next())
        .ok_or_else(|| bad("no CERTIFICATE block"))?;
    let b64: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let der = base64::engine::general_purpose::STANDARD.decode(b64).map_err(|e| bad(&e.to_string()))?;
    Ok(trim_der(&der)?.to_vec())
}

/// A parsed certificate with its raw DER (signatures cover the raw TBS bytes).
struct Cert<'a> {
    der: &'a [u8],
    cert: Certificate,
}

impl<'a> Cert<'a> {
    fn parse(der: &'a [u8], what: &str) -> Result<Self> {
        let der = trim_der(der)?;
        let cert = Certificate::from_der(der)
            .map_err(|e| AttestError::Malformed(format!("{what} is not an X.509 certificate: {e}")))?;
        Ok(Cert { der, cert })
    }

    fn subject(&self) -> String {
        self.cert.tbs_certificate.subject.to_string()
    }

    fn issuer(&self) -> String {
        self.cert.tbs_certificate.issuer.to_string()
    }

    fn public_key(&self) -> Result<RsaPublicKey> {
        let spki = self
            .cert
            .tbs_certificate
            .subject_public_key_info
            .to_der()
            .map_err(|e| AttestError::Malformed(format!("certificate {}: {e}", self.subject())))?;
        RsaPublicKey::from_public_key_der(&spki).map_err(|e| {
            AttestError::CertChain(format!("certificate \"{}\" does not hold an RSA public key: {e}", self.subject()))
        })
    }

    /// The raw `tbsCertificate` TLV.
    fn tbs_bytes(&self) -> Result<&'a [u8]> {
        let inner = || -> x509_cert::der::Result<&'a [u8]> {
            let mut r = SliceReader::new(self.der)?;
            let _outer = Header::decode(&mut r)?;
            r.tlv_bytes()
        };
        inner().map_err(|e| AttestError::Malformed(format!("certificate {}: {e}", self.subject())))
    }

    /// Is this certificate signed by `issuer`'s key?
    fn signed_by(&self, issuer: &RsaPublicKey) -> Result<bool> {
        let tbs = self.tbs_bytes()?;
        let sig_bytes = self.cert.signature.as_bytes().ok_or_else(|| {
            AttestError::Malformed(format!("certificate {}: signature has unused bits", self.subject()))
        })?;
        let Ok(sig) = Signature::try_from(sig_bytes) else {
            return Ok(false);
        };
        let alg = &self.cert.signature_algorithm;
        if alg.parameters.as_ref().is_some_and(|p| !p.is_null()) {
            return Err(AttestError::Unsupported(format!(
                "certificate \"{}\" has non-NULL signature algorithm parameters",
                self.subject()
            )));
        }
        let ok = match alg.oid {
            SHA256_WITH_RSA => VerifyingKey::<Sha256>::new(issuer.clone()).verify(tbs, &sig).is_ok(),
            SHA384_WITH_RSA => VerifyingKey::<Sha384>::new(issuer.clone()).verify(tbs, &sig).is_ok(),
            SHA512_WITH_RSA => VerifyingKey::<Sha512>::new(issuer.clone()).verify(tbs, &sig).is_ok(),
            oid => {
                return Err(AttestError::Unsupported(format!(
                    "certificate \"{}\" is signed with algorithm {oid}; only RSA PKCS#1 v1.5 with SHA-256/384/512 is supported",
                    self.subject()
                )))
            }
        };
        Ok(ok)
    }

    fn check_time(&self, now: u64, role: &str) -> Result<()> {
        let v = &self.cert.tbs_certificate.validity;
        let nb = v.not_before.to_unix_duration().as_secs();
        let na = v.not_after.to_unix_duration().as_secs();
        if now < nb || now > na {
            return Err(AttestError::CertChain(format!(
                "{role} \"{}\" is valid {} .. {}, not at the verification time (unix {now})",
                self.subject(),
                v.not_before,
                v.not_after
            )));
        }
        Ok(())
    }

    fn extension<T: AssociatedOid + for<'b> Decode<'b>>(&self) -> Result<Option<T>> {
        let Some(exts) = &self.cert.tbs_certificate.extensions else {
            return Ok(None);
        };
        match exts.iter().find(|e| e.extn_id == T::OID) {
            None => Ok(None),
            Some(e) => T::from_der(e.extn_value.as_bytes()).map(Some).map_err(|err| {
                AttestError::Malformed(format!("certificate \"{}\": extension {}: {err}", self.subject(), T::OID))
            }),
        }
    }

    fn is_ca(&self) -> Result<bool> {
        Ok(self.extension::<BasicConstraints>()?.is_some_and(|b| b.ca))
    }
}

/// Check an AK certificate: its key must be `ak` (HCLAkPub) and, when roots
/// are configured, it must chain to one of them at time `now`. Returns the
/// certificate's subject.
#[tracing::instrument(skip_all)]
pub fn verify_ak_cert(cert_der: &[u8], ak: &RsaPublicKey, trust: &AzureTrust, now: u64) -> Result<String> {
    let leaf = Cert::parse(cert_der, "AK certificate")?;
    if &leaf.public_key()? != ak {
        return Err(AttestError::Binding(format!(
            "AK certificate \"{}\" certifies a different key than the HCL report's HCLAkPub",
            leaf.subject()
        )));
    }
    if !trust.roots_configured() {
        return Ok(leaf.subject());
    }
    if let Some(ku) = leaf.extension::<KeyUsage>()? {
        if !ku.digital_signature() {
            return Err(AttestError::CertChain(format!(
                "AK certificate \"{}\" key usage lacks digitalSignature",
                leaf.subject()
            )));
        }
    }
    leaf.check_time(now, "AK certificate")?;

    let roots =
        trust.ak_roots.iter().map(|d| Cert::parse(d, "configured Azure AK root")).collect::<Result<Vec<_>>>()?;
    let intermediates = trust
        .ak_intermediates
        .iter()
        .map(|d| Cert::parse(d, "configured Azure AK intermediate"))
        .collect::<Result<Vec<_>>>()?;

    let mut current = &leaf;
    let mut path = vec![leaf.subject()];
    for _ in 0..MAX_DEPTH {
        let issuer_name = &current.cert.tbs_certificate.issuer;
        // A root that issued `current`?
        let mut name_matched = false;
        for root in roots.iter().filter(|r| &r.cert.tbs_certificate.subject == issuer_name) {
            name_matched = true;
            if current.signed_by(&root.public_key()?)? {
                root.check_time(now, "Azure AK root")?;
                return Ok(leaf.subject());
            }
        }
        // An intermediate that issued it (and is not already on the path).
        let next = intermediates.iter().find_map(|i| {
            if &i.cert.tbs_certificate.subject != issuer_name || path.contains(&i.subject()) {
                return None;
            }
            name_matched = true;
            match i.public_key().and_then(|k| current.signed_by(&k)) {
                Ok(true) => Some(Ok(i)),
                Ok(false) => None,
                Err(e) => Some(Err(e)),
            }
        });
        let next = match next {
            Some(r) => r?,
            None if name_matched => {
                return Err(AttestError::CertChain(format!(
                    "\"{}\" names issuer \"{}\", but its signature does not verify under any configured certificate of that name (chain: {})",
                    current.subject(),
                    current.issuer(),
                    path.join(" <- ")
                )))
            }
            None => {
                return Err(AttestError::CertChain(format!(
                    "issuer \"{}\" of \"{}\" is not among the configured Azure AK roots or intermediates; add it to the trust configuration (chain so far: {})",
                    current.issuer(),
                    current.subject(),
                    path.join(" <- ")
                )))
            }
        };
        next.check_time(now, "Azure AK intermediate")?;
        if !next.is_ca()? {
            return Err(AttestError::CertChain(format!(
                "intermediate \"{}\" is not a CA (basicConstraints cA is not set)",
                next.subject()
            )));
        }
        path.push(next.subject());
        current = next;
    }
    Err(AttestError::CertChain(format!("AK certificate chain longer than {MAX_DEPTH}: {}", path.join(" <- "))))
}
