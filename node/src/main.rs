//! `guardian`: the Guardian node daemon.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use guardian_node::daemon::config::{ConfigToml, LogFormat};

#[derive(Parser)]
#[command(name = "guardian", version, about = "Guardian node: attested, replicated key management")]
struct Args {
    /// Configuration file (TOML); flags override its settings.
    #[arg(long)]
    config: Option<PathBuf>,
    #[arg(long)]
    node_id: Option<u64>,
    #[arg(long)]
    data_dir: Option<PathBuf>,
    #[arg(long)]
    genesis: Option<PathBuf>,
    #[arg(long)]
    peer_listen: Option<std::net::SocketAddr>,
    /// host:port other nodes reach this node's peer port at (needed by a node not in the genesis file).
    #[arg(long)]
    peer_advertise: Option<String>,
    #[arg(long)]
    admin_listen: Option<std::net::SocketAddr>,
    #[arg(long)]
    health_listen: Option<std::net::SocketAddr>,
    /// text or json
    #[arg(long)]
    log_format: Option<String>,
    /// TEE this node runs in: tdx, or sim (INSECURE, development only; also needs
    /// --insecure-simulated-tee and the sim settings in the config file).
    #[arg(long)]
    tee_kind: Option<String>,
    /// Confirms --tee-kind sim: this node will prove nothing about its hardware.
    #[arg(long)]
    insecure_simulated_tee: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut toml = match &args.config {
        Some(p) => match std::fs::read_to_string(p)
            .map_err(|e| e.to_string())
            .and_then(|t| ConfigToml::parse(&t).map_err(|e| e.to_string()))
        {
            Ok(t) => t,
            Err(e) => {
                eprintln!("guardian: {}: {e}", p.display());
                return ExitCode::from(2);
            }
        },
        None => ConfigToml::default(),
    };
    toml.node_id = args.node_id.or(toml.node_id);
    toml.data_dir = args.data_dir.or(toml.data_dir);
    toml.genesis = args.genesis.or(toml.genesis);
    toml.peer_listen = args.peer_listen.or(toml.peer_listen);
    toml.peer_advertise = args.peer_advertise.or(toml.peer_advertise);
    toml.admin_listen = args.admin_listen.or(toml.admin_listen);
    toml.tee.kind = args.tee_kind.or(toml.tee.kind);
    toml.tee.insecure_simulated_tee |= args.insecure_simulated_tee;
    toml.health_listen = args.health_listen.or(toml.health_listen);
    match args.log_format.as_deref() {
        Some("json") => toml.log_format = Some(LogFormat::Json),
        Some("text") => toml.log_format = Some(LogFormat::Text),
        Some(other) => {
            eprintln!("guardian: --log-format {other:?}: use text or json");
            return ExitCode::from(2);
        }
        None => {}
    }
    let config = match toml.build() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("guardian: {e}");
            return ExitCode::from(2);
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("GUARDIAN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn"));
    // Colour only on a terminal: logs in files stay greppable.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    match config.log_format {
        LogFormat::Json => tracing_subscriber::fmt().json().with_env_filter(filter).init(),
        LogFormat::Text => tracing_subscriber::fmt().with_ansi(ansi).with_env_filter(filter).init(),
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("guardian: tokio runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let shutdown = async {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    };
    match runtime.block_on(guardian_node::daemon::node::run(config, shutdown)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("guardian: {e}");
            ExitCode::from(1)
        }
    }
}
