//! The request budget: one per source address and server, shared by every
//! client of the process, and the queue in which account snapshots wait for
//! their turn.
//!
//! Binance counts `REQUEST_WEIGHT` per IP in fixed windows (one minute:
//! a request at 00:01:23 counts toward the 00:01 minute), REST and the
//! WebSocket API together, USDⓈ-M and COIN-M together. A budget follows
//! that count: what this process sent in the current window, raised to
//! what the server reported (the WebSocket API's `rateLimits`, REST's
//! `X-MBX-USED-WEIGHT-<interval>`), so traffic from elsewhere on the same
//! address counts too; the limit and the window follow the server's
//! report as well (2400 a minute until one arrives). After a 429 or 418
//! nothing is sent to that server from that address until the time it gave.
//!
//! Two classes of request draw on it:
//! - requests sent now (listenKey start/ping/stop, a snapshot the
//!   application asked for): sent if the window has room, refused with
//!   RATE_LIMITED (nothing sent) if not;
//! - resync snapshots, which wait in one queue, oldest gap first, and run
//!   only while snapshots have drawn less than their share of the window
//!   (default half), spread evenly over it. The rest of the window stays
//!   for the requests sent now, so an open never fails because snapshots
//!   spent the budget.
//!
//! The arithmetic is in [`Ledger`] (no clock, no locks: unit-tested with
//! explicit times); [`Budget`] wraps it with a lock, the clock and a wake-up
//! for the waiting snapshots.

use crate::engine::error::{Error, Result, Status};
use crate::engine::event::now_ms;
use crate::engine::net::url::Endpoint;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;
use tokio::sync::Notify;

/// Binance's `REQUEST_WEIGHT` limit per IP (exchangeInfo `rateLimits`),
/// used until a server reports its own.
pub const DEFAULT_LIMIT: u32 = 2400;
/// Binance's window: one minute.
pub const DEFAULT_WINDOW_MS: i64 = 60_000;
/// The share of the window resync snapshots may draw by default, in percent.
pub const DEFAULT_SNAPSHOT_PERCENT: u32 = 50;
/// A 429 without a retry time waits out the window; a 418 without one, the
/// shortest ban Binance gives (2 minutes).
const BAN_WITHOUT_TIME_MS: i64 = 120_000;
/// The longest pause a server's retry time can impose (Binance's longest
/// ban is 3 days).
const MAX_PAUSE_MS: i64 = 7 * 86_400_000;

/// Which budget: the local address connections leave from (None: the
/// system's choice) and the server's site (see [`site_of`]; a config whose
/// WebSocket API and REST endpoints are on different sites names both).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BudgetKey {
    pub source: Option<IpAddr>,
    pub site: String,
}

/// The server an endpoint's weight is counted by: Binance counts per IP
/// across all its API hosts (`fapi`, `dapi`, `ws-fapi`, ...), so a host
/// name counts by its last two labels (`binance.com`,
/// `binancefuture.com`); an address or a single-label name (a server on
/// this machine or network) by host and port.
pub fn site_of(endpoint: &Endpoint) -> String {
    let host = endpoint.host.to_ascii_lowercase();
    let literal = host.parse::<IpAddr>().is_ok() || host.starts_with('[');
    if literal || !host.contains('.') {
        return endpoint.authority().to_ascii_lowercase();
    }
    let labels: Vec<&str> = host.trim_end_matches('.').rsplitn(3, '.').collect();
    format!("{}.{}", labels[1], labels[0])
}

/// What a budget looks like now (`binance_client_request_budget_json`).
#[derive(Clone, Debug, PartialEq)]
pub struct View {
    pub source: Option<IpAddr>,
    pub site: String,
    /// As the server last reported it; 0: it reported none.
    pub limit: u32,
    pub window_ms: i64,
    /// Weight used in the current window (sent here, or as the server
    /// reported, whichever is more).
    pub used: u32,
    /// Of which resync snapshots.
    pub snapshot_used: u32,
    pub snapshots_waiting: usize,
    /// Nothing is sent before this (ms since the epoch); 0 if not paused.
    pub paused_until_ms: i64,
    /// Requests this process did not send because the budget had no room.
    pub refused: u64,
    /// 429 and 418 answers received.
    pub rate_limited: u64,
}

impl View {
    pub fn to_json(&self) -> serde_json::Value {
        let View {
            source,
            site,
            limit,
            window_ms,
            used,
            snapshot_used,
            snapshots_waiting,
            paused_until_ms,
            refused,
            rate_limited,
        } = self.clone();
        serde_json::json!({
            "source_address": source.map(|s| s.to_string()),
            "site": site,
            "limit": limit,
            "window_ms": window_ms,
            "used": used,
            "snapshot_used": snapshot_used,
            "snapshots_waiting": snapshots_waiting,
            "paused_until_ms": paused_until_ms,
            "refused": refused,
            "rate_limited": rate_limited,
        })
    }
}

/// A snapshot waiting for its turn: ordered by the time its gap began, then
/// by arrival.
type Place = (i64, u64);

/// The budget's arithmetic, on explicit times (local ms since the epoch).
#[derive(Debug)]
pub struct Ledger {
    limit: u32,
    window_ms: i64,
    /// Server clock minus local clock: windows are the server's.
    offset_ms: i64,
    /// The window `used` and `snapshot_used` count in.
    window: i64,
    used: u32,
    /// What the server last reported for this window.
    server_used: u32,
    snapshot_used: u32,
    paused_until_ms: i64,
    /// Snapshot pacing: weight that may be drawn now, refilled at the
    /// snapshot share per window, at most one snapshot's worth.
    tokens: f64,
    tokens_at_ms: i64,
    queue: BTreeMap<Place, Waiting>,
    next_seq: u64,
    refused: u64,
    rate_limited: u64,
}

#[derive(Clone, Copy, Debug)]
struct Waiting {
    cost: u32,
    percent: u32,
}

/// Why a request cannot go now, and when it may.
#[derive(Debug, PartialEq)]
pub enum Wait {
    /// Paused by a 429/418 until then.
    Paused(i64),
    /// The window has no room for it; it rolls then.
    Full(i64),
    /// A snapshot: not its turn, or the share is spent; try again then
    /// (None: when the queue changes).
    Later(Option<i64>),
}

impl Wait {
    fn until(&self) -> Option<i64> {
        match self {
            Wait::Paused(t) | Wait::Full(t) => Some(*t),
            Wait::Later(t) => *t,
        }
    }
}

impl Ledger {
    pub fn new(now: i64) -> Ledger {
        Ledger {
            limit: DEFAULT_LIMIT,
            window_ms: DEFAULT_WINDOW_MS,
            offset_ms: 0,
            window: 0,
            used: 0,
            server_used: 0,
            snapshot_used: 0,
            paused_until_ms: 0,
            // Full: the first snapshot after a quiet spell runs at once.
            tokens: f64::MAX,
            tokens_at_ms: now,
            queue: BTreeMap::new(),
            next_seq: 0,
            refused: 0,
            rate_limited: 0,
        }
    }

    fn window_of(&self, now: i64) -> i64 {
        (now + self.offset_ms).div_euclid(self.window_ms)
    }

    /// When the window containing `now` ends (local ms).
    fn window_end(&self, now: i64) -> i64 {
        (self.window_of(now) + 1) * self.window_ms - self.offset_ms
    }

    fn roll(&mut self, now: i64) {
        let w = self.window_of(now);
        if w != self.window {
            self.window = w;
            self.used = 0;
            self.server_used = 0;
            self.snapshot_used = 0;
        }
    }

    /// A request of weight `cost` to be sent now: charged, or why not.
    pub fn charge(&mut self, now: i64, cost: u32) -> std::result::Result<(), Wait> {
        self.roll(now);
        if self.paused_until_ms > now {
            self.refused += 1;
            return Err(Wait::Paused(self.paused_until_ms));
        }
        if self.used.saturating_add(cost) > self.cap() {
            self.refused += 1;
            return Err(Wait::Full(self.window_end(now)));
        }
        self.used = self.used.saturating_add(cost);
        Ok(())
    }

    /// A call of a snapshot already charged as a whole: nothing is sent
    /// while paused, nor when the server's own count (other traffic from
    /// this address included) leaves no room for it.
    pub fn open(&mut self, now: i64, cost: u32) -> std::result::Result<(), Wait> {
        self.roll(now);
        if self.paused_until_ms > now {
            self.refused += 1;
            return Err(Wait::Paused(self.paused_until_ms));
        }
        if self.server_used.saturating_add(cost) > self.cap() {
            self.refused += 1;
            return Err(Wait::Full(self.window_end(now)));
        }
        Ok(())
    }

    /// Queues a snapshot of weight `cost` for a gap that began at
    /// `since_ms`, allowed `percent` of the window.
    pub fn enqueue(&mut self, since_ms: i64, cost: u32, percent: u32) -> Place {
        let place = (since_ms, self.next_seq);
        self.next_seq += 1;
        self.queue.insert(place, Waiting { cost, percent });
        place
    }

    /// Takes `place` out of the queue (it ran, or its caller left).
    pub fn leave(&mut self, place: Place) {
        self.queue.remove(&place);
    }

    fn refill(&mut self, now: i64, percent: u32, cap: u32) {
        let rate = self.share(percent) as f64 / self.window_ms as f64;
        let dt = (now - self.tokens_at_ms).max(0) as f64;
        self.tokens = (self.tokens + dt * rate).min(cap as f64);
        self.tokens_at_ms = now;
    }

    /// The limit; a server that reports 0 enforces none.
    fn cap(&self) -> u32 {
        if self.limit == 0 {
            u32::MAX
        } else {
            self.limit
        }
    }

    fn share(&self, percent: u32) -> u32 {
        (u64::from(self.cap()) * u64::from(percent.clamp(1, 100)) / 100) as u32
    }

    /// The snapshot at `place` runs now (charged, out of the queue) if it is
    /// the oldest waiting, nothing is paused, the window has room and the
    /// snapshots' share of it too, and the pacing allows; otherwise when to
    /// look again.
    pub fn turn(&mut self, now: i64, place: Place) -> std::result::Result<(), Wait> {
        self.roll(now);
        let Some(&me) = self.queue.get(&place) else {
            return Ok(()); // not queued (already granted)
        };
        if self.queue.keys().next() != Some(&place) {
            return Err(Wait::Later(None));
        }
        if self.paused_until_ms > now {
            return Err(Wait::Paused(self.paused_until_ms));
        }
        // A snapshot bigger than its share runs alone in a fresh window.
        let share = self.share(me.percent).max(me.cost);
        self.refill(now, me.percent, me.cost);
        if self.used.saturating_add(me.cost) > self.cap()
            || self.snapshot_used.saturating_add(me.cost) > share
        {
            return Err(Wait::Full(self.window_end(now)));
        }
        if self.tokens + 1e-6 < f64::from(me.cost) {
            let rate = f64::from(self.share(me.percent)) / self.window_ms as f64;
            let missing = f64::from(me.cost) - self.tokens;
            let at = now + (missing / rate).ceil() as i64;
            return Err(Wait::Later(Some(at.max(now + 1))));
        }
        self.tokens -= f64::from(me.cost);
        self.used = self.used.saturating_add(me.cost);
        self.snapshot_used = self.snapshot_used.saturating_add(me.cost);
        self.queue.remove(&place);
        Ok(())
    }

    /// Roughly when the snapshot at `place` runs (local ms), if it waits.
    pub fn eta(&mut self, now: i64, place: Place) -> Option<i64> {
        self.roll(now);
        let ahead = self.queue.range(..place).count() as f64;
        let me = self.queue.get(&place)?;
        let rate = f64::from(self.share(me.percent)).max(1.0) / self.window_ms as f64;
        let start = now.max(self.paused_until_ms);
        let need = (ahead + 1.0) * f64::from(me.cost) - self.tokens.min(f64::from(me.cost));
        Some(start + (need.max(0.0) / rate) as i64)
    }

    /// What the server reported: `used` weight in its current window, and
    /// its limit and window when it said them.
    pub fn reported(&mut self, now: i64, used: u32, limit: Option<u32>, window_ms: Option<i64>) {
        if let Some(w) = window_ms.filter(|w| *w > 0 && *w != self.window_ms) {
            self.window_ms = w;
            self.window = self.window_of(now);
            self.used = 0;
            self.server_used = 0;
            self.snapshot_used = 0;
        }
        if let Some(l) = limit {
            self.limit = l;
        }
        self.roll(now);
        self.server_used = used;
        self.used = self.used.max(used);
    }

    /// A 429/418: nothing is sent before `until` (local ms).
    pub fn pause(&mut self, now: i64, until: i64) {
        self.rate_limited += 1;
        let until = until.min(now + MAX_PAUSE_MS);
        self.paused_until_ms = self.paused_until_ms.max(until);
    }

    /// When a 429 (`ban` false) or 418 without a retry time ends.
    pub fn default_pause(&mut self, now: i64, ban: bool) -> i64 {
        if ban {
            now + BAN_WITHOUT_TIME_MS
        } else {
            self.window_end(now)
        }
    }

    pub fn set_offset(&mut self, offset_ms: i64) {
        self.offset_ms = offset_ms;
    }

    fn view(&mut self, now: i64, key: &BudgetKey) -> View {
        self.roll(now);
        View {
            source: key.source,
            site: key.site.clone(),
            limit: self.limit,
            window_ms: self.window_ms,
            used: self.used,
            snapshot_used: self.snapshot_used,
            snapshots_waiting: self.queue.len(),
            paused_until_ms: if self.paused_until_ms > now {
                self.paused_until_ms
            } else {
                0
            },
            refused: self.refused,
            rate_limited: self.rate_limited,
        }
    }
}

/// One budget: a [`Ledger`] behind a lock, shared by every client of the
/// process with the same [`BudgetKey`] (see [`Budget::of`]).
pub struct Budget {
    key: BudgetKey,
    ledger: Mutex<Ledger>,
    /// Wakes waiting snapshots when the queue or the budget changes.
    changed: Notify,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Budget {
    pub fn new(key: BudgetKey) -> Budget {
        Budget {
            key,
            ledger: Mutex::new(Ledger::new(now_ms())),
            changed: Notify::new(),
        }
    }

    /// The process's budget for `key`, made on first use. Budgets live as
    /// long as the process: a pause outlives the clients that saw it.
    pub fn of(key: BudgetKey) -> Arc<Budget> {
        static ALL: OnceLock<Mutex<HashMap<BudgetKey, Arc<Budget>>>> = OnceLock::new();
        let mut all = lock(ALL.get_or_init(Default::default));
        all.entry(key.clone())
            .or_insert_with(|| Arc::new(Budget::new(key)))
            .clone()
    }

    pub fn key(&self) -> &BudgetKey {
        &self.key
    }

    fn refusal(&self, what: &str, wait: Wait) -> Error {
        let until = wait.until().unwrap_or_else(now_ms);
        let why = match wait {
            Wait::Paused(_) => "the server asked to wait (429/418) until".to_owned(),
            _ => {
                let l = lock(&self.ledger);
                format!(
                    "request weight {} of {} used in this window; it ends at",
                    l.used, l.limit
                )
            }
        };
        Error {
            status: Status::RateLimited,
            message: format!("{what}: {why} {until} (ms since the epoch); nothing sent"),
            api_code: 0,
            http_status: 0,
            retry_after_ms: until,
        }
    }

    /// Charges a request sent now, or refuses it (RATE_LIMITED, nothing
    /// sent, `retry_after_ms` set).
    pub fn charge(&self, what: &str, cost: u32) -> Result<()> {
        let r = lock(&self.ledger).charge(now_ms(), cost);
        r.map_err(|w| self.refusal(what, w))
    }

    /// Refuses (as [`Budget::charge`]) a call of a snapshot already charged
    /// while paused, or when the server's count leaves no room for `cost`;
    /// charges nothing.
    pub fn check_open(&self, what: &str, cost: u32) -> Result<()> {
        let r = lock(&self.ledger).open(now_ms(), cost);
        r.map_err(|w| self.refusal(what, w))
    }

    /// Queues a resync snapshot (see [`Ticket::turn`]).
    pub fn enqueue(self: &Arc<Budget>, since_ms: i64, cost: u32, percent: u32) -> Ticket {
        let place = lock(&self.ledger).enqueue(since_ms, cost, percent);
        self.changed.notify_waiters();
        Ticket {
            budget: self.clone(),
            place,
        }
    }

    /// The server's report of the weight used (and its limit and window).
    pub fn reported(&self, used: u32, limit: Option<u32>, window_ms: Option<i64>) {
        lock(&self.ledger).reported(now_ms(), used, limit, window_ms);
        self.changed.notify_waiters();
    }

    /// A 429 (`ban` false) or 418: nothing is sent before `until_ms` (local
    /// ms since the epoch; None: the window's end for a 429, 2 minutes for
    /// a 418). Returns the time.
    pub fn pause(&self, until_ms: Option<i64>, ban: bool) -> i64 {
        let now = now_ms();
        let mut l = lock(&self.ledger);
        let until = until_ms.unwrap_or_else(|| l.default_pause(now, ban));
        l.pause(now, until);
        until
    }

    /// Server clock minus local clock, for the windows' boundaries.
    pub fn set_clock_offset(&self, offset_ms: i64) {
        lock(&self.ledger).set_offset(offset_ms);
    }

    /// Roughly when a queued snapshot runs (ms since the epoch).
    pub fn eta(&self, place: (i64, u64)) -> Option<i64> {
        lock(&self.ledger).eta(now_ms(), place)
    }

    pub fn view(&self) -> View {
        lock(&self.ledger).view(now_ms(), &self.key)
    }
}

/// A resync snapshot's place in its budget's queue; leaving it (drop)
/// gives the place up.
pub struct Ticket {
    budget: Arc<Budget>,
    place: Place,
}

impl Ticket {
    pub fn place(&self) -> (i64, u64) {
        self.place
    }

    pub fn budget(&self) -> &Arc<Budget> {
        &self.budget
    }

    /// Waits until the snapshot may run, then charges its weight. Waits
    /// through pauses; never fails.
    pub async fn turn(&self) {
        loop {
            let notified = self.budget.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let r = lock(&self.budget.ledger).turn(now_ms(), self.place);
            match r {
                Ok(()) => {
                    // The next in line looks at its turn.
                    self.budget.changed.notify_waiters();
                    return;
                }
                Err(w) => match w.until() {
                    Some(at) => {
                        let wait = Duration::from_millis((at - now_ms()).clamp(1, 60_000) as u64);
                        tokio::select! {
                            _ = notified => {}
                            _ = tokio::time::sleep(wait) => {}
                        }
                    }
                    None => notified.await,
                },
            }
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        lock(&self.budget.ledger).leave(self.place);
        self.budget.changed.notify_waiters();
    }
}

/// The window a REST `X-MBX-USED-WEIGHT-<n><unit>` header counts in (ms),
/// from its name's suffix (`1m`, `1M`, `10s`, ...).
pub fn window_of_header(suffix: &str) -> Option<i64> {
    let (n, unit) = suffix.split_at(suffix.len().checked_sub(1)?);
    let n: i64 = n.parse().ok().filter(|n| *n > 0)?;
    let unit = match unit.to_ascii_lowercase().as_str() {
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    Some(n * unit)
}

/// The `REQUEST_WEIGHT` entry of a WebSocket API answer's `rateLimits`:
/// (count, limit, window in ms).
pub fn request_weight_of(rate_limits: &str) -> Option<(u32, u32, i64)> {
    let v: serde_json::Value = serde_json::from_str(rate_limits).ok()?;
    let e = v
        .as_array()?
        .iter()
        .find(|e| e.get("rateLimitType").and_then(|t| t.as_str()) == Some("REQUEST_WEIGHT"))?;
    let num = |k: &str| e.get(k).and_then(|n| n.as_u64());
    let unit = match e.get("interval")?.as_str()? {
        "SECOND" => 1000,
        "MINUTE" => 60_000,
        "HOUR" => 3_600_000,
        "DAY" => 86_400_000,
        _ => return None,
    };
    let window = num("intervalNum")?.min(1 << 20) as i64 * unit;
    let clamp = |n: u64| n.min(u64::from(u32::MAX)) as u32;
    Some((clamp(num("count")?), clamp(num("limit")?), window))
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_700_000_040_000; // a minute boundary

    fn ledger() -> Ledger {
        let mut l = Ledger::new(T0);
        l.roll(T0);
        l
    }

    #[test]
    fn the_window_rolls_on_the_servers_minute() {
        let mut l = ledger();
        for _ in 0..24 {
            l.charge(T0 + 1000, 100).unwrap();
        }
        assert_eq!(l.charge(T0 + 2000, 1), Err(Wait::Full(T0 + 60_000)));
        // The next minute starts empty.
        l.charge(T0 + 60_000, 2400).unwrap();
        // With the server's clock 10 s ahead, its minute ends 10 s earlier.
        l.set_offset(10_000);
        assert_eq!(l.charge(T0 + 100_000, 1), Err(Wait::Full(T0 + 110_000)));
        l.charge(T0 + 110_000, 1).unwrap();
    }

    #[test]
    fn the_servers_count_limit_and_window_are_followed() {
        let mut l = ledger();
        l.charge(T0, 10).unwrap();
        // Other traffic from this address: the server counts more.
        l.reported(T0 + 1, 2000, None, None);
        assert_eq!(l.charge(T0 + 2, 401), Err(Wait::Full(T0 + 60_000)));
        l.charge(T0 + 2, 400).unwrap();
        // A lower count than ours (a request still on its way) does not
        // lower it.
        l.reported(T0 + 3, 5, None, None);
        assert_eq!(l.used, 2400);
        // A snapshot's calls, paid before, go while the server has room.
        l.reported(T0 + 3, 2390, None, None);
        assert_eq!(l.open(T0 + 3, 5), Ok(()));
        assert_eq!(l.open(T0 + 3, 40), Err(Wait::Full(T0 + 60_000)));
        // Another limit and window: a 10 s window of 100.
        l.reported(T0 + 4, 0, Some(100), Some(10_000));
        l.charge(T0 + 5, 100).unwrap();
        assert_eq!(l.charge(T0 + 6, 1), Err(Wait::Full(T0 + 10_000)));
        l.charge(T0 + 10_000, 1).unwrap();
        // A server that enforces no limit reports 0: nothing is refused,
        // however much it counts.
        l.reported(T0 + 10_001, 1_000_000, Some(0), None);
        l.charge(T0 + 10_002, 5000).unwrap();
        let p = l.enqueue(T0, 90, 50);
        assert_eq!(l.turn(T0 + 10_003, p), Ok(()));
    }

    #[test]
    fn a_pause_stops_everything_until_its_time() {
        let mut l = ledger();
        l.pause(T0, T0 + 5000);
        assert_eq!(l.charge(T0 + 4999, 1), Err(Wait::Paused(T0 + 5000)));
        assert_eq!(l.open(T0 + 1, 5), Err(Wait::Paused(T0 + 5000)));
        let p = l.enqueue(T0, 90, 50);
        assert_eq!(l.turn(T0 + 4000, p), Err(Wait::Paused(T0 + 5000)));
        // A shorter pause does not cut a longer one short.
        l.pause(T0 + 1, T0 + 2000);
        assert_eq!(l.open(T0 + 3000, 5), Err(Wait::Paused(T0 + 5000)));
        l.charge(T0 + 5000, 1).unwrap();
        assert_eq!(l.turn(T0 + 5000, p), Ok(()));
        assert_eq!((l.refused, l.rate_limited), (3, 2));
        // No time given: a 429 waits out the window, a 418 two minutes.
        assert_eq!(l.default_pause(T0 + 7000, false), T0 + 60_000);
        assert_eq!(l.default_pause(T0 + 7000, true), T0 + 127_000);
    }

    #[test]
    fn snapshots_draw_only_their_share_spread_over_the_window() {
        let mut l = ledger();
        let places: Vec<_> = (0..40).map(|i| l.enqueue(T0 - 1000 + i, 90, 50)).collect();
        // Run each as soon as it may, in 10 ms steps, for two minutes.
        let mut ran = Vec::new();
        let mut next = 0;
        let mut t = T0;
        while t < T0 + 120_000 && next < places.len() {
            if l.turn(t, places[next]).is_ok() {
                ran.push(t);
                next += 1;
            }
            t += 10;
        }
        // 1200 of 2400 a minute: 13 snapshots (1170) in each minute.
        let first = ran.iter().filter(|t| **t < T0 + 60_000).count();
        let second = ran.iter().filter(|t| **t >= T0 + 60_000).count();
        assert_eq!((first, second), (13, 13), "{ran:?}");
        // Evenly: 90 weight at 1200 a minute is one every 4.5 s.
        assert!(ran.windows(2).all(|w| w[1] - w[0] >= 4490), "{ran:?}");
        // The rest of the window is there for requests sent now.
        for _ in 0..1200 {
            l.charge(T0 + 119_000, 1).unwrap();
        }
    }

    #[test]
    fn the_oldest_gap_goes_first_and_requests_sent_now_go_before_snapshots() {
        let mut l = ledger();
        let late = l.enqueue(T0 + 500, 90, 50);
        let early = l.enqueue(T0 + 100, 90, 50);
        l.tokens = 1000.0;
        assert_eq!(l.turn(T0 + 1000, late), Err(Wait::Later(None)));
        assert!(l.eta(T0 + 1000, late) > l.eta(T0 + 1000, early));
        assert_eq!(l.turn(T0 + 1000, early), Ok(()));
        assert_eq!(l.eta(T0 + 1000, early), None);
        // Requests sent now filled the window: the snapshot waits, they
        // never do while there is room.
        for _ in 0..(2400 - 90) {
            l.charge(T0 + 1000, 1).unwrap();
        }
        assert_eq!(l.turn(T0 + 1000, late), Err(Wait::Full(T0 + 60_000)));
        // A snapshot that left its place lets the next one go.
        let after = l.enqueue(T0 + 600, 90, 50);
        l.leave(late);
        assert_eq!(l.turn(T0 + 60_000, after), Ok(()));
    }

    #[test]
    fn reports_are_parsed_from_both_transports() {
        assert_eq!(window_of_header("1m"), Some(60_000));
        assert_eq!(window_of_header("2S"), Some(2000));
        assert_eq!(window_of_header("x"), None);
        assert_eq!(window_of_header(""), None);
        let rl = r#"[{"rateLimitType":"ORDERS","interval":"SECOND","intervalNum":10,"limit":300,"count":0},
            {"rateLimitType":"REQUEST_WEIGHT","interval":"MINUTE","intervalNum":1,"limit":2400,"count":7}]"#;
        assert_eq!(request_weight_of(rl), Some((7, 2400, 60_000)));
        assert_eq!(request_weight_of("[1]"), None);
        assert_eq!(request_weight_of("{"), None);
    }

    #[test]
    fn binance_hosts_share_one_site_and_local_servers_count_per_port() {
        let site = |u: &str| site_of(&Endpoint::parse(u, "u").unwrap());
        assert_eq!(site("wss://ws-fapi.binance.com/ws-fapi/v1"), "binance.com");
        assert_eq!(site("wss://fstream.binance.com/private"), "binance.com");
        assert_eq!(
            site_of(&Endpoint::parse_http("https://dapi.binance.com", "u").unwrap()),
            "binance.com"
        );
        assert_eq!(site("wss://127.0.0.1:9443/x"), "127.0.0.1:9443");
        assert_eq!(site("ws://localhost:80/x"), "localhost:80");
    }
}
