//! Admin credentials of the KBS admin endpoints (`kbs-client config
//! --auth-private-key … set-resource`): a short-lived JWT (`alg` EdDSA) the
//! client signs with an Ed25519 key. The guardian accepts it when one of the
//! cluster's admin keys (the ones that sign admin commands) verifies it, so
//! `kbs-client` is driven with an admin's own key (`guardctl token
//! kbs-admin-key` writes it in the PEM form kbs-client reads).
//!
//! A write it authorises carries the JWT in its log record, and every node
//! verifies it again on apply against the admin keys in the replicated state.

use std::collections::BTreeMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use ed25519_dalek::{Signature, VerifyingKey};
use serde_json::Value;

/// Longest lifetime (`exp - iat`) accepted; kbs-client asks for two hours.
pub const MAX_LIFETIME_SECS: u64 = 24 * 3600;
const SKEW_SECS: u64 = 60;
const MAX_LEN: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminJwtError {
    #[error("admin token: not a compact JWT with alg EdDSA")]
    Malformed,
    #[error("admin token: no admin key of this cluster signed it")]
    UnknownSigner,
    #[error("admin token: expired")]
    Expired,
    #[error("admin token: not valid yet")]
    NotYetValid,
    #[error("admin token: it must say when it was issued and expires, at most {MAX_LIFETIME_SECS} s apart")]
    Lifetime,
}

/// Verify an admin JWT at `now` against the cluster's admin keys (by key
/// id); returns the id of the admin who signed it.
pub fn verify(token: &str, admins: &BTreeMap<String, [u8; 32]>, now: u64) -> Result<String, AdminJwtError> {
    if token.len() > MAX_LEN {
        return Err(AdminJwtError::Malformed);
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(AdminJwtError::Malformed);
    };
    let json = |part: &str| -> Result<Value, AdminJwtError> {
        let bytes = B64URL.decode(part).map_err(|_| AdminJwtError::Malformed)?;
        serde_json::from_slice(&bytes).map_err(|_| AdminJwtError::Malformed)
    };
    if json(h)?.get("alg").and_then(Value::as_str) != Some("EdDSA") {
        return Err(AdminJwtError::Malformed);
    }
    let sig = B64URL.decode(s).ok().and_then(|b| Signature::from_slice(&b).ok()).ok_or(AdminJwtError::Malformed)?;
    let input = format!("{h}.{p}");
    let signer = admins
        .iter()
        .find(|(_, key)| VerifyingKey::from_bytes(key).is_ok_and(|k| k.verify_strict(input.as_bytes(), &sig).is_ok()))
        .map(|(id, _)| id.clone())
        .ok_or(AdminJwtError::UnknownSigner)?;
    let claims = json(p)?;
    let (Some(iat), Some(exp)) = (claims.get("iat").and_then(Value::as_u64), claims.get("exp").and_then(Value::as_u64))
    else {
        return Err(AdminJwtError::Lifetime);
    };
    if exp <= iat || exp - iat > MAX_LIFETIME_SECS {
        return Err(AdminJwtError::Lifetime);
    }
    let nbf = claims.get("nbf").and_then(Value::as_u64).unwrap_or(iat);
    if now >= exp {
        return Err(AdminJwtError::Expired);
    }
    if iat.max(nbf) > now + SKEW_SECS {
        return Err(AdminJwtError::NotYetValid);
    }
    Ok(signer)
}

/// Whether a Bearer credential looks like an admin JWT (rather than an access token).
pub fn looks_like_jwt(bearer: &str) -> bool {
    bearer.split('.').count() == 3 && !bearer.starts_with(crate::state::tokens::TOKEN_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};
    use serde_json::json;

    fn jwt(key: &SigningKey, alg: &str, claims: Value) -> String {
        let h = B64URL.encode(json!({"alg": alg, "typ": "JWT"}).to_string());
        let p = B64URL.encode(claims.to_string());
        let sig = key.sign(format!("{h}.{p}").as_bytes());
        format!("{h}.{p}.{}", B64URL.encode(sig.to_bytes()))
    }

    #[test]
    fn an_admin_key_signs_and_nothing_else_does() {
        let admin = SigningKey::from_bytes(&[1; 32]);
        let stranger = SigningKey::from_bytes(&[2; 32]);
        let admins = BTreeMap::from([("a1".to_string(), admin.verifying_key().to_bytes())]);
        let good = json!({"iat": 100, "nbf": 100, "exp": 100 + 7200});
        assert_eq!(verify(&jwt(&admin, "EdDSA", good.clone()), &admins, 200), Ok("a1".into()));
        assert_eq!(verify(&jwt(&stranger, "EdDSA", good.clone()), &admins, 200), Err(AdminJwtError::UnknownSigner));
        assert_eq!(verify(&jwt(&admin, "none", good.clone()), &admins, 200), Err(AdminJwtError::Malformed));
        assert_eq!(verify(&jwt(&admin, "EdDSA", good.clone()), &admins, 7300), Err(AdminJwtError::Expired));
        assert_eq!(verify(&jwt(&admin, "EdDSA", good), &admins, 0), Err(AdminJwtError::NotYetValid));
        let forever = json!({"iat": 100, "exp": 100 + MAX_LIFETIME_SECS + 1});
        assert_eq!(verify(&jwt(&admin, "EdDSA", forever), &admins, 200), Err(AdminJwtError::Lifetime));
        assert_eq!(verify(&jwt(&admin, "EdDSA", json!({"exp": 999})), &admins, 200), Err(AdminJwtError::Lifetime));
        let token = jwt(&admin, "EdDSA", json!({"iat": 100, "exp": 200}));
        let tampered = token.replacen('.', ".e30", 1);
        assert!(verify(&tampered, &admins, 150).is_err());
        assert!(looks_like_jwt(&token) && !looks_like_jwt("gvt.0123456789abcdef.secret"));
    }
}
