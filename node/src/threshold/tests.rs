//! A DKG run through the replicated rules alone: four members, real signed
//! messages, a cheating dealer caught by a complaint, and a leader's forgeries
//! refused.

use std::collections::{BTreeMap, BTreeSet};

use rand::rngs::OsRng;

use super::ceremony::{apply, CeremonyKind, Deal, KeyCommand, KeyMsg, Params, SecretDeal};
use super::envelope::{Domain, Envelope};
use super::{bls, frost};
use crate::net::ratls::cert::NodeKey;
use crate::state::{ClusterState, Member, MemberStatus, NodeId};

pub(super) const CLUSTER: [u8; 16] = [7; 16];
pub(super) const T: u16 = 3;

pub(super) struct Node {
    pub(super) id: NodeId,
    pub(super) key: NodeKey,
    pub(super) bls: bls::BlsDealer,
    pub(super) round1: frost::Round1Secret,
}

impl Node {
    pub(super) fn seal(&self, msg: &impl serde::Serialize) -> Envelope {
        let body = serde_json::to_vec(msg).unwrap();
        Envelope::seal(Domain::KeyMessage, &CLUSTER, self.id, self.key.spki_der(), body, |m| {
            self.key.sign(m).map_err(|e| e.to_string())
        })
        .unwrap()
    }
}

pub(super) fn params() -> Params<'static> {
    Params { cluster_id: &CLUSTER, threshold: T, recovery: None, restore: None }
}

pub(super) fn cluster(n: u64) -> (ClusterState, BTreeMap<NodeId, NodeKey>) {
    let mut state = ClusterState { genesis_digest: Some([1; 32]), ..Default::default() };
    let mut keys = BTreeMap::new();
    for id in 1..=n {
        let key = NodeKey::generate().unwrap();
        let member = Member {
            id,
            addr: format!("10.0.0.{id}:7100"),
            identity: key.identity(),
            mrtd: String::new(),
            status: MemberStatus::Voter,
        };
        state.members.insert(id, member);
        keys.insert(id, key);
    }
    (state, keys)
}

pub(super) fn signed(node: &Node, msg: &KeyMsg) -> KeyCommand {
    KeyCommand::Signed(node.seal(msg))
}

/// Start a DKG among `ids` and have each deal; returns the participants.
fn deal_all(state: &mut ClusterState, keys: &mut BTreeMap<NodeId, NodeKey>, ids: &[NodeId]) -> Vec<Node> {
    let set: BTreeSet<NodeId> = ids.iter().copied().collect();
    let start = KeyCommand::Start { kind: CeremonyKind::Dkg, dealers: set.clone(), recipients: set };
    apply(&params(), state, &start, 100).unwrap();
    let session = state.keys.ceremony.as_ref().unwrap().session;
    let mut nodes = Vec::new();
    for id in ids {
        let x = *id as u16;
        let (round1, public) = frost::dkg_round1(x, ids.len() as u16, T, &mut OsRng).unwrap();
        let node =
            Node { id: *id, key: keys.remove(id).unwrap(), bls: bls::BlsDealer::fresh(T, &mut OsRng).unwrap(), round1 };
        let deal = Deal { bls: node.bls.commitment().to_bytes(), frost: public };
        apply(&params(), state, &signed(&node, &KeyMsg::Deal { session, deal }), 101).unwrap();
        nodes.push(node);
    }
    nodes
}

/// What dealer `d` sends recipient `r`.
fn secret_deal(state: &ClusterState, d: &Node, r: NodeId) -> SecretDeal {
    let c = state.keys.ceremony.as_ref().unwrap();
    let others: BTreeMap<u16, Vec<u8>> =
        c.deals.iter().filter(|(id, _)| **id != d.id).map(|(id, deal)| (*id as u16, deal.frost.clone())).collect();
    let (_, mut round2) = frost::dkg_round2(&d.round1, &others).unwrap();
    SecretDeal {
        session: c.session,
        recipient: r,
        bls: d.bls.share_for(r as u16).unwrap().to_bytes().to_vec(),
        frost: round2.remove(&(r as u16)).map(|p| p.to_vec()).unwrap_or_default(),
    }
}

/// Run a DKG among `ids` to completion; returns the participants and their shares.
pub(super) fn complete_dkg(
    state: &mut ClusterState,
    keys: &mut BTreeMap<NodeId, NodeKey>,
    ids: &[NodeId],
) -> (Vec<Node>, BTreeMap<NodeId, (bls::BlsShare, frost::KeyShare)>) {
    let p = params();
    let nodes = deal_all(state, keys, ids);
    let result = state.keys.ceremony.as_ref().unwrap().result.clone().unwrap();
    let mut held = BTreeMap::new();
    for r in &nodes {
        let deals: Vec<SecretDeal> = nodes.iter().map(|d| secret_deal(state, d, r.id)).collect();
        let shares: Vec<bls::BlsShare> = deals.iter().map(|d| bls::BlsShare::from_bytes(&d.bls).unwrap()).collect();
        let share = bls::dkg_share(&shares).unwrap();
        result.bls_public().unwrap().check_share(r.id as u16, &share).unwrap();
        let c = state.keys.ceremony.as_ref().unwrap();
        let others: BTreeMap<u16, Vec<u8>> =
            c.deals.iter().filter(|(id, _)| **id != r.id).map(|(id, d)| (*id as u16, d.frost.clone())).collect();
        let (round2, _) = frost::dkg_round2(&r.round1, &others).unwrap();
        let received: BTreeMap<u16, Vec<u8>> = deals
            .iter()
            .zip(&nodes)
            .filter(|(_, d)| d.id != r.id)
            .map(|(s, d)| (d.id as u16, s.frost.clone()))
            .collect();
        let (key_share, group) = frost::dkg_finish(&round2, &others, &received).unwrap();
        assert_eq!(group.verifying_key(), result.frost_public().unwrap().verifying_key());
        let done = KeyMsg::Done { session: c.session, result: result.digest() };
        apply(&p, state, &signed(r, &done), 105).unwrap();
        held.insert(r.id, (share, key_share));
    }
    (nodes, held)
}

#[test]
fn a_dkg_through_the_log_disqualifies_a_cheater_and_refuses_forgeries() {
    let (mut state, mut keys) = cluster(4);
    let p = params();
    // Only voters may hold shares; a DKG needs t of them.
    let few = KeyCommand::Start { kind: CeremonyKind::Dkg, dealers: [1, 2].into(), recipients: [1, 2].into() };
    assert!(apply(&p, &mut state, &few, 1).unwrap_err().contains("cannot hold"));
    let reshare =
        KeyCommand::Start { kind: CeremonyKind::Reshare, dealers: [1, 2, 3].into(), recipients: [1, 2, 3].into() };
    assert!(apply(&p, &mut state, &reshare, 1).unwrap_err().contains("nothing to reshare"));

    let nodes = deal_all(&mut state, &mut keys, &[1, 2, 3, 4]);
    let c = state.keys.ceremony.clone().unwrap();
    assert!(c.result.is_some(), "every dealer dealt: the public keys follow from the log");
    let session = c.session;

    // A leader cannot forge a member's message: wrong key, altered body, unknown sender.
    let mut forged = nodes[1].seal(&KeyMsg::Done { session, result: [0; 32] });
    forged.from = 1;
    assert!(apply(&p, &mut state, &KeyCommand::Signed(forged), 102).unwrap_err().contains("not the identity"));
    let mut altered = nodes[0].seal(&KeyMsg::Done { session, result: c.result.as_ref().unwrap().digest() });
    altered.body[10] ^= 1;
    assert!(apply(&p, &mut state, &KeyCommand::Signed(altered), 102).unwrap_err().contains("bad signature"));
    // A second deal from the same dealer is refused.
    let again = KeyMsg::Deal { session, deal: c.deals[&1].clone() };
    assert!(apply(&p, &mut state, &signed(&nodes[0], &again), 102).unwrap_err().contains("already dealt"));
    // Done with other keys than the log's is a broadcast inconsistency.
    let wrong = KeyMsg::Done { session, result: [9; 32] };
    assert!(apply(&p, &mut state, &signed(&nodes[0], &wrong), 102).unwrap_err().contains("broadcast inconsistency"));

    // An unfounded complaint (node 3 shows node 2's valid deal) is refused.
    let honest = nodes[1].seal(&secret_deal(&state, &nodes[1], 3));
    let complaint = KeyMsg::Complaint { session, evidence: honest };
    assert!(apply(&p, &mut state, &signed(&nodes[2], &complaint), 103).unwrap_err().contains("unfounded"));
    // Node 2 deals node 3 a bad BLS share, signed: the complaint proves it, node 2 is out.
    let mut bad = secret_deal(&state, &nodes[1], 3);
    bad.bls = nodes[1].bls.share_for(4).unwrap().to_bytes().to_vec();
    let complaint = KeyMsg::Complaint { session, evidence: nodes[1].seal(&bad) };
    apply(&p, &mut state, &signed(&nodes[2], &complaint), 104).unwrap();
    assert!(state.keys.ceremony.is_none());
    assert!(state.keys.culprits[&2].contains("invalid share"));
    assert_eq!(super::ceremony::desired_holders(&state), [1, 3, 4].into());

    // The next attempt goes on without the cheater and completes.
    let mut keys: BTreeMap<NodeId, NodeKey> = nodes.into_iter().map(|n| (n.id, n.key)).collect();
    complete_dkg(&mut state, &mut keys, &[1, 3, 4]);
    let current = state.keys.current.clone().expect("the DKG completed");
    assert_eq!(current.holders, [1, 3, 4].into());
    assert_eq!(current.epoch, 1);
    assert!(state.keys.ceremony.is_none());
    // With keys in force, a new DKG is refused.
    let dkg = KeyCommand::Start { kind: CeremonyKind::Dkg, dealers: [1, 3, 4].into(), recipients: [1, 3, 4].into() };
    assert!(apply(&p, &mut state, &dkg, 106).unwrap_err().contains("would change them"));
}

#[test]
fn a_ceremony_is_aborted_only_after_its_timeout_and_the_old_state_stays() {
    let (mut state, _) = cluster(3);
    let p = params();
    let all: BTreeSet<NodeId> = [1, 2, 3].into();
    let start = KeyCommand::Start { kind: CeremonyKind::Dkg, dealers: all.clone(), recipients: all };
    apply(&p, &mut state, &start, 100).unwrap();
    let session = state.keys.ceremony.as_ref().unwrap().session;
    let abort = KeyCommand::Abort { session };
    assert!(apply(&p, &mut state, &abort, 120).unwrap_err().contains("not timed out"));
    apply(&p, &mut state, &abort, 100 + super::ceremony::CEREMONY_TIMEOUT_SECS).unwrap();
    assert!(state.keys.ceremony.is_none() && state.keys.current.is_none());
    assert!(state.keys.last_failure.as_deref().unwrap_or("").contains("waiting for nodes [1, 2, 3]"));
    // A message for the aborted session is refused.
    assert!(apply(&p, &mut state, &abort, 1000).unwrap_err().contains("no key ceremony"));
}
