//! A soak: one client under random faults for a while (60 s by default,
//! `BINANCE_UDS_SOAK_SECS` to change it, e.g. 3600), with four threads
//! calling keepalive in a loop, one user stream read by another thread, and
//! a controller emitting events and injecting faults at random intervals.
//!
//! What it proves: every call returns within its time bounds and every
//! thread finishes (no hang); no event is delivered twice or out of order
//! (E strictly increases); every event emitted and not delivered is covered
//! by a `binance.stream_gap` delivered where it was lost (between the last
//! event delivered before it and the first after it); memory and file
//! descriptors stay flat. Run with `--nocapture` to see the figures.

mod common;
use common::Rng;

use binance_uds::engine::UserStream;
use binance_uds::engine::{Client, Config, Status};
use binance_uds::engine::{LISTEN_KEY_RENEWED, STREAM_DISCONNECTED, STREAM_GAP};
use common::Exchange;
use serde_json::{json, Value};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const KEY: &str = "TESTKEYsoakABCDEF0123456789";
const CONNECT_MS: u64 = 2000;
const REQUEST_MS: u64 = 2000;
/// The type of the last event, emitted once the faults stop.
const END: &str = "SOAK_END";

/// A control connection kept open: thousands of emits would otherwise
/// leave thousands of sockets in TIME_WAIT.
struct Control(BufReader<TcpStream>);

impl Control {
    fn connect(addr: SocketAddr) -> Control {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        s.set_nodelay(true).unwrap();
        Control(BufReader::new(s))
    }

    fn send(&mut self, cmd: Value) -> Value {
        // One write per command: two small ones would wait on delayed ACKs.
        self.0
            .get_mut()
            .write_all(format!("{cmd}\n").as_bytes())
            .unwrap();
        let mut line = String::new();
        self.0.read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("control {cmd}: {line:?}: {e}"))
    }

    /// Emits one event of `kind`; its E, and whether a stream got it.
    fn emit(&mut self, kind: &str) -> (i64, bool) {
        let r = self.send(json!({"cmd": "emit", "api_key": KEY, "type": kind, "count": 1}));
        assert_eq!(r["ok"], true, "{r}");
        (
            r["first_E"].as_i64().unwrap(),
            r["delivered"].as_u64() > Some(0),
        )
    }
}

/// Tells the main thread a worker ended, however it ended (a panic is
/// then reported by `join`).
struct Done(mpsc::Sender<&'static str>, &'static str);

impl Drop for Done {
    fn drop(&mut self) {
        let _ = self.0.send(self.1);
    }
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// RSS samples taken through a soak, with the size of the soak's own
/// records of the events then (they grow with the run by design: every E
/// emitted, everything delivered, kept for the checks at the end).
#[derive(Default)]
struct RssSamples {
    /// (seconds since the start, RSS in KiB, records in KiB)
    samples: Vec<(f64, u64, u64)>,
    next: Duration,
}

impl RssSamples {
    /// About 120 samples over the run, at least a second apart;
    /// `records_bytes` is asked for only when one is due.
    fn take(&mut self, elapsed: Duration, run: Duration, records_bytes: impl FnOnce() -> usize) {
        if elapsed >= self.next {
            let records = (records_bytes() / 1024) as u64;
            (self.samples).push((elapsed.as_secs_f64(), rss_kib(), records));
            self.next = elapsed + (run / 120).max(Duration::from_secs(1));
        }
    }

    /// The least-squares slope over the second half of the run, in MiB an
    /// hour, of RSS and of the records (None with fewer than 3 samples).
    fn slopes_mib_per_hour(&self, run: Duration) -> Option<(f64, f64)> {
        let half = run.as_secs_f64() / 2.0;
        let late: Vec<&(f64, u64, u64)> = self.samples.iter().filter(|s| s.0 >= half).collect();
        if late.len() < 3 {
            return None;
        }
        let slope = |y: &dyn Fn(&(f64, u64, u64)) -> u64| {
            let n = late.len() as f64;
            let mt = late.iter().map(|s| s.0).sum::<f64>() / n;
            let my = late.iter().map(|s| y(s) as f64).sum::<f64>() / n;
            let cov: f64 = late.iter().map(|s| (s.0 - mt) * (y(s) as f64 - my)).sum();
            let var: f64 = late.iter().map(|s| (s.0 - mt).powi(2)).sum();
            cov / var * 3600.0 / 1024.0
        };
        Some((slope(&|s| s.1), slope(&|s| s.2)))
    }

    /// In a run of 20 minutes or more (`scripts/soak.sh`), RSS grows less
    /// than 10 MiB an hour over the second half, the soak's own records
    /// aside. (Issue 17's growing account book grew it by 60 to 200 MiB an
    /// hour; shorter runs are too noisy for a slope.)
    fn assert_flat(&self, run: Duration) {
        let Some((rss, own)) = self.slopes_mib_per_hour(run) else {
            return;
        };
        if run >= Duration::from_secs(20 * 60) {
            assert!(
                rss - own < 10.0,
                "RSS grew {rss:.2} MiB an hour over the second half ({own:.2} of it the soak's own records)"
            );
        }
    }

    /// The figures line (`scripts/soak.sh` shows it).
    fn report(&self, name: &str, run: Duration) -> String {
        let slope = self.slopes_mib_per_hour(run).map_or("n/a".into(), |(rss, own)| {
            format!("{rss:.2} MiB/hour, the soak's own records of the events {own:.2} MiB/hour of it")
        });
        let (first, last) = (self.samples.first(), self.samples.last());
        let (first, last) = (first.map_or(0, |s| s.1), last.map_or(0, |s| s.1));
        let records = self.samples.last().map_or(0, |s| s.2);
        format!(
            "{name}: RSS samples {}, {first} KiB at the start, {last} KiB at the end of the faults \
({records} KiB of it the soak's own records); slope over the second half {slope}",
            self.samples.len()
        )
    }
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

/// An event's type as the soaks record it: no allocation for the types they
/// expect, so that their record of every event adds little to the RSS they
/// measure.
fn kind_name(kind: &str) -> Cow<'static, str> {
    use binance_uds::engine::{ACCOUNT_SNAPSHOT, ACCOUNT_SNAPSHOT_FAILED};
    const KNOWN: [&str; 10] = [
        "ORDER_TRADE_UPDATE",
        "ACCOUNT_UPDATE",
        "ALGO_UPDATE",
        "listenKeyExpired",
        END,
        STREAM_GAP,
        STREAM_DISCONNECTED,
        LISTEN_KEY_RENEWED,
        ACCOUNT_SNAPSHOT,
        ACCOUNT_SNAPSHOT_FAILED,
    ];
    match KNOWN.iter().find(|k| **k == kind) {
        Some(k) => Cow::Borrowed(k),
        None => Cow::Owned(kind.to_owned()),
    }
}

/// What the reader saw, in delivery order.
enum Seen {
    Event { kind: Cow<'static, str>, time: i64 },
    Gap(String),
    Disconnected,
    Renewed,
}

fn soak_time() -> Duration {
    let secs = std::env::var("BINANCE_UDS_SOAK_SECS")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(60);
    Duration::from_secs(secs)
}

/// One random fault (`key`: the account whose listenKey may expire);
/// returns its name.
fn inject(ctl: &mut Control, rng: &mut Rng, spam_on: &mut bool, key: &str) -> &'static str {
    let fault = rng.below(13);
    let (name, cmd) = match fault {
        0 => ("drop api", json!({"cmd": "drop", "target": "api"})),
        1 => ("drop stream", json!({"cmd": "drop", "target": "stream"})),
        2 => {
            let code = [1000, 1001, 1011, 1012, 4000][rng.below(5)];
            let target = ["api", "stream", "all"][rng.below(3)];
            (
                "close",
                json!({"cmd": "close", "target": target, "code": code}),
            )
        }
        3 | 4 => {
            // Some shorter than the request timeout, some longer.
            let ms = 50 + rng.below(REQUEST_MS as usize + 1000);
            (
                "delay",
                json!({"cmd": "delay", "ms": ms, "count": 1 + rng.below(3)}),
            )
        }
        5 => (
            "duplicate",
            json!({"cmd": "duplicate", "count": 1 + rng.below(5)}),
        ),
        6 => {
            *spam_on = !*spam_on;
            let n = if *spam_on { 20 + rng.below(200) } else { 0 };
            ("spam", json!({"cmd": "spam", "count": n}))
        }
        7 => ("expire key", json!({"cmd": "expire", "api_key": key})),
        8 => (
            "ping flood",
            json!({"cmd": "ping_flood", "count": 100 + rng.below(900)}),
        ),
        9 => ("reset mid request", json!({"cmd": "reset_mid_request"})),
        10 => ("cut", json!({"cmd": "cut"})),
        11 => (
            "fail -1125",
            json!({"cmd": "fail", "status": 400, "code": -1125, "msg": "This listenKey does not exist."}),
        ),
        _ => (
            "fail 429",
            json!({"cmd": "fail", "status": 429, "code": -1003, "msg": "Too many requests.", "retry_after_ms": 200}),
        ),
    };
    // `expire` answers ok:false when the account has no key: that is fine.
    ctl.send(cmd);
    name
}

/// A seed from the clock, printed so that a failing run can be read back.
fn seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1
}

/// The exchange of a soak: pings every second. The calls come far above
/// Binance's 2400 request weight a minute: the soak is about faults, so
/// those limits are off (429s are among its faults anyway).
fn soak_exchange(extra: &[&str]) -> Exchange {
    let mut args = vec![
        "--ping-interval-ms",
        "1000",
        "--api-weight-per-min",
        "0",
        "--stream-connects-per-5min",
        "0",
    ];
    args.extend_from_slice(extra);
    Exchange::start(&args)
}

/// A soak client's config: short timeouts, fast backoff and keepalives.
fn soak_config(ex: &Exchange, key: &str) -> Config {
    let mut cfg = common::config(ex, key, REQUEST_MS as u32, 1000);
    cfg.set_timeouts_ms(CONNECT_MS as u32, REQUEST_MS as u32)
        .unwrap();
    cfg.set_keepalive_interval_ms(500).unwrap();
    cfg
}

/// Memory and file descriptors stayed flat between the warm-up and the end.
fn assert_flat((rss_start, fds_start): (u64, usize), (rss_end, fds_end): (u64, usize)) {
    assert!(
        rss_end < rss_start + 20 * 1024,
        "RSS grew from {rss_start} KiB to {rss_end} KiB"
    );
    assert!(
        fds_end <= fds_start + 5,
        "file descriptors grew from {fds_start} to {fds_end}"
    );
}

#[test]
fn soak_under_random_faults() {
    let duration = soak_time();
    let seed = seed();
    println!("soak: {duration:?}, seed {seed:#x}");
    let ex = soak_exchange(&[]);
    let cfg = soak_config(&ex, KEY);
    let client = Arc::new(Client::new(&cfg).unwrap());
    let stream = Arc::new(UserStream::open(&client, None).unwrap());

    let stop = Arc::new(AtomicBool::new(false));
    let (done_tx, done_rx) = mpsc::channel::<&'static str>();
    // The slowest call allowed: a call may connect (twice, if the first
    // connection dies before its frame is written) and then wait.
    let bound = Duration::from_millis(2 * CONNECT_MS + REQUEST_MS + 2000);

    // Four threads calling keepalive in a loop.
    let outcomes = Arc::new(Mutex::new(BTreeMap::<&'static str, u64>::new()));
    let slowest = Arc::new(Mutex::new(Duration::ZERO));
    let mut threads = Vec::new();
    for _ in 0..4 {
        let (c, stop, done) = (client.clone(), stop.clone(), done_tx.clone());
        let (outcomes, slowest) = (outcomes.clone(), slowest.clone());
        threads.push(std::thread::spawn(move || {
            let _done = Done(done, "keepalive");
            while !stop.load(Ordering::Relaxed) {
                let t0 = Instant::now();
                let r = c.listen_key_keepalive();
                let took = t0.elapsed();
                assert!(took <= bound, "a keepalive took {took:?}: {r:?}");
                {
                    let mut s = slowest.lock().unwrap();
                    *s = (*s).max(took);
                }
                let name = match r {
                    Ok(_) => Status::Ok.name(),
                    Err(e) => e.status.name(),
                };
                *outcomes.lock().unwrap().entry(name).or_default() += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
        }));
    }

    // The reader: everything the stream delivers, in order, until END.
    let seen = Arc::new(Mutex::new(Vec::<Seen>::new()));
    {
        let (s, seen, done) = (stream.clone(), seen.clone(), done_tx.clone());
        let deadline_after_stop = Duration::from_secs(30);
        let stop = stop.clone();
        threads.push(std::thread::spawn(move || {
            let _done = Done(done, "reader");
            let mut stopped_at = None;
            loop {
                if stop.load(Ordering::Relaxed) && stopped_at.is_none() {
                    stopped_at = Some(Instant::now());
                }
                if stopped_at.is_some_and(|t| t.elapsed() > deadline_after_stop) {
                    break; // END never came: the checks below say so
                }
                let Some(ev) = s.next(Duration::from_millis(200)).unwrap() else {
                    continue;
                };
                let item = match ev.kind() {
                    STREAM_GAP => Seen::Gap(ev.get("/reason").unwrap_or_default()),
                    STREAM_DISCONNECTED => Seen::Disconnected,
                    LISTEN_KEY_RENEWED => Seen::Renewed,
                    kind => Seen::Event {
                        kind: kind_name(kind),
                        time: ev.time_ms(),
                    },
                };
                let end = matches!(&item, Seen::Event { kind, .. } if kind == END);
                seen.lock().unwrap().push(item);
                if end {
                    break;
                }
            }
        }));
    }

    // The controller: events and faults at random intervals.
    let mut ctl = Control::connect(ex.control);
    let mut rng = Rng::new(seed);
    let mut emitted: Vec<i64> = Vec::new();
    let mut faults = BTreeMap::<&'static str, u64>::new();
    let mut spam_on = false;
    let t0 = Instant::now();
    let warm_up = (duration / 10).max(Duration::from_secs(3));
    let mut start_figures = None;
    let mut rss = RssSamples::default();
    while t0.elapsed() < duration {
        rss.take(t0.elapsed(), duration, || {
            emitted.len() * std::mem::size_of::<i64>()
                + seen.lock().unwrap().len() * std::mem::size_of::<Seen>()
        });
        for _ in 0..1 + rng.below(30) {
            emitted.push(ctl.emit("ORDER_TRADE_UPDATE").0);
        }
        let name = inject(&mut ctl, &mut rng, &mut spam_on, KEY);
        *faults.entry(name).or_default() += 1;
        // Right after a fault: these may be lost, and must then be covered.
        for _ in 0..rng.below(10) {
            emitted.push(ctl.emit("ORDER_TRADE_UPDATE").0);
        }
        std::thread::sleep(Duration::from_millis(10 + rng.below(200) as u64));
        if start_figures.is_none() && t0.elapsed() >= warm_up {
            start_figures = Some((rss_kib(), open_fds()));
        }
    }
    let (rss_start, fds_start) = start_figures.unwrap_or((rss_kib(), open_fds()));

    // Faults off; the keepalive threads stop; the stream must come back and
    // deliver the last event.
    ctl.send(json!({"cmd": "reset"}));
    stop.store(true, Ordering::Relaxed);
    let settle = Instant::now();
    let mut end_sent = 0;
    loop {
        assert!(
            settle.elapsed() < Duration::from_secs(20),
            "the stream did not recover after the faults stopped: {:?}",
            stream.health()
        );
        std::thread::sleep(Duration::from_millis(100));
        if !stream.health().connected {
            continue;
        }
        end_sent += 1;
        if ctl.emit(END).1 {
            break; // queued to a connection: it will be read
        }
    }
    drop(done_tx);
    let mut finished = Vec::new();
    while finished.len() < threads.len() {
        match done_rx.recv_timeout(bound + Duration::from_secs(30)) {
            Ok(name) => finished.push(name),
            Err(_) => panic!("a thread hangs: only {finished:?} finished"),
        }
    }
    for t in threads {
        t.join().unwrap();
    }
    // A call after the storm works.
    client.listen_key_keepalive().unwrap();
    // Sockets of the replaced connections close a moment after the storm.
    common::wait_for(
        "the storm's sockets to close",
        Duration::from_secs(10),
        || open_fds() <= fds_start + 5,
    );
    let (rss_end, fds_end) = (rss_kib(), open_fds());

    // The accounting.
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    let mut last: Option<i64> = None;
    let mut received = HashSet::new();
    let (mut gaps, mut disconnects, mut renewals, mut expired_events) = (0, 0, 0, 0);
    let mut gap_reasons = BTreeMap::<String, u64>::new();
    let mut end_seen = false;
    for item in &seen {
        match item {
            Seen::Event { kind, time } => {
                if let Some(l) = last {
                    assert!(*time > l, "E {time} after {l}: duplicated or out of order");
                }
                last = Some(*time);
                match kind.as_ref() {
                    "ORDER_TRADE_UPDATE" => {
                        received.insert(*time);
                    }
                    "listenKeyExpired" => expired_events += 1,
                    END => end_seen = true,
                    other => panic!("an event nobody emitted: {other}"),
                }
            }
            Seen::Gap(reason) => {
                gaps += 1;
                *gap_reasons.entry(reason.clone()).or_default() += 1;
            }
            Seen::Disconnected => disconnects += 1,
            Seen::Renewed => renewals += 1,
        }
    }
    assert!(end_seen, "the last event was not delivered");
    let emitted_set: HashSet<i64> = emitted.iter().copied().collect();
    assert!(
        received.is_subset(&emitted_set),
        "events delivered that were not emitted"
    );
    // Each missing event lies where a gap was reported: between the last
    // event delivered before it and the first delivered after it.
    let positions: Vec<(usize, i64)> = seen
        .iter()
        .enumerate()
        .filter_map(|(i, s)| match s {
            Seen::Event { time, .. } => Some((i, *time)),
            _ => None,
        })
        .collect();
    let gap_at: Vec<usize> = seen
        .iter()
        .enumerate()
        .filter_map(|(i, s)| matches!(s, Seen::Gap(_)).then_some(i))
        .collect();
    let mut missing = 0u64;
    for e in &emitted {
        if received.contains(e) {
            continue;
        }
        missing += 1;
        let before = positions
            .iter()
            .rev()
            .find(|(_, t)| t < e)
            .map_or(0, |(i, _)| *i);
        let after = positions
            .iter()
            .find(|(_, t)| t > e)
            .map_or(seen.len(), |(i, _)| *i);
        assert!(
            gap_at.iter().any(|g| *g > before && *g < after),
            "event E={e} was lost and no gap was reported where it was lost"
        );
    }
    let h = stream.health();
    let slowest = *slowest.lock().unwrap();
    let outcomes = outcomes.lock().unwrap().clone();
    println!(
        "soak: ran {:?} ({} faults: {faults:?})",
        duration,
        faults.values().sum::<u64>()
    );
    println!(
        "soak: keepalives {} by status {outcomes:?}, slowest {slowest:?} (bound {bound:?})",
        outcomes.values().sum::<u64>()
    );
    println!(
        "soak: events emitted {}, received {}, lost in gaps {missing}; {expired_events} listenKeyExpired; END sent {end_sent}x",
        emitted.len(),
        received.len()
    );
    println!(
        "soak: gaps {gaps} {gap_reasons:?}, disconnects {disconnects}, renewals {renewals}; health: reconnects {}, gaps {}, dropped {}",
        h.reconnects, h.gaps, h.events_dropped
    );
    println!(
        "soak: API connections {}, stream connections {}",
        ex.stats()["api_connections_total"],
        ex.stats()["stream_connections_total"]
    );
    println!("soak: RSS {rss_start} KiB -> {rss_end} KiB, fds {fds_start} -> {fds_end}");
    println!("{}", rss.report("soak", duration));
    assert!(
        outcomes.get("BINANCE_OK").copied().unwrap_or(0) > 0,
        "no keepalive succeeded"
    );
    assert!(received.len() as u64 + missing == emitted.len() as u64);
    assert!(missing == 0 || gaps > 0);
    assert_flat((rss_start, fds_start), (rss_end, fds_end));
    rss.assert_flat(duration);
    stream.close();
}

const RESYNC_KEY: &str = "TESTKEYsoakRESYNC0123456789";
const RESYNC_SECRET: &str = "soakRESYNCsecret0123456789abcdef";
/// Once the faults stop: the retry of a failed snapshot (the backoff's cap,
/// 30 s), then the snapshot itself (connect + 7 request timeouts).
const HEAL_WITHIN: Duration = Duration::from_secs(30 + 2 + 7 * 2 + 5);

/// Open orders (and open algo orders) the soak's account holds at most.
/// Unchecked, places outnumber fills and cancels and the book grows without
/// end (1328 open orders after 300 s): every snapshot, the exchange's and the
/// library's, and the control `snapshot` read after each trade grow with it,
/// and so does memory (issue 17: RSS 14 -> 48 MiB in 600 s). A soak tests a
/// steady state.
const OPEN_CAP: usize = 40;

/// The account changing: one random trade through the control port.
fn trade_once(
    ctl: &mut Control,
    rng: &mut Rng,
    orders: &mut Vec<u64>,
    algos: &mut Vec<u64>,
    refused: &mut u64,
) {
    let key = RESYNC_KEY;
    let symbol = ["BTCUSDT", "ETHUSDT"][rng.below(2)];
    let side = ["BUY", "SELL"][rng.below(2)];
    let pick = |v: &Vec<u64>, rng: &mut Rng| v[rng.below(v.len())];
    let r = match rng.below(10) {
        // At the cap, a fill or cancel instead of a new order.
        0..=2 if orders.len() >= OPEN_CAP => {
            let id = pick(orders, rng);
            let cmd = ["order_fill", "order_cancel"][rng.below(2)];
            ctl.send(json!({"cmd": cmd, "api_key": key, "order_id": id}))
        }
        8 if algos.len() >= OPEN_CAP => {
            let id = pick(algos, rng);
            ctl.send(json!({"cmd": "algo_cancel", "api_key": key, "algo_id": id}))
        }
        0..=2 => {
            let r = ctl.send(
                json!({"cmd": "order_place", "api_key": key, "symbol": symbol,
                "side": side, "quantity": "0.004", "price": (1000 + rng.below(1000)).to_string()}),
            );
            r["order_id"].as_u64().expect("an order id");
            r
        }
        3 | 4 if !orders.is_empty() => {
            let id = pick(orders, rng);
            let qty = ["0.001", "0.002"][rng.below(2)];
            ctl.send(json!({"cmd": "order_fill", "api_key": key, "order_id": id, "quantity": qty}))
        }
        5 if !orders.is_empty() => {
            let id = pick(orders, rng);
            ctl.send(json!({"cmd": "order_fill", "api_key": key, "order_id": id}))
        }
        6 if !orders.is_empty() => {
            let id = pick(orders, rng);
            ctl.send(json!({"cmd": "order_cancel", "api_key": key, "order_id": id}))
        }
        7 if !orders.is_empty() => {
            let id = pick(orders, rng);
            let price = (1000 + rng.below(1000)).to_string();
            ctl.send(json!({"cmd": "order_amend", "api_key": key, "order_id": id, "price": price}))
        }
        8 => {
            let r = ctl.send(json!({"cmd": "algo_place", "api_key": key, "symbol": symbol,
                "side": side, "quantity": "0.002", "trigger_price": (1000 + rng.below(1000)).to_string()}));
            r["algo_id"].as_u64().expect("an algo id");
            r
        }
        9 if !algos.is_empty() => {
            let id = pick(algos, rng);
            let cmd = ["algo_trigger", "algo_cancel"][rng.below(2)];
            ctl.send(json!({"cmd": cmd, "api_key": key, "algo_id": id}))
        }
        _ => ctl.send(json!({"cmd": "deposit", "api_key": key, "asset": "USDT", "amount": "10"})),
    };
    // A fill larger than what is left is refused: the exchange knows best.
    if r["ok"] == false {
        *refused += 1;
    }
    let open = ctl.send(json!({"cmd": "snapshot", "api_key": key}));
    let ids = |list: &Value, field: &str| -> Vec<u64> {
        let ids = list.as_array().unwrap().iter();
        ids.map(|o| o[field].as_u64().unwrap()).collect()
    };
    *orders = ids(&open["open_orders"], "orderId");
    *algos = ids(&open["open_algo_orders"], "algoId");
}

/// A fault on the snapshot's own path: the REST requests.
fn inject_rest(ctl: &mut Control, rng: &mut Rng) -> &'static str {
    let (name, cmd) = match rng.below(5) {
        0 => (
            "rest 429",
            json!({"cmd": "fail", "method": "REST", "status": 429, "code": -1003,
                   "msg": "Too many requests.", "retry_after_ms": 1000}),
        ),
        1 => (
            "rest 418",
            json!({"cmd": "fail", "method": "REST", "status": 418, "code": -1003,
                   "msg": "Way too many requests; IP banned.", "retry_after_ms": 1000}),
        ),
        2 => (
            "rest -1021",
            json!({"cmd": "fail", "method": "REST", "status": 400, "code": -1021,
                   "msg": "Timestamp for this request is outside of the recvWindow."}),
        ),
        3 => (
            "rest delay",
            json!({"cmd": "delay", "method": "REST", "ms": 50 + rng.below(REQUEST_MS as usize + 1000)}),
        ),
        _ => (
            "rest reset",
            json!({"cmd": "reset_mid_request", "method": "REST"}),
        ),
    };
    ctl.send(cmd);
    name
}

/// The soak with automatic resync: the account trades under the same random
/// faults (and faults on the REST requests the snapshots make), the reader
/// applies gaps, snapshots and events by the README's merge rule, and once
/// the faults stop the application holds exactly the exchange's state.
#[test]
fn resync_soak_under_random_faults() {
    use binance_uds::engine::{ACCOUNT_SNAPSHOT, ACCOUNT_SNAPSHOT_FAILED};
    use common::book::{truth, Book};

    let duration = soak_time();
    let seed = seed();
    println!("resync soak: {duration:?}, seed {seed:#x}");
    let ex = soak_exchange(&["--account", &format!("{RESYNC_KEY}:{RESYNC_SECRET}")]);
    let mut cfg = soak_config(&ex, RESYNC_KEY);
    cfg.set_secret_key(RESYNC_SECRET).unwrap();
    cfg.set_rest_endpoint(&ex.rest).unwrap();
    cfg.set_account_resync(1).unwrap();
    let client = Arc::new(Client::new(&cfg).unwrap());
    let stream = Arc::new(UserStream::open(&client, None).unwrap());

    // The reader: the application's book and what it was told, in order.
    let book = Arc::new(Mutex::new(Book::default()));
    let kinds = Arc::new(Mutex::new(Vec::<Cow<'static, str>>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (s, book, kinds, stop) = (stream.clone(), book.clone(), kinds.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let Some(ev) = s.next(Duration::from_millis(200)).unwrap() else {
                    continue;
                };
                let v: Value = serde_json::from_str(ev.json()).unwrap();
                let mut b = book.lock().unwrap();
                if ev.kind() == ACCOUNT_SNAPSHOT {
                    assert!(ev.is_library());
                    *b = Book::from_snapshot(&v);
                } else if !ev.is_library() {
                    b.apply(&v);
                }
                kinds.lock().unwrap().push(kind_name(ev.kind()));
            }
        })
    };

    // The application's own calls, which take their share of the faults
    // (without them every fault would wait for the stream's next request).
    let caller = {
        let (c, stop) = (client.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let _ = c.listen_key_keepalive();
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };

    let mut ctl = Control::connect(ex.control);
    ctl.send(json!({"cmd": "deposit", "api_key": RESYNC_KEY, "asset": "USDT", "amount": "100000"}));
    let mut rng = Rng::new(seed);
    let (mut orders, mut algos) = (Vec::new(), Vec::new());
    let mut faults = BTreeMap::<&'static str, u64>::new();
    let mut spam_on = false;
    let (mut trades, mut refused) = (0u64, 0u64);
    let t0 = Instant::now();
    let warm_up = (duration / 10).max(Duration::from_secs(3));
    let mut start_figures = None;
    let mut rss = RssSamples::default();
    while t0.elapsed() < duration {
        rss.take(t0.elapsed(), duration, || {
            kinds.lock().unwrap().len() * std::mem::size_of::<Cow<str>>()
        });
        for _ in 0..1 + rng.below(8) {
            trade_once(&mut ctl, &mut rng, &mut orders, &mut algos, &mut refused);
            trades += 1;
        }
        let name = if rng.below(4) == 0 {
            inject_rest(&mut ctl, &mut rng)
        } else {
            inject(&mut ctl, &mut rng, &mut spam_on, RESYNC_KEY)
        };
        *faults.entry(name).or_default() += 1;
        for _ in 0..rng.below(4) {
            trade_once(&mut ctl, &mut rng, &mut orders, &mut algos, &mut refused);
            trades += 1;
        }
        std::thread::sleep(Duration::from_millis(10 + rng.below(200) as u64));
        if start_figures.is_none() && t0.elapsed() >= warm_up {
            start_figures = Some((rss_kib(), open_fds()));
        }
    }
    let (rss_start, fds_start) = start_figures.unwrap_or((rss_kib(), open_fds()));

    // Faults off: the stream comes back, heals its last gap, and the
    // application's book is the exchange's.
    ctl.send(json!({"cmd": "reset"}));
    let want = truth(&ex, RESYNC_KEY);
    let settle = Instant::now();
    // (Locks in the reader's order: book, then kinds.)
    let healed = || {
        let book = book.lock().unwrap();
        let kinds = kinds.lock().unwrap();
        let last_gap = kinds.iter().rposition(|k| k == STREAM_GAP);
        book.state() == want
            && last_gap.is_none_or(|g| kinds[g..].iter().any(|k| k == ACCOUNT_SNAPSHOT))
    };
    while !healed() {
        assert!(
            settle.elapsed() < HEAL_WITHIN,
            "the book never healed after the faults stopped: {:?}\nbook  {}\ntruth {want}\nlast events {:?}",
            stream.health(),
            book.lock().unwrap().state(),
            kinds.lock().unwrap().iter().rev().take(12).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let healed_in = settle.elapsed();
    // Quiet for a moment: nothing later undoes it.
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    reader.join().unwrap();
    caller.join().unwrap();
    assert_eq!(book.lock().unwrap().state(), want, "undone after healing");
    common::wait_for(
        "the faults' sockets to close",
        Duration::from_secs(10),
        || open_fds() <= fds_start + 5,
    );
    let (rss_end, fds_end) = (rss_kib(), open_fds());

    let kinds = std::mem::take(&mut *kinds.lock().unwrap());
    let count = |k: &str| kinds.iter().filter(|x| *x == k).count();
    let (gaps, snapshots, failed) = (
        count(STREAM_GAP),
        count(ACCOUNT_SNAPSHOT),
        count(ACCOUNT_SNAPSHOT_FAILED),
    );
    let rest = ex.stats()["requests"]["GET /fapi/v1/openOrders"]
        .as_u64()
        .unwrap_or(0);
    println!(
        "resync soak: ran {duration:?}, {trades} trades ({refused} refused), {} faults: {faults:?}",
        faults.values().sum::<u64>()
    );
    println!(
        "resync soak: {} events, gaps {gaps}, snapshots {snapshots}, failed snapshots {failed}, openOrders requests {rest}; healed {healed_in:?} after the faults stopped",
        kinds.len()
    );
    println!(
        "resync soak: {} open orders and {} open algo orders at the end (new ones only below {OPEN_CAP})",
        orders.len(),
        algos.len()
    );
    println!("resync soak: RSS {rss_start} KiB -> {rss_end} KiB, fds {fds_start} -> {fds_end}");
    println!("{}", rss.report("resync soak", duration));
    // The faults start at once: the first snapshot may fail, and say so.
    assert!(
        [ACCOUNT_SNAPSHOT, ACCOUNT_SNAPSHOT_FAILED].contains(&kinds[0].as_ref()),
        "the first event is {}",
        kinds[0]
    );
    // Gaps that come while a snapshot is taken coalesce into the next one.
    assert!(
        snapshots <= gaps + 1,
        "more snapshots than gaps: {gaps} gaps, {snapshots} snapshots"
    );
    let last_gap = kinds.iter().rposition(|k| k == STREAM_GAP);
    assert!(
        last_gap.is_none_or(|g| kinds[g..].iter().any(|k| k == ACCOUNT_SNAPSHOT)),
        "the last gap is healed"
    );
    // One snapshot in flight: each openOrders request is one attempt, and
    // each attempt ends in a snapshot or a reported failure (or is the one
    // a fault cut short and the library sent again).
    assert!(
        rest as usize <= 2 * (snapshots + failed) + 1,
        "{rest} openOrders requests for {snapshots} snapshots and {failed} failures"
    );
    assert_flat((rss_start, fds_start), (rss_end, fds_end));
    rss.assert_flat(duration);
    stream.close();
}
