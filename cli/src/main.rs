//! `guardctl`: Guardian's admin, operator and developer CLI.
//!
//! # Layout
//! - `evidence`: `guardctl evidence verify|inspect` — check attestation evidence offline.
//! - `dev`: developer tooling (simulated-TEE evidence; later the local cluster).
//! - `output`: rendering of verdicts as text or JSON.
//!
//! Exit status: 0 success (evidence verified, and allowed when a policy is
//! given), 1 the evidence was refused, 2 bad usage (arguments, unreadable files).

mod dev;
mod evidence;
mod output;

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
    /// Developer tooling. Uses the INSECURE simulated TEE.
    #[command(subcommand)]
    Dev(dev::DevCmd),
}

/// A failure that is the caller's to fix (exit 2), as opposed to a refusal (exit 1).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("GUARDCTL_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Evidence(cmd) => evidence::run(cmd),
        Command::Dev(cmd) => dev::run(cmd),
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
