//! The Raft log on sled, sealed.
//!
//! Entries live in the `log` tree keyed by big-endian u64 index, so sled's
//! byte order is log order and an index range is a key range. The vote, the
//! committed log id and the last purged log id live in the `meta` tree.
//!
//! Why flush before acknowledging: Raft is only safe if a node never forgets a
//! vote it cast or an entry it told the leader it holds. sled makes writes
//! durable only on flush, so `append` calls `LogFlushed::log_io_completed`
//! only after `flush_async` returned Ok, and `save_vote`, `truncate` and
//! `purge` flush before they return.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{LogId, StorageError, StorageIOError, Vote};
use sled::transaction::ConflictableTransactionError;
use sled::Transactional;

use super::seal::{SealedTree, Sealer};
use super::StoreError;
use crate::raft::types::TypeConfig;

type Entry = openraft::Entry<TypeConfig>;
type StorageResult<T> = Result<T, StorageError<u64>>;

const VOTE: &[u8] = b"vote";
const COMMITTED: &[u8] = b"committed";
const LAST_PURGED: &[u8] = b"last_purged";

/// The Raft log store. Clones share the sled database (the log reader is one).
#[derive(Clone)]
pub struct LogStore {
    log: SealedTree,
    meta: SealedTree,
}

fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

fn bound_key(b: Bound<&u64>) -> Bound<[u8; 8]> {
    match b {
        Bound::Included(i) => Bound::Included(index_key(*i)),
        Bound::Excluded(i) => Bound::Excluded(index_key(*i)),
        Bound::Unbounded => Bound::Unbounded,
    }
}

impl LogStore {
    pub(crate) fn open(db: &sled::Db, sealer: Arc<dyn Sealer>) -> Result<Self, StoreError> {
        Ok(Self { log: SealedTree::open(db, "log", sealer.clone())?, meta: SealedTree::open(db, "meta", sealer)? })
    }

    /// Unseals and parses the entry stored at `key`, checking it is the entry
    /// for that index.
    fn decode(&self, key: &[u8], sealed: &[u8]) -> Result<Entry, StoreError> {
        let entry: Entry = self.log.unseal_json(key, sealed)?;
        if index_key(entry.log_id.index)[..] != *key {
            return Err(StoreError::corrupt(self.log.describe(key), format!("holds entry {}", entry.log_id)));
        }
        Ok(entry)
    }

    fn read_range(&self, range: impl RangeBounds<u64>) -> Result<Vec<Entry>, StoreError> {
        let range = (bound_key(range.start_bound()), bound_key(range.end_bound()));
        self.log
            .raw()
            .range::<[u8; 8], _>(range)
            .map(|kv| {
                let (k, v) = kv?;
                self.decode(&k, &v)
            })
            .collect()
    }

    fn log_state(&self) -> Result<LogState<TypeConfig>, StoreError> {
        let last_purged_log_id: Option<LogId<u64>> = self.meta.get_json(LAST_PURGED)?;
        let last = match self.log.raw().last()? {
            Some((k, v)) => Some(self.decode(&k, &v)?.log_id),
            None => None,
        };
        Ok(LogState { last_log_id: last.or(last_purged_log_id), last_purged_log_id })
    }

    /// Writes the entries in one atomic batch (not yet durable).
    fn write_entries(&self, entries: impl IntoIterator<Item = Entry>) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for entry in entries {
            let key = index_key(entry.log_id.index);
            batch.insert(&key[..], self.log.seal_json(&key, &entry)?);
        }
        self.log.raw().apply_batch(batch)?;
        Ok(())
    }

    fn keys_in(&self, range: (Bound<[u8; 8]>, Bound<[u8; 8]>)) -> Result<Vec<sled::IVec>, StoreError> {
        Ok(self.log.raw().range::<[u8; 8], _>(range).keys().collect::<Result<_, _>>()?)
    }

    /// Removes entries with index >= `index`, durably.
    async fn truncate_from(&self, index: u64) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for k in self.keys_in((Bound::Included(index_key(index)), Bound::Unbounded))? {
            batch.remove(k);
        }
        self.log.raw().apply_batch(batch)?;
        self.log.flush().await
    }

    /// Records `upto` as last purged and removes entries up to it, atomically
    /// and durably (so a crash cannot leave a purged id with a hole before it).
    async fn purge_upto(&self, upto: &LogId<u64>) -> Result<(), StoreError> {
        let keys = self.keys_in((Bound::Unbounded, Bound::Included(index_key(upto.index))))?;
        let sealed = self.meta.seal_json(LAST_PURGED, upto)?;
        (self.log.raw(), self.meta.raw()).transaction(|(log, meta)| {
            meta.insert(LAST_PURGED, sealed.clone())?;
            for k in &keys {
                log.remove(k)?;
            }
            Ok::<(), ConflictableTransactionError>(())
        })?;
        self.meta.flush().await
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    #[tracing::instrument(level = "trace", skip(self))]
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> StorageResult<Vec<Entry>> {
        Ok(self.read_range(range).map_err(|e| StorageIOError::read_logs(&e))?)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> StorageResult<LogState<TypeConfig>> {
        Ok(self.log_state().map_err(|e| StorageIOError::read_logs(&e))?)
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    #[tracing::instrument(level = "debug", skip(self))]
    async fn save_vote(&mut self, vote: &Vote<u64>) -> StorageResult<()> {
        self.meta.insert_json(VOTE, vote).map_err(|e| StorageIOError::write_vote(&e))?;
        self.meta.flush().await.map_err(|e| StorageIOError::write_vote(&e))?;
        Ok(())
    }

    async fn read_vote(&mut self) -> StorageResult<Option<Vote<u64>>> {
        Ok(self.meta.get_json(VOTE).map_err(|e| StorageIOError::read_vote(&e))?)
    }

    /// Not flushed here: it becomes durable with the next flush, and openraft
    /// does not require it since `apply` persists the state machine.
    async fn save_committed(&mut self, committed: Option<LogId<u64>>) -> StorageResult<()> {
        let res = match committed {
            Some(c) => self.meta.insert_json(COMMITTED, &c),
            None => self.meta.raw().remove(COMMITTED).map(|_| ()).map_err(StoreError::from),
        };
        res.map_err(|e| StorageIOError::write(&e))?;
        Ok(())
    }

    async fn read_committed(&mut self) -> StorageResult<Option<LogId<u64>>> {
        Ok(self.meta.get_json(COMMITTED).map_err(|e| StorageIOError::read(&e))?)
    }

    #[tracing::instrument(level = "trace", skip_all)]
    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> StorageResult<()>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        self.write_entries(entries).map_err(|e| StorageIOError::write_logs(&e))?;
        // Entries are readable now; acknowledge only once they are on disk.
        match self.log.flush().await {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(StorageIOError::write_logs(&e).into())
            }
        }
    }

    #[tracing::instrument(level = "debug", skip(self))]
    async fn truncate(&mut self, log_id: LogId<u64>) -> StorageResult<()> {
        self.truncate_from(log_id.index).await.map_err(|e| StorageIOError::write_logs(&e))?;
        Ok(())
    }

    #[tracing::instrument(level = "debug", skip(self))]
    async fn purge(&mut self, log_id: LogId<u64>) -> StorageResult<()> {
        self.purge_upto(&log_id).await.map_err(|e| StorageIOError::write_logs(&e))?;
        Ok(())
    }
}
