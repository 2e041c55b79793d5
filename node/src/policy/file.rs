//! The policy file format (TOML), and its validation into a [`PolicySet`].
//!
//! ```toml
//! [namespaces.k8s-staging]
//! tees = ["tdx", "az-tdx-vtpm"]          # evidence kinds accepted ("sim" only for development)
//! accepted_tcb_status = ["UpToDate", "SWHardeningNeeded"]
//! allowed_advisories = ["INTEL-SA-00960"]
//! require_sept_ve_disable = true         # default true
//! azure_tcb_quirk = false                # default false
//!
//! [[namespaces.k8s-staging.tdx]]         # any one rule must match
//! name = "gcp-cos-113"
//! mrtd = "<96 hex>"                      # required
//! rtmr0 = "*"                            # omitted or "*" = unconstrained
//! rtmr1 = "<96 hex>"
//! events = [{ rtmr = 1, digest = "<96 hex>" }]   # digests the event log must contain
//!
//! [[namespaces.k8s-staging.azure]]
//! name = "ubuntu-cvm"
//! mrtd = "<96 hex>"                      # the paravisor's; required
//! pcrs = { "4" = "<64 hex>", "7" = "<64 hex>" }   # at least one
//!
//! [[namespaces.k8s-staging.revoked]]
//! register = "rtmr2"
//! value = "<hex>"
//! reason = "kernel 6.8.0-1 has CVE-..."
//! ```
//! Unknown keys are errors, so a misspelt setting never silently falls back.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use super::{MeasurementRule, NamespaceName, NamespacePolicy, PolicySet, Register, Revocation};
use crate::attest::{TcbStatus, TeeKind};

/// Why a policy file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("policy file is not valid TOML for a Guardian policy: {0}")]
    Syntax(String),
    #[error("namespace {namespace}: {problem}")]
    Invalid { namespace: String, problem: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileV1 {
    #[serde(default)]
    namespaces: BTreeMap<String, NamespaceToml>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NamespaceToml {
    tees: Vec<String>,
    accepted_tcb_status: Vec<TcbStatus>,
    #[serde(default)]
    allowed_advisories: Vec<String>,
    #[serde(default = "yes")]
    require_sept_ve_disable: bool,
    #[serde(default)]
    azure_tcb_quirk: bool,
    #[serde(default)]
    tdx: Vec<TdxRuleToml>,
    #[serde(default)]
    azure: Vec<AzureRuleToml>,
    #[serde(default)]
    revoked: Vec<RevokedToml>,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TdxRuleToml {
    name: String,
    mrtd: Option<String>,
    rtmr0: Option<String>,
    rtmr1: Option<String>,
    rtmr2: Option<String>,
    rtmr3: Option<String>,
    mrconfigid: Option<String>,
    #[serde(default)]
    events: Vec<EventToml>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventToml {
    rtmr: u8,
    digest: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AzureRuleToml {
    name: String,
    mrtd: Option<String>,
    #[serde(default)]
    pcrs: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokedToml {
    register: String,
    value: String,
    reason: String,
}

impl PolicySet {
    /// Parse and validate a policy file.
    pub fn from_toml(text: &str) -> Result<Self, PolicyError> {
        let file: FileV1 = toml::from_str(text).map_err(|e| PolicyError::Syntax(e.to_string()))?;
        let mut namespaces = BTreeMap::new();
        for (name, ns) in file.namespaces {
            let invalid = |problem: String| PolicyError::Invalid { namespace: name.clone(), problem };
            let policy = ns.validate(&name).map_err(invalid)?;
            namespaces.insert(policy.name.clone(), policy);
        }
        Ok(PolicySet { namespaces })
    }
}

/// Parse one namespace's policy from a TOML table (as embedded, for example, in
/// the genesis file's `[guardian_policy]`).
pub fn namespace_from_toml(name: &str, table: toml::Value) -> Result<NamespacePolicy, PolicyError> {
    let invalid = |problem: String| PolicyError::Invalid { namespace: name.to_string(), problem };
    let ns: NamespaceToml = table.try_into().map_err(|e: toml::de::Error| invalid(e.to_string()))?;
    ns.validate(name).map_err(invalid)
}

impl NamespaceToml {
    fn validate(self, name: &str) -> Result<NamespacePolicy, String> {
        let name = NamespaceName::new(name)?;
        let tees = self.tees.iter().map(|t| t.parse::<TeeKind>()).collect::<Result<BTreeSet<_>, _>>()?;
        if tees.is_empty() {
            return Err("tees is empty: name the evidence kinds this namespace accepts".into());
        }
        let accepted_tcb_status: BTreeSet<TcbStatus> = self.accepted_tcb_status.into_iter().collect();
        if accepted_tcb_status.contains(&TcbStatus::Revoked) {
            return Err("Revoked can never be accepted".into());
        }
        if accepted_tcb_status.contains(&TcbStatus::Simulated) && !tees.contains(&TeeKind::Sim) {
            return Err("Simulated status is only meaningful with tees = [\"sim\"]".into());
        }
        if tees.contains(&TeeKind::Sim) {
            tracing::warn!(namespace = %name, "policy accepts the INSECURE simulated TEE");
        }
        for sa in &self.allowed_advisories {
            if !sa.starts_with("INTEL-SA-") {
                return Err(format!("advisory {sa:?} is not an Intel advisory id (INTEL-SA-nnnnn)"));
            }
        }
        let tdx = self.tdx.into_iter().map(TdxRuleToml::validate).collect::<Result<Vec<_>, _>>()?;
        let azure = self.azure.into_iter().map(AzureRuleToml::validate).collect::<Result<Vec<_>, _>>()?;
        for rules in [&tdx, &azure] {
            let mut names = BTreeSet::new();
            if let Some(dup) = rules.iter().find(|r| !names.insert(&r.name)) {
                return Err(format!("two rules are named {:?}", dup.name));
            }
        }
        let revoked = self
            .revoked
            .into_iter()
            .map(|r| {
                let register = Register::parse(&r.register)?;
                let value = register_value(register, &r.value)?.ok_or("a revoked value cannot be \"*\"")?;
                Ok(Revocation { register, value, reason: r.reason })
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(NamespacePolicy {
            name,
            tees,
            accepted_tcb_status,
            allowed_advisories: self.allowed_advisories.into_iter().collect(),
            require_sept_ve_disable: self.require_sept_ve_disable,
            azure_tcb_quirk: self.azure_tcb_quirk,
            tdx,
            azure,
            revoked,
        })
    }
}

impl TdxRuleToml {
    fn validate(self) -> Result<MeasurementRule, String> {
        let mut registers = BTreeMap::new();
        for (reg, v) in [
            (Register::Mrtd, &self.mrtd),
            (Register::Rtmr(0), &self.rtmr0),
            (Register::Rtmr(1), &self.rtmr1),
            (Register::Rtmr(2), &self.rtmr2),
            (Register::Rtmr(3), &self.rtmr3),
            (Register::MrConfigId, &self.mrconfigid),
        ] {
            if let Some(value) = v.as_deref().map(|v| register_value(reg, v)).transpose()?.flatten() {
                registers.insert(reg, value);
            }
        }
        let required_events = self
            .events
            .into_iter()
            .map(|e| {
                if e.rtmr > 3 {
                    return Err(format!("rule {:?}: event rtmr must be 0-3", self.name));
                }
                Ok((e.rtmr, register_value(Register::Rtmr(e.rtmr), &e.digest)?.ok_or("event digest cannot be \"*\"")?))
            })
            .collect::<Result<Vec<_>, String>>()?;
        // MRTD identifies the TD's firmware; a rule without it would admit any
        // TD image that reproduces the other registers.
        if !registers.contains_key(&Register::Mrtd) {
            return Err(format!("rule {:?} must pin mrtd: without it any TD firmware is accepted", self.name));
        }
        Ok(MeasurementRule { name: self.name, registers, required_events })
    }
}

impl AzureRuleToml {
    fn validate(self) -> Result<MeasurementRule, String> {
        let mut registers = BTreeMap::new();
        if let Some(v) = self.mrtd.as_deref().map(|v| register_value(Register::Mrtd, v)).transpose()?.flatten() {
            registers.insert(Register::Mrtd, v);
        }
        for (index, value) in &self.pcrs {
            let reg = Register::parse(&format!("pcr{index}"))
                .map_err(|_| format!("rule {:?}: PCR index {index:?} must be 0-23", self.name))?;
            if let Some(v) = register_value(reg, value)? {
                registers.insert(reg, v);
            }
        }
        // On Azure the vTPM lives in the paravisor, whose identity is the TD's
        // MRTD: without it pinned, any TD could act as a paravisor and sign any
        // PCRs. The PCRs then identify the guest.
        if !registers.contains_key(&Register::Mrtd) {
            return Err(format!(
                "rule {:?} must pin mrtd (the Azure paravisor's): without it any TD could forge the vTPM",
                self.name
            ));
        }
        if registers.len() < 2 {
            return Err(format!("rule {:?} must pin at least one PCR: the guest is identified by its PCRs", self.name));
        }
        Ok(MeasurementRule { name: self.name, registers, required_events: Vec::new() })
    }
}

/// Parse a register's expected value: `"*"` is unconstrained (None); anything
/// else must be hex of the register's size.
fn register_value(reg: Register, v: &str) -> Result<Option<Vec<u8>>, String> {
    if v == "*" {
        return Ok(None);
    }
    let len = match reg {
        Register::Pcr(_) => 32,
        _ => 48,
    };
    let bytes = hex::decode(v).map_err(|_| format!("{reg} value {v:?} is not hex"))?;
    if bytes.len() != len {
        return Err(format!("{reg} value has {} bytes, expected {len}", bytes.len()));
    }
    Ok(Some(bytes))
}
