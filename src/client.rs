//! Clients: one WebSocket API session each.

use crate::config::binance_config;
use crate::engine::Client;
use crate::error::binance_error;
use crate::ffi;
use crate::panic::guard;
use crate::status::binance_status;
use std::ffi::c_char;

/// A client: one persistent WebSocket API connection for one API key,
/// opened on first use and reopened transparently after the server or the
/// network drops it. Safe to use from several threads at once: concurrent
/// requests share the connection and each gets its own answer.
///
/// Functions: `binance_client_new`, `binance_client_free`,
/// `binance_client_rate_limits_json`, `binance_client_request_budget_json`,
/// `binance_client_account_snapshot` (signed REST), and the account's
/// listenKey by hand:
/// `binance_listen_key_start`, `binance_listen_key_keepalive`,
/// `binance_listen_key_stop` (a user stream does all of that for you). A
/// client opens user streams: see `binance_user_stream`.
pub struct binance_client {
    pub(crate) inner: Client,
}

/// Creates a client from `cfg` (copied: `cfg` may be freed or changed after).
/// Does not connect; the first request does. BINANCE_INVALID_ARGUMENT if
/// `cfg` has no API key. Reads the proxy environment variables when no
/// proxy is set (see the header's Environment paragraph); the first client
/// of the process starts the shared I/O threads. On success `*out_client`
/// owns the client; free it with `binance_client_free`. On failure
/// `*out_client` is NULL. Thread-safe (several threads may make clients
/// from one config).
#[no_mangle]
pub extern "C" fn binance_client_new(
    cfg: *const binance_config,
    out_client: *mut *mut binance_client,
    out_err: *mut *mut binance_error,
) -> binance_status {
    guard(out_err, || {
        let out = ffi::out(out_client, "out_client")?;
        let cfg = ffi::obj(cfg, "cfg")?;
        let inner = Client::new(&cfg.inner)?;
        *out = Box::into_raw(Box::new(binance_client { inner }));
        Ok(())
    })
}

/// The `rateLimits` array of the latest answer that carried one, as JSON
/// text (e.g. `[{"rateLimitType":"REQUEST_WEIGHT","interval":"MINUTE",
/// "intervalNum":1,"limit":2400,"count":2}]`); `[]` before any. Does not
/// block. Thread-safe. Caller owns `*out_json`; free it with
/// `binance_string_free`.
#[no_mangle]
pub extern "C" fn binance_client_rate_limits_json(
    client: *const binance_client,
    out_json: *mut *mut c_char,
    out_err: *mut *mut binance_error,
) -> binance_status {
    guard(out_err, || {
        let out = ffi::out(out_json, "out_json")?;
        let client = ffi::obj(client, "client")?;
        *out = ffi::c_string(client.inner.rate_limits());
        Ok(())
    })
}

/// The request budget the client draws on, shared by every client of the
/// process that connects to the same server (Binance: every host under
/// binance.com) from the same source address, as a JSON object:
/// `{"source_address":null,"site":"binance.com","limit":2400,
/// "window_ms":60000,"used":93,"snapshot_used":90,"snapshots_waiting":12,
/// "paused_until_ms":0,"refused":0,"rate_limited":0}`. `used`: request
/// weight used in the server's current window (what this process sent, or
/// what the server reported if more); `limit` and `window_ms` as the server
/// last reported them (Binance's 2400 a minute before any report; a limit
/// of 0 means the server reported none, and nothing is refused for want
/// of room);
/// `snapshot_used`: of which account resync snapshots; `snapshots_waiting`:
/// snapshots of any stream waiting for their turn; `paused_until_ms`:
/// after a 429 or 418, nothing is sent before this time (ms since the
/// epoch), 0 when not paused; `refused`: requests not sent because the
/// budget had no room (they failed with BINANCE_RATE_LIMITED, HTTP status
/// 0); `rate_limited`: 429 and 418 answers received. Does not block.
/// Thread-safe. Caller owns `*out_json`; free it with `binance_string_free`.
#[no_mangle]
pub extern "C" fn binance_client_request_budget_json(
    client: *const binance_client,
    out_json: *mut *mut c_char,
    out_err: *mut *mut binance_error,
) -> binance_status {
    guard(out_err, || {
        let out = ffi::out(out_json, "out_json")?;
        let client = ffi::obj(client, "client")?;
        *out = ffi::c_string(client.inner.budget().view().to_json().to_string());
        Ok(())
    })
}

/// Frees a client: closes its connection and stops its background work. NULL
/// is accepted. Requests still in flight on other threads fail at once with
/// BINANCE_CONNECTION_CLOSED, and this call waits until they have returned,
/// then releases everything: when it returns no socket or task of the client
/// remains (the shared I/O threads stop with the last client and stream).
/// Streams opened from the client end with it: their readers get
/// BINANCE_STREAM_CLOSED; close them as usual. Starting a new call on the
/// client once this has begun is undefined behaviour, as is freeing it
/// twice.
#[no_mangle]
pub extern "C" fn binance_client_free(client: *mut binance_client) {
    if !client.is_null() {
        // SAFETY: `client` came from `binance_client_new`. Its calls in flight
        // hold `&binance_client`; `close` waits for them before the drop.
        crate::panic::guard_value((), || unsafe { &*client }.inner.close());
        ffi::free_box(client);
    }
}
