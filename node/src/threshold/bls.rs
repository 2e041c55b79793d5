//! BLS12-381 half of Guardian's threshold root.
//!
//! * **Feldman VSS** over G1: a dealer picks a degree `t-1` polynomial `f`, publishes the commitment
//!   `C_k = a_k·G1` and sends node `x` the scalar `f(x)`, which the node checks with [`verify_share`].
//! * **Joint-Feldman DKG** (dealerless): every node deals a [`BlsDealer::fresh`] polynomial; the group
//!   polynomial is the sum ([`dkg_public`], [`dkg_share`]).
//! * **Resharing** with the group key unchanged: at least `t_old` old holders deal
//!   [`BlsDealer::reshare`] polynomials whose constant term is their current share
//!   ([`check_reshare_commitment`]); new holders combine with Lagrange weights at 0
//!   ([`reshare_public`], [`reshare_share`]). Old shares are useless against the new polynomial.
//! * **Threshold PRF**: a BLS signature is unique, so the combined threshold signature on a label is a
//!   deterministic secret known to no single node; [`namespace_secret`] runs HKDF over it.
//!
//! Indices: a share index `x: u16` is the holder's node id and must be nonzero. blsttc evaluates its
//! `*_share(i)` at `i + 1`; that off-by-one stays inside this module. Threshold `t` = number of shares
//! needed; polynomials have degree `t - 1`.
//!
//! Every dealer set used in [`dkg_public`]/[`dkg_share`] or [`reshare_public`]/[`reshare_share`] must
//! be the same on all nodes (agree on it through consensus), otherwise the resulting shares do not lie
//! on one polynomial. Pure code: no I/O, no clock; randomness comes from the caller's RNG.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{compiler_fence, Ordering};

use blsttc::group::ff::Field;
use blsttc::group::prime::PrimeCurveAffine;
use blsttc::group::{Curve, Group};
use blsttc::poly::Commitment;
use blsttc::{Fr, G1Affine, G1Projective, PublicKeySet, SecretKeyShare, Signature, SignatureShare};
use hkdf::Hkdf;
use rand::{CryptoRng, RngCore};
use sha2::Sha256;
use zeroize::{Zeroize, Zeroizing};

/// Bytes of a big-endian scalar (secret share, polynomial coefficient).
pub const SCALAR_LEN: usize = 32;
/// Bytes of a compressed G1 point (public key, commitment coefficient).
pub const G1_LEN: usize = 48;
/// Bytes of a compressed G2 point (signature or signature share).
pub const SIG_LEN: usize = 96;

/// Prefix of every namespace label (domain separation from any other BLS use of the same key).
pub const NS_LABEL_PREFIX: &[u8] = b"guardian/ns/v1";
/// HKDF salt for namespace secrets.
pub const NS_SECRET_SALT: &[u8] = b"guardian/ns-secret/v1";

/// Errors of the BLS threshold layer. Each says what failed and, where one exists, who is to blame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlsError {
    /// Bytes that do not decode (wrong length, non-canonical scalar, point not in G1/G2, …).
    #[error("malformed {what}")]
    Malformed { what: &'static str },
    /// A commitment or polynomial of the wrong degree (`t - 1` expected).
    #[error("wrong polynomial degree: expected {expected}, got {got}")]
    WrongDegree { expected: usize, got: usize },
    /// The secret share for node `x` is not on the dealer's published commitment.
    #[error("share for node {x} is not on the dealer's commitment")]
    ShareMismatch { x: u16 },
    /// A reshare commitment whose constant term is not the dealer's old public key share.
    #[error("reshare commitment of dealer {dealer} does not commit to its old share")]
    ReshareMismatch { dealer: u16 },
    /// Fewer than `needed` valid signature shares; `culprits` sent malformed or invalid ones.
    #[error("not enough valid signature shares: {valid} valid, {needed} needed, culprits {culprits:?}")]
    NotEnoughShares { valid: usize, needed: usize, culprits: Vec<u16> },
    /// Fewer dealers than the operation needs.
    #[error("too few dealers: {got}, need {needed}")]
    TooFewDealers { got: usize, needed: usize },
    /// Share index 0 (reserved for the secret itself) or a duplicate index.
    #[error("invalid share index (zero or duplicate)")]
    BadIndex,
    /// Threshold 0, or larger than `u16::MAX`.
    #[error("invalid threshold (must be 1..=65535)")]
    BadThreshold,
    /// A combined value failed its final check (signature under the group key, reshared group key).
    #[error("combined result failed verification")]
    CombinedInvalid,
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, BlsError>;

/// Overwrites a scalar with zero in a way the optimizer may not elide (blsttc's own clearing is a
/// plain store).
fn wipe(fr: &mut Fr) {
    // SAFETY: `fr` is a valid, aligned, exclusive reference and `Fr::zero()` is a valid value.
    unsafe { std::ptr::write_volatile(fr, Fr::zero()) };
    compiler_fence(Ordering::SeqCst);
}

fn fr_of(x: u16) -> Fr {
    Fr::from(u64::from(x))
}

fn nonzero(x: u16) -> Result<u16> {
    if x == 0 {
        Err(BlsError::BadIndex)
    } else {
        Ok(x)
    }
}

fn scalar_from_be(bytes: &[u8], what: &'static str) -> Result<Fr> {
    let arr: &[u8; SCALAR_LEN] = bytes.try_into().map_err(|_| BlsError::Malformed { what })?;
    Option::<Fr>::from(Fr::from_bytes_be(arr)).ok_or(BlsError::Malformed { what })
}

/// Parses `bytes` as a sequence of compressed, subgroup-checked G1 points.
fn points_from_bytes(bytes: &[u8], what: &'static str) -> Result<Vec<G1Affine>> {
    if bytes.is_empty() || bytes.len() % G1_LEN != 0 {
        return Err(BlsError::Malformed { what });
    }
    bytes
        .chunks_exact(G1_LEN)
        .map(|chunk| {
            let arr: &[u8; G1_LEN] = chunk.try_into().map_err(|_| BlsError::Malformed { what })?;
            Option::<G1Affine>::from(G1Affine::from_compressed(arr)).ok_or(BlsError::Malformed { what })
        })
        .collect()
}

fn points_to_bytes(points: &[G1Affine]) -> Vec<u8> {
    let mut out = Vec::with_capacity(points.len() * G1_LEN);
    for p in points {
        out.extend_from_slice(&p.to_compressed());
    }
    out
}

/// Horner evaluation of a committed polynomial at `x`.
fn eval_points(points: &[G1Affine], x: Fr) -> G1Projective {
    let mut acc = G1Projective::identity();
    for c in points.iter().rev() {
        acc = acc * x + c;
    }
    acc
}

fn to_affine_vec(points: &[G1Projective]) -> Vec<G1Affine> {
    points.iter().map(|p| p.to_affine()).collect()
}

/// Lagrange coefficients λ_i(0) = Π_{j≠i} x_j / (x_j − x_i) for the distinct nonzero `xs`.
fn lagrange_at_zero(xs: &[u16]) -> Result<Vec<Fr>> {
    xs.iter()
        .map(|&xi| {
            nonzero(xi)?;
            let (mut num, mut den) = (Fr::one(), Fr::one());
            for &xj in xs.iter().filter(|&&xj| xj != xi) {
                num *= fr_of(xj);
                den *= fr_of(xj) - fr_of(xi);
            }
            // den is zero only if an index repeats, which `filter` already excluded; kept as a guard.
            let inv = Option::<Fr>::from(den.invert()).ok_or(BlsError::BadIndex)?;
            Ok(num * inv)
        })
        .collect()
}

fn threshold_u16(len: usize) -> Result<u16> {
    match u16::try_from(len) {
        Ok(t) if t > 0 => Ok(t),
        _ => Err(BlsError::BadThreshold),
    }
}

// ---------------------------------------------------------------------------------------------------
// Secret share
// ---------------------------------------------------------------------------------------------------

/// A node's secret scalar share (of the group key, or one dealer's contribution). Zeroized on drop.
#[derive(Clone)]
pub struct BlsShare(Fr);

impl Zeroize for BlsShare {
    fn zeroize(&mut self) {
        wipe(&mut self.0);
    }
}

impl Drop for BlsShare {
    fn drop(&mut self) {
        self.zeroize();
    }
}

impl fmt::Debug for BlsShare {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BlsShare(<redacted>)")
    }
}

impl BlsShare {
    /// Big-endian canonical encoding (for sealing, or for sending to its holder over attested TLS).
    pub fn to_bytes(&self) -> Zeroizing<[u8; SCALAR_LEN]> {
        Zeroizing::new(self.0.to_bytes_be())
    }

    /// Decodes 32 big-endian bytes; rejects other lengths and values ≥ the group order.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        scalar_from_be(bytes, "secret share").map(BlsShare)
    }

    /// The matching public key share `s·G1`, compressed.
    pub fn public_key(&self) -> [u8; G1_LEN] {
        (G1Projective::generator() * self.0).to_affine().to_compressed()
    }
}

// ---------------------------------------------------------------------------------------------------
// Commitment and group public key set
// ---------------------------------------------------------------------------------------------------

/// A Feldman commitment `[a_0·G1, …, a_{t-1}·G1]` to a dealer's polynomial. Public.
#[derive(Clone, PartialEq, Eq)]
pub struct BlsCommitment {
    points: Vec<G1Affine>,
}

impl fmt::Debug for BlsCommitment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c0 = self.points.first().map(|p| hex::encode(p.to_compressed())).unwrap_or_default();
        f.debug_struct("BlsCommitment").field("t", &self.points.len()).field("c0", &c0).finish()
    }
}

impl BlsCommitment {
    /// Threshold `t` (number of coefficients).
    pub fn threshold(&self) -> u16 {
        // Constructors guarantee 1 ≤ len ≤ u16::MAX.
        u16::try_from(self.points.len()).unwrap_or(u16::MAX)
    }

    /// `t` compressed G1 points, 48 bytes each.
    pub fn to_bytes(&self) -> Vec<u8> {
        points_to_bytes(&self.points)
    }

    /// Decodes a commitment received from a dealer and checks it has exactly `t` coefficients
    /// (degree `t - 1`), each a valid point of the G1 subgroup.
    pub fn from_bytes(bytes: &[u8], t: u16) -> Result<Self> {
        if t == 0 {
            return Err(BlsError::BadThreshold);
        }
        // Check the size before decoding so an oversized blob costs no subgroup checks.
        let n = bytes.len() / G1_LEN;
        if n > 0 && bytes.len() % G1_LEN == 0 && n != usize::from(t) {
            return Err(BlsError::WrongDegree { expected: usize::from(t) - 1, got: n - 1 });
        }
        let points = points_from_bytes(bytes, "commitment")?;
        Ok(BlsCommitment { points })
    }

    /// `C(x)`: the public key of the share this dealer owes node `x` (also used with x = 0).
    fn eval(&self, x: u16) -> G1Projective {
        eval_points(&self.points, fr_of(x))
    }
}

/// The group's public key set: commitment to the group polynomial. Public, replicated via Raft.
#[derive(Clone, PartialEq, Eq)]
pub struct BlsPublic {
    points: Vec<G1Affine>,
    set: PublicKeySet,
}

impl fmt::Debug for BlsPublic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlsPublic")
            .field("t", &self.points.len())
            .field("group_key", &hex::encode(self.group_key()))
            .finish()
    }
}

impl BlsPublic {
    /// Builds from coefficients; refuses an identity group key (every signature would "verify").
    fn from_points(points: Vec<G1Affine>) -> Result<Self> {
        threshold_u16(points.len())?;
        match points.first() {
            Some(c0) if !bool::from(c0.is_identity()) => {}
            _ => return Err(BlsError::Malformed { what: "group public key (identity)" }),
        }
        // Commitment::from keeps trailing identity coefficients, so blsttc's threshold() = t - 1.
        let set = PublicKeySet::from(Commitment::from(points.clone()));
        Ok(BlsPublic { points, set })
    }

    /// `t` compressed G1 points (48 bytes each); the first is the group key.
    pub fn to_bytes(&self) -> Vec<u8> {
        points_to_bytes(&self.points)
    }

    /// Decodes; `t` is the number of 48-byte points. Rejects invalid points and an identity group key.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        Self::from_points(points_from_bytes(bytes, "public key set")?)
    }

    /// A degree-0 set whose every public key share is `group_key`: the public side of a secret held
    /// whole, as by the single dealer of a recovery (docs/keys.md §6). `t` = 1.
    pub fn from_group_key(group_key: &[u8; G1_LEN]) -> Result<Self> {
        Self::from_bytes(group_key)
    }

    /// The group public key (what the namespace-PRF signatures verify under).
    pub fn group_key(&self) -> [u8; G1_LEN] {
        self.set.public_key().to_bytes()
    }

    /// Public key share of node `x`. Errors on x = 0 (that would be the group key).
    pub fn share_key(&self, x: u16) -> Result<[u8; G1_LEN]> {
        Ok(self.blsttc_share_key(x)?.to_bytes())
    }

    /// Threshold `t`: signature shares needed to combine.
    pub fn threshold(&self) -> u16 {
        u16::try_from(self.points.len()).unwrap_or(u16::MAX)
    }

    /// Checks that `share` is node `x`'s share of this group polynomial (self-check after DKG or
    /// resharing, before the old share is deleted).
    pub fn check_share(&self, x: u16, share: &BlsShare) -> Result<()> {
        nonzero(x)?;
        if G1Projective::generator() * share.0 == eval_points(&self.points, fr_of(x)) {
            Ok(())
        } else {
            Err(BlsError::ShareMismatch { x })
        }
    }

    fn blsttc_share_key(&self, x: u16) -> Result<blsttc::PublicKeyShare> {
        // blsttc evaluates public_key_share(i) at i + 1.
        Ok(self.set.public_key_share(u64::from(nonzero(x)?) - 1))
    }
}

// ---------------------------------------------------------------------------------------------------
// Dealer
// ---------------------------------------------------------------------------------------------------

/// A dealer's secret polynomial (coefficients `a_0..a_{t-1}`). Persist it sealed via
/// [`BlsDealer::to_bytes`] so that after a crash the node resends identical shares instead of dealing
/// a second, conflicting polynomial. Zeroized on drop.
pub struct BlsDealer {
    coeffs: Vec<Fr>,
}

impl Zeroize for BlsDealer {
    fn zeroize(&mut self) {
        self.coeffs.iter_mut().for_each(wipe);
    }
}

impl Drop for BlsDealer {
    fn drop(&mut self) {
        self.zeroize();
    }
}

impl fmt::Debug for BlsDealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlsDealer").field("t", &self.coeffs.len()).finish_non_exhaustive()
    }
}

impl BlsDealer {
    /// DKG contribution: a uniformly random polynomial of degree `t - 1`.
    pub fn fresh<R: RngCore + CryptoRng>(t: u16, rng: &mut R) -> Result<Self> {
        threshold_u16(usize::from(t))?;
        let coeffs = (0..t).map(|_| Fr::random(&mut *rng)).collect();
        Ok(BlsDealer { coeffs })
    }

    /// Resharing contribution: `f(0)` = the dealer's current share, other coefficients random.
    /// `t` is the *new* threshold.
    pub fn reshare<R: RngCore + CryptoRng>(share: &BlsShare, t: u16, rng: &mut R) -> Result<Self> {
        threshold_u16(usize::from(t))?;
        let mut coeffs = Vec::with_capacity(usize::from(t));
        coeffs.push(share.0);
        coeffs.extend((1..t).map(|_| Fr::random(&mut *rng)));
        Ok(BlsDealer { coeffs })
    }

    /// Threshold `t` of the dealt polynomial.
    pub fn threshold(&self) -> u16 {
        u16::try_from(self.coeffs.len()).unwrap_or(u16::MAX)
    }

    /// The Feldman commitment to publish (via Raft).
    pub fn commitment(&self) -> BlsCommitment {
        let proj: Vec<G1Projective> = self.coeffs.iter().map(|a| G1Projective::generator() * a).collect();
        BlsCommitment { points: to_affine_vec(&proj) }
    }

    /// The secret share `f(x)` owed to node `x` (send over attested TLS only).
    pub fn share_for(&self, x: u16) -> Result<BlsShare> {
        let x = fr_of(nonzero(x)?);
        let mut acc = BlsShare(Fr::zero());
        for a in self.coeffs.iter().rev() {
            acc.0 = acc.0 * x + a;
        }
        Ok(acc)
    }

    /// `t` big-endian 32-byte coefficients, for sealed storage.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(self.coeffs.len() * SCALAR_LEN));
        for a in &self.coeffs {
            let bytes = Zeroizing::new(a.to_bytes_be());
            out.extend_from_slice(bytes.as_slice());
        }
        out
    }

    /// Restores a dealer from [`BlsDealer::to_bytes`]; rejects bad lengths and non-canonical scalars.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        if bytes.is_empty() || bytes.len() % SCALAR_LEN != 0 {
            return Err(BlsError::Malformed { what: "dealer polynomial" });
        }
        threshold_u16(bytes.len() / SCALAR_LEN)?;
        let mut dealer = BlsDealer { coeffs: Vec::with_capacity(bytes.len() / SCALAR_LEN) };
        for chunk in bytes.chunks_exact(SCALAR_LEN) {
            // On error `dealer` is dropped and what was parsed so far is wiped.
            dealer.coeffs.push(scalar_from_be(chunk, "dealer polynomial")?);
        }
        Ok(dealer)
    }
}

// ---------------------------------------------------------------------------------------------------
// VSS checks, DKG and resharing
// ---------------------------------------------------------------------------------------------------

/// Feldman check run by node `x` on the share a dealer sent it: `share·G1 == C(x)`.
pub fn verify_share(commitment: &BlsCommitment, x: u16, share: &BlsShare) -> Result<()> {
    nonzero(x)?;
    if G1Projective::generator() * share.0 == commitment.eval(x) {
        Ok(())
    } else {
        Err(BlsError::ShareMismatch { x })
    }
}

/// Resharing check: the dealer's polynomial must hide its *current* share, i.e. `C(0)` equals the old
/// public key share of `dealer_x`. Without it a dealer could silently change the group key.
pub fn check_reshare_commitment(commitment: &BlsCommitment, old: &BlsPublic, dealer_x: u16) -> Result<()> {
    nonzero(dealer_x)?;
    let expected = eval_points(&old.points, fr_of(dealer_x));
    if commitment.eval(0) == expected {
        Ok(())
    } else {
        Err(BlsError::ReshareMismatch { dealer: dealer_x })
    }
}

/// DKG group public key set: Σ C_d over the agreed qualified dealers (all of threshold `t`).
pub fn dkg_public(commitments: &[BlsCommitment]) -> Result<BlsPublic> {
    let first = commitments.first().ok_or(BlsError::TooFewDealers { got: 0, needed: 1 })?;
    let t = first.points.len();
    let mut acc = vec![G1Projective::identity(); t];
    for c in commitments {
        if c.points.len() != t {
            return Err(BlsError::WrongDegree { expected: t - 1, got: c.points.len().saturating_sub(1) });
        }
        for (a, p) in acc.iter_mut().zip(&c.points) {
            *a += p;
        }
    }
    BlsPublic::from_points(to_affine_vec(&acc))
}

/// DKG final share of a node: Σ s_d of the (verified) shares it got from the same qualified dealers.
pub fn dkg_share(shares: &[BlsShare]) -> Result<BlsShare> {
    if shares.is_empty() {
        return Err(BlsError::TooFewDealers { got: 0, needed: 1 });
    }
    let mut acc = BlsShare(Fr::zero());
    for s in shares {
        acc.0 += s.0;
    }
    Ok(acc)
}

/// New public key set after resharing: Σ λ_d(0)·C_d over the dealer indices.
///
/// Takes the old public set (rather than a bare `t`) so it can enforce what makes resharing safe:
/// at least `old.threshold()` dealers, every commitment passing [`check_reshare_commitment`], all of
/// one new threshold, and the group key coming out unchanged.
pub fn reshare_public(old: &BlsPublic, commitments: &BTreeMap<u16, BlsCommitment>) -> Result<BlsPublic> {
    let needed = usize::from(old.threshold());
    if commitments.len() < needed {
        return Err(BlsError::TooFewDealers { got: commitments.len(), needed });
    }
    let new_t =
        commitments.values().next().map(|c| c.points.len()).ok_or(BlsError::TooFewDealers { got: 0, needed })?;
    for (&dealer, c) in commitments {
        if c.points.len() != new_t {
            return Err(BlsError::WrongDegree { expected: new_t - 1, got: c.points.len().saturating_sub(1) });
        }
        check_reshare_commitment(c, old, dealer)?;
    }
    let xs: Vec<u16> = commitments.keys().copied().collect();
    let lambdas = lagrange_at_zero(&xs)?;
    let mut acc = vec![G1Projective::identity(); new_t];
    for (c, l) in commitments.values().zip(&lambdas) {
        for (a, p) in acc.iter_mut().zip(&c.points) {
            *a += *p * l;
        }
    }
    let new = BlsPublic::from_points(to_affine_vec(&acc))?;
    if new.group_key() != old.group_key() {
        return Err(BlsError::CombinedInvalid);
    }
    Ok(new)
}

/// New share of a node after resharing: Σ λ_d(0)·s_d over the shares it got from the same dealer
/// set used in [`reshare_public`]. `old_t` is the threshold of the *old* polynomial.
pub fn reshare_share(shares: &BTreeMap<u16, BlsShare>, old_t: u16) -> Result<BlsShare> {
    threshold_u16(usize::from(old_t))?;
    if shares.len() < usize::from(old_t) {
        return Err(BlsError::TooFewDealers { got: shares.len(), needed: usize::from(old_t) });
    }
    let xs: Vec<u16> = shares.keys().copied().collect();
    let lambdas = lagrange_at_zero(&xs)?;
    let mut acc = BlsShare(Fr::zero());
    for (s, l) in shares.values().zip(&lambdas) {
        acc.0 += s.0 * l;
    }
    Ok(acc)
}

// ---------------------------------------------------------------------------------------------------
// Threshold signatures / PRF
// ---------------------------------------------------------------------------------------------------

/// Signature share on `label` (blsttc's hash-to-G2, DST `BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_NUL_`).
pub fn sign_share(share: &BlsShare, label: &[u8]) -> [u8; SIG_LEN] {
    let mut fr = share.0;
    // from_mut clears `fr`; the SecretKeyShare clears itself on drop.
    let sk = SecretKeyShare::from_mut(&mut fr);
    wipe(&mut fr);
    sk.sign(label).to_bytes()
}

fn parse_sig_share(bytes: &[u8]) -> Option<SignatureShare> {
    let arr: [u8; SIG_LEN] = bytes.try_into().ok()?;
    SignatureShare::from_bytes(arr).ok()
}

fn checked_sig_share(public: &BlsPublic, x: u16, label: &[u8], bytes: &[u8]) -> Option<SignatureShare> {
    let pk = public.blsttc_share_key(x).ok()?;
    let sig = parse_sig_share(bytes)?;
    pk.verify(&sig, label).then_some(sig)
}

/// Whether `bytes` is node `x`'s valid signature share on `label` (two pairings).
pub fn verify_sign_share(public: &BlsPublic, x: u16, label: &[u8], bytes: &[u8]) -> bool {
    checked_sig_share(public, x, label, bytes).is_some()
}

/// A combined threshold signature (the PRF value: treat as secret) and who sent bad shares.
pub struct Combined {
    /// The unique BLS signature on the label under the group key. Input to [`namespace_secret`].
    pub signature: Zeroizing<[u8; SIG_LEN]>,
    /// Nodes whose share was malformed, invalid, or sent under index 0. Ascending.
    pub culprits: Vec<u16>,
}

impl fmt::Debug for Combined {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Combined").field("signature", &"<redacted>").field("culprits", &self.culprits).finish()
    }
}

/// Verifies every received share against its public key share (blsttc's combine does not), then
/// combines the `t` valid shares with the lowest indices and checks the result under the group key.
pub fn combine(public: &BlsPublic, shares: &BTreeMap<u16, Vec<u8>>, label: &[u8]) -> Result<Combined> {
    let needed = usize::from(public.threshold());
    let mut valid: Vec<(u16, SignatureShare)> = Vec::with_capacity(shares.len());
    let mut culprits = Vec::new();
    for (&x, bytes) in shares {
        match checked_sig_share(public, x, label, bytes) {
            Some(sig) => valid.push((x, sig)),
            None => culprits.push(x),
        }
    }
    if valid.len() < needed {
        return Err(BlsError::NotEnoughShares { valid: valid.len(), needed, culprits });
    }
    // blsttc silently uses the first t items and indexes them at i + 1.
    let sig: Signature = public
        .set
        .combine_signatures(valid.iter().take(needed).map(|(x, s)| (u64::from(*x) - 1, s)))
        .map_err(|_| BlsError::CombinedInvalid)?;
    if !public.set.public_key().verify(&sig, label) {
        return Err(BlsError::CombinedInvalid);
    }
    Ok(Combined { signature: Zeroizing::new(sig.to_bytes()), culprits })
}

/// [`combine`], optimistically: combines the `t` lowest-indexed well-formed shares and checks only
/// the result under the group key (one verification instead of `t + 1`). A result that verifies is
/// the unique signature on `label`, whatever the shares were, so it is correct; only when it does
/// not are the shares checked one by one ([`combine`]) to name and exclude the culprits.
pub fn combine_fast(public: &BlsPublic, shares: &BTreeMap<u16, Vec<u8>>, label: &[u8]) -> Result<Combined> {
    let needed = usize::from(public.threshold());
    let mut parsed: Vec<(u16, SignatureShare)> = Vec::with_capacity(shares.len());
    let mut culprits = Vec::new();
    for (&x, bytes) in shares {
        match (nonzero(x), parse_sig_share(bytes)) {
            (Ok(_), Some(sig)) => parsed.push((x, sig)),
            _ => culprits.push(x),
        }
    }
    if parsed.len() >= needed {
        let combined = public.set.combine_signatures(parsed.iter().take(needed).map(|(x, s)| (u64::from(*x) - 1, s)));
        if let Ok(sig) = combined {
            if public.set.public_key().verify(&sig, label) {
                return Ok(Combined { signature: Zeroizing::new(sig.to_bytes()), culprits });
            }
        }
    }
    combine(public, shares, label)
}

/// Unambiguous, domain-separated label for a namespace secret:
/// `"guardian/ns/v1" ‖ cluster_id (16) ‖ len(namespace) as u64 BE ‖ namespace ‖ version as u32 BE`.
pub fn namespace_label(cluster_id: &[u8; 16], namespace: &str, version: u32) -> Vec<u8> {
    let ns = namespace.as_bytes();
    let mut out = Vec::with_capacity(NS_LABEL_PREFIX.len() + 16 + 8 + ns.len() + 4);
    out.extend_from_slice(NS_LABEL_PREFIX);
    out.extend_from_slice(cluster_id);
    out.extend_from_slice(&(ns.len() as u64).to_be_bytes());
    out.extend_from_slice(ns);
    out.extend_from_slice(&version.to_be_bytes());
    out
}

/// Namespace secret = HKDF-SHA256(ikm = combined signature, salt = "guardian/ns-secret/v1",
/// info = label). Pass the signature [`combine`] returned for this same label.
pub fn namespace_secret(signature: &[u8; SIG_LEN], label: &[u8]) -> Zeroizing<[u8; 32]> {
    let hk = Hkdf::<Sha256>::new(Some(NS_SECRET_SALT), signature);
    let mut okm = Zeroizing::new([0u8; 32]);
    // HKDF-SHA256 can output up to 255·32 bytes, so 32 never fails (the info length is unbounded).
    hk.expand(label, okm.as_mut()).expect("32 bytes is a valid HKDF-SHA256 output length");
    okm
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    const CLUSTER: [u8; 16] = *b"cluster-0000test";

    fn rng(seed: u64) -> StdRng {
        StdRng::seed_from_u64(seed)
    }

    /// Full Joint-Feldman DKG among `nodes` with every node dealing honestly.
    fn run_dkg(nodes: &[u16], t: u16, rng: &mut StdRng) -> (BlsPublic, BTreeMap<u16, BlsShare>) {
        let dealers: Vec<BlsDealer> = nodes.iter().map(|_| BlsDealer::fresh(t, rng).unwrap()).collect();
        let commitments: Vec<BlsCommitment> = dealers.iter().map(|d| d.commitment()).collect();
        let public = dkg_public(&commitments).unwrap();
        let mut finals = BTreeMap::new();
        for &x in nodes {
            let got: Vec<BlsShare> = dealers
                .iter()
                .zip(&commitments)
                .map(|(d, c)| {
                    let s = d.share_for(x).unwrap();
                    verify_share(c, x, &s).unwrap();
                    s
                })
                .collect();
            finals.insert(x, dkg_share(&got).unwrap());
        }
        (public, finals)
    }

    fn sig_shares(shares: &BTreeMap<u16, BlsShare>, xs: &[u16], label: &[u8]) -> BTreeMap<u16, Vec<u8>> {
        xs.iter().map(|x| (*x, sign_share(&shares[x], label).to_vec())).collect()
    }

    fn subsets(xs: &[u16], k: usize) -> Vec<Vec<u16>> {
        if k == 0 {
            return vec![vec![]];
        }
        let mut out = Vec::new();
        for (i, &x) in xs.iter().enumerate() {
            for mut rest in subsets(&xs[i + 1..], k - 1) {
                rest.insert(0, x);
                out.push(rest);
            }
        }
        out
    }

    fn secret_for(public: &BlsPublic, shares: &BTreeMap<u16, BlsShare>, xs: &[u16], label: &[u8]) -> [u8; 32] {
        let c = combine(public, &sig_shares(shares, xs, label), label).unwrap();
        assert!(c.culprits.is_empty());
        *namespace_secret(&c.signature, label)
    }

    #[test]
    fn dkg_five_nodes_all_honest() {
        let mut r = rng(1);
        let nodes = [1u16, 2, 3, 4, 5];
        let (public, shares) = run_dkg(&nodes, 3, &mut r);
        assert_eq!(public.threshold(), 3);
        for (&x, s) in &shares {
            assert_eq!(s.public_key(), public.share_key(x).unwrap());
            public.check_share(x, s).unwrap();
        }
        // Our own Horner evaluation agrees with blsttc's off-by-one public_key_share.
        for x in 1..=6u16 {
            assert_eq!(eval_points(&public.points, fr_of(x)).to_affine().to_compressed(), public.share_key(x).unwrap());
        }

        let label = namespace_label(&CLUSTER, "tenant-a/db", 1);
        let group_pk = blsttc::PublicKey::from_bytes(public.group_key()).unwrap();
        let mut sigs = Vec::new();
        let mut secrets = Vec::new();
        for subset in subsets(&nodes, 3) {
            let c = combine(&public, &sig_shares(&shares, &subset, &label), &label).unwrap();
            assert!(c.culprits.is_empty());
            let sig = Signature::from_bytes(*c.signature).unwrap();
            assert!(group_pk.verify(&sig, &label));
            sigs.push(*c.signature);
            secrets.push(*namespace_secret(&c.signature, &label));
        }
        assert_eq!(sigs.len(), 10);
        assert!(sigs.windows(2).all(|w| w[0] == w[1]));
        assert!(secrets.windows(2).all(|w| w[0] == w[1]));

        let s = secrets[0];
        let other_ns = namespace_label(&CLUSTER, "tenant-b/db", 1);
        let other_ver = namespace_label(&CLUSTER, "tenant-a/db", 2);
        assert_ne!(s, secret_for(&public, &shares, &[1, 2, 3], &other_ns));
        assert_ne!(s, secret_for(&public, &shares, &[2, 4, 5], &other_ver));
        // Same signature but a different info also changes the output.
        assert_ne!(s, *namespace_secret(&sigs[0], &other_ns));
    }

    #[test]
    fn dkg_with_bad_dealer_excluded() {
        let mut r = rng(2);
        let nodes = [1u16, 2, 3, 4, 5];
        let t = 3;
        let dealers: BTreeMap<u16, BlsDealer> =
            nodes.iter().map(|&d| (d, BlsDealer::fresh(t, &mut r).unwrap())).collect();
        let commitments: BTreeMap<u16, BlsCommitment> = dealers.iter().map(|(&d, dl)| (d, dl.commitment())).collect();

        // Dealer 3 sends node 2 a wrong share (its share for node 4, and a random one).
        let bad = dealers[&3].share_for(4).unwrap();
        assert_eq!(verify_share(&commitments[&3], 2, &bad), Err(BlsError::ShareMismatch { x: 2 }));
        let random = BlsDealer::fresh(1, &mut r).unwrap().share_for(1).unwrap();
        assert_eq!(verify_share(&commitments[&3], 2, &random), Err(BlsError::ShareMismatch { x: 2 }));
        // Index 0 is refused outright.
        assert_eq!(verify_share(&commitments[&3], 0, &bad), Err(BlsError::BadIndex));
        // The honest share for node 2 passes.
        verify_share(&commitments[&3], 2, &dealers[&3].share_for(2).unwrap()).unwrap();

        // Qualified set = {1, 2, 4, 5}; node 3 still receives shares and keeps its seat.
        let qual = [1u16, 2, 4, 5];
        let qc: Vec<BlsCommitment> = qual.iter().map(|d| commitments[d].clone()).collect();
        let public = dkg_public(&qc).unwrap();
        let mut finals = BTreeMap::new();
        for &x in &nodes {
            let got: Vec<BlsShare> = qual
                .iter()
                .map(|d| {
                    let s = dealers[d].share_for(x).unwrap();
                    verify_share(&commitments[d], x, &s).unwrap();
                    s
                })
                .collect();
            let s = dkg_share(&got).unwrap();
            public.check_share(x, &s).unwrap();
            finals.insert(x, s);
        }
        let label = namespace_label(&CLUSTER, "ns", 0);
        assert_eq!(secret_for(&public, &finals, &[1, 2, 3], &label), secret_for(&public, &finals, &[3, 4, 5], &label));
        // Including dealer 3's contribution in node 2's sum only (what a confused node would do) breaks it.
        let wrong = dkg_share(&[finals[&2].clone(), dealers[&3].share_for(2).unwrap()]).unwrap();
        assert_eq!(public.check_share(2, &wrong), Err(BlsError::ShareMismatch { x: 2 }));
        // Mixed thresholds and empty sets are refused.
        let other_t = BlsDealer::fresh(2, &mut r).unwrap().commitment();
        assert_eq!(dkg_public(&[qc[0].clone(), other_t]), Err(BlsError::WrongDegree { expected: 2, got: 1 }));
        assert_eq!(dkg_public(&[]), Err(BlsError::TooFewDealers { got: 0, needed: 1 }));
        assert!(matches!(dkg_share(&[]), Err(BlsError::TooFewDealers { .. })));
    }

    /// Dealers reshare their current shares to `new_nodes`; returns the new public set and shares.
    fn run_reshare(
        old: &BlsPublic,
        old_shares: &BTreeMap<u16, BlsShare>,
        dealer_xs: &[u16],
        new_nodes: &[u16],
        new_t: u16,
        rng: &mut StdRng,
    ) -> (BlsPublic, BTreeMap<u16, BlsShare>) {
        let dealers: BTreeMap<u16, BlsDealer> =
            dealer_xs.iter().map(|&d| (d, BlsDealer::reshare(&old_shares[&d], new_t, rng).unwrap())).collect();
        let commitments: BTreeMap<u16, BlsCommitment> = dealers.iter().map(|(&d, dl)| (d, dl.commitment())).collect();
        for (&d, c) in &commitments {
            check_reshare_commitment(c, old, d).unwrap();
        }
        let new_public = reshare_public(old, &commitments).unwrap();
        let mut new_shares = BTreeMap::new();
        for &x in new_nodes {
            let got: BTreeMap<u16, BlsShare> = dealers
                .iter()
                .map(|(&d, dl)| {
                    let s = dl.share_for(x).unwrap();
                    verify_share(&commitments[&d], x, &s).unwrap();
                    (d, s)
                })
                .collect();
            let s = reshare_share(&got, old.threshold()).unwrap();
            new_public.check_share(x, &s).unwrap();
            new_shares.insert(x, s);
        }
        (new_public, new_shares)
    }

    #[test]
    fn reshare_keeps_group_key_and_revokes_old_node() {
        let mut r = rng(3);
        let (old, old_shares) = run_dkg(&[1, 2, 3, 4, 5], 3, &mut r);
        let label = namespace_label(&CLUSTER, "ns/one", 7);
        let old_secret = secret_for(&old, &old_shares, &[1, 3, 5], &label);

        let new_nodes = [1u16, 2, 4, 6];
        let (new, new_shares) = run_reshare(&old, &old_shares, &[1, 3, 4], &new_nodes, 3, &mut r);
        assert_eq!(new.group_key(), old.group_key());
        assert_ne!(new, old);
        for (&x, s) in &new_shares {
            assert_eq!(s.public_key(), new.share_key(x).unwrap());
            // Fresh randomness: node 1's new share differs from its old one.
            assert_ne!(*s.to_bytes(), *old_shares.get(&x).map(|o| o.to_bytes()).unwrap_or_default());
        }
        for subset in subsets(&new_nodes, 3) {
            assert_eq!(secret_for(&new, &new_shares, &subset, &label), old_secret);
        }

        // Revoked node 5 joins two new holders: its share is named as culprit, combine fails.
        let mut mixed = sig_shares(&new_shares, &[1, 2], &label);
        mixed.insert(5, sign_share(&old_shares[&5], &label).to_vec());
        match combine(&new, &mixed, &label) {
            Err(BlsError::NotEnoughShares { valid, needed, culprits }) => {
                assert_eq!((valid, needed, culprits), (2, 3, vec![5]));
            }
            other => panic!("expected NotEnoughShares, got {other:?}"),
        }
        // Even skipping share verification (raw blsttc combine), the result is not a group signature.
        let raw: Vec<(u64, SignatureShare)> =
            mixed.iter().map(|(x, b)| (u64::from(*x) - 1, parse_sig_share(b).unwrap())).collect();
        let sig = new.set.combine_signatures(raw.iter().map(|(i, s)| (*i, s))).unwrap();
        assert!(!new.set.public_key().verify(&sig, &label));
        assert!(!old.set.public_key().verify(&sig, &label));

        // More dealers than needed (all four new holders) and a threshold change 3 -> 2 also work.
        let (newer, newer_shares) = run_reshare(&new, &new_shares, &[1, 2, 4, 6], &[2, 6, 7], 2, &mut r);
        assert_eq!(newer.group_key(), old.group_key());
        assert_eq!(newer.threshold(), 2);
        assert_eq!(secret_for(&newer, &newer_shares, &[6, 7], &label), old_secret);

        // Too few dealers.
        let d1 = BlsDealer::reshare(&new_shares[&1], 3, &mut r).unwrap();
        let d2 = BlsDealer::reshare(&new_shares[&2], 3, &mut r).unwrap();
        let two: BTreeMap<u16, BlsCommitment> = [(1, d1.commitment()), (2, d2.commitment())].into();
        assert_eq!(reshare_public(&new, &two), Err(BlsError::TooFewDealers { got: 2, needed: 3 }));
        let two_shares: BTreeMap<u16, BlsShare> = [(1, d1.share_for(9).unwrap()), (2, d2.share_for(9).unwrap())].into();
        assert!(matches!(reshare_share(&two_shares, 3), Err(BlsError::TooFewDealers { got: 2, needed: 3 })));
    }

    #[test]
    fn reshare_of_another_secret_is_rejected() {
        let mut r = rng(4);
        let (old, old_shares) = run_dkg(&[1, 2, 3, 4, 5], 3, &mut r);
        // Dealer 3 reshares node 4's share, and a fresh secret, instead of its own.
        let stolen = BlsDealer::reshare(&old_shares[&4], 3, &mut r).unwrap().commitment();
        let fresh = BlsDealer::fresh(3, &mut r).unwrap().commitment();
        assert_eq!(check_reshare_commitment(&stolen, &old, 3), Err(BlsError::ReshareMismatch { dealer: 3 }));
        assert_eq!(check_reshare_commitment(&fresh, &old, 3), Err(BlsError::ReshareMismatch { dealer: 3 }));
        // The same commitment is fine for its real owner.
        check_reshare_commitment(&stolen, &old, 4).unwrap();
        assert_eq!(check_reshare_commitment(&stolen, &old, 0), Err(BlsError::BadIndex));

        // reshare_public refuses the set, naming the dealer.
        let mut set: BTreeMap<u16, BlsCommitment> = [1u16, 5]
            .iter()
            .map(|&d| (d, BlsDealer::reshare(&old_shares[&d], 3, &mut r).unwrap().commitment()))
            .collect();
        set.insert(3, fresh);
        assert_eq!(reshare_public(&old, &set), Err(BlsError::ReshareMismatch { dealer: 3 }));
        // A commitment of another threshold in the set.
        set.insert(3, BlsDealer::reshare(&old_shares[&3], 2, &mut r).unwrap().commitment());
        assert!(matches!(reshare_public(&old, &set), Err(BlsError::WrongDegree { .. })));
    }

    #[test]
    fn combine_names_culprits_and_survives_garbage() {
        let mut r = rng(5);
        let (public, shares) = run_dkg(&[1, 2, 3, 4, 5], 3, &mut r);
        let label = namespace_label(&CLUSTER, "x", 1);
        let honest = combine(&public, &sig_shares(&shares, &[1, 3, 5], &label), &label).unwrap();

        let mut got = sig_shares(&shares, &[1, 2, 3, 4, 5], &label);
        // Node 2 signs another label (a valid G2 point, wrong value); node 4 sends node 1's share.
        got.insert(2, sign_share(&shares[&2], b"other").to_vec());
        got.insert(4, got[&1].clone());
        let c = combine(&public, &got, &label).unwrap();
        assert_eq!(c.culprits, vec![2, 4]);
        assert_eq!(*c.signature, *honest.signature);
        assert!(format!("{c:?}").contains("redacted"));

        // Garbage: random bytes, wrong lengths, empty, a flipped bit, index 0 and an unknown node.
        let mut flipped = sign_share(&shares[&3], &label).to_vec();
        flipped[10] ^= 0x01;
        let mut junk = BTreeMap::new();
        junk.insert(0u16, sign_share(&shares[&1], &label).to_vec());
        junk.insert(1, sign_share(&shares[&1], &label).to_vec());
        junk.insert(2, vec![0xab; SIG_LEN]);
        junk.insert(3, flipped);
        junk.insert(4, vec![]);
        junk.insert(5, sign_share(&shares[&5], &label)[..95].to_vec());
        junk.insert(9, sign_share(&shares[&5], &label).to_vec());
        match combine(&public, &junk, &label) {
            Err(BlsError::NotEnoughShares { valid, needed, culprits }) => {
                assert_eq!((valid, needed), (1, 3));
                assert_eq!(culprits, vec![0, 2, 3, 4, 5, 9]);
            }
            other => panic!("expected NotEnoughShares, got {other:?}"),
        }
        // Two extra good shares make it succeed, still naming all culprits.
        junk.insert(6, vec![1, 2, 3]);
        // Good shares for 2 and 4 replace the junk sent under those indices.
        junk.extend(sig_shares(&shares, &[2, 4], &label));
        let c = combine(&public, &junk, &label).unwrap();
        assert_eq!(*c.signature, *honest.signature);
        assert_eq!(c.culprits, vec![0, 3, 5, 6, 9]);

        assert!(verify_sign_share(&public, 2, &label, &sign_share(&shares[&2], &label)));
        assert!(!verify_sign_share(&public, 3, &label, &sign_share(&shares[&2], &label)));
        assert!(!verify_sign_share(&public, 0, &label, &sign_share(&shares[&2], &label)));
        assert!(!verify_sign_share(&public, 2, &label, &[0u8; 3]));
    }

    #[test]
    fn namespace_labels_are_unambiguous() {
        let a = namespace_label(&CLUSTER, "a/b", 1);
        assert!(a.starts_with(b"guardian/ns/v1"));
        assert_eq!(a.len(), 14 + 16 + 8 + 3 + 4);
        let variants = [
            namespace_label(&CLUSTER, "a/b", 2),
            namespace_label(&CLUSTER, "a/bc", 1),
            namespace_label(&CLUSTER, "a", 1),
            namespace_label(&CLUSTER, "", 1),
            namespace_label(&[0u8; 16], "a/b", 1),
        ];
        for v in &variants {
            assert_ne!(&a, v);
        }
        // A namespace that embeds what looks like a version is still distinct.
        assert_ne!(namespace_label(&CLUSTER, "a\0\0\0\x01", 1), namespace_label(&CLUSTER, "a", 1));
        assert_eq!(a, namespace_label(&CLUSTER, "a/b", 1));
    }

    #[test]
    fn round_trips_and_rejections() {
        let mut r = rng(6);
        let (public, shares) = run_dkg(&[1, 2, 3], 2, &mut r);

        // BlsShare
        let s = &shares[&1];
        let back = BlsShare::from_bytes(s.to_bytes().as_slice()).unwrap();
        assert_eq!(*back.to_bytes(), *s.to_bytes());
        assert_eq!(format!("{s:?}"), "BlsShare(<redacted>)");
        for bad in [&[0u8; 31][..], &[0u8; 33][..], &[][..], &[0xff; 32][..]] {
            assert!(matches!(BlsShare::from_bytes(bad), Err(BlsError::Malformed { .. })));
        }
        // The group order r itself is non-canonical.
        let r_be = hex::decode("73eda753299d7d483339d80809a1d80553bda402fffe5bfeffffffff00000001").unwrap();
        assert!(BlsShare::from_bytes(&r_be).is_err());

        // BlsDealer: identical shares and commitment after a restore.
        let d = BlsDealer::fresh(3, &mut r).unwrap();
        let d2 = BlsDealer::from_bytes(&d.to_bytes()).unwrap();
        assert_eq!(d.commitment(), d2.commitment());
        for x in 1..=4 {
            assert_eq!(*d.share_for(x).unwrap().to_bytes(), *d2.share_for(x).unwrap().to_bytes());
        }
        assert_eq!(d.to_bytes().len(), 96);
        assert!(!format!("{d:?}").contains(&hex::encode(&d.to_bytes()[..8])));
        assert!(BlsDealer::from_bytes(&d.to_bytes()[..95]).is_err());
        assert!(BlsDealer::from_bytes(&[]).is_err());
        assert!(BlsDealer::from_bytes(&[0xff; 64]).is_err());
        assert!(matches!(d.share_for(0), Err(BlsError::BadIndex)));
        assert!(matches!(BlsDealer::fresh(0, &mut r), Err(BlsError::BadThreshold)));
        // A reshare dealer's constant term is the share.
        let rd = BlsDealer::reshare(s, 2, &mut r).unwrap();
        assert_eq!(rd.to_bytes()[..32], s.to_bytes()[..]);

        // BlsCommitment
        let c = d.commitment();
        let cb = c.to_bytes();
        assert_eq!(cb.len(), 3 * G1_LEN);
        assert_eq!(BlsCommitment::from_bytes(&cb, 3).unwrap(), c);
        assert_eq!(BlsCommitment::from_bytes(&cb, 2), Err(BlsError::WrongDegree { expected: 1, got: 2 }));
        assert_eq!(BlsCommitment::from_bytes(&cb, 4), Err(BlsError::WrongDegree { expected: 3, got: 2 }));
        assert_eq!(BlsCommitment::from_bytes(&cb, 0), Err(BlsError::BadThreshold));
        assert!(matches!(BlsCommitment::from_bytes(&cb[..143], 3), Err(BlsError::Malformed { .. })));
        assert!(matches!(BlsCommitment::from_bytes(&[], 1), Err(BlsError::Malformed { .. })));
        let mut bad = cb.clone();
        bad[G1_LEN + 20] ^= 0x04; // not on the curve, or not in the subgroup
        assert!(matches!(BlsCommitment::from_bytes(&bad, 3), Err(BlsError::Malformed { .. })));
        let mut bad = cb.clone();
        bad[0] &= 0x7f; // compression flag cleared
        assert!(matches!(BlsCommitment::from_bytes(&bad, 3), Err(BlsError::Malformed { .. })));
        assert!(BlsCommitment::from_bytes(&[0xff; 48], 1).is_err());

        // BlsPublic
        let pb = public.to_bytes();
        let p2 = BlsPublic::from_bytes(&pb).unwrap();
        assert_eq!(p2, public);
        assert_eq!(p2.threshold(), 2);
        assert_eq!(p2.group_key()[..], pb[..G1_LEN]);
        assert_eq!(p2.share_key(3).unwrap(), public.share_key(3).unwrap());
        assert_eq!(public.share_key(0), Err(BlsError::BadIndex));
        assert!(BlsPublic::from_bytes(&pb[..50]).is_err());
        assert!(BlsPublic::from_bytes(&[]).is_err());
        let mut identity = pb.clone();
        identity[..G1_LEN].copy_from_slice(&G1Affine::identity().to_compressed());
        assert_eq!(BlsPublic::from_bytes(&identity), Err(BlsError::Malformed { what: "group public key (identity)" }));
        let mut bad = pb.clone();
        bad[G1_LEN + 7] ^= 0x10;
        assert!(BlsPublic::from_bytes(&bad).is_err());
        assert!(format!("{public:?}").contains(&hex::encode(public.group_key())));
    }
}
