//! Tests of leaf certificates and CRLs, including `openssl verify`.
use super::*;
use rand::rngs::OsRng;
use rand::RngCore;
use rcgen::{BasicConstraints, CustomExtension, KeyPair};
use std::path::Path;
use std::process::Command;
use x509_parser::prelude::{parse_x509_certificate, X509Certificate};

const OPENSSL: &str = "/usr/bin/openssl";
const DAY: u64 = 86_400;

/// Ed25519 CA key held outside rcgen, like the node's `NamespaceCaKey`.
/// The CA key type the node uses, from a random seed.
type TestCaKey = crate::ca::NamespaceCaKey;

fn new_ca_key() -> TestCaKey {
    let mut seed = [0u8; 32];
    OsRng.fill_bytes(&mut seed);
    crate::ca::namespace_ca_key(&seed).expect("derive")
}

struct TestCa {
    key: TestCaKey,
    der: Vec<u8>,
}

/// A self-signed stand-in for a namespace CA, with the profile of ca.rs: O=Guardian, CA with
/// pathlen 0, keyCertSign+cRLSign+digitalSignature, SKI by RFC 7093 method 1.
fn test_ca_valid(not_before: u64, not_after: u64) -> TestCa {
    let key = new_ca_key();
    let mut cp = CertificateParams::default();
    cp.serial_number = Some(SerialNumber::from(7u64));
    cp.not_before = utc("ca not_before", not_before).expect("time");
    cp.not_after = utc("ca not_after", not_after).expect("time");
    cp.distinguished_name = DistinguishedName::new();
    cp.distinguished_name.push(DnType::OrganizationName, "Guardian");
    cp.distinguished_name.push(DnType::CommonName, "Guardian namespace payments CA v3");
    cp.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    cp.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    cp.key_identifier_method = KeyIdMethod::PreSpecified(key_identifier(&key.public_key()));
    let der = cp.self_signed(&key).expect("CA cert").der().to_vec();
    TestCa { key, der }
}

fn test_ca() -> TestCa {
    test_ca_valid(now() - DAY, now() + 365 * DAY)
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs()
}

fn random_serial() -> [u8; 16] {
    let mut serial = [0u8; 16];
    OsRng.fill_bytes(&mut serial);
    serial
}

fn profile() -> CertificateProfile {
    CertificateProfile {
        default_validity_secs: DAY as u32,
        max_validity_secs: 7 * DAY as u32,
        dns_sans: vec!["api.payments.example".into(), "*.svc.payments.example".into()],
        uri_sans: vec!["spiffe://prod/ns/payments/*".into(), "spiffe://prod/ns/payments-admin".into()],
    }
}

fn request(subject: Subject<'_>) -> LeafRequest<'_> {
    LeafRequest {
        namespace: "payments",
        version: 3,
        rule: "payments-api",
        subject,
        requested_validity_secs: 0,
        now: now(),
        serial: random_serial(),
    }
}

fn ia5(s: &str) -> Ia5String {
    Ia5String::try_from(s).expect("ASCII")
}

/// A CSR by a fresh key of `alg` asking for `sans`.
fn csr_with(alg: &'static SignatureAlgorithm, sans: Vec<SanType>) -> (KeyPair, Vec<u8>) {
    let key = KeyPair::generate_for(alg).expect("key");
    let mut cp = CertificateParams::default();
    cp.subject_alt_names = sans;
    let der = cp.serialize_request(&key).expect("csr").der().to_vec();
    (key, der)
}

fn dns_csr(alg: &'static SignatureAlgorithm, dns: &[&str]) -> Vec<u8> {
    csr_with(alg, dns.iter().map(|d| SanType::DnsName(ia5(d))).collect()).1
}

fn uri_csr(uris: &[&str]) -> Vec<u8> {
    csr_with(&rcgen::PKCS_ED25519, uris.iter().map(|u| SanType::URI(ia5(u))).collect()).1
}

fn parse(der: &[u8]) -> X509Certificate<'_> {
    let (rest, cert) = parse_x509_certificate(der).expect("parse");
    assert!(rest.is_empty());
    cert
}

fn extension<'c, 'a>(cert: &'c X509Certificate<'a>, oid: &Oid<'_>) -> &'c ParsedExtension<'a> {
    unique_extension(cert, oid).expect("unique").expect("present")
}

/// Checks everything `issue` promises about a leaf of `ca`.
fn assert_leaf_profile(leaf: &Leaf, ca: &TestCa, key_spki: &[u8]) {
    let cert = parse(&leaf.der);
    let ca_cert = parse(&ca.der);
    assert_eq!(cert.issuer().as_raw(), ca_cert.subject().as_raw());
    assert_eq!(cert.subject().to_string(), "O=Guardian namespace payments v3, CN=payments-api");
    assert_eq!(cert.public_key().raw, key_spki);
    assert_eq!(leaf.spki_sha256, <[u8; 32]>::from(Sha256::digest(key_spki)));
    let strip = |b: &[u8]| b[b.iter().take_while(|b| **b == 0).count()..].to_vec();
    assert_eq!(strip(cert.raw_serial()), strip(&leaf.serial));
    assert_eq!(cert.validity().not_before.timestamp() as u64, leaf.not_before);
    assert_eq!(cert.validity().not_after.timestamp() as u64, leaf.not_after);

    let bc = cert.basic_constraints().expect("bc").expect("bc present");
    assert!(bc.critical && !bc.value.ca);
    let ku = cert.key_usage().expect("ku").expect("ku present");
    assert!(ku.critical && ku.value.digital_signature());
    assert!(!ku.value.key_cert_sign() && !ku.value.crl_sign() && !ku.value.key_encipherment());
    let eku = cert.extended_key_usage().expect("eku").expect("eku present");
    assert!(eku.value.server_auth && eku.value.client_auth && !eku.value.any);
    let ParsedExtension::SubjectKeyIdentifier(ski) = extension(&cert, &OID_X509_EXT_SUBJECT_KEY_IDENTIFIER) else {
        panic!("no SKI");
    };
    assert_eq!(ski.0, key_identifier(cert.public_key().subject_public_key.data.as_ref()).as_slice());
    let ParsedExtension::AuthorityKeyIdentifier(aki) = extension(&cert, &OID_X509_EXT_AUTHORITY_KEY_IDENTIFIER) else {
        panic!("no AKI");
    };
    assert_eq!(aki.key_identifier.as_ref().expect("key id").0, key_identifier(&ca.key.public_key()).as_slice());

    let mut dns = Vec::new();
    let mut uri = Vec::new();
    if let Some(san) = cert.subject_alternative_name().expect("san") {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(s) => dns.push(s.to_string()),
                GeneralName::URI(s) => uri.push(s.to_string()),
                other => panic!("unexpected SAN {other}"),
            }
        }
    }
    assert_eq!((dns, uri), (leaf.dns_sans.clone(), leaf.uri_sans.clone()));
    verify_leaf_signature(&leaf.der, &ca.key.public_key()).expect("signed by the CA");
}

#[test]
fn issues_from_csr_of_each_key_type() {
    let ca = test_ca();
    for alg in [&rcgen::PKCS_ECDSA_P256_SHA256, &rcgen::PKCS_ED25519, &rcgen::PKCS_ECDSA_P384_SHA384] {
        let sans = vec![
            SanType::DnsName(ia5("API.payments.example")),
            SanType::DnsName(ia5("web.svc.payments.example")),
            SanType::URI(ia5("spiffe://prod/ns/payments/web")),
        ];
        let (key, csr) = csr_with(alg, sans);
        let leaf = issue(&ca.key, &ca.der, &request(Subject::Csr(&csr)), &profile()).expect("issue");
        assert_eq!(leaf.dns_sans, ["api.payments.example", "web.svc.payments.example"]);
        assert_eq!(leaf.uri_sans, ["spiffe://prod/ns/payments/web"]);
        assert_eq!(csr_spki(&csr).expect("csr spki"), key.subject_public_key_info());
        assert_leaf_profile(&leaf, &ca, &key.subject_public_key_info());
    }
}

#[test]
fn issues_from_bare_public_key_with_exact_profile_sans() {
    let ca = test_ca();
    for alg in [&rcgen::PKCS_ED25519, &rcgen::PKCS_ECDSA_P256_SHA256, &rcgen::PKCS_ECDSA_P384_SHA384] {
        let spki = KeyPair::generate_for(alg).expect("key").subject_public_key_info();
        let leaf = issue(&ca.key, &ca.der, &request(Subject::PublicKey(&spki)), &profile()).expect("issue");
        assert_eq!(leaf.dns_sans, ["api.payments.example"]);
        assert_eq!(leaf.uri_sans, ["spiffe://prod/ns/payments-admin"]);
        assert_leaf_profile(&leaf, &ca, &spki);
    }
}

#[test]
fn sans_must_match_the_profile() {
    let ca = test_ca();
    let issue_csr = |csr: &[u8]| issue(&ca.key, &ca.der, &request(Subject::Csr(csr)), &profile());
    let refused = |csr: &[u8]| match issue_csr(csr) {
        Err(LeafError::SanNotAllowed { san, kind, reason }) => (san, kind, reason),
        other => panic!("expected SanNotAllowed, got {other:?}"),
    };
    let p256 = &rcgen::PKCS_ECDSA_P256_SHA256;

    // Wildcards match exactly one extra leftmost label.
    assert!(issue_csr(&dns_csr(p256, &["a-1.svc.payments.example"])).is_ok());
    for name in ["a.b.svc.payments.example", "svc.payments.example", "evil.example", "api.payments.example.evil"] {
        let (san, kind, reason) = refused(&dns_csr(p256, &[name]));
        assert_eq!((san.as_str(), kind), (name, "DNS"));
        assert!(reason.contains("matches no DNS pattern"), "{reason}");
    }
    // A requested wildcard, or anything that is not a host name, is refused as such.
    for name in
        ["*.svc.payments.example", "a_b.svc.payments.example", "-a.svc.payments.example", "x.svc.payments.example."]
    {
        let (_, kind, reason) = refused(&dns_csr(p256, &[name]));
        assert_eq!(kind, "DNS");
        assert!(reason.contains("not a valid host name"), "{name}: {reason}");
    }
    // One bad SAN spoils the request.
    refused(&dns_csr(p256, &["api.payments.example", "evil.example"]));

    // URI prefixes cover whole path segments below the prefix, nothing else.
    let ok = uri_csr(&["spiffe://prod/ns/payments/web/v2", "spiffe://prod/ns/payments-admin"]);
    assert_eq!(issue_csr(&ok).expect("issue").uri_sans.len(), 2);
    for uri in [
        "spiffe://prod/ns/payments/",
        "spiffe://prod/ns/payments/../admin",
        "spiffe://prod/ns/payments/a//b",
        "spiffe://prod/ns/payments/a%2F..%2Fadmin",
        "spiffe://prod/ns/payments/a?x=1",
        "spiffe://prod/ns/paymentsx/web",
        "spiffe://prod/ns/payments-admin/web",
        "SPIFFE://prod/ns/payments-admin",
    ] {
        let (san, kind, reason) = refused(&uri_csr(&[uri]));
        assert_eq!((san.as_str(), kind), (uri, "URI"));
        assert!(reason.contains("matches no URI pattern"), "{uri}: {reason}");
    }
    let (_, _, reason) = refused(&uri_csr(&["spiffe://prod/ns/payments/a b"]));
    assert!(reason.contains("space"), "{reason}");

    // Other SAN types are never issued.
    let (_, ip) = csr_with(p256, vec![SanType::IpAddress([10, 0, 0, 1].into())]);
    assert_eq!(refused(&ip).1, "IP address");
    let (_, email) = csr_with(p256, vec![SanType::Rfc822Name(ia5("a@payments.example"))]);
    assert_eq!(refused(&email), ("RFC822Name(a@payments.example)".into(), "email", "only DNS and URI SANs are issued"));
}

#[test]
fn csr_extensions_other_than_san_are_ignored() {
    let ca = test_ca();
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let mut cp = CertificateParams::new(vec!["api.payments.example".to_string()]).expect("params");
    cp.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    cp.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    cp.extended_key_usages = vec![ExtendedKeyUsagePurpose::CodeSigning];
    cp.custom_extensions = vec![CustomExtension::from_oid_content(&[1, 3, 6, 1, 4, 1, 99999, 1], vec![5, 0])];
    let csr = cp.serialize_request(&key).expect("csr").der().to_vec();
    let leaf = issue(&ca.key, &ca.der, &request(Subject::Csr(&csr)), &profile()).expect("issue");
    assert_leaf_profile(&leaf, &ca, &key.subject_public_key_info());

    // Two SAN extensions would let parsers disagree on the names: refused.
    let mut second_san = CustomExtension::from_oid_content(&[2, 5, 29, 17], vec![0x30, 0x03, 0x82, 0x01, b'x']);
    second_san.set_criticality(false);
    cp.custom_extensions = vec![second_san];
    let csr = cp.serialize_request(&key).expect("csr").der().to_vec();
    assert!(matches!(csr_spki(&csr), Err(LeafError::BadCsr(m)) if m.contains("more than one subjectAltName")));
}

#[test]
fn validity_defaults_caps_and_stays_within_the_ca() {
    let ca = test_ca();
    let spki = KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("key").subject_public_key_info();
    let mut req = request(Subject::PublicKey(&spki));
    let validity = |req: &LeafRequest<'_>| {
        let leaf = issue(&ca.key, &ca.der, req, &profile()).expect("issue");
        assert_eq!(leaf.not_before, req.now - CLOCK_SKEW_SECS);
        leaf.not_after - req.now
    };
    assert_eq!(validity(&req), DAY);
    req.requested_validity_secs = 3600;
    assert_eq!(validity(&req), 3600);
    req.requested_validity_secs = 30 * DAY as u32;
    assert_eq!(validity(&req), 7 * DAY);

    // Clipped to the CA's end; refused outside the CA's validity.
    let short = test_ca_valid(now() - DAY, now() + 7200);
    let mut req = request(Subject::PublicKey(&spki));
    let leaf = issue(&short.key, &short.der, &req, &profile()).expect("issue");
    assert_eq!(leaf.not_after, validity_of(&short.der).1);
    req.now += 7200;
    assert!(matches!(issue(&short.key, &short.der, &req, &profile()), Err(LeafError::BadCa(_))));
    req.now = now() - 2 * DAY;
    assert!(matches!(issue(&short.key, &short.der, &req, &profile()), Err(LeafError::BadCa(_))));
}

/// (not_before, not_after) of a certificate.
fn validity_of(der: &[u8]) -> (u64, u64) {
    let cert = parse(der);
    (cert.validity().not_before.timestamp() as u64, cert.validity().not_after.timestamp() as u64)
}

#[test]
fn serial_and_names_are_checked() {
    let ca = test_ca();
    let spki = KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("key").subject_public_key_info();
    let mut req = request(Subject::PublicKey(&spki));
    req.serial = [0xff; 16];
    let leaf = issue(&ca.key, &ca.der, &req, &profile()).expect("issue");
    let mut expected = [0xff; 16];
    expected[0] = 0x7f;
    assert_eq!(leaf.serial, expected);
    assert_eq!(parse_leaf(&leaf.der).expect("parse").serial16(), Some(expected));

    // Leading zero bytes survive the round trip through the minimal DER INTEGER.
    req.serial = [0; 16];
    req.serial[15] = 1;
    let leaf = issue(&ca.key, &ca.der, &req, &profile()).expect("issue");
    assert_eq!(parse_leaf(&leaf.der).expect("parse").serial, [1]);
    assert_eq!(parse_leaf(&leaf.der).expect("parse").serial16(), Some(req.serial));

    // Zero, also after clearing the top bit, is not a positive serial.
    let mut top_bit_only = [0u8; 16];
    top_bit_only[0] = 0x80;
    for serial in [[0u8; 16], top_bit_only] {
        req.serial = serial;
        assert!(matches!(issue(&ca.key, &ca.der, &req, &profile()), Err(LeafError::BadRequest(_))));
    }

    let named = |namespace, rule| {
        let req = LeafRequest { namespace, rule, ..request(Subject::PublicKey(&spki)) };
        issue(&ca.key, &ca.der, &req, &profile())
    };
    assert!(named("team-a/prod", "rule with spaces é").is_ok());
    for (namespace, rule) in [("", "r"), ("payments", ""), ("pay\nments", "r"), ("payments", "r\u{7f}")] {
        assert!(matches!(named(namespace, rule), Err(LeafError::BadRequest(_))), "{namespace:?} {rule:?}");
    }
}

#[test]
fn bad_csr_signatures_are_refused() {
    let (_, csr) = csr_with(&rcgen::PKCS_ECDSA_P256_SHA256, vec![SanType::DnsName(ia5("web.svc.payments.example"))]);
    assert!(csr_spki(&csr).is_ok());
    // A SAN swapped after signing.
    let at = csr.windows(3).position(|w| w == b"web").expect("san in csr");
    let mut swapped = csr.clone();
    swapped[at..at + 3].copy_from_slice(b"api");
    assert!(matches!(csr_spki(&swapped), Err(LeafError::BadCsr(m)) if m.contains("self-signature")));
    // Any single bit flip anywhere breaks a CSR, whatever its key type.
    let (_, ed_csr) = csr_with(&rcgen::PKCS_ED25519, vec![SanType::URI(ia5("spiffe://prod/ns/payments/web"))]);
    for csr in [&csr, &ed_csr] {
        for i in 0..csr.len() {
            let mut flipped = csr.clone();
            flipped[i] ^= 1;
            assert!(csr_spki(&flipped).is_err(), "flip at {i} accepted");
        }
    }
    // The public key swapped for another one after signing.
    let (_, other) = csr_with(&rcgen::PKCS_ECDSA_P256_SHA256, vec![SanType::DnsName(ia5("web.svc.payments.example"))]);
    let mut spliced = csr.clone();
    spliced.splice(spki_range(&csr), other[spki_range(&other)].iter().copied());
    assert!(matches!(csr_spki(&spliced), Err(LeafError::BadCsr(_))));
}

/// Byte range of the SPKI inside a CSR.
fn spki_range(csr: &[u8]) -> std::ops::Range<usize> {
    let (_, parsed) = X509CertificationRequest::from_der(csr).expect("csr");
    let spki = parsed.certification_request_info.subject_pki.raw;
    let start = spki.as_ptr() as usize - csr.as_ptr() as usize;
    start..start + spki.len()
}

/// DER TLV with a short length.
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    assert!(content.len() < 128);
    [&[tag, content.len() as u8][..], content].concat()
}

fn spki_with(alg_id: &[u8], key: &[u8]) -> Vec<u8> {
    tlv(0x30, &[tlv(0x30, alg_id), tlv(0x03, &[&[0u8][..], key].concat())].concat())
}

#[test]
fn bad_public_keys_are_refused() {
    const ED25519: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];
    const EC_P256: &[u8] = &[
        0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01,
        0x07,
    ];
    const EC_K256: &[u8] =
        &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x0a];
    const RSA: &[u8] = &[0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00];
    let ca = test_ca();
    let refused = |spki: &[u8]| match issue(&ca.key, &ca.der, &request(Subject::PublicKey(spki)), &profile()) {
        Err(LeafError::BadPublicKey(m)) => m,
        other => panic!("expected BadPublicKey, got {other:?}"),
    };

    let p256 = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let point = p256.public_key_raw();
    assert!(issue(&ca.key, &ca.der, &request(Subject::PublicKey(&spki_with(EC_P256, point))), &profile()).is_ok());
    let mut off_curve = point.to_vec();
    off_curve[64] ^= 1;
    assert!(refused(&spki_with(EC_P256, &off_curve)).contains("not an uncompressed point"));
    let compressed = [&[2 + (point[64] & 1)][..], &point[1..33]].concat();
    assert!(refused(&spki_with(EC_P256, &compressed)).contains("not an uncompressed point"));
    assert!(refused(&spki_with(EC_K256, point)).contains("unsupported elliptic curve"));
    assert!(refused(&spki_with(RSA, &[0x30, 0x03, 0x02, 0x01, 0x03])).contains("unsupported key algorithm"));

    let mut identity = [0u8; 32];
    identity[0] = 1;
    assert!(refused(&spki_with(ED25519, &identity)).contains("small order"));
    let undecodable = (2u8..=255)
        .map(|b| {
            let mut k = [0u8; 32];
            k[0] = b;
            k
        })
        .find(|k| VerifyingKey::from_bytes(k).is_err())
        .expect("some y is off the curve");
    assert!(refused(&spki_with(ED25519, &undecodable)).contains("not a valid curve point"));
    assert!(refused(&spki_with(ED25519, &[9; 31])).contains("not 32 bytes"));

    // Valid key, but not in the canonical encoding rcgen would write back.
    let ed = new_ca_key().public_key();
    let with_null = spki_with(&[ED25519, &[0x05, 0x00]].concat(), &ed);
    assert!(refused(&with_null).contains("canonical"));
    let mut trailing = spki_with(ED25519, &ed);
    trailing.push(0);
    assert!(refused(&trailing).contains("trailing"));
}

#[test]
fn garbage_is_refused_without_panic() {
    let ca = test_ca();
    let (_, csr) = csr_with(&rcgen::PKCS_ED25519, vec![SanType::DnsName(ia5("api.payments.example"))]);
    let spki = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key").subject_public_key_info();
    let leaf = issue(&ca.key, &ca.der, &request(Subject::Csr(&csr)), &profile()).expect("issue");

    let mut inputs: Vec<Vec<u8>> = vec![vec![], vec![0x30], vec![0x30, 0x80], vec![0xff; 64], b"hello".to_vec()];
    for _ in 0..64 {
        let mut junk = vec![0u8; (OsRng.next_u32() % 512) as usize];
        OsRng.fill_bytes(&mut junk);
        inputs.push(junk);
    }
    for valid in [&csr, &spki, &leaf.der, &ca.der] {
        inputs.extend((0..valid.len()).map(|n| valid[..n].to_vec()));
    }
    for input in &inputs {
        assert!(csr_spki(input).is_err());
        assert!(issue(&ca.key, &ca.der, &request(Subject::Csr(input)), &profile()).is_err());
        assert!(issue(&ca.key, &ca.der, &request(Subject::PublicKey(input)), &profile()).is_err());
        assert!(parse_leaf(input).is_err());
        assert!(verify_leaf_signature(input, &ca.key.public_key()).is_err());
        assert!(matches!(issue(&ca.key, input, &request(Subject::Csr(&csr)), &profile()), Err(LeafError::BadCa(_))));
    }
    // Any single bit flip in a leaf breaks its signature check; parsing just must not panic.
    for i in 0..leaf.der.len() {
        let mut flipped = leaf.der.clone();
        flipped[i] ^= 1;
        let _ = parse_leaf(&flipped);
        assert!(verify_leaf_signature(&flipped, &ca.key.public_key()).is_err(), "flip at {i} accepted");
    }
}

#[test]
fn ca_certificate_and_key_must_fit() {
    let ca = test_ca();
    let other = test_ca();
    let spki = KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("key").subject_public_key_info();
    let req = request(Subject::PublicKey(&spki));
    let bad_ca = |key: &TestCaKey, der: &[u8]| match issue(key, der, &req, &profile()) {
        Err(LeafError::BadCa(m)) => m,
        other => panic!("expected BadCa, got {other:?}"),
    };
    assert!(bad_ca(&other.key, &ca.der).contains("does not match"));
    let leaf = issue(&ca.key, &ca.der, &req, &profile()).expect("issue");
    assert!(bad_ca(&ca.key, &leaf.der).contains("CA:true"));
    assert!(matches!(crl(&other.key, &ca.der, &[], now(), now() + DAY, 1), Err(LeafError::BadCa(_))));
}

#[test]
fn leaf_signature_and_parse_round_trip() {
    let ca = test_ca();
    let other = test_ca();
    let (_, csr) = csr_with(&rcgen::PKCS_ECDSA_P256_SHA256, vec![]);
    let leaf = issue(&ca.key, &ca.der, &request(Subject::Csr(&csr)), &profile()).expect("issue");
    assert!(leaf.dns_sans.is_empty() && leaf.uri_sans.is_empty());

    verify_leaf_signature(&leaf.der, &ca.key.public_key()).expect("verifies");
    assert!(matches!(verify_leaf_signature(&leaf.der, &other.key.public_key()), Err(LeafError::WrongIssuer)));
    let mut identity = [0u8; 32];
    identity[0] = 1;
    assert!(matches!(verify_leaf_signature(&leaf.der, &identity), Err(LeafError::WrongIssuer)));
    // A certificate signed with another algorithm is refused before any key is tried.
    let p256 = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let foreign = CertificateParams::default().self_signed(&p256).expect("cert").der().to_vec();
    assert!(matches!(verify_leaf_signature(&foreign, &ca.key.public_key()), Err(LeafError::BadCertificate(_))));

    let parsed = parse_leaf(&leaf.der).expect("parse");
    assert_eq!(parsed.serial16(), Some(leaf.serial));
    assert_eq!((parsed.not_before, parsed.not_after), (leaf.not_before, leaf.not_after));
    assert_eq!(parsed.spki_sha256, leaf.spki_sha256);
    assert_eq!(parsed.authority_key_id, Some(key_identifier(&ca.key.public_key())));
    assert_eq!(parsed.spki_sha256, <[u8; 32]>::from(Sha256::digest(csr_spki(&csr).expect("spki"))));
}

#[test]
fn profile_check() {
    assert!(profile().check().is_ok());
    let with = |f: &dyn Fn(&mut CertificateProfile)| {
        let mut p = profile();
        f(&mut p);
        p.check()
    };
    assert!(with(&|p| p.max_validity_secs = MAX_VALIDITY_SECS).is_ok());
    assert!(with(&|p| p.default_validity_secs = MIN_VALIDITY_SECS).is_ok());
    assert!(with(&|p| p.uri_sans = vec!["urn:guardian:payments:*".into()]).is_ok());
    assert!(with(&|p| p.dns_sans = vec!["*.Svc.Payments.Example".into(), "localhost".into()]).is_ok());

    let bad: [&dyn Fn(&mut CertificateProfile); 18] = [
        &|p| p.default_validity_secs = MIN_VALIDITY_SECS - 1,
        &|p| p.default_validity_secs = p.max_validity_secs + 1,
        &|p| p.max_validity_secs = MAX_VALIDITY_SECS + 1,
        &|p| p.dns_sans.push("*".into()),
        &|p| p.dns_sans.push("*.".into()),
        &|p| p.dns_sans.push("".into()),
        &|p| p.dns_sans.push("a.*.example".into()),
        &|p| p.dns_sans.push("*.*.example".into()),
        &|p| p.dns_sans.push("a_b.example".into()),
        &|p| p.dns_sans.push("-a.example".into()),
        &|p| p.dns_sans.push("a.example.".into()),
        &|p| p.uri_sans.push("*".into()),
        &|p| p.uri_sans.push("spiffe://prod/ns/app*".into()),
        &|p| p.uri_sans.push("spiffe://prod/*/app".into()),
        &|p| p.uri_sans.push("no-scheme/*".into()),
        &|p| p.uri_sans.push("1http://x/".into()),
        &|p| p.uri_sans.push("spiffe://prod/a b".into()),
        &|p| p.uri_sans.push(format!("spiffe://{}", "a".repeat(MAX_URI_LEN))),
    ];
    for (i, f) in bad.iter().enumerate() {
        assert!(matches!(with(f), Err(LeafError::Profile(_))), "bad profile {i} accepted");
    }
    // issue checks the profile first.
    let ca = test_ca();
    let mut p = profile();
    p.dns_sans.push("*".into());
    let spki = KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("key").subject_public_key_info();
    assert!(matches!(issue(&ca.key, &ca.der, &request(Subject::PublicKey(&spki)), &p), Err(LeafError::Profile(_))));
}

#[test]
fn crl_is_deterministic_sorted_and_complete() {
    let ca = test_ca();
    let mut serials: Vec<[u8; 16]> = (0..4).map(|_| random_serial()).collect();
    serials[0][0] |= 0x80; // passed raw: the CRL must list it as issue would
    let t = now();
    let revoked =
        [(serials[2], t - 10), (serials[0], t - 30), (serials[1], t - 20), (serials[2], t - 5), (serials[3], t)];
    let a = crl(&ca.key, &ca.der, &revoked, t - 60, t + DAY, 42).expect("crl");
    let mut reversed = revoked;
    reversed.reverse();
    assert_eq!(a, crl(&ca.key, &ca.der, &reversed, t - 60, t + DAY, 42).expect("crl"));
    assert_ne!(a, crl(&ca.key, &ca.der, &revoked, t - 60, t + DAY, 43).expect("crl"));

    let (rest, parsed) = x509_parser::parse_x509_crl(&a).expect("parse crl");
    assert!(rest.is_empty());
    assert_eq!(parsed.issuer().as_raw(), parse(&ca.der).subject().as_raw());
    assert_eq!(parsed.crl_number().map(|n| n.to_string()), Some("42".to_string()));
    let mut expected: Vec<([u8; 16], u64)> =
        serials.iter().map(|s| (positive_serial(*s).expect("serial"), 0)).collect();
    expected.sort();
    let listed: Vec<(Vec<u8>, i64)> =
        parsed.iter_revoked_certificates().map(|r| (r.raw_serial().to_vec(), r.revocation_date.timestamp())).collect();
    assert_eq!(listed.len(), 4);
    for ((serial, _), (raw, at)) in expected.iter().zip(&listed) {
        assert_eq!(raw.as_slice(), &serial[serial.iter().take_while(|b| **b == 0).count()..]);
        let original = revoked.iter().filter(|(s, _)| positive_serial(*s).ok() == Some(*serial));
        assert_eq!(*at as u64, original.map(|(_, at)| *at).min().expect("time"), "earliest time wins");
    }
    let aki = parsed.extensions().iter().find_map(|e| match e.parsed_extension() {
        ParsedExtension::AuthorityKeyIdentifier(aki) => aki.key_identifier.as_ref().map(|k| k.0.to_vec()),
        _ => None,
    });
    assert_eq!(aki, Some(key_identifier(&ca.key.public_key())));

    let empty = crl(&ca.key, &ca.der, &[], t, t + 1, 0).expect("empty crl");
    assert_eq!(x509_parser::parse_x509_crl(&empty).expect("parse").1.iter_revoked_certificates().count(), 0);
    assert!(matches!(crl(&ca.key, &ca.der, &[], t, t, 1), Err(LeafError::BadRequest(_))));
    assert!(matches!(crl(&ca.key, &ca.der, &[([0; 16], t)], t, t + 1, 1), Err(LeafError::BadRequest(_))));
}

/// Writes PEM files and runs `openssl verify -x509_strict` (with `-crl_check` if a CRL is
/// given); returns (success, combined output).
fn openssl_verify(dir: &Path, ca: &[u8], leaf: &[u8], crl: Option<&[u8]>) -> (bool, String) {
    assert!(Path::new(OPENSSL).exists(), "{OPENSSL} is required for this test");
    let write = |name: &str, label: &str, der: &[u8]| {
        let path = dir.join(name);
        std::fs::write(&path, crate::ca::to_pem(der, label)).expect("write pem");
        path
    };
    let mut cmd = Command::new(OPENSSL);
    cmd.arg("verify").arg("-x509_strict");
    if let Some(crl) = crl {
        cmd.arg("-crl_check").arg("-CRLfile").arg(write("crl.pem", "X509 CRL", crl));
    }
    cmd.arg("-CAfile").arg(write("ca.pem", "CERTIFICATE", ca)).arg(write("leaf.pem", "CERTIFICATE", leaf));
    let out = cmd.output().expect("run openssl");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[test]
fn openssl_accepts_leaves_and_honours_the_crl() {
    let ca = test_ca();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut leaves = Vec::new();
    for alg in [&rcgen::PKCS_ECDSA_P256_SHA256, &rcgen::PKCS_ED25519, &rcgen::PKCS_ECDSA_P384_SHA384] {
        let (_, csr) = csr_with(alg, vec![SanType::DnsName(ia5("web.svc.payments.example"))]);
        leaves.push(issue(&ca.key, &ca.der, &request(Subject::Csr(&csr)), &profile()).expect("issue"));
        let spki = KeyPair::generate_for(alg).expect("key").subject_public_key_info();
        leaves.push(issue(&ca.key, &ca.der, &request(Subject::PublicKey(&spki)), &profile()).expect("issue"));
    }
    for leaf in &leaves {
        let (ok, out) = openssl_verify(dir.path(), &ca.der, &leaf.der, None);
        assert!(ok && out.contains("leaf.pem: OK"), "openssl output: {out}");
    }
    // Not under another CA with the same name.
    let other = test_ca();
    let (ok, out) = openssl_verify(dir.path(), &other.der, &leaves[0].der, None);
    assert!(!ok && !out.contains("leaf.pem: OK"), "openssl accepted: {out}");

    let t = now();
    let revoked: Vec<_> = leaves.iter().step_by(2).map(|l| (l.serial, t - 30)).collect();
    let crl_der = crl(&ca.key, &ca.der, &revoked, t - 60, t + DAY, 1).expect("crl");
    for (i, leaf) in leaves.iter().enumerate() {
        let (ok, out) = openssl_verify(dir.path(), &ca.der, &leaf.der, Some(&crl_der));
        if i % 2 == 0 {
            assert!(!ok && out.contains("certificate revoked"), "leaf {i}: {out}");
        } else {
            assert!(ok && out.contains("leaf.pem: OK"), "leaf {i}: {out}");
        }
    }
}
