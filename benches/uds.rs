//! `cargo bench --bench uds` (or `scripts/bench.sh`): binance-uds measured
//! side by side with the raw floor of its own stack (tokio +
//! tokio-tungstenite + native-tls + serde_json used by hand, see
//! `uds/raw.rs`) and with Binance's official SDKs (`uds/peers.rs`), against
//! the local exchange over loopback TLS. Every figure and its baseline come
//! from the same run, taken alternately (A, B, A, B, ...), so that the
//! drift of a shared machine hits both alike.
//!
//! This file measures; `uds/report.rs` turns the figures into tables. A run
//! prints its table and saves its rows as JSON (`UDS_BENCH_JSON`, default
//! `target/bench/last-run.json`); it never writes BENCHMARKS.md.
//! `report OUT.md RUN.json...` merges saved runs (median and range) into
//! OUT.md, keeping the hand-written "## Profile" section of the current
//! BENCHMARKS.md; `scripts/bench.sh --write` does that for three runs.
//!
//! The library is driven through its C API (`binance_*`), as C programs
//! use it. Fresh-process measurements re-run this executable with
//! `child <mode> ...`. `profile <loop> [seconds]` runs one loop alone, for
//! perf or callgrind (see BENCHMARKS.md).
//!
//! Environment: `UDS_BENCH_QUICK=1` for a short run (a developer's loop,
//! under 30 s); `UDS_BENCH_ONLY=cold,warm,events,scale,peers` for some
//! sections only; the peers' `UDS_PEER_*` variables (`uds/peers.rs`).

#[path = "uds/capi.rs"]
mod capi;
#[path = "uds/exchange.rs"]
mod exchange;
#[path = "uds/peers.rs"]
mod peers;
#[path = "uds/raw.rs"]
mod raw;
#[path = "uds/report.rs"]
mod report;

use capi::{CallbackStream, Client, Config, Settings, Stream};
use exchange::Exchange;
use futures_util::{SinkExt, StreamExt};
use report::{median, pct, Row, Target, Unit};
use serde_json::{json, Value};
use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio_tungstenite::tungstenite::Message;

const PING: &str = "userDataStream.ping";
const START: &str = "userDataStream.start";

/// An ORDER_TRADE_UPDATE as Binance documents it, with the exchange's send
/// time (`{send_ns}`) early in the text, where both consumers find it.
const EVENT: &str = r#"{"e":"ORDER_TRADE_UPDATE","E":{E},"send_ns":{send_ns},"T":{E},"o":{"s":"BTCUSDT","c":"TEST","S":"SELL","o":"TRAILING_STOP_MARKET","f":"GTC","q":"0.001","p":"0","ap":"0","sp":"7103.04","x":"NEW","X":"NEW","i":8886774,"l":"0","z":"0","L":"0","N":"USDT","n":"0","T":{E},"t":0,"b":"0","a":"9.91","m":false,"R":false,"wt":"CONTRACT_PRICE","ot":"TRAILING_STOP_MARKET","ps":"LONG","cp":false,"AP":"7476.89","cr":"5.0","pP":false,"si":0,"ss":0,"rp":"0","V":"EXPIRE_TAKER","pm":"OPPONENT","gtd":0,"er":"0"}}"#;

/// The peers' event: `EVENT` with the send time also as its client order
/// id `o.c`, a field every SDK's model keeps (they drop unknown ones).
fn peer_event() -> String {
    EVENT.replace(r#""c":"TEST""#, r#""c":"{send_ns}""#)
}

/// How many samples of each kind.
struct Plan {
    cold_pairs: usize,
    warm_blocks: usize,
    warm_block: usize,
    conc_threads: usize,
    conc_rounds: usize,
    conc_secs: f64,
    burst: usize,
    burst_rounds: usize,
    paced: usize,
    paced_rounds: usize,
    paced_gap: Duration,
    scale_accounts: usize,
    scale_pairs: usize,
    peer_cold_pairs: usize,
    peer_warm_rounds: usize,
    peer_warm_n: usize,
    peer_event_rounds: usize,
    peer_event_n: usize,
    peer_event_warmup: usize,
    peer_event_gap: Duration,
}

impl Plan {
    fn full() -> Plan {
        Plan {
            cold_pairs: 20,
            warm_blocks: 10,
            warm_block: 500,
            conc_threads: 8,
            conc_rounds: 3,
            conc_secs: 1.0,
            burst: 20_000,
            burst_rounds: 3,
            paced: 1000,
            paced_rounds: 2,
            paced_gap: Duration::from_micros(500),
            scale_accounts: 100,
            scale_pairs: 2,
            peer_cold_pairs: 4,
            peer_warm_rounds: 3,
            peer_warm_n: 1000,
            peer_event_rounds: 3,
            peer_event_n: 300,
            peer_event_warmup: 50,
            peer_event_gap: Duration::from_millis(1),
        }
    }

    fn quick() -> Plan {
        Plan {
            cold_pairs: 4,
            warm_blocks: 4,
            warm_block: 200,
            conc_rounds: 1,
            conc_secs: 0.4,
            burst: 5000,
            burst_rounds: 1,
            paced: 300,
            paced_rounds: 1,
            scale_accounts: 30,
            scale_pairs: 1,
            peer_cold_pairs: 1,
            peer_warm_rounds: 1,
            peer_warm_n: 300,
            peer_event_rounds: 1,
            peer_event_n: 100,
            peer_event_warmup: 20,
            ..Plan::full()
        }
    }
}

fn main() {
    // `cargo bench` passes `--bench`; anything else is ours.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    match args.first().map(String::as_str) {
        Some("child") => child(&args[1..]),
        Some("profile") => profile(&args[1..]),
        Some("report") => write_report(&args[1..]),
        // `cargo test --all-targets` runs benches as tests, without
        // `--bench`: building is the test; the measurements need an idle
        // machine and are made by `scripts/bench.sh`.
        _ if !std::env::args().any(|a| a == "--bench") => {
            println!("benchmarks build; run them with scripts/bench.sh (cargo bench --bench uds)")
        }
        _ => run(),
    }
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn since_us(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e6
}

/// The exchange's send time in an event's text.
fn send_ns_of(json: &[u8]) -> u64 {
    const KEY: &[u8] = b"\"send_ns\":";
    let at = json
        .windows(KEY.len())
        .position(|w| w == KEY)
        .expect("event carries send_ns")
        + KEY.len();
    json[at..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .fold(0u64, |n, b| n * 10 + u64::from(b - b'0'))
}

fn current_thread_rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

// ---------------------------------------------------------------- children

/// Threads of this process.
fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count())
}

/// A `/proc/self/status` field in bytes (VmRSS, VmHWM).
fn status_bytes(field: &str) -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|r| r.trim_start_matches(':').split_whitespace().next())
        .and_then(|n| n.parse::<f64>().ok())
        .map_or(f64::NAN, |kib| kib * 1024.0)
}

/// A fresh-process measurement; prints `RESULT {json}`.
fn child(args: &[String]) {
    let a = |i: usize| args.get(i).map(String::as_str).unwrap_or("");
    let ca_pem = || std::fs::read_to_string(a(3)).expect("read CA file");
    let result = match a(0) {
        // ws_api stream ca_file key
        "cold-lib" => {
            let pem = ca_pem();
            let s = settings(a(1), "", &pem, a(4), None);
            let steps = capi::cold_first_key(&s).expect("cold start");
            json!({"us": steps.iter().sum::<f64>(), "steps": steps})
        }
        "cold-raw" => {
            let pem = ca_pem();
            let (key, steps) = raw::cold_first_key(a(1), &pem, a(4));
            assert_eq!(key.len(), 64);
            json!({"us": steps.iter().sum::<f64>(), "steps": steps})
        }
        // ws_api stream ca_file control
        "later" => child_later(a(1), &ca_pem(), a(4).parse().expect("control address")),
        // ws_api stream ca_file accounts
        "scale-lib" => child_scale_lib(a(1), a(2), &ca_pem(), a(4).parse().expect("n")),
        "scale-raw" => child_scale_raw(a(1), a(2), &ca_pem(), a(4).parse().expect("n")),
        // The peer protocol (uds/peers.rs):
        //   events ws_api stream ca_file key n warmup
        "peer" if a(1) == "events" => {
            let num = |i: usize| a(i).parse().expect("a count");
            child_peer_events(a(2), a(3), a(4), a(5), num(6), num(7))
        }
        //   cold|warm ws_api ca_file key [n]
        "peer" => child_peer(a(1), a(2), a(3), a(4), a(5).parse().unwrap_or(0)),
        other => panic!("unknown child mode {other:?}"),
    };
    println!("RESULT {result}");
}

/// The library's side of the Rust peer row: what the SDK's program does,
/// through the C API (the first key, or `n` timed keepalives after 300).
fn child_peer(mode: &str, ws_api: &str, ca_file: &str, key: &str, n: usize) -> Value {
    let t0 = Instant::now();
    let pem = std::fs::read_to_string(ca_file).expect("read CA file");
    let cfg = Config::new(&settings(ws_api, "", &pem, key, None)).expect("cfg");
    let client = Client::new(&cfg).expect("client");
    let first = client.start().expect("start");
    assert_eq!(first.len(), 64);
    if mode == "cold" {
        return json!({"us": since_us(t0)});
    }
    for _ in 0..300 {
        client.keepalive().expect("keepalive");
    }
    let samples: Vec<f64> = (0..n)
        .map(|_| {
            let t = Instant::now();
            assert_eq!(client.keepalive().expect("keepalive"), 64);
            since_us(t)
        })
        .collect();
    json!({ "samples": samples })
}

/// The library's side of the Rust peer's event rows: a user stream read
/// with `binance_user_stream_next`, `READY` once open, then the latency of
/// `n` events after `warmup`.
fn child_peer_events(
    ws_api: &str,
    stream: &str,
    ca_file: &str,
    key: &str,
    n: usize,
    warmup: usize,
) -> Value {
    let pem = std::fs::read_to_string(ca_file).expect("read CA file");
    let cfg = Config::new(&settings(ws_api, stream, &pem, key, None)).expect("cfg");
    let client = Client::new(&cfg).expect("client");
    let st = Stream::open(&client).expect("stream");
    println!("READY");
    let mut lat = consume(n + warmup, || st.next(60_000).expect("next")).lat;
    json!({ "samples": lat.split_off(warmup) })
}

fn settings<'a>(
    ws_api: &'a str,
    stream: &'a str,
    ca_pem: &'a str,
    api_key: &'a str,
    queue_capacity: Option<u32>,
) -> Settings<'a> {
    Settings {
        ws_api,
        stream,
        ca_pem,
        api_key,
        queue_capacity,
    }
}

/// Row 2: later clients of a process that already has one (connector
/// cached, runtime running), a reconnect after the server dropped the
/// connection, and a client made after the last one was freed.
fn child_later(ws_api: &str, ca_pem: &str, control: SocketAddr) -> Value {
    let cfg_a = Config::new(&settings(ws_api, "", ca_pem, "benchLaterA", None)).expect("cfg");
    let a = Client::new(&cfg_a).expect("client");
    a.start().expect("first start");
    let cfg_b = Config::new(&settings(ws_api, "", ca_pem, "benchLaterB", None)).expect("cfg");
    let second_client = |out: &mut Vec<f64>| {
        let t = Instant::now();
        let b = Client::new(&cfg_b).expect("client");
        b.start().expect("start");
        drop(b);
        out.push(since_us(t));
    };
    let mut second = Vec::new();
    for _ in 0..5 {
        second_client(&mut second);
    }
    let (mut reconnect, mut failures) = (Vec::new(), 0);
    for _ in 0..5 {
        exchange::control(control, &json!({"cmd": "drop", "target": "api"}));
        // Let the client's reader see the connection end.
        std::thread::sleep(Duration::from_millis(30));
        let t = Instant::now();
        match a.keepalive() {
            Ok(_) => reconnect.push(since_us(t)),
            Err(_) => failures += 1,
        }
    }
    drop(a);
    let mut sequential = Vec::new();
    for _ in 0..3 {
        second_client(&mut sequential);
    }
    json!({"second": second, "reconnect": reconnect, "reconnect_failures": failures,
        "sequential": sequential})
}

/// Row 6: `n` accounts, each a client with an open user stream.
fn child_scale_lib(ws_api: &str, stream: &str, ca_pem: &str, n: usize) -> Value {
    let (threads_before, rss_before) = (threads(), status_bytes("VmRSS"));
    let t = Instant::now();
    let (mut clients, mut streams) = (Vec::new(), Vec::new());
    for i in 0..n {
        let key = format!("benchScale{i}");
        let cfg = Config::new(&settings(ws_api, stream, ca_pem, &key, None)).expect("cfg");
        // As the README says to open many: without waiting for each
        // subscription, then until every stream says it is live.
        cfg.open_without_waiting().expect("no-wait open");
        let c = Client::new(&cfg).expect("client");
        streams.push(Stream::open(&c).expect("stream"));
        clients.push(c);
    }
    for st in &streams {
        loop {
            let ev = st
                .next(10_000)
                .expect("next")
                .expect("subscribed within 10 s");
            if ev.kind().to_bytes() == b"binance.stream_subscribed" {
                break;
            }
        }
    }
    let open_ms = since_us(t) / 1000.0;
    std::thread::sleep(Duration::from_millis(300));
    let (threads_open, rss_open) = (threads(), status_bytes("VmRSS"));
    drop(streams);
    drop(clients);
    json!({"threads_before": threads_before, "threads_open": threads_open,
        "threads_after": threads(), "rss_before": rss_before, "rss_open": rss_open,
        "hwm": status_bytes("VmHWM"), "open_ms": open_ms})
}

/// Row 6, the floor: the same connections by hand on a two-worker runtime,
/// a reader task on each (answering pings, parsing events).
fn child_scale_raw(ws_api: &str, stream: &str, ca_pem: &str, n: usize) -> Value {
    let (threads_before, rss_before) = (threads(), status_bytes("VmRSS"));
    let t = Instant::now();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let cx = raw::connector(ca_pem);
    let tasks = rt.block_on(async {
        let mut tasks = Vec::new();
        for i in 0..n {
            let mut api = raw::connect(&cx, ws_api).await;
            let key = raw::call(&mut api, 1, START, &format!("benchScale{i}")).await;
            let st = raw::subscribe(&cx, stream, &key).await;
            for mut ws in [api, st] {
                tasks.push(tokio::spawn(async move {
                    while let Some(Ok(m)) = ws.next().await {
                        if let Message::Text(t) = m {
                            let _: Value = serde_json::from_str(t.as_str()).unwrap_or(Value::Null);
                        }
                    }
                }));
            }
        }
        tasks
    });
    let open_ms = since_us(t) / 1000.0;
    std::thread::sleep(Duration::from_millis(300));
    let (threads_open, rss_open) = (threads(), status_bytes("VmRSS"));
    for task in tasks {
        task.abort();
    }
    drop(rt);
    json!({"threads_before": threads_before, "threads_open": threads_open,
        "threads_after": threads(), "rss_before": rss_before, "rss_open": rss_open,
        "hwm": status_bytes("VmHWM"), "open_ms": open_ms})
}

// ------------------------------------------------------------------ parent

struct Bench {
    ex: Exchange,
    exe: PathBuf,
}

impl Bench {
    /// Runs `child <mode> ws_api stream ca_file <extra>`: (result, wall µs).
    fn child(&self, mode: &str, extra: &str) -> (Value, f64) {
        let ex = &self.ex;
        let t = Instant::now();
        let out = Command::new(&self.exe)
            .arg("child")
            .arg(mode)
            .arg(&ex.ws_api)
            .arg(&ex.stream)
            .arg(&ex.ca_file)
            .arg(extra)
            .output()
            .expect("run child");
        let wall = since_us(t);
        (result_of(&out, mode), wall)
    }
}

fn result_of(out: &std::process::Output, what: &str) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().find_map(|l| l.strip_prefix("RESULT "));
    match (out.status.success(), line) {
        (true, Some(l)) => serde_json::from_str(l).expect("RESULT is JSON"),
        _ => panic!(
            "{what} failed ({}):\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

fn f64s(v: &Value) -> Vec<f64> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default()
}

#[derive(Default)]
struct Cold {
    lib: Vec<f64>,
    lib_wall: Vec<f64>,
    lib_steps: Vec<Vec<f64>>,
    raw: Vec<f64>,
    raw_wall: Vec<f64>,
    raw_steps: Vec<Vec<f64>>,
    second: Vec<f64>,
    reconnect: Vec<f64>,
    reconnect_failures: u64,
    sequential: Vec<f64>,
}

/// Rows 1 and 2 (cold): fresh processes, alternating.
fn cold(b: &Bench, plan: &Plan) -> Cold {
    let mut c = Cold::default();
    let key = "benchCold";
    for i in 0..plan.cold_pairs {
        let (lib, wall) = b.child("cold-lib", key);
        c.lib.push(lib["us"].as_f64().expect("us"));
        c.lib_steps.push(f64s(&lib["steps"]));
        c.lib_wall.push(wall);
        let (raw, wall) = b.child("cold-raw", key);
        c.raw.push(raw["us"].as_f64().expect("us"));
        c.raw_steps.push(f64s(&raw["steps"]));
        c.raw_wall.push(wall);
        // Row 2 needs fewer samples than row 1.
        if i % 2 == 0 {
            let (later, _) = b.child("later", &b.ex.control.to_string());
            c.second.extend(f64s(&later["second"]));
            c.reconnect.extend(f64s(&later["reconnect"]));
            c.reconnect_failures += later["reconnect_failures"].as_u64().unwrap_or(0);
            c.sequential.extend(f64s(&later["sequential"]));
        }
        eprint!("\r  cold: {}/{}", i + 1, plan.cold_pairs);
    }
    eprintln!();
    c
}

struct Warm {
    lib: Vec<f64>,
    raw: Vec<f64>,
    /// The floor again, busy-polling instead of sleeping in epoll.
    raw_busy: Vec<f64>,
    lib_conc: Vec<f64>,
    raw_conc: Vec<f64>,
    /// The same threads as blocking raw clients, each on its own connection.
    raw_blocking: Vec<f64>,
}

/// Rows 3 and 4 (warm): one open connection each, calls in alternating
/// blocks; then 8 threads on one client against 8 blocking raw clients
/// and a pipelined raw connection.
fn warm(b: &Bench, plan: &Plan) -> Warm {
    let ex = &b.ex;
    let key = "benchWarm";
    let cfg = Config::new(&settings(&ex.ws_api, "", &ex.ca_pem, key, None)).expect("cfg");
    let lib = Client::new(&cfg).expect("client");
    lib.start().expect("start");
    let rt = current_thread_rt();
    let cx = raw::connector(&ex.ca_pem);
    let mut ws = rt.block_on(raw::connect(&cx, &ex.ws_api));
    let mut id = 0u64;
    let mut raw_call = |ws: &mut raw::Ws, busy: bool| {
        id += 1;
        let k = if busy {
            rt.block_on(raw::busy(raw::call(ws, id, PING, key)))
        } else {
            rt.block_on(raw::call(ws, id, PING, key))
        };
        assert_eq!(k.len(), 64);
    };
    for _ in 0..300 {
        lib.keepalive().expect("keepalive");
        raw_call(&mut ws, false);
        raw_call(&mut ws, true);
    }
    let (mut lib_s, mut raw_s, mut busy_s) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..plan.warm_blocks {
        for _ in 0..plan.warm_block {
            let t = Instant::now();
            lib.keepalive().expect("keepalive");
            lib_s.push(since_us(t));
        }
        for _ in 0..plan.warm_block {
            let t = Instant::now();
            raw_call(&mut ws, false);
            raw_s.push(since_us(t));
        }
        for _ in 0..plan.warm_block {
            let t = Instant::now();
            raw_call(&mut ws, true);
            busy_s.push(since_us(t));
        }
    }
    eprintln!("  warm: done");

    let (mut lib_conc, mut raw_conc) = (Vec::new(), Vec::new());
    let secs = plan.conc_secs;
    lib_concurrent(&lib, plan.conc_threads, 0.2);
    rt.block_on(raw_pipelined(
        &mut ws,
        key,
        plan.conc_threads,
        0.2,
        &mut 1_000_000,
    ));
    let mut next_id = 2_000_000;
    let mut raw_blocking = Vec::new();
    for _ in 0..plan.conc_rounds {
        lib_conc.push(lib_concurrent(&lib, plan.conc_threads, secs) as f64 / secs);
        raw_blocking.push(
            raw_blocking_threads(&cx, &ex.ws_api, key, plan.conc_threads, secs) as f64 / secs,
        );
        let n = rt.block_on(raw_pipelined(
            &mut ws,
            key,
            plan.conc_threads,
            secs,
            &mut next_id,
        ));
        raw_conc.push(n as f64 / secs);
    }
    eprintln!("  concurrent: done");
    Warm {
        lib: lib_s,
        raw: raw_s,
        raw_busy: busy_s,
        lib_conc,
        raw_conc,
        raw_blocking,
    }
}

/// Row 4, a second baseline: `threads` threads each making blocking calls
/// on a raw connection of its own (what blocking callers cost without the
/// library, with as many connections as threads).
fn raw_blocking_threads(
    cx: &tokio_native_tls::TlsConnector,
    url: &str,
    key: &str,
    threads: usize,
    secs: f64,
) -> u64 {
    let done = AtomicU64::new(0);
    let barrier = std::sync::Barrier::new(threads);
    std::thread::scope(|s| {
        for t in 0..threads {
            let (done, barrier) = (&done, &barrier);
            s.spawn(move || {
                let rt = current_thread_rt();
                let mut ws = rt.block_on(raw::connect(cx, url));
                let mut id = 3_000_000 + t as u64 * 1_000_000;
                barrier.wait();
                let end = Instant::now() + Duration::from_secs_f64(secs);
                let mut n = 0;
                loop {
                    id += 1;
                    rt.block_on(raw::call(&mut ws, id, PING, key));
                    if Instant::now() > end {
                        break;
                    }
                    n += 1;
                }
                done.fetch_add(n, Ordering::Relaxed);
            });
        }
    });
    done.into_inner()
}

/// Row 4: `threads` threads calling keepalive on one client for `secs`;
/// the calls completed in time.
fn lib_concurrent(client: &Client, threads: usize, secs: f64) -> u64 {
    let done = AtomicU64::new(0);
    let barrier = std::sync::Barrier::new(threads);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                barrier.wait();
                let end = Instant::now() + Duration::from_secs_f64(secs);
                let mut n = 0;
                loop {
                    client.keepalive().expect("keepalive");
                    if Instant::now() > end {
                        break;
                    }
                    n += 1;
                }
                done.fetch_add(n, Ordering::Relaxed);
            });
        }
    });
    done.into_inner()
}

/// Row 4, the floor: one connection, a writer keeping up to `depth`
/// requests in flight and a reader matching answers to them by id, on one
/// thread. Returns the answers completed within `secs`.
async fn raw_pipelined(ws: &mut raw::Ws, key: &str, depth: usize, secs: f64, id: &mut u64) -> u64 {
    let (mut sink, mut stream) = ws.split();
    let permits = tokio::sync::Semaphore::new(depth);
    let in_flight = RefCell::new(HashSet::new());
    let stopped = tokio::sync::Notify::new();
    let (stop, done) = (Cell::new(false), Cell::new(0u64));
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let writer = async {
        while Instant::now() < end {
            permits.acquire().await.expect("semaphore").forget();
            *id += 1;
            in_flight.borrow_mut().insert(*id);
            sink.send(Message::text(raw::request(*id, PING, key)))
                .await
                .expect("send");
        }
        stop.set(true);
        stopped.notify_one();
    };
    let reader = async {
        loop {
            if stop.get() && in_flight.borrow().is_empty() {
                break;
            }
            tokio::select! {
                m = stream.next() => {
                    let Message::Text(t) = m.expect("open").expect("read") else { continue };
                    let v: Value = serde_json::from_str(t.as_str()).expect("JSON");
                    let answered = v["id"].as_u64().expect("id");
                    assert!(in_flight.borrow_mut().remove(&answered), "unknown id");
                    assert_eq!(v["result"]["listenKey"].as_str().map(str::len), Some(64));
                    if Instant::now() <= end {
                        done.set(done.get() + 1);
                    }
                    permits.add_permits(1);
                }
                _ = stopped.notified() => {}
            }
        }
    };
    tokio::join!(writer, reader);
    done.get()
}

#[derive(Default)]
struct Events {
    lib_rate: Vec<f64>,
    cb_rate: Vec<f64>,
    raw_rate: Vec<f64>,
    lib_lat: Vec<f64>,
    cb_lat: Vec<f64>,
    raw_lat: Vec<f64>,
    /// The raw consumer busy-polling instead of sleeping in epoll.
    busy_lat: Vec<f64>,
    /// The library's stream read from a poll loop on its descriptor.
    poll_lat: Vec<f64>,
}

/// What one consumer saw: when the first and last events returned, and each
/// event's latency from the exchange's send (µs).
struct Seen {
    first: Instant,
    last: Instant,
    lat: Vec<f64>,
}

impl Seen {
    fn new() -> Seen {
        let now = Instant::now();
        Seen {
            first: now,
            last: now,
            lat: Vec::new(),
        }
    }
    fn record(&mut self, sent_ns: u64, now_ns: u64) {
        let t = Instant::now();
        if self.lat.is_empty() {
            self.first = t;
        }
        self.last = t;
        self.lat
            .push(now_ns.saturating_sub(sent_ns) as f64 / 1000.0);
    }
    fn rate(&self) -> f64 {
        (self.lat.len() - 1) as f64 / (self.last - self.first).as_secs_f64()
    }
}

/// `n` events for the library's stream through `binance_user_stream_next`.
fn lib_consume(st: &Stream, n: usize) -> Seen {
    consume(n, || st.next(5000).expect("next"))
}

/// `lib_consume` through the stream's descriptor: poll(2), then try_next.
fn poll_consume(st: &Stream, n: usize) -> Seen {
    let fd = st.fd().expect("fd");
    consume(n, || st.poll_next(fd, 5000).expect("poll"))
}

fn consume(n: usize, mut next: impl FnMut() -> Option<capi::Event>) -> Seen {
    let mut seen = Seen::new();
    while seen.lat.len() < n {
        let ev = next().expect("an event within 5 s");
        let now = now_ns();
        if ev.is_library() {
            continue; // none expected
        }
        assert_eq!(ev.kind().to_bytes(), b"ORDER_TRADE_UPDATE");
        assert!(ev.time_ms() > 0);
        seen.record(send_ns_of(ev.json()), now);
    }
    seen
}

/// A callback stream's consumer: the callback does what `lib_consume` does
/// with each event (type, time and JSON read, latency recorded) and hands
/// the count to the waiting bench thread.
#[derive(Default)]
struct CallbackSink {
    seen: std::sync::Mutex<Option<Seen>>,
    more: std::sync::Condvar,
}

impl CallbackSink {
    fn on_event(&self, ev: &capi::EventRef) {
        let now = now_ns();
        if ev.is_library() {
            return;
        }
        assert_eq!(ev.kind().to_bytes(), b"ORDER_TRADE_UPDATE");
        assert!(ev.time_ms() > 0);
        let sent = send_ns_of(ev.json());
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.get_or_insert_with(Seen::new).record(sent, now);
        self.more.notify_one();
    }

    /// Waits for `n` events delivered since the last call.
    fn take(&self, n: usize) -> Seen {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let deadline = Instant::now() + Duration::from_secs(20);
        while seen.as_ref().map_or(0, |s| s.lat.len()) < n {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "callback: {n} events not delivered in 20 s"
            );
            seen = self
                .more
                .wait_timeout(seen, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        seen.take().expect("events")
    }
}

/// `n` events on the raw stream connection: read, parse to a Value
/// (wrapped as the SUBSCRIBE form delivers them).
async fn raw_consume(ws: &mut raw::Ws, n: usize) -> Seen {
    let mut seen = Seen::new();
    while seen.lat.len() < n {
        let t = raw::next_text(ws).await;
        let v: Value = serde_json::from_str(t.as_str()).expect("event JSON");
        let now = now_ns();
        assert_eq!(v["data"]["e"], "ORDER_TRADE_UPDATE");
        seen.record(send_ns_of(t.as_bytes()), now);
    }
    seen
}

/// Emits `n` events to `api_key`, one at a time, `gap` apart, from a
/// thread (one control connection, each emit answered before the next).
fn paced_emitter(
    control: SocketAddr,
    api_key: &'static str,
    n: usize,
    gap: Duration,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let all = Duration::from_secs(60);
        emit_paced(control, api_key, EVENT, n, gap, all).expect("paced events");
    })
}

/// Emits `raw` to `api_key` one at a time, `gap` apart (one control
/// connection, each emit answered before the next), until `n` have been
/// delivered to exactly one connection each; one delivered to none (the
/// stream not subscribed yet) is not counted. An error if that takes longer
/// than `within`, or if an event reaches more than one connection.
fn emit_paced(
    control: SocketAddr,
    api_key: &str,
    raw: &str,
    n: usize,
    gap: Duration,
    within: Duration,
) -> Result<(), String> {
    let cmd = json!({"cmd": "emit", "api_key": api_key, "count": 1, "raw": raw});
    let line = format!("{cmd}\n");
    let io = |e: std::io::Error| format!("control connection: {e}");
    let mut s = std::net::TcpStream::connect(control).map_err(io)?;
    s.set_nodelay(true).ok();
    let mut r = BufReader::new(s.try_clone().map_err(io)?);
    let mut answer = String::new();
    let (deadline, mut delivered) = (Instant::now() + within, 0);
    while delivered < n {
        if Instant::now() > deadline {
            return Err(format!(
                "{delivered} of {n} events delivered in {} s",
                within.as_secs()
            ));
        }
        s.write_all(line.as_bytes()).map_err(io)?;
        answer.clear();
        r.read_line(&mut answer).map_err(io)?;
        match serde_json::from_str::<Value>(&answer).map(|v| v["delivered"].as_u64()) {
            Ok(Some(0)) => {}
            Ok(Some(1)) => delivered += 1,
            _ => return Err(format!("emit answered {answer:?}")),
        }
        std::thread::sleep(gap);
    }
    Ok(())
}

fn burst(control: SocketAddr, api_key: &str, n: usize) -> (std::net::TcpStream, Value) {
    let cmd = json!({"cmd": "emit", "api_key": api_key, "count": n, "raw": EVENT});
    (exchange::send_control(control, &cmd), cmd)
}

/// Row 5: bursts for throughput, then paced events for latency, rotating
/// between the library's stream read with `next`, its callback stream, and
/// a raw stream connection (three accounts, so each burst reaches one
/// consumer only).
fn events(b: &Bench, plan: &Plan) -> Events {
    let ex = &b.ex;
    let (lib_key, cb_key, raw_key) = ("benchEvLib", "benchEvCb", "benchEvRaw");
    let capacity = Some((plan.burst as u32 * 2).max(4096));
    let cfg = Config::new(&settings(
        &ex.ws_api, &ex.stream, &ex.ca_pem, lib_key, capacity,
    ))
    .expect("cfg");
    let client = Client::new(&cfg).expect("client");
    let st = Stream::open(&client).expect("stream");
    let cb_cfg =
        Config::new(&settings(&ex.ws_api, &ex.stream, &ex.ca_pem, cb_key, None)).expect("cfg");
    let cb_client = Client::new(&cb_cfg).expect("client");
    let sink = std::sync::Arc::new(CallbackSink::default());
    let cb = {
        let sink = sink.clone();
        CallbackStream::open(&cb_client, Box::new(move |ev| sink.on_event(ev))).expect("stream")
    };
    let rt = current_thread_rt();
    let cx = raw::connector(&ex.ca_pem);
    let mut ws = rt.block_on(async {
        let mut api = raw::connect(&cx, &ex.ws_api).await;
        let key = raw::call(&mut api, 1, START, raw_key).await;
        raw::subscribe(&cx, &ex.stream, &key).await
    });
    let mut out = Events::default();
    // A small burst each to warm up.
    let sizes = std::iter::once(200).chain(std::iter::repeat_n(plan.burst, plan.burst_rounds));
    for (i, n) in sizes.enumerate() {
        let (pending, cmd) = burst(ex.control, lib_key, n);
        let lib = lib_consume(&st, n);
        exchange::finish_control(pending, &cmd);
        let (pending, cmd) = burst(ex.control, cb_key, n);
        let cbs = sink.take(n);
        exchange::finish_control(pending, &cmd);
        let (pending, cmd) = burst(ex.control, raw_key, n);
        let raw = rt.block_on(raw_consume(&mut ws, n));
        exchange::finish_control(pending, &cmd);
        if i > 0 {
            out.lib_rate.push(lib.rate());
            out.cb_rate.push(cbs.rate());
            out.raw_rate.push(raw.rate());
        }
    }
    eprintln!("  event bursts: done");
    for _ in 0..plan.paced_rounds {
        let t = paced_emitter(ex.control, lib_key, plan.paced, plan.paced_gap);
        out.lib_lat.extend(lib_consume(&st, plan.paced).lat);
        t.join().expect("emitter");
        let t = paced_emitter(ex.control, cb_key, plan.paced, plan.paced_gap);
        out.cb_lat.extend(sink.take(plan.paced).lat);
        t.join().expect("emitter");
        let t = paced_emitter(ex.control, lib_key, plan.paced, plan.paced_gap);
        out.poll_lat.extend(poll_consume(&st, plan.paced).lat);
        t.join().expect("emitter");
        let t = paced_emitter(ex.control, raw_key, plan.paced, plan.paced_gap);
        out.raw_lat
            .extend(rt.block_on(raw_consume(&mut ws, plan.paced)).lat);
        t.join().expect("emitter");
        let t = paced_emitter(ex.control, raw_key, plan.paced, plan.paced_gap);
        out.busy_lat
            .extend(rt.block_on(raw::busy(raw_consume(&mut ws, plan.paced))).lat);
        t.join().expect("emitter");
    }
    eprintln!("  event latency: done");
    drop(cb);
    drop(st);
    out
}

struct Scale {
    lib: Vec<Value>,
    raw: Vec<Value>,
    so_size: Option<(u64, u64)>,
}

/// Row 6: 100 accounts in a fresh process, alternating library and floor.
fn scale(b: &Bench, plan: &Plan) -> Scale {
    let n = plan.scale_accounts.to_string();
    let (mut lib, mut raw) = (Vec::new(), Vec::new());
    for _ in 0..plan.scale_pairs {
        lib.push(b.child("scale-lib", &n).0);
        raw.push(b.child("scale-raw", &n).0);
    }
    eprintln!("  scale: done");
    Scale {
        lib,
        raw,
        so_size: so_size(&b.exe),
    }
}

/// (stripped, unstripped) size of target/release/libbinance_uds.so.
fn so_size(exe: &Path) -> Option<(u64, u64)> {
    let release = exe.parent()?.parent()?;
    let so = release.join("libbinance_uds.so");
    let full = std::fs::metadata(&so).ok()?.len();
    let copy = std::env::temp_dir().join(format!("uds-bench-{}.so", std::process::id()));
    std::fs::copy(&so, &copy).ok()?;
    let ok = Command::new("strip").arg(&copy).status().ok()?.success();
    let stripped = std::fs::metadata(&copy).ok().map(|m| m.len());
    let _ = std::fs::remove_file(&copy);
    Some((stripped.filter(|_| ok)?, full))
}

/// What the peers measured: per peer, both sides' cold (in process and
/// whole process) and warm samples, or why nothing was.
struct PeerRun {
    peer: peers::Peer,
    sdk_cold: Vec<f64>,
    sdk_wall: Vec<f64>,
    lib_cold: Vec<f64>,
    lib_wall: Vec<f64>,
    sdk_warm: Vec<f64>,
    lib_warm: Vec<f64>,
    failed: Option<String>,
    /// Event latencies: the SDK's, then each of the library's faces'
    /// (`Peer::event_faces`, in order).
    sdk_events: Vec<f64>,
    lib_events: Vec<Vec<f64>>,
    events_failed: Option<String>,
}

/// The SDK rows: every peer's SDK and binance-uds side, alternating (SDK,
/// library, next peer ...), cold pairs first, then warm rounds, then
/// event rounds.
fn peer_runs(b: &Bench, plan: &Plan) -> Vec<PeerRun> {
    let release = b
        .exe
        .parent()
        .and_then(Path::parent)
        .expect("target/release");
    let so = release.join("libbinance_uds.so");
    let mut runs: Vec<PeerRun> = peers::find(&b.exe, &so, &b.ex.ca_file)
        .into_iter()
        .map(|peer| PeerRun {
            failed: peer.cmds.as_ref().err().cloned(),
            peer,
            sdk_cold: Vec::new(),
            sdk_wall: Vec::new(),
            lib_cold: Vec::new(),
            lib_wall: Vec::new(),
            sdk_warm: Vec::new(),
            lib_warm: Vec::new(),
            sdk_events: Vec::new(),
            lib_events: Vec::new(),
            events_failed: None,
        })
        .collect();
    let ws = b.ex.ws_api.as_str();
    let ca = b.ex.ca_file.to_string_lossy().into_owned();
    let n = plan.peer_warm_n.to_string();
    // A peer that fails once is left out of the rest of the run.
    let fail = |r: &mut PeerRun, e: String| {
        eprintln!("\n  {}: {e}", r.peer.sdk_name);
        r.failed = Some(e);
    };
    let us = |v: &Value| {
        v["us"]
            .as_f64()
            .ok_or_else(|| "RESULT without us".to_string())
    };
    for i in 0..plan.peer_cold_pairs {
        for r in runs.iter_mut().filter(|r| r.failed.is_none()) {
            let key = format!("benchPeerCold{}", r.peer.id);
            let Ok(c) = r.peer.cmds.as_ref() else {
                continue;
            };
            let got = (|| {
                let (s, sw) = c.sdk.run(&["cold", ws, &ca, &key])?;
                let (l, lw) = c.lib.run(&["cold", ws, &ca, &key])?;
                Ok::<_, String>([us(&s)?, sw, us(&l)?, lw])
            })();
            match got {
                Ok([s, sw, l, lw]) => {
                    r.sdk_cold.push(s);
                    r.sdk_wall.push(sw);
                    r.lib_cold.push(l);
                    r.lib_wall.push(lw);
                }
                Err(e) => fail(r, e),
            }
        }
        eprint!("\r  peers cold: {}/{}", i + 1, plan.peer_cold_pairs);
    }
    eprintln!();
    for i in 0..plan.peer_warm_rounds {
        for r in runs.iter_mut().filter(|r| r.failed.is_none()) {
            let key = format!("benchPeerWarm{}", r.peer.id);
            let Ok(c) = r.peer.cmds.as_ref() else {
                continue;
            };
            let got = (|| {
                let s = c.sdk.run(&["warm", ws, &ca, &key, &n])?.0;
                let l = c.lib.run(&["warm", ws, &ca, &key, &n])?.0;
                Ok::<_, String>((f64s(&s["samples"]), f64s(&l["samples"])))
            })();
            match got {
                Ok((s, l)) => {
                    r.sdk_warm.extend(s);
                    r.lib_warm.extend(l);
                }
                Err(e) => fail(r, e),
            }
        }
        eprint!("\r  peers warm: {}/{}", i + 1, plan.peer_warm_rounds);
    }
    eprintln!();
    peer_event_rounds(b, plan, &mut runs);
    runs
}

/// The event rows: per round and peer, the SDK's program then each of the
/// library's, each a fresh process on a fresh account; once it says READY,
/// warm-up and measured events paced from the exchange's control port.
/// A peer that fails once is left out of the remaining event rounds.
fn peer_event_rounds(b: &Bench, plan: &Plan, runs: &mut [PeerRun]) {
    let (ws, stream) = (b.ex.ws_api.as_str(), b.ex.stream.as_str());
    let ca = b.ex.ca_file.to_string_lossy().into_owned();
    let (n, warmup) = (plan.peer_event_n, plan.peer_event_warmup);
    let (n_arg, warmup_arg) = (n.to_string(), warmup.to_string());
    let raw = peer_event();
    let within = Duration::from_secs(30) + plan.peer_event_gap * (4 * (n + warmup)) as u32;
    let mut account = 0;
    for i in 0..plan.peer_event_rounds {
        for r in runs.iter_mut().filter(|r| r.events_failed.is_none()) {
            let Ok(c) = r.peer.cmds.as_ref() else {
                continue;
            };
            let sides = std::iter::once(&c.sdk).chain(&c.event_libs);
            let mut got = Vec::new();
            for cmd in sides {
                // A fresh account each time: no stream of an earlier
                // process can receive its events.
                account += 1;
                let key = format!("benchPeerEv{}n{account}", r.peer.id);
                let samples = cmd
                    .events(&[ws, stream, &ca, &key, &n_arg, &warmup_arg], || {
                        emit_paced(
                            b.ex.control,
                            &key,
                            &raw,
                            n + warmup,
                            plan.peer_event_gap,
                            within,
                        )
                    })
                    .map(|v| f64s(&v["samples"]))
                    .and_then(|s| {
                        if s.len() == n {
                            Ok(s)
                        } else {
                            Err(format!("{} samples, not {n}", s.len()))
                        }
                    });
                match samples {
                    Ok(s) => got.push(s),
                    Err(e) => {
                        eprintln!("\n  {} events: {e}", r.peer.sdk_name);
                        r.events_failed = Some(e);
                        break;
                    }
                }
            }
            if r.events_failed.is_none() {
                let mut got = got.into_iter();
                r.sdk_events.extend(got.next().unwrap_or_default());
                r.lib_events.resize(got.len(), Vec::new());
                for (all, s) in r.lib_events.iter_mut().zip(got) {
                    all.extend(s);
                }
            }
        }
        eprint!("\r  peers events: {}/{}", i + 1, plan.peer_event_rounds);
    }
    eprintln!();
}

fn run() {
    let quick = std::env::var_os("UDS_BENCH_QUICK").is_some();
    let plan = if quick { Plan::quick() } else { Plan::full() };
    let machine = report::machine();
    let t0 = Instant::now();
    let b = Bench {
        ex: Exchange::start(),
        exe: std::env::current_exe().expect("current exe"),
    };
    let only = std::env::var("UDS_BENCH_ONLY").ok();
    let want = |s: &str| only.as_deref().is_none_or(|o| o.split(',').any(|x| x == s));
    let cold = want("cold").then(|| cold(&b, &plan));
    let warm = want("warm").then(|| warm(&b, &plan));
    let events = want("events").then(|| events(&b, &plan));
    let scale = want("scale").then(|| scale(&b, &plan));
    let peers = want("peers").then(|| peer_runs(&b, &plan));
    let took = t0.elapsed();
    let mut rows = Vec::new();
    if let Some(c) = &cold {
        cold_rows(&mut rows, plan.cold_pairs, c);
    }
    if let Some(w) = &warm {
        warm_rows(&mut rows, &plan, w);
    }
    if let Some(e) = &events {
        event_rows(&mut rows, &plan, e);
    }
    if let Some(s) = &scale {
        scale_rows(&mut rows, plan.scale_accounts, s);
    }
    if let Some(p) = &peers {
        peer_rows(&mut rows, p);
    }
    let notes = vec![format!(
        "load average at the end of the run: {}",
        report::load()
    )];
    let saved = report::run_json(&rows, &machine, &notes, took.as_secs_f64(), &method(&plan));
    println!();
    report::print_table(&report::merge(std::slice::from_ref(&saved)));
    println!("\n(run took {:.0} s; {})", took.as_secs_f64(), notes[0]);
    let path = std::env::var_os("UDS_BENCH_JSON").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench/last-run.json"),
        PathBuf::from,
    );
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    std::fs::write(&path, format!("{saved}\n")).expect("save the run");
    println!("saved {}", path.display());
}

/// `report OUT.md RUN.json...`: BENCHMARKS.md from saved runs.
fn write_report(args: &[String]) {
    let (out, runs) = args.split_first().expect("report OUT.md RUN.json...");
    let runs: Vec<Value> = runs
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{p}: {e}"));
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{p}: {e}"))
        })
        .collect();
    let current = Path::new(env!("CARGO_MANIFEST_DIR")).join("BENCHMARKS.md");
    let old = std::fs::read_to_string(current).unwrap_or_default();
    let method = runs
        .first()
        .and_then(|r| r["method"].as_str())
        .unwrap_or("");
    report::print_table(&report::merge(&runs));
    std::fs::write(out, report::markdown(&runs, method, &old)).expect("write the report");
    println!("wrote {out}");
}

// ------------------------------------------------------------------- rows

fn cold_rows(rows: &mut Vec<Row>, n: usize, c: &Cold) {
    let (lib, raw) = (median(&c.lib), median(&c.raw));
    rows.push(
        Row::new(
            "1",
            format!("cold first client, in-process (median of {n})"),
            lib,
            raw,
            Unit::Us,
        )
        .target(Target::RatioMax(0.6)),
    );
    rows.push(Row::new(
        "1",
        "cold first client, whole process",
        median(&c.lib_wall),
        median(&c.raw_wall),
        Unit::Us,
    ));
    let step = |all: &[Vec<f64>], i: usize| median(&all.iter().map(|s| s[i]).collect::<Vec<_>>());
    for (i, what) in [
        "step: config (library) / nothing (floor)",
        "step: client new (runtime, TLS connector)",
        "step: TCP + TLS + upgrade + first request",
        "step: client free / close",
    ]
    .into_iter()
    .enumerate()
    {
        let (l, r) = match i {
            // The floor's connect and request are two steps; merge them.
            0 => (step(&c.lib_steps, 0), 0.0),
            1 => (step(&c.lib_steps, 1), step(&c.raw_steps, 0)),
            2 => (
                step(&c.lib_steps, 2),
                step(&c.raw_steps, 1) + step(&c.raw_steps, 2),
            ),
            _ => (step(&c.lib_steps, 3), step(&c.raw_steps, 3)),
        };
        rows.push(Row::new("1", what, l, r, Unit::Us));
    }
    for (what, v) in [
        ("later client (another open): new + start + free", &c.second),
        ("reconnect after `drop`: the next keepalive", &c.reconnect),
        (
            "client after the last was freed: new + start + free",
            &c.sequential,
        ),
    ] {
        rows.push(
            Row::new(
                "2",
                format!("{what} (vs row 1 cold floor)"),
                median(v),
                raw,
                Unit::Us,
            )
            .target(Target::Faster(5000.0, 10.0)),
        );
    }
    if c.reconnect_failures > 0 {
        let last = rows.len() - 2;
        rows[last].note = format!("{} reconnects failed", c.reconnect_failures);
    }
}

fn warm_rows(rows: &mut Vec<Row>, plan: &Plan, w: &Warm) {
    // The floor is the faster of its two ways of waiting, per statistic.
    let floor = |p: f64| pct(&w.raw, p).min(pct(&w.raw_busy, p));
    rows.push(
        Row::new(
            "3",
            format!("warm keepalive p50 (n = {} each)", w.lib.len()),
            median(&w.lib),
            floor(50.0),
            Unit::Us,
        )
        .plus()
        .target(Target::PlusMax(10.0)),
    );
    rows.push(
        Row::new(
            "3",
            "warm keepalive p99",
            pct(&w.lib, 99.0),
            floor(99.0),
            Unit::Us,
        )
        .plus()
        .target(Target::RatioMax(1.2)),
    );
    for (p, name) in [(50.0, "p50"), (99.0, "p99")] {
        for (how, v) in [("sleeping in epoll", &w.raw), ("busy-polling", &w.raw_busy)] {
            rows.push(
                Row::new(
                    "3",
                    format!("warm keepalive {name} vs the floor {how}"),
                    pct(&w.lib, p),
                    pct(v, p),
                    Unit::Us,
                )
                .plus(),
            );
        }
    }
    let t = plan.conc_threads;
    let lc = median(&w.lib_conc);
    rows.push(
        Row::new(
            "4",
            format!("{t} threads on one client vs {t} blocking raw clients, a connection each"),
            lc,
            median(&w.raw_blocking),
            Unit::Rate("req/s"),
        )
        .target(Target::RatioMin(0.8)),
    );
    rows.push(Row::new(
        "4",
        format!("{t} threads on one client vs one raw connection pipelining {t}"),
        lc,
        median(&w.raw_conc),
        Unit::Rate("req/s"),
    ));
}

fn event_rows(rows: &mut Vec<Row>, plan: &Plan, e: &Events) {
    let raw_rate = median(&e.raw_rate);
    // The floor is the faster of its two ways of waiting, per statistic.
    let floor = |p: f64| pct(&e.raw_lat, p).min(pct(&e.busy_lat, p));
    for (p, name, target) in [
        (50.0, "p50", Target::PlusMax(5.0)),
        (99.0, "p99", Target::RatioMax(1.1)),
    ] {
        rows.push(
            Row::new(
                "5",
                format!(
                    "event latency {name} through the descriptor, poll + try_next (n = {})",
                    e.poll_lat.len()
                ),
                pct(&e.poll_lat, p),
                floor(p),
                Unit::Us,
            )
            .plus()
            .target(target),
        );
    }
    for (how, rate, lat) in [
        ("`next`", &e.lib_rate, &e.lib_lat),
        ("callback", &e.cb_rate, &e.cb_lat),
    ] {
        rows.push(
            Row::new(
                "5",
                format!("events/s through {how}, bursts of {}", plan.burst),
                median(rate),
                raw_rate,
                Unit::Rate("ev/s"),
            )
            .target(Target::RatioMin(1.0)),
        );
        rows.push(
            Row::new(
                "5",
                format!("event latency p50 through {how} (n = {})", lat.len()),
                median(lat),
                floor(50.0),
                Unit::Us,
            )
            .plus()
            .target(Target::PlusMax(5.0)),
        );
        rows.push(
            Row::new(
                "5",
                format!("event latency p99 through {how}"),
                pct(lat, 99.0),
                floor(99.0),
                Unit::Us,
            )
            .plus()
            .target(Target::RatioMax(1.1)),
        );
    }
    for (how, v) in [
        ("sleeping in epoll", &e.raw_lat),
        ("busy-polling", &e.busy_lat),
    ] {
        for (p, name) in [(50.0, "p50"), (99.0, "p99")] {
            rows.push(
                Row::new(
                    "5",
                    format!("event latency {name} through `next` vs the floor {how}"),
                    pct(&e.lib_lat, p),
                    pct(v, p),
                    Unit::Us,
                )
                .plus(),
            );
        }
    }
}

fn scale_rows(rows: &mut Vec<Row>, accounts: usize, s: &Scale) {
    let worst = |v: &[Value], f: &dyn Fn(&Value) -> f64| v.iter().map(f).fold(f64::NAN, f64::max);
    let field = |x: &Value, k: &str| x[k].as_f64().unwrap_or(f64::NAN);
    let bg = |x: &Value| field(x, "threads_open") - field(x, "threads_before");
    rows.push(
        Row::new(
            "6",
            format!("background threads, {accounts} accounts with open streams"),
            worst(&s.lib, &bg),
            worst(&s.raw, &bg),
            Unit::Count,
        )
        .target(Target::AbsMax(4.0)),
    );
    let rss = |x: &Value| field(x, "rss_open");
    rows.push(
        Row::new(
            "6",
            format!("RSS (VmRSS), {accounts} accounts with open streams"),
            worst(&s.lib, &rss),
            worst(&s.raw, &rss),
            Unit::Bytes,
        )
        .target(Target::AbsMax(64.0 * 1024.0 * 1024.0)),
    );
    let left = |x: &Value| field(x, "threads_after") - field(x, "threads_before");
    rows.push(Row::new(
        "6",
        "threads left after every stream and client is freed",
        worst(&s.lib, &left),
        worst(&s.raw, &left),
        Unit::Count,
    ));
    let open = |v: &[Value]| {
        median(
            &v.iter()
                .map(|x| field(x, "open_ms") * 1000.0)
                .collect::<Vec<_>>(),
        )
    };
    rows.push(Row::new(
        "6",
        format!("opening the {accounts} streams"),
        open(&s.lib),
        open(&s.raw),
        Unit::Us,
    ));
    if let Some((stripped, _)) = s.so_size {
        rows.push(Row::new(
            "6",
            "libbinance_uds.so, stripped",
            stripped as f64,
            f64::NAN,
            Unit::Bytes,
        ));
    }
}

fn peer_rows(rows: &mut Vec<Row>, runs: &[PeerRun]) {
    for r in runs {
        let p = &r.peer;
        let name = format!("{}: {} vs {}", p.lang, p.lib_name, p.sdk_name);
        let why = r.failed.clone().unwrap_or_default();
        let row = |what: &str, lib: f64, sdk: f64| {
            let row =
                Row::new(p.id, format!("{name}: {what}"), lib, sdk, Unit::Us).target(Target::Ahead);
            if why.is_empty() {
                row
            } else {
                row.note(format!("not measured: {why}"))
            }
        };
        rows.push(row(
            "cold to first key, in process",
            median(&r.lib_cold),
            median(&r.sdk_cold),
        ));
        rows.push(row(
            "cold to first key, whole process",
            median(&r.lib_wall),
            median(&r.sdk_wall),
        ));
        rows.push(row(
            &format!("warm keepalive p50 (n = {} each)", r.lib_warm.len()),
            median(&r.lib_warm),
            median(&r.sdk_warm),
        ));
        rows.push(row(
            "warm keepalive p99",
            pct(&r.lib_warm, 99.0),
            pct(&r.sdk_warm, 99.0),
        ));
        event_peer_rows(rows, r);
    }
}

/// A peer's event rows: each of the library's faces against the SDK, p50
/// and p99; for Python also asyncio against blocking.
fn event_peer_rows(rows: &mut Vec<Row>, r: &PeerRun) {
    let p = &r.peer;
    let why = r
        .events_failed
        .clone()
        .or_else(|| p.cmds.as_ref().err().cloned());
    let faces = p.event_faces;
    // Python's target is twice the SDK's speed; the others', ahead of it.
    let target = if p.lang == "Python" {
        Target::RatioMax(0.5)
    } else {
        Target::Ahead
    };
    let none = Vec::new();
    let lib = |i: usize| r.lib_events.get(i).unwrap_or(&none);
    // A round that failed after others were measured keeps their figures.
    let note = |row: Row| match &why {
        Some(w) if r.sdk_events.is_empty() => row.note(format!("not measured: {w}")),
        Some(w) => row.note(format!("a later round failed: {w}")),
        None => row,
    };
    for (i, face) in faces.iter().enumerate() {
        let name = format!("{}: {face} vs {}", p.lang, p.sdk_name);
        rows.push(note(
            Row::new(
                p.id,
                format!(
                    "{name}: user-stream event latency p50 (n = {} each)",
                    lib(i).len()
                ),
                median(lib(i)),
                median(&r.sdk_events),
                Unit::Us,
            )
            .target(target),
        ));
        rows.push(note(
            Row::new(
                p.id,
                format!("{name}: user-stream event latency p99"),
                pct(lib(i), 99.0),
                pct(&r.sdk_events, 99.0),
                Unit::Us,
            )
            .target(target),
        ));
    }
    if faces.len() == 2 {
        let name = format!("{}: {} vs {}", p.lang, faces[1], faces[0]);
        rows.push(note(
            Row::new(
                p.id,
                format!("{name}: event latency p50"),
                median(lib(1)),
                median(lib(0)),
                Unit::Us,
            )
            .plus()
            .target(Target::PlusMax(20.0)),
        ));
        rows.push(note(
            Row::new(
                p.id,
                format!("{name}: event latency p99"),
                pct(lib(1), 99.0),
                pct(lib(0), 99.0),
                Unit::Us,
            )
            .plus(),
        ));
    }
}

/// How each row is measured (goes into BENCHMARKS.md with the run).
fn method(plan: &Plan) -> String {
    format!(
        "## How each row is measured\n\n\
**The floor** (`benches/uds/raw.rs`) is the fastest client of the same stack written by \
hand: one current-thread tokio runtime owned by the caller, the caller's own thread \
polling the socket inside `block_on` (so an answer is read by the thread that waits for \
it: no hand-off, no wake-up of another thread), a native-tls connector with the same \
roots, tokio-tungstenite with the library's buffer sizes, `serde_json::from_str::<Value>` \
on every answer or event, and nothing else: no session, no id routing, no timeouts, no \
error mapping, no queue. Nothing it does can be left out by a real client, and every \
alternative of the same stack adds work on the path (a multi-thread runtime adds a \
cross-thread wake-up per answer; a reader task adds a channel). It waits for an answer or \
event two ways, measured alternately: sleeping in epoll (tokio's default) and busy-polling \
(`raw::busy`: the task yields between polls, so the runtime checks the socket with a zero \
timeout and the thread never sleeps, which on this VM saves a wake-up of tens of µs); for \
each statistic the faster of the two is the floor, and rows 3 and 5 also show both.\n\n\
1. **Cold.** {n} pairs of fresh processes (this benchmark re-run as `child cold-lib` / \
`child cold-raw`), alternating. Library: `binance_config_new`, `_set_api_key`, \
`_set_endpoint`, `_add_root_certificate_pem`, `binance_client_new`, \
`binance_config_free`, `binance_listen_key_start`, `binance_string_free`, \
`binance_client_free`. Floor: runtime, native-tls connector with the CA (system roots + \
CA, TLS ≥ 1.2, as the library), TCP connect, TLS, WebSocket upgrade, \
`userDataStream.start`, answer parsed, close frame. Timed inside each process from before \
the first call to after the free/close (the CA file is read before); *whole process* is \
spawn to exit as the parent sees it.\n\
2. **Later clients.** In a fresh process every other pair (`child later`), after a first \
client has its key: 5 × (client new + start + free) while the first stays open; 5 × \
(control `drop` of the API connection, 30 ms for the client to notice, then time \
`binance_listen_key_keepalive`, which reconnects); after the first client is freed, 3 × \
(client new + start + free). Baseline: the floor's cold figure of row 1.\n\
3. **Warm.** One open connection each, in this process: {blocks} alternating blocks of \
{block} `binance_listen_key_keepalive` calls (key copied out and freed) and {block} raw \
calls (send, read the answer, parse, take the key).\n\
4. **Concurrent.** {threads} threads calling keepalive on one client, against {threads} \
threads each with a raw client of its own (a connection and a current-thread runtime \
each: what blocking callers cost without the library), and against one raw connection \
keeping {threads} requests in flight (a writer and a reader matching answers by id on one \
thread); {rounds} alternating rounds of {secs:.1} s; calls completed / duration.\n\
5. **Events.** Three accounts, so each burst reaches one consumer: the library's stream \
read with `binance_user_stream_next`, a stream opened with \
`binance_user_stream_open_callback` (the callback reads type, time and JSON and records \
the latency; a waiting thread counts), and a raw stream connection read with \
tokio-tungstenite and parsed with `serde_json::from_str::<Value>`. Throughput: bursts of \
{burst} `emit`ted ORDER_TRADE_UPDATE events (about 700 bytes), rotating, (n − 1) / (last − \
first return). Latency: {paced} events per round, one every ~{gap} µs, {prounds} rotating \
rounds; each event carries the exchange's CLOCK_REALTIME when its connection task hands \
the frame to the WebSocket writer (`send_ns`), subtracted from the consumer's clock when \
the event is in its hands.\n\
6. **Scale.** Fresh processes (`child scale-lib` / `child scale-raw`), {pairs} \
alternating pairs: {accounts} distinct API keys, each a client with an open user stream \
(library: opened one after another without waiting for the subscription, then until every \
stream has said `binance.stream_subscribed`), or an API connection with its key and a stream \
connection subscribed, each with a reader task, on a two-worker runtime (floor). Threads from /proc/self/task, VmRSS with all open \
(worst of the runs). The .so is stripped from a copy.\n\
P. **Official SDKs** (`benches/uds/peers.rs`; installed by `scripts/bench.sh`, pinned: \
the Python SDK into a throwaway venv, the JS connector and koffi with npm, the Rust SDK \
built as the workspace member `benches/peers/rust-sdk`). Each language's SDK against \
binance-uds as a user of that language calls it: Python's `bindings/python` (ctypes), \
Node.js calling the C API through koffi (synchronously), Rust through the C API. Both \
sides run as child processes with one protocol (`cold` / `warm`), alternating SDK, \
library, SDK, ...: {pcold} cold pairs per peer (timed inside the process from its first \
line, imports included, to the first key; and spawn to exit), {pwarm} warm rounds of \
{pn} keepalives each after 300 unmeasured. The SDKs are pointed at loopback as their \
documentation allows: Python `stream_url` and `https_agent` (an `ssl.SSLContext` with \
the exchange's CA), JS `wsURL` and `NODE_EXTRA_CA_CERTS`, Rust `ws_url` and `agent` (a \
native-tls connector with the CA).\n\n\
P, event rows. **User-stream event latency against each SDK**, the exchange running with \
`--stream-string-ids` (the SDKs' SUBSCRIBE ids are strings). Each side is a fresh process \
(`events` in the peer protocol) on an account of its own: it starts its listenKey and \
subscribes its user stream as its documentation shows (Python SDK \
`websocket_streams.create_connection()`, `user_data(key)`, `on(\"message\")`; JS \
`websocketStreams.connect()`, `userData(key)`, `on('message')`; Rust \
`DerivativesTradingUsdsFuturesWsStreams`, `user_data(key, None)`, `on_message`: each \
callback gets the SDK's parsed event), or opens a binance-uds stream and reads it as that \
language's user would: Python's blocking `next_event` and `binance_uds.aio`'s awaited \
`next_event` on an asyncio loop, Node.js `binance_user_stream_next` through koffi \
(synchronously), Rust `binance_user_stream_next`; the Python and Node.js sides parse \
the event's JSON (`json.loads`, `JSON.parse`) as their users would. It prints `READY`; the benchmark then emits \
ORDER_TRADE_UPDATE events to its account from the control port, one every ~{egap} µs, \
until {ewarm} unmeasured and then {en} measured ones have been delivered (an event emitted \
before the subscription is live reaches nobody and is not counted). Each event carries the \
exchange's CLOCK_REALTIME at the hand-over to the WebSocket writer as its client order id \
`o.c` (a field every SDK's model keeps), subtracted from the program's wall clock taken as soon \
as the event is in its hands, before it is read (Node.js: `performance.timeOrigin + performance.now()`, \
corrected at start by its offset from `clock_gettime(CLOCK_REALTIME)`, about 10 µs here, on \
both sides). {erounds} rounds; in each, per peer, the SDK's program, then \
the library's. \
Targets: Python ≥ 2× ahead of the SDK at p50 and p99 (ratio ≤ 0.5) for both faces, and \
`binance_uds.aio` p50 ≤ blocking + 20 µs; Node.js and Rust ahead of their SDK. \
`benches/aio.py` (run by `scripts/bench.sh` after this benchmark) also measures aio's \
callback form against both.\n",
        n = plan.cold_pairs,
        blocks = plan.warm_blocks,
        block = plan.warm_block,
        threads = plan.conc_threads,
        rounds = plan.conc_rounds,
        secs = plan.conc_secs,
        burst = plan.burst,
        paced = plan.paced,
        gap = plan.paced_gap.as_micros(),
        prounds = plan.paced_rounds,
        pairs = plan.scale_pairs,
        accounts = plan.scale_accounts,
        pcold = plan.peer_cold_pairs,
        pwarm = plan.peer_warm_rounds,
        pn = plan.peer_warm_n,
        egap = plan.peer_event_gap.as_micros(),
        ewarm = plan.peer_event_warmup,
        en = plan.peer_event_n,
        erounds = plan.peer_event_rounds,
    )
}

// ---------------------------------------------------------------- profile

/// `profile <loop> [seconds]`: one loop alone, for a profiler.
///   warm-lib | warm-raw      keepalive on an open connection
///   conc-lib | conc-raw [N]  N (8) threads on one client | N pipelined
///   conc-blocking [N]        N (8) threads, a raw client each
///   events-lib | events-raw  bursts of 20000 events
fn profile(args: &[String]) {
    let what = args.first().map(String::as_str).unwrap_or("warm-lib");
    let secs: f64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(5.0);
    let ex = Exchange::start();
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let mut n = 0u64;
    match what {
        "warm-lib" => {
            let cfg =
                Config::new(&settings(&ex.ws_api, "", &ex.ca_pem, "prof", None)).expect("cfg");
            let c = Client::new(&cfg).expect("client");
            c.start().expect("start");
            while Instant::now() < end {
                c.keepalive().expect("keepalive");
                n += 1;
            }
        }
        "warm-raw" => {
            let rt = current_thread_rt();
            let cx = raw::connector(&ex.ca_pem);
            let mut ws = rt.block_on(raw::connect(&cx, &ex.ws_api));
            rt.block_on(raw::call(&mut ws, 0, START, "prof"));
            while Instant::now() < end {
                n += 1;
                rt.block_on(raw::call(&mut ws, n, PING, "prof"));
            }
        }
        "conc-lib" => {
            let cfg =
                Config::new(&settings(&ex.ws_api, "", &ex.ca_pem, "prof", None)).expect("cfg");
            let c = Client::new(&cfg).expect("client");
            c.start().expect("start");
            let threads = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(8);
            n = lib_concurrent(&c, threads, secs);
        }
        "conc-raw" => {
            let rt = current_thread_rt();
            let cx = raw::connector(&ex.ca_pem);
            let mut ws = rt.block_on(raw::connect(&cx, &ex.ws_api));
            rt.block_on(raw::call(&mut ws, 0, START, "prof"));
            let depth = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(8);
            n = rt.block_on(raw_pipelined(&mut ws, "prof", depth, secs, &mut 1));
        }
        "conc-blocking" => {
            let cx = raw::connector(&ex.ca_pem);
            let rt = current_thread_rt();
            let mut ws = rt.block_on(raw::connect(&cx, &ex.ws_api));
            rt.block_on(raw::call(&mut ws, 0, START, "prof"));
            let threads = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(8);
            n = raw_blocking_threads(&cx, &ex.ws_api, "prof", threads, secs);
        }
        "events-lib" => {
            let cap = Some(1 << 16);
            let cfg = Config::new(&settings(&ex.ws_api, &ex.stream, &ex.ca_pem, "prof", cap))
                .expect("cfg");
            let c = Client::new(&cfg).expect("client");
            let st = Stream::open(&c).expect("stream");
            while Instant::now() < end {
                let (pending, cmd) = burst(ex.control, "prof", 20_000);
                n += lib_consume(&st, 20_000).lat.len() as u64;
                exchange::finish_control(pending, &cmd);
            }
        }
        "events-raw" => {
            let rt = current_thread_rt();
            let cx = raw::connector(&ex.ca_pem);
            let mut ws = rt.block_on(async {
                let mut api = raw::connect(&cx, &ex.ws_api).await;
                let key = raw::call(&mut api, 1, START, "prof").await;
                raw::subscribe(&cx, &ex.stream, &key).await
            });
            while Instant::now() < end {
                let (pending, cmd) = burst(ex.control, "prof", 20_000);
                n += rt.block_on(raw_consume(&mut ws, 20_000)).lat.len() as u64;
                exchange::finish_control(pending, &cmd);
            }
        }
        other => panic!("unknown profile loop {other:?}"),
    }
    println!("{what}: {n} in {secs} s");
}
