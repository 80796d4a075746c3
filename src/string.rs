//! Strings handed to the caller.

use std::ffi::{c_char, CString};

/// Frees a string this library returned as `char *` (listenKeys, JSON,
/// values). NULL is accepted and ignored. Must not be called twice for one
/// string. Never pass it memory from elsewhere (a `const char *` the
/// library lent you included), and never free these strings with `free()`:
/// the allocator may differ.
#[no_mangle]
pub extern "C" fn binance_string_free(s: *mut c_char) {
    if !s.is_null() {
        crate::panic::guard_value((), || {
            // SAFETY: `s` came from `CString::into_raw` in this library.
            drop(unsafe { CString::from_raw(s) })
        })
    }
}
