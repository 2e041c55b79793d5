//! The simulated TEE. **INSECURE: for development and tests only.**
//!
//! A simulated TEE is an Ed25519 key that signs a TD-report-shaped set of
//! claims. It proves nothing about hardware: anyone with the key can claim any
//! measurement. It exists so that a cluster can run end to end on a laptop or
//! in CI. To keep it from being enabled by accident:
//! - verification needs a [`SimTrust`], which can only be made through
//!   [`SimTrust::insecure_for_development`], naming the keys to trust;
//! - without one, sim evidence is refused with [`AttestError::SimulationDisabled`];
//! - every sim evidence document and every sim claim says `INSECURE`.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::{AttestError, Claims, Mr48, Result, TcbStatus, TdAttributes, TdReport, TeeKind, VerifyOptions};

/// The label every sim document carries.
pub const INSECURE_LABEL: &str = "INSECURE SIMULATED TEE - development and tests only";
const DOMAIN: &[u8] = b"guardian/sim-tee/v1\0";
/// SEPT_VE_DISABLE set, debug clear: the attributes a good TD has.
pub const DEFAULT_ATTRIBUTES: u64 = 1 << 28;

/// The measurements a simulated TD reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimMeasurements {
    pub mrtd: Mr48,
    pub rtmr: [Mr48; 4],
    pub mrconfigid: Mr48,
}

impl SimMeasurements {
    /// Deterministic measurements derived from a label (for example "guardian-dev"),
    /// so that a dev cluster's policy can name them.
    pub fn from_label(label: &str) -> Self {
        use sha2::{Digest, Sha384};
        let reg = |i: u8| -> Mr48 { Sha384::digest([label.as_bytes(), &[0, i]].concat()).into() };
        SimMeasurements { mrtd: reg(0), rtmr: [reg(1), reg(2), reg(3), reg(4)], mrconfigid: [0; 48] }
    }
}

/// A simulated TEE: signs evidence for any report_data it is given.
pub struct SimTee {
    key: SigningKey,
    measurements: SimMeasurements,
    td_attributes: u64,
}

impl SimTee {
    /// `seed` is the 32-byte private key seed.
    pub fn new(seed: &[u8; 32], measurements: SimMeasurements) -> Self {
        let seed = Zeroizing::new(*seed);
        SimTee { key: SigningKey::from_bytes(&seed), measurements, td_attributes: DEFAULT_ATTRIBUTES }
    }

    /// A simulated TD with these TD attributes instead of a good TD's (e.g.
    /// the debug bit, to test that such a TD is refused).
    pub fn with_td_attributes(mut self, td_attributes: u64) -> Self {
        self.td_attributes = td_attributes;
        self
    }

    pub fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// Produce sim evidence binding `report_data`.
    pub fn evidence(&self, report_data: &[u8; 64]) -> Vec<u8> {
        let body = SimBody {
            mrtd: self.measurements.mrtd,
            rtmr: self.measurements.rtmr,
            mrconfigid: self.measurements.mrconfigid,
            report_data: *report_data,
            td_attributes: self.td_attributes,
        };
        let signature = self.key.sign(&body.signed_bytes());
        let doc = SimEvidence {
            insecure: INSECURE_LABEL.into(),
            version: 1,
            signer: hex::encode(self.public_key()),
            mrtd: hex::encode(body.mrtd),
            rtmr: body.rtmr.iter().map(hex::encode).collect(),
            mrconfigid: hex::encode(body.mrconfigid),
            report_data: hex::encode(body.report_data),
            td_attributes: format!("{:016x}", body.td_attributes),
            signature: hex::encode(signature.to_bytes()),
        };
        // Serialising a struct of strings cannot fail.
        serde_json::to_vec_pretty(&doc).unwrap_or_default()
    }
}

/// The sim keys a verifier trusts. Making one is the explicit opt-in.
#[derive(Debug, Clone)]
pub struct SimTrust {
    keys: Vec<VerifyingKey>,
}

impl SimTrust {
    /// Trust evidence signed by these simulated-TEE keys. INSECURE: use only in
    /// development clusters and tests.
    pub fn insecure_for_development(keys: &[[u8; 32]]) -> Result<Self> {
        let keys = keys
            .iter()
            .map(|k| {
                VerifyingKey::from_bytes(k)
                    .map_err(|_| AttestError::Malformed("sim trust key is not an Ed25519 public key".into()))
            })
            .collect::<Result<Vec<_>>>()?;
        tracing::warn!(keys = keys.len(), "{INSECURE_LABEL}: simulated TEE evidence will be accepted");
        Ok(SimTrust { keys })
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SimEvidence {
    insecure: String,
    version: u32,
    signer: String,
    mrtd: String,
    rtmr: Vec<String>,
    mrconfigid: String,
    report_data: String,
    td_attributes: String,
    signature: String,
}

struct SimBody {
    mrtd: Mr48,
    rtmr: [Mr48; 4],
    mrconfigid: Mr48,
    report_data: [u8; 64],
    td_attributes: u64,
}

impl SimBody {
    /// Fixed-layout bytes that the signature covers.
    fn signed_bytes(&self) -> Vec<u8> {
        let mut m = DOMAIN.to_vec();
        m.extend_from_slice(&self.mrtd);
        self.rtmr.iter().for_each(|r| m.extend_from_slice(r));
        m.extend_from_slice(&self.mrconfigid);
        m.extend_from_slice(&self.report_data);
        m.extend_from_slice(&self.td_attributes.to_le_bytes());
        m
    }
}

fn hex_n<const N: usize>(s: &str, what: &str) -> Result<[u8; N]> {
    hex::decode(s)
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| AttestError::Malformed(format!("sim evidence: {what} is not {N} bytes of hex")))
}

/// Verify sim evidence. Refused unless `trust` is given.
pub fn verify(evidence: &[u8], trust: Option<&SimTrust>, opts: &VerifyOptions) -> Result<Claims> {
    let trust = trust.ok_or(AttestError::SimulationDisabled)?;
    let doc: SimEvidence =
        serde_json::from_slice(evidence).map_err(|e| AttestError::Malformed(format!("sim evidence JSON: {e}")))?;
    if doc.version != 1 || doc.insecure != INSECURE_LABEL {
        return Err(AttestError::Unsupported("sim evidence version or label".into()));
    }
    let rtmr: [String; 4] =
        doc.rtmr.try_into().map_err(|_| AttestError::Malformed("sim evidence: rtmr must list 4 registers".into()))?;
    let body = SimBody {
        mrtd: hex_n(&doc.mrtd, "mrtd")?,
        rtmr: [
            hex_n(&rtmr[0], "rtmr0")?,
            hex_n(&rtmr[1], "rtmr1")?,
            hex_n(&rtmr[2], "rtmr2")?,
            hex_n(&rtmr[3], "rtmr3")?,
        ],
        mrconfigid: hex_n(&doc.mrconfigid, "mrconfigid")?,
        report_data: hex_n(&doc.report_data, "report_data")?,
        td_attributes: u64::from_be_bytes(hex_n(&doc.td_attributes, "td_attributes")?),
    };
    let signer = VerifyingKey::from_bytes(&hex_n(&doc.signer, "signer")?)
        .map_err(|_| AttestError::Malformed("sim evidence: signer is not an Ed25519 key".into()))?;
    if !trust.keys.contains(&signer) {
        return Err(AttestError::Signature("sim evidence is signed by a key that is not trusted".into()));
    }
    let signature = Signature::from_bytes(&hex_n(&doc.signature, "signature")?);
    signer
        .verify(&body.signed_bytes(), &signature)
        .map_err(|_| AttestError::Signature("sim evidence signature is invalid".into()))?;
    let td_attributes = TdAttributes(body.td_attributes);
    if td_attributes.debug() {
        return Err(AttestError::Attributes("debug mode is enabled".into()));
    }
    if opts.require_sept_ve_disable && !td_attributes.sept_ve_disable() {
        return Err(AttestError::Attributes("SEPT_VE_DISABLE is not enabled".into()));
    }
    if let Some(nonce) = &opts.expected_nonce {
        if nonce.is_empty() || nonce.len() > 64 || body.report_data[..nonce.len()] != nonce[..] {
            return Err(AttestError::Binding("report_data does not start with the expected nonce".into()));
        }
    }
    let measurements = SimMeasurements { mrtd: body.mrtd, rtmr: body.rtmr, mrconfigid: body.mrconfigid };
    Ok(simulated_claims(&measurements, td_attributes, body.report_data))
}

/// The claims of a simulated TD (INSECURE: nothing vouches for them).
pub fn simulated_claims(m: &SimMeasurements, td_attributes: TdAttributes, report_data: [u8; 64]) -> Claims {
    Claims {
        tee: TeeKind::Sim,
        tcb_status: TcbStatus::Simulated,
        advisory_ids: Vec::new(),
        fmspc: None,
        tcb_override: None,
        td: TdReport { report_data, ..TdReport::measured(m.mrtd, m.rtmr, m.mrconfigid, td_attributes) },
        pcrs: Default::default(),
        events: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tee() -> SimTee {
        SimTee::new(&[7; 32], SimMeasurements::from_label("test"))
    }

    #[test]
    fn round_trip_and_refusals() {
        let t = tee();
        let ev = t.evidence(&[9; 64]);
        let opts = VerifyOptions::at(0);
        assert_eq!(verify(&ev, None, &opts), Err(AttestError::SimulationDisabled));
        let trust = SimTrust::insecure_for_development(&[t.public_key()]).unwrap();
        let claims = verify(&ev, Some(&trust), &opts).unwrap();
        assert_eq!(claims.tee, TeeKind::Sim);
        assert_eq!(claims.td.report_data, [9; 64]);
        assert_eq!(claims.td.mrtd, SimMeasurements::from_label("test").mrtd);
        assert!(String::from_utf8_lossy(&ev).contains("INSECURE"));

        let other = SimTrust::insecure_for_development(&[[1; 32]]);
        if let Ok(other) = other {
            assert!(matches!(verify(&ev, Some(&other), &opts), Err(AttestError::Signature(_))));
        }
        let tampered =
            String::from_utf8(ev.clone()).unwrap().replacen(&hex::encode([9u8; 64]), &hex::encode([8u8; 64]), 1);
        assert!(matches!(verify(tampered.as_bytes(), Some(&trust), &opts), Err(AttestError::Signature(_))));
        let mut nonce = opts.clone();
        nonce.expected_nonce = Some(vec![1, 2, 3]);
        assert!(matches!(verify(&ev, Some(&trust), &nonce), Err(AttestError::Binding(_))));
        assert!(matches!(verify(b"{", Some(&trust), &opts), Err(AttestError::Malformed(_))));
    }
}
