//! Many accounts with account resync through a mass drop (issue 17), for
//! tests/budget.rs (which asserts) and benches/resync.rs (which prints):
//! open every stream, wait for every opening snapshot, drop every stream
//! connection, wait until every stream has its snapshot behind the gap.

use super::http::now_ms;
use super::Exchange;
use binance_uds::engine::BudgetView as View;
use binance_uds::engine::{Client, Config, UserStream};
use binance_uds::engine::{ACCOUNT_SNAPSHOT, ACCOUNT_SNAPSHOT_FAILED, STREAM_GAP};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub fn key(i: usize) -> String {
    format!("BUDGETKEY{i:04}abcdef0123456789")
}

pub fn secret(i: usize) -> String {
    format!("BUDGETSECRET{i:04}qwerty0123456789")
}

/// Account `i`'s config: signed, with account resync, snapshots allowed
/// `share_percent` of the budget.
pub fn config(ex: &Exchange, i: usize, share_percent: u32) -> Config {
    let mut c = super::config(ex, &key(i), 5000, 1000);
    c.set_rest_endpoint(&ex.rest).unwrap();
    c.set_secret_key(&secret(i)).unwrap();
    c.set_account_resync(1).unwrap();
    c.set_snapshot_budget_percent(share_percent).unwrap();
    c
}

/// Registers accounts 0..n (API key and secret) on the exchange.
pub fn add_accounts(ex: &Exchange, n: usize) {
    for i in 0..n {
        ex.control(json!({"cmd": "account", "api_key": key(i), "secret": secret(i)}));
    }
}

/// Waits until `f` holds, up to `limit`.
pub fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "not within {limit:?}: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What each stream has seen.
#[derive(Default, Clone)]
struct Seen {
    snapshots: usize,
    failed: usize,
    gaps: usize,
    /// When the first snapshot after a gap arrived.
    healed_at: Option<Instant>,
}

/// Reads every stream's events on a few threads until `stop`.
fn readers(
    streams: Arc<Vec<UserStream>>,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicUsize>,
) -> Vec<std::thread::JoinHandle<()>> {
    const THREADS: usize = 4;
    (0..THREADS)
        .map(|t| {
            let (streams, seen, stop) = (streams.clone(), seen.clone(), stop.clone());
            std::thread::spawn(move || {
                while stop.load(Ordering::Relaxed) == 0 {
                    let mut any = false;
                    for i in (t..streams.len()).step_by(THREADS) {
                        while let Some(ev) = streams[i].next(Duration::ZERO).unwrap() {
                            any = true;
                            let mut all = seen.lock().unwrap();
                            let s = &mut all[i];
                            match ev.kind() {
                                ACCOUNT_SNAPSHOT => {
                                    s.snapshots += 1;
                                    if s.gaps > 0 && s.healed_at.is_none() {
                                        s.healed_at = Some(Instant::now());
                                    }
                                }
                                ACCOUNT_SNAPSHOT_FAILED => s.failed += 1,
                                STREAM_GAP => s.gaps += 1,
                                _ => {}
                            }
                        }
                    }
                    if !any {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
            })
        })
        .collect()
}

/// One run's figures.
pub struct MassDrop {
    /// Opens that failed (each stream is opened once).
    pub open_failures: usize,
    /// From the first open to every opening snapshot delivered.
    pub opening: Duration,
    /// From the drop to every stream's snapshot behind its gap.
    pub healed: Duration,
    /// Stream connections the drop closed.
    pub dropped: u64,
    /// `binance.account_snapshot_failed` events.
    pub failed_snapshots: usize,
    /// A stream reported its snapshot waiting, with a time to come.
    pub saw_waiting: bool,
    /// The exchange's stats after the run (`rate_limited_total`, requests).
    pub stats: Value,
    /// The budget the clients drew on, after the run.
    pub view: View,
}

/// Opens `n` accounts' streams (`per_connection` on a stream connection)
/// from 20 threads, waits for every opening snapshot, drops every stream
/// connection and waits until every stream healed.
pub fn mass_drop(ex: &Exchange, n: usize, per_connection: u32, share_percent: u32) -> MassDrop {
    add_accounts(ex, n);
    let clients: Vec<Client> = (0..n)
        .map(|i| {
            let mut c = config(ex, i, share_percent);
            c.set_stream_subscriptions_per_connection(per_connection)
                .unwrap();
            Client::new(&c).unwrap()
        })
        .collect();
    let clients = Arc::new(clients);
    let t_open = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(AtomicUsize::new(0));
    let opened: Arc<Mutex<Vec<Option<UserStream>>>> =
        Arc::new(Mutex::new((0..n).map(|_| None).collect()));
    let openers: Vec<_> = (0..20)
        .map(|_| {
            let (clients, next, opened, failures) = (
                clients.clone(),
                next.clone(),
                opened.clone(),
                failures.clone(),
            );
            std::thread::spawn(move || loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return;
                }
                match UserStream::open(&clients[i], None) {
                    Ok(s) => opened.lock().unwrap()[i] = Some(s),
                    Err(e) => {
                        eprintln!("account {i}: the open failed: {e:?}");
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for t in openers {
        t.join().unwrap();
    }
    let open_failures = failures.load(Ordering::Relaxed);
    let streams: Vec<UserStream> = std::mem::take(&mut *opened.lock().unwrap())
        .into_iter()
        .flatten()
        .collect();
    let streams = Arc::new(streams);
    let seen = Arc::new(Mutex::new(vec![Seen::default(); streams.len()]));
    let stop = Arc::new(AtomicUsize::new(0));
    let threads = readers(streams.clone(), seen.clone(), stop.clone());
    let all = |f: &dyn Fn(&Seen) -> bool| seen.lock().unwrap().iter().all(f);

    wait_for("every opening snapshot", Duration::from_secs(1800), || {
        all(&|s| s.snapshots >= 1)
    });
    let opening = t_open.elapsed();

    let dropped = ex.control(json!({"cmd": "drop", "target": "stream"}))["connections"]
        .as_u64()
        .unwrap_or(0);
    let t0 = Instant::now();
    let mut saw_waiting = false;
    wait_for("every stream healed", Duration::from_secs(1800), || {
        saw_waiting = saw_waiting
            || streams.iter().any(|s| {
                let h = s.health();
                h.snapshot_waiting && h.snapshot_eta_ms >= now_ms() - 1000
            });
        all(&|s| s.healed_at.is_some())
    });
    let healed = seen
        .lock()
        .unwrap()
        .iter()
        .filter_map(|s| s.healed_at)
        .max()
        .expect("healed")
        - t0;
    stop.store(1, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let failed_snapshots = seen.lock().unwrap().iter().map(|s| s.failed).sum();
    MassDrop {
        open_failures,
        opening,
        healed,
        dropped,
        failed_snapshots,
        saw_waiting,
        stats: ex.stats(),
        view: clients[0].budget().view(),
    }
}

/// How long `n` snapshots take at `share_percent` of `limit` per window
/// of `window`: a window's share holds this many whole snapshots.
pub fn allowed(n: usize, limit: u32, share_percent: u32, window: Duration) -> Duration {
    let share = limit * share_percent / 100;
    let per_window = (share / binance_uds::engine::SNAPSHOT_WEIGHT) as f64;
    window.mul_f64(n as f64 / per_window)
}
