//! `guardctl token`: access tokens for the CoCo front ends (a Trustee KBS's
//! Vault backend, KBS admin writes). The token is made here and shown once;
//! the cluster receives only its id, scope and SHA-256.

use std::path::Path;

use base64::Engine;
use guardian_node::state::tokens::{self, TOKEN_PREFIX};
use guardian_proto::v1::admin_command::Body;
use guardian_proto::v1::{CreateAccessToken, RevokeAccessToken, TokenAccess};
use zeroize::Zeroizing;

use crate::UsageError;

/// A new token: its id and full text.
pub struct NewToken {
    pub id: String,
    pub text: Zeroizing<String>,
}

impl NewToken {
    pub fn generate() -> Self {
        let id = hex::encode(rand::random::<[u8; 8]>());
        let secret = Zeroizing::new(rand::random::<[u8; 32]>());
        let text = Zeroizing::new(format!(
            "{TOKEN_PREFIX}.{id}.{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret.as_slice())
        ));
        NewToken { id, text }
    }
}

/// Parse a lifetime: `90d`, `12h`, `30m`, `3600s` or plain seconds.
pub fn parse_ttl(s: &str) -> Result<u64, UsageError> {
    let bad = || UsageError(format!("--ttl {s:?}: use e.g. 90d, 12h, 30m or 3600s"));
    let (num, unit) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&s[..i], c),
        _ => (s, 's'),
    };
    let n: u64 = num.parse().map_err(|_| bad())?;
    let secs = match unit {
        's' => n,
        'm' => n.saturating_mul(60),
        'h' => n.saturating_mul(3600),
        'd' => n.saturating_mul(86_400),
        _ => return Err(bad()),
    };
    if secs == 0 || secs > tokens::MAX_TOKEN_TTL_SECS {
        return Err(UsageError(format!("--ttl must be between 1 s and {} days", tokens::MAX_TOKEN_TTL_SECS / 86_400)));
    }
    Ok(secs)
}

/// The command registering `token`.
pub fn create(token: &NewToken, namespace: &str, mount: &str, access: &str, ttl: &str) -> Result<Body, UsageError> {
    tokens::check_mount(mount).map_err(UsageError)?;
    let access = match access {
        "read" => TokenAccess::Read,
        "read-write" => TokenAccess::ReadWrite,
        other => return Err(UsageError(format!("--access {other:?}: use read or read-write"))),
    };
    let expires = time::OffsetDateTime::now_utc().unix_timestamp() + parse_ttl(ttl)? as i64;
    Ok(Body::CreateAccessToken(CreateAccessToken {
        token_id: token.id.clone(),
        namespace: namespace.to_string(),
        mount: mount.to_string(),
        access: access as i32,
        expires_at_unix: expires,
        token_sha256: tokens::token_hash(&token.text).to_vec(),
    }))
}

pub fn revoke(id: &str) -> Result<Body, UsageError> {
    if !tokens::valid_id(id) {
        return Err(UsageError(format!("{id:?} is not a token id (the part after gvt.)")));
    }
    Ok(Body::RevokeAccessToken(RevokeAccessToken { token_id: id.to_string() }))
}

/// Write an admin's Ed25519 key (hex, as guardctl keeps it) as the PKCS#8
/// PEM `kbs-client --auth-private-key` reads: kbs-client then signs its admin
/// requests (set-resource) with the admin's own key, which every node checks.
pub fn kbs_admin_key(key_file: &Path, out: &Path) -> anyhow::Result<()> {
    use ed25519_dalek::pkcs8::EncodePrivateKey;
    let key = crate::clusterctl::load_admin_key(key_file)?;
    let der = key.to_pkcs8_der().map_err(|e| anyhow::anyhow!("encoding the admin key: {e}"))?;
    let b64 = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(der.as_bytes()));
    let mut pem = Zeroizing::new(String::from("-----BEGIN PRIVATE KEY-----\n"));
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END PRIVATE KEY-----\n");
    crate::devup::write_secret(out, pem.as_bytes())?;
    eprintln!("wrote {} (mode 0600): give it to kbs-client --auth-private-key", out.display());
    Ok(())
}

/// Show a created token once: into `out` (mode 0600) or on stdout.
pub fn show(token: &NewToken, out: Option<&Path>) -> anyhow::Result<()> {
    match out {
        Some(path) => {
            crate::devup::write_secret(path, token.text.as_bytes())?;
            eprintln!("token {} written to {} (it is not shown again)", token.id, path.display());
        }
        None => {
            eprintln!("token {} (shown once; the cluster keeps only its hash):", token.id);
            println!("{}", token.text.as_str());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_and_lifetimes() {
        let t = NewToken::generate();
        assert_eq!(tokens::token_id(&t.text).unwrap(), t.id);
        assert_eq!(parse_ttl("90d").unwrap(), 90 * 86_400);
        assert_eq!(parse_ttl("3600").unwrap(), 3600);
        assert_eq!(parse_ttl("30m").unwrap(), 1800);
        for bad in ["", "0", "x", "5y", "-1h", "9999d"] {
            assert!(parse_ttl(bad).is_err(), "{bad}");
        }
        assert!(create(&t, "ns", "secret", "write", "1h").is_err());
        assert!(create(&t, "ns", "/secret", "read", "1h").is_err());
        assert!(revoke("gvt.x").is_err());
    }
}
