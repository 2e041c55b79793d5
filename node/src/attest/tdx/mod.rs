//! Intel TDX DCAP quote verification.
