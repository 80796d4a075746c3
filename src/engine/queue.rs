//! The bounded event queue between a stream's connection and its reader.
//!
//! Capacity counts stream events. When the application does not drain the
//! queue and it is full, new events are dropped (the ones already queued
//! stay, in order) and counted; the next event that fits is preceded by one
//! `binance.stream_gap` event (reason "queue_overflow") saying how many were
//! dropped and over what time. Library events are never dropped, so the
//! application always learns what it lost; the stream itself never stops.
//!
//! For a host event loop the queue keeps a `Signal` (made on first ask):
//! readable exactly while an event can be taken without waiting, or once
//! the queue is closed.

use super::event::{now_ms, Event, STREAM_GAP};
use super::net::lead::{Lead, Wakeup};
use super::signal::{RawFd, Signal};
use serde_json::json;
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub struct Queue {
    state: Mutex<State>,
    ready: Condvar,
}

struct State {
    items: VecDeque<Event>,
    /// While an account snapshot is being fetched: what arrives meanwhile,
    /// kept back so that the snapshot goes before it (see `hold`).
    held: Option<VecDeque<Event>>,
    stream_events: usize,
    capacity: usize,
    overflow: Option<Overflow>,
    closed: bool,
    /// Readers blocked in `pop`: a push wakes one only if there is one.
    waiting: usize,
    delivered: u64,
    dropped: u64,
    /// For event loops: raised while `ready()`; none until asked for.
    signal: Option<Signal>,
    /// A reader leading the stream's connection (`pop_leading`): it sleeps
    /// in poll(2), not on the condition variable, so it is woken this way.
    leader: Option<Arc<Wakeup>>,
}

struct Overflow {
    count: u64,
    first_ms: i64,
    last_ms: i64,
}

/// What `pop` found.
#[derive(Debug)]
pub enum Popped {
    Event(Event),
    TimedOut,
    Closed,
}

impl Queue {
    pub fn new(capacity: usize) -> Queue {
        Queue {
            state: Mutex::new(State {
                items: VecDeque::new(),
                held: None,
                stream_events: 0,
                capacity: capacity.max(1),
                overflow: None,
                closed: false,
                waiting: 0,
                delivered: 0,
                dropped: 0,
                signal: None,
                leader: None,
            }),
            ready: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues an event from the stream, or counts it as dropped when full.
    #[cfg(test)]
    pub fn push(&self, ev: Event) {
        if self.push_deferred(ev) {
            self.ready.notify_one();
        }
    }

    /// Unlocks `s`, then, if `ready`, wakes the readers: one waiting on the
    /// condition variable (or `all` of them), and a reader leading the
    /// stream's connection, which sleeps in poll(2) instead.
    fn wake_readers(&self, s: MutexGuard<'_, State>, ready: bool, all: bool) {
        let waiting = ready && s.waiting > 0;
        let leader = s.leader.clone().filter(|_| ready);
        drop(s);
        if waiting {
            if all {
                self.ready.notify_all();
            } else {
                self.ready.notify_one();
            }
        }
        if let Some(l) = leader {
            l.notify();
        }
    }

    /// Wakes a waiting reader if anything is queued (after `push_deferred`).
    pub fn wake(&self) {
        let s = self.lock();
        let ready = !s.items.is_empty();
        self.wake_readers(s, ready, false);
    }

    /// Like `push` but wakes nobody; says whether a reader waits. The caller
    /// must `wake` before it waits for anything.
    pub fn push_deferred(&self, ev: Event) -> bool {
        let mut s = self.lock();
        if s.closed {
            return false;
        }
        if s.stream_events >= s.capacity {
            let t = if ev.time_ms() > 0 {
                ev.time_ms()
            } else {
                now_ms()
            };
            s.dropped += 1;
            match &mut s.overflow {
                Some(o) => {
                    o.count += 1;
                    o.last_ms = t;
                }
                None => {
                    s.overflow = Some(Overflow {
                        count: 1,
                        first_ms: t,
                        last_ms: t,
                    })
                }
            }
            s.sync_signal();
            return false;
        }
        s.flush_overflow();
        s.stream_events += 1;
        s.tail().push_back(ev);
        s.sync_signal();
        s.waiting > 0 && s.held.is_none()
    }

    /// Queues a library event; never dropped.
    pub fn push_library(&self, ev: Event) {
        let mut s = self.lock();
        if s.closed {
            return;
        }
        s.flush_overflow();
        s.tail().push_back(ev);
        s.sync_signal();
        let ready = s.held.is_none();
        self.wake_readers(s, ready, false);
    }

    /// Keeps back everything queued from now on (stream and library events,
    /// within the same capacity) until `release`: an account snapshot
    /// requested now is delivered before every event received after it was
    /// requested. Holding already: no change.
    pub fn hold(&self) {
        let mut s = self.lock();
        if s.held.is_none() {
            s.held = Some(VecDeque::new());
        }
    }

    /// Queues `first` (the snapshot, or the report of its failure), then
    /// what was held, in order, and stops holding.
    pub fn release(&self, first: Event) {
        let mut s = self.lock();
        if s.closed {
            return;
        }
        let held = s.held.take().unwrap_or_default();
        s.items.push_back(first);
        s.items.extend(held);
        s.sync_signal();
        self.wake_readers(s, true, true);
    }

    /// Waits up to `timeout` for the next event.
    pub fn pop(&self, timeout: Duration) -> Popped {
        let deadline = Instant::now().checked_add(timeout);
        let mut s = self.lock();
        loop {
            if let Some(p) = s.take() {
                return p;
            }
            let now = Instant::now();
            let left = match deadline {
                Some(d) if d <= now => {
                    s.sync_signal();
                    return Popped::TimedOut;
                }
                Some(d) => d - now,
                None => Duration::from_secs(3600),
            };
            s.waiting += 1;
            s = self
                .ready
                .wait_timeout(s, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
            s.waiting -= 1;
        }
    }

    /// What `pop` returns without waiting, if anything (no signal update
    /// when nothing is there: nothing changed).
    pub fn try_take(&self) -> Option<Popped> {
        self.lock().take()
    }

    /// [`Queue::pop`] by a reader leading the stream's connection, until
    /// `deadline`: while nothing is queued it polls the connection's task
    /// itself (which queues what arrives) and sleeps on its socket.
    ///
    /// `None` when the reader should stop leading and wait as a follower
    /// (`pop`): the connection's task ended, or what woke it from the
    /// socket was for another stream on the connection. That stream's
    /// reader, woken with its event, leads on its next call: the lead goes
    /// to the stream that is receiving events.
    pub fn pop_leading(&self, deadline: Option<Instant>, lead: &Lead) -> Option<Popped> {
        let me = Wakeup::current();
        struct Leader<'a>(&'a Queue);
        impl Drop for Leader<'_> {
            fn drop(&mut self) {
                self.0.lock().leader = None;
            }
        }
        self.lock().leader = Some(me.clone());
        let _leader = Leader(self);
        let mut by_socket = false;
        loop {
            me.reset();
            if let Some(p) = self.lock().take() {
                return Some(p);
            }
            if lead.step() {
                return None;
            }
            let mut s = self.lock();
            if let Some(p) = s.take() {
                return Some(p);
            }
            if by_socket && !me.woken() {
                return None;
            }
            if deadline.is_some_and(|d| d <= Instant::now()) {
                s.sync_signal();
                return Some(Popped::TimedOut);
            }
            drop(s);
            by_socket = lead.sleep(deadline);
        }
    }

    /// Wakes every waiter with `Closed` and drops what is queued.
    pub fn close(&self) {
        let mut s = self.lock();
        s.closed = true;
        s.items.clear();
        s.held = None;
        s.sync_signal();
        self.wake_readers(s, true, true);
    }

    /// A descriptor readable exactly while `pop` has something to
    /// return (an event, or `Closed`): raised as the first event is queued
    /// and lowered as the last is taken, so a level-triggered wait loses
    /// no wake-up. The queue owns it; it lives as long as the queue.
    pub fn signal_fd(&self) -> std::io::Result<RawFd> {
        let mut s = self.lock();
        if s.signal.is_none() {
            s.signal = Some(Signal::new()?);
            s.sync_signal();
        }
        Ok(s.signal.as_ref().map_or(-1, Signal::fd))
    }

    /// (delivered to the application, dropped on overflow, queued now)
    pub fn counts(&self) -> (u64, u64, usize) {
        let s = self.lock();
        let held = s.held.as_ref().map_or(0, VecDeque::len);
        (s.delivered, s.dropped, s.items.len() + held)
    }
}

impl State {
    /// What `pop` returns without waiting, if anything.
    fn take(&mut self) -> Option<Popped> {
        if self.closed {
            return Some(Popped::Closed);
        }
        if self.items.is_empty() {
            self.flush_overflow();
        }
        let ev = self.items.pop_front()?;
        if !ev.is_library() {
            self.stream_events -= 1;
        }
        self.delivered += 1;
        self.sync_signal();
        Some(Popped::Event(ev))
    }

    /// Whether `pop` returns without waiting: an event to take (a pending
    /// overflow becomes its gap event when the queue drains), or closed.
    fn ready(&self) -> bool {
        self.closed || !self.items.is_empty() || (self.held.is_none() && self.overflow.is_some())
    }

    /// Raises or lowers the signal, if there is one, to match `ready`.
    fn sync_signal(&mut self) {
        let up = self.ready();
        if let Some(sig) = &mut self.signal {
            sig.set(up);
        }
    }

    /// Where a new event goes: behind what is held, if anything is.
    fn tail(&mut self) -> &mut VecDeque<Event> {
        match &mut self.held {
            Some(held) => held,
            None => &mut self.items,
        }
    }

    /// Turns a pending overflow into its gap event, placed where the
    /// dropped events would have been.
    fn flush_overflow(&mut self) {
        if let Some(o) = self.overflow.take() {
            self.tail().push_back(Event::library(
                STREAM_GAP,
                now_ms(),
                json!({
                    "reason": "queue_overflow",
                    "from_ms": o.first_ms,
                    "to_ms": o.last_ms,
                    "dropped": o.count,
                }),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn ev(i: i64) -> Event {
        Event::from_wire(&format!(r#"{{"e":"ORDER_TRADE_UPDATE","E":{i}}}"#))
    }

    fn take(q: &Queue) -> Event {
        match q.pop(Duration::from_millis(10)) {
            Popped::Event(e) => e,
            other => panic!("expected an event, got {other:?}"),
        }
    }

    #[test]
    fn a_server_event_named_binance_does_not_leak_a_slot() {
        // Regression: origin was derived from the "binance." prefix, so
        // this event was counted in as a stream event and never out; at
        // capacity every later real event was dropped from an empty queue.
        let q = Queue::new(1);
        q.push(Event::from_wire(r#"{"e":"binance.x","E":1}"#));
        assert_eq!(take(&q).kind(), "binance.x");
        q.push(ev(2));
        let got = take(&q);
        assert_eq!(got.kind(), "ORDER_TRADE_UPDATE");
        assert_eq!(got.time_ms(), 2);
        assert_eq!(q.counts().1, 0, "nothing dropped");
    }

    #[test]
    fn a_held_snapshot_goes_before_what_arrived_while_it_was_fetched() {
        let q = Queue::new(3);
        q.push(ev(1));
        q.hold();
        q.push(ev(2));
        q.push_library(Event::library(STREAM_GAP, 3, json!({})));
        q.push(ev(4));
        q.push(ev(5)); // over capacity (1, 2, 4 are stream events): dropped
        assert_eq!(take(&q).time_ms(), 1);
        assert!(
            matches!(q.pop(Duration::from_millis(5)), Popped::TimedOut),
            "held back"
        );
        assert_eq!(q.counts().2, 4, "2, the gap, 4 and the overflow's gap");
        q.release(Event::library("binance.account_snapshot", 9, json!({})));
        let order: Vec<i64> = (0..4).map(|_| take(&q).time_ms()).collect();
        assert_eq!(order, [9, 2, 3, 4]);
        let gap = take(&q);
        assert_eq!(gap.get("/reason").as_deref(), Some("queue_overflow"));
        assert_eq!(gap.get("/dropped").as_deref(), Some("1"));
        // Released: new events flow again.
        q.push(ev(6));
        assert_eq!(take(&q).time_ms(), 6);
    }

    #[test]
    fn in_order_and_times_out_when_empty() {
        let q = Queue::new(10);
        for i in 1..=3 {
            q.push(ev(i));
        }
        for i in 1..=3 {
            assert_eq!(take(&q).time_ms(), i);
        }
        assert!(matches!(q.pop(Duration::from_millis(5)), Popped::TimedOut));
    }

    #[test]
    fn overflow_keeps_old_events_and_reports_the_gap_in_place() {
        let q = Queue::new(3);
        for i in 1..=10 {
            q.push(ev(i));
        }
        assert_eq!(q.counts(), (0, 7, 3));
        for i in 1..=3 {
            assert_eq!(take(&q).time_ms(), i);
        }
        q.push(ev(11));
        let gap = take(&q);
        assert_eq!(gap.kind(), STREAM_GAP);
        assert_eq!(gap.get("/reason").as_deref(), Some("queue_overflow"));
        assert_eq!(gap.get("/dropped").as_deref(), Some("7"));
        assert_eq!(gap.get("/from_ms").as_deref(), Some("4"));
        assert_eq!(gap.get("/to_ms").as_deref(), Some("10"));
        assert_eq!(take(&q).time_ms(), 11);
    }

    #[test]
    fn a_drained_queue_reports_the_overflow_without_waiting_for_more() {
        let q = Queue::new(1);
        q.push(ev(1));
        q.push(ev(2));
        take(&q);
        assert_eq!(take(&q).kind(), STREAM_GAP);
    }

    #[test]
    fn library_events_are_never_dropped() {
        let q = Queue::new(1);
        q.push(ev(1));
        q.push_library(Event::library("binance.x", 1, json!({})));
        assert_eq!(q.counts().2, 2);
    }

    /// Whether the queue's descriptor is readable now, asked through the
    /// descriptor itself (a peek: it changes nothing).
    #[cfg(unix)]
    fn readable(q: &Queue) -> bool {
        let mut p = libc::pollfd {
            fd: q.signal_fd().unwrap() as i32,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd; a timeout of 0 does not wait.
        let n = unsafe { libc::poll(&mut p, 1, 0) };
        n == 1 && p.revents & libc::POLLIN != 0
    }

    #[cfg(unix)]
    #[test]
    fn the_descriptor_is_readable_exactly_while_an_event_can_be_taken() {
        let q = Queue::new(2);
        q.push(ev(1));
        assert!(readable(&q), "made after the event was queued: raised");
        assert_eq!(q.try_pop_event().time_ms(), 1);
        assert!(!readable(&q), "drained");
        assert!(matches!(q.pop(Duration::ZERO), Popped::TimedOut));
        // Overflow: raised until the gap event is taken too.
        for i in 2..=5 {
            q.push(ev(i));
        }
        assert_eq!(q.try_pop_event().time_ms(), 2);
        assert_eq!(q.try_pop_event().time_ms(), 3);
        assert!(readable(&q), "the gap is still to come");
        assert_eq!(q.try_pop_event().kind(), STREAM_GAP);
        assert!(!readable(&q));
        // Held events are not readable until released.
        q.hold();
        q.push(ev(6));
        assert!(!readable(&q));
        q.release(Event::library("binance.account_snapshot", 7, json!({})));
        assert!(readable(&q));
        assert_eq!(q.try_pop_event().time_ms(), 7);
        assert_eq!(q.try_pop_event().time_ms(), 6);
        assert!(!readable(&q));
        q.close();
        assert!(readable(&q), "readable on close");
        assert!(matches!(q.pop(Duration::ZERO), Popped::Closed));
        assert!(readable(&q), "and stays so");
    }

    impl Queue {
        fn try_pop_event(&self) -> Event {
            match self.pop(Duration::ZERO) {
                Popped::Event(e) => e,
                other => panic!("expected an event, got {other:?}"),
            }
        }
    }

    #[test]
    fn close_wakes_a_blocked_reader() {
        let q = Arc::new(Queue::new(4));
        let q2 = q.clone();
        let t = std::thread::spawn(move || q2.pop(Duration::from_secs(30)));
        std::thread::sleep(Duration::from_millis(50));
        let t0 = Instant::now();
        q.close();
        assert!(matches!(t.join().unwrap(), Popped::Closed));
        assert!(t0.elapsed() < Duration::from_secs(5));
    }
}
