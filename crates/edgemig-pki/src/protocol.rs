//! The agent-to-agent wire conventions shared by client and server.

use serde::{Deserialize, Serialize};

/// Header carrying the peer protocol version on every request.
pub const PROTOCOL_HEADER: &str = "x-edgemig-protocol";
/// The major peer protocol version this build speaks.
///
/// * 1: the first version.
/// * 2: base images (digest and layer sizes in the incoming VM, whether the
///   destination holds the base), the follow state travelling with a VM,
///   the destination's address for the guest's NIC plan, `POST
///   /v1/peer/probe`.
/// * 3: migrations have an id and live under `/v1/peer/migrations/{id}`
///   (prepare, status, commit, abort, tunnel close; each checked against
///   the site that prepared the migration); the fenced commit; VMs with a
///   root disk and firmware; image pushes (`/v1/peer/images/{digest}`).
pub const PROTOCOL_VERSION: u32 = 3;

/// The JSON body of every non-2xx answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Machine readable, e.g. `bad_request`, `not_found`.
    pub code: String,
    /// Human readable, starts with a capital letter.
    pub message: String,
}

/// The major version of a protocol header value (`"1"`, `"1.3"`).
pub fn major_version(value: &str) -> Option<u32> {
    value.trim().split('.').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn major_versions() {
        assert_eq!(major_version("1"), Some(1));
        assert_eq!(major_version(" 1.7 "), Some(1));
        assert_eq!(major_version("2.0"), Some(2));
        assert_eq!(major_version(""), None);
        assert_eq!(major_version("one"), None);
    }
}
