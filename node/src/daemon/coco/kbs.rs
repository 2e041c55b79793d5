//! KBS protocol handlers (`/kbs/v0`): RCAR (`/auth`, `/attest`), resources
//! by cookie session or Bearer attestation token, and the admin writes.

use std::sync::{Arc, PoisonError};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use kbs_types::{Attestation, HashAlgorithm, Request};
use serde_json::json;

use super::Coco;
use crate::daemon::workload::ServeError;
use crate::kbs::evidence::EvidenceError;
use crate::kbs::session::{self, SessionId};
use crate::kbs::token::{self, Attested, PolicyClaims};
use crate::kbs::{binding, jwe, KbsError};
use crate::keys::KeyPath;
use crate::policy::Decision;
use crate::state::namespace::Writer;
use crate::state::tokens::Need;

const COOKIE: &str = "kbs-session-id";

pub fn routes() -> Router<Arc<Coco>> {
    Router::new()
        .route("/kbs/v0/auth", post(auth))
        .route("/kbs/v0/attest", post(attest))
        .route("/kbs/v0/resource/{repo}/{kind}/{tag}", get(resource).post(set_resource).delete(delete_resource))
        .route("/kbs/v0/resource-policy", post(policy_admin))
        .route("/kbs/v0/attestation-policy", post(policy_admin))
}

/// An error as the CoCo client reads it.
struct Failure(KbsError);

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        tracing::info!(error = %self.0, kind = self.0.type_name(), "kbs request refused");
        let status = StatusCode::from_u16(self.0.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, axum::Json(self.0.body())).into_response()
    }
}

impl From<KbsError> for Failure {
    fn from(e: KbsError) -> Self {
        Failure(e)
    }
}

type Answer = Result<Response, Failure>;

fn bad_json(what: &str, e: serde_json::Error) -> Failure {
    Failure(KbsError::InvalidRequest(format!("{what} is not valid: {e}")))
}

#[tracing::instrument(skip_all, name = "coco.kbs.auth")]
async fn auth(State(coco): State<Arc<Coco>>, body: Bytes) -> Answer {
    let req: Request = serde_json::from_slice(&body).map_err(|e| bad_json("the auth request", e))?;
    if !crate::kbs::version_supported(&req.version) {
        return Err(KbsError::ProtocolVersion(format!("KBS protocol {} is not served; use 0.4.x", req.version)).into());
    }
    coco.kbs_verifier().accepts(req.tee).map_err(evidence_error)?;
    let now = coco.now();
    let (id, challenge) = lock_sessions(&coco)
        .open(req.tee, now, &mut rand::thread_rng())
        .map_err(|e| KbsError::Unavailable(e.to_string()))?;
    let body = json!({ "nonce": challenge.nonce, "extra-params": "" });
    Ok(with_cookie(axum::Json(body).into_response(), &id, now + session::SESSION_SECS))
}

#[tracing::instrument(skip_all, name = "coco.kbs.attest")]
async fn attest(State(coco): State<Arc<Coco>>, headers: HeaderMap, body: Bytes) -> Answer {
    let id = cookie(&headers).ok_or_else(|| KbsError::Session("no kbs-session-id cookie: call /auth first".into()))?;
    let now = coco.now();
    // Spent whatever the verdict: a session attests once.
    let challenge = lock_sessions(&coco).take_challenge(&id, now).map_err(|e| KbsError::Session(e.to_string()))?;
    let att: Attestation = serde_json::from_slice(&body).map_err(|e| bad_json("the attestation", e))?;
    if att.runtime_data.nonce != challenge.nonce {
        return Err(KbsError::AttestationFailed("runtime-data.nonce is not this session's nonce".into()).into());
    }
    jwe::check_key(&att.runtime_data.tee_pubkey).map_err(|e| KbsError::InvalidRequest(e.to_string()))?;
    let digest = binding::runtime_data_digest(HashAlgorithm::Sha384, &challenge.nonce, &att.runtime_data.tee_pubkey)
        .map_err(|e| KbsError::InvalidRequest(e.to_string()))?;
    let claims = coco
        .kbs_verifier()
        .verify(challenge.tee, &att.tee_evidence.primary_evidence, &digest, now)
        .map_err(evidence_error)?;
    let node = &coco.serving.keys;
    let attested = Attested {
        tee: challenge.tee,
        tee_pubkey: att.runtime_data.tee_pubkey,
        claims: PolicyClaims::from(&claims),
        node: node.me,
        iat: now,
        exp: now + token::TOKEN_SECS,
        jti: hex::encode(rand::random::<[u8; 16]>()),
    };
    let token = token::issue(&attested, &hex::encode(node.cluster_id), &node.key.spki_der(), |m| {
        node.key.sign(m).map_err(|e| e.to_string())
    })
    .map_err(|e| KbsError::Internal(e.to_string()))?;
    tracing::info!(tee = %challenge.tee, jti = %attested.jti, "kbs attestation verified");
    let expires = lock_sessions(&coco).attested(&id, attested, now).map_err(|e| KbsError::Session(e.to_string()))?;
    Ok(with_cookie(axum::Json(json!({ "token": token })).into_response(), &id, expires))
}

#[tracing::instrument(skip_all, name = "coco.kbs.resource", fields(repo = %repo, key = %format!("{kind}/{tag}")))]
async fn resource(
    State(coco): State<Arc<Coco>>,
    Path((repo, kind, tag)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Answer {
    let now = coco.now();
    let attested = match (bearer(&headers), cookie(&headers)) {
        (Some(t), _) => coco.verify_token(t, now).map_err(|e| KbsError::TokenInvalid(e.to_string()))?,
        (None, Some(id)) => lock_sessions(&coco).get(&id, now).map_err(|e| KbsError::Session(e.to_string()))?,
        (None, None) => return Err(KbsError::TokenNotFound("Attestation Token not found".into()).into()),
    };
    let path = key_path(&repo, &kind, &tag)?;
    let doc = coco.serving.document(&repo).map_err(from_serve)?;
    let claims = attested.claims.to_claims().map_err(|e| KbsError::TokenInvalid(e.to_string()))?;
    let rule = match doc.workloads.evaluate(&claims) {
        Decision::Allow { rule } => rule,
        Decision::Deny { reason } => return Err(KbsError::PolicyDeny(reason).into()),
    };
    doc.may_read_key(&rule, path.as_str()).map_err(KbsError::PolicyDeny)?;
    let (version, value) = coco.value(&repo, &path).await.map_err(from_serve)?;
    let response = jwe::encrypt(&attested.tee_pubkey, &value, &mut rand::thread_rng())
        .map_err(|e| KbsError::InvalidRequest(e.to_string()))?;
    let by = format!("tee:{}:{rule}:{}@node{}", attested.tee, attested.jti, attested.node);
    coco.audit("kbs", "release", &repo, &path, by, version).await.map_err(KbsError::Unavailable)?;
    let body = serde_json::to_string(&response).map_err(|e| KbsError::Internal(e.to_string()))?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// `kbs-client config set-resource`: the raw body becomes the key, with a read-write access token as Bearer.
#[tracing::instrument(skip_all, name = "coco.kbs.set_resource", fields(repo = %repo, key = %format!("{kind}/{tag}")))]
async fn set_resource(
    State(coco): State<Arc<Coco>>,
    Path((repo, kind, tag)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let path = key_path(&repo, &kind, &tag)?;
    let by = admin(&coco, &headers, &repo)?;
    crate::kbs::vault::check_len(body.len()).map_err(KbsError::InvalidRequest)?;
    let value = zeroize::Zeroizing::new(body.to_vec());
    let who = by.to_string();
    let version = coco.write(&repo, &path, &value, by).await.map_err(from_serve)?;
    coco.audit("kbs", "write", &repo, &path, who, version).await.map_err(KbsError::Unavailable)?;
    Ok(StatusCode::OK.into_response())
}

#[tracing::instrument(skip_all, name = "coco.kbs.delete_resource", fields(repo = %repo, key = %format!("{kind}/{tag}")))]
async fn delete_resource(
    State(coco): State<Arc<Coco>>,
    Path((repo, kind, tag)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Answer {
    let path = key_path(&repo, &kind, &tag)?;
    let by = admin(&coco, &headers, &repo)?;
    let who = by.to_string();
    coco.delete(&repo, &path, by).await.map_err(from_serve)?;
    coco.audit("kbs", "delete", &repo, &path, who, 0).await.map_err(KbsError::Unavailable)?;
    Ok(StatusCode::OK.into_response())
}

/// Resource and attestation policies are Rego in the Trustee KBS; here they
/// are the namespace policy document, set with guardctl and checked on apply.
async fn policy_admin() -> Answer {
    Err(KbsError::NotImplemented(
        "KBS Rego policies are not used: a namespace's policy document decides (guardctl policy set; docs/coco.md)"
            .into(),
    )
    .into())
}

/// An admin write: as Bearer, an admin's EdDSA JWT (kbs-client
/// `--auth-private-key`) or a read-write access token of the namespace.
fn admin(coco: &Coco, headers: &HeaderMap, ns: &str) -> Result<Writer, Failure> {
    let bearer = bearer(headers).ok_or_else(|| {
        KbsError::AdminAuth(
            "admin requests need an admin's token (kbs-client --auth-private-key, see guardctl token kbs-admin-key) or a read-write access token as Bearer".into(),
        )
    })?;
    let writer = if crate::kbs::admin::looks_like_jwt(bearer) {
        let now = coco.now();
        coco.serving
            .keys
            .view
            .with_state(|s| crate::kbs::admin::verify(bearer, &s.admins, now))
            .map(|key_id| Writer::Admin { key_id, jwt: bearer.to_string() })
            .map_err(|e| KbsError::AdminAuth(e.to_string()))?
    } else {
        let need = Need { namespace: ns, mount: None, write: true };
        coco.check_token(bearer, need).map(|id| Writer::Token { id }).map_err(|e| KbsError::AdminAuth(e.to_string()))?
    };
    Ok(writer)
}

/// Evidence refusals as the client reads them: 400 where attesting again cannot help.
fn evidence_error(e: EvidenceError) -> Failure {
    Failure(match e {
        EvidenceError::Unsupported(_) | EvidenceError::SampleDisabled | EvidenceError::Malformed { .. } => {
            KbsError::InvalidRequest(e.to_string())
        }
        EvidenceError::NoCollateral => KbsError::Unavailable(e.to_string()),
        EvidenceError::Refused(_) | EvidenceError::Binding(_) => KbsError::AttestationFailed(e.to_string()),
    })
}

fn key_path(repo: &str, kind: &str, tag: &str) -> Result<KeyPath, Failure> {
    crate::policy::NamespaceName::new(repo).map_err(|e| KbsError::InvalidRequest(format!("repository: {e}")))?;
    let path = KeyPath::parse(&format!("{kind}/{tag}")).map_err(|e| KbsError::InvalidRequest(e.to_string()))?;
    if path.is_workload_sealed() {
        return Err(KbsError::InvalidRequest("sealed/ secrets are delivered through configs".into()).into());
    }
    Ok(path)
}

fn from_serve(e: ServeError) -> Failure {
    Failure(match e {
        ServeError::NoNamespace(_) | ServeError::NotFound(_) => KbsError::ResourceNotFound(e.to_string()),
        ServeError::Denied(m) | ServeError::Unauthenticated(m) => KbsError::PolicyDeny(m),
        ServeError::BadRequest(m) => KbsError::InvalidRequest(m),
        ServeError::Unavailable(m) => KbsError::Unavailable(m),
        ServeError::Internal(m) => KbsError::Internal(m),
    })
}

fn lock_sessions(coco: &Coco) -> std::sync::MutexGuard<'_, session::Sessions> {
    coco.sessions.lock().unwrap_or_else(PoisonError::into_inner)
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    v.strip_prefix("Bearer ").map(str::trim).filter(|t| !t.is_empty())
}

fn cookie(headers: &HeaderMap) -> Option<SessionId> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix(COOKIE).and_then(|r| r.strip_prefix('=')))
        .and_then(session::parse_id)
}

fn with_cookie(mut resp: Response, id: &SessionId, expires: u64) -> Response {
    let when = time::OffsetDateTime::from_unix_timestamp(expires as i64).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    // IMF-fixdate, as the Trustee KBS sends it.
    let date = format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        &when.weekday().to_string()[..3],
        when.day(),
        &when.month().to_string()[..3],
        when.year(),
        when.hour(),
        when.minute(),
        when.second()
    );
    if let Ok(v) = HeaderValue::from_str(&format!("{COOKIE}={}; Expires={date}", hex::encode(id))) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}
