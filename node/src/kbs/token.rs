//! The attestation token `/attest` returns (a JWT, ES256): what a node
//! verified, signed with the node's own key, so that any node of the cluster
//! can accept it as a Bearer token ("passport" mode) without asking the node
//! that issued it, which may be gone.
//!
//! The token binds the TEE public key from the attestation: resources are
//! only ever returned encrypted to that key, so a stolen token is useless
//! without the TEE's private key. It carries the verified claims rather than
//! a verdict, because which namespace a resource belongs to (and so which
//! policy applies) is only known at the resource request; every request
//! re-evaluates the namespace's current policy against them.
//!
//! Header: `alg` ES256, `typ` JWT, `kid` the issuing node's id, `jwk` its
//! P-256 key. A verifier checks the key's SHA-256 SPKI is the identity the
//! replicated state records for that node, so a token from a revoked node (no
//! longer a member) is refused, as is one from another cluster (`iss`).

use std::collections::BTreeMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use kbs_types::{Tee, TeePubKey};
use p256::elliptic_curve::sec1::{FromEncodedPoint, ToEncodedPoint};
use p256::pkcs8::{DecodePublicKey, EncodePublicKey};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::jws;
use crate::attest::{Claims, TcbStatus, TdAttributes, TdReport, TeeKind};
use crate::state::{NodeId, NodeIdentity};

/// How long a token is good for (the Trustee KBS uses five minutes too).
pub const TOKEN_SECS: u64 = 300;
/// Tolerated clock difference between nodes when checking `iat`.
const SKEW_SECS: u64 = 60;

/// What an attestation proved, as a session or a token carries it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Attested {
    /// The TEE kind the client named at `/auth`.
    pub tee: Tee,
    /// The key resources are encrypted to.
    #[serde(rename = "tee-pubkey")]
    pub tee_pubkey: TeePubKey,
    pub claims: PolicyClaims,
    /// Node that verified the evidence.
    pub node: NodeId,
    pub iat: u64,
    pub exp: u64,
    /// Unique token id (hex), for audit.
    pub jti: String,
}

/// Why a token is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("attestation token: {0}")]
    Malformed(String),
    #[error("the attestation token was issued by another cluster")]
    OtherCluster,
    #[error("the attestation token was issued by node {0}, which is not a member of this cluster (revoked?)")]
    UnknownIssuer(NodeId),
    #[error("the attestation token's key is not node {0}'s")]
    WrongKey(NodeId),
    #[error("the attestation token's signature is invalid")]
    BadSignature,
    #[error("the attestation token expired: attest again")]
    Expired,
    #[error("the attestation token is not valid yet (issued in the future)")]
    NotYetValid,
    #[error("the node key cannot sign tokens: {0}")]
    Signing(String),
}

/// The verified claims the namespace policies evaluate, in a form a token can carry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyClaims {
    pub tee: TeeKind,
    pub tcb_status: TcbStatus,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub advisory_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcb_override: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fmspc: Option<String>,
    pub td_attributes: TdAttributes,
    pub mrtd: String,
    pub rtmr: [String; 4],
    pub mrconfigid: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pcrs: BTreeMap<u8, String>,
}

impl From<&Claims> for PolicyClaims {
    fn from(c: &Claims) -> Self {
        PolicyClaims {
            tee: c.tee,
            tcb_status: c.tcb_status,
            advisory_ids: c.advisory_ids.clone(),
            tcb_override: c.tcb_override.map(str::to_string),
            fmspc: c.fmspc.map(hex::encode),
            td_attributes: c.td.td_attributes,
            mrtd: hex::encode(c.td.mrtd),
            rtmr: c.td.rtmr.map(hex::encode),
            mrconfigid: hex::encode(c.td.mrconfigid),
            pcrs: c.pcrs.iter().map(|(i, v)| (*i, hex::encode(v))).collect(),
        }
    }
}

impl PolicyClaims {
    /// Back to [`Claims`] for policy evaluation (the fields policies read; the rest zero).
    pub fn to_claims(&self) -> Result<Claims, TokenError> {
        fn arr<const N: usize>(h: &str, what: &str) -> Result<[u8; N], TokenError> {
            hex::decode(h)
                .ok()
                .and_then(|v| v.try_into().ok())
                .ok_or_else(|| TokenError::Malformed(format!("{what} is not {N} bytes of hex")))
        }
        // Only names this build knows map back (the field is `&'static str`).
        let tcb_override = match self.tcb_override.as_deref() {
            None => None,
            Some(n) if n == crate::attest::tdx::tcb::AZURE_QUIRK_NAME => {
                Some(crate::attest::tdx::tcb::AZURE_QUIRK_NAME)
            }
            Some(n) => return Err(TokenError::Malformed(format!("unknown TCB override {n:?}"))),
        };
        let mut rtmr = [[0u8; 48]; 4];
        for (i, r) in self.rtmr.iter().enumerate() {
            rtmr[i] = arr(r, "an RTMR")?;
        }
        let mut pcrs = BTreeMap::new();
        for (i, v) in &self.pcrs {
            pcrs.insert(*i, arr(v, "a PCR")?);
        }
        Ok(Claims {
            tee: self.tee,
            tcb_status: self.tcb_status,
            advisory_ids: self.advisory_ids.clone(),
            fmspc: self.fmspc.as_deref().map(|f| arr(f, "the FMSPC")).transpose()?,
            tcb_override,
            td: TdReport::measured(
                arr(&self.mrtd, "MRTD")?,
                rtmr,
                arr(&self.mrconfigid, "MRCONFIGID")?,
                self.td_attributes,
            ),
            pcrs,
            events: Vec::new(),
        })
    }
}

/// Sign `attested` as node `attested.node` of cluster `cluster_id`.
pub fn issue(
    attested: &Attested,
    cluster_id: &str,
    node_spki_der: &[u8],
    sign_der: impl FnOnce(&[u8]) -> Result<Vec<u8>, String>,
) -> Result<String, TokenError> {
    let key = p256::PublicKey::from_public_key_der(node_spki_der)
        .map_err(|e| TokenError::Signing(format!("the node key is not P-256: {e}")))?;
    let point = key.to_encoded_point(false);
    let (Some(x), Some(y)) = (point.x(), point.y()) else {
        return Err(TokenError::Signing("the node key is the identity point".into()));
    };
    let mut header = Map::new();
    header.insert("kid".into(), json!(attested.node.to_string()));
    header.insert("jwk".into(), json!({"crv": "P-256", "kty": "EC", "x": B64URL.encode(x), "y": B64URL.encode(y)}));
    let mut claims = serde_json::to_value(attested).map_err(|e| TokenError::Signing(e.to_string()))?;
    if let Value::Object(m) = &mut claims {
        m.insert("iss".into(), json!(issuer(cluster_id)));
    }
    jws::sign(header, &claims, sign_der).map_err(|e| TokenError::Signing(e.to_string()))
}

/// Verify a token at `now` for cluster `cluster_id`; `identity_of` gives a
/// member's identity (`None` for a node that is not a member).
pub fn verify(
    token: &str,
    cluster_id: &str,
    identity_of: impl Fn(NodeId) -> Option<NodeIdentity>,
    now: u64,
) -> Result<Attested, TokenError> {
    let decoded = jws::decode_unverified(token).map_err(|e| TokenError::Malformed(e.to_string()))?;
    let node: NodeId = decoded
        .header
        .get("kid")
        .and_then(Value::as_str)
        .and_then(|k| k.parse().ok())
        .ok_or_else(|| TokenError::Malformed("no node id (kid) in the header".into()))?;
    let jwk = decoded.header.get("jwk").ok_or_else(|| TokenError::Malformed("no key (jwk) in the header".into()))?;
    let spki = jwk_spki(jwk)?;
    let identity = identity_of(node).ok_or(TokenError::UnknownIssuer(node))?;
    if crate::net::ratls::identity_of(&spki) != identity {
        return Err(TokenError::WrongKey(node));
    }
    jws::verify_es256(&decoded, &spki).map_err(|_| TokenError::BadSignature)?;
    if decoded.claims.get("iss").and_then(Value::as_str) != Some(issuer(cluster_id).as_str()) {
        return Err(TokenError::OtherCluster);
    }
    let attested: Attested =
        serde_json::from_value(decoded.claims).map_err(|e| TokenError::Malformed(format!("claims: {e}")))?;
    if attested.node != node {
        return Err(TokenError::Malformed("the claims name another node than the header".into()));
    }
    if now >= attested.exp {
        return Err(TokenError::Expired);
    }
    if attested.iat > now + SKEW_SECS {
        return Err(TokenError::NotYetValid);
    }
    Ok(attested)
}

/// Most verified tokens a [`Memo`] remembers.
const MAX_MEMO: usize = 16_384;

/// Tokens whose signature was verified, by SHA-256 of the token: a Bearer
/// client sends the same token for minutes, and the ECDSA check is the
/// dearest part of a resource request. A remembered token still has its
/// expiry and its issuer's membership checked on every use.
#[derive(Default)]
pub struct Memo {
    seen: std::collections::HashMap<[u8; 32], (Attested, NodeIdentity)>,
}

impl Memo {
    /// [`verify`], remembering what verified.
    pub fn verify(
        &mut self,
        token: &str,
        cluster_id: &str,
        identity_of: impl Fn(NodeId) -> Option<NodeIdentity>,
        now: u64,
    ) -> Result<Attested, TokenError> {
        use sha2::{Digest, Sha256};
        let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some((attested, issuer)) = self.seen.get(&hash) {
            if now >= attested.exp {
                return Err(TokenError::Expired);
            }
            return match identity_of(attested.node) == Some(*issuer) {
                true => Ok(attested.clone()),
                false => Err(TokenError::UnknownIssuer(attested.node)),
            };
        }
        let attested = verify(token, cluster_id, &identity_of, now)?;
        let issuer = identity_of(attested.node).ok_or(TokenError::UnknownIssuer(attested.node))?;
        if self.seen.len() >= MAX_MEMO {
            self.seen.retain(|_, (a, _)| a.exp > now);
            if self.seen.len() >= MAX_MEMO {
                self.seen.clear();
            }
        }
        self.seen.insert(hash, (attested.clone(), issuer));
        Ok(attested)
    }
}

fn issuer(cluster_id: &str) -> String {
    format!("guardian:{cluster_id}")
}

/// The SPKI DER of a P-256 JWK.
fn jwk_spki(jwk: &Value) -> Result<Vec<u8>, TokenError> {
    let coord = |k: &str| -> Result<Vec<u8>, TokenError> {
        let s = jwk.get(k).and_then(Value::as_str).ok_or_else(|| TokenError::Malformed(format!("jwk has no {k}")))?;
        B64URL.decode(s).map_err(|_| TokenError::Malformed(format!("jwk {k} is not base64url")))
    };
    if jwk.get("kty").and_then(Value::as_str) != Some("EC") || jwk.get("crv").and_then(Value::as_str) != Some("P-256") {
        return Err(TokenError::Malformed("the header key is not a P-256 JWK".into()));
    }
    let (x, y) = (coord("x")?, coord("y")?);
    if x.len() != 32 || y.len() != 32 {
        return Err(TokenError::Malformed("jwk coordinates are not 32 bytes".into()));
    }
    let point = p256::EncodedPoint::from_affine_coordinates(x.as_slice().into(), y.as_slice().into(), false);
    let key = Option::<p256::PublicKey>::from(p256::PublicKey::from_encoded_point(&point))
        .ok_or_else(|| TokenError::Malformed("jwk is not a point on P-256".into()))?;
    let der = key.to_public_key_der().map_err(|e| TokenError::Malformed(e.to_string()))?;
    Ok(der.as_bytes().to_vec())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::attest::sim::SimMeasurements;

    pub(crate) fn attested() -> Attested {
        let m = SimMeasurements::from_label("coco-sample");
        Attested {
            tee: Tee::Sample,
            tee_pubkey: TeePubKey::EC {
                crv: "P-256".into(),
                alg: "ECDH-ES+A256KW".into(),
                x: "XUuIBLxWoswN6u07rIF1xz22nS8DqnTeQSPOnOHYutw".into(),
                y: "yhb6_IDADMsUPe8x8JRorjOmWV_y-ktGGsGDfYldSCA".into(),
            },
            claims: PolicyClaims {
                tee: TeeKind::Sim,
                tcb_status: TcbStatus::Simulated,
                advisory_ids: vec![],
                tcb_override: None,
                fmspc: None,
                td_attributes: TdAttributes(1 << 28),
                mrtd: hex::encode(m.mrtd),
                rtmr: m.rtmr.map(hex::encode),
                mrconfigid: hex::encode(m.mrconfigid),
                pcrs: BTreeMap::new(),
            },
            node: 2,
            iat: 1000,
            exp: 1000 + TOKEN_SECS,
            jti: "00".repeat(16),
        }
    }

    #[test]
    fn any_node_verifies_a_members_token_and_nothing_else() {
        let node = crate::net::ratls::cert::NodeKey::generate().unwrap();
        let spki = node.spki_der();
        let me = crate::net::ratls::identity_of(&spki);
        let a = attested();
        let token = issue(&a, "c1", &spki, |m| node.sign(m).map_err(|e| e.to_string())).unwrap();
        let members = |id: NodeId| (id == 2).then_some(me);
        let same = |x: &Attested| serde_json::to_value(x).unwrap();
        assert_eq!(same(&verify(&token, "c1", members, 1001).unwrap()), same(&a));
        assert_eq!(verify(&token, "c2", members, 1001).err(), Some(TokenError::OtherCluster));
        assert_eq!(verify(&token, "c1", |_| None, 1001).err(), Some(TokenError::UnknownIssuer(2)));
        let other = crate::net::ratls::identity_of(&crate::net::ratls::cert::NodeKey::generate().unwrap().spki_der());
        assert_eq!(verify(&token, "c1", |_| Some(other), 1001).err(), Some(TokenError::WrongKey(2)));
        assert_eq!(verify(&token, "c1", members, 1000 + TOKEN_SECS).err(), Some(TokenError::Expired));
        assert_eq!(verify(&token, "c1", members, 100).err(), Some(TokenError::NotYetValid));
        // A forged payload (longer expiry) under the same signature.
        let parts: Vec<&str> = token.split('.').collect();
        let mut claims: Value = serde_json::from_slice(&B64URL.decode(parts[1]).unwrap()).unwrap();
        claims["exp"] = json!(u64::MAX / 2);
        let forged = format!("{}.{}.{}", parts[0], B64URL.encode(claims.to_string()), parts[2]);
        assert_eq!(verify(&forged, "c1", members, 1001).err(), Some(TokenError::BadSignature));
        assert!(matches!(verify("not.a.token", "c1", members, 1001), Err(TokenError::Malformed(_))));
        assert_eq!(a.claims.to_claims().unwrap().td.mrtd, SimMeasurements::from_label("coco-sample").mrtd);
    }

    #[test]
    fn a_remembered_token_still_expires_and_dies_with_its_issuer() {
        let node = crate::net::ratls::cert::NodeKey::generate().unwrap();
        let me = crate::net::ratls::identity_of(&node.spki_der());
        let token = issue(&attested(), "c1", &node.spki_der(), |m| node.sign(m).map_err(|e| e.to_string())).unwrap();
        let mut memo = Memo::default();
        let members = |id: NodeId| (id == 2).then_some(me);
        assert!(memo.verify(&token, "c1", members, 1001).is_ok());
        assert!(memo.verify(&token, "c1", members, 1002).is_ok(), "remembered");
        assert_eq!(memo.verify(&token, "c1", |_| None, 1003).err(), Some(TokenError::UnknownIssuer(2)), "revoked");
        assert_eq!(memo.verify(&token, "c1", members, 1000 + TOKEN_SECS).err(), Some(TokenError::Expired));
        assert_eq!(
            memo.verify("x.y.z", "c1", members, 1001).err().map(|e| matches!(e, TokenError::Malformed(_))),
            Some(true)
        );
    }
}
