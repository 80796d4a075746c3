//! Error objects: what failed, with Binance's code and status when it
//! answered.

use crate::engine::Error;
use crate::status::{binance_status, BINANCE_INVALID_ARGUMENT};
use std::ffi::{c_char, CString};

/// An error. Created by the library in `*out_err` when a call fails; the
/// caller frees it with `binance_error_free`. Immutable, so it may be read
/// from any thread.
///
/// Functions: `binance_error_status`, `binance_error_api_code`,
/// `binance_error_http_status`, `binance_error_retry_after_ms`,
/// `binance_error_message`, `binance_error_free`.
pub struct binance_error {
    status: binance_status,
    api_code: i64,
    http_status: i32,
    retry_after_ms: i64,
    message: CString,
}

impl binance_error {
    pub(crate) fn into_raw(e: Error) -> *mut binance_error {
        let message = crate::ffi::c_string_lossy(e.message);
        Box::into_raw(Box::new(binance_error {
            status: e.status as binance_status,
            api_code: e.api_code,
            http_status: e.http_status,
            retry_after_ms: e.retry_after_ms,
            message,
        }))
    }
}

/// The status of the failed call. BINANCE_INVALID_ARGUMENT for NULL.
#[no_mangle]
pub extern "C" fn binance_error_status(err: *const binance_error) -> binance_status {
    // SAFETY: NULL or an error from this library (contract).
    unsafe { err.as_ref() }.map_or(BINANCE_INVALID_ARGUMENT, |e| e.status)
}

/// Binance's error "code" (e.g. -1125 for an unknown listenKey, -2015 for a
/// rejected API key); 0 when the server sent none, or for NULL.
#[no_mangle]
pub extern "C" fn binance_error_api_code(err: *const binance_error) -> i64 {
    // SAFETY: as above.
    unsafe { err.as_ref() }.map_or(0, |e| e.api_code)
}

/// The answer's "status" (e.g. 400, 401, 429); 0 when there was no answer,
/// or for NULL.
#[no_mangle]
pub extern "C" fn binance_error_http_status(err: *const binance_error) -> i32 {
    // SAFETY: as above.
    unsafe { err.as_ref() }.map_or(0, |e| e.http_status)
}

/// For BINANCE_RATE_LIMITED: the time (ms since the Unix epoch) the server
/// said to wait until before retrying (`error.data.retryAfter`); 0 when it
/// did not say, or for NULL.
#[no_mangle]
pub extern "C" fn binance_error_retry_after_ms(err: *const binance_error) -> i64 {
    // SAFETY: as above.
    unsafe { err.as_ref() }.map_or(0, |e| e.retry_after_ms)
}

/// A message for humans naming what went wrong. Never NULL; never contains
/// the API key. Borrowed: valid until `err` is freed. For NULL, a static
/// empty string.
#[no_mangle]
pub extern "C" fn binance_error_message(err: *const binance_error) -> *const c_char {
    // SAFETY: as above.
    unsafe { err.as_ref() }.map_or(c"".as_ptr(), |e| e.message.as_ptr())
}

/// Frees an error. NULL is accepted and ignored. Must not be called twice;
/// strings borrowed from it (`binance_error_message`) die with it.
#[no_mangle]
pub extern "C" fn binance_error_free(err: *mut binance_error) {
    crate::ffi::free_box(err)
}
