//! A thousand accounts in one process (issue 12): each with its own client
//! and user stream, against the local exchange, with connection sharing on
//! and off, alternating, in one run. Prints, per mode: TLS connections in
//! all, the library's background threads, RSS, time to open every stream,
//! events per second across all accounts and event latency under that
//! load. A benchmark, not a test: it asserts nothing about time.
//!
//!   cargo bench --bench accounts               # 1000 accounts, 2 rounds
//!   BINANCE_UDS_ACCOUNTS=200 BINANCE_UDS_ROUNDS=1 cargo bench --bench accounts

use binance_uds_test_support as common;

use binance_uds::engine::UserStream;
use binance_uds::engine::{Client, Config};
use common::Exchange;
use serde_json::json;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Streams opened at once while setting up (a program opening its
/// accounts from a pool of threads; BINANCE_UDS_OPENERS changes it).
const OPENERS: usize = 32;
/// Threads reading the streams, each polling its share.
const READERS: usize = 4;
/// Events emitted to every account in the throughput round.
const EVENTS_PER_ACCOUNT: u64 = 20;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn api_key(i: usize) -> String {
    format!("BENCHacct{i:05}abcdefghijklmnopqrstuvwxyz0123456789")
}

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count())
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

struct Figures {
    connections: u64,
    threads: usize,
    rss_mib: f64,
    rss_total_mib: f64,
    open_s: f64,
    events_per_s: f64,
    p50_us: f64,
    p99_us: f64,
    misrouted: u64,
}

/// Opens `n` accounts' streams from `openers` threads; stops at the first
/// refusal. Returns the opened ones, the time, and the first error.
#[allow(clippy::type_complexity)]
fn open_all(
    ex: &Exchange,
    n: usize,
    sharing: bool,
    openers: usize,
) -> (Vec<(usize, Client, UserStream)>, f64, Option<String>) {
    let t0 = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let failed: Arc<Mutex<Option<String>>> = Arc::default();
    let opened: Arc<Mutex<Vec<(usize, Client, UserStream)>>> = Arc::default();
    let threads: Vec<_> = (0..openers)
        .map(|_| {
            let (next, opened, failed) = (next.clone(), opened.clone(), failed.clone());
            let (ws_api, stream, ca) = (ex.ws_api.clone(), ex.stream.clone(), ex.ca_pem.clone());
            std::thread::spawn(move || loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                if i >= n || failed.lock().unwrap().is_some() {
                    return;
                }
                let mut cfg = Config::default();
                cfg.set_api_key(&api_key(i)).unwrap();
                cfg.set_endpoint(&ws_api).unwrap();
                cfg.set_stream_endpoint(&stream).unwrap();
                cfg.add_root_certificate_pem(ca.as_deref().unwrap())
                    .unwrap();
                cfg.set_timeouts_ms(30_000, 30_000).unwrap();
                cfg.set_connection_sharing(i32::from(sharing)).unwrap();
                let client = Client::new(&cfg).unwrap();
                match UserStream::open(&client, None) {
                    Ok(s) => opened.lock().unwrap().push((i, client, s)),
                    Err(e) => {
                        failed.lock().unwrap().get_or_insert(format!(
                            "{}: {}",
                            e.status.name(),
                            e.message
                        ));
                        return;
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let secs = t0.elapsed().as_secs_f64();
    let mut accounts = std::mem::take(&mut *opened.lock().unwrap());
    accounts.sort_by_key(|a| a.0);
    let failed = failed.lock().unwrap().take();
    (accounts, secs, failed)
}

fn round(ex: &Exchange, n: usize, sharing: bool, openers: usize) -> Figures {
    let threads_before = threads();
    let rss_before = rss_kib();
    let (accounts, open_s, failed) = open_all(ex, n, sharing, openers);
    assert!(failed.is_none(), "opening failed: {failed:?}");
    let stats = ex.stats();
    let connections = stats["api_connections_open"].as_u64().unwrap_or(0)
        + stats["stream_connections_open"].as_u64().unwrap_or(0);
    let library_threads = threads().saturating_sub(threads_before);
    let rss_mib = (rss_kib().saturating_sub(rss_before)) as f64 / 1024.0;
    let rss_total_mib = rss_kib() as f64 / 1024.0;

    // Every account's events, emitted at once to all, read by a few
    // threads polling their share of the streams.
    let accounts = Arc::new(accounts);
    let want = EVENTS_PER_ACCOUNT * n as u64;
    let got = Arc::new(AtomicU64::new(0));
    let misrouted = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let latencies: Arc<Mutex<Vec<u64>>> = Arc::default();
    let readers: Vec<_> = (0..READERS)
        .map(|r| {
            let (accounts, got, misrouted, done, latencies) = (
                accounts.clone(),
                got.clone(),
                misrouted.clone(),
                done.clone(),
                latencies.clone(),
            );
            std::thread::spawn(move || {
                let mut mine = Vec::new();
                while !done.load(Ordering::Relaxed) {
                    let mut any = false;
                    for (i, _, s) in accounts.iter().skip(r).step_by(READERS) {
                        while let Ok(Some(ev)) = s.next(Duration::ZERO) {
                            any = true;
                            let t = now_ns();
                            if ev.get("/acct").as_deref() != Some(i.to_string().as_str()) {
                                misrouted.fetch_add(1, Ordering::Relaxed);
                            }
                            if let Some(sent) = ev.get("/sent").and_then(|v| v.parse::<u64>().ok())
                            {
                                mine.push(t.saturating_sub(sent) / 1000);
                            }
                            got.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    if !any {
                        std::thread::yield_now();
                    }
                }
                latencies.lock().unwrap().extend(mine);
            })
        })
        .collect();
    let t1 = Instant::now();
    let emitters: Vec<_> = (0..4)
        .map(|e| {
            let control = ex.control;
            std::thread::spawn(move || {
                for i in (e..n).step_by(4) {
                    let raw = format!(r#"{{"e":"ORDER_TRADE_UPDATE","E":{{E}},"acct":{i},"sent":{{send_ns}}}}"#);
                    common::control_at(
                        control,
                        json!({"cmd": "emit", "api_key": api_key(i), "raw": raw, "count": EVENTS_PER_ACCOUNT}),
                    );
                }
            })
        })
        .collect();
    for e in emitters {
        e.join().unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while got.load(Ordering::Relaxed) < want && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let elapsed = t1.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    for r in readers {
        r.join().unwrap();
    }
    let received = got.load(Ordering::Relaxed);
    assert_eq!(received, want, "every event reaches its stream");
    let mut lat = std::mem::take(&mut *latencies.lock().unwrap());
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or(0) as f64
    };
    let figures = Figures {
        connections,
        threads: library_threads,
        rss_mib,
        rss_total_mib,
        open_s,
        events_per_s: received as f64 / elapsed,
        p50_us: pct(0.50),
        p99_us: pct(0.99),
        misrouted: misrouted.load(Ordering::Relaxed),
    };
    drop(accounts);
    // Let the exchange see every connection of this round closed.
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let s = ex.stats();
        if s["api_connections_open"] == 0 && s["stream_connections_open"] == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    figures
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this
    // without it: building is the test, measuring needs an idle machine.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let n = env_usize("BINANCE_UDS_ACCOUNTS", 1000);
    let rounds = env_usize("BINANCE_UDS_ROUNDS", 2);
    let openers = env_usize("BINANCE_UDS_OPENERS", OPENERS);
    // Under Binance's own limits first (the local exchange enforces them
    // by default: request weight 2400 a minute per IP, a WebSocket
    // handshake costing 5, 300 stream connections per 5 minutes per IP).
    {
        let limited = Exchange::start(&[]);
        for sharing in [true, false] {
            let (accounts, secs, failed) = open_all(&limited, n, sharing, openers);
            println!(
                "accounts: under Binance's limits, sharing {:<3}: {} of {n} opened in {secs:.2} s{}",
                if sharing { "on" } else { "off" },
                accounts.len(),
                failed.map_or(String::new(), |e| format!(
                    ", then refused: {}",
                    e.chars().take(120).collect::<String>()
                ))
            );
            drop(accounts);
            std::thread::sleep(Duration::from_secs(1));
        }
    }
    // Then with the limits lifted, so that both modes open everything and
    // can be compared on the rest.
    let ex = Exchange::start(&[
        "--api-weight-per-min",
        "0",
        "--stream-connects-per-5min",
        "0",
    ]);
    println!("accounts: {n} accounts, limits lifted, {rounds} round(s) per mode, alternating; {openers} opener threads, {READERS} reader threads");
    let mut all: Vec<(bool, Figures)> = Vec::new();
    for r in 0..rounds * 2 {
        let sharing = r % 2 == 0;
        let f = round(&ex, n, sharing, openers);
        println!(
            "accounts: sharing {:<3} connections {:>5}  threads {:>2}  RSS {:>6.1} MiB (+{:>5.1})  open all {:>6.2} s  events/s {:>9.0}  latency p50 {:>7.0} µs p99 {:>8.0} µs  misrouted {}",
            if sharing { "on" } else { "off" },
            f.connections, f.threads, f.rss_total_mib, f.rss_mib, f.open_s, f.events_per_s, f.p50_us, f.p99_us, f.misrouted
        );
        all.push((sharing, f));
    }
    let best = |sharing: bool, key: &dyn Fn(&Figures) -> f64| {
        all.iter()
            .filter(|(s, _)| *s == sharing)
            .map(|(_, f)| key(f))
            .fold(f64::NAN, f64::min)
    };
    let open_ratio = best(true, &|f| f.open_s) / best(false, &|f| f.open_s);
    println!("accounts: open all, shared / unshared (best of each): {open_ratio:.2}");
}
