//! TDX DCAP verification over real quotes and collateral: every case of
//! `tests/data/attestation/README.md`, the derived negatives listed there, the
//! cache, and agreement with dcap-qvl's own verifier.

use guardian_node::attest::tdx::{Collateral, TdxVerifier};
use guardian_node::attest::{AttestError, Claims, TcbStatus, VerifyOptions};
use guardian_tests::cases::{self, Expect, TdxCase, TDX_CASES};
use guardian_tests::fixtures;

fn collateral(rel: &str) -> Collateral {
    Collateral::from_json(&fixtures::read(rel)).expect("collateral JSON")
}

fn verify_with(case: &TdxCase, quote: &[u8], f: impl FnOnce(&mut VerifyOptions)) -> Result<Claims, AttestError> {
    let mut opts = VerifyOptions::at(case.at);
    f(&mut opts);
    TdxVerifier::intel().verify(quote, &collateral(case.collateral), &opts)
}

fn verify_case(case: &TdxCase) -> Result<Claims, AttestError> {
    verify_with(case, &case.quote.load(), |_| {})
}

fn assert_err(r: Result<Claims, AttestError>, variant: &str, contains: &str, ctx: &str) {
    match r {
        Ok(c) => panic!("{ctx}: expected {variant} error containing {contains:?}, verified with {:?}", c.tcb_status),
        Err(e) => {
            let dbg = format!("{e:?}");
            assert!(dbg.starts_with(variant), "{ctx}: expected {variant}, got {dbg}");
            assert!(
                e.to_string().to_lowercase().contains(&contains.to_lowercase()),
                "{ctx}: error {e} does not mention {contains:?}"
            );
        }
    }
}

fn sorted(v: &[impl AsRef<str>]) -> Vec<String> {
    let mut v: Vec<String> = v.iter().map(|s| s.as_ref().to_string()).collect();
    v.sort();
    v
}

#[test]
fn every_listed_case_gets_its_expected_verdict() {
    for case in TDX_CASES {
        let result = verify_case(case);
        match case.expect {
            Expect::Ok { status, advisories } => {
                let claims = result.unwrap_or_else(|e| panic!("{}: expected OK, got {e}", case.id));
                assert_eq!(claims.tcb_status.as_str(), status, "{}", case.id);
                assert_eq!(sorted(&claims.advisory_ids), sorted(advisories), "{}", case.id);
                assert!(!claims.td.td_attributes.debug(), "{}", case.id);
            }
            Expect::Err { variant, contains } => assert_err(result, variant, contains, case.id),
        }
    }
}

#[test]
fn t8_azure_td_passes_only_with_sept_ve_relaxed() {
    let t8 = cases::tdx_case("T8");
    let claims = verify_with(t8, &t8.quote.load(), |o| o.require_sept_ve_disable = false).expect("T8 relaxed");
    assert_eq!(claims.tcb_status, TcbStatus::OutOfDate);
    assert_eq!(sorted(&claims.advisory_ids), sorted(&["INTEL-SA-00960", "INTEL-SA-00982", "INTEL-SA-00986"]));
    assert!(!claims.td.td_attributes.sept_ve_disable());

    let t8b = cases::tdx_case("T8b");
    let claims = verify_with(t8b, &t8b.quote.load(), |o| o.require_sept_ve_disable = false).expect("T8b relaxed");
    assert_eq!(claims.tcb_status, TcbStatus::OutOfDate);
    assert_eq!(claims.advisory_ids.len(), 10, "T8b lists 10 advisories: {:?}", claims.advisory_ids);
}

#[test]
fn b1_azure_outdated_tcb_passes_only_with_the_explicit_quirk() {
    let b1 = cases::tdx_case("B1");
    let claims = verify_with(b1, &b1.quote.load(), |o| o.azure_tcb_quirk = true).expect("B1 with quirk");
    assert_eq!(claims.tcb_status, TcbStatus::UpToDate);
    assert_eq!(claims.tcb_override, Some("azure-sgx-tcb-component-7-capped-at-3"));
    // Without the quirk, a quote that matches strictly never reports an override.
    let t1 = verify_case(cases::tdx_case("T1")).unwrap();
    assert_eq!(t1.tcb_override, None);
}

#[test]
fn claims_carry_the_quote_fields() {
    let t1 = verify_case(cases::tdx_case("T1")).unwrap();
    let raw = fixtures::read("phala-dcap-qvl/tdx_quote");
    // v4 layout: 48-byte header, then the TD report; MRTD at 136, RTMR0 at 328, report_data at 520.
    assert_eq!(&t1.td.mrtd[..], &raw[48 + 136..48 + 184]);
    assert_eq!(&t1.td.rtmr[0][..], &raw[48 + 328..48 + 376]);
    assert_eq!(&t1.td.report_data[..], &raw[48 + 520..48 + 584]);
    assert_eq!(t1.fmspc.map(hex::encode).as_deref(), Some("b0c06f000000"));
    assert!(t1.td.td_attributes.sept_ve_disable());
}

#[test]
fn td15_extended_body_is_verified_and_its_extension_is_signed() {
    let x1 = cases::tdx_case("X1");
    let raw = x1.quote.load();
    assert_eq!(&raw[48..50], &[4, 0], "body type 4");
    assert!(verify_case(x1).is_ok());
    // The 1.5-extended fields (td_id at body offset 649, last byte at 884) are covered by the signature.
    for offset in [48 + 6 + 649, 48 + 6 + 884] {
        let mut q = raw.clone();
        q[offset] ^= 1;
        assert_err(verify_with(x1, &q, |_| {}), "Signature", "quote signature", "TD15Ex extension");
    }
}

#[test]
fn hex_text_and_zero_padding_are_accepted() {
    let t1 = cases::tdx_case("T1");
    let raw = t1.quote.load();
    let expected = verify_case(t1).unwrap();
    let mut padded = raw.clone();
    padded.extend_from_slice(&[0u8; 3000]);
    assert_eq!(verify_with(t1, &padded, |_| {}).unwrap(), expected);
    let hex_text = format!("0x{}\n", hex::encode(&raw));
    assert_eq!(verify_with(t1, hex_text.as_bytes(), |_| {}).unwrap(), expected);
    let mut hex_padded = hex::encode(&raw).into_bytes();
    hex_padded.extend_from_slice(&[0u8; 16]);
    assert_eq!(verify_with(t1, &hex_padded, |_| {}).unwrap(), expected);
    // Bytes after the self-delimiting quote are outside what is signed and are ignored
    // (B4's file carries such a trailer), but not without bound.
    let mut trailing = raw.clone();
    trailing.extend_from_slice(b"trailer");
    assert_eq!(verify_with(t1, &trailing, |_| {}).unwrap(), expected);
    trailing.extend_from_slice(&vec![b'x'; 70_000]);
    assert_err(verify_with(t1, &trailing, |_| {}), "Malformed", "", "huge trailer");
}

/// Derived negatives from the README, all on T1.
#[test]
fn derived_negatives_on_t1() {
    let t1 = cases::tdx_case("T1");
    let raw = t1.quote.load();
    let flip = |at: usize| {
        let mut q = raw.clone();
        q[at] ^= 0x01;
        q
    };
    let with_time = |at: u64| TdxVerifier::intel().verify(&raw, &collateral(t1.collateral), &VerifyOptions::at(at));
    assert_err(with_time(cases::T_2025_06_20 + 30 * 86_400), "CollateralTime", "TCB info expired", "expired");
    assert_err(with_time(cases::T_2025_06_20 - 2 * 86_400), "CollateralTime", "not valid before", "not yet valid");
    for (at, what) in [(568, "report_data"), (184, "MRTD"), (646, "quote signature")] {
        assert_err(verify_with(t1, &flip(at), |_| {}), "Signature", "quote signature is invalid", what);
    }
    let qe_report_byte = 48 + 584 + 4 + 128 + 6 + 64;
    assert_err(verify_with(t1, &flip(qe_report_byte), |_| {}), "Signature", "QE report", "QE report byte");

    let edit_collateral = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut v: serde_json::Value = serde_json::from_slice(&fixtures::read(t1.collateral)).unwrap();
        f(&mut v);
        Collateral::from_json(&serde_json::to_vec(&v).unwrap()).unwrap()
    };
    let run = |c: Collateral| TdxVerifier::intel().verify(&raw, &c, &VerifyOptions::at(t1.at));
    let edit_str = |field: &'static str, from: &'static str, to: &'static str| {
        edit_collateral(&move |v| {
            let s = v[field].as_str().unwrap().to_string();
            assert!(s.contains(from), "{field} has no {from}");
            v[field] = s.replacen(from, to, 1).into();
        })
    };
    assert_err(
        run(edit_str("tcb_info", "\"tcbStatus\":\"OutOfDate\"", "\"tcbStatus\":\"UpToDate\"")),
        "Signature",
        "TCB info",
        "edited TCB info",
    );
    assert_err(
        run(edit_str("qe_identity", "\"isvprodid\":2", "\"isvprodid\":3")),
        "Signature",
        "QE identity",
        "edited QE identity",
    );
    let bad_crl = edit_collateral(&|v| {
        let mut crl = hex::decode(v["pck_crl"].as_str().unwrap()).unwrap();
        let last = crl.len() - 1;
        crl[last] ^= 0x01;
        v["pck_crl"] = hex::encode(crl).into();
    });
    assert_err(run(bad_crl), "Collateral", "InvalidCrlSignatureForPublicKey", "flipped PCK CRL");
    let swapped = edit_collateral(&|v| v["tcb_info_issuer_chain"] = v["pck_crl_issuer_chain"].clone());
    assert_err(run(swapped), "CertChain", "CaUsedAsEndEntity", "PCK CRL chain as TCB chain");

    // FMSPC mismatch: T1's quote (B0C06F000000) against 90C06F000000 collateral,
    // at a time inside that collateral's window.
    let other = collateral("assembled-collateral/ada_2025-06_90c06f000000.json");
    let r = TdxVerifier::intel().verify(&raw, &other, &VerifyOptions::at(cases::T_2025_06_15));
    assert_err(r, "Collateral", "FMSPC mismatch", "FMSPC");
}

#[test]
fn hostile_input_is_refused_without_panic() {
    let t1 = cases::tdx_case("T1");
    let raw = t1.quote.load();
    let c = collateral(t1.collateral);
    let v = TdxVerifier::intel();
    let opts = VerifyOptions::at(t1.at);
    let quote_len = 4936; // T1's quote proper; the file adds zero padding
    for len in (0..quote_len).step_by(97).chain([quote_len - 1]) {
        assert!(v.verify(&raw[..len], &c, &opts).is_err(), "truncated at {len}");
    }
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..200 {
        let mut q = raw.clone();
        for _ in 0..8 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let i = (seed as usize) % q.len();
            q[i] = (seed >> 32) as u8;
        }
        let _ = v.verify(&q, &c, &opts);
    }
    assert!(matches!(v.verify(b"", &c, &opts), Err(AttestError::Malformed(_))));
    assert!(matches!(v.verify(&[0xffu8; 100], &c, &opts), Err(AttestError::WrongTee { .. })));
}

#[test]
fn the_cache_never_weakens_a_check() {
    let t1 = cases::tdx_case("T1");
    let raw = t1.quote.load();
    let c = collateral(t1.collateral);
    let v = TdxVerifier::intel();
    let ok = v.verify(&raw, &c, &VerifyOptions::at(t1.at)).unwrap();
    // Warm: same result.
    assert_eq!(v.verify(&raw, &c, &VerifyOptions::at(t1.at)).unwrap(), ok);
    // Warm, but past the collateral's window: refused exactly as when cold.
    let late = cases::T_2025_06_20 + 30 * 86_400;
    assert!(matches!(v.verify(&raw, &c, &VerifyOptions::at(late)), Err(AttestError::CollateralTime(_))));
    // Warm, tampered quote: the per-quote signatures are still checked.
    let mut bad = raw.clone();
    bad[568] ^= 1;
    assert!(matches!(v.verify(&bad, &c, &VerifyOptions::at(t1.at)), Err(AttestError::Signature(_))));
    // Warm, debug/SEPT_VE/TCB options still apply per call.
    let t8 = cases::tdx_case("T8");
    let c8 = collateral(t8.collateral);
    let q8 = t8.quote.load();
    let mut relaxed = VerifyOptions::at(t8.at);
    relaxed.require_sept_ve_disable = false;
    assert!(v.verify(&q8, &c8, &relaxed).is_ok());
    assert!(matches!(v.verify(&q8, &c8, &VerifyOptions::at(t8.at)), Err(AttestError::Attributes(_))));
}

/// Our verifier and dcap-qvl's must agree on every real sample where dcap-qvl's
/// fixed policy applies (it always requires SEPT_VE_DISABLE and refuses debug).
#[test]
fn agrees_with_dcap_qvl_on_every_sample() {
    for case in TDX_CASES.iter().filter(|c| c.id != "T9") {
        let raw = guardian_node::attest::tdx::decode_input(&case.quote.load()).unwrap().into_owned();
        let dcap = dcap_qvl::verify::verify(&raw, collateral(case.collateral).inner(), case.at);
        let ours = verify_case(case);
        assert_eq!(dcap.is_ok(), case.dcap_qvl_ok, "{}: dcap-qvl said {:?}", case.id, dcap.as_ref().err());
        assert_eq!(
            ours.is_ok(),
            dcap.is_ok(),
            "{}: ours {:?} vs dcap-qvl {:?}",
            case.id,
            ours.as_ref().err(),
            dcap.as_ref().err()
        );
        if let (Ok(ours), Ok(dcap)) = (ours, dcap) {
            assert_eq!(ours.tcb_status.as_str(), dcap.status, "{}", case.id);
            assert_eq!(sorted(&ours.advisory_ids), sorted(&dcap.advisory_ids), "{}", case.id);
        }
    }
}
