//! The account snapshot against the local exchange: its signed REST
//! endpoints verify both key types as Binance documents them, and what the
//! library returns equals the exchange's own account state.

mod common;

use binance_uds::engine::UserStream;
use binance_uds::engine::STREAM_GAP;
use binance_uds::engine::{Client, Config, Status};
use common::book::{truth, Book};
use common::Exchange;
use serde_json::{json, Value};
use std::time::Duration;

const API_KEY: &str = "ACCTKEYabcdef0123456789";
const SECRET: &str = "ACCTSECRETqwerty0123456789";

fn config(ex: &Exchange) -> Config {
    let mut c = common::config(ex, API_KEY, 5000, 200);
    c.set_rest_endpoint(&ex.rest).unwrap();
    c
}

fn hmac_config(ex: &Exchange) -> Config {
    let mut c = config(ex);
    c.set_secret_key(SECRET).unwrap();
    c
}

/// Some account activity: a deposit, two orders (one partly filled, one
/// filled), a cancelled one, an algo order.
fn trade(ex: &Exchange) {
    let k = API_KEY;
    ex.control(json!({"cmd": "deposit", "api_key": k, "asset": "USDT", "amount": "1000"}));
    let a = ex.control(
        json!({"cmd": "order_place", "api_key": k, "symbol": "BTCUSDT", "side": "BUY",
                               "quantity": "0.010", "price": "60000"}),
    )["order_id"]
        .clone();
    let b = ex.control(
        json!({"cmd": "order_place", "api_key": k, "symbol": "BTCUSDT", "side": "BUY",
                               "quantity": "0.002", "price": "59000"}),
    )["order_id"]
        .clone();
    let c = ex.control(
        json!({"cmd": "order_place", "api_key": k, "symbol": "ETHUSDT", "side": "SELL",
                               "quantity": "0.5", "price": "3000"}),
    )["order_id"]
        .clone();
    ex.control(json!({"cmd": "order_fill", "api_key": k, "order_id": a, "quantity": "0.004"}));
    ex.control(json!({"cmd": "order_fill", "api_key": k, "order_id": b}));
    ex.control(json!({"cmd": "order_cancel", "api_key": k, "order_id": c}));
    ex.control(
        json!({"cmd": "algo_place", "api_key": k, "symbol": "BTCUSDT", "side": "SELL",
                      "type": "STOP_MARKET", "quantity": "0.006", "trigger_price": "55000"}),
    );
}

/// The library's snapshot equals the exchange's own view, part by part.
fn assert_matches_exchange(ex: &Exchange, doc: &Value) {
    let truth = ex.control(json!({"cmd": "snapshot", "api_key": API_KEY}));
    assert_eq!(doc["e"], "binance.account_snapshot");
    assert_eq!(doc["balances"], truth["account"]["assets"], "balances");
    assert_eq!(doc["positions"], truth["positions"], "positions");
    assert_eq!(doc["open_orders"], truth["open_orders"], "open orders");
    assert_eq!(
        doc["open_algo_orders"], truth["open_algo_orders"],
        "algo orders"
    );
    assert_eq!(
        doc["account"]["totalWalletBalance"],
        truth["account"]["totalWalletBalance"]
    );
    let server_time = doc["server_time_ms"].as_i64().unwrap();
    assert!(
        server_time > 0 && server_time <= doc["E"].as_i64().unwrap(),
        "{doc}"
    );
}

#[test]
fn hmac_snapshot_equals_the_exchanges_state() {
    let ex = Exchange::start(&["--account", &format!("{API_KEY}:{SECRET}")]);
    let client = Client::new(&hmac_config(&ex)).unwrap();
    // An empty account first.
    let empty: Value = serde_json::from_str(&client.account_snapshot().unwrap()).unwrap();
    assert_eq!(empty["open_orders"], json!([]));
    trade(&ex);
    let doc: Value = serde_json::from_str(&client.account_snapshot().unwrap()).unwrap();
    assert_eq!(doc["open_orders"].as_array().unwrap().len(), 1, "{doc}");
    assert_eq!(
        doc["open_algo_orders"].as_array().unwrap().len(),
        1,
        "{doc}"
    );
    assert_matches_exchange(&ex, &doc);
}

#[test]
fn ed25519_snapshot_equals_the_exchanges_state() {
    let ex = Exchange::start(&[]);
    let (pem, _) = common::cert::ed25519_key();
    // The exchange is told the key by control command (public half used).
    ex.control(json!({"cmd": "account", "api_key": API_KEY, "ed25519_pem": pem}));
    trade(&ex);
    let mut cfg = config(&ex);
    cfg.set_private_key_pem(&pem).unwrap();
    let doc: Value =
        serde_json::from_str(&Client::new(&cfg).unwrap().account_snapshot().unwrap()).unwrap();
    assert_matches_exchange(&ex, &doc);
}

#[test]
fn the_exchange_refuses_a_key_it_does_not_know_and_a_wrong_secret() {
    let ex = Exchange::start(&["--account", &format!("{API_KEY}:{SECRET}")]);
    let mut cfg = config(&ex);
    cfg.set_secret_key("ACCTSECRETbut-not-this-one").unwrap();
    let e = Client::new(&cfg).unwrap().account_snapshot().unwrap_err();
    assert_eq!(
        (e.status, e.api_code, e.http_status),
        (Status::ApiError, -1022, 400),
        "{e:?}"
    );
    assert!(!e.message.contains("ACCTSECRET"), "{}", e.message);

    let mut cfg = common::config(&ex, "UNKNOWNKEY0123456789", 5000, 200);
    cfg.set_rest_endpoint(&ex.rest).unwrap();
    cfg.set_secret_key(SECRET).unwrap();
    let e = Client::new(&cfg).unwrap().account_snapshot().unwrap_err();
    assert_eq!(
        (e.status, e.api_code, e.http_status),
        (Status::ApiError, -2015, 401),
        "{e:?}"
    );
}

#[test]
fn the_exchanges_weight_limit_is_honoured() {
    // 100 per minute: one snapshot (91) fits, the second does not.
    let ex = Exchange::start(&[
        "--account",
        &format!("{API_KEY}:{SECRET}"),
        "--api-weight-per-min",
        "100",
        // An hour's window: no window ends between the two snapshots.
        "--weight-window-ms",
        "3600000",
    ]);
    let client = Client::new(&hmac_config(&ex)).unwrap();
    client.account_snapshot().unwrap();
    let e = client.account_snapshot().unwrap_err();
    assert_eq!(e.status, Status::RateLimited, "{e:?}");
    assert_eq!(e.http_status, 429, "{e:?}");
    assert!(e.retry_after_ms > 0, "{e:?}");
    // Refused from now on without asking the exchange again.
    let limited = ex.stats()["rate_limited_total"].clone();
    let again = client.account_snapshot().unwrap_err();
    assert_eq!(again.status, Status::RateLimited);
    assert_eq!(ex.stats()["rate_limited_total"], limited);
}

/// Every event the stream delivers until it has been quiet a while, with
/// the `binance.stream_gap` events among them.
fn drain(s: &UserStream) -> Vec<Value> {
    let mut got = Vec::new();
    while let Some(ev) = s.next(Duration::from_millis(300)).unwrap() {
        got.push(serde_json::from_str(ev.json()).unwrap());
    }
    got
}

/// Waits for the stream's next `binance.stream_gap`, applying the events
/// before it.
fn until_gap(s: &UserStream, book: &mut Book) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        if let Some(ev) = s.next(Duration::from_millis(100)).unwrap() {
            if ev.kind() == STREAM_GAP {
                return;
            }
            book.apply(&serde_json::from_str(ev.json()).unwrap());
        }
    }
    panic!("no binance.stream_gap after the stream was dropped");
}

/// A gap healed by the on-demand snapshot, as an application does it with
/// the library's own stream: events are lost while the stream is away, the
/// account keeps changing while the snapshot is taken, and applying the
/// snapshot, then the events by the merge rule, gives exactly the
/// exchange's state.
#[test]
fn snapshot_then_events_by_the_merge_rule_equals_the_exchange() {
    let ex = Exchange::start(&["--account", &format!("{API_KEY}:{SECRET}")]);
    let client = Client::new(&hmac_config(&ex)).unwrap();

    // The application starts: stream first, then the snapshot.
    let stream = UserStream::open(&client, None).unwrap();
    let mut book =
        Book::from_snapshot(&serde_json::from_str(&client.account_snapshot().unwrap()).unwrap());
    trade(&ex);
    for ev in drain(&stream) {
        book.apply(&ev);
    }
    assert_eq!(book.state(), truth(&ex, API_KEY), "before the gap");

    // The gap: the stream connection drops, the account changes meanwhile.
    ex.control(json!({"cmd": "drop", "target": "stream"}));
    let open: Vec<Value> = ex.control(json!({"cmd": "snapshot", "api_key": API_KEY}))
        ["open_orders"]
        .as_array()
        .unwrap()
        .clone();
    for o in &open {
        ex.control(json!({"cmd": "order_fill", "api_key": API_KEY, "order_id": o["orderId"], "quantity": "0.001"}));
    }
    ex.control(
        json!({"cmd": "order_place", "api_key": API_KEY, "symbol": "ETHUSDT", "side": "BUY",
                      "quantity": "1", "price": "2000"}),
    );
    until_gap(&stream, &mut book);

    // Healing: the snapshot, taken while trading goes on.
    let trader = {
        let control = ex.control;
        std::thread::spawn(move || {
            for i in 0..20 {
                let placed = common::control_at(
                    control,
                    json!({"cmd": "order_place", "api_key": API_KEY,
                    "symbol": "BTCUSDT", "side": "SELL", "quantity": "0.002", "price": format!("{}", 61000 + i)}),
                );
                let id = placed["order_id"].clone();
                match i % 3 {
                    0 => common::control_at(
                        control,
                        json!({"cmd": "order_fill", "api_key": API_KEY, "order_id": id}),
                    ),
                    1 => common::control_at(
                        control,
                        json!({"cmd": "order_cancel", "api_key": API_KEY, "order_id": id}),
                    ),
                    _ => common::control_at(
                        control,
                        json!({"cmd": "order_fill", "api_key": API_KEY, "order_id": id, "quantity": "0.001"}),
                    ),
                };
            }
        })
    };
    let doc: Value = serde_json::from_str(&client.account_snapshot().unwrap()).unwrap();
    trader.join().unwrap();
    let mut healed = Book::from_snapshot(&doc);
    // Every event after the gap, from before and after the snapshot was
    // taken, goes through the rule.
    for ev in drain(&stream) {
        healed.apply(&ev);
    }
    assert_eq!(healed.state(), truth(&ex, API_KEY), "after the gap");
}

fn rest_requests(ex: &Exchange, path: &str) -> i64 {
    ex.stats()["requests"][format!("GET {path}")]
        .as_i64()
        .unwrap_or(0)
}

#[test]
fn a_server_clock_far_off_ours_is_measured_and_signed_for() {
    let ex = Exchange::start(&["--account", &format!("{API_KEY}:{SECRET}")]);
    let client = Client::new(&hmac_config(&ex)).unwrap();
    for offset in [3_600_000i64, -3_600_000] {
        ex.control(json!({"cmd": "set", "clock_offset_ms": offset}));
        let doc: Value = serde_json::from_str(&client.account_snapshot().unwrap()).unwrap();
        let measured = client.rest().unwrap().clock_offset_ms();
        assert!(
            (measured - offset).abs() < 2000,
            "offset {offset}, measured {measured}"
        );
        let server_time = doc["server_time_ms"].as_i64().unwrap();
        let ours = common::http::now_ms();
        assert!((server_time - ours - offset).abs() < 2000, "{doc}");
    }
}

#[test]
fn the_exchanges_minus_1021_resyncs_and_retries_once() {
    let ex = Exchange::start(&["--account", &format!("{API_KEY}:{SECRET}")]);
    let client = Client::new(&hmac_config(&ex)).unwrap();
    ex.control(
        json!({"cmd": "fail", "method": "GET /fapi/v3/account", "status": 400, "code": -1021,
                      "msg": "Timestamp for this request is outside of the recvWindow."}),
    );
    client.account_snapshot().unwrap();
    assert_eq!(rest_requests(&ex, "/fapi/v1/time"), 2);
    assert_eq!(rest_requests(&ex, "/fapi/v3/account"), 2);
}

#[test]
fn the_exchanges_429_with_retry_after_stops_requests_until_then() {
    let ex = Exchange::start(&["--account", &format!("{API_KEY}:{SECRET}")]);
    let client = Client::new(&hmac_config(&ex)).unwrap();
    ex.control(
        json!({"cmd": "fail", "method": "GET /fapi/v1/openOrders", "status": 429, "code": -1003,
                      "msg": "Too many requests.", "retry_after_ms": 5000}),
    );
    let t0 = common::http::now_ms();
    let e = client.account_snapshot().unwrap_err();
    assert_eq!(
        (e.status, e.api_code, e.http_status),
        (Status::RateLimited, -1003, 429),
        "{e:?}"
    );
    assert!(e.retry_after_ms >= t0 + 4000, "{e:?}");
    let sent = rest_requests(&ex, "/fapi/v1/time");
    let again = client.account_snapshot().unwrap_err();
    assert_eq!(again.status, Status::RateLimited);
    assert_eq!(
        rest_requests(&ex, "/fapi/v1/time"),
        sent,
        "asked again before Retry-After"
    );
}

#[test]
fn a_kept_alive_connection_reset_is_replaced_and_a_silent_one_times_out() {
    let ex = Exchange::start(&["--account", &format!("{API_KEY}:{SECRET}")]);
    let mut cfg = hmac_config(&ex);
    cfg.set_timeouts_ms(1000, 1000).unwrap();
    let client = Client::new(&cfg).unwrap();
    client.account_snapshot().unwrap();
    let opened = client.rest().unwrap().connections_opened();
    // The server closes the kept-alive connection on the next request: it
    // is sent again on a new one, and the snapshot succeeds.
    ex.control(json!({"cmd": "reset_mid_request", "method": "GET /fapi/v3/positionRisk"}));
    client.account_snapshot().unwrap();
    assert_eq!(client.rest().unwrap().connections_opened(), opened + 1);
    // An unanswered request is a timeout naming the endpoint.
    ex.control(json!({"cmd": "no_answer", "method": "GET /fapi/v1/openAlgoOrders"}));
    let e = client.account_snapshot().unwrap_err();
    assert_eq!(e.status, Status::Timeout, "{e:?}");
    assert!(
        e.message.contains("/fapi/v1/openAlgoOrders"),
        "{}",
        e.message
    );
    // And the client carries on.
    client.account_snapshot().unwrap();
}
