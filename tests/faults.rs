//! Faults injected by the local exchange (and by sockets the tests hold),
//! one test each: what the caller sees, and proof that the next call works.
//! Timeouts are short so that every test stays well under 10 s.

mod common;

use binance_uds::engine::UserStream;
use binance_uds::engine::{Client, Config, Error, Status};
use binance_uds::engine::{Event, LISTEN_KEY_RENEWED, STREAM_DISCONNECTED, STREAM_GAP};
use common::stream::until_within as until;
use common::{wait_for, Exchange};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const KEY: &str = "TESTKEYfaultsABCDEF0123456789";

/// Both timeouts of `config`. The tests' upper time bounds derive from the
/// timeouts they configure: a call that fails "at once" fails before its
/// request timeout; a call that must connect first takes at most the
/// connect and request timeouts together (the header's contract).
const TIMEOUT_MS: u32 = 2000;

fn config(ex: &Exchange) -> Config {
    common::config(ex, KEY, TIMEOUT_MS, 500)
}

fn ms(n: u32) -> Duration {
    Duration::from_millis(u64::from(n))
}

fn client(cfg: &Config) -> Arc<Client> {
    Arc::new(Client::new(cfg).unwrap())
}

fn requests(ex: &Exchange, method: &str) -> u64 {
    ex.requests(method)
}

fn stat(ex: &Exchange, name: &str) -> u64 {
    ex.stat(name)
}

/// Runs a keepalive on another thread once the exchange has seen `before`
/// pings, and returns its handle after the exchange has received it.
fn keepalive_in_flight(
    ex: &Exchange,
    c: &Arc<Client>,
) -> std::thread::JoinHandle<(Result<String, Error>, Duration)> {
    let before = requests(ex, "userDataStream.ping");
    let c2 = c.clone();
    let t = std::thread::spawn(move || {
        let t0 = Instant::now();
        let r = c2.listen_key_keepalive();
        (r, t0.elapsed())
    });
    wait_for(
        "the request to reach the exchange",
        Duration::from_secs(5),
        || requests(ex, "userDataStream.ping") > before,
    );
    t
}

fn next(s: &UserStream) -> Event {
    match s.next(Duration::from_secs(10)) {
        Ok(Some(ev)) => ev,
        other => panic!("expected an event, got {other:?}"),
    }
}

fn emit(ex: &Exchange, kind: &str, count: u64) -> Value {
    ex.control(json!({"cmd": "emit", "api_key": KEY, "type": kind, "count": count}))
}

#[test]
fn connection_reset_mid_request_fails_at_once_and_the_next_call_reconnects() {
    let ex = Exchange::start(&[]);
    let c = client(&config(&ex));
    let key = c.listen_key_start().unwrap();
    for round in 0..3 {
        ex.control(json!({"cmd": "reset_mid_request"}));
        let t0 = Instant::now();
        let e = c.listen_key_keepalive().unwrap_err();
        assert_eq!(e.status, Status::ConnectionClosed, "round {round}: {e:?}");
        assert!(
            t0.elapsed() < ms(TIMEOUT_MS),
            "round {round}: waited {:?} for a reset connection",
            t0.elapsed()
        );
        assert_eq!(c.listen_key_keepalive().unwrap(), key, "round {round}");
    }
    let s = ex.stats();
    assert_eq!(s["api_connections_total"], 4, "{s}");
    assert_eq!(s["api_connections_open"], 1, "{s}");
}

#[test]
fn close_frames_of_every_kind_fail_the_pending_request_and_the_next_call_reconnects() {
    let ex = Exchange::start(&[]);
    let c = client(&config(&ex));
    let key = c.listen_key_start().unwrap();
    let reason_123 = "r".repeat(123);
    let cases: [(u64, &str); 7] = [
        (1000, ""),
        (1001, "going away"),
        (1008, "policy violation"),
        (1011, "internal error"),
        (1013, "try again later"),
        (3000, "registered code"),
        (4999, &reason_123),
    ];
    for (code, reason) in cases {
        // The answer is held back so that the request is waiting when the
        // close frame comes.
        ex.control(json!({"cmd": "delay", "ms": 3000}));
        let waiter = keepalive_in_flight(&ex, &c);
        ex.control(json!({"cmd": "close", "target": "api", "code": code, "reason": reason}));
        let (r, took) = waiter.join().unwrap();
        let e = r.unwrap_err();
        assert_eq!(e.status, Status::ConnectionClosed, "code {code}: {e:?}");
        assert!(
            e.message.contains(&format!("code {code}")),
            "code {code}: the message does not say which close: {}",
            e.message
        );
        assert!(
            took < ms(TIMEOUT_MS),
            "code {code}: waited out the timeout: {took:?}"
        );
        assert_eq!(c.listen_key_keepalive().unwrap(), key, "after code {code}");
    }
    assert_eq!(stat(&ex, "api_connections_total"), 1 + cases.len() as u64);
}

#[test]
fn a_frame_cut_in_half_times_out_and_the_next_call_uses_a_new_connection() {
    let ex = Exchange::start(&[]);
    let mut cfg = config(&ex);
    let (connect_ms, request_ms) = (2000, 700);
    cfg.set_timeouts_ms(connect_ms, request_ms).unwrap();
    let c = client(&cfg);
    let key = c.listen_key_start().unwrap();
    for round in 0..3 {
        ex.control(json!({"cmd": "cut"}));
        let t0 = Instant::now();
        let e = c.listen_key_keepalive().unwrap_err();
        assert!(
            matches!(e.status, Status::Timeout | Status::ConnectionClosed),
            "round {round}: {e:?}"
        );
        // Ended by its request timeout, not left hanging on the cut frame.
        assert!(
            t0.elapsed() < ms(request_ms + connect_ms),
            "round {round}: {:?}",
            t0.elapsed()
        );
        // The next call connects again and gets its answer within its
        // bounds, instead of waiting on the wedged connection (where it
        // would time out).
        let t1 = Instant::now();
        assert_eq!(c.listen_key_keepalive().unwrap(), key, "round {round}");
        assert!(
            t1.elapsed() < ms(connect_ms + request_ms),
            "{:?}",
            t1.elapsed()
        );
    }
    // The wedged sockets are closed, not left open until the client is freed.
    wait_for(
        "the cut connections to close",
        Duration::from_secs(3),
        || stat(&ex, "api_connections_open") == 1,
    );
    assert_eq!(stat(&ex, "api_connections_total"), 4);
}

#[test]
fn a_frame_cut_after_other_frames_were_heard_does_not_wedge_the_next_call() {
    // Server pings arrive while the answer is held back, then the answer is
    // cut in half: frames were heard during the wait, yet the connection is
    // stuck in the middle of a frame and can never deliver another answer.
    let ex = Exchange::start(&["--ping-interval-ms", "100"]);
    let mut cfg = config(&ex);
    let (connect_ms, request_ms) = (2000, 900);
    cfg.set_timeouts_ms(connect_ms, request_ms).unwrap();
    let c = client(&cfg);
    let key = c.listen_key_start().unwrap();
    for round in 0..2 {
        ex.control(json!({"cmd": "delay", "ms": 400}));
        ex.control(json!({"cmd": "cut"}));
        let t0 = Instant::now();
        let e = c.listen_key_keepalive().unwrap_err();
        assert!(
            matches!(e.status, Status::Timeout | Status::ConnectionClosed),
            "round {round}: {e:?}"
        );
        assert!(t0.elapsed() < ms(request_ms + connect_ms));
        let r = c.listen_key_keepalive();
        assert_eq!(
            r.as_deref().ok(),
            Some(key.as_str()),
            "round {round}: the call after a cut frame failed: {r:?}"
        );
    }
    wait_for(
        "the cut connections to close",
        Duration::from_secs(3),
        || stat(&ex, "api_connections_open") == 1,
    );
}

/// A TCP listener that either holds every connection without a word (a
/// server that never finishes TLS) or forwards it to `target`.
struct Hold {
    addr: SocketAddr,
    forward: Arc<AtomicBool>,
    held: Arc<Mutex<Vec<TcpStream>>>,
}

impl Hold {
    fn start(target: String) -> Hold {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let forward = Arc::new(AtomicBool::new(false));
        let held = Arc::new(Mutex::new(Vec::new()));
        let (f, h) = (forward.clone(), held.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                if !f.load(Ordering::Relaxed) {
                    h.lock().unwrap().push(conn);
                    continue;
                }
                let Ok(up) = TcpStream::connect(&target) else {
                    continue;
                };
                pipe(conn, up);
            }
        });
        Hold {
            addr,
            forward,
            held,
        }
    }
}

/// Copies bytes both ways between two sockets on two threads.
fn pipe(a: TcpStream, b: TcpStream) {
    for (mut from, mut to) in [(a.try_clone().unwrap(), b.try_clone().unwrap()), (b, a)] {
        std::thread::spawn(move || {
            let mut buf = [0u8; 16384];
            loop {
                match from.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if to.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                }
            }
            let _ = to.shutdown(std::net::Shutdown::Both);
        });
    }
}

#[test]
fn a_server_that_never_finishes_tls_times_out_within_the_connect_timeout() {
    let ex = Exchange::start(&[]);
    let hold = Hold::start(ex.addr());
    let mut cfg = config(&ex);
    let port = hold.addr.port();
    cfg.set_endpoint(&format!("wss://127.0.0.1:{port}/ws-fapi/v1"))
        .unwrap();
    cfg.set_stream_endpoint(&format!("wss://127.0.0.1:{port}/private"))
        .unwrap();
    let (connect_ms, request_ms) = (500, 2000);
    cfg.set_timeouts_ms(connect_ms, request_ms).unwrap();
    let c = client(&cfg);
    for _ in 0..2 {
        let t0 = Instant::now();
        let e = c.listen_key_start().unwrap_err();
        assert_eq!(e.status, Status::Timeout, "{e:?}");
        assert!(e.message.contains("500 ms"), "{}", e.message);
        // The connect timeout ended it: not before it, and before the
        // (longer) request timeout could have.
        let took = t0.elapsed();
        assert!(
            took >= ms(connect_ms) * 9 / 10 && took < ms(request_ms),
            "{took:?}"
        );
    }
    assert_eq!(hold.held.lock().unwrap().len(), 2, "one attempt per call");
    // The same client, once the server behaves, works.
    hold.forward.store(true, Ordering::Relaxed);
    let key = c.listen_key_start().unwrap();
    assert_eq!(c.listen_key_keepalive().unwrap(), key);
    // A stream whose endpoint hangs in TLS fails to open in time too.
    hold.forward.store(false, Ordering::Relaxed);
    let mut stream_cfg = config(&ex);
    stream_cfg
        .set_stream_endpoint(&format!("wss://127.0.0.1:{port}/private"))
        .unwrap();
    stream_cfg.set_timeouts_ms(connect_ms, request_ms).unwrap();
    let c2 = client(&stream_cfg);
    let t0 = Instant::now();
    let e = UserStream::open(&c2, None).err().expect("open must fail");
    assert_eq!(e.status, Status::Timeout, "{e:?}");
    // Opening takes at most the connect and request timeouts.
    assert!(t0.elapsed() < ms(connect_ms + request_ms));
    hold.forward.store(true, Ordering::Relaxed);
    let s = UserStream::open(&c2, None).unwrap();
    emit(&ex, "ORDER_TRADE_UPDATE", 1);
    assert_eq!(next(&s).kind(), "ORDER_TRADE_UPDATE");
}

#[test]
fn duplicate_answers_never_reach_another_request() {
    let ex = Exchange::start(&[]);
    ex.control(json!({"cmd": "shuffle", "max_delay_us": 2000}));
    let c = client(&config(&ex));
    let key = c.listen_key_start().unwrap();
    // An error answer sent twice: the copy must not become the answer to
    // the next request.
    ex.control(json!({"cmd": "fail", "status": 400, "code": -1125, "msg": "This listenKey does not exist."}));
    ex.control(json!({"cmd": "duplicate"}));
    assert_eq!(c.listen_key_keepalive().unwrap_err().api_code, -1125);
    for _ in 0..5 {
        assert_eq!(c.listen_key_keepalive().unwrap(), key);
    }
    // Every answer twice while four threads share the connection.
    ex.control(json!({"cmd": "duplicate", "count": -1}));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (c, key) = (c.clone(), key.clone());
            std::thread::spawn(move || {
                for _ in 0..25 {
                    assert_eq!(c.listen_key_keepalive().unwrap(), key);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    ex.control(json!({"cmd": "reset"}));
    let s = ex.stats();
    assert_eq!(s["api_connections_total"], 1, "{s}");
    assert!(s["answers_sent"].as_u64().unwrap() >= 200, "{s}");
}

#[test]
fn a_revoked_session_fails_every_pending_request_with_the_api_error() {
    let ex = Exchange::start(&[]);
    let mut cfg = config(&ex);
    cfg.set_timeouts_ms(2000, 8000).unwrap();
    let c = client(&cfg);
    c.listen_key_start().unwrap();
    let n = 6;
    ex.control(json!({"cmd": "no_answer", "count": n}));
    let before = requests(&ex, "userDataStream.ping");
    let t0 = Instant::now();
    let waiters: Vec<_> = (0..n)
        .map(|_| {
            let c = c.clone();
            std::thread::spawn(move || c.listen_key_keepalive())
        })
        .collect();
    wait_for(
        "every request to reach the exchange",
        Duration::from_secs(5),
        || requests(&ex, "userDataStream.ping") == before + n,
    );
    let hit = ex.control(json!({"cmd": "revoke", "api_key": KEY}));
    assert_eq!(hit["connections"], 1);
    for w in waiters {
        let e = w.join().unwrap().unwrap_err();
        assert_eq!(
            (e.status, e.api_code, e.http_status),
            (Status::ApiError, -2015, 401),
            "{e:?}"
        );
        assert!(e.message.contains("Invalid API-key"), "{}", e.message);
    }
    assert!(t0.elapsed() < Duration::from_secs(6), "waited for timeouts");
    // The revocation closed the connection; the next call opens another.
    c.listen_key_start().unwrap();
    assert_eq!(stat(&ex, "api_connections_total"), 2);
}

#[test]
fn a_ping_flood_does_not_stop_answers_or_the_connection() {
    let ex = Exchange::start(&[]);
    let c = client(&config(&ex));
    let key = c.listen_key_start().unwrap();
    ex.control(json!({"cmd": "delay", "ms": 300}));
    let waiter = keepalive_in_flight(&ex, &c);
    let r = ex.control(json!({"cmd": "ping_flood", "count": 1000}));
    assert_eq!(r["connections"], 1);
    let (r, _) = waiter.join().unwrap();
    assert_eq!(r.unwrap(), key);
    for _ in 0..3 {
        ex.control(json!({"cmd": "ping_flood", "count": 1000}));
        assert_eq!(c.listen_key_keepalive().unwrap(), key);
    }
    let s = ex.stats();
    assert_eq!(s["api_connections_total"], 1, "{s}");
    assert_eq!(s["api_connections_open"], 1, "{s}");
    assert!(s["pings_sent"].as_u64().unwrap() >= 4000, "{s}");
    // Pings are still answered. (The exchange remembers only the latest 64
    // payloads of a flood, so pongs to older ones count as "bad" there.)
    assert!(s["pongs_ok"].as_u64().unwrap() >= 1, "{s}");
}

#[test]
fn an_endless_stream_of_unrelated_messages_does_not_stop_answers() {
    let ex = Exchange::start(&[]);
    let c = client(&config(&ex));
    let key = c.listen_key_start().unwrap();
    ex.control(json!({"cmd": "spam", "count": 2000}));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (c, key) = (c.clone(), key.clone());
            std::thread::spawn(move || {
                for _ in 0..10 {
                    assert_eq!(c.listen_key_keepalive().unwrap(), key);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    ex.control(json!({"cmd": "reset"}));
    assert_eq!(c.listen_key_keepalive().unwrap(), key);
    assert_eq!(stat(&ex, "api_connections_total"), 1);
}

#[test]
fn a_server_restart_on_the_same_port_is_survived_by_calls_and_streams() {
    let mut ex = Exchange::start(&[]);
    let cfg = config(&ex);
    let c = client(&cfg);
    let s = UserStream::open(&c, None).unwrap();
    emit(&ex, "ORDER_TRADE_UPDATE", 1);
    let before = next(&s);
    let old_key = c.listen_key_start().unwrap();
    ex.restart_same_port();
    // The new exchange knows nothing: the next call reconnects and the
    // account gets a new key.
    let new_key = c.listen_key_start().unwrap();
    assert_ne!(new_key, old_key);
    let (disc, _) = until(&s, STREAM_DISCONNECTED, Duration::from_secs(5));
    assert_eq!(disc.get("/reason").as_deref(), Some("disconnected"));
    let (gap, _) = until(&s, STREAM_GAP, Duration::from_secs(5));
    let from: i64 = gap.get("/from_ms").unwrap().parse().unwrap();
    let to: i64 = gap.get("/to_ms").unwrap().parse().unwrap();
    assert!(
        from >= before.time_ms() - 1000 && from <= to,
        "{}",
        gap.json()
    );
    let (renewed, _) = until(&s, LISTEN_KEY_RENEWED, Duration::from_secs(5));
    assert!(!renewed.json().contains(&new_key), "{}", renewed.json());
    wait_for("the stream to reconnect", Duration::from_secs(5), || {
        stat(&ex, "stream_connections_open") == 1
    });
    emit(&ex, "TRADE_LITE", 3);
    for _ in 0..3 {
        assert_eq!(next(&s).kind(), "TRADE_LITE");
    }
    let h = s.health();
    assert!(h.connected);
    assert_eq!((h.reconnects, h.gaps, h.key_renewals), (1, 1, 1));
}

#[test]
fn a_stream_endpoint_refusing_every_connection_is_retried_with_bounded_jittered_backoff() {
    let ex = Exchange::start(&[]);
    let mut cfg = config(&ex);
    let (initial, max) = (100u64, 2000u64);
    cfg.set_reconnect_backoff_ms(initial as u32, max as u32)
        .unwrap();
    let c = client(&cfg);
    let s = UserStream::open(&c, None).unwrap();
    ex.control(json!({"cmd": "refuse", "target": "stream"}));
    ex.control(json!({"cmd": "drop", "target": "stream"}));
    let (disc, _) = until(&s, STREAM_DISCONNECTED, Duration::from_secs(5));
    assert_eq!(disc.get("/reason").as_deref(), Some("disconnected"));

    // Watch the refusals for a while, noting when each one happened.
    let window = Duration::from_secs(6);
    let t0 = Instant::now();
    let mut times: Vec<Duration> = Vec::new();
    let mut seen = 0;
    while t0.elapsed() < window {
        let n = stat(&ex, "refused_total");
        for _ in seen..n {
            times.push(t0.elapsed());
        }
        seen = n;
        std::thread::sleep(Duration::from_millis(5));
    }
    let attempts = times.len() as u64;

    // The fastest schedule the backoff allows: the first retry at once, the
    // n-th after at least half of min(initial * 2^(n-1), max).
    let (mut earliest, mut bound) = (0u64, 0u64);
    for n in 0u32.. {
        if n > 0 {
            earliest += initial.saturating_mul(1 << (n - 1).min(20)).min(max) / 2;
        }
        if earliest > window.as_millis() as u64 {
            break;
        }
        bound += 1;
    }
    println!("{attempts} attempts in {window:?} (at most {bound} allowed): {times:?}");
    assert!(attempts >= 2, "gave up retrying: {attempts} attempts");
    assert!(
        attempts <= bound + 1,
        "retry storm: {attempts} attempts, the backoff allows {bound}"
    );
    // Each wait follows the schedule: between half and all of
    // min(initial * 2^(n-1), max), plus the attempt itself (tolerance for
    // the 5 ms polling and a loaded machine). Attempts seen before the
    // first poll have no reliable time and are skipped.
    let first_seen = times.iter().filter(|t| **t == times[0]).count().max(1);
    let mut gaps = Vec::new();
    for n in first_seen..times.len() {
        let base = initial.saturating_mul(1 << (n as u32 - 1).min(20)).min(max);
        let gap = (times[n] - times[n - 1]).as_millis() as u64;
        assert!(
            gap + 25 >= base / 2 && gap <= base + 300,
            "attempt {n}: waited {gap} ms, the schedule says {}..{base} ms: {times:?}",
            base / 2
        );
        gaps.push(gap);
    }
    // Jittered: the waits are not one fixed schedule.
    assert!(
        gaps.windows(2).any(|w| w[0] != w[1]),
        "equal spacing: {gaps:?}"
    );
    assert!(!s.health().connected);
    // The stream recovers once the endpoint accepts again, and says what
    // may have been lost.
    ex.control(json!({"cmd": "refuse", "target": "stream", "enabled": false}));
    let (gap, _) = until(&s, STREAM_GAP, Duration::from_secs(5));
    assert_eq!(gap.get("/reason").as_deref(), Some("disconnected"));
    emit(&ex, "ORDER_TRADE_UPDATE", 2);
    assert_eq!(next(&s).kind(), "ORDER_TRADE_UPDATE");
    assert_eq!(next(&s).kind(), "ORDER_TRADE_UPDATE");
    assert!(s.health().connected);
}
