//! Certificate profiles for Guardian's cluster root CA and per-namespace CAs.
//!
//! The root CA key is an Ed25519 FROST group key that exists only as shares, and signing happens
//! asynchronously over the network. Certificates are therefore built in two passes from the same
//! parameters:
//!
//! 1. `*_tbs` returns the exact DER `TBSCertificate` the cluster must threshold-sign.
//! 2. `*_cert` rebuilds the certificate with the supplied 64-byte signature, checks that the TBS
//!    did not change, verifies the signature under the group key and returns the certificate DER.
//!
//! Every field (serial, dates, names, key identifiers) is a pure function of the parameters, so
//! both passes, and every node, produce byte-identical TBS bytes. Key identifiers follow RFC 7093
//! method 1 (leftmost 160 bits of SHA-256 over the raw public key), computed here rather than by
//! rcgen so the profile does not depend on rcgen's crypto backend.
//!
//! The namespace CA key is derived from a 32-byte namespace secret with HKDF-SHA256, so any node
//! that holds the secret can recreate it; it signs leaves directly through rcgen.

pub mod leaf;

use std::cell::Cell;
use std::fmt;

use ed25519_dalek::{Signature, Signer, VerifyingKey};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyIdMethod, KeyUsagePurpose,
    PublicKeyData, SerialNumber, SignatureAlgorithm, SigningKey,
};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

/// Validity of the cluster root CA, in calendar years from its `not_before`.
pub const ROOT_CA_VALIDITY_YEARS: i32 = 20;
/// Validity of a namespace CA, in calendar years from its `not_before` (clipped to the root's).
pub const NAMESPACE_CA_VALIDITY_YEARS: i32 = 5;
/// Longest namespace name accepted, in bytes of UTF-8.
pub const MAX_NAMESPACE_LEN: usize = 64;
/// Organization (O) attribute of every Guardian CA subject.
pub const ORGANIZATION: &str = "Guardian";

const ROOT_SERIAL_DOMAIN: &[u8] = b"guardian/root-ca/v1";
const NS_SERIAL_DOMAIN: &[u8] = b"guardian/ns-ca/v1";
const ED25519_SIG_LEN: usize = 64;

/// Errors of certificate building and assembly.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// rcgen or date arithmetic refused the parameters.
    #[error("cannot build certificate: {0}")]
    Build(String),
    /// Pass 2 produced a different TBSCertificate than pass 1, so the signature would not match.
    #[error("TBSCertificate of pass 2 differs from the one given to the signers in pass 1")]
    TbsChanged,
    /// The signature does not verify under the issuing CA's group key.
    #[error("signature does not verify under the CA group key")]
    BadSignature,
    /// A public key is not a usable Ed25519 key; the field says which one and why.
    #[error("bad Ed25519 key: {0}")]
    BadKey(&'static str),
    /// The namespace name would make an ambiguous or invalid subject.
    #[error("invalid namespace name: {0}")]
    InvalidNamespace(&'static str),
    /// The assembled certificate could not be parsed back.
    #[error("cannot parse certificate: {0}")]
    Parse(String),
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, CaError>;

impl From<rcgen::Error> for CaError {
    fn from(e: rcgen::Error) -> Self {
        CaError::Build(e.to_string())
    }
}

/// Everything that determines the cluster root CA certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RootCaParams {
    /// Cluster identifier; its first 4 bytes (8 hex digits) appear in the CN.
    pub cluster_id: [u8; 16],
    /// Ed25519 FROST group verifying key (compressed Edwards point).
    pub group_key: [u8; 32],
    /// Start of validity, unix seconds (the caller fixes it once so all nodes agree).
    pub not_before: u64,
}

/// Everything that determines a namespace CA certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamespaceCaParams {
    /// The issuing root CA.
    pub root: RootCaParams,
    /// Namespace name; see [`validate_namespace`].
    pub namespace: String,
    /// Key version of the namespace CA; part of the CN and the serial.
    pub version: u32,
    /// Ed25519 public key of the namespace CA ([`NamespaceCaKey::public_key`]).
    pub public_key: [u8; 32],
    /// Start of validity, unix seconds; must lie within the root's validity.
    pub not_before: u64,
}

/// Pass 1 for the root CA: the DER TBSCertificate the cluster must threshold-sign.
pub fn root_ca_tbs(params: &RootCaParams) -> Result<Vec<u8>> {
    let cp = root_cert_params(params)?;
    let (tbs, _) = assemble(params.group_key, None, |signer| cp.self_signed(signer))?;
    Ok(tbs)
}

/// Pass 2 for the root CA: the certificate DER carrying `signature` (by the group key over
/// [`root_ca_tbs`]). Fails with [`CaError::BadSignature`] if the signature does not verify.
pub fn root_ca_cert(params: &RootCaParams, signature: &[u8; 64]) -> Result<Vec<u8>> {
    let tbs = root_ca_tbs(params)?;
    let cp = root_cert_params(params)?;
    finish(&tbs, params.group_key, signature, |signer| cp.self_signed(signer))
}

/// Pass 1 for a namespace CA: the DER TBSCertificate the cluster must threshold-sign with the
/// root group key.
pub fn namespace_ca_tbs(params: &NamespaceCaParams) -> Result<Vec<u8>> {
    let (root_cp, ns_cp) = namespace_cert_params(params)?;
    let subject = RawEd25519Public(params.public_key);
    let (tbs, _) = assemble(params.root.group_key, None, |signer| {
        ns_cp.signed_by(&subject, &Issuer::from_params(&root_cp, signer))
    })?;
    Ok(tbs)
}

/// Pass 2 for a namespace CA: the certificate DER carrying `signature` (by the root group key
/// over [`namespace_ca_tbs`]).
pub fn namespace_ca_cert(params: &NamespaceCaParams, signature: &[u8; 64]) -> Result<Vec<u8>> {
    let tbs = namespace_ca_tbs(params)?;
    let (root_cp, ns_cp) = namespace_cert_params(params)?;
    let subject = RawEd25519Public(params.public_key);
    finish(&tbs, params.root.group_key, signature, |signer| {
        ns_cp.signed_by(&subject, &Issuer::from_params(&root_cp, signer))
    })
}

/// Serial of the root CA: SHA-256("guardian/root-ca/v1" ‖ group_key)[..16], top bit cleared so
/// the DER INTEGER stays positive without a padding byte.
pub fn root_ca_serial(group_key: &[u8; 32]) -> [u8; 16] {
    let mut h = Sha256::new();
    h.update(ROOT_SERIAL_DOMAIN);
    h.update(group_key);
    truncate_serial(h.finalize().into())
}

/// Serial of a namespace CA: SHA-256 over "guardian/ns-ca/v1" ‖ group_key ‖ len32(ns) ‖ ns ‖
/// version32 (big-endian), truncated like [`root_ca_serial`]. The length prefix keeps
/// (namespace, version) pairs from colliding.
pub fn namespace_ca_serial(group_key: &[u8; 32], namespace: &str, version: u32) -> Result<[u8; 16]> {
    let ns_len = u32::try_from(namespace.len()).map_err(|_| CaError::InvalidNamespace("too long"))?;
    let mut h = Sha256::new();
    h.update(NS_SERIAL_DOMAIN);
    h.update(group_key);
    h.update(ns_len.to_be_bytes());
    h.update(namespace.as_bytes());
    h.update(version.to_be_bytes());
    Ok(truncate_serial(h.finalize().into()))
}

/// Key identifier (SKI/AKI) of an Ed25519 key: RFC 7093 method 1, the leftmost 160 bits of
/// SHA-256 over the raw 32-byte key.
pub fn key_identifier(public_key: &[u8]) -> [u8; 20] {
    let digest: [u8; 32] = Sha256::digest(public_key).into();
    let mut out = [0u8; 20];
    out.copy_from_slice(digest.get(..20).unwrap_or(&[0u8; 20]));
    out
}

/// Common name of the root CA: "Guardian Root CA <first 8 hex digits of cluster_id>".
pub fn root_ca_common_name(cluster_id: &[u8; 16]) -> String {
    format!("Guardian Root CA {}", hex(cluster_id.get(..4).unwrap_or_default()))
}

/// Common name of a namespace CA: "Guardian namespace <ns> CA v<version>".
pub fn namespace_ca_common_name(namespace: &str, version: u32) -> String {
    format!("Guardian namespace {namespace} CA v{version}")
}

/// Checks that `namespace` makes an unambiguous, valid subject: non-empty, at most
/// [`MAX_NAMESPACE_LEN`] bytes, no control characters, no invisible or bidirectional formatting
/// characters (which could make two different names render alike), no leading/trailing
/// whitespace.
pub fn validate_namespace(namespace: &str) -> Result<()> {
    if namespace.is_empty() {
        return Err(CaError::InvalidNamespace("empty"));
    }
    if namespace.len() > MAX_NAMESPACE_LEN {
        return Err(CaError::InvalidNamespace("longer than 64 bytes"));
    }
    if namespace.chars().any(char::is_control) {
        return Err(CaError::InvalidNamespace("contains a control character"));
    }
    if namespace.chars().any(is_invisible_format) {
        return Err(CaError::InvalidNamespace("contains an invisible or bidirectional formatting character"));
    }
    if namespace.starts_with(char::is_whitespace) || namespace.ends_with(char::is_whitespace) {
        return Err(CaError::InvalidNamespace("leading or trailing whitespace"));
    }
    Ok(())
}

/// PEM encoding of `der` with the given label (e.g. "CERTIFICATE"), 64-column base64, LF line ends.
pub fn to_pem(der: &[u8], label: &str) -> String {
    let b64 = base64(der);
    let mut out = String::with_capacity(b64.len() + b64.len() / 64 + 2 * label.len() + 40);
    out.push_str("-----BEGIN ");
    out.push_str(label);
    out.push_str("-----\n");
    // base64 output is ASCII, so byte chunks are valid UTF-8.
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END ");
    out.push_str(label);
    out.push_str("-----\n");
    out
}

/// Ed25519 signing key of a namespace CA, derived from the namespace secret so every node holding
/// the secret recreates the same key. Zeroized on drop; `Debug` shows only the public key.
///
/// It implements [`rcgen::SigningKey`], so it can be used directly as a leaf issuer
/// (`rcgen::Issuer::from_ca_cert_der(&ns_ca_der.into(), &key)`), without copying the secret.
pub struct NamespaceCaKey {
    signing: ed25519_dalek::SigningKey,
    public: [u8; 32],
}

/// Derives the namespace CA key: Ed25519 seed = HKDF-SHA256(ikm = secret,
/// salt = "guardian/ns-ca-key/v1", info = "ed25519 seed"), 32 bytes.
pub fn namespace_ca_key(secret: &[u8; 32]) -> Result<NamespaceCaKey> {
    let seed = crate::keys::hierarchy::derive(secret, crate::keys::hierarchy::Purpose::NamespaceCaSeed);
    let signing = ed25519_dalek::SigningKey::from_bytes(&seed);
    let public = signing.verifying_key().to_bytes();
    Ok(NamespaceCaKey { signing, public })
}

impl NamespaceCaKey {
    /// The 32-byte Ed25519 public key, for [`NamespaceCaParams::public_key`].
    pub fn public_key(&self) -> [u8; 32] {
        self.public
    }
}

impl fmt::Debug for NamespaceCaKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NamespaceCaKey").field("public_key", &hex(&self.public)).field("secret", &"<redacted>").finish()
    }
}

impl PublicKeyData for NamespaceCaKey {
    fn der_bytes(&self) -> &[u8] {
        &self.public
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        &rcgen::PKCS_ED25519
    }
}

impl SigningKey for NamespaceCaKey {
    fn sign(&self, msg: &[u8]) -> std::result::Result<Vec<u8>, rcgen::Error> {
        Ok(self.signing.sign(msg).to_bytes().to_vec())
    }
}

// ---------------------------------------------------------------------------------------------
// Internals
// ---------------------------------------------------------------------------------------------

/// A raw Ed25519 public key as rcgen subject key.
struct RawEd25519Public([u8; 32]);

impl PublicKeyData for RawEd25519Public {
    fn der_bytes(&self) -> &[u8] {
        &self.0
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        &rcgen::PKCS_ED25519
    }
}

/// Stand-in for the threshold signer: rcgen calls `sign` synchronously with the TBS bytes. It
/// records those bytes and returns either a placeholder (pass 1) or the precomputed signature
/// (pass 2).
struct GroupKeySigner {
    group_key: [u8; 32],
    signature: Option<[u8; ED25519_SIG_LEN]>,
    seen: Cell<Option<Vec<u8>>>,
}

impl PublicKeyData for GroupKeySigner {
    fn der_bytes(&self) -> &[u8] {
        &self.group_key
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        &rcgen::PKCS_ED25519
    }
}

impl SigningKey for GroupKeySigner {
    fn sign(&self, msg: &[u8]) -> std::result::Result<Vec<u8>, rcgen::Error> {
        self.seen.set(Some(msg.to_vec()));
        Ok(self.signature.unwrap_or([0u8; ED25519_SIG_LEN]).to_vec())
    }
}

/// Runs rcgen with a [`GroupKeySigner`]; returns (TBS bytes rcgen asked to sign, certificate DER).
fn assemble(
    group_key: [u8; 32],
    signature: Option<[u8; ED25519_SIG_LEN]>,
    build: impl FnOnce(&GroupKeySigner) -> std::result::Result<rcgen::Certificate, rcgen::Error>,
) -> Result<(Vec<u8>, Vec<u8>)> {
    let signer = GroupKeySigner { group_key, signature, seen: Cell::new(None) };
    let cert = build(&signer)?;
    let tbs = signer.seen.take().ok_or_else(|| CaError::Build("rcgen did not request a signature".into()))?;
    Ok((tbs, cert.der().to_vec()))
}

/// Pass 2 common part: rebuild with the signature, require the identical TBS, verify the
/// signature under the group key, and cross-check the result by parsing it back.
fn finish(
    tbs: &[u8],
    group_key: [u8; 32],
    signature: &[u8; 64],
    build: impl FnOnce(&GroupKeySigner) -> std::result::Result<rcgen::Certificate, rcgen::Error>,
) -> Result<Vec<u8>> {
    let (tbs2, der) = assemble(group_key, Some(*signature), build)?;
    if tbs2 != tbs {
        return Err(CaError::TbsChanged);
    }
    let vk = group_verifying_key(&group_key)?;
    vk.verify_strict(tbs, &Signature::from_bytes(signature)).map_err(|_| CaError::BadSignature)?;

    let (rest, cert) = x509_parser::parse_x509_certificate(&der).map_err(|e| CaError::Parse(e.to_string()))?;
    if !rest.is_empty() {
        return Err(CaError::Parse("trailing bytes after certificate".into()));
    }
    if cert.tbs_certificate.as_ref() != tbs {
        return Err(CaError::TbsChanged);
    }
    if cert.signature_value.unused_bits != 0 || cert.signature_value.data.as_ref() != signature.as_slice() {
        return Err(CaError::Parse("signature field does not hold the given signature".into()));
    }
    Ok(der)
}

/// Decodes an Ed25519 key and refuses small-order (weak) points.
fn checked_key(key: &[u8; 32], which: &'static str, weak: &'static str) -> Result<VerifyingKey> {
    let vk = VerifyingKey::from_bytes(key).map_err(|_| CaError::BadKey(which))?;
    if vk.is_weak() {
        return Err(CaError::BadKey(weak));
    }
    Ok(vk)
}

fn group_verifying_key(key: &[u8; 32]) -> Result<VerifyingKey> {
    checked_key(key, "root group key is not a valid point", "root group key has small order")
}

fn root_cert_params(p: &RootCaParams) -> Result<CertificateParams> {
    group_verifying_key(&p.group_key)?;
    let (not_before, not_after) = validity(p.not_before, ROOT_CA_VALIDITY_YEARS)?;
    let mut cp = CertificateParams::default();
    cp.serial_number = Some(SerialNumber::from_slice(&root_ca_serial(&p.group_key)));
    cp.not_before = not_before;
    cp.not_after = not_after;
    cp.distinguished_name = subject(root_ca_common_name(&p.cluster_id));
    cp.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    cp.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    cp.key_identifier_method = KeyIdMethod::PreSpecified(key_identifier(&p.group_key).to_vec());
    cp.use_authority_key_identifier_extension = false;
    Ok(cp)
}

/// Returns (root params, used as issuer; namespace CA params).
fn namespace_cert_params(p: &NamespaceCaParams) -> Result<(CertificateParams, CertificateParams)> {
    validate_namespace(&p.namespace)?;
    checked_key(&p.public_key, "namespace CA key is not a valid point", "namespace CA key has small order")?;
    let root_cp = root_cert_params(&p.root)?;
    let (not_before, mut not_after) = validity(p.not_before, NAMESPACE_CA_VALIDITY_YEARS)?;
    if not_before < root_cp.not_before || not_before >= root_cp.not_after {
        return Err(CaError::Build("namespace CA not_before lies outside the root CA validity".into()));
    }
    // A CA must not outlive its issuer.
    not_after = not_after.min(root_cp.not_after);

    let mut cp = CertificateParams::default();
    let serial = namespace_ca_serial(&p.root.group_key, &p.namespace, p.version)?;
    cp.serial_number = Some(SerialNumber::from_slice(&serial));
    cp.not_before = not_before;
    cp.not_after = not_after;
    cp.distinguished_name = subject(namespace_ca_common_name(&p.namespace, p.version));
    cp.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    cp.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    cp.key_identifier_method = KeyIdMethod::PreSpecified(key_identifier(&p.public_key).to_vec());
    cp.use_authority_key_identifier_extension = true;
    Ok((root_cp, cp))
}

fn subject(common_name: String) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, ORGANIZATION);
    dn.push(DnType::CommonName, common_name);
    dn
}

/// (not_before, not_before + `years` calendar years); 29 February maps to 28 February.
fn validity(not_before: u64, years: i32) -> Result<(OffsetDateTime, OffsetDateTime)> {
    let out_of_range = || CaError::Build(format!("not_before {not_before} is out of the supported date range"));
    let secs = i64::try_from(not_before).map_err(|_| out_of_range())?;
    let start = OffsetDateTime::from_unix_timestamp(secs).map_err(|_| out_of_range())?;
    let year = start.year().checked_add(years).ok_or_else(out_of_range)?;
    let end = start
        .replace_year(year)
        .or_else(|_| start.replace_day(28).and_then(|d| d.replace_year(year)))
        .map_err(|_| out_of_range())?;
    Ok((start, end))
}

fn truncate_serial(digest: [u8; 32]) -> [u8; 16] {
    let mut serial = [0u8; 16];
    serial.copy_from_slice(digest.get(..16).unwrap_or(&[0u8; 16]));
    serial[0] &= 0x7f;
    serial
}

/// Zero-width and bidirectional formatting characters that render invisibly.
fn is_invisible_format(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{061C}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{206F}' | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFB}')
}

fn hex(bytes: &[u8]) -> String {
    use fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let sym = |v: u32| char::from(ALPHABET[(v & 63) as usize]);
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = |i: usize| u32::from(chunk.get(i).copied().unwrap_or(0));
        let n = (b(0) << 16) | (b(1) << 8) | b(2);
        out.push(sym(n >> 18));
        out.push(sym(n >> 12));
        out.push(if chunk.len() > 1 { sym(n >> 6) } else { '=' });
        out.push(if chunk.len() > 2 { sym(n) } else { '=' });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use frost_ed25519 as frost;
    use hkdf::Hkdf;
    use rand::rngs::OsRng;
    use std::collections::BTreeMap;
    use std::path::Path;
    use std::process::Command;
    use x509_parser::prelude::*;

    const OPENSSL: &str = "/usr/bin/openssl";

    /// A 3-of-5 FROST group from a trusted dealer; stands in for the cluster.
    struct Cluster {
        key_packages: BTreeMap<frost::Identifier, frost::keys::KeyPackage>,
        pubkeys: frost::keys::PublicKeyPackage,
    }

    impl Cluster {
        fn new() -> Self {
            let (shares, pubkeys) =
                frost::keys::generate_with_dealer(5, 3, frost::keys::IdentifierList::Default, OsRng).expect("dealer");
            let key_packages =
                shares.into_iter().map(|(id, s)| (id, frost::keys::KeyPackage::try_from(s).expect("share"))).collect();
            Cluster { key_packages, pubkeys }
        }

        fn group_key(&self) -> [u8; 32] {
            let v = self.pubkeys.verifying_key().serialize().expect("vk");
            v.try_into().expect("32 bytes")
        }

        /// Full FROST round with signers 2, 4, 5 (any 3 of 5 suffice).
        fn sign(&self, msg: &[u8]) -> [u8; 64] {
            let signers: Vec<frost::Identifier> =
                [2u16, 4, 5].iter().map(|&i| frost::Identifier::try_from(i).expect("id")).collect();
            let mut nonces = BTreeMap::new();
            let mut commitments = BTreeMap::new();
            for id in &signers {
                let (n, c) = frost::round1::commit(self.key_packages[id].signing_share(), &mut OsRng);
                nonces.insert(*id, n);
                commitments.insert(*id, c);
            }
            let package = frost::SigningPackage::new(commitments, msg);
            let mut shares = BTreeMap::new();
            for id in &signers {
                let share = frost::round2::sign(&package, &nonces[id], &self.key_packages[id]).expect("round2");
                shares.insert(*id, share);
            }
            let sig = frost::aggregate(&package, &shares, &self.pubkeys).expect("aggregate");
            sig.serialize().expect("sig").try_into().expect("64 bytes")
        }
    }

    fn now() -> u64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs()
    }

    const CLUSTER_ID: [u8; 16] = [0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];

    fn root_params(cluster: &Cluster) -> RootCaParams {
        RootCaParams { cluster_id: CLUSTER_ID, group_key: cluster.group_key(), not_before: now() - 86_400 }
    }

    fn ns_params(root: &RootCaParams, key: &NamespaceCaKey) -> NamespaceCaParams {
        NamespaceCaParams {
            root: root.clone(),
            namespace: "payments".into(),
            version: 3,
            public_key: key.public_key(),
            not_before: root.not_before + 60,
        }
    }

    fn sign_root(cluster: &Cluster, p: &RootCaParams) -> Vec<u8> {
        let tbs = root_ca_tbs(p).expect("root tbs");
        root_ca_cert(p, &cluster.sign(&tbs)).expect("root cert")
    }

    fn sign_ns(cluster: &Cluster, p: &NamespaceCaParams) -> Vec<u8> {
        let tbs = namespace_ca_tbs(p).expect("ns tbs");
        namespace_ca_cert(p, &cluster.sign(&tbs)).expect("ns cert")
    }

    /// A P-256 TLS leaf issued by the namespace CA, as an application would do it.
    fn issue_leaf(ns_der: &[u8], issuer_key: impl SigningKey) -> Vec<u8> {
        let leaf_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("leaf key");
        let mut lp = CertificateParams::new(vec!["svc.payments.guardian.test".to_string()]).expect("leaf params");
        lp.distinguished_name = DistinguishedName::new();
        lp.distinguished_name.push(DnType::CommonName, "svc.payments.guardian.test");
        lp.not_before = OffsetDateTime::from_unix_timestamp((now() - 3600) as i64).expect("t");
        lp.not_after = OffsetDateTime::from_unix_timestamp((now() + 30 * 86_400) as i64).expect("t");
        lp.is_ca = IsCa::ExplicitNoCa;
        lp.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        lp.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        lp.use_authority_key_identifier_extension = true;
        let issuer = Issuer::from_ca_cert_der(&ns_der.to_vec().into(), issuer_key).expect("issuer");
        lp.signed_by(&leaf_key, &issuer).expect("leaf").der().to_vec()
    }

    /// Writes the PEMs and runs `openssl verify -x509_strict`; returns (success, combined output).
    fn openssl_verify(dir: &Path, root: &[u8], ns: &[u8], leaf: &[u8]) -> (bool, String) {
        assert!(Path::new(OPENSSL).exists(), "{OPENSSL} is required for this test");
        let write = |name: &str, der: &[u8]| {
            let path = dir.join(name);
            std::fs::write(&path, to_pem(der, "CERTIFICATE")).expect("write pem");
            path
        };
        let (r, n, l) = (write("root.pem", root), write("ns.pem", ns), write("leaf.pem", leaf));
        let out = Command::new(OPENSSL)
            .arg("verify")
            .arg("-x509_strict")
            .arg("-CAfile")
            .arg(&r)
            .arg("-untrusted")
            .arg(&n)
            .arg(&l)
            .output()
            .expect("run openssl");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.success(), text)
    }

    #[test]
    fn frost_signed_chain_verifies_with_openssl() {
        let cluster = Cluster::new();
        let root = root_params(&cluster);
        let root_der = sign_root(&cluster, &root);
        let ns_key = namespace_ca_key(&[7u8; 32]).expect("ns key");
        let ns_der = sign_ns(&cluster, &ns_params(&root, &ns_key));
        let leaf_der = issue_leaf(&ns_der, &ns_key);

        let dir = tempfile::tempdir().expect("tempdir");
        let (ok, out) = openssl_verify(dir.path(), &root_der, &ns_der, &leaf_der);
        assert!(ok && out.contains("leaf.pem: OK"), "openssl output: {out}");
    }

    #[test]
    fn root_certificate_profile() {
        let cluster = Cluster::new();
        let p = root_params(&cluster);
        let der = sign_root(&cluster, &p);
        let (rest, cert) = parse_x509_certificate(&der).expect("parse");
        assert!(rest.is_empty());
        assert_eq!(cert.tbs_certificate.as_ref(), root_ca_tbs(&p).expect("tbs").as_slice());
        assert_eq!(cert.version(), X509Version::V3);
        let serial = root_ca_serial(&p.group_key);
        assert_eq!(serial[0] & 0x80, 0);
        let raw = cert.raw_serial();
        assert_eq!(raw, &serial[serial.iter().take_while(|b| **b == 0).count()..]);
        assert_eq!(cert.subject(), cert.issuer());
        assert_eq!(cert.subject().to_string(), "O=Guardian, CN=Guardian Root CA deadbeef");
        assert_eq!(cert.public_key().subject_public_key.data.as_ref(), p.group_key.as_slice());
        assert_eq!(cert.signature_algorithm.algorithm.to_id_string(), "1.3.101.112");
        let v = cert.validity();
        assert_eq!(v.not_before.timestamp() as u64, p.not_before);
        let (nb, na) = (v.not_before.to_datetime(), v.not_after.to_datetime());
        assert_eq!((na.year() - nb.year(), na.month(), na.day(), na.time()), (20, nb.month(), nb.day(), nb.time()));

        let bc = cert.basic_constraints().expect("bc").expect("bc present");
        assert!(bc.critical && bc.value.ca && bc.value.path_len_constraint.is_none());
        let ku = cert.key_usage().expect("ku").expect("ku present");
        assert!(ku.critical && ku.value.key_cert_sign() && ku.value.crl_sign() && !ku.value.digital_signature());
        let ski = cert
            .extensions()
            .iter()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
                _ => None,
            })
            .expect("ski");
        assert_eq!(ski, key_identifier(&p.group_key));
    }

    #[test]
    fn namespace_certificate_profile() {
        let cluster = Cluster::new();
        let root = root_params(&cluster);
        let root_der = sign_root(&cluster, &root);
        let ns_key = namespace_ca_key(&[9u8; 32]).expect("ns key");
        let p = ns_params(&root, &ns_key);
        let der = sign_ns(&cluster, &p);
        let (_, root_cert) = parse_x509_certificate(&root_der).expect("parse root");
        let (_, cert) = parse_x509_certificate(&der).expect("parse ns");

        assert_eq!(cert.issuer(), root_cert.subject());
        assert_eq!(cert.subject().to_string(), "O=Guardian, CN=Guardian namespace payments CA v3");
        let serial = namespace_ca_serial(&root.group_key, "payments", 3).expect("serial");
        assert_eq!(cert.raw_serial(), &serial[serial.iter().take_while(|b| **b == 0).count()..]);
        assert_ne!(Some(serial), namespace_ca_serial(&root.group_key, "payments", 4).ok());
        assert_eq!(cert.public_key().subject_public_key.data.as_ref(), ns_key.public_key().as_slice());
        let (nb, na) = (cert.validity().not_before.to_datetime(), cert.validity().not_after.to_datetime());
        assert_eq!(nb.unix_timestamp() as u64, p.not_before);
        assert_eq!(na.year() - nb.year(), 5);

        let bc = cert.basic_constraints().expect("bc").expect("bc present");
        assert!(bc.critical && bc.value.ca && bc.value.path_len_constraint == Some(0));
        let ku = cert.key_usage().expect("ku").expect("ku present");
        assert!(ku.critical && ku.value.key_cert_sign() && ku.value.crl_sign() && ku.value.digital_signature());
        let mut aki = None;
        let mut ski = None;
        for e in cert.extensions() {
            match e.parsed_extension() {
                ParsedExtension::AuthorityKeyIdentifier(a) => aki = a.key_identifier.as_ref().map(|k| k.0.to_vec()),
                ParsedExtension::SubjectKeyIdentifier(k) => ski = Some(k.0.to_vec()),
                _ => {}
            }
        }
        assert_eq!(aki.expect("aki"), key_identifier(&root.group_key));
        assert_eq!(ski.expect("ski"), key_identifier(&ns_key.public_key()));
    }

    #[test]
    fn namespace_validity_is_clipped_and_bounded_by_root() {
        let cluster = Cluster::new();
        let root = root_params(&cluster);
        let ns_key = namespace_ca_key(&[1u8; 32]).expect("ns key");
        let mut p = ns_params(&root, &ns_key);
        p.not_before = root.not_before + 18 * 365 * 86_400; // 5 years would pass the root's end
        let der = sign_ns(&cluster, &p);
        let (_, cert) = parse_x509_certificate(&der).expect("parse");
        let root_der = sign_root(&cluster, &root);
        let (_, root_cert) = parse_x509_certificate(&root_der).expect("parse");
        assert_eq!(cert.validity().not_after, root_cert.validity().not_after);

        p.not_before = root.not_before - 1;
        assert!(matches!(namespace_ca_tbs(&p), Err(CaError::Build(_))));
        p.not_before = root.not_before + 21 * 365 * 86_400;
        assert!(matches!(namespace_ca_tbs(&p), Err(CaError::Build(_))));
    }

    #[test]
    fn wrong_signature_is_refused() {
        let cluster = Cluster::new();
        let p = root_params(&cluster);
        let tbs = root_ca_tbs(&p).expect("tbs");
        // A genuine group signature, but over other bytes.
        let other = cluster.sign(b"not the tbs");
        assert!(matches!(root_ca_cert(&p, &other), Err(CaError::BadSignature)));
        // A signature by another group over the right bytes.
        let stranger = Cluster::new();
        assert!(matches!(root_ca_cert(&p, &stranger.sign(&tbs)), Err(CaError::BadSignature)));
        // Garbage, and a flipped bit of a valid signature.
        assert!(matches!(root_ca_cert(&p, &[0x55; 64]), Err(CaError::BadSignature)));
        let mut sig = cluster.sign(&tbs);
        sig[10] ^= 1;
        assert!(matches!(root_ca_cert(&p, &sig), Err(CaError::BadSignature)));

        let ns_key = namespace_ca_key(&[2u8; 32]).expect("ns key");
        let np = ns_params(&p, &ns_key);
        let ns_tbs = namespace_ca_tbs(&np).expect("tbs");
        assert!(matches!(namespace_ca_cert(&np, &stranger.sign(&ns_tbs)), Err(CaError::BadSignature)));
        // The root's TBS signature does not fit the namespace TBS.
        assert!(matches!(namespace_ca_cert(&np, &cluster.sign(&tbs)), Err(CaError::BadSignature)));
    }

    #[test]
    fn pass_two_detects_changed_tbs() {
        let cluster = Cluster::new();
        let p = root_params(&cluster);
        let tbs = root_ca_tbs(&p).expect("tbs");
        let sig = cluster.sign(&tbs);
        let mut later = p.clone();
        later.not_before += 1;
        let cp = root_cert_params(&later).expect("params");
        let res = finish(&tbs, p.group_key, &sig, |signer| cp.self_signed(signer));
        assert!(matches!(res, Err(CaError::TbsChanged)));
    }

    #[test]
    fn openssl_refuses_namespace_ca_of_another_group() {
        let cluster = Cluster::new();
        let stranger = Cluster::new();
        let root = root_params(&cluster);
        let root_der = sign_root(&cluster, &root);
        let ns_key = namespace_ca_key(&[3u8; 32]).expect("ns key");
        let dir = tempfile::tempdir().expect("tempdir");

        // (a) A well-formed chain under the other group's root (same cluster id, so same root DN).
        let other_root = RootCaParams { group_key: stranger.group_key(), ..root.clone() };
        let ns_der = sign_ns(&stranger, &ns_params(&other_root, &ns_key));
        let leaf = issue_leaf(&ns_der, &ns_key);
        let (ok, out) = openssl_verify(dir.path(), &root_der, &ns_der, &leaf);
        assert!(!ok && !out.contains("leaf.pem: OK"), "openssl accepted: {out}");

        // (b) A forgery naming our root as issuer (DN and AKI) but signed by the other group: our
        // pass 2 refuses it, and when assembled anyway openssl refuses the signature.
        let np = ns_params(&root, &ns_key);
        let tbs = namespace_ca_tbs(&np).expect("tbs");
        let forged_sig = stranger.sign(&tbs);
        assert!(matches!(namespace_ca_cert(&np, &forged_sig), Err(CaError::BadSignature)));
        let (root_cp, ns_cp) = namespace_cert_params(&np).expect("params");
        let subject = RawEd25519Public(np.public_key);
        let (tbs2, forged) = assemble(root.group_key, Some(forged_sig), |s| {
            ns_cp.signed_by(&subject, &Issuer::from_params(&root_cp, s))
        })
        .expect("assemble");
        assert_eq!(tbs2, tbs);
        let leaf = issue_leaf(&forged, &ns_key);
        let (ok, out) = openssl_verify(dir.path(), &root_der, &forged, &leaf);
        assert!(!ok && out.contains("signature failure"), "openssl output: {out}");
    }

    #[test]
    fn tbs_is_deterministic() {
        let cluster = Cluster::new();
        let p = root_params(&cluster);
        let a = root_ca_tbs(&p).expect("tbs");
        assert_eq!(a, root_ca_tbs(&p).expect("tbs"));
        assert_eq!(a, root_ca_tbs(&p.clone()).expect("tbs"));
        let later = RootCaParams { not_before: p.not_before + 1, ..p.clone() };
        assert_ne!(a, root_ca_tbs(&later).expect("tbs"));
        let other_cluster = RootCaParams { cluster_id: [0; 16], ..p.clone() };
        assert_ne!(a, root_ca_tbs(&other_cluster).expect("tbs"));

        let ns_key = namespace_ca_key(&[4u8; 32]).expect("ns key");
        let np = ns_params(&p, &ns_key);
        assert_eq!(namespace_ca_tbs(&np).expect("tbs"), namespace_ca_tbs(&np).expect("tbs"));
        let np2 = NamespaceCaParams { version: 4, ..np.clone() };
        assert_ne!(namespace_ca_tbs(&np).expect("tbs"), namespace_ca_tbs(&np2).expect("tbs"));
    }

    #[test]
    fn namespace_key_derivation() {
        let a = namespace_ca_key(&[5u8; 32]).expect("key");
        let a2 = namespace_ca_key(&[5u8; 32]).expect("key");
        let b = namespace_ca_key(&[6u8; 32]).expect("key");
        assert_eq!(a.public_key(), a2.public_key());
        assert_ne!(a.public_key(), b.public_key());

        // Matches an independent HKDF → Ed25519 computation.
        let mut seed = [0u8; 32];
        Hkdf::<Sha256>::new(Some(b"guardian/ns-ca-key/v1"), &[5u8; 32])
            .expand(b"ed25519 seed", &mut seed)
            .expect("hkdf");
        let expected = ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key().to_bytes();
        assert_eq!(a.public_key(), expected);

        // Signs verifiably, and Debug does not leak the seed.
        let sig = SigningKey::sign(&a, b"msg").expect("sign");
        let sig: [u8; 64] = sig.try_into().expect("64 bytes");
        let vk = VerifyingKey::from_bytes(&a.public_key()).expect("vk");
        assert!(vk.verify_strict(b"msg", &Signature::from_bytes(&sig)).is_ok());
        let dbg = format!("{a:?}");
        assert!(dbg.contains("redacted") && dbg.contains(&hex(&a.public_key())) && !dbg.contains(&hex(&seed)));
    }

    #[test]
    fn bad_namespaces_are_refused() {
        let ns_key = namespace_ca_key(&[8u8; 32]).expect("key");
        let root = RootCaParams {
            cluster_id: CLUSTER_ID,
            group_key: ns_key.public_key(), // any valid point will do for pass 1
            not_before: 1_700_000_000,
        };
        let bad = [
            "",
            "a\nb",
            "tab\there",
            "del\u{7f}",
            "c1\u{85}",
            "rtl\u{202e}gpj",
            "zero\u{200b}width",
            " lead",
            "trail ",
            &"x".repeat(65),
            &"é".repeat(33), // 66 bytes
        ];
        for ns in bad {
            let p = NamespaceCaParams {
                root: root.clone(),
                namespace: ns.to_string(),
                version: 1,
                public_key: ns_key.public_key(),
                not_before: root.not_before,
            };
            assert!(matches!(namespace_ca_tbs(&p), Err(CaError::InvalidNamespace(_))), "accepted {ns:?}");
        }
        for ns in ["payments", "team-a/prod", "名前空間", &"x".repeat(64)] {
            assert!(validate_namespace(ns).is_ok(), "refused {ns:?}");
        }
    }

    #[test]
    fn bad_keys_and_dates_are_refused() {
        let cluster = Cluster::new();
        let mut p = root_params(&cluster);
        // Identity point (small order) and a non-canonical y that does not decode.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        p.group_key = identity;
        assert!(matches!(root_ca_tbs(&p), Err(CaError::BadKey(_))));
        // About half of all y coordinates are not on the curve; every one must be refused.
        let mut undecodable = 0;
        for b in 2u8..=255 {
            let mut k = [0u8; 32];
            k[0] = b;
            if VerifyingKey::from_bytes(&k).is_err() {
                undecodable += 1;
                let q = RootCaParams { group_key: k, ..p.clone() };
                assert!(matches!(root_ca_tbs(&q), Err(CaError::BadKey(_))));
            }
        }
        assert!(undecodable > 0);

        let p = RootCaParams { not_before: u64::MAX, ..root_params(&cluster) };
        assert!(matches!(root_ca_tbs(&p), Err(CaError::Build(_))));
        // Year 9990 + 20 exceeds what X.509 GeneralizedTime (and `time`) can express.
        let p = RootCaParams { not_before: 253_086_000_000, ..root_params(&cluster) };
        assert!(matches!(root_ca_tbs(&p), Err(CaError::Build(_))));

        let ns_key = namespace_ca_key(&[1u8; 32]).expect("key");
        let mut np = ns_params(&root_params(&cluster), &ns_key);
        np.public_key = identity;
        assert!(matches!(namespace_ca_tbs(&np), Err(CaError::BadKey(_))));
    }

    #[test]
    fn leap_day_validity() {
        // 2024-02-29T12:00:00Z → 2044-02-29 (leap) and, for a namespace CA, 2029-02-28.
        let (s, e) = validity(1_709_208_000, 20).expect("validity");
        assert_eq!((s.year(), s.month() as u8, s.day()), (2024, 2, 29));
        assert_eq!((e.year(), e.month() as u8, e.day()), (2044, 2, 29));
        let (_, e) = validity(1_709_208_000, 5).expect("validity");
        assert_eq!((e.year(), e.month() as u8, e.day()), (2029, 2, 28));
    }

    #[test]
    fn pem_roundtrip() {
        for len in [0usize, 1, 2, 3, 47, 48, 49, 100, 1000] {
            let data: Vec<u8> = (0..len).map(|i| (i * 31 + 7) as u8).collect();
            let pem = to_pem(&data, "CERTIFICATE");
            assert!(pem.lines().all(|l| l.len() <= 64));
            if len > 0 {
                let (_, parsed) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).expect("pem");
                assert_eq!(parsed.label, "CERTIFICATE");
                assert_eq!(parsed.contents, data);
            }
        }
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64(b"fooba"), "Zm9vYmE=");
        assert_eq!(base64(b"foob"), "Zm9vYg==");
    }
}
