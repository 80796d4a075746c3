//! Restarting many accounts from one thread (issue 20): a plain loop of
//! `Client::new` and `UserStream::open`, one account after another, with
//! the open waiting for the subscription's acknowledgement (the default)
//! and without (`open_waits` off: live at `binance.stream_subscribed`),
//! against the floor: the same subscriptions opened by hand on the stack
//! the library is built on (benches/uds/raw.rs).
//!
//! The floor is the fastest correct by-hand client: one WebSocket API
//! connection with the accounts' `userDataStream.start` requests pipelined
//! (all sent at once, answers matched by id), stream connections opened
//! meanwhile, each given its accounts' listenKeys (as many as the library
//! puts on a connection, 200) in one SUBSCRIBE as soon as they are all in,
//! done when every SUBSCRIBE is acknowledged. The library's rows are done
//! when every stream said `binance.stream_subscribed`, which it says on
//! that same acknowledgement: one condition for both sides.
//!
//! The rounds alternate (library, floor, library, floor, ...), each with
//! fresh accounts, on one local exchange with Binance's limits (its
//! defaults: request weight 2400 a minute per IP, 10 incoming messages a
//! second per stream connection, 1024 streams a connection, 300 stream
//! connections per 5 minutes per IP). A round starts in a weight window
//! with room for it: the bench waits for the next window when it would not
//! fit (the wait is not counted) and says so, and says if the exchange
//! refused anything. Prints per round the library's time, the floor's and
//! the ratio, then the medians. A benchmark, not a test: asserts no timing.
//!
//!   cargo bench --bench restart
//!   BINANCE_UDS_ACCOUNTS=1000 BINANCE_UDS_ROUNDS=3 BINANCE_UDS_WAITING=100 cargo bench --bench restart

use binance_uds_test_support as common;

#[path = "uds/raw.rs"]
#[allow(dead_code)] // the floor's other steps serve benches/uds.rs
mod raw;

use binance_uds::engine::{Client, Config, UserStream, STREAM_SUBSCRIBED};
use common::Exchange;
use futures_util::{future, SinkExt, StreamExt};
use serde_json::Value;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;

/// Accounts on one stream connection: the library's default
/// (`stream_subscriptions_per_connection`), used by the floor too.
const PER_CONNECTION: usize = 200;
/// The exchange's request-weight window and budget (Binance's: 2400 a minute).
const WINDOW_MS: u64 = 60_000;
const WEIGHT_PER_WINDOW: u64 = 2400;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A distinct API key per side, round and account: every round restarts
/// fresh accounts, so no round finds another's listenKeys or streams.
fn api_key(side: &str, round: usize, i: usize) -> String {
    format!("BENCHrestart{side}{round}x{i:05}abcdefghijklmnopqrstuvwxyz")
}

fn config(ex: &Exchange, key: &str, wait: bool) -> Config {
    let mut c = Config::default();
    c.set_api_key(key).unwrap();
    c.set_endpoint(&ex.ws_api).unwrap();
    c.set_stream_endpoint(&ex.stream).unwrap();
    if let Some(pem) = &ex.ca_pem {
        c.add_root_certificate_pem(pem).unwrap();
    }
    c.set_open_waits_for_subscription(i32::from(wait)).unwrap();
    c
}

/// The library: opens `n` accounts one after another; (time spent
/// building each account's config and in `Client::new`, time until the
/// last open returned, time until every stream was live).
fn library_round(
    ex: &Exchange,
    round: usize,
    n: usize,
    wait: bool,
) -> (Duration, Duration, Duration) {
    let side = if wait { "W" } else { "L" };
    let mut clients = Duration::ZERO;
    let t0 = Instant::now();
    let streams: Vec<(Client, UserStream)> = (0..n)
        .map(|i| {
            let t = Instant::now();
            let client = Client::new(&config(ex, &api_key(side, round, i), wait)).expect("client");
            clients += t.elapsed();
            let stream = UserStream::open(&client, None).expect("open");
            (client, stream)
        })
        .collect();
    let opened = t0.elapsed();
    if !wait {
        for (_, s) in &streams {
            loop {
                let ev = s.next(Duration::from_secs(30)).expect("next");
                let ev = ev.expect("binance.stream_subscribed within 30 s");
                if ev.kind() == STREAM_SUBSCRIBED {
                    break;
                }
            }
        }
    }
    let live = t0.elapsed();
    (clients, opened, live)
}

/// The listenKeys as their answers come, each connection's handed over as
/// soon as they are all in.
struct Handover {
    got: Vec<Option<String>>,
    handed: usize,
    to: std::vec::IntoIter<oneshot::Sender<Vec<String>>>,
}

impl Handover {
    fn take(&mut self, text: &str) {
        let v: Value = serde_json::from_str(text).expect("answer is JSON");
        let id = v["id"].as_u64().expect("answer has an id") as usize;
        self.got[id] = Some(raw::listen_key(text));
        let n = self.got.len();
        while self.handed * PER_CONNECTION < n {
            let range = self.handed * PER_CONNECTION..((self.handed + 1) * PER_CONNECTION).min(n);
            let Some(chunk) = self.got[range].iter().cloned().collect::<Option<Vec<_>>>() else {
                break;
            };
            let _ = self.to.next().expect("a connection").send(chunk);
            self.handed += 1;
        }
    }
}

/// The next text message of a split connection's read half.
async fn next_text(rx: &mut futures_util::stream::SplitStream<raw::Ws>) -> String {
    loop {
        match rx.next().await.expect("connection open").expect("read") {
            Message::Text(t) => return t.as_str().to_owned(),
            Message::Close(f) => panic!("the WebSocket API closed: {f:?}"),
            _ => {}
        }
    }
}

/// The floor: `keys.len()` accounts' subscriptions by hand (see the top of
/// the file), the starts `pipelined` or one after another (each waiting for
/// its answer, as a plain loop does). Returns the connections, to be closed
/// after the clock stops (the library's are closed after its clock stops
/// too).
async fn floor(
    cx: &tokio_native_tls::TlsConnector,
    ws_api: &str,
    stream_base: &str,
    keys: &[String],
    pipelined: bool,
) -> (raw::Ws, Vec<raw::Ws>) {
    let n = keys.len();
    let (handovers, chunks): (Vec<_>, Vec<_>) = (0..n.div_ceil(PER_CONNECTION))
        .map(|_| oneshot::channel::<Vec<String>>())
        .unzip();
    let request =
        |id: usize| Message::text(raw::request(id as u64, "userDataStream.start", &keys[id]));
    let listen_keys = async {
        let (mut tx, mut rx) = raw::connect(cx, ws_api).await.split();
        let mut handover = Handover {
            got: vec![None; n],
            handed: 0,
            to: handovers.into_iter(),
        };
        if pipelined {
            let send = async {
                for id in 0..n {
                    tx.feed(request(id)).await.expect("send");
                }
                tx.flush().await.expect("flush");
            };
            let read = async {
                for _ in 0..n {
                    handover.take(&next_text(&mut rx).await);
                }
            };
            future::join(send, read).await;
        } else {
            for id in 0..n {
                tx.send(request(id)).await.expect("send");
                handover.take(&next_text(&mut rx).await);
            }
        }
        tx.reunite(rx).expect("one connection")
    };
    let subscriptions = chunks.into_iter().enumerate().map(|(c, chunk)| async move {
        let mut ws = raw::connect(cx, &format!("{stream_base}/stream")).await;
        let keys = chunk.await.expect("the connection's listenKeys");
        raw::subscribe_keys(&mut ws, c as u64 + 1, &keys).await;
        ws
    });
    future::join(listen_keys, future::join_all(subscriptions)).await
}

/// What the exchange refused so far: 429s and 418s of the WebSocket API;
/// stream connections over the per-IP rate, and stream connections closed
/// for more than 10 messages a second or 1024 streams.
fn refusals(ex: &Exchange) -> (u64, u64) {
    let stats = ex.stats();
    let ips = stats["ips"].as_object().cloned().unwrap_or_default();
    let refused: u64 = ips
        .values()
        .map(|ip| ip["refused_429"].as_u64().unwrap_or(0) + ip["refused_418"].as_u64().unwrap_or(0))
        .sum();
    let count = |name: &str| stats[name].as_u64().unwrap_or(0);
    (
        refused,
        count("rate_limited_total") + count("stream_limit_closes"),
    )
}

/// Makes room for `weight` in the exchange's current weight window:
/// waits for the next window if it would not fit. Returns the wait.
fn room_for(ex: &Exchange, weight: u64) -> Duration {
    let stats = ex.stats();
    let used: u64 = (stats["weight_used"].as_object())
        .map(|m| m.values().filter_map(Value::as_u64).sum())
        .unwrap_or(0);
    if used + weight <= WEIGHT_PER_WINDOW {
        return Duration::ZERO;
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let now_ms = now.as_millis() as u64;
    // The exchange's windows start at multiples of a minute of its clock
    // (this machine's); a little past the start, for the rounding.
    let wait = Duration::from_millis((now_ms / WINDOW_MS + 1) * WINDOW_MS - now_ms + 50);
    std::thread::sleep(wait);
    wait
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this
    // without it: building is the test (tests/restart.rs opens the 1000
    // accounts), measuring needs an idle machine and, at Binance's limits,
    // minutes of weight windows.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let n = env_usize("BINANCE_UDS_ACCOUNTS", 1000);
    let rounds = env_usize("BINANCE_UDS_ROUNDS", 3).max(1);
    let waiting = env_usize("BINANCE_UDS_WAITING", 100);
    assert!(
        n.max(waiting) as u64 + 20 <= WEIGHT_PER_WINDOW,
        "a round must fit in one weight window ({WEIGHT_PER_WINDOW})"
    );
    // Binance's limits: the exchange's defaults.
    let ex = Exchange::start(&[]);
    let pem = ex.ca_pem.clone().expect("TLS exchange");
    // The floor's runtime and TLS connector are made once, outside the
    // clock, as the library makes its own once per process.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let cx = raw::connector(&pem);

    println!(
        "Restart from one thread, {n} accounts, {rounds} rounds (library, floor, floor with \
         sequential starts), local exchange with Binance's limits; done when every stream's \
         SUBSCRIBE is acknowledged.\n\
         library: Client::new + UserStream::open in a loop, the open returning once its \
         SUBSCRIBE is sent, live at binance.stream_subscribed.\n\
         floor: by hand on the raw stack, userDataStream.start pipelined on one WebSocket API \
         connection, {PER_CONNECTION} listenKeys per stream connection in one SUBSCRIBE \
         (one message per connection: within 10 a second, never paced).\n\
         floor seq: the same with each start waiting for its answer (a plain loop by hand)."
    );
    // A round's request weight: a start per account, and a few WebSocket
    // API handshakes (5 each).
    let weight = n as u64 + 20;
    let (mut lib, mut flo, mut seq) = (Vec::new(), Vec::new(), Vec::new());
    let (mut ratio, mut ratio_seq) = (Vec::new(), Vec::new());
    for r in 0..rounds {
        let before = refusals(&ex);
        let mut waited = room_for(&ex, weight);
        let (clients, opened, live) = library_round(&ex, r, n, false);
        let mut by_hand = |side: &str, pipelined: bool| {
            waited += room_for(&ex, weight);
            let keys: Vec<String> = (0..n).map(|i| api_key(side, r, i)).collect();
            let t0 = Instant::now();
            let conns = rt.block_on(floor(&cx, &ex.ws_api, &ex.stream, &keys, pipelined));
            let live = t0.elapsed();
            drop(conns);
            live.as_secs_f64()
        };
        let f = by_hand("F", true);
        let q = by_hand("Q", false);
        let after = refusals(&ex);
        let l = live.as_secs_f64();
        println!(
            "  round {}: library {l:6.3} s (opens returned {:6.3} s, config + Client::new {:5.3} s of it; \
             {:4.0} live a second), \
             floor {f:6.3} s, floor seq {q:6.3} s; library/floor {:6.2}x, library/floor seq {:5.2}x{}{}",
            r + 1,
            opened.as_secs_f64(),
            clients.as_secs_f64(),
            n as f64 / l,
            l / f,
            l / q,
            match waited {
                Duration::ZERO => String::new(),
                w => format!(
                    " (waited {:.1} s for the next weight window, not counted)",
                    w.as_secs_f64()
                ),
            },
            if after == before {
                String::new()
            } else {
                format!(
                    " (REFUSED by the exchange: {} requests over the weight, {} stream connections)",
                    after.0 - before.0,
                    after.1 - before.1
                )
            },
        );
        lib.push(l);
        flo.push(f);
        seq.push(q);
        ratio.push(l / f);
        ratio_seq.push(l / q);
    }
    println!(
        "  median of {rounds}: library {:.3} s, floor {:.3} s, floor seq {:.3} s; \
         library/floor {:.2}x, library/floor seq {:.2}x (targets: <= 2 s, <= 3x the floor)",
        median(&mut lib),
        median(&mut flo),
        median(&mut seq),
        median(&mut ratio),
        median(&mut ratio_seq)
    );

    if waiting > 0 {
        room_for(&ex, waiting as u64 + 20);
        let (_, opened, live) = library_round(&ex, 0, waiting, true);
        println!(
            "  open waits for the subscription (the default), {waiting} accounts: \
             opens returned {:.2} s, all live {:.2} s ({:.1} live a second)",
            opened.as_secs_f64(),
            live.as_secs_f64(),
            waiting as f64 / live.as_secs_f64(),
        );
    }
}
