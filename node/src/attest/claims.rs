//! What a verified piece of evidence says about the TEE that produced it.
//!
//! Claims are produced only by a verifier after every cryptographic check has
//! passed; nothing else constructs them with `verified = true` semantics. The
//! policy engine reads them and never sees raw evidence.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// A 48-byte SHA-384 measurement register (MRTD, RTMRn, MRCONFIGID, ...).
pub type Mr48 = [u8; 48];

/// The kind of TEE, and so of evidence, a verifier accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum TeeKind {
    /// Intel TDX, evidence is a DCAP quote (v4 or v5).
    #[serde(rename = "tdx")]
    Tdx,
    /// Azure TDX confidential VM: TD quote + HCL report + vTPM quote.
    #[serde(rename = "az-tdx-vtpm")]
    AzTdxVtpm,
    /// The simulated TEE. INSECURE: for development and tests only.
    #[serde(rename = "sim")]
    Sim,
}

impl TeeKind {
    pub const ALL: [TeeKind; 3] = [TeeKind::Tdx, TeeKind::AzTdxVtpm, TeeKind::Sim];

    pub fn as_str(self) -> &'static str {
        match self {
            TeeKind::Tdx => "tdx",
            TeeKind::AzTdxVtpm => "az-tdx-vtpm",
            TeeKind::Sim => "sim",
        }
    }

    /// True for the simulated TEE, whose claims prove nothing.
    pub fn is_insecure(self) -> bool {
        matches!(self, TeeKind::Sim)
    }
}

impl fmt::Display for TeeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for TeeKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TeeKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown TEE kind {s:?}; expected one of tdx, az-tdx-vtpm, sim"))
    }
}

/// Intel's TCB status vocabulary, as converged over platform, TDX module and QE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum TcbStatus {
    UpToDate,
    SWHardeningNeeded,
    ConfigurationNeeded,
    ConfigurationAndSWHardeningNeeded,
    OutOfDate,
    OutOfDateConfigurationNeeded,
    TDRelaunchAdvised,
    TDRelaunchAdvisedConfigurationNeeded,
    /// Never produced by a successful verification (revoked platforms are
    /// refused outright); kept so policies can name it.
    Revoked,
    /// The simulated TEE has no TCB. INSECURE.
    Simulated,
}

impl TcbStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TcbStatus::UpToDate => "UpToDate",
            TcbStatus::SWHardeningNeeded => "SWHardeningNeeded",
            TcbStatus::ConfigurationNeeded => "ConfigurationNeeded",
            TcbStatus::ConfigurationAndSWHardeningNeeded => "ConfigurationAndSWHardeningNeeded",
            TcbStatus::OutOfDate => "OutOfDate",
            TcbStatus::OutOfDateConfigurationNeeded => "OutOfDateConfigurationNeeded",
            TcbStatus::TDRelaunchAdvised => "TDRelaunchAdvised",
            TcbStatus::TDRelaunchAdvisedConfigurationNeeded => "TDRelaunchAdvisedConfigurationNeeded",
            TcbStatus::Revoked => "Revoked",
            TcbStatus::Simulated => "Simulated",
        }
    }
}

impl fmt::Display for TcbStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// TD attributes (TDREPORT `TDATTRIBUTES`), kept raw with named accessors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TdAttributes(pub u64);

impl TdAttributes {
    pub fn from_le_bytes(b: [u8; 8]) -> Self {
        TdAttributes(u64::from_le_bytes(b))
    }
    /// TUD.DEBUG (bit 0): the host can read and write the TD's memory.
    pub fn debug(self) -> bool {
        self.0 & 1 != 0
    }
    /// SEC.SEPT_VE_DISABLE (bit 28): EPT violations are not turned into #VE,
    /// closing a class of host-induced exception attacks on the guest.
    pub fn sept_ve_disable(self) -> bool {
        self.0 & (1 << 28) != 0
    }
    /// SEC.MIGRATABLE (bit 29).
    pub fn migratable(self) -> bool {
        self.0 & (1 << 29) != 0
    }
}

/// The TD report fields of a TDX quote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TdReport {
    pub mrtd: Mr48,
    pub rtmr: [Mr48; 4],
    pub mrconfigid: Mr48,
    pub mrowner: Mr48,
    pub mrownerconfig: Mr48,
    pub mrseam: Mr48,
    pub tee_tcb_svn: [u8; 16],
    pub td_attributes: TdAttributes,
    pub xfam: [u8; 8],
    pub report_data: [u8; 64],
}

impl TdReport {
    /// A report with the registers policies read, the rest zero (simulated
    /// TDs, and claims rebuilt from an attestation token).
    pub fn measured(mrtd: Mr48, rtmr: [Mr48; 4], mrconfigid: Mr48, td_attributes: TdAttributes) -> Self {
        TdReport {
            mrtd,
            rtmr,
            mrconfigid,
            mrowner: [0; 48],
            mrownerconfig: [0; 48],
            mrseam: [0; 48],
            tee_tcb_svn: [0; 16],
            td_attributes,
            xfam: [0; 8],
            report_data: [0; 64],
        }
    }
}

/// One event from a replayed TDX event log (CCEL), exposed so policies can
/// name individual components (for example the kernel digest).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeasuredEvent {
    /// Register the event extends: 0..=3 for RTMR0..RTMR3.
    pub rtmr: u8,
    /// TCG event type (for example 0x80000002 EV_EFI_BOOT_SERVICES_APPLICATION).
    pub event_type: u32,
    /// SHA-384 digest that was extended.
    #[serde(with = "hex::serde")]
    pub digest: Vec<u8>,
    /// The event data as recorded (may be empty).
    #[serde(with = "hex::serde")]
    pub data: Vec<u8>,
}

/// Everything a successful verification establishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub tee: TeeKind,
    /// Converged TCB status (`Simulated` for the simulated TEE).
    pub tcb_status: TcbStatus,
    /// Intel security advisories that apply to this platform's TCB level.
    pub advisory_ids: Vec<String>,
    /// Platform family id from the PCK certificate (TDX kinds only).
    pub fmspc: Option<[u8; 6]>,
    /// Name of a TCB-matching override that was needed to reach a status, if any
    /// (see `VerifyOptions::azure_tcb_quirk`).
    pub tcb_override: Option<&'static str>,
    /// TD report of the quote (TDX kinds, and the simulated TEE).
    pub td: TdReport,
    /// vTPM SHA-256 PCRs (Azure only), by index.
    pub pcrs: BTreeMap<u8, [u8; 32]>,
    /// Events of a replayed event log, when one was supplied and matched.
    pub events: Vec<MeasuredEvent>,
}

impl Claims {
    /// The evidence's 64-byte user data. For Azure this is the TD quote's, whose
    /// first half is the hash of the HCL variable data.
    pub fn report_data(&self) -> &[u8; 64] {
        &self.td.report_data
    }
}
