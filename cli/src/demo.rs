//! `guardctl dev demo`: one simulated workload (INSECURE) through the whole
//! serving path of a running dev cluster: a namespace with a policy, a
//! stored secret and a config; attest → certificate → PVC key → config; then
//! the leader is killed and the same key is served again by another node.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use guardian_node::attest::sim::SimMeasurements;
use guardian_proto::v1::StatusRequest;

use crate::cluster::ClusterFile;
use crate::clusterctl::{issue, Report, Sending};
use crate::kbsclient;
use crate::output::out;
use crate::workload::{self, KeyAuth, DEMO_WORKLOAD_LABEL};

/// The demo namespace.
pub const NAMESPACE: &str = "demo";

/// The demo namespace's policy: the simulated workload's measurements, a
/// certificate profile, and grants.
pub fn demo_policy() -> String {
    let m = SimMeasurements::from_label(DEMO_WORKLOAD_LABEL);
    format!(
        "# Demo policy: admits only the INSECURE simulated workload TEE.\n\
         [workloads]\ntees = [\"sim\"]\naccepted_tcb_status = [\"Simulated\"]\n\n\
         [[workloads.tdx]]\nname = \"demo-app\"\nmrtd = \"{}\"\nrtmr2 = \"{}\"\n\n\
         [certificates]\ndefault_validity_secs = 3600\nmax_validity_secs = 86400\ndns_sans = [\"demo-app.demo.svc\"]\n\n\
         [[grants]]\nrule = \"demo-app\"\nkeys = [\"pvc/\", \"secret/\"]\nconfigs = [\"app\"]\n",
        hex::encode(m.mrtd),
        hex::encode(m.rtmr[2]),
    )
}

const CONFIG: &str = "# app.toml, as the workload receives it (references resolved beside it)\n\
                      [database]\nvolume_key = \"${guardian:pvc/db-data}\"\npassword = \"${guardian:secret/db-password}\"\n";

async fn leader(cluster: &ClusterFile) -> anyhow::Result<u64> {
    let (_, s) =
        crate::admin_client::ask_first(cluster, None, |mut c| async move { c.status(StatusRequest {}).await }).await?;
    Ok(s.leader_id)
}

/// Run the demo against the cluster in `dir`. `kill` stops a node's process.
pub async fn run(dir: &Path, kill: impl Fn(u64) -> anyhow::Result<()>) -> anyhow::Result<ExitCode> {
    let cluster = ClusterFile::load(dir)?;
    let how = || Sending { dir, key: None, propose: None, node: None, report: Report::Text };
    out!("== 1. admin: namespace {NAMESPACE} with a policy, a stored secret and a config");
    let policy = dir.join("demo-policy.toml");
    std::fs::write(&policy, demo_policy())?;
    issue(how(), crate::nsctl::create(NAMESPACE, Some(&policy))?, "demo").await?;
    let password = dir.join("demo-db-password");
    crate::devup::write_secret(&password, "correct horse battery staple")?;
    // The ingest key exists once the namespace secret can be derived.
    let mut put = None;
    for _ in 0..40 {
        match crate::nsctl::put_secret(dir, NAMESPACE, "secret/db-password", &password, None).await {
            Ok(b) => {
                put = Some(b);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
    let put =
        put.ok_or_else(|| anyhow::anyhow!("namespace {NAMESPACE} has no ingest key (are the threshold keys up?)"))?;
    issue(how(), put, "demo").await?;
    let config = dir.join("demo-app.toml");
    std::fs::write(&config, CONFIG)?;
    issue(how(), crate::nsctl::put_config(NAMESPACE, "app", &config, "application/toml", None)?, "demo").await?;

    out!("\n== 2. workload: challenge -> simulated evidence (INSECURE) -> certificate");
    let first = workload::pick(&cluster, None)?;
    let mut attested = None;
    let mut last = String::new();
    // The namespace CA certificate is signed by the cluster (FROST) shortly after creation.
    for _ in 0..60 {
        match workload::attest(&cluster, first, NAMESPACE, DEMO_WORKLOAD_LABEL, 0).await {
            Ok(a) => {
                attested = Some(a);
                break;
            }
            Err(e) => {
                last = format!("{e:#}");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
    let (identity, resp) = attested.ok_or_else(|| anyhow::anyhow!("attestation failed: {last}"))?;
    out!(
        "node {} issued a certificate for rule {:?}, valid until {}",
        first.id,
        resp.matched_rule,
        guardian_node::rfc3339::format(resp.expires_at_unix.max(0) as u64)
    );

    out!("\n== 3. workload: PVC key over mTLS with that certificate");
    let (version, key) =
        workload::get_key(&cluster, first, NAMESPACE, "pvc/db-data", 0, KeyAuth::Certificate(&identity)).await?;
    let before = workload::fingerprint(&key);
    out!("node {} served pvc/db-data v{version}: {} bytes, fingerprint {before}", first.id, key.len());

    out!("\n== 4. workload: config with its references resolved");
    let mut client = workload::connect(&cluster, first, Some(&identity)).await?;
    let req = guardian_proto::v1::GetConfigRequest {
        namespace: NAMESPACE.into(),
        selector: Some(guardian_proto::v1::get_config_request::Selector::Name("app".into())),
        ..Default::default()
    };
    let resp = client.get_config(req).await?.into_inner();
    out!("config {:?}, sha256 {}, {} references:", resp.name, hex::encode(&resp.digest[..8]), resp.references.len());
    for r in &resp.references {
        out!("  {}", workload::describe_reference(r));
    }

    out!("\n== 5. CoCo pod: the KBS protocol (auth, attest with simulated evidence, resource by Bearer token)");
    let pod = match &first.coco_addr {
        Some(addr) => {
            let tee = Arc::new(workload::sim_workload(&cluster, DEMO_WORKLOAD_LABEL)?);
            let endpoint = kbsclient::Endpoint::new(dir, addr, tee, NAMESPACE, "pvc/db-data")?;
            let pod = kbsclient::KbsClient::open(Arc::new(endpoint)).await?;
            let token = pod.attest().await?.token;
            let value = pod.fetch(kbsclient::Auth::Bearer(&token)).await?;
            out!(
                "node {} released pvc/db-data as a JWE to the pod's TEE key; opened: fingerprint {}",
                first.id,
                workload::fingerprint(&value)
            );
            if *value != *key {
                out!("FAILED: the KBS released another key than the workload service");
                return Ok(ExitCode::from(1));
            }
            Some((pod, token))
        }
        None => {
            out!("node {} serves no CoCo port; skipped", first.id);
            None
        }
    };

    out!("\n== 6. failover: kill the leader, fetch the same key from another node");
    let old = leader(&cluster).await?;
    kill(old)?;
    out!("killed node {old} (the leader)");
    let mut new = old;
    for _ in 0..60 {
        new = leader(&cluster).await.unwrap_or(old);
        if new != old && new != 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    out!("node {new} leads now");
    let other = cluster
        .nodes
        .iter()
        .find(|n| n.id != old && n.workload_addr.is_some())
        .ok_or_else(|| anyhow::anyhow!("no other node with a workload port"))?;
    let mut again = None;
    for _ in 0..60 {
        if let Ok(r) =
            workload::get_key(&cluster, other, NAMESPACE, "pvc/db-data", 0, KeyAuth::Certificate(&identity)).await
        {
            again = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let (_, key2) = again.ok_or_else(|| anyhow::anyhow!("no other node served the key after the failover"))?;
    let after = workload::fingerprint(&key2);
    out!("node {} served pvc/db-data: fingerprint {after}", other.id);
    if *key != *key2 {
        out!("FAILED: the key changed across the failover");
        return Ok(ExitCode::from(1));
    }
    if let (Some((pod, token)), Some(addr)) = (pod, &other.coco_addr) {
        // Passport: the token node {first} signed is accepted by another node, whoever is down.
        let tee = Arc::new(workload::sim_workload(&cluster, DEMO_WORKLOAD_LABEL)?);
        let endpoint = kbsclient::Endpoint::new(dir, addr, tee, NAMESPACE, "pvc/db-data")?;
        let value = pod.moved_to(Arc::new(endpoint)).await?.fetch(kbsclient::Auth::Bearer(&token)).await?;
        out!(
            "node {} accepted the pod's token from node {} (passport) and released the same key: fingerprint {}",
            other.id,
            first.id,
            workload::fingerprint(&value)
        );
        if *value != *key {
            out!("FAILED: the KBS key changed across the failover");
            return Ok(ExitCode::from(1));
        }
    }
    out!("the same key before and after the failover: demo passed");
    Ok(ExitCode::SUCCESS)
}
