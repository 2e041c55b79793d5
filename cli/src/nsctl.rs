//! The namespace admin surface: namespaces and their policies, measurements,
//! secret versions, stored secrets, configs and certificates. Changes are
//! signed admin commands; reads ask one node.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use guardian_node::keys::sealing;
use guardian_proto::v1::admin_command::Body;
use guardian_proto::v1::*;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::admin_client::ask_first;
use crate::cluster::ClusterFile;
use crate::output::out;
use crate::UsageError;

/// Where to read from.
#[derive(clap::Args)]
pub struct ReadArgs {
    #[arg(long, default_value = ".guardian-dev")]
    pub cluster: PathBuf,
    /// Ask this node (default: the first that answers).
    #[arg(long)]
    pub node: Option<u64>,
    #[arg(long)]
    pub json: bool,
}

fn read_file(path: &Path, what: &str) -> Result<Vec<u8>, UsageError> {
    std::fs::read(path).map_err(|e| UsageError(format!("cannot read {what} {}: {e}", path.display())))
}

/// Read and check a policy document, so a mistake is reported before anything is signed.
pub fn policy_from_file(namespace: &str, path: &Path) -> Result<NamespacePolicy, UsageError> {
    let text =
        String::from_utf8(read_file(path, "policy")?).map_err(|_| UsageError("the policy is not UTF-8".into()))?;
    guardian_node::policy::document::NamespaceDocument::parse(namespace, &text)
        .map_err(|e| UsageError(format!("{}: {e}", path.display())))?;
    Ok(NamespacePolicy { toml: text })
}

pub fn create(name: &str, policy: Option<&Path>) -> Result<Body, UsageError> {
    let policy = policy.map(|p| policy_from_file(name, p)).transpose()?;
    Ok(Body::CreateNamespace(CreateNamespace { namespace: name.to_string(), policy }))
}

/// A namespace as one node sees it.
pub async fn fetch(dir: &Path, node: Option<u64>, name: &str) -> anyhow::Result<(u64, GetNamespaceResponse)> {
    let cluster = ClusterFile::load(dir)?;
    let req = GetNamespaceRequest { namespace: name.to_string() };
    ask_first(&cluster, node, |mut c| {
        let req = req.clone();
        async move { c.get_namespace(req).await }
    })
    .await
}

/// Replace the policy with the one in `file`, guarded by the version it was based on.
pub async fn set_policy(dir: &Path, name: &str, file: &Path) -> anyhow::Result<Body> {
    let policy = policy_from_file(name, file)?;
    let (_, ns) = fetch(dir, None, name).await?;
    let expected = ns.summary.map_or(0, |s| s.policy_version);
    Ok(Body::SetNamespacePolicy(SetNamespacePolicy {
        namespace: name.to_string(),
        policy: Some(policy),
        expected_policy_version: expected,
    }))
}

/// What to change about a namespace's measurements.
pub enum MeasurementEdit {
    /// Add (or replace) a TDX/sim rule with these registers (`mrtd`, `rtmr0`..`rtmr3`, `mrconfigid`).
    Allow { rule: String, registers: Vec<(String, String)> },
    /// Never accept this register value again; revokes the certificates issued to it.
    Revoke { register: String, value: String, reason: String },
}

/// Edit the current policy document and sign the result as a SetNamespacePolicy.
pub async fn edit_measurements(dir: &Path, name: &str, edit: MeasurementEdit) -> anyhow::Result<Body> {
    let (_, ns) = fetch(dir, None, name).await?;
    let text = ns
        .policy
        .map(|p| p.toml)
        .ok_or_else(|| UsageError(format!("namespace {name} has no policy yet: set one with `guardctl policy set`")))?;
    let mut doc: toml::Table = toml::from_str(&text)?;
    let workloads = doc
        .get_mut("workloads")
        .and_then(|w| w.as_table_mut())
        .ok_or_else(|| UsageError("the policy has no [workloads] table".into()))?;
    match edit {
        MeasurementEdit::Allow { rule, registers } => {
            let mut t = toml::Table::new();
            t.insert("name".into(), rule.clone().into());
            for (reg, value) in registers {
                t.insert(reg.to_ascii_lowercase(), value.into());
            }
            let rules = workloads.entry("tdx").or_insert_with(|| toml::Value::Array(vec![]));
            let arr = rules.as_array_mut().ok_or_else(|| UsageError("workloads.tdx is not an array".into()))?;
            arr.retain(|r| r.get("name").and_then(|n| n.as_str()) != Some(rule.as_str()));
            arr.push(toml::Value::Table(t));
        }
        MeasurementEdit::Revoke { register, value, reason } => {
            let mut t = toml::Table::new();
            t.insert("register".into(), register.into());
            t.insert("value".into(), value.into());
            t.insert("reason".into(), reason.into());
            let revoked = workloads.entry("revoked").or_insert_with(|| toml::Value::Array(vec![]));
            revoked
                .as_array_mut()
                .ok_or_else(|| UsageError("workloads.revoked is not an array".into()))?
                .push(toml::Value::Table(t));
        }
    }
    let text = toml::to_string(&doc)?;
    guardian_node::policy::document::NamespaceDocument::parse(name, &text)
        .map_err(|e| UsageError(format!("the edited policy is refused: {e}")))?;
    Ok(Body::SetNamespacePolicy(SetNamespacePolicy {
        namespace: name.to_string(),
        policy: Some(NamespacePolicy { toml: text }),
        expected_policy_version: ns.summary.map_or(0, |s| s.policy_version),
    }))
}

/// What a stored secret is sealed to, for display.
fn sealed_to(key_path: &str, version: u32) -> String {
    match guardian_node::keys::KeyPath::parse(key_path).is_ok_and(|p| p.is_workload_sealed()) {
        true => "pre-encrypted to a workload's key".into(),
        false => format!("sealed to v{version}"),
    }
}

/// Seal a secret: to the namespace's current ingest key, or, for a
/// `sealed/` path, to the workload's own X25519 key `recipient` (hex), so
/// the cluster stores and passes it on without being able to read it.
pub async fn put_secret(
    dir: &Path,
    name: &str,
    key_path: &str,
    value_file: &Path,
    recipient: Option<&str>,
) -> anyhow::Result<Body> {
    let value = zeroize::Zeroizing::new(read_file(value_file, "secret")?);
    let path = guardian_node::keys::KeyPath::parse(key_path).map_err(|e| UsageError(e.to_string()))?;
    let (version, public) = match (path.is_workload_sealed(), recipient) {
        (true, Some(hex_key)) => {
            let public = hex::decode(hex_key)
                .ok()
                .and_then(|k| <[u8; 32]>::try_from(k).ok())
                .ok_or_else(|| UsageError("--recipient must be a 32-byte X25519 public key in hex".into()))?;
            (0, public)
        }
        (true, None) => {
            return Err(UsageError(format!(
                "{key_path} is delivered as is to workloads: give --recipient, the workload's X25519 public key"
            ))
            .into())
        }
        (false, Some(_)) => {
            return Err(UsageError("--recipient is only for sealed/ paths (pre-encrypted to a workload)".into()).into())
        }
        (false, None) => {
            let (node, ns) = fetch(dir, None, name).await?;
            let ingest: [u8; 32] = ns.ingest_public_key.as_slice().try_into().map_err(|_| {
                anyhow::anyhow!("node {node} has no ingest key for namespace {name} (are the threshold keys up?)")
            })?;
            (ns.summary.map_or(0, |s| s.current_secret_version), ingest)
        }
    };
    let (version, context) = sealing::stored_secret_context(name, &path, version);
    let sealed = sealing::seal(&public, &context, &value, &mut rand::thread_rng())?;
    Ok(Body::PutSecret(PutSecret {
        namespace: name.to_string(),
        key_path: key_path.to_string(),
        encrypted_secret: Some(sealed),
        version,
    }))
}

/// A config from a file, kept in the state, or at `backend_uri` (the file is then only digested).
pub fn put_config(
    name: &str,
    config: &str,
    file: &Path,
    media_type: &str,
    backend_uri: Option<&str>,
) -> Result<Body, UsageError> {
    let content = read_file(file, "config")?;
    guardian_node::workload::refs::references(&content).map_err(|e| UsageError(format!("{}: {e}", file.display())))?;
    let digest = Sha256::digest(&content).to_vec();
    Ok(Body::PutConfig(PutConfig {
        namespace: name.to_string(),
        name: config.to_string(),
        media_type: media_type.to_string(),
        content: if backend_uri.is_some() { Vec::new() } else { content },
        digest,
        backend_uri: backend_uri.unwrap_or_default().to_string(),
    }))
}

pub async fn show(r: &ReadArgs, name: &str) -> anyhow::Result<ExitCode> {
    let (node, ns) = fetch(&r.cluster, r.node, name).await?;
    let s = ns.summary.clone().unwrap_or_default();
    let stored: Vec<serde_json::Value> = ns
        .stored_keys
        .iter()
        .map(|k| json!({"path": k.key_path, "version": k.version, "written_at": k.written_at_unix}))
        .collect();
    let configs: Vec<serde_json::Value> = ns
        .configs
        .iter()
        .map(|c| json!({"name": c.name, "digest": hex::encode(&c.digest), "media_type": c.media_type, "backend_uri": c.backend_uri}))
        .collect();
    if r.json {
        out!(
            "{}",
            json!({
                "node": node, "namespace": name, "current_version": s.current_secret_version, "policy_version": s.policy_version,
                "active_versions": ns.active_secret_versions, "policy": ns.policy.map(|p| p.toml),
                "ingest_public_key": hex::encode(&ns.ingest_public_key), "stored_secrets": stored, "configs": configs,
            })
        );
    } else {
        out!("namespace {name} (as node {node} sees it)");
        out!("  secret versions: current {}, live {:?}", s.current_secret_version, ns.active_secret_versions);
        out!(
            "  policy version {}{}",
            s.policy_version,
            if ns.policy.is_none() { " (no policy: admits no workload)" } else { "" }
        );
        for k in &ns.stored_keys {
            out!("  stored secret {} ({})", k.key_path, sealed_to(&k.key_path, k.version));
        }
        for c in &ns.configs {
            out!("  config {} ({}, sha256 {})", c.name, c.media_type, hex::encode(&c.digest[..8.min(c.digest.len())]));
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn key_list(r: &ReadArgs, name: &str) -> anyhow::Result<ExitCode> {
    let (node, ns) = fetch(&r.cluster, r.node, name).await?;
    let current = ns.summary.map_or(0, |s| s.current_secret_version);
    let stored: Vec<(&str, u32)> = ns.stored_keys.iter().map(|k| (k.key_path.as_str(), k.version)).collect();
    if r.json {
        out!(
            "{}",
            json!({"node": node, "namespace": name, "current_version": current, "live_versions": ns.active_secret_versions, "stored": stored})
        );
    } else {
        out!("namespace {name}: current secret version {current}; live versions {:?}", ns.active_secret_versions);
        out!("  derived keys exist for every path (pvc/<name>, secret/<name>, ...) at every live version");
        for (p, v) in stored {
            out!("  stored: {p} ({})", sealed_to(p, v));
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn config_get(r: &ReadArgs, name: &str, config: &str) -> anyhow::Result<ExitCode> {
    let (node, ns) = fetch(&r.cluster, r.node, name).await?;
    let c = ns
        .configs
        .iter()
        .find(|c| c.name == config)
        .ok_or_else(|| UsageError(format!("namespace {name} has no config {config:?}")))?;
    if r.json {
        out!(
            "{}",
            json!({"node": node, "name": c.name, "digest": hex::encode(&c.digest), "media_type": c.media_type, "content": String::from_utf8_lossy(&c.content), "backend_uri": c.backend_uri})
        );
    } else if c.backend_uri.is_empty() {
        out!("{}", String::from_utf8_lossy(&c.content));
    } else {
        out!("config {config} lives at {} (sha256 {})", c.backend_uri, hex::encode(&c.digest));
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn cert_list(r: &ReadArgs, name: &str) -> anyhow::Result<ExitCode> {
    let cluster = ClusterFile::load(&r.cluster)?;
    let req = ListCertificatesRequest { namespace: name.to_string(), ..Default::default() };
    let (node, resp) = ask_first(&cluster, r.node, |mut c| {
        let req = req.clone();
        async move { c.list_certificates(req).await }
    })
    .await?;
    let certs: Vec<serde_json::Value> = resp
        .certificates
        .iter()
        .map(|c| json!({"serial": hex::encode(&c.serial), "subject": c.subject, "rule": c.matched_rule, "not_after": c.not_after_unix, "revoked": c.revoked}))
        .collect();
    if r.json {
        out!("{}", json!({"node": node, "namespace": name, "certificates": certs}));
    } else {
        out!("{} certificate(s) issued in namespace {name} (as node {node} sees it)", certs.len());
        for c in &resp.certificates {
            let state = if c.revoked { "REVOKED" } else { "good" };
            out!(
                "  {} {state:7} rule {:?} until {} ({})",
                hex::encode(&c.serial),
                c.matched_rule,
                guardian_node::rfc3339::format(c.not_after_unix.max(0) as u64),
                c.subject
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn revoke_cert(name: &str, serial: &str) -> Result<Body, UsageError> {
    let serial =
        hex::decode(serial).map_err(|_| UsageError("the serial is hex (as `guardctl cert list` shows it)".into()))?;
    Ok(Body::RevokeCertificate(RevokeCertificate { namespace: name.to_string(), serial }))
}
