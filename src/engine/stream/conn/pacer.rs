//! Our requests on one stream connection: which keys to (un)subscribe,
//! when the next message may go out, building it, and matching answers to
//! it. Both the serve loop and a rotation's new connection use it.

use crate::engine::error::{Error, Result, Status};
use serde_json::json;
use std::collections::{HashMap, VecDeque};
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::time::Instant;

/// Our requests per second on one connection, under Binance's limit of 10
/// incoming messages per second: pongs count against it too, and we send
/// one per server ping (every 3 minutes), so two are left spare.
pub(super) const MAX_REQUESTS_PER_SEC: usize = 8;
/// Past this many requests in the last second, the next waits at least
/// `REQUEST_SPACING` after the one before: a burst would spend the second's
/// allowance on one key each, while spaced requests carry every key queued
/// meanwhile (many accounts opening at once subscribe in few messages).
pub(super) const REQUEST_BURST: usize = 2;
pub(super) const REQUEST_SPACING: Duration =
    Duration::from_millis(1000 / MAX_REQUESTS_PER_SEC as u64);
/// The burst's later requests wait until no key has been queued for this
/// long (or until `REQUEST_SPACING` after the request before, at the
/// latest): a loop opening many accounts queues a key every fraction of a
/// millisecond, and the second request then carries all the loop's keys as
/// soon as it ends, not one key at once and the rest a spacing later.
pub(super) const BURST_QUIET: Duration = Duration::from_millis(10);
/// ListenKeys per SUBSCRIBE or UNSUBSCRIBE message: a connection's default
/// share of streams (`stream_subscriptions_per_connection`), so that the
/// keys of many accounts opened at once, queued while the connection waits
/// for its next slot, go out in one message rather than one slot (125 ms)
/// later. Binance documents no limit on a message's params (only 10
/// messages a second and 1024 streams a connection); 200 keys of 64
/// characters make a 13.4 KB message (docs/local-exchange.md, "Limits").
pub(super) const MAX_PARAMS: usize = crate::engine::config::DEFAULT_STREAMS_PER_CONNECTION;

/// A stream waiting for its key's subscription to be answered: the sink's
/// id and where the answer goes.
pub(super) type Waiter = (u64, oneshot::Sender<Result<()>>);

/// One of our requests awaiting its answer.
struct Request {
    deadline: Instant,
    what: &'static str,
    waiters: Vec<oneshot::Sender<Result<()>>>,
    /// (sink, key) pairs that become subscribed when it is acknowledged.
    subscribing: Vec<(u64, String)>,
}

pub(super) struct Pacer {
    timeout: Duration,
    next_id: u64,
    /// Keys to subscribe, with whoever waits for the answer.
    to_subscribe: Vec<(String, Option<Waiter>)>,
    to_unsubscribe: Vec<String>,
    /// When our recent requests were sent.
    sent: VecDeque<Instant>,
    /// When a key was last queued.
    last_queued: Instant,
    requests: HashMap<u64, Request>,
}

impl Pacer {
    /// Requests unanswered after `timeout` fail.
    pub fn new(timeout: Duration) -> Pacer {
        Pacer {
            timeout,
            next_id: 1,
            to_subscribe: Vec::new(),
            to_unsubscribe: Vec::new(),
            sent: VecDeque::new(),
            last_queued: Instant::now(),
            requests: HashMap::new(),
        }
    }

    /// Queues `key` for a SUBSCRIBE (and cancels a pending UNSUBSCRIBE).
    pub fn subscribe(&mut self, key: String, waiter: Option<Waiter>) {
        self.to_unsubscribe.retain(|k| *k != key);
        self.to_subscribe.push((key, waiter));
        self.last_queued = Instant::now();
    }

    /// Queues `key` for an UNSUBSCRIBE, once.
    pub fn unsubscribe(&mut self, key: &str) {
        if !self.to_unsubscribe.iter().any(|k| k == key) {
            self.to_unsubscribe.push(key.to_owned());
            self.last_queued = Instant::now();
        }
    }

    /// The stream `sink` left: nobody waits for its subscription now.
    pub fn forget(&mut self, sink: u64) {
        self.to_subscribe
            .retain(|(_, w)| w.as_ref().is_none_or(|(id, _)| *id != sink));
    }

    /// Whether a subscription is still to be sent.
    pub fn subscribing(&self) -> bool {
        !self.to_subscribe.is_empty()
    }

    /// When the next request may go out, if one waits.
    pub fn next_request_at(&mut self, now: Instant) -> Option<Instant> {
        if self.to_subscribe.is_empty() && self.to_unsubscribe.is_empty() {
            return None;
        }
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
            Some(last) => (self.last_queued + BURST_QUIET).min(*last + REQUEST_SPACING),
            None => now,
        };
        window.map(|w| w.max(spaced))
    }

    /// The text of one SUBSCRIBE (or, with none waiting, one UNSUBSCRIBE),
    /// counted as sent now; `None` if nothing waits.
    pub fn next_request(&mut self, now: Instant) -> Option<String> {
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
        } else if !self.to_unsubscribe.is_empty() {
            let n = self.to_unsubscribe.len().min(MAX_PARAMS);
            let keys: Vec<String> = self.to_unsubscribe.drain(..n).collect();
            ("UNSUBSCRIBE", keys, Vec::new(), Vec::new())
        } else {
            return None;
        };
        let id = self.next_id;
        self.next_id += 1;
        self.sent.push_back(now);
        self.requests.insert(
            id,
            Request {
                deadline: now + self.timeout,
                what: method,
                waiters,
                subscribing,
            },
        );
        Some(json!({ "method": method, "params": keys, "id": id }).to_string())
    }

    /// Whether `id` is one of ours, unanswered.
    pub fn is_waiting_for(&self, id: u64) -> bool {
        self.requests.contains_key(&id)
    }

    /// Takes the answer to request `id`; `None` for an answer to nothing
    /// we asked.
    pub fn on_answer(&mut self, id: u64, error: Option<(i64, String)>) -> Option<Answered> {
        let req = self.requests.remove(&id)?;
        Some(match error {
            None => Answered {
                subscribed: req.subscribing,
                waiters: req.waiters,
                result: Ok(()),
            },
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
                Answered {
                    subscribed: Vec::new(),
                    waiters: req.waiters,
                    result: Err(e),
                }
            }
        })
    }

    /// The earliest deadline of the requests awaiting an answer.
    pub fn answer_deadline(&self) -> Option<Instant> {
        self.requests.values().map(|r| r.deadline).min()
    }

    /// Fails the requests left unanswered past their deadline; returns
    /// what went unanswered, `None` if nothing did.
    pub fn expire(&mut self, now: Instant) -> Option<&'static str> {
        let late: Vec<u64> = self
            .requests
            .iter()
            .filter(|(_, r)| r.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        let mut what = None;
        for id in late {
            if let Some(r) = self.requests.remove(&id) {
                let e = self.unanswered(r.what);
                for w in r.waiters {
                    let _ = w.send(Err(e.clone()));
                }
                what = Some(r.what);
            }
        }
        what
    }

    fn unanswered(&self, what: &str) -> Error {
        Error::timeout(format!(
            "no answer to {what} within {} ms",
            self.timeout.as_millis()
        ))
    }

    /// Requests still unanswered, taken as acknowledged (a rotation's new
    /// connection subscribed every key).
    pub fn take_unanswered(&mut self) -> Answered {
        let mut all = Answered {
            subscribed: Vec::new(),
            waiters: Vec::new(),
            result: Ok(()),
        };
        for (_, r) in self.requests.drain() {
            all.subscribed.extend(r.subscribing);
            all.waiters.extend(r.waiters);
        }
        all
    }

    /// Fails everything asked of a connection that is gone.
    pub fn fail_all(&mut self, e: &Error) {
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
    }
}

/// An answer to our request: the (sink, key) pairs it subscribed, to be
/// recorded before its waiters are told (`notify`), so that a stream that
/// wakes sees itself subscribed.
pub(super) struct Answered {
    pub subscribed: Vec<(u64, String)>,
    waiters: Vec<oneshot::Sender<Result<()>>>,
    result: Result<()>,
}

impl Answered {
    /// Tells the waiters; returns the result they got.
    pub fn notify(self) -> Result<()> {
        for w in self.waiters {
            let _ = w.send(self.result.clone());
        }
        self.result
    }
}

/// Server text fit for an error message: no control characters, bounded.
fn shown(text: &str) -> String {
    let text: String = text.chars().filter(|c| !c.is_control()).collect();
    crate::engine::text::truncate(&text, 200).into_owned()
}
