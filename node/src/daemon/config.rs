//! The daemon's configuration: a TOML file, overridden by command-line flags.
//!
//! ```toml
//! node_id = 1
//! data_dir = "/var/lib/guardian"
//! genesis = "/etc/guardian/genesis.toml"
//! peer_listen = "0.0.0.0:7100"     # RA-TLS between guardians
//! # peer_advertise = "10.0.0.6:7100" # where others reach this node: a genesis member's must equal
//! #                                  # its genesis address; a node not in genesis (a joiner) needs it
//! # peer_source_ip = "10.0.0.6"     # local address to dial peers from (multi-homed hosts)
//! admin_listen = "127.0.0.1:7200"  # guardctl (server-attested TLS; commands are signed)
//! health_listen = "127.0.0.1:7300" # HTTP: /healthz (process up), /readyz (in a cluster with a leader)
//! workload_listen = "0.0.0.0:7400"  # attested workloads (WorkloadService); omitted = not served
//! workload_config_dirs = ["/srv/guardian/configs"]  # where file:// configs may live (default none)
//! log_format = "text"              # or "json"
//!
//! [tee]
//! kind = "tdx"                     # or "sim" (development only, see below)
//! collateral = "/etc/guardian/collateral.json"
//!
//! # Development only. Both lines are needed, and the genesis guardian policy
//! # must accept "sim" evidence too; a production genesis never does.
//! # kind = "sim"
//! # insecure_simulated_tee = true
//! # sim_seed = "<64 hex>"            # this node's simulated TEE key
//! # sim_trusted_keys = ["<64 hex>"]  # the simulated TEEs of the other nodes
//!
//! [coco]                           # Confidential Containers front ends (docs/coco.md); omitted = off
//! listen = "0.0.0.0:7500"          # HTTPS: Vault KV v1 (/v1/...) and the KBS protocol (/kbs/v0/...)
//! tls_cert = "/etc/guardian/coco.pem"  # certificate chain (PEM) clients verify; without it the node's
//! tls_key = "/etc/guardian/coco.key"   # self-signed RA-TLS certificate is presented
//! # insecure_sample_evidence = true    # accept CoCo "sample" evidence: development only, needs kind = "sim"
//!
//! [sealer]                         # how the data directory is sealed at rest
//! kind = "tpm"                     # the default; needs a build with `--features tpm-sealer`
//! tpm_tcti = "device:/dev/tpmrm0"  # the default (Azure CVM vTPM); or "swtpm:host=..,port=.."
//! tpm_pcrs = []                    # SHA-256 PCRs the data key is bound to (default none)
//! # kind = "insecure-dev-file"     # INSECURE, development only: the key sits beside the data
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use crate::store::SealerConfig;

#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(pub String);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Which TEE this node runs in, and so how it produces evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TeeConfig {
    Tdx {
        collateral: Option<PathBuf>,
    },
    /// INSECURE simulated TEE. Only constructed when the config says so twice.
    InsecureSim {
        seed: [u8; 32],
        trusted_keys: Vec<[u8; 32]>,
        /// Label the simulated measurements derive from.
        label: String,
        /// Faults to inject, for Byzantine tests only.
        byzantine: Byzantine,
    },
}

/// Faults a test node injects (`tee.insecure_byzantine`): only with the
/// simulated TEE, so a production configuration cannot turn them on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Byzantine {
    /// Answer EvalShare with invalid BLS signature shares.
    pub corrupt_bls_shares: bool,
    /// Answer FrostSign with invalid signature shares.
    pub corrupt_frost_shares: bool,
    /// As a dealer in a key ceremony, send one recipient a wrong (signed) share.
    pub corrupt_dealing: bool,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub node_id: u64,
    pub data_dir: PathBuf,
    pub genesis: PathBuf,
    pub peer_listen: SocketAddr,
    /// host:port other nodes reach the peer port at (joiners must set it).
    pub peer_advertise: Option<String>,
    /// Local address outgoing peer connections are made from (default: the OS chooses).
    pub peer_source_ip: Option<std::net::IpAddr>,
    pub admin_listen: SocketAddr,
    pub health_listen: SocketAddr,
    /// The workload port, if this node serves workloads.
    pub workload_listen: Option<SocketAddr>,
    /// Directories `file://` configs may be read from.
    pub workload_config_dirs: Vec<PathBuf>,
    pub log_format: LogFormat,
    pub tee: TeeConfig,
    pub sealer: SealerConfig,
    /// Raft timing, milliseconds (defaults suit a LAN; raise across clouds).
    pub heartbeat_ms: u64,
    pub election_timeout_ms: u64,
    /// The CoCo front ends, if this node serves them.
    pub coco: Option<CocoConfig>,
    /// Build a snapshot after this many applied entries.
    pub snapshot_every: u64,
    /// Log entries kept behind a snapshot for slow followers (beyond them, a
    /// follower catches up by installing the snapshot).
    pub snapshot_keep_logs: u64,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ConfigToml {
    pub node_id: Option<u64>,
    pub data_dir: Option<PathBuf>,
    pub genesis: Option<PathBuf>,
    pub peer_listen: Option<SocketAddr>,
    pub peer_advertise: Option<String>,
    pub peer_source_ip: Option<std::net::IpAddr>,
    pub admin_listen: Option<SocketAddr>,
    pub health_listen: Option<SocketAddr>,
    pub workload_listen: Option<SocketAddr>,
    #[serde(default)]
    pub workload_config_dirs: Vec<PathBuf>,
    pub log_format: Option<LogFormat>,
    pub heartbeat_ms: Option<u64>,
    pub election_timeout_ms: Option<u64>,
    pub snapshot_every: Option<u64>,
    pub snapshot_keep_logs: Option<u64>,
    #[serde(default)]
    pub tee: TeeToml,
    #[serde(default)]
    pub sealer: SealerToml,
    pub coco: Option<CocoToml>,
}

/// The CoCo front ends (Vault KV v1 for a Trustee KBS; the KBS protocol itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CocoConfig {
    pub listen: SocketAddr,
    /// Certificate chain and PKCS#8 key (PEM); `None` = the node's RA-TLS certificate.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// INSECURE: accept CoCo "sample" evidence (it proves nothing). Only with the simulated TEE.
    pub insecure_sample_evidence: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CocoToml {
    pub listen: SocketAddr,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    #[serde(default)]
    pub insecure_sample_evidence: bool,
}

impl CocoToml {
    fn build(self, tee: &TeeConfig) -> Result<CocoConfig, ConfigError> {
        let tls = match (self.tls_cert, self.tls_key) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            _ => return Err(ConfigError("coco.tls_cert and coco.tls_key go together".into())),
        };
        if self.insecure_sample_evidence && !matches!(tee, TeeConfig::InsecureSim { .. }) {
            return Err(ConfigError(
                "coco.insecure_sample_evidence accepts evidence that proves nothing: it is only valid on a development node (tee.kind = \"sim\")".into(),
            ));
        }
        Ok(CocoConfig { listen: self.listen, tls, insecure_sample_evidence: self.insecure_sample_evidence })
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SealerToml {
    pub kind: Option<String>,
    pub tpm_tcti: Option<String>,
    #[serde(default)]
    pub tpm_pcrs: Vec<u8>,
}

impl SealerToml {
    fn build(self) -> Result<SealerConfig, ConfigError> {
        match self.kind.as_deref().unwrap_or("tpm") {
            "tpm" => Ok(SealerConfig::Tpm {
                tcti: self.tpm_tcti.unwrap_or_else(|| crate::store::seal::DEFAULT_TPM_TCTI.to_string()),
                pcrs: self.tpm_pcrs,
            }),
            "insecure-dev-file" if self.tpm_tcti.is_none() && self.tpm_pcrs.is_empty() => {
                Ok(SealerConfig::InsecureDevFile)
            }
            "insecure-dev-file" => Err(ConfigError("sealer.tpm_* settings are only valid with kind = \"tpm\"".into())),
            other => Err(ConfigError(format!(
                "unknown sealer.kind {other:?}: use \"tpm\" (or \"insecure-dev-file\" for development)"
            ))),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TeeToml {
    pub kind: Option<String>,
    pub collateral: Option<PathBuf>,
    #[serde(default)]
    pub insecure_simulated_tee: bool,
    pub sim_seed: Option<String>,
    #[serde(default)]
    pub sim_trusted_keys: Vec<String>,
    /// Label the simulated measurements derive from (default "guardian-dev").
    pub sim_label: Option<String>,
    /// Faults to inject: "corrupt-bls-shares", "corrupt-frost-shares", "corrupt-dealing" (tests only).
    #[serde(default)]
    pub insecure_byzantine: Vec<String>,
}

fn hex32(s: &str, what: &str) -> Result<[u8; 32], ConfigError> {
    hex::decode(s)
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| ConfigError(format!("{what} must be 32 bytes of hex")))
}

impl ConfigToml {
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError(e.to_string()))
    }

    /// Validate into a [`Config`]; missing required settings are named.
    pub fn build(self) -> Result<Config, ConfigError> {
        let need =
            |what: &str| ConfigError(format!("{what} is required (config file or --{})", what.replace('_', "-")));
        let tee = match self.tee.kind.as_deref().unwrap_or("tdx") {
            "tdx" => {
                if self.tee.insecure_simulated_tee
                    || self.tee.sim_seed.is_some()
                    || self.tee.sim_label.is_some()
                    || !self.tee.insecure_byzantine.is_empty()
                {
                    return Err(ConfigError("sim settings are only valid with tee.kind = \"sim\"".into()));
                }
                TeeConfig::Tdx { collateral: self.tee.collateral }
            }
            "sim" => {
                if !self.tee.insecure_simulated_tee {
                    return Err(ConfigError(
                        "tee.kind = \"sim\" is the INSECURE simulated TEE; it also needs tee.insecure_simulated_tee = true, and is for development only".into(),
                    ));
                }
                let seed = hex32(self.tee.sim_seed.as_deref().ok_or_else(|| need("tee.sim_seed"))?, "tee.sim_seed")?;
                let trusted_keys = self
                    .tee
                    .sim_trusted_keys
                    .iter()
                    .map(|k| hex32(k, "tee.sim_trusted_keys entry"))
                    .collect::<Result<_, _>>()?;
                let mut byzantine = Byzantine::default();
                for fault in &self.tee.insecure_byzantine {
                    match fault.as_str() {
                        "corrupt-bls-shares" => byzantine.corrupt_bls_shares = true,
                        "corrupt-frost-shares" => byzantine.corrupt_frost_shares = true,
                        "corrupt-dealing" => byzantine.corrupt_dealing = true,
                        other => {
                            return Err(ConfigError(format!(
                                "unknown tee.insecure_byzantine fault {other:?}: use \"corrupt-bls-shares\", \"corrupt-frost-shares\" or \"corrupt-dealing\""
                            )))
                        }
                    }
                }
                TeeConfig::InsecureSim {
                    seed,
                    trusted_keys,
                    label: self.tee.sim_label.unwrap_or_else(|| "guardian-dev".into()),
                    byzantine,
                }
            }
            other => {
                return Err(ConfigError(format!(
                    "unknown tee.kind {other:?}: use \"tdx\" (or \"sim\" for development)"
                )))
            }
        };
        Ok(Config {
            node_id: self.node_id.ok_or_else(|| need("node_id"))?,
            data_dir: self.data_dir.ok_or_else(|| need("data_dir"))?,
            genesis: self.genesis.ok_or_else(|| need("genesis"))?,
            peer_listen: self.peer_listen.ok_or_else(|| need("peer_listen"))?,
            peer_advertise: self.peer_advertise,
            peer_source_ip: self.peer_source_ip,
            admin_listen: self.admin_listen.ok_or_else(|| need("admin_listen"))?,
            health_listen: self.health_listen.ok_or_else(|| need("health_listen"))?,
            workload_listen: self.workload_listen,
            workload_config_dirs: self.workload_config_dirs,
            coco: self.coco.map(|c| c.build(&tee)).transpose()?,
            log_format: self.log_format.unwrap_or(LogFormat::Text),
            tee,
            sealer: self.sealer.build()?,
            heartbeat_ms: self.heartbeat_ms.unwrap_or(250),
            election_timeout_ms: self.election_timeout_ms.unwrap_or(1500),
            snapshot_every: self.snapshot_every.unwrap_or(1000),
            snapshot_keep_logs: self.snapshot_keep_logs.unwrap_or(1000),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "node_id = 1\ndata_dir = \"/d\"\ngenesis = \"/g\"\npeer_listen = \"127.0.0.1:1\"\nadmin_listen = \"127.0.0.1:2\"\nhealth_listen = \"127.0.0.1:3\"\n";

    #[test]
    fn sim_needs_both_switches() {
        let seed = "11".repeat(32);
        let one = format!("{BASE}[tee]\nkind = \"sim\"\nsim_seed = \"{seed}\"\n");
        let e = ConfigToml::parse(&one).unwrap().build().unwrap_err().to_string();
        assert!(e.contains("INSECURE"), "{e}");
        let both = format!("{BASE}[tee]\nkind = \"sim\"\ninsecure_simulated_tee = true\nsim_seed = \"{seed}\"\n");
        assert!(matches!(ConfigToml::parse(&both).unwrap().build().unwrap().tee, TeeConfig::InsecureSim { .. }));
        let stray = format!("{BASE}[tee]\ninsecure_simulated_tee = true\n");
        assert!(ConfigToml::parse(&stray).unwrap().build().is_err());
        assert!(matches!(ConfigToml::parse(BASE).unwrap().build().unwrap().tee, TeeConfig::Tdx { .. }));
    }

    #[test]
    fn test_faults_need_the_simulated_tee() {
        let seed = "11".repeat(32);
        let sim = format!("{BASE}[tee]\nkind = \"sim\"\ninsecure_simulated_tee = true\nsim_seed = \"{seed}\"\n");
        let faults = |list: &str| format!("{sim}insecure_byzantine = [{list}]\n");
        let built = ConfigToml::parse(&faults("\"corrupt-bls-shares\", \"corrupt-dealing\"")).unwrap().build().unwrap();
        let TeeConfig::InsecureSim { byzantine, .. } = built.tee else { panic!("sim") };
        assert!(byzantine.corrupt_bls_shares && byzantine.corrupt_dealing && !byzantine.corrupt_frost_shares);
        let unknown = ConfigToml::parse(&faults("\"lie\"")).unwrap().build().unwrap_err().to_string();
        assert!(unknown.contains("unknown tee.insecure_byzantine fault"), "{unknown}");
        // A production (TDX) configuration cannot turn them on.
        let tdx = format!("{BASE}[tee]\nkind = \"tdx\"\ninsecure_byzantine = [\"corrupt-bls-shares\"]\n");
        assert!(ConfigToml::parse(&tdx).unwrap().build().is_err());
    }

    #[test]
    fn the_sealer_defaults_to_the_tpm_and_the_dev_file_is_opt_in() {
        let sealer = |extra: &str| ConfigToml::parse(&format!("{BASE}{extra}")).unwrap().build().map(|c| c.sealer);
        let tpm = sealer("").unwrap();
        assert!(
            matches!(tpm, SealerConfig::Tpm { ref tcti, ref pcrs } if tcti == "device:/dev/tpmrm0" && pcrs.is_empty())
        );
        let dev = sealer("[sealer]\nkind = \"insecure-dev-file\"\n").unwrap();
        assert!(matches!(dev, SealerConfig::InsecureDevFile));
        assert!(sealer("[sealer]\nkind = \"file\"\n").unwrap_err().to_string().contains("unknown sealer.kind"));
        assert!(sealer("[sealer]\nkind = \"insecure-dev-file\"\ntpm_pcrs = [7]\n").is_err());
    }

    #[test]
    fn sample_evidence_is_only_for_a_simulated_node() {
        let coco = "[coco]\nlisten = \"127.0.0.1:4\"\ninsecure_sample_evidence = true\n";
        let e = ConfigToml::parse(&format!("{BASE}{coco}")).unwrap().build().unwrap_err().to_string();
        assert!(e.contains("development node"), "{e}");
        let seed = "11".repeat(32);
        let sim = format!("{BASE}{coco}[tee]\nkind = \"sim\"\ninsecure_simulated_tee = true\nsim_seed = \"{seed}\"\n");
        assert!(ConfigToml::parse(&sim).unwrap().build().unwrap().coco.unwrap().insecure_sample_evidence);
        let half = format!("{BASE}[coco]\nlisten = \"127.0.0.1:4\"\ntls_cert = \"/c\"\n");
        assert!(ConfigToml::parse(&half).unwrap().build().is_err());
    }

    #[test]
    fn the_shipped_coco_section_parses() {
        let coco = include_str!("../../../deploy/coco/guardian-coco.toml");
        let c = ConfigToml::parse(&format!("{BASE}{coco}")).unwrap().build().unwrap().coco.unwrap();
        assert!(c.tls.is_some() && !c.insecure_sample_evidence);
    }

    #[test]
    fn errors_name_the_setting() {
        let e = ConfigToml::parse("node_id = 1").unwrap().build().unwrap_err().to_string();
        assert!(e.contains("data_dir is required"), "{e}");
        assert!(ConfigToml::parse("nodeid = 1").is_err());
    }
}
