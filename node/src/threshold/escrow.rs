//! Admin recovery: the escrow of the root keys to `k`-of-`m` recovery admins,
//! and the rebuild of a cluster lost whole (docs/keys.md §6).
//!
//! **Escrow.** Once keys exist, each holder `d` reshares its own shares to the
//! `m` admins (indices 1..=m, in genesis order) with degree `k − 1`
//! polynomials: the commitments go in the log, where every node checks that
//! they open to `d`'s public key shares ([`check_deal`]), and admin `a`'s
//! values are HPKE-sealed (RFC 9180, X25519 + ChaCha20-Poly1305) to that
//! admin's key, bound to the cluster, epoch, dealer and admin. Nothing in an
//! escrow is secret without an admin's private key, so the whole escrow can
//! be exported and kept anywhere.
//!
//! **Opening.** With `k` admins' private keys, [`open`] decrypts, checks each
//! value against its commitment, and picks the first `t` dealers whose values
//! all check (a holder that sealed garbage is skipped, not trusted). Admin
//! `a`'s share is the Lagrange combination over those dealers: the admin
//! shares are a `k`-of-`m` sharing of the group secrets themselves, checked
//! against the admin-level public keys the commitments define.
//!
//! **Rebuild.** [`combine`] runs on one fresh node only: it turns `k` admin
//! shares into the whole secrets ([`RecoveredRoot`]), checked against the
//! group keys the new genesis pins ([`RestorePin`]). That node then deals a
//! fresh sharing in a single-dealer `Restore` ceremony
//! ([`super::ceremony`]) and drops the secrets.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use hpke::aead::ChaCha20Poly1305;
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, Kem as _, OpModeR, OpModeS, Serializable};
use rand::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::ceremony::GroupKeys;
use super::{bls, frost, share_index};
use crate::state::NodeId;

type Kem = X25519HkdfSha256;

/// Plaintext per dealer and admin: the BLS value ‖ the FROST value.
const PLAINTEXT_LEN: usize = 64;
/// HPKE encapsulated key (32) ‖ AEAD ciphertext (64 + 16-byte tag).
pub const SEALED_LEN: usize = 32 + PLAINTEXT_LEN + 16;

/// Errors of escrow and recovery, each saying what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EscrowError {
    #[error("recovery needs {needed} admin keys, {got} given")]
    TooFewAdmins { got: usize, needed: usize },
    #[error("admin {0} is not a recovery admin of this escrow")]
    UnknownAdmin(u16),
    #[error("admin {index}'s key does not open the escrow (wrong key file, or another cluster's escrow)")]
    WrongKey { index: u16 },
    #[error("only {usable} holders' escrow deals open and check for every admin given; {needed} are needed: {why}")]
    TooFewDealers { usable: usize, needed: usize, why: String },
    #[error(
        "the admin shares do not rebuild the pinned group keys ({0}): one is wrong, or the escrow is another cluster's"
    )]
    Mismatch(&'static str),
    #[error("malformed {0}")]
    Malformed(String),
}

fn malformed(e: impl fmt::Display) -> EscrowError {
    EscrowError::Malformed(e.to_string())
}

/// An X25519 recovery key pair for one admin (`guardctl recovery keygen`).
pub fn generate_admin_key<R: RngCore + CryptoRng>(rng: &mut R) -> (Zeroizing<[u8; 32]>, [u8; 32]) {
    let (sk, pk) = Kem::gen_keypair(rng);
    let secret: [u8; 32] = sk.to_bytes().into();
    (Zeroizing::new(secret), pk.to_bytes().into())
}

/// The admin public key of a private key, to tell which admin a key file belongs to.
pub fn admin_public_key(secret: &[u8; 32]) -> Result<[u8; 32], EscrowError> {
    let sk = <Kem as hpke::Kem>::PrivateKey::from_bytes(secret).map_err(|_| malformed("recovery key"))?;
    Ok(<Kem as hpke::Kem>::sk_to_pk(&sk).to_bytes().into())
}

/// Checks that 32 bytes are an X25519 public key HPKE accepts.
pub fn check_admin_public_key(key: &[u8; 32]) -> Result<(), EscrowError> {
    <Kem as hpke::Kem>::PublicKey::from_bytes(key).map(|_| ()).map_err(|_| malformed("X25519 public key"))
}

/// Who can recover the cluster: fixed by the genesis file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoveryConfig {
    /// Admins needed (k ≥ 2: no single admin can rebuild the keys).
    pub threshold: u16,
    /// The m admins; admin `i` (0-based) holds escrow index `i + 1`.
    pub admins: Vec<RecoveryAdmin>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoveryAdmin {
    pub name: String,
    /// X25519 (HPKE) public key.
    #[serde(with = "hex::serde")]
    pub public_key: [u8; 32],
}

impl RecoveryConfig {
    /// Checks k and the keys; `k` must be 2..=m and keys distinct.
    pub fn new(threshold: u16, admins: Vec<RecoveryAdmin>) -> Result<Self, String> {
        let m = admins.len();
        if threshold < 2 || usize::from(threshold) > m || m > usize::from(u16::MAX) {
            return Err(format!("recovery threshold {threshold} must be between 2 and the {m} recovery admins"));
        }
        let keys: BTreeSet<[u8; 32]> = admins.iter().map(|a| a.public_key).collect();
        if keys.len() != m {
            return Err("recovery admins must have distinct keys".into());
        }
        for a in &admins {
            check_admin_public_key(&a.public_key)
                .map_err(|_| format!("recovery admin {}: not an X25519 key", a.name))?;
        }
        Ok(RecoveryConfig { threshold, admins })
    }

    /// Escrow index of each admin (1..=m).
    fn indexed(&self) -> impl Iterator<Item = (u16, &RecoveryAdmin)> {
        self.admins.iter().enumerate().map(|(i, a)| ((i + 1) as u16, a))
    }

    /// The escrow index of the admin holding `public_key`.
    pub fn index_of(&self, public_key: &[u8; 32]) -> Option<u16> {
        self.indexed().find(|(_, a)| a.public_key == *public_key).map(|(i, _)| i)
    }
}

/// The group keys a cluster being rebuilt must end up with (from the old
/// cluster's escrow): it runs no DKG, only a `Restore` ceremony whose dealer
/// commits to exactly these keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestorePin {
    #[serde(with = "hex::serde")]
    pub bls_group_key: [u8; bls::G1_LEN],
    #[serde(with = "hex::serde")]
    pub frost_group_key: [u8; 32],
    /// When the keys were first generated (keeps the root CA's validity).
    pub created_at: u64,
}

impl RestorePin {
    /// The pin for the keys an escrow holds.
    pub fn of(keys: &GroupKeys) -> Result<Self, String> {
        Ok(RestorePin {
            bls_group_key: keys.bls_public()?.group_key(),
            frost_group_key: keys.frost_public()?.verifying_key(),
            created_at: keys.created_at,
        })
    }
}

/// One holder's escrow: public commitments, and a sealed value per admin.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EscrowDeal {
    /// BLS Feldman commitment, `k` points; opens to the holder's public key share.
    #[serde(with = "hex::serde")]
    pub bls: Vec<u8>,
    /// FROST Feldman commitment, `k` points; opens to the holder's verifying share.
    #[serde(with = "hex::serde")]
    pub frost: Vec<u8>,
    /// HPKE ciphertexts, one per recovery admin in genesis order.
    pub sealed: Vec<Sealed>,
}

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sealed(#[serde(with = "hex::serde")] pub Vec<u8>);

impl fmt::Debug for EscrowDeal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EscrowDeal").field("admins", &self.sealed.len()).finish_non_exhaustive()
    }
}

/// The escrow of one key epoch: the epoch's public keys and the holders' deals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Escrow {
    pub keys: GroupKeys,
    pub deals: BTreeMap<NodeId, EscrowDeal>,
}

impl Escrow {
    /// Enough holders have escrowed for the admins to rebuild the keys.
    pub fn complete(&self) -> bool {
        self.deals.len() >= usize::from(self.keys.threshold)
    }
}

/// HPKE `info`: binds a sealed value to its cluster, epoch, dealer and admin.
fn info(cluster_id: &[u8; 16], epoch: u64, dealer: NodeId, admin: u16) -> Vec<u8> {
    let mut v = b"guardian/escrow/v1\0".to_vec();
    v.extend_from_slice(cluster_id);
    v.extend_from_slice(&epoch.to_be_bytes());
    v.extend_from_slice(&dealer.to_be_bytes());
    v.extend_from_slice(&admin.to_be_bytes());
    v
}

/// A holder's escrow deal of its shares of `keys.epoch`.
pub fn deal<R: RngCore + CryptoRng>(
    cluster_id: &[u8; 16],
    cfg: &RecoveryConfig,
    epoch: u64,
    dealer: NodeId,
    bls_share: &bls::BlsShare,
    frost_share: &frost::KeyShare,
    rng: &mut R,
) -> Result<EscrowDeal, EscrowError> {
    let k = cfg.threshold;
    let b = bls::BlsDealer::reshare(bls_share, k, rng).map_err(malformed)?;
    let f = frost::ReshareDealer::new(frost_share, k, rng).map_err(malformed)?;
    let mut sealed = Vec::with_capacity(cfg.admins.len());
    for (a, admin) in cfg.indexed() {
        let mut plain = Zeroizing::new([0u8; PLAINTEXT_LEN]);
        plain[..32].copy_from_slice(&b.share_for(a).map_err(malformed)?.to_bytes()[..]);
        plain[32..].copy_from_slice(&f.share_for(a).map_err(malformed)?[..]);
        let pk = <Kem as hpke::Kem>::PublicKey::from_bytes(&admin.public_key).map_err(|_| malformed("admin key"))?;
        let (enc, ct) = hpke::single_shot_seal::<ChaCha20Poly1305, HkdfSha256, Kem, _>(
            &OpModeS::Base,
            &pk,
            &info(cluster_id, epoch, dealer, a),
            &plain[..],
            &[],
            rng,
        )
        .map_err(|e| malformed(format!("HPKE seal: {e}")))?;
        sealed.push(Sealed([enc.to_bytes().to_vec(), ct].concat()));
    }
    Ok(EscrowDeal { bls: b.commitment().to_bytes(), frost: f.commitment(), sealed })
}

/// What every node checks of a holder's escrow deal on apply: commitments of
/// degree `k − 1` that open to the holder's shares of `keys`, one sealed
/// value of the right size per admin. (The sealed values themselves can only
/// be checked by the admins: [`open`] skips a holder whose values do not.)
pub fn check_deal(cfg: &RecoveryConfig, keys: &GroupKeys, dealer: NodeId, deal: &EscrowDeal) -> Result<(), String> {
    let x = share_index(dealer).ok_or("dealer id out of range")?;
    if !keys.holders.contains(&dealer) {
        return Err(format!("node {dealer} holds no share of epoch {}", keys.epoch));
    }
    let c = bls::BlsCommitment::from_bytes(&deal.bls, cfg.threshold).map_err(|e| format!("BLS commitment: {e}"))?;
    bls::check_reshare_commitment(&c, &keys.bls_public()?, x).map_err(|e| e.to_string())?;
    if deal.frost.len() != 32 * usize::from(cfg.threshold) {
        return Err(format!("FROST commitment: expected {} points", cfg.threshold));
    }
    frost::check_reshare_commitment(&deal.frost, &keys.frost_public()?, x).map_err(|e| e.to_string())?;
    if deal.sealed.len() != cfg.admins.len() || deal.sealed.iter().any(|s| s.0.len() != SEALED_LEN) {
        return Err(format!("expected {} sealed values of {SEALED_LEN} bytes", cfg.admins.len()));
    }
    Ok(())
}

/// One recovery admin's share of the group secrets. Secret: zeroized on drop.
pub struct AdminShare {
    pub index: u16,
    pub bls: bls::BlsShare,
    pub frost: frost::KeyShare,
}

impl fmt::Debug for AdminShare {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminShare").field("index", &self.index).finish_non_exhaustive()
    }
}

/// What [`open`] found.
#[derive(Debug)]
pub struct Opened {
    pub shares: BTreeMap<u16, AdminShare>,
    /// The holders whose escrow deals were used.
    pub dealers: BTreeSet<NodeId>,
    /// Holders skipped, with why (their sealed values did not open or check).
    pub skipped: BTreeMap<NodeId, String>,
}

/// One dealer's values for one admin: (BLS, FROST).
type OpenedValue = (bls::BlsShare, Zeroizing<[u8; 32]>);

/// Decrypt and check one sealed value of `dealer` for admin `a`.
fn open_one(
    cluster_id: &[u8; 16],
    epoch: u64,
    dealer: NodeId,
    deal: &EscrowDeal,
    a: u16,
    secret: &[u8; 32],
    k: u16,
) -> Result<OpenedValue, String> {
    let sealed = deal.sealed.get(usize::from(a) - 1).ok_or("no value for this admin")?;
    if sealed.0.len() != SEALED_LEN {
        return Err("sealed value of the wrong size".into());
    }
    let (enc, ct) = sealed.0.split_at(32);
    let enc = <Kem as hpke::Kem>::EncappedKey::from_bytes(enc).map_err(|_| "bad encapsulated key")?;
    let sk = <Kem as hpke::Kem>::PrivateKey::from_bytes(secret).map_err(|_| "bad recovery key")?;
    let plain = Zeroizing::new(
        hpke::single_shot_open::<ChaCha20Poly1305, HkdfSha256, Kem>(
            &OpModeR::Base,
            &sk,
            &enc,
            &info(cluster_id, epoch, dealer, a),
            ct,
            &[],
        )
        .map_err(|_| "does not decrypt")?,
    );
    if plain.len() != PLAINTEXT_LEN {
        return Err("plaintext of the wrong size".into());
    }
    let b = bls::BlsShare::from_bytes(&plain[..32]).map_err(|e| e.to_string())?;
    let c = bls::BlsCommitment::from_bytes(&deal.bls, k).map_err(|e| e.to_string())?;
    bls::verify_share(&c, a, &b).map_err(|e| format!("BLS value: {e}"))?;
    let f: [u8; 32] = plain[32..].try_into().map_err(|_| "plaintext")?;
    let f = Zeroizing::new(f);
    let dx = share_index(dealer).ok_or("dealer id out of range")?;
    frost::verify_reshare_share(dx, &deal.frost, a, &f).map_err(|e| format!("FROST value: {e}"))?;
    Ok((b, f))
}

/// Open an escrow with recovery admins' private keys (by escrow index): the
/// admins' shares of the group secrets, each checked. Needs `k` keys.
pub fn open(
    cluster_id: &[u8; 16],
    cfg: &RecoveryConfig,
    escrow: &Escrow,
    admin_keys: &BTreeMap<u16, Zeroizing<[u8; 32]>>,
) -> Result<Opened, EscrowError> {
    let k = cfg.threshold;
    if admin_keys.len() < usize::from(k) {
        return Err(EscrowError::TooFewAdmins { got: admin_keys.len(), needed: usize::from(k) });
    }
    for (&a, key) in admin_keys {
        let admin =
            a.checked_sub(1).and_then(|i| cfg.admins.get(usize::from(i))).ok_or(EscrowError::UnknownAdmin(a))?;
        if admin_public_key(key)? != admin.public_key {
            return Err(EscrowError::WrongKey { index: a });
        }
    }
    let keys = &escrow.keys;
    let t = usize::from(keys.threshold);
    // Per usable dealer, per admin: the opened (BLS, FROST) values.
    let mut values: BTreeMap<NodeId, BTreeMap<u16, OpenedValue>> = BTreeMap::new();
    let mut skipped = BTreeMap::new();
    for (&d, deal) in &escrow.deals {
        if values.len() == t {
            break;
        }
        // Re-check what apply checked: the file may not come from a node.
        if let Err(e) = check_deal(cfg, keys, d, deal) {
            skipped.insert(d, e);
            continue;
        }
        let opened: Result<BTreeMap<_, _>, String> = admin_keys
            .iter()
            .map(|(&a, key)| {
                open_one(cluster_id, keys.epoch, d, deal, a, key, k)
                    .map(|v| (a, v))
                    .map_err(|e| format!("admin {a}: {e}"))
            })
            .collect();
        match opened {
            Ok(v) => {
                values.insert(d, v);
            }
            Err(e) => {
                skipped.insert(d, e);
            }
        }
    }
    if values.len() < t {
        return Err(EscrowError::TooFewDealers { usable: values.len(), needed: t, why: format!("{skipped:?}") });
    }
    // The admin-level public keys the chosen dealers define (group keys unchanged: checked).
    let admins: Vec<u16> = cfg.indexed().map(|(a, _)| a).collect();
    let bls_commitments: BTreeMap<u16, bls::BlsCommitment> = values
        .keys()
        .map(|d| {
            let x = share_index(*d).ok_or_else(|| malformed("dealer id"))?;
            Ok((x, bls::BlsCommitment::from_bytes(&escrow.deals[d].bls, k).map_err(malformed)?))
        })
        .collect::<Result<_, EscrowError>>()?;
    let frost_commitments: BTreeMap<u16, Vec<u8>> =
        values.keys().filter_map(|d| Some((share_index(*d)?, escrow.deals[d].frost.clone()))).collect();
    let bls_public =
        bls::reshare_public(&keys.bls_public().map_err(malformed)?, &bls_commitments).map_err(malformed)?;
    let frost_public = frost::reshare_public(&frost_commitments, &admins, k, &keys.frost_public().map_err(malformed)?)
        .map_err(malformed)?;
    let mut shares = BTreeMap::new();
    for &a in admin_keys.keys() {
        let mut b = BTreeMap::new();
        let mut f = BTreeMap::new();
        for (d, per_admin) in &values {
            let x = share_index(*d).ok_or_else(|| malformed("dealer id"))?;
            let (bv, fv) = &per_admin[&a];
            b.insert(x, bv.clone());
            f.insert(x, fv.clone());
        }
        let bls_share = bls::reshare_share(&b, keys.threshold).map_err(malformed)?;
        bls_public.check_share(a, &bls_share).map_err(malformed)?;
        let frost_share = frost::reshare_finish(a, &f, &frost_public).map_err(malformed)?;
        shares.insert(a, AdminShare { index: a, bls: bls_share, frost: frost_share });
    }
    Ok(Opened { shares, dealers: values.into_keys().collect(), skipped })
}

/// The whole group secrets, rebuilt on one fresh node. Zeroized on drop.
pub struct RecoveredRoot {
    pub bls: bls::BlsShare,
    pub frost: Zeroizing<[u8; 32]>,
}

impl fmt::Debug for RecoveredRoot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RecoveredRoot { <redacted> }")
    }
}

/// Rebuild the group secrets from `k` admin shares, and check them against
/// the pinned group keys. The one place where shares are combined.
pub fn combine(pin: &RestorePin, k: u16, shares: &BTreeMap<u16, AdminShare>) -> Result<RecoveredRoot, EscrowError> {
    if shares.len() < usize::from(k) {
        return Err(EscrowError::TooFewAdmins { got: shares.len(), needed: usize::from(k) });
    }
    if shares.iter().any(|(a, s)| s.index != *a || s.frost.x() != *a || s.frost.threshold() != k) {
        return Err(malformed("admin shares (index or threshold does not match the recovery config)"));
    }
    let b: BTreeMap<u16, bls::BlsShare> = shares.iter().map(|(a, s)| (*a, s.bls.clone())).collect();
    let bls_secret = bls::reshare_share(&b, k).map_err(malformed)?;
    if bls_secret.public_key() != pin.bls_group_key {
        return Err(EscrowError::Mismatch("BLS"));
    }
    let f: BTreeMap<u16, frost::KeyShare> = shares.iter().map(|(a, s)| (*a, s.frost.clone())).collect();
    if f.values().any(|s| s.verifying_key() != pin.frost_group_key) {
        return Err(EscrowError::Mismatch("FROST"));
    }
    let frost_secret = frost::recover_secret(&f).map_err(|_| EscrowError::Mismatch("FROST"))?;
    Ok(RecoveredRoot { bls: bls_secret, frost: frost_secret })
}

/// What `guardctl recovery export` writes and `guardctl recover` reads.
pub const ESCROW_FORMAT: &str = "guardian-escrow/v1";

/// An exported escrow: everything the recovery admins need, all public.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EscrowFile {
    pub format: String,
    #[serde(with = "hex::serde")]
    pub cluster_id: [u8; 16],
    pub recovery: RecoveryConfig,
    pub escrow: Escrow,
}

impl EscrowFile {
    pub fn new(cluster_id: [u8; 16], recovery: RecoveryConfig, escrow: Escrow) -> Self {
        EscrowFile { format: ESCROW_FORMAT.into(), cluster_id, recovery, escrow }
    }

    /// Parses and checks an escrow file (it may come from anywhere).
    pub fn parse(bytes: &[u8]) -> Result<Self, EscrowError> {
        let f: EscrowFile = serde_json::from_slice(bytes).map_err(|e| malformed(format!("escrow file: {e}")))?;
        if f.format != ESCROW_FORMAT {
            return Err(malformed(format!("escrow file: format {:?}, expected {ESCROW_FORMAT:?}", f.format)));
        }
        RecoveryConfig::new(f.recovery.threshold, f.recovery.admins.clone()).map_err(malformed)?;
        if !f.escrow.complete() {
            return Err(malformed(format!(
                "escrow file: {} holders escrowed, {} needed",
                f.escrow.deals.len(),
                f.escrow.keys.threshold
            )));
        }
        f.pin()?;
        Ok(f)
    }

    /// The group keys a rebuilt cluster must restore.
    pub fn pin(&self) -> Result<RestorePin, EscrowError> {
        RestorePin::of(&self.escrow.keys).map_err(malformed)
    }
}
