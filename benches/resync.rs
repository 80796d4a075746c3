//! Healing a gap (issue 11): with account resync on, the time from a
//! dropped stream connection to the account snapshot delivered behind the
//! gap, and from the reconnect (the gap event) to the snapshot; beside it,
//! in the same run, alternating, an on-demand snapshot by itself
//! (`Client::account_snapshot`) as the floor. A benchmark: it prints, it
//! asserts nothing about time.
//!
//! Then many accounts through a mass drop (issue 17): N accounts with
//! resync, every stream connection dropped at once; accounts healed per
//! minute, requests refused, weight per snapshot, beside the bound the
//! request budget's share allows, in the same run. The local exchange's
//! minute is shortened (Binance's limit, 2400, per window) so that it runs
//! in seconds; figures per minute are per window scaled to Binance's.
//!
//!   cargo bench --bench resync            # 20 rounds, then 200 accounts
//!   BINANCE_UDS_ROUNDS=50 cargo bench --bench resync
//!   BINANCE_UDS_HEAL_ACCOUNTS=400 BINANCE_UDS_HEAL_WINDOW_MS=2000 cargo bench --bench resync

#[path = "../tests/common/mod.rs"]
#[allow(unused_imports)]
mod common;

use binance_uds::engine::Client;
use binance_uds::engine::UserStream;
use binance_uds::engine::{ACCOUNT_SNAPSHOT, STREAM_GAP};
use common::{heal, Exchange};
use serde_json::json;
use std::time::{Duration, Instant};

const API_KEY: &str = "BENCHRESYNCabcdef0123456789";
const SECRET: &str = "BENCHRESYNCsecret0123456789";

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(((v.len() as f64 - 1.0) * p) as usize)
        .copied()
        .unwrap_or(f64::NAN)
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return; // `cargo test --all-targets`: building is the test
    }
    let rounds: usize = std::env::var("BINANCE_UDS_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let ex = Exchange::start(&[
        "--account",
        &format!("{API_KEY}:{SECRET}"),
        "--api-weight-per-min",
        "0",
        "--stream-connects-per-5min",
        "0",
    ]);
    // Some account state worth fetching: a few open orders.
    ex.control(json!({"cmd": "deposit", "api_key": API_KEY, "asset": "USDT", "amount": "10000"}));
    for i in 0..10 {
        ex.control(
            json!({"cmd": "order_place", "api_key": API_KEY, "symbol": "BTCUSDT",
                          "side": "BUY", "quantity": "0.001", "price": (50000 + i).to_string()}),
        );
    }
    let mut cfg = common::config(&ex, API_KEY, 5000, 50);
    cfg.set_rest_endpoint(&ex.rest).unwrap();
    cfg.set_secret_key(SECRET).unwrap();
    cfg.set_account_resync(1).unwrap();
    let client = Client::new(&cfg).unwrap();
    let s = UserStream::open(&client, None).unwrap();
    let first = s.next(Duration::from_secs(10)).unwrap().expect("snapshot");
    assert_eq!(first.kind(), ACCOUNT_SNAPSHOT);

    let (mut drop_to_snap, mut gap_to_snap, mut on_demand) = (Vec::new(), Vec::new(), Vec::new());
    let mut redrops = 0;
    for _ in 0..rounds {
        // The floor: one snapshot on demand, nothing else going on.
        let t = Instant::now();
        client.account_snapshot().unwrap();
        on_demand.push(t.elapsed().as_secs_f64() * 1e3);

        let t0 = Instant::now();
        ex.control(json!({"cmd": "drop", "target": "stream"}));
        let mut t_gap = None;
        loop {
            let Some(ev) = s.next(Duration::from_secs(3)).unwrap() else {
                // Seen once in a while: the exchange acknowledged the drop
                // but the connection stayed up. Drop again, and say so.
                redrops += 1;
                ex.control(json!({"cmd": "drop", "target": "stream"}));
                continue;
            };
            if ev.kind() == STREAM_GAP {
                t_gap = Some(Instant::now());
            } else if ev.kind() == ACCOUNT_SNAPSHOT && t_gap.is_some() {
                let now = Instant::now();
                drop_to_snap.push((now - t0).as_secs_f64() * 1e3);
                gap_to_snap.push((now - t_gap.unwrap()).as_secs_f64() * 1e3);
                break;
            }
        }
    }
    println!("resync: {rounds} rounds, a stream with account resync, 10 open orders ({redrops} drop(s) repeated)");
    for (name, v) in [
        (
            "dropped connection -> snapshot delivered",
            &mut drop_to_snap,
        ),
        (
            "reconnect (gap event) -> snapshot delivered",
            &mut gap_to_snap,
        ),
        ("on-demand snapshot alone (floor)", &mut on_demand),
    ] {
        println!(
            "resync: {name:<46} p50 {:>7.2} ms  p99 {:>7.2} ms",
            pct(v, 0.5),
            pct(v, 0.99)
        );
    }
    drop(s);
    drop(client);
    drop(ex);
    mass_drop();
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Many accounts healing a mass drop within the request budget.
fn mass_drop() {
    let n: usize = env_or("BINANCE_UDS_HEAL_ACCOUNTS", 200);
    let window_ms: u64 = env_or("BINANCE_UDS_HEAL_WINDOW_MS", 1000);
    const LIMIT: u32 = 2400;
    const SHARE: u32 = 50;
    const PER_CONNECTION: u32 = 10;
    if n == 0 {
        return;
    }
    let ex = Exchange::start(&[
        "--api-weight-per-min",
        &LIMIT.to_string(),
        "--weight-window-ms",
        &window_ms.to_string(),
    ]);
    let run = heal::mass_drop(&ex, n, PER_CONNECTION, SHARE);
    let window = Duration::from_millis(window_ms);
    let allowed = heal::allowed(n, LIMIT, SHARE, window);
    // Weight the exchange charged for snapshots, per snapshot taken.
    let requests = &run.stats["requests"];
    let count = |path: &str| requests[format!("GET {path}")].as_u64().unwrap_or(0);
    let snapshots = count("/fapi/v3/account");
    let weight = count("/fapi/v1/time")
        + 5 * (count("/fapi/v3/account") + count("/fapi/v3/positionRisk"))
        + 40 * (count("/fapi/v1/openOrders") + count("/fapi/v1/openAlgoOrders"));
    let per_minute = |d: Duration| n as f64 / (d.as_secs_f64() / window.as_secs_f64());
    println!(
        "mass drop: {n} accounts with resync, {PER_CONNECTION} a stream connection, limit {LIMIT} per {window_ms} ms window (Binance's per minute, scaled), snapshot share {SHARE}%"
    );
    println!(
        "mass drop: opens failed {} of {n}; opening (every first snapshot) {:.2} s",
        run.open_failures,
        run.opening.as_secs_f64()
    );
    println!(
        "mass drop: {} stream connections dropped -> every account healed in {:.2} s; the share allows {:.2} s (ratio {:.2})",
        run.dropped,
        run.healed.as_secs_f64(),
        allowed.as_secs_f64(),
        run.healed.as_secs_f64() / allowed.as_secs_f64()
    );
    println!(
        "mass drop: accounts healed per Binance minute {:.1}; the share allows {:.1}",
        per_minute(run.healed),
        per_minute(allowed)
    );
    println!(
        "mass drop: refused: exchange 429s {}, budget refusals {}, 429/418 seen {}, failed snapshots {}",
        run.stats["rate_limited_total"],
        run.view.refused,
        run.view.rate_limited,
        run.failed_snapshots
    );
    println!(
        "mass drop: weight per snapshot {:.2} ({weight} weight for {snapshots} snapshots, the clock sync included)",
        weight as f64 / snapshots.max(1) as f64
    );
}
