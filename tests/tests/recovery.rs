//! Admin recovery end to end, on real processes (INSECURE simulated TEEs):
//! a 5-node cluster escrows its root keys to 2-of-3 recovery admins, is lost
//! whole (every process killed, every data directory deleted), and
//! `guardctl recover` rebuilds it on five fresh nodes with the same
//! namespace secrets and the same root CA key.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use guardian_tests::bin::guardctl;
use guardian_tests::cluster::{eventually, TestCluster, Tuning};
use serde_json::Value;

const READY: Duration = Duration::from_secs(90);

fn run(args: &[&str]) -> Output {
    Command::new(guardctl()).args(args).output().expect("guardctl")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// The public key of a PEM certificate, as openssl prints it.
fn public_key(cert: &Path) -> String {
    let o = Command::new("openssl")
        .args(["x509", "-pubkey", "-noout", "-in"])
        .arg(cert)
        .output()
        .expect("openssl must be installed (CI installs it)");
    assert!(o.status.success(), "{}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The root and `namespace` CA certificates, once issued; returns the directory.
fn fetch_ca(c: &TestCluster, namespace: &str) -> PathBuf {
    let out = c.path().join("ca");
    eventually(READY, || {
        let o = c.guardctl(&["ca", "--namespace", namespace, "--out", out.to_str().unwrap()]);
        o.status.success().then_some(()).ok_or_else(|| text(&o))
    });
    out
}

fn create(c: &TestCluster, namespace: &str) {
    assert!(c.create_namespace(namespace));
    for id in 1..=c.n {
        c.wait_applied(id, &[namespace.to_string()], READY);
    }
}

/// The check value of `namespace`'s secret, derived afresh from t shares.
fn secret_check(c: &TestCluster, namespace: &str) -> String {
    let p = c.probe(2, namespace, true, false);
    assert_eq!(p["derive_error"], "", "{p}");
    p["secret_check"].as_str().unwrap().to_string()
}

#[test]
fn a_cluster_lost_whole_is_rebuilt_from_admin_escrow_with_the_same_secrets_and_root_ca() {
    let admins = tempfile::tempdir().unwrap();
    let file = |name: &str, ext: &str| admins.path().join(format!("{name}.{ext}")).to_str().unwrap().to_string();
    for name in ["alice", "bob", "carol"] {
        let o = run(&["recovery", "keygen", "--out", admins.path().join(name).to_str().unwrap()]);
        assert!(o.status.success(), "{}", text(&o));
    }
    let stranger = tempfile::tempdir().unwrap();
    let o = run(&["recovery", "keygen", "--out", stranger.path().join("mallory").to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let pubs = [file("alice", "pub"), file("bob", "pub"), file("carol", "pub")].join(",");
    let recovery = ["--recovery-admins", &pubs, "--recovery-threshold", "2"];

    // The original cluster: keys, a namespace, a root CA, and a complete escrow.
    let old = TestCluster::start_with(5, Tuning::default(), &recovery);
    old.wait_ready(&[1, 2, 3, 4, 5], READY);
    old.wait_keys(1, READY);
    create(&old, "payments");
    let check = secret_check(&old, "payments");
    let old_ca = fetch_ca(&old, "payments");
    let old_root_key = public_key(&old_ca.join("root-ca.pem"));
    let escrow = admins.path().join("escrow.json");
    let escrow_arg = escrow.to_str().unwrap().to_string();
    eventually(READY, || {
        let o = old.guardctl(&["recovery", "export", "--out", &escrow_arg]);
        o.status.success().then_some(()).ok_or_else(|| text(&o))
    });
    let s = old.status();
    assert_eq!(s["keys"]["escrow"]["complete"], true, "{s}");
    // The export is the versioned escrow format guardctl recover reads.
    let escrow_text = std::fs::read_to_string(&escrow).unwrap();
    assert!(escrow_text.contains("guardian-escrow/v1"));

    // The cluster is lost whole: every process and every disk.
    drop(old);

    // Five fresh nodes, initialized from the escrow: same cluster id, keys pinned, no DKG.
    let restore = ["--restore-from", &escrow_arg, "--recovery-admins", &pubs, "--recovery-threshold", "2"];
    let new = TestCluster::start_with(5, Tuning::default(), &restore);
    new.wait_ready(&[1, 2, 3, 4, 5], READY);
    let s = new.status();
    assert_eq!(s["keys"]["awaiting_recovery"], true, "{s}");
    assert_eq!(s["keys"]["epoch"], 0, "{s}");
    create(&new, "payments");
    let probe = new.probe(1, "payments", true, false);
    assert!(probe["derive_error"].as_str().unwrap_or("").contains("no threshold keys"), "{probe}");

    // One admin is not enough; a stranger's key is refused; nothing changes.
    let recover = |keys: &[String]| {
        let mut args = vec!["recover", "--escrow", &escrow_arg];
        for k in keys {
            args.extend(["--admin-key", k.as_str()]);
        }
        new.guardctl(&args)
    };
    let o = recover(&[file("alice", "key")]);
    assert!(!o.status.success() && text(&o).contains("needs 2 admin keys, 1 given"), "{}", text(&o));
    let o = recover(&[file("alice", "key"), stranger.path().join("mallory.key").to_str().unwrap().to_string()]);
    assert!(!o.status.success() && text(&o).contains("not the key of a recovery admin"), "{}", text(&o));
    assert_eq!(new.status()["keys"]["epoch"], 0);

    // Alice and Carol rebuild the cluster.
    let o = recover(&[file("alice", "key"), file("carol", "key")]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("restored: key epoch 1"), "{}", text(&o));
    let s = new.wait_keys(1, READY);
    assert_eq!(s["keys"]["holders"], 5, "{s}");
    assert_eq!(s["keys"]["awaiting_recovery"], false, "{s}");

    // The same namespace secret, and the same root CA key; the new chain verifies.
    assert_eq!(secret_check(&new, "payments"), check, "the namespace secret changed");
    let new_ca = fetch_ca(&new, "payments");
    assert_eq!(public_key(&new_ca.join("root-ca.pem")), old_root_key, "the root CA key changed");
    let o = Command::new("openssl")
        .args(["verify", "-x509_strict", "-CAfile"])
        .arg(new_ca.join("root-ca.pem"))
        .arg(new_ca.join("payments-ca.pem"))
        .output()
        .unwrap();
    assert!(text(&o).contains(": OK"), "{}", text(&o));
    // Every node of the rebuilt cluster derives it, and the rebuilt keys are escrowed again.
    for id in [1, 3, 5] {
        let p = new.probe(id, "payments", true, false);
        assert_eq!(p["secret_check"].as_str(), Some(check.as_str()), "{p}");
    }
    eventually(READY, || {
        let s: Value = new.status();
        (s["keys"]["escrow"]["complete"] == true).then_some(()).ok_or_else(|| format!("{s}"))
    });
    // A second recovery is refused: the cluster has its keys.
    let o = recover(&[file("alice", "key"), file("bob", "key")]);
    assert!(!o.status.success() && text(&o).contains("has its keys already"), "{}", text(&o));
}

#[test]
fn guardctl_init_writes_a_genesis_file_with_recovery_admins_and_refuses_bad_ones() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    for name in ["alice", "bob"] {
        assert!(run(&["recovery", "keygen", "--out", &path(name)]).status.success());
    }
    // A second keygen to the same place would destroy a key: refused.
    let o = run(&["recovery", "keygen", "--out", &path("alice")]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    std::fs::write(
        path("policy.toml"),
        format!(
            "tees = [\"tdx\"]\naccepted_tcb_status = [\"UpToDate\"]\n[[tdx]]\nname = \"guardian-v1\"\nmrtd = \"{}\"\n",
            "ab".repeat(48)
        ),
    )
    .unwrap();
    let admin = format!("ops={}", "8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c");
    let init = |out: &str, k: &str| {
        let pubs = format!("{},{}", path("alice.pub"), path("bob.pub"));
        run(&[
            "init",
            "--out",
            &path(out),
            "--threshold",
            "2",
            "--admin",
            &admin,
            "--guardian-policy",
            &path("policy.toml"),
            "--member",
            "1=10.0.0.1:7100",
            "--member",
            "2=10.0.0.2:7100",
            "--member",
            "3=10.0.0.3:7100",
            "--recovery-admins",
            &pubs,
            "--recovery-threshold",
            k,
        ])
    };
    let o = init("genesis.toml", "2");
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("escrowed to 2-of-2 recovery admins"), "{}", text(&o));
    let genesis =
        guardian_node::state::genesis::Genesis::parse(&std::fs::read_to_string(path("genesis.toml")).unwrap()).unwrap();
    let recovery = genesis.recovery.expect("recovery admins");
    let names: Vec<&str> = recovery.admins.iter().map(|a| a.name.as_str()).collect();
    assert_eq!((recovery.threshold, names), (2, vec!["alice", "bob"]));
    assert_eq!((genesis.members.len(), genesis.threshold, genesis.restore), (3, 2, None));
    // Never overwritten; one admin alone may not rebuild the keys.
    let o = init("genesis.toml", "2");
    assert!(o.status.code() == Some(2) && text(&o).contains("not overwriting"), "{}", text(&o));
    let o = init("other.toml", "1");
    assert!(o.status.code() == Some(2) && text(&o).contains("between 2 and the 2"), "{}", text(&o));
    assert!(!dir.path().join("other.toml").exists());
}
