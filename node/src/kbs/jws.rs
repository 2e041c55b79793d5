//! Compact JWS with ES256 (RFC 7515), for the attestation tokens. Only
//! ES256 is produced or accepted: a token naming any other `alg` (notably
//! `none`) is refused before anything else is read.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey;
use serde_json::{Map, Value};

/// Longest token accepted.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwsError {
    #[error("a token is at most {MAX_TOKEN_BYTES} bytes")]
    TooLong,
    #[error("not a compact JWS (header.payload.signature)")]
    NotCompact,
    #[error("the {0} is not base64url JSON")]
    Encoding(&'static str),
    #[error("algorithm {0:?} is not accepted; only ES256")]
    Algorithm(String),
    #[error("the signature is not a 64-byte P-256 signature")]
    SignatureShape,
    #[error("the signature does not verify")]
    BadSignature,
    #[error("the signing key is not a P-256 public key")]
    BadKey,
    #[error("signing failed: {0}")]
    Signing(String),
}

/// A token taken apart, signature not yet checked.
#[derive(Debug, Clone)]
pub struct Decoded {
    pub header: Map<String, Value>,
    pub claims: Value,
    /// `base64url(header) . base64url(payload)`: what the signature covers.
    pub signing_input: String,
    pub signature: Signature,
}

/// Sign `claims` with `header` (plus `alg` ES256, `typ` JWT); `sign_der`
/// returns an ASN.1 DER ECDSA P-256 / SHA-256 signature of its input.
pub fn sign(
    header: Map<String, Value>,
    claims: &Value,
    sign_der: impl FnOnce(&[u8]) -> Result<Vec<u8>, String>,
) -> Result<String, JwsError> {
    let mut full = Map::new();
    full.insert("alg".into(), Value::from("ES256"));
    full.insert("typ".into(), Value::from("JWT"));
    full.extend(header);
    let enc = |v: &Value| serde_json::to_vec(v).map(|b| B64URL.encode(b)).map_err(|e| JwsError::Signing(e.to_string()));
    let input = format!("{}.{}", enc(&Value::Object(full))?, enc(claims)?);
    let der = sign_der(input.as_bytes()).map_err(JwsError::Signing)?;
    let sig = Signature::from_der(&der).map_err(|e| JwsError::Signing(e.to_string()))?;
    Ok(format!("{input}.{}", B64URL.encode(sig.to_bytes())))
}

/// Take a token apart (checking only its shape and `alg`).
pub fn decode_unverified(token: &str) -> Result<Decoded, JwsError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(JwsError::TooLong);
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(JwsError::NotCompact);
    };
    let json = |part: &str, what| -> Result<Value, JwsError> {
        let bytes = B64URL.decode(part).map_err(|_| JwsError::Encoding(what))?;
        serde_json::from_slice(&bytes).map_err(|_| JwsError::Encoding(what))
    };
    let Value::Object(header) = json(h, "header")? else { return Err(JwsError::Encoding("header")) };
    match header.get("alg").and_then(Value::as_str) {
        Some("ES256") => {}
        other => return Err(JwsError::Algorithm(other.unwrap_or("").to_string())),
    }
    let claims = json(p, "payload")?;
    let raw = B64URL.decode(s).map_err(|_| JwsError::Encoding("signature"))?;
    let signature = Signature::from_slice(&raw).map_err(|_| JwsError::SignatureShape)?;
    Ok(Decoded { header, claims, signing_input: format!("{h}.{p}"), signature })
}

/// Verify a decoded token's signature with the P-256 key `spki_der`.
pub fn verify_es256(decoded: &Decoded, spki_der: &[u8]) -> Result<(), JwsError> {
    let key = VerifyingKey::from_public_key_der(spki_der).map_err(|_| JwsError::BadKey)?;
    key.verify(decoded.signing_input.as_bytes(), &decoded.signature).map_err(|_| JwsError::BadSignature)
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::Signer;
    use p256::ecdsa::SigningKey;
    use p256::pkcs8::EncodePublicKey;

    #[test]
    fn round_trip_and_refusals() {
        let key = SigningKey::random(&mut rand::thread_rng());
        let spki = key.verifying_key().to_public_key_der().unwrap();
        let sign = |m: &[u8]| -> Result<Vec<u8>, String> {
            let s: Signature = key.sign(m);
            Ok(s.to_der().as_bytes().to_vec())
        };
        let token = super::sign(Map::new(), &serde_json::json!({"exp": 5}), sign).unwrap();
        let d = decode_unverified(&token).unwrap();
        assert_eq!(d.claims["exp"], 5);
        verify_es256(&d, spki.as_bytes()).unwrap();
        let other = SigningKey::random(&mut rand::thread_rng()).verifying_key().to_public_key_der().unwrap();
        assert_eq!(verify_es256(&d, other.as_bytes()), Err(JwsError::BadSignature));
        let parts: Vec<&str> = token.split('.').collect();
        let none = format!("{}.{}.", B64URL.encode(r#"{"alg":"none"}"#), parts[1]);
        assert_eq!(decode_unverified(&none).unwrap_err(), JwsError::Algorithm("none".into()));
        let tampered = format!("{}.{}.{}", parts[0], B64URL.encode(r#"{"exp":6}"#), parts[2]);
        assert_eq!(verify_es256(&decode_unverified(&tampered).unwrap(), spki.as_bytes()), Err(JwsError::BadSignature));
        for bad in ["", "a.b", "a.b.c.d", "!!.!!.!!"] {
            assert!(decode_unverified(bad).is_err(), "{bad}");
        }
        assert_eq!(decode_unverified(&"a".repeat(MAX_TOKEN_BYTES + 1)).unwrap_err(), JwsError::TooLong);
    }
}
