//! Evidence verification: the pure core that turns evidence bytes into
//! [`Claims`], or a typed [`AttestError`] that says what failed.
//!
//! Nothing here performs I/O or reads the clock: collateral, trust roots and
//! the time of verification are inputs.
//!
//! - [`tdx`]: Intel DCAP quotes v4/v5, with a cache of verified collateral.
//! - [`azure`]: Azure TDX CVM evidence (TD quote + HCL report + vTPM quote).
//! - [`eventlog`]: TDX event log (CCEL) parsing and RTMR replay.
//! - [`inspect`]: unverified decoding of evidence, for display.
//! - [`sim`]: the simulated TEE. INSECURE, for development and tests only.
//! - [`claims`]: what verified evidence establishes.
//! - [`verifier`]: the single entry point over all kinds, with event-log replay.

pub mod azure;
pub mod claims;
pub mod eventlog;
pub mod inspect;
pub mod sim;
pub mod tdx;
pub mod verifier;

pub use claims::{Claims, MeasuredEvent, Mr48, TcbStatus, TdAttributes, TdReport, TeeKind};
pub use verifier::{detect_kind, Evidence, Verifier};

/// Why evidence was refused. Each variant names the stage that failed; the
/// message says what was wrong and, where there is one, what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttestError {
    /// The evidence bytes could not be parsed.
    #[error("malformed evidence: {0}")]
    Malformed(String),
    /// Parsed, but a format or version this verifier does not support.
    #[error("unsupported evidence: {0}")]
    Unsupported(String),
    /// Evidence from a different TEE than the one asked for.
    #[error("wrong TEE type: evidence is {found}, expected {expected}")]
    WrongTee { found: String, expected: String },
    /// No collateral was supplied where the evidence needs it.
    #[error("no collateral supplied: TDX quotes are verified against Intel collateral (QuoteCollateralV3 JSON)")]
    MissingCollateral,
    /// The collateral itself is malformed or does not verify.
    #[error("invalid collateral: {0}")]
    Collateral(String),
    /// The collateral (or a certificate in it) is not valid at the verification time.
    #[error("collateral not valid at the verification time: {0}; fetch fresh collateral or check the clock")]
    CollateralTime(String),
    /// A certificate chain did not verify to the trust root.
    #[error("certificate chain rejected: {0}")]
    CertChain(String),
    /// A signature over the evidence did not verify.
    #[error("signature invalid: {0}")]
    Signature(String),
    /// The platform's TCB could not be appraised, or is revoked.
    #[error("TCB rejected: {0}")]
    Tcb(String),
    /// TD attributes that are never acceptable (debug) or that the options forbid.
    #[error("TD attributes rejected: {0}")]
    Attributes(String),
    /// The evidence is not bound to what it must be bound to (nonce, key, report).
    #[error("binding check failed: {0}")]
    Binding(String),
    /// An event log was supplied but does not parse or does not replay to the quote's RTMRs.
    #[error("event log rejected: {0}")]
    EventLog(String),
    /// Simulated-TEE evidence, and simulation was not explicitly enabled.
    #[error("simulated TEE evidence refused: the simulated TEE is INSECURE and is only accepted when explicitly enabled for development")]
    SimulationDisabled,
}

pub type Result<T, E = AttestError> = std::result::Result<T, E>;

/// Inputs that change a verification's outcome besides the evidence itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyOptions {
    /// Time of verification, seconds since the Unix epoch. A TD has no trusted
    /// clock, so the caller decides where this comes from.
    pub now: u64,
    /// Refuse TDs without SEPT_VE_DISABLE (default). Some Azure images run
    /// without it; a namespace can relax this explicitly.
    pub require_sept_ve_disable: bool,
    /// Accept Azure hosts whose PCK reports SGX TCB component 7 below what
    /// Intel's TCB levels require (capped at 3). Off by default; see
    /// `docs/attestation.md` for what accepting it means.
    pub azure_tcb_quirk: bool,
    /// Value the evidence must be bound to, when the caller issued a challenge
    /// (for `az-tdx-vtpm`, the vTPM quote's nonce; for `sim` and `tdx`, the
    /// first bytes of report_data).
    pub expected_nonce: Option<Vec<u8>>,
}

impl VerifyOptions {
    /// Strict defaults at time `now`.
    pub fn at(now: u64) -> Self {
        VerifyOptions { now, require_sept_ve_disable: true, azure_tcb_quirk: false, expected_nonce: None }
    }
}
