use super::*;
use crate::attest::{MeasuredEvent, TdAttributes, TdReport};

const NS: &str = r#"
[namespaces.k8s-staging]
tees = ["tdx", "az-tdx-vtpm"]
accepted_tcb_status = ["UpToDate", "OutOfDate"]
allowed_advisories = ["INTEL-SA-00960"]

[[namespaces.k8s-staging.tdx]]
name = "image-a"
mrtd = "111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111"
rtmr2 = "222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222"
rtmr3 = "*"

[[namespaces.k8s-staging.tdx]]
name = "image-b"
mrtd = "111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111"
rtmr2 = "333333333333333333333333333333333333333333333333333333333333333333333333333333333333333333333333"
events = [{ rtmr = 1, digest = "444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444" }]

[[namespaces.k8s-staging.azure]]
name = "cvm"
mrtd = "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
pcrs = { "4" = "5555555555555555555555555555555555555555555555555555555555555555" }

[[namespaces.k8s-staging.revoked]]
register = "rtmr0"
value = "666666666666666666666666666666666666666666666666666666666666666666666666666666666666666666666666"
reason = "shim with CVE-2099-1"
"#;

fn claims(mrtd: u8, rtmr2: u8) -> Claims {
    Claims {
        tee: TeeKind::Tdx,
        tcb_status: TcbStatus::UpToDate,
        advisory_ids: vec![],
        fmspc: None,
        tcb_override: None,
        td: TdReport::measured([mrtd; 48], [[0; 48], [0; 48], [rtmr2; 48], [0x77; 48]], [0; 48], TdAttributes(1 << 28)),
        pcrs: BTreeMap::new(),
        events: vec![],
    }
}

fn ns() -> NamespacePolicy {
    PolicySet::from_toml(NS).unwrap().namespace("k8s-staging").unwrap().clone()
}

fn denied(d: Decision) -> String {
    match d {
        Decision::Deny { reason } => reason,
        Decision::Allow { rule } => panic!("expected deny, allowed by {rule}"),
    }
}

#[test]
fn a_matching_rule_allows_and_names_itself() {
    assert_eq!(ns().evaluate(&claims(0x11, 0x22)), Decision::Allow { rule: "image-a".into() });
}

#[test]
fn a_register_no_rule_allows_is_named() {
    let r = denied(ns().evaluate(&claims(0x11, 0x99)));
    assert!(r.starts_with("RTMR2 9999999999999999… does not match any allowed value for namespace k8s-staging"), "{r}");
    let r = denied(ns().evaluate(&claims(0x12, 0x22)));
    assert!(r.starts_with("MRTD"), "{r}");
}

#[test]
fn required_events_must_be_present() {
    let mut c = claims(0x11, 0x33);
    let r = denied(ns().evaluate(&c));
    assert!(r.contains("RTMR1 event"), "{r}");
    c.events.push(MeasuredEvent { rtmr: 1, event_type: 0x8000_0002, digest: vec![0x44; 48], data: vec![] });
    assert_eq!(ns().evaluate(&c), Decision::Allow { rule: "image-b".into() });
}

#[test]
fn debug_sept_ve_tcb_advisories_revocation_and_kind() {
    let p = ns();
    let mut c = claims(0x11, 0x22);
    c.td.td_attributes = TdAttributes((1 << 28) | 1);
    assert!(denied(p.evaluate(&c)).contains("debug mode"));
    c.td.td_attributes = TdAttributes(0);
    assert!(denied(p.evaluate(&c)).contains("SEPT_VE_DISABLE"));
    let mut relaxed = p.clone();
    relaxed.require_sept_ve_disable = false;
    assert!(relaxed.evaluate(&c).is_allow());

    let mut c = claims(0x11, 0x22);
    c.tcb_status = TcbStatus::SWHardeningNeeded;
    assert!(denied(p.evaluate(&c)).contains("TCB status SWHardeningNeeded is not accepted"));
    c.tcb_status = TcbStatus::OutOfDate;
    c.advisory_ids = vec!["INTEL-SA-00960".into(), "INTEL-SA-00982".into()];
    assert!(denied(p.evaluate(&c)).contains("advisory INTEL-SA-00982"));
    c.advisory_ids.pop();
    assert!(p.evaluate(&c).is_allow());
    c.tcb_override = Some("azure-quirk");
    assert!(denied(p.evaluate(&c)).contains("override"));

    let mut c = claims(0x11, 0x22);
    c.td.rtmr[0] = [0x66; 48];
    assert!(denied(p.evaluate(&c)).contains("revoked in namespace k8s-staging: shim with CVE-2099-1"));

    let mut c = claims(0x11, 0x22);
    c.tee = TeeKind::Sim;
    assert!(denied(p.evaluate(&c)).contains("sim evidence is not accepted"));
}

#[test]
fn azure_rules_read_pcrs() {
    let mut c = claims(0, 0);
    c.tee = TeeKind::AzTdxVtpm;
    c.td.td_attributes = TdAttributes(1 << 28);
    assert!(denied(ns().evaluate(&c)).contains("has no PCR4"));
    c.pcrs.insert(4, [0x55; 32]);
    assert!(ns().evaluate(&c).is_allow());
    c.pcrs.insert(4, [0x56; 32]);
    assert!(denied(ns().evaluate(&c)).starts_with("PCR4 5656"));
}

#[test]
fn bad_files_are_refused_with_the_reason() {
    let err = |t: &str| PolicySet::from_toml(t).unwrap_err().to_string();
    assert!(err("[namespaces.a]\ntees=[\"tdx\"]\naccepted_tcb_status=[\"UpToDate\"]\ntypo=1").contains("unknown field"));
    assert!(err("[namespaces.Bad]\ntees=[\"tdx\"]\naccepted_tcb_status=[]").contains("invalid namespace name"));
    assert!(err("[namespaces.a]\ntees=[\"sgx\"]\naccepted_tcb_status=[]").contains("unknown TEE kind"));
    assert!(err("[namespaces.a]\ntees=[\"tdx\"]\naccepted_tcb_status=[\"Revoked\"]").contains("never be accepted"));
    assert!(err(
        "[namespaces.a]\ntees=[\"tdx\"]\naccepted_tcb_status=[]\n[[namespaces.a.tdx]]\nname=\"x\"\nmrtd=\"abcd\""
    )
    .contains("expected 48"));
    assert!(err("[namespaces.a]\ntees=[\"tdx\"]\naccepted_tcb_status=[]\n[[namespaces.a.azure]]\nname=\"x\"\npcrs={\"24\"=\"00\"}").contains("0-23"));
    assert!(err(
        "[namespaces.a]\ntees=[\"tdx\"]\naccepted_tcb_status=[]\n[[namespaces.a.tdx]]\nname=\"open\"\nrtmr0=\"*\""
    )
    .contains("must pin mrtd"));
    let mrtd = "00".repeat(48);
    assert!(err(&format!("[namespaces.a]\ntees=[\"az-tdx-vtpm\"]\naccepted_tcb_status=[]\n[[namespaces.a.azure]]\nname=\"x\"\nmrtd=\"{mrtd}\"")).contains("at least one PCR"));
    assert!(err("[namespaces.a]\ntees=[\"az-tdx-vtpm\"]\naccepted_tcb_status=[]\n[[namespaces.a.azure]]\nname=\"x\"\npcrs={\"4\"=\"aa\"}").contains("PCR4 value has 1 bytes"));
    let empty = PolicySet::from_toml("[namespaces.a]\ntees=[\"tdx\"]\naccepted_tcb_status=[\"UpToDate\"]").unwrap();
    assert!(denied(empty.namespace("a").unwrap().evaluate(&claims(1, 1))).contains("no measurement rules"));
    assert!(empty.namespace("missing").unwrap_err().contains("not defined"));
}
