//! The node's [`Applier`]: validate-on-apply for every command.

use std::sync::Arc;

use super::genesis::Genesis;
use super::namespace::{Record, Writer};
use crate::threshold::ceremony;
use crate::threshold::envelope::{Domain, Envelope};

use super::{admin, Applier, ClusterState, Command, JoinVerifier, Response};

/// Applies commands with the checks every node repeats for itself.
pub struct NodeApplier {
    pub genesis: Genesis,
    /// Re-verifies the certificate of every node an admin approves.
    pub joiners: Arc<dyn JoinVerifier>,
}

impl Applier for NodeApplier {
    fn apply(&self, state: &mut ClusterState, cmd: &Command) -> Response {
        let result = match cmd {
            Command::Bootstrap { genesis_digest, members } => self.bootstrap(state, genesis_digest, members),
            Command::Admin { signed, proposed_at } => self.admin(state, signed, *proposed_at),
            Command::Promote { node_id } => match state.genesis_digest {
                Some(_) => admin::promote(state, *node_id),
                None => Err("promotion before bootstrap".into()),
            },
            Command::Record { envelope, proposed_at } => self.record(state, envelope, *proposed_at),
            Command::Key { cmd, proposed_at } => {
                let now = (*proposed_at).max(state.clock);
                ceremony::apply(&self.genesis.key_params(), state, cmd, now).map(|()| state.clock = now)
            }
        };
        match result {
            Ok(()) => Response::Applied,
            Err(reason) => {
                // An invalid entry is an alarm: a leader proposed something no
                // honest leader would. Nothing changes.
                tracing::warn!(%reason, "refused a replicated command");
                Response::Rejected { reason }
            }
        }
    }
}

/// A write through a CoCo front end: its token must still be good for writing
/// to `namespace` when the entry applies (revoked in between = refused), or
/// its admin JWT must verify against the admin keys and not have expired.
fn writable(state: &ClusterState, by: &Writer, namespace: &str, now: u64) -> Result<(), String> {
    match by {
        Writer::Token { id } => {
            let token = state.access_tokens.get(id).ok_or_else(|| format!("no access token {id}"))?;
            let need = super::tokens::Need { namespace, mount: None, write: true };
            token.allows(id, need, now).map_err(|e| e.to_string())
        }
        Writer::Admin { key_id, jwt } => match crate::kbs::admin::verify(jwt, &state.admins, now) {
            Ok(signer) if signer == *key_id => Ok(()),
            Ok(signer) => Err(format!("the admin token is {signer}'s, not {key_id}'s")),
            Err(e) => Err(e.to_string()),
        },
    }
}

impl NodeApplier {
    fn bootstrap(&self, state: &mut ClusterState, digest: &[u8; 32], members: &[super::Member]) -> Result<(), String> {
        if state.genesis_digest.is_some() {
            return Err("the cluster is already bootstrapped".into());
        }
        if *digest != self.genesis.digest {
            return Err("bootstrap entry names another genesis file than this node's".into());
        }
        let mut ids = std::collections::BTreeSet::new();
        let mut identities = std::collections::BTreeSet::new();
        for m in members {
            let g = self.genesis.member(m.id).ok_or_else(|| format!("node {} is not a genesis member", m.id))?;
            if g.addr != m.addr || !ids.insert(m.id) || !identities.insert(m.identity) {
                return Err(format!("bootstrap member {} does not match the genesis file", m.id));
            }
        }
        if members.len() != self.genesis.members.len() {
            return Err("bootstrap entry must list every genesis member".into());
        }
        state.genesis_digest = Some(*digest);
        state.members = members.iter().map(|m| (m.id, m.clone())).collect();
        state.admins = self.genesis.admins.iter().map(|a| (admin::key_id(&a.public_key), a.public_key)).collect();
        state.admin_quorum = self.genesis.admin_quorum;
        Ok(())
    }

    /// A node's record: signed by a member, then checked by the namespace's rules.
    fn record(&self, state: &mut ClusterState, envelope: &Envelope, proposed_at: u64) -> Result<(), String> {
        let member = state
            .members
            .get(&envelope.from)
            .ok_or_else(|| format!("record from node {}, which is not a member", envelope.from))?;
        let body =
            envelope.open(Domain::Record, &self.genesis.cluster_id, &member.identity).map_err(|e| e.to_string())?;
        let record: Record = serde_json::from_slice(body).map_err(|e| format!("malformed record: {e}"))?;
        let now = proposed_at.max(state.clock);
        match record {
            Record::CertIssued { namespace, serial, challenge, challenge_expires, cert } => {
                if cert.issued_by != envelope.from {
                    return Err(format!(
                        "node {} signed a record of node {}'s certificate",
                        envelope.from, cert.issued_by
                    ));
                }
                if challenge_expires < now {
                    return Err("the workload's challenge expired before its certificate was recorded".into());
                }
                let challenge = hex::encode(challenge);
                if state.spent_challenges.contains_key(&challenge) {
                    return Err("the workload's challenge was already used: replayed evidence".into());
                }
                let ns = state.namespaces.get_mut(&namespace).ok_or_else(|| format!("no namespace {namespace:?}"))?;
                ns.record_cert(&namespace, &serial, cert, now)?;
                ns.prune(now);
                state.spent_challenges.retain(|_, expires| *expires >= now);
                state.spent_challenges.insert(challenge, challenge_expires);
            }
            Record::SecretWritten { namespace, key_path, version, sealed, by } => {
                writable(state, &by, &namespace, now)?;
                let sealed = <guardian_proto::v1::EncryptedSecret as prost::Message>::decode(sealed.as_slice())
                    .map_err(|e| format!("malformed sealed secret: {e}"))?;
                admin::put_sealed(state, &namespace, &key_path, version, &sealed, now)?;
            }
            Record::SecretDeleted { namespace, key_path, by } => {
                writable(state, &by, &namespace, now)?;
                let ns = state.namespaces.get_mut(&namespace).ok_or_else(|| format!("no namespace {namespace:?}"))?;
                if ns.secrets.remove(&key_path).is_none() {
                    return Err(format!("namespace {namespace} has no stored secret {key_path:?}"));
                }
            }
        }
        state.clock = now;
        Ok(())
    }

    fn admin(&self, state: &mut ClusterState, signed: &[u8], proposed_at: u64) -> Result<(), String> {
        if state.genesis_digest.is_none() {
            return Err("admin command before bootstrap".into());
        }
        // Time only moves forward: a proposal time before the cluster clock counts as the clock.
        let now = proposed_at.max(state.clock);
        let (cmd, _signers) = admin::check(state, &self.genesis.cluster_id, signed, now)?;
        admin::apply(state, &cmd, self.joiners.as_ref(), now)?;
        admin::prune_expired(state, now);
        state.clock = now;
        Ok(())
    }
}
