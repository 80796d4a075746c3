//! Status codes and the library version.

use std::ffi::c_char;

/// The result of every fallible call: `BINANCE_OK` (0) or an error status.
/// A fixed-width integer, not a C enum: values are append-only ABI.
///
/// Functions (with those that take no handle): `binance_status_str`,
/// `binance_version`, `binance_string_free`.
pub type binance_status = i32;

/// Success.
pub const BINANCE_OK: binance_status = 0;
/// An argument was NULL, not UTF-8, out of range, or otherwise invalid (bad
/// URL, empty API key, bad PEM, ...). The message names the argument.
pub const BINANCE_INVALID_ARGUMENT: binance_status = 1;
/// DNS, TCP, the proxy, or the WebSocket upgrade failed or was refused.
pub const BINANCE_CONNECT_FAILED: binance_status = 2;
/// The TLS handshake or certificate verification failed.
pub const BINANCE_TLS_FAILED: binance_status = 3;
/// No answer (or no connection) within the configured time.
pub const BINANCE_TIMEOUT: binance_status = 4;
/// The connection closed while the request waited (or the client was freed).
pub const BINANCE_CONNECTION_CLOSED: binance_status = 5;
/// The server's message was not what the API documents; the connection is
/// replaced.
pub const BINANCE_PROTOCOL_ERROR: binance_status = 6;
/// The server answered with an error object: see `binance_error_api_code`,
/// `binance_error_http_status` and `binance_error_message`.
pub const BINANCE_API_ERROR: binance_status = 7;
/// The server answered 429 (request weight exceeded) or 418 (IP banned); see
/// `binance_error_retry_after_ms`.
pub const BINANCE_RATE_LIMITED: binance_status = 8;
/// A bug in the library (a caught panic). Please report it.
pub const BINANCE_INTERNAL_ERROR: binance_status = 9;
/// The user data stream was closed.
pub const BINANCE_STREAM_CLOSED: binance_status = 10;

/// The name of a status, e.g. "BINANCE_TIMEOUT"; "BINANCE_UNKNOWN_STATUS"
/// for a value this version does not know. Static: never free it.
#[no_mangle]
pub extern "C" fn binance_status_str(s: binance_status) -> *const c_char {
    match crate::engine::Status::from_i32(s) {
        Some(status) => status.name_cstr().as_ptr(),
        None => c"BINANCE_UNKNOWN_STATUS".as_ptr(),
    }
}

/// The library version, e.g. "0.1.0" (equal to the BINANCE_VERSION_*
/// defines of the header it was built with). Static: never free it.
#[no_mangle]
pub extern "C" fn binance_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Status;
    use std::ffi::CStr;

    #[test]
    fn abi_values_are_pinned() {
        let table = [
            (BINANCE_OK, 0),
            (BINANCE_INVALID_ARGUMENT, 1),
            (BINANCE_CONNECT_FAILED, 2),
            (BINANCE_TLS_FAILED, 3),
            (BINANCE_TIMEOUT, 4),
            (BINANCE_CONNECTION_CLOSED, 5),
            (BINANCE_PROTOCOL_ERROR, 6),
            (BINANCE_API_ERROR, 7),
            (BINANCE_RATE_LIMITED, 8),
            (BINANCE_INTERNAL_ERROR, 9),
            (BINANCE_STREAM_CLOSED, 10),
        ];
        for (i, (c, v)) in table.iter().enumerate() {
            assert_eq!(*c, *v);
            assert_eq!(Status::ALL[i] as i32, *v);
            let name = unsafe { CStr::from_ptr(binance_status_str(*c)) };
            assert_eq!(name.to_str().unwrap(), Status::ALL[i].name());
        }
        let unknown = unsafe { CStr::from_ptr(binance_status_str(99)) };
        assert_eq!(unknown.to_str().unwrap(), "BINANCE_UNKNOWN_STATUS");
    }

    #[test]
    fn version_is_the_crate_version() {
        let v = unsafe { CStr::from_ptr(binance_version()) };
        assert_eq!(v.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
    }
}
