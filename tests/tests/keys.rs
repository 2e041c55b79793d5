//! The threshold root keys on real 5-node clusters (separate processes,
//! RA-TLS, INSECURE simulated TEEs): the DKG at bootstrap, namespace secrets
//! by threshold PRF, FROST-signed CA certificates checked by `openssl
//! verify`, and Byzantine nodes that are named and outvoted.

use std::process::Command;
use std::time::{Duration, Instant};

use guardian_tests::cluster::{TestCluster, Tuning};
use serde_json::Value;

const READY: Duration = Duration::from_secs(90);

fn ids(v: &Value) -> Vec<u64> {
    v.as_array().map(|a| a.iter().filter_map(Value::as_u64).collect()).unwrap_or_default()
}

/// Fetch the root and namespace CA certificates once the namespace CA is issued.
fn fetch_ca(c: &TestCluster, namespace: &str, out: &std::path::Path) {
    let deadline = Instant::now() + READY;
    loop {
        let o = c.guardctl(&["ca", "--namespace", namespace, "--out", out.to_str().unwrap()]);
        if o.status.success() {
            return;
        }
        assert!(Instant::now() < deadline, "no CA certificates: {}", String::from_utf8_lossy(&o.stderr));
        std::thread::sleep(Duration::from_millis(300));
    }
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
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = c.status();
        let row = s["nodes"].as_array().unwrap().iter().find(|n| n["id"] == 1).cloned().unwrap();
        if ids(&row["suspects"]) == vec![2, 3] {
            break;
        }
        assert!(Instant::now() < deadline, "node 1 should report nodes 2 and 3: {s}");
        std::thread::sleep(Duration::from_millis(300));
    }

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
