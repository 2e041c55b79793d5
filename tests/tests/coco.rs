//! The CoCo front ends on a running 3-of-5 cluster (separate processes,
//! HTTPS, INSECURE simulated TEEs and CoCo sample evidence):
//! - the requests a real Trustee KBS sent to its Vault backend, replayed
//!   against the Vault KV v1 front end, answered as Vault would;
//! - the requests the real kbs-client sent to the real KBS and to a prototype,
//!   replayed: the stateless answers match, the nonce-bound ones are refused;
//! - a protocol-level client (tests/src/kbs_client.rs, written from the
//!   protocol alone) through auth → attest → resource, decrypting the JWE,
//!   cookie and Bearer, EC and RSA keys, on several nodes;
//! - refusals: wrong nonce, replayed session, forged token, wrong namespace,
//!   denied measurement, unknown key, bad Vault tokens, malformed JSON;
//! - passport mode after the node that issued a token is killed.

use std::time::Duration;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use guardian_node::attest::sim::SimMeasurements;
use guardian_tests::cluster::{eventually, TestCluster, Tuning};
use guardian_tests::coco::{Https, Reply};
use guardian_tests::kbs_client::{self as kbs, TeeKey};
use guardian_tests::workload::ok;
use serde_json::{json, Value};

const READY: Duration = Duration::from_secs(120);
const CAPTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data/coco");

/// A namespace policy admitting CoCo sample evidence (label `coco-sample`) as rule `pod`.
fn sample_policy(dir: &std::path::Path, name: &str, keys: &[&str]) -> String {
    let m = SimMeasurements::from_label(guardian_node::kbs::SAMPLE_LABEL);
    let keys = keys.iter().map(|k| format!("{k:?}")).collect::<Vec<_>>().join(", ");
    let text = format!(
        "[workloads]\ntees = [\"sim\"]\naccepted_tcb_status = [\"Simulated\"]\n\n\
         [[workloads.tdx]]\nname = \"pod\"\nmrtd = \"{}\"\n\n[[grants]]\nrule = \"pod\"\nkeys = [{keys}]\n",
        hex::encode(m.mrtd)
    );
    let path = dir.join(name);
    std::fs::write(&path, text).expect("policy");
    path.to_str().expect("utf-8").to_string()
}

fn token(c: &TestCluster, ns: &str, access: &str) -> String {
    let out = c.path().join(format!("token-{ns}-{access}"));
    let o = c.guardctl(&[
        "token",
        "create",
        "--namespace",
        ns,
        "--mount",
        "secret",
        "--access",
        access,
        "--ttl",
        "1h",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "token create: {}", String::from_utf8_lossy(&o.stderr));
    std::fs::read_to_string(out).expect("token file")
}

/// A full RCAR at `addr` with `key`; returns the cookie header and the token.
async fn attest(h: &Https, addr: &str, key: &TeeKey) -> (String, String) {
    let r = h
        .send(
            addr,
            "POST",
            "/kbs/v0/auth",
            &[("content-type", "application/json")],
            kbs::auth_body("sample").to_string().as_bytes(),
        )
        .await;
    assert_eq!(r.status, 200, "auth: {r:?}");
    let nonce = r.json()["nonce"].as_str().expect("nonce").to_string();
    assert_eq!(STANDARD.decode(&nonce).expect("base64 nonce").len(), 32);
    assert_eq!(r.json()["extra-params"], "");
    let cookie = session_cookie(&r);
    let jwk = key.jwk();
    let body = kbs::attest_body(&nonce, &jwk, kbs::sample_evidence(&nonce, &jwk));
    let r = h
        .send(
            addr,
            "POST",
            "/kbs/v0/attest",
            &[("cookie", &cookie), ("content-type", "application/json")],
            body.to_string().as_bytes(),
        )
        .await;
    assert_eq!(r.status, 200, "attest: {}", String::from_utf8_lossy(&r.body));
    let token = r.json()["token"].as_str().expect("token").to_string();
    let claims = kbs::token_claims(&token).expect("claims");
    assert!(claims["exp"].as_u64().expect("exp") > claims["iat"].as_u64().expect("iat"));
    (cookie, token)
}

fn session_cookie(r: &Reply) -> String {
    let set = r.header("set-cookie").expect("Set-Cookie");
    let (pair, rest) = set.split_once(';').expect("cookie attributes");
    let id = pair.strip_prefix("kbs-session-id=").expect("kbs-session-id");
    assert_eq!(id.len(), 32, "32 hex digits");
    assert!(rest.contains("Expires="), "{set}");
    pair.to_string()
}

async fn resource(h: &Https, addr: &str, path: &str, auth: (&str, &str)) -> Reply {
    h.send(addr, "GET", &format!("/kbs/v0/resource/{path}"), &[auth], b"").await
}

fn open(r: &Reply, key: &TeeKey) -> Vec<u8> {
    assert_eq!(r.status, 200, "resource: {}", String::from_utf8_lossy(&r.body));
    kbs::decrypt(&r.json(), key).expect("the JWE opens with the TEE key")
}

fn vault_value(r: &Reply) -> Vec<u8> {
    assert_eq!(r.status, 200, "vault GET: {}", String::from_utf8_lossy(&r.body));
    let v = r.json();
    for field in ["request_id", "lease_id", "renewable", "lease_duration", "data", "auth", "wrap_info", "warnings"] {
        assert!(v.get(field).is_some(), "vault envelope lacks {field}: {v}");
    }
    v["data"]["data"].as_array().expect("bytes").iter().map(|b| b.as_u64().expect("byte") as u8).collect()
}

/// The shipped configurations in deploy/coco/ say what docs/coco.md says they do.
#[test]
fn deploy_files_point_at_the_guardian() {
    let deploy = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/coco");
    let read = |f: &str| -> toml::Value {
        toml::from_str(&std::fs::read_to_string(format!("{deploy}/{f}")).unwrap()).unwrap()
    };
    let kbs = read("trustee-kbs.toml");
    let plugin = &kbs["plugins"][0];
    assert_eq!((plugin["name"].as_str(), plugin["storage_backend_type"].as_str()), (Some("resource"), Some("Vault")));
    assert_eq!(plugin["verify_ssl"].as_bool(), Some(true));
    assert!(plugin["token"].as_str().unwrap().starts_with("gvt."));
    let initdata = read("initdata.toml");
    let aa: toml::Value = toml::from_str(initdata["data"]["aa.toml"].as_str().unwrap()).unwrap();
    let cdh: toml::Value = toml::from_str(initdata["data"]["cdh.toml"].as_str().unwrap()).unwrap();
    assert_eq!(aa["token_configs"]["kbs"]["url"], cdh["kbc"]["url"]);
    assert_eq!(cdh["kbc"]["name"].as_str(), Some("cc_kbc"));
}

#[test]
fn coco_front_ends_on_a_3_of_5_cluster() {
    let mut c = TestCluster::start(5, Tuning::default());
    c.wait_ready(&[1, 2, 3, 4, 5], READY);
    c.wait_keys(1, READY);
    let dir = c.path().to_path_buf();
    ok(c.guardctl(&[
        "namespace",
        "create",
        "default",
        "--policy",
        &sample_policy(&dir, "p.toml", &["key/", "pvc/"]),
        "--json",
    ]));
    ok(c.guardctl(&[
        "namespace",
        "create",
        "other",
        "--policy",
        &sample_policy(&dir, "o.toml", &["secret/"]),
        "--json",
    ]));
    let rw = token(&c, "default", "read-write");
    let read = token(&c, "default", "read");
    let other = token(&c, "other", "read-write");
    let addr = |n: u64| c.node_field(n, "coco_addr").expect("coco address");
    let (a1, a2, a3) = (addr(1), addr(2), addr(3));
    let h = Https::for_cluster(&dir);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let vault = |a: &str, method: &str, path: &str, token: &str, body: &[u8]| {
        let headers = [("x-vault-request", "true"), ("x-vault-token", token), ("accept", "*/*")];
        rt.block_on(h.send(a, method, path, &headers, body))
    };

    // 1. The Trustee KBS's Vault traffic, replayed with our token in place of its static one.
    // (what `vault kv put secret/default/key/pvc-preseeded data=...` sends; retried until the token reached node 1)
    eventually(READY, || {
        let r =
            vault(&a1, "POST", "/v1/secret/default/key/pvc-preseeded", &rw, br#"{"data":"preseeded-luks-passphrase"}"#);
        (r.status == 204).then_some(()).ok_or_else(|| format!("preseed: {r:?}"))
    });
    // Reads at another node see a write once that node applied it (within a heartbeat or two).
    let settled = |path: &str, value: &[u8]| {
        for a in [&a1, &a2, &a3] {
            eventually(READY, || {
                let r = vault(a, "GET", path, &rw, b"");
                let got = (r.status == 200).then(|| vault_value(&r));
                (got.as_deref() == Some(value)).then_some(()).ok_or_else(|| format!("{path} at {a}: {r:?}"))
            });
        }
    };
    settled("/v1/secret/default/key/pvc-preseeded", b"preseeded-luks-passphrase");
    let captured =
        std::fs::read_to_string(format!("{CAPTURES}/trustee-kbs-to-vault-kv1.requests.jsonl")).expect("capture");
    let mut written = Vec::new();
    for line in captured.lines() {
        let req: Value = serde_json::from_str(line).expect("jsonl");
        let (method, path) = (req["method"].as_str().unwrap(), req["path"].as_str().unwrap());
        let body = req["body"].as_str().unwrap().as_bytes();
        let r = vault(&a2, method, path, &rw, body);
        match (method, path) {
            ("POST", _) => {
                assert_eq!(r.status, 204, "{path}: {r:?}");
                let v: Value = serde_json::from_slice(body).unwrap();
                written = v["data"].as_array().unwrap().iter().map(|b| b.as_u64().unwrap() as u8).collect();
            }
            ("GET", "/v1/secret/default/key/pvc1") => assert_eq!(vault_value(&r), written),
            ("GET", "/v1/secret/default/key/pvc-preseeded") => {
                assert_eq!(vault_value(&r), b"preseeded-luks-passphrase")
            }
            ("GET", _) => {
                assert_eq!(r.status, 404, "{path}");
                assert_eq!(r.json(), json!({"errors": []}));
            }
            ("DELETE", _) => assert_eq!(r.status, 204, "{path}: {r:?}"),
            other => panic!("unexpected captured request {other:?}"),
        }
    }
    // Deleted: now missing on every node (once they applied the entry), as in Vault.
    eventually(READY, || match vault(&a3, "GET", "/v1/secret/default/key/pvc1", &read, b"").status {
        404 => Ok(()),
        s => Err(format!("pvc1 still answers {s} on node 3")),
    });
    // A volume key never stored is derived: the same on every node.
    let pvc = vault_value(&vault(&a1, "GET", "/v1/secret/default/pvc/data-0", &read, b""));
    assert_eq!(pvc.len(), 32);
    assert_eq!(vault_value(&vault(&a3, "GET", "/v1/secret/default/pvc/data-0", &read, b"")), pvc);
    // Bad tokens on the Vault API.
    let forged = format!("{}x", &read[..read.len() - 1]);
    for (token, path, method, why) in [
        ("", "/v1/secret/default/pvc/data-0", "GET", "no token"),
        ("vault-root", "/v1/secret/default/pvc/data-0", "GET", "not a guardian token"),
        (forged.as_str(), "/v1/secret/default/pvc/data-0", "GET", "forged"),
        (read.as_str(), "/v1/secret/default/key/x", "POST", "read-only"),
        (other.as_str(), "/v1/secret/default/pvc/data-0", "GET", "other namespace"),
        (read.as_str(), "/v1/kv/default/pvc/data-0", "GET", "other mount"),
    ] {
        let r = vault(&a1, method, path, token, br#"{"data":[1]}"#);
        assert_eq!(r.status, 403, "{why}: {r:?}");
        assert!(r.json()["errors"][0].as_str().unwrap().contains("permission denied"), "{why}");
    }
    // Expired and revoked tokens.
    let short = {
        let out = dir.join("token-short");
        let args = ["token", "create", "--namespace", "default", "--ttl", "2s", "--out", out.to_str().unwrap()];
        ok(c.guardctl(&args));
        std::fs::read_to_string(out).expect("token file")
    };
    std::thread::sleep(Duration::from_secs(3));
    let r = vault(&a1, "GET", "/v1/secret/default/pvc/data-0", &short, b"");
    assert!(r.status == 403 && r.json()["errors"][0].as_str().unwrap().contains("expired"), "{r:?}");
    let revoked = token(&c, "default", "read");
    assert_eq!(vault(&a1, "GET", "/v1/secret/default/pvc/data-0", &revoked, b"").status, 200);
    let id = revoked.split('.').nth(1).expect("token id");
    ok(c.guardctl(&["token", "revoke", id, "--json"]));
    eventually(READY, || {
        let r = vault(&a3, "GET", "/v1/secret/default/pvc/data-0", &revoked, b"");
        let why = r.json()["errors"][0].as_str().unwrap_or_default().to_string();
        (r.status == 403 && why.contains("revoked")).then_some(()).ok_or(why)
    });
    assert_eq!(vault(&a1, "POST", "/v1/secret/default/key/x", &rw, b"{").status, 400, "malformed JSON");
    assert_eq!(vault(&a1, "POST", "/v1/secret/default/key/x", &rw, br#"{"data":[300]}"#).status, 400);

    // 2. The real kbs-client's traffic to the real KBS, replayed.
    rt.block_on(async {
        let r = resource(&h, &a1, "default/key/pvc1", ("accept", "*/*")).await;
        assert_eq!((r.status, r.kbs_error().as_str()), (401, "TokenNotFound"));
        let auth = r#"{"version":"0.4.0","tee":"sample","extra-params":{"supported-hash-algorithms":["sha256","sha384","sha512","sm3"]}}"#;
        let r = h.send(&a1, "POST", "/kbs/v0/auth", &[("content-type", "application/json")], auth.as_bytes()).await;
        assert_eq!(r.status, 200);
        let cookie = session_cookie(&r);
        // The captured attestation answers another session's nonce: refused (wrong nonce).
        let http = std::fs::read_to_string(format!("{CAPTURES}/kbs-client-vs-trustee-kbs.http.txt")).expect("capture");
        let attest = http.lines().find(|l| l.starts_with("{\"init-data\"")).expect("captured attest body");
        let r = h.send(&a1, "POST", "/kbs/v0/attest", &[("cookie", &cookie)], attest.as_bytes()).await;
        assert_eq!((r.status, r.kbs_error().as_str()), (401, "AttestationFailed"), "{r:?}");
        // The session is spent by that attempt: a second attestation on it is refused (replayed session).
        let r = h.send(&a1, "POST", "/kbs/v0/attest", &[("cookie", &cookie)], attest.as_bytes()).await;
        assert_eq!((r.status, r.kbs_error().as_str()), (401, "UnAuthenticatedCookie"));
        // The prototype capture: its admin write, its protocol errors.
        let proto = std::fs::read_to_string(format!("{CAPTURES}/kbs-client-vs-prototype-server.jsonl")).expect("capture");
        let first: Value = serde_json::from_str(proto.lines().next().unwrap()).unwrap();
        assert_eq!(first["req"], "POST");
        let bearer = format!("Bearer {rw}");
        let r = h.send(&a1, "POST", "/kbs/v0/resource/default/key/pvc1", &[("authorization", &bearer)], first["body"].as_str().unwrap().as_bytes()).await;
        assert_eq!(r.status, 200, "set-resource: {r:?}");
        let r = h.send(&a1, "POST", "/kbs/v0/resource/default/key/pvc1", &[], b"x").await;
        assert_eq!(r.status, 401, "set-resource without a token");
        // kbs-client's own admin credential: an EdDSA JWT signed with the key `--auth-private-key` names.
        let pem = dir.join("kbs-admin.pem");
        ok(c.guardctl(&["token", "kbs-admin-key", "--out", pem.to_str().unwrap()]));
        let admin = admin_key(&pem);
        let by_admin = format!("Bearer {}", admin_jwt(&admin));
        let r = h.send(&a2, "POST", "/kbs/v0/resource/default/key/by-admin", &[("authorization", &by_admin)], b"admin-set").await;
        assert_eq!(r.status, 200, "set-resource by an admin: {r:?}");
        let stranger = format!("Bearer {}", admin_jwt(&ed25519_dalek::SigningKey::from_bytes(&[7; 32])));
        let r = h.send(&a2, "POST", "/kbs/v0/resource/default/key/by-admin", &[("authorization", &stranger)], b"x").await;
        assert_eq!((r.status, r.kbs_error().as_str()), (401, "AdminAuth"), "not an admin of this cluster");
        let r = h.send(&a1, "POST", "/kbs/v0/auth", &[], b"{\"version\":").await;
        assert_eq!((r.status, r.kbs_error().as_str()), (400, "InvalidRequest"), "malformed JSON");
        let r = h.send(&a1, "POST", "/kbs/v0/auth", &[], br#"{"version":"0.1.0","tee":"sample","extra-params":""}"#).await;
        assert_eq!((r.status, r.kbs_error().as_str()), (400, "ProtocolVersion"));
    });
    let stored = first_prototype_body();
    settled("/v1/secret/default/key/pvc1", &stored);
    settled("/v1/secret/default/key/by-admin", b"admin-set");

    // 3. The protocol-level client: cookie and Bearer, EC and RSA, stored and derived keys.
    let (ec, rsa) = (TeeKey::ec(), TeeKey::rsa());
    let tokens = rt.block_on(async {
        let mut tokens = Vec::new();
        for (key, node) in [(&ec, &a1), (&rsa, &a2)] {
            let (cookie, token) = attest(&h, node, key).await;
            let by_cookie = open(&resource(&h, node, "default/key/pvc1", ("cookie", &cookie)).await, key);
            assert_eq!(by_cookie, stored, "the key set through the KBS admin path");
            assert_eq!(open(&resource(&h, node, "default/key/by-admin", ("cookie", &cookie)).await, key), b"admin-set");
            let bearer = format!("Bearer {token}");
            assert_eq!(open(&resource(&h, node, "default/pvc/data-0", ("authorization", &bearer)).await, key), pvc);
            // Passport: another node accepts the token.
            assert_eq!(open(&resource(&h, &a3, "default/pvc/data-0", ("authorization", &bearer)).await, key), pvc);
            tokens.push(bearer);
        }
        let (ec_bearer, rsa_bearer) = (&tokens[0], &tokens[1]);
        // A token bound to the RSA key cannot be opened with the EC key.
        assert!(kbs::decrypt(
            &resource(&h, &a3, "default/pvc/data-0", ("authorization", rsa_bearer)).await.json(),
            &ec
        )
        .is_err());
        // Refusals.
        let r = resource(&h, &a1, "default/key/nope", ("authorization", ec_bearer)).await;
        assert_eq!((r.status, r.kbs_error().as_str()), (404, "ResourceNotFound"), "unknown key");
        let r = resource(&h, &a1, "other/secret/x", ("authorization", ec_bearer)).await;
        assert_eq!(r.status, 404, "other has no secret/x: {r:?}");
        let r = resource(&h, &a1, "other/pvc/x", ("authorization", ec_bearer)).await;
        assert_eq!(
            (r.status, r.kbs_error().as_str()),
            (401, "PolicyDeny"),
            "wrong namespace: other grants only secret/"
        );
        let parts: Vec<&str> = ec_bearer.trim_start_matches("Bearer ").split('.').collect();
        let mut claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        claims["exp"] = json!(claims["exp"].as_u64().unwrap() + 86_400);
        let forged = format!("Bearer {}.{}.{}", parts[0], URL_SAFE_NO_PAD.encode(claims.to_string()), parts[2]);
        let r = resource(&h, &a1, "default/pvc/data-0", ("authorization", &forged)).await;
        assert_eq!((r.status, r.kbs_error().as_str()), (401, "TokenVerificationFailed"), "forged token");
        let r = resource(&h, &a1, "default/pvc/data-0", ("cookie", "kbs-session-id=00000000000000000000000000000000"))
            .await;
        assert_eq!((r.status, r.kbs_error().as_str()), (401, "UnAuthenticatedCookie"));
        tokens
    });

    // 4. Denied measurement: revoke the sample evidence's MRTD in the namespace.
    let mrtd = hex::encode(SimMeasurements::from_label(guardian_node::kbs::SAMPLE_LABEL).mrtd);
    ok(c.guardctl(&[
        "measurement",
        "revoke",
        "other",
        "--register",
        "mrtd",
        "--value",
        &mrtd,
        "--reason",
        "test",
        "--json",
    ]));
    let denied = rt.block_on(resource(&h, &a2, "other/secret/x", ("authorization", &tokens[0])));
    assert_eq!((denied.status, denied.kbs_error().as_str()), (401, "PolicyDeny"));
    assert!(denied.json()["detail"].as_str().unwrap().contains("revoked"), "{denied:?}");

    // 5. Passport mode after the issuing node is gone: node 1 issued the EC token.
    c.kill9(1);
    let after = rt.block_on(resource(&h, &a3, "default/pvc/data-0", ("authorization", &tokens[0])));
    assert_eq!(open(&after, &ec), pvc);
    // And the Vault front end still serves from the survivors (3 of 5 hold shares).
    assert_eq!(vault_value(&vault(&a2, "GET", "/v1/secret/default/pvc/data-0", &read, b"")), pvc);

    // Every release was audited, by the node that released it.
    let audit = std::fs::read_to_string(dir.join("node-3").join("audit.jsonl")).expect("node 3's audit log");
    assert!(audit.lines().any(|l| l.contains("\"front\":\"kbs\"") && l.contains("\"action\":\"release\"")), "{audit}");
    assert!(!audit.contains(&hex::encode(&pvc)), "the audit log never holds a key");
}

/// The raw value the prototype capture's first request wrote (kbs-client set-resource).
fn first_prototype_body() -> Vec<u8> {
    let proto = std::fs::read_to_string(format!("{CAPTURES}/kbs-client-vs-prototype-server.jsonl")).unwrap();
    let first: Value = serde_json::from_str(proto.lines().next().unwrap()).unwrap();
    first["body"].as_str().unwrap().as_bytes().to_vec()
}

/// The Ed25519 key in a PKCS#8 PEM (as `guardctl token kbs-admin-key` writes it).
fn admin_key(pem: &std::path::Path) -> ed25519_dalek::SigningKey {
    use ed25519_dalek::pkcs8::DecodePrivateKey;
    let text = std::fs::read_to_string(pem).expect("PEM");
    let b64: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
    ed25519_dalek::SigningKey::from_pkcs8_der(&STANDARD.decode(b64).expect("base64")).expect("PKCS#8 Ed25519")
}

/// An admin token as kbs-client makes one: EdDSA JWT with iat, nbf and exp two hours on.
fn admin_jwt(key: &ed25519_dalek::SigningKey) -> String {
    use ed25519_dalek::Signer;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let header = URL_SAFE_NO_PAD.encode(json!({"alg": "EdDSA", "typ": "JWT"}).to_string());
    let claims = URL_SAFE_NO_PAD.encode(json!({"iat": now, "nbf": now, "exp": now + 7200}).to_string());
    let signature = key.sign(format!("{header}.{claims}").as_bytes());
    format!("{header}.{claims}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
}
