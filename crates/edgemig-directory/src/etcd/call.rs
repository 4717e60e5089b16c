//! One etcd request with a deadline, and the mapping of client errors to
//! [`DirectoryError`] (unreachable cluster = `Unavailable`).

use std::future::Future;
use std::time::Duration;

use etcd_client::{Client, Error};
use tonic::Code;

use crate::error::DirectoryError;

/// True when `e` means "etcd could not be reached or could not decide".
pub(crate) fn is_unavailable(e: &Error) -> bool {
    match e {
        Error::TransportError(_) | Error::IoError(_) => true,
        Error::GRpcStatus(s) => matches!(
            s.code(),
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown
        ),
        _ => false,
    }
}

/// Maps a client error.
pub(crate) fn classify(endpoints: &str, operation: &'static str, e: Error) -> DirectoryError {
    if is_unavailable(&e) {
        DirectoryError::Unavailable {
            endpoints: endpoints.to_owned(),
            operation,
            source: Some(e),
        }
    } else {
        DirectoryError::Etcd {
            operation,
            source: e,
        }
    }
}

/// Runs `f` on a clone of `client`, giving up after `deadline`.
pub(crate) async fn call<T, F, Fut>(
    client: &Client,
    endpoints: &str,
    deadline: Duration,
    operation: &'static str,
    f: F,
) -> Result<T, DirectoryError>
where
    F: FnOnce(Client) -> Fut,
    Fut: Future<Output = Result<T, Error>>,
{
    match tokio::time::timeout(deadline, f(client.clone())).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(classify(endpoints, operation, e)),
        Err(_elapsed) => Err(DirectoryError::Unavailable {
            endpoints: endpoints.to_owned(),
            operation,
            source: None,
        }),
    }
}
