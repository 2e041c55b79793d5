//! Developer tooling. Everything here uses the INSECURE simulated TEE.

use std::process::ExitCode;

use clap::Subcommand;
use guardian_node::attest::sim::{SimMeasurements, SimTee, INSECURE_LABEL};

use crate::UsageError;

#[derive(Subcommand)]
pub enum DevCmd {
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

pub fn run(cmd: DevCmd) -> anyhow::Result<ExitCode> {
    match cmd {
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
