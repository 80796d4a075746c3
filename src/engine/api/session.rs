//! One WebSocket API session: a persistent connection, opened on first use,
//! shared by every caller, each request matched to its answer by id.
//!
//! A `Session` is one client's view: its API key (sent with each request),
//! its "being freed" signal and its latest rate limits. Beneath it, the
//! connection manager (`Shared`) may serve many clients configured alike
//! (`shared`): the WebSocket API takes the API key per request, so a
//! thousand accounts need one connection, not a thousand. It closes when
//! its last client is freed.
//!
//! Callers run their request on their own thread (`Handle::block_on`): they
//! connect if needed, register the id, write the frame and wait. One reader
//! task per connection routes answers to the waiting callers, answers server
//! pings (tungstenite echoes the payload), and when the connection dies fails
//! every pending request at once so nobody waits for a timeout. A request
//! that times out retires its connection: the next call opens a new one, and
//! the old one closes once the requests already on it are done.

use super::answer::{self, Answer, Incoming};
use crate::engine::error::{Error, Result, Status};
use crate::engine::net::connect::{Dialer, Ws};
use crate::engine::net::lead::{self, Cell};
use crate::engine::net::url::Endpoint;
use crate::engine::secret::Secret;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;
use tokio::runtime::Handle;
use tokio::sync::{oneshot, watch, Notify};
use tokio::task::JoinHandle;
// `Bytes::from_owner` (bytes >= 1.9, tungstenite's own) lets the frame be
// wiped when tungstenite drops it.
use tokio_tungstenite::tungstenite::{Bytes, Message, Utf8Bytes};
use zeroize::Zeroizing;

/// What a session needs to know.
#[derive(Clone)]
pub struct SessionConfig {
    pub endpoint: Endpoint,
    pub dialer: Dialer,
    pub request_timeout: Duration,
    pub api_key: Secret,
    /// Connections older than this take no new request: the next call opens
    /// a new one and the old one closes when idle. Binance closes them at
    /// 24 h; replacing them before means no request is caught in that close.
    pub max_connection_age: Duration,
    /// The request budget every request draws on (weight 1 each: the
    /// `userDataStream.*` methods).
    pub budget: Arc<crate::engine::rest::budget::Budget>,
}

pub struct Session {
    shared: Arc<Shared>,
    /// The API key as a JSON string literal, spliced into every request.
    key_json: Secret,
    /// The API key itself, to take out of the shared list of keys to
    /// redact when this client leaves.
    api_key: Secret,
    closing: watch::Sender<bool>,
    rate_limits: Mutex<Option<String>>,
    /// Set when the connection manager is pooled (shared by clients
    /// configured alike): its identity.
    pooled: Option<u64>,
}

struct Shared {
    rt: Handle,
    config: SessionConfig,
    /// Every API key sent on these connections: removed from any server
    /// text kept in an error, whichever client's request it answers.
    keys: Mutex<Vec<Secret>>,
    /// The connection in use, if any.
    current: Mutex<Option<Arc<Conn>>>,
    /// Serialises connection attempts so concurrent callers share one.
    connect_lock: tokio::sync::Mutex<()>,
    next_id: AtomicU64,
    readers: Mutex<Vec<JoinHandle<()>>>,
    connections_opened: AtomicU64,
    spin: crate::engine::net::block::SpinPolicy,
    this: Weak<Shared>,
}

/// The request weight of every method a session sends
/// (`userDataStream.start`, `.ping`, `.stop`: 1 each on Binance's pages).
pub const REQUEST_WEIGHT: u32 = 1;

/// The request weight of opening a WebSocket API connection (Binance's
/// WebSocket API general info: "a WebSocket handshake attempt costs 5").
pub const HANDSHAKE_WEIGHT: u32 = 5;

/// An answer, with the `rateLimits` it carried (as JSON text).
type Reply = (Result<Answer>, Option<String>);

/// Why a request got no answer: its frame was never written (safe to send
/// again), or it was and then the connection failed or fell silent.
enum Failed {
    Unsent(Error),
    After(Error),
}
type Waiter = oneshot::Sender<Reply>;

struct Conn {
    sink: tokio::sync::Mutex<SplitSink<Ws, Message>>,
    pending: Mutex<Pending>,
    /// Wakes the reader when the connection is killed from outside (a
    /// timeout, a malformed answer, the client freed), so that its socket
    /// closes instead of lingering until the server ends it.
    killed: Notify,
    opened: std::time::Instant,
    /// Its reader task, which a caller waiting for an answer on this
    /// connection polls itself (`lead`).
    reader: std::sync::OnceLock<Arc<Cell>>,
}

#[derive(Default)]
struct Pending {
    dead: Option<Error>,
    /// A request timed out on this connection: nothing new is sent on it,
    /// and it is closed once the requests already sent have finished.
    retired: bool,
    waiters: HashMap<u64, Waiter>,
}

/// Unregisters a request's waiter when its future ends, however it ends.
struct Forget<'a>(&'a Conn, u64);

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.0.forget(self.1);
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere never leaves these maps inconsistent; keep going.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Conn {
    fn alive(&self) -> bool {
        let p = lock(&self.pending);
        p.dead.is_none() && !p.retired
    }

    /// How many requests on this connection wait for their answers.
    fn waiting(&self) -> usize {
        lock(&self.pending).waiters.len()
    }

    fn register(&self, id: u64, waiter: Waiter) -> std::result::Result<(), Error> {
        let mut p = lock(&self.pending);
        if let Some(dead) = &p.dead {
            return Err(dead.clone());
        }
        if p.retired {
            return Err(Error::closed(
                "the connection was retired after a request timed out",
            ));
        }
        p.waiters.insert(id, waiter);
        Ok(())
    }

    fn forget(&self, id: u64) {
        lock(&self.pending).waiters.remove(&id);
        self.close_if_retired_and_idle();
    }

    fn complete(&self, id: u64, reply: Reply) {
        let waiter = lock(&self.pending).waiters.remove(&id);
        if let Some(w) = waiter {
            let _ = w.send(reply);
        }
        self.close_if_retired_and_idle();
    }

    /// Stops sending new requests on this connection; it closes when the
    /// requests already on it have their answers or their timeouts.
    fn retire(&self) {
        lock(&self.pending).retired = true;
        self.close_if_retired_and_idle();
    }

    fn close_if_retired_and_idle(&self) {
        let idle = {
            let p = lock(&self.pending);
            p.retired && p.dead.is_none() && p.waiters.is_empty()
        };
        if idle {
            self.kill(Error::closed(
                "the connection was retired after a request timed out",
            ));
        }
    }

    /// Fails every pending request with `err` and refuses new ones.
    fn kill(&self, err: Error) {
        let waiters = {
            let mut p = lock(&self.pending);
            if p.dead.is_none() {
                p.dead = Some(err.clone());
            }
            std::mem::take(&mut p.waiters)
        };
        for (_, w) in waiters {
            let _ = w.send((Err(err.clone()), None));
        }
        // Stored as a permit if the reader is not waiting right now.
        self.killed.notify_one();
    }
}

/// Connection managers shared by clients configured alike, by identity,
/// with how many sessions use each.
type Pool = Mutex<HashMap<u64, (Arc<Shared>, usize)>>;

fn pool() -> &'static Pool {
    static POOL: std::sync::OnceLock<Pool> = std::sync::OnceLock::new();
    POOL.get_or_init(Default::default)
}

impl Session {
    /// Creates a session of its own; nothing is connected until the first
    /// request.
    pub fn new(rt: Handle, config: SessionConfig) -> Session {
        let key = config.api_key.clone();
        Session::over(Shared::new(rt, config), &key, None)
    }

    /// Creates a session on the connections of clients configured alike
    /// (`identity`: endpoint, proxy, roots, timeouts), opening them if
    /// this is the first such client.
    pub fn shared(rt: Handle, config: SessionConfig, identity: u64) -> Session {
        let key = config.api_key.clone();
        let mut pool = lock(pool());
        let shared = match pool.get_mut(&identity) {
            Some((shared, users)) => {
                *users += 1;
                shared.clone()
            }
            None => {
                let shared = Shared::new(rt, config);
                pool.insert(identity, (shared.clone(), 1));
                shared
            }
        };
        lock(&shared.keys).push(key.clone());
        drop(pool);
        Session::over(shared, &key, Some(identity))
    }

    fn over(shared: Arc<Shared>, api_key: &Secret, pooled: Option<u64>) -> Session {
        // Taken, not copied: the serialised key is wiped with the session.
        let key_json = Secret::from_string(
            serde_json::to_string(api_key.expose()).unwrap_or_else(|_| "\"\"".into()),
        );
        let (closing, _) = watch::channel(false);
        Session {
            shared,
            key_json,
            api_key: api_key.clone(),
            closing,
            rate_limits: Mutex::new(None),
            pooled,
        }
    }

    /// Sends `method` with the API key and waits for its answer. Blocks the
    /// calling thread, which must not be a runtime thread.
    pub fn request(&self, method: &str) -> Result<Answer> {
        crate::engine::net::runtime::ensure_blocking_allowed("blocking calls")?;
        let s = &self.shared;
        crate::engine::net::block::block_on(&s.rt, &s.spin, self.request_async(method))
    }

    /// The same as [`Session::request`], for callers already in async code.
    pub async fn request_async(&self, method: &str) -> Result<Answer> {
        let (outcome, rate_limits) = self
            .shared
            .request(method, &self.key_json, &self.closing)
            .await;
        if let Some(rl) = rate_limits {
            *lock(&self.rate_limits) = Some(rl);
        }
        outcome
    }

    /// The `rateLimits` of the latest answer to this client that carried
    /// them, as JSON.
    pub fn rate_limits(&self) -> Option<String> {
        lock(&self.rate_limits).clone()
    }

    /// How many connections this session's connection manager has opened.
    #[cfg(feature = "test-support")]
    pub fn connections_opened(&self) -> u64 {
        self.shared.connections_opened.load(Ordering::Relaxed)
    }

    /// Whether the client owning this session is being freed.
    pub fn is_closing(&self) -> bool {
        *self.closing.borrow()
    }

    /// Becomes `true` when the client owning this session is being freed.
    pub fn closing_signal(&self) -> watch::Receiver<bool> {
        self.closing.subscribe()
    }

    /// Drops the current connection because the caller found its answer
    /// malformed; the next request opens a new one.
    pub fn replace_connection(&self, why: &Error) {
        if let Some(conn) = lock(&self.shared.current).take() {
            conn.kill(Error::new(
                why.status,
                format!("connection replaced: {}", why.message),
            ));
        }
    }

    /// This client's requests in flight fail at once; the connections
    /// close (and their tasks end) when no other client uses them, and this
    /// waits until they are gone.
    pub fn shutdown(&self) {
        if self.closing.send_replace(true) {
            return; // already shut down
        }
        let last = match self.pooled {
            None => true,
            Some(identity) => {
                let mut pool = lock(pool());
                let last = match pool.get_mut(&identity) {
                    Some((shared, users)) if Arc::ptr_eq(shared, &self.shared) => {
                        *users -= 1;
                        if *users == 0 {
                            pool.remove(&identity);
                        }
                        !pool.contains_key(&identity)
                    }
                    // Not in the pool (any more): nobody else can reach it.
                    _ => true,
                };
                if !last {
                    let mut keys = lock(&self.shared.keys);
                    if let Some(i) = keys
                        .iter()
                        .position(|k| k.expose() == self.api_key.expose())
                    {
                        keys.swap_remove(i);
                    }
                }
                last
            }
        };
        if last {
            self.shared.shutdown();
        }
    }
}

impl Shared {
    fn new(rt: Handle, config: SessionConfig) -> Arc<Shared> {
        Arc::new_cyclic(|this| Shared {
            rt,
            keys: Mutex::new(vec![config.api_key.clone()]),
            config,
            current: Mutex::new(None),
            connect_lock: tokio::sync::Mutex::new(()),
            next_id: AtomicU64::new(1),
            readers: Mutex::new(Vec::new()),
            connections_opened: AtomicU64::new(0),
            spin: Default::default(),
            this: this.clone(),
        })
    }

    /// Fails every request in flight (they return at once), closes the
    /// connection and waits until its task and socket are gone.
    fn shutdown(&self) {
        let conn = lock(&self.current).take();
        if let Some(conn) = &conn {
            conn.kill(Error::closed("the client was freed"));
        }
        let readers = std::mem::take(&mut *lock(&self.readers));
        let work = async move {
            if let Some(conn) = conn {
                // A polite close frame, if the socket takes it at once.
                let _ = tokio::time::timeout(Duration::from_millis(100), async {
                    let mut sink = conn.sink.lock().await;
                    let _ = sink.close().await;
                })
                .await;
            }
            for r in readers {
                r.abort();
                let _ = r.await;
            }
        };
        if crate::engine::net::runtime::on_runtime_thread() {
            self.rt.spawn(work);
        } else {
            self.rt.block_on(work);
        }
    }

    /// Runs `f` with every API key sent on these connections.
    fn with_keys<T>(&self, f: impl FnOnce(&[Secret]) -> T) -> T {
        f(&lock(&self.keys))
    }
}

impl Shared {
    async fn request(
        &self,
        method: &str,
        key_json: &Secret,
        closing: &watch::Sender<bool>,
    ) -> Reply {
        let mut closing = closing.subscribe();
        if *closing.borrow_and_update() {
            return (Err(Error::closed("the client is being freed")), None);
        }
        let budget = &self.config.budget;
        if let Err(e) = budget.charge(method, REQUEST_WEIGHT) {
            return (Err(e), None);
        }
        let reply = tokio::select! {
            biased;
            _ = closing.changed() => (Err(Error::closed("the client was freed while the request was in flight")), None),
            r = self.exchange(method, key_json) => r,
        };
        if let Some((count, limit, window)) = reply
            .1
            .as_deref()
            .and_then(crate::engine::rest::budget::request_weight_of)
        {
            budget.reported(count, Some(limit), Some(window));
        }
        if let Err(e) = &reply.0 {
            if e.status == Status::RateLimited && matches!(e.http_status, 429 | 418) {
                // Every client sending to this server from this address
                // stops until then (`retryAfter`, ms since the epoch).
                let until = (e.retry_after_ms > 0).then_some(e.retry_after_ms);
                budget.pause(until, e.http_status == 418);
            }
        }
        reply
    }

    async fn exchange(&self, method: &str, key_json: &Secret) -> Reply {
        match self.exchange_inner(method, key_json).await {
            Ok(reply) => reply,
            Err(e) => (Err(e), None),
        }
    }

    async fn exchange_inner(&self, method: &str, key_json: &Secret) -> Result<Reply> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        // One connect deadline for the whole call, retry included: a call
        // that must connect takes at most the connect timeout to do so.
        let deadline = tokio::time::Instant::now() + self.config.dialer.connect_timeout;
        let mut retried = false;
        loop {
            let conn = self.connection(deadline).await?;
            let (tx, rx) = oneshot::channel();
            let (conn, rx) = match conn.register(id, tx) {
                Ok(()) => (conn, rx),
                // A connection found dead before our frame was written is
                // safe to replace: nothing was sent, so retry once on a
                // fresh one.
                Err(e) => {
                    self.drop_current(&conn);
                    let fresh = self
                        .connection(deadline)
                        .await
                        .map_err(|e2| e2.context(&e.message))?;
                    let (tx, rx) = oneshot::channel();
                    fresh.register(id, tx)?;
                    (fresh, rx)
                }
            };
            match self.send_and_wait(conn, id, method, key_json, rx).await {
                // The frame could not be written: the server had closed the
                // connection (a restart) before the read half noticed, so
                // it never saw the request. Once, on a fresh connection.
                Err(Failed::Unsent(e)) if !retried => {
                    retried = true;
                    if tokio::time::Instant::now() >= deadline {
                        return Err(e);
                    }
                }
                Err(Failed::Unsent(e) | Failed::After(e)) => return Err(e),
                Ok(reply) => return Ok(reply),
            }
        }
    }

    async fn send_and_wait(
        &self,
        conn: Arc<Conn>,
        id: u64,
        method: &str,
        key_json: &Secret,
        rx: oneshot::Receiver<Reply>,
    ) -> std::result::Result<Reply, Failed> {
        let frame = request_frame(id, method, key_json);
        // If this future is dropped (a cancelled keepalive, a freed client),
        // the waiter must not stay registered until the connection dies.
        let _forget = Forget(&conn, id);
        let sent = {
            let mut sink = conn.sink.lock().await;
            sink.send(Message::Text(frame)).await
        };
        if let Err(e) = sent {
            let err = Error::closed(format!("sending {method} failed: {e}"));
            conn.kill(err.clone());
            self.drop_current(&conn);
            return Err(Failed::Unsent(err));
        }
        let t = self.config.request_timeout;
        let answer = tokio::time::timeout(t, rx);
        tokio::pin!(answer);
        let answered = std::future::poll_fn(|cx| {
            let polled = std::future::Future::poll(answer.as_mut(), cx);
            // A blocking caller alone on the connection reads its answer
            // itself. With others waiting too, the reader task serves
            // them all: it takes every answer a read brings, where a
            // caller leading would hand them over one by one, and callers
            // taking turns at leading would contend for the CPU.
            if polled.is_pending() && conn.waiting() <= 1 {
                if let Some(reader) = conn.reader.get() {
                    lead::offer(reader);
                }
            }
            polled
        })
        .await;
        match answered {
            Ok(Ok((outcome, rate_limits))) => {
                Ok((outcome.map_err(|e| e.context(method)), rate_limits))
            }
            Ok(Err(_)) => Err(Failed::After(Error::closed(format!(
                "{method}: the connection closed"
            )))),
            Err(_) => {
                // No answer in time: the connection cannot be trusted, even
                // if frames still arrive on it (a server may keep pinging
                // while stuck in the middle of a frame, or while it never
                // answers). The next call opens a new one; requests already
                // waiting on this one keep their chance until their own
                // timeouts.
                conn.retire();
                self.drop_current(&conn);
                Err(Failed::After(Error::timeout(format!(
                    "{method}: no answer within {} ms",
                    t.as_millis()
                ))))
            }
        }
    }

    fn live(&self) -> Option<Arc<Conn>> {
        let mut cur = lock(&self.current);
        let conn = cur.as_ref().filter(|c| c.alive())?;
        if conn.opened.elapsed() >= self.config.max_connection_age {
            // Retire it like a timed-out one: requests on it finish, then it
            // closes; the caller opens the next connection.
            conn.retire();
            *cur = None;
            return None;
        }
        Some(conn.clone())
    }

    fn drop_current(&self, conn: &Arc<Conn>) {
        let mut cur = lock(&self.current);
        if cur.as_ref().is_some_and(|c| Arc::ptr_eq(c, conn)) {
            *cur = None;
        }
    }

    async fn connection(&self, deadline: tokio::time::Instant) -> Result<Arc<Conn>> {
        if let Some(c) = self.live() {
            return Ok(c);
        }
        let limit = self.config.dialer.connect_timeout;
        let timed_out = || {
            Error::timeout(format!(
                "connecting to {} did not complete within {} ms",
                self.config.endpoint.url(),
                limit.as_millis()
            ))
        };
        let _guard = tokio::time::timeout_at(deadline, self.connect_lock.lock())
            .await
            .map_err(|_| timed_out())?;
        if let Some(c) = self.live() {
            return Ok(c);
        }
        // Binance counts a WebSocket API handshake as request weight.
        self.config
            .budget
            .charge("WebSocket API handshake", HANDSHAKE_WEIGHT)?;
        let (ws, socket) = tokio::time::timeout_at(
            deadline,
            self.config
                .dialer
                .connect_unbounded_socket(&self.config.endpoint),
        )
        .await
        .map_err(|_| timed_out())??;
        let (sink, stream) = ws.split();
        let conn = Arc::new(Conn {
            sink: tokio::sync::Mutex::new(sink),
            pending: Mutex::new(Pending::default()),
            killed: Notify::new(),
            opened: std::time::Instant::now(),
            reader: std::sync::OnceLock::new(),
        });
        self.connections_opened.fetch_add(1, Ordering::Relaxed);
        let (cell, reader) =
            Cell::spawn(&self.rt, read_loop(conn.clone(), stream, self.this.clone()));
        cell.set_socket(socket);
        let _ = conn.reader.set(cell);
        {
            let mut readers = lock(&self.readers);
            readers.retain(|r| !r.is_finished());
            readers.push(reader);
        }
        *lock(&self.current) = Some(conn.clone());
        Ok(conn)
    }
}

async fn read_loop(conn: Arc<Conn>, mut stream: SplitStream<Ws>, shared: Weak<Shared>) {
    // Set when the server announced serverShutdown: by then every request
    // sent on this connection has been answered or timed out.
    let mut retire_at: Option<tokio::time::Instant> = None;
    let err = loop {
        let next = tokio::select! {
            next = stream.next() => next,
            // Killed elsewhere: its requests were failed; close the socket.
            _ = conn.killed.notified() => return,
            _ = tokio::time::sleep_until(retire_at.unwrap_or_else(tokio::time::Instant::now)), if retire_at.is_some() => {
                break Error::closed("the connection was replaced after the server announced serverShutdown");
            }
        };
        let msg = match next {
            Some(Ok(msg)) => msg,
            Some(Err(e)) => break read_error(e),
            None => break Error::closed("the server closed the connection"),
        };
        let text = match msg {
            Message::Text(t) => t,
            // Binance sends text; a binary frame is read as text when it
            // is UTF-8, so that an answer in one is not lost to a timeout.
            Message::Binary(b) => match tokio_tungstenite::tungstenite::Utf8Bytes::try_from(b) {
                Ok(t) => t,
                Err(_) => break Error::protocol(
                    "the server sent a binary frame that is not UTF-8 text; connection replaced",
                ),
            },
            Message::Close(frame) => {
                break Error::closed(match frame {
                    Some(f) => {
                        // The server's words, cleaned like any server text:
                        // a hostile server may echo the API key.
                        let reason = match shared.upgrade() {
                            Some(sh) => sh.with_keys(|keys| answer::clean(&f.reason, keys)),
                            None => String::new(),
                        };
                        format!(
                            "the server closed the connection (code {}{}{})",
                            u16::from(f.code),
                            if reason.is_empty() { "" } else { ": " },
                            crate::engine::text::truncate(&reason, 120)
                        )
                    }
                    None => "the server closed the connection".to_owned(),
                });
            }
            // Pings are answered by tungstenite with the same payload.
            _ => continue,
        };
        let Some(sh) = shared.upgrade() else { return };
        match sh.with_keys(|keys| answer::parse(text.as_str(), keys)) {
            Ok(Incoming::Answer {
                id,
                outcome,
                rate_limits,
            }) => {
                let malformed = matches!(&outcome, Err(e) if e.status == Status::ProtocolError)
                    .then(|| outcome.as_ref().err().cloned())
                    .flatten();
                conn.complete(id, (outcome, rate_limits));
                if let Some(e) = malformed {
                    break Error::protocol(format!("connection replaced: {}", e.message));
                }
            }
            // Binance revokes the whole session this way and then closes:
            // fail what is pending with its error, and let the next call
            // open a new connection rather than race the close.
            Ok(Incoming::SessionError(e)) => break e,
            // Make-before-break: the next request opens a new connection
            // while this one keeps serving the answers still due on it,
            // until the server closes it.
            Ok(Incoming::ServerShutdown) => {
                sh.drop_current(&conn);
                retire_at.get_or_insert(tokio::time::Instant::now() + sh.config.request_timeout);
            }
            Ok(Incoming::Unrelated) => {}
            Err(e) => break e,
        }
    };
    conn.kill(err);
    if let Some(sh) = shared.upgrade() {
        sh.drop_current(&conn);
    }
}

/// The request's text frame, with the API key spliced in. Built once at its
/// final size in a buffer that is wiped when tungstenite drops the message
/// (it copies the payload into its own write buffer, which the library
/// cannot wipe: see `secret`).
fn request_frame(id: u64, method: &str, key_json: &Secret) -> Utf8Bytes {
    const HEAD: &str = r#"{"id":"#;
    const MID: &str = r#","method":""#;
    const PARAMS: &str = r#"","params":{"apiKey":"#;
    const TAIL: &str = "}}";
    let id = id.to_string();
    let len = HEAD.len()
        + id.len()
        + MID.len()
        + method.len()
        + PARAMS.len()
        + key_json.len()
        + TAIL.len();
    let mut text = Zeroizing::new(Vec::with_capacity(len));
    for part in [HEAD, &id, MID, method, PARAMS, key_json.expose(), TAIL] {
        text.extend_from_slice(part.as_bytes());
    }
    debug_assert_eq!(text.capacity(), len, "no reallocation left a copy");
    Utf8Bytes::try_from(Bytes::from_owner(text)).unwrap_or_else(|_| Utf8Bytes::from_static(""))
}

fn read_error(e: tokio_tungstenite::tungstenite::Error) -> Error {
    use tokio_tungstenite::tungstenite::error::ProtocolError;
    use tokio_tungstenite::tungstenite::Error as WsError;
    match e {
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
            Error::closed("the server closed the connection without a close frame")
        }
        WsError::Capacity(c) => Error::protocol(format!(
            "the server sent a message over the {} MiB limit ({c}); connection replaced",
            crate::engine::net::connect::MAX_MESSAGE >> 20
        )),
        WsError::Protocol(p) => Error::protocol(format!("WebSocket protocol violation: {p}")),
        WsError::Utf8(_) => Error::protocol("the server sent a text frame that is not UTF-8"),
        WsError::ConnectionClosed | WsError::AlreadyClosed => {
            Error::closed("the connection closed")
        }
        other => Error::closed(format!("the connection failed: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_frame_is_the_method_and_the_key_built_at_its_final_size() {
        // The key as Session::new stores it: a JSON string literal.
        let key_json = Secret::new(r#""K3y\"q""#);
        let frame = request_frame(42, "userDataStream.ping", &key_json);
        assert_eq!(
            frame.as_str(),
            r#"{"id":42,"method":"userDataStream.ping","params":{"apiKey":"K3y\"q"}}"#
        );
        let parsed: serde_json::Value = serde_json::from_str(frame.as_str()).unwrap();
        assert_eq!(parsed["params"]["apiKey"], "K3y\"q");
    }
}
