//! CoCo (trustee `az-tdx-vtpm`) evidence JSON, versions 0 and 1, decoded to bytes.
//!
//! - v0 (no `version` field): `hcl_report` and `td_quote` are JSON arrays of
//!   byte values; `tpm_quote` is az-tdx-vtpm's serde `Quote`, with
//!   `signature`, `message` as byte arrays and `pcrs` as 24 arrays of 32 bytes.
//! - v1 (`"version": 1`): `hcl_report` and `td_quote` are base64url strings
//!   *with* `=` padding (serde_with `Base64<UrlSafe>`); `tpm_quote` has
//!   `signature`, `message` and each of `pcrs` as hex strings.
//!
//! Any other `version` is `Unsupported`.

use base64::Engine as _;
use serde::Deserialize;

use super::tpm::TpmQuote;
use crate::attest::{AttestError, Result};

/// Most PCR values a quote may carry (PCR indices are `u8`).
const MAX_PCRS: usize = 256;

/// Decoded CoCo evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CocoEvidence {
    /// Format version the evidence was in (0 or 1).
    pub version: u32,
    pub hcl_report: Vec<u8>,
    pub td_quote: Vec<u8>,
    pub tpm_quote: TpmQuote,
}

#[derive(Deserialize)]
struct Probe {
    #[serde(default)]
    version: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct V0 {
    tpm_quote: V0Quote,
    hcl_report: Vec<u8>,
    td_quote: Vec<u8>,
}

#[derive(Deserialize)]
struct V0Quote {
    signature: Vec<u8>,
    message: Vec<u8>,
    pcrs: Vec<Vec<u8>>,
}

#[derive(Deserialize)]
struct V1 {
    tpm_quote: V1Quote,
    hcl_report: String,
    td_quote: String,
}

#[derive(Deserialize)]
struct V1Quote {
    signature: String,
    message: String,
    pcrs: Vec<String>,
}

fn malformed(e: impl std::fmt::Display) -> AttestError {
    AttestError::Malformed(format!("az-tdx-vtpm evidence JSON: {e}"))
}

fn pcr_values(pcrs: Vec<Vec<u8>>) -> Result<Vec<[u8; 32]>> {
    if pcrs.len() > MAX_PCRS {
        return Err(malformed(format!("{} PCR values, at most {MAX_PCRS}", pcrs.len())));
    }
    pcrs.into_iter()
        .enumerate()
        .map(|(i, p)| {
            <[u8; 32]>::try_from(p.as_slice())
                .map_err(|_| malformed(format!("PCR {i} is {} bytes, expected 32 (SHA-256 bank)", p.len())))
        })
        .collect()
}

fn hex_field(s: &str, what: &str) -> Result<Vec<u8>> {
    hex::decode(s).map_err(|e| malformed(format!("tpm_quote.{what} is not hex: {e}")))
}

fn b64url_field(s: &str, what: &str) -> Result<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE
        .decode(s)
        .map_err(|e| malformed(format!("{what} is not padded base64url: {e}")))
}

/// Decode trustee az-tdx-vtpm evidence JSON (v0 or v1).
pub fn parse_coco_json(json: &[u8]) -> Result<CocoEvidence> {
    let probe: Probe = serde_json::from_slice(json).map_err(malformed)?;
    match probe.version {
        None => {
            let v: V0 = serde_json::from_slice(json).map_err(malformed)?;
            Ok(CocoEvidence {
                version: 0,
                hcl_report: v.hcl_report,
                td_quote: v.td_quote,
                tpm_quote: TpmQuote {
                    signature: v.tpm_quote.signature,
                    message: v.tpm_quote.message,
                    pcrs: pcr_values(v.tpm_quote.pcrs)?,
                },
            })
        }
        Some(serde_json::Value::Number(n)) if n.as_u64() == Some(1) => {
            let v: V1 = serde_json::from_slice(json).map_err(malformed)?;
            let pcrs = v
                .tpm_quote
                .pcrs
                .iter()
                .enumerate()
                .map(|(i, p)| hex_field(p, &format!("pcrs[{i}]")))
                .collect::<Result<Vec<_>>>()?;
            Ok(CocoEvidence {
                version: 1,
                hcl_report: b64url_field(&v.hcl_report, "hcl_report")?,
                td_quote: b64url_field(&v.td_quote, "td_quote")?,
                tpm_quote: TpmQuote {
                    signature: hex_field(&v.tpm_quote.signature, "signature")?,
                    message: hex_field(&v.tpm_quote.message, "message")?,
                    pcrs: pcr_values(pcrs)?,
                },
            })
        }
        Some(serde_json::Value::Number(n)) => Err(AttestError::Unsupported(format!(
            "az-tdx-vtpm evidence version {n}; supported: 0 (no version field) and 1"
        ))),
        Some(other) => Err(malformed(format!("\"version\" must be a number, got {other}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    macro_rules! data {
        ($p:literal) => {
            include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/attestation/", $p))
        };
    }
    const V0_JSON: &[u8] = data!("trustee/az-tdx-vtpm/evidence-v0.json");
    const V1_JSON: &[u8] = data!("trustee/az-tdx-vtpm/evidence-v1.json");

    #[test]
    fn v0_and_v1_decode_to_identical_parts() {
        let v0 = parse_coco_json(V0_JSON).unwrap();
        let v1 = parse_coco_json(V1_JSON).unwrap();
        assert_eq!(v0.version, 0);
        assert_eq!(v1.version, 1);
        assert_eq!(v0.hcl_report, v1.hcl_report);
        assert_eq!(v0.td_quote, v1.td_quote);
        assert_eq!(v0.tpm_quote, v1.tpm_quote);
        // And equal to the loose files in the same directory.
        assert_eq!(v1.hcl_report, data!("trustee/az-tdx-vtpm/hcl-report.bin"));
        assert_eq!(v1.td_quote, data!("trustee/az-tdx-vtpm/td-quote.bin"));
        #[derive(Deserialize)]
        struct Q {
            signature: String,
            message: String,
        }
        let q: Q = serde_json::from_slice(data!("trustee/az-tdx-vtpm/tpm-quote-v1.json")).unwrap();
        assert_eq!(hex::encode(&v1.tpm_quote.signature), q.signature);
        assert_eq!(hex::encode(&v1.tpm_quote.message), q.message);
        assert_eq!(v1.tpm_quote.pcrs.len(), 24);
        assert_eq!(v1.tpm_quote.signature.len(), 256);
    }

    #[test]
    fn unknown_version_is_unsupported() {
        let mut v: serde_json::Value = serde_json::from_slice(V1_JSON).unwrap();
        v["version"] = 2.into();
        let e = parse_coco_json(&serde_json::to_vec(&v).unwrap()).unwrap_err();
        assert!(matches!(e, AttestError::Unsupported(ref m) if m.contains("version 2")), "{e}");
        v["version"] = "1".into();
        assert!(matches!(parse_coco_json(&serde_json::to_vec(&v).unwrap()), Err(AttestError::Malformed(_))));
    }

    #[test]
    fn v1_encodings_are_strict() {
        let v: serde_json::Value = serde_json::from_slice(V1_JSON).unwrap();
        // Standard base64 alphabet instead of base64url.
        let mut w = v.clone();
        let std = w["hcl_report"].as_str().unwrap().replace('-', "+").replace('_', "/");
        w["hcl_report"] = std.into();
        assert!(matches!(parse_coco_json(&serde_json::to_vec(&w).unwrap()), Err(AttestError::Malformed(_))));
        // Padding stripped: the real files pad, so we require it.
        let mut w = v.clone();
        let unpadded = w["td_quote"].as_str().unwrap().trim_end_matches('=').to_string();
        w["td_quote"] = unpadded.into();
        assert!(matches!(parse_coco_json(&serde_json::to_vec(&w).unwrap()), Err(AttestError::Malformed(_))));
        // Short PCR.
        let mut w = v.clone();
        w["tpm_quote"]["pcrs"][3] = "00".into();
        let e = parse_coco_json(&serde_json::to_vec(&w).unwrap()).unwrap_err();
        assert!(matches!(e, AttestError::Malformed(ref m) if m.contains("PCR 3")), "{e}");
        // Non-hex signature.
        let mut w = v;
        w["tpm_quote"]["signature"] = "zz".into();
        assert!(matches!(parse_coco_json(&serde_json::to_vec(&w).unwrap()), Err(AttestError::Malformed(_))));
    }

    #[test]
    fn garbage_json_never_panics() {
        for input in [
            &b""[..],
            b"null",
            b"[]",
            b"{}",
            b"{\"version\":1}",
            b"{\"version\":null}",
            b"{\"version\":-1}",
            b"{\"version\":1.5}",
            &V1_JSON[..V1_JSON.len() / 2],
            &V0_JSON[..V0_JSON.len() - 3],
        ] {
            assert!(parse_coco_json(input).is_err(), "{}", String::from_utf8_lossy(input));
        }
    }
}
