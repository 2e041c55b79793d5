//! Admin recovery: `guardctl recovery keygen|export` and `guardctl recover`
//! (docs/keys.md §6), and the genesis sections that set recovery up.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use guardian_node::threshold::escrow::{self, EscrowFile, RestorePin};
use guardian_proto::v1::{GetRecoveryEscrowRequest, RecoverRequest, RecoveryShare, StatusRequest};
use zeroize::Zeroizing;

use crate::admin_client::{ask_first, Admin};
use crate::cluster::ClusterFile;
use crate::output::out;
use crate::UsageError;

#[derive(clap::Subcommand)]
pub enum RecoveryCmd {
    /// Make a recovery admin's X25519 key pair: NAME.key (secret, keep it offline) and NAME.pub
    /// (for the genesis file: `guardctl dev init --recovery-admins NAME.pub,...`).
    Keygen {
        /// Path prefix of the two files, e.g. `alice` writes alice.key and alice.pub.
        #[arg(long)]
        out: PathBuf,
    },
    /// Write the cluster's escrow of its root keys (all public; each admin's values are sealed to
    /// that admin's key). Keep copies where a disaster that takes the cluster cannot reach them.
    Export {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value = ".guardian-dev")]
        cluster: PathBuf,
        /// Ask this node (default: the first that answers).
        #[arg(long)]
        node: Option<u64>,
    },
}

/// Genesis options that set up admin recovery (`guardctl init`, `guardctl dev init|up`).
#[derive(clap::Args, Clone, Default)]
pub struct RecoveryOpts {
    /// Recovery admins' public key files (`guardctl recovery keygen`), comma-separated: the root
    /// keys are escrowed to them once generated. Each admin is named by its file's stem.
    #[arg(long, value_delimiter = ',', value_name = "FILES")]
    pub recovery_admins: Vec<PathBuf>,
    /// Recovery admins needed to rebuild the cluster (k, at least 2).
    #[arg(long, value_name = "K")]
    pub recovery_threshold: Option<u16>,
    /// Rebuild a lost cluster: take its cluster id and keys from this escrow file; the nodes wait
    /// for `guardctl recover` instead of generating keys.
    #[arg(long, value_name = "ESCROW")]
    pub restore_from: Option<PathBuf>,
}

impl RecoveryOpts {
    /// The cluster id to use (a rebuilt cluster keeps the lost one's: namespace secrets are bound
    /// to it), and the genesis sections these options call for.
    pub fn genesis(&self) -> anyhow::Result<(Option<[u8; 16]>, String)> {
        let restore = self.restore_from.as_deref().map(load_escrow).transpose()?;
        let pin = restore.as_ref().map(|f| f.pin()).transpose()?;
        let text = genesis_sections(&self.recovery_admins, self.recovery_threshold, pin.as_ref())?;
        Ok((restore.map(|f| f.cluster_id), text))
    }
}

/// Arguments of `guardctl recover`.
#[derive(clap::Args)]
pub struct RecoverArgs {
    /// The escrow file of the lost cluster (`guardctl recovery export`).
    #[arg(long)]
    escrow: PathBuf,
    /// A recovery admin's key file (NAME.key); give at least k of them.
    #[arg(long = "admin-key", required = true)]
    admin_keys: Vec<PathBuf>,
    /// The fresh cluster, initialized with `--restore-from` the same escrow file.
    #[arg(long, default_value = ".guardian-dev")]
    cluster: PathBuf,
    /// Hand the shares to this node (default: the first voter that accepts them).
    #[arg(long)]
    node: Option<u64>,
    /// Seconds to wait for the restore to complete (0: do not wait).
    #[arg(long, default_value_t = 120)]
    wait: u64,
}

pub fn run(cmd: RecoveryCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        RecoveryCmd::Keygen { out } => keygen(&out),
        RecoveryCmd::Export { out, cluster, node } => {
            tokio::runtime::Runtime::new()?.block_on(export(&cluster, node, &out))
        }
    }
}

fn with_ext(prefix: &Path, ext: &str) -> PathBuf {
    let mut p = prefix.as_os_str().to_owned();
    p.push(format!(".{ext}"));
    PathBuf::from(p)
}

fn keygen(prefix: &Path) -> anyhow::Result<ExitCode> {
    let (key, public) = (with_ext(prefix, "key"), with_ext(prefix, "pub"));
    if key.exists() || public.exists() {
        return Err(
            UsageError(format!("{} or {} exists already; not overwriting", key.display(), public.display())).into()
        );
    }
    let (secret, pk) = escrow::generate_admin_key(&mut rand::rngs::OsRng);
    let text = Zeroizing::new(format!("{}\n", Zeroizing::new(hex::encode(&secret[..])).as_str()));
    crate::devup::write_secret(&key, text.as_bytes())?;
    std::fs::write(&public, format!("{}\n", hex::encode(pk)))?;
    out!("wrote {} (secret: keep it offline) and {}", key.display(), public.display());
    out!("recovery public key: {}", hex::encode(pk));
    Ok(ExitCode::SUCCESS)
}

fn read_hex32(path: &Path, what: &str) -> Result<Zeroizing<[u8; 32]>, UsageError> {
    let text = Zeroizing::new(
        std::fs::read_to_string(path).map_err(|e| UsageError(format!("cannot read {}: {e}", path.display())))?,
    );
    let bytes = Zeroizing::new(hex::decode(text.trim()).unwrap_or_default());
    let arr: [u8; 32] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| UsageError(format!("{}: not a {what} (32 bytes of hex)", path.display())))?;
    Ok(Zeroizing::new(arr))
}

/// The `[recovery]` and `[restore]` genesis sections for recovery admins'
/// public key files (named by their file stem) and a restore pin.
fn genesis_sections(
    admins: &[PathBuf],
    threshold: Option<u16>,
    restore: Option<&RestorePin>,
) -> anyhow::Result<String> {
    let mut text = String::new();
    match (admins.is_empty(), threshold) {
        (true, None) => {}
        (false, Some(k)) => {
            text.push_str(&format!("[recovery]\nthreshold = {k}\n\n"));
            for path in admins {
                let pk = read_hex32(path, "recovery public key")?;
                escrow::check_admin_public_key(&pk).map_err(|e| UsageError(format!("{}: {e}", path.display())))?;
                let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
                text.push_str(&format!(
                    "[[recovery.admins]]\nname = {name:?}\npublic_key = \"{}\"\n\n",
                    hex::encode(*pk)
                ));
            }
        }
        _ => return Err(UsageError("--recovery-admins and --recovery-threshold go together".into()).into()),
    }
    if let Some(pin) = restore {
        text.push_str(&format!(
            "# Rebuilt from an admin escrow: no DKG; `guardctl recover` restores these keys.\n\
             [restore]\nbls_group_key = \"{}\"\nfrost_group_key = \"{}\"\ncreated_at = {}\n\n",
            hex::encode(pin.bls_group_key),
            hex::encode(pin.frost_group_key),
            pin.created_at
        ));
    }
    Ok(text)
}

/// Read and check an escrow file.
fn load_escrow(path: &Path) -> Result<EscrowFile, UsageError> {
    let bytes = std::fs::read(path).map_err(|e| UsageError(format!("cannot read {}: {e}", path.display())))?;
    EscrowFile::parse(&bytes).map_err(|e| UsageError(format!("{}: {e}", path.display())))
}

async fn export(dir: &Path, node: Option<u64>, out_file: &Path) -> anyhow::Result<ExitCode> {
    let cluster = ClusterFile::load(dir)?;
    let (id, r) =
        ask_first(&cluster, node, |mut c| async move { c.get_recovery_escrow(GetRecoveryEscrowRequest {}).await })
            .await?;
    if r.escrow_json.is_empty() {
        return Err(anyhow::anyhow!(
            "node {id}: the escrow is not complete yet (too few holders have escrowed); `guardctl status` shows progress"
        ));
    }
    let file = EscrowFile::parse(&r.escrow_json).map_err(|e| anyhow::anyhow!("node {id} sent a bad escrow: {e}"))?;
    std::fs::write(out_file, &r.escrow_json)?;
    let pin = file.pin()?;
    out!(
        "wrote {}: key epoch {}, escrowed by holders {:?}, {}-of-{} recovery admins ({})",
        out_file.display(),
        file.escrow.keys.epoch,
        file.escrow.deals.keys().collect::<Vec<_>>(),
        file.recovery.threshold,
        file.recovery.admins.len(),
        file.recovery.admins.iter().map(|a| a.name.as_str()).collect::<Vec<_>>().join(", ")
    );
    out!("root CA key (Ed25519): {}", hex::encode(pin.frost_group_key));
    Ok(ExitCode::SUCCESS)
}

pub fn recover(a: &RecoverArgs) -> anyhow::Result<ExitCode> {
    let file = load_escrow(&a.escrow)?;
    let pin = file.pin()?;
    let cluster = ClusterFile::load(&a.cluster)?;
    let genesis = cluster.genesis()?;
    if genesis.cluster_id != file.cluster_id || genesis.restore.as_ref() != Some(&pin) {
        return Err(UsageError(format!(
            "{} is not a cluster rebuilt from this escrow (its genesis must have cluster id {} and pin the escrow's keys: \
             initialize it with `guardctl dev init --restore-from {}`)",
            a.cluster.display(),
            hex::encode(file.cluster_id),
            a.escrow.display()
        ))
        .into());
    }
    let mut keys = BTreeMap::new();
    for path in &a.admin_keys {
        let secret = read_hex32(path, "recovery key")?;
        let public = escrow::admin_public_key(&secret).map_err(|e| UsageError(format!("{}: {e}", path.display())))?;
        let index = file
            .recovery
            .index_of(&public)
            .ok_or_else(|| UsageError(format!("{}: not the key of a recovery admin of this escrow", path.display())))?;
        keys.insert(index, secret);
    }
    let opened = escrow::open(&file.cluster_id, &file.recovery, &file.escrow, &keys)?;
    for (holder, why) in &opened.skipped {
        eprintln!("guardctl: skipped node {holder}'s escrow (it does not check: {why})");
    }
    let shares: Vec<RecoveryShare> = opened
        .shares
        .values()
        .map(|s| RecoveryShare {
            index: u32::from(s.index),
            bls_share: s.bls.to_bytes().to_vec(),
            frost_key_share: s.frost.to_bytes().to_vec(),
        })
        .collect();
    let req = RecoverRequest { recovery_threshold: u32::from(file.recovery.threshold), shares };
    let rt = tokio::runtime::Runtime::new()?;
    let (id, r) = rt.block_on(ask_first(&cluster, a.node, |mut c| {
        let req = req.clone();
        async move { c.recover(req).await }
    }))?;
    drop(req);
    out!("{}", r.message);
    if a.wait == 0 {
        return Ok(ExitCode::SUCCESS);
    }
    let epoch = rt.block_on(wait_restored(&cluster, id, Duration::from_secs(a.wait)))?;
    out!(
        "restored: key epoch {epoch}, the same group keys as the lost cluster (root CA key {})",
        hex::encode(pin.frost_group_key)
    );
    Ok(ExitCode::SUCCESS)
}

/// Wait until node `id` reports keys in force.
async fn wait_restored(cluster: &ClusterFile, id: u64, timeout: Duration) -> anyhow::Result<u64> {
    let admin = Admin::new(cluster)?;
    let node =
        cluster.nodes.iter().find(|n| n.id == id).ok_or_else(|| anyhow::anyhow!("node {id} not in cluster.json"))?;
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Ok(mut c) = admin.connect(node).await {
            if let Ok(s) = c.status(StatusRequest {}).await {
                let t = s.into_inner().threshold.unwrap_or_default();
                if t.bls_epoch > 0 && !t.awaiting_recovery {
                    return Ok(t.bls_epoch);
                }
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(anyhow::anyhow!(
                "the restore did not complete within {} s; see `guardctl status` and the node logs",
                timeout.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
