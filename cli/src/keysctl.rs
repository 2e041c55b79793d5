//! `guardctl ca` and `guardctl keys probe`: the cluster's threshold keys
//! from the outside.

use std::path::Path;
use std::process::ExitCode;

use guardian_proto::v1::{GetCaCertificatesRequest, ProbeKeysRequest};
use serde_json::json;

use crate::admin_client::ask_first;
use crate::cluster::ClusterFile;
use crate::output::out;

fn pem(der: &[u8]) -> String {
    guardian_node::ca::to_pem(der, "CERTIFICATE")
}

/// Print (or write to `out_dir`) the root CA certificate and, if asked, a
/// namespace's CA certificate.
pub async fn ca(
    dir: &Path,
    namespace: Option<&str>,
    out_dir: Option<&Path>,
    node: Option<u64>,
) -> anyhow::Result<ExitCode> {
    let cluster = ClusterFile::load(dir)?;
    let req = GetCaCertificatesRequest { namespace: namespace.unwrap_or_default().to_string() };
    let (_, r) = ask_first(&cluster, node, |mut c| {
        let req = req.clone();
        async move { c.get_ca_certificates(req).await }
    })
    .await?;
    let mut files = vec![("root-ca.pem".to_string(), r.root_ca_der)];
    if let Some(ns) = namespace {
        files.push((format!("{ns}-ca.pem"), r.namespace_ca_der));
    }
    for (name, der) in files {
        match out_dir {
            Some(d) => {
                std::fs::create_dir_all(d)?;
                std::fs::write(d.join(&name), pem(&der))?;
                out!("wrote {}", d.join(&name).display());
            }
            None => out!("{}", pem(&der)),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Derive a namespace secret (and make one FROST signature) on a node and
/// report who contributed, who lied, and how long it took.
pub async fn probe(
    dir: &Path,
    namespace: &str,
    node: Option<u64>,
    fresh: bool,
    sign: bool,
    as_json: bool,
) -> anyhow::Result<ExitCode> {
    let cluster = ClusterFile::load(dir)?;
    let req = ProbeKeysRequest { namespace: namespace.to_string(), version: 0, bypass_cache: fresh, sign };
    let (id, r) = ask_first(&cluster, node, |mut c| {
        let req = req.clone();
        async move { c.probe_keys(req).await }
    })
    .await?;
    let ok = r.derive_error.is_empty() && r.sign_error.is_empty();
    if as_json {
        out!(
            "{}",
            json!({
                "node": id, "epoch": r.epoch, "secret_check": hex::encode(&r.secret_check),
                "contributors": r.contributors, "culprits": r.culprits, "derive_micros": r.derive_micros,
                "derive_error": r.derive_error, "signers": r.signers, "sign_culprits": r.sign_culprits,
                "sign_micros": r.sign_micros, "sign_error": r.sign_error,
            })
        );
    } else {
        out!("node {id}, key epoch {}", r.epoch);
        if r.derive_error.is_empty() {
            out!(
                "  {namespace}: check value {}…  from nodes {:?} in {:.1} ms{}",
                hex::encode(&r.secret_check[..8.min(r.secret_check.len())]),
                r.contributors,
                r.derive_micros as f64 / 1000.0,
                if r.culprits.is_empty() { String::new() } else { format!("; invalid shares from {:?}", r.culprits) }
            );
        } else {
            out!("  {namespace}: FAILED: {}", r.derive_error);
        }
        if sign && r.sign_error.is_empty() {
            out!(
                "  FROST signature by nodes {:?} in {:.1} ms{}",
                r.signers,
                r.sign_micros as f64 / 1000.0,
                if r.sign_culprits.is_empty() {
                    String::new()
                } else {
                    format!("; invalid shares from {:?}", r.sign_culprits)
                }
            );
        } else if sign {
            out!("  FROST signature: FAILED: {}", r.sign_error);
        }
    }
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
