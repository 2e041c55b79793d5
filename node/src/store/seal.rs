//! Sealing at rest: every value Guardian writes to sled is encrypted and
//! authenticated first, so the data directory shows no plaintext and a
//! modified value is detected when it is read.
//!
//! - [`Sealer`]: the pluggable AEAD. A production sealer binds its key to the
//!   TEE (derived or released after attestation); TDX has no SGX-style
//!   sealing key, so that is the daemon's job, not this module's.
//! - [`DevFileSealer`]: **INSECURE, development only**. The key sits in a file
//!   next to the data: the data directory alone shows no plaintext, but anyone
//!   who can read the disk can unseal everything.
//! - `TpmSealer` (feature `tpm-sealer`, in `store::tpm`): the data key is
//!   sealed in the TPM (an Azure CVM's vTPM), optionally to PCR values.
//! - [`SealerConfig`] and [`open_sealer`]: what the daemon's configuration
//!   picks, available whether or not the TPM sealer was built in.
//! - [`SealedTree`]: a sled tree whose values are sealed with
//!   AAD = tree name ‖ 0 ‖ key, so a value copied to another key or tree fails
//!   to unseal. Keys (log indexes, fixed names) stay in the clear.

use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use rand::rngs::OsRng;
use rand::RngCore;
use serde::de::DeserializeOwned;
use serde::Serialize;
use zeroize::Zeroizing;

use super::StoreError;

/// Authenticated encryption of values at rest.
pub trait Sealer: Send + Sync {
    /// A short name for logs and diagnostics ("dev-file-insecure", ...).
    fn kind(&self) -> &'static str;
    /// Encrypts and authenticates `plaintext`, binding it to `aad`.
    fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, StoreError>;
    /// Reverses [`Sealer::seal`]; fails with [`StoreError::Seal`] if `sealed`
    /// or `aad` was changed, or the key differs.
    fn unseal(&self, aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, StoreError>;
}

/// Name of the key file [`DevFileSealer`] keeps in its directory.
pub const DEV_KEY_FILE: &str = "dev-sealer.key";

pub(super) const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// **INSECURE, development only**: ChaCha20-Poly1305 with a random key stored
/// in `<dir>/dev-sealer.key` (mode 0600). Sealed values are
/// `nonce (12 random bytes) ‖ ciphertext ‖ tag` ([`ValueCipher`]).
pub struct DevFileSealer {
    cipher: ValueCipher,
}

impl std::fmt::Debug for DevFileSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DevFileSealer { key: <redacted> }")
    }
}

impl DevFileSealer {
    /// Loads the key from `<dir>/dev-sealer.key`, creating it (and `dir`) if
    /// absent. Refuses a key file that group or others can access.
    #[tracing::instrument(skip_all)]
    pub fn open_insecure(dir: &Path) -> Result<Self, StoreError> {
        let path = dir.join(DEV_KEY_FILE);
        tracing::warn!(
            key_file = %path.display(),
            "INSECURE development sealer: the sealing key is stored on disk next to the data; \
             anyone who can read the disk can unseal it. Never use this in production."
        );
        fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
        let key = load_or_create_key(&path)?;
        Ok(Self { cipher: ValueCipher::new(&key)? })
    }
}

/// Creates the key file or reads the existing one.
fn load_or_create_key(path: &Path) -> Result<Zeroizing<[u8; KEY_LEN]>, StoreError> {
    if !path.exists() {
        let key = random_key();
        if create_file_durably(path, &key[..])? {
            return Ok(key);
        }
        // Someone else created it meanwhile: read theirs.
    }
    let mode = fs::metadata(path).map_err(|e| StoreError::io(path, e))?.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(StoreError::Key(format!(
            "{} is accessible by group or others (mode {:o}); run `chmod 600` on it",
            path.display(),
            mode & 0o777
        )));
    }
    let bytes = Zeroizing::new(fs::read(path).map_err(|e| StoreError::io(path, e))?);
    if bytes.len() != KEY_LEN {
        return Err(StoreError::Key(format!(
            "{} must hold exactly {KEY_LEN} bytes, found {}",
            path.display(),
            bytes.len()
        )));
    }
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    key.copy_from_slice(&bytes);
    Ok(key)
}

impl Sealer for DevFileSealer {
    fn kind(&self) -> &'static str {
        "dev-file-insecure"
    }

    #[tracing::instrument(skip_all)]
    fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, StoreError> {
        self.cipher.seal(aad, plaintext)
    }

    #[tracing::instrument(skip_all)]
    fn unseal(&self, aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, StoreError> {
        self.cipher.unseal(aad, sealed)
    }
}

/// A fresh random 32-byte data key.
pub(super) fn random_key() -> Zeroizing<[u8; KEY_LEN]> {
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    OsRng.fill_bytes(&mut key[..]);
    key
}

/// Creates `path` holding `bytes` (mode 0600), durably and never half-written:
/// writes and fsyncs a temp file, hard-links it into place (unlike a rename,
/// this fails if `path` appeared meanwhile, so a file another process already
/// uses is never replaced), then fsyncs the directory. Returns `false`, having
/// changed nothing, if `path` already exists.
pub(super) fn create_file_durably(path: &Path, bytes: &[u8]) -> Result<bool, StoreError> {
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let write_tmp = || -> std::io::Result<()> {
        let _ = fs::remove_file(&tmp);
        let mut f = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()
    };
    write_tmp().map_err(|e| StoreError::io(&tmp, e))?;
    let linked = fs::hard_link(&tmp, path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            if let Some(dir) = path.parent() {
                fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| StoreError::io(dir, e))?;
            }
            Ok(true)
        }
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(StoreError::io(path, e)),
    }
}

/// The value AEAD every sealer uses once it has its 32-byte data key:
/// ChaCha20-Poly1305, sealed values are `nonce (12 random bytes) ‖ ciphertext ‖ tag`.
/// Zeroizes its key on drop.
pub(super) struct ValueCipher(ChaCha20Poly1305);

impl std::fmt::Debug for ValueCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ValueCipher { key: <redacted> }")
    }
}

impl ValueCipher {
    pub(super) fn new(key: &Zeroizing<[u8; KEY_LEN]>) -> Result<Self, StoreError> {
        ChaCha20Poly1305::new_from_slice(&key[..])
            .map(Self)
            .map_err(|_| StoreError::Key("the key must be 32 bytes".into()))
    }

    pub(super) fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, StoreError> {
        let mut nonce = [0u8; NONCE_LEN];
        OsRng.fill_bytes(&mut nonce);
        let ct = self
            .0
            .encrypt(&Nonce::from(nonce), Payload { msg: plaintext, aad })
            .map_err(|_| StoreError::SealFailed { what: "value".into() })?;
        let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    pub(super) fn unseal(&self, aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, StoreError> {
        let too_short = || StoreError::Seal { what: "value (too short)".into() };
        let (nonce, ct) = sealed.split_first_chunk::<NONCE_LEN>().ok_or_else(too_short)?;
        if ct.len() < TAG_LEN {
            return Err(too_short());
        }
        self.0
            .decrypt(&Nonce::from(*nonce), Payload { msg: ct, aad })
            .map(Zeroizing::new)
            .map_err(|_| StoreError::Seal { what: "value".into() })
    }
}

/// Which sealer protects the store at rest (the daemon's `[sealer]` section).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SealerConfig {
    /// [`DevFileSealer`]: **INSECURE**, the key sits on disk next to the data.
    InsecureDevFile,
    /// `store::tpm::TpmSealer`: the data key is sealed in the TPM reached via
    /// `tcti` (e.g. [`DEFAULT_TPM_TCTI`]), bound to the current values of the
    /// SHA-256 PCRs `pcrs` (none: bound to this TPM only). Needs the
    /// `tpm-sealer` build feature.
    Tpm { tcti: String, pcrs: Vec<u8> },
}

/// The TCTI of an Azure confidential VM's vTPM (through the kernel's resource manager).
pub const DEFAULT_TPM_TCTI: &str = "device:/dev/tpmrm0";

/// Name of the file `TpmSealer` keeps in its directory: the TPM-sealed data key.
pub const TPM_KEY_FILE: &str = "tpm-sealed-key.bin";

/// Opens the sealer `cfg` names, keeping its files in `dir`.
///
/// Without the `tpm-sealer` build feature, [`SealerConfig::Tpm`] fails with
/// [`TpmError::NotBuilt`].
pub fn open_sealer(cfg: &SealerConfig, dir: &Path) -> Result<Arc<dyn Sealer>, StoreError> {
    match cfg {
        SealerConfig::InsecureDevFile => Ok(Arc::new(DevFileSealer::open_insecure(dir)?)),
        #[cfg(feature = "tpm-sealer")]
        SealerConfig::Tpm { tcti, pcrs } => Ok(Arc::new(super::tpm::TpmSealer::open(tcti, pcrs, dir)?)),
        #[cfg(not(feature = "tpm-sealer"))]
        SealerConfig::Tpm { .. } => Err(TpmError::NotBuilt.into()),
    }
}

/// Why the TPM sealer could not open, each saying what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum TpmError {
    #[error("this guardian binary was built without the TPM sealer; rebuild with `--features tpm-sealer`")]
    NotBuilt,
    #[error(
        "invalid TPM TCTI {tcti:?}: {reason}; expected e.g. \"device:/dev/tpmrm0\" or \
         \"swtpm:host=127.0.0.1,port=2321\""
    )]
    BadTcti { tcti: String, reason: String },
    #[error(
        "cannot reach the TPM via {tcti}: {reason}; check that the device or simulator exists and that this user \
         may open it (on Azure confidential VMs: /dev/tpmrm0, owned by group tss)"
    )]
    Unreachable { tcti: String, reason: String },
    #[error("invalid PCR selection {pcrs:?}: SHA-256 PCR indexes are 0 to 23")]
    BadPcrs { pcrs: Vec<u8> },
    #[error(
        "TPM unseal refused: PCR values differ from those the key was sealed to (PCRs {pcrs:?}); the guest image or \
         boot chain changed. This node's data cannot be unsealed on this boot: boot the measured image it was \
         sealed under, or move the data directory aside and re-join the cluster (docs/operations.md, Sealing at \
         rest)"
    )]
    PcrMismatch { pcrs: Vec<u8> },
    #[error(
        "{} is sealed to PCRs {sealed:?} but the configuration binds PCRs {configured:?}; set tpm_pcrs back to \
         {sealed:?}, or move the data directory aside and re-join the cluster to seal to the new set",
        file.display()
    )]
    PcrSelectionChanged { file: PathBuf, sealed: Vec<u8>, configured: Vec<u8> },
    #[error(
        "the TPM refused the sealed key in {} ({reason}): it was sealed by another TPM, the TPM was cleared, or \
         the file was tampered with; restore the file, or move the data directory aside and re-join the cluster",
        file.display()
    )]
    Refused { file: PathBuf, reason: String },
    #[error(
        "{} is not a valid TPM-sealed key file ({reason}); restore it, or move the data directory aside and \
         re-join the cluster",
        file.display()
    )]
    BadKeyFile { file: PathBuf, reason: String },
    #[error("TPM command {what} failed: {reason}")]
    Command { what: &'static str, reason: String },
}

/// A sled tree whose values are sealed. Reads and writes of plaintext go
/// through here; [`SealedTree::raw`] exposes the tree for key-only work
/// (ranges, removals, batches of already sealed values).
#[derive(Clone)]
pub struct SealedTree {
    name: &'static str,
    tree: sled::Tree,
    sealer: Arc<dyn Sealer>,
}

impl SealedTree {
    pub fn open(db: &sled::Db, name: &'static str, sealer: Arc<dyn Sealer>) -> Result<Self, StoreError> {
        Ok(Self { name, tree: db.open_tree(name)?, sealer })
    }

    /// The underlying tree: its values are sealed bytes.
    pub fn raw(&self) -> &sled::Tree {
        &self.tree
    }

    /// `tree/key` for error messages (keys are not secret).
    pub fn describe(&self, key: &[u8]) -> String {
        match std::str::from_utf8(key) {
            Ok(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic()) => format!("{}/{s}", self.name),
            _ => format!("{}/{}", self.name, hex::encode(key)),
        }
    }

    fn aad(&self, key: &[u8]) -> Vec<u8> {
        let mut aad = Vec::with_capacity(self.name.len() + 1 + key.len());
        aad.extend_from_slice(self.name.as_bytes());
        aad.push(0);
        aad.extend_from_slice(key);
        aad
    }

    #[tracing::instrument(skip_all)]
    pub fn seal_value(&self, key: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, StoreError> {
        self.sealer.seal(&self.aad(key), plaintext).map_err(|e| e.in_context(self.describe(key)))
    }

    #[tracing::instrument(skip_all)]
    pub fn unseal_value(&self, key: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, StoreError> {
        self.sealer.unseal(&self.aad(key), sealed).map_err(|e| e.in_context(self.describe(key)))
    }

    /// Serialises `value` as JSON and seals it for `key`.
    #[tracing::instrument(skip_all)]
    pub fn seal_json<T: Serialize>(&self, key: &[u8], value: &T) -> Result<Vec<u8>, StoreError> {
        let json = Zeroizing::new(serde_json::to_vec(value).map_err(|e| StoreError::corrupt(self.describe(key), e))?);
        self.seal_value(key, &json)
    }

    /// Unseals `sealed` (read from `key`) and parses it as JSON.
    #[tracing::instrument(skip_all)]
    pub fn unseal_json<T: DeserializeOwned>(&self, key: &[u8], sealed: &[u8]) -> Result<T, StoreError> {
        let json = self.unseal_value(key, sealed)?;
        serde_json::from_slice(&json).map_err(|e| StoreError::corrupt(self.describe(key), e))
    }

    pub fn get_json<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StoreError> {
        match self.tree.get(key)? {
            Some(sealed) => self.unseal_json(key, &sealed).map(Some),
            None => Ok(None),
        }
    }

    pub fn insert_json<T: Serialize>(&self, key: &[u8], value: &T) -> Result<(), StoreError> {
        self.tree.insert(key, self.seal_json(key, value)?)?;
        Ok(())
    }

    /// Makes every write so far durable (sled flushes the whole database).
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.tree.flush_async().await?;
        Ok(())
    }
}

impl StoreError {
    /// Replaces the generic "value" a [`Sealer`] reports with `tree/key`.
    fn in_context(self, what: String) -> Self {
        match self {
            StoreError::Seal { .. } => StoreError::Seal { what },
            StoreError::SealFailed { .. } => StoreError::SealFailed { what },
            other => other,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StoreError::Io { path: path.into(), source }
    }
}
