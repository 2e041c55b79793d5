//! Access tokens for the CoCo front ends (pure core): the Vault KV v1 API an
//! unmodified Trustee KBS calls, and the KBS admin endpoints.
//!
//! A token is `gvt.<id>.<secret>`. `guardctl token create` makes it, shows it
//! once and sends the cluster only its id, scope and SHA-256, so the log, the
//! snapshots and every node's state hold no token a reader could replay. A
//! token is scoped to one namespace and one Vault mount, reads or reads and
//! writes, expires, and can be revoked; both are checked against the
//! replicated state on every request and again when a write it authorised is
//! applied.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::ClusterState;

/// The prefix every token starts with (so a leaked one is recognisable in a scan).
pub const TOKEN_PREFIX: &str = "gvt";
/// Longest token lifetime an admin may ask for.
pub const MAX_TOKEN_TTL_SECS: u64 = 366 * 24 * 3600;
/// Expired and revoked tokens are forgotten this long after (so `token list` still shows why one fails).
const FORGET_AFTER_SECS: u64 = 7 * 24 * 3600;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Access {
    Read,
    ReadWrite,
}

impl std::fmt::Display for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Access::Read => "read",
            Access::ReadWrite => "read-write",
        })
    }
}

/// A token as the cluster knows it: its scope and the hash of its text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessToken {
    pub namespace: String,
    /// The Vault mount path it is valid under (e.g. `secret` or `guardian/kbs`).
    pub mount: String,
    pub access: Access,
    pub created_at: u64,
    pub expires_at: u64,
    /// When an admin revoked it, if one did.
    pub revoked_at: Option<u64>,
    #[serde(with = "hex::serde")]
    pub sha256: [u8; 32],
}

/// Why a presented token is refused. The messages never echo the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenRefusal {
    #[error("the token is not a guardian access token (gvt.<id>.<secret>)")]
    Malformed,
    #[error("access token {0} is unknown (never created, or forgotten after it expired)")]
    Unknown(String),
    #[error("access token {0} does not match the one registered under its id")]
    Mismatch(String),
    #[error("access token {0} expired; create a new one (guardctl token create)")]
    Expired(String),
    #[error("access token {0} was revoked")]
    Revoked(String),
    #[error("access token {id} is scoped to namespace {scoped}, not {asked}")]
    WrongNamespace { id: String, scoped: String, asked: String },
    #[error("access token {id} is valid under mount {scoped:?}, not {asked:?}")]
    WrongMount { id: String, scoped: String, asked: String },
    #[error("access token {0} may only read")]
    ReadOnly(String),
}

/// The id part of a token's text, checked for shape only.
pub fn token_id(token: &str) -> Result<&str, TokenRefusal> {
    let mut parts = token.splitn(3, '.');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(TOKEN_PREFIX), Some(id), Some(secret)) if valid_id(id) && (16..=128).contains(&secret.len()) => Ok(id),
        _ => Err(TokenRefusal::Malformed),
    }
}

/// Token ids: 8 to 64 of `a-z 0-9 -`.
pub fn valid_id(id: &str) -> bool {
    (8..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// A Vault mount path: 1-128 bytes, `/`-separated segments of `A-Z a-z 0-9 _ . -`, none empty.
pub fn check_mount(mount: &str) -> Result<(), String> {
    let ok = !mount.is_empty()
        && mount.len() <= 128
        && mount.split('/').all(|s| {
            !s.is_empty()
                && s != "."
                && s != ".."
                && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
        });
    match ok {
        true => Ok(()),
        false => Err(format!("mount {mount:?} is not a path of A-Z a-z 0-9 _ . - segments separated by '/'")),
    }
}

/// SHA-256 of a token's text: what the cluster stores.
pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// What a request needs of a token.
#[derive(Debug, Clone, Copy)]
pub struct Need<'a> {
    pub namespace: &'a str,
    /// `None`: any mount (the KBS admin endpoints, which have none).
    pub mount: Option<&'a str>,
    pub write: bool,
}

impl ClusterState {
    /// Check a presented token against what a request needs, at `now`. Returns its id.
    pub fn check_token<'t>(&self, token: &'t str, need: Need<'_>, now: u64) -> Result<&'t str, TokenRefusal> {
        let id = token_id(token)?;
        let t = self.access_tokens.get(id).ok_or_else(|| TokenRefusal::Unknown(id.to_string()))?;
        // Constant time: the hash comparison must not tell how much of a guess was right.
        if !bool::from(subtle_eq(&t.sha256, &token_hash(token))) {
            return Err(TokenRefusal::Mismatch(id.to_string()));
        }
        t.allows(id, need, now)?;
        Ok(id)
    }

    /// Register a token (`guardctl token create`).
    pub fn create_token(&mut self, id: &str, token: AccessToken, now: u64) -> Result<(), String> {
        if !valid_id(id) {
            return Err(format!("token id {id:?} is not 8-64 of a-z, 0-9, '-'"));
        }
        if self.access_tokens.contains_key(id) {
            return Err(format!("token id {id} is taken"));
        }
        if !self.namespaces.contains_key(&token.namespace) {
            return Err(format!("namespace {:?} does not exist", token.namespace));
        }
        check_mount(&token.mount)?;
        if token.expires_at <= now || token.expires_at - now > MAX_TOKEN_TTL_SECS {
            return Err(format!("a token must expire within {} days from now", MAX_TOKEN_TTL_SECS / 86400));
        }
        self.access_tokens.insert(id.to_string(), AccessToken { created_at: now, revoked_at: None, ..token });
        Ok(())
    }

    /// Revoke a token from this entry on.
    pub fn revoke_token(&mut self, id: &str, now: u64) -> Result<(), String> {
        let t = self.access_tokens.get_mut(id).ok_or_else(|| format!("no access token {id}"))?;
        if t.revoked_at.is_some() {
            return Err(format!("access token {id} is already revoked"));
        }
        t.revoked_at = Some(now);
        Ok(())
    }

    /// Forget tokens that expired or were revoked long ago.
    pub fn prune_tokens(&mut self, now: u64) {
        self.access_tokens.retain(|_, t| t.revoked_at.unwrap_or(t.expires_at).saturating_add(FORGET_AFTER_SECS) >= now);
    }
}

impl AccessToken {
    /// Is this token (id `id`) good for `need` at `now`?
    pub fn allows(&self, id: &str, need: Need<'_>, now: u64) -> Result<(), TokenRefusal> {
        if self.revoked_at.is_some() {
            return Err(TokenRefusal::Revoked(id.to_string()));
        }
        if now >= self.expires_at {
            return Err(TokenRefusal::Expired(id.to_string()));
        }
        if self.namespace != need.namespace {
            return Err(TokenRefusal::WrongNamespace {
                id: id.to_string(),
                scoped: self.namespace.clone(),
                asked: need.namespace.to_string(),
            });
        }
        if let Some(mount) = need.mount.filter(|m| *m != self.mount) {
            return Err(TokenRefusal::WrongMount {
                id: id.to_string(),
                scoped: self.mount.clone(),
                asked: mount.into(),
            });
        }
        if need.write && self.access != Access::ReadWrite {
            return Err(TokenRefusal::ReadOnly(id.to_string()));
        }
        Ok(())
    }
}

/// Constant-time equality of two hashes.
fn subtle_eq(a: &[u8; 32], b: &[u8; 32]) -> subtle::Choice {
    use subtle::ConstantTimeEq;
    a.ct_eq(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::namespace::Namespace;

    const TOKEN: &str = "gvt.0123456789abcdef.c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0";

    fn state() -> ClusterState {
        let mut s = ClusterState::default();
        s.namespaces.insert("default".into(), Namespace::new(0, None));
        s.namespaces.insert("other".into(), Namespace::new(0, None));
        let t = AccessToken {
            namespace: "default".into(),
            mount: "secret".into(),
            access: Access::Read,
            created_at: 0,
            expires_at: 1000,
            revoked_at: None,
            sha256: token_hash(TOKEN),
        };
        s.create_token("0123456789abcdef", t, 10).unwrap();
        s
    }

    fn need(ns: &str, write: bool) -> Need<'_> {
        Need { namespace: ns, mount: Some("secret"), write }
    }

    #[test]
    fn a_token_is_checked_for_every_part_of_its_scope() {
        let mut s = state();
        assert_eq!(s.check_token(TOKEN, need("default", false), 20), Ok("0123456789abcdef"));
        assert!(matches!(s.check_token(TOKEN, need("other", false), 20), Err(TokenRefusal::WrongNamespace { .. })));
        let wrong_mount = Need { mount: Some("kv"), ..need("default", false) };
        assert!(matches!(s.check_token(TOKEN, wrong_mount, 20), Err(TokenRefusal::WrongMount { .. })));
        assert!(matches!(s.check_token(TOKEN, need("default", true), 20), Err(TokenRefusal::ReadOnly(_))));
        assert!(matches!(s.check_token(TOKEN, need("default", false), 1000), Err(TokenRefusal::Expired(_))));
        let forged = TOKEN.replace("c2Vj", "c2Vk");
        assert!(matches!(s.check_token(&forged, need("default", false), 20), Err(TokenRefusal::Mismatch(_))));
        let unknown = TOKEN.replace("0123", "9999");
        assert!(matches!(s.check_token(&unknown, need("default", false), 20), Err(TokenRefusal::Unknown(_))));
        for bad in ["", "gvt", "gvt..x", "vault-token", "gvt.UPPERCASE00.secretsecretsecret"] {
            assert_eq!(s.check_token(bad, need("default", false), 20), Err(TokenRefusal::Malformed), "{bad}");
        }
        s.revoke_token("0123456789abcdef", 30).unwrap();
        assert!(matches!(s.check_token(TOKEN, need("default", false), 40), Err(TokenRefusal::Revoked(_))));
        assert!(s.revoke_token("0123456789abcdef", 40).is_err());
        s.prune_tokens(30 + FORGET_AFTER_SECS + 1);
        assert!(s.access_tokens.is_empty());
    }

    #[test]
    fn creation_checks_its_input() {
        let mut s = state();
        let t = s.access_tokens["0123456789abcdef"].clone();
        assert!(s.create_token("0123456789abcdef", t.clone(), 10).unwrap_err().contains("taken"));
        assert!(s.create_token("short", t.clone(), 10).is_err());
        let missing = AccessToken { namespace: "nope".into(), ..t.clone() };
        assert!(s.create_token("aaaaaaaaaaaaaaaa", missing, 10).unwrap_err().contains("does not exist"));
        for mount in ["", "/secret", "a//b", "a/../b", "se cret"] {
            let m = AccessToken { mount: mount.into(), ..t.clone() };
            assert!(s.create_token("aaaaaaaaaaaaaaaa", m, 10).is_err(), "{mount:?}");
        }
        let forever = AccessToken { expires_at: 10 + MAX_TOKEN_TTL_SECS + 1, ..t.clone() };
        assert!(s.create_token("aaaaaaaaaaaaaaaa", forever, 10).is_err());
        let nested = AccessToken { mount: "guardian/kbs".into(), ..t };
        s.create_token("aaaaaaaaaaaaaaaa", nested, 10).unwrap();
    }
}
