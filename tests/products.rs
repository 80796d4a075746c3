//! The core stream tests for every product (`binance_config_set_product`:
//! USDⓈ-M, COIN-M, Portfolio Margin) against the local exchange, each run
//! over `common::products::ALL`: events in order, expiry and -1125 renewal
//! (Portfolio Margin's key kept alive over REST), reconnection with its gap,
//! account resync into the product's snapshot shape; and the request
//! budget COIN-M shares with USDⓈ-M.

mod common;

use binance_uds::engine::{Client, UserStream};
use binance_uds::engine::{ACCOUNT_SNAPSHOT, LISTEN_KEY_RENEWED, STREAM_DISCONNECTED, STREAM_GAP};
use common::book::{truth, Book};
use common::products::{self, Product};
use common::stream::until;
use common::{wait_for, Exchange};
use serde_json::{json, Value};
use std::time::Duration;

const KEY: &str = "PRODUCTKEYabcdef0123456789";
const SECRET: &str = "PRODUCTSECRETqwerty012345";

fn exchange() -> Exchange {
    Exchange::start(&["--account", &format!("{KEY}:{SECRET}")])
}

fn open(ex: &Exchange, p: Product) -> (Client, UserStream) {
    let client = Client::new(&products::config(ex, p, KEY)).unwrap();
    let stream = UserStream::open(&client, None).unwrap();
    (client, stream)
}

fn emit(ex: &Exchange, p: Product, kind: &str, count: u64) {
    let r = ex.control(
        json!({"cmd": "emit", "api_key": KEY, "product": p.name, "type": kind, "count": count}),
    );
    assert_eq!(r["delivered"], count, "emit {kind} to {}: {r}", p.name);
}

fn next(s: &binance_uds::engine::UserStream) -> binance_uds::engine::Event {
    match s.next(Duration::from_secs(10)) {
        Ok(Some(ev)) => ev,
        other => panic!("expected an event, got {other:?}"),
    }
}

/// Event types each product's stream carries (the raw ones pass through).
fn event_types(p: Product) -> &'static [&'static str] {
    match p.name {
        "pm" => &[
            "ORDER_TRADE_UPDATE",
            "CONDITIONAL_ORDER_TRADE_UPDATE",
            "executionReport",
            "outboundAccountPosition",
            "balanceUpdate",
            "liabilityChange",
            "riskLevelChange",
            "openOrderLoss",
        ],
        _ => &[
            "ACCOUNT_UPDATE",
            "ORDER_TRADE_UPDATE",
            "ACCOUNT_CONFIG_UPDATE",
            "MARGIN_CALL",
            "STRATEGY_UPDATE",
            "GRID_UPDATE",
        ],
    }
}

#[test]
fn every_product_delivers_its_events_in_order_and_intact() {
    products::for_each(|p| {
        let ex = exchange();
        let (_c, s) = open(&ex, p);
        let types = event_types(p);
        for t in types {
            emit(&ex, p, t, 1);
        }
        let mut last = 0;
        for t in types {
            let ev = next(&s);
            assert_eq!(ev.kind(), *t, "{}", ev.json());
            assert!(ev.time_ms() > last, "in order: {}", ev.json());
            last = ev.time_ms();
        }
        assert!(
            s.next(Duration::from_millis(200)).unwrap().is_none(),
            "no extra event"
        );
        // Only this product's account got them: the other products' keys
        // of the same API key are other accounts.
        let h = s.health();
        assert_eq!((h.events_delivered, h.gaps), (types.len() as u64, 0));
    });
}

#[test]
fn every_product_renews_the_key_after_listen_key_expired() {
    products::for_each(|p| {
        let ex = exchange();
        let (c, s) = open(&ex, p);
        let old = c.listen_key_start().unwrap();
        ex.control(json!({"cmd": "expire", "api_key": KEY, "product": p.name}));
        assert_eq!(next(&s).kind(), "listenKeyExpired");
        let (gap, _) = until(&s, STREAM_GAP);
        assert_eq!(gap.get("/reason").as_deref(), Some("listen_key_expired"));
        until(&s, LISTEN_KEY_RENEWED);
        assert_ne!(c.listen_key_start().unwrap(), old);
        emit(&ex, p, "ORDER_TRADE_UPDATE", 2);
        assert_eq!(next(&s).kind(), "ORDER_TRADE_UPDATE");
        assert_eq!(next(&s).kind(), "ORDER_TRADE_UPDATE");
        assert_eq!(s.health().key_renewals, 1);
    });
}

#[test]
fn every_product_keeps_its_key_alive_and_renews_on_minus_1125() {
    products::for_each(|p| {
        let ex = exchange();
        let mut cfg = products::config(&ex, p, KEY);
        cfg.set_keepalive_interval_ms(200).unwrap();
        let client = Client::new(&cfg).unwrap();
        let s = UserStream::open(&client, None).unwrap();
        // The keepalive goes where the product keeps its key: the WebSocket
        // API for USDⓈ-M and COIN-M, REST PUT /papi/v1/listenKey for PM.
        let seen = ex.requests(p.keepalive);
        ex.wait_requests(p.keepalive, seen + 1, Duration::from_secs(10));
        wait_for("a keepalive reported OK", Duration::from_secs(10), || {
            s.health().last_keepalive_status == 0
        });
        let starts = ex.requests(p.start);
        ex.control(
            json!({"cmd": "fail", "method": p.keepalive, "status": 400, "code": -1125,
                          "msg": "This listenKey does not exist."}),
        );
        let (gap, _) = until(&s, STREAM_GAP);
        assert_eq!(
            gap.get("/reason").as_deref(),
            Some("listen_key_invalid"),
            "{}",
            gap.json()
        );
        // Renewed the product's way: a new start where the key is kept.
        ex.wait_requests(p.start, starts, Duration::from_secs(10));
        emit(&ex, p, "ORDER_TRADE_UPDATE", 1);
        until(&s, "ORDER_TRADE_UPDATE");
    });
}

#[test]
fn every_product_reconnects_after_a_drop_and_reports_the_gap() {
    products::for_each(|p| {
        let ex = exchange();
        let (_c, s) = open(&ex, p);
        emit(&ex, p, "ORDER_TRADE_UPDATE", 1);
        next(&s);
        ex.control(json!({"cmd": "drop", "target": "stream"}));
        assert_eq!(next(&s).kind(), STREAM_DISCONNECTED);
        let gap = next(&s);
        assert_eq!(gap.kind(), STREAM_GAP, "{}", gap.json());
        emit(&ex, p, "ORDER_TRADE_UPDATE", 3);
        for _ in 0..3 {
            assert_eq!(next(&s).kind(), "ORDER_TRADE_UPDATE");
        }
        let h = s.health();
        assert!(h.connected);
        assert_eq!((h.reconnects, h.gaps), (1, 1));
    });
}

/// The book in a snapshot of `p`'s shape (README, "Resynchronising after a
/// gap"): Portfolio Margin's UM members hold what USDⓈ-M's hold, and its
/// balances name the UM wallet `umWalletBalance`.
fn book_of(p: Product, doc: &Value) -> Book {
    if p.name != "pm" {
        return Book::from_snapshot(doc);
    }
    let balances: Vec<Value> = doc["balances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| json!({"asset": b["asset"], "walletBalance": b["umWalletBalance"], "updateTime": b["updateTime"]}))
        .collect();
    for empty in [
        "cm_positions",
        "cm_open_orders",
        "cm_open_conditional_orders",
        "margin_open_orders",
    ] {
        assert!(doc[empty].is_array(), "{empty} in {doc}");
    }
    assert!(doc["account"].is_object(), "{doc}");
    Book::from_parts(
        &Value::Array(balances),
        &doc["um_positions"],
        &doc["um_open_orders"],
        &doc["um_open_algo_orders"],
    )
}

#[test]
fn every_product_resyncs_into_its_snapshot_after_a_gap() {
    products::for_each(|p| {
        let ex = exchange();
        let acct = |cmd: Value| {
            let mut cmd = cmd;
            cmd["api_key"] = KEY.into();
            cmd["product"] = p.name.into();
            ex.control(cmd)
        };
        acct(json!({"cmd": "deposit", "asset": "USDT", "amount": "5000"}));
        let order = acct(
            json!({"cmd": "order_place", "symbol": "ETHUSDT", "side": "BUY",
                                "quantity": "0.5", "price": "2000"}),
        )["order_id"]
            .clone();
        let mut cfg = products::config(&ex, p, KEY);
        cfg.set_secret_key(SECRET).unwrap();
        cfg.set_account_resync(1).unwrap();
        let client = Client::new(&cfg).unwrap();
        let s = UserStream::open(&client, None).unwrap();
        let truth = || truth_of(&ex, p);
        let first = next(&s);
        assert_eq!(first.kind(), ACCOUNT_SNAPSHOT, "{}", first.json());
        let doc: Value = serde_json::from_str(first.json()).unwrap();
        assert_eq!(doc["product"], p.name);
        assert_eq!(book_of(p, &doc).state(), truth());
        // The outage: the order is cancelled while nothing is delivered.
        ex.control(json!({"cmd": "refuse", "target": "stream", "enabled": true}));
        ex.control(json!({"cmd": "drop", "target": "stream"}));
        acct(json!({"cmd": "order_cancel", "order_id": order}));
        ex.control(json!({"cmd": "refuse", "target": "stream", "enabled": false}));
        let (snap, before) = until(&s, ACCOUNT_SNAPSHOT);
        assert!(
            before.iter().any(|e| e.kind() == STREAM_GAP),
            "the snapshot follows a gap"
        );
        let doc: Value = serde_json::from_str(snap.json()).unwrap();
        assert_eq!(book_of(p, &doc).state(), truth(), "healed");
    });
}

/// The exchange's own state of `p`'s account, in `Book::state` form.
fn truth_of(ex: &Exchange, p: Product) -> Value {
    if p.name == "usdm" {
        return truth(ex, KEY);
    }
    let t = ex.control(json!({"cmd": "snapshot", "api_key": KEY, "product": p.name}));
    Book::from_parts(
        &t["account"]["assets"],
        &t["positions"],
        &t["open_orders"],
        &t["open_algo_orders"],
    )
    .state()
}

#[test]
fn coinm_and_usdm_accounts_share_one_request_budget_and_pm_has_its_own() {
    let ex = exchange();
    let usdm = Client::new(&products::config(&ex, products::USDM, KEY)).unwrap();
    let coinm = Client::new(&products::config(&ex, products::COINM, KEY)).unwrap();
    let pm = Client::new(&products::config(&ex, products::PM, KEY)).unwrap();
    let used = |c: &Client| c.budget().view().used;
    let (u0, p0) = (used(&usdm), used(&pm));
    coinm.listen_key_start().unwrap();
    coinm.listen_key_keepalive().unwrap();
    // What COIN-M spent shows in the USDⓈ-M account's budget: one budget.
    assert!(used(&usdm) >= u0 + 2, "{} then {}", u0, used(&usdm));
    assert_eq!(used(&usdm), used(&coinm));
    // Portfolio Margin's is counted apart.
    assert_eq!(used(&pm), p0);
    pm.listen_key_start().unwrap();
    assert!(used(&pm) > p0);
    assert_eq!(used(&usdm), used(&coinm));
    assert!(!std::sync::Arc::ptr_eq(&usdm.budget(), &pm.budget()));
}

#[test]
fn accounts_of_different_products_never_share_a_connection() {
    let ex = exchange();
    // Two configs alike in everything but the product (even the WebSocket
    // API URL): sharing would put both on one connection.
    let usdm = Client::new(&products::config(&ex, products::USDM, KEY)).unwrap();
    let mut cfg = products::config(&ex, products::COINM, "OTHERKEYabcdef0123456789");
    cfg.set_endpoint(&ex.ws_api).unwrap();
    let coinm = Client::new(&cfg).unwrap();
    let same = Client::new(&products::config(
        &ex,
        products::USDM,
        "THIRDKEYabcdef0123456789",
    ))
    .unwrap();
    usdm.listen_key_start().unwrap();
    same.listen_key_start().unwrap();
    assert_eq!(
        ex.stat("api_connections_open"),
        1,
        "the same product shares"
    );
    coinm.listen_key_start().unwrap();
    assert_eq!(
        ex.stat("api_connections_open"),
        2,
        "another product does not"
    );
}
