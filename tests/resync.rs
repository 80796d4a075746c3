//! Automatic account resync (binance_config_set_account_resync): the stream
//! heals its own gaps. The snapshot comes once when it opens and after
//! every gap, in the same queue, after the gap and before what arrived
//! after it was requested; an application that replaces its book with each
//! snapshot and applies the other events by the README's merge rule holds
//! exactly the exchange's state, across outages and under flapping.

mod common;

use binance_uds::engine::UserStream;
use binance_uds::engine::{Client, Config, Status};
use binance_uds::engine::{ACCOUNT_SNAPSHOT, ACCOUNT_SNAPSHOT_FAILED, STREAM_GAP};
use common::book::{truth, Book};
use common::Exchange;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const API_KEY: &str = "RESYNCKEYabcdef0123456789";
const SECRET: &str = "RESYNCSECRETqwerty0123456789";

fn exchange() -> Exchange {
    Exchange::start(&["--account", &format!("{API_KEY}:{SECRET}")])
}

fn config(ex: &Exchange) -> Config {
    let mut c = common::config(ex, API_KEY, 5000, 200);
    c.set_rest_endpoint(&ex.rest).unwrap();
    c.set_secret_key(SECRET).unwrap();
    c.set_account_resync(1).unwrap();
    c
}

/// What the application does with each event; returns its type.
fn apply(book: &mut Book, ev: &binance_uds::engine::Event) -> String {
    let v: Value = serde_json::from_str(ev.json()).unwrap();
    if ev.kind() == ACCOUNT_SNAPSHOT {
        assert!(ev.is_library());
        *book = Book::from_snapshot(&v);
    } else {
        book.apply(&v);
    }
    ev.kind().to_owned()
}

/// Applies events until `quiet` passes without one; returns their types.
fn drain(s: &UserStream, book: &mut Book, quiet: Duration) -> Vec<String> {
    let mut kinds = Vec::new();
    while let Some(ev) = s.next(quiet).unwrap() {
        kinds.push(apply(book, &ev));
    }
    kinds
}

/// Applies events until one of `kind` has been applied; returns the types.
fn until(s: &UserStream, book: &mut Book, kind: &str) -> Vec<String> {
    let mut kinds = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Some(ev) = s.next(Duration::from_millis(100)).unwrap() {
            kinds.push(apply(book, &ev));
            if kinds.last().unwrap() == kind {
                return kinds;
            }
        }
    }
    panic!("no {kind}; got {kinds:?}");
}

fn place(control: std::net::SocketAddr, symbol: &str, qty: &str, price: u64) -> Value {
    common::control_at(
        control,
        json!({"cmd": "order_place", "api_key": API_KEY, "symbol": symbol, "side": "BUY",
               "quantity": qty, "price": price.to_string()}),
    )["order_id"]
        .clone()
}

fn fill(control: std::net::SocketAddr, id: &Value, qty: Option<&str>) {
    let mut cmd = json!({"cmd": "order_fill", "api_key": API_KEY, "order_id": id});
    if let Some(q) = qty {
        cmd["quantity"] = q.into();
    }
    common::control_at(control, cmd);
}

fn cancel(control: std::net::SocketAddr, id: &Value) {
    common::control_at(
        control,
        json!({"cmd": "order_cancel", "api_key": API_KEY, "order_id": id}),
    );
}

/// Places, fills and cancels `n` orders (from another thread if wanted).
fn trade(control: std::net::SocketAddr, n: u64, base: u64) {
    for i in 0..n {
        let id = place(control, "BTCUSDT", "0.003", base + i);
        match i % 3 {
            0 => fill(control, &id, None),
            1 => cancel(control, &id),
            _ => fill(control, &id, Some("0.001")),
        }
    }
}

#[test]
fn the_first_event_is_the_snapshot_and_each_gap_is_followed_by_one() {
    let ex = exchange();
    ex.control(json!({"cmd": "deposit", "api_key": API_KEY, "asset": "USDT", "amount": "5000"}));
    let resting = place(ex.control, "ETHUSDT", "0.5", 2000);
    let client = Client::new(&config(&ex)).unwrap();
    let s = UserStream::open(&client, None).unwrap();
    let mut book = Book::default();
    let first = s.next(Duration::from_secs(10)).unwrap().expect("an event");
    assert_eq!(first.kind(), ACCOUNT_SNAPSHOT, "{}", first.json());
    apply(&mut book, &first);
    assert_eq!(book.state(), truth(&ex, API_KEY));
    let doc: Value = serde_json::from_str(first.json()).unwrap();
    assert_eq!(doc["open_orders"][0]["orderId"], resting);
    assert!(doc["server_time_ms"].as_i64().unwrap() > 0);

    trade(ex.control, 6, 60000);
    drain(&s, &mut book, Duration::from_millis(300));
    assert_eq!(
        book.state(),
        truth(&ex, API_KEY),
        "events applied by the rule"
    );

    // The outage: the account changes while nothing is delivered. The
    // exchange refuses the reconnect until the trading is done, so the
    // snapshot alone must carry all of it.
    ex.control(json!({"cmd": "refuse", "target": "stream", "enabled": true}));
    ex.control(json!({"cmd": "drop", "target": "stream"}));
    cancel(ex.control, &resting);
    trade(ex.control, 6, 61000);
    ex.control(json!({"cmd": "refuse", "target": "stream", "enabled": false}));
    let kinds = until(&s, &mut book, ACCOUNT_SNAPSHOT);
    let gap = kinds.iter().position(|k| k == STREAM_GAP).expect("a gap");
    assert!(
        gap < kinds.len() - 1,
        "the snapshot follows the gap: {kinds:?}"
    );
    assert_eq!(book.state(), truth(&ex, API_KEY), "healed: {kinds:?}");
    drain(&s, &mut book, Duration::from_millis(300));
    assert_eq!(book.state(), truth(&ex, API_KEY));
}

#[test]
fn trading_while_the_snapshot_is_taken_still_ends_in_the_exchanges_state() {
    let ex = exchange();
    let client = Client::new(&config(&ex)).unwrap();
    let s = UserStream::open(&client, None).unwrap();
    let mut book = Book::default();
    until(&s, &mut book, ACCOUNT_SNAPSHOT);
    for round in 0..3 {
        // The drop comes once trading has begun, so that the snapshot is
        // taken while orders change (a drop before the first trade would
        // make the comparison below trivially true).
        let (started, trading) = std::sync::mpsc::channel();
        let trader = {
            let control = ex.control;
            let base = 62000 + round * 100;
            std::thread::spawn(move || {
                trade(control, 1, base);
                started.send(()).unwrap();
                trade(control, 11, base + 1);
            })
        };
        trading.recv().expect("the trader placed its first order");
        ex.control(json!({"cmd": "drop", "target": "stream"}));
        until(&s, &mut book, ACCOUNT_SNAPSHOT);
        trader.join().unwrap();
        drain(&s, &mut book, Duration::from_millis(400));
        assert_eq!(book.state(), truth(&ex, API_KEY), "round {round}");
    }
}

#[test]
fn flapping_never_storms_and_still_heals() {
    let ex = exchange();
    let client = Client::new(&config(&ex)).unwrap();
    let s = UserStream::open(&client, None).unwrap();
    let mut book = Book::default();
    until(&s, &mut book, ACCOUNT_SNAPSHOT);
    let before = ex.stats()["requests"]["GET /fapi/v1/openOrders"]
        .as_u64()
        .unwrap_or(0);
    let trader = {
        let control = ex.control;
        std::thread::spawn(move || trade(control, 15, 63000))
    };
    for _ in 0..8 {
        ex.control(json!({"cmd": "drop", "target": "stream"}));
        std::thread::sleep(Duration::from_millis(60));
    }
    trader.join().unwrap();
    // Read until healed: a snapshot behind the last gap, then quiet. The
    // book may match the exchange's before that (the events after the gaps
    // can carry every change), but the snapshot is what says so; it waits
    // for its turn in the request budget (spread over the window).
    let mut kinds = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let healed = |kinds: &[String]| {
        kinds
            .iter()
            .rposition(|k| k == STREAM_GAP)
            .is_some_and(|gap| kinds[gap..].iter().any(|k| k == ACCOUNT_SNAPSHOT))
    };
    loop {
        kinds.extend(drain(&s, &mut book, Duration::from_millis(800)));
        if healed(&kinds) || Instant::now() > deadline {
            break;
        }
    }
    assert_eq!(
        book.state(),
        truth(&ex, API_KEY),
        "{kinds:?}\nhealth {:?}\nbudget {:?}",
        s.health(),
        client.budget().view(),
    );
    let gaps = kinds.iter().filter(|k| *k == STREAM_GAP).count();
    let snapshots = kinds.iter().filter(|k| *k == ACCOUNT_SNAPSHOT).count();
    assert!(gaps >= 1 && snapshots >= 1, "{kinds:?}");
    assert!(snapshots <= gaps, "one per gap at most: {kinds:?}");
    // One snapshot in flight at a time: the REST requests match the snapshots.
    let after = ex.stats()["requests"]["GET /fapi/v1/openOrders"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        after - before <= snapshots as u64 + 1,
        "{} requests for {snapshots} snapshots",
        after - before
    );
    let last_gap = kinds.iter().rposition(|k| k == STREAM_GAP).unwrap();
    assert!(
        kinds[last_gap..].iter().any(|k| k == ACCOUNT_SNAPSHOT),
        "the last gap is healed: {kinds:?}"
    );
}

/// Opens a stream whose first snapshot is refused (429 on openOrders, retry
/// after `retry_after_ms`); returns it with the failure it reported first.
fn open_with_first_snapshot_refused(
    ex: &Exchange,
    retry_after_ms: u64,
) -> (Client, UserStream, binance_uds::engine::Event) {
    ex.control(
        json!({"cmd": "fail", "method": "GET /fapi/v1/openOrders", "status": 429, "code": -1003,
                      "msg": "Too many requests", "retry_after_ms": retry_after_ms}),
    );
    let client = Client::new(&config(ex)).unwrap();
    let s = UserStream::open(&client, None).unwrap();
    let failed = s.next(Duration::from_secs(10)).unwrap().expect("an event");
    assert_eq!(failed.kind(), ACCOUNT_SNAPSHOT_FAILED, "{}", failed.json());
    (client, s, failed)
}

#[test]
fn a_failed_snapshot_is_reported_and_retried_without_holding_events_back() {
    let ex = exchange();
    // The first snapshot's open-orders request is rate limited.
    let (_client, s, failed) = open_with_first_snapshot_refused(&ex, 1500);
    let mut book = Book::default();
    assert!(failed.is_library());
    assert_eq!(
        failed.get("/status").as_deref(),
        Some("BINANCE_RATE_LIMITED")
    );
    let retry: u64 = failed.get("/retry_in_ms").unwrap().parse().unwrap();
    assert!(
        retry >= 1000,
        "the server's retry time is honoured: {}",
        failed.json()
    );
    assert!(!failed.json().contains(SECRET) && !failed.json().contains(API_KEY));
    // Events are not held while the retry waits.
    trade(ex.control, 1, 64000);
    let kinds = until(&s, &mut book, "ORDER_TRADE_UPDATE");
    assert!(!kinds.contains(&ACCOUNT_SNAPSHOT.to_owned()), "{kinds:?}");
    // The retry succeeds and heals.
    until(&s, &mut book, ACCOUNT_SNAPSHOT);
    drain(&s, &mut book, Duration::from_millis(300));
    assert_eq!(book.state(), truth(&ex, API_KEY));
}

#[test]
fn a_gap_while_a_retry_waits_is_healed_by_that_retry() {
    let ex = exchange();
    // The first two snapshots fail on the server's side, so the second
    // retry waits 1 to 2 s. (Not a 429: that stops every request to the
    // server until its time, the reconnects' too, so no gap could come.)
    ex.control(
        json!({"cmd": "fail", "method": "GET /fapi/v1/openOrders", "status": 503, "code": -1001,
               "msg": "Internal error; unable to process your request. Please try again.", "count": 2}),
    );
    let client = Client::new(&config(&ex)).unwrap();
    let s = UserStream::open(&client, None).unwrap();
    let mut failures = 0;
    let failed = loop {
        let ev = s.next(Duration::from_secs(10)).unwrap().expect("an event");
        if ev.kind() == ACCOUNT_SNAPSHOT_FAILED {
            failures += 1;
            if failures == 2 {
                break ev;
            }
        }
    };
    let mut book = Book::default();
    let retry_at = Instant::now()
        + Duration::from_millis(failed.get("/retry_in_ms").unwrap().parse().unwrap());
    // A flapping stream: two gaps while the retry waits.
    for _ in 0..2 {
        ex.control(json!({"cmd": "drop", "target": "stream"}));
        until(&s, &mut book, STREAM_GAP);
    }
    assert!(Instant::now() < retry_at, "the gaps came before the retry");
    // No attempt of its own per gap (each would be refused, and reported):
    // the next library event is the waiting retry's snapshot, at its time.
    let kinds = until(&s, &mut book, ACCOUNT_SNAPSHOT);
    assert!(
        !kinds.contains(&ACCOUNT_SNAPSHOT_FAILED.to_owned()),
        "{kinds:?}"
    );
    assert!(Instant::now() + Duration::from_millis(50) >= retry_at);
    drain(&s, &mut book, Duration::from_millis(300));
    assert_eq!(book.state(), truth(&ex, API_KEY));
}

#[test]
fn resync_without_a_signing_key_is_refused_at_open() {
    let ex = exchange();
    let mut cfg = common::config(&ex, API_KEY, 5000, 200);
    cfg.set_account_resync(1).unwrap();
    let client = Client::new(&cfg).unwrap();
    let e = UserStream::open(&client, None).err().expect("refused");
    assert_eq!(e.status, Status::InvalidArgument);
    assert!(
        e.message.contains("binance_config_set_account_resync"),
        "{e:?}"
    );
    assert!(cfg.set_account_resync(2).is_err());
}
