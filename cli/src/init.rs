//! `guardctl init`: write the genesis file that founds a production cluster
//! (the format is documented in `node/src/state/genesis.rs`).

use std::path::PathBuf;
use std::process::ExitCode;

use guardian_node::state::genesis::Genesis;
use sha2::{Digest, Sha256};

use crate::output::out;
use crate::UsageError;

#[derive(clap::Args)]
pub struct InitArgs {
    /// Where to write the genesis file (never overwritten).
    #[arg(long, default_value = "genesis.toml")]
    out: PathBuf,
    /// A founding member as ID=HOST:PORT (its peer address); repeat for each member.
    #[arg(long = "member", required = true, value_name = "ID=ADDR")]
    members: Vec<String>,
    /// Shares needed to use the root keys (t); at most the number of members.
    #[arg(long)]
    threshold: u16,
    /// An admin as NAME=KEY (Ed25519 public key, 64 hex); repeat for each admin.
    #[arg(long = "admin", required = true, value_name = "NAME=KEY")]
    admins: Vec<String>,
    /// Admin signatures needed for quorum commands (revoke, admin changes).
    #[arg(long, default_value_t = 1)]
    admin_quorum: u32,
    /// TOML file with the guardian measurement policy: the contents of the genesis
    /// `[guardian_policy]` table (tees, accepted_tcb_status, [[tdx]] rules).
    #[arg(long, value_name = "FILE")]
    guardian_policy: PathBuf,
    #[command(flatten)]
    recovery: crate::recovery::RecoveryOpts,
}

fn split<'a>(arg: &'a str, what: &str) -> Result<(&'a str, &'a str), UsageError> {
    arg.split_once('=').ok_or_else(|| UsageError(format!("--{what} {arg:?}: expected {}", what.to_uppercase() + "=…")))
}

pub fn run(a: &InitArgs) -> anyhow::Result<ExitCode> {
    if a.out.exists() {
        return Err(UsageError(format!("{} exists already; not overwriting a genesis file", a.out.display())).into());
    }
    let (restored_id, extra) = a.recovery.genesis()?;
    let cluster_id = restored_id.unwrap_or_else(crate::devup::random::<16>);
    let mut text = format!(
        "# Guardian genesis file: every node of the cluster holds this exact file.\n\
         cluster_id = \"{}\"\nthreshold = {}\nadmin_quorum = {}\n\n",
        hex::encode(cluster_id),
        a.threshold,
        a.admin_quorum
    );
    for m in &a.members {
        let (id, addr) = split(m, "member")?;
        let id: u64 = id.parse().map_err(|_| UsageError(format!("--member {m:?}: the id must be a number")))?;
        text.push_str(&format!("[[members]]\nid = {id}\naddr = {addr:?}\n\n"));
    }
    for admin in &a.admins {
        let (name, key) = split(admin, "admin")?;
        text.push_str(&format!("[[admins]]\nname = {name:?}\npublic_key = {key:?}\n\n"));
    }
    text.push_str(&extra);
    let policy = std::fs::read_to_string(&a.guardian_policy)
        .map_err(|e| UsageError(format!("cannot read {}: {e}", a.guardian_policy.display())))?;
    let policy: toml::Table =
        toml::from_str(&policy).map_err(|e| UsageError(format!("{}: {e}", a.guardian_policy.display())))?;
    let wrapped = toml::Table::from_iter([("guardian_policy".to_string(), toml::Value::Table(policy))]);
    text.push_str(&toml::to_string(&wrapped)?);
    let genesis = Genesis::parse(&text).map_err(|e| UsageError(e.to_string()))?;
    std::fs::write(&a.out, &text)?;
    out!(
        "wrote {}: cluster {}, {} members, {}-of-n keys, {} admins (quorum {}){}{}",
        a.out.display(),
        hex::encode(genesis.cluster_id),
        genesis.members.len(),
        genesis.threshold,
        genesis.admins.len(),
        genesis.admin_quorum,
        genesis.recovery.as_ref().map_or(String::new(), |r| format!(
            ", escrowed to {}-of-{} recovery admins",
            r.threshold,
            r.admins.len()
        )),
        if genesis.restore.is_some() {
            ", rebuilding a lost cluster (run `guardctl recover` once it is up)"
        } else {
            ""
        }
    );
    out!("SHA-256 {}: compare it on every node before starting them", hex::encode(Sha256::digest(text.as_bytes())));
    Ok(ExitCode::SUCCESS)
}
