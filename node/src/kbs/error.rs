//! KBS protocol errors. The CoCo client always parses an error body as
//! `{"type","detail"}` and acts on the status: 401 makes it attest again (up
//! to three times), 404 is an immediate "not found", anything else fails the
//! request. The type names are the Trustee KBS's, so logs read the same.

use serde::Serialize;

/// Prefix of every error type, as the Trustee KBS spells it.
pub const TYPE_PREFIX: &str = "https://github.com/confidential-containers/kbs/errors/";

/// Why a KBS request failed. `detail` never contains a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KbsError {
    #[error("{0}")]
    TokenNotFound(String),
    #[error("{0}")]
    TokenInvalid(String),
    #[error("{0}")]
    Session(String),
    #[error("{0}")]
    AttestationFailed(String),
    #[error("{0}")]
    PolicyDeny(String),
    #[error("{0}")]
    ResourceNotFound(String),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{0}")]
    ProtocolVersion(String),
    #[error("{0}")]
    AdminAuth(String),
    #[error("{0}")]
    NotImplemented(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

/// The JSON body of an error.
#[derive(Debug, Serialize)]
pub struct ErrorBody {
    #[serde(rename = "type")]
    pub error_type: String,
    pub detail: String,
}

impl KbsError {
    /// HTTP status: 401 wherever attesting again could help.
    pub fn status(&self) -> u16 {
        match self {
            KbsError::TokenNotFound(_)
            | KbsError::TokenInvalid(_)
            | KbsError::Session(_)
            | KbsError::AttestationFailed(_)
            | KbsError::PolicyDeny(_)
            | KbsError::AdminAuth(_) => 401,
            KbsError::ResourceNotFound(_) => 404,
            KbsError::InvalidRequest(_) | KbsError::ProtocolVersion(_) => 400,
            KbsError::NotImplemented(_) => 501,
            KbsError::Unavailable(_) => 503,
            KbsError::Internal(_) => 500,
        }
    }

    /// The Trustee KBS's name for this kind of error.
    pub fn type_name(&self) -> &'static str {
        match self {
            KbsError::TokenNotFound(_) => "TokenNotFound",
            KbsError::TokenInvalid(_) => "TokenVerificationFailed",
            KbsError::Session(_) => "UnAuthenticatedCookie",
            KbsError::AttestationFailed(_) => "AttestationFailed",
            KbsError::PolicyDeny(_) => "PolicyDeny",
            KbsError::ResourceNotFound(_) => "ResourceNotFound",
            KbsError::InvalidRequest(_) => "InvalidRequest",
            KbsError::ProtocolVersion(_) => "ProtocolVersion",
            KbsError::AdminAuth(_) => "AdminAuth",
            KbsError::NotImplemented(_) => "PluginNotFound",
            KbsError::Unavailable(_) => "Unavailable",
            KbsError::Internal(_) => "InternalError",
        }
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody { error_type: format!("{TYPE_PREFIX}{}", self.type_name()), detail: self.to_string() }
    }
}
