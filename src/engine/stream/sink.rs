//! One account's stream as a connection sees it: where its events go, what
//! it reports when its subscription is live again, and the signals that
//! tell its runner something happened.

use super::Shared;
use crate::engine::event::STREAM_SUBSCRIBED;
use crate::engine::event::{now_ms, Event};
use serde_json::json;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// Where a stream's events go, and how to tell its runner that something
/// happened.
pub struct Sink {
    pub id: u64,
    pub shared: Arc<Shared>,
    signals: mpsc::UnboundedSender<Signal>,
    /// The gap (and renewal) to queue the moment the stream's next
    /// subscription is acknowledged: queued by the connection task itself,
    /// so it goes before every event of the new subscription.
    resume: Mutex<Option<Resume>>,
    /// For a stream opened without waiting for its subscription: since
    /// when it waits (ms), until `binance.stream_subscribed` is queued, by
    /// the connection task too, for the same reason.
    joining: Mutex<Option<i64>>,
    /// Whether `resume` or `joining` may hold something: an event checks
    /// this, not the locks.
    notices: AtomicBool,
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
    /// `count` events on the stream's connection named a stream that no
    /// subscription on it matches (the latest `stream`, masked; the
    /// earliest stamped `at_ms`): any of them may have been this stream's.
    Unrouted {
        count: u64,
        stream: String,
        at_ms: i64,
    },
}

impl Sink {
    pub fn new(shared: Arc<Shared>) -> (Arc<Sink>, mpsc::UnboundedReceiver<Signal>) {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let (tx, rx) = mpsc::unbounded_channel();
        let sink = Sink {
            id: NEXT.fetch_add(1, Ordering::Relaxed),
            shared,
            signals: tx,
            resume: Mutex::new(None),
            joining: Mutex::new(None),
            notices: AtomicBool::new(false),
        };
        (Arc::new(sink), rx)
    }

    /// Sets (or clears) what to report once the next subscription is live.
    pub fn set_resume(&self, r: Option<Resume>) {
        let some = r.is_some();
        *self.resume.lock().unwrap_or_else(|p| p.into_inner()) = r;
        if some {
            self.notices.store(true, Ordering::SeqCst);
        }
    }

    /// The stream's open returns before its subscription is acknowledged
    /// (since `since_ms`): `binance.stream_subscribed` is queued when it is.
    pub fn set_joining(&self, since_ms: i64) {
        *self.joining.lock().unwrap_or_else(|p| p.into_inner()) = Some(since_ms);
        self.notices.store(true, Ordering::SeqCst);
    }

    /// The subscription was refused: no `binance.stream_subscribed` (the
    /// stream reports the refusal and recovers as from a lost connection).
    pub fn clear_joining(&self) {
        self.joining
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
    }

    /// Queues `binance.stream_subscribed` if the stream waits for it.
    pub fn flush_joined(&self) {
        let since = self
            .joining
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(from_ms) = since {
            self.shared.queue.push_library(Event::library(
                STREAM_SUBSCRIBED,
                now_ms(),
                json!({ "from_ms": from_ms }),
            ));
        }
    }

    /// The subscription is live (acknowledged, or an event of it came
    /// first, which a server may send before its answer): what the stream
    /// reports then goes before any of its events.
    pub fn on_live(&self) {
        // A load first: every event passes here, and a swap would write
        // the flag's cache line each time.
        if self.notices.load(Ordering::Relaxed) && self.notices.swap(false, Ordering::SeqCst) {
            self.flush_resume();
            self.flush_joined();
        }
    }

    /// Reports it now, if the connection has not (a fallback).
    pub fn flush_resume(&self) {
        let r = self.resume.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(r) = r {
            self.shared.record_gap(r);
        }
    }

    /// Tells the stream's runner; a runner that is gone needs no telling.
    pub fn signal(&self, s: Signal) {
        let _ = self.signals.send(s);
    }

    /// Queues an event without waking the reader (the batch's end does).
    pub fn push(&self, ev: Event) {
        if ev.kind() == "listenKeyExpired" && !ev.is_library() {
            self.signal(Signal::Expired {
                at_ms: if ev.time_ms() > 0 {
                    ev.time_ms()
                } else {
                    now_ms()
                },
            });
        }
        self.shared.on_event();
        self.shared.queue.push_deferred(ev);
    }
}
