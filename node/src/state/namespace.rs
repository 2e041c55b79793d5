//! A namespace in the replicated state (pure): its policy, secret versions,
//! stored secrets, configs, and the leaf certificates its CA issued, with the
//! rules every node applies before changing any of them.
//!
//! Secrets never enter the state in the clear: a stored secret is the HPKE
//! ciphertext the admin sealed to the namespace ingest key (derived from
//! `S(ns, v)`), kept as it came. Certificates are recorded (not their keys)
//! so that they can be listed, revoked and put on the CRL by every node alike.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::NodeId;
use crate::policy::document::NamespaceDocument;

/// Largest config kept in the replicated state (bigger ones belong in a backend).
pub const MAX_INLINE_CONFIG: usize = 256 * 1024;
/// Largest stored secret ciphertext (a 64 KiB secret plus HPKE overhead).
pub const MAX_SEALED_SECRET: usize = 64 * 1024 + 512;
/// Expired certificates stay listed (and on the CRL if revoked) this long, then are forgotten.
pub const EXPIRED_GRACE_SECS: u64 = 3600;

/// A certificate serial as hex (map keys must be strings in the JSON snapshot).
pub type SerialHex = String;

/// A namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Namespace {
    pub created_at: u64,
    /// The policy document (TOML, see [`crate::policy::document`]); `None` admits nobody.
    pub policy: Option<String>,
    /// Bumped by every policy change.
    pub policy_version: u64,
    /// The secret version served when a request asks for version 0.
    pub current_version: u32,
    /// Live secret versions and when each began (its CA certificate's not_before).
    pub versions: BTreeMap<u32, u64>,
    /// Versions retired for good.
    pub retired: BTreeSet<u32>,
    /// Admin-provided secrets by key path.
    pub secrets: BTreeMap<String, StoredSecret>,
    /// Configs by name.
    pub configs: BTreeMap<String, Config>,
    /// Leaf certificates issued and not yet forgotten, by serial.
    pub certs: BTreeMap<SerialHex, IssuedCert>,
    /// Serials revoked one by one, with when.
    pub revoked_serials: BTreeMap<SerialHex, u64>,
    /// When the policy last changed or a version was retired: the revocation date of the
    /// certificates those revoke.
    pub rules_changed_at: u64,
    /// Bumped by every change to what the CRL lists, so CRL numbers only grow.
    pub crl_changes: u64,
}

/// A secret an admin stored, sealed to the ingest key of secret version `version`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSecret {
    pub version: u32,
    /// Protobuf `EncryptedSecret` bytes.
    #[serde(with = "hex::serde")]
    pub sealed: Vec<u8>,
    pub written_at: u64,
}

/// Where a config's bytes are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConfigSource {
    /// In the replicated state.
    Inline(#[serde(with = "hex::serde")] Vec<u8>),
    /// At a backend URI (e.g. `file:///srv/configs/app.toml`); checked against the digest on read.
    Uri(String),
}

/// A named, content-addressed config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    #[serde(with = "hex::serde")]
    pub digest: [u8; 32],
    pub media_type: String,
    pub source: ConfigSource,
    pub written_at: u64,
}

/// A leaf certificate the namespace CA issued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedCert {
    /// Secret version whose CA signed it.
    pub version: u32,
    /// The policy rule that admitted the workload.
    pub rule: String,
    /// SHA-256 of the certified key's SPKI DER.
    #[serde(with = "hex::serde")]
    pub spki_sha256: [u8; 32],
    pub issued_at: u64,
    pub not_after: u64,
    /// Evidence kind ("tdx", "az-tdx-vtpm", "sim").
    pub tee: String,
    /// The workload's measurements (register name as `policy::Register` prints it, hex value):
    /// revoking any of them revokes the certificate.
    pub measurements: BTreeMap<String, String>,
    pub issued_by: NodeId,
    /// Subject and SANs, for listings.
    pub subject: String,
}

/// A node-signed record for the log (the body of a `Command::Record` envelope).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Record {
    /// A workload attested and was issued a certificate; its challenge is spent.
    CertIssued {
        namespace: String,
        serial: SerialHex,
        /// SHA-256 of the challenge the evidence was bound to, and when it expires.
        #[serde(with = "hex::serde")]
        challenge: [u8; 32],
        challenge_expires: u64,
        cert: IssuedCert,
    },
    /// A secret written through a CoCo front end (Vault KV v1 POST, KBS
    /// set-resource). The node sealed it to the namespace ingest key as
    /// `guardctl secret put` does.
    SecretWritten {
        namespace: String,
        key_path: String,
        version: u32,
        /// Protobuf `EncryptedSecret` bytes.
        #[serde(with = "hex::serde")]
        sealed: Vec<u8>,
        by: Writer,
    },
    /// A stored secret deleted through a CoCo front end.
    SecretDeleted { namespace: String, key_path: String, by: Writer },
}

/// Who authorised a write through a CoCo front end; checked again on apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Writer {
    /// A read-write access token of the namespace (its id: the cluster holds only its hash).
    Token { id: String },
    /// An admin's EdDSA JWT (the KBS admin endpoints), verified again against the admin keys.
    Admin { key_id: String, jwt: String },
}

impl std::fmt::Display for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Writer::Token { id } => write!(f, "token:{id}"),
            Writer::Admin { key_id, .. } => write!(f, "admin:{key_id}"),
        }
    }
}

/// Why a certificate is no longer good.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertRefusal {
    #[error("certificate {0} was not issued by this namespace (or has been forgotten after expiry)")]
    Unknown(SerialHex),
    #[error("certificate {0} expired; attest again")]
    Expired(SerialHex),
    #[error("certificate {0} is revoked: {1}")]
    Revoked(SerialHex, String),
}

impl Namespace {
    /// A new namespace at time `now`, with secret version 1.
    pub fn new(now: u64, policy: Option<String>) -> Self {
        Namespace {
            created_at: now,
            policy_version: u64::from(policy.is_some()),
            policy,
            current_version: 1,
            versions: BTreeMap::from([(1, now)]),
            ..Default::default()
        }
    }

    /// The version a request means: 0 = current; otherwise it must be live.
    pub fn resolve_version(&self, version: u32) -> Result<u32, String> {
        let v = if version == 0 { self.current_version } else { version };
        if self.versions.contains_key(&v) {
            Ok(v)
        } else if self.retired.contains(&v) {
            Err(format!("secret version {v} was retired"))
        } else {
            Err(format!("secret version {v} does not exist (current is {})", self.current_version))
        }
    }

    /// Parse the policy document (`None` when no policy is set).
    pub fn document(&self, namespace: &str) -> Result<Option<NamespaceDocument>, String> {
        self.policy.as_deref().map(|p| NamespaceDocument::parse(namespace, p).map_err(|e| e.to_string())).transpose()
    }

    /// Is the certificate `serial` still good at `now` under `doc` (the current policy)?
    pub fn cert_status(
        &self,
        serial: &str,
        doc: Option<&NamespaceDocument>,
        now: u64,
    ) -> Result<&IssuedCert, CertRefusal> {
        let cert = self.certs.get(serial).ok_or_else(|| CertRefusal::Unknown(serial.to_string()))?;
        if let Some(why) = self.revocation(serial, cert, doc) {
            return Err(CertRefusal::Revoked(serial.to_string(), why));
        }
        if now > cert.not_after {
            return Err(CertRefusal::Expired(serial.to_string()));
        }
        Ok(cert)
    }

    /// Why a recorded certificate is revoked, if it is: by serial, its secret
    /// version retired, its rule removed from the policy, or one of its
    /// measurements revoked.
    pub fn revocation(&self, serial: &str, cert: &IssuedCert, doc: Option<&NamespaceDocument>) -> Option<String> {
        if self.revoked_serials.contains_key(serial) {
            return Some("revoked by an admin".into());
        }
        if !self.versions.contains_key(&cert.version) {
            return Some(format!("secret version {} was retired", cert.version));
        }
        let Some(doc) = doc else { return Some("the namespace has no policy".into()) };
        if !doc.has_rule(&cert.rule) {
            return Some(format!("rule {:?} was removed from the policy", cert.rule));
        }
        doc.workloads.revoked.iter().find_map(|r| {
            let value = hex::encode(&r.value);
            (cert.measurements.get(&r.register.to_string()) == Some(&value))
                .then(|| format!("{} {}… is revoked: {}", r.register, &value[..value.len().min(16)], r.reason))
        })
    }

    /// Revoked certificates not yet forgotten, with when each was revoked (for the CRL).
    pub fn revoked_certs(&self, doc: Option<&NamespaceDocument>) -> Vec<(SerialHex, u64)> {
        self.certs
            .iter()
            .filter(|(s, c)| self.revocation(s, c, doc).is_some())
            .map(|(s, c)| {
                let at = self.revoked_serials.get(s).copied().unwrap_or(self.rules_changed_at);
                (s.clone(), at.max(c.issued_at))
            })
            .collect()
    }

    /// Forget certificates (and their revocations) that expired more than
    /// [`EXPIRED_GRACE_SECS`] ago.
    pub fn prune(&mut self, now: u64) {
        let gone: Vec<SerialHex> = self
            .certs
            .iter()
            .filter(|(_, c)| c.not_after.saturating_add(EXPIRED_GRACE_SECS) < now)
            .map(|(s, _)| s.clone())
            .collect();
        for s in gone {
            self.certs.remove(&s);
            self.revoked_serials.remove(&s);
            // The CRL may have listed it.
            self.crl_changes += 1;
        }
    }

    /// Replace the policy (after checking it parses), optionally guarding against a lost update.
    pub fn set_policy(&mut self, namespace: &str, toml: &str, expected_version: u64, now: u64) -> Result<(), String> {
        if expected_version != 0 && expected_version != self.policy_version {
            return Err(format!(
                "the policy changed since you read it (version {} now, your edit is based on {expected_version}): read it again and redo the edit",
                self.policy_version
            ));
        }
        NamespaceDocument::parse(namespace, toml).map_err(|e| e.to_string())?;
        self.policy = Some(toml.to_string());
        self.policy_version += 1;
        self.rules_changed(now);
        Ok(())
    }

    fn rules_changed(&mut self, now: u64) {
        self.rules_changed_at = now;
        self.crl_changes += 1;
    }

    /// Move to secret version v+1 at `now`.
    pub fn rotate(&mut self, now: u64) -> u32 {
        self.current_version += 1;
        self.versions.insert(self.current_version, now);
        self.current_version
    }

    /// Stop serving `version` for good.
    pub fn retire(&mut self, version: u32, now: u64) -> Result<(), String> {
        if version == self.current_version {
            return Err(format!("version {version} is current: rotate first, then retire it"));
        }
        if self.versions.remove(&version).is_none() {
            return Err(match self.retired.contains(&version) {
                true => format!("version {version} is already retired"),
                false => format!("version {version} does not exist"),
            });
        }
        let sealed: Vec<&str> =
            self.secrets.iter().filter(|(_, s)| s.version == version).map(|(p, _)| p.as_str()).collect();
        if !sealed.is_empty() {
            return Err(format!(
                "stored secrets {sealed:?} are sealed to version {version}: put them again (they are sealed to the current version) before retiring it"
            ));
        }
        self.retired.insert(version);
        self.rules_changed(now);
        Ok(())
    }

    /// Store an admin's sealed secret under `key_path`.
    pub fn put_secret(&mut self, key_path: &str, version: u32, sealed: Vec<u8>, now: u64) -> Result<(), String> {
        let path = crate::keys::KeyPath::parse(key_path).map_err(|e| e.to_string())?;
        // A sealed/ secret is encrypted to a workload's own key, not to a namespace version (0).
        let live = match path.is_workload_sealed() {
            true => version == 0,
            false => self.versions.contains_key(&version),
        };
        if !live {
            return Err(format!("secret version {version} is not live; seal to the current version"));
        }
        if sealed.is_empty() || sealed.len() > MAX_SEALED_SECRET {
            return Err(format!("a sealed secret must be 1 to {MAX_SEALED_SECRET} bytes"));
        }
        self.secrets.insert(key_path.to_string(), StoredSecret { version, sealed, written_at: now });
        Ok(())
    }

    /// Store a config under `name`; inline content must match the digest.
    pub fn put_config(
        &mut self,
        name: &str,
        media_type: &str,
        source: ConfigSource,
        digest: [u8; 32],
        now: u64,
    ) -> Result<(), String> {
        crate::keys::KeyName::new(name).map_err(|e| format!("config name: {e}"))?;
        if media_type.len() > 128 || media_type.chars().any(|c| c.is_control()) {
            return Err("media type must be at most 128 printable characters".into());
        }
        match &source {
            ConfigSource::Inline(content) => {
                if content.len() > MAX_INLINE_CONFIG {
                    return Err(format!("configs over {MAX_INLINE_CONFIG} bytes belong in a backend (file://)"));
                }
                if <[u8; 32]>::from(sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(content)))
                    != digest
                {
                    return Err("the config content does not match its digest".into());
                }
            }
            ConfigSource::Uri(uri) => crate::workload::backend::check_uri(uri)?,
        }
        self.configs
            .insert(name.to_string(), Config { digest, media_type: media_type.to_string(), source, written_at: now });
        Ok(())
    }

    /// Put one serial on the CRL.
    pub fn revoke_serial(&mut self, serial: &str, now: u64) -> Result<(), String> {
        if !self.certs.contains_key(serial) {
            return Err(format!("no certificate with serial {serial} (expired ones are forgotten after an hour)"));
        }
        if self.revoked_serials.insert(serial.to_string(), now).is_some() {
            return Err(format!("certificate {serial} is already revoked"));
        }
        self.crl_changes += 1;
        Ok(())
    }

    /// Record an issued certificate after the checks every node repeats.
    pub fn record_cert(&mut self, namespace: &str, serial: &str, cert: IssuedCert, now: u64) -> Result<(), String> {
        if serial.len() != 32 || hex::decode(serial).is_err() {
            return Err("a serial is 16 bytes in hex".into());
        }
        if self.certs.contains_key(serial) {
            return Err(format!("serial {serial} is already taken"));
        }
        if !self.versions.contains_key(&cert.version) {
            return Err(format!("secret version {} is not live", cert.version));
        }
        let doc = self.document(namespace)?.ok_or("the namespace has no policy")?;
        if !doc.has_rule(&cert.rule) {
            return Err(format!("rule {:?} is not in the namespace policy", cert.rule));
        }
        let lifetime = cert.not_after.saturating_sub(cert.issued_at);
        if lifetime > u64::from(doc.certificates.max_validity_secs) + 60 {
            return Err(format!("a lifetime of {lifetime} s exceeds the profile's maximum"));
        }
        if cert.issued_at > now.saturating_add(super::admin::MAX_SKEW_SECS as u64) {
            return Err("the certificate is issued in the future".into());
        }
        if let Some(why) = self.revocation(serial, &cert, Some(&doc)) {
            return Err(format!("refused: {why}"));
        }
        self.certs.insert(serial.to_string(), cert);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_secrets_are_sealed_to_a_live_version_or_to_a_workload() {
        let mut ns = Namespace::new(0, None);
        ns.put_secret("secret/a", 1, vec![1], 0).unwrap();
        assert!(ns.put_secret("secret/a", 2, vec![1], 0).unwrap_err().contains("not live"));
        assert!(ns.put_secret("secret/b", 0, vec![1], 0).is_err(), "version 0 is only for sealed/");
        ns.put_secret("sealed/tls", 0, vec![1], 0).unwrap();
        assert!(ns.put_secret("sealed/tls", 1, vec![1], 0).is_err(), "sealed/ is never under a version");
        assert!(ns.put_secret("secret/c", 1, vec![], 0).is_err());
        assert!(ns.put_secret("secret/c", 1, vec![0; MAX_SEALED_SECRET + 1], 0).is_err());
        ns.rotate(10);
        let refusal = ns.retire(1, 20).unwrap_err();
        assert!(refusal.contains("secret/a") && !refusal.contains("sealed/tls"), "{refusal}");
    }
}
