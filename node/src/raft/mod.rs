//! openraft glue: the type configuration, the network over the peer gRPC
//! service, and the peer-service handlers.

pub mod types;
