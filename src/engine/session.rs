//! One WebSocket API session: a persistent connection, opened on first use,
//! shared by every caller, each request matched to its answer by id.
//!
//! Callers run their request on their own thread (`Handle::block_on`): they
//! connect if needed, register the id, write the frame and wait. One reader
//! task per connection routes answers to the waiting callers, answers server
//! pings (tungstenite echoes the payload), and when the connection dies fails
//! every pending request at once so nobody waits for a timeout. A request
//! that times out retires its connection: the next call opens a new one, and
//! the old one closes once the requests already on it are done.

use super::answer::{self, Answer, Incoming};
use super::connect::{Dialer, Ws};
use super::error::{Error, Result, Status};
use super::secret::Secret;
use super::url::Endpoint;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;
use tokio::runtime::Handle;
use tokio::sync::{oneshot, watch, Notify};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

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
}

/// A WebSocket API session. Cheap to share: clone the `Arc`.
pub struct Session {
    shared: Arc<Shared>,
}

struct Shared {
    rt: Handle,
    config: SessionConfig,
    /// The API key as a JSON string literal, spliced into every request.
    key_json: Secret,
    /// The connection in use, if any.
    current: Mutex<Option<Arc<Conn>>>,
    /// Serialises connection attempts so concurrent callers share one.
    connect_lock: tokio::sync::Mutex<()>,
    next_id: AtomicU64,
    rate_limits: Mutex<Option<String>>,
    closing: watch::Sender<bool>,
    readers: Mutex<Vec<JoinHandle<()>>>,
    connections_opened: AtomicU64,
    spin: super::block::SpinPolicy,
    this: Weak<Shared>,
}

type Waiter = oneshot::Sender<Result<Answer>>;

struct Conn {
    sink: tokio::sync::Mutex<SplitSink<Ws, Message>>,
    pending: Mutex<Pending>,
    /// Wakes the reader when the connection is killed from outside (a
    /// timeout, a malformed answer, the client freed), so that its socket
    /// closes instead of lingering until the server ends it.
    killed: Notify,
    opened: std::time::Instant,
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

    fn complete(&self, id: u64, outcome: Result<Answer>) {
        let waiter = lock(&self.pending).waiters.remove(&id);
        if let Some(w) = waiter {
            let _ = w.send(outcome);
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
            let _ = w.send(Err(err.clone()));
        }
        // Stored as a permit if the reader is not waiting right now.
        self.killed.notify_one();
    }
}

impl Session {
    /// Creates a session; nothing is connected until the first request.
    pub fn new(rt: Handle, config: SessionConfig) -> Session {
        let key_json = Secret::new(
            &serde_json::to_string(config.api_key.expose()).unwrap_or_else(|_| "\"\"".into()),
        );
        let (closing, _) = watch::channel(false);
        let shared = Arc::new_cyclic(|this| Shared {
            rt,
            config,
            key_json,
            current: Mutex::new(None),
            connect_lock: tokio::sync::Mutex::new(()),
            next_id: AtomicU64::new(1),
            rate_limits: Mutex::new(None),
            closing,
            readers: Mutex::new(Vec::new()),
            connections_opened: AtomicU64::new(0),
            spin: Default::default(),
            this: this.clone(),
        });
        Session { shared }
    }

    /// Sends `method` with the API key and waits for its answer. Blocks the
    /// calling thread, which must not be a runtime thread.
    pub fn request(&self, method: &str) -> Result<Answer> {
        if Handle::try_current().is_ok() {
            return Err(Error::new(
                Status::InvalidArgument,
                "blocking calls cannot be made on a thread that runs async tasks (a library callback, or a Tokio runtime's thread)",
            ));
        }
        let s = &self.shared;
        super::block::block_on(&s.rt, &s.spin, s.request(method))
    }

    /// The same as [`Session::request`], for callers already in async code.
    pub async fn request_async(&self, method: &str) -> Result<Answer> {
        self.shared.request(method).await
    }

    /// The `rateLimits` of the latest answer that carried them, as JSON.
    pub fn rate_limits(&self) -> Option<String> {
        lock(&self.shared.rate_limits).clone()
    }

    /// How many connections this session has opened so far.
    pub fn connections_opened(&self) -> u64 {
        self.shared.connections_opened.load(Ordering::Relaxed)
    }

    /// Whether the client owning this session is being freed.
    pub fn is_closing(&self) -> bool {
        *self.shared.closing.borrow()
    }

    /// Becomes `true` when the client owning this session is being freed.
    pub fn closing_signal(&self) -> watch::Receiver<bool> {
        self.shared.closing.subscribe()
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

    /// Fails every request in flight (they return at once), closes the
    /// connection and waits until its task and socket are gone.
    pub fn shutdown(&self) {
        let s = &self.shared;
        s.closing.send_replace(true);
        let conn = lock(&s.current).take();
        if let Some(conn) = &conn {
            conn.kill(Error::closed("the client was freed"));
        }
        let readers = std::mem::take(&mut *lock(&s.readers));
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
        if Handle::try_current().is_ok() {
            s.rt.spawn(work);
        } else {
            s.rt.block_on(work);
        }
    }
}

impl Shared {
    async fn request(&self, method: &str) -> Result<Answer> {
        let mut closing = self.closing.subscribe();
        if *closing.borrow_and_update() {
            return Err(Error::closed("the client is being freed"));
        }
        tokio::select! {
            biased;
            _ = closing.changed() => Err(Error::closed("the client was freed while the request was in flight")),
            r = self.exchange(method) => r,
        }
    }

    async fn exchange(&self, method: &str) -> Result<Answer> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        // One connect deadline for the whole call, retry included: a call
        // that must connect takes at most the connect timeout to do so.
        let deadline = tokio::time::Instant::now() + self.config.dialer.connect_timeout;
        let conn = self.connection(deadline).await?;
        let (tx, rx) = oneshot::channel();
        let (conn, rx) = match conn.register(id, tx) {
            Ok(()) => (conn, rx),
            // A connection found dead before our frame was written is safe
            // to replace: nothing was sent, so retry once on a fresh one.
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
        self.send_and_wait(conn, id, method, rx).await
    }

    async fn send_and_wait(
        &self,
        conn: Arc<Conn>,
        id: u64,
        method: &str,
        rx: oneshot::Receiver<Result<Answer>>,
    ) -> Result<Answer> {
        let text = format!(
            r#"{{"id":{id},"method":"{method}","params":{{"apiKey":{}}}}}"#,
            self.key_json.expose()
        );
        // If this future is dropped (a cancelled keepalive, a freed client),
        // the waiter must not stay registered until the connection dies.
        let _forget = Forget(&conn, id);
        let sent = {
            let mut sink = conn.sink.lock().await;
            sink.send(Message::text(text)).await
        };
        if let Err(e) = sent {
            let err = Error::closed(format!("sending {method} failed: {e}"));
            conn.kill(err.clone());
            self.drop_current(&conn);
            return Err(err);
        }
        let t = self.config.request_timeout;
        match tokio::time::timeout(t, rx).await {
            Ok(Ok(outcome)) => outcome.map_err(|e| e.context(method)),
            Ok(Err(_)) => Err(Error::closed(format!("{method}: the connection closed"))),
            Err(_) => {
                // No answer in time: the connection cannot be trusted, even
                // if frames still arrive on it (a server may keep pinging
                // while stuck in the middle of a frame, or while it never
                // answers). The next call opens a new one; requests already
                // waiting on this one keep their chance until their own
                // timeouts.
                conn.retire();
                self.drop_current(&conn);
                Err(Error::timeout(format!(
                    "{method}: no answer within {} ms",
                    t.as_millis()
                )))
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
        let ws = tokio::time::timeout_at(
            deadline,
            self.config.dialer.connect_unbounded(&self.config.endpoint),
        )
        .await
        .map_err(|_| timed_out())??;
        let (sink, stream) = ws.split();
        let conn = Arc::new(Conn {
            sink: tokio::sync::Mutex::new(sink),
            pending: Mutex::new(Pending::default()),
            killed: Notify::new(),
            opened: std::time::Instant::now(),
        });
        self.connections_opened.fetch_add(1, Ordering::Relaxed);
        let reader = self
            .rt
            .spawn(read_loop(conn.clone(), stream, self.this.clone()));
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
                            Some(sh) => answer::clean(&f.reason, &sh.config.api_key),
                            None => String::new(),
                        };
                        format!(
                            "the server closed the connection (code {}{}{})",
                            u16::from(f.code),
                            if reason.is_empty() { "" } else { ": " },
                            reason.chars().take(120).collect::<String>()
                        )
                    }
                    None => "the server closed the connection".to_owned(),
                });
            }
            // Pings are answered by tungstenite with the same payload.
            _ => continue,
        };
        let Some(sh) = shared.upgrade() else { return };
        match answer::parse(text.as_str(), &sh.config.api_key) {
            Ok(Incoming::Answer {
                id,
                outcome,
                rate_limits,
            }) => {
                if let Some(rl) = rate_limits {
                    *lock(&sh.rate_limits) = Some(rl);
                }
                let malformed = matches!(&outcome, Err(e) if e.status == Status::ProtocolError)
                    .then(|| outcome.as_ref().err().cloned())
                    .flatten();
                conn.complete(id, outcome);
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

fn read_error(e: tokio_tungstenite::tungstenite::Error) -> Error {
    use tokio_tungstenite::tungstenite::error::ProtocolError;
    use tokio_tungstenite::tungstenite::Error as WsError;
    match e {
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
            Error::closed("the server closed the connection without a close frame")
        }
        WsError::Capacity(c) => Error::protocol(format!(
            "the server sent a message over the {} MiB limit ({c}); connection replaced",
            super::connect::MAX_MESSAGE >> 20
        )),
        WsError::Protocol(p) => Error::protocol(format!("WebSocket protocol violation: {p}")),
        WsError::Utf8(_) => Error::protocol("the server sent a text frame that is not UTF-8"),
        WsError::ConnectionClosed | WsError::AlreadyClosed => {
            Error::closed("the connection closed")
        }
        other => Error::closed(format!("the connection failed: {other}")),
    }
}
