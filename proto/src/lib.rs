//! # Layout
//!
//! Guardian's wire API (package `guardian.v1`, draft), generated from `proto/guardian/v1/*.proto`
//! by protox + tonic-prost-build (no `protoc`). Three gRPC services:
//!
//! - [`v1::workload_service_server::WorkloadService`]: called by attested workloads.
//!   Challenge, attest (evidence → namespace leaf certificate + bearer token), get key, get config,
//!   CA bundle and CRL. Served by every node.
//! - [`v1::admin_service_server::AdminService`]: called by `guardctl`. Every state change is a
//!   [`v1::SignedCommand`] (Ed25519 admin signatures over an encoded [`v1::AdminCommand`]) that
//!   each node re-validates on apply; quorum commands go through propose / approve / submit.
//!   Read-only calls: status, cluster policy, namespaces, certificates, audit log, node evidence.
//! - [`v1::peer_service_server::PeerService`]: guardian to guardian over RA-TLS. Raft RPCs as
//!   opaque openraft payloads, join requests, DKG / resharing rounds, BLS threshold-PRF shares
//!   and FROST signing rounds.
//!
//! `common.proto` holds what they share: evidence, collateral, encrypted secrets, measurement
//! policies and the [`v1::ErrorDetail`] attached to every error status. `docs/api.md` is the
//! human guide.

/// Generated messages, clients (`*_client`) and servers (`*_server`) for `guardian.v1`.
pub mod v1 {
    tonic::include_proto!("guardian.v1");
}

pub use v1::admin_service_client::AdminServiceClient;
pub use v1::admin_service_server::{AdminService, AdminServiceServer};
pub use v1::peer_service_client::PeerServiceClient;
pub use v1::peer_service_server::{PeerService, PeerServiceServer};
pub use v1::workload_service_client::WorkloadServiceClient;
pub use v1::workload_service_server::{WorkloadService, WorkloadServiceServer};

use prost::Message;

/// Domain-separation prefix of the bytes admins sign: the signing input is
/// `ADMIN_COMMAND_CONTEXT || 0x00 || SignedCommand.command`.
pub const ADMIN_COMMAND_CONTEXT: &[u8] = b"guardian/v1/admin-command";
/// Label of the workload evidence binding (see `workload.proto`).
pub const WORKLOAD_ATTEST_CONTEXT: &[u8] = b"guardian/v1/workload-attest";
/// Label of the evidence in RA-TLS certificates and `PeerService.Join` (see `peer.proto`).
pub const RA_TLS_CONTEXT: &[u8] = b"guardian/v1/ra-tls";
/// Label of `AdminService.GetNodeEvidence`'s binding (see `admin.proto`).
pub const NODE_EVIDENCE_CONTEXT: &[u8] = b"guardian/v1/node-evidence";
/// HPKE `info` prefix of an [`v1::EncryptedSecret`]: `SECRET_INFO_CONTEXT || 0x00 || context`.
pub const SECRET_INFO_CONTEXT: &[u8] = b"guardian/v1/secret";

/// `label || 0x00 || data`: the domain-separated form every signature and binding above uses.
pub fn with_context(label: &[u8], data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(label.len() + 1 + data.len());
    out.extend_from_slice(label);
    out.push(0);
    out.extend_from_slice(data);
    out
}

impl v1::SignedCommand {
    /// Wraps an encoded command, with no signatures yet.
    pub fn unsigned(command: &v1::AdminCommand) -> Self {
        v1::SignedCommand { command: command.encode_to_vec(), signatures: Vec::new() }
    }

    /// The exact bytes each admin signs with Ed25519.
    pub fn signing_input(&self) -> Vec<u8> {
        with_context(ADMIN_COMMAND_CONTEXT, &self.command)
    }

    /// Decodes the signed command bytes. Only call this after the signatures verified.
    pub fn decode_command(&self) -> Result<v1::AdminCommand, prost::DecodeError> {
        v1::AdminCommand::decode(self.command.as_slice())
    }
}

/// Builds a status carrying an encoded [`v1::ErrorDetail`] in `grpc-status-details-bin`.
pub fn status_with_detail(code: tonic::Code, detail: v1::ErrorDetail) -> tonic::Status {
    let message = detail.message.clone();
    tonic::Status::with_details(code, message, detail.encode_to_vec().into())
}

/// The [`v1::ErrorDetail`] of a status, if it carries one.
pub fn error_detail(status: &tonic::Status) -> Option<v1::ErrorDetail> {
    if status.details().is_empty() {
        return None;
    }
    v1::ErrorDetail::decode(status.details()).ok()
}

#[cfg(test)]
mod tests {
    use super::v1::{
        admin_command::Body, AdminCommand, AdminSignature, CreateNamespace, ErrorDetail, ErrorReason, NamespacePolicy,
        SignedCommand,
    };
    use super::*;

    fn sample_command() -> AdminCommand {
        AdminCommand {
            cluster_id: "c-test".into(),
            nonce: vec![7; 16],
            issued_at_unix: 1_790_000_000,
            expires_at_unix: 1_790_000_600,
            reason: "unit test".into(),
            body: Some(Body::CreateNamespace(CreateNamespace {
                namespace: "payments".into(),
                policy: Some(NamespacePolicy { toml: "require_encrypted_secrets = true\n".into() }),
            })),
        }
    }

    #[test]
    fn signed_command_round_trips() {
        let command = sample_command();
        let mut signed = SignedCommand::unsigned(&command);
        signed.signatures.push(AdminSignature { admin_key_id: "ab".repeat(32), signature: vec![1; 64] });

        let wire = signed.encode_to_vec();
        let back = SignedCommand::decode(wire.as_slice()).expect("decode envelope");
        assert_eq!(back, signed);
        assert_eq!(back.decode_command().expect("decode command"), command);
        // The signed bytes are the transmitted bytes, domain-separated.
        let input = back.signing_input();
        assert!(input.starts_with(b"guardian/v1/admin-command\0"));
        assert!(input.ends_with(&signed.command));
    }

    #[test]
    fn error_detail_rides_in_status() {
        let detail = ErrorDetail {
            reason: ErrorReason::NotLeader as i32,
            message: "not the leader".into(),
            leader_address: "10.0.0.2:7443".into(),
            ..Default::default()
        };
        let status = status_with_detail(tonic::Code::Unavailable, detail.clone());
        assert_eq!(status.message(), "not the leader");
        assert_eq!(error_detail(&status), Some(detail));
        assert_eq!(error_detail(&tonic::Status::internal("x")), None);
    }
}
