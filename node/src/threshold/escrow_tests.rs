//! Admin recovery through the replicated rules: holders escrow a 3-of-5
//! DKG's shares to 2-of-3 recovery admins (one holder seals garbage), two
//! admins open the escrow, a fresh cluster restores exactly the same keys
//! in a single-dealer ceremony, and a threshold signature under the restored
//! sharing equals the old one (so every namespace secret is the same).

use std::collections::{BTreeMap, BTreeSet};

use rand::rngs::OsRng;
use zeroize::Zeroizing;

use super::ceremony::{
    apply, check_secret_deal, escrow_due, CeremonyKind, Deal, KeyCommand, KeyMsg, Params, SecretDeal,
};
use super::escrow::{self, EscrowError, EscrowFile, RecoveryAdmin, RecoveryConfig, RestorePin};
use super::tests::{cluster, complete_dkg, signed, Node, CLUSTER, T};
use super::{bls, frost};
use crate::state::NodeId;

fn admins(m: usize, k: u16) -> (RecoveryConfig, Vec<Zeroizing<[u8; 32]>>) {
    let keys: Vec<_> = (0..m).map(|_| escrow::generate_admin_key(&mut OsRng)).collect();
    let cfg = RecoveryConfig::new(
        k,
        keys.iter()
            .enumerate()
            .map(|(i, (_, pk))| RecoveryAdmin { name: format!("admin-{i}"), public_key: *pk })
            .collect(),
    )
    .unwrap();
    (cfg, keys.into_iter().map(|(sk, _)| sk).collect())
}

/// The combined BLS signature on `label` from the shares of `ids`.
fn prf(public: &bls::BlsPublic, shares: &BTreeMap<NodeId, bls::BlsShare>, label: &[u8]) -> Vec<u8> {
    let sigs: BTreeMap<u16, Vec<u8>> =
        shares.iter().take(usize::from(T)).map(|(id, s)| (*id as u16, bls::sign_share(s, label).to_vec())).collect();
    bls::combine(public, &sigs, label).unwrap().signature.to_vec()
}

#[test]
fn escrowed_keys_are_restored_whole_onto_a_fresh_cluster() {
    // The lost cluster: a 3-of-5 DKG, escrowed to 2-of-3 admins.
    let (cfg, admin_keys) = admins(3, 2);
    let p = Params { cluster_id: &CLUSTER, threshold: T, recovery: Some(&cfg), restore: None };
    let (mut state, mut keys) = cluster(5);
    let (nodes, held) = complete_dkg(&mut state, &mut keys, &[1, 2, 3, 4, 5]);
    let old = state.keys.current.clone().unwrap();
    let mut deals = BTreeMap::new();
    for n in &nodes {
        assert_eq!(escrow_due(&p, &state.keys, n.id), Some(1));
        let (b, f) = &held[&n.id];
        deals.insert(n.id, escrow::deal(&CLUSTER, &cfg, 1, n.id, b, f, &mut OsRng).unwrap());
    }
    // Apply refuses a deal whose commitments do not open to the sender's own shares.
    let stolen = KeyMsg::Escrow { epoch: 1, deal: deals[&3].clone() };
    assert!(apply(&p, &mut state, &signed(&nodes[1], &stolen), 200).unwrap_err().contains("old share"));
    // Node 1 seals garbage for admin 1 (apply cannot see it; the admins skip node 1).
    let mut garbage = deals[&1].clone();
    garbage.sealed[0] = deals[&2].sealed[0].clone();
    apply(&p, &mut state, &signed(&nodes[0], &KeyMsg::Escrow { epoch: 1, deal: garbage }), 200).unwrap();
    for n in &nodes[1..] {
        apply(&p, &mut state, &signed(n, &KeyMsg::Escrow { epoch: 1, deal: deals[&n.id].clone() }), 201).unwrap();
    }
    assert!(escrow_due(&p, &state.keys, 2).is_none());
    let again = KeyMsg::Escrow { epoch: 1, deal: deals[&2].clone() };
    assert!(apply(&p, &mut state, &signed(&nodes[1], &again), 202).unwrap_err().contains("no escrow of epoch 1 due"));
    let file = EscrowFile::new(CLUSTER, cfg.clone(), state.keys.escrow.clone().unwrap());
    let file = EscrowFile::parse(&serde_json::to_vec(&file).unwrap()).unwrap();
    let pin = file.pin().unwrap();
    assert_eq!(pin, RestorePin::of(&old).unwrap());

    // Opening needs k admins, each with its own key.
    let key = |i: usize| Zeroizing::new(*admin_keys[i]);
    let one = BTreeMap::from([(1u16, key(0))]);
    assert!(matches!(
        escrow::open(&CLUSTER, &cfg, &file.escrow, &one),
        Err(EscrowError::TooFewAdmins { got: 1, needed: 2 })
    ));
    let swapped = BTreeMap::from([(1u16, key(1)), (3, key(2))]);
    assert_eq!(escrow::open(&CLUSTER, &cfg, &file.escrow, &swapped).unwrap_err(), EscrowError::WrongKey { index: 1 });
    let opened = escrow::open(&CLUSTER, &cfg, &file.escrow, &BTreeMap::from([(1u16, key(0)), (3, key(2))])).unwrap();
    assert_eq!(opened.dealers, BTreeSet::from([2, 3, 4]), "node 1's garbage is skipped: {:?}", opened.skipped);
    assert!(opened.skipped[&1].contains("admin 1"));
    let root = escrow::combine(&pin, 2, &opened.shares).unwrap();
    assert_eq!(root.bls.public_key(), pin.bls_group_key);
    // Shares that do not rebuild the pinned keys are refused.
    let other_pin =
        RestorePin { bls_group_key: bls::BlsShare::from_bytes(&[1; 32]).unwrap().public_key(), ..pin.clone() };
    assert_eq!(escrow::combine(&other_pin, 2, &opened.shares).unwrap_err(), EscrowError::Mismatch("BLS"));

    // The fresh cluster: four new members, its genesis pins the old keys. No DKG.
    let rp = Params { cluster_id: &CLUSTER, threshold: T, recovery: None, restore: Some(&pin) };
    let (mut fresh, mut fresh_keys) = cluster(4);
    let fresh_nodes: Vec<Node> = (1..=4)
        .map(|id| Node {
            id,
            key: fresh_keys.remove(&id).unwrap(),
            bls: bls::BlsDealer::fresh(T, &mut OsRng).unwrap(),
            round1: frost::dkg_round1(id as u16, 4, T, &mut OsRng).unwrap().0,
        })
        .collect();
    let dkg =
        KeyCommand::Start { kind: CeremonyKind::Dkg, dealers: [1, 2, 3, 4].into(), recipients: [1, 2, 3, 4].into() };
    assert!(apply(&rp, &mut fresh, &dkg, 300).unwrap_err().contains("rebuilt from admin escrow"));
    assert!(apply(&p, &mut fresh.clone(), &signed(&fresh_nodes[1], &KeyMsg::Restore), 300)
        .unwrap_err()
        .contains("pins none"));
    // Node 2 holds the rebuilt keys and asks to deal them.
    apply(&rp, &mut fresh, &signed(&fresh_nodes[1], &KeyMsg::Restore), 300).unwrap();
    let c = fresh.keys.ceremony.clone().unwrap();
    assert_eq!(
        (c.kind, c.dealers.clone(), c.recipients.clone()),
        (CeremonyKind::Restore, [2].into(), [1, 2, 3, 4].into())
    );
    // A dealer without the keys cannot commit to them.
    let fake = Deal {
        bls: bls::BlsDealer::fresh(T, &mut OsRng).unwrap().commitment().to_bytes(),
        frost: frost::ReshareDealer::from_secret(2, &[3; 32], T, &mut OsRng).unwrap().commitment(),
    };
    let msg = KeyMsg::Deal { session: c.session, deal: fake };
    assert!(apply(&rp, &mut fresh, &signed(&fresh_nodes[1], &msg), 301).unwrap_err().contains("old share"));
    let b = bls::BlsDealer::reshare(&root.bls, T, &mut OsRng).unwrap();
    let f = frost::ReshareDealer::from_secret(2, &root.frost, T, &mut OsRng).unwrap();
    let deal = Deal { bls: b.commitment().to_bytes(), frost: f.commitment() };
    apply(&rp, &mut fresh, &signed(&fresh_nodes[1], &KeyMsg::Deal { session: c.session, deal }), 301).unwrap();
    let c = fresh.keys.ceremony.clone().unwrap();
    let result = c.result.clone().expect("one dealer: the result follows");
    assert_eq!(RestorePin::of(&result).unwrap(), pin, "the restored keys are the lost cluster's");
    let public = result.frost_public().unwrap();
    let mut new_bls = BTreeMap::new();
    for n in &fresh_nodes {
        let x = n.id as u16;
        let secret = SecretDeal {
            session: c.session,
            recipient: n.id,
            bls: b.share_for(x).unwrap().to_bytes().to_vec(),
            frost: f.share_for(x).unwrap().to_vec(),
        };
        check_secret_deal(&c, 2, &secret).unwrap();
        let bls_share = bls::reshare_share(&BTreeMap::from([(2, b.share_for(x).unwrap())]), 1).unwrap();
        result.bls_public().unwrap().check_share(x, &bls_share).unwrap();
        frost::reshare_finish(x, &BTreeMap::from([(2, f.share_for(x).unwrap())]), &public).unwrap();
        new_bls.insert(n.id, bls_share);
        let done = KeyMsg::Done { session: c.session, result: result.digest() };
        apply(&rp, &mut fresh, &signed(n, &done), 302).unwrap();
    }
    let restored = fresh.keys.current.clone().expect("restored");
    assert_eq!(
        (restored.epoch, restored.holders.clone(), restored.created_at),
        (1, [1, 2, 3, 4].into(), old.created_at)
    );
    // The PRF is the same function: the same label gives the same combined signature.
    let old_bls: BTreeMap<NodeId, bls::BlsShare> =
        held.iter().map(|(id, (s, _))| (*id, bls::BlsShare::from_bytes(&s.to_bytes()[..]).unwrap())).collect();
    let label = bls::namespace_label(&CLUSTER, "payments", 1);
    assert_eq!(prf(&old.bls_public().unwrap(), &old_bls, &label), prf(&result.bls_public().unwrap(), &new_bls, &label));
    // Restored, the cluster refuses another restore.
    let again = signed(&fresh_nodes[0], &KeyMsg::Restore);
    assert!(apply(&rp, &mut fresh, &again, 303).unwrap_err().contains("nothing to restore"));
}
