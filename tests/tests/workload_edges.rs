//! The edges of the namespace service on a real 3-node cluster (separate
//! processes, RA-TLS, INSECURE simulated TEEs): an expired certificate,
//! replayed evidence, the CRL and CA bundle from two nodes, a secret sealed
//! in advance to a workload's own key, configs kept in a file:// and
//! referencing each other, a short `guardctl bench` run, and a workload
//! failing over to the next node.

use std::path::Path;
use std::time::{Duration, Instant};

use guardian_node::attest::sim::{SimMeasurements, SimTee};
use guardian_node::keys::sealing;
use guardian_node::workload::challenge::binding;
use guardian_proto::v1::*;
use guardian_tests::cluster::attacker::workload_client;
use guardian_tests::cluster::{eventually, TestCluster, Tuning};
use guardian_tests::workload::{app_policy, ok, refused, workload_config, APP};

const READY: Duration = Duration::from_secs(90);
/// The cluster's simulated workload TEE (its seed is in cluster.json).
fn workload_tee(c: &TestCluster) -> SimTee {
    let cluster = c.cluster_json().expect("cluster.json");
    let seed = hex::decode(cluster["insecure_workload_seed"].as_str().expect("seed")).expect("hex");
    SimTee::new(&seed.try_into().expect("32 bytes"), SimMeasurements::from_label(APP))
}

fn sim_evidence(tee: &SimTee, nonce: &[u8], spki: &[u8]) -> Evidence {
    Evidence { kind: EvidenceKind::Sim as i32, evidence: tee.evidence(&binding(nonce, spki)), ..Default::default() }
}

async fn challenge(w: &mut workload_service_client::WorkloadServiceClient<tonic::transport::Channel>) -> Vec<u8> {
    w.get_challenge(GetChallengeRequest { namespace: "demo".into() }).await.expect("challenge").into_inner().nonce
}

fn assert_denied<T: std::fmt::Debug>(r: Result<T, tonic::Status>, what: &str) {
    match r {
        Err(s) => assert_eq!(s.code(), tonic::Code::PermissionDenied, "{what}: {}", s.message()),
        Ok(v) => panic!("{what} was accepted: {v:?}"),
    }
}

#[test]
fn expiry_replay_crls_sealed_secrets_file_configs_bench_and_failover() {
    let mut c = TestCluster::start(3, Tuning::default());
    c.wait_ready(&[1, 2, 3], READY);
    c.wait_keys(1, READY);
    let dir = c.path().to_path_buf();
    let policy = app_policy(&dir, "policy.toml", &["pvc/", "sealed/"], &["app", "disk"]);
    ok(c.guardctl(&["namespace", "create", "demo", "--policy", policy.to_str().unwrap(), "--json"]));
    let id = dir.join("workload");
    let id = id.to_str().unwrap();
    eventually(READY, || {
        let o = c.guardctl(&["workload", "attest", "--namespace", "demo", "--out", id, "--json"]);
        o.status.success().then_some(()).ok_or_else(|| String::from_utf8_lossy(&o.stderr).to_string())
    });
    let rt = tokio::runtime::Runtime::new().unwrap();
    let addr = |n: u64| c.node_field(n, "workload_addr").expect("workload address");

    // An expired certificate: a short lifetime asked for, then one request after it.
    let short = dir.join("short-lived");
    let short = short.to_str().unwrap();
    let issued = Instant::now();
    ok(c.guardctl(&["workload", "attest", "--namespace", "demo", "--out", short, "--validity", "2", "--json"]));
    ok(c.guardctl(&["workload", "key", "--namespace", "demo", "pvc/db", "--identity", short, "--json"]));
    std::thread::sleep(Duration::from_secs(3).saturating_sub(issued.elapsed()) + Duration::from_secs(1));
    refused(c.guardctl(&["workload", "key", "--namespace", "demo", "pvc/db", "--identity", short]), "expired");

    // Replayed evidence: the same Attest twice, at the same node and at another; the same
    // fresh-evidence GetKey twice at one node.
    let tee = workload_tee(&c);
    let replayed_cert = rt.block_on(async {
        let mut w1 = workload_client(&addr(1), None).await;
        let mut w2 = workload_client(&addr(2), None).await;
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let spki = rcgen::PublicKeyData::subject_public_key_info(&key);
        let nonce = challenge(&mut w1).await;
        let attest = AttestRequest {
            namespace: "demo".into(),
            evidence: Some(sim_evidence(&tee, &nonce, &spki)),
            nonce,
            subject: Some(attest_request::Subject::PublicKeySpkiDer(spki)),
            requested_validity_secs: 0,
        };
        let issued = w1.attest(attest.clone()).await.expect("the first Attest is answered").into_inner();
        assert_denied(w1.attest(attest.clone()).await, "the same Attest again");
        assert_denied(w2.attest(attest).await, "the same Attest at another node");

        let (sk, pk) = sealing::generate(&mut rand::thread_rng());
        let spki = sealing::x25519_spki(&pk);
        let nonce = challenge(&mut w1).await;
        let get = GetKeyRequest {
            namespace: "demo".into(),
            key_path: "pvc/db".into(),
            fresh_evidence: Some(FreshEvidence {
                evidence: Some(sim_evidence(&tee, &nonce, &spki)),
                nonce,
                public_key_spki_der: spki,
            }),
            ..Default::default()
        };
        let first = w1.get_key(get.clone()).await.expect("the first GetKey is answered").into_inner();
        let Some(get_key_response::Secret::EncryptedSecret(sealed)) = first.secret else {
            panic!("a fresh-evidence key must come sealed")
        };
        sealing::open(&sk, &sealing::key_context("demo", "pvc/db", first.version), &sealed).expect("opens");
        assert_denied(w1.get_key(get).await, "the same fresh-evidence GetKey again");
        issued.certificate_der
    });

    // The CRL and CA bundle: the same bytes from two nodes, before and after a revocation.
    let crl = |n: u64| {
        rt.block_on(async {
            let mut w = workload_client(&addr(n), None).await;
            w.get_crl(GetCrlRequest { namespace: "demo".into(), version: 0 }).await.expect("crl").into_inner().crl_der
        })
    };
    let bundle = |n: u64| {
        rt.block_on(async {
            let mut w = workload_client(&addr(n), None).await;
            w.get_ca_bundle(GetCaBundleRequest { namespace: "demo".into() }).await.expect("bundle").into_inner()
        })
    };
    assert_eq!(bundle(1), bundle(3));
    assert!(!bundle(1).namespace_cas.is_empty());
    assert_eq!(crl(1), crl(3));
    // (revoke the certificate the replay test got, whose holder is gone)
    let parsed = guardian_node::ca::leaf::parse_leaf(&replayed_cert).unwrap();
    let serial = hex::encode(parsed.serial16().unwrap());
    ok(c.guardctl(&["cert", "revoke", "demo", &serial, "--json"]));
    let after = eventually(READY, || {
        let (a, b) = (crl(1), crl(3));
        (a == b && listed(&a, &dir, &serial)).then_some(a).ok_or_else(|| "revocation not in both CRLs yet".to_string())
    });
    assert!(!listed(&crl(2), &dir, "0102030405060708090a0b0c0d0e0f10"), "an unknown serial is not listed");
    assert!(!after.is_empty());

    // A secret sealed in advance to a workload's own X25519 key, delivered in a config as is.
    let (sk, pk) = sealing::generate(&mut rand::thread_rng());
    let value = dir.join("tls-key");
    std::fs::write(&value, "-----BEGIN PRIVATE KEY----- (test) -----END PRIVATE KEY-----").unwrap();
    let value = value.to_str().unwrap();
    refused(c.guardctl(&["secret", "put", "demo", "sealed/tls-key", "--from-file", value]), "--recipient");
    ok(c.guardctl(&[
        "secret",
        "put",
        "demo",
        "sealed/tls-key",
        "--from-file",
        value,
        "--recipient",
        &hex::encode(pk),
        "--json",
    ]));
    let cfg = dir.join("app.toml");
    std::fs::write(&cfg, "tls_key = \"${guardian:sealed/tls-key}\"\n").unwrap();
    ok(c.guardctl(&["config", "put", "demo", "app", cfg.to_str().unwrap(), "--json"]));
    let delivered = rt.block_on(async {
        let mut w = workload_client(&addr(2), Some(Path::new(id))).await;
        let req = GetConfigRequest {
            namespace: "demo".into(),
            selector: Some(get_config_request::Selector::Name("app".into())),
            ..Default::default()
        };
        w.get_config(req).await.expect("config").into_inner()
    });
    let Some(resolved_reference::Value::EncryptedSecret(sealed)) = &delivered.references[0].value else {
        panic!("a sealed/ reference must be delivered sealed: {:?}", delivered.references)
    };
    let opened = sealing::open(&sk, &sealing::workload_sealed_context("demo", "sealed/tls-key"), sealed).unwrap();
    assert_eq!(opened.as_slice(), std::fs::read(value).unwrap().as_slice());

    // A config kept in a file under the node's workload_config_dirs, checked against its digest.
    let file = dir.join("configs").join("disk.toml");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, "size = \"10Gi\"\n").unwrap();
    let uri = format!("file://{}", file.display());
    ok(c.guardctl(&["config", "put", "demo", "disk", file.to_str().unwrap(), "--backend-uri", &uri, "--json"]));
    let get_disk = |n: &str| workload_config(&c, "demo", "disk", id, n);
    assert_eq!(ok(get_disk("3"))["content"], "size = \"10Gi\"\n");
    // A reference to another config, resolved on delivery.
    std::fs::write(&cfg, "tls_key = \"${guardian:sealed/tls-key}\"\ndisk = \"${guardian:config/disk}\"\n").unwrap();
    ok(c.guardctl(&["config", "put", "demo", "app", cfg.to_str().unwrap(), "--json"]));
    let app = ok(workload_config(&c, "demo", "app", id, "1"));
    assert_eq!(app["references"][1]["reference"], "guardian:config/disk");
    assert_eq!(app["references"][1]["value"]["config_bytes"], 14);
    std::fs::write(&file, "size = \"1Ti\"\n").unwrap();
    refused(get_disk("3"), "not the one recorded");

    // The bench command, briefly: every load completes operations and none fails.
    let out = ok(c.guardctl(&[
        "bench",
        "--node",
        "2",
        "--duration",
        "1",
        "--warmup",
        "0",
        "--concurrency",
        "4",
        "--connections",
        "2",
        "--json",
    ]));
    let loads = out["loads"].as_array().expect("loads");
    let names: Vec<&str> = loads.iter().filter_map(|l| l["load"].as_str()).collect();
    assert_eq!(names, ["baseline", "key-mtls", "key-fresh", "attest", "kbs-handshake", "kbs-bearer"]);
    for l in loads {
        assert!(l["ops"].as_u64() > Some(0) && l["errors"] == 0, "{l}");
    }

    // A workload given several endpoints fails over: with node 1 down, the next one serves.
    let key = |c: &TestCluster, extra: &[&str]| {
        let mut args = vec!["workload", "key", "--namespace", "demo", "pvc/db", "--identity", id, "--json"];
        args.extend_from_slice(extra);
        ok(c.guardctl(&args))
    };
    let before = key(&c, &["--node", "1"]);
    c.kill9(1);
    let after = key(&c, &[]);
    assert_ne!(after["node"], 1);
    assert_eq!(after["check"], before["check"]);
}

/// Whether `serial` (hex) is listed in the DER CRL (read by openssl).
fn listed(crl_der: &[u8], dir: &Path, serial: &str) -> bool {
    let f = dir.join("crl.der");
    std::fs::write(&f, crl_der).unwrap();
    let o = std::process::Command::new("openssl")
        .args(["crl", "-inform", "DER", "-noout", "-text", "-in"])
        .arg(&f)
        .output()
        .expect("openssl");
    assert!(o.status.success(), "openssl crl: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).to_uppercase().contains(&format!("SERIAL NUMBER: {}", serial.to_uppercase()))
}
