//! Secrets sealed to a recipient's X25519 key with HPKE (RFC 9180 base mode,
//! DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305), as protobuf
//! `EncryptedSecret`s.
//!
//! Two uses, one construction:
//! - **Stored secrets.** An admin seals a secret to the namespace *ingest
//!   key* of version v (an X25519 key derived from `S(ns, v)`), and the
//!   ciphertext is stored as it is: the replicated state only ever holds it
//!   encrypted under the namespace secret, and only a node that derives
//!   `S(ns, v)` can open it.
//! - **Workload recipients.** A node seals a key to a workload's X25519 key
//!   when the secret must not travel as TLS plaintext.
//!
//! The HPKE `info` is `"guardian/v1/secret" ‖ 0 ‖ context`, and the context
//! names what the secret is (`ns/<ns>/put/<path>/v<n>`,
//! `ns/<ns>/key/<path>/v<n>`), so a ciphertext moved to another name,
//! version or recipient does not open.

use guardian_proto::v1::{EncryptedSecret, SecretEncryption};
use hpke::aead::ChaCha20Poly1305;
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, Kem as _, OpModeR, OpModeS, Serializable};
use rand::{CryptoRng, RngCore};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::hierarchy::{derive, KeyPath, Purpose};

type Kem = X25519HkdfSha256;

/// Largest secret that is sealed (stored secrets, keys).
pub const MAX_SECRET: usize = 64 * 1024;

/// DER prefix of an X25519 SubjectPublicKeyInfo (RFC 8410): the 32-byte key follows.
const X25519_SPKI_PREFIX: [u8; 12] = [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x03, 0x21, 0x00];

/// Why sealing or opening failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("not an X25519 public key: give the 32-byte key or its SubjectPublicKeyInfo DER (OID 1.3.101.110)")]
    NotX25519,
    #[error("unsupported encryption {0:?}: Guardian seals with HPKE X25519 / ChaCha20-Poly1305")]
    Algorithm(i32),
    #[error("the secret is sealed to another key")]
    WrongRecipient,
    #[error("the secret does not open: altered, or sealed for another name or version ({context})")]
    Undecryptable { context: String },
    #[error("secret too large: {len} bytes, at most {max}")]
    TooLarge { len: usize, max: usize },
}

fn info(context: &str) -> Vec<u8> {
    [b"guardian/v1/secret\0".as_slice(), context.as_bytes()].concat()
}

/// The 32-byte X25519 key in `key`: raw, or an X25519 SPKI DER.
pub fn x25519_public(key: &[u8]) -> Result<[u8; 32], SealError> {
    let raw = match key.len() {
        32 => key,
        44 if key[..12] == X25519_SPKI_PREFIX => &key[12..],
        _ => return Err(SealError::NotX25519),
    };
    let raw: [u8; 32] = raw.try_into().map_err(|_| SealError::NotX25519)?;
    <Kem as hpke::Kem>::PublicKey::from_bytes(&raw).map_err(|_| SealError::NotX25519)?;
    Ok(raw)
}

/// The X25519 SPKI DER of a raw key.
pub fn x25519_spki(public: &[u8; 32]) -> Vec<u8> {
    [X25519_SPKI_PREFIX.as_slice(), public].concat()
}

/// Recipient key id: SHA-256 of the recipient's SPKI DER.
pub fn key_id(public: &[u8; 32]) -> Vec<u8> {
    Sha256::digest(x25519_spki(public)).to_vec()
}

/// Seal `plaintext` to `recipient` (raw X25519 key) for `context`.
pub fn seal<R: RngCore + CryptoRng>(
    recipient: &[u8; 32],
    context: &str,
    plaintext: &[u8],
    rng: &mut R,
) -> Result<EncryptedSecret, SealError> {
    if plaintext.len() > MAX_SECRET {
        return Err(SealError::TooLarge { len: plaintext.len(), max: MAX_SECRET });
    }
    let pk = <Kem as hpke::Kem>::PublicKey::from_bytes(recipient).map_err(|_| SealError::NotX25519)?;
    let (enc, ciphertext) = hpke::single_shot_seal::<ChaCha20Poly1305, HkdfSha256, Kem, _>(
        &OpModeS::Base,
        &pk,
        &info(context),
        plaintext,
        &[],
        rng,
    )
    .map_err(|_| SealError::NotX25519)?;
    Ok(EncryptedSecret {
        algorithm: SecretEncryption::HpkeX25519Sha256Chacha20poly1305 as i32,
        recipient_key_id: key_id(recipient),
        encapsulated_key: enc.to_bytes().to_vec(),
        ciphertext,
        context: context.to_string(),
    })
}

/// Open `sealed` with the recipient's X25519 secret, checking it was sealed for `context`.
pub fn open(secret: &[u8; 32], context: &str, sealed: &EncryptedSecret) -> Result<Zeroizing<Vec<u8>>, SealError> {
    if sealed.algorithm != SecretEncryption::HpkeX25519Sha256Chacha20poly1305 as i32 {
        return Err(SealError::Algorithm(sealed.algorithm));
    }
    let sk = <Kem as hpke::Kem>::PrivateKey::from_bytes(secret).map_err(|_| SealError::NotX25519)?;
    let public: [u8; 32] = <Kem as hpke::Kem>::sk_to_pk(&sk).to_bytes().into();
    if sealed.recipient_key_id != key_id(&public) {
        return Err(SealError::WrongRecipient);
    }
    let undecryptable = || SealError::Undecryptable { context: context.to_string() };
    if sealed.context != context {
        return Err(undecryptable());
    }
    let enc = <Kem as hpke::Kem>::EncappedKey::from_bytes(&sealed.encapsulated_key).map_err(|_| undecryptable())?;
    hpke::single_shot_open::<ChaCha20Poly1305, HkdfSha256, Kem>(
        &OpModeR::Base,
        &sk,
        &enc,
        &info(context),
        &sealed.ciphertext,
        &[],
    )
    .map(Zeroizing::new)
    .map_err(|_| undecryptable())
}

/// A new X25519 key pair (secret, public) for a workload or a test.
pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> (Zeroizing<[u8; 32]>, [u8; 32]) {
    let (sk, pk) = Kem::gen_keypair(rng);
    (Zeroizing::new(sk.to_bytes().into()), pk.to_bytes().into())
}

/// The namespace ingest key of `secret` = `S(ns, v)`: (X25519 secret, public).
pub fn ingest_key(secret: &[u8; 32]) -> (Zeroizing<[u8; 32]>, [u8; 32]) {
    let seed = derive(secret, Purpose::IngestKey);
    let (sk, pk) = Kem::derive_keypair(seed.as_slice());
    (Zeroizing::new(sk.to_bytes().into()), pk.to_bytes().into())
}

/// The context a stored secret is sealed under.
pub fn put_context(namespace: &str, key_path: &str, version: u32) -> String {
    format!("ns/{namespace}/put/{key_path}/v{version}")
}

/// The context of a secret an admin seals in advance to a workload's own
/// X25519 key (`sealed/<name>`); the cluster never opens it.
pub fn workload_sealed_context(namespace: &str, key_path: &str) -> String {
    format!("ns/{namespace}/sealed-for-workload/{key_path}")
}

/// The version and context a secret stored at `path` is sealed under:
/// `version` and [`put_context`] (to the namespace ingest key), or, for a
/// `sealed/` path, version 0 and [`workload_sealed_context`].
pub fn stored_secret_context(namespace: &str, path: &KeyPath, version: u32) -> (u32, String) {
    match path.is_workload_sealed() {
        true => (0, workload_sealed_context(namespace, path.as_str())),
        false => (version, put_context(namespace, path.as_str(), version)),
    }
}

/// The context of a key released to a workload.
pub fn key_context(namespace: &str, key_path: &str, version: u32) -> String {
    format!("ns/{namespace}/key/{key_path}/v{version}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_path_is_stored_for_the_workload_never_under_a_version() {
        let path = |p: &str| KeyPath::parse(p).unwrap();
        assert_eq!(stored_secret_context("ns", &path("secret/db"), 3), (3, "ns/ns/put/secret/db/v3".into()));
        assert_eq!(
            stored_secret_context("ns", &path("sealed/tls"), 3),
            (0, "ns/ns/sealed-for-workload/sealed/tls".into())
        );
        assert!(!path("sealedx/tls").is_workload_sealed() && !path("pvc/sealed").is_workload_sealed());
    }

    #[test]
    fn a_stored_secret_opens_only_with_its_version_and_name() {
        let mut rng = rand::thread_rng();
        let (sk, pk) = ingest_key(&[3u8; 32]);
        let ctx = put_context("demo", "secret/db", 1);
        let sealed = seal(&pk, &ctx, b"hunter2", &mut rng).unwrap();
        assert_eq!(open(&sk, &ctx, &sealed).unwrap().as_slice(), b"hunter2");
        let moved = put_context("demo", "secret/other", 1);
        assert!(matches!(open(&sk, &moved, &sealed), Err(SealError::Undecryptable { .. })));
        let mut relabelled = sealed.clone();
        relabelled.context = moved.clone();
        assert!(matches!(open(&sk, &moved, &relabelled), Err(SealError::Undecryptable { .. })));
        let (other_sk, _) = ingest_key(&[4u8; 32]);
        assert_eq!(open(&other_sk, &ctx, &sealed).unwrap_err(), SealError::WrongRecipient);
        let mut tampered = sealed;
        tampered.ciphertext[0] ^= 1;
        assert!(open(&sk, &ctx, &tampered).is_err());
    }

    #[test]
    fn spki_and_raw_keys_are_accepted_and_others_refused() {
        let (_, pk) = generate(&mut rand::thread_rng());
        assert_eq!(x25519_public(&x25519_spki(&pk)).unwrap(), pk);
        assert_eq!(x25519_public(&pk).unwrap(), pk);
        assert_eq!(x25519_public(&[0u8; 44]), Err(SealError::NotX25519));
        assert_eq!(x25519_public(b"short"), Err(SealError::NotX25519));
        assert!(seal(&pk, "c", &vec![0u8; MAX_SECRET + 1], &mut rand::thread_rng()).is_err());
    }
}
