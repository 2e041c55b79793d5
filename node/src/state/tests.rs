use std::sync::Arc;

use ed25519_dalek::SigningKey;
use guardian_proto::v1::{
    admin_command::Body, AdminCommand, ApproveNodeJoin, CreateNamespace, RevokeNode, SetAdminQuorum, SignedCommand,
};
use prost::Message;

use super::apply::NodeApplier;
use super::genesis::Genesis;
use super::*;

const CLUSTER: &str = "00112233445566778899aabbccddeeff";
/// Label of the simulated guardian measurements the genesis policy pins.
const GUARDIAN: &str = "guardian-test";

use crate::attest::sim::{SimMeasurements, SimTee, SimTrust};
use crate::attest::Verifier;
use crate::net::ratls::cert::{self, CertRequest, NodeKey};
use crate::net::ratls::verify::AttestingPeerPolicy;

/// Simulated TEEs the appliers trust: [0] runs the guardian, [1] something else.
fn tees() -> [SimTee; 2] {
    [
        SimTee::new(&[5; 32], SimMeasurements::from_label(GUARDIAN)),
        SimTee::new(&[6; 32], SimMeasurements::from_label("not-the-guardian")),
    ]
}

/// An applier as a node builds it: joiners are checked by the real RA-TLS
/// policy (simulated TEEs trusted, genesis guardian policy).
fn applier() -> NodeApplier {
    let genesis = genesis();
    let keys: Vec<[u8; 32]> = tees().iter().map(|t| t.public_key()).collect();
    let verifier = Verifier { sim: Some(SimTrust::insecure_for_development(&keys).unwrap()), ..Verifier::default() };
    let policy = AttestingPeerPolicy::new(genesis.cluster_id, Arc::new(verifier), genesis.guardian_policy.clone());
    NodeApplier { genesis, joiners: Arc::new(policy) }
}

fn keys() -> [SigningKey; 3] {
    [SigningKey::from_bytes(&[1; 32]), SigningKey::from_bytes(&[2; 32]), SigningKey::from_bytes(&[3; 32])]
}

fn genesis() -> Genesis {
    let admins: String = keys()
        .iter()
        .enumerate()
        .map(|(i, k)| {
            format!("[[admins]]\nname = \"a{i}\"\npublic_key = \"{}\"\n", hex::encode(k.verifying_key().to_bytes()))
        })
        .collect();
    let text = format!(
        "cluster_id = \"{CLUSTER}\"\nthreshold = 2\nadmin_quorum = 2\n\
         [[members]]\nid = 1\naddr = \"127.0.0.1:7101\"\n[[members]]\nid = 2\naddr = \"127.0.0.1:7102\"\n{admins}\
         [guardian_policy]\ntees = [\"sim\"]\naccepted_tcb_status = [\"Simulated\"]\n\
         [[guardian_policy.tdx]]\nname = \"g\"\nmrtd = \"{}\"\n",
        hex::encode(SimMeasurements::from_label(GUARDIAN).mrtd)
    );
    Genesis::parse(&text).unwrap()
}

fn member(id: NodeId) -> Member {
    Member {
        id,
        addr: format!("127.0.0.1:710{id}"),
        identity: NodeIdentity([id as u8; 32]),
        mrtd: String::new(),
        status: MemberStatus::Voter,
    }
}

fn bootstrapped() -> (NodeApplier, ClusterState) {
    let applier = applier();
    let mut state = ClusterState::default();
    let boot = Command::Bootstrap { genesis_digest: applier.genesis.digest, members: vec![member(1), member(2)] };
    assert_eq!(applier.apply(&mut state, &boot), Response::Applied);
    (applier, state)
}

fn command(body: Body, nonce: u8, issued: i64) -> AdminCommand {
    AdminCommand {
        cluster_id: CLUSTER.into(),
        nonce: vec![nonce; 16],
        issued_at_unix: issued,
        expires_at_unix: issued + 600,
        reason: String::new(),
        body: Some(body),
    }
}

fn signed(cmd: &AdminCommand, by: &[&SigningKey]) -> Vec<u8> {
    let mut s = SignedCommand::unsigned(cmd);
    for k in by {
        admin::sign(&mut s, k);
    }
    s.encode_to_vec()
}

fn ns(name: &str) -> Body {
    Body::CreateNamespace(CreateNamespace { namespace: name.into(), ..Default::default() })
}

#[test]
fn bootstrap_is_checked_against_the_genesis_file() {
    let applier = applier();
    let mut state = ClusterState::default();
    let wrong_digest = Command::Bootstrap { genesis_digest: [9; 32], members: vec![member(1), member(2)] };
    assert!(matches!(applier.apply(&mut state, &wrong_digest), Response::Rejected { .. }));
    let missing = Command::Bootstrap { genesis_digest: applier.genesis.digest, members: vec![member(1)] };
    assert!(matches!(applier.apply(&mut state, &missing), Response::Rejected { .. }));
    let mut moved = member(2);
    moved.addr = "10.0.0.9:1".into();
    let bad_addr = Command::Bootstrap { genesis_digest: applier.genesis.digest, members: vec![member(1), moved] };
    assert!(matches!(applier.apply(&mut state, &bad_addr), Response::Rejected { .. }));
    assert_eq!(state, ClusterState::default(), "rejected entries change nothing");
    let (applier, mut state) = bootstrapped();
    assert_eq!(state.admins.len(), 3);
    let again = Command::Bootstrap { genesis_digest: applier.genesis.digest, members: vec![member(1), member(2)] };
    assert!(matches!(applier.apply(&mut state, &again), Response::Rejected { .. }));
}

#[test]
fn admin_commands_need_valid_fresh_unreplayed_signatures() {
    let (applier, mut state) = bootstrapped();
    let [a, b, _] = keys();
    let now = 1_800_000_000u64;
    let apply = |state: &mut ClusterState, bytes: Vec<u8>, at: u64| {
        applier.apply(state, &Command::Admin { signed: bytes, proposed_at: at })
    };

    let ok = signed(&command(ns("team-a"), 1, now as i64), &[&a]);
    assert_eq!(apply(&mut state, ok.clone(), now), Response::Applied);
    assert!(state.namespaces.contains_key("team-a"));
    // Replay of the same signed bytes.
    let before = state.clone();
    let r = apply(&mut state, ok, now + 1);
    assert!(matches!(&r, Response::Rejected { reason } if reason.contains("replayed")), "{r:?}");
    assert_eq!(state, before);
    // Expired, future-dated, wrong cluster, unknown signer, tampered bytes.
    let r = apply(&mut state, signed(&command(ns("x"), 2, now as i64), &[&a]), now + 601);
    assert!(matches!(&r, Response::Rejected { reason } if reason.contains("expired")), "{r:?}");
    let r = apply(&mut state, signed(&command(ns("x"), 3, now as i64 + 3600), &[&a]), now);
    assert!(matches!(&r, Response::Rejected { reason } if reason.contains("future")), "{r:?}");
    let mut other = command(ns("x"), 4, now as i64);
    other.cluster_id = "ff".repeat(16);
    let r = apply(&mut state, signed(&other, &[&a]), now);
    assert!(matches!(&r, Response::Rejected { reason } if reason.contains("cluster")), "{r:?}");
    let stranger = SigningKey::from_bytes(&[7; 32]);
    let r = apply(&mut state, signed(&command(ns("x"), 5, now as i64), &[&stranger]), now);
    assert!(matches!(&r, Response::Rejected { reason } if reason.contains("unknown admin")), "{r:?}");
    let mut tampered = SignedCommand::decode(signed(&command(ns("x"), 6, now as i64), &[&a]).as_slice()).unwrap();
    tampered.command = command(ns("evil"), 6, now as i64).encode_to_vec();
    let r = apply(&mut state, tampered.encode_to_vec(), now);
    assert!(matches!(&r, Response::Rejected { reason } if reason.contains("invalid signature")), "{r:?}");
    assert_eq!(state, before);

    // Quorum commands need two distinct admins; the same admin twice is one.
    let q = |nonce| command(Body::SetAdminQuorum(SetAdminQuorum { quorum: 3 }), nonce, now as i64);
    let r = apply(&mut state, signed(&q(7), &[&a, &a]), now);
    assert!(matches!(&r, Response::Rejected { reason } if reason.contains("needs 2")), "{r:?}");
    assert_eq!(apply(&mut state, signed(&q(8), &[&a, &b]), now), Response::Applied);
    assert_eq!(state.admin_quorum, 3);
}

#[test]
fn genesis_errors_are_specific() {
    let err = |t: &str| Genesis::parse(t).unwrap_err().to_string();
    assert!(err("cluster_id = \"00\"").contains("missing field") || err("cluster_id = \"00\"").contains("cluster_id"));
    let base = "cluster_id = \"00112233445566778899aabbccddeeff\"\nthreshold = 3\nadmin_quorum = 1\n[[members]]\nid = 1\naddr = \"a:1\"\n[[admins]]\nname = \"a\"\npublic_key = \"8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c\"\n[guardian_policy]\ntees = [\"sim\"]\naccepted_tcb_status = [\"Simulated\"]\n";
    assert!(err(base).contains("threshold 3"));
}

#[test]
fn recovery_and_restore_sections_are_checked() {
    let err = |extra: &str| {
        let text = format!("cluster_id = \"{CLUSTER}\"\nthreshold = 1\nadmin_quorum = 1\n[[members]]\nid = 1\naddr = \"a:1\"\n[[admins]]\nname = \"a\"\npublic_key = \"8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c\"\n{extra}[guardian_policy]\ntees = [\"sim\"]\naccepted_tcb_status = [\"Simulated\"]\n");
        Genesis::parse(&text).map(|g| (g.recovery.is_some(), g.restore.is_some())).map_err(|e| e.to_string())
    };
    let (_, alice) = crate::threshold::escrow::generate_admin_key(&mut rand::rngs::OsRng);
    let (_, bob) = crate::threshold::escrow::generate_admin_key(&mut rand::rngs::OsRng);
    let admin = |name: &str, key: &[u8; 32]| {
        format!("[[recovery.admins]]\nname = \"{name}\"\npublic_key = \"{}\"\n", hex::encode(key))
    };
    let two = format!("{}{}", admin("alice", &alice), admin("bob", &bob));
    assert_eq!(err(&format!("[recovery]\nthreshold = 2\n{two}")), Ok((true, false)));
    // A single admin must never be able to rebuild the keys alone; k <= m; distinct keys.
    assert!(err(&format!("[recovery]\nthreshold = 1\n{two}")).unwrap_err().contains("between 2 and the 2"));
    assert!(err(&format!("[recovery]\nthreshold = 3\n{two}")).unwrap_err().contains("between 2 and the 2"));
    let same = format!("{}{}", admin("alice", &alice), admin("eve", &alice));
    assert!(err(&format!("[recovery]\nthreshold = 2\n{same}")).unwrap_err().contains("distinct"));
    assert!(err("[recovery]\nthreshold = 2\n[[recovery.admins]]\nname = \"x\"\npublic_key = \"00\"\n")
        .unwrap_err()
        .contains("32 bytes of hex"));
    // A restore pin must name a real BLS key.
    let pin = |bls: &str| {
        format!("[restore]\nbls_group_key = \"{bls}\"\nfrost_group_key = \"{}\"\ncreated_at = 1\n", "11".repeat(32))
    };
    assert!(err(&pin(&"00".repeat(48))).unwrap_err().contains("not a BLS12-381"));
    let g1 = crate::threshold::bls::BlsShare::from_bytes(&[5; 32]).unwrap().public_key();
    assert_eq!(err(&pin(&hex::encode(g1))), Ok((false, true)));
}

#[test]
fn a_backdated_proposal_cannot_replay_a_pruned_command() {
    let (applier, mut state) = bootstrapped();
    let [a, _, _] = keys();
    let t = 1_800_000_000u64;
    let old = signed(&command(ns("old"), 1, t as i64), &[&a]);
    assert_eq!(applier.apply(&mut state, &Command::Admin { signed: old.clone(), proposed_at: t }), Response::Applied);
    // Much later, the old nonce is pruned by another command...
    let later = t + 10_000;
    let next = signed(&command(ns("next"), 2, later as i64), &[&a]);
    assert_eq!(applier.apply(&mut state, &Command::Admin { signed: next, proposed_at: later }), Response::Applied);
    assert!(state.used_nonces.len() == 1);
    state.namespaces.remove("old");
    // ...and a leader backdates a replay of the old command into its window: refused as expired.
    let r = applier.apply(&mut state, &Command::Admin { signed: old, proposed_at: t });
    assert!(matches!(&r, Response::Rejected { reason } if reason.contains("expired")), "{r:?}");
}

#[test]
fn bootstrap_refuses_duplicate_members() {
    let applier = applier();
    let mut state = ClusterState::default();
    let mut twin = member(1);
    twin.identity = NodeIdentity([9; 32]);
    let dup = Command::Bootstrap { genesis_digest: applier.genesis.digest, members: vec![member(1), twin] };
    assert!(matches!(applier.apply(&mut state, &dup), Response::Rejected { .. }));
}

/// A joiner's RA-TLS certificate for `node_id`, valid from `now - 60` for an hour.
fn joiner_cert(key: &NodeKey, tee: &SimTee, node_id: NodeId, now: u64) -> Vec<u8> {
    let mut cluster_id = [0u8; 16];
    hex::decode_to_slice(CLUSTER, &mut cluster_id).unwrap();
    let req = CertRequest { cluster_id, node_id, now, lifetime: 3600 };
    cert::issue(key, &req, tee).unwrap().cert.to_vec()
}

fn approve(node_id: NodeId, address: &str, certificate: Vec<u8>) -> Body {
    Body::ApproveNodeJoin(ApproveNodeJoin { node_id, address: address.into(), certificate })
}

#[test]
fn joins_are_verified_on_apply_then_promoted() {
    let (applier, mut state) = bootstrapped();
    let [a, b, _] = keys();
    let [guardian, other] = tees();
    let now = 1_800_000_000u64;
    let key = NodeKey::generate().unwrap();
    let cert3 = joiner_cert(&key, &guardian, 3, now);
    let mut nonce = 10u8;
    let mut run = |state: &mut ClusterState, body: Body, signers: &[&SigningKey], at: u64| {
        nonce += 1;
        let bytes = signed(&command(body, nonce, now as i64), signers);
        applier.apply(state, &Command::Admin { signed: bytes, proposed_at: at })
    };
    let before = state.clone();
    let refused = |r: Response, why: &str| {
        assert!(matches!(&r, Response::Rejected { reason } if reason.contains(why)), "wanted {why:?}, got {r:?}");
    };
    // The certificate names node 3: it cannot admit node 4.
    refused(run(&mut state, approve(4, "127.0.0.1:7104", cert3.clone()), &[&a], now), "not node 4's");
    // Evidence from a TEE that is not running the guardian.
    let stranger = joiner_cert(&NodeKey::generate().unwrap(), &other, 3, now);
    refused(run(&mut state, approve(3, "127.0.0.1:7103", stranger), &[&a], now), "guardian policy");
    // Proposed after the certificate (and so its evidence) expired.
    refused(run(&mut state, approve(3, "127.0.0.1:7103", cert3.clone()), &[&a], now + 7200), "expired");
    // A member's id or address, garbage, a bad address.
    refused(run(&mut state, approve(2, "127.0.0.1:7109", cert3.clone()), &[&a], now), "already a member");
    refused(run(&mut state, approve(3, "127.0.0.1:7102", cert3.clone()), &[&a], now), "node 2's");
    refused(run(&mut state, approve(3, "127.0.0.1:7103", b"garbage".to_vec()), &[&a], now), "refused");
    refused(run(&mut state, approve(3, "no-port", cert3.clone()), &[&a], now), "host:port");
    assert_eq!(state.members, before.members, "refused joins change nothing");

    assert_eq!(run(&mut state, approve(3, "127.0.0.1:7103", cert3.clone()), &[&a], now + 5), Response::Applied);
    let m = &state.members[&3];
    assert_eq!((m.status, m.identity), (MemberStatus::Learner, key.identity()));
    assert_eq!(m.mrtd, hex::encode(SimMeasurements::from_label(GUARDIAN).mrtd));
    assert_eq!(applier.apply(&mut state, &Command::Promote { node_id: 3 }), Response::Applied);
    assert_eq!(state.members[&3].status, MemberStatus::Voter);
    refused(applier.apply(&mut state, &Command::Promote { node_id: 3 }), "already a voter");
    refused(applier.apply(&mut state, &Command::Promote { node_id: 9 }), "not a member");

    // Revoked: the same identity cannot come back, under any id.
    let revoke = Body::RevokeNode(RevokeNode { node_id: 3 });
    assert_eq!(run(&mut state, revoke, &[&a, &b], now + 6), Response::Applied);
    let cert5 = joiner_cert(&key, &guardian, 5, now);
    refused(run(&mut state, approve(5, "127.0.0.1:7105", cert5), &[&a], now + 7), "revoked");
    assert!(!state.members.contains_key(&5));
}
