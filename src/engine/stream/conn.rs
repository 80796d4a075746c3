//! One stream connection and the subscriptions it carries.
//!
//! On the SUBSCRIBE form (the default, what Binance's own SDKs use) a
//! connection to `<base>/stream` carries any number of listenKeys, up to a
//! cap: each is subscribed with `{"method":"SUBSCRIBE","params":[...],
//! "id":N}`, acknowledged with `{"result":null,"id":N}`, and its events
//! arrive wrapped as `{"stream":"<listenKey>","data":{...}}`, routed here to
//! every stream subscribed to that key. Several accounts' streams may share
//! one connection (see `pool`). On the query form a connection to
//! `<base>/ws?listenKey=<key>` carries exactly one key, unwrapped.
//!
//! One task per connection owns the socket: it reads and routes, sends
//! subscription requests paced under Binance's 10 incoming messages per
//! second, replaces itself make-before-break before the server's 24 h limit
//! or when the server announces `serverShutdown` (nothing lost, nothing
//! delivered twice), and when the connection is lost or goes silent tells
//! every stream on it, each of which then reports its own gap.

use super::wire::{self, Incoming};
use super::Shared;
use crate::engine::config::StreamForm;
use crate::engine::error::{Error, Result, Status};
use crate::engine::event::{now_ms, Event};
use crate::engine::net::connect::{Dialer, Ws};
use crate::engine::net::url::Endpoint;
use futures_util::{FutureExt, SinkExt, StreamExt};
use serde_json::json;
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{sleep_until, Instant};
use tokio_tungstenite::tungstenite::Message;

/// During a rotation, switch once the new connection has been quiet this
/// long with nothing the old one has not delivered.
const OVERLAP_QUIET: Duration = Duration::from_millis(300);
/// A rotation's overlap never lasts longer than this.
const OVERLAP_MAX: Duration = Duration::from_secs(5);
/// After a switch, events already delivered are recognised this long.
const DEDUP_WINDOW: Duration = Duration::from_secs(10);
const DEDUP_RING: usize = 4096;
/// A rotation that failed is tried again after this.
const ROTATE_RETRY: Duration = Duration::from_secs(30);
/// After `serverShutdown`, the replacement starts within this (spread so
/// that many connections told at once do not reconnect in step).
const SHUTDOWN_REPLACE_MAX: Duration = Duration::from_millis(500);
/// Our requests per second on one connection, under Binance's limit of 10
/// incoming messages per second: pongs count against it too, and we send
/// one per server ping (every 3 minutes), so two are left spare.
const MAX_REQUESTS_PER_SEC: usize = 8;
/// Past this many requests in the last second, the next waits at least
/// `REQUEST_SPACING` after the one before: a burst would spend the second's
/// allowance on one key each, while spaced requests carry every key queued
/// meanwhile (many accounts opening at once subscribe in few messages).
const REQUEST_BURST: usize = 2;
const REQUEST_SPACING: Duration = Duration::from_millis(1000 / MAX_REQUESTS_PER_SEC as u64);
/// ListenKeys per SUBSCRIBE or UNSUBSCRIBE message.
const MAX_PARAMS: usize = 100;
/// Events read in one go before the readers are woken.
const BATCH: usize = 64;

/// What a connection needs; shared by every connection of one identity.
pub struct ConnSettings {
    pub base: Endpoint,
    pub dialer: Dialer,
    pub form: StreamForm,
    pub request_timeout: Duration,
    pub silence: Duration,
    pub rotate_after: Duration,
    /// Subscriptions one connection carries at most.
    pub max_streams: usize,
    /// Whether streams of different clients may share a connection.
    pub sharing: bool,
    /// Streams with equal identities (endpoint, proxy, roots, form, cap)
    /// may share a connection.
    pub identity: u64,
}

/// What a stream's health shows of its connection.
pub struct ConnStats {
    pub id: u64,
    /// Subscriptions (streams) on the connection now.
    pub streams: AtomicUsize,
    /// When the server last pinged, ms since the epoch; 0 if never.
    pub last_ping_ms: AtomicI64,
}

/// One account's stream, as a connection sees it: where its events go and
/// how to tell its runner that something happened.
pub struct Sink {
    pub id: u64,
    pub shared: Arc<Shared>,
    signals: mpsc::UnboundedSender<Signal>,
    /// The gap (and renewal) to queue the moment the stream's next
    /// subscription is acknowledged: queued by the connection task itself,
    /// so it goes before every event of the new subscription.
    resume: Mutex<Option<Resume>>,
}

/// What a stream reports when its subscription is live again.
pub struct Resume {
    pub reason: &'static str,
    pub message: String,
    pub from_ms: i64,
    /// The new listenKey, shown only by its start, when it changed.
    pub renewed: Option<String>,
    /// On a new connection (not a new key on the same one).
    pub reconnected: bool,
}

impl Resume {
    /// Counts it in the health snapshot and queues the events, together,
    /// so that a reader who sees the gap sees it counted.
    fn push_to(self, shared: &Shared) {
        let to_ms = now_ms();
        {
            let mut i = shared.info();
            if self.reconnected {
                i.reconnects += 1;
            }
            i.gaps += 1;
            if self.renewed.is_some() {
                i.key_renewals += 1;
                i.key_since = Instant::now();
            }
        }
        shared.queue.push_library(Event::library(
            crate::engine::event::STREAM_GAP,
            to_ms,
            json!({ "reason": self.reason, "message": self.message, "from_ms": self.from_ms, "to_ms": to_ms }),
        ));
        if let Some(key) = self.renewed {
            shared.queue.push_library(Event::library(
                crate::engine::event::LISTEN_KEY_RENEWED,
                to_ms,
                json!({ "reason": self.reason, "listenKey": key }),
            ));
        }
    }
}

impl Sink {
    /// Sets (or clears) what to report once the next subscription is live.
    pub fn set_resume(&self, r: Option<Resume>) {
        *self.resume.lock().unwrap_or_else(|p| p.into_inner()) = r;
    }

    /// Reports it now, if the connection has not (a fallback).
    pub fn flush_resume(&self) {
        let r = self.resume.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(r) = r {
            r.push_to(&self.shared);
        }
    }

    pub fn new(shared: Arc<Shared>) -> (Arc<Sink>, mpsc::UnboundedReceiver<Signal>) {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let (tx, rx) = mpsc::unbounded_channel();
        let sink = Sink {
            id: NEXT.fetch_add(1, Ordering::Relaxed),
            shared,
            signals: tx,
            resume: Mutex::new(None),
        };
        (Arc::new(sink), rx)
    }

    /// Queues an event without waking the reader (the batch's end does).
    fn push(&self, ev: Event) {
        if ev.kind() == "listenKeyExpired" && !ev.is_library() {
            let _ = self.signals.send(Signal::Expired {
                at_ms: if ev.time_ms() > 0 {
                    ev.time_ms()
                } else {
                    now_ms()
                },
            });
        }
        self.shared.info().last_event_ms = now_ms();
        self.shared.queue.push_deferred(ev);
    }
}

/// What a connection tells the streams on it.
#[derive(Debug)]
pub enum Signal {
    /// Connection `conn` is gone; events since `from_ms` may be lost.
    Lost {
        conn: u64,
        reason: &'static str,
        message: String,
        from_ms: i64,
    },
    /// The server said the stream's key expired (at `at_ms`).
    Expired { at_ms: i64 },
}

enum Cmd {
    /// Route `key` to `sink`, subscribing it unless already subscribed.
    Subscribe {
        sink: Arc<Sink>,
        key: String,
        done: oneshot::Sender<Result<()>>,
    },
    /// The stream's key changed: route `new` to it instead of `old`.
    Swap {
        sink: Arc<Sink>,
        old: String,
        new: String,
        done: oneshot::Sender<Result<()>>,
    },
    /// The stream left (closed, or moved to another connection).
    Leave { sink: u64, key: String },
}

/// A connection as the pool and the streams hold it.
pub struct ConnHandle {
    pub stats: Arc<ConnStats>,
    tx: mpsc::UnboundedSender<Cmd>,
    /// (members reserved or subscribed, dead): a member is counted from
    /// the moment the pool hands the connection out.
    state: Mutex<(usize, bool)>,
}

impl ConnHandle {
    /// Starts a connection task on the current runtime; it dials at once.
    /// `query_key` is the key of a query-form connection.
    pub fn spawn(settings: Arc<ConnSettings>, query_key: Option<String>) -> Arc<ConnHandle> {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let (tx, rx) = mpsc::unbounded_channel();
        let stats = Arc::new(ConnStats {
            id: NEXT.fetch_add(1, Ordering::Relaxed),
            streams: AtomicUsize::new(0),
            last_ping_ms: AtomicI64::new(0),
        });
        let handle = Arc::new(ConnHandle {
            stats: stats.clone(),
            tx,
            state: Mutex::new((0, false)),
        });
        let task = Task::new(settings, stats, handle.clone(), rx, query_key);
        tokio::spawn(task.run());
        handle
    }

    fn state(&self) -> std::sync::MutexGuard<'_, (usize, bool)> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reserves a place for one more stream if the connection has room.
    pub fn reserve(&self, max: usize) -> bool {
        let mut s = self.state();
        if s.1 || s.0 >= max || self.tx.is_closed() {
            return false;
        }
        s.0 += 1;
        true
    }

    pub fn is_dead(&self) -> bool {
        self.state().1 || self.tx.is_closed()
    }

    async fn ask(&self, make: impl FnOnce(oneshot::Sender<Result<()>>) -> Cmd) -> Result<()> {
        let (done, answer) = oneshot::channel();
        self.tx
            .send(make(done))
            .map_err(|_| Error::new(Status::ConnectionClosed, "the stream connection closed"))?;
        answer.await.unwrap_or_else(|_| {
            Err(Error::new(
                Status::ConnectionClosed,
                "the stream connection closed",
            ))
        })
    }
}

/// A stream's place on a connection: it leaves when this is dropped.
pub struct Membership {
    pub conn: Arc<ConnHandle>,
    sink: u64,
    key: String,
    pub since: Instant,
}

impl Membership {
    /// Takes the place `conn.reserve` made and subscribes `key` for `sink`;
    /// waits for the server's acknowledgement.
    pub async fn join(conn: Arc<ConnHandle>, sink: &Arc<Sink>, key: &str) -> Result<Membership> {
        let member = Membership {
            conn,
            sink: sink.id,
            key: key.to_owned(),
            since: Instant::now(),
        };
        let sink = sink.clone();
        let key = key.to_owned();
        member
            .conn
            .ask(|done| Cmd::Subscribe { sink, key, done })
            .await?;
        Ok(member)
    }

    /// Routes the stream's new key on the same connection: subscribes it,
    /// then unsubscribes the old one.
    pub async fn swap(&mut self, sink: &Arc<Sink>, new: &str) -> Result<()> {
        let (sink2, new2) = (sink.clone(), new.to_owned());
        // The connection routes the stream by the new key from now on,
        // whatever the answer: a later leave or swap must name it.
        let old = std::mem::replace(&mut self.key, new.to_owned());
        self.conn
            .ask(|done| Cmd::Swap {
                sink: sink2,
                old,
                new: new2,
                done,
            })
            .await
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.conn.state().0 -= 1;
        let _ = self.conn.tx.send(Cmd::Leave {
            sink: self.sink,
            key: std::mem::take(&mut self.key),
        });
    }
}

/// Why a connection ended.
struct Lost {
    reason: &'static str,
    message: String,
}

impl Lost {
    fn new(reason: &'static str, message: impl Into<String>) -> Lost {
        Lost {
            reason,
            message: message.into(),
        }
    }
}

/// A stream waiting for its key's subscription to be answered.
type Waiter = (u64, oneshot::Sender<Result<()>>);

/// One of our requests awaiting its answer.
struct Request {
    deadline: Instant,
    what: &'static str,
    waiters: Vec<oneshot::Sender<Result<()>>>,
    /// (sink, key) pairs that become subscribed when it is acknowledged.
    subscribing: Vec<(u64, String)>,
}

/// A live socket and what is known of it.
struct Link {
    ws: Ws,
    opened: Instant,
    last_frame: Instant,
    last_frame_ms: i64,
}

impl Link {
    fn new(ws: Ws) -> Link {
        Link {
            ws,
            opened: Instant::now(),
            last_frame: Instant::now(),
            last_frame_ms: now_ms(),
        }
    }

    fn heard(&mut self) {
        self.last_frame = Instant::now();
        self.last_frame_ms = now_ms();
    }
}

struct Task {
    settings: Arc<ConnSettings>,
    stats: Arc<ConnStats>,
    handle: Arc<ConnHandle>,
    rx: mpsc::UnboundedReceiver<Cmd>,
    query_key: Option<String>,
    /// key → the streams it is routed to (two clients of one account share
    /// a key).
    routes: HashMap<String, Vec<Arc<Sink>>>,
    /// Sinks whose key's subscription was acknowledged.
    acked: HashMap<u64, String>,
    requests: HashMap<u64, Request>,
    next_id: u64,
    /// Keys to subscribe, with whoever waits for the answer.
    to_subscribe: Vec<(String, Option<Waiter>)>,
    to_unsubscribe: Vec<String>,
    /// When our recent requests were sent (for pacing).
    sent: VecDeque<Instant>,
    /// Hashes of recently delivered events, kept around a rotation.
    ring: VecDeque<u64>,
    ring_set: std::collections::HashSet<u64>,
    dedup_until: Option<Instant>,
    rotate_at: Option<Instant>,
    /// Sinks with events queued since the last wake.
    touched: Vec<Arc<Sink>>,
    /// When the current link last heard from the server.
    last_frame_ms: i64,
    /// The latest event time ("E") delivered from this connection: events
    /// stamped after it, sent but not yet arrived when the connection
    /// ends, may be lost even if they were stamped before the last frame
    /// arrived.
    last_event_ms: i64,
}

impl Task {
    fn new(
        settings: Arc<ConnSettings>,
        stats: Arc<ConnStats>,
        handle: Arc<ConnHandle>,
        rx: mpsc::UnboundedReceiver<Cmd>,
        query_key: Option<String>,
    ) -> Task {
        Task {
            settings,
            stats,
            handle,
            rx,
            query_key,
            routes: HashMap::new(),
            acked: HashMap::new(),
            requests: HashMap::new(),
            next_id: 1,
            to_subscribe: Vec::new(),
            to_unsubscribe: Vec::new(),
            sent: VecDeque::new(),
            ring: VecDeque::new(),
            ring_set: Default::default(),
            dedup_until: None,
            rotate_at: None,
            touched: Vec::new(),
            last_frame_ms: now_ms(),
            last_event_ms: 0,
        }
    }

    fn url(&self) -> Endpoint {
        match &self.query_key {
            Some(key) => query_url(&self.settings.base, key),
            None => self.settings.base.join("stream"),
        }
    }

    async fn dial(&self) -> Result<Ws> {
        self.settings
            .dialer
            .connect(&self.url())
            .await
            .map_err(|mut e| {
                if let Some(key) = &self.query_key {
                    // The URL carries the listenKey: show only its start.
                    e.message = e.message.replace(key.as_str(), &super::mask(key));
                }
                e.context("user data stream")
            })
    }

    async fn run(mut self) {
        let link = match self.dial().await {
            Ok(ws) => Link::new(ws),
            Err(e) => return self.fail_all(e),
        };
        let lost = self.serve(link).await;
        let e = Error::new(Status::ConnectionClosed, lost.message.clone());
        for sinks in self.routes.values() {
            for sink in sinks {
                {
                    let mut i = sink.shared.info();
                    i.connected = false;
                    i.subscribed = false;
                }
                let _ = sink.signals.send(Signal::Lost {
                    conn: self.stats.id,
                    reason: lost.reason,
                    message: lost.message.clone(),
                    from_ms: self.lost_since(),
                });
            }
        }
        self.fail_all(e);
    }

    /// Refuses everything asked of a connection that is gone.
    fn fail_all(&mut self, e: Error) {
        self.handle.state().1 = true;
        self.rx.close();
        for (_, r) in self.requests.drain() {
            for w in r.waiters {
                let _ = w.send(Err(e.clone()));
            }
        }
        for (_, w) in self.to_subscribe.drain(..) {
            if let Some((_, w)) = w {
                let _ = w.send(Err(e.clone()));
            }
        }
        while let Ok(cmd) = self.rx.try_recv() {
            match cmd {
                Cmd::Subscribe { done, .. } | Cmd::Swap { done, .. } => {
                    let _ = done.send(Err(e.clone()));
                }
                Cmd::Leave { .. } => {}
            }
        }
        self.stats.streams.store(0, Ordering::Relaxed);
    }
}

impl Task {
    /// Since when events may be lost when this connection ends.
    fn lost_since(&self) -> i64 {
        match self.last_event_ms {
            0 => self.last_frame_ms,
            e => e.min(self.last_frame_ms),
        }
    }
}

/// `<base>/ws?listenKey=<key>`.
pub fn query_url(base: &Endpoint, key: &str) -> Endpoint {
    let mut e = base.join("ws");
    e.path
        .push_str(if e.path.contains('?') { "&" } else { "?" });
    e.path.push_str("listenKey=");
    e.path.push_str(key);
    e
}

fn hash(key: &str, text: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    text.hash(&mut h);
    h.finish()
}

impl Task {
    /// Serves the connection until it is lost (or no stream is left).
    async fn serve(&mut self, mut link: Link) -> Lost {
        let silence = self.settings.silence;
        // The silence and rotation timers live across reads and are reset
        // only when their deadline moves (the silence one lazily, when it
        // fires): re-arming timers per event would cost more than the event.
        let silence_timer = sleep_until(link.last_frame + silence);
        let rotate_timer = sleep_until(far());
        tokio::pin!(silence_timer, rotate_timer);
        loop {
            let rotate_at = *self
                .rotate_at
                .get_or_insert(link.opened + self.settings.rotate_after);
            if rotate_timer.deadline() != rotate_at {
                rotate_timer.as_mut().reset(rotate_at);
            }
            let next_request = self.next_request_at();
            let ack_deadline = self.requests.values().map(|r| r.deadline).min();
            tokio::select! {
                msg = link.ws.next() => {
                    if let Err(lost) = self.on_frames(&mut link, msg) {
                        return lost;
                    }
                }
                cmd = self.rx.recv() => {
                    match cmd {
                        Some(cmd) => self.on_command(cmd),
                        None => return Lost::new("closed", "every stream left"),
                    }
                    while let Ok(cmd) = self.rx.try_recv() {
                        self.on_command(cmd);
                    }
                    if self.routes.is_empty() && self.to_subscribe.is_empty() && self.idle_exit() {
                        let _ = link.ws.close(None).await;
                        return Lost::new("closed", "every stream left");
                    }
                }
                _ = sleep_until(next_request.unwrap_or_else(far)), if next_request.is_some() => {
                    if let Err(e) = self.send_request(&mut link).await {
                        return Lost::new("disconnected", format!("sending a subscription request failed: {e}"));
                    }
                }
                _ = sleep_until(ack_deadline.unwrap_or_else(far)), if ack_deadline.is_some() => {
                    if let Some(lost) = self.expire_requests() {
                        return lost;
                    }
                }
                _ = &mut silence_timer => {
                    let deadline = link.last_frame + silence;
                    if deadline <= Instant::now() {
                        return Lost::new("silent", format!("no frame from the server for {} ms", silence.as_millis()));
                    }
                    silence_timer.as_mut().reset(deadline);
                }
                _ = &mut rotate_timer => {
                    match self.rotate(link).await {
                        Ok(new) => link = new,
                        Err(lost) => return lost,
                    }
                }
            }
        }
    }

    /// Whether the connection may end now that no stream is on it: not if
    /// the pool has just handed it to a new one.
    fn idle_exit(&self) -> bool {
        let mut s = self.handle.state();
        if s.0 == 0 {
            s.1 = true;
            true
        } else {
            false
        }
    }

    /// Handles a frame and whatever else is already buffered, then wakes
    /// the readers once.
    fn on_frames(
        &mut self,
        link: &mut Link,
        first: Option<std::result::Result<Message, tokio_tungstenite::tungstenite::Error>>,
    ) -> std::result::Result<(), Lost> {
        // Only a frame that arrived counts as heard: the end of a
        // connection is not, or a gap would start after events that were
        // sent before the end and never arrived.
        let heard = |link: &mut Link, msg: &Option<std::result::Result<Message, _>>| {
            if matches!(msg, Some(Ok(m)) if !m.is_close()) {
                link.heard();
            }
        };
        heard(link, &first);
        let mut r = self.on_message(first);
        let mut n = 0;
        while r.is_ok() && n < BATCH {
            let Some(msg) = link.ws.next().now_or_never() else {
                break;
            };
            heard(link, &msg);
            r = self.on_message(msg);
            n += 1;
        }
        self.last_frame_ms = link.last_frame_ms;
        self.wake();
        r
    }

    fn wake(&mut self) {
        for sink in self.touched.drain(..) {
            sink.shared.queue.wake();
        }
    }

    fn on_message(
        &mut self,
        msg: Option<std::result::Result<Message, tokio_tungstenite::tungstenite::Error>>,
    ) -> std::result::Result<(), Lost> {
        match msg {
            Some(Ok(Message::Text(t))) => self.on_text(t.as_str()),
            Some(Ok(Message::Binary(b))) => match std::str::from_utf8(&b) {
                Ok(t) => self.on_text(t),
                Err(_) => {
                    self.broadcast(&String::from_utf8_lossy(&b), true);
                    Ok(())
                }
            },
            Some(Ok(Message::Ping(_))) => {
                self.stats.last_ping_ms.store(now_ms(), Ordering::Relaxed);
                Ok(())
            }
            Some(Ok(Message::Close(f))) => Err(Lost::new(
                "disconnected",
                match f {
                    Some(f) => format!("the server closed the stream (code {})", u16::from(f.code)),
                    None => "the server closed the stream".into(),
                },
            )),
            Some(Ok(_)) => Ok(()),
            Some(Err(e)) => Err(Lost::new(
                "disconnected",
                format!("the stream connection failed: {e}"),
            )),
            None => Err(Lost::new("disconnected", "the stream connection closed")),
        }
    }

    fn on_text(&mut self, text: &str) -> std::result::Result<(), Lost> {
        if let Some(key) = &self.query_key {
            // Query form: every message is an event of the one key, bare;
            // only an object without "e" may be something else.
            let ev = Event::from_wire(text);
            if ev.kind().is_empty() && wire::parse(text) == Incoming::ServerShutdown {
                self.shutdown_announced();
                return Ok(());
            }
            let key = key.clone();
            self.deliver(&key, text, Some(ev));
            return Ok(());
        }
        match wire::parse(text) {
            Incoming::Event { stream, data } => {
                let stream = stream.into_owned();
                self.deliver(&stream, data, None);
            }
            Incoming::Answer { id, error } => self.on_answer(id, error),
            Incoming::ServerShutdown => self.shutdown_announced(),
            Incoming::Other => self.broadcast(text, false),
            Incoming::NotJson => self.broadcast(text, true),
        }
        Ok(())
    }

    /// Delivers one event of `key` to every stream routed to it, once.
    fn deliver(&mut self, key: &str, text: &str, ev: Option<Event>) {
        let Some(sinks) = self.routes.get(key) else {
            return; // a key no stream holds any more (unsubscribed)
        };
        if self.dedup_until.is_some_and(|t| t <= Instant::now()) {
            self.dedup_until = None;
            self.ring.clear();
            self.ring_set.clear();
        }
        if self.dedup_until.is_some() {
            let h = hash(key, text);
            if !self.ring_set.insert(h) {
                return;
            }
            self.ring.push_back(h);
            if self.ring.len() > DEDUP_RING {
                if let Some(old) = self.ring.pop_front() {
                    self.ring_set.remove(&old);
                }
            }
        }
        let mut ev = ev;
        for sink in sinks {
            let e = ev.take().unwrap_or_else(|| Event::from_wire(text));
            if e.time_ms() > self.last_event_ms {
                self.last_event_ms = e.time_ms();
            }
            sink.push(e);
            if !self.touched.iter().any(|s| s.id == sink.id) {
                self.touched.push(sink.clone());
            }
        }
    }

    /// A server message that names no stream: every stream on the
    /// connection may have lost it, so every stream sees it.
    fn broadcast(&mut self, text: &str, unparsed: bool) {
        for sink in self.routes.values().flatten() {
            sink.push(if unparsed {
                Event::unparsed(text)
            } else {
                Event::from_wire(text)
            });
            if !self.touched.iter().any(|s| s.id == sink.id) {
                self.touched.push(sink.clone());
            }
        }
    }

    fn shutdown_announced(&mut self) {
        let soon =
            Instant::now() + super::super::backoff::jitter(Duration::ZERO, SHUTDOWN_REPLACE_MAX);
        if self.rotate_at.is_none_or(|t| t > soon) {
            self.rotate_at = Some(soon);
        }
    }

    fn on_command(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Subscribe { sink, key, done } => {
                let id = sink.id;
                let entry = self.routes.entry(key.clone()).or_default();
                let first = entry.is_empty();
                entry.push(sink.clone());
                self.count_streams();
                if self.query_key.is_some() {
                    // The URL subscribed it: the upgrade was the answer.
                    self.subscribed(id, &key);
                    let _ = done.send(Ok(()));
                } else if !first && self.acked.values().any(|k| *k == key) {
                    self.subscribed(id, &key);
                    let _ = done.send(Ok(()));
                } else {
                    self.to_unsubscribe.retain(|k| *k != key);
                    self.to_subscribe.push((key, Some((id, done))));
                }
            }
            Cmd::Swap {
                sink,
                old,
                new,
                done,
            } => {
                if self.query_key.is_some() {
                    let _ = done.send(Err(Error::internal(
                        "a query-form connection cannot change its key",
                    )));
                    return;
                }
                let id = sink.id;
                self.unroute(id, &old);
                self.acked.remove(&id);
                sink.shared.info().subscribed = false;
                self.routes.entry(new.clone()).or_default().push(sink);
                self.count_streams();
                self.to_unsubscribe.retain(|k| *k != new);
                // Subscribe first, then unsubscribe: never a moment with
                // neither key subscribed.
                self.to_subscribe.push((new, Some((id, done))));
            }
            Cmd::Leave { sink, key } => {
                self.unroute(sink, &key);
                self.acked.remove(&sink);
                self.to_subscribe
                    .retain(|(_, w)| w.as_ref().is_none_or(|(id, _)| *id != sink));
                self.count_streams();
            }
        }
    }

    /// Removes `sink` from `key`'s route; the key is unsubscribed once no
    /// stream holds it.
    fn unroute(&mut self, sink: u64, key: &str) {
        if let Some(sinks) = self.routes.get_mut(key) {
            sinks.retain(|s| s.id != sink);
            if sinks.is_empty() {
                self.routes.remove(key);
                if self.query_key.is_none() && !self.to_unsubscribe.iter().any(|k| k == key) {
                    self.to_unsubscribe.push(key.to_owned());
                }
            }
        }
    }

    fn count_streams(&self) {
        let n = self.routes.values().map(Vec::len).sum();
        self.stats.streams.store(n, Ordering::Relaxed);
    }

    fn subscribed(&mut self, sink: u64, key: &str) {
        self.acked.insert(sink, key.to_owned());
        if let Some(s) = self
            .routes
            .get(key)
            .and_then(|v| v.iter().find(|s| s.id == sink))
        {
            {
                let mut i = s.shared.info();
                i.connected = true;
                i.subscribed = true;
                i.conn = Some(self.stats.clone());
            }
            s.flush_resume();
        }
    }

    /// When the next request may go out, if one waits.
    fn next_request_at(&mut self) -> Option<Instant> {
        if self.to_subscribe.is_empty() && self.to_unsubscribe.is_empty() {
            return None;
        }
        let now = Instant::now();
        while self
            .sent
            .front()
            .is_some_and(|t| *t + Duration::from_secs(1) <= now)
        {
            self.sent.pop_front();
        }
        let window = if self.sent.len() < MAX_REQUESTS_PER_SEC {
            Some(now)
        } else {
            self.sent.front().map(|t| *t + Duration::from_secs(1))
        };
        let spaced = match self.sent.back() {
            Some(last) if self.sent.len() >= REQUEST_BURST => *last + REQUEST_SPACING,
            _ => now,
        };
        window.map(|w| w.max(spaced))
    }

    /// Sends one SUBSCRIBE (or, with none waiting, one UNSUBSCRIBE).
    async fn send_request(&mut self, link: &mut Link) -> Result<()> {
        let id = self.next_id;
        self.next_id += 1;
        let (method, keys, waiters, subscribing) = if !self.to_subscribe.is_empty() {
            let n = self.to_subscribe.len().min(MAX_PARAMS);
            let mut keys: Vec<String> = Vec::with_capacity(n);
            let mut waiters = Vec::new();
            let mut subscribing = Vec::new();
            for (key, w) in self.to_subscribe.drain(..n) {
                if let Some((sink, w)) = w {
                    waiters.push(w);
                    subscribing.push((sink, key.clone()));
                }
                if !keys.contains(&key) {
                    keys.push(key);
                }
            }
            ("SUBSCRIBE", keys, waiters, subscribing)
        } else {
            let n = self.to_unsubscribe.len().min(MAX_PARAMS);
            let keys: Vec<String> = self.to_unsubscribe.drain(..n).collect();
            ("UNSUBSCRIBE", keys, Vec::new(), Vec::new())
        };
        let text = json!({ "method": method, "params": keys, "id": id }).to_string();
        self.sent.push_back(Instant::now());
        self.requests.insert(
            id,
            Request {
                deadline: Instant::now() + self.settings.request_timeout,
                what: method,
                waiters,
                subscribing,
            },
        );
        link.ws
            .send(Message::text(text))
            .await
            .map_err(|e| Error::new(Status::ConnectionClosed, format!("{e}")))
    }

    fn on_answer(&mut self, id: u64, error: Option<(i64, String)>) {
        let Some(req) = self.requests.remove(&id) else {
            return; // an answer to nothing we asked: ignored
        };
        match error {
            None => {
                for (sink, key) in &req.subscribing {
                    self.subscribed(*sink, key);
                }
                for w in req.waiters {
                    let _ = w.send(Ok(()));
                }
            }
            Some((code, msg)) => {
                let mut e = Error::new(
                    Status::ApiError,
                    format!(
                        "the stream server refused {}: {} (code {code})",
                        req.what,
                        shown(&msg)
                    ),
                );
                e.api_code = code;
                for w in req.waiters {
                    let _ = w.send(Err(e.clone()));
                }
            }
        }
    }

    /// Fails requests left unanswered past their deadline; a connection
    /// that does not answer is replaced.
    fn expire_requests(&mut self) -> Option<Lost> {
        let now = Instant::now();
        let late: Vec<u64> = self
            .requests
            .iter()
            .filter(|(_, r)| r.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        let mut what = None;
        for id in late {
            if let Some(r) = self.requests.remove(&id) {
                let e = Error::timeout(format!(
                    "no answer to {} within {} ms",
                    r.what,
                    self.settings.request_timeout.as_millis()
                ));
                for w in r.waiters {
                    let _ = w.send(Err(e.clone()));
                }
                what = Some(r.what);
            }
        }
        what.map(|w| {
            Lost::new(
                "disconnected",
                format!(
                    "the stream server did not answer {w} within {} ms",
                    self.settings.request_timeout.as_millis()
                ),
            )
        })
    }

    /// Opens a new connection beside the old one, subscribes every key on
    /// it, delivers from the old one until the new one has caught up, then
    /// switches: nothing lost, nothing delivered twice. Returns the link
    /// to serve next (the old one if the new one failed).
    async fn rotate(&mut self, mut old: Link) -> std::result::Result<Link, Lost> {
        self.rotate_at = Some(Instant::now() + ROTATE_RETRY);
        self.dedup_until =
            Some(Instant::now() + OVERLAP_MAX + DEDUP_WINDOW + self.settings.request_timeout);
        let settings = self.settings.clone();
        let url = self.url();
        let keys: Vec<String> = self.routes.keys().cloned().collect();
        let query = self.query_key.is_some();
        let request_timeout = settings.request_timeout;
        // Phase 1: connect and subscribe beside the old one, serving it.
        let mut opening = Box::pin(async move {
            let mut ws = settings.dialer.connect(&url).await?;
            let mut held = Vec::new();
            if !query {
                for (n, chunk) in keys.chunks(MAX_PARAMS).enumerate() {
                    if n > 0 {
                        tokio::time::sleep(Duration::from_millis(
                            1000 / MAX_REQUESTS_PER_SEC as u64,
                        ))
                        .await;
                    }
                    let id = 1_000_000_000 + n as u64;
                    let text = json!({"method":"SUBSCRIBE","params":chunk,"id":id}).to_string();
                    ws.send(Message::text(text))
                        .await
                        .map_err(|e| Error::closed(format!("{e}")))?;
                    // Events may precede the answer: hold them.
                    let deadline = Instant::now() + request_timeout;
                    loop {
                        let msg = tokio::time::timeout_at(deadline, ws.next())
                            .await
                            .map_err(|_| Error::timeout("no answer to SUBSCRIBE"))?;
                        match msg {
                            Some(Ok(Message::Text(t))) => match wire::parse(t.as_str()) {
                                Incoming::Answer {
                                    id: got,
                                    error: None,
                                } if got == id => break,
                                Incoming::Answer {
                                    id: got,
                                    error: Some((_, m)),
                                } if got == id => {
                                    return Err(Error::new(Status::ApiError, m));
                                }
                                _ => held.push(t.as_str().to_owned()),
                            },
                            Some(Ok(_)) => {}
                            _ => return Err(Error::closed("the new connection closed")),
                        }
                    }
                }
            }
            Ok::<_, Error>((ws, held))
        });
        let (ws, held_text) = loop {
            tokio::select! {
                r = &mut opening => match r {
                    Ok(ok) => break ok,
                    Err(_) => return Ok(old), // keep the old one; try later
                },
                msg = old.ws.next() => self.on_frames(&mut old, msg)?,
            }
        };
        // Phase 2: both open. Deliver from the old one, hold the new one's.
        let mut new = Link::new(ws);
        let mut held: Vec<String> = held_text;
        let quiet_at = Instant::now() + OVERLAP_QUIET;
        let max_at = Instant::now() + OVERLAP_MAX;
        loop {
            let caught_up = !held.is_empty() && held.iter().all(|t| self.seen(t));
            if caught_up {
                break;
            }
            tokio::select! {
                msg = old.ws.next() => {
                    if self.on_frames(&mut old, msg).is_err() {
                        break; // the old one died: switch now
                    }
                }
                msg = new.ws.next() => {
                    new.heard();
                    match msg {
                        Some(Ok(Message::Text(t))) => held.push(t.as_str().to_owned()),
                        Some(Ok(Message::Binary(b))) => held.push(String::from_utf8_lossy(&b).into_owned()),
                        Some(Ok(_)) => {}
                        _ => return Ok(old), // the new one failed: keep the old
                    }
                }
                _ = sleep_until(quiet_at), if held.is_empty() => break,
                _ = sleep_until(max_at) => break,
            }
        }
        // Switch: what the new one holds that was not delivered goes next.
        let _ = old.ws.close(None).await;
        // Requests still unanswered on the old one: every key routed when
        // the rotation began is subscribed on the new one.
        for (_, r) in std::mem::take(&mut self.requests) {
            for (sink, key) in &r.subscribing {
                self.subscribed(*sink, key);
            }
            for w in r.waiters {
                let _ = w.send(Ok(()));
            }
        }
        self.dedup_until = Some(Instant::now() + DEDUP_WINDOW);
        for text in held {
            self.on_text(&text)?;
        }
        self.wake();
        for sink in self.routes.values().flatten() {
            sink.shared.info().reconnects += 1;
        }
        self.rotate_at = None;
        Ok(new)
    }

    /// Whether a message held from the new connection was already
    /// delivered from the old one.
    fn seen(&self, text: &str) -> bool {
        let h = match (&self.query_key, wire::parse(text)) {
            (Some(key), _) => hash(key, text),
            (None, Incoming::Event { stream, data }) => hash(&stream, data),
            // Protocol messages and the like: nothing to wait for.
            _ => return true,
        };
        self.ring_set.contains(&h)
    }
}

/// Server text fit for an error message: no control characters, bounded.
fn shown(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(200).collect()
}

fn far() -> Instant {
    Instant::now() + Duration::from_secs(86400 * 365)
}
