use ed25519_dalek::SigningKey;
use guardian_proto::v1::{admin_command::Body, AdminCommand, CreateNamespace, SetAdminQuorum, SignedCommand};
use prost::Message;

use super::apply::NodeApplier;
use super::genesis::Genesis;
use super::*;

const CLUSTER: &str = "00112233445566778899aabbccddeeff";

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
        "ab".repeat(48)
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
    let applier = NodeApplier { genesis: genesis() };
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
    let applier = NodeApplier { genesis: genesis() };
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
    assert!(state.namespaces.contains("team-a"));
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
    let applier = NodeApplier { genesis: genesis() };
    let mut state = ClusterState::default();
    let mut twin = member(1);
    twin.identity = NodeIdentity([9; 32]);
    let dup = Command::Bootstrap { genesis_digest: applier.genesis.digest, members: vec![member(1), twin] };
    assert!(matches!(applier.apply(&mut state, &dup), Response::Rejected { .. }));
}
