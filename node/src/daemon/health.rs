//! The health endpoint (HTTP/1.1 via hyper) for orchestrators and `guardctl dev`:
//! `GET /healthz` answers 200 while the process runs; `GET /readyz` answers 200
//! once the node is in a bootstrapped cluster with a leader, else 503 and why;
//! `GET /metrics` gives counters and gauges in the Prometheus text format.

use std::convert::Infallible;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// What the health endpoint reports.
pub trait Health: Send + Sync + 'static {
    /// Ready to serve, or why not.
    fn ready(&self) -> Result<(), String>;
    /// Metrics in the Prometheus text exposition format.
    fn metrics(&self) -> String;
}

fn answer(ready: &dyn Health, path: &str) -> Response<Full<Bytes>> {
    let (code, body) = match path {
        "/healthz" => (StatusCode::OK, "ok".to_string()),
        "/readyz" => match ready.ready() {
            Ok(()) => (StatusCode::OK, "ready".to_string()),
            Err(why) => (StatusCode::SERVICE_UNAVAILABLE, why),
        },
        "/metrics" => (StatusCode::OK, ready.metrics()),
        _ => (StatusCode::NOT_FOUND, "not found".to_string()),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = code;
    resp
}

/// Serve until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    ready: Arc<dyn Health>,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    tokio::pin!(shutdown);
    loop {
        let (sock, _) = tokio::select! {
            r = listener.accept() => r?,
            _ = &mut shutdown => return Ok(()),
        };
        let ready = ready.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let resp = answer(ready.as_ref(), req.uri().path());
                async move { Ok::<_, Infallible>(resp) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(2))
                .serve_connection(TokioIo::new(sock), service);
            let _ = conn.await;
        });
    }
}
