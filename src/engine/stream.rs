//! The user data stream: events delivered in order, with keepalive, key
//! renewal, reconnection, rotation and silence detection done for the user.
//!
//! One task per stream runs on the shared runtime. It owns the stream
//! connection and queues every event it reads. Beside the reads it keeps the
//! listenKey alive on schedule (on the client's WebSocket API session), and
//! replaces the connection when it is lost, goes silent, nears the server's
//! 24 h limit (make-before-break, no duplicate, no loss), or its key
//! expires, changes or is reported unknown (-1125). Whenever events may have
//! been lost it queues a `binance.stream_gap` event saying why and when.

use super::answer::Answer;
use super::client::{dialer, listen_key_of, Client, Gate};
use super::config::Config;
use super::connect::{Dialer, Ws};
use super::error::{Error, Result, Status};
use super::event::{now_ms, Event, LISTEN_KEY_RENEWED, STREAM_DISCONNECTED, STREAM_GAP};
use super::queue::{Popped, Queue};
use super::runtime::RuntimeRef;
use super::session::Session;
use super::url::Endpoint;
use futures_util::{FutureExt, StreamExt};
use serde_json::json;
use std::collections::VecDeque;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::runtime::Handle;
use tokio::task::JoinHandle;
use tokio::time::{sleep_until, Instant};
use tokio_tungstenite::tungstenite::Message;

/// A connection that lived this long was healthy: the backoff starts over.
const HEALTHY_AFTER: Duration = Duration::from_secs(10);
/// During a rotation, switch once the new connection has been quiet this
/// long with nothing the old one has not delivered.
const OVERLAP_QUIET: Duration = Duration::from_millis(300);
/// A rotation's overlap never lasts longer than this.
const OVERLAP_MAX: Duration = Duration::from_secs(5);
/// After a switch, events already delivered are recognised this long.
const DEDUP_WINDOW: Duration = Duration::from_secs(10);
const DEDUP_RING: usize = 1024;
/// A failed keepalive is retried after this (or the interval, if shorter).
const KEEPALIVE_RETRY: Duration = Duration::from_secs(10);

/// The callback form: called in order, from the stream's own thread.
pub type Callback = Box<dyn FnMut(Event) + Send>;

/// What a stream needs from the client's config.
#[derive(Clone)]
pub struct StreamSettings {
    pub base: Endpoint,
    pub dialer: Dialer,
    pub keepalive: Duration,
    pub silence: Duration,
    pub rotate_after: Duration,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    pub capacity: usize,
}

impl StreamSettings {
    pub fn from_config(config: &Config) -> Result<StreamSettings> {
        Ok(StreamSettings {
            base: config.stream_endpoint.clone(),
            dialer: dialer(config, &config.stream_endpoint)?,
            keepalive: config.keepalive_interval,
            silence: config.silence_timeout,
            rotate_after: config.rotate_after,
            backoff_initial: config.backoff_initial,
            backoff_max: config.backoff_max,
            capacity: config.queue_capacity,
        })
    }
}

/// A snapshot of a stream's health.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Health {
    pub connected: bool,
    pub reconnects: u64,
    pub events_delivered: u64,
    pub events_dropped: u64,
    pub events_queued: u64,
    pub last_event_ms: i64,
    pub key_age_ms: i64,
    /// Status of the latest keepalive (0 = OK); -1 before the first.
    pub last_keepalive_status: i32,
    pub last_keepalive_ms: i64,
    pub key_renewals: u64,
    pub gaps: u64,
}

struct Info {
    connected: bool,
    reconnects: u64,
    last_event_ms: i64,
    key_since: Instant,
    last_keepalive_status: i32,
    last_keepalive_ms: i64,
    key_renewals: u64,
    gaps: u64,
}

struct Shared {
    queue: Queue,
    info: Mutex<Info>,
}

impl Shared {
    fn info(&self) -> MutexGuard<'_, Info> {
        self.info.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// An open user data stream.
pub struct UserStream {
    shared: Arc<Shared>,
    task: Mutex<Option<JoinHandle<()>>>,
    dispatcher: Mutex<Option<std::thread::JoinHandle<()>>>,
    runtime: RuntimeRef,
    gate: Gate,
    callback_mode: bool,
}

impl UserStream {
    /// Obtains the listenKey, connects to `<stream base>/ws/<listenKey>` and
    /// starts delivering. Blocks until connected or failed.
    pub fn open(client: &Client, callback: Option<Callback>) -> Result<UserStream> {
        if Handle::try_current().is_ok() {
            return Err(Error::invalid(
                "a stream cannot be opened on a thread that runs async tasks (a library callback, or a Tokio runtime's thread)",
            ));
        }
        let settings = StreamSettings::from_config(&client.config)?;
        let runtime = client.runtime.clone();
        let session = client.session.clone();
        let (key, ws) = runtime.handle().block_on(establish(&session, &settings))?;
        let shared = Arc::new(Shared {
            queue: Queue::new(settings.capacity),
            info: Mutex::new(Info {
                connected: true,
                reconnects: 0,
                last_event_ms: 0,
                key_since: Instant::now(),
                last_keepalive_status: -1,
                last_keepalive_ms: 0,
                key_renewals: 0,
                gaps: 0,
            }),
        });
        let runner = Runner {
            next_keepalive: Instant::now() + settings.keepalive,
            backoff: Backoff::new(settings.backoff_initial, settings.backoff_max),
            session,
            settings,
            shared: shared.clone(),
            key,
            link: Some(Link::new(ws)),
            keepalive: None,
            ring: VecDeque::new(),
            dedup_until: None,
            pending_replace: None,
            batching: false,
        };
        let task = runtime.handle().spawn(runner.run());
        let callback_mode = callback.is_some();
        let dispatcher = match callback {
            Some(cb) => Some(spawn_dispatcher(shared.clone(), cb).inspect_err(|_| task.abort())?),
            None => None,
        };
        Ok(UserStream {
            shared,
            task: Mutex::new(Some(task)),
            dispatcher: Mutex::new(dispatcher),
            runtime,
            gate: Gate::default(),
            callback_mode,
        })
    }

    /// The next event, waiting up to `timeout`. `Ok(None)` when nothing
    /// arrived in time; STREAM_CLOSED once the stream is closed.
    pub fn next(&self, timeout: Duration) -> Result<Option<Event>> {
        if self.callback_mode {
            return Err(Error::invalid(
                "stream: this stream delivers to its callback; binance_user_stream_next is not available",
            ));
        }
        let _in = self
            .gate
            .enter()
            .map_err(|_| Error::new(Status::StreamClosed, "the stream is closed"))?;
        match self.shared.queue.pop(timeout) {
            Popped::Event(ev) => Ok(Some(ev)),
            Popped::TimedOut => Ok(None),
            Popped::Closed => Err(Error::new(Status::StreamClosed, "the stream is closed")),
        }
    }

    pub fn health(&self) -> Health {
        let (delivered, dropped, queued) = self.shared.queue.counts();
        let i = self.shared.info();
        Health {
            connected: i.connected,
            reconnects: i.reconnects,
            events_delivered: delivered,
            events_dropped: dropped,
            events_queued: queued as u64,
            last_event_ms: i.last_event_ms,
            key_age_ms: i.key_since.elapsed().as_millis() as i64,
            last_keepalive_status: i.last_keepalive_status,
            last_keepalive_ms: i.last_keepalive_ms,
            key_renewals: i.key_renewals,
            gaps: i.gaps,
        }
    }

    /// Ends the stream without freeing anything: blocked readers wake with
    /// STREAM_CLOSED, later reads are refused, the callback thread ends
    /// after the callback in progress, and the connection task is told to
    /// stop. Never blocks; safe to race with `next` from any thread.
    pub fn shutdown(&self) {
        self.gate.shut(|| self.shared.queue.close());
        if let Some(task) = self.task.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            task.abort();
        }
    }

    /// Stops everything: `shutdown`, then waits for readers to leave, for
    /// the task to end (its socket closes) and for the callback thread.
    /// The listenKey is left alone: other streams and processes share it.
    pub fn close(&self) {
        self.shutdown();
        self.gate.close(|| {});
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(task) = task {
            if Handle::try_current().is_err() {
                let _ = self.runtime.handle().block_on(task);
            }
        }
        let dispatcher = self
            .dispatcher
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(d) = dispatcher {
            // Closing from inside the callback: the thread ends by itself
            // as soon as the callback returns.
            if d.thread().id() != std::thread::current().id() {
                let _ = d.join();
            }
        }
    }
}

impl Drop for UserStream {
    fn drop(&mut self) {
        self.close();
    }
}

fn spawn_dispatcher(shared: Arc<Shared>, mut cb: Callback) -> Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("binance-uds-cb".into())
        .spawn(move || loop {
            match shared.queue.pop(Duration::from_secs(3600)) {
                Popped::Event(ev) => cb(ev),
                Popped::TimedOut => {}
                Popped::Closed => return,
            }
        })
        .map_err(|e| Error::internal(format!("starting the callback thread failed: {e}")))
}

/// A valid listenKey (start returns the account's key, extended) and a
/// connection to its stream.
async fn establish(session: &Session, settings: &StreamSettings) -> Result<(String, Ws)> {
    let answer = session.request_async("userDataStream.start").await?;
    let key = listen_key_of("userDataStream.start", &answer.result)
        .inspect_err(|e| session.replace_connection(e))?;
    let url = settings.base.join(&format!("ws/{key}"));
    let ws = settings.dialer.connect(&url).await.map_err(|mut e| {
        // The URL carries the listenKey: show only its start, as events do.
        e.message = e.message.replace(&key, &mask(&key));
        e.context("user data stream")
    })?;
    Ok((key, ws))
}

struct Link {
    ws: Ws,
    opened: Instant,
    last_frame: Instant,
    last_frame_ms: i64,
    rotate_at: Option<Instant>,
}

impl Link {
    fn new(ws: Ws) -> Link {
        let now = Instant::now();
        Link {
            ws,
            opened: now,
            last_frame: now,
            last_frame_ms: now_ms(),
            rotate_at: None,
        }
    }

    fn heard(&mut self) {
        self.last_frame = Instant::now();
        self.last_frame_ms = now_ms();
    }
}

/// Why the current connection must be replaced.
enum Replace {
    Lost(String),
    Silent,
    KeyExpired,
    KeyInvalid(String),
    KeyChanged,
    Rotate,
    /// The client was freed.
    End,
}

type Pending = Pin<Box<dyn Future<Output = Result<Answer>> + Send>>;

struct Runner {
    session: Arc<Session>,
    settings: StreamSettings,
    shared: Arc<Shared>,
    key: String,
    link: Option<Link>,
    next_keepalive: Instant,
    keepalive: Option<Pending>,
    backoff: Backoff,
    /// Hashes of recently delivered events, kept around rotations.
    ring: VecDeque<u64>,
    dedup_until: Option<Instant>,
    /// Why a rotation gave up (a key expiry, a lost connection): the next
    /// `serve` round acts on it.
    pending_replace: Option<Replace>,
    /// Events are queued without waking the reader (serve wakes it once).
    batching: bool,
}

impl Runner {
    async fn run(mut self) {
        loop {
            let replace = self.serve().await;
            let outcome = match replace {
                Replace::End => Err(Error::closed("the client was freed")),
                Replace::Rotate => {
                    self.rotate().await;
                    Ok(())
                }
                Replace::Lost(msg) => self.recover("disconnected", &msg).await,
                Replace::Silent => {
                    let msg = format!(
                        "no frame from the server for {} ms",
                        self.settings.silence.as_millis()
                    );
                    self.recover("silent", &msg).await
                }
                Replace::KeyExpired => {
                    self.recover("listen_key_expired", "the server sent listenKeyExpired")
                        .await
                }
                Replace::KeyInvalid(msg) => self.recover("listen_key_invalid", &msg).await,
                Replace::KeyChanged => {
                    self.recover(
                        "listen_key_changed",
                        "userDataStream.ping returned a different listenKey",
                    )
                    .await
                }
            };
            if outcome.is_err() {
                // The client was freed: nothing can keep this stream alive.
                self.shared.info().connected = false;
                self.shared.queue.close();
                return;
            }
        }
    }

    /// Reads the current connection and runs the keepalive until the
    /// connection must be replaced.
    async fn serve(&mut self) -> Replace {
        if let Some(r) = self.pending_replace.take() {
            return r;
        }
        let mut closing = self.session.closing_signal();
        let silence = self.settings.silence;
        // Timers live across reads and are reset only when their deadline
        // moves: re-arming three timers per event would cost more than the
        // event. The silence timer is checked lazily when it fires.
        let (silence_at, rotate_at) = match self.link.as_mut() {
            Some(link) => (
                link.last_frame + silence,
                *link
                    .rotate_at
                    .get_or_insert(link.opened + self.settings.rotate_after),
            ),
            None => return Replace::Lost("no connection".into()),
        };
        let silence_timer = sleep_until(silence_at);
        let rotate_timer = sleep_until(rotate_at);
        let keepalive_timer = sleep_until(self.next_keepalive);
        tokio::pin!(silence_timer, rotate_timer, keepalive_timer);
        loop {
            let Some(link) = self.link.as_mut() else {
                return Replace::Lost("no connection".into());
            };
            let keepalive_due = self.keepalive.is_none();
            tokio::select! {
                msg = link.ws.next() => {
                    link.heard();
                    // The first event wakes the reader at once; what else
                    // is already buffered follows without a wake each, and
                    // one wake at the end covers the batch.
                    let mut r = self.on_message(msg);
                    self.batching = true;
                    let mut n = 0;
                    while r.is_none() && n < 64 {
                        let Some(link) = self.link.as_mut() else { break };
                        let Some(msg) = link.ws.next().now_or_never() else { break };
                        link.heard();
                        r = self.on_message(msg);
                        n += 1;
                    }
                    self.batching = false;
                    self.shared.queue.wake();
                    if let Some(r) = r {
                        return r;
                    }
                }
                r = async { self.keepalive.as_mut().expect("in flight").await }, if !keepalive_due => {
                    self.keepalive = None;
                    if let Some(r) = self.on_keepalive(r) {
                        return r;
                    }
                    keepalive_timer.as_mut().reset(self.next_keepalive);
                }
                _ = &mut keepalive_timer, if keepalive_due => {
                    let session = self.session.clone();
                    self.keepalive = Some(Box::pin(async move {
                        session.request_async("userDataStream.ping").await
                    }));
                }
                _ = &mut silence_timer => {
                    let deadline = self.link.as_ref().map_or(Instant::now(), |l| l.last_frame + silence);
                    if deadline <= Instant::now() {
                        return Replace::Silent;
                    }
                    silence_timer.as_mut().reset(deadline);
                }
                _ = &mut rotate_timer => return Replace::Rotate,
                _ = closing.wait_for(|c| *c) => return Replace::End,
            }
        }
    }

    fn on_message(
        &mut self,
        msg: Option<std::result::Result<Message, tokio_tungstenite::tungstenite::Error>>,
    ) -> Option<Replace> {
        match msg {
            Some(Ok(Message::Text(t))) => self.deliver(Event::from_wire(t.as_str())),
            Some(Ok(Message::Close(f))) => Some(Replace::Lost(match f {
                Some(f) => format!("the server closed the stream (code {})", u16::from(f.code)),
                None => "the server closed the stream".into(),
            })),
            Some(Ok(_)) => None,
            Some(Err(e)) => Some(Replace::Lost(format!("the stream connection failed: {e}"))),
            None => Some(Replace::Lost("the stream connection closed".into())),
        }
    }

    fn on_keepalive(&mut self, r: Result<Answer>) -> Option<Replace> {
        let now = Instant::now();
        let r = r.and_then(|a| listen_key_of("userDataStream.ping", &a.result));
        {
            let mut i = self.shared.info();
            i.last_keepalive_status = match &r {
                Ok(_) => 0,
                Err(e) => e.status as i32,
            };
            i.last_keepalive_ms = now_ms();
        }
        match r {
            Ok(k) if k == self.key => {
                self.next_keepalive = now + self.settings.keepalive;
                None
            }
            Ok(_) => Some(Replace::KeyChanged),
            Err(e) if e.api_code == -1125 => Some(Replace::KeyInvalid(e.message)),
            Err(e) => {
                let mut next = now + self.settings.keepalive.min(KEEPALIVE_RETRY);
                if e.retry_after_ms > now_ms() {
                    let wait = Duration::from_millis((e.retry_after_ms - now_ms()) as u64);
                    next = next.max(now + wait);
                }
                self.next_keepalive = next;
                None
            }
        }
    }

    /// Queues an event (unless it is a duplicate from a rotation); says
    /// whether the key expired.
    fn deliver(&mut self, ev: Event) -> Option<Replace> {
        if self.dedup_until.is_some_and(|t| t <= Instant::now()) {
            self.dedup_until = None;
            self.ring.clear();
        }
        if self.dedup_until.is_some() {
            let h = hash(ev.json());
            if self.ring.contains(&h) {
                return None;
            }
            if self.ring.len() >= DEDUP_RING {
                self.ring.pop_front();
            }
            self.ring.push_back(h);
        }
        let expired = ev.kind() == "listenKeyExpired";
        self.shared.info().last_event_ms = now_ms();
        if self.batching {
            self.shared.queue.push_deferred(ev);
        } else {
            self.shared.queue.push(ev);
        }
        expired.then_some(Replace::KeyExpired)
    }

    /// Replaces a lost or useless connection: reports the disconnect,
    /// obtains a valid key and reconnects with backoff, then reports the gap.
    /// Fails only when the client was freed.
    async fn recover(&mut self, reason: &str, message: &str) -> Result<()> {
        let (from_ms, healthy) = match self.link.take() {
            Some(l) => (l.last_frame_ms, l.opened.elapsed() >= HEALTHY_AFTER),
            None => (now_ms(), false),
        };
        self.keepalive = None;
        self.shared.info().connected = false;
        self.shared.queue.push_library(Event::library(
            STREAM_DISCONNECTED,
            now_ms(),
            json!({ "reason": reason, "message": message }),
        ));
        if healthy {
            self.backoff.reset();
        }
        let (key, ws) = loop {
            if let Some(delay) = self.backoff.delay() {
                let mut closing = self.session.closing_signal();
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = closing.wait_for(|c| *c) => {}
                }
            }
            if self.session.is_closing() {
                return Err(Error::closed("the client was freed"));
            }
            match establish(&self.session, &self.settings).await {
                Ok(ok) => break ok,
                Err(e) => {
                    if self.session.is_closing() {
                        return Err(e);
                    }
                    self.backoff.failed(e.retry_after_ms);
                }
            }
        };
        let to_ms = now_ms();
        let renewed = key != self.key;
        {
            let mut i = self.shared.info();
            i.connected = true;
            i.reconnects += 1;
            i.gaps += 1;
            if renewed {
                i.key_renewals += 1;
                i.key_since = Instant::now();
            }
        }
        self.shared.queue.push_library(Event::library(
            STREAM_GAP,
            to_ms,
            json!({ "reason": reason, "message": message, "from_ms": from_ms, "to_ms": to_ms }),
        ));
        if renewed {
            self.shared.queue.push_library(Event::library(
                LISTEN_KEY_RENEWED,
                to_ms,
                json!({ "reason": reason, "listenKey": mask(&key) }),
            ));
        }
        self.key = key;
        self.link = Some(Link::new(ws));
        self.next_keepalive = Instant::now() + self.settings.keepalive;
        Ok(())
    }

    /// Opens a new connection before closing the old one. Events are
    /// delivered from the old connection until the new one has caught up;
    /// anything both carried is delivered once.
    async fn rotate(&mut self) {
        let url = self.settings.base.join(&format!("ws/{}", self.key));
        let dialer = self.settings.dialer.clone();
        let mut connecting = Box::pin(async move { dialer.connect(&url).await });
        self.dedup_until = Some(Instant::now() + OVERLAP_MAX + DEDUP_WINDOW);
        // Phase 1: serve the old connection while the new one connects.
        let ws = loop {
            let Some(old) = self.link.as_mut() else {
                return;
            };
            tokio::select! {
                r = &mut connecting => match r {
                    Ok(ws) => break ws,
                    Err(_) => {
                        old.rotate_at = Some(Instant::now() + Duration::from_secs(30));
                        return;
                    }
                },
                msg = old.ws.next() => {
                    old.heard();
                    if let Some(r) = self.on_message(msg) {
                        self.pending_replace = Some(r);
                        return;
                    }
                }
            }
        };
        // Phase 2: both open. Deliver from the old one, hold the new one's.
        let mut new = Link::new(ws);
        let mut held: Vec<Event> = Vec::new();
        let quiet_at = Instant::now() + OVERLAP_QUIET;
        let max_at = Instant::now() + OVERLAP_MAX;
        while let Some(old) = self.link.as_mut() {
            let caught_up =
                !held.is_empty() && held.iter().all(|e| self.ring.contains(&hash(e.json())));
            if caught_up {
                break;
            }
            tokio::select! {
                msg = old.ws.next() => {
                    old.heard();
                    match self.on_message(msg) {
                        None => {}
                        Some(Replace::KeyExpired) => {
                            self.pending_replace = Some(Replace::KeyExpired);
                            return;
                        }
                        Some(_) => break, // the old one died: switch now
                    }
                }
                msg = new.ws.next() => {
                    new.heard();
                    match msg {
                        Some(Ok(Message::Text(t))) => held.push(Event::from_wire(t.as_str())),
                        Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                            // The new one failed: keep the old, try later.
                            if let Some(old) = self.link.as_mut() {
                                old.rotate_at = Some(Instant::now() + Duration::from_secs(30));
                            }
                            return;
                        }
                        Some(Ok(_)) => {}
                    }
                }
                _ = sleep_until(quiet_at), if held.is_empty() => break,
                _ = sleep_until(max_at) => break,
            }
        }
        // Switch: what the new one holds that was not delivered goes next.
        self.link = Some(new);
        self.dedup_until = Some(Instant::now() + DEDUP_WINDOW);
        for ev in held {
            if let Some(Replace::KeyExpired) = self.deliver(ev) {
                self.pending_replace = Some(Replace::KeyExpired);
                return;
            }
        }
        self.shared.info().reconnects += 1;
    }
}

fn hash(text: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}

/// The first characters of a listenKey, enough to recognise it in a log.
fn mask(key: &str) -> String {
    format!("{}…", &key[..key.len().min(4)])
}

/// Exponential backoff with jitter and a cap; honours retry-after times.
struct Backoff {
    attempt: u32,
    initial: Duration,
    max: Duration,
    not_before: Option<Instant>,
    seed: u64,
}

impl Backoff {
    fn new(initial: Duration, max: Duration) -> Backoff {
        let seed = (now_ms() as u64) ^ (std::process::id() as u64).rotate_left(32) | 1;
        Backoff {
            attempt: 0,
            initial,
            max,
            not_before: None,
            seed,
        }
    }

    fn reset(&mut self) {
        self.attempt = 0;
    }

    /// The wait before the next attempt: none for the first after a reset,
    /// then initial * 2^n capped at max, each drawn between half and all of
    /// it so that many clients do not reconnect in step.
    fn delay(&mut self) -> Option<Duration> {
        let mut wait = Duration::ZERO;
        if self.attempt > 0 {
            let exp = self.attempt.saturating_sub(1).min(20);
            let base = self.initial.saturating_mul(1 << exp).min(self.max);
            let half = base / 2;
            let jitter = self.random() % (half.as_millis() as u64 + 1);
            wait = half + Duration::from_millis(jitter);
        }
        if let Some(t) = self.not_before.take() {
            wait = wait.max(t.saturating_duration_since(Instant::now()));
        }
        (!wait.is_zero()).then_some(wait)
    }

    fn failed(&mut self, retry_after_ms: i64) {
        self.attempt = self.attempt.saturating_add(1);
        let now = now_ms();
        if retry_after_ms > now {
            // Never wait more than an hour on the server's word.
            let wait = ((retry_after_ms - now) as u64).min(3_600_000);
            self.not_before = Some(Instant::now() + Duration::from_millis(wait));
        }
    }

    fn random(&mut self) -> u64 {
        // xorshift64: jitter needs spread, not secrecy.
        let mut x = self.seed;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.seed = x;
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_up_to_the_cap() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(1000));
        assert_eq!(b.delay(), None, "first attempt after a reset is immediate");
        let mut last_base = 0;
        for n in 1..=8u32 {
            b.failed(0);
            let d = b.delay().unwrap().as_millis() as u64;
            let base = (100u64 << (n - 1)).min(1000);
            assert!(
                d >= base / 2 && d <= base,
                "attempt {n}: {d} ms not in [{}, {base}]",
                base / 2
            );
            last_base = base;
        }
        assert_eq!(last_base, 1000);
        b.reset();
        assert_eq!(b.delay(), None);
    }

    #[test]
    fn backoff_honours_retry_after() {
        let mut b = Backoff::new(Duration::from_millis(10), Duration::from_millis(20));
        b.failed(now_ms() + 2000);
        let d = b.delay().unwrap();
        assert!(d > Duration::from_millis(1500), "{d:?}");
    }

    #[test]
    fn mask_shows_a_prefix_only() {
        assert_eq!(mask("abcdefgh"), "abcd…");
        assert_eq!(mask("ab"), "ab…");
    }
}
