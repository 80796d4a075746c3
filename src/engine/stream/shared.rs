//! A stream's queue and health, shared by its handle, its runner and its
//! connection. The health record is private to this module: the runner
//! and the connection change it only through the verbs below, so "where is
//! X counted" has one answer.

use super::conn::ConnStats;
use super::sink::Resume;
use super::Health;
use crate::engine::event::{now_ms, Event, LISTEN_KEY_RENEWED, STREAM_GAP};
use crate::engine::net::lead::Cell;
use crate::engine::queue::Popped;
use crate::engine::queue::Queue;
use crate::engine::rest::budget::Budget;
use serde_json::json;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;
use tokio::time::Instant;

/// What the connection and the runner record for `health`.
struct Info {
    connected: bool,
    subscribed: bool,
    reconnects: u64,
    key_since: Instant,
    last_keepalive_status: i32,
    last_keepalive_ms: i64,
    key_renewals: u64,
    gaps: u64,
    conn: Option<Arc<ConnStats>>,
    /// The snapshot waiting in the request budget's queue, if one is.
    snapshot_waiting: Option<(Arc<Budget>, (i64, u64))>,
}

pub(crate) struct Shared {
    pub queue: Queue,
    info: Mutex<Info>,
    /// Written once per event, so kept out of the mutex.
    last_event_ms: AtomicI64,
    /// The task of the connection the stream was last subscribed on, for
    /// a reader waiting for an event to poll itself (`lead`).
    reader: Mutex<Weak<Cell>>,
}

impl Shared {
    pub fn new(capacity: usize) -> Shared {
        Shared {
            queue: Queue::new(capacity),
            info: Mutex::new(Info {
                connected: false,
                subscribed: false,
                reconnects: 0,
                key_since: Instant::now(),
                last_keepalive_status: -1,
                last_keepalive_ms: 0,
                key_renewals: 0,
                gaps: 0,
                conn: None,
                snapshot_waiting: None,
            }),
            last_event_ms: AtomicI64::new(0),
            reader: Mutex::new(Weak::new()),
        }
    }

    /// The stream is subscribed on the connection whose task `reader` is.
    pub fn set_reader(&self, reader: &Arc<Cell>) {
        *self.reader.lock().unwrap_or_else(|p| p.into_inner()) = Arc::downgrade(reader);
    }

    /// The task of the stream's connection, if it still runs.
    pub fn reader(&self) -> Option<Arc<Cell>> {
        self.reader
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .upgrade()
    }

    /// Waits up to `timeout` for the next event. A reader that waits leads
    /// the stream's connection when nobody else does: it reads the socket
    /// itself rather than waiting for the runtime's worker to hand the
    /// event over (`lead`).
    pub fn pop(&self, rt: &tokio::runtime::Handle, timeout: Duration) -> Popped {
        if timeout.is_zero() {
            return self.queue.pop(timeout);
        }
        // Already queued (a burst): no lead to take.
        if let Some(p) = self.queue.try_take() {
            return p;
        }
        let deadline = std::time::Instant::now().checked_add(timeout);
        {
            // Entered first: the lead's last poll, as it steps down, runs
            // the task too, and its timers need the runtime.
            let _context = rt.enter();
            if let Some(lead) = self.reader().and_then(|cell| cell.lead()) {
                if let Some(p) = self.queue.pop_leading(deadline, &lead) {
                    return p;
                }
            }
        }
        match deadline {
            Some(d) => self
                .queue
                .pop(d.saturating_duration_since(std::time::Instant::now())),
            None => self.queue.pop(timeout),
        }
    }

    fn info(&self) -> MutexGuard<'_, Info> {
        self.info.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The stream's key was obtained now.
    pub fn key_started(&self) {
        self.info().key_since = Instant::now();
    }

    /// The server acknowledged the stream's subscription on `conn`.
    pub fn on_subscribed(&self, conn: Arc<ConnStats>) {
        let mut i = self.info();
        i.connected = true;
        i.subscribed = true;
        i.conn = Some(conn);
    }

    /// The stream's key is being changed on its connection.
    pub fn on_unsubscribed(&self) {
        self.info().subscribed = false;
    }

    /// The stream's connection is gone; it is still counted as the
    /// stream's until the stream moves.
    pub fn on_lost(&self) {
        let mut i = self.info();
        i.connected = false;
        i.subscribed = false;
    }

    /// The stream left its connection and has none.
    pub fn on_detached(&self) {
        self.on_lost();
        self.info().conn = None;
    }

    /// The stream's client was freed: nothing keeps the stream alive.
    pub fn on_closed(&self) {
        self.info().connected = false;
    }

    /// The connection was replaced make-before-break: nothing lost.
    pub fn on_rotated(&self) {
        self.info().reconnects += 1;
    }

    /// An event was queued.
    pub fn on_event(&self) {
        self.last_event_ms.store(now_ms(), Ordering::Relaxed);
    }

    /// A keepalive answered with `status` (0 = OK).
    pub fn on_keepalive(&self, status: i32) {
        let mut i = self.info();
        i.last_keepalive_status = status;
        i.last_keepalive_ms = now_ms();
    }

    /// The stream's account snapshot waits in `budget`'s queue at `place`.
    pub fn on_snapshot_queued(&self, budget: Arc<Budget>, place: (i64, u64)) {
        self.info().snapshot_waiting = Some((budget, place));
    }

    /// The stream's account snapshot no longer waits: its turn came, or
    /// it ended.
    pub fn on_snapshot_unqueued(&self) {
        self.info().snapshot_waiting = None;
    }

    /// Counts the gap in the health snapshot and queues its events,
    /// together, so that a reader who sees the gap sees it counted.
    pub fn record_gap(&self, r: Resume) {
        let to_ms = now_ms();
        {
            let mut i = self.info();
            if r.reconnected {
                i.reconnects += 1;
            }
            i.gaps += 1;
            if r.renewed.is_some() {
                i.key_renewals += 1;
                i.key_since = Instant::now();
            }
        }
        self.queue.push_library(Event::library(
            STREAM_GAP,
            to_ms,
            json!({ "reason": r.reason, "message": r.message, "from_ms": r.from_ms, "to_ms": to_ms }),
        ));
        if let Some(key) = r.renewed {
            self.queue.push_library(Event::library(
                LISTEN_KEY_RENEWED,
                to_ms,
                json!({ "reason": r.reason, "listenKey": key }),
            ));
        }
    }

    /// A snapshot of the stream's health.
    pub fn health(&self) -> Health {
        let (delivered, dropped, queued) = self.queue.counts();
        let i = self.info();
        let conn = i.conn.as_ref();
        let eta = (i.snapshot_waiting.as_ref()).and_then(|(budget, place)| budget.eta(*place));
        Health {
            connected: i.connected,
            subscribed: i.subscribed,
            reconnects: i.reconnects,
            events_delivered: delivered,
            events_dropped: dropped,
            events_queued: queued as u64,
            last_event_ms: self.last_event_ms.load(Ordering::Relaxed),
            key_age_ms: i.key_since.elapsed().as_millis() as i64,
            last_keepalive_status: i.last_keepalive_status,
            last_keepalive_ms: i.last_keepalive_ms,
            key_renewals: i.key_renewals,
            gaps: i.gaps,
            last_server_ping_ms: conn.map_or(0, |c| c.last_ping_ms.load(Ordering::Relaxed)),
            connection_id: conn.map_or(0, |c| c.id),
            connection_streams: conn.map_or(0, |c| c.streams.load(Ordering::Relaxed) as u64),
            snapshot_waiting: eta.is_some(),
            snapshot_eta_ms: eta.unwrap_or(0),
        }
    }
}
