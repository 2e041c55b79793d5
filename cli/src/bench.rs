//! `guardctl bench`: throughput and latency of the workload serving path,
//! measured against one node of a running local cluster, as the simulated
//! workload (INSECURE) of a dev cluster.
//!
//! Each load runs closed-loop: `--concurrency` tasks share `--connections`
//! TLS connections to the node, and each task sends its next operation as
//! soon as the last one is answered. Operations that start during the
//! warm-up are not counted. A baseline load runs in the same invocation
//! (GetCaBundle: TLS, HTTP/2 and a state read, no authentication), so the
//! figures can be read as ratios that carry across machines.
//!
//! The KBS loads (`kbs-handshake`, `kbs-bearer`) drive the node's CoCo port
//! instead, as a CoCo guest does (the KBS protocol over HTTPS/1.1, see
//! [`crate::kbsclient`]): HTTP/1.1 carries one request at a time, so each of
//! the `--concurrency` tasks has a keep-alive connection of its own, and
//! `--connections` does not apply. They are skipped when the node serves no
//! CoCo port.
//!
//! The client runs on the same machine as the cluster and shares its cores:
//! the figures are for the whole loop, client work included.

use std::future::Future;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use guardian_proto::v1::GetCaBundleRequest;
use serde_json::json;

use crate::cluster::ClusterFile;
use crate::clusterctl::{issue, Report, Sending};
use crate::kbsclient::{self, Auth, KbsClient};
use crate::output::out;
use crate::workload::{self, Identity, DEMO_WORKLOAD_LABEL};
use crate::UsageError;

/// The namespace the benchmark creates (once) and works in; its policy is the demo policy.
pub const NAMESPACE: &str = "bench";
/// The key every key fetch asks for (derived, nothing stored).
const KEY_PATH: &str = "pvc/bench";
/// Lifetime asked for the certificates the attest load issues, so their records are pruned soon.
const ATTEST_VALIDITY_SECS: u32 = 60;

/// What one benchmark operation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Load {
    /// GetCaBundle over an mTLS connection: the transport and a state read, no authentication.
    Baseline,
    /// GetKey authenticated by the connection's client certificate.
    KeyMtls,
    /// GetChallenge, then GetKey with fresh simulated evidence bound to a new X25519 key; the key
    /// comes sealed to it and is opened.
    KeyFresh,
    /// GetChallenge, then Attest with simulated evidence for a new P-256 key: a certificate,
    /// recorded in the replicated log before it is returned.
    Attest,
    /// On the CoCo port (KBS protocol): /auth, /attest with fresh simulated evidence bound to the
    /// session nonce and the task's P-256 TEE key, then the resource by session cookie (a JWE).
    KbsHandshake,
    /// On the CoCo port: the resource (a JWE) with the task's attestation token as Bearer; each
    /// task attests once before its loop.
    KbsBearer,
}

impl Load {
    fn name(self) -> &'static str {
        match self {
            Load::Baseline => "baseline",
            Load::KeyMtls => "key-mtls",
            Load::KeyFresh => "key-fresh",
            Load::Attest => "attest",
            Load::KbsHandshake => "kbs-handshake",
            Load::KbsBearer => "kbs-bearer",
        }
    }

    /// Whether the load runs on the node's CoCo port (KBS protocol) rather than its workload port.
    fn is_kbs(self) -> bool {
        matches!(self, Load::KbsHandshake | Load::KbsBearer)
    }
}

/// How long and how hard to drive the node.
#[derive(clap::Args, Clone)]
pub struct BenchOpts {
    /// Seconds measured per load (after the warm-up).
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Seconds of load before measuring starts.
    #[arg(long, default_value_t = 2)]
    pub warmup: u64,
    /// Requests in flight at once (for the KBS loads, also their HTTP/1.1 connections: one each).
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// TLS connections the workload-port requests share (HTTP/2 multiplexes the rest).
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    /// Loads to run, in this order (the baseline always runs first). The KBS loads (kbs-handshake,
    /// kbs-bearer) use the node's CoCo port, and are skipped if it serves none.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "key-mtls,key-fresh,attest,kbs-handshake,kbs-bearer"
    )]
    pub loads: Vec<Load>,
}

impl Default for BenchOpts {
    /// The command line's defaults (one source of truth for them).
    fn default() -> Self {
        #[derive(clap::Parser)]
        struct Defaults {
            #[command(flatten)]
            opts: BenchOpts,
        }
        <Defaults as clap::Parser>::parse_from(["bench"]).opts
    }
}

impl BenchOpts {
    fn check(&self) -> Result<(), UsageError> {
        if self.duration == 0 || self.concurrency == 0 || self.connections == 0 {
            return Err(UsageError("--duration, --concurrency and --connections must be at least 1".into()));
        }
        if self.connections > self.concurrency {
            return Err(UsageError("--connections cannot exceed --concurrency".into()));
        }
        Ok(())
    }
}

/// What one load measured.
struct Measured {
    load: Load,
    ops: usize,
    errors: u64,
    first_error: Option<String>,
    window: Duration,
    /// Latencies of the counted operations, microseconds, sorted.
    latencies_us: Vec<u32>,
}

impl Measured {
    /// A load that could not start (its setup failed): nothing done, one error.
    fn failed(load: Load, window: Duration, error: &anyhow::Error) -> Self {
        Measured { load, ops: 0, errors: 1, first_error: Some(format!("{error:#}")), window, latencies_us: Vec::new() }
    }

    fn per_sec(&self) -> f64 {
        self.ops as f64 / self.window.as_secs_f64()
    }

    fn percentile_ms(&self, p: f64) -> f64 {
        match self.latencies_us.len() {
            0 => 0.0,
            n => {
                let rank = ((p / 100.0) * n as f64).ceil() as usize;
                f64::from(self.latencies_us[rank.clamp(1, n) - 1]) / 1000.0
            }
        }
    }
}

/// Run `op` closed-loop from `concurrency` tasks over `clients` and measure it. Task `i` uses
/// `clients[i % clients.len()]`, cloned: a client is cheap to clone (a handle on a connection,
/// shared by its clones).
async fn drive<C, F, Fut>(load: Load, clients: &[C], opts: &BenchOpts, op: F) -> Measured
where
    C: Clone + Send + 'static,
    F: Fn(C) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send,
{
    let counted_from = Instant::now() + Duration::from_secs(opts.warmup);
    let window = Duration::from_secs(opts.duration);
    if clients.is_empty() {
        return Measured::failed(load, window, &anyhow::anyhow!("no connection to run on"));
    }
    let until = counted_from + window;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..opts.concurrency {
        let client = clients[i % clients.len()].clone();
        let op = op.clone();
        tasks.spawn(async move {
            let (mut latencies, mut errors, mut first_error) = (Vec::new(), 0u64, None);
            loop {
                let started = Instant::now();
                if started >= until {
                    break;
                }
                let outcome = op(client.clone()).await;
                if started < counted_from {
                    continue;
                }
                match outcome {
                    Ok(()) => latencies.push(u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX)),
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert_with(|| format!("{e:#}"));
                    }
                }
            }
            (latencies, errors, first_error)
        });
    }
    let mut m = Measured { load, ops: 0, errors: 0, first_error: None, window, latencies_us: Vec::new() };
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((latencies, errors, first_error)) => {
                m.latencies_us.extend(latencies);
                m.errors += errors;
                m.first_error = m.first_error.or(first_error);
            }
            Err(e) => {
                m.errors += 1;
                m.first_error.get_or_insert_with(|| format!("benchmark task failed: {e}"));
            }
        }
    }
    m.ops = m.latencies_us.len();
    m.latencies_us.sort_unstable();
    m
}

/// Run a KBS load on the node's CoCo port. Each task has a connection of its own (in `clients`,
/// opened before the first KBS load and kept for the next); for kbs-bearer each task attests
/// once, before its loop, for the token it then sends.
async fn drive_kbs(
    load: Load,
    endpoint: &Arc<kbsclient::Endpoint>,
    clients: &mut Vec<KbsClient>,
    opts: &BenchOpts,
) -> Measured {
    let window = Duration::from_secs(opts.duration);
    while clients.len() < opts.concurrency {
        match KbsClient::open(endpoint.clone()).await {
            Ok(c) => clients.push(c),
            Err(e) => return Measured::failed(load, window, &e),
        }
    }
    match load {
        Load::KbsBearer => match with_tokens(clients).await {
            Ok(tasks) => {
                drive(load, &tasks, opts, |(c, token): (KbsClient, Arc<str>)| async move {
                    c.resource(Auth::Bearer(&token)).await
                })
                .await
            }
            Err(e) => Measured::failed(load, window, &e),
        },
        _ => drive(load, clients, opts, |c: KbsClient| async move { c.handshake().await }).await,
    }
}

/// Each client with an attestation token of its own (attested concurrently).
async fn with_tokens(clients: &[KbsClient]) -> anyhow::Result<Vec<(KbsClient, Arc<str>)>> {
    let mut tasks = tokio::task::JoinSet::new();
    for c in clients {
        let c = c.clone();
        tasks.spawn(async move {
            let token = c.attest().await.context("attesting for a Bearer token")?.token;
            anyhow::Ok((c, Arc::<str>::from(token)))
        });
    }
    let mut out = Vec::with_capacity(clients.len());
    while let Some(joined) = tasks.join_next().await {
        out.push(joined.context("attesting for a Bearer token")??);
    }
    Ok(out)
}

/// Create the bench namespace if it is missing, and attest once for the
/// certificate the mTLS loads use.
async fn prepare(dir: &Path, cluster: &ClusterFile, node: &crate::cluster::NodeEntry) -> anyhow::Result<Identity> {
    if crate::nsctl::fetch(dir, Some(node.id), NAMESPACE).await.is_err() {
        let policy = dir.join("bench-policy.toml");
        std::fs::write(&policy, crate::demo::demo_policy())?;
        let how = Sending { dir, key: None, propose: None, node: None, report: Report::Quiet };
        issue(how, crate::nsctl::create(NAMESPACE, Some(&policy))?, "guardctl bench").await?;
        eprintln!("guardctl bench: created namespace {NAMESPACE} (the demo policy: admits the simulated workload)");
    }
    // The namespace CA certificate is signed by the cluster (FROST) shortly after creation.
    let mut last = String::new();
    for _ in 0..120 {
        match workload::attest(cluster, node, NAMESPACE, DEMO_WORKLOAD_LABEL, 0).await {
            Ok((identity, _)) => return Ok(identity),
            Err(e) => last = format!("{e:#}"),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    anyhow::bail!("could not attest to namespace {NAMESPACE} on node {}: {last}", node.id)
}

/// The loads to run, baseline first, and those skipped (the KBS loads, when the node has no
/// CoCo port).
fn plan(asked: &[Load], has_coco: bool) -> (Vec<Load>, Vec<Load>) {
    let mut loads = vec![Load::Baseline];
    loads.extend(asked.iter().copied().filter(|l| *l != Load::Baseline));
    let (skipped, run) = loads.into_iter().partition(|l| l.is_kbs() && !has_coco);
    (run, skipped)
}

/// Benchmark one node (`node`, or the first with a workload port) of the cluster in `dir`.
pub async fn run(dir: &Path, node: Option<u64>, opts: &BenchOpts, as_json: bool) -> anyhow::Result<ExitCode> {
    opts.check()?;
    let cluster = ClusterFile::load(dir)?;
    let target = workload::pick(&cluster, node)?;
    let (loads, skipped) = plan(&opts.loads, target.coco_addr.is_some());
    let identity = prepare(dir, &cluster, target).await?;
    let tee = Arc::new(workload::sim_workload(&cluster, DEMO_WORKLOAD_LABEL)?);
    let kbs = match &target.coco_addr {
        Some(addr) if loads.iter().any(|l| l.is_kbs()) => {
            Some(Arc::new(kbsclient::Endpoint::new(dir, addr, tee.clone(), NAMESPACE, KEY_PATH)?))
        }
        _ => None,
    };
    let mut kbs_clients = Vec::new();
    let mut mtls = Vec::new();
    let mut plain = Vec::new();
    for _ in 0..opts.connections {
        mtls.push(workload::connect(&cluster, target, Some(&identity)).await?);
        plain.push(workload::connect(&cluster, target, None).await?);
    }
    if !as_json {
        out!(
            "guardctl bench: node {} ({}), {} s per load after {} s warm-up, {} requests in flight on {} connections",
            target.id,
            target.workload_addr.as_deref().unwrap_or("?"),
            opts.duration,
            opts.warmup,
            opts.concurrency,
            opts.connections
        );
        if !skipped.is_empty() {
            out!(
                "guardctl bench: node {} serves no CoCo port (no coco_addr in cluster.json); skipping {}",
                target.id,
                skipped.iter().map(|l| l.name()).collect::<Vec<_>>().join(", ")
            );
        }
        out!("{:<13} {:>10} {:>9} {:>9} {:>7} {:>12}", "load", "ops/s", "p50 ms", "p99 ms", "errors", "vs baseline");
    }
    let mut results: Vec<Measured> = Vec::new();
    for load in loads {
        let m = match load {
            Load::Baseline => {
                drive(load, &mtls, opts, |mut c| async move {
                    c.get_ca_bundle(GetCaBundleRequest { namespace: NAMESPACE.into() }).await?;
                    Ok(())
                })
                .await
            }
            Load::KeyMtls => {
                drive(load, &mtls, opts, |mut c| async move {
                    workload::request_key(&mut c, NAMESPACE, KEY_PATH, 0, None).await.map(drop)
                })
                .await
            }
            Load::KeyFresh => {
                let tee = tee.clone();
                drive(load, &plain, opts, move |mut c| {
                    let tee = tee.clone();
                    async move { workload::request_key(&mut c, NAMESPACE, KEY_PATH, 0, Some(&tee)).await.map(drop) }
                })
                .await
            }
            Load::Attest => {
                let tee = tee.clone();
                drive(load, &plain, opts, move |mut c| {
                    let tee = tee.clone();
                    async move {
                        workload::request_certificate(&mut c, &tee, NAMESPACE, ATTEST_VALIDITY_SECS).await.map(drop)
                    }
                })
                .await
            }
            Load::KbsHandshake | Load::KbsBearer => match &kbs {
                Some(endpoint) => drive_kbs(load, endpoint, &mut kbs_clients, opts).await,
                // Not reached: KBS loads are left out above when the node has no CoCo port.
                None => Measured::failed(
                    load,
                    Duration::from_secs(opts.duration),
                    &anyhow::anyhow!("node {} serves no CoCo port", target.id),
                ),
            },
        };
        let baseline = results.first().map(Measured::per_sec).unwrap_or_else(|| m.per_sec());
        let ratio = if baseline > 0.0 { m.per_sec() / baseline } else { 0.0 };
        if !as_json {
            out!(
                "{:<13} {:>10.0} {:>9.2} {:>9.2} {:>7} {:>12.2}",
                load.name(),
                m.per_sec(),
                m.percentile_ms(50.0),
                m.percentile_ms(99.0),
                m.errors,
                ratio
            );
            if let Some(e) = &m.first_error {
                out!("  first error: {e}");
            }
        }
        results.push(m);
    }
    let baseline = results.first().map(Measured::per_sec).unwrap_or(0.0);
    if as_json {
        let loads: Vec<serde_json::Value> = results
            .iter()
            .map(|m| {
                json!({
                    "load": m.load.name(),
                    "ops": m.ops,
                    "ops_per_sec": m.per_sec(),
                    "p50_ms": m.percentile_ms(50.0),
                    "p99_ms": m.percentile_ms(99.0),
                    "errors": m.errors,
                    "first_error": m.first_error,
                    "vs_baseline": if baseline > 0.0 { m.per_sec() / baseline } else { 0.0 },
                })
            })
            .collect();
        out!(
            "{}",
            json!({
                "node": target.id,
                "duration_secs": opts.duration,
                "warmup_secs": opts.warmup,
                "concurrency": opts.concurrency,
                "connections": opts.connections,
                "loads": loads,
            })
        );
    }
    // A load that completed nothing, or failed at all, is a failed benchmark.
    let failed = results.iter().any(|m| m.ops == 0 || m.errors > 0);
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measured(latencies_us: Vec<u32>) -> Measured {
        Measured {
            load: Load::Baseline,
            ops: latencies_us.len(),
            errors: 0,
            first_error: None,
            window: Duration::from_secs(2),
            latencies_us,
        }
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let m = measured((1..=100).map(|i| i * 1000).collect());
        assert_eq!(m.percentile_ms(50.0), 50.0);
        assert_eq!(m.percentile_ms(99.0), 99.0);
        assert_eq!(m.percentile_ms(100.0), 100.0);
        assert_eq!(m.per_sec(), 50.0);
        assert_eq!(measured(vec![7000]).percentile_ms(99.0), 7.0);
        assert_eq!(measured(vec![]).percentile_ms(50.0), 0.0);
    }

    #[test]
    fn the_kbs_loads_run_last_by_default_and_only_on_a_coco_port() {
        use Load::*;
        let asked = BenchOpts::default().loads;
        assert_eq!(asked, [KeyMtls, KeyFresh, Attest, KbsHandshake, KbsBearer]);
        assert_eq!(plan(&asked, true), (vec![Baseline, KeyMtls, KeyFresh, Attest, KbsHandshake, KbsBearer], vec![]));
        assert_eq!(plan(&asked, false), (vec![Baseline, KeyMtls, KeyFresh, Attest], vec![KbsHandshake, KbsBearer]));
        assert_eq!(plan(&[KbsBearer, Baseline], false), (vec![Baseline], vec![KbsBearer]));
        assert_eq!(plan(&[KbsBearer, Baseline], true), (vec![Baseline, KbsBearer], vec![]));
    }

    #[test]
    fn nonsense_options_are_refused() {
        let bad = [
            BenchOpts { duration: 0, ..Default::default() },
            BenchOpts { concurrency: 0, ..Default::default() },
            BenchOpts { connections: 65, ..Default::default() },
        ];
        for opts in bad {
            assert!(opts.check().is_err());
        }
        assert!(BenchOpts::default().check().is_ok());
    }
}
