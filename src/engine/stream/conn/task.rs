//! The connection's task: it owns the socket, serves it (reads, routes,
//! sends paced requests, watches for silence and the rotation time) and
//! takes the commands of the streams on it.

use super::handle::{Cmd, ConnHandle};
use super::pacer::Pacer;
use super::rotate::Dedup;
use super::{far, query_url, ConnSettings, ConnStats, Link, Lost};
use crate::engine::error::{Error, Result, Status};
use crate::engine::event::{now_ms, Event};
use crate::engine::net::connect::Ws;
use crate::engine::net::lead::{RawFd, SocketMark};
use crate::engine::net::url::Endpoint;
use crate::engine::stream::sink::{Signal, Sink};
use crate::engine::stream::wire::{self, Incoming};
use futures_util::{FutureExt, SinkExt, StreamExt};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};
use tokio_tungstenite::tungstenite::Message;

/// After `serverShutdown`, the replacement starts within this (spread so
/// that many connections told at once do not reconnect in step).
const SHUTDOWN_REPLACE_MAX: Duration = Duration::from_millis(500);
/// Events read in one go before the readers are woken.
const BATCH: usize = 64;
/// Keys that left a connection remembered at most (their late events are
/// nobody's); past it the memory starts over.
const MAX_LEFT: usize = 4096;

/// Events since the last report that no route matched.
struct Unrouted {
    count: u64,
    /// The latest one's stream name, masked.
    stream: String,
    at_ms: i64,
}

pub(super) struct Task {
    pub(super) settings: Arc<ConnSettings>,
    pub(super) stats: Arc<ConnStats>,
    handle: Arc<ConnHandle>,
    rx: mpsc::UnboundedReceiver<Cmd>,
    pub(super) query_key: Option<String>,
    /// key → the streams it is routed to (two clients of one account share
    /// a key).
    pub(super) routes: HashMap<String, Vec<Arc<Sink>>>,
    /// Keys whose streams all left: an event of one that was already on
    /// its way is nobody's, not unroutable.
    left: HashSet<String>,
    unrouted: Option<Unrouted>,
    /// Sinks whose key's subscription was acknowledged.
    acked: HashMap<u64, String>,
    pub(super) pacer: Pacer,
    pub(super) dedup: Dedup,
    pub(super) rotate_at: Option<Instant>,
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
    pub(super) fn new(
        settings: Arc<ConnSettings>,
        handle: Arc<ConnHandle>,
        rx: mpsc::UnboundedReceiver<Cmd>,
        query_key: Option<String>,
    ) -> Task {
        Task {
            pacer: Pacer::new(settings.request_timeout),
            settings,
            stats: handle.stats.clone(),
            handle,
            rx,
            query_key,
            routes: HashMap::new(),
            left: HashSet::new(),
            unrouted: None,
            acked: HashMap::new(),
            dedup: Dedup::default(),
            rotate_at: None,
            touched: Vec::new(),
            last_frame_ms: now_ms(),
            last_event_ms: 0,
        }
    }

    pub(super) fn url(&self) -> Endpoint {
        match &self.query_key {
            Some(key) => query_url(&self.settings.base, key),
            None => self.settings.base.join("stream"),
        }
    }

    async fn dial(&self) -> Result<(Ws, Option<RawFd>)> {
        self.settings
            .dialer
            .connect_socket(&self.url())
            .await
            .map_err(|mut e| {
                if let Some(key) = &self.query_key {
                    // The URL carries the listenKey: show only its start.
                    e.message = e
                        .message
                        .replace(key.as_str(), &crate::engine::stream::mask(key));
                }
                e.context("user data stream")
            })
    }

    /// Makes `socket` the one a leading reader sleeps on.
    pub(super) fn mark(&self, socket: Option<RawFd>) -> Option<SocketMark> {
        self.handle.reader()?.mark_socket(socket)
    }

    pub(super) async fn run(mut self) {
        let link = match self.dial().await {
            Ok((ws, socket)) => Link::with_socket(ws, self.mark(socket)),
            Err(e) => return self.fail_all(e),
        };
        self.run_on(link).await;
    }

    /// Serves `link` until it is lost, then tells every stream on it.
    pub(super) async fn run_on(mut self, link: Link) {
        let lost = self.serve(link).await;
        let e = Error::new(Status::ConnectionClosed, lost.message.clone());
        for sinks in self.routes.values() {
            for sink in sinks {
                sink.shared.on_lost();
                sink.signal(Signal::Lost {
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
        self.handle.places().dead = true;
        self.rx.close();
        self.pacer.fail_all(&e);
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

    /// Since when events may be lost when this connection ends.
    fn lost_since(&self) -> i64 {
        match self.last_event_ms {
            0 => self.last_frame_ms,
            e => e.min(self.last_frame_ms),
        }
    }

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
            let next_request = self.pacer.next_request_at(Instant::now());
            let ack_deadline = self.pacer.answer_deadline();
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
                    if self.routes.is_empty() && !self.pacer.subscribing() && self.idle_exit() {
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
                    if let Some(what) = self.pacer.expire(Instant::now()) {
                        return Lost::new("disconnected", format!(
                            "the stream server did not answer {what} within {} ms",
                            self.settings.request_timeout.as_millis()
                        ));
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
        let mut p = self.handle.places();
        if p.members == 0 {
            p.dead = true;
            true
        } else {
            false
        }
    }

    /// Handles a frame and whatever else is already buffered, then wakes
    /// the readers once.
    pub(super) fn on_frames(
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
        self.end_batch();
        r
    }

    /// After a batch of messages: reports what could not be routed and
    /// wakes the readers of what was.
    pub(super) fn end_batch(&mut self) {
        self.report_unrouted();
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

    pub(super) fn on_text(&mut self, text: &str) -> std::result::Result<(), Lost> {
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

    /// Delivers one event of the stream named `stream` to every stream
    /// routed to its key (the part before any `@`: Binance may name it
    /// `<listenKey>` or `<listenKey>@<EVENT>`), once.
    fn deliver(&mut self, stream: &str, text: &str, ev: Option<Event>) {
        let key = route_key(stream);
        let Some(sinks) = self.routes.get(key) else {
            if !self.left.contains(key) {
                self.note_unrouted(stream, text);
            }
            return;
        };
        if !self.dedup.first_time(stream, text, Instant::now()) {
            return;
        }
        let mut ev = ev;
        for sink in sinks {
            let e = ev.take().unwrap_or_else(|| Event::from_wire(text));
            if e.time_ms() > self.last_event_ms {
                self.last_event_ms = e.time_ms();
            }
            // An event before the subscription's answer: it is live.
            sink.on_live();
            sink.push(e);
            if !self.touched.iter().any(|s| s.id == sink.id) {
                self.touched.push(sink.clone());
            }
        }
    }

    /// Counts an event no route matches; reported at the batch's end.
    fn note_unrouted(&mut self, stream: &str, text: &str) {
        let at_ms = match Event::from_wire(text).time_ms() {
            t if t > 0 => t,
            _ => now_ms(),
        };
        let u = self.unrouted.get_or_insert(Unrouted {
            count: 0,
            stream: String::new(),
            at_ms,
        });
        u.count += 1;
        u.stream = shown_stream(stream);
        u.at_ms = u.at_ms.min(at_ms);
    }

    /// Tells every stream on the connection about the events no route
    /// matched: any of them may have been its own. (With no stream on the
    /// connection there is nobody to tell.)
    fn report_unrouted(&mut self) {
        let Some(u) = self.unrouted.take() else {
            return;
        };
        for sink in self.routes.values().flatten() {
            sink.signal(Signal::Unrouted {
                count: u.count,
                stream: u.stream.clone(),
                at_ms: u.at_ms,
            });
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
            Instant::now() + crate::engine::backoff::jitter(Duration::ZERO, SHUTDOWN_REPLACE_MAX);
        if self.rotate_at.is_none_or(|t| t > soon) {
            self.rotate_at = Some(soon);
        }
    }

    pub(super) fn on_command(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Subscribe { sink, key, done } => {
                let id = sink.id;
                self.left.remove(&key);
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
                    self.pacer.subscribe(key, Some((id, done)));
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
                self.left.remove(&new);
                self.unroute(id, &old);
                self.acked.remove(&id);
                sink.shared.on_unsubscribed();
                self.routes.entry(new.clone()).or_default().push(sink);
                self.count_streams();
                // Subscribe first, then unsubscribe: never a moment with
                // neither key subscribed.
                self.pacer.subscribe(new, Some((id, done)));
            }
            Cmd::Leave { sink, key } => {
                self.unroute(sink, &key);
                self.acked.remove(&sink);
                self.pacer.forget(sink);
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
                if self.left.len() >= MAX_LEFT {
                    self.left.clear();
                }
                self.left.insert(key.to_owned());
                if self.query_key.is_none() {
                    self.pacer.unsubscribe(key);
                }
            }
        }
    }

    fn count_streams(&self) {
        let n = self.routes.values().map(Vec::len).sum();
        self.stats.streams.store(n, Ordering::Relaxed);
    }

    pub(super) fn subscribed(&mut self, sink: u64, key: &str) {
        self.acked.insert(sink, key.to_owned());
        if let Some(s) = self
            .routes
            .get(key)
            .and_then(|v| v.iter().find(|s| s.id == sink))
        {
            s.shared.on_subscribed(self.stats.clone());
            if let Some(reader) = self.handle.reader() {
                s.shared.set_reader(reader);
            }
            s.flush_resume();
            s.flush_joined();
        }
    }

    /// Sends the next paced request.
    async fn send_request(&mut self, link: &mut Link) -> Result<()> {
        let Some(text) = self.pacer.next_request(Instant::now()) else {
            return Ok(());
        };
        link.ws
            .send(Message::text(text))
            .await
            .map_err(|e| Error::new(Status::ConnectionClosed, format!("{e}")))
    }

    fn on_answer(&mut self, id: u64, error: Option<(i64, String)>) {
        // An answer to nothing we asked is ignored; a refusal went to
        // whoever waited for it.
        if let Some(answer) = self.pacer.on_answer(id, error) {
            for (sink, key) in &answer.subscribed {
                self.subscribed(*sink, key);
            }
            let _ = answer.notify();
        }
    }
}

/// The key a stream name routes on: the part before any `@`.
fn route_key(stream: &str) -> &str {
    stream.split_once('@').map_or(stream, |(key, _)| key)
}

/// A stream name fit for a message: the key masked, the rest bounded.
fn shown_stream(stream: &str) -> String {
    match stream.split_once('@') {
        Some((key, rest)) => format!(
            "{}@{}",
            crate::engine::stream::mask(key),
            crate::engine::text::truncate(rest, 64)
        ),
        None => crate::engine::stream::mask(stream),
    }
}
