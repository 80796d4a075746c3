//! Pointer and C string checks: every bad input becomes
//! BINANCE_INVALID_ARGUMENT naming the argument.

use crate::engine::Error;
use std::ffi::{c_char, CStr, CString};

/// Borrows a NUL-terminated UTF-8 string argument.
pub(crate) fn str_arg<'a>(p: *const c_char, name: &str) -> Result<&'a str, Error> {
    if p.is_null() {
        return Err(Error::invalid(format!("{name}: must not be NULL")));
    }
    // SAFETY: non-NULL and, by the contract, NUL-terminated and alive for the call.
    let s = unsafe { CStr::from_ptr(p) };
    s.to_str()
        .map_err(|_| Error::invalid(format!("{name}: not valid UTF-8")))
}

/// Borrows the object behind a handle argument.
pub(crate) fn obj<'a, T>(p: *const T, name: &str) -> Result<&'a T, Error> {
    // SAFETY: a non-NULL handle came from this library and is alive (contract).
    unsafe { p.as_ref() }.ok_or_else(|| Error::invalid(format!("{name}: must not be NULL")))
}

/// Mutably borrows the object behind a handle argument.
pub(crate) fn obj_mut<'a, T>(p: *mut T, name: &str) -> Result<&'a mut T, Error> {
    // SAFETY: as for `obj`; the caller does not share it during the call.
    unsafe { p.as_mut() }.ok_or_else(|| Error::invalid(format!("{name}: must not be NULL")))
}

/// Checks an output pointer and sets `*p` to NULL, so the caller can free it
/// blindly whatever happens next.
pub(crate) fn out<'a, T>(p: *mut *mut T, name: &str) -> Result<&'a mut *mut T, Error> {
    // SAFETY: a non-NULL out pointer points to writable storage (contract).
    let slot =
        unsafe { p.as_mut() }.ok_or_else(|| Error::invalid(format!("{name}: must not be NULL")))?;
    *slot = std::ptr::null_mut();
    Ok(slot)
}

/// A string handed to the caller, who frees it with `binance_string_free`.
pub(crate) fn c_string(s: String) -> Result<*mut c_char, Error> {
    CString::new(s)
        .map(CString::into_raw)
        .map_err(|_| Error::protocol("the server sent a string with a NUL byte"))
}
