//! User data streams.

use crate::client::binance_client;
use crate::engine::stream::{Callback, Health, UserStream};
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
/// `binance_user_stream_next`, `binance_user_stream_try_next`,
/// `binance_user_stream_fd`, `binance_user_stream_health` and
/// `binance_user_stream_shutdown` may be called from any thread at once.
/// `binance_user_stream_close` is its destructor (the contract names it
/// `_close`): it must be the last call on the stream, on every thread.
///
/// Functions: `binance_user_stream_open`,
/// `binance_user_stream_open_callback`, `binance_user_stream_next`,
/// `binance_user_stream_try_next`, `binance_user_stream_fd`,
/// `binance_user_stream_health`, `binance_user_stream_shutdown`,
/// `binance_user_stream_close`.
pub struct binance_user_stream {
    inner: UserStream,
}

/// A stream's health, filled in by `binance_user_stream_health`.
///
/// Extensible: later versions append fields, never reorder or remove them.
/// Zero it and set `size` to `sizeof(binance_stream_health)` before the
/// call (`binance_stream_health h; memset(&h, 0, sizeof h); h.size =
/// sizeof h;`); the library fills only the
/// fields that fit in `size` bytes and that it knows, and leaves the rest
/// as the caller set them, so a program built against a newer header than
/// the library it runs with sees its newer fields untouched (zero-initialise
/// the struct to read them as 0).
#[repr(C)]
pub struct binance_stream_health {
    /// Set by the caller: `sizeof(binance_stream_health)` as it compiled
    /// it. The library does not change it.
    pub size: u32,
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
    /// When the server last pinged the stream's connection, ms since the
    /// Unix epoch; 0 if not yet (Binance pings every 3 minutes).
    pub last_server_ping_ms: i64,
    /// The stream connection this stream is on: an id shared by every
    /// stream on the same connection; 0 while it has none.
    pub connection_id: u64,
    /// Streams on that connection, this one included (see
    /// `binance_config_set_connection_sharing`); 0 while it has none.
    pub connection_streams: u64,
    /// 1 once the server acknowledged the current listenKey's
    /// subscription (on the query form: once its connection is up), 0
    /// while subscribing or reconnecting.
    pub subscribed: i32,
    /// 1 while the stream's account snapshot (account resync) waits for
    /// its turn in the request budget's queue (see
    /// `binance_config_set_snapshot_budget_percent`), 0 otherwise.
    pub snapshot_waiting: i32,
    /// Roughly when that snapshot runs, ms since the Unix epoch; 0 when
    /// none waits.
    pub snapshot_eta_ms: i64,
}

/// Called with each event, in order, for a stream opened with
/// `binance_user_stream_open_callback`. `ev` is borrowed: valid only during
/// the call (copy what you need; do not free it).
pub type binance_event_callback =
    Option<extern "C" fn(ev: *const binance_event, user_data: *mut c_void)>;

/// Opens the account's user data stream: obtains the listenKey over the
/// client's WebSocket API connection (`userDataStream.start`), subscribes
/// it on a stream connection (see `binance_config_set_stream_form`; by
/// default `SUBSCRIBE` on `<stream endpoint>/stream`, sharing a connection
/// with streams of clients configured alike) and starts queueing events.
/// Blocks until the server acknowledged the subscription: up to the connect
/// and request timeouts (with
/// `binance_config_set_open_waits_for_subscription(cfg, 0, &err)`, only
/// until the listenKey is obtained and the subscription sent; then
/// `binance.stream_subscribed` says when it is live). BINANCE_API_ERROR if the stream server refused the
/// subscription (its code kept), BINANCE_TIMEOUT if it did not answer.
/// Events are then read with `binance_user_stream_next`. The stream keeps
/// the key alive on the configured interval; on a lost or silent
/// connection it reconnects with backoff, and on an expired or unknown
/// (-1125) key, or a key that changed, it subscribes a valid key (on the
/// same connection where the form allows), delivering `binance.stream_gap`
/// so you know events may have been lost. On success the caller owns
/// `*out_stream`; close it with `binance_user_stream_close` (before or
/// after freeing the client: a stream whose client is freed ends, and its
/// reads return BINANCE_STREAM_CLOSED). Reads the proxy environment
/// variables when no proxy is set (see the header's Environment
/// paragraph). Thread-safe.
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
/// BINANCE_INVALID_ARGUMENT if `callback` is NULL. `user_data` is handed to
/// every callback untouched and must stay valid until
/// `binance_user_stream_close` returns. Closing the stream from another
/// thread waits for a callback in progress to return, so a callback that
/// waits for the thread closing its stream deadlocks.
/// `binance_user_stream_next` on such a stream returns
/// BINANCE_INVALID_ARGUMENT: its events go to the callback.
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
/// was freed. BINANCE_INVALID_ARGUMENT on a stream opened with a callback.
/// Thread-safe.
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

/// The next event if one is queued, without waiting: BINANCE_OK with
/// `*out_event` set (caller owns it; free with `binance_event_free`);
/// BINANCE_TIMEOUT with `*out_event` NULL when none is queued (as
/// `binance_user_stream_next` with a timeout of 0); BINANCE_STREAM_CLOSED
/// once the stream is closed. BINANCE_INVALID_ARGUMENT on a stream opened
/// with a callback. Made for a host event loop: wait for
/// `binance_user_stream_fd` to be readable, then call this until it
/// returns BINANCE_TIMEOUT. Thread-safe.
#[no_mangle]
pub extern "C" fn binance_user_stream_try_next(
    stream: *mut binance_user_stream,
    out_event: *mut *mut binance_event,
    out_err: *mut *mut binance_error,
) -> binance_status {
    guard(out_err, || {
        let out = ffi::out(out_event, "out_event")?;
        let stream = ffi::obj(stream, "stream")?;
        match stream.inner.try_next()? {
            Some(ev) => {
                *out = Box::into_raw(Box::new(binance_event::new(ev)));
                Ok(())
            }
            None => Err(Error::timeout("no event queued")),
        }
    })
}

/// Sets `*out_fd` to a descriptor a host event loop (poll, epoll, kqueue,
/// select, libuv, asyncio's add_reader) waits on for readability: readable
/// exactly while an event is queued, so a level-triggered wait loses no
/// wake-up. Read events with `binance_user_stream_try_next` until it
/// returns BINANCE_TIMEOUT; the descriptor is lowered as the last queued
/// event is taken (a rare wake-up may find nothing: try_next then returns
/// BINANCE_TIMEOUT). It becomes readable, for good, when the stream is shut
/// down or its client freed: try_next then returns BINANCE_STREAM_CLOSED.
/// On Unix a file descriptor (one end of a socket pair); on Windows a
/// SOCKET (one end of a loopback TCP pair), for select/WSAPoll. The
/// stream owns it: do not read from, write to or close it; it stays open
/// until `binance_user_stream_close`, which closes it (remove it from your
/// loop first). Every call returns the same descriptor. Do not mix with a
/// thread blocked in `binance_user_stream_next` on the same stream: events
/// go to whichever reads first. BINANCE_INVALID_ARGUMENT on a stream opened
/// with a callback; BINANCE_STREAM_CLOSED after shutdown;
/// BINANCE_INTERNAL_ERROR if the system refused to make the socket pair
/// (on any failure `*out_fd` is -1). Does not block. Thread-safe.
#[no_mangle]
pub extern "C" fn binance_user_stream_fd(
    stream: *mut binance_user_stream,
    out_fd: *mut i64,
    out_err: *mut *mut binance_error,
) -> binance_status {
    guard(out_err, || {
        let out = ffi::obj_mut(out_fd, "out_fd")?;
        *out = -1;
        let stream = ffi::obj(stream, "stream")?;
        *out = stream.inner.fd()?;
        Ok(())
    })
}

/// Fills `*out_health` with a snapshot of the stream's health: the fields
/// that fit in `out_health->size` bytes, which the caller sets first (see
/// `binance_stream_health`). BINANCE_INVALID_ARGUMENT if `out_health` is
/// NULL or its `size` is smaller than the first two fields; on failure
/// `*out_health` is left untouched. Does not block. Thread-safe.
#[no_mangle]
pub extern "C" fn binance_user_stream_health(
    stream: *const binance_user_stream,
    out_health: *mut binance_stream_health,
    out_err: *mut *mut binance_error,
) -> binance_status {
    guard(out_err, || {
        let out = ffi::obj_mut(out_health, "out_health")?;
        let size = out.size as usize;
        if size < MIN_HEALTH_SIZE {
            return Err(Error::invalid(format!(
                "out_health->size: {size} is too small; set it to sizeof(binance_stream_health) ({})",
                std::mem::size_of::<binance_stream_health>()
            )));
        }
        let mut h = binance_stream_health::from(ffi::obj(stream, "stream")?.inner.health());
        h.size = out.size;
        let n = size.min(std::mem::size_of::<binance_stream_health>());
        // SAFETY: `out` has at least `size` writable bytes (the caller says
        // so), `h` has at least `n`, and they do not overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(
                (&h as *const binance_stream_health).cast::<u8>(),
                (out as *mut binance_stream_health).cast::<u8>(),
                n,
            )
        };
        Ok(())
    })
}

/// `size` and `connected`: a caller that knows less than this knows nothing.
const MIN_HEALTH_SIZE: usize = 8;

impl From<Health> for binance_stream_health {
    fn from(h: Health) -> Self {
        binance_stream_health {
            size: std::mem::size_of::<binance_stream_health>() as u32,
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
            last_server_ping_ms: h.last_server_ping_ms,
            connection_id: h.connection_id,
            connection_streams: h.connection_streams,
            subscribed: i32::from(h.subscribed),
            snapshot_waiting: i32::from(h.snapshot_waiting),
            snapshot_eta_ms: h.snapshot_eta_ms,
        }
    }
}

/// Ends the stream without freeing it: every thread blocked in
/// `binance_user_stream_next` wakes with BINANCE_STREAM_CLOSED, every later
/// `next` returns BINANCE_STREAM_CLOSED at once, a callback stream makes no
/// further callbacks once the one in progress (if any) returns, and the
/// stream's connection is closed. Events still queued are discarded. Does
/// not block, and is safe to call from any thread at any time before
/// `binance_user_stream_close`, concurrently with `next`, from a callback,
/// and more than once. NULL is accepted and ignored. This is how a program
/// stops its reader threads: shut down, join them, then close.
#[no_mangle]
pub extern "C" fn binance_user_stream_shutdown(stream: *const binance_user_stream) {
    // SAFETY: NULL or a stream from this library that is not yet closed.
    if let Some(s) = unsafe { stream.as_ref() } {
        guard_value((), || s.inner.shutdown())
    }
}

/// Closes the stream and frees it: the stream's destructor. NULL is accepted. Returns promptly:
/// threads blocked in `binance_user_stream_next` wake with
/// BINANCE_STREAM_CLOSED and this waits for them to leave; the stream's
/// connection, timers and callback thread are gone when it returns (if
/// called from the stream's own callback, its thread ends as the callback
/// returns). Events still queued are discarded. The listenKey is not
/// stopped: it belongs to the account and other streams or processes may
/// use it; call `binance_listen_key_stop` for that. Using the stream after
/// this has begun, other than threads already blocked in next, is
/// undefined behaviour: a program with reader threads calls
/// `binance_user_stream_shutdown`, joins them, then closes. Must not be
/// called twice.
#[no_mangle]
pub extern "C" fn binance_user_stream_close(stream: *mut binance_user_stream) {
    if !stream.is_null() {
        // SAFETY: `stream` came from an open function; `close` waits for
        // calls in flight before the free.
        guard_value((), || unsafe { &*stream }.inner.close());
        ffi::free_box(stream);
    }
}
