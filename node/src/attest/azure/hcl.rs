//! HCL report: binds the paravisor's variable data (with the vTPM AK) to the TD quote.
//!
//! Azure's paravisor (HCL) asks the TDX module for a TDREPORT whose
//! `REPORTDATA[0..32]` is SHA-256 of a JSON "variable data" blob that carries
//! the vTPM attestation key (`HCLAkPub`). It returns the report and the blob
//! as the *HCL report*; the TD quote is the same TDREPORT signed by the QE.
//! The TDREPORT inside the HCL report is only MAC'd (not verifiable off the
//! host), so it is trusted exactly as far as it equals the signed quote body.
//!
//! Layout (az-cvm-vtpm `hcl` module): 32-byte header (`HCLA`, ...), the
//! hardware report slot at 32 (TDREPORT, 1024 bytes), IGVM request data at
//! 1216 (data_size, version, report_type = 4 for TDX, hash_type = 1 for
//! SHA-256, var_data_size) and the variable data at 1236.

use az_cvm_vtpm::hcl::{HclReport, ReportType};
use az_cvm_vtpm::tdx::TdReport as HclTdReport;
use rsa::pkcs8::DecodePublicKey;
use rsa::traits::PublicKeyParts;
use rsa::RsaPublicKey;

use crate::attest::{AttestError, Result};

const HCL_MAGIC: &[u8; 4] = b"HCLA";
/// Offset of `IgvmRequestData.report_data_hash_type` in the HCL report.
const HASH_TYPE_OFFSET: usize = 1216 + 12;
const IGVM_HASH_SHA256: u32 = 1;
/// TDREPORT `REPORTTYPE.type` for TDX.
const TDX_REPORT_TYPE: u8 = 0x81;
/// Size of a TD quote body (TD 1.0 fields; TD 1.5 bodies start with the same).
pub const TD_QUOTE_BODY_LEN: usize = 584;
/// Smallest AK we accept.
const MIN_AK_BITS: usize = 2048;

/// A parsed HCL report of a TDX CVM.
pub struct HclBinding {
    report: HclReport,
    td: HclTdReport,
}

impl std::fmt::Debug for HclBinding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HclBinding").field("var_data_len", &self.report.var_data().len()).finish_non_exhaustive()
    }
}

impl HclBinding {
    /// Parse an HCL report and check it carries a TDX TDREPORT and a SHA-256
    /// variable-data hash.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        if bytes.get(..4) != Some(HCL_MAGIC.as_slice()) {
            return Err(AttestError::Malformed("HCL report does not start with the \"HCLA\" signature".into()));
        }
        let report = HclReport::new(bytes.to_vec()).map_err(|e| AttestError::Malformed(format!("HCL report: {e}")))?;
        if report.report_type() != ReportType::Tdx {
            return Err(AttestError::WrongTee {
                found: format!("HCL report of type {:?}", report.report_type()),
                expected: "TDX (az-tdx-vtpm)".into(),
            });
        }
        // HclReport::new checked the length covers the fixed header; read the
        // hash type ourselves because `var_data_sha256` panics on others.
        let hash_type = bytes
            .get(HASH_TYPE_OFFSET..HASH_TYPE_OFFSET + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or_else(|| AttestError::Malformed("HCL report truncated".into()))?;
        if hash_type != IGVM_HASH_SHA256 {
            return Err(AttestError::Unsupported(format!(
                "HCL report hashes its variable data with IGVM hash type {hash_type}; only SHA-256 (1) is supported"
            )));
        }
        let td = HclTdReport::try_from(&report).map_err(|e| AttestError::Malformed(format!("HCL TD report: {e}")))?;
        if td.report_mac.reporttype.r#type != TDX_REPORT_TYPE {
            return Err(AttestError::WrongTee {
                found: format!("HCL hardware report type {:#04x}", td.report_mac.reporttype.r#type),
                expected: "TDX TDREPORT (0x81)".into(),
            });
        }
        Ok(HclBinding { report, td })
    }

    /// The variable data (JSON with `HCLAkPub`, `HCLEkPub`, VM configuration, user data).
    pub fn var_data(&self) -> &[u8] {
        self.report.var_data()
    }

    /// SHA-256 of the variable data, which the TD's `REPORTDATA[0..32]` must carry.
    pub fn var_data_sha256(&self) -> [u8; 32] {
        // Hash type checked in `parse`.
        self.report.var_data_sha256()
    }

    /// The 584 bytes a TD quote body must hold for this TDREPORT.
    pub fn expected_quote_body(&self) -> [u8; TD_QUOTE_BODY_LEN] {
        let t = &self.td;
        let info = &t.tee_tcb_info;
        let mut b = [0u8; TD_QUOTE_BODY_LEN];
        let mut at = 0;
        let mut put = |s: &[u8]| {
            b[at..at + s.len()].copy_from_slice(s);
            at += s.len();
        };
        // TEE_TCB_INFO: valid[8], tee_tcb_svn[16], mrseam[48], mrsignerseam[48], attributes[8], ...
        put(&info[8..24]);
        put(&info[24..72]);
        put(&info[72..120]);
        put(&info[120..128]);
        // TDINFO
        put(&t.tdinfo.attributes);
        put(&t.tdinfo.xfam);
        put(&t.tdinfo.mrtd);
        put(&t.tdinfo.mrconfigid);
        put(&t.tdinfo.mrowner);
        put(&t.tdinfo.mrownerconfig);
        for r in &t.tdinfo.rtmr {
            put(&r.register_data);
        }
        // REPORTMACSTRUCT.reportdata
        put(&t.report_mac.reportdata);
        b
    }

    /// Check this HCL report against a TD quote's body: the variable-data
    /// hash is in `report_data[0..32]` and every TD report field matches.
    pub fn check_quote_body(&self, body: &[u8; TD_QUOTE_BODY_LEN]) -> Result<()> {
        let vd = self.var_data_sha256();
        if body[520..552] != vd {
            return Err(AttestError::Binding(format!(
                "TD quote report_data[0..32] is {}, but SHA-256 of the HCL variable data (which holds the vTPM AK) is {}",
                hex::encode(&body[520..552]),
                hex::encode(vd)
            )));
        }
        let expected = self.expected_quote_body();
        for (name, start, len) in BODY_FIELDS {
            let r = start..start + len;
            if body[r.clone()] != expected[r.clone()] {
                return Err(AttestError::Binding(format!(
                    "HCL report's TD report does not match the TD quote: {name} is {} in the HCL report, {} in the quote",
                    hex::encode(&expected[r.clone()]),
                    hex::encode(&body[r])
                )));
            }
        }
        Ok(())
    }

    /// The vTPM attestation key `HCLAkPub` from the variable data.
    pub fn ak_pub(&self) -> Result<RsaPublicKey> {
        let jwk = self
            .report
            .ak_pub()
            .map_err(|e| AttestError::Malformed(format!("HCL variable data has no usable HCLAkPub: {e}")))?;
        let public = jwk
            .key
            .to_public()
            .ok_or_else(|| AttestError::Unsupported("HCLAkPub is a symmetric key, expected RSA".into()))?;
        let spki = public.try_to_der().map_err(|e| AttestError::Malformed(format!("HCLAkPub: {e}")))?;
        let ak = RsaPublicKey::from_public_key_der(&spki)
            .map_err(|e| AttestError::Unsupported(format!("HCLAkPub is not a usable RSA public key: {e}")))?;
        if ak.n().bits() < MIN_AK_BITS {
            return Err(AttestError::Unsupported(format!(
                "HCLAkPub is a {}-bit RSA key; at least {MIN_AK_BITS} bits required",
                ak.n().bits()
            )));
        }
        Ok(ak)
    }
}

/// Fields of a TD quote body: (name, offset, length).
const BODY_FIELDS: [(&str, usize, usize); 15] = [
    ("tee_tcb_svn", 0, 16),
    ("mrseam", 16, 48),
    ("mrsignerseam", 64, 48),
    ("seam_attributes", 112, 8),
    ("td_attributes", 120, 8),
    ("xfam", 128, 8),
    ("mrtd", 136, 48),
    ("mrconfigid", 184, 48),
    ("mrowner", 232, 48),
    ("mrownerconfig", 280, 48),
    ("rtmr0", 328, 48),
    ("rtmr1", 376, 48),
    ("rtmr2", 424, 48),
    ("rtmr3", 472, 48),
    ("report_data", 520, 64),
];

/// The TD report body of a raw (binary) TDX quote v4 or v5.
pub fn quote_body(quote: &[u8]) -> Result<&[u8; TD_QUOTE_BODY_LEN]> {
    let version = quote
        .get(..2)
        .map(|b| u16::from_le_bytes([b[0], b[1]]))
        .ok_or_else(|| AttestError::Malformed("TD quote is empty".into()))?;
    let tee_type = quote.get(4..8).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    if tee_type != Some(0x81) {
        return Err(AttestError::Malformed(format!("TD quote header tee_type is {tee_type:x?}, expected 0x81 (TDX)")));
    }
    let start = match version {
        4 => 48,
        5 => {
            let ty = quote.get(48..50).map(|b| u16::from_le_bytes([b[0], b[1]]));
            match ty {
                Some(2) | Some(3) => 54,
                _ => {
                    return Err(AttestError::Unsupported(format!(
                        "TD quote v5 body type {ty:?}; expected 2 (TD 1.0) or 3 (TD 1.5)"
                    )))
                }
            }
        }
        v => return Err(AttestError::Unsupported(format!("TD quote version {v}; expected 4 or 5 (binary quote)"))),
    };
    quote
        .get(start..start + TD_QUOTE_BODY_LEN)
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| AttestError::Malformed(format!("TD quote truncated: {} bytes", quote.len())))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HCL: &[u8] = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/data/attestation/trustee/az-tdx-vtpm/hcl-report.bin"
    ));
    const QUOTE: &[u8] = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/data/attestation/trustee/az-tdx-vtpm/td-quote.bin"
    ));

    fn bind(hcl: &[u8], quote: &[u8]) -> Result<()> {
        HclBinding::parse(hcl)?.check_quote_body(quote_body(quote)?)
    }

    #[test]
    fn a1_hcl_binds_to_quote() {
        let h = HclBinding::parse(HCL).unwrap();
        assert_eq!(
            hex::encode(h.var_data_sha256()),
            "9734504f161d104c74e3165c15f779b06a9bb40dfa71937817d7eee68e593839"
        );
        bind(HCL, QUOTE).unwrap();
        let ak = h.ak_pub().unwrap();
        assert_eq!(ak.n().bits(), 2048);
        let body = quote_body(QUOTE).unwrap();
        assert_eq!(
            hex::encode(&body[136..184]),
            "024a32b070383331181619fa387cb4d55d1e38879f989933055ccad5bc2db795d1737b66205949d15469dc8c1ba7ab7b"
        );
    }

    #[test]
    fn tampered_var_data_fails_binding() {
        let mut h = HCL.to_vec();
        // Inside the JSON variable data (starts at 1236).
        h[1300] ^= 1;
        let e = bind(&h, QUOTE).unwrap_err();
        assert!(matches!(e, AttestError::Binding(ref m) if m.contains("variable data")), "{e}");
    }

    #[test]
    fn tampered_hcl_td_report_fails_binding() {
        // MRTD lives at TDINFO+16 = 32 + 512 + 16.
        let mut h = HCL.to_vec();
        h[32 + 512 + 16] ^= 1;
        let e = bind(&h, QUOTE).unwrap_err();
        assert!(matches!(e, AttestError::Binding(ref m) if m.contains("mrtd")), "{e}");
        // RTMR2.
        let mut h = HCL.to_vec();
        h[32 + 512 + 208 + 96] ^= 1;
        let e = bind(&h, QUOTE).unwrap_err();
        assert!(matches!(e, AttestError::Binding(ref m) if m.contains("rtmr2")), "{e}");
        // tee_tcb_svn inside TEE_TCB_INFO.
        let mut h = HCL.to_vec();
        h[32 + 256 + 8] ^= 1;
        let e = bind(&h, QUOTE).unwrap_err();
        assert!(matches!(e, AttestError::Binding(ref m) if m.contains("tee_tcb_svn")), "{e}");
        // Quote body side: td_attributes.
        let mut q = QUOTE.to_vec();
        q[48 + 120] ^= 1;
        let e = bind(HCL, &q).unwrap_err();
        assert!(matches!(e, AttestError::Binding(ref m) if m.contains("td_attributes")), "{e}");
    }

    #[test]
    fn hcl_structure_errors() {
        let e = HclBinding::parse(&HCL[..1000]).unwrap_err();
        assert!(matches!(e, AttestError::Malformed(_)), "{e}");
        let mut h = HCL.to_vec();
        h[0] = b'X';
        assert!(matches!(HclBinding::parse(&h), Err(AttestError::Malformed(_))));
        // SNP report type.
        let mut h = HCL.to_vec();
        h[1216 + 8] = 2;
        assert!(matches!(HclBinding::parse(&h), Err(AttestError::WrongTee { .. })));
        // SHA-384 var-data hash: az-cvm-vtpm would panic; we refuse.
        let mut h = HCL.to_vec();
        h[HASH_TYPE_OFFSET] = 2;
        assert!(matches!(HclBinding::parse(&h), Err(AttestError::Unsupported(_))));
        // var_data_size beyond the buffer.
        let mut h = HCL.to_vec();
        h[1216 + 16..1216 + 20].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(HclBinding::parse(&h), Err(AttestError::Malformed(_))));
        // var data that is not JSON: parses, binding would fail, AK extraction errors.
        let mut h = HCL.to_vec();
        h[1236] = b'!';
        let b = HclBinding::parse(&h).unwrap();
        assert!(matches!(b.ak_pub(), Err(AttestError::Malformed(_))));
        assert!(HclBinding::parse(&[]).is_err());
    }

    #[test]
    fn garbage_hcl_never_panics() {
        for n in (0..HCL.len()).step_by(7) {
            if let Ok(b) = HclBinding::parse(&HCL[..n]) {
                let _ = b.ak_pub();
                let _ = b.var_data_sha256();
            }
        }
        for i in (0..1300).step_by(3) {
            let mut h = HCL.to_vec();
            h[i] ^= 0xa5;
            if let Ok(b) = HclBinding::parse(&h) {
                let _ = b.ak_pub();
                let _ = b.check_quote_body(quote_body(QUOTE).unwrap());
            }
        }
    }

    #[test]
    fn quote_body_errors() {
        assert!(matches!(quote_body(&[]), Err(AttestError::Malformed(_))));
        assert!(matches!(quote_body(&QUOTE[..600]), Err(AttestError::Malformed(_))));
        let mut q = QUOTE.to_vec();
        q[0] = 3;
        assert!(matches!(quote_body(&q), Err(AttestError::Unsupported(_))));
        let mut q = QUOTE.to_vec();
        q[4] = 0;
        assert!(matches!(quote_body(&q), Err(AttestError::Malformed(_))));
    }
}
