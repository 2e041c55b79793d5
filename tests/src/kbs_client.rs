//! Client side of the Confidential Containers (CoCo) KBS protocol, written as an independent test helper.
//!
//! This module is deliberately written only from the protocol description, not from any server code and without
//! `kbs-types` or a JOSE library, so that it can check a KBS server independently. It reproduces what the real
//! CoCo `kbs-client` (attestation-agent, KBS protocol 0.4.0) sends and how it reads what it gets back:
//!
//! - [`auth_body`]: the `POST /kbs/v0/auth` request body.
//! - [`TeeKey`]: the TEE key pair whose public half goes out as `tee-pubkey` (an EC P-256 key for
//!   `ECDH-ES+A256KW` or an RSA-2048 key for `RSA-OAEP-256`), with [`TeeKey::jwk`] building that JWK.
//! - [`runtime_digest`] / [`sample_evidence`]: the SHA-384 of the RFC 8785 (JCS) canonical JSON of the runtime
//!   data, which the client binds into the evidence as `report_data` (the `sample` TEE's evidence shape).
//! - [`attest_body`]: the `POST /kbs/v0/attest` request body.
//! - [`decrypt`]: opening the flattened JWE a resource comes back in. The AAD is computed the way the real client
//!   computes it: from the protected header *re-serialised* (`alg`, `enc`, then the other members in sorted key
//!   order), not from the string received. A server whose `protected` does not survive that re-serialisation
//!   unchanged would fail against the real client; [`decrypt`] reports that as a distinct error (see
//!   [`PROTECTED_HEADER_NOT_CANONICAL`]) instead of quietly using the received string.
//! - [`token_claims`]: reading a JWT's claims without verifying it (what the client does to learn `exp`).
//!
//! Note on member order: [`TeeKey::jwk`], [`auth_body`] and [`attest_body`] insert members in the order the real
//! client sends them, but a [`serde_json::Value`] only keeps that order when serde_json's `preserve_order` feature
//! is on; otherwise it sorts keys when serialised. Servers must not depend on member order, except in the JWE
//! protected header, which is checked here byte for byte.

use std::fmt::Write as _;

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use anyhow::{anyhow, bail, Context, Result};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use p256::elliptic_curve::sec1::{EncodedPoint, FromEncodedPoint, ToEncodedPoint};
use rsa::traits::PublicKeyParts;
use rsa::{Oaep, RsaPrivateKey};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256, Sha384};

/// JWE key-management algorithm used with an EC P-256 TEE key.
pub const ALG_ECDH_ES_A256KW: &str = "ECDH-ES+A256KW";
/// JWE key-management algorithm used with an RSA TEE key.
pub const ALG_RSA_OAEP_256: &str = "RSA-OAEP-256";
/// The only JWE content-encryption algorithm the client accepts.
pub const ENC_A256GCM: &str = "A256GCM";
/// KBS protocol version the client announces in `/auth`.
pub const PROTOCOL_VERSION: &str = "0.4.0";
/// Prefix of the error [`decrypt`] returns when the received protected header differs from the client's
/// re-serialisation of it (the real client would then compute a different AAD and fail to decrypt).
pub const PROTECTED_HEADER_NOT_CANONICAL: &str =
    "JWE protected header is not in the form the CoCo client re-serialises";

/// The TEE key pair of one attestation: its public half is sent as `tee-pubkey`, and resources come back
/// encrypted to it.
pub enum TeeKey {
    /// P-256 key for `ECDH-ES+A256KW`.
    Ec(p256::SecretKey),
    /// RSA key for `RSA-OAEP-256`.
    Rsa(Box<RsaPrivateKey>),
}

impl TeeKey {
    /// A fresh P-256 key.
    pub fn ec() -> Self {
        TeeKey::Ec(p256::SecretKey::random(&mut rand::rngs::OsRng))
    }

    /// A fresh 2048-bit RSA key (e = 65537).
    pub fn rsa() -> Self {
        let key = RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).expect("RSA-2048 key generation");
        TeeKey::Rsa(Box::new(key))
    }

    /// The public JWK exactly as the CoCo client sends it as `tee-pubkey` (members inserted in the client's order).
    pub fn jwk(&self) -> Value {
        match self {
            TeeKey::Ec(secret) => {
                let point = secret.public_key().to_encoded_point(false);
                // Uncompressed SEC1: 0x04 || x (32 bytes) || y (32 bytes).
                let (x, y) = point.as_bytes()[1..].split_at(32);
                json!({
                    "kty": "EC",
                    "crv": "P-256",
                    "alg": ALG_ECDH_ES_A256KW,
                    "x": URL_SAFE_NO_PAD.encode(x),
                    "y": URL_SAFE_NO_PAD.encode(y),
                })
            }
            TeeKey::Rsa(key) => json!({
                "kty": "RSA",
                "alg": ALG_RSA_OAEP_256,
                "n": URL_SAFE_NO_PAD.encode(key.n().to_bytes_be()),
                "e": URL_SAFE_NO_PAD.encode(key.e().to_bytes_be()),
            }),
        }
    }
}

/// The `POST /kbs/v0/auth` body the client sends for `tee` (e.g. `"sample"`).
pub fn auth_body(tee: &str) -> Value {
    json!({
        "version": PROTOCOL_VERSION,
        "tee": tee,
        "extra-params": {"supported-hash-algorithms": ["sha256", "sha384", "sha512", "sm3"]},
    })
}

/// SHA-384 of the JCS (RFC 8785) form of `{"additional-evidence":"","nonce":nonce,"tee-pubkey":jwk}`: the value
/// the client binds into the evidence's `report_data`.
///
/// Panics only if `jwk` contains a non-integer number, which no JWK does; [`try_runtime_digest`] returns an error
/// instead.
pub fn runtime_digest(nonce: &str, jwk: &Value) -> [u8; 48] {
    try_runtime_digest(nonce, jwk).expect("tee-pubkey JWK holds a non-integer number, which JCS here refuses")
}

/// [`runtime_digest`], with an error instead of a panic when `jwk` holds a non-integer number.
pub fn try_runtime_digest(nonce: &str, jwk: &Value) -> Result<[u8; 48]> {
    let runtime = json!({"additional-evidence": "", "nonce": nonce, "tee-pubkey": jwk});
    Ok(Sha384::digest(jcs(&runtime)?.as_bytes()).into())
}

/// Evidence of the `sample` TEE as the client produces it: `{"svn":"1","report_data":base64(runtime_digest)}`.
pub fn sample_evidence(nonce: &str, jwk: &Value) -> Value {
    json!({"svn": "1", "report_data": STANDARD.encode(runtime_digest(nonce, jwk))})
}

/// The `POST /kbs/v0/attest` body.
pub fn attest_body(nonce: &str, jwk: &Value, primary_evidence: Value) -> Value {
    json!({
        "init-data": null,
        "runtime-data": {"nonce": nonce, "tee-pubkey": jwk},
        "tee-evidence": {"primary_evidence": primary_evidence, "additional_evidence": ""},
    })
}

/// RFC 8785 JSON Canonicalization Scheme, restricted to integer numbers (floats are refused with an error).
pub fn jcs(value: &Value) -> Result<String> {
    let mut out = String::new();
    write_sorted(&mut out, value, KeyOrder::Utf16, true)?;
    Ok(out)
}

/// How object keys are sorted when serialising.
#[derive(Clone, Copy)]
enum KeyOrder {
    /// By UTF-16 code units (JCS).
    Utf16,
    /// By Rust `String` order, i.e. UTF-8 bytes / code points (what serde_json's `BTreeMap` map does).
    Bytes,
}

fn sort_keys(map: &Map<String, Value>, order: KeyOrder) -> Vec<(&String, &Value)> {
    let mut entries: Vec<_> = map.iter().collect();
    match order {
        KeyOrder::Utf16 => entries.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16())),
        KeyOrder::Bytes => entries.sort_by(|a, b| a.0.cmp(b.0)),
    }
    entries
}

/// Compact serialisation with sorted keys. `integers_only` refuses non-integer numbers (JCS mode); otherwise
/// numbers are written as serde_json writes them.
fn write_sorted(out: &mut String, value: &Value, order: KeyOrder, integers_only: bool) -> Result<()> {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                write!(out, "{i}")?;
            } else if let Some(u) = n.as_u64() {
                write!(out, "{u}")?;
            } else if integers_only {
                bail!("JCS: non-integer number {n} is not supported");
            } else {
                out.push_str(&n.to_string());
            }
        }
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_sorted(out, item, order, integers_only)?;
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (k, v)) in sort_keys(map, order).into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(out, k);
                out.push(':');
                write_sorted(out, v, order, integers_only)?;
            }
            out.push('}');
        }
    }
    Ok(())
}

/// JSON string with JCS escaping (which serde_json's compact writer also uses): only `"`, `\` and control
/// characters below 0x20 are escaped, with the short forms where they exist, else `\u00xx` in lowercase hex.
fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The protected header as the real client re-serialises it: `alg`, `enc`, then every other member in sorted key
/// order, nested objects with sorted keys, compact.
fn reserialise_protected(header: &Value) -> Result<String> {
    let map = header.as_object().ok_or_else(|| anyhow!("JWE protected header is not a JSON object"))?;
    let mut out = String::from("{");
    for (i, name) in ["alg", "enc"].into_iter().enumerate() {
        let v = map.get(name).ok_or_else(|| anyhow!("JWE protected header has no `{name}`"))?;
        let s = v.as_str().ok_or_else(|| anyhow!("JWE protected header `{name}` is not a string"))?;
        if i > 0 {
            out.push(',');
        }
        write_string(&mut out, name);
        out.push(':');
        write_string(&mut out, s);
    }
    for (k, v) in sort_keys(map, KeyOrder::Bytes) {
        if k == "alg" || k == "enc" {
            continue;
        }
        out.push(',');
        write_string(&mut out, k);
        out.push(':');
        write_sorted(&mut out, v, KeyOrder::Bytes, false)?;
    }
    out.push('}');
    Ok(out)
}

fn b64url_field(jwe: &Value, name: &str) -> Result<Vec<u8>> {
    let s = jwe.get(name).and_then(Value::as_str).ok_or_else(|| anyhow!("JWE has no string member `{name}`"))?;
    URL_SAFE_NO_PAD.decode(s).with_context(|| format!("JWE `{name}` is not base64url without padding"))
}

fn str_member<'a>(obj: &'a Value, name: &str, what: &str) -> Result<&'a str> {
    obj.get(name).and_then(Value::as_str).ok_or_else(|| anyhow!("{what} has no string member `{name}`"))
}

/// Concat KDF (RFC 7518 §4.6.2) with SHA-256 for `ECDH-ES+A256KW`, empty `apu`/`apv`, 256-bit output.
fn concat_kdf_a256kw(z: &[u8]) -> [u8; 32] {
    let alg = ALG_ECDH_ES_A256KW.as_bytes();
    let mut h = Sha256::new();
    h.update(1u32.to_be_bytes());
    h.update(z);
    h.update((alg.len() as u32).to_be_bytes());
    h.update(alg);
    h.update(0u32.to_be_bytes()); // apu length
    h.update(0u32.to_be_bytes()); // apv length
    h.update(256u32.to_be_bytes()); // keydatalen in bits
    h.finalize().into()
}

fn ec_public_from_jwk(epk: &Value) -> Result<p256::PublicKey> {
    let kty = str_member(epk, "kty", "epk")?;
    let crv = str_member(epk, "crv", "epk")?;
    if kty != "EC" || crv != "P-256" {
        bail!("epk must be an EC P-256 key, got kty={kty} crv={crv}");
    }
    let coord = |name: &str| -> Result<Vec<u8>> {
        let b = URL_SAFE_NO_PAD
            .decode(str_member(epk, name, "epk")?)
            .with_context(|| format!("epk `{name}` is not base64url without padding"))?;
        if b.len() != 32 {
            bail!("epk `{name}` is {} bytes, expected 32", b.len());
        }
        Ok(b)
    };
    let (x, y) = (coord("x")?, coord("y")?);
    let point =
        EncodedPoint::<p256::NistP256>::from_affine_coordinates(x.as_slice().into(), y.as_slice().into(), false);
    Option::from(p256::PublicKey::from_encoded_point(&point)).ok_or_else(|| anyhow!("epk is not a point on P-256"))
}

/// Opens a flattened JWE (`protected`, `encrypted_key`, `iv`, `ciphertext`, `tag`) addressed to `key`, the way the
/// CoCo client does. Returns the plaintext resource.
pub fn decrypt(jwe: &Value, key: &TeeKey) -> Result<Vec<u8>> {
    if jwe.get("aad").is_some() {
        bail!("JWE has an `aad` member, which the CoCo client does not support");
    }
    let protected_b64 = str_member(jwe, "protected", "JWE")?;
    let protected_raw = b64url_field(jwe, "protected")?;
    let header: Value = serde_json::from_slice(&protected_raw).context("JWE protected header is not JSON")?;
    let reserialised = reserialise_protected(&header)?;
    let aad = URL_SAFE_NO_PAD.encode(&reserialised);
    if aad != protected_b64 {
        bail!(
            "{PROTECTED_HEADER_NOT_CANONICAL}: the client computes the AAD from {reserialised:?} ({aad}) but the \
             server sent {:?} ({protected_b64}); the real client would fail to decrypt",
            String::from_utf8_lossy(&protected_raw)
        );
    }

    let alg = str_member(&header, "alg", "JWE protected header")?;
    let enc = str_member(&header, "enc", "JWE protected header")?;
    if enc != ENC_A256GCM {
        bail!("unsupported JWE enc {enc:?}, expected {ENC_A256GCM}");
    }
    let encrypted_key = b64url_field(jwe, "encrypted_key")?;

    let cek: Vec<u8> = match (alg, key) {
        (ALG_ECDH_ES_A256KW, TeeKey::Ec(secret)) => {
            if header.get("apu").is_some() || header.get("apv").is_some() {
                bail!("JWE header has apu/apv, which the CoCo client does not use");
            }
            let epk = header.get("epk").ok_or_else(|| anyhow!("{ALG_ECDH_ES_A256KW} JWE header has no `epk`"))?;
            let epk = ec_public_from_jwk(epk)?;
            let shared = p256::ecdh::diffie_hellman(secret.to_nonzero_scalar(), epk.as_affine());
            let kek = concat_kdf_a256kw(shared.raw_secret_bytes());
            if encrypted_key.len() != 40 {
                bail!("encrypted_key is {} bytes, expected 40 (AES-KW of a 256-bit CEK)", encrypted_key.len());
            }
            let mut cek = vec![0u8; 32];
            aes_kw::KekAes256::from(kek)
                .unwrap(&encrypted_key, &mut cek)
                .map_err(|e| anyhow!("AES key unwrap failed: {e}"))?;
            cek
        }
        (ALG_RSA_OAEP_256, TeeKey::Rsa(private)) => private
            .decrypt(Oaep::new::<Sha256>(), &encrypted_key)
            .map_err(|e| anyhow!("RSA-OAEP-256 decryption of the CEK failed: {e}"))?,
        (ALG_ECDH_ES_A256KW | ALG_RSA_OAEP_256, _) => bail!("JWE alg {alg} does not match the TEE key type"),
        _ => bail!("unsupported JWE alg {alg:?}"),
    };

    let iv = b64url_field(jwe, "iv")?;
    let iv: [u8; 12] = iv.as_slice().try_into().map_err(|_| anyhow!("JWE iv is {} bytes, expected 12", iv.len()))?;
    let tag = b64url_field(jwe, "tag")?;
    if tag.len() != 16 {
        bail!("JWE tag is {} bytes, expected 16", tag.len());
    }
    let mut msg = b64url_field(jwe, "ciphertext")?;
    msg.extend_from_slice(&tag);
    let cipher = Aes256Gcm::new_from_slice(&cek).map_err(|_| anyhow!("CEK is {} bytes, expected 32", cek.len()))?;
    cipher
        .decrypt(&Nonce::from(iv), Payload { msg: &msg, aad: aad.as_bytes() })
        .map_err(|_| anyhow!("AES-256-GCM decryption failed (wrong key, AAD, iv or tag)"))
}

/// The claims of a JWT, read without verifying its signature (as the client does to learn `exp`).
pub fn token_claims(jwt: &str) -> Result<Value> {
    let parts: Vec<&str> = jwt.split('.').collect();
    if parts.len() != 3 {
        bail!("JWT has {} dot-separated parts, expected 3", parts.len());
    }
    let claims = URL_SAFE_NO_PAD.decode(parts[1]).context("JWT claims are not base64url without padding")?;
    serde_json::from_slice(&claims).context("JWT claims are not JSON")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::RngCore;
    use std::sync::OnceLock;

    /// One RSA key shared by the tests (RSA key generation is slow in debug builds).
    fn rsa_key() -> &'static TeeKey {
        static KEY: OnceLock<TeeKey> = OnceLock::new();
        KEY.get_or_init(TeeKey::rsa)
    }

    /// Attest request captured from the real kbs-client talking to the real Trustee KBS.
    const TRUSTEE_ATTEST: &str = r#"{"init-data":null,"runtime-data":{"nonce":"QaR4v4JxOrRxs2tClOTfi0KNECKeQfxioIaU9B5nRfo=","tee-pubkey":{"kty":"EC","crv":"P-256","alg":"ECDH-ES+A256KW","x":"XUuIBLxWoswN6u07rIF1xz22nS8DqnTeQSPOnOHYutw","y":"yhb6_IDADMsUPe8x8JRorjOmWV_y-ktGGsGDfYldSCA"}},"tee-evidence":{"primary_evidence":{"report_data":"WNA2OocW54DKHRy7Xw+XkAHk+mK0PvBAWQt6hw8SvT+xMsDyQKxnNM3qFkSn2rgB","svn":"1"},"additional_evidence":""}}"#;

    /// Attest requests captured from the real kbs-client talking to a prototype server.
    const PROTO_ATTESTS: [&str; 2] = [
        r#"{"init-data":null,"runtime-data":{"nonce":"D3jnJeuqhMoAndHdm4BmXKo/G/AMNEp5t/H5M3HEybw=","tee-pubkey":{"kty":"EC","crv":"P-256","alg":"ECDH-ES+A256KW","x":"a3cqsrHpciJL_iSDdKirVF7tNeOyz3J65lXaJBHojzo","y":"pm8rj5v8XE-Vkn7N9Hoi2s9k2uFPGl2zciuSBunfxMI"}},"tee-evidence":{"primary_evidence":{"report_data":"Ed4BTwgNVq4eZYZkQJ4B8HP6sfqx+XiUPAkMSdhpqWqncUlhtcbiO/XpaudHLwdH","svn":"1"},"additional_evidence":""}}"#,
        r#"{"init-data":null,"runtime-data":{"nonce":"5RJD2ijihWhze/5wPTNlCgf0HtsTQJ529xVXFbb9p5E=","tee-pubkey":{"kty":"EC","crv":"P-256","alg":"ECDH-ES+A256KW","x":"cHa5VbD2M-JeXuY-_rusvelKK9PKq3qbxWd011fEYw8","y":"N7GOAvHtBSZyauwqWbR--Dc28wjOmY2x7W0uD6R-Yek"}},"tee-evidence":{"primary_evidence":{"report_data":"mZojumbfffShLdca/IlX/O2ilACvah3fCzsn1mYixXiRgsZWDRXby9nSymNiiQOi","svn":"1"},"additional_evidence":""}}"#,
    ];

    /// Auth request captured from the real kbs-client.
    const AUTH: &str = r#"{"version":"0.4.0","tee":"sample","extra-params":{"supported-hash-algorithms":["sha256","sha384","sha512","sm3"]}}"#;

    /// `protected` sent by the real Trustee KBS (ECDH-ES+A256KW).
    const TRUSTEE_PROTECTED: &str = "eyJhbGciOiJFQ0RILUVTK0EyNTZLVyIsImVuYyI6IkEyNTZHQ00iLCJlcGsiOnsiY3J2IjoiUC0yNTYiLCJrdHkiOiJFQyIsIngiOiJnWFI3b0NDMXIzbTlCVzViN1FNcFFLSmU4RlAtdWd2RERRc2lFVFR0T1RvIiwieSI6Im5ad2x2UUFrWDFkR3pwM3ZSRTZWRGthZkRpU2pwNUJkZWJmdHI4M3k5ZUkifX0";

    /// Token issued by the real Trustee KBS in the same capture.
    const TRUSTEE_TOKEN: &str = "eyJ0eXAiOiJKV1QiLCJhbGciOiJFUzI1NiIsImp3ayI6eyJhbGciOiJFUzI1NiIsImt0eSI6IkVDIiwiY3J2IjoiUC0yNTYiLCJ4IjoidnJ5Y3Nka0pYU1l0Ym9IQ01mVkRxZlJJNEZBaUVBMHVxQkpLSFVzRkpsYyIsInkiOiJMc3dTMnVoU0JiZld4bXdFSk5MeFhOajRyUEdXbHNqUlROOUp1Slg1SkJzIn19.eyJlYXRfcHJvZmlsZSI6InRhZzpnaXRodWIuY29tLDIwMjQ6Y29uZmlkZW50aWFsLWNvbnRhaW5lcnMvVHJ1c3RlZSIsImlhdCI6MTc5NTI5MDYyNywiZWFyLnZlcmlmaWVyLWlkIjp7ImRldmVsb3BlciI6Imh0dHBzOi8vY29uZmlkZW50aWFsY29udGFpbmVycy5vcmciLCJidWlsZCI6ImF0dGVzdGF0aW9uLXNlcnZpY2UgMC4xLjAifSwic3VibW9kcyI6eyJjcHUwIjp7ImVhci5zdGF0dXMiOiJjb250cmFpbmRpY2F0ZWQiLCJlYXIudHJ1c3R3b3J0aGluZXNzLXZlY3RvciI6eyJpbnN0YW5jZS1pZGVudGl0eSI6MCwiY29uZmlndXJhdGlvbiI6MiwiZXhlY3V0YWJsZXMiOjMzLCJmaWxlLXN5c3RlbSI6MCwiaGFyZHdhcmUiOjk3LCJydW50aW1lLW9wYXF1ZSI6MCwic3RvcmFnZS1vcGFxdWUiOjAsInNvdXJjZWQtZGF0YSI6MH0sImVhci5hcHByYWlzYWwtcG9saWN5LWlkIjoiZGVmYXVsdCIsImVhci52ZXJhaXNvbi5hbm5vdGF0ZWQtZXZpZGVuY2UiOnsicmVwb3J0X2RhdGEiOiJXTkEyT29jVzU0REtIUnk3WHcrWGtBSGsrbUswUHZCQVdRdDZodzhTdlQreE1zRHlRS3huTk0zcUZrU24ycmdCIiwicnVudGltZV9kYXRhX2NsYWltcyI6eyJhZGRpdGlvbmFsLWV2aWRlbmNlIjoiIiwibm9uY2UiOiJRYVI0djRKeE9yUnhzMnRDbE9UZmkwS05FQ0tlUWZ4aW9JYVU5QjVuUmZvPSIsInRlZS1wdWJrZXkiOnsiYWxnIjoiRUNESC1FUytBMjU2S1ciLCJjcnYiOiJQLTI1NiIsImt0eSI6IkVDIiwieCI6IlhVdUlCTHhXb3N3TjZ1MDdySUYxeHoyMm5TOERxblRlUVNQT25PSFl1dHciLCJ5IjoieWhiNl9JREFETXNVUGU4eDhKUm9yak9tV1ZfeS1rdEdHc0dEZllsZFNDQSJ9fSwic2FtcGxlIjp7ImRlYnVnIjpmYWxzZSwibGF1bmNoX2RpZ2VzdCI6ImFiY2RlIiwicGxhdGZvcm1fdmVyc2lvbiI6eyJtYWpvciI6MSwibWlub3IiOjR9LCJzdm4iOiIxIn19LCJlYXIudHJ1c3RlZS5pZGVudGlmaWVycyI6eyJ2YWxpZGF0ZWQiOnt9fX19LCJleHAiOjE3OTUyOTA5MjcsImlzcyI6IkNvQ28tQXR0ZXN0YXRpb24tU2VydmljZSJ9.CYDSroLv_1xQ5VUQIc4PoQ-MO_r-TQmJFzKOSJb-k1uNS3GxUrJyCUbJq45F2IiuU3bgzDBMxTU6FQKfKoC2tQ";

    fn check_captured_attest(body: &str) {
        let body: Value = serde_json::from_str(body).unwrap();
        let nonce = body["runtime-data"]["nonce"].as_str().unwrap();
        let jwk = &body["runtime-data"]["tee-pubkey"];
        let report_data = body["tee-evidence"]["primary_evidence"]["report_data"].as_str().unwrap();
        assert_eq!(STANDARD.decode(report_data).unwrap(), runtime_digest(nonce, jwk));
        // Our evidence and body builders reproduce the captured request.
        let evidence = sample_evidence(nonce, jwk);
        assert_eq!(evidence, body["tee-evidence"]["primary_evidence"]);
        assert_eq!(attest_body(nonce, jwk, evidence), body);
    }

    #[test]
    fn captured_trustee_attest_report_data_matches() {
        check_captured_attest(TRUSTEE_ATTEST);
    }

    #[test]
    fn captured_prototype_attests_report_data_match() {
        for body in PROTO_ATTESTS {
            check_captured_attest(body);
        }
    }

    #[test]
    fn runtime_digest_is_sensitive_to_nonce_and_key() {
        let body: Value = serde_json::from_str(TRUSTEE_ATTEST).unwrap();
        let jwk = &body["runtime-data"]["tee-pubkey"];
        let d = runtime_digest("QaR4v4JxOrRxs2tClOTfi0KNECKeQfxioIaU9B5nRfo=", jwk);
        assert_ne!(d, runtime_digest("QaR4v4JxOrRxs2tClOTfi0KNECKeQfxioIaU9B5nRfp=", jwk));
        assert_ne!(d, runtime_digest("QaR4v4JxOrRxs2tClOTfi0KNECKeQfxioIaU9B5nRfo=", &TeeKey::ec().jwk()));
    }

    #[test]
    fn auth_body_matches_capture() {
        assert_eq!(auth_body("sample"), serde_json::from_str::<Value>(AUTH).unwrap());
    }

    #[test]
    fn jwk_shapes() {
        let ec = TeeKey::ec().jwk();
        let keys: Vec<&str> = ec.as_object().unwrap().keys().map(String::as_str).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(sorted, ["alg", "crv", "kty", "x", "y"]);
        assert_eq!(ec["kty"], "EC");
        assert_eq!(ec["crv"], "P-256");
        assert_eq!(ec["alg"], "ECDH-ES+A256KW");
        for c in ["x", "y"] {
            let s = ec[c].as_str().unwrap();
            assert_eq!(s.len(), 43, "32 bytes, base64url without padding");
            assert_eq!(URL_SAFE_NO_PAD.decode(s).unwrap().len(), 32);
        }

        let rsa = rsa_key().jwk();
        assert_eq!(rsa.as_object().unwrap().len(), 4);
        assert_eq!(rsa["kty"], "RSA");
        assert_eq!(rsa["alg"], "RSA-OAEP-256");
        assert_eq!(rsa["e"], "AQAB");
        let n = URL_SAFE_NO_PAD.decode(rsa["n"].as_str().unwrap()).unwrap();
        assert_eq!(n.len(), 256);
        assert!(n[0] >= 0x80, "big-endian, no leading zero");
    }

    #[test]
    fn trustee_protected_header_reserialises_to_itself() {
        let raw = URL_SAFE_NO_PAD.decode(TRUSTEE_PROTECTED).unwrap();
        let header: Value = serde_json::from_slice(&raw).unwrap();
        let again = reserialise_protected(&header).unwrap();
        assert_eq!(again.as_bytes(), raw.as_slice());
        assert_eq!(URL_SAFE_NO_PAD.encode(&again), TRUSTEE_PROTECTED);
        // The RSA header form the prototype server sent, too.
        let rsa = "eyJhbGciOiJSU0EtT0FFUC0yNTYiLCJlbmMiOiJBMjU2R0NNIn0";
        let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(rsa).unwrap()).unwrap();
        assert_eq!(URL_SAFE_NO_PAD.encode(reserialise_protected(&header).unwrap()), rsa);
    }

    #[test]
    fn trustee_protected_header_passes_canonical_check_in_decrypt() {
        // Without the Trustee's session key the decryption itself must fail, but not on the header check.
        let jwe = json!({
            "protected": TRUSTEE_PROTECTED,
            "encrypted_key": "7C-6_y6Tf31t-ioRrWzJnu5VeEXrVK6iz-mgfoiM2yjK9PCdS7cTtg",
            "iv": "9OKYzsmYW32G5g2L",
            "ciphertext": "D8VfMEKsmD_0biBk5IH8MwxqKKUxWZejdXTqptx-RHM",
            "tag": "GmasRxGsp-bg_3_QSBw0sQ",
        });
        let err = decrypt(&jwe, &TeeKey::ec()).unwrap_err().to_string();
        assert!(!err.contains(PROTECTED_HEADER_NOT_CANONICAL), "{err}");
        assert!(err.contains("unwrap"), "{err}");
    }

    fn non_canonical_headers() -> Vec<String> {
        let epk = r#"{"kty":"EC","crv":"P-256","x":"gXR7oCC1r3m9BW5b7QMpQKJe8FP-ugvDDQsiETTtOTo","y":"nZwlvQAkX1dGzp3vRE6VDkafDiSjp5Bdebftr83y9eI"}"#;
        vec![
            // epk members in kty,crv,x,y order (what a naive server emitting a JWK in "natural" order sends).
            format!(r#"{{"alg":"ECDH-ES+A256KW","enc":"A256GCM","epk":{epk}}}"#),
            // enc before alg.
            r#"{"enc":"A256GCM","alg":"RSA-OAEP-256"}"#.to_string(),
            // Whitespace.
            r#"{"alg": "RSA-OAEP-256", "enc": "A256GCM"}"#.to_string(),
            // Other members not sorted.
            r#"{"alg":"RSA-OAEP-256","enc":"A256GCM","kid":"k","cty":"x"}"#.to_string(),
        ]
    }

    #[test]
    fn non_canonical_protected_header_is_refused() {
        for header in non_canonical_headers() {
            let value: Value = serde_json::from_str(&header).unwrap();
            assert_ne!(reserialise_protected(&value).unwrap(), header);
            let ec = TeeKey::ec();
            let key = if header.contains("RSA") { rsa_key() } else { &ec };
            let jwe = json!({
                "protected": URL_SAFE_NO_PAD.encode(&header),
                "encrypted_key": URL_SAFE_NO_PAD.encode([0u8; 40]),
                "iv": URL_SAFE_NO_PAD.encode([0u8; 12]),
                "ciphertext": "",
                "tag": URL_SAFE_NO_PAD.encode([0u8; 16]),
            });
            let err = decrypt(&jwe, key).unwrap_err().to_string();
            assert!(err.starts_with(PROTECTED_HEADER_NOT_CANONICAL), "{err}");
        }
    }

    /// Test-only encryption to `key`, producing what a correct server sends (canonical protected header, AAD = the
    /// `protected` string).
    fn encrypt(plaintext: &[u8], key: &TeeKey) -> Value {
        let mut rng = rand::rngs::OsRng;
        let mut cek = [0u8; 32];
        rng.fill_bytes(&mut cek);
        let (header, encrypted_key) = match key {
            TeeKey::Ec(secret) => {
                let eph = p256::SecretKey::random(&mut rng);
                let point = eph.public_key().to_encoded_point(false);
                let (x, y) = point.as_bytes()[1..].split_at(32);
                let epk = json!({
                    "crv": "P-256", "kty": "EC", "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y),
                });
                let shared = p256::ecdh::diffie_hellman(eph.to_nonzero_scalar(), secret.public_key().as_affine());
                let kek = concat_kdf_a256kw(shared.raw_secret_bytes());
                let mut wrapped = vec![0u8; 40];
                aes_kw::KekAes256::from(kek).wrap(&cek, &mut wrapped).unwrap();
                (format!(r#"{{"alg":"ECDH-ES+A256KW","enc":"A256GCM","epk":{}}}"#, jcs(&epk).unwrap()), wrapped)
            }
            TeeKey::Rsa(private) => {
                let wrapped = private.to_public_key().encrypt(&mut rng, Oaep::new::<Sha256>(), &cek).unwrap();
                (r#"{"alg":"RSA-OAEP-256","enc":"A256GCM"}"#.to_string(), wrapped)
            }
        };
        let protected = URL_SAFE_NO_PAD.encode(header);
        let mut iv = [0u8; 12];
        rng.fill_bytes(&mut iv);
        let mut ct = Aes256Gcm::new_from_slice(&cek)
            .unwrap()
            .encrypt(&Nonce::from(iv), Payload { msg: plaintext, aad: protected.as_bytes() })
            .unwrap();
        let tag = ct.split_off(ct.len() - 16);
        json!({
            "protected": protected,
            "encrypted_key": URL_SAFE_NO_PAD.encode(encrypted_key),
            "iv": URL_SAFE_NO_PAD.encode(iv),
            "ciphertext": URL_SAFE_NO_PAD.encode(ct),
            "tag": URL_SAFE_NO_PAD.encode(tag),
        })
    }

    fn round_trip(key: &TeeKey) {
        let secret = b"a secret resource \x00\xff";
        let jwe = encrypt(secret, key);
        assert_eq!(decrypt(&jwe, key).unwrap(), secret);
        assert_eq!(decrypt(&encrypt(b"", key), key).unwrap(), b"");

        // A flipped tag byte fails.
        let mut bad = jwe.clone();
        let mut tag = URL_SAFE_NO_PAD.decode(jwe["tag"].as_str().unwrap()).unwrap();
        tag[0] ^= 1;
        bad["tag"] = json!(URL_SAFE_NO_PAD.encode(tag));
        assert!(decrypt(&bad, key).unwrap_err().to_string().contains("AES-256-GCM"));

        // A flipped ciphertext byte fails.
        let mut bad = jwe.clone();
        let mut ct = URL_SAFE_NO_PAD.decode(jwe["ciphertext"].as_str().unwrap()).unwrap();
        ct[0] ^= 1;
        bad["ciphertext"] = json!(URL_SAFE_NO_PAD.encode(ct));
        assert!(decrypt(&bad, key).is_err());

        // Another key of the same kind cannot open it.
        let other = match key {
            TeeKey::Ec(_) => TeeKey::ec(),
            TeeKey::Rsa(_) => TeeKey::rsa(),
        };
        assert!(decrypt(&jwe, &other).is_err());
    }

    #[test]
    fn round_trip_ec() {
        round_trip(&TeeKey::ec());
    }

    #[test]
    fn round_trip_rsa() {
        round_trip(rsa_key());
    }

    #[test]
    fn wrong_alg_enc_and_key_type_are_refused() {
        let ec = TeeKey::ec();
        let jwe = encrypt(b"x", &ec);
        assert!(decrypt(&jwe, &TeeKey::rsa()).unwrap_err().to_string().contains("does not match"));

        let with_header = |h: &str| {
            let mut j = jwe.clone();
            j["protected"] = json!(URL_SAFE_NO_PAD.encode(h));
            j
        };
        let err = decrypt(&with_header(r#"{"alg":"RSA-OAEP-256","enc":"A128GCM"}"#), &ec).unwrap_err();
        assert!(err.to_string().contains("unsupported JWE enc"), "{err}");
        let err = decrypt(&with_header(r#"{"alg":"dir","enc":"A256GCM"}"#), &ec).unwrap_err();
        assert!(err.to_string().contains("unsupported JWE alg"), "{err}");
        let err = decrypt(&with_header(r#"{"alg":"RSA-OAEP-256"}"#), &ec).unwrap_err();
        assert!(err.to_string().contains("no `enc`"), "{err}");

        let mut j = jwe.clone();
        j["aad"] = json!("");
        assert!(decrypt(&j, &ec).is_err());
        let mut j = jwe.clone();
        j["iv"] = json!("!!");
        assert!(decrypt(&j, &ec).is_err());
    }

    #[test]
    fn jcs_sorts_keys_by_utf16_code_units() {
        // RFC 8785 §3.2.3 example.
        let input = r#"{"\u20ac":"Euro Sign","\r":"Carriage Return","\ufb33":"Hebrew Letter Dalet With Dagesh","1":"One","\ud83d\ude00":"Emoji: Grinning Face","\u0080":"Control","\u00f6":"Latin Small Letter O With Diaeresis"}"#;
        let expected = "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\u{80}\":\"Control\",\
            \"\u{f6}\":\"Latin Small Letter O With Diaeresis\",\"\u{20ac}\":\"Euro Sign\",\
            \"\u{1f600}\":\"Emoji: Grinning Face\",\"\u{fb33}\":\"Hebrew Letter Dalet With Dagesh\"}";
        assert_eq!(jcs(&serde_json::from_str(input).unwrap()).unwrap(), expected);
        // Nested objects and arrays, no whitespace.
        let v = json!({"b": [3, {"z": 1, "a": null}], "a": {"y": true, "x": false}, "": -7});
        assert_eq!(jcs(&v).unwrap(), r#"{"":-7,"a":{"x":false,"y":true},"b":[3,{"a":null,"z":1}]}"#);
    }

    #[test]
    fn jcs_escapes_strings() {
        // RFC 8785 §3.2.2.2 example.
        let input = r#""\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/""#;
        assert_eq!(jcs(&serde_json::from_str(input).unwrap()).unwrap(), "\"\u{20ac}$\\u000f\\nA'B\\\"\\\\\\\\\\\"/\"");
        let v = json!("\u{8}\u{c}\n\r\t\u{0}\u{1f}\u{7f}<>&\u{2028}é");
        assert_eq!(jcs(&v).unwrap(), "\"\\b\\f\\n\\r\\t\\u0000\\u001f\u{7f}<>&\u{2028}é\"");
    }

    #[test]
    fn jcs_numbers() {
        assert_eq!(
            jcs(&json!([0, -1, 9007199254740991i64, u64::MAX])).unwrap(),
            "[0,-1,9007199254740991,18446744073709551615]"
        );
        assert!(jcs(&json!(1.5)).is_err());
        assert!(jcs(&serde_json::from_str("[1.0]").unwrap()).is_err());
    }

    #[test]
    fn token_claims_reads_exp() {
        let claims = token_claims(TRUSTEE_TOKEN).unwrap();
        assert_eq!(claims["exp"], 1795290927);
        assert_eq!(claims["iss"], "CoCo-Attestation-Service");
        // Prototype-server token (non-compact JSON inside).
        let proto = "eyJhbGciOiAiSFMyNTYiLCAidHlwIjogIkpXVCJ9.eyJpYXQiOiAxNzk1Mjg5NzMzLCAiZXhwIjogMTc5NTI5MDAzMywgImlzcyI6ICJndWFyZGlhbi1wcm90byIsICJ0ZWUtcHVia2V5IjogeyJrdHkiOiAiRUMiLCAiY3J2IjogIlAtMjU2IiwgImFsZyI6ICJFQ0RILUVTK0EyNTZLVyIsICJ4IjogImEzY3FzckhwY2lKTF9pU0RkS2lyVkY3dE5lT3l6M0o2NWxYYUpCSG9qem8iLCAieSI6ICJwbThyajV2OFhFLVZrbjdOOUhvaTJzOWsydUZQR2wyemNpdVNCdW5meE1JIn0sICJzdWJtb2RzIjogeyJjcHUwIjogeyJlYXIudmVyYWlzb24uYW5ub3RhdGVkLWV2aWRlbmNlIjogeyJzYW1wbGUiOiB7InN2biI6ICIxIn19fX19.Odca_vyV0ayA96VmovFD2ym9hSsfjwNriKtEixSZwSM";
        assert_eq!(token_claims(proto).unwrap()["exp"], 1795290033);
        assert!(token_claims("a.b").is_err());
        assert!(token_claims("a.!!.c").is_err());
    }
}
