//! Reading a user stream in tests.

use binance_uds::engine::Event;
use binance_uds::engine::UserStream;
use std::time::{Duration, Instant};

/// Reads until an event of `kind` arrives, within 15 s; returns it and
/// what came before.
pub fn until(s: &UserStream, kind: &str) -> (Event, Vec<Event>) {
    until_within(s, kind, Duration::from_secs(15))
}

/// `until`, within `limit`.
pub fn until_within(s: &UserStream, kind: &str, limit: Duration) -> (Event, Vec<Event>) {
    let mut before = Vec::new();
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(ev) = s.next(Duration::from_millis(100)).unwrap() {
            if ev.kind() == kind {
                return (ev, before);
            }
            before.push(ev);
        }
    }
    let kinds: Vec<String> = before.iter().map(|e| e.kind().to_owned()).collect();
    panic!("no {kind} event; got {kinds:?}");
}
