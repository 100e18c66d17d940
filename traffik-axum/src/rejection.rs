//! [`ThrottleRejection`]: why a throttled extractor or layer did not let a request through.

use std::fmt;

use axum::response::{IntoResponse, Response};
use http::StatusCode;
use traffik_core::{Decision, Error};

use crate::client_ip::ClientIpError;

/// Why a request was not let through. Its response is the throttle's (the default 429
/// with `Retry-After` and `RateLimit` headers, or the custom handler's); extract
/// `Result<Throttled<T>, ThrottleRejection>` to look at it first.
pub struct ThrottleRejection {
    kind: Kind,
}

enum Kind {
    Throttled {
        decision: Decision,
        response: Response,
    },
    UnknownClient(ClientIpError),
    Limiter(Error),
}

impl ThrottleRejection {
    pub(crate) fn throttled(decision: Decision, response: Response) -> Self {
        Self {
            kind: Kind::Throttled { decision, response },
        }
    }

    pub(crate) fn unknown_client(error: ClientIpError) -> Self {
        Self {
            kind: Kind::UnknownClient(error),
        }
    }

    pub(crate) fn limiter(error: Error) -> Self {
        Self {
            kind: Kind::Limiter(error),
        }
    }

    /// The denial, if the request was throttled (rather than failing to be judged).
    pub fn decision(&self) -> Option<&Decision> {
        match &self.kind {
            Kind::Throttled { decision, .. } => Some(decision),
            _ => None,
        }
    }

    /// Whether the request was over its limit.
    pub fn is_throttled(&self) -> bool {
        matches!(self.kind, Kind::Throttled { .. })
    }

    /// The `Retry-After` value in seconds, if throttled.
    pub fn retry_after_secs(&self) -> Option<u64> {
        self.decision().map(Decision::retry_after_secs)
    }

    /// The limiter error, if the request could not be judged.
    pub fn error(&self) -> Option<&Error> {
        match &self.kind {
            Kind::Limiter(error) => Some(error),
            _ => None,
        }
    }
}

impl IntoResponse for ThrottleRejection {
    fn into_response(self) -> Response {
        match self.kind {
            Kind::Throttled { response, .. } => response,
            Kind::UnknownClient(error) => {
                tracing::error!(%error, "cannot identify the client for rate limiting");
                (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response()
            }
            Kind::Limiter(error) => {
                // A backend that failed (unreachable, too slow, closed, circuit open) is a
                // temporary condition: 503. Anything else is a configuration mistake: 500.
                let status = if error.is_backend_failure() {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::INTERNAL_SERVER_ERROR
                };
                tracing::error!(%error, "rate limiter failed");
                (status, format!("rate limiter error: {error}")).into_response()
            }
        }
    }
}

impl fmt::Debug for ThrottleRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Throttled { decision, .. } => f
                .debug_struct("ThrottleRejection::Throttled")
                .field("decision", decision)
                .finish(),
            Kind::UnknownClient(error) => f
                .debug_tuple("ThrottleRejection::UnknownClient")
                .field(error)
                .finish(),
            Kind::Limiter(error) => f
                .debug_tuple("ThrottleRejection::Limiter")
                .field(error)
                .finish(),
        }
    }
}

impl fmt::Display for ThrottleRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Throttled { decision, .. } => write!(
                f,
                "too many requests; retry in {} s",
                decision.retry_after_secs()
            ),
            Kind::UnknownClient(error) => write!(f, "{error}"),
            Kind::Limiter(error) => write!(f, "{error}"),
        }
    }
}

impl std::error::Error for ThrottleRejection {}
