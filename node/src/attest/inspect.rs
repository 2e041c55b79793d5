//! Decode evidence for display **without verifying it**. Everything here is
//! what the evidence says about itself; none of it is trusted.

use dcap_qvl::quote::{AuthData, Quote, Report};
use scale::Decode;

use super::azure::{hcl::HclBinding, parse_coco_json, tpm::parse_quote_info};
use super::tdx::decode_input;
use super::{AttestError, Result, TdAttributes, TeeKind};

/// Ordered field names and values (hex in lower case).
pub type Fields = Vec<(String, String)>;

pub fn inspect(kind: TeeKind, bytes: &[u8]) -> Result<Fields> {
    match kind {
        TeeKind::Tdx => tdx_fields(bytes, ""),
        TeeKind::AzTdxVtpm => azure_fields(bytes),
        TeeKind::Sim => sim_fields(bytes),
    }
}

fn tdx_fields(input: &[u8], prefix: &str) -> Result<Fields> {
    let raw = decode_input(input)?;
    let quote = Quote::decode(&mut &raw[..]).map_err(|e| AttestError::Malformed(format!("quote: {e}")))?;
    let mut f = Fields::new();
    let mut put = |k: &str, v: String| f.push((format!("{prefix}{k}"), v));
    put("version", quote.header.version.to_string());
    put("tee_type", format!("{:#x}", quote.header.tee_type));
    put("qe_svn", quote.header.qe_svn.to_string());
    put("pce_svn", quote.header.pce_svn.to_string());
    let body = match &quote.report {
        Report::SgxEnclave(_) => "SGX enclave report",
        Report::TD10(_) => "TD report 1.0",
        Report::TD15(_) => "TD report 1.5",
        Report::TD15Ex(_) => "TD report 1.5 (extended)",
    };
    put("body", body.into());
    if let Some(td) = quote.report.as_td10() {
        let attrs = TdAttributes::from_le_bytes(td.td_attributes);
        put("mrtd", hex::encode(td.mr_td));
        for (i, r) in [td.rt_mr0, td.rt_mr1, td.rt_mr2, td.rt_mr3].iter().enumerate() {
            put(&format!("rtmr{i}"), hex::encode(r));
        }
        put("mrconfigid", hex::encode(td.mr_config_id));
        put("mrowner", hex::encode(td.mr_owner));
        put("mrownerconfig", hex::encode(td.mr_owner_config));
        put("mrseam", hex::encode(td.mr_seam));
        put("tee_tcb_svn", hex::encode(td.tee_tcb_svn));
        put(
            "td_attributes",
            format!("{:016x} (debug={}, sept_ve_disable={})", attrs.0, attrs.debug(), attrs.sept_ve_disable()),
        );
        put("xfam", hex::encode(td.xfam));
        put("report_data", hex::encode(td.report_data));
    }
    let cert = match &quote.auth_data {
        AuthData::V4(a) => a.clone().into_v3().certification_data,
        AuthData::V3(a) => a.certification_data.clone(),
    };
    put("certification_data_type", cert.cert_type.to_string());
    if let Ok(Some(pck)) = super::tdx::collateral::pem_certs(&cert.body.data, "PCK chain").map(|c| c.into_iter().next())
    {
        if let Ok(ext) = dcap_qvl::intel::parse_pck_extension(&pck) {
            put("fmspc", hex::encode(ext.fmspc));
        }
    }
    Ok(f)
}

fn azure_fields(bytes: &[u8]) -> Result<Fields> {
    let ev = parse_coco_json(bytes)?;
    let mut f = vec![("format_version".to_string(), ev.version.to_string())];
    f.extend(tdx_fields(&ev.td_quote, "td_quote.")?);
    let hcl = HclBinding::parse(&ev.hcl_report)?;
    f.push(("hcl.var_data_sha256".into(), hex::encode(hcl.var_data_sha256())));
    f.push(("hcl.var_data".into(), String::from_utf8_lossy(hcl.var_data()).into_owned()));
    let info = parse_quote_info(&ev.tpm_quote.message)?;
    f.push(("tpm.nonce".into(), hex::encode(&info.extra_data)));
    f.push(("tpm.pcr_digest".into(), hex::encode(&info.pcr_digest)));
    for i in info.selected_pcrs {
        if let Some(v) = ev.tpm_quote.pcrs.get(usize::from(i)) {
            f.push((format!("tpm.pcr{i}"), hex::encode(v)));
        }
    }
    Ok(f)
}

fn sim_fields(bytes: &[u8]) -> Result<Fields> {
    let doc: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(bytes).map_err(|e| AttestError::Malformed(format!("sim evidence JSON: {e}")))?;
    Ok(doc.into_iter().map(|(k, v)| (k, v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string()))).collect())
}
