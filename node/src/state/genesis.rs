//! The genesis file: what founds a cluster.
//!
//! ```toml
//! cluster_id = "<32 hex>"          # 16 random bytes; names the cluster in every binding
//! threshold = 3                    # shares needed to use the root keys (docs/keys.md)
//! admin_quorum = 2                 # signatures needed for sensitive admin commands
//!
//! [[members]]
//! id = 1
//! addr = "10.0.0.1:7100"
//!
//! [[admins]]
//! name = "alice"
//! public_key = "<64 hex>"          # Ed25519
//!
//! [recovery]                       # optional: escrow the root keys to recovery admins
//! threshold = 2                    # admins needed to rebuild the cluster (k, at least 2)
//! [[recovery.admins]]
//! name = "alice"
//! public_key = "<64 hex>"          # X25519 (HPKE), from `guardctl recovery keygen`
//!
//! [restore]                        # only on a cluster rebuilt by `guardctl recover`:
//! bls_group_key = "<96 hex>"       # the lost cluster's keys, from its escrow file
//! frost_group_key = "<64 hex>"
//! created_at = 1700000000
//!
//! [guardian_policy]                # which TEEs may be guardians: a namespace policy
//! tees = ["tdx"]
//! accepted_tcb_status = ["UpToDate"]
//! [[guardian_policy.tdx]]
//! name = "guardian-v1"
//! mrtd = "<96 hex>"
//! ```
//! Every node holds the same file; its SHA-256 is recorded by the bootstrap
//! entry so that nodes with different genesis files can never form one cluster.

use std::collections::BTreeSet;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::NodeId;
use crate::policy::file::namespace_from_toml;
use crate::policy::NamespacePolicy;
use crate::threshold::ceremony::Params;
use crate::threshold::escrow::{RecoveryAdmin, RecoveryConfig, RestorePin};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("genesis file: {0}")]
pub struct GenesisError(pub String);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenesisMember {
    pub id: NodeId,
    pub addr: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenesisAdmin {
    pub name: String,
    pub public_key: [u8; 32],
}

/// A validated genesis file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Genesis {
    pub cluster_id: [u8; 16],
    pub threshold: u16,
    pub admin_quorum: u32,
    pub members: Vec<GenesisMember>,
    pub admins: Vec<GenesisAdmin>,
    pub guardian_policy: NamespacePolicy,
    /// Recovery admins the root keys are escrowed to.
    pub recovery: Option<RecoveryConfig>,
    /// Keys to restore instead of generating: a cluster rebuilt from escrow.
    pub restore: Option<RestorePin>,
    /// SHA-256 of the file as read.
    pub digest: [u8; 32],
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GenesisToml {
    cluster_id: String,
    threshold: u16,
    admin_quorum: u32,
    members: Vec<MemberToml>,
    admins: Vec<AdminToml>,
    guardian_policy: toml::Value,
    recovery: Option<RecoveryToml>,
    restore: Option<RestoreToml>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecoveryToml {
    threshold: u16,
    admins: Vec<AdminToml>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RestoreToml {
    bls_group_key: String,
    frost_group_key: String,
    created_at: u64,
}

fn hex_array<const N: usize>(text: &str, what: &str) -> Result<[u8; N], GenesisError> {
    hex::decode(text)
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| GenesisError(format!("{what} must be {N} bytes of hex")))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MemberToml {
    id: NodeId,
    addr: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AdminToml {
    name: String,
    public_key: String,
}

impl Genesis {
    pub fn parse(text: &str) -> Result<Self, GenesisError> {
        let err = |m: String| GenesisError(m);
        let g: GenesisToml = toml::from_str(text).map_err(|e| err(e.to_string()))?;
        let cluster_id: [u8; 16] = hex::decode(&g.cluster_id)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| err("cluster_id must be 16 bytes of hex".into()))?;
        if g.members.is_empty() {
            return Err(err("at least one member is needed".into()));
        }
        let ids: BTreeSet<NodeId> = g.members.iter().map(|m| m.id).collect();
        let addrs: BTreeSet<&str> = g.members.iter().map(|m| m.addr.as_str()).collect();
        if ids.len() != g.members.len() || addrs.len() != g.members.len() {
            return Err(err("member ids and addresses must be unique".into()));
        }
        if ids.contains(&0) {
            return Err(err("member id 0 is reserved".into()));
        }
        if let Some(id) = ids.iter().find(|id| crate::threshold::share_index(**id).is_none()) {
            return Err(err(format!("member id {id} is too large: ids are share indexes, 1 to 65535")));
        }
        let n = g.members.len() as u64;
        if g.threshold == 0 || u64::from(g.threshold) > n {
            return Err(err(format!("threshold {} must be between 1 and the {n} members", g.threshold)));
        }
        let mut admins = Vec::new();
        for a in g.admins {
            let public_key: [u8; 32] = hex::decode(&a.public_key)
                .ok()
                .and_then(|v| v.try_into().ok())
                .ok_or_else(|| err(format!("admin {}: public_key must be 32 bytes of hex (Ed25519)", a.name)))?;
            ed25519_dalek::VerifyingKey::from_bytes(&public_key)
                .map_err(|_| err(format!("admin {}: not an Ed25519 public key", a.name)))?;
            admins.push(GenesisAdmin { name: a.name, public_key });
        }
        let keys: BTreeSet<[u8; 32]> = admins.iter().map(|a| a.public_key).collect();
        if admins.is_empty() || keys.len() != admins.len() {
            return Err(err("at least one admin, with distinct keys, is needed".into()));
        }
        if g.admin_quorum == 0 || g.admin_quorum as usize > admins.len() {
            return Err(err(format!(
                "admin_quorum {} must be between 1 and the {} admins",
                g.admin_quorum,
                admins.len()
            )));
        }
        let guardian_policy = namespace_from_toml("guardian", g.guardian_policy).map_err(|e| err(e.to_string()))?;
        let recovery = match g.recovery {
            None => None,
            Some(r) => {
                let admins = r
                    .admins
                    .into_iter()
                    .map(|a| {
                        let public_key = hex_array(&a.public_key, &format!("recovery admin {}: public_key", a.name))?;
                        Ok(RecoveryAdmin { name: a.name, public_key })
                    })
                    .collect::<Result<Vec<_>, GenesisError>>()?;
                Some(RecoveryConfig::new(r.threshold, admins).map_err(err)?)
            }
        };
        let restore = match g.restore {
            None => None,
            Some(r) => {
                let pin = RestorePin {
                    bls_group_key: hex_array(&r.bls_group_key, "restore.bls_group_key")?,
                    frost_group_key: hex_array(&r.frost_group_key, "restore.frost_group_key")?,
                    created_at: r.created_at,
                };
                crate::threshold::bls::BlsPublic::from_group_key(&pin.bls_group_key)
                    .map_err(|_| err("restore.bls_group_key is not a BLS12-381 G1 public key".into()))?;
                Some(pin)
            }
        };
        Ok(Genesis {
            cluster_id,
            threshold: g.threshold,
            admin_quorum: g.admin_quorum,
            members: g.members.into_iter().map(|m| GenesisMember { id: m.id, addr: m.addr }).collect(),
            admins,
            guardian_policy,
            recovery,
            restore,
            digest: Sha256::digest(text.as_bytes()).into(),
        })
    }

    /// The member that initializes Raft once all genesis members are mutually
    /// attested: the lowest id, so every node agrees without talking.
    pub fn initializer(&self) -> NodeId {
        self.members.iter().map(|m| m.id).min().unwrap_or_default()
    }

    pub fn member(&self, id: NodeId) -> Option<&GenesisMember> {
        self.members.iter().find(|m| m.id == id)
    }

    /// What the key rules need from this file.
    pub fn key_params(&self) -> Params<'_> {
        Params {
            cluster_id: &self.cluster_id,
            threshold: self.threshold,
            recovery: self.recovery.as_ref(),
            restore: self.restore.as_ref(),
        }
    }
}
