//! TCB appraisal: match a platform's SVNs against Intel's signed TCB levels and
//! converge the platform, TDX module and QE statuses the way Intel's QVL does.
//!
//! Inputs are already-verified collateral and an already-verified quote; this
//! module only decides which TCB level applies and what status results.

use dcap_qvl::qe_identity::{QeIdentity, QeTcbLevel};
use dcap_qvl::quote::{EnclaveReport, TDReport10};
use dcap_qvl::tcb_info::{TcbInfo, TcbLevel, TcbStatus as Intel};

use crate::attest::{AttestError, Result, TcbStatus};

/// SGX TCB component (0-based) that Azure's TDX hosts report below every level
/// Intel lists, and the value it is capped at when the quirk is accepted.
const AZURE_QUIRK_COMPONENT: usize = 7;
const AZURE_QUIRK_CAP: u8 = 3;
/// Name recorded in claims when the Azure quirk was needed.
pub const AZURE_QUIRK_NAME: &str = "azure-sgx-tcb-component-7-capped-at-3";

/// The platform facts from the PCK certificate that TCB matching needs.
#[derive(Debug, Clone)]
pub struct PlatformSvns {
    pub fmspc: [u8; 6],
    pub cpu_svn: [u8; 16],
    pub pce_svn: u16,
}

/// Outcome of appraisal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcbVerdict {
    pub status: TcbStatus,
    pub advisory_ids: Vec<String>,
    pub override_used: Option<&'static str>,
}

/// Intel's TCB info with levels in the canonical (highest first) order that
/// matching relies on, plus the same levels with the Azure quirk applied.
#[derive(Debug, Clone)]
pub struct TcbLevels {
    pub info: TcbInfo,
    azure_quirk: Vec<TcbLevel>,
}

impl TcbLevels {
    pub fn new(mut info: TcbInfo) -> Self {
        // Intel QVL sorts levels before matching rather than trusting JSON order.
        let is_tdx = info.version >= 3 && info.id == "TDX";
        info.tcb_levels.sort_by(|a, b| {
            let key = |l: &TcbLevel| {
                (
                    l.tcb.sgx_components.iter().map(|c| c.svn).collect::<Vec<_>>(),
                    l.tcb.pce_svn,
                    if is_tdx { l.tcb.tdx_components.iter().map(|c| c.svn).collect::<Vec<_>>() } else { Vec::new() },
                )
            };
            key(b).cmp(&key(a))
        });
        let azure_quirk = info
            .tcb_levels
            .iter()
            .cloned()
            .map(|mut level| {
                if let Some(c) = level.tcb.sgx_components.get_mut(AZURE_QUIRK_COMPONENT) {
                    c.svn = c.svn.min(AZURE_QUIRK_CAP);
                }
                level
            })
            .collect();
        TcbLevels { info, azure_quirk }
    }
}

/// Appraise the platform (and TDX module) TCB of a TD, then converge with the QE's.
pub fn appraise(
    levels: &TcbLevels,
    qe_identity: &QeIdentity,
    platform: &PlatformSvns,
    td: &TDReport10,
    tee_tcb_svn2: Option<&[u8; 16]>,
    qe_report: &EnclaveReport,
    allow_azure_quirk: bool,
) -> Result<TcbVerdict> {
    let info = &levels.info;
    let tcb_fmspc =
        hex::decode(&info.fmspc).map_err(|_| AttestError::Collateral("TCB info FMSPC is not hex".into()))?;
    if tcb_fmspc != platform.fmspc {
        return Err(AttestError::Collateral(format!(
            "FMSPC mismatch: the quote's platform is {}, the collateral is for {}; supply collateral for FMSPC {}",
            hex::encode(platform.fmspc),
            info.fmspc.to_lowercase(),
            hex::encode(platform.fmspc)
        )));
    }
    if info.version < 3 || info.id != "TDX" {
        return Err(AttestError::Collateral(format!(
            "TCB info is {} version {}, a TDX quote needs TDX TCB info version 3",
            info.id, info.version
        )));
    }

    let qe_level = appraise_qe(qe_report, qe_identity)?;

    let (launch, override_used) = match evaluate_tdx(info, &info.tcb_levels, platform, &td.tee_tcb_svn) {
        Err(AttestError::Tcb(msg)) if allow_azure_quirk && msg.starts_with(NO_LEVEL) => {
            (evaluate_tdx(info, &levels.azure_quirk, platform, &td.tee_tcb_svn)?, Some(AZURE_QUIRK_NAME))
        }
        other => (other?, None),
    };
    check_module_identity(info, td)?;
    let quirk_levels = if override_used.is_some() { &levels.azure_quirk } else { &info.tcb_levels };
    // A TD 1.5 also reports its current TCB, which differs from the launch TCB
    // after a TD-preserving module update; it must be appraisable too.
    let current = tee_tcb_svn2.map(|svn2| evaluate_tdx(info, quirk_levels, platform, svn2)).transpose()?;

    let mut status = converge(launch.0, qe_level.tcb_status);
    let mut advisory_ids = launch.1;
    for id in &qe_level.advisory_ids {
        if !advisory_ids.contains(id) {
            advisory_ids.push(id.clone());
        }
    }
    let current_status = current.map(|(s, _)| converge(s, qe_level.tcb_status));
    // Revoked means the platform's keys are compromised: never a policy choice.
    if status == Intel::Revoked || current_status == Some(Intel::Revoked) {
        return Err(AttestError::Tcb("the platform's TCB is Revoked by Intel; this platform cannot be trusted".into()));
    }
    if let Some(current) = current_status {
        status = relaunch(status, current);
    }
    Ok(TcbVerdict { status: map_status(status), advisory_ids, override_used })
}

const NO_LEVEL: &str = "no matching TCB level";

/// Match the platform level for one TEE_TCB_SVN and converge it with the TDX
/// module level that the same SVN selects.
fn evaluate_tdx(
    info: &TcbInfo,
    levels: &[TcbLevel],
    p: &PlatformSvns,
    tee_tcb_svn: &[u8; 16],
) -> Result<(Intel, Vec<String>)> {
    let mut level = None;
    for candidate in levels {
        let shortfalls = candidate
            .shortfalls(&p.cpu_svn, p.pce_svn, Some(tee_tcb_svn))
            .map_err(|e| AttestError::Collateral(format!("TCB level malformed: {e}")))?;
        if shortfalls.is_empty() {
            level = Some(candidate);
            break;
        }
    }
    let Some(level) = level else {
        return Err(AttestError::Tcb(format!(
            "{NO_LEVEL}: the platform's SVNs (cpu_svn {}, pce_svn {}, tee_tcb_svn {}) fall below every level in Intel's TCB info for FMSPC {}",
            hex::encode(p.cpu_svn),
            p.pce_svn,
            hex::encode(tee_tcb_svn),
            hex::encode(p.fmspc)
        )));
    };
    ensure_known(level.tcb_status, PLATFORM_STATUSES, "TCB info")?;
    let mut status = level.tcb_status;
    let mut advisories = level.advisory_ids.clone();

    let identity = info.tdx_module_identity(tee_tcb_svn).map_err(|e| AttestError::Tcb(format!("TDX module: {e}")))?;
    if let Some(identity) = identity {
        let module = identity.tcb_levels.iter().find(|l| l.shortfall(tee_tcb_svn).is_none()).ok_or_else(|| {
            AttestError::Tcb(format!(
                "TDX module ISVSVN {} is below every level of module identity {}",
                tee_tcb_svn[0], identity.id
            ))
        })?;
        ensure_known(module.tcb_status, MODULE_STATUSES, "TDX module identity")?;
        status = converge(status, module.tcb_status);
        for id in &module.advisory_ids {
            if !advisories.contains(id) {
                advisories.push(id.clone());
            }
        }
    }
    Ok((status, advisories))
}

/// The TD report's SEAM module signer and attributes must be the ones Intel lists.
fn check_module_identity(info: &TcbInfo, td: &TDReport10) -> Result<()> {
    let base =
        info.tdx_module.as_ref().ok_or_else(|| AttestError::Collateral("TDX TCB info has no tdxModule".into()))?;
    let (mrsigner, attributes, mask) =
        match info.tdx_module_identity(&td.tee_tcb_svn).map_err(|e| AttestError::Tcb(format!("TDX module: {e}")))? {
            Some(id) => (&id.mrsigner, &id.attributes, &id.attributes_mask),
            None => (&base.mrsigner, &base.attributes, &base.attributes_mask),
        };
    let mrsigner: [u8; 48] = hex_array(mrsigner, "tdxModule.mrsigner")?;
    let attributes: [u8; 8] = hex_array(attributes, "tdxModule.attributes")?;
    let mask: [u8; 8] = hex_array(mask, "tdxModule.attributesMask")?;
    if td.mr_signer_seam != mrsigner {
        return Err(AttestError::Tcb(format!(
            "TDX module signer {} is not the one Intel's TCB info lists ({})",
            hex::encode(td.mr_signer_seam),
            hex::encode(mrsigner)
        )));
    }
    for i in 0..8 {
        let (want, m, have) = (attributes[i], mask[i], td.seam_attributes[i]);
        if want & m != have & m || have & !m != 0 {
            return Err(AttestError::Tcb(format!(
                "TDX module attributes {} do not match Intel's TCB info",
                hex::encode(td.seam_attributes)
            )));
        }
    }
    Ok(())
}

/// QE report against the QE identity: signer, product, masked attributes, and
/// the TCB level its ISVSVN reaches.
fn appraise_qe(qe: &EnclaveReport, id: &QeIdentity) -> Result<QeTcbLevel> {
    if id.id != "TD_QE" || !(2..=3).contains(&id.version) {
        return Err(AttestError::Collateral(format!(
            "QE identity is {} version {}, a TDX quote needs TD_QE version 2 or 3",
            id.id, id.version
        )));
    }
    let fail = |what: String| Err(AttestError::Tcb(format!("quoting enclave: {what}")));
    if qe.mr_signer != id.mrsigner {
        return fail(format!("MRSIGNER {} is not Intel's", hex::encode(qe.mr_signer)));
    }
    if qe.attributes[0] & 0x02 != 0 {
        return fail("runs in debug mode".into());
    }
    if qe.isv_prod_id != id.isvprodid {
        return fail(format!("ISVPRODID {} is not {}", qe.isv_prod_id, id.isvprodid));
    }
    let misc_mask = u32::from_le_bytes(id.miscselect_mask);
    if qe.misc_select & misc_mask != u32::from_le_bytes(id.miscselect) & misc_mask {
        return fail("MISCSELECT does not match the QE identity".into());
    }
    let attrs_ok = qe
        .attributes
        .iter()
        .zip(id.attributes.iter().zip(&id.attributes_mask))
        .all(|(have, (want, mask))| have & mask == want & mask);
    if !attrs_ok {
        return fail("ATTRIBUTES do not match the QE identity".into());
    }
    let level = id.tcb_levels.iter().find(|l| qe.isv_svn >= l.tcb.isvsvn).ok_or_else(|| {
        AttestError::Tcb(format!("quoting enclave ISVSVN {} is below every level of Intel's QE identity", qe.isv_svn))
    })?;
    ensure_known(level.tcb_status, QE_STATUSES, "QE identity")?;
    Ok(level.clone())
}

// Statuses Intel's QVL accepts in each collateral structure; anything else
// in signed collateral means a format this code does not understand.
const PLATFORM_STATUSES: &[Intel] = &[
    Intel::UpToDate,
    Intel::OutOfDate,
    Intel::ConfigurationNeeded,
    Intel::Revoked,
    Intel::OutOfDateConfigurationNeeded,
    Intel::SWHardeningNeeded,
    Intel::ConfigurationAndSWHardeningNeeded,
];
const MODULE_STATUSES: &[Intel] = &[Intel::UpToDate, Intel::OutOfDate, Intel::Revoked];
const QE_STATUSES: &[Intel] = &[
    Intel::UpToDate,
    Intel::OutOfDate,
    Intel::ConfigurationNeeded,
    Intel::Revoked,
    Intel::OutOfDateConfigurationNeeded,
];

fn ensure_known(status: Intel, allowed: &[Intel], what: &str) -> Result<()> {
    if allowed.contains(&status) {
        Ok(())
    } else {
        Err(AttestError::Collateral(format!("unexpected TCB status {status} in {what}")))
    }
}

/// Intel QVL's `convergeTcbStatuses`: only an OutOfDate or Revoked component
/// changes the platform status.
fn converge(platform: Intel, component: Intel) -> Intel {
    use Intel::*;
    match (component, platform) {
        (Revoked, _) => Revoked,
        (OutOfDate, UpToDate | SWHardeningNeeded) => OutOfDate,
        (OutOfDate, ConfigurationNeeded | ConfigurationAndSWHardeningNeeded) => OutOfDateConfigurationNeeded,
        _ => platform,
    }
}

/// Intel QVL's `checkForRelaunch`: a TD launched on an out-of-date TCB whose
/// current TCB is fine should be relaunched, not treated as out of date.
fn relaunch(launch: Intel, current: Intel) -> Intel {
    use Intel::*;
    let config = |s| {
        matches!(
            s,
            ConfigurationNeeded
                | OutOfDateConfigurationNeeded
                | ConfigurationAndSWHardeningNeeded
                | TDRelaunchAdvisedConfigurationNeeded
        )
    };
    match (launch, current) {
        (
            OutOfDate | OutOfDateConfigurationNeeded,
            UpToDate | SWHardeningNeeded | ConfigurationNeeded | ConfigurationAndSWHardeningNeeded,
        ) => {
            if config(launch) || config(current) {
                TDRelaunchAdvisedConfigurationNeeded
            } else {
                TDRelaunchAdvised
            }
        }
        _ => launch,
    }
}

pub fn map_status(s: Intel) -> TcbStatus {
    match s {
        Intel::UpToDate => TcbStatus::UpToDate,
        Intel::OutOfDateConfigurationNeeded => TcbStatus::OutOfDateConfigurationNeeded,
        Intel::OutOfDate => TcbStatus::OutOfDate,
        Intel::ConfigurationAndSWHardeningNeeded => TcbStatus::ConfigurationAndSWHardeningNeeded,
        Intel::ConfigurationNeeded => TcbStatus::ConfigurationNeeded,
        Intel::SWHardeningNeeded => TcbStatus::SWHardeningNeeded,
        Intel::Revoked => TcbStatus::Revoked,
        Intel::TDRelaunchAdvised => TcbStatus::TDRelaunchAdvised,
        Intel::TDRelaunchAdvisedConfigurationNeeded => TcbStatus::TDRelaunchAdvisedConfigurationNeeded,
    }
}

fn hex_array<const N: usize>(s: &str, what: &str) -> Result<[u8; N]> {
    hex::decode(s)
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| AttestError::Collateral(format!("{what} is not {N} bytes of hex")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use Intel::*;

    #[test]
    fn convergence_follows_intel_qvl() {
        assert_eq!(converge(UpToDate, OutOfDate), OutOfDate);
        assert_eq!(converge(SWHardeningNeeded, OutOfDate), OutOfDate);
        assert_eq!(converge(ConfigurationNeeded, OutOfDate), OutOfDateConfigurationNeeded);
        assert_eq!(converge(UpToDate, Revoked), Revoked);
        assert_eq!(converge(SWHardeningNeeded, UpToDate), SWHardeningNeeded);
        assert_eq!(converge(UpToDate, ConfigurationNeeded), UpToDate);
    }

    #[test]
    fn relaunch_advised_only_when_current_is_good() {
        assert_eq!(relaunch(OutOfDate, UpToDate), TDRelaunchAdvised);
        assert_eq!(relaunch(OutOfDate, ConfigurationNeeded), TDRelaunchAdvisedConfigurationNeeded);
        assert_eq!(relaunch(OutOfDate, OutOfDate), OutOfDate);
        assert_eq!(relaunch(UpToDate, OutOfDate), UpToDate);
    }
}
