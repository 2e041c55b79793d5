//! Attestation policy.
