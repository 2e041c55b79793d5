//! TDX event log (CCEL) parsing and RTMR replay.
