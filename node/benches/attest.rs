//! TDX quote verification cost: Guardian's caching verifier against the two
//! ECDSA P-256 checks it can never skip, and against dcap-qvl's own verifier.
//!
//! Input (all benchmarks, one run, same machine): test case T1, the real TDX
//! v4 quote `tests/data/attestation/phala-dcap-qvl/tdx_quote` with its
//! collateral `tdx_quote_collateral.json`, verified at unix time 1750377600
//! (2025-06-20T00:00:00Z), inside the collateral's validity window.
//!
//! Benchmarks (criterion group `tdx_t1`):
//! - `two_ecdsa_baseline`: the two signature checks that differ for every new
//!   quote and so cannot be cached: the quote signature (attestation key over
//!   the signed header + TD report) and the QE report signature (PCK leaf key
//!   over the 384-byte QE report), with `ring` exactly as the verifier does.
//!   This is the floor for verifying a quote not seen before.
//! - `warm`: `TdxVerifier::verify` with the collateral and PCK chain already
//!   verified and cached (the steady state for a platform family).
//! - `cold`: `TdxVerifier::verify` on a fresh verifier (empty cache) every
//!   time: collateral signatures, CRLs, PCK chain, and the per-quote checks.
//! - `dcap_qvl_verify`: `dcap_qvl::verify::verify`, which re-verifies every
//!   chain and CRL per quote (no cache).
//!
//! Run (full measurement, prints the ratio table at the end):
//!
//! ```text
//! cargo bench -p guardian-node --bench attest
//! ```
//!
//! `cargo test -p guardian-node --benches` runs each benchmark once as a smoke
//! test; no estimates are written then, so no ratios are printed.
//!
//! Reading the ratios: after the group finishes, the mean of each benchmark
//! (criterion's `new/estimates.json`, `mean.point_estimate`) is divided by the
//! mean of `two_ecdsa_baseline`. `warm` near 1.0x means a cached verification
//! costs little beyond the two unavoidable signature checks (the project's
//! goal is warm <= 1.3x); `dcap_qvl_verify / warm` is how much faster a cached
//! verification is than dcap-qvl's uncached one (goal: about 5x). `cold`
//! shows the price of the first quote from a platform family.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use criterion::{BatchSize, Criterion};
use dcap_qvl::quote::{AuthData, Quote};
use guardian_node::attest::tdx::{Collateral, TdxVerifier};
use guardian_node::attest::VerifyOptions;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use x509_cert::der::Decode;

const GROUP: &str = "tdx_t1";
/// 2025-06-20T00:00:00Z, inside T1's collateral window.
const NOW: u64 = 1_750_377_600;

fn data(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/attestation/phala-dcap-qvl").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Everything the two per-quote ECDSA checks need, extracted outside timing.
struct EcdsaInputs {
    attestation_key: [u8; 65],
    signed: Vec<u8>,
    quote_sig: Vec<u8>,
    pck_key: Vec<u8>,
    qe_report: Vec<u8>,
    qe_report_sig: Vec<u8>,
}

impl EcdsaInputs {
    fn from_quote(raw: &[u8]) -> Self {
        let quote = Quote::parse(raw).expect("T1 quote parses");
        let auth = match &quote.auth_data {
            AuthData::V4(a) => a.clone().into_v3(),
            AuthData::V3(a) => a.clone(),
        };
        let mut attestation_key = [0x04u8; 65];
        attestation_key[1..].copy_from_slice(&auth.ecdsa_attestation_key);
        let leaf = CertificateDer::pem_slice_iter(&auth.certification_data.body.data)
            .next()
            .expect("PCK chain has a certificate")
            .expect("PCK chain is PEM");
        let leaf = x509_cert::Certificate::from_der(&leaf).expect("PCK leaf is DER");
        let pck_key = leaf
            .tbs_certificate
            .subject_public_key_info
            .subject_public_key
            .as_bytes()
            .expect("PCK key is a whole-byte bit string")
            .to_vec();
        EcdsaInputs {
            attestation_key,
            signed: raw[..quote.signed_length()].to_vec(),
            quote_sig: auth.ecdsa_signature.to_vec(),
            pck_key,
            qe_report: auth.qe_report.to_vec(),
            qe_report_sig: auth.qe_report_signature.to_vec(),
        }
    }

    /// The two checks, as `collateral::verify_p256` does them.
    fn verify(&self) -> (bool, bool) {
        let p256 = |point: &[u8], msg: &[u8], sig: &[u8]| {
            ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, point)
                .verify(msg, sig)
                .is_ok()
        };
        (
            p256(&self.attestation_key, &self.signed, &self.quote_sig),
            p256(&self.pck_key, &self.qe_report, &self.qe_report_sig),
        )
    }
}

fn bench_tdx_t1(c: &mut Criterion) {
    let quote = data("tdx_quote");
    let collateral_json = data("tdx_quote_collateral.json");
    let collateral = Collateral::from_json(&collateral_json).expect("T1 collateral parses");
    let opts = VerifyOptions::at(NOW);

    // Sanity checks before timing anything: every path must succeed on T1.
    let ecdsa = EcdsaInputs::from_quote(&quote);
    assert_eq!(ecdsa.verify(), (true, true), "T1's quote and QE report signatures must verify");
    dcap_qvl::verify::verify(&quote, collateral.inner(), NOW).expect("dcap-qvl accepts T1");
    let warm = TdxVerifier::intel();
    warm.verify(&quote, &collateral, &opts).expect("TdxVerifier accepts T1 (primes the cache)");

    let mut g = c.benchmark_group(GROUP);
    g.warm_up_time(Duration::from_millis(1500)).measurement_time(Duration::from_secs(5));

    g.sample_size(100);
    g.bench_function("two_ecdsa_baseline", |b| b.iter(|| black_box(&ecdsa).verify()));
    g.bench_function("warm", |b| b.iter(|| warm.verify(black_box(&quote), black_box(&collateral), black_box(&opts))));

    g.sample_size(40);
    g.bench_function("cold", |b| {
        // A new verifier per iteration: built in setup, returned so that it is
        // dropped outside the timed region.
        b.iter_batched(
            TdxVerifier::intel,
            |v| {
                let r = v.verify(black_box(&quote), black_box(&collateral), black_box(&opts));
                (v, r)
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("dcap_qvl_verify", |b| {
        b.iter(|| dcap_qvl::verify::verify(black_box(&quote), black_box(collateral.inner()), black_box(NOW)))
    });
    g.finish();
}

/// Criterion's output directory, as criterion itself picks it: `$CRITERION_HOME`,
/// `$CARGO_TARGET_DIR/criterion`, else the target dir holding this executable.
fn criterion_dir() -> Option<PathBuf> {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return Some(PathBuf::from(home));
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        let dir = PathBuf::from(target).join("criterion");
        if dir.is_dir() {
            return Some(dir);
        }
    }
    let exe = std::env::current_exe().ok()?;
    exe.ancestors().skip(1).map(|a| a.join("criterion")).find(|d| d.is_dir())
}

/// Mean (ns) of one benchmark, only if written during this run.
fn mean_ns(dir: &Path, name: &str, since: SystemTime) -> Option<f64> {
    let path = dir.join(GROUP).join(name).join("new/estimates.json");
    let fresh = std::fs::metadata(&path).ok()?.modified().ok()? >= since;
    if !fresh {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).ok()?).ok()?;
    v["mean"]["point_estimate"].as_f64()
}

fn print_ratios(since: SystemTime) {
    let names = ["two_ecdsa_baseline", "warm", "cold", "dcap_qvl_verify"];
    let means: Option<Vec<f64>> =
        criterion_dir().and_then(|dir| names.iter().map(|n| mean_ns(&dir, n, since)).collect());
    let Some(m) = means else {
        println!(
            "{GROUP}: ratios are only computed in a full `cargo bench -p guardian-node --bench attest` run \
             (no fresh criterion estimates for all four benchmarks)"
        );
        return;
    };
    let (base, warm, cold, dcap) = (m[0], m[1], m[2], m[3]);
    println!();
    println!("{GROUP} (mean per verification)        ns      ratio to two_ecdsa_baseline");
    println!("{:<32}{:>10.0}      {:.2}x", "two_ecdsa_baseline", base, 1.0);
    println!("{:<32}{:>10.0}      {:.3}x", "warm (cache hit)", warm, warm / base);
    println!("{:<32}{:>10.0}      {:.2}x", "cold (empty cache)", cold, cold / base);
    println!("{:<32}{:>10.0}      {:.2}x", "dcap_qvl_verify (uncached)", dcap, dcap / base);
    println!("{:<32}{:>10}      {:.2}x", "dcap_qvl_verify / warm", "", dcap / warm);
    println!("goals: warm <= 1.3x two_ecdsa_baseline; dcap_qvl_verify / warm about 5x");
}

fn main() {
    // Estimates older than this are from another run and are ignored.
    let start = SystemTime::now() - Duration::from_secs(1);
    let mut c = Criterion::default().configure_from_args();
    bench_tdx_t1(&mut c);
    c.final_summary();
    print_ratios(start);
}
