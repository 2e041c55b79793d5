//! TDX event log (CCEL) parsing and RTMR replay.
//!
//! Pure core: bytes in, replayed registers out. No I/O, no clock, no panics on
//! any input; every length read from the log is bounds-checked, and counts are
//! capped ([`MAX_LOG_LEN`], [`MAX_EVENTS`], at most 16 algorithms of at most
//! 64 bytes each) so hostile input cannot make us allocate more than a copy of
//! itself.
//!
//! # Binary CCEL format ([`replay`])
//!
//! The ACPI `CCEL` table points at a TCG PC Client *crypto-agile* event log
//! (all integers little-endian):
//!
//! 1. One legacy `TCG_PCR_EVENT` (SHA-1 layout): `u32 index, u32 type
//!    (= EV_NO_ACTION 3), digest[20], u32 size, event[size]`, whose event is a
//!    `TCG_EfiSpecIDEvent`: signature `"Spec ID Event03\0"`, `u32
//!    platformClass, u8 minor, u8 major, u8 errata, u8 uintnSize, u32
//!    numberOfAlgorithms, {u16 algId, u16 digestSize}*, u8 vendorInfoSize,
//!    vendorInfo[..]`. The algorithm table is the only place digest sizes are
//!    given; it must list SHA-384 (`0x000C`) with size 48. The header's index
//!    is not checked (TDVF writes 1, the TCG spec says 0).
//! 2. `TCG_PCR_EVENT2` records: `u32 index (CC MR index), u32 type, u32
//!    digestCount, {u16 algId, digest[size from the table]}*, u32 size,
//!    event[size]`. Each algorithm may appear at most once per record.
//!
//! CC MR index 0 is MRTD (built by the TDX module, never extended from the
//! log): such events are skipped, as dstack does for GCP logs. Index 1..=4 is
//! RTMR0..=RTMR3; anything above 4 is an error. `EV_NO_ACTION` records are
//! parsed but never extended. Every other record must carry a SHA-384 digest,
//! and replay is `rtmr = SHA384(rtmr || digest)` from 48 zero bytes.
//!
//! ## End of the log
//!
//! The log area (`LAML` bytes) is larger than the log and padded. At each
//! record boundary the log ends when:
//! - no bytes are left; or
//! - the next `u32` index is `0xFFFFFFFF` (TDVF fills the area with `0xFF`;
//!   dstack appends an explicit 4-byte `0xFFFFFFFF` terminator); fewer than 4
//!   bytes left, all `0xFF`, counts the same; or
//! - the next 8 bytes (index and type) are all zero (zero-filled area);
//!   fewer than 8 bytes left, all zero, counts the same.
//!
//! Neither marker can start a real record (index `0xFFFFFFFF` is out of range;
//! index 0 is MRTD and type 0 is the obsolete `EV_PREBOOT_CERT`). Bytes after
//! the marker are not inspected: they were not replayed, and a log that stops
//! early cannot reproduce the quote's RTMRs, which [`check_rtmrs`] enforces. A
//! record cut anywhere else is an error that names the offset.
//!
//! # dstack JSON ([`replay_dstack_json`])
//!
//! dstack's guest agent reports the log as JSON: a list of `{imr (0-based),
//! event_type, digest (hex), event (name), event_payload (hex), version?}`.
//! Boot-time entries (copied from the CCEL) are extended with their `digest`.
//! Runtime entries (`event_type` [`DSTACK_RUNTIME_EVENT_TYPE`]) are extended
//! with a digest *recomputed from their name and payload* (dstack's own rule),
//! so the payload a policy reads is bound to the RTMR; a supplied digest that
//! differs is an error. The pre-image is (dstack `cc-eventlog`):
//! - version 1 (default): `event_type_le || ":" || name || ":" || payload`;
//! - version 2: the JCS canonical JSON
//!   `{"event":NAME,"event_type":134217729,"payload":"HEX","version":2}`.
//!
//! # What the events prove
//!
//! Only the digests are bound to the RTMRs. For boot-time events `data` is
//! the firmware's description of what it measured and is *not* covered by the
//! digest in general (for `EV_EFI_VARIABLE_*`, `EV_EFI_ACTION`,
//! `EV_SEPARATOR` and the like it is; for loaded images it is not). For dstack
//! runtime events `data` is the exact pre-image above, so
//! `SHA384(data) == digest` always holds for them.

use serde::Deserialize;
use sha2::{Digest as _, Sha384};

use super::{AttestError, MeasuredEvent, Mr48};

/// TCG `EV_NO_ACTION`: informational, never extended.
pub const EV_NO_ACTION: u32 = 0x0000_0003;
/// TPM 2.0 algorithm id of SHA-384.
pub const TPM_ALG_SHA384: u16 = 0x000C;
/// Event type of dstack runtime events (RTMR3).
pub const DSTACK_RUNTIME_EVENT_TYPE: u32 = 0x0800_0001;
/// Largest log (binary or JSON) accepted, in bytes.
pub const MAX_LOG_LEN: usize = 16 << 20;
/// Most records accepted in one log (EV_NO_ACTION included).
pub const MAX_EVENTS: usize = 8192;

const MAX_ALGORITHMS: usize = 16;
const MAX_DIGEST_SIZE: usize = 64;
const SPEC_ID_SIGNATURE: &[u8; 16] = b"Spec ID Event03\0";
const SHA384_LEN: usize = 48;

/// A parsed, replayed event log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayedLog {
    /// RTMR0..RTMR3 as replayed from the log.
    pub rtmr: [Mr48; 4],
    /// The events extended into RTMR0..3, in log order (no EV_NO_ACTION, no
    /// MRTD events); `rtmr` is 0..=3.
    pub events: Vec<MeasuredEvent>,
}

type Result<T, E = AttestError> = std::result::Result<T, E>;

fn err(msg: impl Into<String>) -> AttestError {
    AttestError::EventLog(msg.into())
}

// ---------------------------------------------------------------------------
// Replay state shared by both formats.

struct Replayer {
    rtmr: [Mr48; 4],
    events: Vec<MeasuredEvent>,
}

impl Replayer {
    fn new() -> Self {
        Replayer { rtmr: [[0u8; 48]; 4], events: Vec::new() }
    }

    /// Extends RTMR `rtmr` (0..=3) with `digest` and records the event.
    fn extend(&mut self, rtmr: u8, event_type: u32, digest: &[u8], data: Vec<u8>) -> Result<()> {
        if digest.len() != SHA384_LEN {
            return Err(err(format!("digest for RTMR{rtmr} is {} bytes, expected {SHA384_LEN}", digest.len())));
        }
        let reg =
            self.rtmr.get_mut(usize::from(rtmr)).ok_or_else(|| err(format!("RTMR index {rtmr} out of range 0..=3")))?;
        let mut h = Sha384::new();
        h.update(&reg[..]);
        h.update(digest);
        *reg = h.finalize().into();
        self.events.push(MeasuredEvent { rtmr, event_type, digest: digest.to_vec(), data });
        Ok(())
    }

    fn finish(self) -> ReplayedLog {
        ReplayedLog { rtmr: self.rtmr, events: self.events }
    }
}

// ---------------------------------------------------------------------------
// Binary CCEL.

/// Bounds-checked little-endian reader; offsets in errors are from the start
/// of the whole log (`base` is where `buf` starts in it).
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    base: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], base: usize) -> Self {
        Reader { buf, pos: 0, base }
    }

    fn offset(&self) -> usize {
        self.base.saturating_add(self.pos)
    }

    fn rest(&self) -> &'a [u8] {
        self.buf.get(self.pos..).unwrap_or(&[])
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        let slice = self.pos.checked_add(n).and_then(|end| self.buf.get(self.pos..end));
        match slice {
            Some(s) => {
                self.pos += n;
                Ok(s)
            }
            None => Err(err(format!(
                "truncated: {what} needs {n} bytes at offset {}, only {} left",
                self.offset(),
                self.rest().len()
            ))),
        }
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let at = self.offset();
        self.take(N, what)?.try_into().map_err(|_| err(format!("internal: bad length reading {what} at offset {at}")))
    }

    fn u8(&mut self, what: &str) -> Result<u8> {
        Ok(self.array::<1>(what)?[0])
    }

    fn u16(&mut self, what: &str) -> Result<u16> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    /// Reads a `u32` length and converts it to `usize`.
    fn len32(&mut self, what: &str) -> Result<usize> {
        let at = self.offset();
        let n = self.u32(what)?;
        usize::try_from(n).map_err(|_| err(format!("{what} {n} at offset {at} does not fit in memory")))
    }
}

/// Digest algorithms declared by the Spec ID event: (alg id, digest size).
type AlgTable = Vec<(u16, usize)>;

/// Parses the legacy first record and its `TCG_EfiSpecIDEvent`.
fn parse_header(r: &mut Reader<'_>) -> Result<AlgTable> {
    let _index = r.u32("Spec ID header index")?;
    let at = r.offset();
    let event_type = r.u32("Spec ID header event type")?;
    if event_type != EV_NO_ACTION {
        return Err(err(format!(
            "not a crypto-agile event log: first record at offset 0 has type {event_type:#010x} \
             (offset {at}), expected EV_NO_ACTION carrying the Spec ID Event03"
        )));
    }
    r.take(20, "Spec ID header SHA-1 digest")?;
    let size = r.len32("Spec ID header event size")?;
    let base = r.offset();
    let body = r.take(size, "Spec ID event")?;
    parse_spec_id(body, base)
}

fn parse_spec_id(body: &[u8], base: usize) -> Result<AlgTable> {
    let mut r = Reader::new(body, base);
    let sig = r.take(16, "Spec ID signature")?;
    if sig != SPEC_ID_SIGNATURE {
        return Err(err(format!(
            "first record at offset {base} is not a Spec ID Event03 (signature {:?})",
            String::from_utf8_lossy(sig)
        )));
    }
    r.take(8, "Spec ID platform class and version")?;
    let at = r.offset();
    let count = r.u32("Spec ID number of algorithms")?;
    let count = usize::try_from(count).ok().filter(|n| (1..=MAX_ALGORITHMS).contains(n)).ok_or_else(|| {
        err(format!("Spec ID event at offset {at} declares {count} digest algorithms, expected 1..={MAX_ALGORITHMS}"))
    })?;
    let mut algs: AlgTable = Vec::with_capacity(count);
    for _ in 0..count {
        let at = r.offset();
        let alg = r.u16("Spec ID algorithm id")?;
        let size = usize::from(r.u16("Spec ID digest size")?);
        if size == 0 || size > MAX_DIGEST_SIZE {
            return Err(err(format!(
                "Spec ID event at offset {at}: algorithm {alg:#06x} has digest size {size}, expected 1..={MAX_DIGEST_SIZE}"
            )));
        }
        if alg == TPM_ALG_SHA384 && size != SHA384_LEN {
            return Err(err(format!(
                "Spec ID event at offset {at}: SHA-384 declared with digest size {size}, expected 48"
            )));
        }
        if algs.iter().any(|&(a, _)| a == alg) {
            return Err(err(format!("Spec ID event at offset {at}: algorithm {alg:#06x} listed twice")));
        }
        algs.push((alg, size));
    }
    if !algs.iter().any(|&(a, _)| a == TPM_ALG_SHA384) {
        return Err(err(format!(
            "Spec ID event at offset {base} does not declare SHA-384 (0x000c); TDX RTMRs cannot be replayed"
        )));
    }
    let vendor = usize::from(r.u8("Spec ID vendor info size")?);
    r.take(vendor, "Spec ID vendor info")?;
    if !r.rest().is_empty() {
        return Err(err(format!(
            "Spec ID event: {} unexpected bytes after vendor info at offset {}",
            r.rest().len(),
            r.offset()
        )));
    }
    Ok(algs)
}

/// True when the log ends at this record boundary (see the module doc).
fn at_end(rest: &[u8]) -> bool {
    if rest.is_empty() {
        return true;
    }
    let ff = rest.get(..4).unwrap_or(rest);
    if ff.iter().all(|&b| b == 0xFF) {
        return true;
    }
    let zero = rest.get(..8).unwrap_or(rest);
    zero.iter().all(|&b| b == 0)
}

/// One `TCG_PCR_EVENT2`, borrowed from the log.
struct Record<'a> {
    offset: usize,
    index: u32,
    event_type: u32,
    sha384: Option<&'a [u8]>,
    data: &'a [u8],
}

fn parse_event2<'a>(r: &mut Reader<'a>, algs: &AlgTable, n: usize) -> Result<Record<'a>> {
    let offset = r.offset();
    let ctx = |e: AttestError| match e {
        AttestError::EventLog(m) => err(format!("event #{n} (record at offset {offset}): {m}")),
        other => other,
    };
    let index = r.u32("MR index").map_err(ctx)?;
    let event_type = r.u32("event type").map_err(ctx)?;
    if index > 4 {
        return Err(ctx(err(format!("CC MR index {index} out of range (0 = MRTD, 1..=4 = RTMR0..3)"))));
    }
    let at = r.offset();
    let count = r.u32("digest count").map_err(ctx)?;
    if usize::try_from(count).map_or(true, |c| c > algs.len()) {
        return Err(ctx(err(format!(
            "digest count {count} at offset {at} exceeds the {} algorithms of the Spec ID event",
            algs.len()
        ))));
    }
    let mut seen: Vec<u16> = Vec::with_capacity(algs.len());
    let mut sha384 = None;
    for _ in 0..count {
        let at = r.offset();
        let alg = r.u16("digest algorithm id").map_err(ctx)?;
        let size = algs.iter().find(|&&(a, _)| a == alg).map(|&(_, s)| s).ok_or_else(|| {
            ctx(err(format!("digest algorithm {alg:#06x} at offset {at} is not declared in the Spec ID event")))
        })?;
        if seen.contains(&alg) {
            return Err(ctx(err(format!("digest algorithm {alg:#06x} repeated at offset {at}"))));
        }
        seen.push(alg);
        let d = r.take(size, "digest").map_err(ctx)?;
        if alg == TPM_ALG_SHA384 {
            sha384 = Some(d);
        }
    }
    let size = r.len32("event size").map_err(ctx)?;
    let data = r.take(size, "event data").map_err(ctx)?;
    Ok(Record { offset, index, event_type, sha384, data })
}

/// Parse a CCEL event log and replay it. Errors: AttestError::EventLog.
///
/// `log` is the whole log area (trailing padding is fine); see the module
/// documentation for the format, the replay rule and how the end is found.
pub fn replay(log: &[u8]) -> Result<ReplayedLog, AttestError> {
    if log.is_empty() {
        return Err(err("empty event log"));
    }
    if log.len() > MAX_LOG_LEN {
        return Err(err(format!("event log is {} bytes, more than the {MAX_LOG_LEN} accepted", log.len())));
    }
    let mut r = Reader::new(log, 0);
    let algs = parse_header(&mut r)?;
    let mut out = Replayer::new();
    let mut n = 0usize;
    while !at_end(r.rest()) {
        n += 1;
        if n > MAX_EVENTS {
            return Err(err(format!("more than {MAX_EVENTS} events (at offset {})", r.offset())));
        }
        let rec = parse_event2(&mut r, &algs, n)?;
        if rec.event_type == EV_NO_ACTION || rec.index == 0 {
            continue;
        }
        // index is 1..=4 here (checked in parse_event2, 0 skipped above).
        let rtmr = rec
            .index
            .checked_sub(1)
            .and_then(|i| u8::try_from(i).ok())
            .ok_or_else(|| err(format!("event #{n}: bad MR index {}", rec.index)))?;
        let digest = rec.sha384.ok_or_else(|| {
            err(format!("event #{n} (record at offset {}) for RTMR{rtmr} has no SHA-384 digest", rec.offset))
        })?;
        out.extend(rtmr, rec.event_type, digest, rec.data.to_vec())?;
    }
    Ok(out.finish())
}

/// Check a replayed log against the RTMRs of a verified quote; on mismatch,
/// the error names the register and both values in lower-case hex.
///
/// Every mismatching register is listed, e.g. `RTMR2 mismatch: event log
/// replays to <hex>, quote has <hex>`.
pub fn check_rtmrs(log: &ReplayedLog, rtmr: &[Mr48; 4]) -> Result<(), AttestError> {
    let mismatches: Vec<String> = log
        .rtmr
        .iter()
        .zip(rtmr.iter())
        .enumerate()
        .filter(|(_, (replayed, quoted))| replayed != quoted)
        .map(|(i, (replayed, quoted))| {
            format!(
                "RTMR{i} mismatch: event log replays to {}, quote has {}",
                hex::encode(replayed),
                hex::encode(quoted)
            )
        })
        .collect();
    if mismatches.is_empty() {
        Ok(())
    } else {
        Err(err(mismatches.join("; ")))
    }
}

// ---------------------------------------------------------------------------
// dstack JSON.

#[derive(Deserialize)]
struct DstackEvent {
    imr: u32,
    event_type: u32,
    #[serde(default)]
    digest: String,
    #[serde(default)]
    event: String,
    #[serde(default)]
    event_payload: String,
    #[serde(default)]
    version: Option<u32>,
}

/// dstack's digest pre-image for a runtime event (see the module doc).
fn dstack_runtime_preimage(name: &str, payload: &[u8], version: u32) -> Result<Vec<u8>, String> {
    match version {
        1 => {
            let mut buf = Vec::with_capacity(name.len().saturating_add(payload.len()).saturating_add(6));
            buf.extend_from_slice(&DSTACK_RUNTIME_EVENT_TYPE.to_le_bytes());
            buf.push(b':');
            buf.extend_from_slice(name.as_bytes());
            buf.push(b':');
            buf.extend_from_slice(payload);
            Ok(buf)
        }
        2 => {
            // serde_json escapes strings exactly as JCS (RFC 8785) does:
            // `"`, `\`, \b \f \n \r \t, other controls as \u00xx, nothing else.
            let name = serde_json::to_string(name).map_err(|e| format!("cannot encode name: {e}"))?;
            Ok(format!(
                "{{\"event\":{name},\"event_type\":{DSTACK_RUNTIME_EVENT_TYPE},\"payload\":\"{}\",\"version\":2}}",
                hex::encode(payload)
            )
            .into_bytes())
        }
        v => Err(format!("unsupported dstack event log version {v} (1 and 2 are known)")),
    }
}

fn decode_hex(s: &str, what: &str) -> Result<Vec<u8>, String> {
    hex::decode(s).map_err(|e| format!("{what} is not hex: {e}"))
}

fn dstack_event(rep: &mut Replayer, ev: DstackEvent) -> Result<(), String> {
    if ev.imr > 3 {
        return Err(format!("imr {} out of range 0..=3", ev.imr));
    }
    // imr <= 3 was checked just above.
    let rtmr = u8::try_from(ev.imr).map_err(|_| format!("imr {} out of range", ev.imr))?;
    let digest = decode_hex(&ev.digest, "digest")?;
    let payload = decode_hex(&ev.event_payload, "event_payload")?;
    if ev.event_type == EV_NO_ACTION {
        return Ok(());
    }
    if ev.event_type == DSTACK_RUNTIME_EVENT_TYPE {
        let version = ev.version.unwrap_or(1);
        let pre = dstack_runtime_preimage(&ev.event, &payload, version)?;
        let computed: [u8; 48] = Sha384::digest(&pre).into();
        if !digest.is_empty() && digest != computed {
            return Err(format!(
                "runtime event {:?}: digest {} does not match SHA-384 of its name and payload ({})",
                ev.event,
                hex::encode(&digest),
                hex::encode(computed)
            ));
        }
        return rep.extend(rtmr, ev.event_type, &computed, pre).map_err(|e| e.to_string());
    }
    if digest.len() != SHA384_LEN {
        return Err(format!(
            "digest is {} bytes, expected {SHA384_LEN} (boot-time events must carry their digest)",
            digest.len()
        ));
    }
    rep.extend(rtmr, ev.event_type, &digest, payload).map_err(|e| e.to_string())
}

/// Replay dstack's JSON event log. Errors: AttestError::EventLog.
///
/// Accepts the event list itself (a JSON array), or a dstack quote report
/// object whose `event_log` field holds that array or a string containing it.
/// Runtime events are checked against their payload (see the module doc).
pub fn replay_dstack_json(json: &[u8]) -> Result<ReplayedLog, AttestError> {
    use serde_json::Value;
    if json.len() > MAX_LOG_LEN {
        return Err(err(format!("dstack event log is {} bytes, more than the {MAX_LOG_LEN} accepted", json.len())));
    }
    let top: Value = serde_json::from_slice(json).map_err(|e| err(format!("dstack event log is not JSON: {e}")))?;
    let list = match top {
        Value::Array(a) => a,
        Value::Object(mut m) => match m.remove("event_log") {
            Some(Value::Array(a)) => a,
            Some(Value::String(s)) => serde_json::from_str::<Vec<Value>>(&s)
                .map_err(|e| err(format!("dstack `event_log` string is not a JSON array: {e}")))?,
            Some(_) => return Err(err("dstack `event_log` is neither an array nor a string")),
            None => return Err(err("dstack JSON object has no `event_log` field")),
        },
        _ => return Err(err("dstack event log must be a JSON array or an object with `event_log`")),
    };
    if list.len() > MAX_EVENTS {
        return Err(err(format!("dstack event log has {} events, more than the {MAX_EVENTS} accepted", list.len())));
    }
    let mut rep = Replayer::new();
    for (i, v) in list.into_iter().enumerate() {
        let ev: DstackEvent =
            serde_json::from_value(v).map_err(|e| err(format!("dstack event #{i}: malformed: {e}")))?;
        dstack_event(&mut rep, ev).map_err(|m| err(format!("dstack event #{i}: {m}")))?;
    }
    Ok(rep.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CCEL: &str =
        concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/attestation/go-tdx-guest/ccel/ccel_data.dat");
    const QUOTE: &str =
        concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/attestation/go-tdx-guest/ccel/cos-113-tdx-quote.dat");
    const DSTACK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/attestation/dstack/quote-report.json");
    /// Bytes of the real CCEL actually used (PROVENANCE: 18101 used).
    const CCEL_USED: usize = 18101;

    fn read(p: &str) -> Vec<u8> {
        std::fs::read(p).unwrap_or_else(|e| panic!("read {p}: {e}"))
    }

    /// RTMR0..3 of a v4 quote at fixed offsets: 48-byte header, then
    /// tee_tcb_svn 16, mrseam 48, mrsignerseam 48, seamattributes 8,
    /// tdattributes 8, xfam 8, mrtd/mrconfigid/mrowner/mrownerconfig 48 each.
    fn quote_rtmrs(q: &[u8]) -> [Mr48; 4] {
        let base = 48 + 16 + 48 + 48 + 8 + 8 + 8 + 4 * 48;
        let mut out = [[0u8; 48]; 4];
        for (i, r) in out.iter_mut().enumerate() {
            r.copy_from_slice(&q[base + 48 * i..base + 48 * (i + 1)]);
        }
        out
    }

    fn ccel_quote_rtmrs() -> [Mr48; 4] {
        let q = read(QUOTE);
        assert_eq!(u16::from_le_bytes([q[0], q[1]]), 4, "quote version");
        quote_rtmrs(&q)
    }

    fn sha384(parts: &[&[u8]]) -> [u8; 48] {
        let mut h = Sha384::new();
        for p in parts {
            h.update(p);
        }
        h.finalize().into()
    }

    // --- synthetic log builders -------------------------------------------

    fn header(algs: &[(u16, u16)]) -> Vec<u8> {
        let mut ev = SPEC_ID_SIGNATURE.to_vec();
        ev.extend_from_slice(&0u32.to_le_bytes()); // platform class
        ev.extend_from_slice(&[0, 2, 0, 2]); // minor, major, errata, uintnSize
        ev.extend_from_slice(&(algs.len() as u32).to_le_bytes());
        for &(a, s) in algs {
            ev.extend_from_slice(&a.to_le_bytes());
            ev.extend_from_slice(&s.to_le_bytes());
        }
        ev.push(0); // vendor info size
        let mut out = Vec::new();
        out.extend_from_slice(&1u32.to_le_bytes());
        out.extend_from_slice(&EV_NO_ACTION.to_le_bytes());
        out.extend_from_slice(&[0u8; 20]);
        out.extend_from_slice(&(ev.len() as u32).to_le_bytes());
        out.extend_from_slice(&ev);
        out
    }

    fn event2(index: u32, ty: u32, digests: &[(u16, &[u8])], data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&index.to_le_bytes());
        out.extend_from_slice(&ty.to_le_bytes());
        out.extend_from_slice(&(digests.len() as u32).to_le_bytes());
        for &(a, d) in digests {
            out.extend_from_slice(&a.to_le_bytes());
            out.extend_from_slice(d);
        }
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(data);
        out
    }

    fn sha384_only() -> Vec<u8> {
        header(&[(TPM_ALG_SHA384, 48)])
    }

    fn expect_eventlog_err(r: Result<ReplayedLog, AttestError>, needle: &str) -> String {
        match r {
            Err(AttestError::EventLog(m)) => {
                assert!(m.contains(needle), "error {m:?} should mention {needle:?}");
                m
            }
            other => panic!("expected EventLog error mentioning {needle:?}, got {other:?}"),
        }
    }

    /// xorshift64*: deterministic pseudo-random bytes for the fuzz loops.
    struct XorShift(u64);
    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
        fn bytes(&mut self, n: usize) -> Vec<u8> {
            (0..n).map(|_| self.next() as u8).collect()
        }
    }

    // --- the real GCP CCEL ------------------------------------------------

    #[test]
    fn real_ccel_replays_to_quote_rtmrs() {
        let log = replay(&read(CCEL)).expect("real CCEL replays");
        let q = ccel_quote_rtmrs();
        assert_eq!(
            hex::encode(q[0]),
            "3fa2f61f395b7f5feefb4ec2df61297f109ad8abcd6410c1b7df60f21f37b19297fc35e544039c7e1edece752afd17f6"
        );
        assert_eq!(log.rtmr, q);
        check_rtmrs(&log, &q).expect("RTMRs match");
        assert_eq!(log.rtmr[3], [0u8; 48], "COS-113 does not extend RTMR3");
    }

    #[test]
    fn real_ccel_events_span_several_rtmrs() {
        let log = replay(&read(CCEL)).unwrap();
        let per: Vec<usize> = (0..4u8).map(|i| log.events.iter().filter(|e| e.rtmr == i).count()).collect();
        // PROVENANCE: 16/7/20/0 events.
        assert_eq!(per, vec![16, 7, 20, 0]);
        assert!(log.events.iter().all(|e| e.digest.len() == 48));
        assert!(log.events.iter().all(|e| e.event_type != EV_NO_ACTION));
        // Spot checks: EV_EFI_ACTION text, and the kernel command line (EV_IPL).
        assert!(log
            .events
            .iter()
            .any(|e| e.rtmr == 1 && e.event_type == 0x8000_0007 && e.data == b"Exit Boot Services Invocation"));
        assert!(log
            .events
            .iter()
            .any(|e| e.rtmr == 2 && e.event_type == 0xD && e.data.starts_with(b"kernel_cmdline: ")));
        // EV_EFI_ACTION data is what was hashed.
        let ebs = log.events.iter().find(|e| e.data == b"Exit Boot Services Invocation").unwrap();
        assert_eq!(ebs.digest, sha384(&[&ebs.data]).to_vec());
    }

    #[test]
    fn real_ccel_without_padding_and_with_zero_padding() {
        let full = replay(&read(CCEL)).unwrap();
        let data = read(CCEL);
        let bare = replay(&data[..CCEL_USED]).unwrap();
        assert_eq!(bare, full);
        let mut zeroed = data[..CCEL_USED].to_vec();
        zeroed.resize(CCEL_USED + 4096, 0);
        assert_eq!(replay(&zeroed).unwrap(), full);
        let mut term = data[..CCEL_USED].to_vec();
        term.extend_from_slice(&[0xFF; 4]);
        assert_eq!(replay(&term).unwrap(), full);
    }

    #[test]
    fn flipped_digest_byte_names_the_rtmr() {
        let q = ccel_quote_rtmrs();
        let mut log = replay(&read(CCEL)).unwrap();
        assert!(check_rtmrs(&log, &q).is_ok());
        // Flip a byte of an RTMR2 event's digest and replay it again.
        let mut data = read(CCEL);
        let ev = log.events.iter().find(|e| e.rtmr == 2).unwrap().clone();
        let pos = data.windows(48).position(|w| w == ev.digest.as_slice()).expect("digest present in log");
        data[pos + 7] ^= 0x01;
        let bad = replay(&data).expect("still parses");
        let m = match check_rtmrs(&bad, &q) {
            Err(AttestError::EventLog(m)) => m,
            other => panic!("expected mismatch, got {other:?}"),
        };
        assert!(m.contains("RTMR2 mismatch"), "{m}");
        assert!(!m.contains("RTMR0") && !m.contains("RTMR1") && !m.contains("RTMR3"), "{m}");
        assert!(m.contains(&hex::encode(bad.rtmr[2])), "{m}");
        assert!(m.contains(&hex::encode(q[2])), "{m}");
        assert_eq!(m, m.to_lowercase().replace("rtmr", "RTMR"), "hex is lower case");
        // Tampering with the replayed struct directly is caught the same way.
        log.rtmr[0][0] ^= 0x80;
        let m = check_rtmrs(&log, &q).unwrap_err().to_string();
        assert!(m.contains("RTMR0 mismatch"), "{m}");
    }

    #[test]
    fn truncated_mid_event_is_an_error() {
        let data = read(CCEL);
        // The first EVENT2 starts right after the 65-byte Spec ID record
        // (32 + 33); cut inside its digest, its size field and its data.
        for cut in [65 + 5, 65 + 12 + 20, 65 + 12 + 50 + 2, 65 + 12 + 50 + 4 + 10, CCEL_USED - 3] {
            expect_eventlog_err(replay(&data[..cut]), "truncated");
        }
        // Inside the Spec ID header itself.
        expect_eventlog_err(replay(&data[..40]), "truncated");
    }

    #[test]
    fn garbage_and_empty_input_are_errors() {
        expect_eventlog_err(replay(&[]), "empty");
        expect_eventlog_err(replay(&[0xFF; 64]), "");
        expect_eventlog_err(replay(b"this is not an event log at all, not even close....."), "");
        expect_eventlog_err(replay(&[0u8; 3]), "truncated");
        // Right shape, wrong signature.
        let mut h = sha384_only();
        h[32] = b'X';
        expect_eventlog_err(replay(&h), "Spec ID Event03");
        // A log whose first record is not EV_NO_ACTION.
        let mut h = sha384_only();
        h[4] = 4;
        expect_eventlog_err(replay(&h), "crypto-agile");
        // Spec ID without SHA-384.
        expect_eventlog_err(replay(&header(&[(0x000B, 32)])), "SHA-384");
        // SHA-384 with the wrong size.
        expect_eventlog_err(replay(&header(&[(TPM_ALG_SHA384, 32)])), "size 32");
        // Spec ID with trailing junk inside its event.
        let mut h = sha384_only();
        let size = u32::from_le_bytes(h[28..32].try_into().unwrap()) + 1;
        h[28..32].copy_from_slice(&size.to_le_bytes());
        h.push(7);
        expect_eventlog_err(replay(&h), "unexpected bytes");
    }

    #[test]
    fn absurd_counts_are_rejected_without_allocation() {
        // numberOfAlgorithms = u32::MAX in the Spec ID event.
        let mut h = sha384_only();
        h[32 + 24..32 + 28].copy_from_slice(&u32::MAX.to_le_bytes());
        expect_eventlog_err(replay(&h), "digest algorithms");
        // Spec ID header event size = u32::MAX.
        let mut h = sha384_only();
        h[28..32].copy_from_slice(&u32::MAX.to_le_bytes());
        expect_eventlog_err(replay(&h), "truncated");
        // digest_count = u32::MAX.
        let mut log = sha384_only();
        log.extend_from_slice(&1u32.to_le_bytes());
        log.extend_from_slice(&0xDu32.to_le_bytes());
        log.extend_from_slice(&u32::MAX.to_le_bytes());
        log.extend_from_slice(&[0u8; 64]);
        expect_eventlog_err(replay(&log), "digest count 4294967295");
        // event_size = 0xFFFF_FFF0.
        let mut log = sha384_only();
        let mut ev = event2(1, 0xD, &[(TPM_ALG_SHA384, &[1u8; 48])], b"");
        let n = ev.len();
        ev[n - 4..].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
        log.extend_from_slice(&ev);
        log.extend_from_slice(&[0xAB; 100]);
        let m = expect_eventlog_err(replay(&log), "truncated");
        assert!(m.contains("event data") && m.contains("4294967280"), "{m}");
        // More than MAX_EVENTS tiny (EV_NO_ACTION, digest-less) records.
        let mut log = sha384_only();
        let tiny = event2(0, EV_NO_ACTION, &[], b"x");
        for _ in 0..=MAX_EVENTS {
            log.extend_from_slice(&tiny);
        }
        expect_eventlog_err(replay(&log), "more than 8192 events");
        // Log larger than MAX_LOG_LEN.
        expect_eventlog_err(replay(&vec![0u8; MAX_LOG_LEN + 1]), "more than");
    }

    // --- synthetic logs: replay rule and record checks --------------------

    #[test]
    fn synthetic_replay_rule() {
        let d1 = [0x11u8; 48];
        let d2 = [0x22u8; 48];
        let d3 = [0x33u8; 48];
        let sha256 = [0x44u8; 32];
        let mut log = header(&[(0x000B, 32), (TPM_ALG_SHA384, 48)]);
        log.extend(event2(
            0,
            EV_NO_ACTION,
            &[(0x000B, &[0; 32]), (TPM_ALG_SHA384, &[0; 48])],
            b"StartupLocality\0\x03",
        ));
        log.extend(event2(1, 0x8000_0008, &[(0x000B, &sha256), (TPM_ALG_SHA384, &d1)], b"fw"));
        log.extend(event2(0, 0x8000_0008, &[(TPM_ALG_SHA384, &d3)], b"mrtd, skipped"));
        log.extend(event2(4, 0xD, &[(TPM_ALG_SHA384, &d2), (0x000B, &sha256)], b"app"));
        log.extend(event2(1, 4, &[(TPM_ALG_SHA384, &d3)], &[0, 0, 0, 0]));
        log.extend(event2(4, EV_NO_ACTION, &[(TPM_ALG_SHA384, &d3)], b"not extended"));
        log.extend([0xFF; 32]);
        let out = replay(&log).unwrap();
        let r0 = sha384(&[&sha384(&[&[0u8; 48], &d1]), &d3]);
        let r3 = sha384(&[&[0u8; 48], &d2]);
        assert_eq!(out.rtmr, [r0, [0; 48], [0; 48], r3]);
        assert_eq!(out.events.len(), 3);
        assert_eq!(
            out.events[0],
            MeasuredEvent { rtmr: 0, event_type: 0x8000_0008, digest: d1.to_vec(), data: b"fw".to_vec() }
        );
        assert_eq!((out.events[1].rtmr, out.events[1].data.as_slice()), (3, &b"app"[..]));
        assert_eq!((out.events[2].rtmr, out.events[2].event_type), (0, 4));
        // Header only: all-zero RTMRs, no events.
        let empty = replay(&sha384_only()).unwrap();
        assert_eq!(empty, ReplayedLog { rtmr: [[0; 48]; 4], events: vec![] });
    }

    #[test]
    fn synthetic_bad_records() {
        let d = [0x55u8; 48];
        let with = |ev: Vec<u8>| {
            let mut log = sha384_only();
            log.extend(ev);
            log
        };
        expect_eventlog_err(replay(&with(event2(5, 0xD, &[(TPM_ALG_SHA384, &d)], b""))), "CC MR index 5");
        expect_eventlog_err(replay(&with(event2(0xFFFF_FFFE, 0xD, &[], b""))), "out of range");
        expect_eventlog_err(
            replay(&with(event2(2, 0xD, &[(0x000B, &[0; 32])], b""))),
            "0x000b at offset 77 is not declared",
        );
        expect_eventlog_err(
            replay(&with(event2(2, 0xD, &[(TPM_ALG_SHA384, &d), (TPM_ALG_SHA384, &d)], b""))),
            "digest count 2",
        );
        expect_eventlog_err(replay(&with(event2(2, 0xD, &[], b"no digest"))), "no SHA-384 digest");
        // Repeated algorithm in a two-algorithm log.
        let mut log = header(&[(0x000B, 32), (TPM_ALG_SHA384, 48)]);
        log.extend(event2(2, 0xD, &[(TPM_ALG_SHA384, &d), (TPM_ALG_SHA384, &d)], b""));
        expect_eventlog_err(replay(&log), "repeated");
        // Record boundary with a few non-padding bytes left.
        let mut log = with(event2(2, 0xD, &[(TPM_ALG_SHA384, &d)], b""));
        log.extend([1, 2, 3]);
        expect_eventlog_err(replay(&log), "event #2");
        // Errors say where: event number and record offset.
        let mut log = with(event2(2, 0xD, &[(TPM_ALG_SHA384, &d)], b"ok"));
        let second = log.len();
        log.extend(event2(2, 0xD, &[(TPM_ALG_SHA384, &d)], b"cut here"));
        log.truncate(log.len() - 2);
        let m = expect_eventlog_err(replay(&log), "truncated");
        assert!(m.contains(&format!("event #2 (record at offset {second})")), "{m}");
    }

    #[test]
    fn property_truncations_and_random_bytes_never_panic() {
        let data = read(CCEL);
        let full = replay(&data).unwrap();
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        for i in 0..200 {
            // Mostly inside the used part, sometimes into the padding.
            let cut = if i % 10 == 0 { rng.below(data.len() + 1) } else { rng.below(CCEL_USED + 1) };
            match replay(&data[..cut]) {
                Ok(log) => {
                    assert!(log.events.len() <= full.events.len());
                    if cut < CCEL_USED {
                        assert!(log.events.len() < full.events.len(), "cut {cut}");
                    }
                }
                Err(e) => assert!(matches!(e, AttestError::EventLog(_)), "cut {cut}: {e:?}"),
            }
        }
        for i in 0..200 {
            let len = rng.below(4096);
            // Pure noise, noise behind a valid header, and the real log with
            // a handful of random bytes overwritten.
            let input = match i % 3 {
                0 => rng.bytes(len),
                1 => {
                    let mut v = header(&[(0x000B, 32), (TPM_ALG_SHA384, 48)]);
                    v.extend(rng.bytes(len));
                    v
                }
                _ => {
                    let mut v = data[..CCEL_USED + 8].to_vec();
                    for _ in 0..1 + rng.below(8) {
                        let p = rng.below(v.len());
                        v[p] = rng.next() as u8;
                    }
                    v
                }
            };
            if let Err(e) = replay(&input) {
                assert!(matches!(e, AttestError::EventLog(_)), "{e:?}");
            }
            let _ = replay_dstack_json(&input);
        }
    }

    // --- dstack JSON ------------------------------------------------------

    fn dstack_fixture() -> (serde_json::Value, [Mr48; 4]) {
        let v: serde_json::Value = serde_json::from_slice(&read(DSTACK)).unwrap();
        let quote = hex::decode(v["quote"].as_str().unwrap()).unwrap();
        (v, quote_rtmrs(&quote))
    }

    fn dstack_events(v: &serde_json::Value) -> Vec<serde_json::Value> {
        serde_json::from_str(v["event_log"].as_str().unwrap()).unwrap()
    }

    #[test]
    fn dstack_json_replays_to_quote_rtmrs() {
        let (v, q) = dstack_fixture();
        assert_eq!(
            hex::encode(q[3]),
            "0f787c3877f3e95095d5a4d13dd0fe0233803b30120d8469866719dc28f519ce021fe1e53459121e7a5a4443147185a8"
        );
        // The whole report object, and the bare event list, give the same log.
        let log = replay_dstack_json(&read(DSTACK)).unwrap();
        let bare = serde_json::to_vec(&dstack_events(&v)).unwrap();
        assert_eq!(replay_dstack_json(&bare).unwrap(), log);
        assert_eq!(log.rtmr, q);
        check_rtmrs(&log, &q).unwrap();
        assert_eq!(log.events.len(), 28);
        let rt: Vec<&MeasuredEvent> = log.events.iter().filter(|e| e.event_type == DSTACK_RUNTIME_EVENT_TYPE).collect();
        assert_eq!(rt.len(), 8);
        for e in &rt {
            assert_eq!(e.rtmr, 3);
            assert_eq!(e.digest, sha384(&[&e.data]).to_vec(), "data is the digest pre-image");
        }
        let mut compose = DSTACK_RUNTIME_EVENT_TYPE.to_le_bytes().to_vec();
        compose.extend_from_slice(b":compose-hash:");
        compose.extend(hex::decode("3763bc34552cf3a27ff71ad5f7a90471562a1a2df552dfc1998cba2d60da27e7").unwrap());
        assert!(rt.iter().any(|e| e.data == compose));
    }

    #[test]
    fn dstack_json_payload_is_bound_to_digest() {
        let (v, q) = dstack_fixture();
        // Change the compose-hash payload but keep the recorded digest.
        let mut evs = dstack_events(&v);
        let i = evs.iter().position(|e| e["event"] == "compose-hash").unwrap();
        evs[i]["event_payload"] = serde_json::Value::String("00".repeat(32));
        let m = replay_dstack_json(&serde_json::to_vec(&evs).unwrap()).unwrap_err().to_string();
        assert!(m.contains(&format!("dstack event #{i}")) && m.contains("does not match"), "{m}");
        // Drop the digest too: it is recomputed, and the RTMR3 check fails.
        evs[i]["digest"] = serde_json::Value::String(String::new());
        let log = replay_dstack_json(&serde_json::to_vec(&evs).unwrap()).unwrap();
        let m = check_rtmrs(&log, &q).unwrap_err().to_string();
        assert!(m.contains("RTMR3 mismatch") && !m.contains("RTMR0"), "{m}");
        // Stripped runtime digests (dstack's compact form) still replay.
        let mut evs = dstack_events(&v);
        for e in evs.iter_mut().filter(|e| e["event_type"] == DSTACK_RUNTIME_EVENT_TYPE) {
            e["digest"] = serde_json::Value::String(String::new());
        }
        let log = replay_dstack_json(&serde_json::to_vec(&evs).unwrap()).unwrap();
        check_rtmrs(&log, &q).unwrap();
    }

    #[test]
    fn dstack_json_bad_inputs() {
        let (v, _) = dstack_fixture();
        let run = |evs: &Vec<serde_json::Value>| replay_dstack_json(&serde_json::to_vec(evs).unwrap());
        let bad = |r: Result<ReplayedLog, AttestError>, needle: &str| {
            let m = match r {
                Err(AttestError::EventLog(m)) => m,
                other => panic!("expected EventLog error, got {other:?}"),
            };
            assert!(m.contains(needle), "{m:?} should mention {needle:?}");
        };
        let mut evs = dstack_events(&v);
        evs[0]["digest"] = serde_json::Value::String(String::new());
        bad(run(&evs), "boot-time events must carry their digest");
        let mut evs = dstack_events(&v);
        evs[1]["imr"] = serde_json::json!(4);
        bad(run(&evs), "dstack event #1: imr 4 out of range");
        let mut evs = dstack_events(&v);
        evs[2]["digest"] = serde_json::Value::String("zz".into());
        bad(run(&evs), "not hex");
        let mut evs = dstack_events(&v);
        evs[3]["event_type"] = serde_json::json!(-1);
        bad(run(&evs), "malformed");
        let mut evs = dstack_events(&v);
        let last = evs.len() - 1;
        evs[last]["version"] = serde_json::json!(3);
        bad(run(&evs), "version 3");
        bad(replay_dstack_json(b""), "not JSON");
        bad(replay_dstack_json(b"{\"quote\":\"00\"}"), "no `event_log`");
        bad(replay_dstack_json(b"{\"event_log\":\"[1,2\"}"), "not a JSON array");
        bad(replay_dstack_json(b"42"), "JSON array");
        let many = format!("[{}]", vec!["{\"imr\":0,\"event_type\":3}"; MAX_EVENTS + 1].join(","));
        bad(replay_dstack_json(many.as_bytes()), "8193 events, more than");
        // EV_NO_ACTION entries are skipped; an empty list is a valid empty log.
        let log = replay_dstack_json(b"[{\"imr\":0,\"event_type\":3,\"digest\":\"\"}]").unwrap();
        assert_eq!(log, ReplayedLog { rtmr: [[0; 48]; 4], events: vec![] });
    }

    #[test]
    fn dstack_v2_runtime_digest() {
        // Known answer from dstack cc-eventlog's own test.
        let pre = dstack_runtime_preimage("compose-hash", &[0xab, 0xcd], 2).unwrap();
        assert_eq!(
            String::from_utf8(pre.clone()).unwrap(),
            r#"{"event":"compose-hash","event_type":134217729,"payload":"abcd","version":2}"#
        );
        // JCS escaping of control characters, as in dstack's test.
        let esc = dstack_runtime_preimage("\x08\x0c\n\r\t\x01", &[], 2).unwrap();
        assert!(String::from_utf8(esc).unwrap().contains(r#""event":"\b\f\n\r\t\u0001""#));
        let digest = hex::encode(sha384(&[&pre]));
        let json = format!(
            r#"[{{"imr":3,"event_type":134217729,"digest":"{digest}","event":"compose-hash","event_payload":"abcd","version":2}}]"#
        );
        let log = replay_dstack_json(json.as_bytes()).unwrap();
        assert_eq!(log.rtmr[3], sha384(&[&[0u8; 48], &sha384(&[&pre])]));
        assert_eq!(log.events[0].data, pre);
        // The same event claimed as version 1 does not match its digest.
        let v1 = json.replace(r#""version":2"#, r#""version":1"#);
        assert!(replay_dstack_json(v1.as_bytes()).is_err());
    }
}
