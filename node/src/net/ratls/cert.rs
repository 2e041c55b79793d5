//! Node keys, the evidence extension, and RA-TLS certificate issuance.
//!
//! A node certificate is self-signed by the node's ECDSA P-256 key and has:
//! - subject CN `guardian-node-<id>`;
//! - one SAN URI `guardian://<cluster-id hex>/node/<id>`;
//! - validity `[now - 60 s, now + lifetime]`;
//! - key usage digitalSignature, extended key usages serverAuth and clientAuth;
//! - the non-critical evidence extension [`EVIDENCE_OID`], whose extnValue is
//!   a DER OCTET STRING holding an [`EvidenceExtension`] encoding.
//!
//! # Evidence extension encoding (version 1)
//!
//! ```text
//! u8 version = 1
//! then records, in increasing tag order, each at most once:
//!   u8 tag, u32 length (big endian), value
//!   tag 1: TEE kind, 1 byte: 1 = tdx, 2 = az-tdx-vtpm, 3 = sim   (required)
//!   tag 2: evidence bytes, non-empty                             (required)
//!   tag 3: TDX event log (CCEL binary or dstack JSON)            (optional)
//! ```
//! Unknown tags, duplicates, trailing bytes and encodings over
//! [`MAX_EVIDENCE_EXTENSION`] bytes are refused; a new field means a new version.
//!
//! # Why the certificate is patched after rcgen signs it
//!
//! The OID is a `2.25.<UUID>` arc (ITU-T X.667), whose last arc is 128 bits;
//! rcgen only writes OID arcs that fit a `u64`. So rcgen builds the certificate
//! with a placeholder OID of the same encoded length, and [`build_certificate`]
//! swaps the OID bytes in the TBSCertificate and signs it again with the node key.

use rcgen::{
    string::Ia5String, CertificateParams, CustomExtension, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, PublicKeyData, SanType, SerialNumber, SigningKey,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use zeroize::Zeroizing;

use crate::attest::sim::SimTee;
use crate::attest::TeeKind;
use crate::state::{NodeId, NodeIdentity};

/// OID of the Guardian evidence extension: `2.25.<UUID 9933b99d-d52a-498f-9d3a-ba71eb1e219f>`.
pub const EVIDENCE_OID: &str = "2.25.203640455245447024420204506862896161183";
/// The UUID whose integer value is the last arc of [`EVIDENCE_OID`].
pub const EVIDENCE_OID_UUID: u128 = 0x9933b99d_d52a_498f_9d3a_ba71eb1e219f;
/// Largest evidence extension payload accepted or produced (60 KiB). rustls
/// refuses handshake messages over 64 KiB - 1, and the certificate has to fit
/// in one with the rest of its fields.
pub const MAX_EVIDENCE_EXTENSION: usize = 60 * 1024;
/// Default certificate lifetime: 24 hours.
pub const DEFAULT_LIFETIME: u64 = 24 * 3600;
/// How far before `now` a certificate's validity starts, for clock skew.
pub const BACKDATE: u64 = 60;

const EXTENSION_VERSION: u8 = 1;
const TAG_KIND: u8 = 1;
const TAG_EVIDENCE: u8 = 2;
const TAG_EVENT_LOG: u8 = 3;

/// Placeholder arcs rcgen writes in place of the UUID arc (same encoded length).
const PLACEHOLDER_ARCS: [u64; 4] =
    [2, 25, 0x8000_0000_0000_0000 | u64::from_be_bytes(*b"GUARDIAN"), u64::from_be_bytes(*b"PLACEHLD")];

/// Why a certificate could not be issued or a key loaded.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("node key: {0}")]
    Key(String),
    #[error("the evidence source failed: {0}")]
    Evidence(String),
    #[error("evidence extension too large: {0} bytes (at most {MAX_EVIDENCE_EXTENSION})")]
    TooLarge(usize),
    #[error("invalid certificate parameters: {0}")]
    Params(String),
    #[error("certificate generation failed: {0}")]
    Generate(String),
}

/// Where a node's evidence comes from: the TEE, asked to bind `report_data`.
pub trait EvidenceSource: Send + Sync {
    /// Evidence whose report_data (or vTPM nonce) is exactly `report_data`.
    fn evidence(&self, report_data: &[u8; 64]) -> Result<(TeeKind, Vec<u8>), String>;

    /// The TDX event log to ship with the evidence, if the policy needs one.
    fn event_log(&self) -> Option<Vec<u8>> {
        None
    }
}

/// The simulated TEE. INSECURE: for development and tests only.
impl EvidenceSource for SimTee {
    fn evidence(&self, report_data: &[u8; 64]) -> Result<(TeeKind, Vec<u8>), String> {
        Ok((TeeKind::Sim, SimTee::evidence(self, report_data)))
    }
}

/// A node's RA-TLS key (ECDSA P-256). Its identity survives restarts if the
/// caller persists [`NodeKey::pkcs8_der`] (sealed) and reloads it.
pub struct NodeKey {
    key: KeyPair,
}

impl std::fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeKey").field("identity", &self.identity()).finish_non_exhaustive()
    }
}

impl NodeKey {
    /// A fresh P-256 key.
    pub fn generate() -> Result<Self, CertError> {
        KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map(|key| NodeKey { key })
            .map_err(|e| CertError::Key(e.to_string()))
    }

    /// Load a P-256 key from PKCS#8 DER (as written by [`NodeKey::pkcs8_der`]).
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, CertError> {
        let der = PrivatePkcs8KeyDer::from(der);
        KeyPair::from_pkcs8_der_and_sign_algo(&der, &rcgen::PKCS_ECDSA_P256_SHA256)
            .map(|key| NodeKey { key })
            .map_err(|e| CertError::Key(format!("not a PKCS#8 ECDSA P-256 key: {e}")))
    }

    /// The private key as PKCS#8 DER, for sealed storage.
    pub fn pkcs8_der(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(self.key.serialize_der())
    }

    /// SubjectPublicKeyInfo DER of the public key.
    pub fn spki_der(&self) -> Vec<u8> {
        self.key.subject_public_key_info()
    }

    /// An ECDSA P-256 / SHA-256 signature (ASN.1 DER) over `message`: how a
    /// node signs its key-ceremony messages (`threshold::envelope`).
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, CertError> {
        rcgen::SigningKey::sign(&self.key, message).map_err(|e| CertError::Key(e.to_string()))
    }

    /// SHA-256 of the SPKI DER.
    pub fn identity(&self) -> NodeIdentity {
        super::identity_of(&self.spki_der())
    }
}

/// What to put in a node certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CertRequest {
    pub cluster_id: [u8; 16],
    pub node_id: NodeId,
    /// Current time (unix seconds); the certificate is valid from `now - 60`.
    pub now: u64,
    /// Seconds from `now` until the certificate expires (e.g. [`DEFAULT_LIFETIME`]).
    pub lifetime: u64,
}

/// A node's RA-TLS certificate and key, with what the certificate says.
pub struct Credentials {
    pub cert: CertificateDer<'static>,
    pub key: PrivateKeyDer<'static>,
    pub cluster_id: [u8; 16],
    pub node_id: NodeId,
    pub identity: NodeIdentity,
    pub not_before: u64,
    pub not_after: u64,
}

impl Clone for Credentials {
    fn clone(&self) -> Self {
        Credentials {
            cert: self.cert.clone(),
            key: self.key.clone_key(),
            cluster_id: self.cluster_id,
            node_id: self.node_id,
            identity: self.identity,
            not_before: self.not_before,
            not_after: self.not_after,
        }
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("cluster_id", &hex::encode(self.cluster_id))
            .field("node_id", &self.node_id)
            .field("identity", &self.identity)
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// True when less than a third of the certificate's lifetime is left (or
    /// it has expired): time to issue a new one with fresh evidence.
    pub fn needs_renewal(&self, now: u64) -> bool {
        let lifetime = u128::from(self.not_after.saturating_sub(self.not_before));
        u128::from(self.not_after.saturating_sub(now)) * 3 < lifetime
    }
}

/// The decoded content of the evidence extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvidenceExtension {
    pub kind: TeeKind,
    pub evidence: Vec<u8>,
    pub event_log: Option<Vec<u8>>,
}

fn kind_code(kind: TeeKind) -> u8 {
    match kind {
        TeeKind::Tdx => 1,
        TeeKind::AzTdxVtpm => 2,
        TeeKind::Sim => 3,
    }
}

impl EvidenceExtension {
    /// The versioned payload (without the OCTET STRING wrapper).
    pub fn encode(&self) -> Result<Vec<u8>, CertError> {
        let mut out = vec![EXTENSION_VERSION];
        let mut record = |tag: u8, value: &[u8]| -> Result<(), CertError> {
            let len = u32::try_from(value.len()).map_err(|_| CertError::TooLarge(value.len()))?;
            out.push(tag);
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(value);
            Ok(())
        };
        record(TAG_KIND, &[kind_code(self.kind)])?;
        if self.evidence.is_empty() {
            return Err(CertError::Evidence("the evidence source returned no evidence".into()));
        }
        record(TAG_EVIDENCE, &self.evidence)?;
        if let Some(log) = &self.event_log {
            record(TAG_EVENT_LOG, log)?;
        }
        if out.len() > MAX_EVIDENCE_EXTENSION {
            return Err(CertError::TooLarge(out.len()));
        }
        Ok(out)
    }

    /// Decode a payload. Never panics; every malformation is an error message.
    pub fn decode(payload: &[u8]) -> Result<Self, String> {
        if payload.len() > MAX_EVIDENCE_EXTENSION {
            return Err(format!("{} bytes, at most {MAX_EVIDENCE_EXTENSION} are accepted", payload.len()));
        }
        let (&version, mut rest) = payload.split_first().ok_or("empty")?;
        if version != EXTENSION_VERSION {
            return Err(format!("version {version} is not supported (expected {EXTENSION_VERSION})"));
        }
        let (mut kind, mut evidence, mut event_log) = (None, None, None);
        let mut last_tag = 0u8;
        while !rest.is_empty() {
            let (&tag, r) = rest.split_first().ok_or("truncated record")?;
            let (len, r) = r.split_first_chunk::<4>().ok_or("truncated record length")?;
            let len = usize::try_from(u32::from_be_bytes(*len)).map_err(|_| "record length overflows")?;
            if r.len() < len {
                return Err(format!("record {tag} claims {len} bytes, {} remain", r.len()));
            }
            let (value, r) = r.split_at(len);
            rest = r;
            if tag <= last_tag {
                return Err(format!("record {tag} is out of order or repeated"));
            }
            last_tag = tag;
            match tag {
                TAG_KIND => {
                    kind = Some(match value {
                        [1] => TeeKind::Tdx,
                        [2] => TeeKind::AzTdxVtpm,
                        [3] => TeeKind::Sim,
                        _ => return Err(format!("unknown TEE kind code {}", hex::encode(value))),
                    })
                }
                TAG_EVIDENCE => evidence = Some(value.to_vec()),
                TAG_EVENT_LOG => event_log = Some(value.to_vec()),
                _ => return Err(format!("unknown record tag {tag}")),
            }
        }
        let kind = kind.ok_or("no TEE kind")?;
        let evidence = evidence.filter(|e| !e.is_empty()).ok_or("no evidence")?;
        Ok(EvidenceExtension { kind, evidence, event_log })
    }

    /// The extension's extnValue: a DER OCTET STRING holding [`Self::encode`].
    pub fn to_extension_value(&self) -> Result<Vec<u8>, CertError> {
        Ok(der::tlv(der::OCTET_STRING, &self.encode()?))
    }

    /// Decode an extnValue (DER OCTET STRING holding the payload).
    pub fn from_extension_value(value: &[u8]) -> Result<Self, String> {
        let tlv = der::read(value).ok_or("not DER")?;
        if tlv.tag != der::OCTET_STRING || !tlv.rest.is_empty() {
            return Err("not a single DER OCTET STRING".into());
        }
        Self::decode(tlv.content)
    }
}

/// Issue a node certificate: compute the binding, ask `source` for evidence
/// over it, and build the certificate carrying that evidence.
pub fn issue(key: &NodeKey, req: &CertRequest, source: &dyn EvidenceSource) -> Result<Credentials, CertError> {
    let not_before = req.now.saturating_sub(BACKDATE);
    let not_after = req.now.checked_add(req.lifetime).ok_or_else(|| CertError::Params("lifetime overflows".into()))?;
    if req.lifetime == 0 {
        return Err(CertError::Params("lifetime must be positive".into()));
    }
    let spki = key.spki_der();
    let binding = super::report_data(&req.cluster_id, &spki, not_before, not_after);
    let (kind, evidence) = source.evidence(&binding).map_err(CertError::Evidence)?;
    let ext = EvidenceExtension { kind, evidence, event_log: source.event_log() };
    let value = ext.to_extension_value()?;
    let cert = build_certificate(key, &req.cluster_id, req.node_id, not_before, not_after, Some(&value))?;
    Ok(Credentials {
        cert,
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.pkcs8_der().to_vec())),
        cluster_id: req.cluster_id,
        node_id: req.node_id,
        identity: key.identity(),
        not_before,
        not_after,
    })
}

/// The SAN URI naming a node.
pub fn node_uri(cluster_id: &[u8; 16], node_id: NodeId) -> String {
    format!("guardian://{}/node/{node_id}", hex::encode(cluster_id))
}

/// Build and sign a node certificate with an arbitrary evidence extnValue
/// (or none). [`issue`] is the normal entry point; this one also serves tests
/// that need certificates with wrong or missing evidence.
pub fn build_certificate(
    key: &NodeKey,
    cluster_id: &[u8; 16],
    node_id: NodeId,
    not_before: u64,
    not_after: u64,
    extension_value: Option<&[u8]>,
) -> Result<CertificateDer<'static>, CertError> {
    let time = |t: u64| {
        i64::try_from(t)
            .ok()
            .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
            .ok_or_else(|| CertError::Params(format!("time {t} is out of range")))
    };
    if not_after <= not_before {
        return Err(CertError::Params("not_after must be after not_before".into()));
    }
    let mut params = CertificateParams::default();
    params.not_before = time(not_before)?;
    params.not_after = time(not_after)?;
    let mut serial = [0u8; 16];
    rand::Rng::fill(&mut rand::thread_rng(), &mut serial);
    serial[0] &= 0x7f;
    serial[0] |= 0x01;
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("guardian-node-{node_id}"));
    params.distinguished_name = dn;
    let uri = Ia5String::try_from(node_uri(cluster_id, node_id)).map_err(|e| CertError::Params(e.to_string()))?;
    params.subject_alt_names = vec![SanType::URI(uri)];
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    if let Some(value) = extension_value {
        if value.len() > MAX_EVIDENCE_EXTENSION + 8 {
            return Err(CertError::TooLarge(value.len()));
        }
        params.custom_extensions = vec![CustomExtension::from_oid_content(&PLACEHOLDER_ARCS, value.to_vec())];
    }
    let cert = params.self_signed(&key.key).map_err(|e| CertError::Generate(e.to_string()))?;
    let der = cert.der().to_vec();
    let der = if extension_value.is_some() { patch_oid(&der, &key.key)? } else { der };
    Ok(CertificateDer::from(der))
}

/// Swap the placeholder OID for [`EVIDENCE_OID`] in the TBSCertificate and re-sign.
fn patch_oid(cert: &[u8], key: &KeyPair) -> Result<Vec<u8>, CertError> {
    let bad = |what: &str| CertError::Generate(format!("patching the evidence OID: {what}"));
    let placeholder = der::tlv(der::OID, &der::oid_content(&PLACEHOLDER_ARCS.map(u128::from)));
    let real = evidence_oid_der();
    if placeholder.len() != real.len() {
        return Err(bad("placeholder and real OID differ in length"));
    }
    let outer = der::read(cert).ok_or_else(|| bad("certificate is not DER"))?;
    if outer.tag != der::SEQUENCE || !outer.rest.is_empty() {
        return Err(bad("certificate is not one SEQUENCE"));
    }
    let tbs = der::read(outer.content).ok_or_else(|| bad("no TBSCertificate"))?;
    let sig_alg = der::read(tbs.rest).ok_or_else(|| bad("no signature algorithm"))?.whole;
    let tbs = tbs.whole;
    let hits: Vec<usize> =
        tbs.windows(placeholder.len()).enumerate().filter(|(_, w)| *w == placeholder).map(|(i, _)| i).collect();
    let [at] = hits[..] else {
        return Err(bad(&format!("placeholder found {} times", hits.len())));
    };
    let mut tbs = tbs.to_vec();
    tbs[at..at + real.len()].copy_from_slice(&real);
    let signature = key.sign(&tbs).map_err(|e| CertError::Generate(e.to_string()))?;
    let mut bits = vec![0u8];
    bits.extend_from_slice(&signature);
    let mut body = tbs;
    body.extend_from_slice(sig_alg);
    body.extend_from_slice(&der::tlv(der::BIT_STRING, &bits));
    Ok(der::tlv(der::SEQUENCE, &body))
}

/// Full DER (tag, length, content) of [`EVIDENCE_OID`].
pub fn evidence_oid_der() -> Vec<u8> {
    der::tlv(der::OID, &der::oid_content(&[2, 25, EVIDENCE_OID_UUID]))
}

/// The OID's content octets, as x509-parser exposes them (`Oid::as_bytes`).
pub(crate) fn evidence_oid_content() -> Vec<u8> {
    der::oid_content(&[2, 25, EVIDENCE_OID_UUID])
}

/// Just enough DER for the extension wrapper and the certificate re-assembly.
pub(crate) mod der {
    pub const OCTET_STRING: u8 = 0x04;
    pub const BIT_STRING: u8 = 0x03;
    pub const OID: u8 = 0x06;
    pub const SEQUENCE: u8 = 0x30;

    pub fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        let len = content.len();
        if len < 0x80 {
            out.push(len as u8);
        } else {
            let bytes = len.to_be_bytes();
            let skip = bytes.iter().take_while(|b| **b == 0).count();
            out.push(0x80 | (bytes.len() - skip) as u8);
            out.extend_from_slice(&bytes[skip..]);
        }
        out.extend_from_slice(content);
        out
    }

    /// One TLV read from the front of a buffer.
    pub struct Tlv<'a> {
        pub tag: u8,
        /// Tag, length and content.
        pub whole: &'a [u8],
        pub content: &'a [u8],
        /// What follows the TLV.
        pub rest: &'a [u8],
    }

    /// Read one TLV (single-byte tag, definite length up to 4 bytes).
    pub fn read(input: &[u8]) -> Option<Tlv<'_>> {
        let (&tag, r) = input.split_first()?;
        let (&first, mut r) = r.split_first()?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 || r.len() < n {
                return None;
            }
            let (bytes, rest) = r.split_at(n);
            r = rest;
            bytes.iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b))
        };
        if r.len() < len {
            return None;
        }
        let header = input.len() - r.len();
        let (content, rest) = r.split_at(len);
        Some(Tlv { tag, whole: &input[..header + len], content, rest })
    }

    /// OID content octets (at least two arcs; the first two combine as `40 * a + b`).
    pub fn oid_content(arcs: &[u128]) -> Vec<u8> {
        let (first, second) = (arcs.first().copied().unwrap_or(0), arcs.get(1).copied().unwrap_or(0));
        let mut out = Vec::new();
        for arc in std::iter::once(first * 40 + second).chain(arcs.iter().skip(2).copied()) {
            let mut groups = vec![(arc & 0x7f) as u8];
            let mut v = arc >> 7;
            while v > 0 {
                groups.push((v & 0x7f) as u8 | 0x80);
                v >>= 7;
            }
            out.extend(groups.iter().rev());
        }
        out
    }
}

#[cfg(test)]
mod unit {
    use super::*;
    use crate::attest::sim::SimMeasurements;

    #[test]
    fn oid_constants_agree() {
        let uuid = u128::from_str_radix("9933b99dd52a498f9d3aba71eb1e219f", 16).unwrap();
        assert_eq!(uuid, EVIDENCE_OID_UUID);
        assert_eq!(EVIDENCE_OID, format!("2.25.{EVIDENCE_OID_UUID}"));
        let placeholder = der::oid_content(&PLACEHOLDER_ARCS.map(u128::from));
        assert_eq!(placeholder.len(), evidence_oid_content().len());
    }

    #[test]
    fn issued_certificate_parses_with_the_real_oid() {
        let key = NodeKey::generate().unwrap();
        let tee = SimTee::new(&[3; 32], SimMeasurements::from_label("guardian"));
        let req = CertRequest { cluster_id: [5; 16], node_id: 7, now: 1_800_000_000, lifetime: DEFAULT_LIFETIME };
        let creds = issue(&key, &req, &tee).unwrap();
        let (rest, cert) = x509_parser::parse_x509_certificate(&creds.cert).unwrap();
        assert!(rest.is_empty());
        let ext = cert.extensions().iter().find(|e| e.oid.as_bytes() == evidence_oid_content()).unwrap();
        // x509-parser prints arcs over 64 bits as hex; decode the arcs here.
        let (mut arcs, mut acc) = (Vec::new(), 0u128);
        for b in ext.oid.as_bytes() {
            acc = (acc << 7) | u128::from(b & 0x7f);
            if b & 0x80 == 0 {
                arcs.push(acc);
                acc = 0;
            }
        }
        let dotted =
            format!("2.{}.{}", arcs[0] - 80, arcs[1..].iter().map(u128::to_string).collect::<Vec<_>>().join("."));
        assert_eq!(dotted, EVIDENCE_OID);
        assert!(!ext.critical);
        let decoded = EvidenceExtension::from_extension_value(ext.value).unwrap();
        assert_eq!(decoded.kind, TeeKind::Sim);
        assert_eq!(cert.validity().not_before.timestamp(), 1_800_000_000 - 60);
        assert_eq!(cert.validity().not_after.timestamp(), 1_800_000_000 + DEFAULT_LIFETIME as i64);
        assert_eq!(creds.identity, key.identity());
        assert_eq!(cert.public_key().raw, key.spki_der().as_slice());
        // The re-signed certificate still verifies under its own key.
        let spki = cert.public_key().subject_public_key.data.to_vec();
        let sig = cert.signature_value.data.to_vec();
        ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_ASN1, spki)
            .verify(cert.tbs_certificate.as_ref(), &sig)
            .unwrap();
        // rustls accepts the pair.
        rustls::sign::CertifiedKey::from_der(
            vec![creds.cert.clone()],
            creds.key.clone_key(),
            &super::super::provider(),
        )
        .unwrap();
        // A key reloaded from PKCS#8 has the same identity.
        assert_eq!(NodeKey::from_pkcs8_der(&key.pkcs8_der()).unwrap().identity(), key.identity());
        assert!(NodeKey::from_pkcs8_der(b"junk").is_err());
    }

    #[test]
    fn extension_decoding_refuses_malformations() {
        let ext = EvidenceExtension { kind: TeeKind::Tdx, evidence: vec![1, 2, 3], event_log: Some(vec![9]) };
        let enc = ext.encode().unwrap();
        assert_eq!(EvidenceExtension::decode(&enc).unwrap(), ext);
        // Every strict prefix fails, except the one that ends before the optional event log.
        for cut in (0..enc.len()).filter(|c| *c != enc.len() - 6) {
            assert!(EvidenceExtension::decode(&enc[..cut]).is_err(), "prefix of {cut} bytes accepted");
        }
        let mut v2 = enc.clone();
        v2[0] = 2;
        assert!(EvidenceExtension::decode(&v2).unwrap_err().contains("version"));
        let mut trailing = enc.clone();
        trailing.extend_from_slice(&[9, 0, 0, 0, 0]);
        assert!(EvidenceExtension::decode(&trailing).unwrap_err().contains("unknown record"));
        let mut dup = enc.clone();
        dup.extend_from_slice(&[2, 0, 0, 0, 1, 7]);
        assert!(EvidenceExtension::decode(&dup).unwrap_err().contains("out of order"));
        let huge = [&[1u8][..], &[2, 0xff, 0xff, 0xff, 0xff]].concat();
        assert!(EvidenceExtension::decode(&huge).is_err());
        let big = EvidenceExtension { kind: TeeKind::Tdx, evidence: vec![0; MAX_EVIDENCE_EXTENSION], event_log: None };
        assert!(matches!(big.encode(), Err(CertError::TooLarge(_))));
        assert!(EvidenceExtension::from_extension_value(&enc).is_err(), "payload without OCTET STRING");
        let wrapped = ext.to_extension_value().unwrap();
        assert_eq!(EvidenceExtension::from_extension_value(&wrapped).unwrap(), ext);
    }

    #[test]
    fn renewal_threshold_is_a_third_of_the_lifetime() {
        let key = NodeKey::generate().unwrap();
        let tee = SimTee::new(&[3; 32], SimMeasurements::from_label("guardian"));
        let req = CertRequest { cluster_id: [5; 16], node_id: 1, now: 1_000_000, lifetime: 2940 };
        let c = issue(&key, &req, &tee).unwrap();
        // lifetime 3000 (60 s backdated); renew once fewer than 1000 s remain.
        assert!(!c.needs_renewal(1_000_000));
        assert!(!c.needs_renewal(c.not_after - 1001));
        assert!(c.needs_renewal(c.not_after - 999));
        assert!(c.needs_renewal(c.not_after + 5));
    }
}
