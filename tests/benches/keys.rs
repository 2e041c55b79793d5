//! Threshold key operations on a real 5-node local cluster (3-of-5, separate
//! processes, RA-TLS, simulated TEEs), as the deriving node measures them:
//!
//! - first derivation of a namespace secret: gather t BLS shares over the
//!   peer service, verify, combine (`keys probe --fresh`: the sealed cache is
//!   bypassed, so every run does the whole work of a new namespace);
//! - one FROST signature over the root CA certificate (two network rounds);
//! - baselines, same run: one BLS signature-share verification in process
//!   (two pairings: the unit cost of checking a share), and a cached
//!   derivation (the same request path, one sealed-store read, no peers).
//!
//! Run: `cargo bench -p guardian-tests --bench keys` (release build). Under
//! `cargo test` it only says how to run it.

use std::time::Duration;

use guardian_tests::cluster::{TestCluster, Tuning};

const RUNS: usize = 40;

fn percentile(v: &mut [u64], p: f64) -> f64 {
    v.sort_unstable();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i] as f64 / 1000.0
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("keys bench: run it with `cargo bench -p guardian-tests --bench keys`");
        return;
    }
    let c = TestCluster::start(5, Tuning::default());
    c.wait_ready(&[1, 2, 3, 4, 5], Duration::from_secs(120));
    c.wait_keys(1, Duration::from_secs(120));
    assert!(c.create_namespace("bench"));
    for id in 1..=5 {
        c.wait_applied(id, &["bench".to_string()], Duration::from_secs(60));
    }
    let (mut fresh, mut cached, mut sign) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..RUNS + 5 {
        let node = 1 + (i as u64 % 5);
        let f = c.probe(node, "bench", true, true);
        let k = c.probe(node, "bench", false, false);
        assert_eq!(f["derive_error"], "", "{f}");
        assert_eq!(f["sign_error"], "", "{f}");
        if i >= 5 {
            fresh.push(f["derive_micros"].as_u64().unwrap_or_default());
            sign.push(f["sign_micros"].as_u64().unwrap_or_default());
            cached.push(k["derive_micros"].as_u64().unwrap_or_default());
        }
    }
    let mut verify = verify_times();
    let base = percentile(&mut verify.clone(), 0.5);
    println!("threshold keys, 5-node local cluster, t = 3, {RUNS} runs per figure (ms, on the deriving node)");
    println!("{:<46} {:>8} {:>8} {:>12}", "", "median", "p90", "median/base");
    for (name, v) in [
        ("baseline: one BLS share verification", &mut verify),
        ("cached derivation", &mut cached),
        ("first derivation (t shares, verify, combine)", &mut fresh),
        ("FROST signature (t signers, two rounds)", &mut sign),
    ] {
        let median = percentile(v, 0.5);
        println!("{name:<46} {median:>8.2} {:>8.2} {:>11.1}x", percentile(v, 0.9), median / base);
    }
}

/// Microseconds per BLS signature-share verification, in this process.
fn verify_times() -> Vec<u64> {
    use guardian_node::threshold::bls;
    let mut rng = rand::rngs::OsRng;
    let dealer = bls::BlsDealer::fresh(3, &mut rng).expect("dealer");
    let public = bls::dkg_public(&[dealer.commitment()]).expect("public");
    let share = dealer.share_for(1).expect("share");
    let sig = bls::sign_share(&share, b"guardian/bench");
    (0..RUNS)
        .map(|_| {
            let t0 = std::time::Instant::now();
            assert!(bls::verify_sign_share(&public, 1, b"guardian/bench", &sig));
            t0.elapsed().as_micros() as u64
        })
        .collect()
}
