//! [`TpmSealer`] (feature `tpm-sealer`): the store's data key sealed by a TPM,
//! such as an Azure confidential VM's vTPM (`device:/dev/tpmrm0`) or swtpm.
//!
//! The first open generates a random 32-byte data key and has the TPM seal it:
//! a KeyedHash sealed-data object under the storage root key (SRK) of the Owner
//! hierarchy, whose authorization policy is PolicyPCR over the configured
//! SHA-256 PCRs at their current values (no PCRs: the policy holds on any boot
//! of this TPM). The SRK is re-created from the TCG ECC P-256 SRK template on
//! every open (a primary key is deterministic), so no TPM handle is persisted.
//! Only the sealed object's public and private areas are written, to
//! `<dir>/tpm-sealed-key.bin`; later opens load them under the SRK and unseal
//! through a policy session. The private area is encrypted and integrity
//! protected by the SRK, so the file is useless without this TPM, and after a
//! change of a bound PCR the TPM refuses to unseal.
//!
//! Commands that carry the data key (Create, Unseal) use a session salted with
//! the SRK and AES-128-CFB parameter encryption, so it never crosses the TPM
//! interface in the clear. The data key lives only in memory (in the
//! [`ValueCipher`], zeroized on drop); values are sealed exactly as
//! [`DevFileSealer`](super::DevFileSealer) seals them.
//!
//! # Key file, version 1
//!
//! ```text
//! magic "GRDNTPMK" (8) ‖ version = 1 (u8) ‖ PCR bank = TPM_ALG_SHA256 (u16 BE)
//! ‖ PCR count (u8) ‖ PCR indexes (count × u8, ascending)
//! ‖ public length (u16 BE) ‖ TPMT_PUBLIC ‖ private length (u16 BE) ‖ TPM2B_PRIVATE contents
//! ‖ SHA-256 of all the above (32)
//! ```
//!
//! The checksum only gives damaged files a clear error; deliberate tampering
//! is caught by the TPM when it loads the object.

use std::fs;
use std::io::ErrorKind;
use std::path::Path;
use std::str::FromStr;

use sha2::{Digest as _, Sha256};
use tss_esapi::attributes::{ObjectAttributesBuilder, SessionAttributesBuilder};
use tss_esapi::constants::{SessionType, Tss2ResponseCode, Tss2ResponseCodeKind};
use tss_esapi::handles::{KeyHandle, SessionHandle};
use tss_esapi::interface_types::algorithm::{HashingAlgorithm, PublicAlgorithm};
use tss_esapi::interface_types::ecc::EccCurve;
use tss_esapi::interface_types::resource_handles::Hierarchy;
use tss_esapi::interface_types::session_handles::{AuthSession, PolicySession};
use tss_esapi::structures::{
    Digest, EccParameter, EccPoint, KeyedHashScheme, PcrSelectionList, PcrSelectionListBuilder, PcrSlot, Private,
    Public, PublicBuilder, PublicEccParametersBuilder, PublicKeyedHashParameters, SensitiveData, SymmetricDefinition,
    SymmetricDefinitionObject,
};
use tss_esapi::tcti_ldr::TctiNameConf;
use tss_esapi::traits::{Marshall, UnMarshall};
use tss_esapi::{Context, WrapperErrorKind};
use zeroize::Zeroizing;

use super::seal::{create_file_durably, random_key, Sealer, TpmError, ValueCipher, KEY_LEN, TPM_KEY_FILE};
use super::StoreError;

/// Seals values with a data key that only the TPM can unseal (see the module doc).
pub struct TpmSealer {
    cipher: ValueCipher,
    tcti: String,
    pcrs: Vec<u8>,
}

impl std::fmt::Debug for TpmSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TpmSealer {{ tcti: {:?}, pcrs: {:?}, key: <redacted> }}", self.tcti, self.pcrs)
    }
}

impl TpmSealer {
    /// Opens the TPM at `tcti` and gets the data key: unsealed from
    /// `<dir>/tpm-sealed-key.bin`, or on first use generated and sealed to the
    /// current values of the SHA-256 PCRs `pcrs` (order and repeats do not
    /// matter), then written there. Writes nothing unless it created the key.
    #[tracing::instrument(skip_all)]
    pub fn open(tcti: &str, pcrs: &[u8], dir: &Path) -> Result<Self, StoreError> {
        let pcrs = pcr_set(pcrs)?;
        let path = dir.join(TPM_KEY_FILE);
        let existing = read_key_file(&path)?;
        let mut tpm = Tpm::connect(tcti)?;
        let key = match existing {
            Some(file) => tpm.unseal_file(&file, &pcrs, &path)?,
            None => {
                fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
                let key = random_key();
                let file = tpm.seal(&key, &pcrs)?;
                // Before anything is written: the TPM must give the key back under the current PCR values.
                if tpm.unseal_file(&file, &pcrs, &path)? != key {
                    return Err(TpmError::Command { what: "Unseal", reason: "returned another key".into() }.into());
                }
                if create_file_durably(&path, &file.encode())? {
                    tracing::info!(key_file = %path.display(), ?pcrs, "TPM sealer: sealed a new data key");
                    key
                } else {
                    // Another process sealed a key meanwhile: use theirs.
                    let theirs = read_key_file(&path)?.ok_or_else(|| TpmError::BadKeyFile {
                        file: path.clone(),
                        reason: "it disappeared while being created".into(),
                    })?;
                    tpm.unseal_file(&theirs, &pcrs, &path)?
                }
            }
        };
        tracing::info!(tcti, ?pcrs, "TPM sealer opened");
        Ok(Self { cipher: ValueCipher::new(&key)?, tcti: tcti.to_string(), pcrs })
    }
}

impl Sealer for TpmSealer {
    fn kind(&self) -> &'static str {
        "tpm"
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

/// `pcrs` sorted without repeats; fails if one is not a SHA-256 PCR index (0..=23).
fn pcr_set(pcrs: &[u8]) -> Result<Vec<u8>, TpmError> {
    let mut set = pcrs.to_vec();
    set.sort_unstable();
    set.dedup();
    if set.iter().any(|&i| i > 23) {
        return Err(TpmError::BadPcrs { pcrs: pcrs.to_vec() });
    }
    Ok(set)
}

fn pcr_selection(pcrs: &[u8]) -> Result<PcrSelectionList, TpmError> {
    let slots = pcrs
        .iter()
        .map(|&i| 1u32.checked_shl(u32::from(i)).and_then(|bit| PcrSlot::try_from(bit).ok()))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| TpmError::BadPcrs { pcrs: pcrs.to_vec() })?;
    PcrSelectionListBuilder::new()
        .with_selection(HashingAlgorithm::Sha256, &slots)
        .build()
        .map_err(command("building the PCR selection"))
}

/// A TSS error as text, with its response code.
fn describe(e: tss_esapi::Error) -> String {
    match e {
        tss_esapi::Error::Tss2Error(rc @ Tss2ResponseCode::FormatZero(code)) => format!("{rc} ({code})"),
        tss_esapi::Error::Tss2Error(rc @ Tss2ResponseCode::FormatOne(code)) => format!("{rc} ({code})"),
        other => other.to_string(),
    }
}

fn kind_of(e: &tss_esapi::Error) -> Option<Tss2ResponseCodeKind> {
    match e {
        tss_esapi::Error::Tss2Error(rc) => rc.kind(),
        tss_esapi::Error::WrapperError(_) => None,
    }
}

fn command(what: &'static str) -> impl Fn(tss_esapi::Error) -> TpmError {
    move |e| TpmError::Command { what, reason: describe(e) }
}

/// Which parameters a session encrypts on the way to or from the TPM.
#[derive(Clone, Copy)]
enum Protect {
    Nothing,
    /// The command's first parameter (Create's sensitive data).
    Command,
    /// The response's first parameter (Unseal's data).
    Response,
}

/// A connection to the TPM with the SRK loaded; dropping it flushes what it loaded.
struct Tpm {
    ctx: Context,
    srk: KeyHandle,
}

impl Tpm {
    fn connect(tcti: &str) -> Result<Self, TpmError> {
        let conf = TctiNameConf::from_str(tcti)
            .map_err(|e| TpmError::BadTcti { tcti: tcti.to_string(), reason: describe(e) })?;
        let mut ctx =
            Context::new(conf).map_err(|e| TpmError::Unreachable { tcti: tcti.to_string(), reason: describe(e) })?;
        let srk = ctx
            .execute_with_session(Some(AuthSession::Password), |ctx| {
                ctx.create_primary(Hierarchy::Owner, srk_template()?, None, None, None, None)
            })
            .map_err(command("CreatePrimary (the SRK under the Owner hierarchy, which must have an empty auth value)"))?
            .key_handle;
        Ok(Self { ctx, srk })
    }

    /// Runs `f` in a session salted with the SRK (AES-128-CFB parameter
    /// encryption as `protect` says), and flushes the session afterwards.
    fn with_session<T>(
        &mut self,
        kind: SessionType,
        protect: Protect,
        f: impl FnOnce(&mut Context, AuthSession) -> tss_esapi::Result<T>,
    ) -> tss_esapi::Result<T> {
        let session = self
            .ctx
            .start_auth_session(
                Some(self.srk),
                None,
                None,
                kind,
                SymmetricDefinition::AES_128_CFB,
                HashingAlgorithm::Sha256,
            )?
            .ok_or(tss_esapi::Error::WrapperError(WrapperErrorKind::WrongValueFromTpm))?;
        let (attributes, mask) = SessionAttributesBuilder::new()
            .with_continue_session(true)
            .with_decrypt(matches!(protect, Protect::Command))
            .with_encrypt(matches!(protect, Protect::Response))
            .build();
        let out = self.ctx.tr_sess_set_attributes(session, attributes, mask).and_then(|()| f(&mut self.ctx, session));
        let flushed = self.ctx.flush_context(SessionHandle::from(session).into());
        let out = out?;
        flushed?;
        Ok(out)
    }

    /// Seals `key` under the SRK with a PolicyPCR policy over the current values of `pcrs`.
    #[tracing::instrument(skip_all)]
    fn seal(&mut self, key: &Zeroizing<[u8; KEY_LEN]>, pcrs: &[u8]) -> Result<KeyFile, TpmError> {
        let selection = pcr_selection(pcrs)?;
        let policy = self
            .with_session(SessionType::Trial, Protect::Nothing, |ctx, session| {
                let session = PolicySession::try_from(session)?;
                ctx.policy_pcr(session, Digest::default(), selection)?;
                ctx.policy_get_digest(session)
            })
            .map_err(command("PolicyPCR (computing the sealing policy)"))?;
        let public = sealed_object_template(policy).map_err(command("building the sealed object's template"))?;
        let data = SensitiveData::try_from(&key[..]).map_err(command("wrapping the data key"))?;
        let srk = self.srk;
        let created = self
            .with_session(SessionType::Hmac, Protect::Command, |ctx, session| {
                ctx.execute_with_session(Some(session), |ctx| ctx.create(srk, public, None, Some(data), None, None))
            })
            .map_err(command("Create (sealing the data key)"))?;
        let public = created.out_public.marshall().map_err(command("marshalling the sealed object's public area"))?;
        Ok(KeyFile { pcrs: pcrs.to_vec(), public, private: created.out_private.value().to_vec() })
    }

    /// Unseals the data key from `file` (read from `path`), which must be sealed to `pcrs`.
    #[tracing::instrument(skip_all)]
    fn unseal_file(&mut self, file: &KeyFile, pcrs: &[u8], path: &Path) -> Result<Zeroizing<[u8; KEY_LEN]>, TpmError> {
        if file.pcrs != pcrs {
            return Err(TpmError::PcrSelectionChanged {
                file: path.to_path_buf(),
                sealed: file.pcrs.clone(),
                configured: pcrs.to_vec(),
            });
        }
        let bad_file = |what: &str, e| TpmError::BadKeyFile {
            file: path.to_path_buf(),
            reason: format!("{what}: {}", describe(e)),
        };
        let public = Public::unmarshall(&file.public).map_err(|e| bad_file("public area", e))?;
        let private = Private::try_from(file.private.as_slice()).map_err(|e| bad_file("private area", e))?;
        let selection = pcr_selection(&file.pcrs)?;
        let srk = self.srk;
        let object = self
            .ctx
            .execute_with_session(Some(AuthSession::Password), |ctx| ctx.load(srk, private, public))
            .map_err(|e| load_refused(e, path))?;
        let unsealed = self.with_session(SessionType::Policy, Protect::Response, |ctx, session| {
            ctx.policy_pcr(PolicySession::try_from(session)?, Digest::default(), selection)?;
            ctx.execute_with_session(Some(session), |ctx| ctx.unseal(object.into()))
        });
        let flushed = self.ctx.flush_context(object.into());
        let data = unsealed.map_err(|e| match kind_of(&e) {
            Some(Tss2ResponseCodeKind::PolicyFail) => TpmError::PcrMismatch { pcrs: file.pcrs.clone() },
            _ => command("Unseal (the data key)")(e),
        })?;
        flushed.map_err(command("FlushContext (the sealed object)"))?;
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        if data.value().len() != KEY_LEN {
            return Err(TpmError::BadKeyFile {
                file: path.to_path_buf(),
                reason: format!("it unseals to {} bytes, not a {KEY_LEN}-byte key", data.value().len()),
            });
        }
        key.copy_from_slice(data.value());
        Ok(key)
    }
}

impl Drop for Tpm {
    fn drop(&mut self) {
        // The SRK; Context's own drop flushes whatever an error left loaded.
        if let Err(e) = self.ctx.flush_context(self.srk.into()) {
            tracing::warn!(error = %describe(e), "TPM sealer: cannot flush the SRK");
        }
    }
}

/// Why Load refused the sealed object: the object itself (it fails the TPM's
/// integrity check under this SRK, or is malformed), or anything else.
fn load_refused(e: tss_esapi::Error, path: &Path) -> TpmError {
    use Tss2ResponseCodeKind::*;
    match kind_of(&e) {
        Some(
            Integrity | Sensitive | Binding | Size | Value | Key | KeySize | Type | Attributes | Hash | Symmetric
            | Scheme,
        ) => TpmError::Refused { file: path.to_path_buf(), reason: describe(e) },
        _ => command("Load (the sealed data key)")(e),
    }
}

/// The TCG reference SRK template (TPM v2.0 Provisioning Guidance 7.5.1), ECC
/// NIST P-256: a restricted decryption key with AES-128-CFB for its children,
/// noDA, an empty auth policy, and a unique field of 32 zero bytes for x and
/// for y (not an empty one, which gives another key). Every `CreatePrimary`
/// with it under the Owner hierarchy of the same TPM yields the same key.
fn srk_template() -> tss_esapi::Result<Public> {
    let attributes = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_sensitive_data_origin(true)
        .with_user_with_auth(true)
        .with_no_da(true)
        .with_restricted(true)
        .with_decrypt(true)
        .build()?;
    let parameters = PublicEccParametersBuilder::new_restricted_decryption_key(
        SymmetricDefinitionObject::AES_128_CFB,
        EccCurve::NistP256,
    )
    .build()?;
    let zeros = vec![0u8; 32];
    PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::Ecc)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attributes)
        .with_ecc_parameters(parameters)
        .with_ecc_unique_identifier(EccPoint::new(
            EccParameter::try_from(zeros.clone())?,
            EccParameter::try_from(zeros)?,
        ))
        .build()
}

/// A sealed-data object usable only through `policy` (no auth value), bound to this TPM and parent.
fn sealed_object_template(policy: Digest) -> tss_esapi::Result<Public> {
    let attributes = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_no_da(true)
        .with_admin_with_policy(true)
        .with_user_with_auth(false)
        .build()?;
    PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::KeyedHash)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attributes)
        .with_auth_policy(policy)
        .with_keyed_hash_parameters(PublicKeyedHashParameters::new(KeyedHashScheme::Null))
        .with_keyed_hash_unique_identifier(Digest::default())
        .build()
}

const MAGIC: &[u8; 8] = b"GRDNTPMK";
const VERSION: u8 = 1;
const TPM_ALG_SHA256: u16 = 0x000B;
const CHECKSUM_LEN: usize = 32;

/// The content of `tpm-sealed-key.bin` (format in the module doc).
#[derive(Clone, Debug, PartialEq, Eq)]
struct KeyFile {
    /// The SHA-256 PCRs the policy covers, ascending.
    pcrs: Vec<u8>,
    /// Marshalled TPMT_PUBLIC of the sealed object.
    public: Vec<u8>,
    /// TPM2B_PRIVATE contents of the sealed object (encrypted by the SRK).
    private: Vec<u8>,
}

impl KeyFile {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.public.len() + self.private.len());
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.extend_from_slice(&TPM_ALG_SHA256.to_be_bytes());
        // At most 24 PCRs, and TPM2B buffers are u16-sized: the casts cannot truncate.
        out.push(self.pcrs.len() as u8);
        out.extend_from_slice(&self.pcrs);
        for part in [&self.public, &self.private] {
            out.extend_from_slice(&(part.len() as u16).to_be_bytes());
            out.extend_from_slice(part);
        }
        let checksum = Sha256::digest(&out);
        out.extend_from_slice(&checksum);
        out
    }

    /// Parses `bytes`; the error says what is wrong with them.
    fn decode(bytes: &[u8]) -> Result<Self, String> {
        let mut r = Reader(bytes);
        if r.take(MAGIC.len(), "magic")? != MAGIC {
            return Err("it does not start with the Guardian TPM key magic".into());
        }
        let body_len = bytes.len().checked_sub(CHECKSUM_LEN).ok_or("it is truncated")?;
        let (body, checksum) = bytes.split_at(body_len);
        if Sha256::digest(body)[..] != *checksum {
            return Err("its checksum does not match: the file is damaged or was modified".into());
        }
        let mut r = Reader(&body[MAGIC.len()..]);
        let version = r.u8("version")?;
        if version != VERSION {
            return Err(format!("it has format version {version}; this build reads version {VERSION}"));
        }
        let bank = r.u16("PCR bank")?;
        if bank != TPM_ALG_SHA256 {
            return Err(format!("its PCR bank is algorithm {bank:#06x}, not SHA-256"));
        }
        let count = r.u8("PCR count")?;
        let pcrs = r.take(usize::from(count), "PCR list")?.to_vec();
        if pcr_set(&pcrs).ok().as_ref() != Some(&pcrs) {
            return Err(format!("its PCR list {pcrs:?} is not ascending SHA-256 PCR indexes"));
        }
        let public_len = r.u16("public length")?;
        let public = r.take(usize::from(public_len), "public area")?.to_vec();
        let private_len = r.u16("private length")?;
        let private = r.take(usize::from(private_len), "private area")?.to_vec();
        if !r.0.is_empty() {
            return Err(format!("{} unexpected bytes follow the private area", r.0.len()));
        }
        Ok(Self { pcrs, public, private })
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err(format!("it is truncated in the {what}"));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn u8(&mut self, what: &str) -> Result<u8, String> {
        Ok(self.take(1, what)?[0])
    }

    fn u16(&mut self, what: &str) -> Result<u16, String> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
}

/// The key file at `path`, or `None` if there is none yet.
fn read_key_file(path: &Path) -> Result<Option<KeyFile>, StoreError> {
    match fs::read(path) {
        Ok(bytes) => KeyFile::decode(&bytes)
            .map(Some)
            .map_err(|reason| TpmError::BadKeyFile { file: path.to_path_buf(), reason }.into()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StoreError::io(path, e)),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;
    use std::process::{Child, Command, Stdio};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use tempfile::TempDir;
    use tss_esapi::handles::PcrHandle;
    use tss_esapi::structures::DigestValues;

    use super::*;
    use crate::store::seal::DEV_KEY_FILE;
    use crate::store::tests::{files_under, plaintext_findings, write_markers, CountingApplier};
    use crate::store::DevFileSealer;

    /// A swtpm of one test's own, on free local ports, killed on drop.
    struct Swtpm {
        child: Child,
        port: u16,
        _state: TempDir,
    }

    impl Swtpm {
        /// Starts a fresh swtpm, or returns `None` after printing why the test
        /// is skipped if swtpm is not installed (a failure instead with
        /// `GUARDIAN_REQUIRE_SWTPM=1`).
        fn start(test: &str) -> Option<Self> {
            let installed = Command::new("swtpm").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status();
            if installed.is_err() {
                assert!(
                    std::env::var("GUARDIAN_REQUIRE_SWTPM").as_deref() != Ok("1"),
                    "{test}: swtpm is not on PATH but GUARDIAN_REQUIRE_SWTPM=1; apt-get install swtpm swtpm-tools"
                );
                // Straight to stderr, which the test harness does not capture: a skip must show.
                let _ = writeln!(
                    std::io::stderr(),
                    "SKIPPED {test}: swtpm is not on PATH (apt-get install swtpm swtpm-tools; \
                     GUARDIAN_REQUIRE_SWTPM=1 makes this a failure)"
                );
                return None;
            }
            // Another process may take the ports between probing and swtpm binding them: retry.
            for _ in 0..10 {
                let Some(port) = free_port_pair() else { continue };
                let state = TempDir::new().unwrap();
                let mut child = Command::new("swtpm")
                    .args(["socket", "--tpm2", "--server", &format!("type=tcp,port={port}")])
                    .args(["--ctrl", &format!("type=tcp,port={}", port + 1)])
                    .args(["--tpmstate", &format!("dir={}", state.path().display())])
                    .args(["--flags", "not-need-init,startup-clear"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("spawn swtpm");
                let deadline = Instant::now() + Duration::from_secs(10);
                loop {
                    if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                        return Some(Self { child, port, _state: state });
                    }
                    if child.try_wait().unwrap().is_some() || Instant::now() > deadline {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            panic!("{test}: swtpm did not start");
        }

        fn tcti(&self) -> String {
            format!("swtpm:host=127.0.0.1,port={}", self.port)
        }

        /// Extends SHA-256 PCR 16 (the debug PCR), as a changed boot component would its PCR.
        fn extend_pcr16(&self) {
            let mut ctx = Context::new(TctiNameConf::from_str(&self.tcti()).unwrap()).unwrap();
            let mut values = DigestValues::new();
            values.set(HashingAlgorithm::Sha256, Digest::try_from(vec![0x42; 32]).unwrap());
            ctx.execute_with_session(Some(AuthSession::Password), |ctx| ctx.pcr_extend(PcrHandle::Pcr16, values))
                .unwrap();
        }

        /// The data key, unsealed straight from the key file in `dir`.
        fn data_key(&self, dir: &Path, pcrs: &[u8]) -> Zeroizing<[u8; KEY_LEN]> {
            let path = dir.join(TPM_KEY_FILE);
            let file = read_key_file(&path).unwrap().expect("key file");
            Tpm::connect(&self.tcti()).unwrap().unseal_file(&file, pcrs, &path).unwrap()
        }
    }

    impl Drop for Swtpm {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// A port P such that P and P+1 were both free just now.
    fn free_port_pair() -> Option<u16> {
        let first = TcpListener::bind(("127.0.0.1", 0)).ok()?;
        let port = first.local_addr().ok()?.port();
        let _second = TcpListener::bind(("127.0.0.1", port.checked_add(1)?)).ok()?;
        Some(port)
    }

    /// Every file under `dir` with its content, sorted by path.
    fn dir_contents(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
        let mut out: Vec<_> = files_under(dir).into_iter().map(|f| (f.clone(), std::fs::read(&f).unwrap())).collect();
        out.sort();
        out
    }

    fn tpm_error(r: Result<TpmSealer, StoreError>) -> TpmError {
        match r {
            Err(StoreError::Tpm(e)) => e,
            Err(e) => panic!("expected a TPM error, got {e:?}"),
            Ok(s) => panic!("expected a TPM error, opened {s:?}"),
        }
    }

    #[test]
    fn seal_unseal_round_trip() {
        let Some(tpm) = Swtpm::start("seal_unseal_round_trip") else { return };
        let dir = TempDir::new().unwrap();
        let sealer = TpmSealer::open(&tpm.tcti(), &[], dir.path()).unwrap();
        assert_eq!(sealer.kind(), "tpm");
        assert!(format!("{sealer:?}").contains("key: <redacted>"));

        let sealed = sealer.seal(b"tree\0key", b"secret value").unwrap();
        assert_eq!(sealed.len(), 12 + b"secret value".len() + 16);
        assert_eq!(&sealer.unseal(b"tree\0key", &sealed).unwrap()[..], b"secret value");
        assert!(matches!(sealer.unseal(b"tree\0other", &sealed), Err(StoreError::Seal { .. })));

        let path = dir.path().join(TPM_KEY_FILE);
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(read_key_file(&path).unwrap().expect("key file").pcrs, Vec::<u8>::new());

        // Same value format as the dev sealer: given the same key, it unseals the value.
        let dev_dir = TempDir::new().unwrap();
        let key = tpm.data_key(dir.path(), &[]);
        let key_path = dev_dir.path().join(DEV_KEY_FILE);
        std::fs::write(&key_path, &key[..]).unwrap();
        std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let dev = DevFileSealer::open_insecure(dev_dir.path()).unwrap();
        assert_eq!(&dev.unseal(b"tree\0key", &sealed).unwrap()[..], b"secret value");
    }

    #[test]
    fn a_second_sealer_on_the_same_dir_unseals_the_first_ones_values() {
        let Some(tpm) = Swtpm::start("a_second_sealer_on_the_same_dir_unseals_the_first_ones_values") else {
            return;
        };
        let dir = TempDir::new().unwrap();
        let first = TpmSealer::open(&tpm.tcti(), &[16, 7, 0, 7], dir.path()).unwrap();
        let sealed = first.seal(b"aad", b"from the first").unwrap();
        let key_file = std::fs::read(dir.path().join(TPM_KEY_FILE)).unwrap();
        drop(first);

        let second = TpmSealer::open(&tpm.tcti(), &[0, 7, 16], dir.path()).unwrap();
        assert_eq!(&second.unseal(b"aad", &sealed).unwrap()[..], b"from the first");
        assert_eq!(std::fs::read(dir.path().join(TPM_KEY_FILE)).unwrap(), key_file, "key file rewritten");
        assert_eq!(KeyFile::decode(&key_file).unwrap().pcrs, vec![0, 7, 16]);
    }

    #[test]
    fn a_changed_pcr_refuses_to_unseal_and_writes_nothing() {
        let Some(tpm) = Swtpm::start("a_changed_pcr_refuses_to_unseal_and_writes_nothing") else { return };
        let dir = TempDir::new().unwrap();
        drop(TpmSealer::open(&tpm.tcti(), &[16], dir.path()).unwrap());
        let before = dir_contents(dir.path());

        // Another PCR set in the configuration than the key was sealed to.
        let err = tpm_error(TpmSealer::open(&tpm.tcti(), &[16, 23], dir.path()));
        assert!(
            matches!(&err, TpmError::PcrSelectionChanged { sealed, configured, .. }
            if *sealed == [16] && *configured == [16, 23]),
            "{err:?}"
        );

        tpm.extend_pcr16();
        let err = tpm_error(TpmSealer::open(&tpm.tcti(), &[16], dir.path()));
        assert!(matches!(&err, TpmError::PcrMismatch { pcrs } if *pcrs == [16]), "{err:?}");
        let msg = err.to_string();
        assert!(msg.starts_with("TPM unseal refused: PCR values differ from those the key was sealed to (PCRs [16])"));
        assert!(msg.contains("the guest image or boot chain changed"), "{msg}");
        assert_eq!(dir_contents(dir.path()), before, "the failed opens wrote something");
    }

    #[test]
    fn a_tampered_key_file_is_refused() {
        let Some(tpm) = Swtpm::start("a_tampered_key_file_is_refused") else { return };
        let dir = TempDir::new().unwrap();
        let sealed = TpmSealer::open(&tpm.tcti(), &[7], dir.path()).unwrap().seal(b"aad", b"value").unwrap();
        let path = dir.path().join(TPM_KEY_FILE);
        let original = std::fs::read(&path).unwrap();
        let open = || TpmSealer::open(&tpm.tcti(), &[7], dir.path());

        // Damage: one flipped bit anywhere fails the checksum.
        let mut damaged = original.clone();
        damaged[original.len() / 2] ^= 1;
        std::fs::write(&path, &damaged).unwrap();
        let err = tpm_error(open());
        assert!(matches!(err, TpmError::BadKeyFile { .. }), "{err:?}");
        assert!(err.to_string().contains("checksum does not match"), "{err}");

        // Forgeries with a valid checksum: the TPM itself refuses a changed private
        // area and a changed public area (here: its auth policy).
        let file = KeyFile::decode(&original).unwrap();
        let mut private = file.clone();
        private.private[file.private.len() / 2] ^= 1;
        let mut public = file.clone();
        public.public[2 + 2 + 4 + 2 + 5] ^= 1; // type, nameAlg, objectAttributes, authPolicy size, into the digest
        for forged in [private, public] {
            std::fs::write(&path, forged.encode()).unwrap();
            let err = tpm_error(open());
            assert!(matches!(err, TpmError::Refused { .. }), "{err:?}");
            assert!(err.to_string().contains("the file was tampered with"), "{err}");
        }

        std::fs::write(&path, &original).unwrap();
        assert_eq!(&open().unwrap().unseal(b"aad", &sealed).unwrap()[..], b"value");
    }

    #[tokio::test]
    async fn the_data_dir_never_holds_the_data_key_or_plaintext() {
        let Some(tpm) = Swtpm::start("the_data_dir_never_holds_the_data_key_or_plaintext") else { return };
        let dir = TempDir::new().unwrap();
        let sealer = Arc::new(TpmSealer::open(&tpm.tcti(), &[16], dir.path()).unwrap());
        {
            let (mut log, mut sm, _) = crate::store::open(dir.path(), sealer, Arc::new(CountingApplier)).unwrap();
            write_markers(&mut log, &mut sm).await;
        }
        let key = tpm.data_key(dir.path(), &[16]);
        let found = plaintext_findings(
            dir.path(),
            &[("data key", key.to_vec()), ("hex data key", hex::encode(&key[..]).into_bytes())],
        );
        assert!(found.is_empty(), "found on disk: {found:?}");
        assert!(files_under(dir.path()).contains(&dir.path().join(TPM_KEY_FILE)), "the key file was not scanned");
    }

    #[test]
    fn bad_configuration_is_refused_before_anything_is_written() {
        let dir = TempDir::new().unwrap();
        let err = tpm_error(TpmSealer::open("swtpm:host=127.0.0.1,port=2321", &[7, 24], dir.path()));
        assert!(matches!(&err, TpmError::BadPcrs { pcrs } if *pcrs == [7, 24]), "{err:?}");

        let err = tpm_error(TpmSealer::open("nonsense:/dev/tpm9", &[], dir.path()));
        assert!(matches!(err, TpmError::BadTcti { .. }), "{err:?}");

        // Nothing listens there (it was free a moment ago).
        let port = free_port_pair().expect("a free port");
        let tcti = format!("swtpm:host=127.0.0.1,port={port}");
        let err = tpm_error(TpmSealer::open(&tcti, &[], dir.path()));
        assert!(matches!(err, TpmError::Unreachable { .. }), "{err:?}");
        assert!(err.to_string().starts_with(&format!("cannot reach the TPM via {tcti}")), "{err}");

        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "wrote files");
    }

    #[test]
    fn key_file_format() {
        let file = KeyFile { pcrs: vec![0, 7], public: vec![1, 2, 3], private: vec![4; 40] };
        let bytes = file.encode();
        assert_eq!(&bytes[..9], b"GRDNTPMK\x01");
        assert_eq!(&bytes[9..14], &[0x00, 0x0B, 2, 0, 7]);
        assert_eq!(KeyFile::decode(&bytes).unwrap(), file);

        let reencoded = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut b = bytes[..bytes.len() - CHECKSUM_LEN].to_vec();
            f(&mut b);
            let sum = Sha256::digest(&b);
            b.extend_from_slice(&sum);
            KeyFile::decode(&b).unwrap_err()
        };
        assert!(reencoded(&|b| b[8] = 2).contains("format version 2"));
        assert!(reencoded(&|b| b[10] = 0x04).contains("not SHA-256"));
        assert!(reencoded(&|b| b.swap(12, 13)).contains("not ascending"));
        assert!(reencoded(&|b| b.push(0)).contains("unexpected bytes"));
        assert!(reencoded(&|b| b.truncate(20)).contains("truncated"));
        assert!(KeyFile::decode(b"GRDNTPMK").unwrap_err().contains("truncated"));
        assert!(KeyFile::decode(&[0; 64]).unwrap_err().contains("magic"));
    }
}
