//! Events from a user data stream.

use crate::engine::event::{Event, PointerError};
use crate::engine::Error;
use crate::error::binance_error;
use crate::ffi;
use crate::panic::guard;
use crate::status::binance_status;
use std::ffi::{c_char, CStr, CString};
use std::sync::OnceLock;

/// One event: a user data event exactly as Binance sent it
/// (ORDER_TRADE_UPDATE, ACCOUNT_UPDATE, ..., listenKeyExpired, or a type
/// this version does not know), or a library event whose type starts with
/// "binance." (`binance.stream_gap`, `binance.listen_key_renewed`,
/// `binance.stream_disconnected`). Immutable: may be read from any thread.
/// Tell the two kinds apart with `binance_event_is_library`.
///
/// Functions: `binance_event_type`, `binance_event_is_library`,
/// `binance_event_time_ms`, `binance_event_json`, `binance_event_get`,
/// `binance_event_free`.
pub struct binance_event {
    inner: Event,
    kind: CString,
    /// For the rare text with a NUL of its own: a copy under ffi's NUL
    /// policy, made on first use.
    json_copy: OnceLock<CString>,
}

impl binance_event {
    pub(crate) fn new(inner: Event) -> binance_event {
        // A type comes from a JSON string, where a NUL can only be escaped.
        let kind = ffi::c_string_lossy(inner.kind());
        binance_event {
            inner,
            kind,
            json_copy: OnceLock::new(),
        }
    }

    fn json(&self) -> &CStr {
        match self.inner.c_json() {
            Some(borrowed) => borrowed,
            None => self
                .json_copy
                .get_or_init(|| ffi::c_string_lossy(self.inner.json())),
        }
    }
}

impl From<PointerError> for Error {
    fn from(e: PointerError) -> Error {
        Error::invalid(format!("json_pointer: {e}"))
    }
}

/// The event's type: its "e" field (e.g. "ORDER_TRADE_UPDATE"), a library
/// event's type (e.g. "binance.stream_gap"), "binance.unparsed" for a
/// message that is not a JSON object, or "" when it has no "e". Borrowed:
/// valid until `ev` is freed. A static "" for NULL.
#[no_mangle]
pub extern "C" fn binance_event_type(ev: *const binance_event) -> *const c_char {
    // SAFETY: NULL or an event from this library (contract).
    unsafe { ev.as_ref() }.map_or(c"".as_ptr(), |e| e.kind.as_ptr())
}

/// 1 if the library made this event (`binance.stream_gap`,
/// `binance.listen_key_renewed`, ...), 0 if it came from the server (every
/// Binance event, and `binance.unparsed`: a server message that was not a
/// JSON object). Decide with this, never from the type's "binance."
/// prefix: a server can send any "e". 0 for NULL.
#[no_mangle]
pub extern "C" fn binance_event_is_library(ev: *const binance_event) -> i32 {
    // SAFETY: NULL or an event from this library (contract).
    unsafe { ev.as_ref() }.map_or(0, |e| i32::from(e.inner.is_library()))
}

/// The event time "E" in ms since the Unix epoch (Binance sends it as a
/// number or a string: both are read); 0 when absent, or for NULL.
#[no_mangle]
pub extern "C" fn binance_event_time_ms(ev: *const binance_event) -> i64 {
    // SAFETY: as above.
    unsafe { ev.as_ref() }.map_or(0, |e| e.inner.time_ms())
}

/// The event's JSON exactly as received (for library events, as made by
/// the library), with one exception: a NUL byte in the received text
/// (which valid JSON cannot hold) comes out as U+FFFD, so the string reads
/// whole. Borrowed: valid until `ev` is freed. A static "" for NULL.
#[no_mangle]
pub extern "C" fn binance_event_json(ev: *const binance_event) -> *const c_char {
    // SAFETY: as above.
    let ev = unsafe { ev.as_ref() };
    // Inside the guard: the rare text with a NUL is copied on first use.
    crate::panic::guard_value(c"".as_ptr(), || {
        ev.map_or(c"".as_ptr(), |e| e.json().as_ptr())
    })
}

/// The value at an RFC 6901 JSON pointer in the event, e.g. "/o/X" (order
/// status) or "/a/B/0/wb". Strings come unquoted, numbers, booleans and
/// null as their JSON text, objects and arrays as JSON. "" is the whole
/// event. BINANCE_INVALID_ARGUMENT if the pointer is malformed (it must be
/// empty or start with '/') or the event has no such value. Caller owns
/// `*out_value`; free it with `binance_string_free`.
#[no_mangle]
pub extern "C" fn binance_event_get(
    ev: *const binance_event,
    json_pointer: *const c_char,
    out_value: *mut *mut c_char,
    out_err: *mut *mut binance_error,
) -> binance_status {
    guard(out_err, || {
        let out = ffi::out(out_value, "out_value")?;
        let ev = ffi::obj(ev, "ev")?;
        let pointer = ffi::str_arg(json_pointer, "json_pointer")?;
        *out = ffi::c_string(ev.inner.lookup(pointer)?);
        Ok(())
    })
}

/// Frees an event. NULL is accepted and ignored. Must not be called twice;
/// strings borrowed from it (type, JSON) die with it.
#[no_mangle]
pub extern "C" fn binance_event_free(ev: *mut binance_event) {
    ffi::free_box(ev)
}
