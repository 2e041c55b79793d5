//! One entry point for every evidence kind: picks the verifier, applies the
//! trust configuration, and replays an event log against the result.

use super::azure::{self, AzureTrust};
use super::sim::{self, SimTrust};
use super::tdx::{Collateral, TdxVerifier};
use super::{eventlog, AttestError, Claims, Result, TeeKind, VerifyOptions};

/// Evidence as received, with what its verification needs.
#[derive(Debug, Clone, Copy)]
pub struct Evidence<'a> {
    pub kind: TeeKind,
    pub bytes: &'a [u8],
    /// Intel collateral for the platform (TDX kinds).
    pub collateral: Option<&'a Collateral>,
    /// TDX event log (CCEL binary, or dstack JSON) to replay against the RTMRs.
    pub event_log: Option<&'a [u8]>,
}

/// The verifier with its trust configuration: Intel's root (with a cache),
/// optional Azure AK roots, and the explicit opt-in to the simulated TEE.
pub struct Verifier {
    pub tdx: TdxVerifier,
    pub azure: AzureTrust,
    /// `None` (the default) refuses simulated-TEE evidence.
    pub sim: Option<SimTrust>,
}

impl Default for Verifier {
    fn default() -> Self {
        Verifier { tdx: TdxVerifier::intel(), azure: AzureTrust::default(), sim: None }
    }
}

impl Verifier {
    #[tracing::instrument(skip_all, name = "attest.verify", fields(kind = %ev.kind))]
    pub fn verify(&self, ev: &Evidence<'_>, opts: &VerifyOptions) -> Result<Claims> {
        let collateral = || ev.collateral.ok_or(AttestError::MissingCollateral);
        let mut claims = match ev.kind {
            TeeKind::Tdx => self.tdx.verify(ev.bytes, collateral()?, opts)?,
            TeeKind::AzTdxVtpm => azure::verify_coco_json(ev.bytes, &self.tdx, collateral()?, &self.azure, opts)?,
            TeeKind::Sim => sim::verify(ev.bytes, self.sim.as_ref(), opts)?,
        };
        if let Some(log) = ev.event_log {
            if ev.kind == TeeKind::AzTdxVtpm {
                return Err(AttestError::EventLog(
                    "an Azure TD's RTMRs belong to the paravisor; its guest is measured into vTPM PCRs, not a CCEL"
                        .into(),
                ));
            }
            let replayed = if log.trim_ascii_start().starts_with(b"{") || log.trim_ascii_start().starts_with(b"[") {
                eventlog::replay_dstack_json(log)?
            } else {
                eventlog::replay(log)?
            };
            eventlog::check_rtmrs(&replayed, &claims.td.rtmr)?;
            claims.events = replayed.events;
        }
        Ok(claims)
    }
}

/// Guess the evidence kind from its bytes: CoCo Azure JSON has `tpm_quote`,
/// sim evidence carries its INSECURE label, anything else is taken as a TDX quote.
pub fn detect_kind(bytes: &[u8]) -> TeeKind {
    let json = bytes.trim_ascii_start().starts_with(b"{");
    let has = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    if json && has(b"\"tpm_quote\"") {
        TeeKind::AzTdxVtpm
    } else if json && has(sim::INSECURE_LABEL.as_bytes()) {
        TeeKind::Sim
    } else {
        TeeKind::Tdx
    }
}
