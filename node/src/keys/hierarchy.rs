//! The namespace key hierarchy: every key a namespace hands out is
//! HKDF-SHA256 of its secret `S(ns, v)` with a label naming what the key is
//! for. `S(ns, v)` already binds the cluster, the namespace and the version,
//! so a label only has to tell the purposes (and names) apart: a volume key
//! can never equal an application secret of the same name, nor the CA key.

use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

use super::KeysError;

/// HKDF salt of every child key except the namespace CA seed.
const CHILD_SALT: &[u8] = b"guardian/ns-child/v1";
/// Salt and info of the namespace CA seed, fixed since the CA was built (issue 4): changing them
/// would change every namespace CA key.
const CA_SALT: &[u8] = b"guardian/ns-ca-key/v1";
const CA_INFO: &[u8] = b"ed25519 seed";

/// Longest key name, in bytes.
pub const MAX_NAME: usize = 128;

/// A key name: 1–128 bytes of `A-Z a-z 0-9 . _ - /`, no empty path segment,
/// no `.` or `..` segment (names look like paths, e.g. `pvc/db-0`, and must
/// not be mistaken for traversal anywhere they are used).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyName(String);

impl KeyName {
    pub fn new(name: &str) -> Result<Self, KeysError> {
        let bad = |why| Err(KeysError::BadName { name: name.chars().take(MAX_NAME).collect(), why });
        if name.is_empty() || name.len() > MAX_NAME {
            return bad("use 1 to 128 bytes");
        }
        if !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/')) {
            return bad("use only A-Z, a-z, 0-9, '.', '_', '-' and '/'");
        }
        if name.split('/').any(|s| s.is_empty() || s == "." || s == "..") {
            return bad("no empty, '.' or '..' path segment");
        }
        Ok(KeyName(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for KeyName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The key type of secrets sealed in advance to a workload ([`KeyPath::is_workload_sealed`]).
pub const WORKLOAD_SEALED_TYPE: &str = "sealed";

/// A key path as workloads ask for it: `<type>/<name>` (the KBS
/// `<type>/<tag>`). `pvc/<name>` and `volume/<name>` are volume keys named
/// `<name>`; any other type is an application secret named by the whole
/// path, so `secret/x` and `cosign/x` are different keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPath {
    path: KeyName,
    /// The volume name, for volume keys.
    volume: Option<KeyName>,
}

impl KeyPath {
    pub fn parse(path: &str) -> Result<Self, KeysError> {
        let name = KeyName::new(path)?;
        let Some((kind, rest)) = path.split_once('/') else {
            return Err(KeysError::BadName { name: path.to_string(), why: "use <type>/<name>, e.g. pvc/db-data" });
        };
        if kind.is_empty()
            || kind.len() > 32
            || !kind.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(KeysError::BadName { name: path.to_string(), why: "the type is 1-32 of a-z, 0-9, '-'" });
        }
        let volume = matches!(kind, "pvc" | "volume").then(|| KeyName::new(rest)).transpose()?;
        Ok(KeyPath { path: name, volume })
    }

    pub fn as_str(&self) -> &str {
        self.path.as_str()
    }

    /// A `sealed/<name>` path: a secret an admin encrypts in advance to a
    /// workload's own key. The cluster stores it and hands it on as is, never
    /// under a namespace secret version, and only inside configs.
    pub fn is_workload_sealed(&self) -> bool {
        self.path.as_str().split_once('/').is_some_and(|(kind, _)| kind == WORKLOAD_SEALED_TYPE)
    }

    /// What the key at this path is derived for.
    pub fn purpose(&self) -> Purpose<'_> {
        match &self.volume {
            Some(v) => Purpose::Volume(v),
            None => Purpose::AppSecret(&self.path),
        }
    }
}

/// What a child key is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose<'a> {
    /// A volume (PVC) encryption key, by volume name.
    Volume(&'a KeyName),
    /// An application secret, by name.
    AppSecret(&'a KeyName),
    /// The seed of the namespace CA's Ed25519 key.
    NamespaceCaSeed,
    /// The seed of the namespace ingest key (X25519) that admins seal
    /// stored secrets to ([`super::sealing`]).
    IngestKey,
}

impl Purpose<'_> {
    /// (salt, info). Names contain no NUL, so `tag ‖ 0 ‖ name` is unambiguous.
    fn label(&self) -> (&'static [u8], Vec<u8>) {
        let named = |tag: &[u8], name: &KeyName| [tag, b"\0", name.as_str().as_bytes()].concat();
        match self {
            Purpose::Volume(name) => (CHILD_SALT, named(b"volume", name)),
            Purpose::AppSecret(name) => (CHILD_SALT, named(b"app-secret", name)),
            Purpose::NamespaceCaSeed => (CA_SALT, CA_INFO.to_vec()),
            Purpose::IngestKey => (CHILD_SALT, b"ingest-key\0".to_vec()),
        }
    }
}

/// The 32-byte child key of `secret` (= `S(ns, v)`) for `purpose`.
pub fn derive(secret: &[u8; 32], purpose: Purpose<'_>) -> Zeroizing<[u8; 32]> {
    let (salt, info) = purpose.label();
    let mut out = Zeroizing::new([0u8; 32]);
    // 32 bytes is far below HKDF-SHA256's 255·32-byte limit: expand cannot fail.
    if Hkdf::<Sha256>::new(Some(salt), secret).expand(&info, out.as_mut()).is_err() {
        unreachable!("HKDF-SHA256 expands 32 bytes");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for good in ["db", "pvc/db-0", "app/TLS_key.v2", &"a".repeat(128)] {
            KeyName::new(good).unwrap();
        }
        for bad in ["", "/abs", "a//b", "a/../b", "./a", "a/", "sp ace", "nul\0", "ünï", &"a".repeat(129)] {
            assert!(KeyName::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn key_paths_pick_the_purpose_by_type() {
        let s = [9u8; 32];
        let pvc = KeyPath::parse("pvc/db").unwrap();
        let vol = KeyPath::parse("volume/db").unwrap();
        assert_eq!(derive(&s, pvc.purpose()), derive(&s, vol.purpose()));
        let secret = KeyPath::parse("secret/db").unwrap();
        let cosign = KeyPath::parse("cosign/db").unwrap();
        assert_ne!(derive(&s, secret.purpose()), derive(&s, cosign.purpose()));
        assert_ne!(derive(&s, secret.purpose()), derive(&s, pvc.purpose()));
        for bad in ["db", "PVC/db", "pvc/", "/db", "pvc/../x", "a_b/c"] {
            assert!(KeyPath::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn purposes_and_names_give_different_keys_and_the_same_inputs_the_same_key() {
        let s = [7u8; 32];
        let db = KeyName::new("db").unwrap();
        let db2 = KeyName::new("db2").unwrap();
        let keys = [
            derive(&s, Purpose::Volume(&db)),
            derive(&s, Purpose::Volume(&db2)),
            derive(&s, Purpose::AppSecret(&db)),
            derive(&s, Purpose::NamespaceCaSeed),
            derive(&s, Purpose::IngestKey),
            derive(&[8u8; 32], Purpose::Volume(&db)),
        ];
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert_eq!(derive(&s, Purpose::Volume(&db)), keys[0]);
    }

    #[test]
    fn the_namespace_ca_seed_is_the_one_issue_4_fixed() {
        let mut seed = [0u8; 32];
        Hkdf::<Sha256>::new(Some(b"guardian/ns-ca-key/v1"), &[5u8; 32]).expand(b"ed25519 seed", &mut seed).unwrap();
        assert_eq!(*derive(&[5u8; 32], Purpose::NamespaceCaSeed), seed);
    }
}
