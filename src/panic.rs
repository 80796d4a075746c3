//! The guard every export runs inside: no panic crosses into C.
//!
//! One exception, on purpose: the plain getters (`binance_error_status`,
//! `binance_error_message`, `binance_event_type`, `binance_event_json`,
//! `binance_status_str`, ...) read a field and run outside the guard,
//! because they cannot panic. A getter that does more than read a field
//! (allocates, parses, locks) goes inside `guard` or `guard_value`.

use crate::engine::{Error, Status};
use crate::error::binance_error;
use crate::status::binance_status;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Runs `f`, turns its error (or a panic) into a status, and stores the error
/// object in `*out_err` when `out_err` is not NULL (NULL on success).
pub(crate) fn guard<F>(out_err: *mut *mut binance_error, f: F) -> binance_status
where
    F: FnOnce() -> Result<(), Error>,
{
    if !out_err.is_null() {
        // SAFETY: a non-NULL out_err points to writable storage (the contract).
        unsafe { *out_err = std::ptr::null_mut() };
    }
    let result = catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        let what = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown".into());
        Err(Error::internal(format!(
            "internal error (caught panic: {what})"
        )))
    });
    match result {
        Ok(()) => Status::Ok as binance_status,
        Err(e) => {
            let status = e.status as binance_status;
            if !out_err.is_null() {
                // SAFETY: as above.
                unsafe { *out_err = binance_error::into_raw(e) };
            }
            status
        }
    }
}

/// Runs `f` for exports with no error channel (constructors, `_free`),
/// returning `fallback` if it panics.
pub(crate) fn guard_value<T>(fallback: T, f: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(fallback)
}
