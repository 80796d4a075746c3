//! Pointer and C string checks: every bad input becomes
//! BINANCE_INVALID_ARGUMENT naming the argument. Also the one NUL-byte
//! policy for strings handed to C, and the one way to free a handle.

use crate::engine::Error;
use std::borrow::Cow;
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
    out_opt(p).ok_or_else(|| Error::invalid(format!("{name}: must not be NULL")))
}

/// An optional output pointer: `None` when the caller passed NULL (it does
/// not want the value), otherwise the slot, already set to NULL.
pub(crate) fn out_opt<'a, T>(p: *mut *mut T) -> Option<&'a mut *mut T> {
    // SAFETY: a non-NULL out pointer points to writable storage (contract).
    let slot = unsafe { p.as_mut() }?;
    *slot = std::ptr::null_mut();
    Some(slot)
}

/// What C receives for a NUL byte inside a string: U+FFFD (the replacement
/// character), so the text reads whole and shows where something was. The
/// one policy for every string the library hands to C.
pub(crate) const NUL_REPLACEMENT: &str = "\u{fffd}";

/// `s` as a C string, a NUL inside it replaced by [`NUL_REPLACEMENT`].
pub(crate) fn c_string_lossy<'a>(s: impl Into<Cow<'a, str>>) -> CString {
    let s = s.into();
    let s = match s.contains('\0') {
        true => Cow::Owned(s.replace('\0', NUL_REPLACEMENT)),
        false => s,
    };
    // No NUL is left in `s`, so this cannot fail.
    CString::new(s.into_owned()).unwrap_or_default()
}

/// A string handed to the caller, who frees it with `binance_string_free`.
pub(crate) fn c_string(s: String) -> *mut c_char {
    c_string_lossy(s).into_raw()
}

/// Frees a handle made with `Box::into_raw`; NULL is ignored, and a panic in
/// its destructor is caught (there is no error channel to report it on).
pub(crate) fn free_box<T>(p: *mut T) {
    if !p.is_null() {
        // SAFETY: `p` came from `Box::into_raw` in this library and is freed
        // once (the contract: "must not be called twice").
        crate::panic::guard_value((), || drop(unsafe { Box::from_raw(p) }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nul_byte_becomes_the_replacement_character() {
        assert_eq!(c_string_lossy("a\0b").to_str().unwrap(), "a\u{fffd}b");
        assert_eq!(c_string_lossy("plain").to_str().unwrap(), "plain");
        let p = c_string("x\0".to_owned());
        // SAFETY: just made by c_string.
        let back = unsafe { CString::from_raw(p) };
        assert_eq!(back.to_str().unwrap(), "x\u{fffd}");
    }

    #[test]
    fn optional_out_pointers_are_nulled_or_skipped() {
        let mut slot: *mut u8 = std::ptr::dangling_mut();
        assert!(out_opt(&mut slot).is_some());
        assert!(slot.is_null());
        assert!(out_opt::<u8>(std::ptr::null_mut()).is_none());
        assert!(out::<u8>(std::ptr::null_mut(), "out_x")
            .unwrap_err()
            .message
            .starts_with("out_x:"));
    }
}
