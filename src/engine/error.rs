//! The library's error: a status, a message for humans, and what Binance said.

use std::ffi::CStr;
use std::fmt;

/// What went wrong, as the C API reports it. The numeric values are the ABI
/// values of `binance_status` and never change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum Status {
    Ok = 0,
    InvalidArgument = 1,
    ConnectFailed = 2,
    TlsFailed = 3,
    Timeout = 4,
    ConnectionClosed = 5,
    ProtocolError = 6,
    ApiError = 7,
    RateLimited = 8,
    InternalError = 9,
    StreamClosed = 10,
}

impl Status {
    pub const ALL: [Status; 11] = [
        Status::Ok,
        Status::InvalidArgument,
        Status::ConnectFailed,
        Status::TlsFailed,
        Status::Timeout,
        Status::ConnectionClosed,
        Status::ProtocolError,
        Status::ApiError,
        Status::RateLimited,
        Status::InternalError,
        Status::StreamClosed,
    ];

    /// The C constant's name, e.g. "BINANCE_TIMEOUT".
    pub fn name(self) -> &'static str {
        // ASCII by construction, so never the fallback.
        self.name_cstr()
            .to_str()
            .unwrap_or("BINANCE_UNKNOWN_STATUS")
    }

    /// [`Status::name`] NUL-terminated, for `binance_status_str`: the one
    /// table of names.
    pub fn name_cstr(self) -> &'static CStr {
        match self {
            Status::Ok => c"BINANCE_OK",
            Status::InvalidArgument => c"BINANCE_INVALID_ARGUMENT",
            Status::ConnectFailed => c"BINANCE_CONNECT_FAILED",
            Status::TlsFailed => c"BINANCE_TLS_FAILED",
            Status::Timeout => c"BINANCE_TIMEOUT",
            Status::ConnectionClosed => c"BINANCE_CONNECTION_CLOSED",
            Status::ProtocolError => c"BINANCE_PROTOCOL_ERROR",
            Status::ApiError => c"BINANCE_API_ERROR",
            Status::RateLimited => c"BINANCE_RATE_LIMITED",
            Status::InternalError => c"BINANCE_INTERNAL_ERROR",
            Status::StreamClosed => c"BINANCE_STREAM_CLOSED",
        }
    }

    pub fn from_i32(v: i32) -> Option<Status> {
        Status::ALL.get(usize::try_from(v).ok()?).copied()
    }
}

/// An error with everything the caller may want to act on.
#[derive(Clone, PartialEq, Eq)]
pub struct Error {
    pub status: Status,
    pub message: String,
    /// Binance's `error.code` (e.g. -1125); 0 when the server sent none.
    pub api_code: i64,
    /// The answer's `status` (e.g. 400); 0 when there was no answer.
    pub http_status: i32,
    /// When the server said when to retry (`error.data.retryAfter`, a time in
    /// ms since the epoch); 0 when it did not.
    pub retry_after_ms: i64,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(status: Status, message: impl Into<String>) -> Error {
        Error {
            status,
            message: message.into(),
            api_code: 0,
            http_status: 0,
            retry_after_ms: 0,
        }
    }

    pub fn invalid(message: impl Into<String>) -> Error {
        Error::new(Status::InvalidArgument, message)
    }

    pub fn protocol(message: impl Into<String>) -> Error {
        Error::new(Status::ProtocolError, message)
    }

    pub fn closed(message: impl Into<String>) -> Error {
        Error::new(Status::ConnectionClosed, message)
    }

    pub fn timeout(message: impl Into<String>) -> Error {
        Error::new(Status::Timeout, message)
    }

    pub fn internal(message: impl Into<String>) -> Error {
        Error::new(Status::InternalError, message)
    }

    /// The same error with a context prefix on the message.
    pub fn context(mut self, what: &str) -> Error {
        self.message = format!("{what}: {}", self.message);
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.status.name(), self.message)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("status", &self.status)
            .field("message", &self.message)
            .field("api_code", &self.api_code)
            .field("http_status", &self.http_status)
            .field("retry_after_ms", &self.retry_after_ms)
            .finish()
    }
}

impl std::error::Error for Error {}

/// Binance's two rate-limit answers, one rule for the WebSocket API and
/// REST: 429 (too much request weight) and 418 (the IP banned for going
/// on after 429s). Both become RATE_LIMITED.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RateLimit {
    TooMany,
    Banned,
}

impl RateLimit {
    /// The rate limit an HTTP (or WebSocket API) status reports, if any.
    pub fn from_status(status: i64) -> Option<RateLimit> {
        match status {
            429 => Some(RateLimit::TooMany),
            418 => Some(RateLimit::Banned),
            _ => None,
        }
    }

    /// What it means, for error messages.
    pub fn what(self) -> &'static str {
        match self {
            RateLimit::TooMany => "rate limit exceeded",
            RateLimit::Banned => "IP banned for exceeding rate limits",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_values_are_the_abi() {
        for (i, s) in Status::ALL.iter().enumerate() {
            assert_eq!(*s as i32, i as i32);
            assert_eq!(Status::from_i32(i as i32), Some(*s));
        }
        assert_eq!(Status::from_i32(11), None);
        assert_eq!(Status::from_i32(-1), None);
    }
}
