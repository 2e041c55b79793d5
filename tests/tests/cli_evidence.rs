//! `guardctl evidence` as a user runs it: a real process, real files, exit codes
//! and the JSON contract, over the real evidence in `tests/data/attestation/`.

use std::process::Output;

use guardian_tests::bin::run_guardctl;
use guardian_tests::cases::{Expect, QuoteSource, TDX_CASES};
use guardian_tests::fixtures::path;
use serde_json::Value;

fn p(rel: &str) -> String {
    path(rel).display().to_string()
}

fn rfc3339(secs: u64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(secs as i64).expect("test time");
    t.format(&time::format_description::well_known::Rfc3339).expect("format")
}

fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn code(out: &Output) -> i32 {
    out.status.code().expect("exit code")
}

#[test]
fn every_file_case_through_the_cli() {
    for case in TDX_CASES {
        let QuoteSource::File(quote) = case.quote else { continue };
        let out = run_guardctl([
            "evidence",
            "verify",
            "--evidence",
            &p(quote),
            "--collateral",
            &p(case.collateral),
            "--at",
            &rfc3339(case.at),
            "--kind",
            "tdx",
            "--json",
        ]);
        let j = json_of(&out);
        match case.expect {
            Expect::Ok { status, .. } => {
                assert_eq!(code(&out), 0, "{}: {j}", case.id);
                assert_eq!(j["verified"], true, "{}", case.id);
                assert_eq!(j["tcb_status"], status, "{}", case.id);
                assert_eq!(j["error"], Value::Null);
                for reg in ["mrtd", "rtmr0", "rtmr1", "rtmr2", "rtmr3"] {
                    let h = j["measurements"][reg].as_str().unwrap();
                    assert_eq!(h.len(), 96, "{}", case.id);
                    assert_eq!(h, h.to_lowercase());
                }
                assert_eq!(j["report_data"].as_str().unwrap().len(), 128);
            }
            Expect::Err { variant, .. } => {
                assert_eq!(code(&out), 1, "{}: {j}", case.id);
                assert_eq!(j["verified"], false, "{}", case.id);
                assert_eq!(j["error_kind"], variant, "{}", case.id);
                assert!(j["error"].as_str().is_some_and(|e| !e.is_empty()));
            }
        }
    }
}

#[test]
fn text_output_and_relaxed_flags() {
    let t8 = [
        "evidence",
        "verify",
        "--evidence",
        &p("trustee/az-tdx-vtpm/td-quote.bin"),
        "--collateral",
        &p("assembled-collateral/dcaprs_2025-02_00806f050000.json"),
        "--at",
        "2025-02-14T00:00:00Z",
    ];
    let out = run_guardctl(t8);
    assert_eq!(code(&out), 1);
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("NOT VERIFIED"));
    let out = run_guardctl(t8.iter().copied().chain(["--allow-missing-sept-ve-disable"]));
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stdout));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("VERIFIED tdx"), "{text}");
    assert!(text.contains("OutOfDate") && text.contains("INTEL-SA-00960"), "{text}");

    let b1 = [
        "evidence",
        "verify",
        "--evidence",
        &p("phala-dcap-qvl/tdx_quote_outdated"),
        "--collateral",
        &p("phala-dcap-qvl/tdx_quote_outdated_collateral.json"),
        "--at",
        "2026-02-19T00:00:00Z",
        "--json",
    ];
    assert_eq!(code(&run_guardctl(b1)), 1);
    let out = run_guardctl(b1.iter().copied().chain(["--azure-tcb-quirk"]));
    let j = json_of(&out);
    assert_eq!(code(&out), 0, "{j}");
    assert_eq!(j["tcb_override"], "azure-sgx-tcb-component-7-capped-at-3");
}

#[test]
fn azure_evidence_with_nonce_and_pcrs() {
    for file in ["trustee/az-tdx-vtpm/evidence-v0.json", "trustee/az-tdx-vtpm/evidence-v1.json"] {
        let base = |nonce: &str| {
            run_guardctl([
                "evidence",
                "verify",
                "--evidence",
                &p(file),
                "--collateral",
                &p("assembled-collateral/dcaprs_2025-02_00806f050000.json"),
                "--at",
                "2025-02-14T00:00:00Z",
                "--allow-missing-sept-ve-disable",
                "--nonce",
                nonce,
                "--json",
            ])
        };
        let out = base(&hex::encode("challenge"));
        let j = json_of(&out);
        assert_eq!(code(&out), 0, "{file}: {j}");
        assert_eq!(j["tee"], "az-tdx-vtpm");
        assert_eq!(j["tcb_status"], "OutOfDate");
        let pcrs = j["measurements"]["pcrs"].as_object().expect("pcrs map");
        assert_eq!(pcrs.len(), 24);
        assert!(pcrs["0"].as_str().unwrap().starts_with("782b20b1"));
        let out = base(&hex::encode("challengf"));
        assert_eq!(code(&out), 1);
        assert_eq!(json_of(&out)["error_kind"], "Binding");
    }
}

fn write_policy(dir: &tempfile::TempDir, text: &str) -> String {
    let f = dir.path().join("policy.toml");
    std::fs::write(&f, text).unwrap();
    f.display().to_string()
}

#[test]
fn policy_decisions_with_reasons() {
    let t1 = [
        "evidence",
        "verify",
        "--evidence",
        &p("phala-dcap-qvl/tdx_quote"),
        "--collateral",
        &p("phala-dcap-qvl/tdx_quote_collateral.json"),
        "--at",
        "2025-06-20T00:00:00Z",
        "--json",
    ];
    let m = json_of(&run_guardctl(t1))["measurements"].clone();
    let dir = tempfile::tempdir().unwrap();
    let policy = |rtmr2: &str| {
        write_policy(&dir, &format!(
            "[namespaces.k8s-staging]\ntees = [\"tdx\"]\naccepted_tcb_status = [\"UpToDate\"]\n\n\
             [[namespaces.k8s-staging.tdx]]\nname = \"t1-image\"\nmrtd = \"{}\"\nrtmr0 = \"{}\"\nrtmr1 = \"{}\"\nrtmr2 = \"{rtmr2}\"\n",
            m["mrtd"].as_str().unwrap(), m["rtmr0"].as_str().unwrap(), m["rtmr1"].as_str().unwrap()))
    };
    let allow = policy(m["rtmr2"].as_str().unwrap());
    let out = run_guardctl(t1.iter().copied().chain(["--policy", &allow, "--namespace", "k8s-staging"]));
    let j = json_of(&out);
    assert_eq!(code(&out), 0, "{j}");
    assert_eq!((j["decision"].as_str(), j["namespace"].as_str()), (Some("allow"), Some("k8s-staging")));

    let deny = policy(&"ab".repeat(48));
    let out = run_guardctl(t1.iter().copied().chain(["--policy", &deny, "--namespace", "k8s-staging"]));
    let j = json_of(&out);
    assert_eq!(code(&out), 1, "{j}");
    assert_eq!(j["verified"], true);
    assert_eq!(j["decision"], "deny");
    let reason = j["reason"].as_str().unwrap();
    assert!(
        reason.contains("RTMR2") && reason.contains("does not match any allowed value for namespace k8s-staging"),
        "{reason}"
    );

    // Text mode says the same.
    let text_args: Vec<&str> = t1
        .iter()
        .copied()
        .filter(|a| *a != "--json")
        .chain(["--policy", &deny, "--namespace", "k8s-staging"])
        .collect();
    let out = run_guardctl(text_args);
    assert!(String::from_utf8_lossy(&out.stdout).contains("POLICY DENY (namespace k8s-staging): RTMR2"));
}

#[test]
fn azure_policy_on_pcrs() {
    let args = [
        "evidence",
        "verify",
        "--evidence",
        &p("trustee/az-tdx-vtpm/evidence-v1.json"),
        "--collateral",
        &p("assembled-collateral/dcaprs_2025-02_00806f050000.json"),
        "--at",
        "2025-02-14T00:00:00Z",
        "--json",
    ];
    let dir = tempfile::tempdir().unwrap();
    let pcr0 = "782b20b10f55cc46e2142cc2145d548698073e5beb82752c8d7f9279f0d8a273";
    let mrtd = json_of(&run_guardctl(args.iter().copied().chain(["--allow-missing-sept-ve-disable"])))["measurements"]
        ["mrtd"]
        .as_str()
        .unwrap()
        .to_string();
    let policy = write_policy(&dir, &format!(
        "[namespaces.azure-prod]\ntees = [\"az-tdx-vtpm\"]\naccepted_tcb_status = [\"UpToDate\", \"OutOfDate\"]\n\
         allowed_advisories = [\"INTEL-SA-00960\", \"INTEL-SA-00982\", \"INTEL-SA-00986\"]\nrequire_sept_ve_disable = false\n\n\
         [[namespaces.azure-prod.azure]]\nname = \"cvm\"\nmrtd = \"{mrtd}\"\npcrs = {{ \"0\" = \"{pcr0}\" }}\n\n\
         [namespaces.strict]\ntees = [\"az-tdx-vtpm\"]\naccepted_tcb_status = [\"UpToDate\", \"OutOfDate\"]\n\
         [[namespaces.strict.azure]]\nname = \"cvm\"\nmrtd = \"{mrtd}\"\npcrs = {{ \"0\" = \"{pcr0}\" }}\n"));
    let out = run_guardctl(args.iter().copied().chain(["--policy", &policy, "--namespace", "azure-prod"]));
    assert_eq!(code(&out), 0, "{}", json_of(&out));
    // The strict namespace requires SEPT_VE_DISABLE, so verification itself refuses.
    let out = run_guardctl(args.iter().copied().chain(["--policy", &policy, "--namespace", "strict"]));
    assert_eq!(code(&out), 1);
    assert_eq!(json_of(&out)["error_kind"], "Attributes");
}

#[test]
fn event_log_replay_through_the_cli() {
    let t2 = [
        "evidence",
        "verify",
        "--evidence",
        &p("go-tdx-guest/ccel/cos-113-tdx-quote.dat"),
        "--collateral",
        &p("assembled-collateral/dcaprs_2025-02_00806f050000.json"),
        "--at",
        "2025-02-14T00:00:00Z",
        "--json",
    ];
    let out = run_guardctl(t2.iter().copied().chain(["--event-log", &p("go-tdx-guest/ccel/ccel_data.dat")]));
    let j = json_of(&out);
    assert_eq!(code(&out), 0, "{j}");
    assert!(j["events"].as_array().unwrap().len() > 10);
    // A log from another machine does not replay to this quote's RTMRs.
    let out = run_guardctl(t2.iter().copied().chain(["--event-log", &p("dstack/quote-report.json")]));
    assert_eq!(code(&out), 1);
    assert_eq!(json_of(&out)["error_kind"], "EventLog");
}

#[test]
fn simulated_tee_is_refused_unless_its_key_is_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let seed = "11".repeat(32);
    let out = run_guardctl(["dev", "sim-evidence", "--seed", &seed, "--report-data", "0102"]);
    assert_eq!(code(&out), 0);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("INSECURE"));
    let key = stderr.lines().find_map(|l| l.strip_prefix("sim public key: ")).expect("key line").trim().to_string();
    let ev = dir.path().join("sim.json");
    std::fs::write(&ev, &out.stdout).unwrap();
    let ev = ev.display().to_string();

    let out = run_guardctl(["evidence", "verify", "--evidence", &ev, "--json"]);
    let j = json_of(&out);
    assert_eq!(code(&out), 1);
    assert_eq!((j["tee"].as_str(), j["error_kind"].as_str()), (Some("sim"), Some("SimulationDisabled")));

    let out = run_guardctl([
        "evidence",
        "verify",
        "--evidence",
        &ev,
        "--insecure-sim-key",
        &key,
        "--nonce",
        "0102",
        "--json",
    ]);
    let j = json_of(&out);
    assert_eq!(code(&out), 0, "{j}");
    assert_eq!((j["insecure"].as_bool(), j["tcb_status"].as_str()), (Some(true), Some("Simulated")));
    let out = run_guardctl(["evidence", "verify", "--evidence", &ev, "--insecure-sim-key", &key]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("INSECURE"));
}

#[test]
fn bad_usage_exits_2_with_a_message() {
    let q = p("phala-dcap-qvl/tdx_quote");
    let c = p("phala-dcap-qvl/tdx_quote_collateral.json");
    for (args, says) in [
        (vec!["evidence", "verify", "--evidence", q.as_str()], "--collateral"),
        (
            vec!["evidence", "verify", "--evidence", "/nonexistent/quote", "--collateral", c.as_str()],
            "cannot read evidence",
        ),
        (
            vec!["evidence", "verify", "--evidence", q.as_str(), "--collateral", c.as_str(), "--at", "yesterday"],
            "RFC 3339",
        ),
        (vec!["evidence", "verify", "--evidence", q.as_str(), "--collateral", c.as_str(), "--nonce", "xyz"], "hex"),
        (
            vec!["evidence", "verify", "--evidence", q.as_str(), "--collateral", c.as_str(), "--policy", "p.toml"],
            "--namespace",
        ),
        (
            vec!["evidence", "verify", "--evidence", q.as_str(), "--kind", "sgx", "--collateral", c.as_str()],
            "unknown TEE kind",
        ),
    ] {
        let out = run_guardctl(&args);
        assert_eq!(code(&out), 2, "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(says),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let bad = write_policy(&dir, "[namespaces.x]\ntees = [\"tdx\"]\naccepted_tcb_status = []\nmisspelt = true\n");
    let out = run_guardctl([
        "evidence",
        "verify",
        "--evidence",
        &q,
        "--collateral",
        &c,
        "--policy",
        &bad,
        "--namespace",
        "x",
    ]);
    assert_eq!(code(&out), 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown field"));
}

#[test]
fn inspect_decodes_without_verifying() {
    for (file, kind) in [
        ("trustee/tdx_quote_4.dat", "tdx"),
        ("trustee/az-tdx-vtpm/evidence-v1.json", "az-tdx-vtpm"),
        ("phala-dcap-qvl/tdx-quote.hex", "tdx"),
    ] {
        let out = run_guardctl(["evidence", "inspect", "--evidence", &p(file), "--json"]);
        let j = json_of(&out);
        assert_eq!(code(&out), 0, "{file}");
        assert_eq!((j["kind"].as_str(), j["verified"].as_bool()), (Some(kind), Some(false)));
    }
    let out = run_guardctl(["evidence", "inspect", "--evidence", &p("trustee/tdx_quote_4.dat")]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("UNVERIFIED") && text.contains("debug=true"), "{text}");
    let out = run_guardctl(["evidence", "inspect", "--evidence", &p("README.md")]);
    assert_eq!(code(&out), 1);
}

/// B7: an SEV-SNP report with VCEKs not signed by AMD's Milan ASK. Guardian has no SNP
/// verifier yet, so SNP evidence must be refused by every evidence kind, never verified.
#[test]
fn b7_snp_evidence_is_refused() {
    let report = p("trustee/snp/test-report.bin");
    let c = p("phala-dcap-qvl/tdx_quote_collateral.json");
    for kind in ["tdx", "az-tdx-vtpm", "sim"] {
        let out =
            run_guardctl(["evidence", "verify", "--evidence", &report, "--kind", kind, "--collateral", &c, "--json"]);
        let j = json_of(&out);
        assert_eq!(code(&out), 1, "{kind}: {j}");
        assert_eq!(j["verified"], false);
    }
    for vcek in ["trustee/snp/test-vcek-invalid-legacy.der", "trustee/snp/test-vcek-invalid-new.der"] {
        let out = run_guardctl(["evidence", "verify", "--evidence", &p(vcek), "--collateral", &c, "--json"]);
        assert_eq!(code(&out), 1, "{vcek}");
    }
}
