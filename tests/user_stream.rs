//! The user data stream against the local exchange: events in order and
//! intact, renewal, reconnection with gap events, rotation without loss or
//! duplicate, keepalive, silence, overflow, close, proxy.

mod common;

use binance_uds::engine::UserStream;
use binance_uds::engine::{Client, Config, Status};
use binance_uds::engine::{Event, LISTEN_KEY_RENEWED, STREAM_DISCONNECTED, STREAM_GAP};
use common::proxy::Proxy;
use common::stream::until;
use common::{wait, wait_for, Exchange};
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const KEY: &str = "TESTKEYstreamABCDEF0123456789";

/// The SUBSCRIBE form (the default); scripts/test.sh runs this file again
/// with BINANCE_UDS_TEST_STREAM_FORM=query for the query form.
fn config(ex: &Exchange) -> Config {
    let mut c = common::config(ex, KEY, 5000, 500);
    if std::env::var("BINANCE_UDS_TEST_STREAM_FORM").as_deref() == Ok("query") {
        c.set_stream_form(1).unwrap();
    }
    c
}

fn open(cfg: &Config) -> (Client, UserStream) {
    let client = Client::new(cfg).unwrap();
    let stream = UserStream::open(&client, None).unwrap();
    (client, stream)
}

fn next(s: &UserStream) -> Event {
    match s.next(Duration::from_secs(10)) {
        Ok(Some(ev)) => ev,
        other => panic!("expected an event, got {other:?}"),
    }
}

fn emit(ex: &Exchange, kind: &str, count: u64) -> serde_json::Value {
    ex.control(json!({"cmd": "emit", "api_key": KEY, "type": kind, "count": count}))
}

fn read_n(s: &UserStream, n: usize) -> Vec<Event> {
    (0..n).map(|_| next(s)).collect()
}

fn assert_increasing(events: &[Event]) {
    for w in events.windows(2) {
        assert!(
            w[0].time_ms() < w[1].time_ms(),
            "out of order or duplicated: {} then {}",
            w[0].json(),
            w[1].json()
        );
    }
}

#[test]
fn every_documented_event_arrives_in_order_and_intact() {
    let ex = Exchange::start(&[]);
    let (_c, s) = open(&config(&ex));
    let types = [
        "ACCOUNT_UPDATE",
        "ORDER_TRADE_UPDATE",
        "TRADE_LITE",
        "MARGIN_CALL",
        "ACCOUNT_CONFIG_UPDATE",
        "STRATEGY_UPDATE",
        "GRID_UPDATE",
        "ALGO_UPDATE",
        "CONDITIONAL_ORDER_TRIGGER_REJECT",
        "SOMETHING_NEW_2027",
    ];
    for t in types {
        emit(&ex, t, 1);
    }
    let events = read_n(&s, types.len());
    for (ev, t) in events.iter().zip(types) {
        assert_eq!(ev.kind(), t);
        assert!(ev.time_ms() > 1_600_000_000_000, "{}", ev.json());
        let parsed: serde_json::Value = serde_json::from_str(ev.json()).unwrap();
        assert_eq!(parsed["e"], t);
    }
    assert_increasing(&events);
    emit(&ex, "ORDER_TRADE_UPDATE", 200);
    let events = read_n(&s, 200);
    assert_increasing(&events);
    assert!(events[0].get("/o/X").is_some(), "{}", events[0].json());
    assert!(
        s.next(Duration::from_millis(200)).unwrap().is_none(),
        "no extra event"
    );
    let h = s.health();
    assert!(h.connected);
    assert_eq!(h.events_delivered, 210);
    assert_eq!((h.events_dropped, h.reconnects, h.gaps), (0, 0, 0));
}

#[test]
fn renews_the_key_after_listen_key_expired() {
    let ex = Exchange::start(&[]);
    let (c, s) = open(&config(&ex));
    let old = c.listen_key_start().unwrap();
    ex.control(json!({"cmd": "expire", "api_key": KEY}));
    let ev = next(&s);
    assert_eq!(ev.kind(), "listenKeyExpired");
    assert!(ev.time_ms() > 0, "E as a string is read: {}", ev.json());
    let (gap, _) = until(&s, STREAM_GAP);
    assert_eq!(gap.get("/reason").as_deref(), Some("listen_key_expired"));
    let (renewed, _) = until(&s, LISTEN_KEY_RENEWED);
    assert!(
        !renewed.json().contains(&old),
        "full key not exposed in events"
    );
    assert_ne!(c.listen_key_start().unwrap(), old);
    emit(&ex, "ORDER_TRADE_UPDATE", 3);
    let events = read_n(&s, 3);
    assert!(events.iter().all(|e| e.kind() == "ORDER_TRADE_UPDATE"));
    assert_eq!(s.health().key_renewals, 1);
}

#[test]
fn renews_after_minus_1125_and_after_a_changed_key() {
    let ex = Exchange::start(&[]);
    let mut cfg = config(&ex);
    cfg.set_keepalive_interval_ms(200).unwrap();
    let (_c, s) = open(&cfg);
    ex.control(json!({"cmd": "fail", "method": "userDataStream.ping", "status": 400, "code": -1125, "msg": "This listenKey does not exist."}));
    let (gap, _) = until(&s, STREAM_GAP);
    assert_eq!(gap.get("/reason").as_deref(), Some("listen_key_invalid"));
    emit(&ex, "ORDER_TRADE_UPDATE", 2);
    assert_eq!(next(&s).kind(), "ORDER_TRADE_UPDATE");
    assert_eq!(next(&s).kind(), "ORDER_TRADE_UPDATE");
    let other = "Z".repeat(64);
    ex.control(json!({"cmd": "raw", "method": "userDataStream.ping", "text": format!("{{\"id\":{{id}},\"status\":200,\"result\":{{\"listenKey\":\"{other}\"}}}}")}));
    let (gap, _) = until(&s, STREAM_GAP);
    assert_eq!(gap.get("/reason").as_deref(), Some("listen_key_changed"));
    emit(&ex, "TRADE_LITE", 1);
    assert_eq!(until(&s, "TRADE_LITE").0.kind(), "TRADE_LITE");
}

#[test]
fn reconnects_after_a_drop_and_reports_the_gap() {
    let ex = Exchange::start(&[]);
    let (_c, s) = open(&config(&ex));
    emit(&ex, "ORDER_TRADE_UPDATE", 1);
    let before = next(&s);
    ex.control(json!({"cmd": "drop", "target": "stream"}));
    let disc = next(&s);
    assert_eq!(disc.kind(), STREAM_DISCONNECTED);
    assert_eq!(disc.get("/reason").as_deref(), Some("disconnected"));
    let gap = next(&s);
    assert_eq!(gap.kind(), STREAM_GAP);
    let from: i64 = gap.get("/from_ms").unwrap().parse().unwrap();
    let to: i64 = gap.get("/to_ms").unwrap().parse().unwrap();
    assert!(
        from >= before.time_ms() - 1000 && from <= to,
        "{}",
        gap.json()
    );
    emit(&ex, "ORDER_TRADE_UPDATE", 5);
    let after = read_n(&s, 5);
    assert!(after.iter().all(|e| e.kind() == "ORDER_TRADE_UPDATE"));
    let h = s.health();
    assert!(h.connected);
    assert_eq!((h.reconnects, h.gaps), (1, 1));
    assert_eq!(ex.stats()["stream_connections_open"], 1);
}

#[test]
fn rotation_loses_nothing_and_duplicates_nothing() {
    let ex = Exchange::start(&[]);
    let mut cfg = config(&ex);
    cfg.set_stream_rotation_ms(700).unwrap();
    let (_c, s) = open(&cfg);
    let total = 300u64;
    let emitter = {
        let control = ex.control;
        std::thread::spawn(move || {
            let cmd = json!({"cmd": "emit", "api_key": KEY, "type": "ORDER_TRADE_UPDATE", "count": total, "interval_us": 10_000});
            common::control_at(control, cmd)
        })
    };
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while (got.len() as u64) < total && Instant::now() < deadline {
        if let Some(ev) = s.next(Duration::from_millis(500)).unwrap() {
            assert!(
                !ev.is_library(),
                "rotation must not look like a gap: {}",
                ev.json()
            );
            got.push(ev);
        }
    }
    emitter.join().unwrap();
    assert_eq!(got.len() as u64, total, "lost events across rotations");
    assert_increasing(&got);
    assert!(
        s.next(Duration::from_millis(500)).unwrap().is_none(),
        "duplicate after the last"
    );
    let h = s.health();
    assert!(h.reconnects >= 2, "rotated {} times", h.reconnects);
    assert_eq!(h.gaps, 0);
    // Each rotated-out connection is closed (at most the current one and
    // one being replaced stay open).
    wait_for(
        "rotated-out connections to close",
        Duration::from_secs(10),
        || ex.stat("stream_connections_open") <= 2,
    );
}

#[test]
fn keepalive_runs_on_schedule() {
    let ex = Exchange::start(&[]);
    let mut cfg = config(&ex);
    cfg.set_keepalive_interval_ms(200).unwrap();
    let t0 = Instant::now();
    let (_c, s) = open(&cfg);
    wait_for("three keepalives", Duration::from_secs(30), || {
        ex.requests("userDataStream.ping") >= 3
    });
    // Spaced by the interval, not sent back to back: the first comes after
    // half an interval at the earliest, each next one after 9/10 of one
    // (the jitter's bounds). A lower bound: a slow machine cannot break it.
    assert!(
        t0.elapsed() >= Duration::from_millis(200 / 2 + 2 * 200 * 9 / 10),
        "three keepalives within {:?} at a 200 ms interval",
        t0.elapsed()
    );
    let h = s.health();
    assert_eq!(h.last_keepalive_status, 0);
    assert!(h.last_keepalive_ms > 0);
}

#[test]
fn a_silent_stream_is_replaced() {
    let ex = Exchange::start(&[]);
    let mut cfg = config(&ex);
    cfg.set_silence_timeout_ms(400).unwrap();
    let (_c, s) = open(&cfg);
    ex.control(json!({"cmd": "silent", "enabled": true}));
    let (disc, _) = until(&s, STREAM_DISCONNECTED);
    assert_eq!(disc.get("/reason").as_deref(), Some("silent"));
    ex.control(json!({"cmd": "silent", "enabled": false}));
    let (gap, _) = until(&s, STREAM_GAP);
    assert_eq!(gap.get("/reason").as_deref(), Some("silent"));
    emit(&ex, "ORDER_TRADE_UPDATE", 1);
    until(&s, "ORDER_TRADE_UPDATE");
}

#[test]
fn queue_overflow_is_reported_and_the_stream_lives_on() {
    let ex = Exchange::start(&[]);
    let mut cfg = config(&ex);
    cfg.set_event_queue_capacity(10).unwrap();
    let (_c, s) = open(&cfg);
    emit(&ex, "ORDER_TRADE_UPDATE", 100);
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.health().events_dropped < 90 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(s.health().events_dropped, 90);
    let kept = read_n(&s, 10);
    assert!(kept.iter().all(|e| e.kind() == "ORDER_TRADE_UPDATE"));
    let gap = next(&s);
    assert_eq!(gap.kind(), STREAM_GAP);
    assert_eq!(gap.get("/reason").as_deref(), Some("queue_overflow"));
    assert_eq!(gap.get("/dropped").as_deref(), Some("90"));
    emit(&ex, "TRADE_LITE", 1);
    assert_eq!(next(&s).kind(), "TRADE_LITE");
}

/// Starts a thread that blocks in `next` (30 s) and returns once it is
/// provably blocked there (the kernel sees it waiting: `wait_blocked`), so
/// that waking it tests the wake-up, not a refusal on the way in.
fn blocked_reader(
    s: &Arc<UserStream>,
) -> std::thread::JoinHandle<binance_uds::engine::Result<Option<Event>>> {
    let (s, (tx, rx)) = (s.clone(), std::sync::mpsc::channel());
    let reader = std::thread::spawn(move || {
        tx.send(wait::thread_id()).unwrap();
        s.next(Duration::from_secs(30))
    });
    let tid = rx.recv().unwrap();
    wait::wait_blocked("the reader to block in next", tid, Duration::from_secs(60));
    reader
}

#[test]
fn close_wakes_a_blocked_next_and_leaves_nothing_behind() {
    let ex = Exchange::start(&[]);
    let (c, s) = open(&config(&ex));
    let s = Arc::new(s);
    let blocked = blocked_reader(&s);
    s.close();
    // Woken with StreamClosed, not left to time out after 30 s (Ok(None)).
    let r = blocked.join().unwrap();
    assert_eq!(r.unwrap_err().status, Status::StreamClosed);
    assert_eq!(
        s.next(Duration::ZERO).unwrap_err().status,
        Status::StreamClosed
    );
    wait_for(
        "the stream connection to close",
        Duration::from_secs(10),
        || ex.stat("stream_connections_open") == 0,
    );
    // The key was not stopped: it belongs to the account.
    c.listen_key_keepalive().unwrap();
}

#[test]
fn shutdown_wakes_every_reader_and_refuses_new_reads_without_freeing() {
    let ex = Exchange::start(&[]);
    let (_c, s) = open(&config(&ex));
    let s = Arc::new(s);
    let readers: Vec<_> = (0..4).map(|_| blocked_reader(&s)).collect();
    s.shutdown();
    for r in readers {
        assert_eq!(r.join().unwrap().unwrap_err().status, Status::StreamClosed);
    }
    // Refused from now on, and again after a second shutdown; still valid.
    assert_eq!(
        s.next(Duration::ZERO).unwrap_err().status,
        Status::StreamClosed
    );
    s.shutdown();
    assert_eq!(
        s.next(Duration::from_secs(5)).unwrap_err().status,
        Status::StreamClosed
    );
    let _ = s.health();
    s.close();
}

#[test]
fn closing_one_stream_leaves_the_shared_key_to_the_others() {
    let ex = Exchange::start(&[]);
    let cfg = config(&ex);
    let (_c1, s1) = open(&cfg);
    let (_c2, s2) = open(&cfg);
    s1.close();
    emit(&ex, "ORDER_TRADE_UPDATE", 2);
    assert_eq!(read_n(&s2, 2).len(), 2);
}

#[test]
fn callback_receives_events_in_order() {
    let ex = Exchange::start(&[]);
    let client = Client::new(&config(&ex)).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    let s = UserStream::open(
        &client,
        Some(Box::new(move |ev: Event| {
            seen2.lock().unwrap().push(ev.time_ms())
        })),
    )
    .unwrap();
    emit(&ex, "ORDER_TRADE_UPDATE", 20);
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen.lock().unwrap().len() < 20 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 20);
    assert!(seen.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(
        s.next(Duration::ZERO).unwrap_err().status,
        Status::InvalidArgument
    );
    s.close();
}

#[test]
fn a_callback_may_make_blocking_calls() {
    let ex = Exchange::start(&[]);
    let client = Arc::new(Client::new(&config(&ex)).unwrap());
    let key = client.listen_key_start().unwrap();
    let results = Arc::new(Mutex::new(Vec::new()));
    let (c2, r2) = (client.clone(), results.clone());
    let s = UserStream::open(
        &client,
        Some(Box::new(move |_ev: Event| {
            r2.lock().unwrap().push(c2.listen_key_keepalive());
        })),
    )
    .unwrap();
    emit(&ex, "ORDER_TRADE_UPDATE", 3);
    let deadline = Instant::now() + Duration::from_secs(10);
    while results.lock().unwrap().len() < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    s.close();
    let results = results.lock().unwrap();
    assert_eq!(results.len(), 3);
    for r in results.iter() {
        assert_eq!(r.as_deref().unwrap(), key);
    }
}

#[test]
fn both_connections_go_through_the_proxy_with_credentials() {
    let ex = Exchange::start(&[]);
    // "user:p@ss" percent-encoded in the URL, Basic-encoded on the wire.
    let proxy = Proxy::start(Some("Basic dXNlcjpwQHNz"));
    let mut cfg = config(&ex);
    cfg.set_proxy(&format!("http://user:p%40ss@{}", proxy.addr))
        .unwrap();
    let (_c, s) = open(&cfg);
    emit(&ex, "ORDER_TRADE_UPDATE", 1);
    assert_eq!(next(&s).kind(), "ORDER_TRADE_UPDATE");
    let tunnels = proxy.tunnels();
    assert_eq!(
        tunnels,
        vec![ex.addr(), ex.addr()],
        "API and stream connections tunnelled"
    );
    // Wrong credentials: a clear error without the credentials in it.
    let mut bad = config(&ex);
    bad.set_proxy(&format!("http://user:WRONGPASS@{}", proxy.addr))
        .unwrap();
    let e = Client::new(&bad).unwrap().listen_key_start().unwrap_err();
    assert_eq!(e.status, Status::ConnectFailed);
    assert!(e.message.contains("407"), "{}", e.message);
    assert!(!e.message.contains("WRONGPASS"), "{}", e.message);
}

#[test]
fn freeing_the_client_ends_its_streams() {
    let ex = Exchange::start(&[]);
    let (c, s) = open(&config(&ex));
    let t0 = Instant::now();
    drop(c);
    // The stream ends at once: a reader learns it from next().
    let e = s.next(Duration::from_secs(10)).unwrap_err();
    assert_eq!(e.status, Status::StreamClosed);
    assert!(t0.elapsed() < Duration::from_secs(5));
    wait_for("its socket to close", Duration::from_secs(10), || {
        ex.stat("stream_connections_open") == 0
    });
    s.close();
    assert_eq!(
        s.next(Duration::ZERO).unwrap_err().status,
        Status::StreamClosed
    );
}

/// Whether `fd` becomes readable within `ms` (poll(2), level-triggered).
#[cfg(unix)]
fn readable(fd: i64, ms: i32) -> bool {
    let mut p = libc::pollfd {
        fd: fd as i32,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let n = unsafe { libc::poll(&mut p, 1, ms) };
    n == 1 && p.revents & libc::POLLIN != 0
}

/// Everything `try_next` has now, without waiting.
fn drain(s: &UserStream) -> Vec<Event> {
    std::iter::from_fn(|| s.try_next().unwrap()).collect()
}

/// A poll loop drives the stream: the descriptor is readable while events
/// are queued and not once they are taken, every event arrives in order
/// through `try_next`, and shutting the stream down makes it readable
/// with `try_next` saying so.
#[cfg(unix)]
#[test]
fn a_poll_loop_gets_every_event_in_order_through_the_descriptor() {
    let ex = Exchange::start(&[]);
    let (_c, s) = open(&config(&ex));
    let fd = s.fd().unwrap();
    assert_eq!(s.fd().unwrap(), fd, "the same descriptor every time");
    drain(&s);
    assert!(!readable(fd, 0), "nothing queued: not readable");
    emit(&ex, "ORDER_TRADE_UPDATE", 300);
    let mut got = Vec::new();
    while got.len() < 300 {
        assert!(readable(fd, 10_000), "readable while events are due");
        got.extend(drain(&s));
        assert!(
            !readable(fd, 0) || s.health().events_queued > 0,
            "drained, yet readable with nothing queued"
        );
    }
    assert_eq!(got.len(), 300);
    assert!(got.iter().all(|e| e.kind() == "ORDER_TRADE_UPDATE"));
    assert_increasing(&got);
    assert!(!readable(fd, 0), "all taken: not readable");
    s.shutdown();
    assert!(readable(fd, 0), "readable once shut down");
    let err = s.try_next().unwrap_err();
    assert_eq!(err.status, Status::StreamClosed);
    assert!(readable(fd, 0), "and stays readable");
}

/// Events dropped on overflow are reported through the descriptor too:
/// it stays readable until the gap event is taken.
#[cfg(unix)]
#[test]
fn a_poll_loop_gets_the_overflow_gap() {
    let ex = Exchange::start(&[]);
    let mut cfg = config(&ex);
    cfg.set_event_queue_capacity(10).unwrap();
    let (_c, s) = open(&cfg);
    let fd = s.fd().unwrap();
    emit(&ex, "ORDER_TRADE_UPDATE", 100);
    wait_for("90 events dropped", Duration::from_secs(10), || {
        s.health().events_dropped == 90
    });
    assert!(readable(fd, 0));
    let got = drain(&s);
    assert_eq!(got.len(), 11, "10 kept and the gap");
    assert!(got[..10].iter().all(|e| e.kind() == "ORDER_TRADE_UPDATE"));
    assert_eq!(got[10].kind(), STREAM_GAP);
    assert_eq!(got[10].get("/dropped").as_deref(), Some("90"));
    assert!(!readable(fd, 0), "gap taken: not readable");
    emit(&ex, "TRADE_LITE", 1);
    assert!(readable(fd, 10_000));
    assert_eq!(drain(&s)[0].kind(), "TRADE_LITE");
}

#[test]
fn a_callback_stream_has_no_descriptor_and_a_closed_one_refuses() {
    let ex = Exchange::start(&[]);
    let cfg = config(&ex);
    let client = Client::new(&cfg).unwrap();
    let cb = UserStream::open(&client, Some(Box::new(|_| {}))).unwrap();
    let err = cb.fd().unwrap_err();
    assert_eq!(err.status, Status::InvalidArgument);
    assert!(err.to_string().contains("callback"), "{err}");
    let s = UserStream::open(&client, None).unwrap();
    s.shutdown();
    assert_eq!(s.fd().unwrap_err().status, Status::StreamClosed);
}
