//! Developer tooling. Everything here uses the INSECURE simulated TEE.

use std::process::ExitCode;

use clap::Subcommand;
use guardian_node::attest::sim::{SimMeasurements, SimTee, INSECURE_LABEL};

use crate::UsageError;

#[derive(Subcommand)]
pub enum DevCmd {
    /// Start a local cluster of guardian processes (INSECURE simulated TEEs) and
    /// keep it running until Ctrl-C.
    Up {
        #[command(flatten)]
        shape: Shape,
        /// Once the cluster is ready, run the demo (see `dev demo`), then stop the nodes and exit
        /// with the demo's status.
        #[arg(long)]
        demo: bool,
        /// Once the cluster is ready, run `guardctl bench` with its defaults against the first
        /// node, then stop the nodes and exit with its status.
        #[arg(long, conflicts_with = "demo")]
        bench: bool,
    },
    /// Walk a simulated workload (INSECURE) through the serving path of a running dev cluster:
    /// namespace with a policy, stored secret and config; attest -> certificate -> PVC key ->
    /// config; kill the leader; the same key from another node.
    Demo {
        #[arg(long, default_value = ".guardian-dev")]
        cluster: std::path::PathBuf,
    },
    /// Print the demo namespace policy (admits the dev cluster's simulated workload, INSECURE), to
    /// start from with `guardctl namespace create NS --policy FILE`.
    DemoPolicy,
    /// Write a local cluster's genesis, admin key and node configs without starting it.
    Init {
        #[command(flatten)]
        shape: Shape,
    },
    /// Add a node that is not in the genesis file to a dev cluster and start it
    /// (INSECURE simulated TEE). It asks to join; approve it with
    /// `guardctl node approve ID`.
    AddNode {
        #[arg(long, default_value = ".guardian-dev")]
        cluster: std::path::PathBuf,
        /// Only write its config (node-ID.toml) and its entry in cluster.json.
        #[arg(long)]
        no_start: bool,
    },
    /// Print simulated-TEE evidence (INSECURE) to stdout and its signing public key to stderr.
    SimEvidence {
        /// 32-byte hex seed of the simulated TEE's Ed25519 key.
        #[arg(long)]
        seed: String,
        /// Label the simulated measurements are derived from.
        #[arg(long, default_value = "guardian-dev")]
        label: String,
        /// Up to 64 bytes of hex to place in report_data (zero-padded).
        #[arg(long, default_value = "")]
        report_data: String,
    },
}

/// The shape and place of a local cluster.
#[derive(clap::Args)]
pub struct Shape {
    /// Number of guardian nodes.
    #[arg(long, default_value_t = 5)]
    nodes: u32,
    /// Shares needed for the root secret.
    #[arg(long, default_value_t = 3)]
    threshold: u32,
    /// Directory for genesis, keys, configs, data and logs.
    #[arg(long, default_value = ".guardian-dev")]
    dir: std::path::PathBuf,
    /// First port: peers use base.., admin base+100.., health base+200..
    #[arg(long, default_value_t = 7100)]
    base_port: u16,
    /// Admin keys to generate (admin.key, admin-2.key, ...).
    #[arg(long, default_value_t = 1)]
    admins: u32,
    /// Admin signatures needed for quorum commands (revoke, admin changes).
    #[arg(long, default_value_t = 1)]
    admin_quorum: u32,
    #[command(flatten)]
    recovery: crate::recovery::RecoveryOpts,
}

impl Shape {
    fn options(&self) -> crate::devup::Options {
        crate::devup::Options {
            nodes: self.nodes,
            threshold: self.threshold,
            admins: self.admins,
            admin_quorum: self.admin_quorum,
            dir: self.dir.clone(),
            base_port: self.base_port,
            recovery: self.recovery.clone(),
        }
    }
}

pub fn run(cmd: DevCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        DevCmd::Init { shape } => {
            let cluster = crate::devup::generate(&shape.options())?;
            eprintln!("{INSECURE_LABEL}");
            println!("wrote a {}-node development cluster to {}", cluster.nodes.len(), shape.dir.display());
            Ok(ExitCode::SUCCESS)
        }
        DevCmd::Up { shape, demo, bench } => up(&shape, demo, bench),
        DevCmd::DemoPolicy => {
            crate::output::out!("{}", crate::demo::demo_policy());
            Ok(ExitCode::SUCCESS)
        }
        DevCmd::Demo { cluster } => {
            let dir = cluster.clone();
            let kill = move |id: u64| -> anyhow::Result<()> {
                let c = crate::cluster::ClusterFile::load(&dir)?;
                let pid = c.nodes.iter().find(|n| n.id == id).and_then(|n| n.pid);
                let pid = pid
                    .and_then(|p| i32::try_from(p).ok())
                    .ok_or_else(|| anyhow::anyhow!("no pid for node {id} in cluster.json"))?;
                // SAFETY: kill(2) on a pid guardctl recorded; SIGKILL has no memory effects here.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                Ok(())
            };
            tokio::runtime::Runtime::new()?.block_on(crate::demo::run(&cluster, kill))
        }
        DevCmd::AddNode { cluster, no_start } => add_node(&cluster, no_start),
        DevCmd::SimEvidence { seed, label, report_data } => {
            let seed: [u8; 32] = hex::decode(&seed)
                .ok()
                .and_then(|s| s.try_into().ok())
                .ok_or_else(|| UsageError("--seed must be 32 bytes of hex".into()))?;
            let data = hex::decode(&report_data).map_err(|_| UsageError("--report-data must be hex".into()))?;
            if data.len() > 64 {
                return Err(UsageError("--report-data holds at most 64 bytes".into()).into());
            }
            let mut rd = [0u8; 64];
            rd[..data.len()].copy_from_slice(&data);
            let tee = SimTee::new(&seed, SimMeasurements::from_label(&label));
            eprintln!("{INSECURE_LABEL}");
            eprintln!("sim public key: {}", hex::encode(tee.public_key()));
            crate::output::out!("{}", String::from_utf8_lossy(&tee.evidence(&rd)));
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn add_node(dir: &std::path::Path, no_start: bool) -> anyhow::Result<ExitCode> {
    let entry = crate::devup::add_node(dir)?;
    eprintln!("{INSECURE_LABEL}");
    println!(
        "added node {} (peer {}, admin {}), config {}",
        entry.id,
        entry.peer_addr,
        entry.admin_addr,
        entry.config.display()
    );
    if !no_start {
        let bin = crate::devup::guardian_binary()?;
        let child = crate::devup::spawn(&bin, dir, &entry)?;
        let mut cluster = crate::cluster::ClusterFile::load(dir)?;
        if let Some(n) = cluster.nodes.iter_mut().find(|n| n.id == entry.id) {
            n.pid = Some(child.id());
        }
        cluster.save(dir)?;
        println!(
            "started node {} (pid {}, log {}/node-{}.log); stop it with kill {}",
            entry.id,
            child.id(),
            dir.display(),
            entry.id,
            child.id()
        );
    }
    println!(
        "it asks the cluster to join; admit it with:\n  guardctl node approve {} --cluster {}",
        entry.id,
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn up(shape: &Shape, demo: bool, bench: bool) -> anyhow::Result<ExitCode> {
    use std::time::Duration;
    let bin = crate::devup::guardian_binary()?;
    let mut cluster = crate::devup::generate(&shape.options())?;
    let dir = cluster.genesis.parent().map(|p| p.to_path_buf()).unwrap_or_default();
    eprintln!("{INSECURE_LABEL}");
    let mut children = Vec::new();
    for i in 0..cluster.nodes.len() {
        let child = crate::devup::spawn(&bin, &dir, &cluster.nodes[i])?;
        cluster.nodes[i].pid = Some(child.id());
        children.push(child);
    }
    cluster.save(&dir)?;
    let rt = tokio::runtime::Runtime::new()?;
    let ready = rt.block_on(async {
        for _ in 0..120 {
            if crate::clusterctl::status_quiet(&dir).await {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        false
    });
    if !ready {
        crate::devup::stop_all(&mut children, Duration::from_secs(5));
        return Err(anyhow::anyhow!(
            "the cluster did not become ready within 60 s; see the node logs in {}",
            dir.display()
        ));
    }
    rt.block_on(crate::clusterctl::status(&dir, false))?;
    if demo {
        let children = std::sync::Mutex::new(children);
        let ids: Vec<u64> = cluster.nodes.iter().map(|n| n.id).collect();
        let kill = |id: u64| -> anyhow::Result<()> {
            let i = ids.iter().position(|n| *n == id).ok_or_else(|| anyhow::anyhow!("no node {id}"))?;
            let mut c = children.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            c[i].kill()?;
            let _ = c[i].wait();
            Ok(())
        };
        let outcome = rt.block_on(crate::demo::run(&dir, kill));
        let mut children = children.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
        println!("stopping...");
        crate::devup::stop_all(&mut children, Duration::from_secs(10));
        return outcome;
    }
    if bench {
        let outcome = rt.block_on(crate::bench::run(&dir, None, &crate::bench::BenchOpts::default(), false));
        println!("stopping...");
        crate::devup::stop_all(&mut children, Duration::from_secs(10));
        return outcome;
    }
    println!("\n{} guardian nodes are running (logs: {}/node-N.log).", children.len(), dir.display());
    println!("  guardctl status --cluster {}", dir.display());
    println!("  guardctl namespace create NAME --cluster {}", dir.display());
    println!("Press Ctrl-C to stop them.");
    rt.block_on(async {
        let _ = tokio::signal::ctrl_c().await;
    });
    println!("stopping...");
    crate::devup::stop_all(&mut children, Duration::from_secs(10));
    println!("stopped; data kept in {}", dir.display());
    Ok(ExitCode::SUCCESS)
}
