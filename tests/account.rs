//! The account snapshot against the local exchange: its signed REST
//! endpoints verify both key types as Binance documents them, and what the
//! library returns equals the exchange's own account state.

mod common;

use binance_uds::engine::event::STREAM_GAP;
use binance_uds::engine::stream::UserStream;
use binance_uds::engine::{Client, Config, Status};
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
    let (pem, _) = common::http::ed25519_key();
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

/// The account as the application keeps it: replaced by a snapshot,
/// updated by events under the README's merge rule.
#[derive(Default, Debug, PartialEq)]
struct Book {
    /// orderId -> (status, updateTime)
    orders: std::collections::BTreeMap<i64, (String, i64)>,
    /// algoId -> updateTime
    algos: std::collections::BTreeMap<i64, i64>,
    /// (symbol, positionSide) -> (amount, updateTime); zero amounts dropped
    positions: std::collections::BTreeMap<(String, String), (f64, i64)>,
    /// asset -> (wallet balance, updateTime)
    balances: std::collections::BTreeMap<String, (f64, i64)>,
}

fn num(v: &Value) -> f64 {
    v.as_str().and_then(|s| s.parse().ok()).unwrap_or(f64::NAN)
}

fn int(v: &Value) -> i64 {
    v.as_i64().unwrap_or_else(|| panic!("not an integer: {v}"))
}

impl Book {
    /// From the parts of a snapshot (the library's, or the exchange's own).
    fn from_parts(balances: &Value, positions: &Value, orders: &Value, algos: &Value) -> Book {
        let mut b = Book::default();
        for o in orders.as_array().unwrap() {
            b.orders.insert(
                int(&o["orderId"]),
                (
                    o["status"].as_str().unwrap().to_owned(),
                    int(&o["updateTime"]),
                ),
            );
        }
        for a in algos.as_array().unwrap() {
            b.algos.insert(int(&a["algoId"]), int(&a["updateTime"]));
        }
        for p in positions.as_array().unwrap() {
            let amount = num(&p["positionAmt"]);
            if amount != 0.0 {
                let key = (
                    p["symbol"].as_str().unwrap().to_owned(),
                    p["positionSide"].as_str().unwrap().to_owned(),
                );
                b.positions.insert(key, (amount, int(&p["updateTime"])));
            }
        }
        for a in balances.as_array().unwrap() {
            b.balances.insert(
                a["asset"].as_str().unwrap().to_owned(),
                (num(&a["walletBalance"]), int(&a["updateTime"])),
            );
        }
        b
    }

    fn from_snapshot(doc: &Value) -> Book {
        Book::from_parts(
            &doc["balances"],
            &doc["positions"],
            &doc["open_orders"],
            &doc["open_algo_orders"],
        )
    }

    /// The merge rule: skip what the snapshot shows newer, apply the rest
    /// (every field is an absolute value, so applying what it already shows
    /// changes nothing).
    fn apply(&mut self, ev: &Value) {
        match ev["e"].as_str().unwrap_or("") {
            "ORDER_TRADE_UPDATE" => {
                let o = &ev["o"];
                let (id, t) = (int(&o["i"]), int(&o["T"]));
                if self.orders.get(&id).is_some_and(|(_, u)| *u > t) {
                    return;
                }
                let status = o["X"].as_str().unwrap();
                if ["FILLED", "CANCELED", "EXPIRED", "EXPIRED_IN_MATCH"].contains(&status) {
                    self.orders.remove(&id);
                } else {
                    self.orders.insert(id, (status.to_owned(), t));
                }
            }
            "ALGO_UPDATE" => {
                let (id, t) = (int(&ev["o"]["aid"]), int(&ev["T"]));
                if self.algos.get(&id).is_some_and(|u| *u > t) {
                    return;
                }
                if ["CANCELED", "FINISHED", "REJECTED", "EXPIRED"]
                    .contains(&ev["o"]["X"].as_str().unwrap())
                {
                    self.algos.remove(&id);
                } else {
                    self.algos.insert(id, t);
                }
            }
            "ACCOUNT_UPDATE" => {
                let t = int(&ev["T"]);
                for b in ev["a"]["B"].as_array().unwrap() {
                    let asset = b["a"].as_str().unwrap().to_owned();
                    if self.balances.get(&asset).is_none_or(|(_, u)| *u <= t) {
                        self.balances.insert(asset, (num(&b["wb"]), t));
                    }
                }
                for p in ev["a"]["P"].as_array().unwrap() {
                    let key = (
                        p["s"].as_str().unwrap().to_owned(),
                        p["ps"].as_str().unwrap().to_owned(),
                    );
                    if self.positions.get(&key).is_some_and(|(_, u)| *u > t) {
                        continue;
                    }
                    let amount = num(&p["pa"]);
                    if amount == 0.0 {
                        self.positions.remove(&key);
                    } else {
                        self.positions.insert(key, (amount, t));
                    }
                }
            }
            _ => {}
        }
    }

    /// What the application can compare: ids, statuses, amounts.
    fn state(&self) -> Value {
        json!({
            "orders": self.orders.iter().map(|(k, (s, _))| json!([k, s])).collect::<Vec<_>>(),
            "algos": self.algos.keys().collect::<Vec<_>>(),
            "positions": self.positions.iter().map(|(k, (a, _))| json!([k.0, k.1, format!("{a:.8}")])).collect::<Vec<_>>(),
            "balances": self.balances.iter().map(|(k, (w, _))| json!([k, format!("{w:.8}")])).collect::<Vec<_>>(),
        })
    }
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

fn truth(ex: &Exchange) -> Value {
    let t = ex.control(json!({"cmd": "snapshot", "api_key": API_KEY}));
    Book::from_parts(
        &t["account"]["assets"],
        &t["positions"],
        &t["open_orders"],
        &t["open_algo_orders"],
    )
    .state()
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
    assert_eq!(book.state(), truth(&ex), "before the gap");

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
    assert_eq!(healed.state(), truth(&ex), "after the gap");
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
