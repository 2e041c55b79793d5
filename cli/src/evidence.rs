//! `guardctl evidence verify` and `guardctl evidence inspect`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use guardian_node::attest::azure::{pem_to_der, AzureTrust};
use guardian_node::attest::sim::SimTrust;
use guardian_node::attest::tdx::{Collateral, TdxVerifier};
use guardian_node::attest::{detect_kind, inspect, Evidence, TeeKind, Verifier, VerifyOptions};
use guardian_node::policy::PolicySet;

use crate::output::{self, Verdict};
use crate::UsageError;

#[derive(Subcommand)]
pub enum EvidenceCmd {
    /// Verify evidence cryptographically and, with --policy, against a namespace's policy.
    Verify(VerifyArgs),
    /// Decode evidence and print what it claims, WITHOUT verifying anything.
    Inspect(InspectArgs),
}

#[derive(Args)]
pub struct VerifyArgs {
    /// Evidence file: a TDX quote (raw or hex), CoCo az-tdx-vtpm JSON, or sim JSON.
    #[arg(long)]
    evidence: PathBuf,
    /// Evidence kind; detected from the file when omitted.
    #[arg(long, value_parser = parse_kind)]
    kind: Option<TeeKind>,
    /// Intel collateral for the platform (dcap-qvl QuoteCollateralV3 JSON). Needed for tdx and az-tdx-vtpm.
    #[arg(long)]
    collateral: Option<PathBuf>,
    /// TDX event log to replay against RTMR0-3: CCEL binary, or dstack JSON.
    #[arg(long)]
    event_log: Option<PathBuf>,
    /// Hex value the evidence must be bound to (az-tdx-vtpm: the vTPM quote nonce; tdx/sim: a report_data prefix).
    #[arg(long)]
    nonce: Option<String>,
    /// Time to verify at (RFC 3339, e.g. 2025-06-20T00:00:00Z); default: now.
    #[arg(long)]
    at: Option<String>,
    /// Policy file (TOML); requires --namespace.
    #[arg(long, requires = "namespace")]
    policy: Option<PathBuf>,
    /// Namespace whose policy decides.
    #[arg(long, requires = "policy")]
    namespace: Option<String>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Without a policy: accept TDs that lack SEPT_VE_DISABLE (some Azure images).
    #[arg(long, conflicts_with = "policy")]
    allow_missing_sept_ve_disable: bool,
    /// Without a policy: accept the Azure TCB quirk (see docs/attestation.md).
    #[arg(long, conflicts_with = "policy")]
    azure_tcb_quirk: bool,
    /// PEM root certificate(s) the Azure vTPM AK certificate must chain to (repeatable).
    #[arg(long)]
    azure_ak_root: Vec<PathBuf>,
    /// INSECURE: trust simulated-TEE evidence signed by this Ed25519 public key (hex; repeatable).
    #[arg(long)]
    insecure_sim_key: Vec<String>,
}

#[derive(Args)]
pub struct InspectArgs {
    #[arg(long)]
    evidence: PathBuf,
    #[arg(long, value_parser = parse_kind)]
    kind: Option<TeeKind>,
    #[arg(long)]
    json: bool,
}

fn parse_kind(s: &str) -> Result<TeeKind, String> {
    s.parse()
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, UsageError> {
    std::fs::read(path).map_err(|e| UsageError(format!("cannot read {what} {}: {e}", path.display())))
}

pub fn run(cmd: EvidenceCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        EvidenceCmd::Verify(args) => verify(args),
        EvidenceCmd::Inspect(args) => {
            let bytes = read(&args.evidence, "evidence")?;
            let kind = args.kind.unwrap_or_else(|| detect_kind(&bytes));
            match inspect::inspect(kind, &bytes) {
                Ok(fields) => {
                    output::print_inspection(kind, &fields, args.json);
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => Err(anyhow::anyhow!("cannot decode {kind} evidence: {e}")),
            }
        }
    }
}

fn verify(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let bytes = read(&args.evidence, "evidence")?;
    let kind = args.kind.unwrap_or_else(|| detect_kind(&bytes));
    let now = match &args.at {
        Some(at) => guardian_node::rfc3339::parse(at)
            .ok_or_else(|| UsageError(format!("--at {at:?} is not an RFC 3339 time such as 2025-06-20T00:00:00Z")))?,
        None => time::OffsetDateTime::now_utc().unix_timestamp().max(0) as u64,
    };
    let collateral = match &args.collateral {
        Some(p) => Some(read(p, "collateral")?),
        None if kind != TeeKind::Sim => {
            return Err(UsageError(format!(
                "{kind} evidence is verified against Intel collateral: pass --collateral FILE (QuoteCollateralV3 JSON for the platform's FMSPC)"
            ))
            .into())
        }
        None => None,
    };
    let event_log = args.event_log.as_deref().map(|p| read(p, "event log")).transpose()?;
    let nonce = args
        .nonce
        .as_deref()
        .map(|n| hex::decode(n).map_err(|_| UsageError("--nonce must be hex".into())))
        .transpose()?;
    let policy = match (&args.policy, &args.namespace) {
        (Some(p), Some(ns)) => {
            let text =
                String::from_utf8(read(p, "policy")?).map_err(|_| UsageError("policy file is not UTF-8".into()))?;
            let set = PolicySet::from_toml(&text).map_err(|e| UsageError(format!("{}: {e}", p.display())))?;
            Some(set.namespace(ns).map_err(UsageError)?.clone())
        }
        _ => None,
    };
    let mut opts = match &policy {
        Some(ns) => ns.verify_options(now),
        None => VerifyOptions {
            require_sept_ve_disable: !args.allow_missing_sept_ve_disable,
            azure_tcb_quirk: args.azure_tcb_quirk,
            ..VerifyOptions::at(now)
        },
    };
    opts.expected_nonce = nonce;

    let mut ak_roots = Vec::new();
    for p in &args.azure_ak_root {
        let pem = String::from_utf8(read(p, "Azure AK root")?).map_err(|_| UsageError("AK root is not PEM".into()))?;
        ak_roots.push(pem_to_der(&pem).map_err(|e| UsageError(format!("{}: {e}", p.display())))?);
    }
    let sim = if args.insecure_sim_key.is_empty() {
        None
    } else {
        let keys = crate::hex_keys(&args.insecure_sim_key, "--insecure-sim-key")?;
        Some(SimTrust::insecure_for_development(&keys).map_err(|e| UsageError(e.to_string()))?)
    };
    let verifier =
        Verifier { tdx: TdxVerifier::intel(), azure: AzureTrust { ak_roots, ak_intermediates: Vec::new() }, sim };

    // Collateral that does not parse is a refusal like any other bad input.
    let result = collateral.as_deref().map(Collateral::from_json).transpose().and_then(|c| {
        let ev = Evidence { kind, bytes: &bytes, collateral: c.as_ref(), event_log: event_log.as_deref() };
        verifier.verify(&ev, &opts)
    });
    let decision = match (&result, &policy) {
        (Ok(claims), Some(ns)) => Some((ns.name.to_string(), ns.evaluate(claims))),
        _ => None,
    };
    let verdict = Verdict { kind, at: now, result: &result, decision: decision.as_ref() };
    output::print_verdict(&verdict, args.json);
    Ok(if verdict.success() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
