//! vTPM quote: bounds-checked TPMS_ATTEST parsing, AK signature, nonce and PCR digest checks.
//!
//! The quote is what `TPM2_Quote` returns on an Azure CVM: a `TPMS_ATTEST`
//! structure (`message`), an RSASSA-PKCS1-v1_5 / SHA-256 signature over it by
//! the vTPM attestation key (AK), and the SHA-256 PCR bank values the caller
//! read next to it (`pcrs`, index = PCR number). TPM 2.0 Library Part 2
//! (structures) defines the layout; every integer is big-endian.

use std::collections::BTreeMap;

use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::signature::Verifier;
use rsa::RsaPublicKey;
use sha2::{Digest, Sha256};

use crate::attest::{AttestError, Result};

/// `TPM_GENERATED_VALUE`: only the TPM itself signs structures starting with it.
pub const TPM_GENERATED_VALUE: u32 = 0xff54_4347;
/// `TPM_ST_ATTEST_QUOTE`.
pub const TPM_ST_ATTEST_QUOTE: u16 = 0x8018;
/// `TPM_ALG_SHA256`.
pub const TPM_ALG_SHA256: u16 = 0x000b;

/// Most PCR selections a quote may carry (a TPM has one per bank; we only
/// support SHA-256, so more than a handful is malformed).
const MAX_SELECTIONS: u32 = 8;
/// `PCR_SELECT_MAX` upper bound: 32 bytes = 256 PCRs, so an index fits a `u8`.
const MAX_SELECT_BYTES: u8 = 32;
/// `TPM2B_DATA` (extraData) holds at most a `TPMU_HA`, 64 bytes.
const MAX_EXTRA_DATA: usize = 64;

/// The vTPM quote as carried in evidence: signature, `TPMS_ATTEST` bytes and
/// the SHA-256 PCR values (`pcrs[i]` = PCR i).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TpmQuote {
    /// RSASSA-PKCS1-v1_5 signature (raw, modulus-sized) over `message`.
    pub signature: Vec<u8>,
    /// The marshalled `TPMS_ATTEST` that was signed.
    pub message: Vec<u8>,
    /// SHA-256 bank PCR values, by index.
    pub pcrs: Vec<[u8; 32]>,
}

/// `TPMS_CLOCK_INFO`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockInfo {
    pub clock: u64,
    pub reset_count: u32,
    pub restart_count: u32,
    pub safe: bool,
}

/// A parsed `TPMS_ATTEST` of type `TPM_ST_ATTEST_QUOTE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuoteInfo {
    /// `qualifiedSigner` (TPM2B_NAME contents).
    pub qualified_signer: Vec<u8>,
    /// `extraData`: the caller's nonce.
    pub extra_data: Vec<u8>,
    pub clock_info: ClockInfo,
    pub firmware_version: u64,
    /// PCRs the quote covers, in the order their values are hashed into
    /// `pcr_digest` (selection order, ascending index within a selection).
    pub selected_pcrs: Vec<u8>,
    /// `pcrDigest`: hash over the selected PCR values.
    pub pcr_digest: Vec<u8>,
}

/// Big-endian cursor that reports what it was reading when the input ends.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len()).ok_or_else(|| {
            AttestError::Malformed(format!(
                "TPM quote message truncated reading {what}: need {n} bytes at offset {}, have {}",
                self.pos,
                self.buf.len().saturating_sub(self.pos)
            ))
        })?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let s = self.take(N, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }
    fn u8(&mut self, what: &str) -> Result<u8> {
        Ok(self.array::<1>(what)?[0])
    }
    fn u16(&mut self, what: &str) -> Result<u16> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }
    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }
    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_be_bytes(self.array(what)?))
    }
    fn tpm2b(&mut self, what: &str) -> Result<&'a [u8]> {
        let n = self.u16(what)? as usize;
        self.take(n, what)
    }
}

/// Parse a `TPMS_ATTEST` quote. Only the SHA-256 PCR bank is supported.
pub fn parse_quote_info(message: &[u8]) -> Result<QuoteInfo> {
    let mut c = Cursor { buf: message, pos: 0 };
    let magic = c.u32("magic")?;
    if magic != TPM_GENERATED_VALUE {
        return Err(AttestError::Malformed(format!(
            "TPM quote message magic is {magic:#010x}, expected TPM_GENERATED_VALUE {TPM_GENERATED_VALUE:#010x}"
        )));
    }
    let ty = c.u16("type")?;
    if ty != TPM_ST_ATTEST_QUOTE {
        return Err(AttestError::Unsupported(format!(
            "TPMS_ATTEST type {ty:#06x} is not TPM_ST_ATTEST_QUOTE ({TPM_ST_ATTEST_QUOTE:#06x})"
        )));
    }
    let qualified_signer = c.tpm2b("qualifiedSigner")?.to_vec();
    let extra_data = c.tpm2b("extraData")?.to_vec();
    if extra_data.len() > MAX_EXTRA_DATA {
        return Err(AttestError::Malformed(format!(
            "TPM quote extraData is {} bytes, at most {MAX_EXTRA_DATA} allowed",
            extra_data.len()
        )));
    }
    let clock_info = ClockInfo {
        clock: c.u64("clockInfo.clock")?,
        reset_count: c.u32("clockInfo.resetCount")?,
        restart_count: c.u32("clockInfo.restartCount")?,
        safe: match c.u8("clockInfo.safe")? {
            0 => false,
            1 => true,
            v => return Err(AttestError::Malformed(format!("TPM quote clockInfo.safe is {v}, expected 0 or 1"))),
        },
    };
    let firmware_version = c.u64("firmwareVersion")?;

    let count = c.u32("pcrSelect.count")?;
    if count == 0 {
        return Err(AttestError::Unsupported("TPM quote selects no PCRs, so it attests nothing".into()));
    }
    if count > MAX_SELECTIONS {
        return Err(AttestError::Malformed(format!(
            "TPM quote has {count} PCR selections, at most {MAX_SELECTIONS} allowed"
        )));
    }
    let mut selected_pcrs = Vec::new();
    for i in 0..count {
        let hash = c.u16("pcrSelections.hash")?;
        if hash != TPM_ALG_SHA256 {
            return Err(AttestError::Unsupported(format!(
                "TPM quote PCR selection {i} is for hash algorithm {hash:#06x}; only the SHA-256 bank (0x000b) is supported"
            )));
        }
        let size = c.u8("pcrSelections.sizeofSelect")?;
        if size > MAX_SELECT_BYTES {
            return Err(AttestError::Malformed(format!(
                "TPM quote PCR selection {i} has sizeofSelect {size}, at most {MAX_SELECT_BYTES} allowed"
            )));
        }
        let bitmap = c.take(size as usize, "pcrSelections.pcrSelect")?;
        for (byte_idx, byte) in bitmap.iter().enumerate() {
            for bit in 0..8u8 {
                if byte & (1 << bit) != 0 {
                    // byte_idx < 32, so the index is < 256.
                    selected_pcrs.push((byte_idx as u8) * 8 + bit);
                }
            }
        }
    }
    let pcr_digest = c.tpm2b("pcrDigest")?.to_vec();
    if c.pos != message.len() {
        return Err(AttestError::Malformed(format!(
            "TPM quote message has {} trailing bytes after pcrDigest",
            message.len() - c.pos
        )));
    }
    Ok(QuoteInfo { qualified_signer, extra_data, clock_info, firmware_version, selected_pcrs, pcr_digest })
}

/// What a verified vTPM quote establishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedTpmQuote {
    pub info: QuoteInfo,
    /// The quoted PCRs, by index.
    pub pcrs: BTreeMap<u8, [u8; 32]>,
}

/// Verify `quote` against the attestation key `ak`: signature over `message`,
/// the nonce in `extraData` (when `expected_nonce` is given), and that the
/// supplied PCR values hash to the signed `pcrDigest`.
#[tracing::instrument(skip_all)]
pub fn verify_quote(quote: &TpmQuote, ak: &RsaPublicKey, expected_nonce: Option<&[u8]>) -> Result<VerifiedTpmQuote> {
    // Signature first: nothing in `message` is trusted before it verifies.
    let sig = Signature::try_from(quote.signature.as_slice())
        .map_err(|e| AttestError::Signature(format!("vTPM quote signature is not an RSA signature: {e}")))?;
    VerifyingKey::<Sha256>::new(ak.clone()).verify(&quote.message, &sig).map_err(|_| {
        AttestError::Signature(
            "vTPM quote signature does not verify under the HCL attestation key (HCLAkPub), RSASSA-PKCS1-v1_5 SHA-256"
                .into(),
        )
    })?;

    let info = parse_quote_info(&quote.message)?;

    if let Some(nonce) = expected_nonce {
        if info.extra_data != nonce {
            return Err(AttestError::Binding(format!(
                "vTPM quote nonce (extraData) is {}, expected {}",
                hex::encode(&info.extra_data),
                hex::encode(nonce)
            )));
        }
    }

    let mut hasher = Sha256::new();
    let mut pcrs = BTreeMap::new();
    for &idx in &info.selected_pcrs {
        let value = quote.pcrs.get(idx as usize).ok_or_else(|| {
            AttestError::Malformed(format!(
                "vTPM quote selects PCR {idx} but the evidence carries only {} PCR values",
                quote.pcrs.len()
            ))
        })?;
        hasher.update(value);
        pcrs.insert(idx, *value);
    }
    let digest = hasher.finalize();
    if info.pcr_digest[..] != digest[..] {
        return Err(AttestError::Binding(format!(
            "PCR values do not match the vTPM quote: SHA-256 over PCRs {:?} is {}, the signed pcrDigest is {}",
            info.selected_pcrs,
            hex::encode(digest),
            hex::encode(&info.pcr_digest)
        )));
    }
    Ok(VerifiedTpmQuote { info, pcrs })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attest::azure::evidence::parse_coco_json;
    use crate::attest::azure::hcl::HclBinding;

    const V1: &[u8] = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/data/attestation/trustee/az-tdx-vtpm/evidence-v1.json"
    ));

    fn a1() -> (TpmQuote, RsaPublicKey) {
        let ev = parse_coco_json(V1).unwrap();
        let ak = HclBinding::parse(&ev.hcl_report).unwrap().ak_pub().unwrap();
        (ev.tpm_quote, ak)
    }

    #[test]
    fn a1_quote_parses() {
        let (q, _) = a1();
        let info = parse_quote_info(&q.message).unwrap();
        assert_eq!(info.extra_data, b"challenge");
        assert_eq!(info.selected_pcrs, (0u8..24).collect::<Vec<_>>());
        assert_eq!(info.pcr_digest.len(), 32);
        assert_eq!(info.qualified_signer.len(), 34);
        assert_eq!(q.pcrs.len(), 24);
    }

    #[test]
    fn a1_quote_verifies_with_nonce() {
        let (q, ak) = a1();
        let v = verify_quote(&q, &ak, Some(b"challenge")).unwrap();
        assert_eq!(v.pcrs.len(), 24);
        assert_eq!(hex::encode(v.pcrs[&0]), "782b20b10f55cc46e2142cc2145d548698073e5beb82752c8d7f9279f0d8a273");
        // No nonce requested: still verifies, nonce exposed.
        let v = verify_quote(&q, &ak, None).unwrap();
        assert_eq!(v.info.extra_data, b"challenge");
    }

    #[test]
    fn flipped_signature_byte_is_signature_error() {
        let (mut q, ak) = a1();
        q.signature[100] ^= 1;
        assert!(matches!(verify_quote(&q, &ak, None), Err(AttestError::Signature(_))));
        let (mut q, ak) = a1();
        q.signature.pop();
        assert!(matches!(verify_quote(&q, &ak, None), Err(AttestError::Signature(_))));
    }

    #[test]
    fn edited_message_is_signature_error() {
        let (mut q, ak) = a1();
        let n = q.message.len();
        q.message[n - 1] ^= 1;
        assert!(matches!(verify_quote(&q, &ak, None), Err(AttestError::Signature(_))));
    }

    #[test]
    fn wrong_nonce_is_binding_error() {
        let (q, ak) = a1();
        let e = verify_quote(&q, &ak, Some(b"challengf")).unwrap_err();
        assert!(matches!(e, AttestError::Binding(ref m) if m.contains("nonce")), "{e}");
        let e = verify_quote(&q, &ak, Some(&[0u8; 32])).unwrap_err();
        assert!(matches!(e, AttestError::Binding(_)), "{e}");
    }

    #[test]
    fn edited_pcr_is_binding_error() {
        let (mut q, ak) = a1();
        q.pcrs[7][0] ^= 0x80;
        let e = verify_quote(&q, &ak, Some(b"challenge")).unwrap_err();
        assert!(matches!(e, AttestError::Binding(ref m) if m.contains("PCR")), "{e}");
        // Missing PCR values.
        let (mut q, ak) = a1();
        q.pcrs.truncate(23);
        assert!(matches!(verify_quote(&q, &ak, None), Err(AttestError::Malformed(_))));
    }

    #[test]
    fn truncated_and_garbage_messages_never_panic() {
        let (q, _) = a1();
        for n in 0..q.message.len() {
            assert!(parse_quote_info(&q.message[..n]).is_err(), "prefix {n} parsed");
        }
        let mut longer = q.message.clone();
        longer.push(0);
        assert!(matches!(parse_quote_info(&longer), Err(AttestError::Malformed(_))));
        // Deterministic pseudo-random garbage, with the header kept to reach deeper fields.
        let mut x: u32 = 0x1234_5678;
        for round in 0..4000 {
            let len = (round % 160) as usize;
            let mut m: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            if round % 2 == 0 && len >= 6 {
                m[..6].copy_from_slice(&q.message[..6]);
            }
            let _ = parse_quote_info(&m);
        }
        // Each byte of the real message mutated in turn.
        for i in 0..q.message.len() {
            for v in [0u8, 0xff, 0x7f] {
                let mut m = q.message.clone();
                m[i] = v;
                let _ = parse_quote_info(&m);
            }
        }
    }

    #[test]
    fn non_sha256_bank_is_unsupported() {
        let (q, _) = a1();
        let info = parse_quote_info(&q.message).unwrap();
        // Offset of the first selection's hash alg: 4+2+2+signer+2+extra+17+8+4.
        let off = 4 + 2 + 2 + info.qualified_signer.len() + 2 + info.extra_data.len() + 17 + 8 + 4;
        let mut m = q.message.clone();
        assert_eq!(&m[off..off + 2], &[0x00, 0x0b]);
        m[off + 1] = 0x04; // TPM_ALG_SHA1
        assert!(matches!(parse_quote_info(&m), Err(AttestError::Unsupported(_))));
    }
}
