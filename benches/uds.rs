//! `cargo bench --bench uds` (or `scripts/bench.sh`): binance-uds measured
//! side by side with the raw floor of its own stack (tokio +
//! tokio-tungstenite + native-tls + serde_json used by hand), against the
//! local exchange over loopback TLS. Every figure and its baseline come from
//! the same run, taken alternately (A, B, A, B, ...), so that the drift of a
//! shared machine hits both alike. Prints the table and writes
//! BENCHMARKS.md (keeping its hand-written "## Profile" section).
//!
//! The library is driven through its C API (`binance_*`), as C programs
//! use it. Fresh-process measurements re-run this executable with
//! `child <mode> ...`. `profile <loop> [seconds]` runs one loop alone, for
//! perf or callgrind (see BENCHMARKS.md).
//!
//! Environment: `UDS_BENCH_QUICK=1` for a short smoke run (fewer samples;
//! then BENCHMARKS.md is not written unless `UDS_BENCH_OUT` names a file);
//! `UDS_BENCH_OUT=PATH` writes the report there instead.

#[path = "uds/capi.rs"]
mod capi;
#[path = "uds/exchange.rs"]
mod exchange;
#[path = "uds/raw.rs"]
mod raw;
#[path = "uds/report.rs"]
mod report;

use capi::{Client, Config, Settings, Stream};
use exchange::Exchange;
use futures_util::{SinkExt, StreamExt};
use report::{median, pct, Row, Verdict};
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

/// How many samples of each kind.
struct Plan {
    cold_pairs: usize,
    warm_blocks: usize,
    warm_block: usize,
    python_warm: usize,
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
}

impl Plan {
    fn full() -> Plan {
        Plan {
            cold_pairs: 30,
            warm_blocks: 10,
            warm_block: 500,
            python_warm: 2000,
            conc_threads: 8,
            conc_rounds: 3,
            conc_secs: 1.5,
            burst: 20_000,
            burst_rounds: 3,
            paced: 1500,
            paced_rounds: 2,
            paced_gap: Duration::from_micros(500),
            scale_accounts: 100,
            scale_pairs: 2,
        }
    }

    fn quick() -> Plan {
        Plan {
            cold_pairs: 4,
            warm_blocks: 4,
            warm_block: 200,
            python_warm: 300,
            conc_rounds: 1,
            conc_secs: 0.5,
            burst: 5000,
            burst_rounds: 1,
            paced: 300,
            paced_rounds: 1,
            scale_pairs: 1,
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
        other => panic!("unknown child mode {other:?}"),
    };
    println!("RESULT {result}");
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
        let c = Client::new(&cfg).expect("client");
        streams.push(Stream::open(&c).expect("stream"));
        clients.push(c);
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
            let st = raw::connect(&cx, &format!("{stream}/ws/{key}")).await;
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
    python: bool,
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

    /// The Python reference client: (result, wall µs).
    fn python(&self, args: &[&str]) -> (Value, f64) {
        let t = Instant::now();
        let out = Command::new("python3")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/python_ws.py"))
            .args(args)
            .output()
            .expect("run python3");
        let wall = since_us(t);
        (result_of(&out, "python"), wall)
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
    py: Vec<f64>,
    py_wall: Vec<f64>,
    py_import: Vec<f64>,
}

/// Rows 1, 2 and 7 (cold): fresh processes, alternating.
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
        let (later, _) = b.child("later", &b.ex.control.to_string());
        c.second.extend(f64s(&later["second"]));
        c.reconnect.extend(f64s(&later["reconnect"]));
        c.reconnect_failures += later["reconnect_failures"].as_u64().unwrap_or(0);
        c.sequential.extend(f64s(&later["sequential"]));
        if b.python {
            let ca = b.ex.ca_file.to_string_lossy();
            let (py, wall) = b.python(&["cold", &b.ex.ws_api, &ca, key]);
            c.py.push(py["us"].as_f64().expect("us"));
            c.py_import
                .push(py["import_us"].as_f64().expect("import_us"));
            c.py_wall.push(wall);
        }
        eprint!("\r  cold: {}/{}", i + 1, plan.cold_pairs);
    }
    eprintln!();
    c
}

struct Warm {
    lib: Vec<f64>,
    raw: Vec<f64>,
    python: Option<Value>,
    lib_conc: Vec<f64>,
    raw_conc: Vec<f64>,
    /// The same threads as blocking raw clients, each on its own connection.
    raw_blocking: Vec<f64>,
}

/// Rows 3, 4 and 7 (warm): one open connection each, calls in alternating
/// blocks; then 8 threads against a pipelined raw connection.
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
    let mut raw_call = |ws: &mut raw::Ws| {
        id += 1;
        let k = rt.block_on(raw::call(ws, id, PING, key));
        assert_eq!(k.len(), 64);
    };
    for _ in 0..300 {
        lib.keepalive().expect("keepalive");
        raw_call(&mut ws);
    }
    let (mut lib_s, mut raw_s, mut python) = (Vec::new(), Vec::new(), None);
    for block in 0..plan.warm_blocks {
        for _ in 0..plan.warm_block {
            let t = Instant::now();
            lib.keepalive().expect("keepalive");
            lib_s.push(since_us(t));
        }
        for _ in 0..plan.warm_block {
            let t = Instant::now();
            raw_call(&mut ws);
            raw_s.push(since_us(t));
        }
        if b.python && block == plan.warm_blocks / 2 {
            let ca = ex.ca_file.to_string_lossy();
            let n = plan.python_warm.to_string();
            python = Some(b.python(&["warm", &ex.ws_api, &ca, key, &n]).0);
        }
    }
    eprintln!("  warm: done");

    let (mut lib_conc, mut raw_conc) = (Vec::new(), Vec::new());
    let secs = plan.conc_secs;
    lib_concurrent(&lib, plan.conc_threads, 0.3);
    rt.block_on(raw_pipelined(
        &mut ws,
        key,
        plan.conc_threads,
        0.3,
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
        python,
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
    raw_rate: Vec<f64>,
    lib_lat: Vec<f64>,
    raw_lat: Vec<f64>,
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
    let mut seen = Seen::new();
    while seen.lat.len() < n {
        let ev = st.next(5000).expect("next").expect("an event within 5 s");
        let now = now_ns();
        let kind = ev.kind().to_bytes();
        if kind.starts_with(b"binance.") {
            continue; // a library event (none expected)
        }
        assert_eq!(kind, b"ORDER_TRADE_UPDATE");
        assert!(ev.time_ms() > 0);
        seen.record(send_ns_of(ev.json()), now);
    }
    seen
}

/// `n` events on the raw stream connection: read, parse to a Value.
async fn raw_consume(ws: &mut raw::Ws, n: usize) -> Seen {
    let mut seen = Seen::new();
    while seen.lat.len() < n {
        let t = raw::next_text(ws).await;
        let v: Value = serde_json::from_str(t.as_str()).expect("event JSON");
        let now = now_ns();
        assert_eq!(v["e"], "ORDER_TRADE_UPDATE");
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
        let cmd = json!({"cmd": "emit", "api_key": api_key, "count": 1, "raw": EVENT});
        let line = format!("{cmd}\n");
        let mut s = std::net::TcpStream::connect(control).expect("control");
        s.set_nodelay(true).ok();
        let mut r = BufReader::new(s.try_clone().expect("clone"));
        let mut answer = String::new();
        for _ in 0..n {
            s.write_all(line.as_bytes()).expect("write control");
            answer.clear();
            r.read_line(&mut answer).expect("read control");
            assert!(answer.contains(r#""delivered":1"#), "{answer}");
            std::thread::sleep(gap);
        }
    })
}

fn burst(control: SocketAddr, api_key: &str, n: usize) -> (std::net::TcpStream, Value) {
    let cmd = json!({"cmd": "emit", "api_key": api_key, "count": n, "raw": EVENT});
    (exchange::send_control(control, &cmd), cmd)
}

/// Row 5: bursts for throughput, then paced events for latency,
/// alternating between the library's stream and a raw stream connection
/// (two accounts, so each burst reaches one consumer only).
fn events(b: &Bench, plan: &Plan) -> Events {
    let ex = &b.ex;
    let (lib_key, raw_key) = ("benchEvLib", "benchEvRaw");
    let capacity = Some((plan.burst as u32 * 2).max(4096));
    let cfg = Config::new(&settings(
        &ex.ws_api, &ex.stream, &ex.ca_pem, lib_key, capacity,
    ))
    .expect("cfg");
    let client = Client::new(&cfg).expect("client");
    let st = Stream::open(&client).expect("stream");
    let rt = current_thread_rt();
    let cx = raw::connector(&ex.ca_pem);
    let mut ws = rt.block_on(async {
        let mut api = raw::connect(&cx, &ex.ws_api).await;
        let key = raw::call(&mut api, 1, START, raw_key).await;
        raw::connect(&cx, &format!("{}/ws/{key}", ex.stream)).await
    });
    let mut out = Events::default();
    // A small burst each to warm up.
    let sizes = std::iter::once(200).chain(std::iter::repeat_n(plan.burst, plan.burst_rounds));
    for (i, n) in sizes.enumerate() {
        let (pending, cmd) = burst(ex.control, lib_key, n);
        let seen = lib_consume(&st, n);
        exchange::finish_control(pending, &cmd);
        let lib_rate = seen.rate();
        let (pending, cmd) = burst(ex.control, raw_key, n);
        let seen = rt.block_on(raw_consume(&mut ws, n));
        exchange::finish_control(pending, &cmd);
        if i > 0 {
            out.lib_rate.push(lib_rate);
            out.raw_rate.push(seen.rate());
        }
    }
    eprintln!("  event bursts: done");
    for _ in 0..plan.paced_rounds {
        let t = paced_emitter(ex.control, lib_key, plan.paced, plan.paced_gap);
        out.lib_lat.extend(lib_consume(&st, plan.paced).lat);
        t.join().expect("emitter");
        let t = paced_emitter(ex.control, raw_key, plan.paced, plan.paced_gap);
        out.raw_lat
            .extend(rt.block_on(raw_consume(&mut ws, plan.paced)).lat);
        t.join().expect("emitter");
    }
    eprintln!("  event latency: done");
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

fn python_ready() -> bool {
    Command::new("python3")
        .args(["-c", "import websockets.asyncio.client"])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn run() {
    let quick = std::env::var_os("UDS_BENCH_QUICK").is_some();
    let plan = if quick { Plan::quick() } else { Plan::full() };
    let machine = report::machine();
    let t0 = Instant::now();
    let b = Bench {
        ex: Exchange::start(),
        exe: std::env::current_exe().expect("current exe"),
        python: python_ready(),
    };
    if !b.python {
        eprintln!("  python3 with `websockets` not found: row 7 is skipped");
    }
    let only = std::env::var("UDS_BENCH_ONLY").ok();
    let want = |s: &str| only.as_deref().is_none_or(|o| o.split(',').any(|x| x == s));
    let cold = want("cold").then(|| cold(&b, &plan));
    let warm = want("warm").then(|| warm(&b, &plan));
    let events = want("events").then(|| events(&b, &plan));
    let scale = want("scale").then(|| scale(&b, &plan));
    let took = t0.elapsed();
    let rows = rows(
        &plan,
        cold.as_ref(),
        warm.as_ref(),
        events.as_ref(),
        scale.as_ref(),
    );
    println!();
    report::print_table(&rows);
    println!("\n(run took {:.0} s)", took.as_secs_f64());
    let out = match std::env::var_os("UDS_BENCH_OUT") {
        Some(p) => Some(PathBuf::from(p)),
        None if quick || only.is_some() => None,
        None => Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("BENCHMARKS.md")),
    };
    if let Some(path) = out {
        let md = markdown(&plan, &machine, &rows, cold.as_ref(), scale.as_ref(), took);
        std::fs::write(&path, md).expect("write the report");
        println!("wrote {}", path.display());
    }
}

// ----------------------------------------------------------------- report

fn rows(
    plan: &Plan,
    c: Option<&Cold>,
    w: Option<&Warm>,
    e: Option<&Events>,
    s: Option<&Scale>,
) -> Vec<Row> {
    use report::{mib, rate, ratio, us};
    let mut rows = Vec::new();
    let mut row = |row, what: String, lib: String, base: String, r: String, target: &str, v| {
        rows.push(Row {
            row,
            what,
            lib,
            base,
            ratio: r,
            target: target.into(),
            verdict: v,
        })
    };
    let plus = |a: f64, b: f64| format!("{} (+{})", ratio(a, b), us(a - b));
    if let Some(c) = c {
        let n = plan.cold_pairs;
        let (lib, raw) = (median(&c.lib), median(&c.raw));
        row(
            "1",
            format!("cold first client, in-process (median of {n})"),
            us(lib),
            us(raw),
            ratio(lib, raw),
            "ratio ≤ 1.10",
            Verdict::of(lib / raw <= 1.10),
        );
        let (lw, rw) = (median(&c.lib_wall), median(&c.raw_wall));
        row(
            "1",
            "cold first client, whole process (median)".into(),
            us(lw),
            us(rw),
            ratio(lw, rw),
            "",
            Verdict::Info,
        );
        for (what, v) in [
            ("later client (another open): new + start + free", &c.second),
            ("reconnect after `drop`: the next keepalive", &c.reconnect),
            (
                "client after the last was freed: new + start + free",
                &c.sequential,
            ),
        ] {
            let m = median(v);
            row(
                "2",
                format!("{what} (median of {})", v.len()),
                us(m),
                format!("{} (row 1 cold)", us(raw)),
                format!("{} ({:.0}x faster)", ratio(m, raw), raw / m),
                "< 5 ms and > 10x faster",
                Verdict::of(m < 5000.0 && raw / m > 10.0),
            );
        }
    }
    if let Some(w) = w {
        let (l50, r50) = (median(&w.lib), median(&w.raw));
        row(
            "3",
            format!("warm keepalive p50 (n = {} each)", w.lib.len()),
            us(l50),
            us(r50),
            plus(l50, r50),
            "p50 ≤ raw + 15 µs",
            Verdict::of(l50 - r50 <= 15.0),
        );
        let (l99, r99) = (pct(&w.lib, 99.0), pct(&w.raw, 99.0));
        row(
            "3",
            "warm keepalive p99".into(),
            us(l99),
            us(r99),
            plus(l99, r99),
            "",
            Verdict::Info,
        );
        let (lc, rc) = (median(&w.lib_conc), median(&w.raw_conc));
        row(
            "4",
            format!(
                "{} threads on one client vs 8 pipelined (median of {} × {:.1} s)",
                plan.conc_threads, plan.conc_rounds, plan.conc_secs
            ),
            rate(lc, "req/s"),
            rate(rc, "req/s"),
            ratio(lc, rc),
            "ratio ≥ 0.8",
            Verdict::of(lc / rc >= 0.8),
        );
        let rb = median(&w.raw_blocking);
        row(
            "4",
            format!(
                "{} threads on one client vs {} blocking raw clients, a connection each",
                plan.conc_threads, plan.conc_threads
            ),
            rate(lc, "req/s"),
            rate(rb, "req/s"),
            ratio(lc, rb),
            "",
            Verdict::Info,
        );
    }
    if let Some(e) = e {
        let (le, re) = (median(&e.lib_rate), median(&e.raw_rate));
        row(
            "5",
            format!(
                "events/s, bursts of {} (median of {})",
                plan.burst, plan.burst_rounds
            ),
            rate(le, "ev/s"),
            rate(re, "ev/s"),
            ratio(le, re),
            "ratio ≥ 0.9",
            Verdict::of(le / re >= 0.9),
        );
        let (l50, r50) = (median(&e.lib_lat), median(&e.raw_lat));
        row(
            "5",
            format!("event latency p50, send → return (n = {})", e.lib_lat.len()),
            us(l50),
            us(r50),
            plus(l50, r50),
            "",
            Verdict::Info,
        );
        let (l99, r99) = (pct(&e.lib_lat, 99.0), pct(&e.raw_lat, 99.0));
        row(
            "5",
            "event latency p99".into(),
            us(l99),
            us(r99),
            plus(l99, r99),
            "p99 < 100 µs",
            Verdict::of(l99 < 100.0),
        );
    }
    if let Some(s) = s {
        let worst =
            |v: &[Value], f: &dyn Fn(&Value) -> f64| v.iter().map(f).fold(f64::NAN, f64::max);
        let field = |x: &Value, k: &str| x[k].as_f64().unwrap_or(f64::NAN);
        let accounts = plan.scale_accounts;
        let bg = |x: &Value| field(x, "threads_open") - field(x, "threads_before");
        let (lt, rt) = (worst(&s.lib, &bg), worst(&s.raw, &bg));
        row(
            "6",
            format!("background threads, {accounts} accounts with open streams"),
            format!("{lt:.0}"),
            format!("{rt:.0}"),
            ratio(lt, rt),
            "≤ 4",
            Verdict::of(lt <= 4.0),
        );
        let rss = |x: &Value| field(x, "rss_open");
        let (lr, rr) = (worst(&s.lib, &rss), worst(&s.raw, &rss));
        row(
            "6",
            format!("RSS (VmRSS), {accounts} accounts with open streams"),
            mib(lr),
            mib(rr),
            ratio(lr, rr),
            "< 64 MiB",
            Verdict::of(lr < 64.0 * 1024.0 * 1024.0),
        );
        let left = |x: &Value| field(x, "threads_after") - field(x, "threads_before");
        row(
            "6",
            "threads left after every stream and client is freed".into(),
            format!("{:.0}", worst(&s.lib, &left)),
            format!("{:.0}", worst(&s.raw, &left)),
            String::new(),
            "",
            Verdict::Info,
        );
        if let Some((stripped, full)) = s.so_size {
            row(
                "6",
                "libbinance_uds.so, stripped (unstripped)".into(),
                format!("{} ({})", mib(stripped as f64), mib(full as f64)),
                String::new(),
                String::new(),
                "",
                Verdict::Info,
            );
        }
    }
    if let Some(c) = c.filter(|c| !c.py.is_empty()) {
        let (raw, rw) = (median(&c.raw), median(&c.raw_wall));
        let p = median(&c.py);
        row(
            "7",
            format!(
                "Python `websockets`: cold start, in-process (median of {})",
                c.py.len()
            ),
            us(p),
            us(raw),
            ratio(p, raw),
            "",
            Verdict::Info,
        );
        let (pw, pi) = (median(&c.py_wall), median(&c.py_import));
        row(
            "7",
            format!("Python: cold, whole process (of which `import` {})", us(pi)),
            us(pw),
            us(rw),
            ratio(pw, rw),
            "",
            Verdict::Info,
        );
    }
    if let Some((w, py)) = w.and_then(|w| w.python.as_ref().map(|p| (w, p))) {
        let (r50, r99) = (median(&w.raw), pct(&w.raw, 99.0));
        for (name, r) in [("p50", r50), ("p99", r99)] {
            let v = py[name].as_f64().unwrap_or(f64::NAN);
            row(
                "7",
                format!("Python: warm ping {name} (n = {})", py["n"]),
                us(v),
                us(r),
                ratio(v, r),
                "",
                Verdict::Info,
            );
        }
    }
    rows
}

fn markdown(
    plan: &Plan,
    machine: &[(&str, String)],
    rows: &[Row],
    c: Option<&Cold>,
    s: Option<&Scale>,
    took: Duration,
) -> String {
    let mut md = String::new();
    md.push_str("# Benchmarks\n\n");
    md.push_str(
        "binance-uds against the raw floor of its own stack: tokio + tokio-tungstenite + \
         native-tls + serde_json used by hand, with none of the library's work (no session, \
         no id routing, no timeouts, no error mapping, no queue). Both talk to the local \
         exchange over loopback TLS on the same machine, which runs the exchange too. Every \
         figure and its baseline come from the same run, taken alternately (A, B, A, B, ...), \
         so the drift of a shared machine hits both alike: read the ratios first.\n\n",
    );
    md.push_str(&format!(
        "Produced by `scripts/bench.sh` (`cargo bench --bench uds`) in {:.0} s. \
         Everything above the *Profile* section is rewritten by each run.\n\n",
        took.as_secs_f64()
    ));
    md.push_str("## Machine\n\n");
    for (k, v) in machine {
        md.push_str(&format!("- {k}: {v}\n"));
    }
    md.push_str("\n## Results\n\n");
    md.push_str(
        "Times are medians unless a percentile is named; *ratio* is measured / baseline \
         (for times lower is better, for rates higher is better).\n\n",
    );
    md.push_str(&report::markdown_table(rows));
    let steps = |all: &[Vec<f64>]| -> Vec<String> {
        (0..4)
            .map(|i| report::us(median(&all.iter().map(|s| s[i]).collect::<Vec<_>>())))
            .collect()
    };
    let open = |v: &[Value]| {
        median(
            &v.iter()
                .filter_map(|x| x["open_ms"].as_f64())
                .collect::<Vec<_>>(),
        )
    };
    if let Some(c) = c {
        let (ls, rs) = (steps(&c.lib_steps), steps(&c.raw_steps));
        md.push_str(&format!(
            "\nRow 1, step by step (medians). Library: config with CA {}, client new (runtime, \
             TLS connector) {}, first start (TCP + TLS + upgrade + request) {}, client free {}. \
             Floor: runtime and TLS connector {}, TCP + TLS + upgrade {}, request {}, close {}.\n",
            ls[0], ls[1], ls[2], ls[3], rs[0], rs[1], rs[2], rs[3],
        ));
    }
    if let Some(s) = s {
        md.push_str(&format!(
            "\nRow 6: opening the {} streams took {:.0} ms (floor: {:.0} ms).\n",
            plan.scale_accounts,
            open(&s.lib),
            open(&s.raw),
        ));
    }
    md.push_str(&format!(
        "\n## How each row is measured\n\n\
1. **Cold.** {n} pairs of fresh processes (this benchmark re-run as `child cold-lib` / \
`child cold-raw`), alternating. Library: `binance_config_new`, `_set_api_key`, \
`_set_endpoint`, `_add_root_certificate_pem`, `binance_client_new`, \
`binance_config_free`, `binance_listen_key_start`, `binance_string_free`, \
`binance_client_free`. Floor: current-thread tokio runtime, native-tls connector with the \
CA (system roots + CA, TLS ≥ 1.2, as the library), TCP connect, TLS, WebSocket upgrade, \
`userDataStream.start`, answer parsed with `serde_json::from_str::<Value>`, close frame. \
Timed inside each process from before the first call to after the free/close (the CA file \
is read before); *whole process* is spawn to exit as the parent sees it.\n\
2. **Later clients.** In a third fresh process per pair (`child later`), after a first \
client has its key: 5 × (client new + start + free) while the first stays open (connector \
cached, runtime running); 5 × (control `drop` of the API connection, 30 ms for the client \
to notice, then time `binance_listen_key_keepalive`, which reconnects); after the first \
client is freed, 3 × (client new + start + free), where the shared runtime stops and starts \
again each time. Baseline: the floor's cold figure of row 1.\n\
3. **Warm.** One open connection each, in this process: {blocks} alternating blocks of \
{block} `binance_listen_key_keepalive` calls (key copied out and freed) and {block} raw \
calls (send, read the answer, parse, take the key) on a current-thread runtime with \
`block_on` per call.\n\
4. **Concurrent.** {threads} threads calling keepalive on one client vs one raw connection \
with a writer keeping {threads} requests in flight and a reader matching answers by id \
(both on one current-thread runtime), {rounds} alternating rounds of {secs:.1} s; calls \
completed in time / duration.\n\
5. **Events.** Two accounts, so each burst reaches one consumer: the library's stream \
(queue capacity {cap}) read with `binance_user_stream_next` (type, time and JSON read), and \
a raw stream connection read with tokio-tungstenite and parsed with \
`serde_json::from_str::<Value>`. Throughput: bursts of {burst} `emit`ted \
ORDER_TRADE_UPDATE events (about 700 bytes), alternating, (n − 1) / (last − first return). \
Latency: {paced} events per round, one every ~{gap} µs, {prounds} alternating rounds; each \
event carries the exchange's CLOCK_REALTIME at the moment its connection task hands the \
frame to the WebSocket writer (`{{send_ns}}`), subtracted from the consumer's clock when \
the event is in its hands.\n\
6. **Scale.** Fresh processes (`child scale-lib` / `child scale-raw`), {pairs} alternating \
pairs: {accounts} distinct API keys, each a client with an open user stream (library), or \
an API connection with its key and a stream connection, each with a reader task, on a \
two-worker runtime (floor). Threads from /proc/self/task before the first client and with \
all open (worst of the runs), VmRSS with all open. The .so is stripped from a copy.\n\
7. **Python.** `benches/python_ws.py` with the `websockets` asyncio client: cold in a fresh \
`python3` per pair of row 1 (timed from before the event loop and SSL context to after the \
close handshake), warm {pyn} pings on one connection, once in the middle of row 3.\n",
        n = plan.cold_pairs,
        blocks = plan.warm_blocks,
        block = plan.warm_block,
        threads = plan.conc_threads,
        rounds = plan.conc_rounds,
        secs = plan.conc_secs,
        cap = (plan.burst as u32 * 2).max(4096),
        burst = plan.burst,
        paced = plan.paced,
        gap = plan.paced_gap.as_micros(),
        prounds = plan.paced_rounds,
        pairs = plan.scale_pairs,
        accounts = plan.scale_accounts,
        pyn = plan.python_warm,
    ));
    md.push('\n');
    md.push_str(&profile_section());
    md
}

/// The hand-written "## Profile" section of the current BENCHMARKS.md.
fn profile_section() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("BENCHMARKS.md");
    let old = std::fs::read_to_string(path).unwrap_or_default();
    match old.find("\n## Profile") {
        Some(at) => old[at + 1..].to_string(),
        None => "## Profile\n\n(not written yet)\n".into(),
    }
}

// ---------------------------------------------------------------- profile

/// `profile <loop> [seconds]`: one loop alone, for a profiler.
///   warm-lib | warm-raw      keepalive on an open connection
///   conc-lib | conc-raw [N]  N (8) threads on one client | N pipelined
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
                raw::connect(&cx, &format!("{}/ws/{key}", ex.stream)).await
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
