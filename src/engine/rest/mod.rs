//! Signed REST requests to the USDⓈ-M Futures API, and the account
//! snapshot built from them.
//!
//! One HTTP/1.1 connection per client (hyper's client), opened on the
//! library's own connection path (proxy, TLS with the shared connector and
//! the config's extra roots) and kept alive between requests; requests take
//! turns on it. Every request is bounded by the request timeout, every
//! connection attempt by the connect timeout.
//!
//! The snapshot is the signed `GET /fapi/v3/account` (balances, weight 5),
//! `GET /fapi/v3/positionRisk` (positions with their prices, which the
//! account's own `positions` lack, 5), `GET /fapi/v1/openOrders` and
//! `GET /fapi/v1/openAlgoOrders` (all symbols, 40 each): 90 in all. The
//! server's clock (the offset for signing) is measured once per process
//! and REST base with `GET /fapi/v1/time` (1), again only after a `-1021`. REST rather than the WebSocket API's `account.status` /
//! `account.position`: ws-fapi has no open-orders list, so REST is needed
//! anyway, and one transport means one signing path, one view of the
//! request weight and no `session.logon` (Ed25519 only) on the session the
//! listenKey calls use.
//!
//! Under flapping connections it never storms: one snapshot runs at a time
//! per client and the calls that arrive meanwhile share the next one; every
//! request draws on the process's request budget for its address and server
//! (`budget.rs`), which follows `X-MBX-USED-WEIGHT-<interval>`, and after a
//! 429/418 nothing is sent by any client until the time the server gave
//! (`Retry-After`). Resync snapshots wait for their turn in the budget's
//! queue ([`Rest::fetch_snapshot_scheduled`]).

pub mod budget;
pub mod sign;

use self::budget::{window_of_header, Budget, Ticket};
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
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::runtime::Handle;
use tokio::sync::watch;
use tokio_tungstenite::MaybeTlsStream;

/// The largest answer body accepted (all open orders of a busy account fit
/// many times over).
pub const MAX_BODY: usize = 16 << 20;
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
/// A snapshot's weight: 90 (the clock is measured once per process).
pub const SNAPSHOT_WEIGHT: u32 =
    ACCOUNT.weight + POSITION_RISK.weight + OPEN_ORDERS.weight + OPEN_ALGO_ORDERS.weight;

/// What a REST client needs from the config.
pub struct RestConfig {
    /// The base URL (from `Endpoint::parse_http`).
    pub base: Endpoint,
    pub dialer: Dialer,
    pub request_timeout: Duration,
    pub api_key: Secret,
    pub signer: Signer,
    pub recv_window_ms: u32,
    /// The request budget every request draws on.
    pub budget: Arc<Budget>,
    /// The share of the budget resync snapshots may draw, percent.
    pub snapshot_percent: u32,
}

/// The server's clock as measured for one REST base, shared by every
/// client of the process: measured once, again after a `-1021`.
#[derive(Default)]
struct ServerClock {
    /// Server clock minus local clock, in ms.
    offset_ms: AtomicI64,
    synced: AtomicBool,
    /// One measurement at a time; the others use its result.
    syncing: tokio::sync::Mutex<()>,
}

fn server_clock(base: &Endpoint) -> Arc<ServerClock> {
    static ALL: OnceLock<Mutex<HashMap<String, Arc<ServerClock>>>> = OnceLock::new();
    lock(ALL.get_or_init(Default::default))
        .entry(base.http_url())
        .or_default()
        .clone()
}

/// A REST client for one API key. Shared: the stream and the C API reach
/// it through `Client::rest`.
pub struct Rest {
    rt: Handle,
    config: RestConfig,
    /// `X-MBX-APIKEY`, made once (each request shares it, no copy), marked
    /// sensitive.
    key_header: Result<HeaderValue>,
    /// The server's clock, shared with every client on the same base.
    clock: Arc<ServerClock>,
    /// The kept-alive connection, if any; requests take turns on it.
    conn: tokio::sync::Mutex<Option<SendRequest<Full<Bytes>>>>,
    /// Snapshot calls so far; the latest finished snapshot and the highest
    /// call it answers.
    tickets: AtomicU64,
    snapshot: tokio::sync::Mutex<Option<(u64, Result<String>)>>,
    closing: watch::Sender<bool>,
    connections_opened: AtomicU64,
    spin: SpinPolicy,
}

/// How a request's weight is paid.
#[derive(Clone, Copy, PartialEq)]
enum Paid {
    /// Charged to the budget when sent (refused if it has no room).
    Now,
    /// Part of a snapshot charged as a whole: only a pause stops it.
    Before,
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
            clock: server_clock(&config.base),
            config,
            conn: tokio::sync::Mutex::new(None),
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
    /// anything when the request budget has no room for its weight this
    /// window or the server asked to wait; with API_ERROR for Binance's
    /// refusals (e.g. -1022 bad signature, -2015 key rejected);
    /// CONNECTION_CLOSED once the client is being freed.
    pub async fn fetch_snapshot(&self) -> Result<String> {
        self.run_snapshot(None, || {}).await
    }

    /// A resync snapshot: waits for `ticket`'s turn in the budget's queue
    /// (see [`Rest::queue_snapshot`]), calls `on_turn` when it comes (before
    /// anything is sent), then as [`Rest::fetch_snapshot`], as an event of
    /// type `binance.account_snapshot` for the stream's queue.
    pub async fn fetch_snapshot_scheduled(
        &self,
        ticket: Ticket,
        on_turn: impl FnOnce() + Send,
    ) -> Result<Event> {
        let text = self.run_snapshot(Some(ticket), on_turn).await?;
        let value: Value = serde_json::from_str(&text)
            .map_err(|e| Error::internal(format!("snapshot JSON: {e}")))?;
        let time_ms = value.get("E").and_then(Value::as_i64).unwrap_or(0);
        Ok(Event::library(ACCOUNT_SNAPSHOT, time_ms, value))
    }

    /// A place in the budget's queue for a resync snapshot whose gap began
    /// at `since_ms`.
    pub fn queue_snapshot(&self, since_ms: i64) -> Ticket {
        self.config
            .budget
            .enqueue(since_ms, SNAPSHOT_WEIGHT, self.config.snapshot_percent)
    }

    async fn run_snapshot(
        &self,
        scheduled: Option<Ticket>,
        on_turn: impl FnOnce() + Send,
    ) -> Result<String> {
        self.until_closed(async {
            if let Some(t) = &scheduled {
                t.turn().await;
            } else {
                self.config
                    .budget
                    .charge("account snapshot", SNAPSHOT_WEIGHT)?;
            }
            on_turn();
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

    /// [`Rest::fetch_snapshot`] on the calling thread, which must not be a
    /// runtime thread (a library callback).
    pub fn fetch_snapshot_blocking(&self) -> Result<String> {
        super::net::runtime::ensure_blocking_allowed("blocking calls")?;
        super::net::block::block_on(&self.rt, &self.spin, self.fetch_snapshot())
    }

    /// Server clock minus local clock, in ms (0 before the first snapshot).
    pub fn clock_offset_ms(&self) -> i64 {
        self.clock.offset_ms.load(Ordering::Relaxed)
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
        self.ensure_clock().await?;
        let started_local_ms = now_ms();
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
        // On the latest measure of the server's clock (a -1021 may have
        // taken a new one meanwhile).
        let offset = self.clock_offset_ms();
        let (requested_ms, server_time_ms) =
            (requested_local_ms + offset, started_local_ms + offset);
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
        let reply = self.send(&TIME, String::new(), Paid::Now).await?;
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
        self.clock
            .offset_ms
            .store(server - after, Ordering::Relaxed);
        self.clock.synced.store(true, Ordering::Release);
        self.config.budget.set_clock_offset(server - after);
        Ok(server)
    }

    /// Measures the server's clock unless it was already, by any client of
    /// the process on this base.
    async fn ensure_clock(&self) -> Result<()> {
        if self.clock.synced.load(Ordering::Acquire) {
            return Ok(());
        }
        let _one = self.clock.syncing.lock().await;
        if !self.clock.synced.load(Ordering::Acquire) {
            self.sync_clock().await?;
        }
        Ok(())
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
                .send(
                    call,
                    format!("?{payload}&signature={signature}"),
                    Paid::Before,
                )
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

    /// Sends `GET <base><call.path><query>` on the kept-alive connection
    /// (a new one if there is none or it died), within the request timeout.
    async fn send(&self, call: &Call, query: String, paid: Paid) -> Result<Reply> {
        match paid {
            Paid::Now => self.config.budget.charge(call.path, call.weight)?,
            Paid::Before => self.config.budget.check_open(call.path, call.weight)?,
        }
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
        let number = |v: &HeaderValue| v.to_str().ok()?.trim().parse::<u64>().ok();
        // `X-MBX-USED-WEIGHT-<n><unit>`: the weight used in the server's
        // window of that length.
        let used = response.headers().iter().find_map(|(name, v)| {
            let window = window_of_header(name.as_str().strip_prefix("x-mbx-used-weight-")?)?;
            Some((number(v)?.min(u32::MAX.into()) as u32, window))
        });
        let retry_after = response.headers().get(RETRY_AFTER).and_then(number);
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
        if let Some((used, window)) = used {
            self.config.budget.reported(used, None, Some(window));
        }
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
            // Every client sending to this server from this address stops
            // until then.
            let until = self.config.budget.pause(
                reply
                    .retry_after
                    .map(|s| now_ms().saturating_add((s.min(7 * 86_400) * 1000) as i64)),
                limit == RateLimit::Banned,
            );
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

/// A RATE_LIMITED error with its retry time.
fn rate_limited(message: String, until: i64) -> Error {
    Error {
        status: Status::RateLimited,
        message,
        api_code: 0,
        http_status: 0,
        retry_after_ms: until,
    }
}

/// Whether `e` is the library's own refusal to send (the request budget's,
/// with no HTTP status): waiting until its time is enough, it says nothing
/// of the server.
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
        assert_eq!(SNAPSHOT_WEIGHT, 90);
        assert_eq!(TIME.weight, 1);
    }
}
