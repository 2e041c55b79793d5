//! Vault KV v1 handlers for an unmodified Trustee KBS (see [`crate::kbs::vault`]).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;

use super::Coco;
use crate::daemon::workload::ServeError;
use crate::kbs::vault::{self, VaultError, VaultPath};
use crate::state::namespace::Writer;
use crate::state::tokens::Need;

pub fn routes() -> Router<Arc<Coco>> {
    Router::new().route("/v1/{*rest}", any(handle))
}

#[tracing::instrument(skip_all, name = "coco.vault", fields(method = %method, path = %rest))]
async fn handle(
    State(coco): State<Arc<Coco>>,
    method: Method,
    Path(rest): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match serve(&coco, &method, &rest, &headers, &body).await {
        Ok(resp) => resp,
        Err(e) => {
            if !matches!(e, VaultError::NotFound(_)) {
                tracing::info!(error = %e, "vault request refused");
            }
            let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            (status, axum::Json(e.body())).into_response()
        }
    }
}

async fn serve(
    coco: &Coco,
    method: &Method,
    rest: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, VaultError> {
    let path = vault::parse_path(rest)?;
    let write = match *method {
        Method::GET => false,
        Method::POST | Method::PUT | Method::DELETE => true,
        _ => return Err(VaultError::BadRequest(format!("method {method} is not part of KV v1 here"))),
    };
    let token_id = authorize(coco, headers, &path, write)?;
    let by = || format!("token:{token_id}");
    let ns = path.namespace.as_str();
    match *method {
        Method::GET => {
            let (version, value) = coco.value(ns, &path.key).await.map_err(from_serve)?;
            coco.audit("vault", "release", ns, &path.key, by(), version).await.map_err(VaultError::Unavailable)?;
            let request_id = hex::encode(rand::random::<[u8; 16]>());
            let body = vault::read_response(&request_id, &value);
            Ok(([(axum::http::header::CONTENT_TYPE, "application/json")], body.to_string()).into_response())
        }
        Method::DELETE => {
            coco.delete(ns, &path.key, Writer::Token { id: token_id.clone() }).await.map_err(from_serve)?;
            coco.audit("vault", "delete", ns, &path.key, by(), 0).await.map_err(VaultError::Unavailable)?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        _ => {
            let value = vault::parse_write(body)?;
            let version =
                coco.write(ns, &path.key, &value, Writer::Token { id: token_id.clone() }).await.map_err(from_serve)?;
            coco.audit("vault", "write", ns, &path.key, by(), version).await.map_err(VaultError::Unavailable)?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
    }
}

/// The `X-Vault-Token`, checked against the replicated state for this path.
fn authorize(coco: &Coco, headers: &HeaderMap, path: &VaultPath, write: bool) -> Result<String, VaultError> {
    let token = headers
        .get("x-vault-token")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| VaultError::Forbidden("permission denied: no X-Vault-Token".into()))?;
    let need = Need { namespace: &path.namespace, mount: Some(&path.mount), write };
    coco.check_token(token, need).map_err(|e| VaultError::Forbidden(format!("permission denied: {e}")))
}

fn from_serve(e: ServeError) -> VaultError {
    match e {
        ServeError::NoNamespace(_) | ServeError::NotFound(_) => VaultError::NotFound(e.to_string()),
        ServeError::Denied(m) | ServeError::Unauthenticated(m) => VaultError::Forbidden(m),
        ServeError::BadRequest(m) => VaultError::BadRequest(m),
        ServeError::Unavailable(m) => VaultError::Unavailable(m),
        ServeError::Internal(m) => VaultError::Internal(m),
    }
}
