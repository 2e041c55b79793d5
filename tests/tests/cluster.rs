//! Real guardian clusters: separate processes on real sockets, talking RA-TLS
//! with the (INSECURE) simulated TEE, driven through guardctl.

use std::time::{Duration, Instant};

use guardian_tests::cluster::{TestCluster, Tuning};

const READY: Duration = Duration::from_secs(60);

#[test]
fn five_nodes_bootstrap_from_genesis_and_agree_on_membership() {
    let c = TestCluster::start(5, Tuning::default());
    let s = c.wait_ready(&[1, 2, 3, 4, 5], READY);
    let members = s["members"].as_array().unwrap();
    assert_eq!(members.len(), 5);
    assert!(members.iter().all(|m| m["role"] == "voter"), "{s}");
    // Every node reports the same leader and membership.
    for n in s["nodes"].as_array().unwrap() {
        assert_eq!(n["leader"], s["leader"], "{s}");
    }
    assert!(c.create_namespace("team-a"));
    for id in 1..=5 {
        c.wait_applied(id, &["team-a".to_string()], READY);
        assert_eq!(c.health(id, "/healthz"), Some(200));
        assert_eq!(c.health(id, "/readyz"), Some(200));
        assert_eq!(c.health(id, "/nope"), Some(404));
    }
}

#[test]
fn leader_kill9_elects_a_new_leader_and_commits_resume() {
    let mut c = TestCluster::start(5, Tuning::default());
    c.wait_ready(&[1, 2, 3, 4, 5], READY);
    assert!(c.create_namespace("before"));
    let old = c.leader();
    c.kill9(old);
    let t0 = Instant::now();
    let mut attempts = 0;
    while !c.create_namespace("after") {
        attempts += 1;
        assert!(t0.elapsed() < READY, "no commit within {READY:?} of killing the leader");
    }
    let recovery = t0.elapsed();
    println!(
        "recovery: a new leader committed {:.2} s after kill -9 of leader {old} ({attempts} failed attempts)",
        recovery.as_secs_f64()
    );
    let alive: Vec<u64> = (1..=5).filter(|i| *i != old).collect();
    let s = c.wait_ready(&alive, READY);
    assert_ne!(s["leader"].as_u64(), Some(old));
    // The old leader comes back as a follower and catches up.
    c.start_node(old);
    c.wait_applied(old, &["before".to_string(), "after".to_string()], READY);
}

#[test]
fn a_restarted_follower_catches_up_through_a_snapshot() {
    let tuning = Tuning { snapshot_every: 5, snapshot_keep_logs: 0, ..Tuning::default() };
    let mut c = TestCluster::start(3, tuning);
    c.wait_ready(&[1, 2, 3], READY);
    let follower = (1..=3).find(|i| *i != c.leader()).unwrap();
    c.kill9(follower);
    let names: Vec<String> = (0..15).map(|i| format!("while-down-{i}")).collect();
    for n in &names {
        assert!(c.create_namespace(n), "commit {n} with one follower down");
    }
    c.start_node(follower);
    c.wait_applied(follower, &names, READY);
    assert!(
        c.log_of(follower).contains("installed snapshot"),
        "the follower should have caught up by installing a snapshot"
    );
}

/// Kill -9 a node (leaders and followers in turn) in the middle of a stream of
/// commits, restart it, and check that no acknowledged command is ever lost.
#[test]
fn crash_consistency_no_acknowledged_entry_is_lost() {
    let rounds: usize = std::env::var("GUARDIAN_CRASH_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(50);
    let mut c = TestCluster::start(3, Tuning { snapshot_every: 20, snapshot_keep_logs: 5, ..Tuning::default() });
    c.wait_ready(&[1, 2, 3], READY);
    let mut acked = Vec::new();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let t0 = Instant::now();
    for round in 0..rounds {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let victim = if round % 2 == 0 { c.leader().max(1) } else { 1 + seed % 3 };
        // A commit in flight while the victim dies.
        let name = format!("r{round}-inflight");
        let dir = c.path().to_path_buf();
        let inflight = std::thread::spawn(move || {
            std::process::Command::new(guardian_tests::bin::guardctl())
                .args(["namespace", "create", &name, "--cluster"])
                .arg(dir)
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false)
                .then_some(name)
        });
        std::thread::sleep(Duration::from_millis(seed % 40));
        c.kill9(victim);
        if let Some(name) = inflight.join().unwrap() {
            acked.push(name);
        }
        let name = format!("r{round}-degraded");
        if c.create_namespace(&name) {
            acked.push(name);
        }
        c.start_node(victim);
    }
    for id in 1..=3 {
        c.wait_applied(id, &acked, READY);
    }
    println!(
        "crash consistency: {rounds} kill -9 rounds, {} acknowledged commands, none lost ({:.1} s)",
        acked.len(),
        t0.elapsed().as_secs_f64()
    );
    assert!(acked.len() >= rounds, "too few commits were acknowledged to be meaningful: {}", acked.len());
}

#[test]
fn a_revoked_node_is_refused_by_every_peer_and_cannot_rejoin() {
    let mut c = TestCluster::start(5, Tuning::default());
    c.wait_ready(&[1, 2, 3, 4, 5], READY);
    let victim = (1..=5).find(|i| *i != c.leader()).unwrap();
    let others: Vec<u64> = (1..=5).filter(|i| *i != victim).collect();
    // The victim is down while it is revoked, so it never learns of it.
    c.kill9(victim);
    let out = c.guardctl(&["node", "revoke", &victim.to_string(), "--reason", "test"]);
    assert!(out.status.success(), "revoke: {}", String::from_utf8_lossy(&out.stderr));
    let s = c.wait_members(&others, 4, READY);
    assert!(s["members"].as_array().unwrap().iter().all(|m| m["id"] != victim), "{s}");
    assert!(c.create_namespace("after-revoke"));
    // Restarted with its old identity, it campaigns; every peer refuses it.
    c.start_node(victim);
    let deadline = Instant::now() + READY;
    loop {
        let refusing: Vec<u64> = others.iter().copied().filter(|id| c.log_of(*id).contains("is revoked")).collect();
        if refusing.len() == others.len() {
            break;
        }
        assert!(Instant::now() < deadline, "only nodes {refusing:?} refused revoked node {victim}");
        std::thread::sleep(Duration::from_millis(300));
    }
    // The cluster is unaffected, and the victim is still not a member.
    assert!(c.create_namespace("still-working"));
    let s = c.wait_members(&others, 4, READY);
    assert!(s["members"].as_array().unwrap().iter().all(|m| m["id"] != victim), "{s}");
}

#[test]
fn bad_peers_are_refused_and_the_cluster_keeps_working() {
    use guardian_tests::cluster::attacker::{self, Forgery};
    let mut c = TestCluster::start(3, Tuning::default());
    c.wait_ready(&[1, 2, 3], READY);
    let cluster: serde_json::Value =
        serde_json::from_slice(&std::fs::read(c.path().join("cluster.json")).unwrap()).unwrap();
    let node = |id: u64, field: &str| cluster["nodes"][(id - 1) as usize][field].as_str().unwrap().to_string();
    let cluster_id: [u8; 16] = hex::decode(cluster["cluster_id"].as_str().unwrap()).unwrap().try_into().unwrap();

    // Garbage bytes, and a connection that never speaks, on the peer port.
    let mut junk = std::net::TcpStream::connect(node(1, "peer_addr")).unwrap();
    std::io::Write::write_all(&mut junk, b"\x16\x03\x01\xff\xffGET / HTTP/1.1\r\n\r\n garbage").unwrap();
    let _idle = std::net::TcpStream::connect(node(1, "peer_addr")).unwrap();

    let rt = tokio::runtime::Runtime::new().unwrap();
    // A certificate without evidence, and a real node's evidence replayed under another key.
    let victim_cert = rt.block_on(attacker::node_certificate(&node(2, "admin_addr")));
    assert!(!rt.block_on(attacker::try_peer_rpc(&node(1, "peer_addr"), Forgery::NoEvidence { cluster_id, node_id: 2 })));
    assert!(!rt.block_on(attacker::try_peer_rpc(&node(1, "peer_addr"), Forgery::ReplayedEvidence { victim_cert })));

    // An impostor with a trusted simulated-TEE key but another measurement, posing as node 3.
    c.kill9(3);
    let cfg_path = c.path().join("node-3.toml");
    let cfg = std::fs::read_to_string(&cfg_path).unwrap();
    let impostor = cfg
        .replace(
            &format!("data_dir = \"{}\"", c.path().join("node-3").display()),
            &format!("data_dir = \"{}\"", c.path().join("impostor").display()),
        )
        .replace("[tee]\n", "[tee]\nsim_label = \"tampered-image\"\n");
    std::fs::write(&cfg_path, impostor).unwrap();
    c.start_node(3);

    let log1 = || c.log_of(1);
    let deadline = Instant::now() + READY;
    for reason in [
        "peer certificate has no Guardian evidence extension",
        "evidence is bound to another key or certificate",
        "peer measurement not allowed by the guardian policy",
    ] {
        while !log1().contains(reason) {
            assert!(Instant::now() < deadline, "node 1 never refused with {reason:?}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    // The two good nodes still form a majority and commit.
    assert!(c.create_namespace("despite-bad-peers"));
    c.wait_applied(1, &["despite-bad-peers".to_string()], READY);
    c.wait_applied(2, &["despite-bad-peers".to_string()], READY);
    // Restore node 3 and the cluster heals.
    c.kill9(3);
    std::fs::write(&cfg_path, cfg).unwrap();
    c.start_node(3);
    c.wait_applied(3, &["despite-bad-peers".to_string()], READY);
}

#[test]
fn quorum_commands_need_approvals_from_enough_admins() {
    let c = TestCluster::start_with(3, Tuning::default(), &["--admins", "2", "--admin-quorum", "2"]);
    c.wait_ready(&[1, 2, 3], READY);
    let text = |o: &std::process::Output| {
        format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
    };
    // A one-signature command needs one admin.
    assert!(c.create_namespace("team-a"));
    // A quorum command with one signature is refused, and changes nothing.
    let out = c.guardctl(&["node", "revoke", "3"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("needs 2 admin signature(s), has 1"), "{}", text(&out));
    c.wait_members(&[1, 2, 3], 3, READY);
    // Propose, review and approve with the second admin, then submit.
    let file = c.path().join("revoke-3.json");
    let file = file.to_str().unwrap();
    let out = c.guardctl(&["node", "revoke", "3", "--reason", "decommission", "--propose", file]);
    assert!(out.status.success(), "{}", text(&out));
    let out = c.guardctl(&["approve", file]);
    assert_eq!(out.status.code(), Some(2), "the proposer cannot approve twice: {}", text(&out));
    let second = c.path().join("admin-2.key");
    let out = c.guardctl(&["approve", file, "--key", second.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let review = text(&out);
    assert!(
        review.contains("revoke node 3")
            && review.contains("decommission")
            && review.contains("now signed by 2 admin(s)"),
        "{review}"
    );
    let out = c.guardctl(&["submit", file]);
    assert!(out.status.success(), "{}", text(&out));
    c.wait_members(&[1, 2], 2, READY);
    // The same signed command cannot be applied twice.
    let out = c.guardctl(&["submit", file]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("replayed"), "{}", text(&out));
}

/// Node ids pending in `guardctl node joins --json`.
#[test]
fn new_nodes_join_as_learners_become_voters_and_a_revoked_one_cannot_rejoin() {
    let mut c = TestCluster::start(3, Tuning::default());
    c.wait_ready(&[1, 2, 3], READY);
    assert!(c.create_namespace("before-join"));

    // Two nodes outside the genesis file ask to join; nothing changes until an admin approves.
    let joiners = [c.add_node(), c.add_node()];
    let deadline = Instant::now() + READY;
    while c.pending_joins() != joiners {
        assert!(Instant::now() < deadline, "join requests not listed: {:?}", c.pending_joins());
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(c.status()["members"].as_array().unwrap().len(), 3);
    let out = c.guardctl(&["node", "approve", "9"]);
    assert_eq!(out.status.code(), Some(2), "no such request: {}", String::from_utf8_lossy(&out.stderr));

    let t0 = Instant::now();
    for id in joiners {
        let out = c.guardctl(&["node", "approve", &id.to_string(), "--reason", "capacity"]);
        assert!(out.status.success(), "approve {id}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stdout).contains("allowed by rule"), "shows what it approves");
    }
    // Learners catch up on the log, then the leader promotes them.
    let all = [1, 2, 3, joiners[0], joiners[1]];
    let deadline = Instant::now() + READY;
    loop {
        let s = c.wait_members(&all, 5, READY);
        if joiners.iter().all(|id| guardian_tests::cluster::role_of(&s, *id) == "voter") {
            break;
        }
        assert!(Instant::now() < deadline, "joiners not promoted: {s}");
        std::thread::sleep(Duration::from_millis(300));
    }
    println!("join: two approved nodes were voters {:.2} s after approval", t0.elapsed().as_secs_f64());
    for id in joiners {
        c.wait_applied(id, &["before-join".to_string()], READY);
    }

    // With two of the three founders down, only the joiners' votes make a majority of five.
    let leader = c.leader();
    let founders_down: Vec<u64> = [1, 2, 3].into_iter().filter(|i| *i != leader).collect();
    for id in &founders_down {
        c.kill9(*id);
    }
    assert!(c.create_namespace("joiners-vote"), "3 of 5 voters (two of them joiners) must commit");
    for id in founders_down {
        c.start_node(id);
    }

    // Revoke a running joiner: once it applies its own revocation it stops reporting ready.
    let victim = joiners[1];
    assert_eq!(c.health(victim, "/readyz"), Some(200));
    let out = c.guardctl(&["node", "revoke", &victim.to_string(), "--reason", "test"]);
    assert!(out.status.success(), "revoke: {}", String::from_utf8_lossy(&out.stderr));
    let deadline = Instant::now() + READY;
    while c.health(victim, "/readyz") != Some(503) {
        assert!(Instant::now() < deadline, "revoked node {victim} still reports ready");
        std::thread::sleep(Duration::from_millis(200));
    }
    // It comes back with its old identity and an empty log.
    c.kill9(victim);
    std::fs::remove_dir_all(c.path().join(format!("node-{victim}")).join("sled")).unwrap();
    c.start_node(victim);
    // Every member it asks (the genesis members, as it learned no others)
    // refuses its identity at the handshake, so it cannot even ask.
    let deadline = Instant::now() + READY;
    loop {
        let members = [1, 2, 3];
        let refusing: Vec<u64> =
            members.iter().copied().filter(|id| c.log_of(*id).contains(&format!("node {victim}"))).collect();
        let refusing: Vec<u64> = refusing.into_iter().filter(|id| c.log_of(*id).contains("is revoked")).collect();
        if refusing.len() == members.len() && c.log_of(victim).contains("no member accepted the join request") {
            break;
        }
        assert!(Instant::now() < deadline, "revoked node {victim} refused only by {refusing:?}");
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(!c.pending_joins().contains(&victim), "a revoked identity is never pending");
    let out = c.guardctl(&["node", "approve", &victim.to_string()]);
    assert!(!out.status.success(), "a revoked node cannot be approved again");
    let s = c.wait_members(&[1, 2, 3, joiners[0]], 4, READY);
    assert_eq!(guardian_tests::cluster::role_of(&s, victim), "");
    assert!(c.create_namespace("after-revoke"));
}

#[test]
fn a_minority_partition_cannot_commit_and_the_cluster_converges_after_healing() {
    // Partitions come from the fault-injecting TCP proxies of guardian_tests::faults.
    let c = TestCluster::start_faulty(5, Tuning::default());
    c.wait_ready(&[1, 2, 3, 4, 5], READY);
    assert!(c.create_namespace("before"));
    let leader = c.leader();
    let minority = [leader, (1..=5).find(|i| *i != leader).unwrap()];
    let majority: Vec<u64> = (1..=5).filter(|i| !minority.contains(i)).collect();
    let faults = c.faults.as_ref().unwrap();
    faults.partition(&minority, &majority);

    // The majority elects a leader of its own and commits.
    let t0 = Instant::now();
    loop {
        let rows = c.status()["nodes"].as_array().cloned().unwrap_or_default();
        let new_leader = majority.iter().copied().find(|id| rows.iter().any(|r| r["id"] == *id && r["leader"] == *id));
        if let Some(id) = new_leader {
            if c.create_namespace_via(id, "majority-write").status.success() {
                break;
            }
        }
        assert!(t0.elapsed() < READY, "the majority did not commit within {READY:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    println!("partition: the 3-node majority committed {:.2} s after the cut", t0.elapsed().as_secs_f64());

    // The old leader may still think it leads, but cannot commit.
    let out = c.create_namespace_via(leader, "minority-write");
    assert!(!out.status.success(), "the minority committed: {}", String::from_utf8_lossy(&out.stdout));
    let said = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(said.contains("not committed") || said.contains("not the leader"), "{said}");
    for id in minority {
        let seen = c.namespaces_on(id).unwrap_or_default();
        assert!(!seen.iter().any(|n| n.ends_with("-write")), "node {id} in the minority applied {seen:?}");
    }

    // Healed, every node converges on the majority's history; the minority's write is gone.
    faults.heal();
    let all: Vec<u64> = (1..=5).collect();
    for id in &all {
        c.wait_applied(*id, &["before".to_string(), "majority-write".to_string()], READY);
        let seen = c.namespaces_on(*id).unwrap_or_default();
        assert!(!seen.contains(&"minority-write".to_string()), "node {id} applied the minority's write");
    }
    c.wait_ready(&all, READY);
    assert!(c.create_namespace("after-heal"));
}
