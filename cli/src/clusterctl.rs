//! `guardctl status` and the signed admin commands.

use std::path::Path;
use std::process::ExitCode;

use ed25519_dalek::SigningKey;
use guardian_node::state::admin;
use guardian_proto::v1::{
    admin_command::Body, submit_request, AdminCommand, ListNamespacesRequest, NodeRole, RevokeNode, SignedCommand,
    StatusRequest, SubmitRequest,
};
use rand::RngCore;
use serde_json::json;

use crate::admin_client::Admin;
use crate::cluster::ClusterFile;
use crate::output::out;
use crate::UsageError;

/// Lifetime of commands guardctl signs.
const COMMAND_LIFETIME_SECS: i64 = 600;

pub async fn status(dir: &Path, as_json: bool) -> anyhow::Result<ExitCode> {
    let cluster = ClusterFile::load(dir)?;
    let admin = Admin::new(&cluster)?;
    let mut rows = Vec::new();
    let mut view: Option<(bool, guardian_proto::v1::StatusResponse)> = None;
    for node in &cluster.nodes {
        let reply = match admin.connect(node).await {
            Ok(mut c) => c.status(StatusRequest {}).await.map(|r| r.into_inner()).map_err(|e| e.message().to_string()),
            Err(e) => Err(format!("{e:#}")),
        };
        let (health, leader, term, applied) = match &reply {
            Ok(s) => ("healthy".to_string(), s.leader_id, s.term, s.last_applied_index),
            Err(e) => (format!("unreachable: {e}"), 0, 0, 0),
        };
        // Peers this node caught returning invalid threshold shares (its own observation).
        let suspects: Vec<u64> = reply
            .as_ref()
            .map(|s| {
                let suspect = guardian_proto::v1::NodeHealth::Suspect as i32;
                s.members.iter().filter(|m| m.health == suspect).map(|m| m.node_id).collect()
            })
            .unwrap_or_default();
        // The cluster's view is the one its leader reports about itself: a node
        // cut off from the others (revoked, partitioned) may report a higher
        // term of its own with stale state.
        if let Ok(s) = &reply {
            let self_leader = s.leader_id == node.id;
            let better = match &view {
                None => true,
                Some((v_leader, v)) => (self_leader, s.term) > (*v_leader, v.term),
            };
            if better {
                view = Some((self_leader, s.clone()));
            }
        }
        rows.push(json!({
            "id": node.id, "address": node.peer_addr, "admin_address": node.admin_addr, "pid": node.pid,
            "health": health, "leader": leader, "term": term, "last_applied": applied, "suspects": suspects,
        }));
    }
    let view = view.map(|(_, v)| v);
    let members: Vec<_> = view
        .as_ref()
        .map(|v| {
            v.members
                .iter()
                .map(|m| {
                    let role = NodeRole::try_from(m.role)
                        .unwrap_or(NodeRole::Unspecified)
                        .as_str_name()
                        .trim_start_matches("NODE_ROLE_")
                        .to_lowercase();
                    let suspect = m.health == guardian_proto::v1::NodeHealth::Suspect as i32;
                    json!({"id": m.node_id, "address": m.address, "role": role,
                           "measurement": m.measurements.get("mrtd").map(hex::encode),
                           "suspect": suspect, "invalid_shares": m.invalid_shares})
                })
                .collect()
        })
        .unwrap_or_default();
    let threshold = view.as_ref().and_then(|v| v.threshold).unwrap_or_default();
    let alarms: Vec<_> = view
        .as_ref()
        .map(|v| v.alarms.iter().map(|a| json!({"node": a.node_id, "message": a.message})).collect())
        .unwrap_or_default();
    let summary = json!({
        "cluster_id": cluster.cluster_id,
        "keys": {"threshold": threshold.threshold, "holders": threshold.shares, "epoch": threshold.bls_epoch,
                 "ceremony_running": threshold.resharing, "awaiting_recovery": threshold.awaiting_recovery,
                 "escrow": {"epoch": threshold.escrow_epoch, "holders": threshold.escrow_holders,
                            "complete": threshold.escrow_complete}},
        "alarms": alarms,
        "leader": view.as_ref().map(|v| v.leader_id),
        "term": view.as_ref().map(|v| v.term),
        "last_applied": view.as_ref().map(|v| v.last_applied_index),
        "members": members,
        "nodes": rows,
    });
    if as_json {
        out!("{summary}");
    } else {
        out!(
            "cluster {}  leader {}  term {}  last applied {}",
            cluster.cluster_id,
            summary["leader"],
            summary["term"],
            summary["last_applied"]
        );
        out!(
            "keys: {}-of-{} held, epoch {}{}",
            threshold.threshold,
            threshold.shares,
            threshold.bls_epoch,
            if threshold.resharing { ", key ceremony running" } else { "" }
        );
        if threshold.awaiting_recovery {
            out!("keys: waiting to be restored from the admin escrow: run `guardctl recover`");
        }
        if threshold.escrow_epoch > 0 {
            out!(
                "escrow: epoch {} escrowed by {} holders{}",
                threshold.escrow_epoch,
                threshold.escrow_holders,
                if threshold.escrow_complete { " (complete: `guardctl recovery export`)" } else { " (incomplete)" }
            );
        }
        for a in view.iter().flat_map(|v| &v.alarms) {
            let about = if a.node_id == 0 { String::new() } else { format!("node {}: ", a.node_id) };
            out!("ALARM {about}{}", a.message);
        }
        out!(
            "{:<4} {:<22} {:<8} {:<8} {:<8} {:<10} {}",
            "id",
            "address",
            "pid",
            "role",
            "leader",
            "applied",
            "health / measurement"
        );
        for (row, node) in rows.iter().zip(&cluster.nodes) {
            let role = members
                .iter()
                .find(|m| m["id"] == node.id)
                .map(|m| m["role"].as_str().unwrap_or("-").to_string())
                .unwrap_or("-".into());
            let mrtd = members
                .iter()
                .find(|m| m["id"] == node.id)
                .and_then(|m| m["measurement"].as_str())
                .map(|m| format!(" mrtd {}…", &m[..16.min(m.len())]))
                .unwrap_or_default();
            out!(
                "{:<4} {:<22} {:<8} {:<8} {:<8} {:<10} {}{}",
                node.id,
                node.peer_addr,
                node.pid.map(|p| p.to_string()).unwrap_or("-".into()),
                role,
                row["leader"].to_string(),
                row["last_applied"].to_string(),
                row["health"].as_str().unwrap_or(""),
                mrtd
            );
        }
    }
    let all_up = rows.iter().all(|r| r["health"] == "healthy");
    Ok(if all_up { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

pub fn load_admin_key(path: &Path) -> anyhow::Result<SigningKey> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| UsageError(format!("cannot read admin key {}: {e}", path.display())))?;
    let seed: [u8; 32] = hex::decode(text.trim())
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| UsageError(format!("{}: admin key must be 32 bytes of hex", path.display())))?;
    Ok(SigningKey::from_bytes(&seed))
}

/// What to do with a new command: submit it now, or write it to a proposal
/// file for other admins to approve.
pub struct Sending<'a> {
    pub dir: &'a Path,
    /// Admin key file to sign with (default: the cluster's `admin_key`).
    pub key: Option<&'a Path>,
    /// Write a proposal here instead of submitting.
    pub propose: Option<&'a Path>,
    /// Submit through this node only (default: any, until the leader commits).
    pub node: Option<u64>,
    /// How to report the outcome.
    pub report: Report,
}

/// How a submitted command's outcome is reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    Text,
    Json,
    /// Nothing on success; a refusal is an error (for commands that other commands issue).
    Quiet,
}

impl Report {
    pub fn text_or_json(json: bool) -> Self {
        if json {
            Report::Json
        } else {
            Report::Text
        }
    }
}

/// Sign `body` and submit it, or write it as a proposal.
pub async fn issue(how: Sending<'_>, body: Body, reason: &str) -> anyhow::Result<ExitCode> {
    let cluster = ClusterFile::load(how.dir)?;
    let key = load_admin_key(how.key.unwrap_or(&cluster.admin_key))?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut nonce = vec![0u8; 16];
    rand::thread_rng().fill_bytes(&mut nonce);
    let cmd = AdminCommand {
        cluster_id: cluster.cluster_id.clone(),
        nonce,
        issued_at_unix: now,
        expires_at_unix: now + COMMAND_LIFETIME_SECS,
        reason: reason.to_string(),
        body: Some(body),
    };
    let mut signed = SignedCommand::unsigned(&cmd);
    admin::sign(&mut signed, &key);
    match how.propose {
        Some(file) => {
            crate::proposal::write(file, &signed)?;
            out!(
                "wrote proposal {} ({}); other admins run: guardctl approve {}",
                file.display(),
                crate::proposal::describe(&cmd),
                file.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        None => send(&cluster, signed, how.node, how.report).await,
    }
}

/// Submit a signed command, trying nodes (or only node `only`) until the leader commits it.
pub async fn send(
    cluster: &ClusterFile,
    signed: SignedCommand,
    only: Option<u64>,
    report: Report,
) -> anyhow::Result<ExitCode> {
    let admin = Admin::new(cluster)?;
    let mut last = String::from("no node answered");
    if only.is_some_and(|id| cluster.nodes.iter().all(|n| n.id != id)) {
        return Err(UsageError(format!("node {} is not in {}", only.unwrap_or_default(), crate::cluster::FILE)).into());
    }
    for _round in 0..20 {
        for node in cluster.nodes.iter().filter(|n| only.is_none_or(|id| id == n.id)) {
            let mut client = match admin.connect(node).await {
                Ok(c) => c,
                Err(e) => {
                    last = format!("node {}: {e:#}", node.id);
                    continue;
                }
            };
            let req = SubmitRequest { command: Some(submit_request::Command::SignedCommand(signed.clone())) };
            match client.submit(req).await {
                Ok(r) => {
                    let index = r.into_inner().log_index;
                    match report {
                        Report::Json => out!("{}", json!({ "committed": true, "log_index": index })),
                        Report::Text => out!("committed at log index {index}"),
                        Report::Quiet => {}
                    }
                    return Ok(ExitCode::SUCCESS);
                }
                Err(s) if s.code() == tonic::Code::Unavailable => last = format!("node {}: {}", node.id, s.message()),
                Err(s) => {
                    match report {
                        Report::Json => out!("{}", json!({ "committed": false, "refused": s.message() })),
                        Report::Text => eprintln!("guardctl: refused: {}", s.message()),
                        Report::Quiet => anyhow::bail!("refused: {}", s.message()),
                    }
                    return Ok(ExitCode::from(1));
                }
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    Err(anyhow::anyhow!("could not submit: {last}"))
}

pub fn revoke_node(node_id: u64) -> Body {
    Body::RevokeNode(RevokeNode { node_id })
}

/// True when every node answers and they agree on a leader of a bootstrapped cluster.
pub async fn status_quiet(dir: &Path) -> bool {
    let Ok(cluster) = ClusterFile::load(dir) else { return false };
    let Ok(admin) = Admin::new(&cluster) else { return false };
    let mut leaders = std::collections::BTreeSet::new();
    for node in &cluster.nodes {
        let Ok(mut c) = admin.connect(node).await else { return false };
        match c.status(StatusRequest {}).await {
            Ok(s) if s.get_ref().leader_id != 0 && !s.get_ref().members.is_empty() => {
                leaders.insert(s.get_ref().leader_id);
            }
            _ => return false,
        }
    }
    leaders.len() == 1
}

/// List namespaces as one node (or the first that answers) sees them.
pub async fn list_namespaces(dir: &Path, node: Option<u64>, as_json: bool) -> anyhow::Result<ExitCode> {
    let cluster = ClusterFile::load(dir)?;
    let (id, r) = crate::admin_client::ask_first(&cluster, node, |mut c| async move {
        c.list_namespaces(ListNamespacesRequest {}).await
    })
    .await?;
    let names: Vec<String> = r.namespaces.into_iter().map(|n| n.namespace).collect();
    if as_json {
        out!("{}", json!({ "node": id, "namespaces": names }));
    } else {
        names.iter().for_each(|name| out!("{name}"));
    }
    Ok(ExitCode::SUCCESS)
}

/// `guardctl approve FILE`: show what the proposal says, who has signed, then sign.
pub fn approve(dir: &Path, file: &Path, key: Option<&Path>) -> anyhow::Result<ExitCode> {
    let cluster = ClusterFile::load(dir)?;
    let genesis = cluster.genesis()?;
    let mut signed = crate::proposal::read(file)?;
    let cmd = signed.decode_command()?;
    if cmd.cluster_id != cluster.cluster_id {
        return Err(
            UsageError(format!("the proposal is for cluster {}, not {}", cmd.cluster_id, cluster.cluster_id)).into()
        );
    }
    out!("proposal: {}", crate::proposal::describe(&cmd));
    out!("signed by: {}", crate::proposal::valid_signers(&signed, &genesis).join(", "));
    let key = load_admin_key(key.unwrap_or(&cluster.admin_key))?;
    crate::proposal::approve(&mut signed, &key)?;
    crate::proposal::write(file, &signed)?;
    let signers = crate::proposal::valid_signers(&signed, &genesis);
    out!(
        "now signed by {} admin(s): {} (genesis quorum {}); submit with: guardctl submit {}",
        signers.len(),
        signers.join(", "),
        genesis.admin_quorum,
        file.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// `guardctl submit FILE`.
pub async fn submit_file(dir: &Path, file: &Path) -> anyhow::Result<ExitCode> {
    let cluster = ClusterFile::load(dir)?;
    send(&cluster, crate::proposal::read(file)?, None, Report::Text).await
}
