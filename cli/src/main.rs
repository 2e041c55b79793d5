//! `guardctl`: Guardian's admin, operator and developer CLI.
//!
//! # Layout
//! - `evidence`: `guardctl evidence verify|inspect` — check attestation evidence offline.
//! - `init`: `guardctl init` writes a production genesis file.
//! - `dev`, `devup`: developer tooling: the local cluster (`dev up|init`), simulated-TEE evidence.
//! - `cluster`: the cluster description on disk (`cluster.json`).
//! - `admin_client`: attested connections to nodes' admin ports.
//! - `clusterctl`: `status` and signed admin commands (`namespace create`, `node revoke`).
//! - `joins`: `node joins` and `node approve`: nodes asking to join, checked before approval.
//! - `keysctl`: `ca` (the cluster's CA certificates) and `keys probe` (check the threshold keys).
//! - `recovery`: admin recovery: `recovery keygen|export` and `recover` (a cluster lost whole).
//! - `nsctl`: the namespace surface: `namespace`, `policy`, `measurement`, `key`, `secret`,
//!   `config`, `cert`.
//! - `workload`: `workload attest|key|config`: play an attested workload (simulated TEE).
//! - `bench`: `guardctl bench`: throughput and latency of a node's workload service.
//! - `demo`: `dev demo` (and `dev up --demo`): a workload through attest, key, config and failover.
//! - `proposal`: commands that need several admins: `--propose FILE`, `approve`, `submit`.
//! - `output`: rendering of verdicts as text or JSON.
//!
//! Exit status: 0 success (evidence verified, and allowed when a policy is
//! given), 1 the evidence was refused, 2 bad usage (arguments, unreadable files).

mod admin_client;
mod bench;
mod cluster;
mod clusterctl;
mod demo;
mod dev;
mod devup;
mod evidence;
mod init;
mod joins;
mod kbsclient;
mod keysctl;
mod nsctl;
mod output;
mod proposal;
mod recovery;
mod tokens;
mod workload;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use guardian_proto::v1::{admin_command, RetireNamespaceSecretVersion, RotateNamespaceSecret};

#[derive(Parser)]
#[command(name = "guardctl", version, about = "Guardian admin, operator and developer CLI", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Verify or inspect TEE attestation evidence offline.
    #[command(subcommand)]
    Evidence(evidence::EvidenceCmd),
    /// Write the genesis file that founds a cluster (members, threshold, admins, guardian policy,
    /// and optionally recovery admins or the escrow of a lost cluster to rebuild).
    Init(init::InitArgs),
    /// Developer tooling. Uses the INSECURE simulated TEE.
    #[command(subcommand)]
    Dev(dev::DevCmd),
    /// Show members, leader, term and last applied index of a cluster.
    Status {
        /// Cluster directory (holds cluster.json), as written by `guardctl dev up`.
        #[arg(long, default_value = ".guardian-dev")]
        cluster: std::path::PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Namespaces (signed admin commands).
    #[command(subcommand)]
    Namespace(NamespaceCmd),
    /// A namespace's policy document (signed admin command).
    #[command(subcommand)]
    Policy(PolicyCmd),
    /// Allow or revoke workload measurements in a namespace's policy (signed admin command).
    #[command(subcommand)]
    Measurement(MeasurementCmd),
    /// Namespace secret versions and keys.
    #[command(subcommand)]
    Key(KeyCmd),
    /// Stored secrets (sealed by guardctl to the namespace's ingest key).
    #[command(subcommand)]
    Secret(SecretCmd),
    /// Namespace configs.
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Access tokens for the CoCo front ends: a Trustee KBS's Vault backend, KBS admin writes.
    #[command(subcommand)]
    Token(TokenCmd),
    /// Workload certificates a namespace CA issued.
    #[command(subcommand)]
    Cert(CertCmd),
    /// Play an attested workload (INSECURE simulated TEE of a dev cluster).
    #[command(subcommand)]
    Workload(workload::WorkloadCmd),
    /// Measure throughput and p50/p99 latency of one node's workload service (key fetch by
    /// certificate, key fetch with fresh evidence, certificate issuance) and CoCo port (KBS
    /// handshake, Bearer-token resource fetch) against a running dev cluster, as its simulated
    /// workload (INSECURE). Creates namespace `bench` if it is missing.
    Bench {
        #[arg(long, default_value = ".guardian-dev")]
        cluster: std::path::PathBuf,
        /// Node to drive (default: the first with a workload port).
        #[arg(long)]
        node: Option<u64>,
        #[command(flatten)]
        opts: bench::BenchOpts,
        #[arg(long)]
        json: bool,
    },
    /// Cluster members (signed admin commands).
    #[command(subcommand)]
    Node(NodeCmd),
    /// The cluster's root CA certificate (and a namespace's CA certificate), as PEM.
    Ca {
        /// Also fetch this namespace's CA certificate.
        #[arg(long)]
        namespace: Option<String>,
        /// Write root-ca.pem (and <namespace>-ca.pem) here instead of printing them.
        #[arg(long)]
        out: Option<std::path::PathBuf>,
        #[arg(long, default_value = ".guardian-dev")]
        cluster: std::path::PathBuf,
        /// Ask this node (default: the first that answers).
        #[arg(long)]
        node: Option<u64>,
    },
    /// The threshold keys.
    #[command(subcommand)]
    Keys(KeysCmd),
    /// Admin recovery keys and the escrow of the root keys.
    #[command(subcommand)]
    Recovery(recovery::RecoveryCmd),
    /// Rebuild a cluster lost whole onto fresh nodes from k recovery admins' escrow shares: the same
    /// namespace secrets and root CA key. The fresh cluster must be initialized with
    /// `guardctl dev init --restore-from ESCROW`.
    Recover(recovery::RecoverArgs),
    /// Review a proposal file and add your signature to it.
    Approve {
        file: std::path::PathBuf,
        #[arg(long, default_value = ".guardian-dev")]
        cluster: std::path::PathBuf,
        /// Admin key file to sign with (default: the cluster's admin key).
        #[arg(long)]
        key: Option<std::path::PathBuf>,
    },
    /// Submit a proposal file once it carries enough signatures.
    Submit {
        file: std::path::PathBuf,
        #[arg(long, default_value = ".guardian-dev")]
        cluster: std::path::PathBuf,
    },
}

/// How an admin command is signed and sent.
#[derive(clap::Args)]
struct SignArgs {
    /// Cluster directory (holds cluster.json).
    #[arg(long, default_value = ".guardian-dev")]
    cluster: std::path::PathBuf,
    /// Admin key file to sign with (default: the cluster's admin key).
    #[arg(long)]
    key: Option<std::path::PathBuf>,
    /// Do not submit: write the signed command to FILE for other admins to
    /// `guardctl approve` (commands that need the admin quorum).
    #[arg(long, value_name = "FILE")]
    propose: Option<std::path::PathBuf>,
    /// Reason recorded with the command.
    #[arg(long, default_value = "")]
    reason: String,
    /// Submit through this node only (by default guardctl tries every node until the leader commits).
    #[arg(long)]
    node: Option<u64>,
    /// Print the outcome as JSON.
    #[arg(long)]
    json: bool,
}

impl SignArgs {
    fn run(&self, body: guardian_proto::v1::admin_command::Body) -> anyhow::Result<ExitCode> {
        self.run_with(async { Ok(body) })
    }

    /// Sign and send (or propose) the body `make` produces, once it has.
    fn run_with(
        &self,
        make: impl std::future::Future<Output = anyhow::Result<guardian_proto::v1::admin_command::Body>>,
    ) -> anyhow::Result<ExitCode> {
        let how = clusterctl::Sending {
            dir: &self.cluster,
            key: self.key.as_deref(),
            propose: self.propose.as_deref(),
            node: self.node,
            report: clusterctl::Report::text_or_json(self.json),
        };
        tokio::runtime::Runtime::new()?.block_on(async { clusterctl::issue(how, make.await?, &self.reason).await })
    }
}

#[derive(Subcommand)]
enum NodeCmd {
    /// List nodes asking to join (as every reachable node reports them).
    Joins {
        #[arg(long, default_value = ".guardian-dev")]
        cluster: std::path::PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Admit a node that asked to join: guardctl checks its certificate and
    /// evidence against the guardian policy, shows them, and signs. The node
    /// joins as a learner and becomes a voter once it has caught up.
    Approve {
        id: u64,
        /// Hex prefix of the identity to admit, when one id asked with several keys.
        #[arg(long)]
        identity: Option<String>,
        #[command(flatten)]
        sign: SignArgs,
    },
    /// Revoke a node: it leaves the cluster, every peer refuses its identity
    /// from then on, and it cannot rejoin with it. Needs the admin quorum.
    Revoke {
        id: u64,
        #[command(flatten)]
        sign: SignArgs,
    },
}

#[derive(Subcommand)]
enum NamespaceCmd {
    /// Create a namespace (secret version 1), optionally with its policy document.
    Create {
        name: String,
        /// Policy document (TOML, docs/workloads.md); without one the namespace admits no workload.
        #[arg(long)]
        policy: Option<std::path::PathBuf>,
        #[command(flatten)]
        sign: SignArgs,
    },
    /// Replace a namespace's policy document (same as `policy set`).
    Update {
        name: String,
        #[arg(long)]
        policy: std::path::PathBuf,
        #[command(flatten)]
        sign: SignArgs,
    },
    /// Show a namespace: versions, policy, stored secrets, configs.
    Show {
        name: String,
        #[command(flatten)]
        read: nsctl::ReadArgs,
    },
    /// Move a namespace to a new secret version (new keys, new namespace CA); older versions stay
    /// readable until retired.
    Rotate {
        name: String,
        #[command(flatten)]
        sign: SignArgs,
    },
    /// List namespaces as a node sees them.
    List {
        #[arg(long, default_value = ".guardian-dev")]
        cluster: std::path::PathBuf,
        /// Ask this node (default: the first that answers).
        #[arg(long)]
        node: Option<u64>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum PolicyCmd {
    /// Replace a namespace's policy document with FILE (checked before signing).
    Set {
        namespace: String,
        file: std::path::PathBuf,
        #[command(flatten)]
        sign: SignArgs,
    },
}

#[derive(Subcommand)]
enum MeasurementCmd {
    /// Add (or replace) a rule admitting these measurements.
    Allow {
        namespace: String,
        /// Rule name (certificates record it; grants name it).
        #[arg(long)]
        rule: String,
        /// REGISTER=HEX, e.g. mrtd=..., rtmr2=... (repeat).
        #[arg(long = "register", value_name = "REGISTER=HEX", required = true)]
        registers: Vec<String>,
        #[command(flatten)]
        sign: SignArgs,
    },
    /// Never admit this measurement again: certificates issued to it are revoked and its key
    /// requests refused from the committed entry on.
    Revoke {
        namespace: String,
        /// mrtd, rtmr0-3, mrconfigid or pcrN.
        #[arg(long)]
        register: String,
        #[arg(long)]
        value: String,
        /// (--reason, required here) why it is revoked; recorded in the policy and shown in refusals.
        #[command(flatten)]
        sign: SignArgs,
    },
}

#[derive(Subcommand)]
enum KeyCmd {
    /// Secret versions and stored secrets of a namespace.
    List {
        namespace: String,
        #[command(flatten)]
        read: nsctl::ReadArgs,
    },
    /// Move to a new secret version (as `namespace rotate`).
    Rotate {
        namespace: String,
        #[command(flatten)]
        sign: SignArgs,
    },
    /// Stop serving an old secret version for good. Needs the admin quorum.
    Retire {
        namespace: String,
        #[arg(long)]
        version: u32,
        #[command(flatten)]
        sign: SignArgs,
    },
}

#[derive(Subcommand)]
enum SecretCmd {
    /// Store a secret at a key path; it shadows the derived key there.
    Put {
        namespace: String,
        /// Key path, e.g. secret/db-password.
        path: String,
        /// File holding the value (at most 64 KiB).
        #[arg(long)]
        from_file: std::path::PathBuf,
        /// For sealed/ paths: the workload's X25519 public key (hex). The value is encrypted to it
        /// here and passed to the workload as is; no node can read it.
        #[arg(long)]
        recipient: Option<String>,
        #[command(flatten)]
        sign: SignArgs,
    },
}

#[derive(Subcommand)]
enum TokenCmd {
    /// Create a token scoped to one namespace and one Vault mount. It is shown once (or written to
    /// --out); the cluster keeps only its hash. Give it to the Trustee KBS as its Vault `token`.
    Create {
        #[arg(long)]
        namespace: String,
        /// Vault mount path the KBS is configured with (`mount_path`), e.g. secret.
        #[arg(long, default_value = "secret")]
        mount: String,
        /// read: the KBS may fetch keys; read-write: it may also store and delete them.
        #[arg(long, default_value = "read")]
        access: String,
        /// Lifetime: e.g. 90d, 12h, 30m (at most 366 days).
        #[arg(long, default_value = "90d")]
        ttl: String,
        /// Write the token to this file (mode 0600) instead of stdout.
        #[arg(long)]
        out: Option<std::path::PathBuf>,
        #[command(flatten)]
        sign: SignArgs,
    },
    /// Revoke a token by its id (the part after `gvt.`); refused from the next committed entry on.
    Revoke {
        id: String,
        #[command(flatten)]
        sign: SignArgs,
    },
    /// Write your admin key as the PEM that `kbs-client config --auth-private-key` reads, so
    /// kbs-client's admin requests (set-resource, delete) are signed by an admin of the cluster.
    KbsAdminKey {
        /// Where to write the PEM (mode 0600).
        #[arg(long)]
        out: std::path::PathBuf,
        /// Admin key file (default: the cluster's, from cluster.json).
        #[arg(long)]
        key: Option<std::path::PathBuf>,
        #[arg(long, default_value = ".guardian-dev")]
        cluster: std::path::PathBuf,
    },
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// Store a config (content-addressed) under a name.
    Put {
        namespace: String,
        name: String,
        file: std::path::PathBuf,
        #[arg(long, default_value = "text/plain")]
        media_type: String,
        /// Serve the content from this URI (file:///...) instead of the replicated state; FILE is
        /// only digested.
        #[arg(long)]
        backend_uri: Option<String>,
        #[command(flatten)]
        sign: SignArgs,
    },
    /// Print a config's content.
    Get {
        namespace: String,
        name: String,
        #[command(flatten)]
        read: nsctl::ReadArgs,
    },
}

#[derive(Subcommand)]
enum CertCmd {
    /// Certificates issued in a namespace, newest first, with their revocation status.
    List {
        namespace: String,
        #[command(flatten)]
        read: nsctl::ReadArgs,
    },
    /// Put a certificate on its namespace CRL; its key requests are refused from then on.
    Revoke {
        namespace: String,
        serial: String,
        #[command(flatten)]
        sign: SignArgs,
    },
}

#[derive(Subcommand)]
enum KeysCmd {
    /// Derive a namespace secret (and make one FROST signature) on a node now, and show which
    /// nodes contributed, which returned invalid shares, and how long it took. The secret never
    /// leaves the node: only a check value is shown.
    Probe {
        namespace: String,
        #[arg(long, default_value = ".guardian-dev")]
        cluster: std::path::PathBuf,
        /// Ask this node (default: the first that answers).
        #[arg(long)]
        node: Option<u64>,
        /// Gather shares again even if the node has the secret cached.
        #[arg(long)]
        fresh: bool,
        /// Also make one FROST signature (over the root CA certificate).
        #[arg(long)]
        sign: bool,
        #[arg(long)]
        json: bool,
    },
}

fn block_on(f: impl std::future::Future<Output = anyhow::Result<ExitCode>>) -> anyhow::Result<ExitCode> {
    tokio::runtime::Runtime::new()?.block_on(f)
}

/// A failure that is the caller's to fix (exit 2), as opposed to a refusal (exit 1).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Parse hex Ed25519 public keys (simulated-TEE keys), naming `what` on error.
pub fn hex_keys(keys: &[String], what: &str) -> Result<Vec<[u8; 32]>, UsageError> {
    keys.iter()
        .map(|k| hex::decode(k).ok().and_then(|k| k.try_into().ok()))
        .collect::<Option<Vec<[u8; 32]>>>()
        .ok_or_else(|| UsageError(format!("{what} must be 32 bytes of hex")))
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("GUARDCTL_LOG")
                // The sim TEE's warnings are for daemons; guardctl says INSECURE itself where it matters.
                .unwrap_or_else(|_| {
                    tracing_subscriber::EnvFilter::new(
                        "warn,guardian_node::attest::sim=error,guardian_node::policy::file=error",
                    )
                }),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Evidence(cmd) => evidence::run(cmd),
        Command::Init(args) => init::run(&args),
        Command::Dev(cmd) => dev::run(cmd),
        Command::Status { cluster, json } => tokio::runtime::Runtime::new()
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(clusterctl::status(&cluster, json))),
        Command::Namespace(NamespaceCmd::Create { name, policy, sign }) => {
            nsctl::create(&name, policy.as_deref()).map_err(anyhow::Error::from).and_then(|b| sign.run(b))
        }
        Command::Namespace(NamespaceCmd::Update { name, policy: file, sign })
        | Command::Policy(PolicyCmd::Set { namespace: name, file, sign }) => {
            sign.run_with(nsctl::set_policy(&sign.cluster, &name, &file))
        }
        Command::Namespace(NamespaceCmd::Show { name, read }) => block_on(nsctl::show(&read, &name)),
        Command::Namespace(NamespaceCmd::Rotate { name, sign })
        | Command::Key(KeyCmd::Rotate { namespace: name, sign }) => {
            sign.run(admin_command::Body::RotateNamespaceSecret(RotateNamespaceSecret { namespace: name }))
        }
        Command::Measurement(MeasurementCmd::Allow { namespace, rule, registers, sign }) => {
            let parsed: Result<Vec<(String, String)>, UsageError> = registers
                .iter()
                .map(|r| {
                    r.split_once('=')
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .ok_or_else(|| UsageError(format!("--register {r:?}: use REGISTER=HEX")))
                })
                .collect();
            match parsed {
                Ok(registers) => sign.run_with(nsctl::edit_measurements(
                    &sign.cluster,
                    &namespace,
                    nsctl::MeasurementEdit::Allow { rule, registers },
                )),
                Err(e) => Err(e.into()),
            }
        }
        Command::Measurement(MeasurementCmd::Revoke { namespace, register, value, sign }) => {
            if sign.reason.trim().is_empty() {
                Err(UsageError("give --reason: it is recorded with the revocation and shown in refusals".into()).into())
            } else {
                let reason = sign.reason.clone();
                sign.run_with(nsctl::edit_measurements(
                    &sign.cluster,
                    &namespace,
                    nsctl::MeasurementEdit::Revoke { register, value, reason },
                ))
            }
        }
        Command::Key(KeyCmd::List { namespace, read }) => block_on(nsctl::key_list(&read, &namespace)),
        Command::Key(KeyCmd::Retire { namespace, version, sign }) => {
            sign.run(admin_command::Body::RetireNamespaceSecretVersion(RetireNamespaceSecretVersion {
                namespace,
                version,
            }))
        }
        Command::Secret(SecretCmd::Put { namespace, path, from_file, recipient, sign }) => {
            sign.run_with(nsctl::put_secret(&sign.cluster, &namespace, &path, &from_file, recipient.as_deref()))
        }
        Command::Token(TokenCmd::Create { namespace, mount, access, ttl, out, sign }) => {
            let token = tokens::NewToken::generate();
            tokens::create(&token, &namespace, &mount, &access, &ttl)
                .map_err(anyhow::Error::from)
                .and_then(|b| sign.run(b))
                .and_then(|code| match code == ExitCode::SUCCESS {
                    true => tokens::show(&token, out.as_deref()).map(|()| code),
                    false => Ok(code),
                })
        }
        Command::Token(TokenCmd::KbsAdminKey { out, key, cluster }) => cluster::ClusterFile::load(&cluster)
            .map_err(anyhow::Error::from)
            .and_then(|c| tokens::kbs_admin_key(key.as_deref().unwrap_or(&c.admin_key), &out))
            .map(|()| ExitCode::SUCCESS),
        Command::Token(TokenCmd::Revoke { id, sign }) => {
            tokens::revoke(&id).map_err(anyhow::Error::from).and_then(|b| sign.run(b))
        }
        Command::Config(ConfigCmd::Put { namespace, name, file, media_type, backend_uri, sign }) => {
            nsctl::put_config(&namespace, &name, &file, &media_type, backend_uri.as_deref())
                .map_err(anyhow::Error::from)
                .and_then(|b| sign.run(b))
        }
        Command::Config(ConfigCmd::Get { namespace, name, read }) => {
            block_on(nsctl::config_get(&read, &namespace, &name))
        }
        Command::Cert(CertCmd::List { namespace, read }) => block_on(nsctl::cert_list(&read, &namespace)),
        Command::Cert(CertCmd::Revoke { namespace, serial, sign }) => {
            nsctl::revoke_cert(&namespace, &serial).map_err(anyhow::Error::from).and_then(|b| sign.run(b))
        }
        Command::Workload(cmd) => workload::run(cmd),
        Command::Bench { cluster, node, opts, json } => tokio::runtime::Runtime::new()
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(bench::run(&cluster, node, &opts, json))),
        Command::Node(NodeCmd::Revoke { id, sign }) => sign.run(clusterctl::revoke_node(id)),
        Command::Node(NodeCmd::Joins { cluster, json }) => tokio::runtime::Runtime::new()
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(joins::list(&cluster, json))),
        Command::Node(NodeCmd::Approve { id, identity, sign }) => {
            sign.run_with(joins::approval(&sign.cluster, id, identity.as_deref()))
        }
        Command::Recovery(cmd) => recovery::run(cmd),
        Command::Recover(args) => recovery::recover(&args),
        Command::Approve { file, cluster, key } => clusterctl::approve(&cluster, &file, key.as_deref()),
        Command::Submit { file, cluster } => tokio::runtime::Runtime::new()
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(clusterctl::submit_file(&cluster, &file))),
        Command::Namespace(NamespaceCmd::List { cluster, node, json }) => tokio::runtime::Runtime::new()
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(clusterctl::list_namespaces(&cluster, node, json))),
        Command::Ca { namespace, out, cluster, node } => tokio::runtime::Runtime::new()
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(keysctl::ca(&cluster, namespace.as_deref(), out.as_deref(), node))),
        Command::Keys(KeysCmd::Probe { namespace, cluster, node, fresh, sign, json }) => tokio::runtime::Runtime::new()
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(keysctl::probe(&cluster, &namespace, node, fresh, sign, json))),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("guardctl: {e:#}");
            if e.downcast_ref::<UsageError>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
