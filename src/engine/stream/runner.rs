//! One account's stream, kept alive: the listenKey pinged on schedule (on
//! the client's WebSocket API session), renewed when it expires, changes
//! or is reported unknown (-1125), and the stream moved to a new
//! connection when its connection is lost. Whenever events may have been
//! lost it queues a `binance.stream_gap` saying why and over what time.

use super::conn::{Answer as Joined, Membership};
use super::sink::{Resume, Signal, Sink};
use super::{mask, pool, StreamSettings};
use crate::engine::api::session::Session;
use crate::engine::backoff::{jitter, Backoff};
use crate::engine::client::Keys;
use crate::engine::config::StreamForm;
use crate::engine::error::{Error, Result};
use crate::engine::event::{now_ms, Event, ACCOUNT_SNAPSHOT_FAILED, STREAM_DISCONNECTED};
use crate::engine::rest::{refused_unsent, Rest};
use crate::engine::retry::retry_wait;
use serde_json::json;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};

/// A connection that lived this long was healthy: the backoff starts over.
const HEALTHY_AFTER: Duration = Duration::from_secs(10);
/// A failed account snapshot is retried after at least this, and at most
/// (unless the server says longer) this backoff cap: the interval at which
/// Binance.Net's UserDataTracker polls while disconnected, so that a book
/// is never stale for longer than 30 s after REST recovers.
const RESYNC_RETRY_MIN: Duration = Duration::from_secs(1);
const RESYNC_BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A snapshot the library declined to send (weight or a 429/418's time)
/// is tried at that time plus up to this, so that the streams of many
/// accounts refused together do not all try again in the same instant.
const RESYNC_SPREAD: Duration = Duration::from_secs(1);
/// A failed keepalive is retried after this (or the interval, if shorter).
const KEEPALIVE_RETRY: Duration = Duration::from_secs(10);

type Pending = Pin<Box<dyn Future<Output = Result<String>> + Send>>;
type Snapshot = Pin<Box<dyn Future<Output = Result<Event>> + Send>>;

/// Account resync (opt-in): the snapshot in flight (waiting for its turn
/// in the request budget's queue, then running), whether gaps arrived
/// while it was (they coalesce into one more), since when the next one is
/// owed (its place in the queue), and when a failed one is tried again.
struct Resync {
    rest: Arc<Rest>,
    in_flight: Option<Snapshot>,
    again: bool,
    since_ms: Option<i64>,
    /// The gap the snapshot in flight heals: a failed one's retry keeps
    /// its place in the queue.
    in_flight_since: i64,
    retry_at: Option<Instant>,
    backoff: Backoff,
}

/// A valid listenKey (start returns the account's key, extended) and the
/// stream subscribed to it on a connection.
pub async fn establish(
    keys: &Keys,
    settings: &StreamSettings,
    sink: &Arc<Sink>,
    resume: impl FnOnce(&str) -> Option<Resume>,
) -> Result<(String, Membership)> {
    let key = keys.start().await?;
    sink.set_resume(resume(&key));
    let conn = pool::acquire(&settings.conn, &key);
    let member = Membership::join(conn, sink, &key).await.map_err(|mut e| {
        e.message = e.message.replace(&key, &mask(&key));
        e
    })?;
    Ok((key, member))
}

/// `establish` for an open that does not wait for the subscription: the
/// key, and the subscription sent (or queued to be) with its answer to
/// come; the runner reports it (`Runner::joining`).
pub async fn establish_later(
    keys: &Keys,
    settings: &StreamSettings,
    sink: &Arc<Sink>,
) -> Result<(String, Membership, Joined)> {
    let key = keys.start().await?;
    let conn = pool::acquire(&settings.conn, &key);
    // Before the subscription is sent: its answer may come at once.
    sink.set_joining(now_ms());
    let (member, joined) = Membership::join_later(conn, sink, &key)?;
    Ok((key, member, joined))
}

/// Why the stream must be renewed or moved, and since when events may
/// have been lost.
struct Trouble {
    reason: &'static str,
    message: String,
    from_ms: i64,
    /// The connection is gone (not just the key).
    disconnected: bool,
}

pub struct Runner {
    pub session: Arc<Session>,
    pub keys: Keys,
    pub settings: Arc<StreamSettings>,
    pub sink: Arc<Sink>,
    pub signals: mpsc::UnboundedReceiver<Signal>,
    pub key: String,
    pub member: Option<Membership>,
    pub next_keepalive: Instant,
    keepalive: Option<Pending>,
    backoff: Backoff,
    /// The latest moment the key was known to be valid (ms since epoch).
    key_valid_ms: i64,
    resync: Option<Resync>,
    /// The answer to the subscription of a stream opened without waiting
    /// for it (and since when it was asked), until it comes.
    joining: Option<(Joined, i64)>,
}

impl Runner {
    pub fn new(
        keys: Keys,
        settings: Arc<StreamSettings>,
        sink: Arc<Sink>,
        signals: mpsc::UnboundedReceiver<Signal>,
        key: String,
        member: Membership,
        rest: Option<Arc<Rest>>,
    ) -> Runner {
        let resync = rest.map(|rest| Resync {
            rest,
            in_flight: None,
            again: false,
            since_ms: None,
            in_flight_since: 0,
            retry_at: None,
            backoff: Backoff::new(
                settings.backoff_initial.max(Duration::from_secs(1)),
                RESYNC_BACKOFF_MAX,
            ),
        });
        Runner {
            next_keepalive: first_keepalive(settings.keepalive),
            backoff: Backoff::new(settings.backoff_initial, settings.backoff_max),
            session: keys.session.clone(),
            keys,
            settings,
            sink,
            signals,
            key,
            member: Some(member),
            keepalive: None,
            key_valid_ms: now_ms(),
            resync,
            joining: None,
        }
    }

    /// The stream was opened without waiting for `joined`, its first
    /// subscription's answer: it is reported as it comes.
    pub fn joining(mut self, joined: Joined) -> Runner {
        self.joining = Some((joined, now_ms()));
        self
    }

    /// The first subscription's answer came: `binance.stream_subscribed`,
    /// or, refused, the stream recovers as from a lost connection.
    fn on_joined(&mut self, r: Result<()>, since_ms: i64) -> Option<Trouble> {
        match r {
            Ok(()) => {
                // Queued by the connection task as the answer came, before
                // any event of the subscription; this only if it had not.
                self.sink.flush_joined();
                None
            }
            Err(e) => {
                self.sink.clear_joining();
                Some(Trouble {
                    reason: "subscribe_failed",
                    message: e.message.replace(&self.key, &mask(&self.key)),
                    from_ms: since_ms,
                    disconnected: true,
                })
            }
        }
    }

    pub async fn run(mut self) {
        let mut closing = self.session.closing_signal();
        // The account's state once at the start, behind nothing.
        self.want_snapshot(now_ms());
        loop {
            let keepalive_idle = self.keepalive.is_none();
            let snapshot_in_flight = self.resync.as_ref().is_some_and(|r| r.in_flight.is_some());
            let snapshot_retry = self.resync.as_ref().and_then(|r| r.retry_at);
            let joining = self.joining.is_some();
            let trouble = tokio::select! {
                r = async { self.joining.as_mut().expect("joining").0.as_mut().await }, if joining => {
                    let since_ms = self.joining.take().map_or(0, |j| j.1);
                    self.on_joined(r, since_ms)
                }
                r = async { self.resync.as_mut().and_then(|r| r.in_flight.as_mut()).expect("in flight").await }, if snapshot_in_flight => {
                    self.on_snapshot(r);
                    None
                }
                _ = sleep_until(snapshot_retry.unwrap_or_else(Instant::now)), if snapshot_retry.is_some() && !snapshot_in_flight => {
                    if let Some(r) = self.resync.as_mut() {
                        r.retry_at = None;
                    }
                    self.start_snapshot();
                    None
                }
                sig = self.signals.recv() => match sig {
                    Some(sig) => self.on_signal(sig),
                    None => None,
                },
                r = async { self.keepalive.as_mut().expect("in flight").await }, if !keepalive_idle => {
                    self.keepalive = None;
                    self.on_keepalive(r)
                }
                _ = sleep_until(self.next_keepalive), if keepalive_idle => {
                    let (keys, key) = (self.keys.clone(), self.key.clone());
                    self.keepalive = Some(Box::pin(async move { keys.ping(&key).await }));
                    None
                }
                _ = closing.wait_for(|c| *c) => break,
            };
            if let Some(t) = trouble {
                let done = if t.disconnected || self.settings.conn.form == StreamForm::Query {
                    self.recover(t).await
                } else {
                    self.renew(t).await
                };
                if done.is_err() {
                    break;
                }
            }
        }
        // The client was freed: nothing can keep this stream alive.
        self.sink.shared.on_closed();
        self.sink.shared.queue.close();
    }

    /// A snapshot is wanted (the stream opened, or a gap): fetch one now,
    /// or right after the one in flight, which may predate the gap, or at
    /// the retry already scheduled after a failure (which comes after the
    /// gap too: a flapping stream does not cut the backoff short).
    /// `since_ms`: when the gap began (its place in the queue).
    fn want_snapshot(&mut self, since_ms: i64) {
        let Some(r) = self.resync.as_mut() else {
            return;
        };
        r.since_ms = Some(r.since_ms.map_or(since_ms, |s| s.min(since_ms)));
        if r.in_flight.is_some() {
            r.again = true;
        } else if r.retry_at.is_none() {
            self.start_snapshot();
        }
    }

    /// Queues the snapshot in the request budget; when its turn comes,
    /// holds back what arrives from then on and fetches the snapshot that
    /// will go before it.
    fn start_snapshot(&mut self) {
        let Some(r) = self.resync.as_mut() else {
            return;
        };
        r.in_flight_since = r.since_ms.take().unwrap_or_else(now_ms);
        let ticket = r.rest.queue_snapshot(r.in_flight_since);
        self.sink
            .shared
            .on_snapshot_queued(ticket.budget().clone(), ticket.place());
        let rest = r.rest.clone();
        let shared = self.sink.shared.clone();
        r.in_flight = Some(Box::pin(async move {
            let on_turn = || {
                shared.on_snapshot_unqueued();
                shared.queue.hold();
            };
            rest.fetch_snapshot_scheduled(ticket, on_turn).await
        }));
    }

    fn on_snapshot(&mut self, result: Result<Event>) {
        let Some(r) = self.resync.as_mut() else {
            return;
        };
        r.in_flight = None;
        self.sink.shared.on_snapshot_unqueued();
        match result {
            Ok(ev) => {
                r.backoff.reset();
                self.sink.shared.queue.release(ev);
                if std::mem::take(&mut r.again) {
                    self.start_snapshot();
                }
            }
            Err(e) => {
                // Held events cannot wait for the retry: they go now,
                // behind the report; the retry holds again.
                let wait = snapshot_retry_wait(&mut r.backoff, &e);
                r.again = false;
                let since = r.in_flight_since;
                r.since_ms = Some(r.since_ms.map_or(since, |s| s.min(since)));
                r.retry_at = Some(Instant::now() + wait);
                self.sink.shared.queue.release(Event::library(
                    ACCOUNT_SNAPSHOT_FAILED,
                    now_ms(),
                    json!({
                        "status": e.status.name(),
                        "code": e.api_code,
                        "message": e.message,
                        "retry_in_ms": wait.as_millis() as u64,
                    }),
                ));
            }
        }
    }

    fn on_signal(&mut self, sig: Signal) -> Option<Trouble> {
        match sig {
            Signal::Lost {
                conn,
                reason,
                message,
                from_ms,
            } => {
                // A connection this stream already left says nothing of it.
                let current = self.member.as_ref().map(|m| m.conn.stats.id);
                (current == Some(conn)).then_some(Trouble {
                    reason,
                    message,
                    from_ms,
                    disconnected: true,
                })
            }
            Signal::Expired { at_ms } => Some(Trouble {
                reason: "listen_key_expired",
                message: "the server sent listenKeyExpired".into(),
                from_ms: at_ms,
                disconnected: false,
            }),
            Signal::Unrouted {
                count,
                stream,
                at_ms,
            } => {
                // Not a fault of the subscription: counted and reported as
                // a gap, with a snapshot behind it; the stream goes on.
                self.sink.shared.record_gap(Resume {
                    reason: "unrouted",
                    message: format!(
                        "{count} event(s) on the stream's connection named a stream no subscription matches (latest: {stream})"
                    ),
                    from_ms: at_ms,
                    renewed: None,
                    reconnected: false,
                });
                self.want_snapshot(at_ms);
                None
            }
        }
    }

    fn on_keepalive(&mut self, r: Result<String>) -> Option<Trouble> {
        let now = Instant::now();
        self.sink.shared.on_keepalive(match &r {
            Ok(_) => 0,
            Err(e) => e.status as i32,
        });
        let trouble = |reason, message: String| Trouble {
            reason,
            message,
            from_ms: self.key_valid_ms,
            disconnected: false,
        };
        match r {
            Ok(k) if k == self.key => {
                self.key_valid_ms = now_ms();
                self.next_keepalive =
                    now + jitter(self.settings.keepalive * 9 / 10, self.settings.keepalive);
                None
            }
            Ok(_) => Some(trouble(
                "listen_key_changed",
                "userDataStream.ping returned a different listenKey".into(),
            )),
            Err(e) if e.api_code == -1125 => Some(trouble("listen_key_invalid", e.message)),
            Err(e) => {
                let mut next = now + self.settings.keepalive.min(KEEPALIVE_RETRY);
                if let Some(wait) = retry_wait(e.retry_after_ms, now_ms()) {
                    next = next.max(now + wait);
                }
                self.next_keepalive = next;
                None
            }
        }
    }

    /// A new key on the same connection (SUBSCRIBE form): subscribe it,
    /// unsubscribe the old one. Falls back to `recover` if the connection
    /// fails meanwhile. Fails only when the client was freed.
    async fn renew(&mut self, t: Trouble) -> Result<()> {
        self.keepalive = None;
        let sink = self.sink.clone();
        let mut attempts = 0;
        let key = loop {
            if self.session.is_closing() {
                return Err(Error::closed("the client was freed"));
            }
            attempts += 1;
            let result = async {
                let key = self.keys.start().await?;
                sink.set_resume(Some(resume_of(&t, &key, &self.key, false)));
                let member = self
                    .member
                    .as_mut()
                    .ok_or_else(|| Error::closed("no connection"))?;
                member.swap(&sink, &key).await?;
                Ok::<_, Error>(key)
            }
            .await;
            match result {
                Ok(key) => break key,
                Err(_)
                    if attempts >= 3 || self.member.as_ref().is_none_or(|m| m.conn.is_dead()) =>
                {
                    return self.recover(t).await;
                }
                Err(e) => {
                    self.backoff.failed(e.retry_after_ms);
                    if let Some(delay) = self.backoff.delay() {
                        tokio::time::sleep(delay).await;
                    }
                }
            }
        };
        self.backoff.reset();
        self.resumed(key, t.from_ms);
        Ok(())
    }

    /// Moves the stream to a connection that works: reports the disconnect,
    /// obtains a valid key and subscribes it with backoff, then reports the
    /// gap. Fails only when the client was freed.
    async fn recover(&mut self, t: Trouble) -> Result<()> {
        self.keepalive = None;
        // A first subscription still unanswered is moot: the stream
        // subscribes again below, and the gap reports when it is live.
        self.joining = None;
        let healthy = self
            .member
            .take()
            .is_some_and(|m| m.since.elapsed() >= HEALTHY_AFTER);
        self.sink.shared.on_detached();
        self.sink.shared.queue.push_library(Event::library(
            STREAM_DISCONNECTED,
            now_ms(),
            json!({ "reason": t.reason, "message": t.message }),
        ));
        if healthy {
            self.backoff.reset();
        }
        let (key, member) = loop {
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
            let old = self.key.clone();
            let resume = |key: &str| Some(resume_of(&t, key, &old, true));
            match establish(&self.keys, &self.settings, &self.sink, resume).await {
                Ok(ok) => break ok,
                Err(e) => {
                    if self.session.is_closing() {
                        return Err(e);
                    }
                    self.backoff.failed(e.retry_after_ms);
                }
            }
        };
        self.member = Some(member);
        self.resumed(key, t.from_ms);
        Ok(())
    }

    /// The stream is subscribed again: the gap (since `from_ms`), and the
    /// renewal if any.
    fn resumed(&mut self, key: String, from_ms: i64) {
        let to_ms = now_ms();
        // The connection queued the gap as the subscription went live
        // (before any event of it); if it could not, it goes now.
        self.sink.flush_resume();
        self.key = key;
        self.key_valid_ms = to_ms;
        self.next_keepalive =
            Instant::now() + jitter(self.settings.keepalive * 9 / 10, self.settings.keepalive);
        // Behind the gap: what the account looks like now.
        self.want_snapshot(from_ms);
    }
}

/// How long after the failure `e` a snapshot is tried again.
fn snapshot_retry_wait(backoff: &mut Backoff, e: &Error) -> Duration {
    if refused_unsent(e) {
        // Nothing was sent: the wait is known, the server has not failed
        // again, the backoff does not grow.
        let until = retry_wait(e.retry_after_ms, now_ms()).unwrap_or_default();
        until + jitter(Duration::ZERO, RESYNC_SPREAD)
    } else {
        backoff.failed(e.retry_after_ms);
        backoff.delay().unwrap_or(RESYNC_RETRY_MIN)
    }
}

/// The gap (and renewal) to report once the stream is subscribed to `key`.
fn resume_of(t: &Trouble, key: &str, old: &str, reconnected: bool) -> Resume {
    Resume {
        reason: t.reason,
        message: t.message.clone(),
        from_ms: t.from_ms,
        renewed: (key != old).then(|| mask(key)),
        reconnected,
    }
}

/// The first keepalive: spread over the interval's second half, so that
/// many streams opened together do not ping in one burst.
fn first_keepalive(interval: Duration) -> Instant {
    Instant::now() + jitter(interval / 2, interval)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::error::Status;

    fn unsent(in_ms: i64) -> Error {
        let mut e = Error::new(Status::RateLimited, "nothing sent");
        e.retry_after_ms = now_ms() + in_ms;
        e
    }

    #[test]
    fn a_refusal_to_send_waits_its_time_and_does_not_grow_the_backoff() {
        let mut b = Backoff::new(RESYNC_RETRY_MIN, RESYNC_BACKOFF_MAX);
        for _ in 0..10 {
            let w = snapshot_retry_wait(&mut b, &unsent(2000));
            assert!(
                w >= Duration::from_millis(1900) && w <= Duration::from_millis(3000),
                "{w:?}"
            );
        }
        // The server's first real failure then starts at the first step.
        let w = snapshot_retry_wait(&mut b, &Error::timeout("no answer"));
        assert!(w <= RESYNC_RETRY_MIN, "{w:?}");
    }

    #[test]
    fn server_failures_back_off_to_the_cap_and_honour_retry_after() {
        let mut b = Backoff::new(RESYNC_RETRY_MIN, RESYNC_BACKOFF_MAX);
        let mut last = Duration::ZERO;
        for _ in 0..12 {
            last = snapshot_retry_wait(&mut b, &Error::timeout("no answer"));
            assert!(last <= RESYNC_BACKOFF_MAX, "{last:?}");
        }
        assert!(last >= RESYNC_BACKOFF_MAX / 2, "{last:?}");
        let mut e = Error::new(Status::RateLimited, "HTTP 429");
        e.http_status = 429;
        e.retry_after_ms = now_ms() + 90_000;
        let w = snapshot_retry_wait(&mut b, &e);
        assert!(w >= Duration::from_secs(89), "the server's time: {w:?}");
    }
}
