//! Admin recovery on one node (the rules are in [`crate::threshold::escrow`]):
//! escrowing this node's shares to the recovery admins, exporting the
//! escrow, and, on a fresh node of a cluster being rebuilt, taking the
//! admins' shares and starting the `Restore` ceremony that deals them out.

use std::collections::BTreeMap;
use std::sync::PoisonError;

use guardian_proto::v1::RecoverRequest;
use zeroize::Zeroizing;

use super::{ceremony, KeyError, KeyNode};
use crate::state::MemberStatus;
use crate::threshold::ceremony::KeyMsg;
use crate::threshold::escrow::{self, AdminShare, EscrowFile};
use crate::threshold::{bls, frost};

fn other(e: impl std::fmt::Display) -> KeyError {
    KeyError::Other(e.to_string())
}

/// Run from the ceremony task: escrow this node's shares of epoch
/// `escrow_due` ([`escrow_due`](crate::threshold::ceremony::escrow_due));
/// on a node holding recovered keys, ask for the restore while no ceremony
/// runs, or drop the keys once the cluster has its keys back.
pub async fn tick(
    node: &KeyNode,
    has_keys: bool,
    ceremony_running: bool,
    escrow_due: Option<u64>,
) -> Result<(), KeyError> {
    if has_keys {
        node.recovered.lock().unwrap_or_else(PoisonError::into_inner).take();
    } else if !ceremony_running && node.holds_recovered() {
        tracing::info!("holding the keys rebuilt from admin shares; starting the restore ceremony");
        node.submit(&KeyMsg::Restore).await?;
    }
    if let Some(epoch) = escrow_due {
        let cfg = node.recovery.as_ref().ok_or_else(|| other("no recovery admins"))?;
        let shares = ceremony::load_shares(node, epoch)?.ok_or(KeyError::NoShare(epoch))?;
        let deal =
            escrow::deal(&node.cluster_id, cfg, epoch, node.me, &shares.bls, &shares.frost, &mut rand::rngs::OsRng)
                .map_err(other)?;
        node.submit(&KeyMsg::Escrow { epoch, deal }).await?;
        tracing::info!(epoch, admins = cfg.admins.len(), "escrowed this node's key shares to the recovery admins");
    }
    Ok(())
}

/// The escrow file, once enough holders have escrowed.
pub fn export(node: &KeyNode) -> Result<Option<Vec<u8>>, KeyError> {
    let Some(cfg) = node.recovery.clone() else {
        return Err(other("the genesis file names no recovery admins: nothing is escrowed"));
    };
    match node.view.with_state(|s| s.keys.escrow.clone()) {
        Some(e) if e.complete() => {
            let file = EscrowFile::new(node.cluster_id, cfg, e);
            Ok(Some(serde_json::to_vec_pretty(&file).map_err(other)?))
        }
        _ => Ok(None),
    }
}

/// Take `k` recovery admins' shares on a fresh node of a cluster being
/// rebuilt: rebuild the keys, check them against the genesis pin, and hold
/// them in memory until the restore ceremony has dealt them out.
#[tracing::instrument(skip_all, fields(node = node.me))]
pub fn accept(node: &KeyNode, req: RecoverRequest) -> Result<String, KeyError> {
    let pin = node.restore.as_ref().ok_or_else(|| {
        other("this node's genesis pins no keys to restore: it is not part of a cluster being rebuilt (see `guardctl dev init --restore-from`)")
    })?;
    let (has_keys, voter) = node.view.with_state(|s| {
        (s.keys.current.is_some(), s.members.get(&node.me).is_some_and(|m| m.status == MemberStatus::Voter))
    });
    if has_keys {
        return Err(other("this cluster has its keys already: nothing to recover"));
    }
    if !voter {
        return Err(other("this node is not a voting member yet: hand the shares to one that is"));
    }
    let k = u16::try_from(req.recovery_threshold).map_err(|_| other("recovery threshold out of range"))?;
    let mut shares = BTreeMap::new();
    for s in req.shares {
        // The wire bytes are wiped as soon as they are parsed, whatever the outcome.
        let (bls_bytes, frost_bytes) = (Zeroizing::new(s.bls_share), Zeroizing::new(s.frost_key_share));
        let index = u16::try_from(s.index).map_err(|_| other("admin index out of range"))?;
        let share = AdminShare {
            index,
            bls: bls::BlsShare::from_bytes(&bls_bytes).map_err(|e| other(format!("admin {index}'s BLS share: {e}")))?,
            frost: frost::KeyShare::from_bytes(&frost_bytes)
                .map_err(|e| other(format!("admin {index}'s FROST share: {e}")))?,
        };
        if shares.insert(index, share).is_some() {
            return Err(other(format!("admin {index}'s share was given twice")));
        }
    }
    let root = escrow::combine(pin, k, &shares).map_err(other)?;
    *node.recovered.lock().unwrap_or_else(PoisonError::into_inner) = Some(root);
    tracing::warn!("rebuilt the root keys from admin shares; dealing them to the members, then erasing them");
    Ok(format!(
        "node {} rebuilt the keys from {} admin shares; it now deals them to the members and erases them \
         (watch `guardctl status`)",
        node.me,
        shares.len()
    ))
}
