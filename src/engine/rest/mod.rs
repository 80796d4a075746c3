//! Signed REST requests to the USDⓈ-M Futures API, and the account
//! snapshot built from them.
//!
//! One HTTP/1.1 connection per client (hyper's client), opened on the
//! library's own connection path (proxy, TLS with the shared connector and
//! the config's extra roots) and kept alive between requests; requests take
//! turns on it. Every request is bounded by the request timeout, every
//! connection attempt by the connect timeout.
//!
//! The snapshot is `GET /fapi/v1/time` (the server's clock: the start of
//! the snapshot and the clock offset for signing), then the signed
//! `GET /fapi/v3/account` (balances), `GET /fapi/v3/positionRisk`
//! (positions), `GET /fapi/v1/openOrders` and `GET /fapi/v1/openAlgoOrders`,
//! all symbols. REST rather than the WebSocket API's `account.status` /
//! `account.position`: ws-fapi has no open-orders list, so REST is needed
//! anyway, and one transport means one signing path, one view of the
//! request weight and no `session.logon` (Ed25519 only) on the session the
//! listenKey calls use.
//!
//! Under flapping connections it never storms: one snapshot runs at a time
//! per client and the calls that arrive meanwhile share the next one; the
//! request weight Binance reports (`X-MBX-USED-WEIGHT-1M`) is checked before
//! a snapshot starts, and after a 429/418 nothing is sent until the time
//! the server gave (`Retry-After`).

pub mod sign;

use self::sign::Signer;
use super::api::answer::clean;
use super::error::{Error, RateLimit, Result, Status};
use super::event::{now_ms, Event, ACCOUNT_SNAPSHOT};
use super::net::block::SpinPolicy;
use super::net::connect::Dialer;
use super::net::url::Endpoint;
use super::secret::Secret;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderValue, HOST, RETRY_AFTER, USER_AGENT};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use std::future::Future;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::runtime::Handle;
use tokio::sync::watch;
use tokio_tungstenite::MaybeTlsStream;

/// The largest answer body accepted (all open orders of a busy account fit
/// many times over).
pub const MAX_BODY: usize = 16 << 20;
/// Binance's `REQUEST_WEIGHT` limit per minute and IP (exchangeInfo
/// `rateLimits`, and the example answers on the general-info page).
pub const WEIGHT_LIMIT_1M: u32 = 2400;
/// A snapshot is at most this many requests, one of them repeated after a
/// `-1021` clock resynchronisation: its time bound is the connect timeout
/// plus this many request timeouts.
pub const SNAPSHOT_REQUESTS: u32 = 7;

/// A REST endpoint and its request weight (from its Binance page).
struct Call {
    path: &'static str,
    weight: u32,
}

const TIME: Call = Call {
    path: "/fapi/v1/time",
    weight: 1,
};
const ACCOUNT: Call = Call {
    path: "/fapi/v3/account",
    weight: 5,
};
const POSITION_RISK: Call = Call {
    path: "/fapi/v3/positionRisk",
    weight: 5,
};
/// 1 per symbol, 40 for all symbols.
const OPEN_ORDERS: Call = Call {
    path: "/fapi/v1/openOrders",
    weight: 40,
};
/// 1 per symbol, 40 for all symbols.
const OPEN_ALGO_ORDERS: Call = Call {
    path: "/fapi/v1/openAlgoOrders",
    weight: 40,
};
const SNAPSHOT_WEIGHT: u32 = TIME.weight
    + ACCOUNT.weight
    + POSITION_RISK.weight
    + OPEN_ORDERS.weight
    + OPEN_ALGO_ORDERS.weight;

/// What a REST client needs from the config.
pub struct RestConfig {
    /// The base URL (from `Endpoint::parse_http`).
    pub base: Endpoint,
    pub dialer: Dialer,
    pub request_timeout: Duration,
    pub api_key: Secret,
    pub signer: Signer,
    pub recv_window_ms: u32,
}

/// A REST client for one API key. Shared: the stream and the C API reach
/// it through `Client::rest`.
pub struct Rest {
    rt: Handle,
    config: RestConfig,
    /// `X-MBX-APIKEY`, made once (each request shares it, no copy), marked
    /// sensitive.
    key_header: Result<HeaderValue>,
    /// Server clock minus local clock, in ms, from the latest
    /// `GET /fapi/v1/time`.
    offset_ms: AtomicI64,
    /// The kept-alive connection, if any; requests take turns on it.
    conn: tokio::sync::Mutex<Option<SendRequest<Full<Bytes>>>>,
    limits: Mutex<Limits>,
    /// Snapshot calls so far; the latest finished snapshot and the highest
    /// call it answers.
    tickets: AtomicU64,
    snapshot: tokio::sync::Mutex<Option<(u64, Result<String>)>>,
    closing: watch::Sender<bool>,
    connections_opened: AtomicU64,
    spin: SpinPolicy,
}

#[derive(Default)]
struct Limits {
    /// The server minute (ms / 60000) `used` was reported in.
    minute: i64,
    used: u32,
    /// After a 429/418: nothing is sent before this (local ms).
    blocked_until_ms: i64,
}

/// An answer as received.
struct Reply {
    status: u16,
    retry_after: Option<u64>,
    body: Bytes,
}

impl Rest {
    pub fn new(rt: Handle, config: RestConfig) -> Rest {
        let (closing, _) = watch::channel(false);
        let key_header = HeaderValue::from_str(config.api_key.expose())
            .map(|mut v| {
                v.set_sensitive(true);
                v
            })
            .map_err(|_| Error::invalid("api_key: not a valid header value"));
        Rest {
            rt,
            key_header,
            config,
            offset_ms: AtomicI64::new(0),
            conn: tokio::sync::Mutex::new(None),
            limits: Mutex::new(Limits::default()),
            tickets: AtomicU64::new(0),
            snapshot: tokio::sync::Mutex::new(None),
            closing,
            connections_opened: AtomicU64::new(0),
            spin: SpinPolicy::default(),
        }
    }

    /// The account snapshot as one JSON document (see the README,
    /// "Resynchronising after a gap"):
    ///
    /// `{"e":"binance.account_snapshot","E":<ms>,"requested_ms":<ms>,
    /// "server_time_ms":<ms>,"account":{...},"balances":[...],
    /// "positions":[...],"open_orders":[...],"open_algo_orders":[...]}`
    ///
    /// One snapshot runs at a time; a call made while one runs waits for it
    /// and then shares the next one with every other call that waited (a
    /// snapshot started before a call cannot answer it: it may predate the
    /// gap the caller is healing). Takes at most the connect timeout plus
    /// `SNAPSHOT_REQUESTS` request timeouts once it runs (TIMEOUT after).
    /// Fails with RATE_LIMITED (`retry_after_ms` set) without sending
    /// anything when the request weight left this minute is too small or
    /// the server asked to wait; with API_ERROR for Binance's refusals
    /// (e.g. -1022 bad signature, -2015 key rejected); CONNECTION_CLOSED
    /// once the client is being freed.
    pub async fn fetch_snapshot(&self) -> Result<String> {
        self.until_closed(async {
            let ticket = self.tickets.fetch_add(1, Ordering::SeqCst) + 1;
            let requested_local_ms = now_ms();
            let mut slot = self.snapshot.lock().await;
            if let Some((covered, result)) = slot.as_ref() {
                if *covered >= ticket {
                    return result.clone();
                }
            }
            // Every call counted so far is waiting for this one, and asked
            // before it starts.
            let covered = self.tickets.load(Ordering::SeqCst);
            let bound = self.config.dialer.connect_timeout
                + self.config.request_timeout * SNAPSHOT_REQUESTS;
            let result =
                match tokio::time::timeout(bound, self.take_snapshot(requested_local_ms)).await {
                    Ok(r) => r,
                    Err(_) => Err(Error::timeout(format!(
                        "account snapshot: not complete within {} ms",
                        bound.as_millis()
                    ))),
                };
            *slot = Some((covered, result.clone()));
            result
        })
        .await
    }

    /// [`Rest::fetch_snapshot`] as a library event of type
    /// `binance.account_snapshot`, for the stream's queue.
    pub async fn fetch_snapshot_event(&self) -> Result<Event> {
        let text = self.fetch_snapshot().await?;
        let value: Value = serde_json::from_str(&text)
            .map_err(|e| Error::internal(format!("snapshot JSON: {e}")))?;
        let time_ms = value.get("E").and_then(Value::as_i64).unwrap_or(0);
        Ok(Event::library(ACCOUNT_SNAPSHOT, time_ms, value))
    }

    /// [`Rest::fetch_snapshot`] on the calling thread, which must not be a
    /// runtime thread (a library callback).
    pub fn fetch_snapshot_blocking(&self) -> Result<String> {
        super::net::runtime::ensure_blocking_allowed("blocking calls")?;
        super::net::block::block_on(&self.rt, &self.spin, self.fetch_snapshot())
    }

    /// Server clock minus local clock, in ms (0 before the first snapshot).
    pub fn clock_offset_ms(&self) -> i64 {
        self.offset_ms.load(Ordering::Relaxed)
    }

    /// How many connections this client has opened (keep-alive reuses one).
    #[cfg(feature = "test-support")]
    pub fn connections_opened(&self) -> u64 {
        self.connections_opened.load(Ordering::Relaxed)
    }

    /// Fails the calls in flight (CONNECTION_CLOSED, at once) and refuses
    /// new ones; the connection closes.
    pub fn shutdown(&self) {
        self.closing.send_replace(true);
        if let Ok(mut conn) = self.conn.try_lock() {
            conn.take();
        }
    }

    async fn until_closed<T>(&self, work: impl Future<Output = Result<T>>) -> Result<T> {
        let mut closing = self.closing.subscribe();
        if *closing.borrow() {
            return Err(Error::closed("the client was freed"));
        }
        tokio::select! {
            r = work => r,
            _ = closing.wait_for(|c| *c) => Err(Error::closed("the client was freed")),
        }
    }

    fn server_now(&self) -> i64 {
        now_ms() + self.clock_offset_ms()
    }

    async fn take_snapshot(&self, requested_local_ms: i64) -> Result<String> {
        self.check_weight(SNAPSHOT_WEIGHT)?;
        let server_time_ms = self.sync_clock().await?;
        let requested_ms = requested_local_ms + self.clock_offset_ms();
        let mut account = self.signed_get(&ACCOUNT).await?;
        let positions = self.signed_get(&POSITION_RISK).await?;
        let open_orders = self.signed_get(&OPEN_ORDERS).await?;
        let open_algo_orders = self.signed_get(&OPEN_ALGO_ORDERS).await?;
        let balances = match account.as_object_mut().map(|a| a.remove("assets")) {
            Some(Some(assets @ Value::Array(_))) => assets,
            _ => {
                return Err(Error::protocol(format!(
                    "{}: the answer is not an object with an \"assets\" array",
                    ACCOUNT.path
                )))
            }
        };
        if let Some(a) = account.as_object_mut() {
            // Positions come from positionRisk, which has their prices.
            a.remove("positions");
        }
        for (call, v) in [
            (&POSITION_RISK, &positions),
            (&OPEN_ORDERS, &open_orders),
            (&OPEN_ALGO_ORDERS, &open_algo_orders),
        ] {
            if !v.is_array() {
                return Err(Error::protocol(format!(
                    "{}: the answer is not an array",
                    call.path
                )));
            }
        }
        Ok(json!({
            "e": ACCOUNT_SNAPSHOT,
            "E": self.server_now(),
            "requested_ms": requested_ms,
            "server_time_ms": server_time_ms,
            "account": account,
            "balances": balances,
            "positions": positions,
            "open_orders": open_orders,
            "open_algo_orders": open_algo_orders,
        })
        .to_string())
    }

    /// `GET /fapi/v1/time`: sets the clock offset; returns the server time.
    ///
    /// The offset is taken as if the server read its clock when the answer
    /// arrived, the latest it can have: timestamps then never run ahead of
    /// the server's clock, which Binance refuses beyond 1 s, and lag it by
    /// at most one round trip, well inside the recvWindow.
    async fn sync_clock(&self) -> Result<i64> {
        let reply = self.send(&TIME, String::new()).await?;
        let after = now_ms();
        let answer = self.json_of(&TIME, reply)?;
        let server = answer
            .get("serverTime")
            .and_then(Value::as_i64)
            .ok_or_else(|| {
                Error::protocol(format!(
                    "{}: the answer has no integer \"serverTime\"",
                    TIME.path
                ))
            })?;
        self.offset_ms.store(server - after, Ordering::Relaxed);
        Ok(server)
    }

    /// A signed GET with no parameters of its own. A `-1021` (timestamp
    /// outside recvWindow) resynchronises the clock and retries once.
    async fn signed_get(&self, call: &Call) -> Result<Value> {
        let mut resynced = false;
        loop {
            let payload = format!(
                "recvWindow={}&timestamp={}",
                self.config.recv_window_ms,
                self.server_now()
            );
            let signature = self.config.signer.sign(&payload);
            let reply = self
                .send(call, format!("?{payload}&signature={signature}"))
                .await?;
            match self.json_of(call, reply) {
                Err(e) if e.api_code == -1021 && !resynced => {
                    resynced = true;
                    self.sync_clock().await?;
                }
                other => return other,
            }
        }
    }

    /// Refuses, without sending, what would break the request weight limit
    /// or come before the time a 429/418 gave.
    fn check_weight(&self, cost: u32) -> Result<()> {
        let l = lock(&self.limits);
        let now = now_ms();
        if l.blocked_until_ms > now {
            return Err(rate_limited(
                format!(
                    "REST: the server asked to wait until {} (ms since the epoch) after a 429/418; nothing sent",
                    l.blocked_until_ms
                ),
                l.blocked_until_ms,
            ));
        }
        let minute = self.server_now().div_euclid(60_000);
        if l.minute == minute && l.used + cost > WEIGHT_LIMIT_1M {
            let next = (minute + 1) * 60_000 - self.clock_offset_ms();
            return Err(rate_limited(
                format!(
                    "REST: request weight {} of {WEIGHT_LIMIT_1M} used this minute, {cost} needed; nothing sent",
                    l.used
                ),
                next,
            ));
        }
        Ok(())
    }

    fn note_weight(&self, used: Option<u32>) {
        if let Some(used) = used {
            let mut l = lock(&self.limits);
            l.minute = self.server_now().div_euclid(60_000);
            l.used = used;
        }
    }

    /// Sends `GET <base><call.path><query>` on the kept-alive connection
    /// (a new one if there is none or it died), within the request timeout.
    async fn send(&self, call: &Call, query: String) -> Result<Reply> {
        self.check_weight(call.weight)?;
        let target = format!(
            "{}{}{query}",
            self.config.base.path.trim_end_matches('/'),
            call.path
        );
        let mut conn = self.conn.lock().await;
        for attempt in 0..2 {
            let reused = conn.is_some();
            let mut sender = match conn.take() {
                Some(s) if !s.is_closed() => s,
                _ => self.connect().await?,
            };
            let t = self.config.request_timeout;
            let outcome = tokio::time::timeout(t, self.exchange(&mut sender, &target)).await;
            match outcome {
                Ok(Ok(reply)) => {
                    *conn = Some(sender);
                    return Ok(reply);
                }
                // A kept-alive connection the server closed meanwhile: a
                // GET is safe to send again on a new one.
                Ok(Err(e)) if reused && attempt == 0 && e.status == Status::ConnectionClosed => {}
                Ok(Err(e)) => return Err(e.context(call.path)),
                Err(_) => {
                    return Err(Error::timeout(format!(
                        "{}: no answer within {} ms",
                        call.path,
                        t.as_millis()
                    )))
                }
            }
        }
        Err(Error::closed(format!(
            "{}: the connection closed twice",
            call.path
        )))
    }

    async fn exchange(&self, sender: &mut SendRequest<Full<Bytes>>, target: &str) -> Result<Reply> {
        let key = self.key_header.clone()?;
        let request = hyper::Request::get(target)
            .header(HOST, host_header(&self.config.base))
            .header(
                USER_AGENT,
                concat!("binance-uds/", env!("CARGO_PKG_VERSION")),
            )
            .header("X-MBX-APIKEY", key)
            .body(Full::new(Bytes::new()))
            .map_err(|e| Error::internal(format!("building the request failed: {e}")))?;
        sender
            .ready()
            .await
            .map_err(|e| Error::closed(format!("the connection closed: {e}")))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| Error::closed(format!("the request failed: {e}")))?;
        let status = response.status().as_u16();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        let used = header("x-mbx-used-weight-1m").map(|w| w.min(u32::MAX.into()) as u32);
        let retry_after = header(RETRY_AFTER.as_str());
        let body = Limited::new(response.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| {
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some()
                {
                    Error::protocol(format!("the answer is larger than {MAX_BODY} bytes"))
                } else {
                    Error::closed(format!("reading the answer failed: {e}"))
                }
            })?
            .to_bytes();
        self.note_weight(used);
        Ok(Reply {
            status,
            retry_after,
            body,
        })
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>> {
        let io = connect_transport(&self.config.dialer, &self.config.base).await?;
        let t = self.config.dialer.connect_timeout;
        let handshake = hyper::client::conn::http1::Builder::new().handshake(TokioIo::new(io));
        let (sender, connection) = tokio::time::timeout(t, handshake)
            .await
            .map_err(|_| Error::timeout("REST: HTTP handshake timed out"))?
            .map_err(|e| {
                Error::new(
                    Status::ConnectFailed,
                    format!("REST: HTTP handshake failed: {e}"),
                )
            })?;
        self.connections_opened.fetch_add(1, Ordering::Relaxed);
        let mut closing = self.closing.subscribe();
        // Ends when the sender is dropped, the server closes, or the client
        // is freed (then the socket closes at once).
        self.rt.spawn(async move {
            tokio::select! {
                _ = connection => {}
                _ = closing.wait_for(|c| *c) => {}
            }
        });
        Ok(sender)
    }

    /// Maps an answer: 2xx → its JSON; 429/418 → RATE_LIMITED (and nothing
    /// sent until the time given); `{"code","msg"}` → API_ERROR; anything
    /// else → PROTOCOL_ERROR.
    fn json_of(&self, call: &Call, reply: Reply) -> Result<Value> {
        let path = call.path;
        let parsed: Option<Value> = serde_json::from_slice(&reply.body).ok();
        let status = reply.status;
        if (200..300).contains(&status) {
            return parsed.ok_or_else(|| {
                Error::protocol(format!(
                    "{path}: HTTP {status} with a body that is not JSON: {}",
                    self.excerpt(&reply.body)
                ))
            });
        }
        let error = parsed.as_ref().and_then(|v| {
            Some((
                v.get("code")?.as_i64()?,
                self.clean(v.get("msg")?.as_str()?),
            ))
        });
        if let Some(limit) = RateLimit::from_status(i64::from(status)) {
            let until = match (reply.retry_after, limit) {
                (Some(s), _) => now_ms().saturating_add((s.min(7 * 86_400) * 1000) as i64),
                // No Retry-After: the weight window (a minute) for a 429,
                // the shortest ban (2 minutes) for a 418.
                (None, RateLimit::TooMany) => (self.server_now().div_euclid(60_000) + 1) * 60_000,
                (None, RateLimit::Banned) => now_ms() + 120_000,
            };
            lock(&self.limits).blocked_until_ms = until;
            let what = limit.what();
            let (code, msg) = error.unwrap_or((0, String::new()));
            let mut e = rate_limited(
                format!("{path}: {what} (HTTP {status}, Binance error {code}): {msg}; retry after {until} (ms since the epoch)"),
                until,
            );
            e.api_code = code;
            e.http_status = i32::from(status);
            return Err(e);
        }
        match error {
            Some((code, msg)) => Err(Error {
                status: Status::ApiError,
                message: format!("{path}: Binance error {code} (HTTP {status}): {msg}"),
                api_code: code,
                http_status: i32::from(status),
                retry_after_ms: 0,
            }),
            None => {
                let mut e = Error::protocol(format!(
                    "{path}: HTTP {status} without a Binance error object: {}",
                    self.excerpt(&reply.body)
                ));
                e.http_status = i32::from(status);
                Err(e)
            }
        }
    }

    /// Server text made safe to keep: no control characters, no API key,
    /// no secret, bounded.
    fn clean(&self, text: &str) -> String {
        let text = clean(text, &self.config.api_key);
        self.config.signer.redact(&text)
    }

    fn excerpt(&self, body: &[u8]) -> String {
        let text = String::from_utf8_lossy(&body[..body.len().min(4096)]);
        let text = self.clean(&text);
        if text.is_empty() {
            return "(empty)".into();
        }
        crate::engine::text::truncate(&text, 120).into_owned()
    }
}

impl Drop for Rest {
    fn drop(&mut self) {
        self.closing.send_replace(true);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A refusal made here, before anything was sent (the weight left this
/// minute, or a 429/418's time not yet come): RATE_LIMITED with no HTTP
/// status, which [`refused_unsent`] tells apart from the server's own.
fn rate_limited(message: String, until: i64) -> Error {
    Error {
        status: Status::RateLimited,
        message,
        api_code: 0,
        http_status: 0,
        retry_after_ms: until,
    }
}

/// Whether `e` is the library's own refusal to send (see [`rate_limited`]):
/// waiting until its time is enough, it says nothing of the server.
pub fn refused_unsent(e: &Error) -> bool {
    e.status == Status::RateLimited && e.http_status == 0
}

/// `Host`: the host, and the port unless it is the scheme's default.
fn host_header(base: &Endpoint) -> String {
    let default = if base.tls { 443 } else { 80 };
    if base.port == default {
        super::net::url::host_for_url(&base.host)
    } else {
        base.authority()
    }
}

/// TCP (through the proxy when one is set), then TLS for https, within the
/// connect timeout: the same path as the WebSocket connections, minus the
/// upgrade. Messages name the endpoint by its http(s) URL.
async fn connect_transport(
    dialer: &Dialer,
    endpoint: &Endpoint,
) -> Result<MaybeTlsStream<TcpStream>> {
    dialer.connect_transport(endpoint).await.map_err(|mut e| {
        e.message = e.message.replace(&endpoint.url(), &endpoint.http_url());
        e
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_header_omits_default_ports() {
        let e = Endpoint::parse_http("https://fapi.binance.com", "u").unwrap();
        assert_eq!(host_header(&e), "fapi.binance.com");
        let e = Endpoint::parse_http("http://127.0.0.1:8080", "u").unwrap();
        assert_eq!(host_header(&e), "127.0.0.1:8080");
        let e = Endpoint::parse_http("https://[::1]:443", "u").unwrap();
        assert_eq!(host_header(&e), "[::1]");
    }

    #[test]
    fn snapshot_weight_is_the_sum_of_its_calls() {
        assert_eq!(SNAPSHOT_WEIGHT, 91);
    }
}
