//! Loading real evidence from `tests/data/attestation/`.

use std::path::PathBuf;

use base64::Engine;

/// Root of the copied attestation test set.
pub fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/attestation")
}

pub fn path(rel: &str) -> PathBuf {
    data_dir().join(rel)
}

pub fn read(rel: &str) -> Vec<u8> {
    let p = path(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("test data {}: {e}", p.display()))
}

/// The TD quote inside a flashbots attested-tls Azure capture (base64url).
pub fn flashbots_td_quote(rel: &str) -> Vec<u8> {
    let doc: serde_yaml::Value = serde_yaml::from_slice(&read(rel)).expect("flashbots YAML");
    let b64 = doc["tdx_quote_base64"].as_str().expect("tdx_quote_base64");
    let b64: String = b64.chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(b64.trim_end_matches('=')).expect("base64url quote")
}

/// The hex `quote` field of a dstack quote report.
pub fn dstack_quote(rel: &str) -> Vec<u8> {
    let doc: serde_json::Value = serde_json::from_slice(&read(rel)).expect("dstack JSON");
    hex::decode(doc["quote"].as_str().expect("quote field")).expect("hex quote")
}
