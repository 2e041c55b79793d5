//! `guardctl dev up`: a local cluster of guardian processes on 127.0.0.1 with
//! the INSECURE simulated TEE, a generated genesis and admin key.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use guardian_node::attest::sim::{SimMeasurements, SimTee, INSECURE_LABEL};
use rand::RngCore;

use crate::cluster::{ClusterFile, NodeEntry};
use crate::UsageError;

/// Label the dev cluster's simulated measurements derive from; the genesis
/// guardian policy pins exactly these.
pub const DEV_LABEL: &str = "guardian-dev";

pub struct Options {
    pub nodes: u32,
    pub threshold: u32,
    /// Admin keys to generate (admin.key, admin-2.key, ...) and signatures needed for quorum commands.
    pub admins: u32,
    pub admin_quorum: u32,
    pub dir: PathBuf,
    pub base_port: u16,
    /// Admin recovery (escrow admins, or the escrow of a lost cluster to rebuild).
    pub recovery: crate::recovery::RecoveryOpts,
}

pub fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    rand::thread_rng().fill_bytes(&mut b);
    b
}

pub fn write_secret(path: &Path, contents: impl AsRef<[u8]>) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    f.write_all(contents.as_ref())
}

/// Extra simulated-TEE keys every dev node trusts from the start, so that
/// `guardctl dev add-node` can start nodes the cluster will accept.
pub const SPARE_NODES: u32 = 4;

/// Write genesis, admin key, node configs and cluster.json for a new dev cluster.
pub fn generate(o: &Options) -> anyhow::Result<ClusterFile> {
    if o.nodes == 0 || o.threshold == 0 || o.threshold > o.nodes {
        return Err(UsageError(format!("--threshold {} must be between 1 and --nodes {}", o.threshold, o.nodes)).into());
    }
    if o.dir.join(crate::cluster::FILE).exists() {
        return Err(UsageError(format!(
            "{} already holds a cluster; remove it or pick another --dir",
            o.dir.display()
        ))
        .into());
    }
    let (restored_id, extra) = o.recovery.genesis()?;
    std::fs::create_dir_all(&o.dir)?;
    let dir = o.dir.canonicalize()?;
    let cluster_id = hex::encode(restored_id.unwrap_or_else(random::<16>));
    if o.admins == 0 || o.admin_quorum == 0 || o.admin_quorum > o.admins {
        return Err(UsageError(format!(
            "--admin-quorum {} must be between 1 and --admins {}",
            o.admin_quorum, o.admins
        ))
        .into());
    }
    let mut admins = Vec::new();
    for i in 1..=o.admins {
        let key = SigningKey::from_bytes(&random::<32>());
        let file = if i == 1 { dir.join("admin.key") } else { dir.join(format!("admin-{i}.key")) };
        write_secret(&file, zeroize::Zeroizing::new(hex::encode(key.to_bytes())).as_bytes())?;
        admins.push((i, file, key.verifying_key().to_bytes()));
    }
    let admin_key = admins[0].1.clone();

    let m = SimMeasurements::from_label(DEV_LABEL);
    let seeds: Vec<[u8; 32]> = (0..o.nodes + SPARE_NODES).map(|_| random::<32>()).collect();
    let workload_seed = random::<32>();
    let sim_keys: Vec<String> = seeds
        .iter()
        .chain([&workload_seed])
        .map(|s| hex::encode(SimTee::new(s, SimMeasurements::from_label(DEV_LABEL)).public_key()))
        .collect();
    let port = |offset: u32, i: u32| -> anyhow::Result<u16> {
        u16::try_from(u32::from(o.base_port) + offset + i).map_err(|_| anyhow::anyhow!("--base-port too high"))
    };

    let mut genesis = format!(
        "# Development genesis: INSECURE simulated TEEs. Never use for real data.\n\
         cluster_id = \"{cluster_id}\"\nthreshold = {}\nadmin_quorum = {}\n\n",
        o.threshold, o.admin_quorum
    );
    let mut nodes = Vec::new();
    for i in 0..o.nodes {
        let id = u64::from(i + 1);
        let entry = NodeEntry {
            id,
            peer_addr: format!("127.0.0.1:{}", port(0, i)?),
            admin_addr: format!("127.0.0.1:{}", port(100, i)?),
            health_addr: format!("127.0.0.1:{}", port(200, i)?),
            workload_addr: Some(format!("127.0.0.1:{}", port(300, i)?)),
            coco_addr: Some(format!("127.0.0.1:{}", port(400, i)?)),
            config: dir.join(format!("node-{id}.toml")),
            data_dir: dir.join(format!("node-{id}")),
            pid: None,
        };
        genesis.push_str(&format!("[[members]]\nid = {id}\naddr = \"{}\"\n\n", entry.peer_addr));
        nodes.push(entry);
    }
    for (i, _, pk) in &admins {
        genesis.push_str(&format!("[[admins]]\nname = \"dev-admin-{i}\"\npublic_key = \"{}\"\n\n", hex::encode(pk)));
    }
    genesis.push_str(&extra);
    genesis.push_str(&format!(
        "[guardian_policy]\ntees = [\"sim\"]\naccepted_tcb_status = [\"Simulated\"]\n\n\
         [[guardian_policy.tdx]]\nname = \"{DEV_LABEL}\"\nmrtd = \"{}\"\nrtmr0 = \"{}\"\nrtmr1 = \"{}\"\nrtmr2 = \"{}\"\nrtmr3 = \"{}\"\n",
        hex::encode(m.mrtd),
        hex::encode(m.rtmr[0]),
        hex::encode(m.rtmr[1]),
        hex::encode(m.rtmr[2]),
        hex::encode(m.rtmr[3]),
    ));
    guardian_node::state::genesis::Genesis::parse(&genesis).map_err(|e| UsageError(e.to_string()))?;
    let genesis_path = dir.join("genesis.toml");
    std::fs::write(&genesis_path, genesis)?;
    let mut cluster = ClusterFile {
        cluster_id,
        genesis: genesis_path,
        admin_key,
        insecure_sim_keys: sim_keys,
        insecure_spare_seeds: seeds[nodes.len()..].iter().map(hex::encode).collect(),
        insecure_workload_seed: Some(hex::encode(workload_seed)),
        nodes: Vec::new(),
    };
    dev_coco_tls(&dir, &nodes)?;
    for (n, seed) in nodes.into_iter().zip(&seeds) {
        write_node_config(&cluster, &n, seed)?;
        cluster.nodes.push(n);
    }
    cluster.save(&dir)?;
    Ok(cluster)
}

/// A node's config file: its ports, data, and simulated TEE, trusting every
/// simulated TEE of the cluster (spares included).
fn write_node_config(cluster: &ClusterFile, n: &NodeEntry, seed: &[u8; 32]) -> anyhow::Result<()> {
    let trusted = cluster.insecure_sim_keys.iter().map(|k| format!("\"{k}\"")).collect::<Vec<_>>().join(", ");
    let dir = cluster.genesis.parent().unwrap_or(Path::new("."));
    let workload = match &n.workload_addr {
        Some(a) => {
            format!("workload_listen = \"{a}\"\nworkload_config_dirs = [\"{}\"]\n", dir.join("configs").display())
        }
        None => String::new(),
    };
    let coco = match &n.coco_addr {
        Some(a) => format!(
            "[coco]\nlisten = \"{a}\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\ninsecure_sample_evidence = true\n\n",
            dir.join(format!("node-{}-coco.pem", n.id)).display(),
            dir.join(format!("node-{}-coco.key", n.id)).display()
        ),
        None => String::new(),
    };
    let config = format!(
        "# {INSECURE_LABEL}\nnode_id = {}\ndata_dir = \"{}\"\ngenesis = \"{}\"\npeer_listen = \"{}\"\npeer_advertise = \"{}\"\nadmin_listen = \"{}\"\nhealth_listen = \"{}\"\n{workload}\n{coco}\
         [tee]\nkind = \"sim\"\ninsecure_simulated_tee = true\nsim_seed = \"{}\"\nsim_trusted_keys = [{trusted}]\n\n\
         [sealer]\nkind = \"insecure-dev-file\"\n",
        n.id,
        n.data_dir.display(),
        cluster.genesis.display(),
        n.peer_addr,
        n.peer_addr,
        n.admin_addr,
        n.health_addr,
        hex::encode(seed)
    );
    Ok(write_secret(&n.config, &config)?)
}

/// The dev cluster's CoCo HTTPS certificates: a throw-away CA (`coco-ca.pem`,
/// what kbs-client's `--cert-file` or a Trustee KBS's `ca_certs` trusts) and a
/// certificate per node for 127.0.0.1 and localhost. INSECURE: the CA key is
/// not kept, but nothing here is attested either.
fn dev_coco_tls(dir: &Path, nodes: &[NodeEntry]) -> anyhow::Result<()> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.distinguished_name.push(DnType::CommonName, "guardian dev CoCo CA (INSECURE)");
    let ca_cert = ca.self_signed(&ca_key)?;
    std::fs::write(dir.join("coco-ca.pem"), ca_cert.pem())?;
    let issuer = Issuer::new(ca, ca_key);
    for n in nodes.iter().filter(|n| n.coco_addr.is_some()) {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])?;
        params.distinguished_name.push(DnType::CommonName, format!("guardian dev node {}", n.id));
        let cert = params.signed_by(&key, &issuer)?;
        std::fs::write(dir.join(format!("node-{}-coco.pem", n.id)), cert.pem())?;
        write_secret(&dir.join(format!("node-{}-coco.key", n.id)), key.serialize_pem())?;
    }
    Ok(())
}

/// Add a node that is not in the genesis file to a dev cluster's directory:
/// the next id, the next free ports, a spare simulated TEE. Returns its entry;
/// the node asks to join once started, and an admin approves it.
pub fn add_node(dir: &Path) -> anyhow::Result<NodeEntry> {
    let mut cluster = ClusterFile::load(dir)?;
    let seed_hex = cluster.insecure_spare_seeds.first().cloned().ok_or_else(|| {
        UsageError(format!("this dev cluster has no spare simulated TEE left (it had {SPARE_NODES})"))
    })?;
    let seed: [u8; 32] = hex::decode(&seed_hex)
        .ok()
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| UsageError("cluster.json: a spare seed is not 32 bytes of hex".into()))?;
    let id = cluster.nodes.iter().map(|n| n.id).max().unwrap_or(0) + 1;
    let next_port = |addr: fn(&NodeEntry) -> &String| -> anyhow::Result<String> {
        let max = cluster
            .nodes
            .iter()
            .filter_map(|n| addr(n).rsplit_once(':').and_then(|(_, p)| p.parse::<u16>().ok()))
            .max()
            .ok_or_else(|| UsageError("cluster.json lists no node ports".into()))?;
        Ok(format!("127.0.0.1:{}", max.checked_add(1).ok_or_else(|| anyhow::anyhow!("no port left"))?))
    };
    let dir = dir.canonicalize()?;
    let entry = NodeEntry {
        id,
        peer_addr: next_port(|n| &n.peer_addr)?,
        admin_addr: next_port(|n| &n.admin_addr)?,
        health_addr: next_port(|n| &n.health_addr)?,
        workload_addr: None,
        coco_addr: None,
        config: dir.join(format!("node-{id}.toml")),
        data_dir: dir.join(format!("node-{id}")),
        pid: None,
    };
    write_node_config(&cluster, &entry, &seed)?;
    cluster.insecure_spare_seeds.remove(0);
    cluster.nodes.push(entry.clone());
    cluster.save(&dir)?;
    Ok(entry)
}

/// The `guardian` binary next to this `guardctl`.
pub fn guardian_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let bin = exe.with_file_name(format!("guardian{}", std::env::consts::EXE_SUFFIX));
    if !bin.exists() {
        return Err(
            UsageError(format!("{} not found: build it with `cargo build -p guardian-node`", bin.display())).into()
        );
    }
    Ok(bin)
}

/// Start one node's process, logging to `<dir>/node-<id>.log`.
pub fn spawn(bin: &Path, dir: &Path, node: &NodeEntry) -> anyhow::Result<Child> {
    let log = std::fs::File::create(dir.join(format!("node-{}.log", node.id)))?;
    let child = Command::new(bin)
        .arg("--config")
        .arg(&node.config)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()?;
    Ok(child)
}

/// Ask every child to stop (SIGTERM), then kill what is left after `grace`.
pub fn stop_all(children: &mut [Child], grace: Duration) {
    for c in children.iter() {
        if let Ok(pid) = i32::try_from(c.id()) {
            // SAFETY: kill(2) with a pid we spawned and SIGTERM has no memory effects.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
    }
    let deadline = Instant::now() + grace;
    for c in children.iter_mut() {
        while Instant::now() < deadline {
            if matches!(c.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        let _ = c.wait();
    }
}
