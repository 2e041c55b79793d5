//! The Vault KV v1 subset the Trustee KBS's Vault resource backend speaks
//! (its client is vaultrs `kv1::{get,set,delete}`):
//!
//! - `GET|POST|DELETE /v1/<mount>/<repo>/<type>/<tag>` with `X-Vault-Token`;
//! - `<mount>` may itself contain `/`; `<repo>` names the namespace and
//!   `<type>/<tag>` the key path inside it;
//! - a POST body is `{"data": <value>}`, the value a JSON array of bytes (what
//!   the KBS writes) or a string (what `vault kv put … data=…` writes);
//! - a GET answer must carry every field of Vault's envelope or vaultrs
//!   refuses it; the value goes back as an array of bytes, which the KBS
//!   turns into the same bytes a string would have given;
//! - a missing key is a 404 with `{"errors":[]}`.

use serde_json::{json, Value};

use crate::keys::KeyPath;

/// Largest value accepted on a write (a PVC key is 32-64 bytes; a sealed secret is bounded too).
pub const MAX_VALUE_BYTES: usize = 16 * 1024;

/// A parsed resource path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultPath {
    pub mount: String,
    pub namespace: String,
    pub key: KeyPath,
}

/// Why a Vault request is refused; each maps to one status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VaultError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl VaultError {
    pub fn status(&self) -> u16 {
        match self {
            VaultError::BadRequest(_) => 400,
            VaultError::Forbidden(_) => 403,
            VaultError::NotFound(_) => 404,
            VaultError::Unavailable(_) => 503,
            VaultError::Internal(_) => 500,
        }
    }

    /// Vault's error body. A missing key gets an empty list, as Vault sends.
    pub fn body(&self) -> Value {
        match self {
            VaultError::NotFound(_) => json!({ "errors": [] }),
            other => json!({ "errors": [other.to_string()] }),
        }
    }
}

/// Parse the path after `/v1/`: `<mount...>/<repo>/<type>/<tag>`.
pub fn parse_path(rest: &str) -> Result<VaultPath, VaultError> {
    let segments: Vec<&str> = rest.split('/').collect();
    if segments.len() < 4 {
        return Err(VaultError::BadRequest(format!(
            "path {rest:?} is not <mount>/<repo>/<type>/<tag> (repo = namespace, type/tag = key)"
        )));
    }
    let n = segments.len();
    let mount = segments[..n - 3].join("/");
    crate::state::tokens::check_mount(&mount).map_err(VaultError::BadRequest)?;
    let namespace = segments[n - 3];
    crate::policy::NamespaceName::new(namespace).map_err(|e| VaultError::BadRequest(format!("repo: {e}")))?;
    let key = KeyPath::parse(&segments[n - 2..].join("/")).map_err(|e| VaultError::BadRequest(e.to_string()))?;
    if key.is_workload_sealed() {
        return Err(VaultError::BadRequest("sealed/ secrets are delivered through configs, not the KBS".into()));
    }
    Ok(VaultPath { mount, namespace: namespace.to_string(), key })
}

/// The value of a POST body `{"data": [u8…] | "string"}`.
pub fn parse_write(body: &[u8]) -> Result<zeroize::Zeroizing<Vec<u8>>, VaultError> {
    let bad =
        |why: &str| VaultError::BadRequest(format!("the body must be {{\"data\": [bytes] or \"string\"}}: {why}"));
    let v: Value = serde_json::from_slice(body).map_err(|e| bad(&e.to_string()))?;
    let data = v.get("data").ok_or_else(|| bad("no \"data\" member"))?;
    let bytes = match data {
        Value::String(s) => s.as_bytes().to_vec(),
        Value::Array(items) => items
            .iter()
            .map(|i| i.as_u64().and_then(|b| u8::try_from(b).ok()))
            .collect::<Option<Vec<u8>>>()
            .ok_or_else(|| bad("an array must hold numbers 0-255"))?,
        _ => return Err(bad("the value is neither an array of bytes nor a string")),
    };
    let bytes = zeroize::Zeroizing::new(bytes);
    check_len(bytes.len()).map_err(|why| bad(&why))?;
    Ok(bytes)
}

/// A stored value's size limits (Vault writes and KBS set-resource alike).
pub fn check_len(len: usize) -> Result<(), String> {
    match (1..=MAX_VALUE_BYTES).contains(&len) {
        true => Ok(()),
        false => Err(format!("a value is 1 to {MAX_VALUE_BYTES} bytes")),
    }
}

/// The GET answer: Vault's full envelope around `{"data": [bytes]}`.
pub fn read_response(request_id: &str, value: &[u8]) -> zeroize::Zeroizing<String> {
    let mut out = String::with_capacity(160 + value.len() * 4);
    out.push_str(r#"{"request_id":""#);
    // Request ids are generated here (hex): nothing to escape.
    out.push_str(request_id);
    out.push_str(r#"","lease_id":"","renewable":false,"lease_duration":0,"data":{"data":["#);
    for (i, b) in value.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&b.to_string());
    }
    out.push_str(r#"]},"auth":null,"wrap_info":null,"warnings":null}"#);
    zeroize::Zeroizing::new(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_into_mount_namespace_and_key() {
        let p = parse_path("secret/default/key/pvc1").unwrap();
        assert_eq!((p.mount.as_str(), p.namespace.as_str(), p.key.as_str()), ("secret", "default", "key/pvc1"));
        let p = parse_path("guardian/kbs/db/pvc/data-0").unwrap();
        assert_eq!((p.mount.as_str(), p.namespace.as_str(), p.key.as_str()), ("guardian/kbs", "db", "pvc/data-0"));
        for bad in ["", "secret", "secret/default/key", "secret//key/x", "../default/key/x", "secret/default/sealed/x"]
        {
            assert!(matches!(parse_path(bad), Err(VaultError::BadRequest(_))), "{bad:?}");
        }
    }

    #[test]
    fn write_bodies_are_the_two_forms_the_kbs_and_vault_send() {
        // As the real KBS sent it (testdata/coco/trustee-kbs-to-vault-kv1.requests.jsonl).
        assert_eq!(parse_write(br#"{"data":[87,162,122]}"#).unwrap().as_slice(), &[87, 162, 122]);
        assert_eq!(
            parse_write(br#"{"data":"preseeded-luks-passphrase"}"#).unwrap().as_slice(),
            b"preseeded-luks-passphrase"
        );
        for bad in [
            &br#"{"data":[256]}"#[..],
            br#"{"data":[-1]}"#,
            br#"{"data":{}}"#,
            br#"{"other":"x"}"#,
            b"{",
            br#"{"data":[]}"#,
        ] {
            assert!(matches!(parse_write(bad), Err(VaultError::BadRequest(_))));
        }
    }

    #[test]
    fn the_read_envelope_has_every_field_vaultrs_requires() {
        let v: Value = serde_json::from_str(&read_response("ab12", &[1, 255])).unwrap();
        assert_eq!(
            v,
            json!({"request_id":"ab12","lease_id":"","renewable":false,"lease_duration":0,
                   "data":{"data":[1,255]},"auth":null,"wrap_info":null,"warnings":null})
        );
        assert_eq!(VaultError::NotFound("x".into()).body(), json!({"errors": []}));
    }
}
