//! openraft type configuration for Guardian.

use std::io::Cursor;

use serde::{Deserialize, Serialize};

use crate::state::{Command, Response};

/// How to reach a node: its peer gRPC address.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeAddr {
    pub addr: String,
}

impl std::fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.addr)
    }
}

openraft::declare_raft_types!(
    /// Guardian's Raft types: commands are [`Command`], node ids `u64`.
    pub TypeConfig:
        D = Command,
        R = Response,
        NodeId = u64,
        Node = NodeAddr,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type Raft = openraft::Raft<TypeConfig>;
