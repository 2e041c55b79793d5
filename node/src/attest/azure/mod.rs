//! Azure TDX confidential VM evidence (az-tdx-vtpm).
//!
//! An Azure TDX CVM runs a paravisor (HCL) that owns a vTPM. Evidence is three
//! pieces that vouch for each other:
//!
//! 1. the **TD quote**, verified against Intel collateral ([`TdxVerifier`]);
//! 2. the **HCL report**: its variable data (with the vTPM attestation key
//!    `HCLAkPub`) hashes to the quote's `report_data[0..32]`, and its TDREPORT
//!    equals the quote body ([`hcl`]);
//! 3. the **vTPM quote**, signed by that AK, carrying the caller's nonce and a
//!    digest of the SHA-256 PCRs ([`tpm`]).
//!
//! Optionally an **AK certificate** from Microsoft's vTPM PKI must certify the
//! same key and, with roots configured, chain to them ([`akcert`]).
//!
//! [`verify_coco_json`] takes CoCo trustee's JSON ([`evidence`]);
//! [`verify_parts`] takes the pieces, for other capture formats.
//! Pure: no I/O, no clock (`VerifyOptions::now`).

pub mod akcert;
pub mod evidence;
pub mod hcl;
pub mod tpm;

#[cfg(test)]
mod tests;

pub use akcert::{pem_to_der, trim_der, AzureTrust};
pub use evidence::{parse_coco_json, CocoEvidence};
pub use tpm::{QuoteInfo, TpmQuote};

use super::tdx::{Collateral, TdxVerifier};
use super::{AttestError, Claims, Result, TeeKind, VerifyOptions};

/// The pieces of Azure TDX CVM evidence, independent of how they were carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AzureEvidenceParts<'a> {
    /// Raw HCL attestation report (`HCLA` ...), as read from the vTPM NV index.
    pub hcl_report: &'a [u8],
    /// Raw binary TDX quote (v4 or v5; trailing zero padding allowed).
    pub td_quote: &'a [u8],
    /// The vTPM quote and its PCR values.
    pub tpm_quote: TpmQuote,
    /// The vTPM AK certificate, DER; trailing zero padding (as read from the
    /// NV index) is trimmed. CoCo evidence has none.
    pub ak_cert_der: Option<&'a [u8]>,
}

/// Everything verification establishes, beyond the [`Claims`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AzureVerified {
    /// `tee = AzTdxVtpm`, TD report of the quote, quoted PCRs.
    pub claims: Claims,
    /// The vTPM quote's `extraData` (the nonce it was asked for).
    pub tpm_nonce: Vec<u8>,
    /// The HCL variable data (JSON: AK/EK JWKs, vm-configuration, user-data),
    /// bound to the TD quote by its hash.
    pub hcl_var_data: Vec<u8>,
    /// Subject of the AK certificate, when one was supplied and checked.
    pub ak_cert_subject: Option<String>,
}

/// Verify trustee `az-tdx-vtpm` evidence JSON (v0 or v1).
#[tracing::instrument(skip_all)]
pub fn verify_coco_json(
    json: &[u8],
    tdx: &TdxVerifier,
    collateral: &Collateral,
    trust: &AzureTrust,
    opts: &VerifyOptions,
) -> Result<Claims> {
    let ev = parse_coco_json(json)?;
    tracing::debug!(version = ev.version, "decoded az-tdx-vtpm evidence");
    let parts = AzureEvidenceParts {
        hcl_report: &ev.hcl_report,
        td_quote: &ev.td_quote,
        tpm_quote: ev.tpm_quote.clone(),
        ak_cert_der: None,
    };
    verify_parts(&parts, tdx, collateral, trust, opts)
}

/// Verify Azure TDX CVM evidence given as parts. See [`verify_parts_detailed`].
pub fn verify_parts(
    parts: &AzureEvidenceParts,
    tdx: &TdxVerifier,
    collateral: &Collateral,
    trust: &AzureTrust,
    opts: &VerifyOptions,
) -> Result<Claims> {
    verify_parts_detailed(parts, tdx, collateral, trust, opts).map(|v| v.claims)
}

/// Verify Azure TDX CVM evidence given as parts:
///
/// 1. TD quote with `tdx` against `collateral` and `opts` (TCB, attributes, time);
/// 2. HCL report: TDX type, SHA-256 of its variable data = quote
///    `report_data[0..32]`, its TDREPORT fields = the quote body;
/// 3. `HCLAkPub` from the variable data;
/// 4. vTPM quote: AK signature, nonce = `opts.expected_nonce` (when given),
///    PCR digest over the supplied SHA-256 PCR values;
/// 5. AK certificate (when supplied) certifies `HCLAkPub`, and chains to
///    `trust.ak_roots` (when configured; then a certificate is required).
#[tracing::instrument(skip_all)]
pub fn verify_parts_detailed(
    parts: &AzureEvidenceParts,
    tdx: &TdxVerifier,
    collateral: &Collateral,
    trust: &AzureTrust,
    opts: &VerifyOptions,
) -> Result<AzureVerified> {
    // Azure's nonce lives in the vTPM quote, not in the TD's report_data
    // (which carries the HCL variable-data hash), so the TD quote is verified
    // without it.
    let td_opts = VerifyOptions { expected_nonce: None, ..opts.clone() };
    let mut claims = tdx.verify(parts.td_quote, collateral, &td_opts)?;

    let body = hcl::quote_body(parts.td_quote)?;
    // The verifier and our body parse must agree on what was signed.
    if claims.td.report_data[..] != body[520..584] || claims.td.mrtd[..] != body[136..184] {
        return Err(AttestError::Malformed("TD quote body parsed inconsistently (is the quote raw binary?)".into()));
    }
    let hcl = hcl::HclBinding::parse(parts.hcl_report)?;
    hcl.check_quote_body(body)?;

    let ak = hcl.ak_pub()?;
    let tpm = tpm::verify_quote(&parts.tpm_quote, &ak, opts.expected_nonce.as_deref())?;

    let ak_cert_subject = match parts.ak_cert_der {
        Some(der) => Some(akcert::verify_ak_cert(der, &ak, trust, opts.now)?),
        None if trust.roots_configured() => {
            return Err(AttestError::CertChain(
                "Azure AK roots are configured but the evidence carries no AK certificate (CoCo az-tdx-vtpm evidence never does); remove the AK roots to rely on the TD quote -> HCL -> AK binding alone".into(),
            ))
        }
        None => None,
    };

    claims.tee = TeeKind::AzTdxVtpm;
    claims.pcrs = tpm.pcrs;
    Ok(AzureVerified { claims, tpm_nonce: tpm.info.extra_data, hcl_var_data: hcl.var_data().to_vec(), ak_cert_subject })
}
