//! Stored secrets: values an admin writes (or, later, the KBS admin path),
//! kept in the replicated state encrypted under the namespace secret, so the
//! log, snapshots and every disk only ever hold ciphertext.
//!
//! XChaCha20-Poly1305 (random 24-byte nonces are safe at any volume) under
//! `derive(S(ns, v), StoredSecrets)`; the associated data binds the record
//! to its namespace, version and name, so a ciphertext moved to another name
//! or namespace does not decrypt.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::hierarchy::{derive, KeyName, Purpose};
use super::KeysError;

/// Largest stored secret (the replicated state is no blob store).
pub const MAX_SECRET: usize = 64 * 1024;

/// An encrypted stored secret, as it sits in the replicated state.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSecret {
    /// Namespace secret version it is encrypted under.
    pub version: u32,
    #[serde(with = "hex::serde")]
    pub nonce: [u8; 24],
    #[serde(with = "hex::serde")]
    pub ciphertext: Vec<u8>,
}

impl std::fmt::Debug for StoredSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredSecret").field("version", &self.version).field("len", &self.ciphertext.len()).finish()
    }
}

fn aad(namespace: &str, version: u32, name: &KeyName) -> Vec<u8> {
    [b"guardian/stored-secret/v1\0", namespace.as_bytes(), b"\0", &version.to_be_bytes(), name.as_str().as_bytes()]
        .concat()
}

fn cipher(secret: &[u8; 32]) -> XChaCha20Poly1305 {
    let key = derive(secret, Purpose::StoredSecrets);
    XChaCha20Poly1305::new(key.as_ref().into())
}

/// Encrypt `value` under `secret` = `S(namespace, version)`.
pub fn seal<R: RngCore + CryptoRng>(
    secret: &[u8; 32],
    namespace: &str,
    version: u32,
    name: &KeyName,
    value: &[u8],
    rng: &mut R,
) -> Result<StoredSecret, KeysError> {
    if value.len() > MAX_SECRET {
        return Err(KeysError::TooLarge { len: value.len(), max: MAX_SECRET });
    }
    let mut nonce = [0u8; 24];
    rng.fill_bytes(&mut nonce);
    let ciphertext = cipher(secret)
        .encrypt(&XNonce::from(nonce), Payload { msg: value, aad: &aad(namespace, version, name) })
        // The AEAD refuses only inputs beyond its length limit, far above MAX_SECRET.
        .map_err(|_| KeysError::TooLarge { len: value.len(), max: MAX_SECRET })?;
    Ok(StoredSecret { version, nonce, ciphertext })
}

/// Decrypt a stored secret with `secret` = `S(namespace, record.version)`.
pub fn open(
    secret: &[u8; 32],
    namespace: &str,
    name: &KeyName,
    record: &StoredSecret,
) -> Result<Zeroizing<Vec<u8>>, KeysError> {
    let payload = Payload { msg: &record.ciphertext, aad: &aad(namespace, record.version, name) };
    cipher(secret).decrypt(&XNonce::from(record.nonce), payload).map(Zeroizing::new).map_err(|_| {
        KeysError::Undecryptable { namespace: namespace.to_string(), name: name.to_string(), version: record.version }
    })
}

#[cfg(test)]
mod tests {
    use rand::rngs::OsRng;

    use super::*;

    #[test]
    fn a_stored_secret_opens_only_under_its_namespace_version_and_name() {
        let (s1, s2) = ([1u8; 32], [2u8; 32]);
        let name = KeyName::new("db/password").unwrap();
        let other = KeyName::new("db/user").unwrap();
        let rec = seal(&s1, "team-a", 1, &name, b"hunter2", &mut OsRng).unwrap();
        assert!(!rec.ciphertext.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(open(&s1, "team-a", &name, &rec).unwrap().as_slice(), b"hunter2");
        assert!(matches!(open(&s2, "team-a", &name, &rec), Err(KeysError::Undecryptable { version: 1, .. })));
        assert!(open(&s1, "team-b", &name, &rec).is_err(), "moved to another namespace");
        assert!(open(&s1, "team-a", &other, &rec).is_err(), "moved to another name");
        let relabelled = StoredSecret { version: 2, ..rec.clone() };
        assert!(open(&s1, "team-a", &name, &relabelled).is_err(), "claims another version");
        let mut flipped = rec.clone();
        flipped.ciphertext[0] ^= 1;
        assert!(open(&s1, "team-a", &name, &flipped).is_err());
        // Same value twice: different nonces, different ciphertexts.
        assert_ne!(seal(&s1, "team-a", 1, &name, b"hunter2", &mut OsRng).unwrap(), rec);
        assert!(matches!(
            seal(&s1, "team-a", 1, &name, &vec![0; MAX_SECRET + 1], &mut OsRng),
            Err(KeysError::TooLarge { .. })
        ));
    }
}
