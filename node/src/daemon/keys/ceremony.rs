//! Taking part in key ceremonies (the rules are in
//! [`crate::threshold::ceremony`]).
//!
//! Every step is driven by the replicated state and by what is sealed on
//! this node, so a node that restarts mid-ceremony picks up where it was:
//! its dealer polynomials are sealed before its `Deal` is proposed (a
//! restarted dealer resends the very shares it committed to), shares it
//! received are sealed before they are acknowledged, and its new key shares
//! are sealed before it announces `Done`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use guardian_proto::v1::round_message::Body;
use guardian_proto::v1::{RoundMessage, SessionRef, ThresholdProtocol};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::{KeyError, KeyNode};
use crate::state::NodeId;
use crate::threshold::ceremony::{
    check_secret_deal, desired_holders, escrow_due, Ceremony, CeremonyKind, Deal, GroupKeys, KeyCommand, KeyMsg,
    SecretDeal, CEREMONY_TIMEOUT_SECS,
};
use crate::threshold::envelope::{Domain, Envelope};
use crate::threshold::{bls, frost, share_index};

/// A dealer's polynomials for one session, sealed at `dealer/<session>`.
#[derive(Serialize, Deserialize, zeroize::ZeroizeOnDrop)]
struct DealerSecrets {
    #[serde(with = "hex::serde")]
    bls: Vec<u8>,
    /// DKG: frost round-1 secret package; resharing: the Feldman dealer.
    #[serde(with = "hex::serde")]
    frost: Vec<u8>,
}

/// This node's shares of one key epoch, sealed at `share/<epoch>`.
#[derive(Serialize, Deserialize, zeroize::ZeroizeOnDrop)]
struct SharesRecord {
    #[serde(with = "hex::serde")]
    bls: Vec<u8>,
    #[serde(with = "hex::serde")]
    frost: Vec<u8>,
}

/// This node's shares of a key epoch.
pub struct Shares {
    pub bls: bls::BlsShare,
    pub frost: frost::KeyShare,
}

fn share_key(epoch: u64) -> Vec<u8> {
    [b"share/".as_slice(), &epoch.to_be_bytes()].concat()
}

fn dealer_key(session: &[u8; 32]) -> Vec<u8> {
    [b"dealer/".as_slice(), session].concat()
}

fn recv_prefix(session: &[u8; 32]) -> Vec<u8> {
    [b"recv/".as_slice(), session, b"/"].concat()
}

fn recv_key(session: &[u8; 32], dealer: NodeId) -> Vec<u8> {
    [recv_prefix(session), dealer.to_be_bytes().to_vec()].concat()
}

fn other(e: impl std::fmt::Display) -> KeyError {
    KeyError::Other(e.to_string())
}

/// This node's shares of `epoch`, if it holds them.
pub fn load_shares(node: &KeyNode, epoch: u64) -> Result<Option<Shares>, KeyError> {
    read_shares(&node.secrets, epoch)
}

/// The shares of `epoch` in a node's sealed store, if it holds them.
pub fn read_shares(secrets: &crate::store::SecretStore, epoch: u64) -> Result<Option<Shares>, KeyError> {
    let Some(bytes) = secrets.get(&share_key(epoch))? else { return Ok(None) };
    let record: SharesRecord = serde_json::from_slice(&bytes).map_err(other)?;
    Ok(Some(Shares {
        bls: bls::BlsShare::from_bytes(&record.bls).map_err(other)?,
        frost: frost::KeyShare::from_bytes(&record.frost).map_err(other)?,
    }))
}

/// The ceremony task: every node takes its part; the leader also starts
/// ceremonies when the holders differ from who should hold shares, and
/// aborts one that timed out.
pub async fn run(node: Arc<KeyNode>, stop: impl std::future::Future<Output = ()>) {
    tokio::pin!(stop);
    let mut delivered: BTreeSet<([u8; 32], NodeId)> = BTreeSet::new();
    // Old key material is removed once per epoch in force and after each ceremony, not every tick.
    let mut settled: Option<Option<u64>> = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            _ = &mut stop => return,
        }
        // Only the ceremony's part of the key state: not the CA certificates.
        let Some((current, ceremony, desired, escrow)) = node.view.with_state(|s| {
            s.genesis_digest.map(|_| {
                let escrow = escrow_due(&node.params(), &s.keys, node.me);
                (s.keys.current.clone(), s.keys.ceremony.clone(), desired_holders(s), escrow)
            })
        }) else {
            continue;
        };
        if let Err(e) = super::recovery::tick(&node, current.is_some(), ceremony.is_some(), escrow).await {
            tracing::warn!(error = %e, "key escrow or restore; retrying in 2 s");
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        if node.raft.metrics().borrow().current_leader == Some(node.me) {
            if let Err(e) = lead(&node, current.as_ref(), ceremony.as_ref(), desired).await {
                tracing::warn!(error = %e, "key ceremony (leader); retrying in 2 s");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
        match &ceremony {
            Some(c) => {
                settled = None;
                if let Err(e) = take_part(&node, c, &mut delivered).await {
                    tracing::debug!(error = %e, epoch = c.epoch, "key ceremony step will be retried");
                }
            }
            None if settled != Some(current.as_ref().map(|k| k.epoch)) => {
                delivered.clear();
                match clean_up(&node, current.as_ref()) {
                    Ok(()) => settled = Some(current.as_ref().map(|k| k.epoch)),
                    Err(e) => tracing::warn!(error = %e, "removing old key material"),
                }
            }
            None => {}
        }
    }
}

async fn lead(
    node: &KeyNode,
    current: Option<&GroupKeys>,
    ceremony: Option<&Ceremony>,
    desired: BTreeSet<NodeId>,
) -> Result<(), KeyError> {
    let now = (node.clock)();
    match (ceremony, current) {
        (Some(c), _) if now >= c.started_at + CEREMONY_TIMEOUT_SECS => {
            tracing::warn!(epoch = c.epoch, "key ceremony timed out; aborting it (the current keys stay in force)");
            node.propose(KeyCommand::Abort { session: c.session }).await
        }
        // A cluster being rebuilt restores its keys (`guardctl recover`) instead.
        (None, None) if node.restore.is_none() && desired.len() >= usize::from(node.threshold) => {
            tracing::info!(nodes = ?desired, "starting the distributed key generation");
            node.propose(KeyCommand::Start { kind: CeremonyKind::Dkg, dealers: desired.clone(), recipients: desired })
                .await
        }
        (None, Some(current)) if current.holders != desired && desired.len() >= usize::from(current.threshold) => {
            let dealers: BTreeSet<NodeId> = current.holders.intersection(&desired).copied().collect();
            if dealers.len() < usize::from(current.threshold) {
                return Err(other(format!(
                    "only {} current share holders remain ({dealers:?}); resharing needs {}",
                    dealers.len(),
                    current.threshold
                )));
            }
            tracing::info!(from = ?current.holders, to = ?desired, "resharing the keys to the new member set");
            node.propose(KeyCommand::Start { kind: CeremonyKind::Reshare, dealers, recipients: desired }).await
        }
        _ => Ok(()),
    }
}

async fn take_part(node: &KeyNode, c: &Ceremony, delivered: &mut BTreeSet<([u8; 32], NodeId)>) -> Result<(), KeyError> {
    let me = node.me;
    if c.dealers.contains(&me) && !c.deals.contains_key(&me) {
        let secrets = dealer_secrets(node, c)?;
        let deal = public_deal(node, c, &secrets)?;
        node.submit(&KeyMsg::Deal { session: c.session, deal }).await?;
        return Ok(());
    }
    let Some(result) = &c.result else { return Ok(()) };
    let pending: Vec<NodeId> =
        c.recipients.iter().copied().filter(|r| !delivered.contains(&(c.session, *r)) && !c.done.contains(r)).collect();
    if c.dealers.contains(&me) && !pending.is_empty() {
        let secrets = dealer_secrets(node, c)?;
        let deals = secret_deals(node, c, &secrets)?;
        for (recipient, deal) in deals.into_iter().filter(|(r, _)| pending.contains(r)) {
            let envelope = node.envelope(serde_json::to_vec(&deal).map_err(other)?)?;
            let sent = if recipient == me {
                receive(node, me, &envelope).map(|_| ())
            } else {
                send(node, c, recipient, &envelope).await
            };
            match sent {
                Ok(()) => {
                    delivered.insert((c.session, recipient));
                }
                Err(e) => tracing::debug!(recipient, error = %e, "secret deal not delivered yet"),
            }
        }
    }
    if c.recipients.contains(&me) && !c.done.contains(&me) {
        let have = node.secrets.keys(&recv_prefix(&c.session))?.len();
        if have < c.dealers.len() {
            return Ok(());
        }
        // Shares sealed for this epoch by an attempt that was aborted are not this result's.
        let held = load_shares(node, c.epoch)?;
        if !held.as_ref().is_some_and(|h| matches_result(node, result, h)) {
            let shares = new_shares(node, c)?;
            let record = SharesRecord { bls: shares.bls.to_bytes().to_vec(), frost: shares.frost.to_bytes().to_vec() };
            node.secrets.put(&share_key(c.epoch), &Zeroizing::new(serde_json::to_vec(&record).map_err(other)?))?;
            tracing::info!(epoch = c.epoch, "holding new key shares (sealed)");
        }
        node.submit(&KeyMsg::Done { session: c.session, result: result.digest() }).await?;
    }
    Ok(())
}

/// Load this session's polynomials, or make and seal them first.
fn dealer_secrets(node: &KeyNode, c: &Ceremony) -> Result<DealerSecrets, KeyError> {
    let key = dealer_key(&c.session);
    if let Some(bytes) = node.secrets.get(&key)? {
        return serde_json::from_slice(&bytes).map_err(other);
    }
    let x = share_index(node.me).ok_or_else(|| other("node id out of range"))?;
    let mut rng = rand::rngs::OsRng;
    let secrets = match c.kind {
        CeremonyKind::Dkg => {
            let n = c.recipients.len() as u16;
            let (round1, _) = frost::dkg_round1(x, n, c.threshold, &mut rng).map_err(other)?;
            DealerSecrets {
                bls: bls::BlsDealer::fresh(c.threshold, &mut rng).map_err(other)?.to_bytes().to_vec(),
                frost: round1.to_bytes().map_err(other)?.to_vec(),
            }
        }
        CeremonyKind::Reshare => {
            let epoch = c.epoch - 1;
            let shares = load_shares(node, epoch)?.ok_or(KeyError::NoShare(epoch))?;
            DealerSecrets {
                bls: bls::BlsDealer::reshare(&shares.bls, c.threshold, &mut rng).map_err(other)?.to_bytes().to_vec(),
                frost: frost::ReshareDealer::new(&shares.frost, c.threshold, &mut rng)
                    .map_err(other)?
                    .to_bytes()
                    .to_vec(),
            }
        }
        CeremonyKind::Restore => {
            let held = node.recovered.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let root = held.as_ref().ok_or_else(|| {
                other("this node no longer holds the rebuilt keys (it restarted?): run `guardctl recover` again")
            })?;
            DealerSecrets {
                bls: bls::BlsDealer::reshare(&root.bls, c.threshold, &mut rng).map_err(other)?.to_bytes().to_vec(),
                frost: frost::ReshareDealer::from_secret(x, &root.frost, c.threshold, &mut rng)
                    .map_err(other)?
                    .to_bytes()
                    .to_vec(),
            }
        }
    };
    node.secrets.put(&key, &Zeroizing::new(serde_json::to_vec(&secrets).map_err(other)?))?;
    Ok(secrets)
}

fn public_deal(_node: &KeyNode, c: &Ceremony, s: &DealerSecrets) -> Result<Deal, KeyError> {
    let bls = bls::BlsDealer::from_bytes(&s.bls).map_err(other)?.commitment().to_bytes();
    let frost = match c.kind {
        CeremonyKind::Dkg => frost::Round1Secret::from_bytes(&s.frost).map_err(other)?.public_package(),
        CeremonyKind::Reshare | CeremonyKind::Restore => {
            frost::ReshareDealer::from_bytes(&s.frost).map_err(other)?.commitment()
        }
    };
    Ok(Deal { bls, frost })
}

/// Round-1 packages of the other DKG participants, from the log.
fn others_round1(c: &Ceremony, me: NodeId) -> BTreeMap<u16, Vec<u8>> {
    c.deals
        .iter()
        .filter(|(d, _)| **d != me)
        .filter_map(|(d, deal)| Some((share_index(*d)?, deal.frost.clone())))
        .collect()
}

/// This dealer's secret deal for every recipient.
fn secret_deals(node: &KeyNode, c: &Ceremony, s: &DealerSecrets) -> Result<BTreeMap<NodeId, SecretDeal>, KeyError> {
    let dealer = bls::BlsDealer::from_bytes(&s.bls).map_err(other)?;
    let mut frost_parts: BTreeMap<u16, Zeroizing<Vec<u8>>> = match c.kind {
        CeremonyKind::Dkg => {
            let round1 = frost::Round1Secret::from_bytes(&s.frost).map_err(other)?;
            frost::dkg_round2(&round1, &others_round1(c, node.me)).map_err(other)?.1
        }
        CeremonyKind::Reshare | CeremonyKind::Restore => {
            let d = frost::ReshareDealer::from_bytes(&s.frost).map_err(other)?;
            c.recipients
                .iter()
                .filter_map(|r| share_index(*r))
                .map(|x| Ok((x, Zeroizing::new(d.share_for(x).map_err(other)?.to_vec()))))
                .collect::<Result<_, KeyError>>()?
        }
    };
    // Test fault: the lowest other recipient gets a share of another index.
    let victim = c.recipients.iter().copied().find(|r| *r != node.me).filter(|_| node.byzantine.corrupt_dealing);
    let mut out = BTreeMap::new();
    for r in &c.recipients {
        let x = share_index(*r).ok_or_else(|| other("recipient id out of range"))?;
        let x_bls = if Some(*r) == victim {
            tracing::warn!(recipient = r, "INSECURE test fault: dealing a corrupted share");
            x.wrapping_add(1).max(1)
        } else {
            x
        };
        out.insert(
            *r,
            SecretDeal {
                session: c.session,
                recipient: *r,
                bls: dealer.share_for(x_bls).map_err(other)?.to_bytes().to_vec(),
                // A DKG participant needs no FROST round-2 package from itself.
                frost: frost_parts.remove(&x).map(|p| p.to_vec()).unwrap_or_default(),
            },
        );
    }
    Ok(out)
}

async fn send(node: &KeyNode, c: &Ceremony, recipient: NodeId, envelope: &Envelope) -> Result<(), KeyError> {
    let json = Zeroizing::new(serde_json::to_vec(envelope).map_err(other)?);
    let protocol = match c.kind {
        CeremonyKind::Dkg => ThresholdProtocol::BlsDkg,
        CeremonyKind::Reshare | CeremonyKind::Restore => ThresholdProtocol::BlsReshare,
    };
    let msg = RoundMessage {
        session: Some(SessionRef { session_id: c.session.to_vec(), protocol: protocol as i32, epoch: c.epoch }),
        round: 2,
        body: Some(Body::SecretSharePackage(json.to_vec())),
    };
    node.peers.send_round(recipient, msg).await
}

/// What a recipient does with a dealer's signed secret deal (from the peer
/// service, or from itself). Returns the complaint to file if the deal does
/// not match the dealer's commitments; a valid deal is sealed.
pub fn receive(node: &KeyNode, from: NodeId, envelope: &Envelope) -> Result<Option<KeyMsg>, KeyError> {
    if envelope.from != from {
        return Err(other(format!("node {from} relayed node {}'s secret deal", envelope.from)));
    }
    let (ceremony, identity) =
        node.view.with_state(|s| (s.keys.ceremony.clone(), s.members.get(&from).map(|m| m.identity)));
    let c = ceremony.ok_or_else(|| other("no key ceremony is running"))?;
    let identity = identity.ok_or_else(|| other(format!("node {from} is not a member")))?;
    let body = envelope.open(Domain::KeyMessage, &node.cluster_id, &identity).map_err(other)?;
    let deal: SecretDeal = serde_json::from_slice(body).map_err(|_| other("not a secret deal"))?;
    if deal.session != c.session || deal.recipient != node.me || !c.dealers.contains(&from) {
        return Err(other("secret deal for another session, recipient or dealer"));
    }
    if !c.deals.contains_key(&from) {
        return Err(other(format!("node {from}'s public deal is not committed yet")));
    }
    match check_secret_deal(&c, from, &deal) {
        Ok(()) => {
            let json = Zeroizing::new(serde_json::to_vec(envelope).map_err(other)?);
            node.secrets.put(&recv_key(&c.session, from), &json)?;
            Ok(None)
        }
        Err(reason) => {
            tracing::warn!(dealer = from, %reason, "a dealer sent this node an invalid share; complaining");
            node.suspects.report(from, &format!("invalid ceremony share: {reason}"), (node.clock)());
            Ok(Some(KeyMsg::Complaint { session: c.session, evidence: envelope.clone() }))
        }
    }
}

/// The secret deals this node received in the session, by dealer.
fn received(node: &KeyNode, c: &Ceremony) -> Result<BTreeMap<NodeId, SecretDeal>, KeyError> {
    let mut out = BTreeMap::new();
    for d in &c.dealers {
        let bytes = node.secrets.get(&recv_key(&c.session, *d))?.ok_or_else(|| other(format!("no deal from {d}")))?;
        let envelope: Envelope = serde_json::from_slice(&bytes).map_err(other)?;
        let deal: SecretDeal = serde_json::from_slice(&envelope.body).map_err(other)?;
        out.insert(*d, deal);
    }
    Ok(out)
}

/// Combine the received deals into this node's shares of the new epoch,
/// and check them against the public keys the log computed.
fn new_shares(node: &KeyNode, c: &Ceremony) -> Result<Shares, KeyError> {
    let result = c.result.as_ref().ok_or_else(|| other("no result yet"))?;
    let x = share_index(node.me).ok_or_else(|| other("node id out of range"))?;
    let deals = received(node, c)?;
    let mut bls_shares = BTreeMap::new();
    for (d, deal) in &deals {
        let dx = share_index(*d).ok_or_else(|| other("dealer id out of range"))?;
        bls_shares.insert(dx, bls::BlsShare::from_bytes(&deal.bls).map_err(other)?);
    }
    let public = result.frost_public().map_err(other)?;
    let (bls_share, frost_share) = match c.kind {
        CeremonyKind::Dkg => {
            let shares: Vec<bls::BlsShare> = bls_shares.into_values().collect();
            let secrets = dealer_secrets(node, c)?;
            let round1 = frost::Round1Secret::from_bytes(&secrets.frost).map_err(other)?;
            let others = others_round1(c, node.me);
            let (round2, _) = frost::dkg_round2(&round1, &others).map_err(other)?;
            let r2: BTreeMap<u16, Vec<u8>> = deals
                .iter()
                .filter(|(d, _)| **d != node.me)
                .filter_map(|(d, deal)| Some((share_index(*d)?, deal.frost.clone())))
                .collect();
            let (key_share, group) = frost::dkg_finish(&round2, &others, &r2).map_err(other)?;
            if group.verifying_key() != public.verifying_key() {
                return Err(other("the FROST key this node computed differs from the log's"));
            }
            (bls::dkg_share(&shares).map_err(other)?, key_share)
        }
        CeremonyKind::Reshare | CeremonyKind::Restore => {
            // The old polynomial's threshold: the same t for a resharing; a restore's single
            // dealer held the whole secret (degree 0).
            let old_t = if c.kind == CeremonyKind::Restore { 1 } else { c.threshold };
            let frost_shares: BTreeMap<u16, Zeroizing<[u8; 32]>> = deals
                .iter()
                .filter_map(|(d, deal)| {
                    let arr: [u8; 32] = deal.frost.as_slice().try_into().ok()?;
                    Some((share_index(*d)?, Zeroizing::new(arr)))
                })
                .collect();
            let key_share = frost::reshare_finish(x, &frost_shares, &public).map_err(other)?;
            (bls::reshare_share(&bls_shares, old_t).map_err(other)?, key_share)
        }
    };
    result
        .bls_public()
        .map_err(other)?
        .check_share(x, &bls_share)
        .map_err(|e| other(format!("the BLS share this node computed does not match the log's public keys: {e}")))?;
    Ok(Shares { bls: bls_share, frost: frost_share })
}

/// Whether `shares` are this node's shares of `result`.
fn matches_result(node: &KeyNode, result: &GroupKeys, shares: &Shares) -> bool {
    let Some(x) = share_index(node.me) else { return false };
    let bls = result.bls_public().is_ok_and(|p| p.check_share(x, &shares.bls).is_ok());
    let frost = result.frost_public().is_ok_and(|p| p.verifying_share(x) == Some(shares.frost.verifying_share()));
    bls && frost
}

/// Once no ceremony runs: drop shares of other epochs (older ones, and
/// newer ones left by an aborted attempt) and finished sessions' material.
fn clean_up(node: &KeyNode, current: Option<&GroupKeys>) -> Result<(), KeyError> {
    let Some(current) = current else { return Ok(()) };
    for key in node.secrets.keys(b"share/")? {
        let epoch = key.get(6..14).and_then(|b| b.try_into().ok()).map(u64::from_be_bytes);
        if epoch.is_some_and(|e| e != current.epoch) {
            node.secrets.remove_prefix(&key)?;
        }
    }
    node.secrets.remove_prefix(b"dealer/")?;
    node.secrets.remove_prefix(b"recv/")?;
    Ok(())
}
