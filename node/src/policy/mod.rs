//! Attestation policy: which verified TEEs may act in which namespace.
//!
//! A [`PolicySet`] maps namespace names to a [`NamespacePolicy`]. Evaluating
//! [`Claims`] against a namespace yields a [`Decision`] whose reason is meant
//! for people ("RTMR2 does not match any allowed value for namespace
//! k8s-staging"). Policies are parsed from TOML by [`file`]; every field is
//! checked when loaded, so an evaluated policy is always well formed.
//!
//! Safe defaults: a namespace accepts no TEE kind, TCB status or measurement
//! until it names them; debug TDs are never accepted; SEPT_VE_DISABLE is
//! required; the Azure TCB quirk is off; the simulated TEE must be listed
//! explicitly (and is refused by the verifier unless simulation is enabled).

pub mod document;
pub mod file;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::attest::{Claims, TcbStatus, TeeKind, VerifyOptions};

/// A namespace name: 1–63 of `a-z 0-9 -`, starting with a letter or digit.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NamespaceName(String);

impl NamespaceName {
    pub fn new(s: &str) -> Result<Self, String> {
        let ok = !s.is_empty()
            && s.len() <= 63
            && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !s.starts_with('-');
        if ok {
            Ok(NamespaceName(s.to_string()))
        } else {
            Err(format!("invalid namespace name {s:?}: use 1-63 characters of a-z, 0-9 and '-', not starting with '-'"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NamespaceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A measurement register that rules and revocations can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Register {
    Mrtd,
    Rtmr(u8),
    MrConfigId,
    Pcr(u8),
}

impl Register {
    /// The register's value in `claims`, if the evidence kind has it.
    pub fn value<'c>(&self, claims: &'c Claims) -> Option<&'c [u8]> {
        match *self {
            Register::Mrtd => Some(&claims.td.mrtd),
            Register::Rtmr(i) => claims.td.rtmr.get(usize::from(i)).map(|r| &r[..]),
            Register::MrConfigId => Some(&claims.td.mrconfigid),
            Register::Pcr(i) => claims.pcrs.get(&i).map(|p| &p[..]),
        }
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        let lower = s.to_ascii_lowercase();
        let index = |prefix: &str, max: u8| -> Option<u8> {
            lower.strip_prefix(prefix)?.parse::<u8>().ok().filter(|i| *i <= max)
        };
        match lower.as_str() {
            "mrtd" => Ok(Register::Mrtd),
            "mrconfigid" => Ok(Register::MrConfigId),
            _ => index("rtmr", 3)
                .map(Register::Rtmr)
                .or_else(|| index("pcr", 23).map(Register::Pcr))
                .ok_or_else(|| format!("unknown register {s:?}: use mrtd, mrconfigid, rtmr0-rtmr3 or pcr0-pcr23")),
        }
    }
}

impl fmt::Display for Register {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Register::Mrtd => f.write_str("MRTD"),
            Register::Rtmr(i) => write!(f, "RTMR{i}"),
            Register::MrConfigId => f.write_str("MRCONFIGID"),
            Register::Pcr(i) => write!(f, "PCR{i}"),
        }
    }
}

/// One allowed combination of measurements. A register the rule does not name
/// is unconstrained; a named one must match exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeasurementRule {
    pub name: String,
    pub registers: BTreeMap<Register, Vec<u8>>,
    /// Event-log digests that must appear, by RTMR (e.g. the kernel's).
    pub required_events: Vec<(u8, Vec<u8>)>,
}

impl MeasurementRule {
    /// Everything in the rule that the claims do not satisfy (empty: a match).
    fn mismatches(&self, claims: &Claims) -> Vec<Mismatch> {
        let registers = self
            .registers
            .iter()
            .filter(|(reg, want)| reg.value(claims) != Some(want.as_slice()))
            .map(|(reg, _)| Mismatch::Register(*reg));
        let events = self
            .required_events
            .iter()
            .filter(|(rtmr, digest)| !claims.events.iter().any(|e| e.rtmr == *rtmr && e.digest == *digest))
            .map(|(rtmr, digest)| Mismatch::Event(*rtmr, digest.clone()));
        registers.chain(events).collect()
    }
}

enum Mismatch {
    Register(Register),
    Event(u8, Vec<u8>),
}

/// A measurement that must never be accepted again, whatever the rules say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    pub register: Register,
    pub value: Vec<u8>,
    pub reason: String,
}

/// The attestation policy of one namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespacePolicy {
    pub name: NamespaceName,
    pub tees: BTreeSet<TeeKind>,
    pub accepted_tcb_status: BTreeSet<TcbStatus>,
    pub allowed_advisories: BTreeSet<String>,
    pub require_sept_ve_disable: bool,
    pub azure_tcb_quirk: bool,
    /// Rules for TDX and simulated-TEE claims (TD registers).
    pub tdx: Vec<MeasurementRule>,
    /// Rules for Azure claims (vTPM PCRs; MRTD may be named too).
    pub azure: Vec<MeasurementRule>,
    pub revoked: Vec<Revocation>,
}

impl NamespacePolicy {
    /// Verification options this namespace implies.
    pub fn verify_options(&self, now: u64) -> VerifyOptions {
        VerifyOptions {
            now,
            require_sept_ve_disable: self.require_sept_ve_disable,
            azure_tcb_quirk: self.azure_tcb_quirk,
            expected_nonce: None,
        }
    }

    /// Decide whether verified `claims` may act in this namespace.
    pub fn evaluate(&self, claims: &Claims) -> Decision {
        let ns = &self.name;
        let deny = |reason: String| Decision::Deny { reason };
        if !self.tees.contains(&claims.tee) {
            return deny(format!("{} evidence is not accepted in namespace {ns}", claims.tee));
        }
        let attrs = claims.td.td_attributes;
        if attrs.debug() {
            return deny(format!("the TD runs in debug mode, which is never allowed (namespace {ns})"));
        }
        if self.require_sept_ve_disable && !attrs.sept_ve_disable() {
            return deny(format!("the TD does not set SEPT_VE_DISABLE, which namespace {ns} requires"));
        }
        if let Some(name) = claims.tcb_override {
            if !self.azure_tcb_quirk {
                return deny(format!(
                    "the platform's TCB only matched with the {name} override, which namespace {ns} does not allow"
                ));
            }
        }
        if !self.accepted_tcb_status.contains(&claims.tcb_status) {
            return deny(format!("TCB status {} is not accepted in namespace {ns}", claims.tcb_status));
        }
        if let Some(sa) = claims.advisory_ids.iter().find(|a| !self.allowed_advisories.contains(*a)) {
            return deny(format!("advisory {sa} applies to this platform and is not allowed in namespace {ns}"));
        }
        for r in &self.revoked {
            if r.register.value(claims) == Some(r.value.as_slice()) {
                return deny(format!(
                    "{} {} is revoked in namespace {ns}: {}",
                    r.register,
                    short_hex(&r.value),
                    r.reason
                ));
            }
        }
        let rules = match claims.tee {
            TeeKind::Tdx | TeeKind::Sim => &self.tdx,
            TeeKind::AzTdxVtpm => &self.azure,
        };
        if rules.is_empty() {
            return deny(format!("namespace {ns} has no measurement rules for {} evidence", claims.tee));
        }
        let mut closest: Option<(&MeasurementRule, Vec<Mismatch>)> = None;
        for rule in rules {
            let m = rule.mismatches(claims);
            if m.is_empty() {
                return Decision::Allow { rule: rule.name.clone() };
            }
            // Differing registers weigh more than missing events: a rule whose
            // registers all match is the one the user most likely meant.
            let weight = |m: &[Mismatch]| {
                let regs = m.iter().filter(|x| matches!(x, Mismatch::Register(_))).count();
                (regs, m.len())
            };
            if closest.as_ref().is_none_or(|(_, best)| weight(&m) < weight(best)) {
                closest = Some((rule, m));
            }
        }
        deny(explain(ns, rules, claims, closest))
    }
}

/// Why no rule matched, in one sentence: name a register whose value no rule
/// allows, or else the closest rule and where it differs.
fn explain(
    ns: &NamespaceName,
    rules: &[MeasurementRule],
    claims: &Claims,
    closest: Option<(&MeasurementRule, Vec<Mismatch>)>,
) -> String {
    let registers: BTreeSet<Register> = rules.iter().flat_map(|r| r.registers.keys().copied()).collect();
    for reg in registers {
        let allowed: Vec<&Vec<u8>> = rules.iter().filter_map(|r| r.registers.get(&reg)).collect();
        let value = reg.value(claims);
        if allowed.len() == rules.len() && !allowed.iter().any(|a| Some(a.as_slice()) == value) {
            return match value {
                Some(v) => format!("{reg} {} does not match any allowed value for namespace {ns}", short_hex(v)),
                None => format!("the evidence has no {reg}, which namespace {ns} requires"),
            };
        }
    }
    match closest.as_ref().and_then(|(rule, m)| Some((rule, m.first()?))) {
        Some((rule, Mismatch::Register(reg))) => {
            format!("measurements match no rule of namespace {ns}; rule {:?} differs in {reg}", rule.name)
        }
        Some((rule, Mismatch::Event(rtmr, d))) => format!(
            "measurements match no rule of namespace {ns}; rule {:?} requires an RTMR{rtmr} event with digest {} (was an event log supplied?)",
            rule.name,
            short_hex(d)
        ),
        None => format!("no rule of namespace {ns} matches"),
    }
}

fn short_hex(v: &[u8]) -> String {
    let h = hex::encode(v);
    if h.len() > 16 {
        format!("{}…", &h[..16])
    } else {
        h
    }
}

/// The outcome of evaluating claims against a namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow { rule: String },
    Deny { reason: String },
}

impl Decision {
    pub fn is_allow(&self) -> bool {
        matches!(self, Decision::Allow { .. })
    }

    pub fn reason(&self) -> String {
        match self {
            Decision::Allow { rule } => format!("allowed by rule {rule:?}"),
            Decision::Deny { reason } => reason.clone(),
        }
    }
}

/// All namespaces' policies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicySet {
    pub namespaces: BTreeMap<NamespaceName, NamespacePolicy>,
}

impl PolicySet {
    pub fn namespace(&self, name: &str) -> Result<&NamespacePolicy, String> {
        NamespaceName::new(name).and_then(|n| {
            self.namespaces.get(&n).ok_or_else(|| {
                let known: Vec<&str> = self.namespaces.keys().map(|k| k.as_str()).collect();
                format!("namespace {name} is not defined in the policy (defined: {})", known.join(", "))
            })
        })
    }
}

#[cfg(test)]
mod tests;
