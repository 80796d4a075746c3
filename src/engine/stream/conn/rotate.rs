//! Make-before-break rotation: a new connection beside the old one, every
//! key subscribed on it with the same pacer the serve loop uses, delivery
//! from the old one until the new one has caught up, then the switch, with
//! `Dedup` making sure nothing is delivered twice.

use super::pacer::Pacer;
use super::task::Task;
use super::{Link, Lost};
use crate::engine::error::{Error, Result};
use crate::engine::net::connect::Ws;
use crate::engine::stream::wire::{self, Incoming};
use futures_util::{SinkExt, StreamExt};
use std::collections::{HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::time::Duration;
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

/// The events delivered recently, remembered while a rotation may deliver
/// them again: a bounded ring of hashes of (stream, text), and a set of
/// the same for lookups, open until a deadline.
#[derive(Default)]
pub(super) struct Dedup {
    ring: VecDeque<u64>,
    set: HashSet<u64>,
    until: Option<Instant>,
}

impl Dedup {
    /// Remembers what is delivered until `until`.
    pub fn open_until(&mut self, until: Instant) {
        self.until = Some(until);
    }

    /// Whether the event `text` of `stream` is delivered for the first
    /// time (always, outside a window); it is remembered.
    pub fn first_time(&mut self, stream: &str, text: &str, now: Instant) -> bool {
        match self.until {
            None => return true,
            Some(t) if t <= now => {
                self.until = None;
                self.ring.clear();
                self.set.clear();
                return true;
            }
            Some(_) => {}
        }
        let h = hash(stream, text);
        if !self.set.insert(h) {
            return false;
        }
        self.ring.push_back(h);
        if self.ring.len() > DEDUP_RING {
            if let Some(old) = self.ring.pop_front() {
                self.set.remove(&old);
            }
        }
        true
    }

    /// Whether the event `text` of `stream` was delivered, without
    /// remembering it.
    pub fn seen(&self, stream: &str, text: &str) -> bool {
        self.set.contains(&hash(stream, text))
    }
}

fn hash(stream: &str, text: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    stream.hash(&mut h);
    text.hash(&mut h);
    h.finish()
}

/// Subscribes `pacer`'s keys on a fresh connection `ws`, paced, and waits
/// for every answer. What arrives meanwhile that is not an answer is
/// pushed to `held`.
pub(super) async fn subscribe_all(
    ws: &mut Ws,
    pacer: &mut Pacer,
    held: &mut Vec<String>,
) -> Result<()> {
    loop {
        let next = pacer.next_request_at(Instant::now());
        let deadline = pacer.answer_deadline();
        if next.is_none() && deadline.is_none() {
            return Ok(());
        }
        tokio::select! {
            _ = sleep_until(next.unwrap_or_else(super::far)), if next.is_some() => {
                if let Some(text) = pacer.next_request(Instant::now()) {
                    ws.send(Message::text(text))
                        .await
                        .map_err(|e| Error::closed(format!("{e}")))?;
                }
            }
            _ = sleep_until(deadline.unwrap_or_else(super::far)), if deadline.is_some() => {
                if let Some(what) = pacer.expire(Instant::now()) {
                    return Err(Error::timeout(format!("no answer to {what}")));
                }
            }
            msg = ws.next() => match msg {
                // Events may precede the answer: hold them.
                Some(Ok(Message::Text(t))) => match wire::parse(t.as_str()) {
                    Incoming::Answer { id, error } if pacer.is_waiting_for(id) => {
                        if let Some(answer) = pacer.on_answer(id, error) {
                            answer.notify()?;
                        }
                    }
                    _ => held.push(t.as_str().to_owned()),
                },
                Some(Ok(_)) => {}
                _ => return Err(Error::closed("the new connection closed")),
            }
        }
    }
}

impl Task {
    /// Opens a new connection beside the old one, subscribes every key on
    /// it, delivers from the old one until the new one has caught up, then
    /// switches: nothing lost, nothing delivered twice. Returns the link
    /// to serve next (the old one if the new one failed).
    pub(super) async fn rotate(&mut self, mut old: Link) -> std::result::Result<Link, Lost> {
        self.rotate_at = Some(Instant::now() + ROTATE_RETRY);
        self.dedup.open_until(
            Instant::now() + OVERLAP_MAX + DEDUP_WINDOW + self.settings.request_timeout,
        );
        let settings = self.settings.clone();
        let url = self.url();
        let mut pacer = Pacer::new(settings.request_timeout);
        if self.query_key.is_none() {
            for key in self.routes.keys() {
                pacer.subscribe(key.clone(), None);
            }
        }
        // Phase 1: connect and subscribe beside the old one, serving it.
        let mut opening = Box::pin(async move {
            let (mut ws, socket) = settings.dialer.connect_socket(&url).await?;
            let mut held = Vec::new();
            subscribe_all(&mut ws, &mut pacer, &mut held).await?;
            Ok::<_, Error>(((ws, socket), held))
        });
        let ((ws, socket), held_text) = loop {
            tokio::select! {
                r = &mut opening => match r {
                    Ok(ok) => break ok,
                    Err(_) => return Ok(old), // keep the old one; try later
                },
                msg = old.ws.next() => self.on_frames(&mut old, msg)?,
            }
        };
        let new = Link::with_socket(ws, self.mark(socket));
        self.switch(old, new, held_text).await
    }

    /// Phase 2, both open: delivers from the old link and holds the new
    /// one's until the new one has caught up (or stayed quiet), then
    /// switches to the new one.
    pub(super) async fn switch(
        &mut self,
        mut old: Link,
        mut new: Link,
        mut held: Vec<String>,
    ) -> std::result::Result<Link, Lost> {
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
        let unanswered = self.pacer.take_unanswered();
        for (sink, key) in &unanswered.subscribed {
            self.subscribed(*sink, key);
        }
        let _ = unanswered.notify();
        self.dedup.open_until(Instant::now() + DEDUP_WINDOW);
        for text in held {
            self.on_text(&text)?;
        }
        self.end_batch();
        for sink in self.routes.values().flatten() {
            sink.shared.on_rotated();
        }
        self.rotate_at = None;
        Ok(new)
    }

    /// Whether a message held from the new connection was already
    /// delivered from the old one.
    fn seen(&self, text: &str) -> bool {
        match (&self.query_key, wire::parse(text)) {
            (Some(key), _) => self.dedup.seen(key, text),
            (None, Incoming::Event { stream, data }) => self.dedup.seen(&stream, data),
            // Protocol messages and the like: nothing to wait for.
            _ => true,
        }
    }
}
