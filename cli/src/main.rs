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
//! - `proposal`: commands that need several admins: `--propose FILE`, `approve`, `submit`.
//! - `output`: rendering of verdicts as text or JSON.
//!
//! Exit status: 0 success (evidence verified, and allowed when a policy is
//! given), 1 the evidence was refused, 2 bad usage (arguments, unreadable files).

mod admin_client;
mod cluster;
mod clusterctl;
mod dev;
mod devup;
mod evidence;
mod init;
mod joins;
mod keysctl;
mod output;
mod proposal;
mod recovery;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
    /// Create a namespace.
    Create {
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
        Command::Namespace(NamespaceCmd::Create { name, sign }) => sign.run(clusterctl::create_namespace(&name)),
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
