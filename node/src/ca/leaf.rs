//! Leaf certificates and CRLs issued by a namespace CA, and the checks a node applies to them.
//!
//! A workload admitted by a policy rule gets a short-lived TLS leaf certificate from its
//! namespace CA. The workload supplies its key either as a PKCS#10 CSR (whose self-signature
//! proves possession) or as a bare SubjectPublicKeyInfo; the namespace's [`CertificateProfile`]
//! bounds the validity and decides which subject alternative names (SANs) may appear. Everything
//! else (subject, key usages, extensions) is fixed here: a CSR's subject and requested
//! extensions other than SANs are ignored.
//!
//! CSR, SPKI and certificate bytes come from workloads and are treated as hostile: they are
//! fully parsed, signatures and curve points are checked, and every failure is a typed
//! [`LeafError`].
//!
//! Key identifiers follow RFC 7093 method 1 (leftmost 160 bits of SHA-256 over the raw public
//! key), like the CA certificates, so they do not depend on rcgen's crypto backend. The issuer
//! key is any [`rcgen::SigningKey`]; certificates and CRLs are checked against the CA
//! certificate before they are returned.

use ed25519_dalek::{Signature, VerifyingKey};
use rcgen::string::Ia5String;
use rcgen::{
    CertificateParams, CertificateRevocationListParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyIdMethod, KeyUsagePurpose, PublicKeyData, RevokedCertParams, SanType, SerialNumber, SignatureAlgorithm,
    SigningKey,
};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::cri_attributes::ParsedCriAttribute;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::oid_registry::{
    Oid, OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_SIG_ECDSA_WITH_SHA256,
    OID_SIG_ECDSA_WITH_SHA384, OID_SIG_ED25519, OID_X509_EXT_AUTHORITY_KEY_IDENTIFIER, OID_X509_EXT_SUBJECT_ALT_NAME,
    OID_X509_EXT_SUBJECT_KEY_IDENTIFIER,
};
use x509_parser::prelude::FromDer;
use x509_parser::x509::{SubjectPublicKeyInfo, X509Version};

/// Leaves start this many seconds before the issuing node's clock, for clock skew.
pub const CLOCK_SKEW_SECS: u64 = 60;
/// Smallest allowed profile default validity.
pub const MIN_VALIDITY_SECS: u32 = 60;
/// Largest allowed profile maximum validity: 30 days.
pub const MAX_VALIDITY_SECS: u32 = 30 * 86_400;
/// Longest URI SAN or URI pattern accepted, in bytes.
pub const MAX_URI_LEN: usize = 2048;

const MAX_DNS_NAME_LEN: usize = 253;
const MAX_DNS_LABEL_LEN: usize = 63;

// DER AlgorithmIdentifiers of the signature algorithms accepted on CSRs and leaves.
const ED25519_ALG_ID: &[u8] = &[0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70];
const ECDSA_SHA256_ALG_ID: &[u8] = &[0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
const ECDSA_SHA384_ALG_ID: &[u8] = &[0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03];

/// Errors of leaf issuance, CRL signing and leaf checking.
#[derive(Debug, thiserror::Error)]
pub enum LeafError {
    /// The CSR does not parse, its self-signature does not verify, or it is ambiguous.
    #[error("bad CSR: {0}")]
    BadCsr(String),
    /// The subject public key (bare or in a CSR) is unsupported or invalid.
    #[error("bad subject public key: {0}")]
    BadPublicKey(String),
    /// A requested SAN is refused; `kind` is the SAN type ("DNS", "URI", "IP address", ...).
    #[error("{kind} SAN {san:?} not allowed: {reason}")]
    SanNotAllowed { san: String, kind: &'static str, reason: &'static str },
    /// The namespace's certificate profile is malformed.
    #[error("invalid certificate profile: {0}")]
    Profile(String),
    /// A caller-supplied request field (names, serial, times) is unusable.
    #[error("invalid request: {0}")]
    BadRequest(String),
    /// The CA certificate or CA key given by the caller is unusable (configuration error).
    #[error("unusable CA certificate or key: {0}")]
    BadCa(String),
    /// rcgen failed, or the built certificate/CRL failed its self-check.
    #[error("cannot build: {0}")]
    Build(String),
    /// A presented certificate does not parse or is not of the expected form.
    #[error("bad certificate: {0}")]
    BadCertificate(String),
    /// The certificate's signature does not verify under the namespace CA key.
    #[error("certificate is not signed by the namespace CA key")]
    WrongIssuer,
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, LeafError>;

impl From<rcgen::Error> for LeafError {
    fn from(e: rcgen::Error) -> Self {
        LeafError::Build(e.to_string())
    }
}

/// What leaf certificates of a namespace may say (the namespace's certificate profile).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateProfile {
    /// Validity when the request asks for none; at least [`MIN_VALIDITY_SECS`].
    pub default_validity_secs: u32,
    /// Cap on requested validity; at most [`MAX_VALIDITY_SECS`].
    pub max_validity_secs: u32,
    /// DNS SAN patterns: exact names, or "*.suffix" matching exactly one extra leftmost label.
    /// Compared case-insensitively; issued names are lowercase.
    pub dns_sans: Vec<String>,
    /// URI SAN patterns: exact (byte-for-byte), or ending in "/*" or ":*" = prefix match, where
    /// the matched tail must be one or more path segments of unreserved characters
    /// (`A-Z a-z 0-9 - . _ ~`), none empty, "." or "..", so a match cannot climb out of the
    /// prefix (e.g. "spiffe://prod/ns/app/*").
    pub uri_sans: Vec<String>,
}

impl CertificateProfile {
    /// Checks `MIN_VALIDITY_SECS <= default <= max <= MAX_VALIDITY_SECS` and that every pattern
    /// is well-formed (valid names, "*" only as described on the fields, no bare "*").
    pub fn check(&self) -> Result<()> {
        let (default, max) = (self.default_validity_secs, self.max_validity_secs);
        if default < MIN_VALIDITY_SECS {
            return Err(LeafError::Profile(format!(
                "default_validity_secs {default} is below the minimum {MIN_VALIDITY_SECS}"
            )));
        }
        if default > max {
            return Err(LeafError::Profile(format!("default_validity_secs {default} exceeds max_validity_secs {max}")));
        }
        if max > MAX_VALIDITY_SECS {
            return Err(LeafError::Profile(format!("max_validity_secs {max} exceeds 30 days ({MAX_VALIDITY_SECS})")));
        }
        for p in &self.dns_sans {
            check_dns_pattern(p).map_err(|why| LeafError::Profile(format!("DNS pattern {p:?}: {why}")))?;
        }
        for p in &self.uri_sans {
            check_uri_pattern(p).map_err(|why| LeafError::Profile(format!("URI pattern {p:?}: {why}")))?;
        }
        Ok(())
    }

    /// 0 means the default; anything else is capped at the maximum.
    fn validity_secs(&self, requested: u32) -> u32 {
        if requested == 0 {
            self.default_validity_secs
        } else {
            requested.min(self.max_validity_secs)
        }
    }

    /// The SANs a bare public key gets: the non-wildcard patterns, deduplicated.
    fn exact_sans(&self) -> Sans {
        let mut sans = Sans::default();
        for p in self.dns_sans.iter().filter(|p| !p.starts_with("*.")) {
            push_unique(&mut sans.dns, p.to_ascii_lowercase());
        }
        for p in self.uri_sans.iter().filter(|p| !p.ends_with('*')) {
            push_unique(&mut sans.uri, p.clone());
        }
        sans
    }

    /// Checks each requested SAN against the patterns; returns the SANs to issue.
    fn allowed_sans(&self, requested: &[RequestedSan]) -> Result<Sans> {
        let refuse = |san: &str, kind, reason| LeafError::SanNotAllowed { san: san.to_string(), kind, reason };
        let mut sans = Sans::default();
        for name in requested {
            match name {
                RequestedSan::Dns(s) => {
                    let lower = s.to_ascii_lowercase();
                    if !is_dns_name(&lower) {
                        return Err(refuse(s, "DNS", "not a valid host name (wildcards are never issued)"));
                    }
                    if !self.dns_sans.iter().any(|p| dns_matches(p, &lower)) {
                        return Err(refuse(s, "DNS", "matches no DNS pattern of the namespace profile"));
                    }
                    push_unique(&mut sans.dns, lower);
                }
                RequestedSan::Uri(s) => {
                    if let Err(why) = check_uri(s) {
                        return Err(refuse(s, "URI", why));
                    }
                    if !self.uri_sans.iter().any(|p| uri_matches(p, s)) {
                        return Err(refuse(s, "URI", "matches no URI pattern of the namespace profile"));
                    }
                    push_unique(&mut sans.uri, s.clone());
                }
                RequestedSan::Other { san, kind } => return Err(refuse(san, kind, "only DNS and URI SANs are issued")),
            }
        }
        Ok(sans)
    }
}

/// How the workload presents its public key.
#[derive(Clone, Copy, Debug)]
pub enum Subject<'a> {
    /// DER PKCS#10 certificate signing request; its SANs are the requested SANs.
    Csr(&'a [u8]),
    /// DER SubjectPublicKeyInfo; the leaf gets the profile's exact (non-wildcard) SANs.
    PublicKey(&'a [u8]),
}

/// Everything that determines one leaf certificate.
#[derive(Clone, Copy, Debug)]
pub struct LeafRequest<'a> {
    /// Namespace name; appears in the subject O.
    pub namespace: &'a str,
    /// Key version of the namespace CA; appears in the subject O.
    pub version: u32,
    /// The policy rule that admitted the workload; becomes the subject CN.
    pub rule: &'a str,
    /// The workload's key.
    pub subject: Subject<'a>,
    /// Requested validity in seconds; 0 = profile default; capped at the profile maximum.
    pub requested_validity_secs: u32,
    /// Current time, unix seconds. not_before = now - [`CLOCK_SKEW_SECS`], not_after = now +
    /// validity (clipped to the CA's not_after).
    pub now: u64,
    /// Serial number, e.g. 16 random bytes. [`issue`] clears its top bit so the DER INTEGER is
    /// positive; [`Leaf::serial`] is the value actually used.
    pub serial: [u8; 16],
}

/// An issued leaf certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leaf {
    /// Certificate DER.
    pub der: Vec<u8>,
    /// Serial number as issued (top bit cleared); pass this to [`crl`] to revoke the leaf.
    pub serial: [u8; 16],
    /// SHA-256 of the certificate's SubjectPublicKeyInfo DER (equal to the CSR's or the given SPKI).
    pub spki_sha256: [u8; 32],
    /// Start of validity, unix seconds.
    pub not_before: u64,
    /// End of validity, unix seconds.
    pub not_after: u64,
    /// DNS SANs in the certificate (lowercase).
    pub dns_sans: Vec<String>,
    /// URI SANs in the certificate.
    pub uri_sans: Vec<String>,
}

/// Issues a leaf certificate for `req` under the namespace CA (`ca_key`, `ca_cert_der`).
///
/// A CSR's self-signature must verify and each of its SANs must match a profile pattern (a CSR
/// without SANs gets a leaf without SANs); a bare public key gets the profile's exact entries.
/// Subject: `O=Guardian namespace <ns> v<version>, CN=<rule>`. Extensions: basicConstraints
/// CA:false, keyUsage digitalSignature (all supported keys are signature keys; TLS 1.3 and
/// ECDHE need nothing else), extKeyUsage serverAuth+clientAuth, SKI, and AKI = the CA's SKI.
/// The issuer name is the CA certificate's subject, byte for byte. Supported subject keys:
/// Ed25519, ECDSA P-256 and P-384.
pub fn issue<K: SigningKey>(
    ca_key: &K,
    ca_cert_der: &[u8],
    req: &LeafRequest<'_>,
    profile: &CertificateProfile,
) -> Result<Leaf> {
    profile.check()?;
    check_name("namespace", req.namespace)?;
    check_name("rule", req.rule)?;
    let serial = positive_serial(req.serial)?;

    let (key, sans) = match req.subject {
        Subject::Csr(der) => {
            let csr = parse_csr(der)?;
            let sans = profile.allowed_sans(&csr.sans)?;
            (csr.key, sans)
        }
        Subject::PublicKey(der) => (parse_spki(der)?, profile.exact_sans()),
    };

    let ca = CaCert::parse(ca_cert_der, ca_key)?;
    if req.now < ca.not_before || req.now >= ca.not_after {
        return Err(LeafError::BadCa(format!(
            "CA certificate is not valid at {} (valid {}..{})",
            req.now, ca.not_before, ca.not_after
        )));
    }
    let not_before = req.now.saturating_sub(CLOCK_SKEW_SECS);
    // A leaf must not outlive its CA: chains would stop verifying before the leaf expires.
    let not_after = req
        .now
        .checked_add(u64::from(profile.validity_secs(req.requested_validity_secs)))
        .ok_or_else(|| LeafError::BadRequest(format!("now {} is too large", req.now)))?
        .min(ca.not_after);

    let mut cp = CertificateParams::default();
    cp.serial_number = Some(SerialNumber::from_slice(&serial));
    cp.not_before = utc("not_before", not_before)?;
    cp.not_after = utc("not_after", not_after)?;
    cp.distinguished_name = DistinguishedName::new();
    cp.distinguished_name
        .push(DnType::OrganizationName, format!("Guardian namespace {} v{}", req.namespace, req.version));
    cp.distinguished_name.push(DnType::CommonName, req.rule);
    cp.subject_alt_names = sans.to_rcgen()?;
    cp.is_ca = IsCa::ExplicitNoCa;
    cp.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    cp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    cp.key_identifier_method = KeyIdMethod::PreSpecified(key_identifier(&key.raw));
    cp.use_authority_key_identifier_extension = true;

    let issuer = Issuer::from_ca_cert_der(&ca_cert_der.into(), ca_key)?;
    let der = cp.signed_by(&key, &issuer)?.der().to_vec();
    ca.check_issued(&der)?;

    Ok(Leaf {
        der,
        serial,
        spki_sha256: Sha256::digest(key.subject_public_key_info()).into(),
        not_before,
        not_after,
        dns_sans: sans.dns,
        uri_sans: sans.uri,
    })
}

/// Signs a CRL of the namespace CA listing `revoked` (serial, revocation time in unix seconds).
///
/// Deterministic: the same inputs give byte-identical DER on every node (entries are sorted by
/// serial, a serial listed twice keeps its earliest time, and Ed25519 signatures are
/// deterministic). Serials get their top bit cleared as in [`issue`], so either the raw request
/// serial or [`Leaf::serial`] may be passed. The CRL carries `crl_number` and an AKI equal to the
/// CA's SKI; its issuer name is the CA certificate's subject, byte for byte.
pub fn crl<K: SigningKey>(
    ca_key: &K,
    ca_cert_der: &[u8],
    revoked: &[([u8; 16], u64)],
    this_update: u64,
    next_update: u64,
    crl_number: u64,
) -> Result<Vec<u8>> {
    if next_update <= this_update {
        return Err(LeafError::BadRequest(format!("next_update {next_update} is not after this_update {this_update}")));
    }
    let ca = CaCert::parse(ca_cert_der, ca_key)?;

    let mut entries =
        revoked.iter().map(|&(serial, at)| Ok((positive_serial(serial)?, at))).collect::<Result<Vec<_>>>()?;
    entries.sort_unstable();
    entries.dedup_by_key(|(serial, _)| *serial);
    let revoked_certs = entries
        .into_iter()
        .map(|(serial, at)| {
            Ok(RevokedCertParams {
                serial_number: SerialNumber::from_slice(&serial),
                revocation_time: utc("revocation time", at)?,
                reason_code: None,
                invalidity_date: None,
            })
        })
        .collect::<Result<Vec<_>>>()?;

    let params = CertificateRevocationListParams {
        this_update: utc("this_update", this_update)?,
        next_update: utc("next_update", next_update)?,
        crl_number: SerialNumber::from(crl_number),
        issuing_distribution_point: None,
        revoked_certs,
        key_identifier_method: KeyIdMethod::PreSpecified(ca.ski.clone()),
    };
    let issuer = Issuer::from_ca_cert_der(&ca_cert_der.into(), ca_key)?;
    let der = params.signed_by(&issuer)?.der().to_vec();
    ca.check_crl(&der)?;
    Ok(der)
}

/// What a node needs from a client certificate presented over mTLS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedLeaf {
    /// Serial number as unsigned big-endian bytes without leading zeros (see [`Self::serial16`]).
    pub serial: Vec<u8>,
    /// Start of validity, unix seconds.
    pub not_before: u64,
    /// End of validity, unix seconds.
    pub not_after: u64,
    /// SHA-256 of the certificate's SubjectPublicKeyInfo DER.
    pub spki_sha256: [u8; 32],
    /// Key identifier of the authority key identifier extension, if present.
    pub authority_key_id: Option<Vec<u8>>,
}

impl ParsedLeaf {
    /// The serial left-padded to 16 bytes, comparable with [`Leaf::serial`]; `None` if longer.
    pub fn serial16(&self) -> Option<[u8; 16]> {
        let pad = 16usize.checked_sub(self.serial.len())?;
        let mut out = [0u8; 16];
        out.get_mut(pad..)?.copy_from_slice(&self.serial);
        Some(out)
    }
}

/// Parses a leaf certificate. Checks structure only: neither the signature (see
/// [`verify_leaf_signature`]) nor the time (the caller decides).
pub fn parse_leaf(der: &[u8]) -> Result<ParsedLeaf> {
    let cert = parse_certificate(der).map_err(LeafError::BadCertificate)?;
    let raw_serial = cert.raw_serial();
    if raw_serial.first().is_some_and(|b| b & 0x80 != 0) {
        return Err(LeafError::BadCertificate("negative serial number".into()));
    }
    let serial = raw_serial.iter().skip_while(|b| **b == 0).copied().collect();
    let time = |t: i64, what: &str| {
        u64::try_from(t).map_err(|_| LeafError::BadCertificate(format!("{what} lies before 1970")))
    };
    let validity = cert.validity();
    let authority_key_id =
        match unique_extension(&cert, &OID_X509_EXT_AUTHORITY_KEY_IDENTIFIER).map_err(LeafError::BadCertificate)? {
            None => None,
            Some(ParsedExtension::AuthorityKeyIdentifier(aki)) => aki.key_identifier.as_ref().map(|k| k.0.to_vec()),
            Some(_) => return Err(LeafError::BadCertificate("malformed authority key identifier".into())),
        };
    Ok(ParsedLeaf {
        serial,
        not_before: time(validity.not_before.timestamp(), "not_before")?,
        not_after: time(validity.not_after.timestamp(), "not_after")?,
        spki_sha256: Sha256::digest(cert.public_key().raw).into(),
        authority_key_id,
    })
}

/// Checks that `der` carries a valid Ed25519 signature by `ca_public` (the namespace CA key) over
/// its TBSCertificate. Fails with [`LeafError::WrongIssuer`] if the signature does not verify.
pub fn verify_leaf_signature(der: &[u8], ca_public: &[u8; 32]) -> Result<()> {
    let cert = parse_certificate(der).map_err(LeafError::BadCertificate)?;
    let tbs = &cert.tbs_certificate;
    if tbs.signature.algorithm != OID_SIG_ED25519 || tbs.signature.parameters.is_some() {
        return Err(LeafError::BadCertificate("not signed with Ed25519".into()));
    }
    let signature = Signature::from_slice(&cert.signature_value.data)
        .map_err(|_| LeafError::BadCertificate("Ed25519 signature is not 64 bytes".into()))?;
    if der != signed_der(tbs.as_ref(), ED25519_ALG_ID, &signature.to_bytes()) {
        return Err(LeafError::BadCertificate(
            "signature fields are not the DER encoding of an Ed25519 signature".into(),
        ));
    }
    let ca = VerifyingKey::from_bytes(ca_public)
        .map_err(|_| LeafError::BadCa("CA public key is not a valid Ed25519 point".into()))?;
    // verify_strict also refuses small-order keys and non-canonical signatures.
    ca.verify_strict(tbs.as_ref(), &signature).map_err(|_| LeafError::WrongIssuer)
}

/// The SubjectPublicKeyInfo DER of a CSR, after verifying the CSR's self-signature and its key
/// (the attestation evidence binds SHA-256 of these bytes). Equal to the SPKI [`issue`] puts into
/// the leaf.
pub fn csr_spki(csr_der: &[u8]) -> Result<Vec<u8>> {
    Ok(parse_csr(csr_der)?.key.subject_public_key_info())
}

// ---------------------------------------------------------------------------------------------
// Internals
// ---------------------------------------------------------------------------------------------

/// A checked workload public key, as rcgen needs it.
struct SubjectKey {
    alg: &'static SignatureAlgorithm,
    raw: Vec<u8>,
}

impl PublicKeyData for SubjectKey {
    fn der_bytes(&self) -> &[u8] {
        &self.raw
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        self.alg
    }
}

/// SANs to put into a leaf.
#[derive(Default)]
struct Sans {
    dns: Vec<String>,
    uri: Vec<String>,
}

impl Sans {
    fn to_rcgen(&self) -> Result<Vec<SanType>> {
        let ia5 = |s: &String| Ia5String::try_from(s.as_str()).map_err(|e| LeafError::Build(e.to_string()));
        let dns = self.dns.iter().map(|s| Ok(SanType::DnsName(ia5(s)?)));
        let uri = self.uri.iter().map(|s| Ok(SanType::URI(ia5(s)?)));
        dns.chain(uri).collect()
    }
}

/// A SAN as requested in a CSR.
enum RequestedSan {
    Dns(String),
    Uri(String),
    /// Any other type, never issued; `kind` names it for the error.
    Other {
        san: String,
        kind: &'static str,
    },
}

impl From<&GeneralName<'_>> for RequestedSan {
    fn from(name: &GeneralName<'_>) -> Self {
        let kind = match name {
            GeneralName::DNSName(s) => return RequestedSan::Dns(s.to_string()),
            GeneralName::URI(s) => return RequestedSan::Uri(s.to_string()),
            GeneralName::IPAddress(_) => "IP address",
            GeneralName::RFC822Name(_) => "email",
            GeneralName::OtherName(..) => "other name",
            GeneralName::DirectoryName(_) => "directory name",
            GeneralName::X400Address(_) => "X.400 address",
            GeneralName::EDIPartyName(_) => "EDI party name",
            GeneralName::RegisteredID(_) => "registered ID",
            GeneralName::Invalid(..) => "malformed",
        };
        RequestedSan::Other { san: name.to_string(), kind }
    }
}

struct ParsedCsr {
    key: SubjectKey,
    sans: Vec<RequestedSan>,
}

/// Parses a CSR, verifies its self-signature and key, and collects its requested SANs.
fn parse_csr(der: &[u8]) -> Result<ParsedCsr> {
    let bad = |m: &str| LeafError::BadCsr(m.to_string());
    let (rest, csr) = X509CertificationRequest::from_der(der).map_err(|e| LeafError::BadCsr(e.to_string()))?;
    if !rest.is_empty() {
        return Err(bad("trailing bytes after the CSR"));
    }
    let info = &csr.certification_request_info;
    if info.version != X509Version::V1 {
        return Err(bad("version is not 1"));
    }
    let alg_id = match &csr.signature_algorithm.algorithm {
        oid if *oid == OID_SIG_ED25519 => ED25519_ALG_ID,
        oid if *oid == OID_SIG_ECDSA_WITH_SHA256 => ECDSA_SHA256_ALG_ID,
        oid if *oid == OID_SIG_ECDSA_WITH_SHA384 => ECDSA_SHA384_ALG_ID,
        oid => return Err(LeafError::BadCsr(format!("unsupported signature algorithm {oid}"))),
    };
    if der != signed_der(info.raw, alg_id, &csr.signature_value.data) {
        return Err(bad("signature fields are not in canonical DER form"));
    }
    csr.verify_signature().map_err(|e| LeafError::BadCsr(format!("self-signature does not verify: {e}")))?;
    let key = subject_key(&info.subject_pki)?;

    // Only the SAN extension is honoured; anything ambiguous about it is refused rather than
    // guessed at (another parser might read a different set of names).
    let mut requests = info.iter_attributes().filter_map(|a| match a.parsed_attribute() {
        ParsedCriAttribute::ExtensionRequest(r) => Some(r),
        _ => None,
    });
    let request = requests.next();
    if requests.next().is_some() {
        return Err(bad("more than one extensionRequest attribute"));
    }
    let mut sans = None;
    for ext in request.iter().flat_map(|r| &r.extensions) {
        if ext.oid != OID_X509_EXT_SUBJECT_ALT_NAME {
            continue;
        }
        let ParsedExtension::SubjectAlternativeName(san) = ext.parsed_extension() else {
            return Err(bad("malformed subjectAltName extension"));
        };
        if sans.replace(san.general_names.iter().map(RequestedSan::from).collect()).is_some() {
            return Err(bad("more than one subjectAltName extension"));
        }
    }
    Ok(ParsedCsr { key, sans: sans.unwrap_or_default() })
}

/// Parses a bare DER SubjectPublicKeyInfo.
fn parse_spki(der: &[u8]) -> Result<SubjectKey> {
    let (rest, spki) = SubjectPublicKeyInfo::from_der(der)
        .map_err(|e| LeafError::BadPublicKey(format!("not a DER SubjectPublicKeyInfo: {e}")))?;
    if !rest.is_empty() {
        return Err(LeafError::BadPublicKey("trailing bytes after the SubjectPublicKeyInfo".into()));
    }
    subject_key(&spki)
}

/// Identifies and validates a supported subject key.
fn subject_key(spki: &SubjectPublicKeyInfo<'_>) -> Result<SubjectKey> {
    let bad = |m: &str| LeafError::BadPublicKey(m.to_string());
    let raw = spki.subject_public_key.data.as_ref();
    let alg = &spki.algorithm.algorithm;
    let key = if *alg == OID_SIG_ED25519 {
        let bytes: &[u8; 32] = raw.try_into().map_err(|_| bad("Ed25519 key is not 32 bytes"))?;
        let vk = VerifyingKey::from_bytes(bytes).map_err(|_| bad("Ed25519 key is not a valid curve point"))?;
        // Anyone can "sign" for a small-order key, so it proves nothing.
        if vk.is_weak() {
            return Err(bad("Ed25519 key has small order"));
        }
        SubjectKey { alg: &rcgen::PKCS_ED25519, raw: raw.to_vec() }
    } else if *alg == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok())
            .ok_or_else(|| bad("EC key without a named curve"))?;
        let (alg, ecdh) = if curve == OID_EC_P256 {
            (&rcgen::PKCS_ECDSA_P256_SHA256, &ring::agreement::ECDH_P256)
        } else if curve == OID_NIST_EC_P384 {
            (&rcgen::PKCS_ECDSA_P384_SHA384, &ring::agreement::ECDH_P384)
        } else {
            return Err(LeafError::BadPublicKey(format!("unsupported elliptic curve {curve}")));
        };
        check_ec_point(ecdh, raw)?;
        SubjectKey { alg, raw: raw.to_vec() }
    } else {
        return Err(LeafError::BadPublicKey(format!(
            "unsupported key algorithm {alg} (supported: Ed25519, ECDSA P-256, ECDSA P-384)"
        )));
    };
    // rcgen re-encodes the SPKI from (algorithm, key bits). Requiring the input to be in that
    // canonical form keeps the leaf's SPKI, and so its hash, identical to what the workload
    // presented and the evidence binds.
    if key.subject_public_key_info() != spki.raw {
        return Err(bad("SubjectPublicKeyInfo is not in canonical DER form"));
    }
    Ok(key)
}

/// Refuses anything but an uncompressed point on the curve. ring has no separate validation
/// call, but ECDH validates the peer point fully before using it, and ring is already the
/// crypto backend of rcgen and x509-parser here.
fn check_ec_point(alg: &'static ring::agreement::Algorithm, point: &[u8]) -> Result<()> {
    use ring::agreement::{agree_ephemeral, EphemeralPrivateKey, UnparsedPublicKey};
    let ours = EphemeralPrivateKey::generate(alg, &ring::rand::SystemRandom::new())
        .map_err(|_| LeafError::Build("no randomness for the EC point check".into()))?;
    agree_ephemeral(ours, &UnparsedPublicKey::new(alg, point), |_| ())
        .map_err(|_| LeafError::BadPublicKey("EC key is not an uncompressed point on its curve".into()))
}

/// What issuance and CRL signing need from the CA certificate.
struct CaCert<'a> {
    cert: X509Certificate<'a>,
    ski: Vec<u8>,
    not_before: u64,
    not_after: u64,
}

impl<'a> CaCert<'a> {
    /// Parses the CA certificate and checks it is a CA with an SKI whose key is `ca_key`.
    fn parse(der: &'a [u8], ca_key: &impl PublicKeyData) -> Result<Self> {
        let bad = |m: &str| LeafError::BadCa(m.to_string());
        let cert = parse_certificate(der).map_err(LeafError::BadCa)?;
        if !cert.basic_constraints().ok().flatten().is_some_and(|bc| bc.value.ca) {
            return Err(bad("CA certificate lacks basicConstraints CA:true"));
        }
        let ski = match unique_extension(&cert, &OID_X509_EXT_SUBJECT_KEY_IDENTIFIER).map_err(LeafError::BadCa)? {
            Some(ParsedExtension::SubjectKeyIdentifier(id)) => id.0.to_vec(),
            _ => return Err(bad("CA certificate has no usable subject key identifier")),
        };
        if ca_key.subject_public_key_info() != cert.public_key().raw {
            return Err(bad("CA key does not match the CA certificate's public key"));
        }
        // Times before 1970 count as 0, i.e. long past.
        let secs = |t: i64| u64::try_from(t).unwrap_or(0);
        let (not_before, not_after) =
            (secs(cert.validity().not_before.timestamp()), secs(cert.validity().not_after.timestamp()));
        Ok(CaCert { cert, ski, not_before, not_after })
    }

    /// rcgen rebuilds the issuer name from parsed values, so an unusual string type in the CA
    /// name would change its bytes and break chain building; and a faulty signer (the key is
    /// generic) must not produce a leaf that does not verify. Check both before handing it out.
    fn check_issued(&self, der: &[u8]) -> Result<()> {
        let leaf = parse_certificate(der).map_err(|e| LeafError::Build(format!("issued leaf does not parse: {e}")))?;
        if leaf.issuer().as_raw() != self.cert.subject().as_raw() {
            return Err(LeafError::Build("leaf issuer name differs from the CA subject name".into()));
        }
        leaf.verify_signature(Some(self.cert.public_key()))
            .map_err(|e| LeafError::Build(format!("leaf signature does not verify under the CA key: {e}")))
    }

    /// The same checks as [`Self::check_issued`], for a CRL.
    fn check_crl(&self, der: &[u8]) -> Result<()> {
        let (rest, crl) =
            x509_parser::parse_x509_crl(der).map_err(|e| LeafError::Build(format!("CRL does not parse: {e}")))?;
        if !rest.is_empty() || crl.issuer().as_raw() != self.cert.subject().as_raw() {
            return Err(LeafError::Build("CRL issuer name differs from the CA subject name".into()));
        }
        crl.verify_signature(self.cert.public_key())
            .map_err(|e| LeafError::Build(format!("CRL signature does not verify under the CA key: {e}")))
    }
}

/// DER of SEQUENCE { body, algorithm, BIT STRING signature } (a signed certificate or CSR), with
/// `body` and `algorithm` already DER. x509-parser tolerates some non-DER forms in these unsigned
/// outer fields (e.g. the algorithm OID's tag, unused bits); comparing with this re-encoding
/// leaves exactly one accepted byte string per signed body.
fn signed_der(body: &[u8], algorithm: &[u8], signature: &[u8]) -> Vec<u8> {
    der_tlv(0x30, &[body, algorithm, &der_tlv(0x03, &[&[0], signature])])
}

fn der_tlv(tag: u8, parts: &[&[u8]]) -> Vec<u8> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let mut out = vec![tag];
    match u8::try_from(len) {
        Ok(short) if short < 0x80 => out.push(short),
        _ => {
            let be = len.to_be_bytes();
            let significant = be.iter().skip_while(|b| **b == 0);
            out.push(0x80 | significant.clone().count() as u8);
            out.extend(significant);
        }
    }
    parts.iter().for_each(|p| out.extend_from_slice(p));
    out
}

/// Parses a whole DER certificate; the error says what failed.
fn parse_certificate(der: &[u8]) -> std::result::Result<X509Certificate<'_>, String> {
    let (rest, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| format!("not a DER certificate: {e}"))?;
    if !rest.is_empty() {
        return Err("trailing bytes after the certificate".into());
    }
    Ok(cert)
}

/// The parsed extension with `oid`, refusing duplicates and unparsable content.
fn unique_extension<'c, 'a>(
    cert: &'c X509Certificate<'a>,
    oid: &Oid<'_>,
) -> std::result::Result<Option<&'c ParsedExtension<'a>>, String> {
    let ext = cert.get_extension_unique(oid).map_err(|e| format!("extension {oid}: {e}"))?;
    match ext.map(|e| e.parsed_extension()) {
        Some(ParsedExtension::ParseError { error }) => Err(format!("extension {oid} is malformed: {error}")),
        parsed => Ok(parsed),
    }
}

/// Clears the top bit so the DER INTEGER is positive and at most 16 bytes; RFC 5280 §4.1.2.2
/// wants a positive serial, so zero is refused.
fn positive_serial(mut serial: [u8; 16]) -> Result<[u8; 16]> {
    serial[0] &= 0x7f;
    if serial == [0; 16] {
        return Err(LeafError::BadRequest("serial number is zero".into()));
    }
    Ok(serial)
}

/// RFC 7093 method 1, as the CA certificates use it.
fn key_identifier(raw_public_key: &[u8]) -> Vec<u8> {
    super::key_identifier(raw_public_key).to_vec()
}

fn utc(what: &str, secs: u64) -> Result<OffsetDateTime> {
    i64::try_from(secs)
        .ok()
        .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
        .ok_or_else(|| LeafError::BadRequest(format!("{what} {secs} is out of the supported date range")))
}

fn check_name(what: &str, name: &str) -> Result<()> {
    if name.is_empty() || name.chars().any(char::is_control) {
        return Err(LeafError::BadRequest(format!("{what} {name:?} is empty or contains control characters")));
    }
    Ok(())
}

fn push_unique(list: &mut Vec<String>, s: String) {
    if !list.contains(&s) {
        list.push(s);
    }
}

/// A host name of LDH labels (letters, digits, inner hyphens), no wildcard, no trailing dot.
fn is_dns_name(name: &str) -> bool {
    name.len() <= MAX_DNS_NAME_LEN
        && name.split('.').all(|label| {
            (1..=MAX_DNS_LABEL_LEN).contains(&label.len())
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

fn check_dns_pattern(pattern: &str) -> std::result::Result<(), &'static str> {
    let name = pattern.strip_prefix("*.").unwrap_or(pattern);
    if is_dns_name(name) {
        Ok(())
    } else {
        Err("not a host name, or \"*.\" followed by one")
    }
}

/// `name` is a valid lowercase host name.
fn dns_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_prefix("*.") {
        // The first label is a valid label, so this is exactly one extra label.
        Some(suffix) => name.split_once('.').is_some_and(|(_, rest)| rest.eq_ignore_ascii_case(suffix)),
        None => name.eq_ignore_ascii_case(pattern),
    }
}

/// A URI as far as matching needs: bounded, printable ASCII without spaces, with a scheme.
fn check_uri(uri: &str) -> std::result::Result<(), &'static str> {
    if uri.len() > MAX_URI_LEN {
        return Err("longer than 2048 bytes");
    }
    if !uri.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("contains a space, control or non-ASCII character");
    }
    let scheme = uri.split_once(':').map(|(s, _)| s).ok_or("has no scheme")?;
    let mut chars = scheme.bytes();
    let scheme_ok = chars.next().is_some_and(|b| b.is_ascii_alphabetic())
        && chars.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    if scheme_ok {
        Ok(())
    } else {
        Err("has an invalid scheme")
    }
}

fn check_uri_pattern(pattern: &str) -> std::result::Result<(), &'static str> {
    let (body, wildcard) = match pattern.strip_suffix('*') {
        Some(prefix) => (prefix, true),
        None => (pattern, false),
    };
    if body.contains('*') {
        return Err("\"*\" is only allowed as the last character");
    }
    if wildcard && !(body.ends_with('/') || body.ends_with(':')) {
        return Err("a trailing \"*\" must follow \"/\" or \":\"");
    }
    check_uri(body)
}

fn uri_matches(pattern: &str, uri: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => uri.strip_prefix(prefix).is_some_and(is_path_tail),
        None => uri == pattern,
    }
}

/// One or more "/"-separated segments of unreserved characters; no empty, "." or ".." segment,
/// and no percent-encoding, so no reading of the URI can leave the matched prefix.
fn is_path_tail(tail: &str) -> bool {
    tail.split('/').all(|seg| {
        !seg.is_empty()
            && seg != "."
            && seg != ".."
            && seg.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
    })
}

#[cfg(test)]
#[path = "leaf_tests.rs"]
mod tests;
