//! Tests on real Azure evidence: A1 (trustee az-tdx-vtpm, v0 and v1) and A2
//! (flashbots capture with an AK certificate), see tests/data/attestation/README.md.

use base64::Engine as _;
use serde::Deserialize;

use super::*;
use crate::attest::TcbStatus;

macro_rules! data {
    ($p:literal) => {
        include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/attestation/", $p))
    };
}

const A1_V0: &[u8] = data!("trustee/az-tdx-vtpm/evidence-v0.json");
const A1_V1: &[u8] = data!("trustee/az-tdx-vtpm/evidence-v1.json");
const A1_COLLATERAL: &[u8] = data!("assembled-collateral/dcaprs_2025-02_00806f050000.json");
const A1_NOW: u64 = 1739491200; // 2025-02-14T00:00:00Z
const A2_YAML: &[u8] = data!("flashbots-attested-tls/azure-tdx-1764662251380464271.yaml");
const A2_COLLATERAL: &[u8] = data!("assembled-collateral/fb_azure-collateral02.json");
const A2_NOW: u64 = 1771423480; // 2026-02-18T14:04:40Z
const ROOT_2023: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/data/attestation/flashbots-attested-tls/azure-virtual-tpm-root-2023.pem"
));
const ROOT_2021: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/data/attestation/flashbots-attested-tls/microsoft-rsa-devices-root-ca-2021.pem"
));

fn a1_opts() -> VerifyOptions {
    VerifyOptions {
        require_sept_ve_disable: false,
        expected_nonce: Some(b"challenge".to_vec()),
        ..VerifyOptions::at(A1_NOW)
    }
}

fn a2_opts() -> VerifyOptions {
    VerifyOptions { expected_nonce: Some(vec![0u8; 32]), ..VerifyOptions::at(A2_NOW) }
}

fn roots() -> AzureTrust {
    AzureTrust {
        ak_roots: vec![pem_to_der(ROOT_2023).unwrap(), pem_to_der(ROOT_2021).unwrap()],
        ak_intermediates: vec![],
    }
}

/// The flashbots capture, decoded.
struct A2 {
    hcl_report: Vec<u8>,
    td_quote: Vec<u8>,
    tpm_quote: TpmQuote,
    ak_cert_der: Vec<u8>,
    ak_cert_pem_raw_len: usize,
}

impl A2 {
    fn load() -> A2 {
        #[derive(Deserialize)]
        struct Doc {
            tdx_quote_base64: String,
            hcl_report_base64: String,
            tpm_attestation: Tpm,
        }
        #[derive(Deserialize)]
        struct Tpm {
            ak_certificate_pem: String,
            quote: Quote,
        }
        #[derive(Deserialize)]
        struct Quote {
            signature: Vec<u8>,
            message: Vec<u8>,
            pcrs: Vec<Vec<u8>>,
        }
        let doc: Doc = serde_yaml::from_slice(A2_YAML).unwrap();
        let b64url = |s: &str| {
            let s: String = s.chars().filter(|c| !c.is_whitespace() && *c != '=').collect();
            base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s).unwrap()
        };
        let pem = &doc.tpm_attestation.ak_certificate_pem;
        let raw: String = pem.lines().filter(|l| !l.starts_with("-----")).flat_map(|l| l.trim().chars()).collect();
        let raw_len = base64::engine::general_purpose::STANDARD.decode(raw).unwrap().len();
        let q = doc.tpm_attestation.quote;
        A2 {
            hcl_report: b64url(&doc.hcl_report_base64),
            td_quote: b64url(&doc.tdx_quote_base64),
            tpm_quote: TpmQuote {
                signature: q.signature,
                message: q.message,
                pcrs: q.pcrs.iter().map(|p| <[u8; 32]>::try_from(p.as_slice()).unwrap()).collect(),
            },
            ak_cert_der: pem_to_der(pem).unwrap(),
            ak_cert_pem_raw_len: raw_len,
        }
    }

    fn parts(&self) -> AzureEvidenceParts<'_> {
        AzureEvidenceParts {
            hcl_report: &self.hcl_report,
            td_quote: &self.td_quote,
            tpm_quote: self.tpm_quote.clone(),
            ak_cert_der: Some(&self.ak_cert_der),
        }
    }
}

// ---- Pieces that do not need the TDX verifier -------------------------------

#[test]
fn a2_pieces_bind_without_tdx() {
    let a2 = A2::load();
    assert_eq!(a2.ak_cert_pem_raw_len, 4096);
    assert_eq!(a2.ak_cert_der.len(), 1009);
    let h = hcl::HclBinding::parse(&a2.hcl_report).unwrap();
    h.check_quote_body(hcl::quote_body(&a2.td_quote).unwrap()).unwrap();
    assert_eq!(hex::encode(h.var_data_sha256()), "bec74f5e38c26779cd35ba5083560117b3701d3efef229156ec2ec59ecae880e");
    let ak = h.ak_pub().unwrap();
    let v = tpm::verify_quote(&a2.tpm_quote, &ak, Some(&[0u8; 32])).unwrap();
    assert_eq!(v.pcrs.len(), 24);
    assert_eq!(hex::encode(v.info.pcr_digest), "49eb0c256e9a542f56c6c90840f135d9bcc4798c1b05a20a286e6ede4af9a876");
    // AK certificate carries HCLAkPub; without roots it is not chained.
    let subject = akcert::verify_ak_cert(&a2.ak_cert_der, &ak, &AzureTrust::default(), A2_NOW).unwrap();
    assert!(subject.contains("353c6d9a70bc.ConfidentialVM.Azure.windows.net"), "{subject}");
    // The padded form is accepted too (trimmed by ASN.1 length).
    let mut padded = a2.ak_cert_der.clone();
    padded.resize(4096, 0);
    akcert::verify_ak_cert(&padded, &ak, &AzureTrust::default(), A2_NOW).unwrap();
}

#[test]
fn a2_ak_chain_to_configured_roots_names_missing_issuer() {
    let a2 = A2::load();
    let ak = hcl::HclBinding::parse(&a2.hcl_report).unwrap().ak_pub().unwrap();
    let e = akcert::verify_ak_cert(&a2.ak_cert_der, &ak, &roots(), A2_NOW).unwrap_err();
    match e {
        AttestError::CertChain(m) => assert!(m.contains("Global Virtual TPM CA - 03"), "{m}"),
        e => panic!("expected CertChain, got {e:?}"),
    }
    // Outside the AK certificate's validity (2025-12-01..2026-11-30).
    let e = akcert::verify_ak_cert(&a2.ak_cert_der, &ak, &roots(), 1_700_000_000).unwrap_err();
    assert!(matches!(e, AttestError::CertChain(ref m) if m.contains("not at the verification time")), "{e}");
}

#[test]
fn ak_cert_for_another_key_is_binding_error() {
    let a2 = A2::load();
    let a1 = parse_coco_json(A1_V1).unwrap();
    let a1_ak = hcl::HclBinding::parse(&a1.hcl_report).unwrap().ak_pub().unwrap();
    let e = akcert::verify_ak_cert(&a2.ak_cert_der, &a1_ak, &AzureTrust::default(), A2_NOW).unwrap_err();
    assert!(matches!(e, AttestError::Binding(ref m) if m.contains("HCLAkPub")), "{e}");
}

#[test]
fn chain_logic_on_self_signed_roots() {
    use rsa::pkcs8::DecodePublicKey;
    use x509_cert::der::{Decode, Encode};
    // A self-signed root presented as the "AK certificate" with its own key:
    // exercises signature (SHA-384), name matching and time checks on real certs.
    let root = pem_to_der(ROOT_2023).unwrap();
    let cert = x509_cert::Certificate::from_der(&root).unwrap();
    let key = rsa::RsaPublicKey::from_public_key_der(&cert.tbs_certificate.subject_public_key_info.to_der().unwrap())
        .unwrap();
    akcert::verify_ak_cert(&root, &key, &roots(), A2_NOW).unwrap();
    // Only the other root configured: issuer unknown.
    let other = AzureTrust { ak_roots: vec![pem_to_der(ROOT_2021).unwrap()], ak_intermediates: vec![] };
    let e = akcert::verify_ak_cert(&root, &key, &other, A2_NOW).unwrap_err();
    assert!(matches!(e, AttestError::CertChain(ref m) if m.contains("Azure Virtual TPM Root")), "{e}");
    // Signature flipped: the name matches but the signature does not verify.
    let mut bad = root.clone();
    let n = bad.len();
    bad[n - 5] ^= 1;
    let e = akcert::verify_ak_cert(&bad, &key, &roots(), A2_NOW).unwrap_err();
    assert!(matches!(e, AttestError::CertChain(ref m) if m.contains("does not verify")), "{e}");
    // Root not yet valid (2023-06-01).
    let e = akcert::verify_ak_cert(&root, &key, &roots(), 1_600_000_000).unwrap_err();
    assert!(matches!(e, AttestError::CertChain(_)), "{e}");
}

#[test]
fn der_trimming() {
    let a2 = A2::load();
    let mut padded = a2.ak_cert_der.clone();
    padded.resize(4096, 0);
    assert_eq!(trim_der(&padded).unwrap(), &a2.ak_cert_der[..]);
    padded[2000] = 1;
    assert!(matches!(trim_der(&padded), Err(AttestError::Malformed(_))));
    assert!(matches!(trim_der(&a2.ak_cert_der[..500]), Err(AttestError::Malformed(_))));
    assert!(trim_der(&[]).is_err());
    assert!(trim_der(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).is_err());
    assert!(pem_to_der("not pem").is_err());
    // Garbage certificates never panic.
    let ak = hcl::HclBinding::parse(&a2.hcl_report).unwrap().ak_pub().unwrap();
    for i in (0..a2.ak_cert_der.len()).step_by(5) {
        let mut c = a2.ak_cert_der.clone();
        c[i] ^= 0x5a;
        let _ = akcert::verify_ak_cert(&c, &ak, &roots(), A2_NOW);
        let _ = akcert::verify_ak_cert(&c[..i], &ak, &roots(), A2_NOW);
    }
}

// ---- End to end (TD quote through TdxVerifier) ------------------------------

fn verify_a1(json: &[u8], opts: &VerifyOptions, trust: &AzureTrust) -> Result<Claims> {
    let collateral = Collateral::from_json(A1_COLLATERAL).unwrap();
    verify_coco_json(json, &TdxVerifier::intel(), &collateral, trust, opts)
}

#[test]
fn a1_v1_verifies_end_to_end() {
    let c = verify_a1(A1_V1, &a1_opts(), &AzureTrust::default()).unwrap();
    assert_eq!(c.tee, TeeKind::AzTdxVtpm);
    assert_eq!(c.tcb_status, TcbStatus::OutOfDate);
    assert_eq!(c.fmspc, Some([0x00, 0x80, 0x6f, 0x05, 0x00, 0x00]));
    assert_eq!(c.pcrs.len(), 24);
    assert_eq!(hex::encode(c.pcrs[&0]), "782b20b10f55cc46e2142cc2145d548698073e5beb82752c8d7f9279f0d8a273");
    assert_eq!(
        hex::encode(&c.td.report_data[..32]),
        "9734504f161d104c74e3165c15f779b06a9bb40dfa71937817d7eee68e593839"
    );
    assert_eq!(
        hex::encode(c.td.mrtd),
        "024a32b070383331181619fa387cb4d55d1e38879f989933055ccad5bc2db795d1737b66205949d15469dc8c1ba7ab7b"
    );
    assert!(!c.td.td_attributes.sept_ve_disable());
}

#[test]
fn a1_v0_verifies_to_same_claims() {
    let c0 = verify_a1(A1_V0, &a1_opts(), &AzureTrust::default()).unwrap();
    let c1 = verify_a1(A1_V1, &a1_opts(), &AzureTrust::default()).unwrap();
    assert_eq!(c0, c1);
    // No nonce asked for: verifies, nonce exposed.
    let opts = VerifyOptions { expected_nonce: None, ..a1_opts() };
    let ev = parse_coco_json(A1_V0).unwrap();
    let parts = coco_parts(&ev);
    let collateral = Collateral::from_json(A1_COLLATERAL).unwrap();
    let v = verify_parts_detailed(&parts, &TdxVerifier::intel(), &collateral, &AzureTrust::default(), &opts).unwrap();
    assert_eq!(v.tpm_nonce, b"challenge");
    assert_eq!(v.claims, c0);
    assert!(v.hcl_var_data.starts_with(b"{\"keys\""));
}

/// The parts of CoCo evidence, which carries no AK certificate.
fn coco_parts(ev: &CocoEvidence) -> AzureEvidenceParts<'_> {
    AzureEvidenceParts {
        hcl_report: &ev.hcl_report,
        td_quote: &ev.td_quote,
        tpm_quote: ev.tpm_quote.clone(),
        ak_cert_der: None,
    }
}

#[test]
fn a1_strict_defaults_fail_on_sept_ve_disable() {
    let opts = VerifyOptions { expected_nonce: Some(b"challenge".to_vec()), ..VerifyOptions::at(A1_NOW) };
    let e = verify_a1(A1_V1, &opts, &AzureTrust::default()).unwrap_err();
    assert!(matches!(e, AttestError::Attributes(_)), "{e:?}");
}

#[test]
fn a1_end_to_end_negatives() {
    // Wrong nonce.
    let opts = VerifyOptions { expected_nonce: Some(b"other".to_vec()), ..a1_opts() };
    let e = verify_a1(A1_V1, &opts, &AzureTrust::default()).unwrap_err();
    assert!(matches!(e, AttestError::Binding(_)), "{e:?}");
    // Roots configured but CoCo evidence has no AK certificate.
    let e = verify_a1(A1_V1, &a1_opts(), &roots()).unwrap_err();
    assert!(matches!(e, AttestError::CertChain(ref m) if m.contains("no AK certificate")), "{e:?}");
    // Tampered PCR through the JSON.
    let mut v: serde_json::Value = serde_json::from_slice(A1_V1).unwrap();
    v["tpm_quote"]["pcrs"][4] = hex::encode([0u8; 32]).into();
    let e = verify_a1(&serde_json::to_vec(&v).unwrap(), &a1_opts(), &AzureTrust::default()).unwrap_err();
    assert!(matches!(e, AttestError::Binding(_)), "{e:?}");
    // Tampered HCL var data: re-encode the HCL report.
    let mut ev = parse_coco_json(A1_V1).unwrap();
    ev.hcl_report[1400] ^= 1;
    let parts = coco_parts(&ev);
    let collateral = Collateral::from_json(A1_COLLATERAL).unwrap();
    let e = verify_parts(&parts, &TdxVerifier::intel(), &collateral, &AzureTrust::default(), &a1_opts()).unwrap_err();
    assert!(matches!(e, AttestError::Binding(_)), "{e:?}");
    // Unsupported version.
    let mut v: serde_json::Value = serde_json::from_slice(A1_V1).unwrap();
    v["version"] = 7.into();
    let e = verify_a1(&serde_json::to_vec(&v).unwrap(), &a1_opts(), &AzureTrust::default()).unwrap_err();
    assert!(matches!(e, AttestError::Unsupported(_)), "{e:?}");
}

#[test]
fn a2_verifies_without_roots() {
    let a2 = A2::load();
    let collateral = Collateral::from_json(A2_COLLATERAL).unwrap();
    let v = verify_parts_detailed(&a2.parts(), &TdxVerifier::intel(), &collateral, &AzureTrust::default(), &a2_opts())
        .unwrap();
    let c = &v.claims;
    assert_eq!(c.tee, TeeKind::AzTdxVtpm);
    assert_eq!(c.tcb_status, TcbStatus::UpToDate);
    assert_eq!(c.pcrs.len(), 24);
    assert_eq!(hex::encode(c.pcrs[&0]), "561f6f2ff90bf46e5f01b8d7c1bf960c2d64b6483325f18d78217c84630fd353");
    assert_eq!(c.pcrs[&17], [0xff; 32]);
    assert_eq!(
        hex::encode(c.td.mrtd),
        "12bdbc1609ef066db7a9ec7b26d7509346f4ca46e846274096cb25939b1e711944061ca19a30c6743f1e599148eee451"
    );
    assert_eq!(v.tpm_nonce, vec![0u8; 32]);
    assert!(v.ak_cert_subject.unwrap().contains("353c6d9a70bc"));
    // Same result through verify_parts.
    let c2 = verify_parts(&a2.parts(), &TdxVerifier::intel(), &collateral, &AzureTrust::default(), &a2_opts()).unwrap();
    assert_eq!(&c2, c);
}

#[test]
fn a2_with_azure_roots_fails_on_missing_intermediate() {
    let a2 = A2::load();
    let collateral = Collateral::from_json(A2_COLLATERAL).unwrap();
    let e = verify_parts(&a2.parts(), &TdxVerifier::intel(), &collateral, &roots(), &a2_opts()).unwrap_err();
    match e {
        AttestError::CertChain(m) => {
            assert!(m.contains("Global Virtual TPM CA - 03"), "{m}");
            assert!(m.contains("not among the configured"), "{m}");
        }
        e => panic!("expected CertChain, got {e:?}"),
    }
}

#[test]
fn a2_end_to_end_negatives() {
    let a2 = A2::load();
    let collateral = Collateral::from_json(A2_COLLATERAL).unwrap();
    let tdx = TdxVerifier::intel();
    let none = AzureTrust::default();
    // Flipped TPM signature byte.
    let mut parts = a2.parts();
    parts.tpm_quote.signature[0] ^= 1;
    let e = verify_parts(&parts, &tdx, &collateral, &none, &a2_opts()).unwrap_err();
    assert!(matches!(e, AttestError::Signature(_)), "{e:?}");
    // A1's HCL report with A2's quote.
    let a1 = parse_coco_json(A1_V1).unwrap();
    let mut parts = a2.parts();
    parts.hcl_report = &a1.hcl_report;
    let e = verify_parts(&parts, &tdx, &collateral, &none, &a2_opts()).unwrap_err();
    assert!(matches!(e, AttestError::Binding(_)), "{e:?}");
    // A1's TPM quote (signed by another AK).
    let mut parts = a2.parts();
    parts.tpm_quote = a1.tpm_quote.clone();
    let e = verify_parts(&parts, &tdx, &collateral, &none, &a2_opts()).unwrap_err();
    assert!(matches!(e, AttestError::Signature(_)), "{e:?}");
    // Nonce "challenge" expected, quote has zeros.
    let opts = VerifyOptions { expected_nonce: Some(b"challenge".to_vec()), ..a2_opts() };
    let e = verify_parts(&a2.parts(), &tdx, &collateral, &none, &opts).unwrap_err();
    assert!(matches!(e, AttestError::Binding(_)), "{e:?}");
}
