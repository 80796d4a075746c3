//! Restarting many accounts from one thread (issue 20): with
//! `open_waits` off an open returns once its subscription is sent, and
//! `binance.stream_subscribed` says when it is live, so a plain loop of
//! opens is not paced by the acknowledgements.

mod common;

use binance_uds::engine::{Client, Config, UserStream, STREAM_GAP, STREAM_SUBSCRIBED};
use common::stream::until;
use common::Exchange;
use serde_json::json;
use std::time::Duration;

fn key(i: usize) -> String {
    format!("TESTKEYrestart{i:05}abcdefghijklmnopqrstuvwxyz")
}

fn config(ex: &Exchange, i: usize) -> Config {
    let mut c = common::config(ex, &key(i), 5000, 500);
    c.set_open_waits_for_subscription(0).unwrap();
    c
}

#[test]
fn a_thousand_opens_from_one_thread_all_subscribe_and_deliver() {
    const N: usize = 1000;
    let ex = Exchange::start(&[]);
    let streams: Vec<(Client, UserStream)> = (0..N)
        .map(|i| {
            let client = Client::new(&config(&ex, i)).unwrap();
            let stream = UserStream::open(&client, None).unwrap();
            (client, stream)
        })
        .collect();
    for (i, (_, s)) in streams.iter().enumerate() {
        let (ev, before) = until(s, STREAM_SUBSCRIBED);
        assert!(
            before.is_empty(),
            "stream {i}: {before:?} before it was live"
        );
        assert!(ev.is_library());
        assert!(s.health().subscribed, "stream {i}");
    }
    for i in 0..N {
        let answer =
            ex.control(json!({"cmd": "emit", "api_key": key(i), "type": "ORDER_TRADE_UPDATE"}));
        assert_eq!(answer["delivered"], 1, "stream {i}: {answer}");
    }
    for (i, (_, s)) in streams.iter().enumerate() {
        let ev = s.next(Duration::from_secs(10)).unwrap();
        let ev = ev.unwrap_or_else(|| panic!("stream {i}: no event"));
        assert_eq!(ev.kind(), "ORDER_TRADE_UPDATE", "stream {i}");
    }
}

/// A subscription the server refuses after the open returned: the stream
/// recovers as from a lost connection and says so with a gap, instead of
/// reporting itself live.
#[test]
fn a_refused_subscription_after_the_open_is_recovered_with_a_gap() {
    let ex = Exchange::start(&[]);
    ex.control(json!({"cmd": "fail", "method": "SUBSCRIBE", "code": 2, "msg": "Invalid request", "count": 1}));
    let client = Client::new(&config(&ex, 0)).unwrap();
    let s = UserStream::open(&client, None).unwrap();
    let (gap, before) = until(&s, STREAM_GAP);
    assert_eq!(gap.get("/reason").as_deref(), Some("subscribe_failed"));
    assert!(
        before.iter().all(|e| e.kind() != STREAM_SUBSCRIBED),
        "{before:?}"
    );
    ex.control(json!({"cmd": "emit", "api_key": key(0), "type": "TRADE_LITE"}));
    assert_eq!(until(&s, "TRADE_LITE").0.kind(), "TRADE_LITE");
}
