//! The namespace policy document: one TOML file that says everything about
//! who gets what in a namespace.
//!
//! ```toml
//! require_encrypted_secrets = false   # true: never plaintext over TLS, even to mTLS callers
//!
//! [workloads]                         # which workload TEEs are admitted (the policy::file format
//! tees = ["tdx"]                      # of one namespace: tees, TCB, rules, revoked measurements)
//! accepted_tcb_status = ["UpToDate"]
//! [[workloads.tdx]]
//! name = "db"
//! mrtd = "<96 hex>"
//!
//! [certificates]                      # leaf certificate profile
//! default_validity_secs = 3600
//! max_validity_secs = 86400
//! dns_sans = ["*.db.svc.cluster.local"]   # exact, or "*.suffix" (one extra label)
//! uri_sans = ["spiffe://prod/ns/db/*"]    # exact, or a prefix ending in "*"
//!
//! [[grants]]                          # per rule; no [[grants]] at all = every rule reads everything
//! rule = "db"
//! keys = ["pvc/", "secret/db-"]       # key path prefixes
//! configs = ["db"]                    # config names
//! ```
//! Unknown keys are errors. A grant naming a rule the document does not
//! define is an error too: it would silently grant nothing.

use std::collections::BTreeSet;

use serde::Deserialize;

use super::file::{namespace_from_toml, PolicyError};
use super::NamespacePolicy;
use crate::ca::leaf::CertificateProfile;

/// Longest policy document, in bytes (it is replicated in every entry that sets it).
pub const MAX_POLICY_BYTES: usize = 64 * 1024;

/// One rule's access to keys and configs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub rule: String,
    /// Key path prefixes the rule may read.
    pub keys: Vec<String>,
    /// Config names the rule may read.
    pub configs: BTreeSet<String>,
}

/// A parsed, checked namespace policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceDocument {
    pub workloads: NamespacePolicy,
    pub certificates: CertificateProfile,
    /// Empty: every admitted rule may read every key and config.
    pub grants: Vec<Grant>,
    pub require_encrypted_secrets: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DocumentToml {
    #[serde(default)]
    require_encrypted_secrets: bool,
    workloads: toml::Value,
    #[serde(default)]
    certificates: CertificatesToml,
    #[serde(default)]
    grants: Vec<GrantToml>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CertificatesToml {
    #[serde(default = "default_validity")]
    default_validity_secs: u32,
    #[serde(default = "max_validity")]
    max_validity_secs: u32,
    #[serde(default)]
    dns_sans: Vec<String>,
    #[serde(default)]
    uri_sans: Vec<String>,
}

impl Default for CertificatesToml {
    fn default() -> Self {
        CertificatesToml {
            default_validity_secs: default_validity(),
            max_validity_secs: max_validity(),
            dns_sans: vec![],
            uri_sans: vec![],
        }
    }
}

/// One hour: short-lived, so revocation matters for at most that long where CRLs are not checked.
fn default_validity() -> u32 {
    3600
}

fn max_validity() -> u32 {
    24 * 3600
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantToml {
    rule: String,
    #[serde(default)]
    keys: Vec<String>,
    #[serde(default)]
    configs: Vec<String>,
}

impl NamespaceDocument {
    /// Parse and check the policy document of `namespace`.
    pub fn parse(namespace: &str, text: &str) -> Result<Self, PolicyError> {
        let invalid = |problem: String| PolicyError::Invalid { namespace: namespace.to_string(), problem };
        if text.len() > MAX_POLICY_BYTES {
            return Err(invalid(format!("the policy document exceeds {MAX_POLICY_BYTES} bytes")));
        }
        let doc: DocumentToml = toml::from_str(text).map_err(|e| PolicyError::Syntax(e.to_string()))?;
        let workloads = namespace_from_toml(namespace, doc.workloads)?;
        let c = doc.certificates;
        let certificates = CertificateProfile {
            default_validity_secs: c.default_validity_secs,
            max_validity_secs: c.max_validity_secs,
            dns_sans: c.dns_sans,
            uri_sans: c.uri_sans,
        };
        certificates.check().map_err(|e| invalid(format!("[certificates]: {e}")))?;
        let rules: BTreeSet<&str> = workloads.tdx.iter().chain(&workloads.azure).map(|r| r.name.as_str()).collect();
        let mut grants = Vec::with_capacity(doc.grants.len());
        for g in doc.grants {
            if !rules.contains(g.rule.as_str()) {
                return Err(invalid(format!("grant for rule {:?}, which [workloads] does not define", g.rule)));
            }
            if let Some(p) = g.keys.iter().find(|p| p.is_empty()) {
                return Err(invalid(format!("grant for rule {:?} has an empty key prefix {p:?}", g.rule)));
            }
            grants.push(Grant { rule: g.rule, keys: g.keys, configs: g.configs.into_iter().collect() });
        }
        Ok(NamespaceDocument {
            workloads,
            certificates,
            grants,
            require_encrypted_secrets: doc.require_encrypted_secrets,
        })
    }

    /// Whether the document defines a measurement rule of this name.
    pub fn has_rule(&self, rule: &str) -> bool {
        self.workloads.tdx.iter().chain(&self.workloads.azure).any(|r| r.name == rule)
    }

    /// May a workload admitted by `rule` read the key at `key_path`?
    pub fn may_read_key(&self, rule: &str, key_path: &str) -> Result<(), String> {
        if self.grants.is_empty() {
            return Ok(());
        }
        let allowed =
            self.grants.iter().filter(|g| g.rule == rule).any(|g| g.keys.iter().any(|p| key_path.starts_with(p)));
        if allowed {
            Ok(())
        } else {
            Err(format!("rule {rule:?} is not granted key {key_path:?} in namespace {}", self.workloads.name))
        }
    }

    /// May a workload admitted by `rule` read the config `name`?
    pub fn may_read_config(&self, rule: &str, name: &str) -> Result<(), String> {
        if self.grants.is_empty() || self.grants.iter().any(|g| g.rule == rule && g.configs.contains(name)) {
            Ok(())
        } else {
            Err(format!("rule {rule:?} is not granted config {name:?} in namespace {}", self.workloads.name))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> String {
        format!(
            "[workloads]\ntees = [\"sim\"]\naccepted_tcb_status = [\"Simulated\"]\n\
             [[workloads.tdx]]\nname = \"app\"\nmrtd = \"{}\"\n",
            "11".repeat(48)
        )
    }

    #[test]
    fn defaults_admit_and_grant_everything_to_admitted_rules() {
        let d = NamespaceDocument::parse("demo", &base()).unwrap();
        assert!(d.has_rule("app") && !d.has_rule("other"));
        assert_eq!((d.certificates.default_validity_secs, d.certificates.max_validity_secs), (3600, 86400));
        assert!(d.may_read_key("app", "pvc/x").is_ok() && d.may_read_config("app", "c").is_ok());
        assert!(!d.require_encrypted_secrets);
    }

    #[test]
    fn grants_limit_reads_by_prefix_and_name() {
        let text = format!("{}[[grants]]\nrule = \"app\"\nkeys = [\"pvc/\"]\nconfigs = [\"app\"]\n", base());
        let d = NamespaceDocument::parse("demo", &text).unwrap();
        assert!(d.may_read_key("app", "pvc/db").is_ok());
        let e = d.may_read_key("app", "secret/token").unwrap_err();
        assert!(e.contains("not granted key \"secret/token\""), "{e}");
        assert!(d.may_read_config("app", "app").is_ok() && d.may_read_config("app", "other").is_err());
    }

    #[test]
    fn mistakes_are_refused_with_the_reason() {
        let unknown_rule = format!("{}[[grants]]\nrule = \"nope\"\nkeys = [\"pvc/\"]\n", base());
        let e = NamespaceDocument::parse("demo", &unknown_rule).unwrap_err().to_string();
        assert!(e.contains("which [workloads] does not define"), "{e}");
        let misspelt = format!("{}[certificates]\nmax_validty_secs = 5\n", base());
        assert!(NamespaceDocument::parse("demo", &misspelt).is_err());
        let inverted = format!("{}[certificates]\ndefault_validity_secs = 7200\nmax_validity_secs = 3600\n", base());
        assert!(NamespaceDocument::parse("demo", &inverted).is_err());
        assert!(NamespaceDocument::parse("demo", "require_encrypted_secrets = true\n").is_err());
        assert!(NamespaceDocument::parse("demo", &"#".repeat(MAX_POLICY_BYTES + 1)).is_err());
    }
}
