//! The workload serving path (pure core): what an attested workload may get
//! from its namespace and how its requests are checked. The gRPC service
//! around it is `daemon::workload`.
//!
//! # Layout
//!
//! - [`challenge`]: self-authenticating nonces any member checks, and the
//!   binding of evidence to the nonce and the workload's key.
//! - [`refs`]: `${guardian:...}` references in configs and the plan that
//!   resolves them.
//! - [`backend`]: where config bytes live (replicated state, `file://`),
//!   checked against their digest.

pub mod backend;
pub mod challenge;
pub mod refs;
