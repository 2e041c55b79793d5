//! The attestation cases of `tests/data/attestation/README.md`, with the time
//! to verify each at and the expected verdict.

use crate::fixtures;

/// Where a case's quote comes from.
#[derive(Debug, Clone, Copy)]
pub enum QuoteSource {
    /// A file holding the quote (raw bytes or hex text, possibly zero-padded).
    File(&'static str),
    /// The TD quote inside a flashbots Azure YAML capture.
    FlashbotsYaml(&'static str),
    /// The `quote` field of a dstack quote report.
    DstackJson(&'static str),
}

impl QuoteSource {
    pub fn load(self) -> Vec<u8> {
        match self {
            QuoteSource::File(p) => fixtures::read(p),
            QuoteSource::FlashbotsYaml(p) => fixtures::flashbots_td_quote(p),
            QuoteSource::DstackJson(p) => fixtures::dstack_quote(p),
        }
    }
}

/// Expected outcome of verifying a case with strict default options.
#[derive(Debug, Clone, Copy)]
pub enum Expect {
    Ok {
        status: &'static str,
        advisories: &'static [&'static str],
    },
    /// Refused; the error's `Debug` names this variant and its message contains the text.
    Err {
        variant: &'static str,
        contains: &'static str,
    },
}

#[derive(Debug, Clone, Copy)]
pub struct TdxCase {
    pub id: &'static str,
    pub quote: QuoteSource,
    pub collateral: &'static str,
    /// Unix seconds inside the collateral's validity window.
    pub at: u64,
    pub expect: Expect,
    /// What dcap-qvl 0.7.1 itself says, for the differential test.
    pub dcap_qvl_ok: bool,
}

pub const T_2025_06_20: u64 = 1_750_377_600;
pub const T_2025_02_14: u64 = 1_739_491_200;
pub const T_2026_02_19: u64 = 1_771_459_200;
pub const T_2026_01_27: u64 = 1_769_509_141;
pub const T_2026_02_18: u64 = 1_771_423_480;
pub const T_2023_07_01: u64 = 1_688_173_200;
pub const T_2025_06_15: u64 = 1_749_945_600;
pub const T_2026_10_20: u64 = 1_792_454_400;

const OUTDATED_SAS: &[&str] = &["INTEL-SA-00960", "INTEL-SA-00982", "INTEL-SA-00986"];

pub const TDX_CASES: &[TdxCase] = &[
    TdxCase {
        id: "T1",
        quote: QuoteSource::File("phala-dcap-qvl/tdx_quote"),
        collateral: "phala-dcap-qvl/tdx_quote_collateral.json",
        at: T_2025_06_20,
        expect: Expect::Ok { status: "UpToDate", advisories: &[] },
        dcap_qvl_ok: true,
    },
    TdxCase {
        id: "T2",
        quote: QuoteSource::File("go-tdx-guest/ccel/cos-113-tdx-quote.dat"),
        collateral: "assembled-collateral/dcaprs_2025-02_00806f050000.json",
        at: T_2025_02_14,
        expect: Expect::Ok { status: "UpToDate", advisories: &[] },
        dcap_qvl_ok: true,
    },
    TdxCase {
        id: "T3",
        quote: QuoteSource::File("go-tdx-guest/quote_v5_sample.dat"),
        collateral: "assembled-collateral/fb_azure-collateral02.json",
        at: T_2026_02_19,
        expect: Expect::Ok { status: "UpToDate", advisories: &[] },
        dcap_qvl_ok: true,
    },
    TdxCase {
        id: "T4",
        quote: QuoteSource::File("flashbots-attested-tls/dcap-tdx-1766059550570652607"),
        collateral: "assembled-collateral/fb_dcap-quote-collateral-00.json",
        at: T_2026_01_27,
        expect: Expect::Ok { status: "UpToDate", advisories: &[] },
        dcap_qvl_ok: true,
    },
    TdxCase {
        id: "T5",
        quote: QuoteSource::FlashbotsYaml("flashbots-attested-tls/azure-tdx-1764662251380464271.yaml"),
        collateral: "assembled-collateral/fb_azure-collateral02.json",
        at: T_2026_02_18,
        expect: Expect::Ok { status: "UpToDate", advisories: &[] },
        dcap_qvl_ok: true,
    },
    TdxCase {
        id: "T6",
        quote: QuoteSource::DstackJson("dstack/quote-report.json"),
        collateral: "assembled-collateral/fb_azure-collateral02.json",
        at: T_2026_02_19,
        expect: Expect::Ok { status: "UpToDate", advisories: &[] },
        dcap_qvl_ok: true,
    },
    TdxCase {
        id: "T7",
        quote: QuoteSource::File("automata-dcap-rs/quote_tdx_00806f050000.dat"),
        collateral: "assembled-collateral/dcaprs_2025-02_00806f050000.json",
        at: T_2025_02_14,
        expect: Expect::Ok { status: "OutOfDate", advisories: OUTDATED_SAS },
        dcap_qvl_ok: true,
    },
    TdxCase {
        id: "T8",
        quote: QuoteSource::File("trustee/az-tdx-vtpm/td-quote.bin"),
        collateral: "assembled-collateral/dcaprs_2025-02_00806f050000.json",
        at: T_2025_02_14,
        expect: Expect::Err { variant: "Attributes", contains: "SEPT_VE_DISABLE" },
        dcap_qvl_ok: false,
    },
    TdxCase {
        id: "T8b",
        quote: QuoteSource::File("trustee/az-tdx-vtpm/td-quote.bin"),
        collateral: "assembled-collateral/fb_dcap-quote-collateral-00.json",
        at: T_2026_01_27,
        expect: Expect::Err { variant: "Attributes", contains: "SEPT_VE_DISABLE" },
        dcap_qvl_ok: false,
    },
    TdxCase {
        id: "T9",
        quote: QuoteSource::File("phala-dcap-qvl/sgx_quote"),
        collateral: "phala-dcap-qvl/sgx_quote_collateral.json",
        at: T_2025_06_20,
        expect: Expect::Err { variant: "WrongTee", contains: "SGX" },
        dcap_qvl_ok: true,
    },
    TdxCase {
        id: "B1",
        quote: QuoteSource::File("phala-dcap-qvl/tdx_quote_outdated"),
        collateral: "phala-dcap-qvl/tdx_quote_outdated_collateral.json",
        at: T_2026_02_19,
        expect: Expect::Err { variant: "Tcb", contains: "no matching TCB level" },
        dcap_qvl_ok: false,
    },
    TdxCase {
        id: "B2",
        quote: QuoteSource::File("trustee/tdx_quote_4.dat"),
        collateral: "assembled-collateral/gotdx_2023-06_50806f000000.json",
        at: T_2023_07_01,
        expect: Expect::Err { variant: "Attributes", contains: "debug mode" },
        dcap_qvl_ok: false,
    },
    TdxCase {
        id: "B3",
        quote: QuoteSource::File("trustee/tdx_quote_5.dat"),
        collateral: "assembled-collateral/ada_2025-06_90c06f000000.json",
        at: T_2025_06_15,
        expect: Expect::Err { variant: "Tcb", contains: "no matching TCB level" },
        dcap_qvl_ok: false,
    },
    TdxCase {
        id: "B4",
        quote: QuoteSource::File("go-tdx-guest/tdx_prod_quote_SPR_E4.dat"),
        collateral: "assembled-collateral/gotdx_2023-06_50806f000000.json",
        at: T_2023_07_01,
        expect: Expect::Err { variant: "Tcb", contains: "no matching TCB level" },
        dcap_qvl_ok: false,
    },
    TdxCase {
        id: "B5",
        quote: QuoteSource::File("phala-dcap-qvl/tdx-quote.hex"),
        collateral: "phala-dcap-qvl/tdx_quote_collateral.json",
        at: T_2025_06_20,
        expect: Expect::Err { variant: "Tcb", contains: "no matching TCB level" },
        dcap_qvl_ok: false,
    },
    // Not in the shared set: dcap-qvl's published v5 body-type-4 (TD 1.5 extended) sample.
    TdxCase {
        id: "X1",
        quote: QuoteSource::File("../dcap-qvl-sample/tdx_quote_td15ex"),
        collateral: "../dcap-qvl-sample/tdx_quote_td15ex_collateral.json",
        at: T_2026_10_20,
        expect: Expect::Ok { status: "UpToDate", advisories: &[] },
        dcap_qvl_ok: true,
    },
];

pub fn tdx_case(id: &str) -> &'static TdxCase {
    TDX_CASES.iter().find(|c| c.id == id).unwrap_or_else(|| panic!("no case {id}"))
}
