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
use super::config::Product;
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
use tokio::runtime::Handle;
use tokio::sync::watch;
use tokio_tungstenite::MaybeTlsStream;

/// The largest answer body accepted (all open orders of a busy account fit
/// many times over).
pub const MAX_BODY: usize = 16 << 20;
/// A snapshot is at most this many requests, one of them repeated after a
/// `-1021` clock resynchronisation: its time bound is the connect timeout
/// plus this many request timeouts.
/// (Portfolio Margin's: its nine calls, no clock.)
pub const SNAPSHOT_REQUESTS: u32 = 7;

/// A REST endpoint and its request weight (from its Binance page).
struct Call {
    path: &'static str,
    weight: u32,
}

const fn call(path: &'static str, weight: u32) -> Call {
    Call { path, weight }
}

/// A futures product's snapshot recipe (USDⓈ-M, COIN-M): the clock, the
/// account (balances in `assets`), positions with prices, open orders and
/// open algo orders (all symbols).
struct Futures {
    time: Call,
    account: Call,
    position_risk: Call,
    open_orders: Call,
    open_algo_orders: Call,
}

const USDM: Futures = Futures {
    time: call("/fapi/v1/time", 1),
    account: call("/fapi/v3/account", 5),
    position_risk: call("/fapi/v3/positionRisk", 5),
    open_orders: call("/fapi/v1/openOrders", 40),
    open_algo_orders: call("/fapi/v1/openAlgoOrders", 40),
};

/// COIN-M's counterparts (`/dapi/v1/openAlgoOrders` came with the 2026-06
/// integration): the same shapes, the same weights.
const COINM: Futures = Futures {
    time: call("/dapi/v1/time", 1),
    account: call("/dapi/v1/account", 5),
    position_risk: call("/dapi/v1/positionRisk", 1),
    open_orders: call("/dapi/v1/openOrders", 40),
    open_algo_orders: call("/dapi/v1/openAlgoOrders", 40),
};

/// Portfolio Margin's snapshot: each call's answer under its own member of
/// the document (paths and weights as the official PM SDK 16.1.0 has them:
/// UM conditional orders are algo orders, `/papi/v1/um/algo/openAlgoOrders`;
/// CM keeps `/papi/v1/cm/conditional/openOrders`). PM publishes no time
/// endpoint: requests are signed on the local clock (offset 0).
const PM: [(&str, Call); 9] = [
    ("account", call("/papi/v1/account", 20)),
    ("balances", call("/papi/v1/balance", 20)),
    ("um_positions", call("/papi/v1/um/positionRisk", 5)),
    ("um_open_orders", call("/papi/v1/um/openOrders", 40)),
    (
        "um_open_algo_orders",
        call("/papi/v1/um/algo/openAlgoOrders", 1),
    ),
    ("cm_positions", call("/papi/v1/cm/positionRisk", 1)),
    ("cm_open_orders", call("/papi/v1/cm/openOrders", 40)),
    (
        "cm_open_conditional_orders",
        call("/papi/v1/cm/conditional/openOrders", 40),
    ),
    ("margin_open_orders", call("/papi/v1/margin/openOrders", 5)),
];

/// Portfolio Margin's listenKey (REST, API key header, no signature).
const PM_LISTEN_KEY: Call = call("/papi/v1/listenKey", 1);

const fn futures_weight(f: &Futures) -> u32 {
    f.account.weight + f.position_risk.weight + f.open_orders.weight + f.open_algo_orders.weight
}

const fn pm_weight() -> u32 {
    let mut i = 0;
    let mut w = 0;
    while i < PM.len() {
        w += PM[i].1.weight;
        i += 1;
    }
    w
}

/// A USDⓈ-M snapshot's weight: 90 (the clock is measured once per process).
pub const SNAPSHOT_WEIGHT: u32 = futures_weight(&USDM);

/// A snapshot's weight for `product`.
pub fn snapshot_weight(product: Product) -> u32 {
    match product {
        Product::UsdM => SNAPSHOT_WEIGHT,
        Product::CoinM => futures_weight(&COINM),
        Product::PortfolioMargin => pm_weight(),
    }
}

/// The listenKey request methods over REST (Portfolio Margin).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyMethod {
    /// `POST`: the account's key (an existing one extended).
    Start,
    /// `PUT`: extends the key.
    Ping,
    /// `DELETE`: closes it.
    Stop,
}

/// What a REST client needs from the config.
pub struct RestConfig {
    /// The base URL (from `Endpoint::parse_http`).
    pub base: Endpoint,
    pub dialer: Dialer,
    pub request_timeout: Duration,
    pub api_key: Secret,
    /// None: only the listenKey calls (API key header, no signature).
    pub signer: Option<Signer>,
    pub product: Product,
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
        self.config.budget.enqueue(
            since_ms,
            self.snapshot_weight(),
            self.config.snapshot_percent,
        )
    }

    /// One snapshot's request weight for this client's product.
    pub fn snapshot_weight(&self) -> u32 {
        snapshot_weight(self.config.product)
    }

    /// Whether requests can be signed (a signing key was set).
    pub fn can_sign(&self) -> bool {
        self.config.signer.is_some()
    }

    /// Portfolio Margin's listenKey over REST: `POST`, `PUT` or `DELETE
    /// /papi/v1/listenKey` with the API key header. Returns the answer's
    /// JSON (`{"listenKey":...}` for start; `{}` may answer the others).
    pub async fn listen_key(&self, method: KeyMethod) -> Result<Value> {
        self.until_closed(async {
            let verb = match method {
                KeyMethod::Start => hyper::Method::POST,
                KeyMethod::Ping => hyper::Method::PUT,
                KeyMethod::Stop => hyper::Method::DELETE,
            };
            let reply = self
                .send_with(&PM_LISTEN_KEY, String::new(), Paid::Now, verb)
                .await?;
            self.json_of(&PM_LISTEN_KEY, reply)
        })
        .await
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
                    .charge("account snapshot", self.snapshot_weight())?;
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
            let requests = match self.config.product {
                Product::PortfolioMargin => PM.len() as u32,
                _ => SNAPSHOT_REQUESTS,
            };
            let bound = self.config.dialer.connect_timeout + self.config.request_timeout * requests;
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
        match self.config.product {
            Product::UsdM => self.take_futures_snapshot(&USDM, requested_local_ms).await,
            Product::CoinM => self.take_futures_snapshot(&COINM, requested_local_ms).await,
            Product::PortfolioMargin => self.take_pm_snapshot(requested_local_ms).await,
        }
    }

    /// The document's common head, on the latest measure of the server's
    /// clock (a -1021 may have taken a new one meanwhile).
    fn snapshot_head(
        &self,
        requested_local_ms: i64,
        started_local_ms: i64,
    ) -> serde_json::Map<String, Value> {
        let offset = self.clock_offset_ms();
        let mut doc = serde_json::Map::new();
        doc.insert("e".into(), json!(ACCOUNT_SNAPSHOT));
        doc.insert("E".into(), json!(self.server_now()));
        doc.insert("product".into(), json!(self.config.product.name()));
        doc.insert("requested_ms".into(), json!(requested_local_ms + offset));
        doc.insert("server_time_ms".into(), json!(started_local_ms + offset));
        doc
    }

    async fn take_futures_snapshot(&self, f: &Futures, requested_local_ms: i64) -> Result<String> {
        self.ensure_clock(&f.time).await?;
        let started_local_ms = now_ms();
        let mut account = self.signed_get(&f.account).await?;
        let positions = self.signed_get(&f.position_risk).await?;
        let open_orders = self.signed_get(&f.open_orders).await?;
        let open_algo_orders = self.signed_get(&f.open_algo_orders).await?;
        let balances = match account.as_object_mut().map(|a| a.remove("assets")) {
            Some(Some(assets @ Value::Array(_))) => assets,
            _ => {
                return Err(Error::protocol(format!(
                    "{}: the answer is not an object with an \"assets\" array",
                    f.account.path
                )))
            }
        };
        if let Some(a) = account.as_object_mut() {
            // Positions come from positionRisk, which has their prices.
            a.remove("positions");
        }
        for (call, v) in [
            (&f.position_risk, &positions),
            (&f.open_orders, &open_orders),
            (&f.open_algo_orders, &open_algo_orders),
        ] {
            if !v.is_array() {
                return Err(Error::protocol(format!(
                    "{}: the answer is not an array",
                    call.path
                )));
            }
        }
        let mut doc = self.snapshot_head(requested_local_ms, started_local_ms);
        doc.insert("account".into(), account);
        doc.insert("balances".into(), balances);
        doc.insert("positions".into(), positions);
        doc.insert("open_orders".into(), open_orders);
        doc.insert("open_algo_orders".into(), open_algo_orders);
        Ok(Value::Object(doc).to_string())
    }

    /// Portfolio Margin: every call's answer under its member; `account`
    /// an object, the rest arrays. PM publishes no time endpoint: the
    /// local clock signs (offset 0) and a -1021 is reported, not retried.
    async fn take_pm_snapshot(&self, requested_local_ms: i64) -> Result<String> {
        let started_local_ms = now_ms();
        let mut doc = self.snapshot_head(requested_local_ms, started_local_ms);
        for (name, call) in &PM {
            let v = self.signed_get(call).await?;
            let ok = if *name == "account" {
                v.is_object()
            } else {
                v.is_array()
            };
            if !ok {
                return Err(Error::protocol(format!(
                    "{}: the answer is not {}",
                    call.path,
                    if *name == "account" {
                        "an object"
                    } else {
                        "an array"
                    }
                )));
            }
            doc.insert((*name).into(), v);
        }
        Ok(Value::Object(doc).to_string())
    }

    /// `GET /fapi/v1/time`: sets the clock offset; returns the server time.
    ///
    /// The offset is taken as if the server read its clock when the answer
    /// arrived, the latest it can have: timestamps then never run ahead of
    /// the server's clock, which Binance refuses beyond 1 s, and lag it by
    /// at most one round trip, well inside the recvWindow.
    async fn sync_clock(&self, time: &Call) -> Result<i64> {
        let reply = self.send(time, String::new(), Paid::Now).await?;
        let after = now_ms();
        let answer = self.json_of(time, reply)?;
        let server = answer
            .get("serverTime")
            .and_then(Value::as_i64)
            .ok_or_else(|| {
                Error::protocol(format!(
                    "{}: the answer has no integer \"serverTime\"",
                    time.path
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
    async fn ensure_clock(&self, time: &Call) -> Result<()> {
        if self.clock.synced.load(Ordering::Acquire) {
            return Ok(());
        }
        let _one = self.clock.syncing.lock().await;
        if !self.clock.synced.load(Ordering::Acquire) {
            self.sync_clock(time).await?;
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
            let signature = self
                .config
                .signer
                .as_ref()
                .ok_or_else(|| Error::invalid("client: no key to sign requests with"))?
                .sign(&payload);
            let reply = self
                .send(
                    call,
                    format!("?{payload}&signature={signature}"),
                    Paid::Before,
                )
                .await?;
            match self.json_of(call, reply) {
                Err(e) if e.api_code == -1021 && !resynced => {
                    let time = match self.config.product {
                        Product::UsdM => &USDM.time,
                        Product::CoinM => &COINM.time,
                        Product::PortfolioMargin => return Err(e),
                    };
                    resynced = true;
                    self.sync_clock(time).await?;
                }
                other => return other,
            }
        }
    }

    /// Sends `GET <base><call.path><query>` on the kept-alive connection
    /// (a new one if there is none or it died), within the request timeout.
    async fn send(&self, call: &Call, query: String, paid: Paid) -> Result<Reply> {
        self.send_with(call, query, paid, hyper::Method::GET).await
    }

    /// As [`Rest::send`] with another HTTP method; only a GET is sent again
    /// after a kept-alive connection turns out closed.
    async fn send_with(
        &self,
        call: &Call,
        query: String,
        paid: Paid,
        verb: hyper::Method,
    ) -> Result<Reply> {
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
            let outcome =
                tokio::time::timeout(t, self.exchange(&mut sender, &target, verb.clone())).await;
            match outcome {
                Ok(Ok(reply)) => {
                    *conn = Some(sender);
                    return Ok(reply);
                }
                // A kept-alive connection the server closed meanwhile: a
                // GET is safe to send again on a new one.
                Ok(Err(e))
                    if reused
                        && attempt == 0
                        && e.status == Status::ConnectionClosed
                        && verb == hyper::Method::GET => {}
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

    async fn exchange(
        &self,
        sender: &mut SendRequest<Full<Bytes>>,
        target: &str,
        verb: hyper::Method,
    ) -> Result<Reply> {
        let key = self.key_header.clone()?;
        let request = hyper::Request::builder()
            .method(verb)
            .uri(target)
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
        match &self.config.signer {
            Some(s) => s.redact(&text),
            None => text,
        }
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
) -> Result<MaybeTlsStream<crate::engine::net::lead::Direct>> {
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
        assert_eq!(snapshot_weight(Product::CoinM), 86);
        assert_eq!(snapshot_weight(Product::PortfolioMargin), 172);
        assert_eq!(USDM.time.weight + COINM.time.weight, 2);
    }
}
