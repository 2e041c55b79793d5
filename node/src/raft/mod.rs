//! openraft glue: the type configuration, the network over the peer gRPC
//! service, and the peer-service handlers.
//!
//! - [`types`]: `TypeConfig` and aliases.
//! - [`network`]: the client side (`RaftNetworkFactory` over gRPC).
//! - [`service`]: the server side (peer gRPC → local `Raft`).

pub mod network;
pub mod service;
pub mod types;
