//! A cluster description on disk (`cluster.json`): where each node listens,
//! which genesis and admin key belong to it, and local process ids. Written by
//! `guardctl dev up`; read by `guardctl status` and the admin commands.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::UsageError;

pub const FILE: &str = "cluster.json";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeEntry {
    pub id: u64,
    pub peer_addr: String,
    pub admin_addr: String,
    pub health_addr: String,
    /// Where the node serves attested workloads (WorkloadService), if it does.
    #[serde(default)]
    pub workload_addr: Option<String>,
    /// Where the node serves the CoCo front ends (HTTPS: Vault KV v1, KBS protocol), if it does.
    #[serde(default)]
    pub coco_addr: Option<String>,
    pub config: PathBuf,
    pub data_dir: PathBuf,
    /// Process id when started locally by `guardctl dev up`.
    pub pid: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterFile {
    pub cluster_id: String,
    pub genesis: PathBuf,
    pub admin_key: PathBuf,
    /// INSECURE development cluster (simulated TEEs): the sim keys to trust.
    #[serde(default)]
    pub insecure_sim_keys: Vec<String>,
    /// INSECURE development cluster: seeds of simulated TEEs not yet used by a
    /// node, for `guardctl dev add-node` (their keys are in `insecure_sim_keys`).
    #[serde(default)]
    pub insecure_spare_seeds: Vec<String>,
    /// INSECURE development cluster: the seed of the simulated TEE `guardctl workload` uses to
    /// play an attested workload (its key is in `insecure_sim_keys`).
    #[serde(default)]
    pub insecure_workload_seed: Option<String>,
    pub nodes: Vec<NodeEntry>,
}

impl ClusterFile {
    pub fn load(dir: &Path) -> Result<Self, UsageError> {
        let path = dir.join(FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            UsageError(format!("cannot read {}: {e} (start a cluster with `guardctl dev up`)", path.display()))
        })?;
        serde_json::from_str(&text).map_err(|e| UsageError(format!("{}: {e}", path.display())))
    }

    /// The cluster's genesis file, parsed.
    pub fn genesis(&self) -> Result<guardian_node::state::genesis::Genesis, UsageError> {
        let text = std::fs::read_to_string(&self.genesis)
            .map_err(|e| UsageError(format!("cannot read {}: {e}", self.genesis.display())))?;
        guardian_node::state::genesis::Genesis::parse(&text).map_err(|e| UsageError(e.to_string()))
    }

    pub fn save(&self, dir: &Path) -> std::io::Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(dir.join(FILE), text)
    }
}
