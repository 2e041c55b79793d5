//! The release audit log: one JSON line per key released, written, or
//! deleted through a CoCo front end, in `<data_dir>/audit.jsonl`. A release
//! is answered only after its line is on disk (fdatasync); concurrent
//! releases share one sync (group commit), so the log costs one flush per
//! batch, not per request. Lines name the key and who asked, never a value.

use std::io::Write;
use std::path::Path;
use std::sync::mpsc;

use serde::Serialize;
use tokio::sync::oneshot;

/// One audited event.
#[derive(Debug, Serialize)]
pub struct Entry<'a> {
    /// Unix seconds.
    pub at: u64,
    pub node: u64,
    /// `vault` or `kbs`.
    pub front: &'static str,
    /// `release`, `write` or `delete`.
    pub action: &'static str,
    pub namespace: &'a str,
    pub key: &'a str,
    /// Who: `token:<id>` (Vault / KBS admin) or `tee:<kind>:<rule>` with the attestation token id.
    pub by: String,
    /// Secret version the value came from (0 = not applicable).
    pub version: u32,
}

type Job = (Vec<u8>, oneshot::Sender<Result<(), String>>);

/// The audit log writer (a thread of its own: the writes and syncs block).
pub struct Audit {
    tx: mpsc::Sender<Job>,
}

impl Audit {
    /// Open (append to) the log at `path`.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new().name("audit-log".into()).spawn(move || {
            while let Ok(first) = rx.recv() {
                let mut batch = vec![first];
                batch.extend(rx.try_iter());
                let mut result = Ok(());
                for (line, _) in &batch {
                    if let Err(e) = file.write_all(line) {
                        result = Err(e.to_string());
                        break;
                    }
                }
                let result = result.and_then(|()| file.sync_data().map_err(|e| e.to_string()));
                for (_, ack) in batch {
                    let _ = ack.send(result.clone());
                }
            }
        })?;
        Ok(Audit { tx })
    }

    /// Record `entry`; returns once it is on disk.
    pub async fn record(&self, entry: &Entry<'_>) -> Result<(), String> {
        tracing::info!(target: "guardian::audit", front = entry.front, action = entry.action,
            namespace = entry.namespace, key = entry.key, by = %entry.by, version = entry.version, "audit");
        let mut line = serde_json::to_vec(entry).map_err(|e| e.to_string())?;
        line.push(b'\n');
        let (ack, done) = oneshot::channel();
        self.tx.send((line, ack)).map_err(|_| "the audit log writer stopped".to_string())?;
        done.await.map_err(|_| "the audit log writer stopped".to_string())?.map_err(|e| format!("audit log: {e}"))
    }
}
