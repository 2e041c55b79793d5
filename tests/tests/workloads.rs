//! The namespace service on a real 5-node cluster (separate processes,
//! RA-TLS, INSECURE simulated TEEs), driven through `guardctl` as an admin
//! and as a workload would: attest → certificate → keys and configs from
//! every node, fresh evidence, denials, rotation, retirement and revocation.

use std::time::Duration;

use guardian_node::attest::sim::SimMeasurements;
use guardian_tests::cluster::{eventually, TestCluster, Tuning};
use guardian_tests::workload::{app_policy, json, ok, refused, workload_config, APP};

const READY: Duration = Duration::from_secs(90);

#[test]
fn an_attested_workload_gets_keys_and_configs_from_every_node_until_it_is_revoked() {
    let c = TestCluster::start(5, Tuning::default());
    c.wait_ready(&[1, 2, 3, 4, 5], READY);
    c.wait_keys(1, READY);
    let dir = c.path().to_path_buf();
    let p = app_policy(&dir, "policy.toml", &["pvc/"], &["app"]);
    let p = p.to_str().unwrap();
    ok(c.guardctl(&["namespace", "create", "demo", "--policy", p, "--json"]));
    ok(c.guardctl(&["namespace", "create", "other", "--policy", p, "--json"]));
    let id = dir.join("workload");
    let id = id.to_str().unwrap();

    // Attest once the namespace CA certificate is signed by the cluster.
    let attested = eventually(READY, || {
        let o = c.guardctl(&["workload", "attest", "--namespace", "demo", "--out", id, "--json"]);
        o.status.success().then(|| json(&o)).ok_or_else(|| String::from_utf8_lossy(&o.stderr).to_string())
    });
    assert_eq!(attested["rule"], "app");

    // The same key from every node, by mTLS; and by fresh evidence (sealed to an X25519 key).
    let key = |node: &str, extra: &[&str]| {
        let mut args = vec!["workload", "key", "--namespace", "demo", "pvc/db", "--node", node, "--json"];
        args.extend_from_slice(extra);
        c.guardctl(&args)
    };
    let first = ok(key("1", &["--identity", id]));
    assert_eq!(first["version"], 1);
    for n in ["2", "3", "4", "5"] {
        assert_eq!(ok(key(n, &["--identity", id]))["check"], first["check"], "node {n}");
    }
    assert_eq!(ok(key("3", &["--fresh"]))["check"], first["check"]);

    // Denials: a measurement the policy does not admit, a certificate of another namespace,
    // a key the grants do not cover.
    refused(
        c.guardctl(&["workload", "attest", "--namespace", "demo", "--out", id, "--label", "evil"]),
        "does not match",
    );
    refused(
        c.guardctl(&["workload", "key", "--namespace", "other", "pvc/db", "--identity", id]),
        "not issued by namespace other's CA",
    );
    refused(c.guardctl(&["workload", "key", "--namespace", "demo", "secret/x", "--identity", id]), "not granted key");

    // A config with its references resolved on delivery.
    let cfg = dir.join("app.toml");
    std::fs::write(&cfg, "volume = \"${guardian:pvc/db}\"\n").unwrap();
    ok(c.guardctl(&["config", "put", "demo", "app", cfg.to_str().unwrap(), "--json"]));
    let got = ok(workload_config(&c, "demo", "app", id, "4"));
    assert_eq!(got["references"][0]["reference"], "guardian:pvc/db");
    assert_eq!(got["references"][0]["value"]["secret_bytes"], 32);

    // Rotation: version 2 is a new key, version 1 is still served until retired.
    ok(c.guardctl(&["key", "rotate", "demo", "--json"]));
    let v2 = eventually(READY, || {
        let o = key("2", &["--identity", id]);
        let v = json(&o);
        (v["version"] == 2).then_some(v).ok_or_else(|| String::from_utf8_lossy(&o.stderr).to_string())
    });
    assert_ne!(v2["check"], first["check"]);
    assert_eq!(ok(key("2", &["--identity", id, "--version", "1"]))["check"], first["check"]);
    ok(c.guardctl(&["key", "retire", "demo", "--version", "1", "--json"]));
    refused(key("2", &["--identity", id, "--version", "1"]), "retired");

    // Revoking the certificate refuses its key requests from the next entry on, on every node.
    let certs = ok(c.guardctl(&["cert", "list", "demo", "--json"]));
    let serial = certs["certificates"][0]["serial"].as_str().unwrap().to_string();
    ok(c.guardctl(&["cert", "revoke", "demo", &serial, "--json"]));
    for n in ["1", "5"] {
        refused(key(n, &["--identity", id]), "revoked by an admin");
    }
    assert_eq!(ok(c.guardctl(&["cert", "list", "demo", "--json"]))["certificates"][0]["revoked"], true);

    // Revoking the measurement revokes every certificate issued to it and refuses new ones.
    let fresh_id = dir.join("workload-2");
    let fresh_id = fresh_id.to_str().unwrap();
    // (after the rotation, once the cluster has signed the version 2 namespace CA)
    eventually(READY, || {
        let o = c.guardctl(&["workload", "attest", "--namespace", "demo", "--out", fresh_id, "--json"]);
        o.status.success().then_some(()).ok_or_else(|| String::from_utf8_lossy(&o.stderr).to_string())
    });
    assert_eq!(ok(key("1", &["--identity", fresh_id]))["version"], 2);
    let rtmr2 = hex::encode(SimMeasurements::from_label(APP).rtmr[2]);
    ok(c.guardctl(&[
        "measurement",
        "revoke",
        "demo",
        "--register",
        "rtmr2",
        "--value",
        &rtmr2,
        "--reason",
        "CVE",
        "--json",
    ]));
    refused(key("1", &["--identity", fresh_id]), "is revoked");
    refused(c.guardctl(&["workload", "attest", "--namespace", "demo", "--out", fresh_id]), "is revoked");
}
