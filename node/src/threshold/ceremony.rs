//! Key ceremonies (DKG and resharing) as replicated state, and the rules
//! every node applies to their entries.
//!
//! A ceremony produces both sharings at once, the BLS key (namespace PRF) and
//! the FROST key (root CA), for one key epoch:
//!
//! 1. `Start` (proposed by the leader) fixes the dealers, the recipients and
//!    the session id. A DKG deals fresh secrets; a resharing has the current
//!    holders deal their own shares, so the group keys stay the same.
//! 2. Each dealer posts a signed `Deal`: its public commitments (BLS Feldman
//!    commitment; FROST round-1 package or Feldman commitment). Raft is the
//!    broadcast channel, so every node sees the same packages; each
//!    recipient's `Done` names the digest of the result it computed from
//!    them, which is the broadcast-consistency check. When every dealer has
//!    dealt, apply computes the new public keys from the commitments alone.
//! 3. Dealers send each recipient its secret shares point to point, signed
//!    (`SecretDeal`, never in the log). A recipient checks them against the
//!    committed commitments; a bad one becomes a `Complaint` carrying the
//!    dealer's signed message, which every node re-checks: a proven cheater
//!    is disqualified (it never holds a share again until an admin re-admits
//!    it) and the attempt is abandoned; the next attempt goes on without it.
//! 4. A recipient that holds its new shares, checked against the new public
//!    keys, posts `Done`. When every recipient has, the new epoch becomes
//!    current. Old shares stay valid until then, so a ceremony interrupted by
//!    a crash either resumes (every input is in the log or sealed on disk)
//!    or, after [`CEREMONY_TIMEOUT_SECS`], is aborted and the old epoch
//!    stays in force.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::envelope::{Domain, Envelope};
use super::escrow::{self, Escrow, EscrowDeal, RecoveryConfig, RestorePin};
use super::{bls, frost, share_index};
use crate::state::{ClusterState, MemberStatus, NodeId};

/// A ceremony that has not completed this long after it started may be
/// aborted by the leader; the old epoch stays in force.
pub const CEREMONY_TIMEOUT_SECS: u64 = 60;

/// The public result of a ceremony: what the cluster's keys are.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupKeys {
    /// Bumps with every ceremony.
    pub epoch: u64,
    /// Shares needed (t).
    pub threshold: u16,
    /// Nodes holding a share of this epoch (their share index is their node id).
    pub holders: BTreeSet<NodeId>,
    /// BLS public key set ([`bls::BlsPublic`] bytes).
    #[serde(with = "hex::serde")]
    pub bls: Vec<u8>,
    /// FROST public key package ([`frost::GroupPublic`] bytes).
    #[serde(with = "hex::serde")]
    pub frost: Vec<u8>,
    /// Cluster clock when the key was first generated (DKG); kept by
    /// resharing. Fixes the root CA certificate's validity.
    pub created_at: u64,
}

impl std::fmt::Debug for GroupKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupKeys")
            .field("epoch", &self.epoch)
            .field("threshold", &self.threshold)
            .field("holders", &self.holders)
            .finish_non_exhaustive()
    }
}

impl GroupKeys {
    /// What a recipient's `Done` names: every public byte of the result.
    pub fn digest(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"guardian/group-keys/v1\0");
        h.update(self.epoch.to_be_bytes());
        h.update(self.threshold.to_be_bytes());
        for id in &self.holders {
            h.update(id.to_be_bytes());
        }
        h.update((self.bls.len() as u64).to_be_bytes());
        h.update(&self.bls);
        h.update(&self.frost);
        h.finalize().into()
    }

    pub fn bls_public(&self) -> Result<bls::BlsPublic, String> {
        bls::BlsPublic::from_bytes(&self.bls).map_err(|e| format!("stored BLS public key set: {e}"))
    }

    pub fn frost_public(&self) -> Result<frost::GroupPublic, String> {
        frost::GroupPublic::from_bytes(&self.frost).map_err(|e| format!("stored FROST public key package: {e}"))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CeremonyKind {
    /// Fresh keys from nobody's secret (Joint-Feldman BLS + FROST DKG).
    Dkg,
    /// The current holders reshare their shares: same group keys.
    Reshare,
    /// A cluster rebuilt from admin escrow (docs/keys.md §6): one fresh node,
    /// holding the secrets rebuilt from admin shares, deals a fresh sharing
    /// of exactly the keys the genesis file pins.
    Restore,
}

/// A dealer's public package.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deal {
    /// BLS Feldman commitment.
    #[serde(with = "hex::serde")]
    pub bls: Vec<u8>,
    /// DKG: frost-ed25519 round-1 package; resharing: Feldman commitment.
    #[serde(with = "hex::serde")]
    pub frost: Vec<u8>,
}

impl std::fmt::Debug for Deal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Deal { .. }")
    }
}

/// A ceremony in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ceremony {
    #[serde(with = "hex::serde")]
    pub session: [u8; 32],
    pub epoch: u64,
    pub kind: CeremonyKind,
    pub threshold: u16,
    pub dealers: BTreeSet<NodeId>,
    pub recipients: BTreeSet<NodeId>,
    /// Cluster clock at `Start`.
    pub started_at: u64,
    pub deals: BTreeMap<NodeId, Deal>,
    /// Computed on apply once every dealer has dealt.
    pub result: Option<GroupKeys>,
    /// Recipients holding their new shares.
    pub done: BTreeSet<NodeId>,
    /// A restore: the keys its dealer must commit to (from genesis).
    #[serde(default)]
    pub restoring: Option<RestorePin>,
}

/// The replicated key state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyState {
    /// The keys in force; `None` until the first DKG completes.
    pub current: Option<GroupKeys>,
    pub ceremony: Option<Ceremony>,
    /// Ceremonies started so far (makes session ids unique).
    pub attempts: u64,
    /// Nodes proven to have cheated in a ceremony, with what they did. They
    /// hold no shares until an admin re-admits them.
    pub culprits: BTreeMap<NodeId, String>,
    /// Why the last ceremony that did not complete stopped.
    pub last_failure: Option<String>,
    /// The root CA certificate (DER), self-signed by the FROST group key.
    #[serde(with = "opt_hex")]
    pub root_ca: Option<Vec<u8>>,
    /// Namespace CA certificates (DER) by namespace and secret version.
    #[serde(with = "map_hex")]
    pub namespace_cas: BTreeMap<(String, u32), Vec<u8>>,
    /// The keys escrowed to the recovery admins (when genesis names some).
    #[serde(default)]
    pub escrow: Option<Escrow>,
}

mod opt_hex {
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(b) => s.serialize_some(&hex::encode(b)),
            None => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        Option::<String>::deserialize(d)?.map(|h| hex::decode(h).map_err(serde::de::Error::custom)).transpose()
    }
}

/// JSON maps need string keys: stored as a list of (namespace, version, hex DER).
mod map_hex {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    type Map = BTreeMap<(String, u32), Vec<u8>>;
    pub fn serialize<S: Serializer>(v: &Map, s: S) -> Result<S::Ok, S::Error> {
        v.iter().map(|((n, ver), der)| (n, ver, hex::encode(der))).collect::<Vec<_>>().serialize(s)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Map, D::Error> {
        Vec::<(String, u32, String)>::deserialize(d)?
            .into_iter()
            .map(|(n, ver, h)| Ok(((n, ver), hex::decode(h).map_err(serde::de::Error::custom)?)))
            .collect()
    }
}

/// What a member signs (inside an [`Envelope`]) for the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyMsg {
    Deal {
        #[serde(with = "hex::serde")]
        session: [u8; 32],
        deal: Deal,
    },
    /// The accused dealer's signed [`SecretDeal`] to the complainer, which
    /// does not match the accused's commitments.
    Complaint {
        #[serde(with = "hex::serde")]
        session: [u8; 32],
        evidence: Envelope,
    },
    /// The sender holds its new shares and they match `result`.
    Done {
        #[serde(with = "hex::serde")]
        session: [u8; 32],
        #[serde(with = "hex::serde")]
        result: [u8; 32],
    },
    /// The sender's escrow of its shares of `epoch` to the recovery admins.
    Escrow { epoch: u64, deal: EscrowDeal },
    /// The sender holds the keys rebuilt from admin escrow and asks to deal
    /// them to the voters (a `Restore` ceremony).
    Restore,
}

/// A dealer's secret shares for one recipient: sent point to point over
/// RA-TLS inside a signed [`Envelope`], sealed at rest, never in the log.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, zeroize::ZeroizeOnDrop)]
pub struct SecretDeal {
    #[zeroize(skip)]
    #[serde(with = "hex::serde")]
    pub session: [u8; 32],
    #[zeroize(skip)]
    pub recipient: NodeId,
    /// The BLS share, 32 bytes.
    #[serde(with = "hex::serde")]
    pub bls: Vec<u8>,
    /// DKG: frost-ed25519 round-2 package; resharing: a 32-byte scalar.
    #[serde(with = "hex::serde")]
    pub frost: Vec<u8>,
}

impl std::fmt::Debug for SecretDeal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretDeal").field("recipient", &self.recipient).finish_non_exhaustive()
    }
}

/// A replicated key command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyCommand {
    /// The leader starts a ceremony; every node checks the sets.
    Start { kind: CeremonyKind, dealers: BTreeSet<NodeId>, recipients: BTreeSet<NodeId> },
    /// A member's signed [`KeyMsg`].
    Signed(Envelope),
    /// The leader gives up on a ceremony that timed out.
    Abort {
        #[serde(with = "hex::serde")]
        session: [u8; 32],
    },
    /// The root CA certificate, signed by the cluster ([`super::certs`]).
    RootCertificate {
        #[serde(with = "hex::serde")]
        der: Vec<u8>,
    },
    /// A namespace CA certificate, signed by the cluster.
    NamespaceCertificate {
        namespace: String,
        version: u32,
        #[serde(with = "hex::serde")]
        der: Vec<u8>,
    },
}

/// What the rules need beyond the state: fixed by the genesis file.
pub struct Params<'a> {
    pub cluster_id: &'a [u8; 16],
    pub threshold: u16,
    /// Recovery admins the keys are escrowed to.
    pub recovery: Option<&'a RecoveryConfig>,
    /// Set on a cluster being rebuilt: the keys it must restore (no DKG).
    pub restore: Option<&'a RestorePin>,
}

/// The session id of the next ceremony: every node derives the same one.
fn session_id(
    p: &Params,
    epoch: u64,
    attempt: u64,
    kind: CeremonyKind,
    dealers: &BTreeSet<NodeId>,
    recipients: &BTreeSet<NodeId>,
) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"guardian/ceremony/v1\0");
    h.update(p.cluster_id);
    h.update(epoch.to_be_bytes());
    h.update(attempt.to_be_bytes());
    h.update([kind as u8]);
    for set in [dealers, recipients] {
        h.update((set.len() as u64).to_be_bytes());
        for id in set {
            h.update(id.to_be_bytes());
        }
    }
    h.finalize().into()
}

/// Who should hold shares now: voters that have not been caught cheating.
pub fn desired_holders(state: &ClusterState) -> BTreeSet<NodeId> {
    state
        .members
        .values()
        .filter(|m| m.status == MemberStatus::Voter && !state.keys.culprits.contains_key(&m.id))
        .filter(|m| share_index(m.id).is_some())
        .map(|m| m.id)
        .collect()
}

/// Apply a key command at cluster time `now`. An error changes nothing.
pub fn apply(p: &Params, state: &mut ClusterState, cmd: &KeyCommand, now: u64) -> Result<(), String> {
    if state.genesis_digest.is_none() {
        return Err("key command before bootstrap".into());
    }
    match cmd {
        KeyCommand::Start { kind, dealers, recipients } => start(p, state, *kind, dealers, recipients, now),
        KeyCommand::RootCertificate { der } => super::certs::set_root(p.cluster_id, state, der),
        KeyCommand::NamespaceCertificate { namespace, version, der } => {
            super::certs::set_namespace(p.cluster_id, state, namespace, *version, der)
        }
        KeyCommand::Abort { session } => {
            let c = active(state, session)?;
            if now < c.started_at.saturating_add(CEREMONY_TIMEOUT_SECS) {
                return Err(format!("ceremony for epoch {} has not timed out yet", c.epoch));
            }
            let missing: Vec<NodeId> = match &c.result {
                None => c.dealers.iter().filter(|d| !c.deals.contains_key(d)).copied().collect(),
                Some(_) => c.recipients.difference(&c.done).copied().collect(),
            };
            state.keys.last_failure =
                Some(format!("ceremony for epoch {} timed out waiting for nodes {missing:?}", c.epoch));
            state.keys.ceremony = None;
            Ok(())
        }
        KeyCommand::Signed(envelope) => {
            let member = state
                .members
                .get(&envelope.from)
                .ok_or_else(|| format!("key message from node {}, which is not a member", envelope.from))?;
            let body = envelope.open(Domain::KeyMessage, p.cluster_id, &member.identity).map_err(|e| e.to_string())?;
            let msg: KeyMsg = serde_json::from_slice(body).map_err(|e| format!("malformed key message: {e}"))?;
            match msg {
                KeyMsg::Deal { session, deal } => add_deal(state, &session, envelope.from, deal, now),
                KeyMsg::Complaint { session, evidence } => complaint(p, state, &session, envelope.from, &evidence),
                KeyMsg::Done { session, result } => done(state, &session, envelope.from, &result),
                KeyMsg::Escrow { epoch, deal } => add_escrow(p, state, envelope.from, epoch, deal),
                KeyMsg::Restore => {
                    let recipients = desired_holders(state);
                    start(p, state, CeremonyKind::Restore, &BTreeSet::from([envelope.from]), &recipients, now)
                }
            }
        }
    }
}

fn active<'s>(state: &'s ClusterState, session: &[u8; 32]) -> Result<&'s Ceremony, String> {
    match &state.keys.ceremony {
        Some(c) if c.session == *session => Ok(c),
        Some(_) => Err("message for another ceremony session".into()),
        None => Err("no key ceremony is running".into()),
    }
}

fn start(
    p: &Params,
    state: &mut ClusterState,
    kind: CeremonyKind,
    dealers: &BTreeSet<NodeId>,
    recipients: &BTreeSet<NodeId>,
    now: u64,
) -> Result<(), String> {
    if state.keys.ceremony.is_some() {
        return Err("a key ceremony is already running".into());
    }
    let t = p.threshold as usize;
    let eligible = desired_holders(state);
    if let Some(bad) = recipients.iter().find(|r| !eligible.contains(r)) {
        return Err(format!("node {bad} may not hold a share (not a voter, or caught cheating)"));
    }
    if recipients.len() < t {
        return Err(format!("{} recipients cannot hold a {t}-of-n sharing", recipients.len()));
    }
    let epoch = match (&state.keys.current, kind) {
        (None, CeremonyKind::Dkg) if p.restore.is_some() => {
            return Err("this cluster is being rebuilt from admin escrow: it restores its keys, it does not generate \
                        new ones (run `guardctl recover`)"
                .into())
        }
        (None, CeremonyKind::Dkg) => {
            if dealers != recipients {
                return Err("in a DKG the dealers are the recipients".into());
            }
            1
        }
        (None, CeremonyKind::Restore) => {
            if p.restore.is_none() {
                return Err("no keys to restore: the genesis file pins none".into());
            }
            if dealers.len() != 1
                || !dealers.iter().all(|d| state.members.get(d).is_some_and(|m| m.status == MemberStatus::Voter))
            {
                return Err("a restore has exactly one dealer, a voter".into());
            }
            1
        }
        (Some(_), CeremonyKind::Restore) => return Err("the cluster has keys: nothing to restore".into()),
        (Some(current), CeremonyKind::Reshare) => {
            if let Some(bad) = dealers.iter().find(|d| !current.holders.contains(d) || !eligible.contains(d)) {
                return Err(format!("node {bad} cannot deal: it holds no current share or may no longer"));
            }
            if dealers.len() < current.threshold as usize {
                return Err(format!("{} dealers cannot reshare a {}-of-n key", dealers.len(), current.threshold));
            }
            current.epoch + 1
        }
        (None, CeremonyKind::Reshare) => return Err("nothing to reshare: no keys yet".into()),
        (Some(_), CeremonyKind::Dkg) => return Err("the cluster has keys: a new DKG would change them".into()),
    };
    let session = session_id(p, epoch, state.keys.attempts, kind, dealers, recipients);
    state.keys.attempts += 1;
    state.keys.ceremony = Some(Ceremony {
        session,
        epoch,
        kind,
        threshold: p.threshold,
        dealers: dealers.clone(),
        recipients: recipients.clone(),
        started_at: now,
        deals: BTreeMap::new(),
        result: None,
        done: BTreeSet::new(),
        restoring: if kind == CeremonyKind::Restore { p.restore.cloned() } else { None },
    });
    Ok(())
}

/// Check a dealer's public package against what it must commit to.
pub fn check_deal(state: &ClusterState, c: &Ceremony, dealer: NodeId, deal: &Deal) -> Result<(), String> {
    let x = share_index(dealer).ok_or("dealer id out of range")?;
    let t = c.threshold;
    let commitment = bls::BlsCommitment::from_bytes(&deal.bls, t).map_err(|e| format!("BLS commitment: {e}"))?;
    match c.kind {
        CeremonyKind::Dkg => {
            frost::verify_round1(x, &deal.frost).map_err(|e| format!("FROST round-1 package: {e}"))?;
        }
        CeremonyKind::Reshare => {
            let current = state.keys.current.as_ref().ok_or("no current keys")?;
            bls::check_reshare_commitment(&commitment, &current.bls_public()?, x).map_err(|e| e.to_string())?;
            frost::check_reshare_commitment(&deal.frost, &current.frost_public()?, x).map_err(|e| e.to_string())?;
        }
        CeremonyKind::Restore => {
            let pin = c.restoring.as_ref().ok_or("a restore without pinned keys")?;
            let pinned = bls::BlsPublic::from_group_key(&pin.bls_group_key).map_err(|e| e.to_string())?;
            bls::check_reshare_commitment(&commitment, &pinned, x).map_err(|e| e.to_string())?;
            frost::check_restore_commitment(&deal.frost, &pin.frost_group_key, x).map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

fn add_deal(state: &mut ClusterState, session: &[u8; 32], dealer: NodeId, deal: Deal, now: u64) -> Result<(), String> {
    let c = active(state, session)?;
    if !c.dealers.contains(&dealer) {
        return Err(format!("node {dealer} is not a dealer in this ceremony"));
    }
    if c.deals.contains_key(&dealer) {
        return Err(format!("node {dealer} has already dealt"));
    }
    check_deal(state, c, dealer, &deal)?;
    let mut c = c.clone();
    c.deals.insert(dealer, deal);
    if c.deals.len() == c.dealers.len() {
        let created_at = match (&state.keys.current, &c.restoring) {
            (Some(k), _) => k.created_at,
            (None, Some(pin)) => pin.created_at,
            (None, None) => now,
        };
        match result_of(state, &c, created_at) {
            Ok(result) => c.result = Some(result),
            Err(e) => {
                // Each deal was checked, so this is not expected; give up on the attempt.
                state.keys.last_failure = Some(format!("ceremony for epoch {}: {e}", c.epoch));
                state.keys.ceremony = None;
                return Ok(());
            }
        }
    }
    state.keys.ceremony = Some(c);
    Ok(())
}

/// The new public keys, from the committed deals alone.
pub fn result_of(state: &ClusterState, c: &Ceremony, created_at: u64) -> Result<GroupKeys, String> {
    let t = c.threshold;
    let mut bls_commitments = BTreeMap::new();
    for (d, deal) in &c.deals {
        let x = share_index(*d).ok_or("dealer id out of range")?;
        bls_commitments.insert(x, bls::BlsCommitment::from_bytes(&deal.bls, t).map_err(|e| e.to_string())?);
    }
    let frost_packages: BTreeMap<u16, Vec<u8>> =
        c.deals.iter().filter_map(|(d, deal)| Some((share_index(*d)?, deal.frost.clone()))).collect();
    let holders: Vec<u16> = c.recipients.iter().filter_map(|r| share_index(*r)).collect();
    let (bls_public, frost_public) = match c.kind {
        CeremonyKind::Dkg => {
            let commitments: Vec<_> = bls_commitments.into_values().collect();
            (bls::dkg_public(&commitments), frost::dkg_public(&frost_packages, t))
        }
        CeremonyKind::Reshare => {
            let current = state.keys.current.as_ref().ok_or("no current keys")?;
            let old = current.frost_public()?;
            (
                bls::reshare_public(&current.bls_public()?, &bls_commitments),
                frost::reshare_public(&frost_packages, &holders, t, &old),
            )
        }
        CeremonyKind::Restore => {
            let pin = c.restoring.as_ref().ok_or("a restore without pinned keys")?;
            let (&dealer, package) = frost_packages.iter().next().ok_or("a restore without a deal")?;
            let pinned = bls::BlsPublic::from_group_key(&pin.bls_group_key).map_err(|e| e.to_string())?;
            (
                bls::reshare_public(&pinned, &bls_commitments),
                frost::restore_public(dealer, package, &holders, t, &pin.frost_group_key),
            )
        }
    };
    let bls_public = bls_public.map_err(|e| format!("BLS public keys: {e}"))?;
    let frost_public = frost_public.map_err(|e| format!("FROST public keys: {e}"))?;
    Ok(GroupKeys {
        epoch: c.epoch,
        threshold: t,
        holders: c.recipients.clone(),
        bls: bls_public.to_bytes(),
        frost: frost_public.to_bytes(),
        created_at,
    })
}

/// Whether a dealer's secret shares for `recipient` match its committed deal.
pub fn check_secret_deal(c: &Ceremony, dealer: NodeId, secret: &SecretDeal) -> Result<(), String> {
    let deal = c.deals.get(&dealer).ok_or_else(|| format!("node {dealer} has not dealt"))?;
    let x = share_index(secret.recipient).ok_or("recipient id out of range")?;
    let share = bls::BlsShare::from_bytes(&secret.bls).map_err(|e| format!("BLS share: {e}"))?;
    let commitment = bls::BlsCommitment::from_bytes(&deal.bls, c.threshold).map_err(|e| e.to_string())?;
    bls::verify_share(&commitment, x, &share).map_err(|e| format!("BLS share: {e}"))?;
    match c.kind {
        // A DKG participant's own FROST share needs no round-2 package.
        CeremonyKind::Dkg if dealer == secret.recipient => Ok(()),
        CeremonyKind::Dkg => {
            frost::verify_dkg_share(share_index(dealer).ok_or("dealer id out of range")?, &deal.frost, x, &secret.frost)
        }
        CeremonyKind::Reshare | CeremonyKind::Restore => {
            let share: [u8; 32] = secret.frost.as_slice().try_into().map_err(|_| "FROST share: not 32 bytes")?;
            frost::verify_reshare_share(share_index(dealer).ok_or("dealer id out of range")?, &deal.frost, x, &share)
        }
    }
    .map_err(|e| format!("FROST share: {e}"))
}

fn complaint(
    p: &Params,
    state: &mut ClusterState,
    session: &[u8; 32],
    accuser: NodeId,
    evidence: &Envelope,
) -> Result<(), String> {
    let c = active(state, session)?;
    let accused = evidence.from;
    if accused == accuser || !c.recipients.contains(&accuser) || !c.dealers.contains(&accused) {
        return Err(format!("node {accuser} cannot complain about node {accused} in this ceremony"));
    }
    let member = state.members.get(&accused).ok_or("the accused is not a member")?;
    let body = evidence
        .open(Domain::KeyMessage, p.cluster_id, &member.identity)
        .map_err(|e| format!("complaint evidence: {e}"))?;
    let secret: SecretDeal = serde_json::from_slice(body).map_err(|_| "complaint evidence is not a secret deal")?;
    if secret.session != *session || secret.recipient != accuser {
        return Err("complaint evidence is for another session or recipient".into());
    }
    let reason = match check_secret_deal(c, accused, &secret) {
        Ok(()) => return Err(format!("node {accuser}'s complaint against node {accused} is unfounded")),
        Err(e) => e,
    };
    let epoch = c.epoch;
    state.keys.culprits.insert(accused, format!("dealt node {accuser} an invalid share for epoch {epoch}: {reason}"));
    state.keys.last_failure = Some(format!("ceremony for epoch {epoch}: node {accused} disqualified ({reason})"));
    state.keys.ceremony = None;
    Ok(())
}

fn done(state: &mut ClusterState, session: &[u8; 32], from: NodeId, digest: &[u8; 32]) -> Result<(), String> {
    let c = active(state, session)?;
    if !c.recipients.contains(&from) {
        return Err(format!("node {from} is not a recipient in this ceremony"));
    }
    let result = c.result.as_ref().ok_or("the ceremony has no result yet")?;
    if result.digest() != *digest {
        return Err(format!("node {from} computed other keys than the log's: broadcast inconsistency"));
    }
    let mut c = c.clone();
    c.done.insert(from);
    if c.done == c.recipients {
        state.keys.current = c.result.take();
        state.keys.ceremony = None;
        state.keys.last_failure = None;
    } else {
        state.keys.ceremony = Some(c);
    }
    Ok(())
}

/// The epoch whose shares `holder` should escrow now, if any: recovery
/// admins are configured, no ceremony runs, it holds a current share, and
/// the escrow is neither complete for an older epoch nor has its deal.
pub fn escrow_due(p: &Params, keys: &KeyState, holder: NodeId) -> Option<u64> {
    p.recovery?;
    let current = keys.current.as_ref()?;
    if keys.ceremony.is_some() || !current.holders.contains(&holder) {
        return None;
    }
    match &keys.escrow {
        Some(e) if e.keys.epoch == current.epoch => (!e.deals.contains_key(&holder)).then_some(current.epoch),
        Some(e) if e.complete() => None,
        _ => Some(current.epoch),
    }
}

/// A holder's escrow deal: checked against its public key shares, added to
/// the escrow of the current epoch (which replaces an incomplete escrow of
/// an older one; a complete escrow stays valid across resharings).
fn add_escrow(p: &Params, state: &mut ClusterState, from: NodeId, epoch: u64, deal: EscrowDeal) -> Result<(), String> {
    let cfg = p.recovery.ok_or("the genesis file names no recovery admins: nothing to escrow to")?;
    if escrow_due(p, &state.keys, from) != Some(epoch) {
        return Err(format!(
            "node {from} has no escrow of epoch {epoch} due (not a holder, already escrowed, or stale)"
        ));
    }
    let current = state.keys.current.as_ref().ok_or("no keys")?;
    escrow::check_deal(cfg, current, from, &deal)?;
    match &mut state.keys.escrow {
        Some(e) if e.keys.epoch == epoch => {
            e.deals.insert(from, deal);
        }
        slot => *slot = Some(Escrow { keys: current.clone(), deals: BTreeMap::from([(from, deal)]) }),
    }
    Ok(())
}
