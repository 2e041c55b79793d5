//! Intel TDX DCAP quote verification (quote versions 4 and 5, every TD body type).
//!
//! The steps are Intel's (and dcap-qvl's, whose parsers and collateral types
//! this builds on): collateral signatures and CRLs, the PCK chain, the QE
//! report signature and identity, the quote signature, TCB level matching, and
//! TD attributes. They are arranged so that what depends only on the
//! collateral ([`collateral`]) or only on the platform's PCK chain ([`pck`]) is
//! verified once and cached, while the two signatures that differ per quote
//! are checked every time. Why not `dcap_qvl::verify` alone: it hard-codes the
//! SEPT_VE_DISABLE requirement (Azure images lack it; policy must decide) and
//! re-verifies every chain and CRL per quote. `tests/` checks this verifier
//! agrees with `dcap_qvl::verify` on every real sample.
//!
//! - [`collateral`]: collateral parsing, signature/CRL checks, validity windows.
//! - [`pck`]: the PCK certificate chain.
//! - [`tcb`]: TCB level matching and status convergence.
//! - [`cache`]: the bounded digest-keyed cache.

pub mod cache;
pub mod collateral;
pub mod pck;
pub mod tcb;

use std::borrow::Cow;
use std::sync::Arc;

use dcap_qvl::quote::{AuthData, EnclaveReport, Quote, Report, TDAttributes, TDReport10};
use scale::Decode;
use sha2::{Digest, Sha256};

pub use collateral::{Collateral, TrustRoot, VerifiedCollateral, Window};
pub use pck::VerifiedPck;

use super::{AttestError, Claims, Result, TdAttributes as Attrs, TdReport, TeeKind, VerifyOptions};
use cache::Cache;
use collateral::verify_p256;

const TEE_TYPE_TDX: u32 = 0x81;
const TEE_TYPE_SGX: u32 = 0x00;
const INTEL_QE_VENDOR_ID: [u8; 16] =
    [0x93, 0x9a, 0x72, 0x33, 0xf7, 0x9c, 0x4c, 0xa9, 0x94, 0x0a, 0x0d, 0xb3, 0x95, 0x7f, 0x06, 0x07];
const ATTESTATION_KEY_ECDSA_P256: u16 = 2;
const CERT_TYPE_PCK_CHAIN: u16 = 5;
/// Largest quote accepted; real ones are 5–8 KiB.
const MAX_QUOTE_BYTES: usize = 64 * 1024;

/// Verifies TDX quotes against collateral, caching what does not change
/// between quotes from the same platform. Cheap to share across threads.
pub struct TdxVerifier {
    root: TrustRoot,
    collateral: Cache<VerifiedCollateral>,
    pck: Cache<VerifiedPck>,
}

impl TdxVerifier {
    /// A verifier rooted at Intel's SGX root CA.
    pub fn intel() -> Self {
        Self::with_root(TrustRoot::intel())
    }

    pub fn with_root(root: TrustRoot) -> Self {
        TdxVerifier { root, collateral: Cache::new(64), pck: Cache::new(1024) }
    }

    /// Verify a quote. `input` may be the raw quote, the quote as hex text, or
    /// either followed by zero padding.
    #[tracing::instrument(skip_all, name = "tdx.verify", fields(now = opts.now))]
    pub fn verify(&self, input: &[u8], collateral: &Collateral, opts: &VerifyOptions) -> Result<Claims> {
        let raw = decode_input(input)?;
        let quote = parse_quote(&raw)?;
        let auth = match &quote.auth_data {
            AuthData::V4(a) => a.clone().into_v3(),
            AuthData::V3(a) => a.clone(),
        };
        let td = td_report(&quote.report)?;

        let vc = self
            .collateral
            .get_or_try_insert(*collateral.id(), || VerifiedCollateral::verify(collateral, &self.root, opts.now))?;
        vc.window.check(opts.now)?;

        let chain_pem: &[u8] = match &collateral.inner().pck_certificate_chain {
            Some(pem) => pem.as_bytes(),
            None if auth.certification_data.cert_type == CERT_TYPE_PCK_CHAIN => &auth.certification_data.body.data,
            None => {
                return Err(AttestError::Unsupported(format!(
                    "certification data type {} carries no PCK certificate chain; supply collateral with pck_certificate_chain",
                    auth.certification_data.cert_type
                )))
            }
        };
        let pck = self.pck_for(&vc, collateral, chain_pem, opts.now)?;
        pck.window.check(opts.now)?;

        // The two checks that differ for every quote.
        verify_p256(&pck.key, &auth.qe_report, &auth.qe_report_signature)
            .map_err(|_| AttestError::Signature("QE report is not signed by the platform's PCK key".into()))?;
        let qe_report = EnclaveReport::decode(&mut &auth.qe_report[..])
            .map_err(|e| AttestError::Malformed(format!("QE report: {e}")))?;
        let mut h = Sha256::new();
        h.update(auth.ecdsa_attestation_key);
        h.update(&auth.qe_auth_data.data);
        if h.finalize()[..] != qe_report.report_data[..32] {
            return Err(AttestError::Binding(
                "QE report does not vouch for the quote's attestation key (report_data != SHA-256(key || auth data))"
                    .into(),
            ));
        }
        let mut ak = [0x04u8; 65];
        ak[1..].copy_from_slice(&auth.ecdsa_attestation_key);
        let signed = raw
            .get(..quote.signed_length())
            .ok_or_else(|| AttestError::Malformed("quote shorter than its signed part".into()))?;
        verify_p256(&ak, signed, &auth.ecdsa_signature).map_err(|_| {
            AttestError::Signature(
                "quote signature is invalid: the TD report was altered or not produced by this quoting enclave".into(),
            )
        })?;

        let tcb = tcb::appraise(
            &vc.levels,
            &vc.qe_identity,
            &pck.svns,
            td,
            quote.report.as_td15().map(|r| &r.tee_tcb_svn2),
            &qe_report,
            opts.azure_tcb_quirk,
        )?;
        check_attributes(&quote.report, opts)?;
        if let Some(nonce) = &opts.expected_nonce {
            if nonce.is_empty() || nonce.len() > 64 || td.report_data[..nonce.len()] != nonce[..] {
                return Err(AttestError::Binding("quote report_data does not start with the expected nonce".into()));
            }
        }

        Ok(Claims {
            tee: TeeKind::Tdx,
            tcb_status: tcb.status,
            advisory_ids: tcb.advisory_ids,
            fmspc: Some(pck.svns.fmspc),
            tcb_override: tcb.override_used,
            td: TdReport {
                mrtd: td.mr_td,
                rtmr: [td.rt_mr0, td.rt_mr1, td.rt_mr2, td.rt_mr3],
                mrconfigid: td.mr_config_id,
                mrowner: td.mr_owner,
                mrownerconfig: td.mr_owner_config,
                mrseam: td.mr_seam,
                tee_tcb_svn: td.tee_tcb_svn,
                td_attributes: Attrs::from_le_bytes(td.td_attributes),
                xfam: td.xfam,
                report_data: td.report_data,
            },
            pcrs: Default::default(),
            events: Vec::new(),
        })
    }

    fn pck_for(
        &self,
        vc: &VerifiedCollateral,
        collateral: &Collateral,
        chain_pem: &[u8],
        now: u64,
    ) -> Result<Arc<VerifiedPck>> {
        // The chain's validity depends on the CRLs, so the key covers both.
        let mut h = Sha256::new();
        h.update(collateral.id());
        h.update(chain_pem);
        self.pck.get_or_try_insert(h.finalize().into(), || VerifiedPck::verify(chain_pem, vc, &self.root, now))
    }
}

/// Accept raw bytes, hex text (optionally `0x`-prefixed, with whitespace), and
/// trailing zero padding after either.
pub fn decode_input(input: &[u8]) -> Result<Cow<'_, [u8]>> {
    let trimmed = trim_zero_padding(input);
    let text = trimmed.trim_ascii();
    let text = text.strip_prefix(b"0x").unwrap_or(text);
    let looks_hex = !text.is_empty() && text.iter().all(|b| b.is_ascii_hexdigit() || b.is_ascii_whitespace());
    let bytes: Cow<'_, [u8]> = if looks_hex {
        let digits: Vec<u8> = text.iter().copied().filter(|b| !b.is_ascii_whitespace()).collect();
        Cow::Owned(hex::decode(digits).map_err(|e| AttestError::Malformed(format!("hex quote: {e}")))?)
    } else {
        Cow::Borrowed(input)
    };
    if bytes.len() > MAX_QUOTE_BYTES * 2 {
        return Err(AttestError::Malformed(format!("{} bytes is too large for a quote", bytes.len())));
    }
    Ok(bytes)
}

fn trim_zero_padding(b: &[u8]) -> &[u8] {
    let end = b.iter().rposition(|&x| x != 0).map_or(0, |i| i + 1);
    &b[..end]
}

/// Parse a quote and check its header.
fn parse_quote(raw: &[u8]) -> Result<Quote> {
    if raw.trim_ascii_start().starts_with(b"{") {
        return Err(AttestError::Malformed(
            "this is JSON, not a TDX quote: pass the quote itself (raw or hex), or CoCo az-tdx-vtpm / sim evidence with its --kind".into(),
        ));
    }
    if raw.len() < 48 {
        return Err(AttestError::Malformed(format!("{} bytes is too short for a quote header", raw.len())));
    }
    let version = u16::from_le_bytes([raw[0], raw[1]]);
    let tee_type = u32::from_le_bytes([raw[4], raw[5], raw[6], raw[7]]);
    match tee_type {
        TEE_TYPE_TDX => {}
        TEE_TYPE_SGX => {
            return Err(AttestError::WrongTee { found: "an SGX enclave quote".into(), expected: "a TDX quote".into() })
        }
        other => {
            return Err(AttestError::WrongTee { found: format!("TEE type {other:#x}"), expected: "a TDX quote".into() })
        }
    }
    if !(4..=5).contains(&version) {
        return Err(AttestError::Unsupported(format!("TDX quote version {version}; versions 4 and 5 are supported")));
    }
    let mut rest = raw;
    let quote = Quote::decode(&mut rest).map_err(|e| AttestError::Malformed(format!("TDX quote: {e}")))?;
    // The quote is self-delimiting and signed; bytes after it (zero padding
    // from capture buffers, or a tool's trailer) cannot change any claim.
    if rest.len() > MAX_QUOTE_BYTES {
        return Err(AttestError::Malformed(format!("{} bytes after the quote", rest.len())));
    }
    if quote.header.qe_vendor_id != INTEL_QE_VENDOR_ID {
        return Err(AttestError::Unsupported(
            "quote is not from Intel's quoting enclave (unknown QE vendor id)".into(),
        ));
    }
    if quote.header.attestation_key_type != ATTESTATION_KEY_ECDSA_P256 {
        return Err(AttestError::Unsupported(format!(
            "attestation key type {}; only ECDSA P-256 is supported",
            quote.header.attestation_key_type
        )));
    }
    Ok(quote)
}

fn td_report(report: &Report) -> Result<&TDReport10> {
    report
        .as_td10()
        .ok_or_else(|| AttestError::WrongTee { found: "an SGX enclave report".into(), expected: "a TD report".into() })
}

/// TD attributes: debug and profiling are never acceptable; SEPT_VE_DISABLE is
/// required unless the options relax it; service-TD binding is not supported.
fn check_attributes(report: &Report, opts: &VerifyOptions) -> Result<()> {
    let td = td_report(report)?;
    let a = TDAttributes::parse(td.td_attributes).map_err(|e| AttestError::Malformed(format!("TD attributes: {e}")))?;
    let fail = |m: &str| Err(AttestError::Attributes(m.into()));
    if a.tud & 0x01 != 0 {
        return fail("debug mode is enabled (TUD.DEBUG): the host can read and change the TD's memory");
    }
    if a.tud & 0x70 != 0 {
        return fail("TD profiling is enabled (TUD bits 4-6)");
    }
    if a.reserved != 0 {
        return fail("reserved TD attribute bits are set");
    }
    if a.sec.migratable {
        return fail("TD is migratable (SEC.MIGRATABLE)");
    }
    if a.sec.servtd_ext {
        return fail("TD is bound to service TDs (SEC.SERVTD_EXT), which Guardian does not support");
    }
    if let Some(td15) = report.as_td15() {
        if td15.mr_service_td != [0u8; 48] {
            return fail("TD is bound to a service TD (non-zero MR_SERVICETD), which Guardian does not support");
        }
    }
    if opts.require_sept_ve_disable && !a.sec.sept_ve_disable {
        return fail("SEPT_VE_DISABLE is not enabled; it is required unless relaxed explicitly (policy require_sept_ve_disable = false, or guardctl --allow-missing-sept-ve-disable), which only images known to need it should be (e.g. some Azure CVMs)");
    }
    Ok(())
}
