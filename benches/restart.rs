//! Restarting many accounts from one thread (issue 20): a plain loop of
//! `Client::new` and `UserStream::open`, one account after another, with
//! the open waiting for the subscription's acknowledgement (the default)
//! and without (`open_waits` off: live at `binance.stream_subscribed`).
//! Prints, per mode: accounts, time until every open returned, time until
//! every stream was live, opens a second. Against the local exchange on
//! loopback, release build. A benchmark, not a test: asserts no timing.
//!
//!   cargo bench --bench restart
//!   BINANCE_UDS_ACCOUNTS=1000 BINANCE_UDS_WAITING=100 cargo bench --bench restart

use binance_uds_test_support as common;

use binance_uds::engine::{Client, Config, UserStream, STREAM_SUBSCRIBED};
use common::Exchange;
use std::time::{Duration, Instant};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn config(ex: &Exchange, round: usize, i: usize, wait: bool) -> Config {
    let mut c = Config::default();
    c.set_api_key(&format!(
        "BENCHrestart{round}x{i:05}abcdefghijklmnopqrstuvwxyz"
    ))
    .unwrap();
    c.set_endpoint(&ex.ws_api).unwrap();
    c.set_stream_endpoint(&ex.stream).unwrap();
    if let Some(pem) = &ex.ca_pem {
        c.add_root_certificate_pem(pem).unwrap();
    }
    c.set_open_waits_for_subscription(i32::from(wait)).unwrap();
    c
}

/// Opens `n` accounts one after another; (time until the last open
/// returned, time until every stream was live).
fn round(ex: &Exchange, round: usize, n: usize, wait: bool) -> (Duration, Duration) {
    let t0 = Instant::now();
    let streams: Vec<(Client, UserStream)> = (0..n)
        .map(|i| {
            let client = Client::new(&config(ex, round, i, wait)).expect("client");
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
    (opened, live)
}

fn main() {
    let n = env_usize("BINANCE_UDS_ACCOUNTS", 1000);
    let waiting = env_usize("BINANCE_UDS_WAITING", 100);
    let ex = Exchange::start(&[]);
    println!("Restart from one thread (Client::new + UserStream::open in a loop), local exchange:");
    let rounds = [(false, n), (true, waiting), (false, n)];
    for (r, &(wait, count)) in rounds.iter().enumerate() {
        let (opened, live) = round(&ex, r, count, wait);
        println!(
            "  {:32} {count:5} accounts: opens returned {:7.2} s, all live {:7.2} s ({:7.1} live a second)",
            if wait { "open waits for the subscription" } else { "open returns once it is sent" },
            opened.as_secs_f64(),
            live.as_secs_f64(),
            count as f64 / live.as_secs_f64(),
        );
    }
}
