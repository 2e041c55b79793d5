//! A plain HTTPS/1.1 client for the CoCo port tests: sends exactly the
//! method, path, headers and body it is given (to replay captured traffic),
//! trusting the dev cluster's CoCo CA (`coco-ca.pem`).

use std::path::Path;
use std::sync::Arc;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;

/// An answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    /// The body as JSON (Null if it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// `{"type","detail"}` error of the KBS protocol: the type's last segment.
    pub fn kbs_error(&self) -> String {
        let v = self.json();
        let t = v["type"].as_str().unwrap_or_default();
        assert!(v["detail"].is_string(), "a KBS error has a detail: {v}");
        t.rsplit('/').next().unwrap_or_default().to_string()
    }
}

/// An HTTPS client trusting one CA.
#[derive(Clone)]
pub struct Https {
    config: Arc<rustls::ClientConfig>,
}

impl Https {
    /// Trust the CoCo CA of the dev cluster in `dir`.
    pub fn for_cluster(dir: &Path) -> Self {
        let mut roots = rustls::RootCertStore::empty();
        let ca = CertificateDer::from_pem_file(dir.join("coco-ca.pem")).expect("coco-ca.pem");
        roots.add(ca).expect("CA certificate");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        Https { config: Arc::new(config) }
    }

    /// One request on a fresh connection to `addr` (host:port).
    pub async fn send(&self, addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect to the coco port");
        let name = ServerName::try_from("127.0.0.1").expect("server name");
        let tls =
            tokio_rustls::TlsConnector::from(self.config.clone()).connect(name, tcp).await.expect("TLS handshake");
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.expect("HTTP handshake");
        tokio::spawn(conn);
        let mut req = hyper::Request::builder().method(method).uri(path).header("host", addr);
        for (n, v) in headers {
            req = req.header(*n, *v);
        }
        let req = req.body(Full::new(Bytes::copy_from_slice(body))).expect("request");
        let resp = send.send_request(req).await.expect("HTTP request");
        let status = resp.status().as_u16();
        let headers =
            resp.headers().iter().map(|(n, v)| (n.to_string(), v.to_str().unwrap_or_default().to_string())).collect();
        let body = resp.into_body().collect().await.expect("body").to_bytes().to_vec();
        Reply { status, headers, body }
    }
}
