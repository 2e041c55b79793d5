//! `guardctl node joins` and `guardctl node approve`: nodes asking to join.
//!
//! Every node the joiner asked keeps its request; guardctl asks every node in
//! cluster.json and merges what they report. Before signing an approval it
//! verifies the joiner's certificate itself (evidence, binding, guardian
//! policy), so an admin never vouches for what a node merely relayed.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

use guardian_node::net::ratls::system_clock;
use guardian_node::net::ratls::verify::{inspect_peer, PeerInfo};
use guardian_proto::v1::{
    admin_command::Body, ApproveNodeJoin, EvidenceKind, JoinRequestInfo, ListJoinRequestsRequest,
};
use rustls::pki_types::CertificateDer;
use serde_json::json;

use crate::admin_client::Admin;
use crate::cluster::ClusterFile;
use crate::output::out;
use crate::UsageError;

/// Pending requests from every node that answers, one per (node id, identity).
async fn gather(cluster: &ClusterFile, admin: &Admin) -> anyhow::Result<Vec<JoinRequestInfo>> {
    let mut found: BTreeMap<(u64, Vec<u8>), JoinRequestInfo> = BTreeMap::new();
    let mut answered = 0;
    for node in &cluster.nodes {
        let Ok(mut client) = admin.connect(node).await else { continue };
        let Ok(reply) = client.list_join_requests(ListJoinRequestsRequest {}).await else { continue };
        answered += 1;
        for r in reply.into_inner().requests {
            let key = (r.node_id, r.tls_key_sha256.clone());
            match found.get(&key) {
                Some(seen) if seen.last_seen_unix >= r.last_seen_unix => {}
                _ => {
                    found.insert(key, r);
                }
            }
        }
    }
    if answered == 0 {
        return Err(anyhow::anyhow!("no node in {} answered", crate::cluster::FILE));
    }
    Ok(found.into_values().collect())
}

fn describe(r: &JoinRequestInfo) -> serde_json::Value {
    let kind = EvidenceKind::try_from(r.evidence_kind)
        .unwrap_or(EvidenceKind::Unspecified)
        .as_str_name()
        .trim_start_matches("EVIDENCE_KIND_")
        .to_lowercase();
    json!({
        "node_id": r.node_id,
        "address": r.address,
        "identity": hex::encode(&r.tls_key_sha256),
        "evidence_kind": kind,
        "mrtd": r.measurements.get("mrtd").map(hex::encode),
        "policy_rule": r.policy_rule,
        "version": r.version,
        "first_seen": guardian_node::rfc3339::format(r.first_seen_unix.max(0) as u64),
    })
}

/// `guardctl node joins`.
pub async fn list(dir: &Path, as_json: bool) -> anyhow::Result<ExitCode> {
    let cluster = ClusterFile::load(dir)?;
    let admin = Admin::new(&cluster)?;
    let pending = gather(&cluster, &admin).await?;
    if as_json {
        out!("{}", json!({ "pending": pending.iter().map(describe).collect::<Vec<_>>() }));
    } else if pending.is_empty() {
        out!("no node is asking to join");
    } else {
        out!("{:<6} {:<22} {:<18} {:<6} {}", "id", "address", "identity", "kind", "mrtd / rule");
        for r in &pending {
            let d = describe(r);
            out!(
                "{:<6} {:<22} {:<18} {:<6} {}… / {}",
                r.node_id,
                r.address,
                &d["identity"].as_str().unwrap_or("")[..16],
                d["evidence_kind"].as_str().unwrap_or(""),
                &d["mrtd"].as_str().unwrap_or("")[..16.min(d["mrtd"].as_str().unwrap_or("").len())],
                r.policy_rule
            );
        }
        out!("approve one with: guardctl node approve ID");
    }
    Ok(ExitCode::SUCCESS)
}

/// Find the pending request for `node_id` and check its certificate here.
/// `identity` (hex prefix) picks one when several keys asked under one id.
pub async fn approval(dir: &Path, node_id: u64, identity: Option<&str>) -> anyhow::Result<Body> {
    let cluster = ClusterFile::load(dir)?;
    let admin = Admin::new(&cluster)?;
    let matching: Vec<JoinRequestInfo> = gather(&cluster, &admin)
        .await?
        .into_iter()
        .filter(|r| r.node_id == node_id)
        .filter(|r| identity.is_none_or(|p| hex::encode(&r.tls_key_sha256).starts_with(&p.to_lowercase())))
        .collect();
    let request = match matching.as_slice() {
        [one] => one,
        [] => {
            return Err(UsageError(format!(
                "no pending join request from node {node_id}; is it running and configured with this cluster's genesis? (`guardctl node joins` lists requests)"
            ))
            .into())
        }
        several => {
            let ids: Vec<String> = several.iter().map(|r| hex::encode(&r.tls_key_sha256)[..16].to_string()).collect();
            return Err(UsageError(format!(
                "node {node_id} asked to join with {} different identities ({}); pick one with --identity",
                several.len(),
                ids.join(", ")
            ))
            .into());
        }
    };
    let info: PeerInfo = inspect_peer(
        &CertificateDer::from(request.certificate.as_slice()),
        &[],
        system_clock()(),
        admin.policy(),
        Some(node_id),
    )
    .map_err(|e| anyhow::anyhow!("node {node_id}'s certificate does not verify here: {e}"))?;
    out!(
        "node {node_id} at {}: identity {}, {} evidence, mrtd {}, allowed by rule {:?}",
        request.address,
        hex::encode(info.identity.0),
        info.claims.kind,
        info.claims.mrtd,
        info.claims.rule
    );
    Ok(Body::ApproveNodeJoin(ApproveNodeJoin {
        node_id,
        address: request.address.clone(),
        certificate: request.certificate.clone(),
    }))
}
