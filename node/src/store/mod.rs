//! Persistent, sealed storage (sled): the Raft log and the state machine.
//!
//! Every value is sealed ([`seal`]) before it reaches sled, so the data
//! directory alone shows keys (log indexes, fixed names) but no plaintext, and
//! a modified value fails to read instead of being trusted.
//!
//! # Layout
//!
//! `open(dir, ..)` uses one sled database at `<dir>/sled/` with these trees
//! (key → sealed value, AAD = tree name ‖ 0 ‖ key):
//! - `log`: big-endian u64 index → serde_json of `openraft::Entry<TypeConfig>`.
//! - `meta`: `vote`, `committed`, `last_purged` → serde_json of the openraft
//!   value; `seal_check` → the sealer kind, unsealed at open so a wrong key
//!   fails early and clearly.
//! - `sm`: `applied` → serde_json of {state, last_applied, last_membership}.
//! - `snapshot`: `current` → the last built or installed snapshot
//!   (u32 BE meta length ‖ meta JSON ‖ data).
//! - `secrets`: this node's threshold shares and ceremony material
//!   ([`SecretStore`]); never replicated.
//!
//! With [`DevFileSealer`] (INSECURE), `<dir>/dev-sealer.key` holds the key.
//! With `TpmSealer` (feature `tpm-sealer`), `<dir>/tpm-sealed-key.bin` holds
//! the data key sealed by the TPM (useless without that TPM).
//!
//! # Durability
//!
//! sled makes writes durable only on flush. Each write openraft relies on
//! flushes before it is reported done: `append` (before `LogFlushed`),
//! `save_vote`, `truncate`, `purge`, `apply`, `install_snapshot` and
//! `build_snapshot`. `save_committed` rides on the next flush (optional in
//! openraft, since `apply` persists the state machine).

mod log;
pub mod seal;
mod secrets;
mod sm;
#[cfg(test)]
mod tests;
#[cfg(feature = "tpm-sealer")]
pub mod tpm;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use self::log::LogStore;
pub use self::seal::{open_sealer, DevFileSealer, SealedTree, Sealer, SealerConfig, TpmError};
pub use self::secrets::SecretStore;
pub use self::sm::{StateMachineStore, StateView};
use crate::state::Applier;

/// What went wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("i/o error on {}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    #[error("cannot unseal {what}: tampered with, truncated, or sealed with another key")]
    Seal { what: String },
    #[error("cannot seal {what}")]
    SealFailed { what: String },
    #[error("sealing key: {0}")]
    Key(String),
    #[error("corrupt {what}: {reason}")]
    Corrupt { what: String, reason: String },
    #[error(transparent)]
    Tpm(#[from] TpmError),
}

impl StoreError {
    pub(crate) fn corrupt(what: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        StoreError::Corrupt { what: what.into(), reason: reason.to_string() }
    }
}

impl From<sled::transaction::TransactionError> for StoreError {
    fn from(e: sled::transaction::TransactionError) -> Self {
        match e {
            sled::transaction::TransactionError::Abort(e) | sled::transaction::TransactionError::Storage(e) => {
                StoreError::Sled(e)
            }
        }
    }
}

const SEAL_CHECK: &[u8] = b"seal_check";

/// Opens (creating if needed) the store in `dir`: the Raft log and the state
/// machine share one sled database at `<dir>/sled`.
///
/// Fails with [`StoreError::Seal`] if the data was sealed with another key.
pub fn open(
    dir: &Path,
    sealer: Arc<dyn Sealer>,
    applier: Arc<dyn Applier>,
) -> Result<(LogStore, StateMachineStore, SecretStore), StoreError> {
    std::fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
    let db = sled::Config::new().path(dir.join("sled")).open()?;

    let meta = SealedTree::open(&db, "meta", sealer.clone())?;
    match meta.raw().get(SEAL_CHECK)? {
        Some(sealed) => {
            meta.unseal_value(SEAL_CHECK, &sealed)?;
        }
        None => {
            meta.raw().insert(SEAL_CHECK, meta.seal_value(SEAL_CHECK, sealer.kind().as_bytes())?)?;
            db.flush()?;
        }
    }
    tracing::info!(dir = %dir.display(), sealer = sealer.kind(), "store opened");

    let log = LogStore::open(&db, sealer.clone())?;
    let sm = StateMachineStore::open(&db, sealer.clone(), applier)?;
    let secrets = SecretStore::open(&db, sealer)?;
    Ok((log, sm, secrets))
}
