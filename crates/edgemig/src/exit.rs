//! Exit codes of the `edgemig` CLI (documented in `docs/cli.md`).

use edgemig_api::{ClientError, ErrorCode};

/// Success.
pub const OK: u8 = 0;
/// Any failure not listed below.
pub const FAILURE: u8 = 1;
/// Bad command line (clap's own code).
pub const USAGE: u8 = 2;
/// The agent could not be reached.
pub const AGENT_UNREACHABLE: u8 = 3;
/// No such VM.
pub const NOT_FOUND: u8 = 4;
/// The request conflicts with the current state (duplicate, already running...).
pub const CONFLICT: u8 = 5;
/// The agent refused the input as invalid.
pub const INVALID: u8 = 6;
/// Something needed is not available now (guest agent, image).
pub const UNAVAILABLE: u8 = 7;
/// The agent refused: the caller may not do this.
pub const FORBIDDEN: u8 = 8;

/// The exit code for an error chain.
pub fn code_for(error: &anyhow::Error) -> u8 {
    for cause in error.chain() {
        if let Some(client) = cause.downcast_ref::<ClientError>() {
            return match client {
                ClientError::Unreachable { .. } => AGENT_UNREACHABLE,
                ClientError::Api(body) => match body.code {
                    ErrorCode::NotFound => NOT_FOUND,
                    ErrorCode::Conflict => CONFLICT,
                    ErrorCode::BadRequest => INVALID,
                    ErrorCode::Unavailable => UNAVAILABLE,
                    ErrorCode::Forbidden => FORBIDDEN,
                    ErrorCode::Internal => FAILURE,
                },
                _ => FAILURE,
            };
        }
        if cause.downcast_ref::<crate::size::SizeError>().is_some()
            || cause.downcast_ref::<edgemig_policy::UnitsError>().is_some()
            || cause
                .downcast_ref::<edgemig_policy::PolicyError>()
                .is_some()
        {
            return INVALID;
        }
    }
    FAILURE
}
