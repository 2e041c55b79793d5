//! The README's main job, as a user runs it: `guardctl dev up --demo` starts
//! a 3-of-5 local cluster (INSECURE simulated TEEs), walks the simulated
//! workload through attest → certificate → PVC key → config, plays a CoCo
//! pod through the KBS protocol for the same key, kills the leader, and must
//! get the same key from another node, over gRPC and with the pod's token.

use guardian_tests::bin::run_guardctl;
use guardian_tests::cluster::free_base;

#[test]
fn the_readme_demo_serves_the_same_key_after_the_leader_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let base = free_base(5).to_string();
    let out = run_guardctl(
        ["dev", "up", "--nodes", "5", "--threshold", "3", "--demo", "--base-port", &base, "--dir"]
            .iter()
            .map(std::ffi::OsStr::new)
            .chain([dir.path().as_os_str()]),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("demo passed"),
        "dev up --demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // One key: over gRPC and the KBS protocol, before and after the failover.
    let prints: Vec<&str> = stdout.lines().filter_map(|l| l.split("fingerprint ").nth(1)).collect();
    assert_eq!(prints.len(), 4, "{stdout}");
    assert!(prints.iter().all(|p| *p == prints[0]), "{stdout}");
    // No node outlives the command.
    let cluster: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("cluster.json")).unwrap()).unwrap();
    for n in cluster["nodes"].as_array().unwrap() {
        let pid = n["pid"].as_u64().unwrap();
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists(), "node {} (pid {pid}) still runs", n["id"]);
    }
}
