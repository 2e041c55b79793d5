//! guardctl's KBS client (the KBS loads of `guardctl bench`, a step of
//! `guardctl dev demo`): the Confidential Containers KBS protocol as a CoCo
//! guest speaks it to a node's CoCo port (HTTPS/1.1): `/auth` for a session nonce, `/attest` with evidence bound to
//! that nonce and a TEE key, then `/resource` by session cookie or by the
//! attestation token as Bearer.
//!
//! Why a client of its own: the bench loads measure the KBS front end the way an
//! unmodified guest uses it (JSON over HTTP/1.1, cookie sessions, node-signed
//! tokens, resources sealed to the TEE key), which the gRPC workload client
//! cannot exercise. It plays the dev cluster's simulated workload TEE
//! (INSECURE), sending that evidence under TEE "sample", which only
//! development nodes accept, and it trusts the dev cluster's CoCo CA
//! (`coco-ca.pem`). The bench loads check resources are JWE without opening
//! them; `guardctl dev demo` opens one ([`KbsClient::fetch`]).
//!
//! HTTP/1.1 carries one request at a time on a connection, so each benchmark
//! task gets a keep-alive connection of its own ([`KbsClient`]), reopened when
//! it dies (the node closes a kept-alive connection after 10 s without a
//! request, e.g. between two KBS loads with others in between).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use guardian_node::attest::sim::SimTee;
use guardian_node::kbs::binding::runtime_data_digest;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE, COOKIE, HOST, SET_COOKIE};
use hyper::{Method, StatusCode};
use hyper_util::rt::TokioIo;
use kbs_types::{Attestation, CompositeEvidence, HashAlgorithm, RuntimeData, Tee, TeePubKey};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{json, Value};
use tokio::sync::Mutex;

/// The session cookie `/auth` sets and `/attest` and `/resource` read.
const COOKIE_NAME: &str = "kbs-session-id";
/// The KBS protocol version asked for (the one the Trustee KBS and the guardian serve).
const PROTOCOL_VERSION: &str = "0.4.0";
/// The name the dev cluster's CoCo certificates are issued for (besides localhost).
const SERVER_NAME: &str = "127.0.0.1";
/// Longest wait for one answer, body included, before the connection is given up.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait to open a connection (TCP and TLS).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest answer read (a resource is a few hundred bytes of JWE).
const MAX_BODY: usize = 1 << 20;

type Sender = SendRequest<Full<Bytes>>;

/// One node's CoCo port, how to reach it, and what the loads ask it for.
pub struct Endpoint {
    tls: tokio_rustls::TlsConnector,
    addr: String,
    tee: Arc<SimTee>,
    /// `/kbs/v0/resource/{repository}/{type}/{tag}`.
    resource: String,
}

impl Endpoint {
    /// The CoCo port at `addr` of the dev cluster in `dir` (trusting its `coco-ca.pem`), as the
    /// simulated workload `tee`, reading resource `key` (`type/tag`) of repository (namespace) `repo`.
    pub fn new(dir: &Path, addr: &str, tee: Arc<SimTee>, repo: &str, key: &str) -> anyhow::Result<Self> {
        let ca_path = dir.join("coco-ca.pem");
        let ca = CertificateDer::from_pem_file(&ca_path)
            .with_context(|| format!("reading the dev cluster's CoCo CA {}", ca_path.display()))?;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca).with_context(|| format!("{}: not a usable CA certificate", ca_path.display()))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Endpoint {
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
            addr: addr.to_string(),
            tee,
            resource: format!("/kbs/v0/resource/{repo}/{key}"),
        })
    }

    /// A new HTTPS/1.1 connection; its I/O runs on a task of its own until either side closes it.
    async fn connect(&self) -> anyhow::Result<Sender> {
        let open = async {
            let tcp = tokio::net::TcpStream::connect(&self.addr).await.context("TCP connect")?;
            tcp.set_nodelay(true)?;
            let name = ServerName::try_from(SERVER_NAME)?;
            let tls = self.tls.connect(name, tcp).await.context("TLS handshake")?;
            let (sender, conn) =
                hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.context("HTTP/1.1 handshake")?;
            tokio::spawn(async move {
                // Its end (an error included) shows as a closed sender; the next request reconnects.
                let _ = conn.await;
            });
            anyhow::Ok(sender)
        };
        tokio::time::timeout(CONNECT_TIMEOUT, open)
            .await
            .map_err(|_| anyhow::anyhow!("timed out"))
            .and_then(|r| r)
            .with_context(|| format!("connecting to the CoCo port {}", self.addr))
    }
}

/// How a resource request shows it attested.
#[derive(Clone, Copy)]
pub enum Auth<'a> {
    /// `Cookie: kbs-session-id=...` of an attested session.
    Cookie(&'a str),
    /// `Authorization: Bearer <attestation token>`.
    Bearer(&'a str),
}

/// What an attestation gave: the session's cookie and the attestation token.
pub struct Attested {
    /// The `Cookie` header value (`kbs-session-id=<hex>`).
    pub cookie: String,
    pub token: String,
}

/// One benchmark task's client: a keep-alive connection (reopened when it dies) and a TEE key.
/// Cheap to clone; clones share the connection, and take turns on it.
#[derive(Clone)]
pub struct KbsClient {
    endpoint: Arc<Endpoint>,
    link: Arc<Mutex<Option<Sender>>>,
    tee_key: Arc<p256::SecretKey>,
    tee_pubkey: Arc<TeePubKey>,
}

/// An answer, body read.
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl KbsClient {
    /// Open a connection to `endpoint`, with a new TEE key.
    pub async fn open(endpoint: Arc<Endpoint>) -> anyhow::Result<Self> {
        let sender = endpoint.connect().await?;
        let tee_key = p256::SecretKey::random(&mut rand::thread_rng());
        let tee_pubkey = Arc::new(tee_jwk(&tee_key)?);
        Ok(KbsClient { endpoint, link: Arc::new(Mutex::new(Some(sender))), tee_key: Arc::new(tee_key), tee_pubkey })
    }

    /// The same TEE key on a connection to another node (a pod whose KBS address moved).
    pub async fn moved_to(&self, endpoint: Arc<Endpoint>) -> anyhow::Result<Self> {
        let sender = endpoint.connect().await?;
        Ok(KbsClient {
            endpoint,
            link: Arc::new(Mutex::new(Some(sender))),
            tee_key: self.tee_key.clone(),
            tee_pubkey: self.tee_pubkey.clone(),
        })
    }

    /// `/auth` then `/attest`: a session attested with fresh evidence, and its token.
    pub async fn attest(&self) -> anyhow::Result<Attested> {
        let reply = self.send(Method::POST, "/kbs/v0/auth", None, auth_body()?).await?;
        let body = expect_ok("/auth", &reply)?;
        let nonce = nonce_of(body)?;
        let cookie = session_cookie(&reply.headers)?;
        let attestation = attest_body(&self.endpoint.tee, &nonce, &self.tee_pubkey)?;
        let reply = self.send(Method::POST, "/kbs/v0/attest", Some(Auth::Cookie(&cookie)), attestation).await?;
        let token = token_of(expect_ok("/attest", &reply)?)?;
        Ok(Attested { cookie, token })
    }

    /// `/resource`: the benchmark's resource, sealed to this client's TEE key.
    pub async fn resource(&self, auth: Auth<'_>) -> anyhow::Result<()> {
        let path = self.endpoint.resource.clone();
        let reply = self.send(Method::GET, &path, Some(auth), Bytes::new()).await?;
        check_resource(expect_ok("/resource", &reply)?)
    }

    /// `/resource`, opened with this client's TEE key, as the guest's CDH does.
    pub async fn fetch(&self, auth: Auth<'_>) -> anyhow::Result<zeroize::Zeroizing<Vec<u8>>> {
        let path = self.endpoint.resource.clone();
        let reply = self.send(Method::GET, &path, Some(auth), Bytes::new()).await?;
        let jwe: kbs_types::Response =
            serde_json::from_slice(expect_ok("/resource", &reply)?).context("/resource: the answer is not a JWE")?;
        guardian_node::kbs::jwe::decrypt_ec(&jwe, &self.tee_key).context("/resource")
    }

    /// The whole handshake a guest does at start-up: auth, attest, resource by session cookie.
    pub async fn handshake(&self) -> anyhow::Result<()> {
        let attested = self.attest().await?;
        self.resource(Auth::Cookie(&attested.cookie)).await
    }

    /// One request on this client's connection. A kept-alive connection the node has closed in
    /// the meantime is replaced, and the request sent again once if it had not gone out.
    async fn send(&self, method: Method, path: &str, auth: Option<Auth<'_>>, body: Bytes) -> anyhow::Result<Reply> {
        let mut link = self.link.lock().await;
        loop {
            let mut reused = true;
            if link.as_ref().is_none_or(Sender::is_closed) {
                *link = None;
                *link = Some(self.endpoint.connect().await?);
                reused = false;
            }
            let Some(sender) = link.as_mut() else { anyhow::bail!("no connection to {}", self.endpoint.addr) };
            if let Err(e) = sender.ready().await {
                *link = None;
                if reused {
                    continue;
                }
                return Err(anyhow::Error::new(e).context(format!("{method} {path}: connection lost")));
            }
            let request = build_request(&self.endpoint.addr, &method, path, auth, body.clone())?;
            let answer = tokio::time::timeout(REQUEST_TIMEOUT, async {
                let response = sender.try_send_request(request).await?;
                let (parts, incoming) = response.into_parts();
                let body = Limited::new(incoming, MAX_BODY).collect().await.map_err(ReadError)?.to_bytes();
                Ok::<_, SendError>(Reply { status: parts.status, headers: parts.headers, body })
            })
            .await;
            match answer {
                Ok(Ok(reply)) => return Ok(reply),
                Ok(Err(SendError::Send(mut e))) => {
                    *link = None;
                    if reused && e.take_message().is_some() {
                        continue;
                    }
                    return Err(anyhow::Error::new(e.into_error()).context(format!("{method} {path}")));
                }
                Ok(Err(SendError::Read(e))) => {
                    *link = None;
                    return Err(anyhow::anyhow!("{method} {path}: reading the answer: {}", e.0));
                }
                Err(_) => {
                    *link = None;
                    anyhow::bail!("{method} {path}: no answer within {} s", REQUEST_TIMEOUT.as_secs());
                }
            }
        }
    }
}

/// Why a request failed on the wire.
enum SendError {
    /// Not sent, or no answer (the request comes back when it never went out).
    Send(Box<hyper::client::conn::TrySendError<hyper::Request<Full<Bytes>>>>),
    Read(ReadError),
}

struct ReadError(Box<dyn std::error::Error + Send + Sync>);

impl From<hyper::client::conn::TrySendError<hyper::Request<Full<Bytes>>>> for SendError {
    fn from(e: hyper::client::conn::TrySendError<hyper::Request<Full<Bytes>>>) -> Self {
        SendError::Send(Box::new(e))
    }
}

impl From<ReadError> for SendError {
    fn from(e: ReadError) -> Self {
        SendError::Read(e)
    }
}

fn build_request(
    addr: &str,
    method: &Method,
    path: &str,
    auth: Option<Auth<'_>>,
    body: Bytes,
) -> anyhow::Result<hyper::Request<Full<Bytes>>> {
    let mut req = hyper::Request::builder().method(method.clone()).uri(path).header(HOST, addr);
    if !body.is_empty() {
        req = req.header(CONTENT_TYPE, "application/json");
    }
    req = match auth {
        Some(Auth::Cookie(c)) => req.header(COOKIE, c),
        Some(Auth::Bearer(t)) => req.header(AUTHORIZATION, format!("Bearer {t}")),
        None => req,
    };
    req.body(Full::new(body)).with_context(|| format!("building {method} {path}"))
}

/// The public half of a P-256 TEE key as the CoCo attestation agent sends it (a JWK for
/// ECDH-ES+A256KW).
fn tee_jwk(key: &p256::SecretKey) -> anyhow::Result<TeePubKey> {
    use p256::elliptic_curve::sec1::ToEncodedPoint;
    let point = key.public_key().to_encoded_point(false);
    let (Some(x), Some(y)) = (point.x(), point.y()) else { anyhow::bail!("P-256 public key without coordinates") };
    Ok(TeePubKey::EC {
        crv: "P-256".into(),
        alg: "ECDH-ES+A256KW".into(),
        x: URL_SAFE_NO_PAD.encode(x),
        y: URL_SAFE_NO_PAD.encode(y),
    })
}

/// The `/auth` request: protocol 0.4.0, TEE "sample".
fn auth_body() -> anyhow::Result<Bytes> {
    let req = kbs_types::Request { version: PROTOCOL_VERSION.into(), tee: Tee::Sample, extra_params: json!({}) };
    Ok(serde_json::to_vec(&req)?.into())
}

/// The `/attest` request: evidence from `tee` whose report data is the runtime-data digest of
/// `nonce` and `tee_pubkey` (SHA-384, zero-padded to 64 bytes), as the CoCo attester binds it.
fn attest_body(tee: &SimTee, nonce: &str, tee_pubkey: &TeePubKey) -> anyhow::Result<Bytes> {
    let digest = runtime_data_digest(HashAlgorithm::Sha384, nonce, tee_pubkey)?;
    let mut report_data = [0u8; 64];
    report_data
        .get_mut(..digest.len())
        .ok_or_else(|| anyhow::anyhow!("a runtime-data digest of {} bytes does not fit report data", digest.len()))?
        .copy_from_slice(&digest);
    let evidence: Value =
        serde_json::from_slice(&tee.evidence(&report_data)).context("the simulated TEE's evidence is not JSON")?;
    let attestation = Attestation {
        init_data: None,
        runtime_data: RuntimeData { nonce: nonce.to_string(), tee_pubkey: tee_pubkey.clone() },
        tee_evidence: CompositeEvidence { primary_evidence: evidence, additional_evidence: String::new() },
    };
    Ok(serde_json::to_vec(&attestation)?.into())
}

/// The body of a 200 answer, or the KBS error it is (`{"type","detail"}`), reported by its detail.
fn expect_ok<'r>(what: &str, reply: &'r Reply) -> anyhow::Result<&'r [u8]> {
    if reply.status == StatusCode::OK {
        return Ok(&reply.body);
    }
    let parsed: Option<Value> = serde_json::from_slice(&reply.body).ok();
    let field = |k: &str| parsed.as_ref().and_then(|v| v.get(k)).and_then(Value::as_str).map(str::to_string);
    let detail = field("detail").unwrap_or_else(|| String::from_utf8_lossy(&reply.body).chars().take(200).collect());
    match field("type") {
        Some(t) => {
            anyhow::bail!("{what}: HTTP {}: {detail} ({})", reply.status.as_u16(), t.rsplit('/').next().unwrap_or(&t))
        }
        None => anyhow::bail!("{what}: HTTP {}: {detail}", reply.status.as_u16()),
    }
}

/// The nonce of an `/auth` answer.
fn nonce_of(body: &[u8]) -> anyhow::Result<String> {
    let v: Value = serde_json::from_slice(body).context("/auth: the answer is not JSON")?;
    v.get("nonce")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .ok_or_else(|| anyhow::anyhow!("/auth: the answer has no nonce"))
}

/// The `Cookie` header value for the session an `/auth` answer opened (`kbs-session-id=<hex>`).
fn session_cookie(headers: &HeaderMap) -> anyhow::Result<String> {
    headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v: &HeaderValue| v.to_str().ok())
        .find_map(|v| {
            let first = v.split(';').next()?.trim();
            let id = first.strip_prefix(COOKIE_NAME)?.strip_prefix('=')?;
            (!id.is_empty() && id.bytes().all(|b| b.is_ascii_hexdigit())).then(|| format!("{COOKIE_NAME}={id}"))
        })
        .ok_or_else(|| anyhow::anyhow!("/auth: the answer sets no {COOKIE_NAME} cookie"))
}

/// The attestation token of an `/attest` answer.
fn token_of(body: &[u8]) -> anyhow::Result<String> {
    let v: Value = serde_json::from_slice(body).context("/attest: the answer is not JSON")?;
    v.get("token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .ok_or_else(|| anyhow::anyhow!("/attest: the answer has no token"))
}

/// A resource answer must be a JWE (flattened JSON serialisation, with a ciphertext).
fn check_resource(body: &[u8]) -> anyhow::Result<()> {
    let v: Value = serde_json::from_slice(body).context("/resource: the answer is not JSON")?;
    match v.get("ciphertext") {
        Some(Value::String(_)) => Ok(()),
        _ => anyhow::bail!("/resource: the answer is not a JWE (no ciphertext)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use guardian_node::attest::sim::{self, SimMeasurements, SimTrust};
    use guardian_node::attest::VerifyOptions;

    fn tee() -> SimTee {
        SimTee::new(&[7; 32], SimMeasurements::from_label("bench-test"))
    }

    #[test]
    fn the_tee_key_is_one_the_node_seals_to() {
        let key = tee_jwk(&p256::SecretKey::random(&mut rand::thread_rng())).unwrap();
        guardian_node::kbs::jwe::check_key(&key).unwrap();
        let jwk = serde_json::to_value(&key).unwrap();
        assert_eq!(jwk["kty"], "EC");
        assert_eq!(jwk["crv"], "P-256");
        assert_eq!(jwk["alg"], "ECDH-ES+A256KW");
        assert_ne!(
            serde_json::to_value(tee_jwk(&p256::SecretKey::random(&mut rand::thread_rng())).unwrap()).unwrap(),
            jwk
        );
    }

    #[test]
    fn the_auth_request_asks_for_sample_evidence_in_protocol_0_4_0() {
        let v: Value = serde_json::from_slice(&auth_body().unwrap()).unwrap();
        assert_eq!(v, json!({"version": "0.4.0", "tee": "sample", "extra-params": {}}));
    }

    #[test]
    fn the_attest_request_binds_the_nonce_and_key_in_the_evidence() {
        let tee = tee();
        let key = tee_jwk(&p256::SecretKey::random(&mut rand::thread_rng())).unwrap();
        let nonce = "QaR4v4JxOrRxs2tClOTfi0KNECKeQfxioIaU9B5nRfo=";
        let body = attest_body(&tee, nonce, &key).unwrap();
        // The shape the node (and the Trustee KBS) parses.
        let raw: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(raw["init-data"], Value::Null);
        assert_eq!(raw["runtime-data"]["nonce"], nonce);
        assert_eq!(raw["tee-evidence"]["additional_evidence"], "");
        assert!(raw["tee-evidence"]["primary_evidence"]["insecure"].is_string());
        let att: Attestation = serde_json::from_slice(&body).unwrap();
        assert_eq!(serde_json::to_value(&att.runtime_data.tee_pubkey).unwrap(), serde_json::to_value(&key).unwrap());
        // The evidence verifies against the digest the node computes, and no other.
        let digest = runtime_data_digest(HashAlgorithm::Sha384, nonce, &key).unwrap();
        assert_eq!(digest.len(), 48);
        let evidence = serde_json::to_vec(&att.tee_evidence.primary_evidence).unwrap();
        let trust = SimTrust::insecure_for_development(&[tee.public_key()]).unwrap();
        let opts = |nonce: Vec<u8>| VerifyOptions { expected_nonce: Some(nonce), ..VerifyOptions::at(1_700_000_000) };
        let claims = sim::verify(&evidence, Some(&trust), &opts(digest.clone())).unwrap();
        assert_eq!(&claims.report_data()[..48], &digest[..]);
        assert_eq!(claims.report_data()[48..], [0; 16]);
        let other = runtime_data_digest(HashAlgorithm::Sha384, "another nonce", &key).unwrap();
        assert!(sim::verify(&evidence, Some(&trust), &opts(other)).is_err());
    }

    #[test]
    fn the_session_cookie_is_read_from_set_cookie() {
        let mut h = HeaderMap::new();
        assert!(session_cookie(&h).is_err());
        h.append(SET_COOKIE, HeaderValue::from_static("other=1; Path=/"));
        h.append(
            SET_COOKIE,
            HeaderValue::from_static(
                "kbs-session-id=00112233445566778899aabbccddeeff; Expires=Thu, 01 Jan 2026 00:05:00 GMT",
            ),
        );
        assert_eq!(session_cookie(&h).unwrap(), "kbs-session-id=00112233445566778899aabbccddeeff");
        for bad in
            ["kbs-session-id=; Expires=x", "kbs-session-idx=00", "kbs-session-id=zz", "Expires=x; kbs-session-id=00"]
        {
            let mut h = HeaderMap::new();
            h.append(SET_COOKIE, HeaderValue::from_static(bad));
            assert!(session_cookie(&h).is_err(), "{bad}");
        }
    }

    #[test]
    fn answers_are_read_without_trusting_them() {
        assert_eq!(nonce_of(br#"{"nonce":"abc","extra-params":""}"#).unwrap(), "abc");
        for bad in [&b"not json"[..], br#"{"nonce":7}"#, br#"{"nonce":""}"#, b"[]"] {
            assert!(nonce_of(bad).is_err());
        }
        assert_eq!(token_of(br#"{"token":"a.b.c"}"#).unwrap(), "a.b.c");
        assert!(token_of(br#"{"token":null}"#).is_err());
        assert!(check_resource(br#"{"protected":"p","encrypted_key":"k","iv":"i","ciphertext":"c","tag":"t"}"#).is_ok());
        assert!(check_resource(br#"{"protected":"p"}"#).is_err());
        assert!(check_resource(b"\xff").is_err());
    }

    #[test]
    fn refusals_are_reported_by_their_detail() {
        let reply = |status: u16, body: &'static [u8]| Reply {
            status: StatusCode::from_u16(status).unwrap(),
            headers: HeaderMap::new(),
            body: Bytes::from_static(body),
        };
        let ok = reply(200, b"{}");
        assert_eq!(expect_ok("/auth", &ok).unwrap(), b"{}");
        let denied = reply(
            401,
            br#"{"type":"https://github.com/confidential-containers/kbs/errors/PolicyDeny","detail":"no rule admits this TEE"}"#,
        );
        assert_eq!(
            expect_ok("/resource", &denied).unwrap_err().to_string(),
            "/resource: HTTP 401: no rule admits this TEE (PolicyDeny)"
        );
        let plain = reply(502, b"bad gateway");
        assert_eq!(expect_ok("/attest", &plain).unwrap_err().to_string(), "/attest: HTTP 502: bad gateway");
    }

    #[test]
    fn requests_carry_host_and_the_chosen_authentication() {
        for auth in [Auth::Cookie("kbs-session-id=00"), Auth::Bearer("a.b.c")] {
            let req = build_request(
                "127.0.0.1:1",
                &Method::GET,
                "/kbs/v0/resource/bench/pvc/bench",
                Some(auth),
                Bytes::new(),
            )
            .unwrap();
            assert_eq!(req.headers()[HOST], "127.0.0.1:1");
            assert!(req.headers().get(CONTENT_TYPE).is_none());
            match auth {
                Auth::Cookie(c) => assert_eq!(req.headers()[COOKIE], c),
                Auth::Bearer(t) => assert_eq!(req.headers()[AUTHORIZATION], format!("Bearer {t}").as_str()),
            }
        }
        let req = build_request("h", &Method::POST, "/kbs/v0/auth", None, auth_body().unwrap()).unwrap();
        assert_eq!(req.headers()[CONTENT_TYPE], "application/json");
    }
}
