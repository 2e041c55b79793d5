//! Rendering verdicts and inspections as text (for people) or JSON (for scripts).

use std::collections::BTreeMap;

use guardian_node::attest::inspect::Fields;
use guardian_node::attest::{AttestError, Claims, TeeKind};
use guardian_node::policy::Decision;
use serde_json::{json, Value};

/// Write a line to stdout, ignoring a closed pipe (`guardctl ... | head`).
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}
pub(crate) use out;

/// The outcome of `evidence verify`.
pub struct Verdict<'a> {
    pub kind: TeeKind,
    pub at: u64,
    pub result: &'a Result<Claims, AttestError>,
    pub decision: Option<&'a (String, Decision)>,
}

impl Verdict<'_> {
    pub fn success(&self) -> bool {
        self.result.is_ok() && self.decision.is_none_or(|(_, d)| d.is_allow())
    }
}

use guardian_node::rfc3339::format as rfc3339;

/// The stable name of an error's variant, for scripts.
fn error_kind(e: &AttestError) -> String {
    let dbg = format!("{e:?}");
    dbg.split(['(', ' ', '{']).next().unwrap_or("Error").to_string()
}

fn measurements(c: &Claims) -> Value {
    let mut m = serde_json::Map::new();
    m.insert("mrtd".into(), hex::encode(c.td.mrtd).into());
    for (i, r) in c.td.rtmr.iter().enumerate() {
        m.insert(format!("rtmr{i}"), hex::encode(r).into());
    }
    m.insert("mrconfigid".into(), hex::encode(c.td.mrconfigid).into());
    m.insert("mrowner".into(), hex::encode(c.td.mrowner).into());
    m.insert("mrownerconfig".into(), hex::encode(c.td.mrownerconfig).into());
    if c.tee == TeeKind::AzTdxVtpm {
        let pcrs: BTreeMap<String, String> = c.pcrs.iter().map(|(i, v)| (i.to_string(), hex::encode(v))).collect();
        m.insert("pcrs".into(), json!(pcrs));
    }
    Value::Object(m)
}

pub fn to_json(v: &Verdict<'_>) -> Value {
    let mut out = json!({
        "verified": v.result.is_ok(),
        "error": v.result.as_ref().err().map(|e| e.to_string()),
        "error_kind": v.result.as_ref().err().map(error_kind),
        "tee": v.kind.as_str(),
        "insecure": v.kind.is_insecure(),
        "verified_at": rfc3339(v.at),
        "tcb_status": Value::Null,
        "advisory_ids": Value::Null,
        "measurements": Value::Null,
        "report_data": Value::Null,
    });
    if let Ok(c) = v.result {
        out["tee"] = c.tee.as_str().into();
        out["tcb_status"] = c.tcb_status.as_str().into();
        out["advisory_ids"] = json!(c.advisory_ids);
        out["tcb_override"] = json!(c.tcb_override);
        out["fmspc"] = json!(c.fmspc.map(hex::encode));
        out["measurements"] = measurements(c);
        out["report_data"] = hex::encode(c.td.report_data).into();
        out["td_attributes"] = format!("{:016x}", c.td.td_attributes.0).into();
        out["debug"] = c.td.td_attributes.debug().into();
        out["sept_ve_disable"] = c.td.td_attributes.sept_ve_disable().into();
        out["events"] = json!(c.events);
    }
    if let Some((ns, d)) = v.decision {
        out["namespace"] = ns.clone().into();
        out["decision"] = if d.is_allow() { "allow" } else { "deny" }.into();
        out["reason"] = d.reason().into();
    }
    out
}

pub fn print_verdict(v: &Verdict<'_>, as_json: bool) {
    if as_json {
        out!("{}", to_json(v));
        return;
    }
    match v.result {
        Err(e) => out!("NOT VERIFIED ({} evidence, at {}): {e}", v.kind, rfc3339(v.at)),
        Ok(c) => {
            let advisories = if c.advisory_ids.is_empty() { "none".to_string() } else { c.advisory_ids.join(", ") };
            out!("VERIFIED {} evidence at {}", c.tee, rfc3339(v.at));
            if c.tee.is_insecure() {
                out!("  WARNING: simulated TEE - INSECURE, proves nothing about hardware");
            }
            out!("  tcb_status    {}", c.tcb_status);
            out!("  advisories    {advisories}");
            if let Some(o) = c.tcb_override {
                out!("  tcb_override  {o}");
            }
            if let Some(f) = c.fmspc {
                out!("  fmspc         {}", hex::encode(f));
            }
            out!("  mrtd          {}", hex::encode(c.td.mrtd));
            for (i, r) in c.td.rtmr.iter().enumerate() {
                out!("  rtmr{i}         {}", hex::encode(r));
            }
            for (i, p) in &c.pcrs {
                out!("  pcr{i:<2}         {}", hex::encode(p));
            }
            out!("  report_data   {}", hex::encode(c.td.report_data));
            out!(
                "  attributes    {:016x} (debug={}, sept_ve_disable={})",
                c.td.td_attributes.0,
                c.td.td_attributes.debug(),
                c.td.td_attributes.sept_ve_disable()
            );
            if !c.events.is_empty() {
                out!("  event log     {} events replayed, RTMR0-3 match", c.events.len());
            }
        }
    }
    if let Some((ns, d)) = v.decision {
        let word = if d.is_allow() { "ALLOW" } else { "DENY" };
        out!("POLICY {word} (namespace {ns}): {}", d.reason());
    }
}

pub fn print_inspection(kind: TeeKind, fields: &Fields, as_json: bool) {
    if as_json {
        let map: serde_json::Map<String, Value> = fields.iter().map(|(k, v)| (k.clone(), v.clone().into())).collect();
        out!("{}", json!({ "kind": kind.as_str(), "verified": false, "fields": map }));
        return;
    }
    out!("UNVERIFIED {kind} evidence: these are the evidence's own claims, nothing was checked");
    let width = fields.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in fields {
        out!("  {k:<width$}  {v}");
    }
}
