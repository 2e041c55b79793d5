//! The threshold root keys on real 5-node clusters (separate processes,
//! RA-TLS, INSECURE simulated TEEs): the DKG at bootstrap, namespace secrets
//! by threshold PRF, FROST-signed CA certificates checked by `openssl
//! verify`, and Byzantine nodes that are named and outvoted.

use std::process::Command;
use std::time::{Duration, Instant};

use guardian_tests::cluster::{eventually, role_of, TestCluster, Tuning};
use serde_json::Value;

const READY: Duration = Duration::from_secs(90);

fn ids(v: &Value) -> Vec<u64> {
    v.as_array().map(|a| a.iter().filter_map(Value::as_u64).collect()).unwrap_or_default()
}

/// Fetch the root and namespace CA certificates once the namespace CA is issued.
fn fetch_ca(c: &TestCluster, namespace: &str, out: &std::path::Path) {
    eventually(READY, || {
        let o = c.guardctl(&["ca", "--namespace", namespace, "--out", out.to_str().unwrap()]);
        o.status
            .success()
            .then_some(())
            .ok_or_else(|| format!("no CA certificates: {}", String::from_utf8_lossy(&o.stderr)))
    });
}

fn openssl_verify(ca: &std::path::Path, cert: &std::path::Path) -> String {
    let o = Command::new("openssl")
        .args(["verify", "-x509_strict", "-CAfile"])
        .arg(ca)
        .arg(cert)
        .output()
        .expect("openssl must be installed (CI installs it)");
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn five_nodes_generate_keys_without_a_dealer_and_derive_the_same_secrets() {
    let c = TestCluster::start(5, Tuning::default());
    c.wait_ready(&[1, 2, 3, 4, 5], READY);
    let s = c.wait_keys(1, READY);
    assert_eq!(s["keys"]["holders"], 5, "{s}");
    assert_eq!(s["keys"]["threshold"], 3, "{s}");
    assert!(c.create_namespace("team-a"));
    assert!(c.create_namespace("team-b"));
    for id in 1..=5 {
        c.wait_applied(id, &["team-a".to_string(), "team-b".to_string()], READY);
    }
    // Every node derives the same S(team-a, 1) from 3 verified shares; team-b differs.
    let a: Vec<Value> = (1..=5).map(|id| c.probe(id, "team-a", true, false)).collect();
    for p in &a {
        assert_eq!(p["derive_error"], "", "{p}");
        assert_eq!(ids(&p["contributors"]).len(), 3, "{p}");
        assert_eq!(p["secret_check"], a[0]["secret_check"], "nodes disagree: {a:?}");
    }
    let b = c.probe(3, "team-b", true, false);
    assert_ne!(b["secret_check"], a[0]["secret_check"]);
    // A cached secret is the same secret.
    assert_eq!(c.probe(2, "team-a", false, false)["secret_check"], a[0]["secret_check"]);
    // An unknown namespace is refused, not derived.
    let unknown = c.probe(1, "nope", true, false);
    assert!(unknown["derive_error"].as_str().unwrap_or("").contains("does not exist"), "{unknown}");

    // The root CA (self-signed by the FROST group key) and team-a's CA verify with openssl.
    let out = c.path().join("ca");
    fetch_ca(&c, "team-a", &out);
    let root = out.join("root-ca.pem");
    let team = out.join("team-a-ca.pem");
    assert!(openssl_verify(&root, &root).contains("OK"), "{}", openssl_verify(&root, &root));
    let verdict = openssl_verify(&root, &team);
    assert!(verdict.contains(": OK"), "{verdict}");
    // team-b's CA is not team-a's.
    fetch_ca(&c, "team-b", &out);
    assert_ne!(std::fs::read(&team).unwrap(), std::fs::read(out.join("team-b-ca.pem")).unwrap());
}

#[test]
fn byzantine_nodes_are_named_and_outvoted_and_too_few_honest_nodes_fail_clearly() {
    let mut c = TestCluster::start(5, Tuning::default());
    c.wait_ready(&[1, 2, 3, 4, 5], READY);
    c.wait_keys(1, READY);
    assert!(c.create_namespace("team-a"));
    let honest = c.probe(1, "team-a", true, true);
    assert_eq!(honest["derive_error"], "", "{honest}");
    assert_eq!(honest["sign_error"], "", "{honest}");

    // Node 2 lies in BLS evaluation shares, node 3 in FROST signature shares, node 5 is down.
    for (id, fault) in [(2, "corrupt-bls-shares"), (3, "corrupt-frost-shares")] {
        c.kill9(id);
        c.set_byzantine(id, &[fault]);
        c.start_node(id);
    }
    c.kill9(5);
    c.wait_ready(&[1, 2, 3, 4], READY);
    c.wait_applied(2, &["team-a".to_string()], READY);

    // Derivation succeeds with the honest shares and names node 2. Node 3 is
    // named whenever it is among the t signers the coordinator picks.
    let mut named_frost = false;
    for _ in 0..10 {
        let p = c.probe(1, "team-a", true, true);
        assert_eq!(p["derive_error"], "", "{p}");
        assert_eq!(p["secret_check"], honest["secret_check"], "a wrong secret: {p}");
        assert!(ids(&p["culprits"]).iter().all(|c| *c == 2), "{p}");
        assert!(!ids(&p["contributors"]).contains(&2), "{p}");
        assert_eq!(p["sign_error"], "", "{p}");
        assert!(!ids(&p["signers"]).contains(&3), "{p}");
        if ids(&p["sign_culprits"]) == vec![3] {
            named_frost = true;
            break;
        }
    }
    assert!(named_frost, "node 3's invalid FROST shares were never caught");
    // Node 1 reports both liars (a share not needed for the result is still checked).
    eventually(Duration::from_secs(10), || {
        let s = c.status();
        let row = s["nodes"].as_array().unwrap().iter().find(|n| n["id"] == 1).cloned().unwrap();
        (ids(&row["suspects"]) == vec![2, 3]).then_some(()).ok_or(format!("node 1 should report nodes 2 and 3: {s}"))
    });

    // ... and counts them in its metrics.
    let (code, metrics) = c.http_get(1, "/metrics").expect("metrics");
    assert_eq!(code, 200);
    for peer in [2, 3] {
        let line = format!("guardian_threshold_invalid_shares_total{{peer=\"{peer}\"}} ");
        let count = metrics.lines().find_map(|l| l.strip_prefix(line.as_str())).unwrap_or("0");
        assert!(count.parse::<u64>().unwrap_or(0) > 0, "{metrics}");
    }
    assert!(metrics.contains("guardian_key_epoch 1"), "{metrics}");

    // With node 4 down too, fewer than t honest shares remain: a clear error, no answer.
    c.kill9(4);
    let p = c.probe(1, "team-a", true, true);
    let derive = p["derive_error"].as_str().unwrap_or("");
    assert!(derive.contains("only 2 usable shares of the 3 needed"), "{p}");
    assert!(derive.contains("invalid from nodes [2]"), "{p}");
    assert_eq!(p["secret_check"], "", "no secret on failure: {p}");
    let sign = p["sign_error"].as_str().unwrap_or("");
    assert!(sign.contains("of the 3 needed"), "{p}");
}

/// Reads a stopped node's sealed store (the INSECURE dev sealer's key is in its directory).
fn node_store(c: &TestCluster, id: u64) -> (guardian_node::store::StateView, guardian_node::store::SecretStore) {
    struct ReadOnly;
    impl guardian_node::state::Applier for ReadOnly {
        fn apply(
            &self,
            _: &mut guardian_node::state::ClusterState,
            _: &guardian_node::state::Command,
        ) -> guardian_node::state::Response {
            guardian_node::state::Response::Rejected { reason: "read only".into() }
        }
    }
    let dir = c.path().join(format!("node-{id}"));
    let sealer = std::sync::Arc::new(guardian_node::store::DevFileSealer::open_insecure(&dir).unwrap());
    let (_, sm, secrets) = guardian_node::store::open(&dir, sealer, std::sync::Arc::new(ReadOnly)).unwrap();
    (sm.view(), secrets)
}

/// A 5-node cluster with its keys and namespace team-a; returns S(team-a)'s check value.
fn keyed_cluster() -> (TestCluster, Value) {
    let c = TestCluster::start(5, Tuning::default());
    c.wait_ready(&[1, 2, 3, 4, 5], READY);
    c.wait_keys(1, READY);
    assert!(c.create_namespace("team-a"));
    let before = c.probe(1, "team-a", true, false)["secret_check"].clone();
    (c, before)
}

/// A new node asks to join, is approved, and becomes a voter; returns its id.
fn join_one(c: &mut TestCluster) -> u64 {
    let joiner = c.add_node();
    eventually(READY, || (c.pending_joins() == vec![joiner]).then_some(()).ok_or("join request not listed".into()));
    let o = c.guardctl(&["node", "approve", &joiner.to_string()]);
    assert!(o.status.success(), "approve: {}", String::from_utf8_lossy(&o.stderr));
    eventually(READY, || {
        let s = c.status();
        (role_of(&s, joiner) == "voter").then_some(joiner).ok_or(format!("node {joiner} not promoted: {s}"))
    })
}

#[test]
fn resharing_on_join_and_revoke_keeps_the_keys_and_makes_old_shares_useless() {
    use guardian_node::daemon::keys::ceremony::read_shares;
    use guardian_node::threshold::bls;

    let (mut c, before) = keyed_cluster();
    let out = c.path().join("ca-before");
    fetch_ca(&c, "team-a", &out);

    // A new node joins: once it is a voter the keys are reshared to six holders.
    let joiner = join_one(&mut c);
    let s = c.wait_keys(2, READY);
    assert_eq!(s["keys"]["holders"], 6, "{s}");
    // The new node's share counts: with nodes 1-3 down, 4, 5 and the joiner give the same secret.
    for id in [1, 2, 3] {
        c.kill9(id);
    }
    let p = c.probe(joiner, "team-a", true, false);
    assert_eq!(ids(&p["contributors"]), vec![4, 5, joiner], "{p}");
    assert_eq!(p["secret_check"], before, "{p}");
    for id in [1, 2, 3] {
        c.start_node(id);
    }
    c.wait_members(&[1, 2, 3, 4, 5, joiner], 6, READY);

    // Node 5 is revoked (while down, so it keeps its share of epoch 2): reshared to five holders.
    c.kill9(5);
    let o = c.guardctl(&["node", "revoke", "5", "--reason", "test"]);
    assert!(o.status.success(), "revoke: {}", String::from_utf8_lossy(&o.stderr));
    let s = c.wait_keys(3, READY);
    assert_eq!(s["keys"]["holders"], 5, "{s}");
    for id in [1, 4, joiner] {
        let p = c.probe(id, "team-a", true, true);
        assert_eq!(p["secret_check"], before, "namespace secret changed: {p}");
        assert_eq!(p["sign_error"], "", "{p}");
    }
    // The root CA and team-a's CA are the same certificates.
    let after = c.path().join("ca-after");
    fetch_ca(&c, "team-a", &after);
    for f in ["root-ca.pem", "team-a-ca.pem"] {
        assert_eq!(std::fs::read(out.join(f)).unwrap(), std::fs::read(after.join(f)).unwrap(), "{f} changed");
    }

    // On disk: the revoked node's old share with two current shares gives no result.
    for id in [1, 2, 3, 4, joiner] {
        c.kill9(id);
    }
    let (view, _) = node_store(&c, 1);
    let state = view.state();
    let current = state.keys.current.clone().expect("keys");
    assert_eq!(current.epoch, 3);
    let public = current.bls_public().unwrap();
    let label = bls::namespace_label(&state_cluster_id(&c), "team-a", 1);
    let share = |id: u64, epoch: u64| {
        let (_, secrets) = node_store(&c, id);
        let s = read_shares(&secrets, epoch).unwrap().unwrap_or_else(|| panic!("node {id} has no epoch {epoch} share"));
        bls::sign_share(&s.bls, &label).to_vec()
    };
    let old5 = share(5, 2);
    let mixed = [(1u16, share(1, 3)), (4, share(4, 3)), (5, old5)].into_iter().collect();
    match bls::combine_fast(&public, &mixed, &label) {
        Err(bls::BlsError::NotEnoughShares { culprits, .. }) => assert_eq!(culprits, vec![5]),
        other => panic!("an old share must not combine: {:?}", other.map(|c| c.culprits)),
    }
    let current_shares =
        [(1u16, share(1, 3)), (4, share(4, 3)), (joiner as u16, share(joiner, 3))].into_iter().collect();
    let combined = bls::combine_fast(&public, &current_shares, &label).unwrap();
    let secret = bls::namespace_secret(&combined.signature, &label);
    let check = guardian_node::daemon::keys::derive::check_value(&secret);
    assert_eq!(Value::String(hex::encode(check)), before);
}

fn state_cluster_id(c: &TestCluster) -> [u8; 16] {
    let genesis = std::fs::read_to_string(c.path().join("genesis.toml")).unwrap();
    guardian_node::state::genesis::Genesis::parse(&genesis).unwrap().cluster_id
}

#[test]
fn a_resharing_interrupted_by_crashes_resumes_and_the_old_keys_serve_meanwhile() {
    let (mut c, before) = keyed_cluster();

    // Node 2 is down when the joiner is promoted: the resharing starts and cannot finish.
    c.kill9(2);
    let joiner = join_one(&mut c);
    eventually(READY, || {
        (c.status()["keys"]["ceremony_running"] == true).then_some(()).ok_or("no resharing started".into())
    });
    // The others deal and exchange shares; then two of them crash and restart mid-ceremony.
    std::thread::sleep(Duration::from_secs(2));
    for id in [3, 4] {
        c.kill9(id);
        c.start_node(id);
    }
    // Meanwhile the old epoch still serves.
    let s = c.status();
    assert_eq!(s["keys"]["epoch"], 1, "{s}");
    let p = c.probe(3, "team-a", true, false);
    assert_eq!(p["secret_check"], before, "{p}");

    // Node 2 comes back: the ceremony completes (resumed, or restarted after its timeout).
    c.start_node(2);
    let t0 = Instant::now();
    let s = c.wait_keys(2, Duration::from_secs(180));
    assert_eq!(s["keys"]["holders"], 6, "{s}");
    let aborted = (1..=5).any(|id| c.log_of(id).contains("timed out; aborting"));
    println!(
        "resharing: completed {:.1} s after the missing dealer returned ({})",
        t0.elapsed().as_secs_f64(),
        if aborted { "after a timeout and a new attempt" } else { "resumed in the same session" }
    );
    for id in [2, 3, joiner] {
        let p = c.probe(id, "team-a", true, true);
        assert_eq!(p["secret_check"], before, "{p}");
        assert_eq!(p["sign_error"], "", "{p}");
    }
}

#[test]
fn a_cheating_dealer_is_disqualified_and_the_dkg_completes_with_the_honest_nodes() {
    let c = TestCluster::start_byzantine(5, Tuning::default(), &[(4, &["corrupt-dealing"])]);
    c.wait_ready(&[1, 2, 3, 4, 5], READY);
    let s = c.wait_keys(1, READY);
    // Node 4 dealt node 1 a wrong share; node 1's complaint proved it (the share was signed).
    assert_eq!(s["keys"]["holders"], 4, "{s}");
    let alarms = s["alarms"].to_string();
    assert!(alarms.contains("disqualified from holding key shares") && alarms.contains("\"node\":4"), "{s}");
    assert!(c.create_namespace("team-a"));
    let checks: Vec<Value> = [1, 2, 3, 5].iter().map(|id| c.probe(*id, "team-a", true, true)).collect();
    for p in &checks {
        assert_eq!(p["derive_error"], "", "{p}");
        assert_eq!(p["sign_error"], "", "{p}");
        assert!(!ids(&p["contributors"]).contains(&4), "{p}");
        assert_eq!(p["secret_check"], checks[0]["secret_check"], "{checks:?}");
    }
}
