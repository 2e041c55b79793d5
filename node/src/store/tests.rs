//! Store tests: openraft's own storage suite, restart, no plaintext on disk,
//! tampering, snapshot transfer.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{
    CommittedLeaderId, EntryPayload, LogId, Membership, RaftLogReader, RaftSnapshotBuilder, StorageError, Vote,
};
use tempfile::TempDir;

use super::seal::{DEV_KEY_FILE, TPM_KEY_FILE};
use super::*;
use crate::raft::types::{NodeAddr, TypeConfig};
use crate::state::{Applier, ClusterState, Command, Response};

type Entry = openraft::Entry<TypeConfig>;

/// Counts admin commands so that applying visibly changes the state.
pub(super) struct CountingApplier;

impl Applier for CountingApplier {
    fn apply(&self, state: &mut ClusterState, cmd: &Command) -> Response {
        if let Command::Admin { .. } = cmd {
            state.admin_commands_applied += 1;
        }
        Response::Applied
    }
}

fn try_open_in(dir: &Path, key_dir: &Path) -> Result<(LogStore, StateMachineStore), StoreError> {
    let sealer = Arc::new(DevFileSealer::open_insecure(key_dir)?);
    open(dir, sealer, Arc::new(CountingApplier)).map(|(log, sm, _)| (log, sm))
}

fn open_in(dir: &Path) -> (LogStore, StateMachineStore) {
    try_open_in(dir, dir).expect("open store")
}

fn log_id(term: u64, index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

fn blank(term: u64, index: u64) -> Entry {
    Entry { log_id: log_id(term, index), payload: EntryPayload::Blank }
}

fn admin(term: u64, index: u64, signed: Vec<u8>) -> Entry {
    Entry { log_id: log_id(term, index), payload: EntryPayload::Normal(Command::Admin { signed, proposed_at: 7 }) }
}

fn membership(term: u64, index: u64, addr: &str) -> Entry {
    let nodes: BTreeMap<u64, NodeAddr> =
        [(1, NodeAddr { addr: addr.to_string() }), (2, NodeAddr { addr: "10.0.0.2:7000".into() })].into();
    let voters: BTreeSet<u64> = [1, 2].into();
    Entry { log_id: log_id(term, index), payload: EntryPayload::Membership(Membership::new(vec![voters], nodes)) }
}

/// Gives openraft's suite a fresh store in its own temp dir per test.
struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for Builder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachineStore), StorageError<u64>> {
        let dir = TempDir::new().expect("tempdir");
        let (log, sm) = open_in(dir.path());
        Ok((dir, log, sm))
    }
}

/// openraft's storage-v2 test suite (it runs its own tokio runtimes).
#[test]
fn openraft_storage_suite() {
    Suite::test_all(Builder).expect("openraft storage suite");
}

#[tokio::test]
async fn reopen_restores_everything() {
    let dir = TempDir::new().unwrap();
    let entries = vec![blank(1, 1), membership(1, 2, "10.0.0.1:7000"), admin(1, 3, b"cmd".to_vec())];
    let vote = Vote::new_committed(1, 1);
    {
        let (mut log, mut sm) = open_in(dir.path());
        log.blocking_append(entries.clone()).await.unwrap();
        log.save_vote(&vote).await.unwrap();
        log.save_committed(Some(log_id(1, 3))).await.unwrap();
        let replies = sm.apply(entries.clone()).await.unwrap();
        assert_eq!(replies, vec![Response::Applied; 3]);
    } // everything dropped: sled releases its lock

    let (mut log, mut sm) = open_in(dir.path());
    assert_eq!(log.try_get_log_entries(..).await.unwrap(), entries);
    assert_eq!(log.read_vote().await.unwrap(), Some(vote));
    assert_eq!(log.read_committed().await.unwrap(), Some(log_id(1, 3)));
    let state = log.get_log_state().await.unwrap();
    assert_eq!((state.last_purged_log_id, state.last_log_id), (None, Some(log_id(1, 3))));

    let (applied, mem) = sm.applied_state().await.unwrap();
    assert_eq!(applied, Some(log_id(1, 3)));
    assert_eq!(*mem.log_id(), Some(log_id(1, 2)));
    assert_eq!(mem.membership().get_node(&1), Some(&NodeAddr { addr: "10.0.0.1:7000".into() }));
    // Applied once, not re-applied on open.
    assert_eq!(sm.view().state().admin_commands_applied, 1);
    assert_eq!(sm.view().last_applied(), Some(log_id(1, 3)));
}

pub(super) fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

pub(super) fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

const MARKER: &[u8] = b"GUARDIAN-PLAINTEXT-MARKER";
const ADDR: &str = "GUARDIAN-ADDR-MARKER:7000";

/// Writes marker-laden entries, vote, committed, state and a snapshot, then
/// drops the stores. Returns the marker payload used.
pub(super) async fn write_markers(log: &mut LogStore, sm: &mut StateMachineStore) -> Vec<u8> {
    let signed = MARKER.repeat(8);
    let entries: Vec<Entry> =
        std::iter::once(membership(1, 1, ADDR)).chain((2..=20).map(|i| admin(1, i, signed.clone()))).collect();
    log.blocking_append(entries.clone()).await.unwrap();
    log.save_vote(&Vote::new(1, 1)).await.unwrap();
    log.save_committed(Some(log_id(1, 20))).await.unwrap();
    sm.apply(entries).await.unwrap();
    let snap = sm.get_snapshot_builder().await.build_snapshot().await.unwrap();
    // Sanity: the markers really are in what was stored.
    assert!(contains(snap.snapshot.get_ref(), ADDR.as_bytes()));
    let back = log.try_get_log_entries(2..3).await.unwrap();
    assert!(matches!(&back[0].payload, EntryPayload::Normal(Command::Admin { signed: s, .. }) if *s == signed));
    signed
}

/// Which plaintext needles appear in which file under `dir` (skipping the dev
/// key file; fails on any file outside `sled/` but the sealers' key files).
pub(super) fn plaintext_findings(dir: &Path, extra: &[(&str, Vec<u8>)]) -> Vec<String> {
    let mut needles: Vec<(&str, Vec<u8>)> = vec![
        ("marker", MARKER.to_vec()),
        ("hex marker", hex::encode(MARKER).into_bytes()),
        ("HEX marker", hex::encode_upper(MARKER).into_bytes()),
        ("node address", ADDR.as_bytes().to_vec()),
        ("state field name", b"admin_commands_applied".to_vec()),
        ("log id field name", b"leader_id".to_vec()),
    ];
    needles.extend_from_slice(extra);
    let mut found = Vec::new();
    for f in files_under(dir) {
        let rel = f.strip_prefix(dir).unwrap();
        if rel == Path::new(DEV_KEY_FILE) {
            continue;
        }
        assert!(rel.starts_with("sled") || rel == Path::new(TPM_KEY_FILE), "unexpected file {}", rel.display());
        let bytes = std::fs::read(&f).unwrap();
        for (what, n) in &needles {
            if contains(&bytes, n) {
                found.push(format!("{what} in {}", rel.display()));
            }
        }
    }
    found
}

#[tokio::test]
async fn data_dir_holds_no_plaintext() {
    let dir = TempDir::new().unwrap();
    {
        let (mut log, mut sm) = open_in(dir.path());
        write_markers(&mut log, &mut sm).await;
    }

    // The dev key file: 32 bytes, mode 0600, the only file outside sled's own.
    let key_path = dir.path().join(DEV_KEY_FILE);
    let key = std::fs::read(&key_path).unwrap();
    assert_eq!(key.len(), 32);
    assert_eq!(std::fs::metadata(&key_path).unwrap().permissions().mode() & 0o777, 0o600);

    let found = plaintext_findings(dir.path(), &[("sealing key", key)]);
    assert!(found.is_empty(), "plaintext on disk: {found:?}");
    let db_bytes: u64 = files_under(&dir.path().join("sled")).iter().map(|f| f.metadata().unwrap().len()).sum();
    assert!(db_bytes > 20 * 8 * MARKER.len() as u64, "sled wrote only {db_bytes} bytes");
}

/// Control for the scan above: with a sealer that does not encrypt, it finds
/// the markers (so an empty result there means something).
#[tokio::test]
async fn plaintext_scan_detects_unsealed_data() {
    struct Identity;
    impl Sealer for Identity {
        fn kind(&self) -> &'static str {
            "identity"
        }
        fn seal(&self, _aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, StoreError> {
            Ok(plaintext.to_vec())
        }
        fn unseal(&self, _aad: &[u8], sealed: &[u8]) -> Result<zeroize::Zeroizing<Vec<u8>>, StoreError> {
            Ok(zeroize::Zeroizing::new(sealed.to_vec()))
        }
    }
    let dir = TempDir::new().unwrap();
    {
        let (mut log, mut sm, _) = open(dir.path(), Arc::new(Identity), Arc::new(CountingApplier)).unwrap();
        write_markers(&mut log, &mut sm).await;
    }
    let found = plaintext_findings(dir.path(), &[]);
    for what in ["hex marker", "node address", "state field name"] {
        assert!(found.iter().any(|f| f.starts_with(what)), "{what} not detected: {found:?}");
    }
}

/// Rewrites one raw (sealed) value in the closed store.
fn tamper(dir: &Path, tree: &str, key: &[u8], f: impl FnOnce(&mut Vec<u8>)) {
    let db = sled::open(dir.join("sled")).unwrap();
    let t = db.open_tree(tree).unwrap();
    let mut v = t.get(key).unwrap().expect("value to tamper with").to_vec();
    f(&mut v);
    t.insert(key, v).unwrap();
    db.flush().unwrap();
}

async fn populated(dir: &Path) {
    let (mut log, mut sm) = open_in(dir);
    let entries = vec![blank(1, 1), admin(1, 2, b"a".to_vec()), admin(1, 3, b"b".to_vec())];
    log.blocking_append(entries.clone()).await.unwrap();
    log.save_vote(&Vote::new(1, 1)).await.unwrap();
    sm.apply(entries).await.unwrap();
}

#[tokio::test]
async fn tampered_values_are_refused() {
    let dir = TempDir::new().unwrap();
    populated(dir.path()).await;

    // A flipped bit in log entry 2.
    tamper(dir.path(), "log", &2u64.to_be_bytes(), |v| v[20] ^= 1);
    {
        let (mut log, _sm) = open_in(dir.path());
        let err = log.try_get_log_entries(..).await.unwrap_err();
        assert!(err.to_string().contains("cannot unseal log/0000000000000002"), "{err}");
        assert_eq!(log.try_get_log_entries(1..2).await.unwrap().len(), 1, "entry 1 still reads");
        assert!(log.get_log_state().await.is_ok(), "last entry (3) is intact");
    }

    // A valid sealed value moved to another key (AAD binds tree and key).
    let db = sled::open(dir.path().join("sled")).unwrap();
    let moved = db.open_tree("log").unwrap().get(1u64.to_be_bytes()).unwrap().unwrap();
    db.open_tree("log").unwrap().insert(3u64.to_be_bytes(), moved).unwrap();
    db.flush().unwrap();
    drop(db);
    {
        let (mut log, _sm) = open_in(dir.path());
        let err = log.get_log_state().await.unwrap_err();
        assert!(err.to_string().contains("cannot unseal log/0000000000000003"), "{err}");
    }

    // A truncated vote.
    tamper(dir.path(), "meta", b"vote", |v| v.truncate(3));
    {
        let (mut log, _sm) = open_in(dir.path());
        let err = log.read_vote().await.unwrap_err();
        assert!(err.to_string().contains("cannot unseal meta/vote"), "{err}");
    }

    // Tampered state machine: refused at open.
    tamper(dir.path(), "sm", b"applied", |v| {
        let last = v.len() - 1;
        v[last] ^= 0x80
    });
    match try_open_in(dir.path(), dir.path()) {
        Err(StoreError::Seal { what }) => assert_eq!(what, "sm/applied"),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("tampered state machine was accepted"),
    }
}

#[tokio::test]
async fn wrong_key_is_refused_at_open() {
    let dir = TempDir::new().unwrap();
    let other_key = TempDir::new().unwrap();
    populated(dir.path()).await;
    match try_open_in(dir.path(), other_key.path()) {
        Err(StoreError::Seal { what }) => assert_eq!(what, "meta/seal_check"),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("opened with the wrong key"),
    }
}

#[test]
fn key_file_open_to_others_is_refused() {
    let dir = TempDir::new().unwrap();
    DevFileSealer::open_insecure(dir.path()).unwrap();
    let key_path = dir.path().join(DEV_KEY_FILE);
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(matches!(DevFileSealer::open_insecure(dir.path()), Err(StoreError::Key(_))));
}

#[tokio::test]
async fn snapshot_installs_into_fresh_store() {
    let leader_dir = TempDir::new().unwrap();
    let follower_dir = TempDir::new().unwrap();
    let (_llog, mut leader) = open_in(leader_dir.path());
    leader
        .apply([membership(1, 1, "10.0.0.1:7000"), admin(1, 2, b"x".to_vec()), admin(1, 3, b"y".to_vec()), blank(2, 4)])
        .await
        .unwrap();
    let snap = leader.get_snapshot_builder().await.build_snapshot().await.unwrap();
    assert_eq!(snap.meta.last_log_id, Some(log_id(2, 4)));
    assert!(snap.meta.snapshot_id.starts_with("4-"), "{}", snap.meta.snapshot_id);
    let stored = leader.get_current_snapshot().await.unwrap().expect("stored snapshot");
    assert_eq!(stored.meta, snap.meta);

    {
        let (_flog, mut follower) = open_in(follower_dir.path());
        let mut buf = follower.begin_receiving_snapshot().await.unwrap();
        *buf = (*snap.snapshot).clone();
        follower.install_snapshot(&snap.meta, buf).await.unwrap();
        assert_eq!(follower.view().state(), leader.view().state());
        assert_eq!(follower.view().state().admin_commands_applied, 2);
        assert_eq!(follower.applied_state().await.unwrap(), leader.applied_state().await.unwrap());
    }
    // Survives a restart, snapshot included.
    let (_flog, mut follower) = open_in(follower_dir.path());
    assert_eq!(follower.view().state(), leader.view().state());
    let current = follower.get_current_snapshot().await.unwrap().expect("installed snapshot");
    assert_eq!(current.meta, snap.meta);
    assert_eq!(current.snapshot.get_ref(), snap.snapshot.get_ref());
}

#[tokio::test]
async fn snapshot_builder_is_point_in_time() {
    let dir = TempDir::new().unwrap();
    let (_log, mut sm) = open_in(dir.path());
    sm.apply([blank(1, 1), admin(1, 2, b"x".to_vec())]).await.unwrap();
    let mut builder = sm.get_snapshot_builder().await;
    sm.apply([admin(1, 3, b"y".to_vec())]).await.unwrap();
    let snap = builder.build_snapshot().await.unwrap();
    assert_eq!(snap.meta.last_log_id, Some(log_id(1, 2)));
    assert_eq!(sm.view().last_applied(), Some(log_id(1, 3)));
}

#[tokio::test]
async fn corrupt_snapshot_from_peer_is_refused() {
    let dir = TempDir::new().unwrap();
    let (_log, mut sm) = open_in(dir.path());
    let meta = openraft::SnapshotMeta {
        last_log_id: Some(log_id(1, 5)),
        last_membership: Default::default(),
        snapshot_id: "5-1".into(),
    };

    let mut garbage = sm.begin_receiving_snapshot().await.unwrap();
    garbage.get_mut().extend_from_slice(b"\x00not json{");
    assert!(sm.install_snapshot(&meta, garbage).await.is_err());

    // Well-formed, but its data does not match the meta it came with.
    let other_dir = TempDir::new().unwrap();
    let (_olog, mut other) = open_in(other_dir.path());
    other.apply([blank(1, 1)]).await.unwrap();
    let real = other.get_snapshot_builder().await.build_snapshot().await.unwrap();
    let mut mismatched = sm.begin_receiving_snapshot().await.unwrap();
    *mismatched = *real.snapshot;
    let err = sm.install_snapshot(&meta, mismatched).await.unwrap_err();
    assert!(err.to_string().contains("does not match"), "{err}");

    assert_eq!(sm.view().last_applied(), None);
    assert!(sm.get_current_snapshot().await.unwrap().is_none());
}

#[test]
fn open_sealer_opens_the_dev_sealer() {
    let dir = TempDir::new().unwrap();
    let sealer = open_sealer(&SealerConfig::InsecureDevFile, dir.path()).unwrap();
    assert_eq!(sealer.kind(), "dev-file-insecure");
    let sealed = sealer.seal(b"aad", b"value").unwrap();
    assert_eq!(sealed.len(), 12 + b"value".len() + 16);
    assert_eq!(&sealer.unseal(b"aad", &sealed).unwrap()[..], b"value");
    assert!(dir.path().join(DEV_KEY_FILE).exists());
}

#[cfg(not(feature = "tpm-sealer"))]
#[test]
fn tpm_sealer_config_without_the_feature_says_how_to_rebuild() {
    let dir = TempDir::new().unwrap();
    let cfg = SealerConfig::Tpm { tcti: seal::DEFAULT_TPM_TCTI.into(), pcrs: vec![7] };
    let err = open_sealer(&cfg, dir.path()).err().expect("no TPM sealer in this build");
    assert!(matches!(err, StoreError::Tpm(TpmError::NotBuilt)), "{err:?}");
    assert!(err.to_string().contains("--features tpm-sealer"), "{err}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "wrote files");
}
