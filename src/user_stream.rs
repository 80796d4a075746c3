//! User data streams.

use crate::client::binance_client;
use crate::engine::stream::{Callback, UserStream};
use crate::engine::Error;
use crate::error::binance_error;
use crate::event::binance_event;
use crate::ffi;
use crate::panic::{guard, guard_value};
use crate::status::binance_status;
use std::ffi::c_void;
use std::time::Duration;

/// An open user data stream: the account's events, in order, with the
/// listenKey kept alive, renewed and the connection replaced for you.
/// `binance_user_stream_next` may be called from any thread;
/// `binance_user_stream_health` too.
pub struct binance_user_stream {
    inner: UserStream,
}

/// A stream's health, filled in by `binance_user_stream_health`.
#[repr(C)]
pub struct binance_stream_health {
    /// 1 while the stream connection is up, 0 while reconnecting.
    pub connected: i32,
    /// The latest keepalive's status (BINANCE_OK, or the error it got); -1
    /// before the first keepalive.
    pub last_keepalive_status: i32,
    /// Connections opened after the first (reconnects and rotations).
    pub reconnects: u64,
    /// Events handed to the application (stream and library events).
    pub events_delivered: u64,
    /// Stream events dropped because the queue was full.
    pub events_dropped: u64,
    /// Events waiting in the queue now.
    pub events_queued: u64,
    /// `binance.stream_gap` events caused by lost connections or keys.
    pub gaps: u64,
    /// Times the listenKey changed.
    pub key_renewals: u64,
    /// When the last stream event arrived, ms since the Unix epoch; 0 if
    /// none yet.
    pub last_event_ms: i64,
    /// How long the current listenKey has been in use, in ms.
    pub key_age_ms: i64,
    /// When the latest keepalive finished, ms since the Unix epoch; 0 if
    /// none yet.
    pub last_keepalive_ms: i64,
}

/// Called with each event, in order, for a stream opened with
/// `binance_user_stream_open_callback`. `ev` is borrowed: valid only during
/// the call (copy what you need; do not free it).
pub type binance_event_callback =
    Option<extern "C" fn(ev: *const binance_event, user_data: *mut c_void)>;

/// Opens the account's user data stream: obtains the listenKey over the
/// client's WebSocket API connection (`userDataStream.start`), connects to
/// `<stream endpoint>/ws/<listenKey>` and starts queueing events. Blocks
/// until connected: up to the connect and request timeouts. Events are then
/// read with `binance_user_stream_next`. The stream keeps the key alive on
/// the configured interval, and on a lost or silent connection, an expired
/// or unknown (-1125) key, or a key that changed, obtains a valid key and
/// reconnects with backoff, delivering `binance.stream_gap` so you know to
/// resynchronise over REST. On success the caller owns `*out_stream`; close
/// it with `binance_user_stream_close` (before or after freeing the client:
/// a stream whose client is freed ends, and its reads return
/// BINANCE_STREAM_CLOSED).
#[no_mangle]
pub extern "C" fn binance_user_stream_open(
    client: *mut binance_client,
    out_stream: *mut *mut binance_user_stream,
    out_err: *mut *mut binance_error,
) -> binance_status {
    guard(out_err, || {
        let out = ffi::out(out_stream, "out_stream")?;
        let client = ffi::obj(client, "client")?;
        let inner = client.inner.call(|c| UserStream::open(c, None))?;
        *out = Box::into_raw(Box::new(binance_user_stream { inner }));
        Ok(())
    })
}

/// Opens a stream like `binance_user_stream_open`, but delivers each event
/// to `callback` instead of `binance_user_stream_next`. The callback runs on
/// one thread the stream owns, never concurrently with itself, in order. It
/// should return promptly: events queue meanwhile, within the queue
/// capacity. It may call any function of the library, blocking ones
/// included (a keepalive, another client's requests) and
/// `binance_user_stream_close` on this very stream (its thread then ends as
/// the callback returns). It must not throw C++ exceptions or longjmp out.
/// `user_data` is passed through untouched.
#[no_mangle]
pub extern "C" fn binance_user_stream_open_callback(
    client: *mut binance_client,
    callback: binance_event_callback,
    user_data: *mut c_void,
    out_stream: *mut *mut binance_user_stream,
    out_err: *mut *mut binance_error,
) -> binance_status {
    guard(out_err, || {
        let out = ffi::out(out_stream, "out_stream")?;
        let client = ffi::obj(client, "client")?;
        let cb = callback.ok_or_else(|| Error::invalid("callback: must not be NULL"))?;
        let user_data = UserData(user_data);
        let callback: Callback = Box::new(move |ev| {
            let user_data = &user_data;
            let ev = binance_event::new(ev);
            cb(&ev, user_data.0);
        });
        let inner = client.inner.call(|c| UserStream::open(c, Some(callback)))?;
        *out = Box::into_raw(Box::new(binance_user_stream { inner }));
        Ok(())
    })
}

/// The caller's pointer, handed back to its callback on the stream's thread.
struct UserData(*mut c_void);
// SAFETY: the library never dereferences it; the caller chose to receive it
// on the callback thread, as documented.
unsafe impl Send for UserData {}

/// Waits up to `timeout_ms` for the next event. BINANCE_OK with
/// `*out_event` set (caller owns it; free with `binance_event_free`);
/// BINANCE_TIMEOUT when nothing arrived in time (0 polls);
/// BINANCE_STREAM_CLOSED once the stream is closed (a thread blocked here
/// when another closes the stream wakes with it) or ended because its client
/// was freed. Thread-safe.
#[no_mangle]
pub extern "C" fn binance_user_stream_next(
    stream: *mut binance_user_stream,
    timeout_ms: u32,
    out_event: *mut *mut binance_event,
    out_err: *mut *mut binance_error,
) -> binance_status {
    guard(out_err, || {
        let out = ffi::out(out_event, "out_event")?;
        let stream = ffi::obj(stream, "stream")?;
        match stream
            .inner
            .next(Duration::from_millis(timeout_ms.into()))?
        {
            Some(ev) => {
                *out = Box::into_raw(Box::new(binance_event::new(ev)));
                Ok(())
            }
            None => Err(Error::timeout(format!("no event within {timeout_ms} ms"))),
        }
    })
}

/// Fills `*out_health` with a snapshot of the stream's health. Does not
/// block. Thread-safe.
#[no_mangle]
pub extern "C" fn binance_user_stream_health(
    stream: *const binance_user_stream,
    out_health: *mut binance_stream_health,
    out_err: *mut *mut binance_error,
) -> binance_status {
    guard(out_err, || {
        // SAFETY: a non-NULL out pointer points to writable storage.
        let out = unsafe { out_health.as_mut() }
            .ok_or_else(|| Error::invalid("out_health: must not be NULL"))?;
        let h = ffi::obj(stream, "stream")?.inner.health();
        *out = binance_stream_health {
            connected: i32::from(h.connected),
            last_keepalive_status: h.last_keepalive_status,
            reconnects: h.reconnects,
            events_delivered: h.events_delivered,
            events_dropped: h.events_dropped,
            events_queued: h.events_queued,
            gaps: h.gaps,
            key_renewals: h.key_renewals,
            last_event_ms: h.last_event_ms,
            key_age_ms: h.key_age_ms,
            last_keepalive_ms: h.last_keepalive_ms,
        };
        Ok(())
    })
}

/// Closes the stream and frees it. NULL is accepted. Returns promptly:
/// threads blocked in `binance_user_stream_next` wake with
/// BINANCE_STREAM_CLOSED and this waits for them to leave; the stream's
/// connection, timers and callback thread are gone when it returns (if
/// called from the stream's own callback, its thread ends as the callback
/// returns). Events still queued are discarded. The listenKey is not
/// stopped: it belongs to the account and other streams or processes may
/// use it; call `binance_listen_key_stop` for that. Using the stream after
/// this has begun, other than threads already blocked in next, is
/// undefined behaviour.
#[no_mangle]
pub extern "C" fn binance_user_stream_close(stream: *mut binance_user_stream) {
    if !stream.is_null() {
        guard_value((), || {
            // SAFETY: `stream` came from an open function; `close` waits for
            // calls in flight before the drop.
            let s = unsafe { &*stream };
            s.inner.close();
            drop(unsafe { Box::from_raw(stream) });
        })
    }
}
