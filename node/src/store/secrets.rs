//! This node's threshold secrets, sealed: its key shares per epoch, its
//! dealer polynomials and the shares dealt to it during a ceremony, and the
//! namespace secrets it derived. Each write is flushed before it returns, so
//! a share a node announced (`Done`) or a polynomial it committed to (`Deal`)
//! survives a crash.
//!
//! Keys (in the clear; they name, never reveal):
//! - `share/<epoch BE>`: this node's BLS and FROST shares of that epoch;
//! - `dealer/<session>`: the polynomials it deals in that session;
//! - `recv/<session>/<dealer BE>`: the signed secret deal it received;
//! - `ns/<namespace>/<version BE>`: a derived namespace secret.

use std::sync::Arc;

use zeroize::Zeroizing;

use super::seal::{SealedTree, Sealer};
use super::StoreError;

/// Sealed node-local secrets, in the `secrets` tree of the node's database.
#[derive(Clone)]
pub struct SecretStore {
    tree: Arc<SealedTree>,
    db: sled::Db,
}

impl SecretStore {
    pub(crate) fn open(db: &sled::Db, sealer: Arc<dyn Sealer>) -> Result<Self, StoreError> {
        Ok(SecretStore { tree: Arc::new(SealedTree::open(db, "secrets", sealer)?), db: db.clone() })
    }

    /// Seal and store `value` under `key`, durably.
    pub fn put(&self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.tree.raw().insert(key, self.tree.seal_value(key, value)?)?;
        self.db.flush()?;
        Ok(())
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<Zeroizing<Vec<u8>>>, StoreError> {
        match self.tree.raw().get(key)? {
            Some(sealed) => Ok(Some(self.tree.unseal_value(key, &sealed)?)),
            None => Ok(None),
        }
    }

    /// Keys starting with `prefix`.
    pub fn keys(&self, prefix: &[u8]) -> Result<Vec<Vec<u8>>, StoreError> {
        self.tree.raw().scan_prefix(prefix).keys().map(|k| Ok(k?.to_vec())).collect()
    }

    /// Remove every key starting with `prefix`, durably.
    pub fn remove_prefix(&self, prefix: &[u8]) -> Result<(), StoreError> {
        let keys = self.keys(prefix)?;
        for key in &keys {
            self.tree.raw().remove(key)?;
        }
        if !keys.is_empty() {
            self.db.flush()?;
        }
        Ok(())
    }
}
