//! The Raft state machine on sled, sealed.
//!
//! It holds the [`ClusterState`], the last applied log id and the last
//! membership. After each `apply` batch it writes all three (sealed, under one
//! key, so they change together) to the `sm` tree and flushes before
//! returning: a restart resumes at the last applied entry and never applies
//! an entry twice, and openraft replays the log from there.
//!
//! A snapshot is those same three values as JSON; the last one built or
//! installed is kept sealed in the `snapshot` tree. A snapshot received from a
//! peer is untrusted input: a malformed one yields a `StorageError`, never a
//! panic.

use std::io::Cursor;
use std::sync::{Arc, PoisonError, RwLock};

use openraft::storage::RaftStateMachine;
use openraft::{
    EntryPayload, LogId, RaftSnapshotBuilder, Snapshot, SnapshotMeta, StorageError, StorageIOError, StoredMembership,
};
use serde::{Deserialize, Serialize};
use sled::transaction::ConflictableTransactionError;
use sled::Transactional;
use zeroize::Zeroizing;

use super::seal::{SealedTree, Sealer};
use super::StoreError;
use crate::raft::types::{NodeAddr, TypeConfig};
use crate::state::{Applier, ClusterState, Response};

type Entry = openraft::Entry<TypeConfig>;
type Meta = SnapshotMeta<u64, NodeAddr>;
type StorageResult<T> = Result<T, StorageError<u64>>;

const APPLIED: &[u8] = b"applied";
const CURRENT: &[u8] = b"current";

/// What the state machine persists and what a snapshot carries.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct SmData {
    state: ClusterState,
    last_applied: Option<LogId<u64>>,
    last_membership: StoredMembership<u64, NodeAddr>,
}

/// A read-only handle on the applied state, for the rest of the daemon
/// (handshake checks, status). Updated after each persisted apply batch.
#[derive(Clone)]
pub struct StateView(Arc<RwLock<SmData>>);

impl StateView {
    fn read<R>(&self, f: impl FnOnce(&SmData) -> R) -> R {
        f(&self.0.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// A copy of the current state.
    pub fn state(&self) -> ClusterState {
        self.read(|d| d.state.clone())
    }

    /// Runs `f` on the current state without copying it.
    pub fn with_state<R>(&self, f: impl FnOnce(&ClusterState) -> R) -> R {
        self.read(|d| f(&d.state))
    }

    pub fn last_applied(&self) -> Option<LogId<u64>> {
        self.read(|d| d.last_applied)
    }

    pub fn last_membership(&self) -> StoredMembership<u64, NodeAddr> {
        self.read(|d| d.last_membership.clone())
    }
}

/// The state machine store. It is its own snapshot builder: the builder is a
/// clone holding a frozen copy of the state (a point-in-time view).
#[derive(Clone)]
pub struct StateMachineStore {
    data: StateView,
    sm: SealedTree,
    snapshots: SealedTree,
    db: sled::Db,
    applier: Arc<dyn Applier>,
}

impl StateMachineStore {
    pub(crate) fn open(db: &sled::Db, sealer: Arc<dyn Sealer>, applier: Arc<dyn Applier>) -> Result<Self, StoreError> {
        let sm = SealedTree::open(db, "sm", sealer.clone())?;
        let snapshots = SealedTree::open(db, "snapshot", sealer)?;
        let data: SmData = sm.get_json(APPLIED)?.unwrap_or_default();
        Ok(Self { data: StateView(Arc::new(RwLock::new(data))), sm, snapshots, db: db.clone(), applier })
    }

    /// A read-only handle on the applied state; keep one before handing the
    /// store to `Raft::new`.
    pub fn view(&self) -> StateView {
        self.data.clone()
    }

    fn current(&self) -> SmData {
        self.data.read(Clone::clone)
    }

    fn replace(&self, data: SmData) {
        *self.data.0.write().unwrap_or_else(PoisonError::into_inner) = data;
    }

    async fn persist(&self, data: &SmData) -> Result<(), StoreError> {
        self.sm.insert_json(APPLIED, data)?;
        self.sm.flush().await
    }

    fn stored_snapshot(&self) -> Result<Option<(Meta, Vec<u8>)>, StoreError> {
        match self.snapshots.raw().get(CURRENT)? {
            Some(sealed) => unframe(&self.snapshots.unseal_value(CURRENT, &sealed)?).map(Some),
            None => Ok(None),
        }
    }

    #[tracing::instrument(skip_all)]
    async fn build(&self) -> Result<Snapshot<TypeConfig>, StoreError> {
        let data = self.current();
        let bytes = Zeroizing::new(serde_json::to_vec(&data).map_err(|e| StoreError::corrupt("snapshot", e))?);
        let index = data.last_applied.map_or_else(|| "none".to_string(), |l| l.index.to_string());
        let meta = Meta {
            last_log_id: data.last_applied,
            last_membership: data.last_membership.clone(),
            snapshot_id: format!("{index}-{}", self.db.generate_id()?),
        };
        // Keep a newer snapshot installed while this one was being built.
        let newer_stored = matches!(self.stored_snapshot()?, Some((m, _)) if m.last_log_id > meta.last_log_id);
        if !newer_stored {
            let sealed = self.snapshots.seal_value(CURRENT, &frame(&meta, &bytes)?)?;
            self.snapshots.raw().insert(CURRENT, sealed)?;
            self.snapshots.flush().await?;
        }
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(bytes.to_vec())) })
    }

    #[tracing::instrument(skip_all)]
    async fn install(&self, meta: &Meta, data: SmData, bytes: &[u8]) -> Result<(), StoreError> {
        let sealed_state = self.sm.seal_json(APPLIED, &data)?;
        let sealed_snap = self.snapshots.seal_value(CURRENT, &frame(meta, bytes)?)?;
        (self.sm.raw(), self.snapshots.raw()).transaction(|(sm, snap)| {
            sm.insert(APPLIED, sealed_state.clone())?;
            snap.insert(CURRENT, sealed_snap.clone())?;
            Ok::<(), ConflictableTransactionError>(())
        })?;
        self.sm.flush().await?;
        self.replace(data);
        Ok(())
    }
}

/// Parses snapshot data received from a peer and checks it matches its meta.
#[tracing::instrument(skip_all)]
fn parse_snapshot(meta: &Meta, bytes: &[u8]) -> Result<SmData, StoreError> {
    let what = format!("snapshot {} from peer", meta.snapshot_id);
    let data: SmData = serde_json::from_slice(bytes).map_err(|e| StoreError::corrupt(&what, e))?;
    if data.last_applied != meta.last_log_id || data.last_membership != meta.last_membership {
        return Err(StoreError::corrupt(what, "data does not match the snapshot meta"));
    }
    Ok(data)
}

/// Stored snapshot value: u32 BE meta length ‖ meta JSON ‖ data.
fn frame(meta: &Meta, data: &[u8]) -> Result<Zeroizing<Vec<u8>>, StoreError> {
    let m = serde_json::to_vec(meta).map_err(|e| StoreError::corrupt("snapshot meta", e))?;
    let len = u32::try_from(m.len()).map_err(|_| StoreError::corrupt("snapshot meta", "too large"))?;
    let mut out = Zeroizing::new(Vec::with_capacity(4 + m.len() + data.len()));
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&m);
    out.extend_from_slice(data);
    Ok(out)
}

fn unframe(bytes: &[u8]) -> Result<(Meta, Vec<u8>), StoreError> {
    let bad = |reason: String| StoreError::corrupt("snapshot/current", reason);
    let (len, rest) = bytes.split_first_chunk::<4>().ok_or_else(|| bad("too short".into()))?;
    let len = u32::from_be_bytes(*len) as usize;
    if rest.len() < len {
        return Err(bad("meta length exceeds value".into()));
    }
    let (m, data) = rest.split_at(len);
    let meta = serde_json::from_slice(m).map_err(|e| bad(e.to_string()))?;
    Ok((meta, data.to_vec()))
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> StorageResult<Snapshot<TypeConfig>> {
        Ok(self.build().await.map_err(|e| StorageIOError::write_snapshot(None, &e))?)
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = StateMachineStore;

    async fn applied_state(&mut self) -> StorageResult<(Option<LogId<u64>>, StoredMembership<u64, NodeAddr>)> {
        Ok(self.data.read(|d| (d.last_applied, d.last_membership.clone())))
    }

    #[tracing::instrument(level = "trace", skip_all)]
    async fn apply<I>(&mut self, entries: I) -> StorageResult<Vec<Response>>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        // Apply to a copy; publish it only once it is durable.
        let mut work = self.current();
        let mut replies = Vec::new();
        for entry in entries {
            work.last_applied = Some(entry.log_id);
            replies.push(match entry.payload {
                EntryPayload::Blank => Response::Applied,
                EntryPayload::Normal(cmd) => self.applier.apply(&mut work.state, &cmd),
                EntryPayload::Membership(m) => {
                    work.last_membership = StoredMembership::new(Some(entry.log_id), m);
                    Response::Applied
                }
            });
        }
        if replies.is_empty() {
            return Ok(replies);
        }
        self.persist(&work).await.map_err(|e| StorageIOError::write_state_machine(&e))?;
        self.replace(work);
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        Self { data: StateView(Arc::new(RwLock::new(self.current()))), ..self.clone() }
    }

    async fn begin_receiving_snapshot(&mut self) -> StorageResult<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(&mut self, meta: &Meta, snapshot: Box<Cursor<Vec<u8>>>) -> StorageResult<()> {
        let bytes = Zeroizing::new(snapshot.into_inner());
        let data =
            parse_snapshot(meta, &bytes).map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?;
        self.install(meta, data, &bytes)
            .await
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        tracing::info!(snapshot = %meta.snapshot_id, "installed snapshot");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> StorageResult<Option<Snapshot<TypeConfig>>> {
        let stored = self.stored_snapshot().map_err(|e| StorageIOError::read_snapshot(None, &e))?;
        Ok(stored.map(|(meta, data)| Snapshot { meta, snapshot: Box::new(Cursor::new(data)) }))
    }
}
