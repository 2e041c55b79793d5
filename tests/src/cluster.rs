//! Real clusters for tests: `guardctl dev init` writes genesis and configs,
//! then each node is a real `guardian` process on 127.0.0.1, driven and
//! inspected through `guardctl` as an operator would.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::bin::guardctl;

/// Raft timing and snapshot settings written into every node's config.
#[derive(Debug, Clone, Copy)]
pub struct Tuning {
    pub heartbeat_ms: u64,
    pub election_timeout_ms: u64,
    pub snapshot_every: u64,
    pub snapshot_keep_logs: u64,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning { heartbeat_ms: 100, election_timeout_ms: 700, snapshot_every: 1000, snapshot_keep_logs: 1000 }
    }
}

pub struct TestCluster {
    pub dir: tempfile::TempDir,
    pub n: u64,
    tuning: Tuning,
    /// The fault-injecting proxies, for clusters started with [`Self::start_faulty`].
    pub faults: Option<crate::faults::Faults>,
    children: BTreeMap<u64, Child>,
    restarts: u32,
}

/// A base port whose peer/admin/health/workload ranges (base.., base+100.., base+200..,
/// base+300..) are free now. Every port stays below Linux's ephemeral range (32768..): a node
/// restarted by a test must get its ports back, and an outgoing connection of another test
/// cluster could otherwise be handed one of them while the node is down.
pub fn free_base(n: u16) -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    loop {
        let slot = NEXT.fetch_add(1, Ordering::Relaxed);
        let spread = (u32::from(std::process::id() as u16 % 97) * 300 + u32::from(slot) * 307) % 22_000;
        let base = 10_000 + spread as u16;
        let free = (0..n)
            .all(|i| [0, 100, 200, 300, 400].iter().all(|o| TcpListener::bind(("127.0.0.1", base + o + i)).is_ok()));
        if free {
            return base;
        }
    }
}

pub fn guardian_bin() -> PathBuf {
    guardctl().with_file_name(format!("guardian{}", std::env::consts::EXE_SUFFIX))
}

impl TestCluster {
    /// Write an `n`-node cluster and start every node.
    pub fn start(n: u64, tuning: Tuning) -> Self {
        Self::start_with(n, tuning, &[])
    }

    /// [`Self::start`], passing `init_args` to `guardctl dev init` (e.g. `--admins 2`).
    pub fn start_with(n: u64, tuning: Tuning, init_args: &[&str]) -> Self {
        Self::start_inner(n, tuning, init_args, false)
    }

    /// [`Self::start`], with peer traffic through the fault-injecting
    /// proxies of [`crate::faults`] (see `faults` to partition the cluster).
    pub fn start_faulty(n: u64, tuning: Tuning) -> Self {
        Self::start_inner(n, tuning, &[], true)
    }

    /// [`Self::start`], with some nodes injecting test faults from their first
    /// start (`tee.insecure_byzantine`, see [`Self::set_byzantine`]).
    pub fn start_byzantine(n: u64, tuning: Tuning, faults: &[(u64, &[&str])]) -> Self {
        Self::start_inner_with(n, tuning, &[], false, faults)
    }

    fn start_inner(n: u64, tuning: Tuning, init_args: &[&str], faulty: bool) -> Self {
        Self::start_inner_with(n, tuning, init_args, faulty, &[])
    }

    fn start_inner_with(n: u64, tuning: Tuning, init_args: &[&str], faulty: bool, faults: &[(u64, &[&str])]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = free_base(n as u16);
        let out = Command::new(guardctl())
            .args(["dev", "init", "--nodes", &n.to_string(), "--threshold", &n.div_ceil(2).to_string()])
            .arg("--dir")
            .arg(dir.path())
            .args(["--base-port", &base.to_string()])
            .args(init_args)
            .output()
            .expect("guardctl dev init");
        assert!(out.status.success(), "dev init: {}", String::from_utf8_lossy(&out.stderr));
        let mut c = TestCluster { dir, n, tuning, faults: None, children: BTreeMap::new(), restarts: 0 };
        if faulty {
            let routes = (1..=n).map(|id| c.route_through_proxy(id)).collect();
            c.faults = Some(crate::faults::Faults::start(routes));
        }
        for (id, f) in faults {
            c.set_byzantine(*id, f);
        }
        for id in 1..=n {
            c.tune(id);
            c.start_node(id);
        }
        c
    }

    /// Move node `id`'s peer listener off its genesis address (where its
    /// proxy will listen) and make it dial from its own loopback address.
    fn route_through_proxy(&self, id: u64) -> crate::faults::Route {
        let p = self.path().join(format!("node-{id}.toml"));
        let cfg = std::fs::read_to_string(&p).expect("node config");
        let line = cfg.lines().find(|l| l.starts_with("peer_listen = ")).expect("peer_listen").to_string();
        let front: std::net::SocketAddr =
            line.trim_start_matches("peer_listen = ").trim_matches('"').parse().expect("addr");
        let back = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port");
        let cfg = cfg.replace(&line, &format!("peer_listen = \"{back}\""));
        let cfg = format!("peer_source_ip = \"{}\"\n{cfg}", crate::faults::source_ip(id));
        std::fs::write(&p, cfg).expect("write config");
        crate::faults::Route { node: id, front, back }
    }

    /// Put the test's Raft timing into node `id`'s config.
    fn tune(&self, id: u64) {
        let t = self.tuning;
        let p = self.path().join(format!("node-{id}.toml"));
        let cfg = std::fs::read_to_string(&p).expect("node config");
        let tuned = format!(
            "heartbeat_ms = {}\nelection_timeout_ms = {}\nsnapshot_every = {}\nsnapshot_keep_logs = {}\n{cfg}",
            t.heartbeat_ms, t.election_timeout_ms, t.snapshot_every, t.snapshot_keep_logs
        );
        std::fs::write(&p, tuned).expect("write config");
    }

    /// Ids of the nodes waiting for `guardctl node approve`.
    pub fn pending_joins(&self) -> Vec<u64> {
        let out = self.guardctl(&["node", "joins", "--json"]);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        v["pending"].as_array().into_iter().flatten().filter_map(|p| p["node_id"].as_u64()).collect()
    }

    /// Make node `id` (stopped) inject test faults: `tee.insecure_byzantine`.
    pub fn set_byzantine(&self, id: u64, faults: &[&str]) {
        let p = self.path().join(format!("node-{id}.toml"));
        let cfg = std::fs::read_to_string(&p).expect("node config");
        let list = faults.iter().map(|f| format!("{f:?}")).collect::<Vec<_>>().join(", ");
        let cfg = cfg.replacen("[tee]\n", &format!("[tee]\ninsecure_byzantine = [{list}]\n"), 1);
        assert!(cfg.contains("insecure_byzantine"), "node {id}'s config has no [tee] section");
        std::fs::write(&p, cfg).expect("write config");
    }

    /// `guardctl keys probe --json` on node `id`.
    pub fn probe(&self, id: u64, namespace: &str, fresh: bool, sign: bool) -> Value {
        let id = id.to_string();
        let mut args = vec!["keys", "probe", namespace, "--json", "--node", &id];
        if fresh {
            args.push("--fresh");
        }
        if sign {
            args.push("--sign");
        }
        let out = self.guardctl(&args);
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    }

    /// Wait until the key generation has completed and the root CA
    /// certificate is recorded; returns the status.
    pub fn wait_keys(&self, epoch: u64, timeout: Duration) -> Value {
        eventually(timeout, || {
            let s = self.status();
            let done =
                s["keys"]["epoch"].as_u64().is_some_and(|e| e >= epoch) && s["keys"]["ceremony_running"] == false;
            match done && self.guardctl(&["ca"]).status.success() {
                true => Ok(s),
                false => Err(format!("keys not ready: {s}")),
            }
        })
    }

    /// `guardctl dev add-node`: a node outside the genesis file, started; it
    /// asks to join. Returns its id.
    pub fn add_node(&mut self) -> u64 {
        let out = self.guardctl(&["dev", "add-node", "--no-start"]);
        assert!(out.status.success(), "dev add-node: {}", String::from_utf8_lossy(&out.stderr));
        let cluster: Value = self.cluster_json().expect("cluster.json");
        let id = cluster["nodes"].as_array().and_then(|n| n.last()).and_then(|n| n["id"].as_u64()).expect("new node");
        self.tune(id);
        self.start_node(id);
        id
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn log_of(&self, id: u64) -> String {
        let mut all = String::new();
        for entry in std::fs::read_dir(self.path()).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if name.starts_with(&format!("node-{id}.")) && name.ends_with(".log") {
                all.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
            }
        }
        all
    }

    pub fn start_node(&mut self, id: u64) {
        self.restarts += 1;
        let log = std::fs::File::create(self.path().join(format!("node-{id}.{}.log", self.restarts))).expect("log");
        let child = Command::new(guardian_bin())
            .arg("--config")
            .arg(self.path().join(format!("node-{id}.toml")))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn guardian");
        self.children.insert(id, child);
    }

    /// HTTP status of `GET path` on node `id`'s health port (None if it does not answer).
    pub fn health(&self, id: u64, path: &str) -> Option<u16> {
        self.http_get(id, path).map(|(code, _)| code)
    }

    /// cluster.json, as guardctl wrote it (None while it cannot be read).
    pub fn cluster_json(&self) -> Option<Value> {
        serde_json::from_slice(&std::fs::read(self.path().join("cluster.json")).ok()?).ok()
    }

    /// A string field of node `id`'s entry in cluster.json, e.g. `workload_addr`.
    pub fn node_field(&self, id: u64, field: &str) -> Option<String> {
        let cluster = self.cluster_json()?;
        Some(cluster["nodes"].as_array()?.iter().find(|n| n["id"] == id)?[field].as_str()?.to_string())
    }

    /// GET `path` from node `id`'s health port: status code and body.
    pub fn http_get(&self, id: u64, path: &str) -> Option<(u16, String)> {
        use std::io::{Read, Write};
        let addr = self.node_field(id, "health_addr")?;
        let mut s = std::net::TcpStream::connect(addr).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(s, "GET {path} HTTP/1.1\r\nHost: guardian\r\nConnection: close\r\n\r\n").ok()?;
        let mut resp = String::new();
        s.read_to_string(&mut resp).ok()?;
        let code = resp.split_whitespace().nth(1)?.parse().ok()?;
        let body = resp.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
        Some((code, body))
    }

    /// Whether node `id`'s process has exited, with its exit code.
    pub fn exited(&mut self, id: u64) -> Option<Option<i32>> {
        let child = self.children.get_mut(&id)?;
        child.try_wait().ok().flatten().map(|s| s.code())
    }

    /// SIGKILL: no chance to flush or say goodbye.
    pub fn kill9(&mut self, id: u64) {
        if let Some(mut c) = self.children.remove(&id) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn guardctl(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(guardctl());
        cmd.args(args).arg("--cluster").arg(self.path());
        cmd.output().expect("guardctl")
    }

    /// `guardctl status --json`, parsed.
    pub fn status(&self) -> Value {
        let out = self.guardctl(&["status", "--json"]);
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    }

    /// Wait until the nodes in `up` all answer and agree on one leader of a bootstrapped cluster.
    pub fn wait_ready(&self, up: &[u64], timeout: Duration) -> Value {
        self.wait_members(up, self.n as usize, timeout)
    }

    /// [`Self::wait_ready`], with the cluster holding `members` members.
    pub fn wait_members(&self, up: &[u64], members: usize, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.status();
            let nodes = s["nodes"].as_array().cloned().unwrap_or_default();
            let ok = up.iter().all(|id| {
                nodes.iter().any(|n| {
                    n["id"] == *id && n["health"] == "healthy" && n["leader"] != 0 && n["leader"] == s["leader"]
                })
            });
            if ok && s["members"].as_array().is_some_and(|m| m.len() == members) {
                return s;
            }
            assert!(Instant::now() < deadline, "cluster not ready in {timeout:?}: {s}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn leader(&self) -> u64 {
        self.status()["leader"].as_u64().unwrap_or(0)
    }

    /// Create a namespace through guardctl; true when the cluster acknowledged it.
    pub fn create_namespace(&self, name: &str) -> bool {
        self.guardctl(&["namespace", "create", name]).status.success()
    }

    /// [`Self::create_namespace`], submitted through node `id` only.
    pub fn create_namespace_via(&self, id: u64, name: &str) -> Output {
        self.guardctl(&["namespace", "create", name, "--node", &id.to_string()])
    }

    /// The namespaces node `id` has applied.
    pub fn namespaces_on(&self, id: u64) -> Option<Vec<String>> {
        let out = self.guardctl(&["namespace", "list", "--node", &id.to_string(), "--json"]);
        let v: Value = serde_json::from_slice(&out.stdout).ok()?;
        Some(v["namespaces"].as_array()?.iter().filter_map(|n| n.as_str().map(str::to_owned)).collect())
    }

    /// Wait until node `id` has applied every name in `names`.
    pub fn wait_applied(&self, id: u64, names: &[String], timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let have = self.namespaces_on(id).unwrap_or_default();
            let missing: Vec<_> = names.iter().filter(|n| !have.contains(n)).collect();
            if missing.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "node {id} is missing {} acknowledged namespaces, e.g. {:?}",
                missing.len(),
                &missing[..missing.len().min(3)]
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for (_, mut c) in std::mem::take(&mut self.children) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Clients at the TLS layer that do not check the node: attackers that
/// present forged or empty credentials to a node's peer port, and raw
/// workload clients that can replay what a workload sent.
pub mod attacker {
    use std::sync::Arc;

    use guardian_node::net::ratls::cert::{build_certificate, EvidenceExtension, NodeKey};
    use guardian_node::net::ratls::grpc;
    use guardian_node::net::ratls::verify::PeerCertificate;
    use guardian_proto::v1::peer_service_client::PeerServiceClient;
    use guardian_proto::v1::workload_service_client::WorkloadServiceClient;
    use guardian_proto::v1::RaftRequest;
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::{DigitallySignedStruct, SignatureScheme};
    use tonic::transport::Channel;

    /// Accepts any server: the attacker does not care who it talks to.
    #[derive(Debug)]
    struct AnyServer(Arc<std::sync::Mutex<Option<Vec<u8>>>>);

    impl ServerCertVerifier for AnyServer {
        fn verify_server_cert(
            &self,
            end_entity: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            if let Ok(mut seen) = self.0.lock() {
                *seen = Some(end_entity.to_vec());
            }
            Ok(ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Ok(HandshakeSignatureValid::assertion())
        }
        fn verify_tls13_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Ok(HandshakeSignatureValid::assertion())
        }
        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            rustls::crypto::ring::default_provider().signature_verification_algorithms.supported_schemes()
        }
    }

    /// A client certificate chain and its PKCS#8 key.
    type ClientAuth = (Vec<CertificateDer<'static>>, Vec<u8>);

    fn config(
        client_cert: Option<ClientAuth>,
        seen: Arc<std::sync::Mutex<Option<Vec<u8>>>>,
    ) -> Arc<rustls::ClientConfig> {
        let b = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("TLS 1.3")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyServer(seen)));
        let mut cfg = match client_cert {
            Some((chain, key)) => {
                let der = rustls::pki_types::PrivateKeyDer::Pkcs8(key.into());
                b.with_client_auth_cert(chain, der).expect("client cert")
            }
            None => b.with_no_client_auth(),
        };
        cfg.alpn_protocols = vec![b"h2".to_vec()];
        Arc::new(cfg)
    }

    /// Fetch a node's RA-TLS certificate from its admin port (which any client may reach).
    pub async fn node_certificate(admin_addr: &str) -> Vec<u8> {
        let seen = Arc::new(std::sync::Mutex::new(None));
        let addr = admin_addr.parse().expect("admin address");
        let _ = grpc::connect(addr, config(None, seen.clone())).await;
        let cert = seen.lock().expect("lock").clone();
        cert.expect("the node presented a certificate")
    }

    /// A client of a node's workload port, optionally with a workload
    /// certificate chain and key (as `guardctl workload attest` saved them in
    /// `dir`: cert.der, chain.json, key.der). It does not check the node: the
    /// tests use it to send what a workload, or someone replaying one, sends.
    pub async fn workload_client(addr: &str, identity: Option<&std::path::Path>) -> WorkloadServiceClient<Channel> {
        let auth = identity.map(|dir| {
            let read = |f: &str| std::fs::read(dir.join(f)).expect("identity file");
            let chain: Vec<String> = serde_json::from_slice(&read("chain.json")).expect("chain.json");
            let mut certs = vec![CertificateDer::from(read("cert.der"))];
            certs.extend(chain.iter().map(|c| CertificateDer::from(hex::decode(c).expect("hex"))));
            (certs, read("key.der"))
        });
        let addr = addr.parse().expect("workload address");
        let channel =
            grpc::connect(addr, config(auth, Default::default())).await.expect("connect to the workload port");
        WorkloadServiceClient::new(channel)
    }

    /// What an attacker presents.
    pub enum Forgery {
        /// A certificate with no evidence extension at all.
        NoEvidence { cluster_id: [u8; 16], node_id: u64 },
        /// A real node's evidence, copied into a certificate for the attacker's own key.
        ReplayedEvidence { victim_cert: Vec<u8> },
    }

    /// Dial `peer_addr` with a forged client certificate and send one Raft RPC.
    /// Returns whether the node answered it (it must not).
    pub async fn try_peer_rpc(peer_addr: &str, forgery: Forgery) -> bool {
        let key = NodeKey::generate().expect("key");
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let cert = match forgery {
            Forgery::NoEvidence { cluster_id, node_id } => {
                build_certificate(&key, &cluster_id, node_id, now - 60, now + 3600, None)
            }
            Forgery::ReplayedEvidence { victim_cert } => {
                let victim = PeerCertificate::parse(&victim_cert).expect("victim certificate");
                let ext = EvidenceExtension {
                    kind: victim.kind,
                    evidence: victim.evidence.clone(),
                    event_log: victim.event_log.clone(),
                }
                .to_extension_value()
                .expect("extension");
                // Same cluster, node and validity as the victim's: only the key differs.
                build_certificate(
                    &key,
                    &victim.cluster_id,
                    victim.node_id,
                    victim.not_before,
                    victim.not_after,
                    Some(&ext),
                )
            }
        }
        .expect("forged certificate");
        let addr = peer_addr.parse().expect("peer address");
        let auth = (vec![cert], key.pkcs8_der().to_vec());
        let Ok(channel) = grpc::connect(addr, config(Some(auth), Default::default())).await else {
            return false;
        };
        PeerServiceClient::new(channel).vote(RaftRequest::default()).await.is_ok()
    }
}

/// A member's role ("voter", "learner") in a `guardctl status --json` answer.
pub fn role_of(s: &Value, id: u64) -> String {
    let members = s["members"].as_array().cloned().unwrap_or_default();
    members.iter().find(|m| m["id"] == id).map(|m| m["role"].as_str().unwrap_or("").to_string()).unwrap_or_default()
}

/// Poll `check` every 200 ms until it succeeds; fail the test with its last
/// complaint if that takes longer than `timeout`.
pub fn eventually<T>(timeout: Duration, mut check: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match check() {
            Ok(v) => return v,
            Err(why) => assert!(Instant::now() < deadline, "not within {timeout:?}: {why}"),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
