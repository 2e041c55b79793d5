//! Signed admin commands: who may sign what, replay protection, and their effect.
//!
//! An admin command is a protobuf `AdminCommand`, signed (Ed25519) over
//! `"guardian/v1/admin-command" || 0 || command bytes` by one or more admins.
//! Nodes check signatures before decoding, and check everything again when the
//! entry is applied: the cluster id, the time window (against the leader's
//! proposal time recorded in the entry, so every node decides alike), the nonce
//! (never reused), and the number of distinct admin signatures the body needs.

use std::collections::BTreeSet;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use guardian_proto::v1::{admin_command::Body, AdminCommand, AdminSignature, SignedCommand, TokenAccess};
use prost::Message;

use super::namespace::{ConfigSource, Namespace};
use super::tokens::{Access, AccessToken};
use super::{ClusterState, JoinVerifier, Member, MemberStatus};
use crate::policy::document::NamespaceDocument;

/// Longest lifetime a command may ask for.
pub const MAX_LIFETIME_SECS: i64 = 24 * 3600;
/// How far a command's issue time may run ahead of the proposal time (clock skew).
pub const MAX_SKEW_SECS: i64 = 300;

/// The id of an admin key: hex of its first 8 bytes.
pub fn key_id(public_key: &[u8; 32]) -> String {
    hex::encode(&public_key[..8])
}

/// How many distinct admin signatures a command body needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requirement {
    One,
    Quorum,
}

pub fn requirement(body: &Body) -> Requirement {
    use Body::*;
    match body {
        DeleteNamespace(_)
        | RetireNamespaceSecretVersion(_)
        | AddAdmin(_)
        | RemoveAdmin(_)
        | SetAdminQuorum(_)
        | SetGuardianPolicy(_)
        | RevokeNode(_) => Requirement::Quorum,
        _ => Requirement::One,
    }
}

/// Add one admin's signature to a signed command.
pub fn sign(signed: &mut SignedCommand, key: &SigningKey) {
    let signature = key.sign(&signed.signing_input());
    signed.signatures.push(AdminSignature {
        admin_key_id: key_id(&key.verifying_key().to_bytes()),
        signature: signature.to_bytes().to_vec(),
    });
}

/// Verify one admin's Ed25519 signature over a command's signing input.
pub fn verify_signature(input: &[u8], public_key: &[u8; 32], signature: &[u8]) -> Result<(), String> {
    let key = VerifyingKey::from_bytes(public_key).map_err(|_| "admin key is not an Ed25519 key".to_string())?;
    let sig = Signature::from_slice(signature).map_err(|_| "malformed signature".to_string())?;
    key.verify_strict(input, &sig).map_err(|_| "invalid signature".to_string())
}

/// Decode and check a signed command against the state at time `now` (the
/// leader's proposal time). Returns the command and the admins who signed it.
pub fn check(
    state: &ClusterState,
    cluster_id: &[u8; 16],
    signed_bytes: &[u8],
    now: u64,
) -> Result<(AdminCommand, BTreeSet<String>), String> {
    let signed = SignedCommand::decode(signed_bytes).map_err(|e| format!("not a SignedCommand: {e}"))?;
    let input = signed.signing_input();
    let mut signers = BTreeSet::new();
    for s in &signed.signatures {
        let Some(pk) = state.admins.get(&s.admin_key_id) else {
            return Err(format!("signature by unknown admin key {}", s.admin_key_id));
        };
        verify_signature(&input, pk, &s.signature).map_err(|e| format!("{e} by admin key {}", s.admin_key_id))?;
        signers.insert(s.admin_key_id.clone());
    }
    let cmd = signed.decode_command().map_err(|e| format!("signed bytes are not an AdminCommand: {e}"))?;
    if cmd.cluster_id != hex::encode(cluster_id) {
        return Err(format!("command is for cluster {}, this is {}", cmd.cluster_id, hex::encode(cluster_id)));
    }
    let now = now as i64;
    if cmd.issued_at_unix > now + MAX_SKEW_SECS {
        return Err("command is issued in the future (check the admin's clock)".into());
    }
    if now > cmd.expires_at_unix {
        return Err("command expired; sign a new one".into());
    }
    if cmd.expires_at_unix - cmd.issued_at_unix > MAX_LIFETIME_SECS {
        return Err(format!("command lifetime exceeds {MAX_LIFETIME_SECS} s"));
    }
    if cmd.nonce.len() < 16 || cmd.nonce.len() > 64 {
        return Err("nonce must be 16 to 64 bytes".into());
    }
    if state.used_nonces.contains_key(&hex::encode(&cmd.nonce)) {
        return Err("nonce already used: this command was replayed".into());
    }
    let body = cmd.body.as_ref().ok_or("command has no body")?;
    let needed = match requirement(body) {
        Requirement::One => 1,
        Requirement::Quorum => state.admin_quorum.max(1) as usize,
    };
    if signers.len() < needed {
        return Err(format!("needs {needed} admin signature(s), has {}", signers.len()));
    }
    Ok((cmd, signers))
}

/// Apply a checked command at time `now` (the entry's proposal time). An
/// error leaves the state unchanged.
pub fn apply(state: &mut ClusterState, cmd: &AdminCommand, joiners: &dyn JoinVerifier, now: u64) -> Result<(), String> {
    let body = cmd.body.as_ref().ok_or("command has no body")?;
    let mut next = state.clone();
    match body {
        Body::CreateNamespace(c) => {
            crate::policy::NamespaceName::new(&c.namespace)?;
            if next.namespaces.contains_key(&c.namespace) {
                return Err(format!("namespace {} already exists", c.namespace));
            }
            let policy = c.policy.as_ref().map(|p| p.toml.clone()).filter(|t| !t.trim().is_empty());
            if let Some(p) = &policy {
                NamespaceDocument::parse(&c.namespace, p).map_err(|e| e.to_string())?;
            }
            next.namespaces.insert(c.namespace.clone(), Namespace::new(now, policy));
        }
        Body::SetNamespacePolicy(p) => {
            let toml = p.policy.as_ref().map(|p| p.toml.as_str()).unwrap_or_default();
            namespace(&mut next, &p.namespace)?.set_policy(&p.namespace, toml, p.expected_policy_version, now)?;
        }
        Body::RotateNamespaceSecret(r) => {
            namespace(&mut next, &r.namespace)?.rotate(now);
        }
        Body::RetireNamespaceSecretVersion(r) => namespace(&mut next, &r.namespace)?.retire(r.version, now)?,
        Body::PutSecret(p) => {
            let sealed = p.encrypted_secret.as_ref().ok_or("PutSecret without a sealed secret")?;
            put_sealed(&mut next, &p.namespace, &p.key_path, p.version, sealed, now)?;
        }
        Body::DeleteSecret(d) => {
            if namespace(&mut next, &d.namespace)?.secrets.remove(&d.key_path).is_none() {
                return Err(format!("namespace {} has no stored secret {:?}", d.namespace, d.key_path));
            }
        }
        Body::PutConfig(c) => {
            let digest: [u8; 32] = c.digest.as_slice().try_into().map_err(|_| "a config digest is 32 bytes")?;
            let source = match c.backend_uri.as_str() {
                "" => ConfigSource::Inline(c.content.clone()),
                uri if c.content.is_empty() => ConfigSource::Uri(uri.to_string()),
                _ => return Err("give the content or a backend URI, not both".into()),
            };
            namespace(&mut next, &c.namespace)?.put_config(&c.name, &c.media_type, source, digest, now)?;
        }
        Body::CreateAccessToken(t) => {
            let sha256: [u8; 32] = t.token_sha256.as_slice().try_into().map_err(|_| "a token hash is 32 bytes")?;
            let access = match TokenAccess::try_from(t.access) {
                Ok(TokenAccess::Read) => Access::Read,
                Ok(TokenAccess::ReadWrite) => Access::ReadWrite,
                _ => return Err("token access must be read or read-write".into()),
            };
            let token = AccessToken {
                namespace: t.namespace.clone(),
                mount: t.mount.clone(),
                access,
                created_at: now,
                expires_at: t.expires_at_unix.max(0) as u64,
                revoked_at: None,
                sha256,
            };
            next.create_token(&t.token_id, token, now)?;
        }
        Body::RevokeAccessToken(r) => next.revoke_token(&r.token_id, now)?,
        Body::RevokeCertificate(r) => {
            namespace(&mut next, &r.namespace)?.revoke_serial(&hex::encode(&r.serial), now)?;
        }
        Body::AddAdmin(a) => {
            let pk: [u8; 32] = a.public_key.as_slice().try_into().map_err(|_| "admin key must be 32 bytes")?;
            VerifyingKey::from_bytes(&pk).map_err(|_| "not an Ed25519 key")?;
            if next.admins.insert(key_id(&pk), pk).is_some() {
                return Err("admin already present".into());
            }
        }
        Body::RemoveAdmin(r) => {
            next.admins.remove(&r.admin_key_id).ok_or_else(|| format!("no admin {}", r.admin_key_id))?;
            if (next.admins.len() as u32) < next.admin_quorum {
                return Err("removing this admin would leave fewer admins than the quorum".into());
            }
        }
        Body::SetAdminQuorum(q) => {
            if q.quorum == 0 || q.quorum as usize > next.admins.len() {
                return Err(format!("quorum {} must be between 1 and the {} admins", q.quorum, next.admins.len()));
            }
            next.admin_quorum = q.quorum;
        }
        Body::ApproveNodeJoin(j) => {
            if j.node_id == 0 {
                return Err("node id 0 is reserved".into());
            }
            if next.members.contains_key(&j.node_id) {
                return Err(format!("node {} is already a member", j.node_id));
            }
            check_address(&j.address)?;
            if let Some(m) = next.members.values().find(|m| m.addr == j.address) {
                return Err(format!("address {} is node {}'s", j.address, m.id));
            }
            let joiner = joiners.verify_joiner(j.node_id, &j.certificate, now)?;
            if next.revoked.contains(&joiner.identity) {
                return Err(format!("identity {} was revoked and cannot rejoin", joiner.identity));
            }
            if let Some(m) = next.members.values().find(|m| m.identity == joiner.identity) {
                return Err(format!("identity {} already belongs to node {}", joiner.identity, m.id));
            }
            next.members.insert(
                j.node_id,
                Member {
                    id: j.node_id,
                    addr: j.address.clone(),
                    identity: joiner.identity,
                    mrtd: joiner.mrtd,
                    status: MemberStatus::Learner,
                },
            );
        }
        Body::RevokeNode(r) => {
            let member =
                next.members.remove(&r.node_id).ok_or_else(|| format!("node {} is not a member", r.node_id))?;
            next.revoked.insert(member.identity);
            // The keys live only as shares: never revoke below the threshold of holders.
            if let Some(keys) = &next.keys.current {
                let left = keys.holders.iter().filter(|h| next.members.contains_key(h)).count();
                if left < usize::from(keys.threshold) {
                    return Err(format!(
                        "revoking node {} would leave {left} share holders, fewer than the threshold {}: the cluster's keys would be lost",
                        r.node_id, keys.threshold
                    ));
                }
            }
        }
        _ => return Err("this command is not supported by this version".into()),
    }
    next.used_nonces.insert(hex::encode(&cmd.nonce), cmd.expires_at_unix.max(0) as u64);
    next.admin_commands_applied += 1;
    *state = next;
    Ok(())
}

/// Store a secret sealed (by guardctl or a node) for `key_path` at `version`,
/// after checking it names the context it is stored under.
pub fn put_sealed(
    state: &mut ClusterState,
    ns: &str,
    key_path: &str,
    version: u32,
    sealed: &guardian_proto::v1::EncryptedSecret,
    now: u64,
) -> Result<(), String> {
    let path = crate::keys::KeyPath::parse(key_path).map_err(|e| e.to_string())?;
    let (version, context) = crate::keys::sealing::stored_secret_context(ns, &path, version);
    if sealed.context != context {
        return Err(format!("the secret is sealed for {:?}, not {context:?}", sealed.context));
    }
    namespace(state, ns)?.put_secret(key_path, version, prost::Message::encode_to_vec(sealed), now)
}

/// A namespace to change.
fn namespace<'s>(state: &'s mut ClusterState, name: &str) -> Result<&'s mut Namespace, String> {
    state.namespaces.get_mut(name).ok_or_else(|| format!("namespace {name:?} does not exist"))
}

/// A peer address must be `host:port` with a non-zero port.
pub fn check_address(addr: &str) -> Result<(), String> {
    let bad = || format!("address {addr:?} is not host:port");
    let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
    match port.parse::<u16>() {
        Ok(p) if p != 0 && !host.is_empty() && addr.len() <= 255 => Ok(()),
        _ => Err(bad()),
    }
}

/// Promote a caught-up learner to voter.
pub fn promote(state: &mut ClusterState, node_id: super::NodeId) -> Result<(), String> {
    let m = state.members.get_mut(&node_id).ok_or_else(|| format!("node {node_id} is not a member"))?;
    if m.status != MemberStatus::Learner {
        return Err(format!("node {node_id} is already a voter"));
    }
    m.status = MemberStatus::Voter;
    Ok(())
}

/// Forget nonces whose commands can no longer be valid, and tokens long expired or revoked.
pub fn prune_expired(state: &mut ClusterState, now: u64) {
    state.used_nonces.retain(|_, expiry| *expiry >= now);
    state.prune_tokens(now);
}
