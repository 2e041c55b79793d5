//! Proposals: a signed admin command kept in a file while admins add their
//! signatures (`--propose FILE`, `guardctl approve FILE`, `guardctl submit FILE`).
//!
//! Files, not server state: admins can review and sign offline (even on an
//! air-gapped machine), nothing half-signed lives in the cluster, and the
//! command's own nonce and expiry already bound how long a proposal is usable.

use std::path::Path;

use ed25519_dalek::SigningKey;
use guardian_node::state::admin;
use guardian_node::state::genesis::Genesis;
use guardian_proto::v1::{admin_command::Body, AdminCommand, SignedCommand};
use prost::Message;
use serde::{Deserialize, Serialize};

use crate::UsageError;

#[derive(Serialize, Deserialize)]
struct File {
    /// What the command does, for people reviewing the file. Not trusted:
    /// `approve` shows what the signed bytes say.
    summary: String,
    /// The SignedCommand (protobuf), hex.
    signed_command: String,
}

pub fn describe(cmd: &AdminCommand) -> String {
    let what = match &cmd.body {
        Some(Body::CreateNamespace(c)) => format!("create namespace {}", c.namespace),
        Some(Body::RevokeNode(r)) => format!("revoke node {}", r.node_id),
        Some(other) => format!("{other:?}"),
        None => "no body".into(),
    };
    let reason = if cmd.reason.is_empty() { String::new() } else { format!(", reason {:?}", cmd.reason) };
    format!(
        "{what} in cluster {}{reason}, expires {}",
        cmd.cluster_id,
        guardian_node::rfc3339::format(cmd.expires_at_unix.max(0) as u64)
    )
}

pub fn write(path: &Path, signed: &SignedCommand) -> anyhow::Result<()> {
    let cmd = signed.decode_command()?;
    let file = File { summary: describe(&cmd), signed_command: hex::encode(signed.encode_to_vec()) };
    std::fs::write(path, serde_json::to_string_pretty(&file)?)?;
    Ok(())
}

pub fn read(path: &Path) -> anyhow::Result<SignedCommand> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| UsageError(format!("cannot read proposal {}: {e}", path.display())))?;
    let file: File =
        serde_json::from_str(&text).map_err(|e| UsageError(format!("{}: not a proposal: {e}", path.display())))?;
    let bytes = hex::decode(&file.signed_command)
        .map_err(|_| UsageError(format!("{}: signed_command is not hex", path.display())))?;
    Ok(SignedCommand::decode(bytes.as_slice()).map_err(|e| UsageError(format!("{}: {e}", path.display())))?)
}

/// The admins (by name) whose signatures on `signed` verify against the genesis admin set.
pub fn valid_signers(signed: &SignedCommand, genesis: &Genesis) -> Vec<String> {
    let input = signed.signing_input();
    genesis
        .admins
        .iter()
        .filter(|a| {
            let id = admin::key_id(&a.public_key);
            signed
                .signatures
                .iter()
                .any(|s| s.admin_key_id == id && admin::verify_signature(&input, &a.public_key, &s.signature).is_ok())
        })
        .map(|a| a.name.clone())
        .collect()
}

/// Add `key`'s signature, refusing to sign twice.
pub fn approve(signed: &mut SignedCommand, key: &SigningKey) -> Result<(), UsageError> {
    let id = admin::key_id(&key.verifying_key().to_bytes());
    if signed.signatures.iter().any(|s| s.admin_key_id == id) {
        return Err(UsageError("this key has already signed the proposal".into()));
    }
    admin::sign(signed, key);
    Ok(())
}
