//! The listenKey methods of the WebSocket API.

use crate::client::binance_client;
use crate::error::binance_error;
use crate::ffi;
use crate::panic::guard;
use crate::status::binance_status;
use std::ffi::c_char;

/// `userDataStream.start`: obtains the account's listenKey. If the account
/// already has a valid key, the server returns that key and extends it by
/// 60 minutes. Blocks up to the connect timeout (if not yet connected) plus
/// the request timeout. Thread-safe. On success the caller owns
/// `*out_listen_key`; free it with `binance_string_free`. On failure it is
/// NULL. On COIN-M it is the same method on `ws-dapi`; on Portfolio Margin
/// (`binance_config_set_product`) it is REST `POST /papi/v1/listenKey`
/// (the API key header only, no handshake weight).
///
/// Request weight 1 (each of start, keepalive and stop, by Binance's
/// pages), plus 5 for the WebSocket API handshake when the call opens the
/// connection, drawn on the process's request budget (see
/// `binance_client_request_budget_json`). BINANCE_RATE_LIMITED without
/// sending anything (HTTP status 0, `binance_error_retry_after_ms` set)
/// when the budget has no room this window, or after a 429/418 to any
/// client of the same server and source address until its time.
#[no_mangle]
pub extern "C" fn binance_listen_key_start(
    client: *mut binance_client,
    out_listen_key: *mut *mut c_char,
    out_err: *mut *mut binance_error,
) -> binance_status {
    guard(out_err, || {
        let out = ffi::out(out_listen_key, "out_listen_key")?;
        let client = ffi::obj(client, "client")?;
        *out = ffi::c_string(client.inner.listen_key_start()?);
        Ok(())
    })
}

/// `userDataStream.ping`: keeps the account's listenKey alive for another
/// 60 minutes (a key not kept alive dies after 60 minutes). The server
/// returns the key it extended, in `*out_listen_key` (caller owns it; free
/// with `binance_string_free`); if it differs from the key you hold, use the
/// new one. `out_listen_key` may be NULL if you do not need it.
/// BINANCE_API_ERROR with code -1125 when the account has no valid key:
/// call `binance_listen_key_start` again. Blocks like start. Thread-safe.
/// On Portfolio Margin it is REST `PUT /papi/v1/listenKey`, whose answer
/// names no key: the key is first asked with `POST` (which extends it too),
/// so a lapsed key is replaced rather than reported as -1125 here.
#[no_mangle]
pub extern "C" fn binance_listen_key_keepalive(
    client: *mut binance_client,
    out_listen_key: *mut *mut c_char,
    out_err: *mut *mut binance_error,
) -> binance_status {
    guard(out_err, || {
        let out = ffi::out_opt(out_listen_key);
        let client = ffi::obj(client, "client")?;
        let key = client.inner.listen_key_keepalive()?;
        if let Some(slot) = out {
            *slot = ffi::c_string(key);
        }
        Ok(())
    })
}

/// `userDataStream.stop`: closes the account's user data stream and
/// invalidates its listenKey. The key is shared by every connection and
/// process using the same API key, so this stops their streams too. Blocks
/// like start. Thread-safe. On Portfolio Margin: REST
/// `DELETE /papi/v1/listenKey`.
#[no_mangle]
pub extern "C" fn binance_listen_key_stop(
    client: *mut binance_client,
    out_err: *mut *mut binance_error,
) -> binance_status {
    guard(out_err, || {
        ffi::obj(client, "client")?.inner.listen_key_stop()
    })
}
