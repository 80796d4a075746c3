//! Configuration: a builder the client copies from.

use crate::engine::Config;
use crate::error::binance_error;
use crate::ffi;
use crate::panic::{guard, guard_value};
use crate::status::binance_status;
use std::ffi::c_char;

/// A client configuration. Create with `binance_config_new`, set what you
/// need, pass to `binance_client_new` (which copies it), free with
/// `binance_config_free`. Not safe to modify from two threads at once;
/// several threads may read it (`binance_client_new`) while none modifies it.
/// Only the API key is required: every other setting has a default.
///
/// Functions, by purpose (their prototypes below come in this order):
/// - make and free: `binance_config_new`, `binance_config_free`;
/// - which product: `binance_config_set_product` (USDⓈ-M Futures by
///   default, COIN-M Futures, Portfolio Margin);
/// - who you are: `binance_config_set_api_key`; for signed REST (the
///   account snapshot, account resync) `binance_config_set_secret_key` or
///   `binance_config_set_private_key_pem`;
/// - where to connect: `binance_config_set_endpoint`,
///   `binance_config_set_stream_endpoint`,
///   `binance_config_set_rest_endpoint`, `binance_config_set_proxy`,
///   `binance_config_add_root_certificate_pem`;
/// - how long to wait: `binance_config_set_timeouts_ms`,
///   `binance_config_set_reconnect_backoff_ms`,
///   `binance_config_set_recv_window_ms`;
/// - user streams: `binance_config_set_keepalive_interval_ms`,
///   `binance_config_set_silence_timeout_ms`,
///   `binance_config_set_stream_rotation_ms`,
///   `binance_config_set_event_queue_capacity`,
///   `binance_config_set_account_resync`, `binance_config_set_stream_form`,
///   `binance_config_set_open_waits_for_subscription`;
/// - sharing connections between clients:
///   `binance_config_set_connection_sharing`,
///   `binance_config_set_stream_subscriptions_per_connection`;
/// - the request budget: `binance_config_set_source_address`,
///   `binance_config_set_snapshot_budget_percent`.
pub struct binance_config {
    pub(crate) inner: Config,
}

/// A new configuration with the defaults: the production USDⓈ-M Futures
/// WebSocket API (`BINANCE_WS_API_URL_PRODUCTION`) and user data stream
/// (`BINANCE_STREAM_URL_PRODUCTION`), 10 s connect and request timeouts, the
/// system's trusted roots, keepalive every 30 minutes, no proxy (HTTPS_PROXY
/// and NO_PROXY from the environment apply, read when the client and each
/// stream are made: see the header's Environment paragraph). No API key:
/// set one. Caller owns the result; free it with `binance_config_free`.
/// NULL only if memory ran out. Thread-safe.
#[no_mangle]
pub extern "C" fn binance_config_new() -> *mut binance_config {
    guard_value(std::ptr::null_mut(), || {
        Box::into_raw(Box::new(binance_config {
            inner: Config::default(),
        }))
    })
}

/// Which Binance futures product a client speaks to: one of the
/// `BINANCE_PRODUCT_*` values (append-only).
pub type binance_product = i32;

/// USDⓈ-M Futures (the default): the listenKey over the WebSocket API
/// (`userDataStream.start/ping/stop` on `ws-fapi`), the stream on
/// `fstream.binance.com/private`, resync from `/fapi/v3/account`,
/// `/fapi/v3/positionRisk`, `/fapi/v1/openOrders`, `/fapi/v1/openAlgoOrders`.
pub const BINANCE_PRODUCT_USDM: binance_product = 0;
/// COIN-M Futures: the listenKey over its WebSocket API (`ws-dapi`, the
/// same three methods), the stream on `dstream.binance.com` (`/stream` and
/// SUBSCRIBE, as the official SDKs do), resync from `/dapi/v1/account`,
/// `/dapi/v1/positionRisk`, `/dapi/v1/openOrders`, `/dapi/v1/openAlgoOrders`
/// (the snapshot has USDⓈ-M's shape). Draws on the same request budget as
/// USDⓈ-M (Binance counts fapi and dapi together per IP since 2026-06-30).
pub const BINANCE_PRODUCT_COINM: binance_product = 1;
/// Portfolio Margin (the unified account, whose API keys lose the Futures
/// permission): no WebSocket API; the listenKey is obtained, kept alive and
/// closed over REST (`POST/PUT/DELETE /papi/v1/listenKey` on
/// `papi.binance.com`, API key header only, so no signing key is needed to
/// stream), the stream on `fstream.binance.com/pm` (`/pm/stream` and
/// SUBSCRIBE), events of both books (`fs` "UM"/"CM") and margin. Resync
/// from `/papi/v1/account`, `/papi/v1/balance`, the UM and CM positions,
/// open orders, UM algo and CM conditional orders, margin open orders (the snapshot
/// shape in README.md). Its own request budget.
pub const BINANCE_PRODUCT_PORTFOLIO_MARGIN: binance_product = 2;

/// Chooses the product (default `BINANCE_PRODUCT_USDM`). The endpoints not
/// set explicitly (`binance_config_set_endpoint`, `_stream_endpoint`,
/// `_rest_endpoint`, before or after) become the product's production
/// defaults (`BINANCE_COINM_*_URL_PRODUCTION`, `BINANCE_PM_*`); set the
/// testnet ones explicitly. Clients of different products never share a
/// connection. BINANCE_INVALID_ARGUMENT naming `product` for any other
/// value; the config is then unchanged.
#[no_mangle]
pub extern "C" fn binance_config_set_product(
    cfg: *mut binance_config,
    product: binance_product,
    out_err: *mut *mut binance_error,
) -> binance_status {
    guard(out_err, || {
        ffi::obj_mut(cfg, "cfg")?.inner.set_product(product)
    })
}

/// Sets the API key (required). It is sent in `params.apiKey` of every
/// request, never logged or put in an error message. Copied: the caller's
/// buffer may be reused (and is the caller's to wipe). The library wipes
/// its own copies when it releases them: the config's when the config is
/// freed (or the key replaced), the client's and each request's when they
/// are done; see the header's Secrets paragraph for what cannot be wiped.
/// BINANCE_INVALID_ARGUMENT for NULL, empty, not printable ASCII, or longer
/// than 256 bytes.
#[no_mangle]
pub extern "C" fn binance_config_set_api_key(
    cfg: *mut binance_config,
    api_key: *const c_char,
    out_err: *mut *mut binance_error,
) -> binance_status {
    guard(out_err, || {
        let cfg = ffi::obj_mut(cfg, "cfg")?;
        cfg.inner.set_api_key(ffi::str_arg(api_key, "api_key")?)
    })
}

/// Sets the HMAC-SHA256 secret key that signs REST requests (the account
/// snapshot, `binance_client_account_snapshot`). Treated like the API key:
/// never sent (only signatures made with it are), never logged or put in
/// an error message or event, wiped from memory when the config is freed.
/// Copied. Replaces a private key set with
/// `binance_config_set_private_key_pem`: one key signs. BINANCE_INVALID_ARGUMENT
/// for NULL, empty, not printable ASCII, or longer than 256 bytes.
#[no_mangle]
pub extern "C" fn binance_config_set_secret_key(
    cfg: *mut binance_config,
    secret: *const c_char,
    out_err: *mut *mut binance_error,
) -> binance_status {
    guard(out_err, || {
        let cfg = ffi::obj_mut(cfg, "cfg")?;
        cfg.inner.set_secret_key(ffi::str_arg(secret, "secret")?)
    })
}

/// Sets the Ed25519 private key that signs REST requests, as the PKCS#8 PEM
/// Binance's key generator (or `openssl genpkey -algorithm ed25519`) writes:
/// `-----BEGIN PRIVATE KEY-----`, unencrypted. Treated like the API key
/// (never logged or shown, wiped when the config is freed). Copied. Replaces
/// a secret key set with `binance_config_set_secret_key`.
/// BINANCE_INVALID_ARGUMENT naming `pem` when it is not such a key (another
/// algorithm, another PEM type, malformed); the message never shows key
/// material.
#[no_mangle]
pub extern "C" fn binance_config_set_private_key_pem(
    cfg: *mut binance_config,
    pem: *const c_char,
    out_err: *mut *mut binance_error,
) -> binance_status {
    guard(out_err, || {
        let cfg = ffi::obj_mut(cfg, "cfg")?;
        cfg.inner.set_private_key_pem(ffi::str_arg(pem, "pem")?)
    })
}

/// Sets the WebSocket API endpoint, a full URL `wss://host[:port]/path`, e.g.
/// `BINANCE_WS_API_URL_TESTNET`. Plain `ws://` is accepted only to a loopback
/// host (localhost, 127.0.0.0/8, ::1).
#[no_mangle]
pub extern "C" fn binance_config_set_endpoint(
    cfg: *mut binance_config,
    url: *const c_char,
    out_err: *mut *mut binance_error,
) -> binance_status {
    guard(out_err, || {
        let cfg = ffi::obj_mut(cfg, "cfg")?;
        cfg.inner.set_endpoint(ffi::str_arg(url, "url")?)
    })
}

/// Sets the user data stream base URL. Default
/// `BINANCE_STREAM_URL_PRODUCTION` (`wss://fstream.binance.com/private`,
/// the route user data moved to in 2026: the legacy route connects but
/// delivers nothing); testnet `BINANCE_STREAM_URL_TESTNET`. How the stream
/// subscribes on it is `binance_config_set_stream_form`'s choice: by
/// default it connects to `<url>/stream` and sends `SUBSCRIBE` with the
/// listenKey, as Binance's own SDKs do. (The form with the key in the URL
/// path is never used: mainnet accepts the connection and then sends
/// nothing.)
#[no_mangle]
pub extern "C" fn binance_config_set_stream_endpoint(
    cfg: *mut binance_config,
    url: *const c_char,
    out_err: *mut *mut binance_error,
) -> binance_status {
    guard(out_err, || {
        let cfg = ffi::obj_mut(cfg, "cfg")?;
        cfg.inner.set_stream_endpoint(ffi::str_arg(url, "url")?)
    })
}

/// Sets the REST base URL signed requests go to, `https://host[:port][/path]`
/// without a query. Default `BINANCE_REST_URL_PRODUCTION`
/// (`https://fapi.binance.com`); Binance's testnet is
/// `BINANCE_REST_URL_TESTNET`. Plain `http://` is accepted only to a
/// loopback host. The proxy and extra root certificates apply as for the
/// WebSocket connections.
#[no_mangle]
pub extern "C" fn binance_config_set_rest_endpoint(
    cfg: *mut binance_config,
    url: *const c_char,
    out_err: *mut *mut binance_error,
) -> binance_status {
    guard(out_err, || {
        let cfg = ffi::obj_mut(cfg, "cfg")?;
        cfg.inner.set_rest_endpoint(ffi::str_arg(url, "url")?)
    })
}

/// Sends every connection (WebSocket API and stream) through an HTTP CONNECT
/// proxy: `http://[user:pass@]host:port` (credentials percent-encoded,
/// `%` followed by two hex digits; an IPv6 host in brackets). The
/// credentials are treated like the API key: never logged or shown, and
/// wiped like it. When no proxy is set, HTTPS_PROXY (or ALL_PROXY) and
/// NO_PROXY are honoured, read by `binance_client_new` and by each
/// `binance_user_stream_open(_callback)`. NO_PROXY is a comma-separated
/// list of `*` (every host), host names (matching the name and its
/// subdomains, with or without a leading dot), IPv4 and IPv6 literals
/// (`127.0.0.1`, `::1`, `[::1]`) and CIDR blocks (`10.0.0.0/8`,
/// `fd00::/8`); a `:port` after an entry is ignored.
#[no_mangle]
pub extern "C" fn binance_config_set_proxy(
    cfg: *mut binance_config,
    url: *const c_char,
    out_err: *mut *mut binance_error,
) -> binance_status {
    guard(out_err, || {
        let cfg = ffi::obj_mut(cfg, "cfg")?;
        cfg.inner.set_proxy(ffi::str_arg(url, "url")?)
    })
}

/// Trusts the certificate(s) in `pem` (one or more PEM blocks) in addition
/// to the system's roots, e.g. a private CA or the local exchange's. The
/// server certificate and host name are always verified; there is no way to
/// turn verification off. Up to 256 distinct extra certificates per config
/// (a certificate added twice counts once), and `pem` at most 1 MiB (the
/// whole Mozilla bundle is about 220 KiB). BINANCE_INVALID_ARGUMENT if a
/// block does not parse, no block is found, or a limit is exceeded; the
/// config is then unchanged.
#[no_mangle]
pub extern "C" fn binance_config_add_root_certificate_pem(
    cfg: *mut binance_config,
    pem: *const c_char,
    out_err: *mut *mut binance_error,
) -> binance_status {
    guard(out_err, || {
        let cfg = ffi::obj_mut(cfg, "cfg")?;
        cfg.inner
            .add_root_certificate_pem(ffi::str_arg(pem, "pem")?)
    })
}

/// Sets the connect timeout (TCP, proxy, TLS and WebSocket upgrade together)
/// and the request timeout (from sending a request to its answer), in ms,
/// each 1 to 3600000. A call that must connect first can take up to both.
#[no_mangle]
pub extern "C" fn binance_config_set_timeouts_ms(
    cfg: *mut binance_config,
    connect_ms: u32,
    request_ms: u32,
    out_err: *mut *mut binance_error,
) -> binance_status {
    guard(out_err, || {
        ffi::obj_mut(cfg, "cfg")?
            .inner
            .set_timeouts_ms(connect_ms, request_ms)
    })
}

/// Sets the stream's reconnection backoff: the first retry waits about
/// `initial_ms`, each further one twice as long up to `max_ms`, each drawn
/// at random between half and all of it. A retry time sent with a 429/418
/// answer is honoured for at most 5 minutes, on reconnects and keepalives
/// alike (a keepalive postponed longer could let the listenKey die).
/// Defaults 250 ms and 30 s.
#[no_mangle]
pub extern "C" fn binance_config_set_reconnect_backoff_ms(
    cfg: *mut binance_config,
    initial_ms: u32,
    max_ms: u32,
    out_err: *mut *mut binance_error,
) -> binance_status {
    guard(out_err, || {
        ffi::obj_mut(cfg, "cfg")?
            .inner
            .set_reconnect_backoff_ms(initial_ms, max_ms)
    })
}

/// Sets `recvWindow`, how long after its timestamp Binance accepts a signed
/// request, in ms: 1 to 60000 (Binance's limit). Default 5000. The library
/// keeps its timestamps on the server's clock (it measures the offset), so
/// a local clock that is off does not need a wider window.
#[no_mangle]
pub extern "C" fn binance_config_set_recv_window_ms(
    cfg: *mut binance_config,
    ms: u32,
    out_err: *mut *mut binance_error,
) -> binance_status {
    guard(out_err, || {
        ffi::obj_mut(cfg, "cfg")?.inner.set_recv_window_ms(ms)
    })
}

/// Sets how often a user stream keeps its listenKey alive with
/// `userDataStream.ping`, in ms: 100 to 3300000 (the key lives 60 minutes).
/// Default 30 minutes.
#[no_mangle]
pub extern "C" fn binance_config_set_keepalive_interval_ms(
    cfg: *mut binance_config,
    ms: u32,
    out_err: *mut *mut binance_error,
) -> binance_status {
    guard(out_err, || {
        ffi::obj_mut(cfg, "cfg")?
            .inner
            .set_keepalive_interval_ms(ms)
    })
}

/// Sets how long a stream connection may stay silent (no frame at all, not
/// even the server's ping every 3 minutes) before it is treated as dead and
/// replaced, in ms: 100 to 3600000. Default 5 minutes.
#[no_mangle]
pub extern "C" fn binance_config_set_silence_timeout_ms(
    cfg: *mut binance_config,
    ms: u32,
    out_err: *mut *mut binance_error,
) -> binance_status {
    guard(out_err, || {
        ffi::obj_mut(cfg, "cfg")?.inner.set_silence_timeout_ms(ms)
    })
}

/// Sets how long a stream connection is used before it is rotated (a new
/// connection opened, then the old one closed, with no event lost or
/// duplicated), in ms: 500 to 86340000. Default 23 hours, before Binance's
/// 24 h limit.
#[no_mangle]
pub extern "C" fn binance_config_set_stream_rotation_ms(
    cfg: *mut binance_config,
    ms: u32,
    out_err: *mut *mut binance_error,
) -> binance_status {
    guard(out_err, || {
        ffi::obj_mut(cfg, "cfg")?.inner.set_stream_rotation_ms(ms)
    })
}

/// Sets how many stream events a user stream queues for the application
/// (1 to 1000000; default 4096). When the application does not drain the
/// queue and it is full, newer events are dropped and counted (the queued
/// ones stay), and one `binance.stream_gap` event with reason
/// "queue_overflow" and the dropped count is delivered where they were
/// lost. Library events are never dropped. Memory stays bounded; the stream
/// never stops.
#[no_mangle]
pub extern "C" fn binance_config_set_event_queue_capacity(
    cfg: *mut binance_config,
    capacity: u32,
    out_err: *mut *mut binance_error,
) -> binance_status {
    guard(out_err, || {
        ffi::obj_mut(cfg, "cfg")?
            .inner
            .set_event_queue_capacity(capacity)
    })
}

/// Whether user streams heal their gaps themselves: 1 or 0 (default). With
/// 1, a stream fetches the account snapshot (as
/// `binance_client_account_snapshot` returns it) once when it opens and
/// after every `binance.stream_gap`, and delivers it in its own queue as a
/// library event of type `binance.account_snapshot`: after the gap, and
/// before every event received after the snapshot was requested (those are
/// held back meanwhile, within the queue's capacity). Apply it by the merge
/// rule in README.md ("Resynchronising after a gap"). One snapshot is in
/// flight per stream; gaps that come meanwhile are covered by one more
/// afterwards. A failed snapshot is delivered as
/// `binance.account_snapshot_failed` (`status`, `code`, `message`,
/// `retry_in_ms`), the events held for it follow, and it is retried with
/// backoff (1 s doubling to 30 s), honouring 429/418 retry times; gaps that
/// come while a retry waits are healed by that retry. Events are held for
/// at most a snapshot's bound, the connect timeout plus seven request
/// timeouts. Needs a signing key
/// (`binance_config_set_secret_key` or `binance_config_set_private_key_pem`):
/// `binance_user_stream_open` refuses the stream without one. Each snapshot
/// costs 90 request weight of Binance's 2400 a minute per IP, so snapshots
/// do not run at once: they wait in one queue per request budget, oldest
/// gap first, and draw at most a share of it
/// (`binance_config_set_snapshot_budget_percent`, default half: about 13
/// snapshots a minute per address). Events are held only once a
/// snapshot's turn has come; `binance_stream_health`'s `snapshot_waiting`
/// and `snapshot_eta_ms` say whether one waits and roughly until when.
#[no_mangle]
pub extern "C" fn binance_config_set_account_resync(
    cfg: *mut binance_config,
    enabled: i32,
    out_err: *mut *mut binance_error,
) -> binance_status {
    guard(out_err, || {
        ffi::obj_mut(cfg, "cfg")?.inner.set_account_resync(enabled)
    })
}

/// Whether `binance_user_stream_open` waits for the stream server to
/// acknowledge the subscription: 1 (default) waits, so an open that
/// returns BINANCE_OK is live, and a refusal is the open's error; 0 returns
/// as soon as the listenKey is obtained and the subscription is sent (or
/// queued in the connection's pacing), so that a program opening many
/// accounts from one thread is not paced by the acknowledgements:
/// subscriptions queued meanwhile go out together, up to 200 keys a
/// message within Binance's 10 messages a second per connection. The
/// stream then delivers the library event `binance.stream_subscribed`
/// (`from_ms`: when it was asked) as the subscription is acknowledged,
/// before any event of it; if the server refuses it instead, the stream
/// recovers as from a lost connection (`binance.stream_disconnected`,
/// then `binance.stream_gap` with reason `subscribe_failed` once live).
/// BINANCE_INVALID_ARGUMENT for any other value.
#[no_mangle]
pub extern "C" fn binance_config_set_open_waits_for_subscription(
    cfg: *mut binance_config,
    wait: i32,
    out_err: *mut *mut binance_error,
) -> binance_status {
    guard(out_err, || {
        ffi::obj_mut(cfg, "cfg")?
            .inner
            .set_open_waits_for_subscription(wait)
    })
}

/// How a stream connection subscribes its listenKey: one of the
/// `BINANCE_STREAM_FORM_*` values.
pub type binance_stream_form = i32;

/// Default: connect to `<stream url>/stream`, send
/// `{"method":"SUBSCRIBE","params":["<listenKey>"],"id":N}` and wait for its
/// acknowledgement; events arrive wrapped as `{"stream":"<listenKey>",
/// "data":{...}}` and are delivered unwrapped. What all four official
/// Binance SDKs do; one connection can carry many streams.
pub const BINANCE_STREAM_FORM_SUBSCRIBE: binance_stream_form = 0;
/// Connect to `<stream url>/ws?listenKey=<listenKey>`: events arrive bare.
/// One connection per stream; a new key means a new connection. For use if
/// Binance moves again and the SUBSCRIBE form stops delivering.
pub const BINANCE_STREAM_FORM_QUERY: binance_stream_form = 1;

/// Chooses how user streams subscribe: `BINANCE_STREAM_FORM_SUBSCRIBE`
/// (default) or `BINANCE_STREAM_FORM_QUERY`. BINANCE_INVALID_ARGUMENT for
/// any other value.
#[no_mangle]
pub extern "C" fn binance_config_set_stream_form(
    cfg: *mut binance_config,
    form: binance_stream_form,
    out_err: *mut *mut binance_error,
) -> binance_status {
    guard(out_err, || {
        ffi::obj_mut(cfg, "cfg")?.inner.set_stream_form(form)
    })
}

/// Whether clients configured alike share connections: 1 (default) or 0.
/// Clients with the same WebSocket API endpoint, proxy, trusted roots and
/// timeouts share one WebSocket API connection (the API key goes with each
/// request), and their user streams (same stream URL, form and cap too)
/// share stream connections, up to
/// `binance_config_set_stream_subscriptions_per_connection` each: a
/// thousand accounts need a handful of connections, not two thousand. Each
/// client and stream keeps its own key, queue, keepalives, gaps, rate
/// limits and health. The cost: a lost shared stream connection is a gap
/// for every stream on it, each reported in its own stream, and a request
/// in flight when a shared API connection fails (or Binance revokes one
/// account's key on it) fails for every client with one in flight; their
/// next calls reconnect. 0 gives every client and stream connections of
/// their own (separate failure domains). The query form never shares.
#[no_mangle]
pub extern "C" fn binance_config_set_connection_sharing(
    cfg: *mut binance_config,
    enabled: i32,
    out_err: *mut *mut binance_error,
) -> binance_status {
    guard(out_err, || {
        ffi::obj_mut(cfg, "cfg")?
            .inner
            .set_connection_sharing(enabled)
    })
}

/// The most user streams one shared stream connection carries: 1 to 1024
/// (Binance's limit per connection). Default 200. Subscriptions are sent in
/// batches, paced under Binance's 10 incoming messages per second.
#[no_mangle]
pub extern "C" fn binance_config_set_stream_subscriptions_per_connection(
    cfg: *mut binance_config,
    n: u32,
    out_err: *mut *mut binance_error,
) -> binance_status {
    guard(out_err, || {
        ffi::obj_mut(cfg, "cfg")?
            .inner
            .set_stream_subscriptions_per_connection(n)
    })
}

/// Binds every connection of clients made from this config (WebSocket API,
/// streams, REST) to the local source address `address`, an IPv4 or IPv6
/// literal such as "127.0.0.2" or "2001:db8::5" (the host must have it);
/// NULL clears the binding (the system chooses, the default). Binance counts
/// request weight per IP, so each address has its own request budget
/// (2400 a minute): a host with several public addresses can spread its
/// accounts over them, one config per address. Through a proxy, the
/// connection to the proxy leaves from `address`. A name, a port or an
/// empty string is BINANCE_INVALID_ARGUMENT. Connecting fails with
/// BINANCE_CONNECT_FAILED, naming the address, if it cannot be bound or the
/// server has no address of its family.
#[no_mangle]
pub extern "C" fn binance_config_set_source_address(
    cfg: *mut binance_config,
    address: *const c_char,
    out_err: *mut *mut binance_error,
) -> binance_status {
    guard(out_err, || {
        let cfg = ffi::obj_mut(cfg, "cfg")?;
        let address = if address.is_null() {
            None
        } else {
            Some(ffi::str_arg(address, "address")?)
        };
        cfg.inner.set_source_address(address)
    })
}

/// Sets the share of the request budget account resync snapshots may draw,
/// in percent of the server's limit per window: 1 to 100, default 50 (of
/// Binance's 2400 a minute: 1200, 13 snapshots of weight 90). Snapshots of
/// every stream of the process wait in one queue per budget (source address
/// and server), oldest gap first, spread evenly over the window; the rest
/// of the window stays for listenKey requests (which go first and never
/// wait for snapshots) and for the application's own trading. Each
/// snapshot is held to the share of the config its client was made from.
#[no_mangle]
pub extern "C" fn binance_config_set_snapshot_budget_percent(
    cfg: *mut binance_config,
    percent: u32,
    out_err: *mut *mut binance_error,
) -> binance_status {
    guard(out_err, || {
        ffi::obj_mut(cfg, "cfg")?
            .inner
            .set_snapshot_budget_percent(percent)
    })
}

/// Frees a configuration (and wipes the API key, signing keys and proxy
/// credentials it held). NULL is accepted. Clients created from it are not
/// affected. Must not be called twice, nor while another thread uses the
/// config.
#[no_mangle]
pub extern "C" fn binance_config_free(cfg: *mut binance_config) {
    ffi::free_box(cfg)
}
