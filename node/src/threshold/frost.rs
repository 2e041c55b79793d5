//! Ed25519 half of Guardian's threshold root (the root CA signing key), built on `frost-ed25519`.
//!
//! Three protocols, all pure (no I/O, no clock); the caller moves the byte blobs between nodes:
//! - **DKG** (`dkg_round1` → `dkg_round2` → `dkg_finish`) wraps frost's Pedersen DKG. Round-1 packages
//!   are public (they go through Raft), so any node can recompute the group with [`dkg_public`].
//! - **Resharing** ([`ReshareDealer`], [`reshare_public`], [`reshare_finish`]) is our own Feldman VSS on
//!   curve25519-dalek: a quorum of old holders each re-shares its own signing share; new holders combine
//!   with Lagrange coefficients at 0. One protocol serves both join and revoke, and the group verifying key
//!   never changes (checked). The secret stays the same, so old shares stay valid shares of the old
//!   polynomial: every holder must destroy its old [`KeyShare`] once the new one is sealed, or a revoked
//!   node plus `t - 1` undeleted old shares still recover the key.
//! - **Signing** ([`commit`], [`signing_package`], [`sign`], [`aggregate`]) is two-round FROST with culprit
//!   detection; the aggregate is re-checked with `ed25519-dalek` (`verify_strict`).
//!
//! A holder's index `x: u16` (nonzero) is its node id and maps to frost's `Identifier::try_from(x)`.
//! Errors that can be pinned on one sender name it (`Culprit`, `InvalidShares`, `ReshareMismatch`).
//! Inputs keyed by sender (`BTreeMap<u16, Vec<u8>>`) must come from authenticated channels or Raft.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{Identity, IsIdentity};
use frost_ed25519::keys::dkg;
use frost_ed25519::keys::{KeyPackage, PublicKeyPackage, SigningShare, VerifyingShare};
use frost_ed25519::round1::{SigningCommitments, SigningNonces};
use frost_ed25519::round2::SignatureShare;
use frost_ed25519::{Ciphersuite, Ed25519Sha512, Identifier, SigningPackage, VerifyingKey};
use rand::{CryptoRng, RngCore};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// Errors of the threshold Ed25519 root.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrostError {
    /// Input that cannot be attributed to a peer (own state, parameters, a package) is unusable.
    #[error("malformed {what}")]
    Malformed { what: String },
    /// One identified participant misbehaved (bad proof of knowledge, bad secret share, garbage bytes).
    #[error("participant {x} misbehaved: {reason}")]
    Culprit { x: u16, reason: &'static str },
    /// Signature shares from these signers are malformed, invalid, or from non-members.
    #[error("invalid signature shares from {culprits:?}")]
    InvalidShares { culprits: Vec<u16> },
    /// Signers named in the signing package that sent no share (retry without them).
    #[error("no signature share from {missing:?}")]
    MissingShares { missing: Vec<u16> },
    /// Fewer participants than the threshold.
    #[error("not enough signers: have {have}, need {needed}")]
    NotEnoughSigners { have: usize, needed: usize },
    /// The signing package asks for a signature over something other than the expected message.
    #[error("signing package is for a different message")]
    WrongMessage,
    /// The signing package lacks this signer's commitment, or carries a different one.
    #[error("signing package does not contain this signer's commitment")]
    NotInPackage,
    /// A resharing dealer's commitment or share is wrong.
    #[error("reshare dealer {dealer}: {reason}")]
    ReshareMismatch { dealer: u16, reason: &'static str },
    /// Reshared shares combine to something other than the new group's verifying share for `x`
    /// (a share was not checked with [`verify_reshare_share`], or the dealer set differs).
    #[error("reshared shares do not match holder {x}'s verifying share")]
    ReshareInconsistent { x: u16 },
    /// The reshared group would have a different verifying key.
    #[error("resharing would change the group verifying key")]
    VerifyingKeyChanged,
    /// Any other failure reported by frost or ed25519-dalek.
    #[error("threshold library: {0}")]
    Library(String),
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, FrostError>;

const VERSION: u8 = 1;

fn malformed(what: impl Into<String>) -> FrostError {
    FrostError::Malformed { what: what.into() }
}

fn lib(e: frost_ed25519::Error) -> FrostError {
    FrostError::Library(e.to_string())
}

/// Maps a node id to frost's identifier (the polynomial's x-coordinate).
fn ident(x: u16) -> Result<Identifier> {
    if x == 0 {
        return Err(malformed("holder index 0"));
    }
    Identifier::try_from(x).map_err(lib)
}

/// Inverse of [`ident`]: identifiers are little-endian scalars; ours all fit in a u16.
fn x_of(id: &Identifier) -> Result<u16> {
    let b = id.serialize();
    match b.as_slice() {
        [lo, hi, rest @ ..] if rest.iter().all(|v| *v == 0) && (*lo != 0 || *hi != 0) => {
            Ok(u16::from_le_bytes([*lo, *hi]))
        }
        _ => Err(malformed("identifier that is not a u16 node id")),
    }
}

fn to32(v: &[u8], what: &'static str) -> Result<[u8; 32]> {
    v.try_into().map_err(|_| malformed(what))
}

/// Strict point decoding: canonical encoding, prime-order subgroup, not the identity (as frost does).
fn decode_point(b: &[u8]) -> Option<EdwardsPoint> {
    let c = CompressedEdwardsY::from_slice(b).ok()?;
    let p = c.decompress()?;
    (p.is_torsion_free() && !p.is_identity() && p.compress() == c).then_some(p)
}

fn decode_scalar(b: &[u8; 32]) -> Option<Scalar> {
    Option::from(Scalar::from_canonical_bytes(*b))
}

/// Decodes a Feldman commitment: `t` concatenated compressed points.
fn decode_commitment(bytes: &[u8]) -> Option<Vec<EdwardsPoint>> {
    if bytes.is_empty() || bytes.len() % 32 != 0 || bytes.len() / 32 > usize::from(u16::MAX) {
        return None;
    }
    bytes.chunks_exact(32).map(decode_point).collect()
}

/// Σ C_k·x^k (Horner), the public image of the committed polynomial at `x`.
fn eval_commitment(points: &[EdwardsPoint], x: u16) -> EdwardsPoint {
    let xs = Scalar::from(u64::from(x));
    points.iter().rev().fold(EdwardsPoint::identity(), |acc, c| acc * xs + c)
}

/// λ_i(0) over `set` (distinct nonzero indices containing `i`).
fn lagrange_at_zero(set: &BTreeSet<u16>, i: u16) -> Result<Scalar> {
    let xi = Scalar::from(u64::from(i));
    let (mut num, mut den) = (Scalar::ONE, Scalar::ONE);
    for &j in set.iter().filter(|j| **j != i) {
        let xj = Scalar::from(u64::from(j));
        num *= xj;
        den *= xj - xi;
    }
    if den == Scalar::ZERO || i == 0 {
        return Err(malformed("lagrange set"));
    }
    Ok(num * den.invert())
}

/// Minimal cursor for our fixed binary layouts; every read is bounds-checked.
struct Reader<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], what: &'static str) -> Result<Self> {
        let mut r = Reader { buf, what };
        if r.take(1)? != [VERSION] {
            return Err(malformed(format!("{what} (unknown version)")));
        }
        Ok(r)
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.buf.len() < n {
            return Err(malformed(format!("{} (truncated)", self.what)));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }
    fn u16(&mut self) -> Result<u16> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn arr32(&mut self) -> Result<[u8; 32]> {
        to32(self.take(32)?, self.what)
    }
    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }
    fn finish(self) -> Result<()> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(malformed(format!("{} (trailing bytes)", self.what)))
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// Key material
// ---------------------------------------------------------------------------------------------------

/// One holder's long-lived share of the root signing key (frost `KeyPackage`). Zeroized on drop
/// (every clone too).
#[derive(Clone)]
pub struct KeyShare {
    x: u16,
    inner: KeyPackage,
    verifying_share: [u8; 32],
    verifying_key: [u8; 32],
}

impl KeyShare {
    fn from_package(inner: KeyPackage) -> Result<Self> {
        let x = x_of(inner.identifier())?;
        let verifying_share = to32(&inner.verifying_share().serialize().map_err(lib)?, "verifying share")?;
        let verifying_key = to32(&inner.verifying_key().serialize().map_err(lib)?, "verifying key")?;
        Ok(KeyShare { x, inner, verifying_share, verifying_key })
    }

    /// This holder's index (node id).
    pub fn x(&self) -> u16 {
        self.x
    }
    /// Signers needed for a signature.
    pub fn threshold(&self) -> u16 {
        *self.inner.min_signers()
    }
    /// The group's Ed25519 public key.
    pub fn verifying_key(&self) -> [u8; 32] {
        self.verifying_key
    }
    /// This holder's public share, `G·s_x`.
    pub fn verifying_share(&self) -> [u8; 32] {
        self.verifying_share
    }

    /// Layout: version ‖ x ‖ t ‖ signing share ‖ verifying share ‖ verifying key (101 bytes). For sealing.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(101));
        out.push(VERSION);
        out.extend_from_slice(&self.x.to_be_bytes());
        out.extend_from_slice(&self.threshold().to_be_bytes());
        let secret = Zeroizing::new(self.inner.signing_share().serialize());
        out.extend_from_slice(&secret);
        out.extend_from_slice(&self.verifying_share);
        out.extend_from_slice(&self.verifying_key);
        out
    }

    /// Parses [`KeyShare::to_bytes`] and checks that the verifying share is `G·s`.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes, "key share")?;
        let x = r.u16()?;
        let t = r.u16()?;
        let secret = Zeroizing::new(r.arr32()?);
        let vs = r.arr32()?;
        let vk = r.arr32()?;
        r.finish()?;
        if t < 2 {
            return Err(malformed("key share (threshold < 2)"));
        }
        let signing_share = SigningShare::deserialize(&secret[..]).map_err(|_| malformed("key share (scalar)"))?;
        let verifying_share = VerifyingShare::deserialize(&vs).map_err(|_| malformed("key share (verifying share)"))?;
        if VerifyingShare::from(signing_share) != verifying_share {
            return Err(malformed("key share (verifying share is not G·s)"));
        }
        let verifying_key = VerifyingKey::deserialize(&vk).map_err(|_| malformed("key share (verifying key)"))?;
        Self::from_package(KeyPackage::new(ident(x)?, signing_share, verifying_share, verifying_key, t))
    }
}

impl fmt::Debug for KeyShare {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyShare")
            .field("x", &self.x)
            .field("threshold", &self.threshold())
            .field("signing_share", &"<redacted>")
            .finish()
    }
}

/// Public view of the group (frost `PublicKeyPackage`): verifying key, threshold, verifying share per holder.
/// This is what Raft replicates; every node must compute the same bytes.
#[derive(Clone)]
pub struct GroupPublic {
    inner: PublicKeyPackage,
    threshold: u16,
    verifying_key: [u8; 32],
    holders: BTreeMap<u16, [u8; 32]>,
}

impl GroupPublic {
    fn from_package(inner: PublicKeyPackage) -> Result<Self> {
        let threshold = inner.min_signers().ok_or_else(|| malformed("public package without threshold"))?;
        let verifying_key = to32(&inner.verifying_key().serialize().map_err(lib)?, "verifying key")?;
        let mut holders = BTreeMap::new();
        for (id, vs) in inner.verifying_shares() {
            holders.insert(x_of(id)?, to32(&vs.serialize().map_err(lib)?, "verifying share")?);
        }
        if threshold < 2 || usize::from(threshold) > holders.len() {
            return Err(malformed("group (threshold outside 2..=holders)"));
        }
        Ok(GroupPublic { inner, threshold, verifying_key, holders })
    }

    /// The root's Ed25519 public key.
    pub fn verifying_key(&self) -> [u8; 32] {
        self.verifying_key
    }
    /// Holder indices, ascending.
    pub fn holders(&self) -> Vec<u16> {
        self.holders.keys().copied().collect()
    }
    /// Signers needed for a signature.
    pub fn threshold(&self) -> u16 {
        self.threshold
    }
    /// `G·s_x` for holder `x`, if `x` is a holder.
    pub fn verifying_share(&self, x: u16) -> Option<[u8; 32]> {
        self.holders.get(&x).copied()
    }
    /// Checks an Ed25519 signature under the group key with `ed25519-dalek`'s strict verification.
    pub fn verify(&self, message: &[u8], signature: &[u8; 64]) -> Result<()> {
        let vk = ed25519_dalek::VerifyingKey::from_bytes(&self.verifying_key)
            .map_err(|e| FrostError::Library(e.to_string()))?;
        vk.verify_strict(message, &ed25519_dalek::Signature::from_bytes(signature))
            .map_err(|e| FrostError::Library(format!("ed25519 verification: {e}")))
    }

    /// Canonical layout: version ‖ t ‖ verifying key ‖ count ‖ (x ‖ verifying share)* ascending by x.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(37 + 34 * self.holders.len());
        out.push(VERSION);
        out.extend_from_slice(&self.threshold.to_be_bytes());
        out.extend_from_slice(&self.verifying_key);
        // Holder count fits: identifiers are distinct u16s.
        out.extend_from_slice(&(self.holders.len() as u16).to_be_bytes());
        for (x, vs) in &self.holders {
            out.extend_from_slice(&x.to_be_bytes());
            out.extend_from_slice(vs);
        }
        out
    }

    /// Parses [`GroupPublic::to_bytes`]; rejects non-canonical input.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes, "group public")?;
        let t = r.u16()?;
        let vk = VerifyingKey::deserialize(&r.arr32()?).map_err(|_| malformed("group public (verifying key)"))?;
        let count = r.u16()?;
        let mut shares = BTreeMap::new();
        let mut last = 0u16;
        for _ in 0..count {
            let x = r.u16()?;
            if x <= last {
                return Err(malformed("group public (holders not strictly ascending)"));
            }
            last = x;
            let vs =
                VerifyingShare::deserialize(&r.arr32()?).map_err(|_| malformed("group public (verifying share)"))?;
            shares.insert(ident(x)?, vs);
        }
        r.finish()?;
        let g = Self::from_package(PublicKeyPackage::new(shares, vk, Some(t)))?;
        if g.to_bytes() != bytes {
            return Err(malformed("group public (non-canonical encoding)"));
        }
        Ok(g)
    }
}

impl PartialEq for GroupPublic {
    fn eq(&self, other: &Self) -> bool {
        self.to_bytes() == other.to_bytes()
    }
}
impl Eq for GroupPublic {}

impl fmt::Debug for GroupPublic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupPublic")
            .field("threshold", &self.threshold)
            .field("verifying_key", &Hex(&self.verifying_key))
            .field("holders", &self.holders())
            .finish()
    }
}

struct Hex<'a>(&'a [u8]);
impl fmt::Debug for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

// ---------------------------------------------------------------------------------------------------
// (a) DKG
// ---------------------------------------------------------------------------------------------------

/// Secret state between DKG rounds 1 and 2 (the random polynomial). Seal [`Round1Secret::to_bytes`]
/// *before* broadcasting the public package so a crashed node resumes with the same polynomial.
pub struct Round1Secret {
    x: u16,
    secret: dkg::round1::SecretPackage,
    package: Vec<u8>,
}

impl Round1Secret {
    /// The public round-1 package (commitment + proof of knowledge), same bytes as `dkg_round1` returned.
    pub fn public_package(&self) -> Vec<u8> {
        self.package.clone()
    }
    /// This participant's index.
    pub fn x(&self) -> u16 {
        self.x
    }

    /// Layout: version ‖ u32 length ‖ frost secret package ‖ public package.
    pub fn to_bytes(&self) -> Result<Zeroizing<Vec<u8>>> {
        let secret = Zeroizing::new(self.secret.serialize().map_err(lib)?);
        let len = u32::try_from(secret.len()).map_err(|_| malformed("round-1 secret (too long)"))?;
        let mut out = Zeroizing::new(Vec::with_capacity(5 + secret.len() + self.package.len()));
        out.push(VERSION);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&secret);
        out.extend_from_slice(&self.package);
        Ok(out)
    }

    /// Parses [`Round1Secret::to_bytes`]; checks the public package matches the secret polynomial.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes, "round-1 secret")?;
        let len = usize::try_from(r.u32()?).map_err(|_| malformed("round-1 secret (length)"))?;
        let secret = dkg::round1::SecretPackage::deserialize(r.take(len)?).map_err(|_| malformed("round-1 secret"))?;
        let package = r.rest().to_vec();
        let x = x_of(secret.identifier())?;
        let public = parse_round1(x, &package, *secret.min_signers())
            .map_err(|_| malformed("round-1 secret (public package)"))?;
        if public.commitment() != secret.commitment() || *secret.min_signers() < 2 {
            return Err(malformed("round-1 secret (public package does not match)"));
        }
        Ok(Round1Secret { x, secret, package })
    }
}

impl fmt::Debug for Round1Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Round1Secret").field("x", &self.x).field("polynomial", &"<redacted>").finish()
    }
}

/// Secret state between DKG round 2 and the finish (own share f_x(x) and commitment). Sealable.
pub struct Round2Secret {
    x: u16,
    secret: dkg::round2::SecretPackage,
}

impl Round2Secret {
    /// Layout: version ‖ frost secret package.
    pub fn to_bytes(&self) -> Result<Zeroizing<Vec<u8>>> {
        let secret = Zeroizing::new(self.secret.serialize().map_err(lib)?);
        let mut out = Zeroizing::new(Vec::with_capacity(1 + secret.len()));
        out.push(VERSION);
        out.extend_from_slice(&secret);
        Ok(out)
    }
    /// Parses [`Round2Secret::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes, "round-2 secret")?;
        let secret = dkg::round2::SecretPackage::deserialize(r.rest()).map_err(|_| malformed("round-2 secret"))?;
        if *secret.min_signers() < 2
            || secret.commitment().serialize().map_err(lib)?.len() != usize::from(*secret.min_signers())
        {
            return Err(malformed("round-2 secret (threshold)"));
        }
        Ok(Round2Secret { x: x_of(secret.identifier())?, secret })
    }
    /// This participant's index.
    pub fn x(&self) -> u16 {
        self.x
    }
}

impl fmt::Debug for Round2Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Round2Secret").field("x", &self.x).field("secret_share", &"<redacted>").finish()
    }
}

/// DKG round 1: samples this participant's polynomial. Returns the secret state and the public package
/// to broadcast (through Raft). `n` is the number of participants, `t` the threshold.
pub fn dkg_round1<R: RngCore + CryptoRng>(x: u16, n: u16, t: u16, rng: &mut R) -> Result<(Round1Secret, Vec<u8>)> {
    let (secret, package) = dkg::part1(ident(x)?, n, t, rng).map_err(lib)?;
    let package = package.serialize().map_err(lib)?;
    Ok((Round1Secret { x, secret, package: package.clone() }, package))
}

/// Parses a peer's round-1 package, requiring canonical bytes, `t` coefficients and a valid proof.
fn parse_round1(x: u16, bytes: &[u8], t: u16) -> Result<dkg::round1::Package> {
    let bad = |reason| FrostError::Culprit { x, reason };
    let pkg = dkg::round1::Package::deserialize(bytes).map_err(|_| bad("malformed round-1 package"))?;
    if pkg.serialize().ok().as_deref() != Some(bytes) {
        return Err(bad("non-canonical round-1 package"));
    }
    let coeffs = pkg.commitment().serialize().map_err(|_| bad("malformed round-1 commitment"))?;
    if coeffs.len() != usize::from(t) {
        return Err(bad("round-1 commitment has the wrong threshold"));
    }
    let proof = pkg.proof_of_knowledge().serialize().map_err(|_| bad("malformed proof of knowledge"))?;
    let phi0 = coeffs.first().ok_or(bad("empty round-1 commitment"))?;
    verify_pok(x, phi0, &proof)?;
    Ok(pkg)
}

/// Schnorr proof of knowledge of a_{x0}, exactly as frost-core's (pub(crate)) `verify_proof_of_knowledge`:
/// c = HDKG(id ‖ φ0 ‖ R), accept iff R == z·G − c·φ0.
fn verify_pok(x: u16, phi0: &[u8], proof: &[u8]) -> Result<()> {
    let bad = |reason| FrostError::Culprit { x, reason };
    let (r_bytes, z_bytes) = proof.split_at_checked(32).ok_or(bad("malformed proof of knowledge"))?;
    let r = decode_point(r_bytes).ok_or(bad("malformed proof of knowledge"))?;
    let z = decode_scalar(&to32(z_bytes, "proof")?).ok_or(bad("malformed proof of knowledge"))?;
    let phi = decode_point(phi0).ok_or(bad("malformed round-1 commitment"))?;
    let mut preimage = ident(x)?.serialize();
    preimage.extend_from_slice(phi0);
    preimage.extend_from_slice(r_bytes);
    let c = Ed25519Sha512::HDKG(&preimage).ok_or_else(|| FrostError::Library("ciphersuite lacks HDKG".into()))?;
    if r != EdwardsPoint::mul_base(&z) - phi * c {
        return Err(bad("invalid proof of knowledge"));
    }
    Ok(())
}

/// Publicly verifies participant `x`'s round-1 package (encoding, proof of knowledge). Any node, including
/// one only applying the Raft log, can run this before accepting the package.
pub fn verify_round1(x: u16, bytes: &[u8]) -> Result<()> {
    let pkg = dkg::round1::Package::deserialize(bytes)
        .map_err(|_| FrostError::Culprit { x, reason: "malformed round-1 package" })?;
    let t = pkg.commitment().serialize().map(|c| c.len()).unwrap_or(0);
    let t = u16::try_from(t).map_err(|_| FrostError::Culprit { x, reason: "round-1 commitment too long" })?;
    parse_round1(x, bytes, t).map(|_| ())
}

fn parse_round1_map(
    others: &BTreeMap<u16, Vec<u8>>,
    me: u16,
    n: u16,
    t: u16,
) -> Result<BTreeMap<Identifier, dkg::round1::Package>> {
    if others.contains_key(&me) || others.len() + 1 != usize::from(n) {
        return Err(malformed(format!("round-1 set: need the {} other participants' packages", n.saturating_sub(1))));
    }
    others.iter().map(|(x, b)| Ok((ident(*x)?, parse_round1(*x, b, t)?))).collect()
}

fn map_culprit(e: frost_ed25519::Error, reason: &'static str) -> FrostError {
    match e.culprits().first().map(x_of) {
        Some(Ok(x)) => FrostError::Culprit { x, reason },
        _ => lib(e),
    }
}

/// Secret round-2 packages keyed by recipient.
pub type Round2Packages = BTreeMap<u16, Zeroizing<Vec<u8>>>;

/// DKG round 2: checks the others' round-1 packages and produces one secret round-2 package per recipient
/// (send each over attested TLS only). A bad proof of knowledge yields `Culprit`.
pub fn dkg_round2(r1: &Round1Secret, others: &BTreeMap<u16, Vec<u8>>) -> Result<(Round2Secret, Round2Packages)> {
    let t = *r1.secret.min_signers();
    let round1 = parse_round1_map(others, r1.x, *r1.secret.max_signers(), t)?;
    let (secret, packages) =
        dkg::part2(r1.secret.clone(), &round1).map_err(|e| map_culprit(e, "invalid proof of knowledge"))?;
    let mut out = BTreeMap::new();
    for (id, pkg) in &packages {
        out.insert(x_of(id)?, Zeroizing::new(pkg.serialize().map_err(lib)?));
    }
    Ok((Round2Secret { x: r1.x, secret }, out))
}

/// DKG finish: verifies each received secret share against its sender's commitment (`Culprit` names a bad
/// dealer) and returns this holder's share and the group's public data.
pub fn dkg_finish(
    r2: &Round2Secret,
    round1_others: &BTreeMap<u16, Vec<u8>>,
    round2_received: &BTreeMap<u16, Vec<u8>>,
) -> Result<(KeyShare, GroupPublic)> {
    let t = *r2.secret.min_signers();
    let round1 = parse_round1_map(round1_others, r2.x, *r2.secret.max_signers(), t)?;
    if round2_received.keys().ne(round1_others.keys()) {
        return Err(malformed("round-2 set (senders differ from round-1 participants)"));
    }
    let mut round2 = BTreeMap::new();
    for (x, bytes) in round2_received {
        let bad = FrostError::Culprit { x: *x, reason: "malformed round-2 package" };
        let pkg = dkg::round2::Package::deserialize(bytes).map_err(|_| bad.clone())?;
        if pkg.serialize().ok().map(Zeroizing::new).as_deref() != Some(bytes) {
            return Err(bad);
        }
        round2.insert(ident(*x)?, pkg);
    }
    let (key, public) = dkg::part3(&r2.secret, &round1, &round2)
        .map_err(|e| map_culprit(e, "secret share does not match its commitment"))?;
    Ok((KeyShare::from_package(key)?, GroupPublic::from_package(public)?))
}

/// Checks one dealer's secret round-2 package for recipient `x` against the dealer's public round-1
/// package, as anyone can once the recipient reveals it (a complaint): `Culprit` names the dealer if
/// the share is malformed or not on its committed polynomial.
pub fn verify_dkg_share(dealer: u16, round1: &[u8], x: u16, round2: &[u8]) -> Result<()> {
    let bad = |reason| FrostError::Culprit { x: dealer, reason };
    let commitment = dkg::round1::Package::deserialize(round1).map_err(|_| bad("malformed round-1 package"))?;
    let pkg = dkg::round2::Package::deserialize(round2).map_err(|_| bad("malformed round-2 package"))?;
    if pkg.serialize().ok().map(Zeroizing::new).as_ref().map(|v| v.as_slice()) != Some(round2) {
        return Err(bad("malformed round-2 package"));
    }
    let share = frost_ed25519::keys::SecretShare::new(ident(x)?, *pkg.signing_share(), commitment.commitment().clone());
    share.verify().map(|_| ()).map_err(|_| bad("secret share does not match its commitment"))
}

/// The group's public data from all round-1 packages (own included), verifying every proof of knowledge.
/// Equals what `dkg_finish` returns to each participant.
pub fn dkg_public(all_round1: &BTreeMap<u16, Vec<u8>>, t: u16) -> Result<GroupPublic> {
    if t < 2 || all_round1.len() < usize::from(t) {
        return Err(malformed("dkg parameters (need 2 <= t <= n)"));
    }
    let packages: BTreeMap<Identifier, dkg::round1::Package> =
        all_round1.iter().map(|(x, b)| Ok((ident(*x)?, parse_round1(*x, b, t)?))).collect::<Result<_>>()?;
    let commitments = packages.iter().map(|(id, p)| (*id, p.commitment())).collect();
    GroupPublic::from_package(PublicKeyPackage::from_dkg_commitments(&commitments).map_err(lib)?)
}

// ---------------------------------------------------------------------------------------------------
// (b) Resharing
// ---------------------------------------------------------------------------------------------------

/// An old holder's resharing polynomial g with g(0) = its signing share. Zeroized on drop.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct ReshareDealer {
    x: u16,
    coeffs: Vec<Scalar>,
    #[zeroize(skip)]
    commitment: Vec<u8>,
}

impl ReshareDealer {
    /// Samples g of degree `t - 1` (t = the new threshold) with g(0) = `share`'s signing share.
    pub fn new<R: RngCore + CryptoRng>(share: &KeyShare, t: u16, rng: &mut R) -> Result<Self> {
        let serialized = Zeroizing::new(share.inner.signing_share().serialize());
        let secret = Zeroizing::new(to32(&serialized, "signing share")?);
        Self::from_secret(share.x, &secret, t, rng)
    }

    /// Samples g of degree `t - 1` with g(0) = `secret`: a holder's signing share, or the whole key
    /// for the single dealer of a recovery (docs/keys.md §6), rebuilt from admin shares.
    pub fn from_secret<R: RngCore + CryptoRng>(x: u16, secret: &[u8; 32], t: u16, rng: &mut R) -> Result<Self> {
        if x == 0 || t < 2 {
            return Err(malformed("reshare dealer (index 0 or threshold < 2)"));
        }
        let s0 = decode_scalar(secret).ok_or_else(|| malformed("signing share (not a scalar)"))?;
        let mut coeffs = Vec::with_capacity(usize::from(t));
        coeffs.push(s0);
        coeffs.extend((1..t).map(|_| Scalar::random(rng)));
        Ok(Self::from_coeffs(x, coeffs))
    }

    fn from_coeffs(x: u16, coeffs: Vec<Scalar>) -> Self {
        let commitment = coeffs.iter().flat_map(|c| EdwardsPoint::mul_base(c).compress().to_bytes()).collect();
        ReshareDealer { x, coeffs, commitment }
    }

    /// The dealer's index.
    pub fn x(&self) -> u16 {
        self.x
    }

    /// Public Feldman commitment: t compressed points G·g_k (publish through Raft).
    pub fn commitment(&self) -> Vec<u8> {
        self.commitment.clone()
    }

    /// g(x) for new holder `x` (send over attested TLS only). `x = 0` is refused: it would be the share itself.
    pub fn share_for(&self, x: u16) -> Result<Zeroizing<[u8; 32]>> {
        if x == 0 {
            return Err(malformed("reshare recipient 0"));
        }
        let xs = Scalar::from(u64::from(x));
        let mut acc = self.coeffs.iter().rev().fold(Scalar::ZERO, |acc, c| acc * xs + c);
        let out = Zeroizing::new(acc.to_bytes());
        acc.zeroize();
        Ok(out)
    }

    /// Layout: version ‖ x ‖ t ‖ coefficients. For sealing across a crash during resharing.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(5 + 32 * self.coeffs.len()));
        out.push(VERSION);
        out.extend_from_slice(&self.x.to_be_bytes());
        out.extend_from_slice(&(self.coeffs.len() as u16).to_be_bytes());
        for c in &self.coeffs {
            out.extend_from_slice(c.as_bytes());
        }
        out
    }

    /// Parses [`ReshareDealer::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes, "reshare dealer")?;
        let x = r.u16()?;
        let t = r.u16()?;
        if x == 0 || t < 2 {
            return Err(malformed("reshare dealer (index or threshold)"));
        }
        let mut coeffs = Vec::with_capacity(usize::from(t));
        for _ in 0..t {
            let b = Zeroizing::new(r.arr32()?);
            coeffs.push(decode_scalar(&b).ok_or_else(|| malformed("reshare dealer (scalar)"))?);
        }
        let dealer = Self::from_coeffs(x, coeffs);
        r.finish()?;
        Ok(dealer)
    }
}

impl fmt::Debug for ReshareDealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReshareDealer").field("x", &self.x).field("polynomial", &"<redacted>").finish()
    }
}

fn dealer_commitment(dealer: u16, commitment: &[u8]) -> Result<Vec<EdwardsPoint>> {
    decode_commitment(commitment).ok_or(FrostError::ReshareMismatch { dealer, reason: "malformed commitment" })
}

/// Checks a reshare share received from `dealer` against the dealer's commitment: G·share == C(x).
pub fn verify_reshare_share(dealer: u16, commitment: &[u8], x: u16, share: &[u8; 32]) -> Result<()> {
    if x == 0 {
        return Err(malformed("reshare recipient 0"));
    }
    let points = dealer_commitment(dealer, commitment)?;
    let s = decode_scalar(share).ok_or(FrostError::ReshareMismatch { dealer, reason: "share is not a scalar" })?;
    if EdwardsPoint::mul_base(&s) != eval_commitment(&points, x) {
        return Err(FrostError::ReshareMismatch { dealer, reason: "share does not match commitment" });
    }
    Ok(())
}

/// Checks that `dealer_x` reshares its own old share: C(0) equals its verifying share in the old group.
pub fn check_reshare_commitment(commitment: &[u8], old: &GroupPublic, dealer_x: u16) -> Result<()> {
    let dealer = dealer_x;
    let vs = old.verifying_share(dealer).ok_or(FrostError::ReshareMismatch { dealer, reason: "not an old holder" })?;
    check_constant_term(commitment, &vs, dealer, "commitment is not to the dealer's old share")
}

/// Checks that a dealer's commitment C has C(0) = `expected` (compressed point).
fn check_constant_term(commitment: &[u8], expected: &[u8; 32], dealer: u16, reason: &'static str) -> Result<()> {
    match dealer_commitment(dealer, commitment)?.first() {
        Some(c0) if c0.compress().to_bytes() == *expected => Ok(()),
        _ => Err(FrostError::ReshareMismatch { dealer, reason }),
    }
}

/// The new group's public data from the dealers' commitments (deterministic; run by every node from Raft).
/// Needs at least `old.threshold()` dealers; each must pass [`check_reshare_commitment`] and commit to a
/// degree `t - 1` polynomial. Fails with `VerifyingKeyChanged` if Σ λ_d(0)·C_d(0) is not the old key.
pub fn reshare_public(
    commitments: &BTreeMap<u16, Vec<u8>>,
    new_holders: &[u16],
    t: u16,
    old: &GroupPublic,
) -> Result<GroupPublic> {
    let holders = new_holder_set(new_holders, t)?;
    let needed = usize::from(old.threshold());
    if commitments.len() < needed {
        return Err(FrostError::NotEnoughSigners { have: commitments.len(), needed });
    }
    let dealers: BTreeSet<u16> = commitments.keys().copied().collect();
    let mut combined = vec![EdwardsPoint::identity(); usize::from(t)];
    for (&dealer, bytes) in commitments {
        check_reshare_commitment(bytes, old, dealer)?;
        let points = dealer_commitment(dealer, bytes)?;
        if points.len() != usize::from(t) {
            return Err(FrostError::ReshareMismatch { dealer, reason: "commitment has the wrong degree" });
        }
        let lambda = lagrange_at_zero(&dealers, dealer)?;
        for (acc, c) in combined.iter_mut().zip(&points) {
            *acc += c * lambda;
        }
    }
    group_of(&combined, &holders, t, old.verifying_key())
}

/// The new holders as a set, checked: distinct nonzero indices, and `2 <= t <= holders`.
fn new_holder_set(new_holders: &[u16], t: u16) -> Result<BTreeSet<u16>> {
    let holders: BTreeSet<u16> = new_holders.iter().copied().collect();
    if holders.len() != new_holders.len() || holders.contains(&0) {
        return Err(malformed("new holder set (duplicate or zero index)"));
    }
    if t < 2 || usize::from(t) > holders.len() {
        return Err(malformed("new threshold (need 2 <= t <= new holders)"));
    }
    Ok(holders)
}

/// The group's public data from the combined commitment to its polynomial, whose constant term must
/// be `verifying_key`.
fn group_of(
    combined: &[EdwardsPoint],
    holders: &BTreeSet<u16>,
    t: u16,
    verifying_key: [u8; 32],
) -> Result<GroupPublic> {
    let vk = combined.first().map(|c| c.compress().to_bytes());
    if vk != Some(verifying_key) {
        return Err(FrostError::VerifyingKeyChanged);
    }
    let mut shares = BTreeMap::new();
    for &x in holders {
        let vs = VerifyingShare::deserialize(&eval_commitment(combined, x).compress().to_bytes()).map_err(lib)?;
        shares.insert(ident(x)?, vs);
    }
    let vk = VerifyingKey::deserialize(&verifying_key).map_err(|_| malformed("verifying key"))?;
    GroupPublic::from_package(PublicKeyPackage::new(shares, vk, Some(t)))
}

/// Checks a recovery dealer's commitment: its constant term must be the group key being restored.
pub fn check_restore_commitment(commitment: &[u8], verifying_key: &[u8; 32], dealer: u16) -> Result<()> {
    check_constant_term(commitment, verifying_key, dealer, "commitment is not to the restored key")
}

/// The group's public data after a recovery: one dealer shared the whole key (degree `t - 1`
/// commitment whose constant term is `verifying_key`) to `new_holders`. New holders finish with
/// [`reshare_finish`] on the single share they received.
pub fn restore_public(
    dealer: u16,
    commitment: &[u8],
    new_holders: &[u16],
    t: u16,
    verifying_key: &[u8; 32],
) -> Result<GroupPublic> {
    let holders = new_holder_set(new_holders, t)?;
    check_restore_commitment(commitment, verifying_key, dealer)?;
    let points = dealer_commitment(dealer, commitment)?;
    if points.len() != usize::from(t) {
        return Err(FrostError::ReshareMismatch { dealer, reason: "commitment has the wrong degree" });
    }
    group_of(&points, &holders, t, *verifying_key)
}

/// Rebuilds the whole signing key from `threshold` key shares of one group (Lagrange at 0), checked
/// against their verifying key. The only place key shares are ever combined: admin recovery onto a
/// fresh node (docs/keys.md §6). The caller shares the result out again and drops it.
pub fn recover_secret(shares: &BTreeMap<u16, KeyShare>) -> Result<Zeroizing<[u8; 32]>> {
    let first = shares.values().next().ok_or_else(|| malformed("no shares to recover from"))?;
    let (vk, t) = (first.verifying_key, first.threshold());
    if shares.len() < usize::from(t) {
        return Err(FrostError::NotEnoughSigners { have: shares.len(), needed: usize::from(t) });
    }
    if shares.iter().any(|(x, s)| s.x != *x || s.verifying_key != vk || s.threshold() != t) {
        return Err(malformed("recovery shares (not of one group, or keyed by the wrong index)"));
    }
    let set: BTreeSet<u16> = shares.keys().copied().collect();
    let mut sum = Scalar::ZERO;
    for (&x, share) in shares {
        let bytes = Zeroizing::new(share.inner.signing_share().serialize());
        let b = Zeroizing::new(to32(&bytes, "signing share")?);
        let mut s = decode_scalar(&b).ok_or_else(|| malformed("signing share"))?;
        sum += lagrange_at_zero(&set, x)? * s;
        s.zeroize();
    }
    let out = Zeroizing::new(sum.to_bytes());
    let ok = EdwardsPoint::mul_base(&sum).compress().to_bytes() == vk;
    sum.zeroize();
    if !ok {
        return Err(FrostError::VerifyingKeyChanged);
    }
    Ok(out)
}

/// New holder `x` combines the shares it received (keyed by dealer; verify each with
/// [`verify_reshare_share`] on receipt) into its key share: s = Σ λ_d(0)·s_d, checked against `public`.
pub fn reshare_finish(x: u16, shares: &BTreeMap<u16, Zeroizing<[u8; 32]>>, public: &GroupPublic) -> Result<KeyShare> {
    let vs = public.verifying_share(x).ok_or_else(|| malformed(format!("reshare: {x} is not a new holder")))?;
    if shares.is_empty() || shares.contains_key(&0) {
        return Err(malformed("reshare share set"));
    }
    let dealers: BTreeSet<u16> = shares.keys().copied().collect();
    let mut sum = Scalar::ZERO;
    for (&dealer, share) in shares {
        let mut s =
            decode_scalar(share).ok_or(FrostError::ReshareMismatch { dealer, reason: "share is not a scalar" })?;
        sum += lagrange_at_zero(&dealers, dealer)? * s;
        s.zeroize();
    }
    let bytes = Zeroizing::new(sum.to_bytes());
    let ok = EdwardsPoint::mul_base(&sum).compress().to_bytes() == vs;
    sum.zeroize();
    if !ok {
        return Err(FrostError::ReshareInconsistent { x });
    }
    let signing_share = SigningShare::deserialize(&bytes[..]).map_err(lib)?;
    let verifying_share = VerifyingShare::deserialize(&vs).map_err(lib)?;
    KeyShare::from_package(KeyPackage::new(
        ident(x)?,
        signing_share,
        verifying_share,
        *public.inner.verifying_key(),
        public.threshold(),
    ))
}

// ---------------------------------------------------------------------------------------------------
// (c) Signing
// ---------------------------------------------------------------------------------------------------

/// One signer's nonces for one signature. Deliberately neither `Clone` nor serialisable (a nonce reused
/// or restored after a crash leaks the share); consumed by [`sign`], zeroized on drop.
pub struct Nonces {
    x: u16,
    inner: SigningNonces,
}

impl fmt::Debug for Nonces {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Nonces").field("x", &self.x).field("nonces", &"<redacted>").finish()
    }
}

/// Round 1: fresh nonces and the public commitments to send to the coordinator.
pub fn commit<R: RngCore + CryptoRng>(share: &KeyShare, rng: &mut R) -> Result<(Nonces, Vec<u8>)> {
    let (nonces, commitments) = frost_ed25519::round1::commit(share.inner.signing_share(), rng);
    Ok((Nonces { x: share.x, inner: nonces }, commitments.serialize().map_err(lib)?))
}

/// Parses a signing package, requiring canonical bytes (postcard would silently ignore trailing data).
fn parse_signing_package(bytes: &[u8]) -> Result<SigningPackage> {
    match SigningPackage::deserialize(bytes) {
        Ok(pkg) if pkg.serialize().ok().as_deref() == Some(bytes) => Ok(pkg),
        _ => Err(malformed("signing package")),
    }
}

/// Coordinator: binds the chosen signers' commitments (keyed by signer) and the message into a package.
pub fn signing_package(commitments: &BTreeMap<u16, Vec<u8>>, message: &[u8]) -> Result<Vec<u8>> {
    if commitments.is_empty() {
        return Err(malformed("empty commitment set"));
    }
    let mut map = BTreeMap::new();
    for (&x, bytes) in commitments {
        match SigningCommitments::deserialize(bytes) {
            Ok(c) if c.serialize().ok().as_deref() == Some(bytes.as_slice()) => map.insert(ident(x)?, c),
            _ => return Err(FrostError::Culprit { x, reason: "malformed signing commitments" }),
        };
    }
    SigningPackage::new(map, message).serialize().map_err(lib)
}

/// Round 2: this signer's share over the package. Refuses a package for another message than
/// `expected_message` (the signer's own view of what must be signed) or one without its commitment.
/// The nonces are consumed whatever the outcome.
pub fn sign(share: &KeyShare, nonces: Nonces, signing_package: &[u8], expected_message: &[u8]) -> Result<Vec<u8>> {
    if nonces.x != share.x {
        return Err(malformed("nonces belong to another holder"));
    }
    let pkg = parse_signing_package(signing_package)?;
    if pkg.message().as_slice() != expected_message {
        return Err(FrostError::WrongMessage);
    }
    if pkg.signing_commitment(share.inner.identifier()).as_ref() != Some(nonces.inner.commitments()) {
        return Err(FrostError::NotInPackage);
    }
    let (have, needed) = (pkg.signing_commitments().len(), usize::from(share.threshold()));
    if have < needed {
        return Err(FrostError::NotEnoughSigners { have, needed });
    }
    let sig_share = frost_ed25519::round2::sign(&pkg, &nonces.inner, &share.inner).map_err(lib)?;
    Ok(sig_share.serialize())
}

/// Coordinator: combines the shares (keyed by signer) into an Ed25519 signature verified with
/// `ed25519-dalek`. Malformed shares, shares from non-members or non-signers, and shares frost rejects
/// give `InvalidShares` naming every culprit.
pub fn aggregate(group: &GroupPublic, signing_package: &[u8], shares: &BTreeMap<u16, Vec<u8>>) -> Result<[u8; 64]> {
    let pkg = parse_signing_package(signing_package)?;
    let signers: BTreeSet<u16> = pkg.signing_commitments().keys().map(x_of).collect::<Result<_>>()?;
    let needed = usize::from(group.threshold());
    if signers.len() < needed {
        return Err(FrostError::NotEnoughSigners { have: signers.len(), needed });
    }
    let mut culprits = Vec::new();
    let mut parsed = BTreeMap::new();
    for (&x, bytes) in shares {
        match (group.holders.contains_key(&x) && signers.contains(&x), SignatureShare::deserialize(bytes)) {
            (true, Ok(s)) => {
                parsed.insert(ident(x)?, s);
            }
            _ => culprits.push(x),
        }
    }
    if !culprits.is_empty() {
        return Err(FrostError::InvalidShares { culprits });
    }
    let missing: Vec<u16> = signers.iter().copied().filter(|x| !shares.contains_key(x)).collect();
    if !missing.is_empty() {
        return Err(FrostError::MissingShares { missing });
    }
    let sig =
        frost_ed25519::aggregate_custom(&pkg, &parsed, &group.inner, frost_ed25519::CheaterDetection::AllCheaters)
            .map_err(|e| match e {
                frost_ed25519::Error::InvalidSignatureShare { culprits } => {
                    match culprits.iter().map(x_of).collect::<Result<Vec<u16>>>() {
                        Ok(culprits) => FrostError::InvalidShares { culprits },
                        Err(e) => e,
                    }
                }
                e => lib(e),
            })?;
    let sig: [u8; 64] =
        sig.serialize().map_err(lib)?.try_into().map_err(|_| malformed("aggregate signature length"))?;
    group.verify(pkg.message(), &sig)?;
    Ok(sig)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::OsRng;
    use rand::seq::SliceRandom;

    type Inboxes = BTreeMap<u16, BTreeMap<u16, Vec<u8>>>;

    /// DKG rounds 1 and 2 among `ids`: round-1 packages, round-2 secrets, and each
    /// recipient's inbox. With `restore`, every secret is sealed and restored (a crash).
    fn rounds(ids: &[u16], t: u16, restore: bool) -> (BTreeMap<u16, Vec<u8>>, BTreeMap<u16, Round2Secret>, Inboxes) {
        let n = ids.len() as u16;
        let mut r1s = BTreeMap::new();
        let mut round1 = BTreeMap::new();
        for &x in ids {
            let (mut s, p) = dkg_round1(x, n, t, &mut OsRng).unwrap();
            if restore {
                s = Round1Secret::from_bytes(&s.to_bytes().unwrap()).unwrap();
                assert_eq!(s.public_package(), p);
            }
            r1s.insert(x, s);
            round1.insert(x, p);
        }
        let mut r2s = BTreeMap::new();
        let mut inbox: Inboxes = BTreeMap::new();
        for &x in ids {
            let (mut s2, out) = dkg_round2(&r1s[&x], &others(&round1, x)).unwrap();
            for (to, p) in out {
                inbox.entry(to).or_default().insert(x, p.to_vec());
            }
            if restore {
                s2 = Round2Secret::from_bytes(&s2.to_bytes().unwrap()).unwrap();
            }
            r2s.insert(x, s2);
        }
        (round1, r2s, inbox)
    }

    struct Dkg {
        shares: BTreeMap<u16, KeyShare>,
        public: GroupPublic,
        round1: BTreeMap<u16, Vec<u8>>,
    }

    fn others(all: &BTreeMap<u16, Vec<u8>>, me: u16) -> BTreeMap<u16, Vec<u8>> {
        all.iter().filter(|(x, _)| **x != me).map(|(x, b)| (*x, b.clone())).collect()
    }

    fn run_dkg(ids: &[u16], t: u16) -> Dkg {
        let n = ids.len() as u16;
        let mut r1s = BTreeMap::new();
        let mut round1 = BTreeMap::new();
        for &x in ids {
            let (s, p) = dkg_round1(x, n, t, &mut OsRng).unwrap();
            assert_eq!(s.public_package(), p);
            r1s.insert(x, s);
            round1.insert(x, p);
        }
        let mut r2s = BTreeMap::new();
        let mut inbox: BTreeMap<u16, BTreeMap<u16, Vec<u8>>> = BTreeMap::new();
        for &x in ids {
            let (s2, out) = dkg_round2(&r1s[&x], &others(&round1, x)).unwrap();
            assert_eq!(
                out.keys().copied().collect::<Vec<_>>(),
                ids.iter().copied().filter(|y| *y != x).collect::<Vec<_>>()
            );
            for (to, p) in out {
                inbox.entry(to).or_default().insert(x, p.to_vec());
            }
            r2s.insert(x, s2);
        }
        let mut shares = BTreeMap::new();
        let mut publics = Vec::new();
        for &x in ids {
            let (k, p) = dkg_finish(&r2s[&x], &others(&round1, x), &inbox[&x]).unwrap();
            assert_eq!(k.x(), x);
            shares.insert(x, k);
            publics.push(p);
        }
        let public = publics[0].clone();
        assert!(publics.iter().all(|p| *p == public));
        Dkg { shares, public, round1 }
    }

    fn sign_with(shares: &[&KeyShare], group: &GroupPublic, msg: &[u8]) -> Result<[u8; 64]> {
        let mut nonces = BTreeMap::new();
        let mut comms = BTreeMap::new();
        for s in shares {
            let (n, c) = commit(s, &mut OsRng)?;
            nonces.insert(s.x(), n);
            comms.insert(s.x(), c);
        }
        let pkg = signing_package(&comms, msg)?;
        let mut sig_shares = BTreeMap::new();
        for s in shares {
            let n = nonces.remove(&s.x()).unwrap();
            sig_shares.insert(s.x(), sign(s, n, &pkg, msg)?);
        }
        aggregate(group, &pkg, &sig_shares)
    }

    fn dalek_verify(vk: [u8; 32], msg: &[u8], sig: &[u8; 64]) {
        let vk = ed25519_dalek::VerifyingKey::from_bytes(&vk).unwrap();
        vk.verify_strict(msg, &ed25519_dalek::Signature::from_bytes(sig)).unwrap();
        use ed25519_dalek::Verifier;
        vk.verify(msg, &ed25519_dalek::Signature::from_bytes(sig)).unwrap();
    }

    fn subsets3(ids: &[u16]) -> Vec<[u16; 3]> {
        let mut out = Vec::new();
        for i in 0..ids.len() {
            for j in i + 1..ids.len() {
                for k in j + 1..ids.len() {
                    out.push([ids[i], ids[j], ids[k]]);
                }
            }
        }
        out
    }

    #[test]
    fn dkg_agrees_and_public_matches() {
        let d = run_dkg(&[1, 2, 3, 4, 5], 3);
        assert_eq!(dkg_public(&d.round1, 3).unwrap(), d.public);
        assert_eq!(d.public.holders(), vec![1, 2, 3, 4, 5]);
        assert_eq!(d.public.threshold(), 3);
        for (x, k) in &d.shares {
            assert_eq!(k.verifying_key(), d.public.verifying_key());
            assert_eq!(Some(k.verifying_share()), d.public.verifying_share(*x));
            assert_eq!(k.threshold(), 3);
            let back = KeyShare::from_bytes(&k.to_bytes()).unwrap();
            assert_eq!(*back.to_bytes(), *k.to_bytes());
            assert!(!format!("{k:?}").contains("SigningShare("));
        }
        assert_eq!(GroupPublic::from_bytes(&d.public.to_bytes()).unwrap(), d.public);
        for (x, p) in &d.round1 {
            verify_round1(*x, p).unwrap();
        }
        // The wrong threshold for dkg_public is refused, naming the first package.
        assert!(matches!(dkg_public(&d.round1, 2), Err(FrostError::Culprit { x: 1, .. })));
    }

    #[test]
    fn dkg_resumes_from_sealed_state() {
        let ids = [1u16, 2, 3];
        let (round1, r2s, inbox) = rounds(&ids, 2, true);
        let mut vk = None;
        for &x in &ids {
            let (_, p) = dkg_finish(&r2s[&x], &others(&round1, x), &inbox[&x]).unwrap();
            assert_eq!(p, dkg_public(&round1, 2).unwrap());
            vk.get_or_insert(p.verifying_key());
        }
    }

    #[test]
    fn any_three_signers_sign() {
        let d = run_dkg(&[1, 2, 3, 4, 5], 3);
        for set in subsets3(&[1, 2, 3, 4, 5]) {
            let msg = format!("tbs certificate {set:?}");
            let signers: Vec<&KeyShare> = set.iter().map(|x| &d.shares[x]).collect();
            let sig = sign_with(&signers, &d.public, msg.as_bytes()).unwrap();
            dalek_verify(d.public.verifying_key(), msg.as_bytes(), &sig);
        }
        // Four signers work too; two do not.
        let four: Vec<&KeyShare> = [1, 2, 4, 5].iter().map(|x| &d.shares[x]).collect();
        sign_with(&four, &d.public, b"m").unwrap();
        let two: Vec<&KeyShare> = [1, 2].iter().map(|x| &d.shares[x]).collect();
        assert!(matches!(sign_with(&two, &d.public, b"m"), Err(FrostError::NotEnoughSigners { have: 2, needed: 3 })));
    }

    #[test]
    fn corrupted_signature_share_names_culprit() {
        let d = run_dkg(&[1, 2, 3, 4, 5], 3);
        let msg = b"csr";
        let signers = [1u16, 3, 5];
        let mut nonces = BTreeMap::new();
        let mut comms = BTreeMap::new();
        for x in signers {
            let (n, c) = commit(&d.shares[&x], &mut OsRng).unwrap();
            nonces.insert(x, n);
            comms.insert(x, c);
        }
        let pkg = signing_package(&comms, msg).unwrap();
        let mut shares = BTreeMap::new();
        for x in signers {
            shares.insert(x, sign(&d.shares[&x], nonces.remove(&x).unwrap(), &pkg, msg).unwrap());
        }
        aggregate(&d.public, &pkg, &shares).unwrap();

        let mut bad = shares.clone();
        bad.get_mut(&3).unwrap()[0] ^= 1;
        assert_eq!(aggregate(&d.public, &pkg, &bad), Err(FrostError::InvalidShares { culprits: vec![3] }));
        // Two corrupted shares: both named (AllCheaters).
        bad.get_mut(&5).unwrap()[1] ^= 1;
        assert_eq!(aggregate(&d.public, &pkg, &bad), Err(FrostError::InvalidShares { culprits: vec![3, 5] }));
        // Malformed (wrong length, non-canonical scalar) and foreign shares.
        let mut bad = shares.clone();
        bad.insert(1, vec![0xff; 32]);
        bad.insert(5, vec![1, 2, 3]);
        assert_eq!(aggregate(&d.public, &pkg, &bad), Err(FrostError::InvalidShares { culprits: vec![1, 5] }));
        let mut bad = shares.clone();
        bad.insert(2, shares[&1].clone());
        assert_eq!(aggregate(&d.public, &pkg, &bad), Err(FrostError::InvalidShares { culprits: vec![2] }));
        // A silent signer.
        let mut short = shares.clone();
        short.remove(&5);
        assert_eq!(aggregate(&d.public, &pkg, &short), Err(FrostError::MissingShares { missing: vec![5] }));
    }

    #[test]
    fn bad_round2_share_names_dealer() {
        let (round1, r2s, inbox) = rounds(&[1, 2, 3, 4, 5], 3, false);
        // Dealer 2 sends node 4 the share meant for node 3 (well-formed, wrong value).
        let mut bad = inbox[&4].clone();
        bad.insert(2, inbox[&3][&2].clone());
        assert_eq!(
            dkg_finish(&r2s[&4], &others(&round1, 4), &bad).unwrap_err(),
            FrostError::Culprit { x: 2, reason: "secret share does not match its commitment" }
        );
        // Garbage from dealer 5.
        let mut bad = inbox[&4].clone();
        bad.insert(5, vec![7; 9]);
        assert!(matches!(dkg_finish(&r2s[&4], &others(&round1, 4), &bad), Err(FrostError::Culprit { x: 5, .. })));
        // A missing sender is not silently accepted.
        let mut short = inbox[&4].clone();
        short.remove(&1);
        assert!(matches!(dkg_finish(&r2s[&4], &others(&round1, 4), &short), Err(FrostError::Malformed { .. })));
    }

    /// Our public proof-of-knowledge check agrees with frost's own verdict in part2.
    #[test]
    fn verify_round1_matches_frost() {
        let (s1, _) = dkg_round1(1, 3, 2, &mut OsRng).unwrap();
        let (_, p2) = dkg_round1(2, 3, 2, &mut OsRng).unwrap();
        let (_, p3) = dkg_round1(3, 3, 2, &mut OsRng).unwrap();
        let frost_part2 = |p2: &[u8], p3: &[u8]| {
            let map = BTreeMap::from([
                (ident(2).unwrap(), dkg::round1::Package::deserialize(p2).unwrap()),
                (ident(3).unwrap(), dkg::round1::Package::deserialize(p3).unwrap()),
            ]);
            dkg::part2(s1.secret.clone(), &map).map(|_| ())
        };
        assert!(frost_part2(&p2, &p3).is_ok());
        verify_round1(2, &p2).unwrap();
        verify_round1(3, &p3).unwrap();

        // Tamper with the low byte of the proof's z (last 32 bytes): still a canonical scalar.
        let mut bad = p3.clone();
        let at = bad.len() - 32;
        bad[at] ^= 1;
        let frost_err = frost_part2(&p2, &bad).unwrap_err();
        assert_eq!(frost_err, frost_ed25519::Error::InvalidProofOfKnowledge { culprit: ident(3).unwrap() });
        assert_eq!(verify_round1(3, &bad), Err(FrostError::Culprit { x: 3, reason: "invalid proof of knowledge" }));
        let others = BTreeMap::from([(2, p2.clone()), (3, bad)]);
        assert!(matches!(dkg_round2(&s1, &others), Err(FrostError::Culprit { x: 3, .. })));

        // Replaying 2's package as 3's: the identifier is bound into the challenge.
        assert!(frost_part2(&p2, &p2).is_err());
        assert!(matches!(verify_round1(3, &p2), Err(FrostError::Culprit { x: 3, .. })));
    }

    struct Reshared {
        old: Dkg,
        new_shares: BTreeMap<u16, KeyShare>,
        new_public: GroupPublic,
    }

    fn reshare(dealer_ids: &[u16], new_ids: &[u16], t: u16) -> Reshared {
        let old = run_dkg(&[1, 2, 3, 4, 5], 3);
        let dealers: Vec<ReshareDealer> = dealer_ids
            .iter()
            .map(|x| {
                let d = ReshareDealer::new(&old.shares[x], t, &mut OsRng).unwrap();
                ReshareDealer::from_bytes(&d.to_bytes()).unwrap() // sealed and restored
            })
            .collect();
        let commitments: BTreeMap<u16, Vec<u8>> = dealers.iter().map(|d| (d.x(), d.commitment())).collect();
        let new_public = reshare_public(&commitments, new_ids, t, &old.public).unwrap();
        let mut new_shares = BTreeMap::new();
        for &x in new_ids {
            let mut received = BTreeMap::new();
            for d in &dealers {
                check_reshare_commitment(&commitments[&d.x()], &old.public, d.x()).unwrap();
                let s = d.share_for(x).unwrap();
                verify_reshare_share(d.x(), &commitments[&d.x()], x, &s).unwrap();
                received.insert(d.x(), s);
            }
            // Every node derives the same public data from the Raft log.
            assert_eq!(reshare_public(&commitments, new_ids, t, &old.public).unwrap(), new_public);
            new_shares.insert(x, reshare_finish(x, &received, &new_public).unwrap());
        }
        Reshared { old, new_shares, new_public }
    }

    #[test]
    fn reshare_join_and_revoke_keeps_key() {
        let r = reshare(&[1, 3, 4], &[1, 2, 4, 6], 3);
        assert_eq!(r.new_public.verifying_key(), r.old.public.verifying_key());
        assert_eq!(r.new_public.holders(), vec![1, 2, 4, 6]);
        assert_ne!(r.new_public.verifying_share(1), r.old.public.verifying_share(1));
        for set in subsets3(&[1, 2, 4, 6]) {
            let signers: Vec<&KeyShare> = set.iter().map(|x| &r.new_shares[x]).collect();
            let sig = sign_with(&signers, &r.new_public, b"after reshare").unwrap();
            dalek_verify(r.old.public.verifying_key(), b"after reshare", &sig);
        }
        // Threshold can change too (here up to 4 of 4).
        let r4 = reshare(&[2, 3, 5], &[1, 2, 4, 6], 4);
        let all: Vec<&KeyShare> = r4.new_shares.values().collect();
        sign_with(&all, &r4.new_public, b"t=4").unwrap();
        assert!(matches!(sign_with(&all[..3], &r4.new_public, b"t=4"), Err(FrostError::NotEnoughSigners { .. })));
    }

    #[test]
    fn old_shares_are_rejected_after_reshare() {
        let r = reshare(&[1, 3, 4], &[1, 2, 4, 6], 3);
        // Revoked node 5 signs with its old share alongside new holders 2 and 6.
        let signers = [&r.old.shares[&5], &r.new_shares[&2], &r.new_shares[&6]];
        assert_eq!(sign_with(&signers, &r.new_public, b"m"), Err(FrostError::InvalidShares { culprits: vec![5] }));
        // A kept holder using its stale old share is caught by frost's cheater detection.
        let signers = [&r.old.shares[&1], &r.new_shares[&2], &r.new_shares[&6]];
        assert_eq!(sign_with(&signers, &r.new_public, b"m"), Err(FrostError::InvalidShares { culprits: vec![1] }));
    }

    #[test]
    fn reshare_rejects_dishonest_dealers() {
        let old = run_dkg(&[1, 2, 3, 4, 5], 3);
        // Dealer 3 reshares 4's share (or a fresh secret) instead of its own.
        let wrong = ReshareDealer::new(&old.shares[&4], 3, &mut OsRng).unwrap();
        let err = check_reshare_commitment(&wrong.commitment(), &old.public, 3).unwrap_err();
        assert!(matches!(err, FrostError::ReshareMismatch { dealer: 3, .. }));
        let honest1 = ReshareDealer::new(&old.shares[&1], 3, &mut OsRng).unwrap();
        let honest4 = ReshareDealer::new(&old.shares[&4], 3, &mut OsRng).unwrap();
        let commitments =
            BTreeMap::from([(1, honest1.commitment()), (3, wrong.commitment()), (4, honest4.commitment())]);
        assert!(matches!(
            reshare_public(&commitments, &[1, 2, 6], 3, &old.public),
            Err(FrostError::ReshareMismatch { dealer: 3, .. })
        ));
        // Too few dealers, a non-holder dealer, wrong degree.
        let two = BTreeMap::from([(1, honest1.commitment()), (4, honest4.commitment())]);
        assert!(matches!(
            reshare_public(&two, &[1, 2, 6], 3, &old.public),
            Err(FrostError::NotEnoughSigners { have: 2, needed: 3 })
        ));
        assert!(matches!(
            check_reshare_commitment(&honest1.commitment(), &old.public, 9),
            Err(FrostError::ReshareMismatch { dealer: 9, .. })
        ));
        let honest3_deg1 = ReshareDealer::new(&old.shares[&3], 2, &mut OsRng).unwrap();
        let mixed =
            BTreeMap::from([(1, honest1.commitment()), (3, honest3_deg1.commitment()), (4, honest4.commitment())]);
        assert!(matches!(
            reshare_public(&mixed, &[1, 2, 6], 3, &old.public),
            Err(FrostError::ReshareMismatch { dealer: 3, reason: "commitment has the wrong degree" })
        ));
        // A share that does not match the commitment is caught on receipt, and at finish.
        let honest3 = ReshareDealer::new(&old.shares[&3], 3, &mut OsRng).unwrap();
        let good = BTreeMap::from([(1, honest1.commitment()), (3, honest3.commitment()), (4, honest4.commitment())]);
        let public = reshare_public(&good, &[1, 2, 6], 3, &old.public).unwrap();
        let forged = honest3.share_for(2).unwrap(); // meant for 2, sent to 6
        assert!(matches!(
            verify_reshare_share(3, &good[&3], 6, &forged),
            Err(FrostError::ReshareMismatch { dealer: 3, .. })
        ));
        let received =
            BTreeMap::from([(1, honest1.share_for(6).unwrap()), (3, forged), (4, honest4.share_for(6).unwrap())]);
        assert_eq!(reshare_finish(6, &received, &public).unwrap_err(), FrostError::ReshareInconsistent { x: 6 });
        assert!(honest1.share_for(0).is_err());
    }

    #[test]
    fn sign_refuses_wrong_message_and_foreign_package() {
        let d = run_dkg(&[1, 2, 3], 2);
        let (n1, c1) = commit(&d.shares[&1], &mut OsRng).unwrap();
        let (_n2, c2) = commit(&d.shares[&2], &mut OsRng).unwrap();
        let (_n3, c3) = commit(&d.shares[&3], &mut OsRng).unwrap();
        let pkg = signing_package(&BTreeMap::from([(1, c1.clone()), (2, c2.clone())]), b"evil").unwrap();
        assert_eq!(sign(&d.shares[&1], n1, &pkg, b"good"), Err(FrostError::WrongMessage));
        let (n1, c1b) = commit(&d.shares[&1], &mut OsRng).unwrap();
        // Package without 1's commitment, and one with a stale commitment of 1.
        let pkg = signing_package(&BTreeMap::from([(2, c2.clone()), (3, c3)]), b"good").unwrap();
        assert_eq!(sign(&d.shares[&1], n1, &pkg, b"good"), Err(FrostError::NotInPackage));
        let (n1, _) = commit(&d.shares[&1], &mut OsRng).unwrap();
        let pkg = signing_package(&BTreeMap::from([(1, c1b), (2, c2)]), b"good").unwrap();
        assert_eq!(sign(&d.shares[&1], n1, &pkg, b"good"), Err(FrostError::NotInPackage));
        // Nonces of another holder.
        let (n2, _) = commit(&d.shares[&2], &mut OsRng).unwrap();
        assert!(matches!(sign(&d.shares[&1], n2, &pkg, b"good"), Err(FrostError::Malformed { .. })));
        assert!(!format!("{:?}", commit(&d.shares[&1], &mut OsRng).unwrap().0).contains("hiding"));
    }

    /// Truncations, bit flips and garbage on every parser: errors, never panics.
    #[test]
    fn malformed_bytes_never_panic() {
        let d = run_dkg(&[1, 2, 3], 2);
        let (r1, p1) = dkg_round1(4, 4, 2, &mut OsRng).unwrap();
        let (n1, c1) = commit(&d.shares[&1], &mut OsRng).unwrap();
        let (n2, c2) = commit(&d.shares[&2], &mut OsRng).unwrap();
        let pkg = signing_package(&BTreeMap::from([(1, c1.clone()), (2, c2.clone())]), b"m").unwrap();
        let s1 = sign(&d.shares[&1], n1, &pkg, b"m").unwrap();
        let s2 = sign(&d.shares[&2], n2, &pkg, b"m").unwrap();
        let dealer = ReshareDealer::new(&d.shares[&1], 2, &mut OsRng).unwrap();
        let samples: Vec<Vec<u8>> = vec![
            d.public.to_bytes(),
            d.shares[&1].to_bytes().to_vec(),
            r1.to_bytes().unwrap().to_vec(),
            p1.clone(),
            pkg.clone(),
            c1.clone(),
            dealer.to_bytes().to_vec(),
            dealer.commitment(),
        ];
        let mut rng = OsRng;
        let mut inputs: Vec<Vec<u8>> = vec![vec![], vec![0], vec![1], vec![0xff; 200], vec![1; 101]];
        for s in &samples {
            for cut in [1, 2, 5, 31, 32, 33, s.len() / 2, s.len().saturating_sub(1)] {
                inputs.push(s[..cut.min(s.len())].to_vec());
            }
            for _ in 0..12 {
                let mut v = s.clone();
                let i = (rng.next_u32() as usize) % v.len();
                v[i] ^= 1 << (rng.next_u32() % 8);
                inputs.push(v);
            }
            let mut v = s.clone();
            v.push(0);
            inputs.push(v);
            let mut v = s.clone();
            v.shuffle(&mut rng);
            inputs.push(v);
        }
        let mut ok = 0usize;
        for b in &inputs {
            ok += GroupPublic::from_bytes(b).is_ok() as usize;
            ok += KeyShare::from_bytes(b).is_ok() as usize;
            ok += Round1Secret::from_bytes(b).is_ok() as usize;
            ok += Round2Secret::from_bytes(b).is_ok() as usize;
            ok += ReshareDealer::from_bytes(b).is_ok() as usize;
            ok += verify_round1(4, b).is_ok() as usize;
            ok += signing_package(&BTreeMap::from([(1, b.clone()), (2, c2.clone())]), b"m").is_ok() as usize;
            let (n, _) = commit(&d.shares[&1], &mut rng).unwrap();
            assert!(sign(&d.shares[&1], n, b, b"m").is_err());
            assert!(aggregate(&d.public, b, &BTreeMap::from([(1, s1.clone()), (2, s2.clone())])).is_err());
            assert!(aggregate(&d.public, &pkg, &BTreeMap::from([(1, b.clone()), (2, s2.clone())])).is_err());
            let _ = check_reshare_commitment(b, &d.public, 1);
            let _ = reshare_public(&BTreeMap::from([(1, b.clone()), (2, b.clone())]), &[1, 2, 3], 2, &d.public);
            if let Ok(arr) = <[u8; 32]>::try_from(&b[..b.len().min(32)]) {
                let _ = verify_reshare_share(1, b, 2, &arr);
                let _ = reshare_finish(2, &BTreeMap::from([(1, Zeroizing::new(arr))]), &d.public);
            }
            let _ = dkg_public(&BTreeMap::from([(1, b.clone()), (2, p1.clone())]), 2);
        }
        // Flipped bytes may occasionally still parse (e.g. a flipped share scalar); garbage never does broadly.
        assert!(ok < inputs.len());
        for bad in [vec![], vec![0u8; 31], vec![VERSION], vec![VERSION, 0, 2]] {
            assert!(matches!(GroupPublic::from_bytes(&bad), Err(FrostError::Malformed { .. })));
            assert!(matches!(KeyShare::from_bytes(&bad), Err(FrostError::Malformed { .. })));
        }
        assert!(dkg_round1(0, 3, 2, &mut OsRng).is_err());
        assert!(dkg_round1(1, 3, 4, &mut OsRng).is_err());
        assert!(dkg_round1(1, 3, 1, &mut OsRng).is_err());
    }
}
