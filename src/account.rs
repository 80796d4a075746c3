//! The account's state over signed REST: the snapshot an application
//! applies to heal a `binance.stream_gap`.

use crate::client::binance_client;
use crate::error::binance_error;
use crate::ffi;
use crate::panic::guard;
use crate::status::binance_status;
use std::ffi::c_char;

/// The account's state as one JSON document, fetched over signed REST:
///
/// ```text
/// {"e":"binance.account_snapshot","E":<ms>,"requested_ms":<ms>,
///  "server_time_ms":<ms>,"account":{...},"balances":[...],
///  "positions":[...],"open_orders":[...],"open_algo_orders":[...]}
/// ```
///
/// `balances` is `GET /fapi/v3/account`'s `assets` (the rest of that answer
/// is `account`), `positions` is `GET /fapi/v3/positionRisk`, `open_orders`
/// `GET /fapi/v1/openOrders` and `open_algo_orders`
/// `GET /fapi/v1/openAlgoOrders`, each exactly as Binance sends it.
/// `server_time_ms` is the server's clock when the snapshot started (the
/// local clock plus the offset measured with `GET /fapi/v1/time`, once per
/// process and REST base), `E` when it was complete, both on the server's
/// clock like the events' `E`. Every event with `E` before `server_time_ms`
/// should be reflected in it; events from `server_time_ms` on may or may
/// not be. Skip an event for an item whose `updateTime` in the snapshot is
/// later than the event's (`o.T` for orders, `T` otherwise) and apply the
/// rest: every field is an absolute value, so an event already reflected
/// changes nothing (the README's "Resynchronising after a gap" gives the
/// whole rule).
///
/// Needs a signing key on the config (`binance_config_set_secret_key` or
/// `binance_config_set_private_key_pem`): BINANCE_INVALID_ARGUMENT without
/// one. Costs 90 request weight (Binance's pages: `GET /fapi/v3/account` 5,
/// `GET /fapi/v3/positionRisk` 5, `GET /fapi/v1/openOrders` and
/// `GET /fapi/v1/openAlgoOrders` for all symbols 40 each; plus 1 for
/// `GET /fapi/v1/time` the first time in the process). Blocks until the snapshot is complete: up
/// to the connect timeout plus 7 request timeouts (BINANCE_TIMEOUT after).
/// One snapshot runs at a time per client: a call made while another runs
/// first waits for it (so it may block up to twice that bound), then
/// shares the next one with the other calls that waited.
///
/// BINANCE_RATE_LIMITED, without sending anything, when the request budget
/// (shared by every client of the process on this source address and
/// server: see `binance_client_request_budget_json`) has too little left
/// this window, or after a 429/418 received by any of them until the time
/// the server gave (`binance_error_retry_after_ms`). It does not wait in
/// the resync snapshots' queue. A -1021 (timestamp outside
/// recvWindow) resynchronises the clock and is retried once. Other
/// refusals are BINANCE_API_ERROR with Binance's code (e.g. -1022 bad
/// signature, -2015 key rejected) and HTTP status. Thread-safe. Caller
/// owns `*out_json`; free it with `binance_string_free`. On failure it is
/// NULL.
#[no_mangle]
pub extern "C" fn binance_client_account_snapshot(
    client: *mut binance_client,
    out_json: *mut *mut c_char,
    out_err: *mut *mut binance_error,
) -> binance_status {
    guard(out_err, || {
        let out = ffi::out(out_json, "out_json")?;
        let client = ffi::obj(client, "client")?;
        *out = ffi::c_string(client.inner.account_snapshot()?);
        Ok(())
    })
}
