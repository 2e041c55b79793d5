//! Helpers for the workload tests: the simulated workload's policy, and
//! reading guardctl's JSON answers and refusals.

use std::path::{Path, PathBuf};
use std::process::Output;

use guardian_node::attest::sim::SimMeasurements;
use serde_json::Value;

/// Measurements label of the simulated workload the tests play.
pub const APP: &str = "guardian-demo-app";

/// Write a namespace policy admitting [`APP`] as rule `app`, granted the key
/// prefixes `keys` and the configs `configs`, to `dir/name`.
pub fn app_policy(dir: &Path, name: &str, keys: &[&str], configs: &[&str]) -> PathBuf {
    let m = SimMeasurements::from_label(APP);
    let list = |items: &[&str]| items.iter().map(|i| format!("{i:?}")).collect::<Vec<_>>().join(", ");
    let text = format!(
        "[workloads]\ntees = [\"sim\"]\naccepted_tcb_status = [\"Simulated\"]\n\n\
         [[workloads.tdx]]\nname = \"app\"\nmrtd = \"{}\"\nrtmr2 = \"{}\"\n\n\
         [certificates]\ndns_sans = [\"app.demo.svc\"]\n\n\
         [[grants]]\nrule = \"app\"\nkeys = [{}]\nconfigs = [{}]\n",
        hex::encode(m.mrtd),
        hex::encode(m.rtmr[2]),
        list(keys),
        list(configs),
    );
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write policy");
    path
}

/// guardctl's `--json` answer (Null if stdout is not JSON).
pub fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or(Value::Null)
}

/// The answer of a guardctl call that must succeed.
pub fn ok(o: Output) -> Value {
    assert!(
        o.status.success(),
        "guardctl failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    json(&o)
}

/// A guardctl call that must fail, saying `why`.
pub fn refused(o: Output, why: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains(why), "expected a refusal with {why:?}, got: {err}");
}

/// `guardctl workload config --namespace NS NAME --identity DIR --node N --json` on cluster `c`.
pub fn workload_config(c: &crate::cluster::TestCluster, ns: &str, name: &str, identity: &str, node: &str) -> Output {
    c.guardctl(&["workload", "config", "--namespace", ns, name, "--identity", identity, "--node", node, "--json"])
}
