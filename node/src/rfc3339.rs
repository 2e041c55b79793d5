//! RFC 3339 times as Unix seconds: the one format Guardian shows and reads.

use time::format_description::well_known::Rfc3339;

/// Format Unix seconds as RFC 3339 UTC (`@secs` if out of range).
pub fn format(secs: u64) -> String {
    i64::try_from(secs)
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| format!("@{secs}"))
}

/// Parse an RFC 3339 time into Unix seconds (None before 1970 or if malformed).
pub fn parse(s: &str) -> Option<u64> {
    time::OffsetDateTime::parse(s, &Rfc3339).ok().and_then(|t| u64::try_from(t.unix_timestamp()).ok())
}
