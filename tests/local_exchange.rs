//! Tests of the local exchange itself, with a tokio-tungstenite client.

mod common;

use std::time::{Duration, Instant};

use common::Exchange;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}
type Ws = WebSocketStream<Box<dyn Io>>;

const WAIT: Duration = Duration::from_secs(3);

/// Connects to `url` on the exchange, over TLS trusting its CA file unless plain.
async fn try_connect(ex: &Exchange, url: &str) -> Result<Ws, tungstenite::Error> {
    let tcp = TcpStream::connect(ex.addr()).await?;
    let io: Box<dyn Io> = match &ex.ca_file {
        None => Box::new(tcp),
        Some(path) => {
            let pem = std::fs::read(path).expect("read CA file");
            let ca = native_tls::Certificate::from_pem(&pem).expect("CA PEM");
            let cx = native_tls::TlsConnector::builder()
                .add_root_certificate(ca)
                .build()
                .expect("TLS connector");
            let tls = tokio_native_tls::TlsConnector::from(cx)
                .connect("127.0.0.1", tcp)
                .await;
            Box::new(tls.expect("TLS handshake"))
        }
    };
    Ok(tokio_tungstenite::client_async(url, io).await?.0)
}

async fn connect(ex: &Exchange, url: &str) -> Ws {
    try_connect(ex, url)
        .await
        .unwrap_or_else(|e| panic!("connect {url}: {e}"))
}

/// The next text message as JSON (pings are answered by tungstenite meanwhile).
async fn next_json(ws: &mut Ws) -> Value {
    loop {
        match timeout(WAIT, ws.next()).await.expect("no message in time") {
            Some(Ok(Message::Text(t))) => return serde_json::from_str(&t).expect("JSON"),
            Some(Ok(_)) => {}
            other => panic!("connection ended: {other:?}"),
        }
    }
}

/// Nothing but control frames arrives for `d`.
async fn quiet_for(ws: &mut Ws, d: Duration) {
    let end = tokio::time::Instant::now() + d;
    while let Ok(m) = tokio::time::timeout_at(end, ws.next()).await {
        if let Some(Ok(Message::Text(t))) = m {
            panic!("unexpected message {t}");
        }
    }
}

/// Waits for the close frame (skipping pings) and returns its code.
async fn close_code(ws: &mut Ws) -> u16 {
    loop {
        match timeout(WAIT, ws.next()).await.expect("close in time") {
            Some(Ok(Message::Close(Some(f)))) => return f.code.into(),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

async fn send(ws: &mut Ws, text: &str) {
    ws.send(Message::text(text.to_string()))
        .await
        .expect("send");
}

async fn call(ws: &mut Ws, req: Value) -> Value {
    send(ws, &req.to_string()).await;
    next_json(ws).await
}

fn req(id: Value, method: &str, api_key: &str) -> Value {
    json!({"id": id, "method": method, "params": {"apiKey": api_key}})
}

fn listen_key(answer: &Value) -> String {
    assert_eq!(answer["status"], 200, "{answer}");
    let k = answer["result"]["listenKey"]
        .as_str()
        .expect("listenKey")
        .to_string();
    assert_eq!(k.len(), 64);
    k
}

fn error_code(answer: &Value) -> (i64, i64) {
    (
        answer["status"].as_i64().unwrap_or(0),
        answer["error"]["code"].as_i64().unwrap_or(0),
    )
}

#[tokio::test]
async fn start_ping_stop_and_key_reuse() {
    let ex = Exchange::start(&[]);
    let (mut a, mut b) = (
        connect(&ex, &ex.ws_api).await,
        connect(&ex, &ex.ws_api).await,
    );

    let r = call(&mut a, req(json!(1), "userDataStream.start", "key1")).await;
    let k1 = listen_key(&r);
    assert_eq!(r["id"], 1);
    let rl = &r["rateLimits"][0];
    assert_eq!(
        (
            rl["rateLimitType"].as_str(),
            rl["limit"].as_u64(),
            rl["count"].as_u64()
        ),
        (Some("REQUEST_WEIGHT"), Some(2400), Some(1))
    );

    // Same account on another connection: same key. Another account: another key.
    let r = call(&mut b, req(json!("s"), "userDataStream.start", "key1")).await;
    assert_eq!((listen_key(&r), &r["id"]), (k1.clone(), &json!("s")));
    assert_ne!(
        listen_key(&call(&mut b, req(json!(2), "userDataStream.start", "key2")).await),
        k1
    );
    assert_eq!(
        listen_key(&call(&mut a, req(json!(3), "userDataStream.ping", "key1")).await),
        k1
    );

    let r = call(&mut a, req(Value::Null, "userDataStream.stop", "key1")).await;
    assert_eq!(
        (&r["status"], &r["result"], &r["id"]),
        (&json!(200), &json!({}), &Value::Null)
    );
    let r = call(&mut a, req(json!(4), "userDataStream.ping", "key1")).await;
    assert_eq!(error_code(&r), (400, -1125));
    assert_eq!(r["error"]["msg"], "This listenKey does not exist.");
    assert_eq!(
        error_code(&call(&mut a, req(json!(5), "userDataStream.stop", "key1")).await),
        (400, -1125)
    );
    assert_ne!(
        listen_key(&call(&mut a, req(json!(6), "userDataStream.start", "key1")).await),
        k1
    );

    let s = ex.stats();
    assert_eq!(
        (
            s["requests"]["userDataStream.start"].as_u64(),
            s["api_connections_open"].as_u64()
        ),
        (Some(4), Some(2))
    );
}

#[tokio::test]
async fn malformed_requests_and_routes() {
    let ex = Exchange::start_plain(&[]);
    let mut ws = connect(&ex, &ex.ws_api).await;
    for text in [
        "not json",
        "[1,2]",
        "{\"id\":7,\"params\":{}}",
        "{\"id\":8,\"method\":5}",
    ] {
        send(&mut ws, text).await;
        let r = next_json(&mut ws).await;
        assert_eq!(error_code(&r), (400, -1013), "{text}: {r}");
        let id = serde_json::from_str::<Value>(text)
            .ok()
            .and_then(|v| v.get("id").cloned());
        assert_eq!(r["id"], id.unwrap_or(Value::Null));
    }
    let r = call(&mut ws, req(json!("x"), "order.place", "k")).await;
    assert_eq!((error_code(&r), &r["id"]), ((400, -1020), &json!("x")));
    let r = call(&mut ws, json!({"id": 1, "method": "userDataStream.start"})).await;
    assert_eq!(error_code(&r), (400, -1102));
    assert_eq!(
        error_code(&call(&mut ws, req(json!(2), "userDataStream.start", "")).await),
        (400, -1102)
    );
    assert_eq!(
        error_code(&call(&mut ws, req(json!(3), "userDataStream.start", "bad key")).await),
        (401, -2014)
    );
    let long = "a".repeat(129);
    assert_eq!(
        error_code(&call(&mut ws, req(json!(4), "userDataStream.ping", &long)).await),
        (401, -2014)
    );

    // rateLimits: off by URL, back on per request.
    let mut quiet = connect(&ex, &format!("{}?returnRateLimits=false", ex.ws_api)).await;
    let r = call(&mut quiet, req(json!(1), "userDataStream.start", "k")).await;
    assert!(r.get("rateLimits").is_none(), "{r}");
    let r = call(&mut quiet, json!({"id": 2, "method": "userDataStream.ping", "params": {"apiKey": "k", "returnRateLimits": true}})).await;
    assert_eq!(r["rateLimits"][0]["count"], 2);

    // Routes: 404 elsewhere, the legacy route accepted.
    let base = ex.ws_api.trim_end_matches("/ws-fapi/v1").to_string();
    match try_connect(&ex, &format!("{base}/nope")).await {
        Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 404),
        other => panic!("expected 404, got {:?}", other.map(|_| ())),
    }
    let _legacy = connect(&ex, &format!("{base}/ws/somekey")).await;
    let _unknown_key = connect(&ex, &format!("{}/ws/notakey", ex.stream)).await;
    assert_eq!(ex.stats()["stream_connections_open"], 2);
}

#[tokio::test]
async fn fail_then_emit_with_increasing_e() {
    let ex = Exchange::start(&[]);
    let mut ws = connect(&ex, &ex.ws_api).await;
    ex.control(
        json!({"cmd": "fail", "status": 429, "code": -1003, "msg": "Too many requests.",
        "retry_after_ms": 1000, "method": "userDataStream.start"}),
    );
    let r = call(&mut ws, req(json!(1), "userDataStream.ping", "acct")).await;
    assert_eq!(error_code(&r), (400, -1125), "the fault is for start only");
    let r = call(&mut ws, req(json!(2), "userDataStream.start", "acct")).await;
    assert_eq!(error_code(&r), (429, -1003));
    let data = &r["error"]["data"];
    assert_eq!(
        data["retryAfter"].as_u64().unwrap() - data["serverTime"].as_u64().unwrap(),
        1000
    );
    let key = listen_key(&call(&mut ws, req(json!(3), "userDataStream.start", "acct")).await);

    let mut stream = connect(&ex, &format!("{}/ws/{key}", ex.stream)).await;
    let a = ex.control(json!({"cmd": "emit", "api_key": "acct", "count": 5}));
    assert_eq!(
        (a["emitted"].as_u64(), a["delivered"].as_u64()),
        (Some(5), Some(5))
    );
    let b = ex.control(json!({"cmd": "emit", "api_key": "acct", "type": "ACCOUNT_UPDATE", "count": 2, "interval_us": 500}));
    let mut last = 0;
    for i in 0..7 {
        let ev = next_json(&mut stream).await;
        let e = ev["E"].as_u64().expect("E");
        assert!(e > last, "E not increasing: {e} after {last}");
        assert_eq!(
            ev["e"],
            if i < 5 {
                "ORDER_TRADE_UPDATE"
            } else {
                "ACCOUNT_UPDATE"
            }
        );
        match i {
            0 => assert_eq!(e, a["first_E"].as_u64().unwrap()),
            4 => assert_eq!(e, a["last_E"].as_u64().unwrap()),
            6 => assert_eq!(e, b["last_E"].as_u64().unwrap()),
            _ => {}
        }
        last = e;
    }
    let s = ex.stats();
    assert_eq!(
        (s["events_emitted"].as_u64(), s["events_delivered"].as_u64()),
        (Some(7), Some(7))
    );

    // stop closes the stream with 1000.
    call(&mut ws, req(json!(4), "userDataStream.stop", "acct")).await;
    assert_eq!(close_code(&mut stream).await, 1000);
}

#[tokio::test]
async fn listen_key_expired_on_lapse() {
    let ex = Exchange::start(&["--key-lifetime-ms", "300"]);
    let mut ws = connect(&ex, &ex.ws_api).await;
    let t0 = Instant::now();
    let key = listen_key(&call(&mut ws, req(json!(1), "userDataStream.start", "lapse")).await);
    let mut stream = connect(&ex, &format!("{}/ws/{key}", ex.stream)).await;
    let ev = next_json(&mut stream).await;
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_millis(280) && waited < Duration::from_millis(1500),
        "{waited:?}"
    );
    assert_eq!(
        (ev["e"].as_str(), ev["listenKey"].as_str()),
        (Some("listenKeyExpired"), Some(key.as_str()))
    );
    assert!(
        ev["E"].as_str().is_some_and(|e| e.parse::<u64>().is_ok()),
        "E is a string: {ev}"
    );

    assert_eq!(
        error_code(&call(&mut ws, req(json!(2), "userDataStream.ping", "lapse")).await),
        (400, -1125)
    );
    // A new key: the old connection stays open and silent.
    let key2 = listen_key(&call(&mut ws, req(json!(3), "userDataStream.start", "lapse")).await);
    assert_ne!(key, key2);
    let a = ex.control(json!({"cmd": "emit", "api_key": "lapse", "count": 2}));
    assert_eq!(a["delivered"], 0);
    quiet_for(&mut stream, Duration::from_millis(200)).await;
}

#[tokio::test]
async fn pings_pongs_and_lifetime() {
    let ex = Exchange::start_plain(&["--ping-interval-ms", "100", "--stream-lifetime-ms", "600"]);
    let mut ws = connect(&ex, &ex.ws_api).await;
    let mut stream = connect(&ex, &format!("{}/ws/anything", ex.stream)).await;
    let t0 = Instant::now();
    // Reading lets tungstenite answer the pings.
    quiet_for(&mut ws, Duration::from_millis(450)).await;
    assert_eq!(close_code(&mut stream).await, 1000);
    let lived = t0.elapsed();
    assert!(
        lived >= Duration::from_millis(550) && lived < Duration::from_millis(1500),
        "{lived:?}"
    );
    let s = ex.stats();
    assert!(s["pings_sent"].as_u64().unwrap() >= 6, "{s}");
    assert!(s["pongs_ok"].as_u64().unwrap() >= 3, "{s}");
    assert_eq!(s["pongs_bad"], 0);
}

#[tokio::test]
async fn faults_shape_answers() {
    let ex = Exchange::start_plain(&[]);
    let mut ws = connect(&ex, &ex.ws_api).await;
    let start = |id: i64| req(json!(id), "userDataStream.start", "faults");

    ex.control(
        json!({"cmd": "raw", "text": r#"{"id":{id},"status":200,"result":{"listenKey":"RAW"}}"#}),
    );
    let r = call(&mut ws, start(1)).await;
    assert_eq!(
        (&r["id"], &r["result"]["listenKey"]),
        (&json!(1), &json!("RAW"))
    );

    ex.control(json!({"cmd": "duplicate"}));
    let r = call(&mut ws, start(2)).await;
    assert_eq!(next_json(&mut ws).await, r);

    ex.control(json!({"cmd": "oversize", "bytes": 100000}));
    send(&mut ws, &start(3).to_string()).await;
    match timeout(WAIT, ws.next()).await.expect("answer") {
        Some(Ok(Message::Text(t))) => {
            assert_eq!(t.len(), 100000);
            assert_eq!(serde_json::from_str::<Value>(&t).unwrap()["id"], 3);
        }
        other => panic!("{other:?}"),
    }

    // no_answer, then a delayed ping overtaken by a start.
    ex.control(json!({"cmd": "no_answer"}));
    ex.control(json!({"cmd": "delay", "ms": 300, "method": "userDataStream.ping"}));
    send(&mut ws, &start(4).to_string()).await;
    send(
        &mut ws,
        &req(json!(5), "userDataStream.ping", "faults").to_string(),
    )
    .await;
    send(&mut ws, &start(6).to_string()).await;
    assert_eq!(next_json(&mut ws).await["id"], 6);
    assert_eq!(next_json(&mut ws).await["id"], 5);

    // cut: half a frame, then silence with the socket open.
    ex.control(json!({"cmd": "cut"}));
    send(&mut ws, &start(7).to_string()).await;
    quiet_for(&mut ws, Duration::from_millis(300)).await;
    assert_eq!(ex.stats()["api_connections_open"], 1);
}

#[tokio::test]
async fn restart_same_port_keeps_the_ca() {
    let mut ex = Exchange::start(&[]);
    let url = ex.ws_api.clone();
    let mut ws = connect(&ex, &url).await;
    listen_key(&call(&mut ws, req(json!(1), "userDataStream.start", "r")).await);
    ex.restart_same_port();
    assert_eq!(ex.ws_api, url);
    let mut ws = connect(&ex, &url).await;
    listen_key(&call(&mut ws, req(json!(1), "userDataStream.start", "r")).await);
}

/// The connection ends without a close frame.
async fn ends_abruptly(ws: &mut Ws) {
    loop {
        match timeout(WAIT, ws.next()).await.expect("end in time") {
            Some(Ok(Message::Close(f))) => panic!("unexpected close frame {f:?}"),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return,
        }
    }
}

#[tokio::test]
async fn connection_commands() {
    let ex = Exchange::start_plain(&[]);
    let mut ws = connect(&ex, &ex.ws_api).await;
    let key = listen_key(&call(&mut ws, req(json!(1), "userDataStream.start", "cc")).await);

    ex.control(json!({"cmd": "refuse", "target": "api"}));
    match try_connect(&ex, &ex.ws_api).await {
        Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 503),
        other => panic!("expected 503, got {:?}", other.map(|_| ())),
    }
    let mut stream = connect(&ex, &format!("{}/ws/{key}", ex.stream)).await;
    ex.control(json!({"cmd": "refuse", "enabled": false}));
    assert_eq!(ex.stats()["refused_total"], 1);

    ex.control(json!({"cmd": "spam", "count": 2}));
    send(
        &mut ws,
        &req(json!(2), "userDataStream.ping", "cc").to_string(),
    )
    .await;
    let (s1, s2, answer) = (
        next_json(&mut ws).await,
        next_json(&mut ws).await,
        next_json(&mut ws).await,
    );
    assert!(
        s1["id"].as_str().is_some_and(|id| id.starts_with("spam-")),
        "{s1}"
    );
    assert_eq!((&s2["e"], &answer["id"]), (&json!("spam"), &json!(2)));
    ex.control(json!({"cmd": "reset"}));

    ex.control(json!({"cmd": "ping_flood", "count": 3}));
    let mut pings = 0;
    while pings < 3 {
        match timeout(WAIT, ws.next()).await.expect("ping") {
            Some(Ok(Message::Ping(_))) => pings += 1,
            other => panic!("expected pings, got {other:?}"),
        }
    }

    let a = ex.control(json!({"cmd": "close", "target": "stream", "code": 4000, "reason": "bye"}));
    assert_eq!(a["connections"], 1);
    assert_eq!(close_code(&mut stream).await, 4000);

    ex.control(json!({"cmd": "revoke", "api_key": "cc"}));
    let r = next_json(&mut ws).await;
    assert_eq!((error_code(&r), &r["id"]), ((401, -2015), &Value::Null));
    assert_eq!(close_code(&mut ws).await, 1000);

    let mut ws = connect(&ex, &ex.ws_api).await;
    ex.control(json!({"cmd": "reset_mid_request"}));
    send(
        &mut ws,
        &req(json!(3), "userDataStream.ping", "cc").to_string(),
    )
    .await;
    ends_abruptly(&mut ws).await;

    let mut ws = connect(&ex, &ex.ws_api).await;
    // Earlier connections may still be finishing their close handshakes.
    assert!(
        ex.control(json!({"cmd": "drop"}))["connections"]
            .as_u64()
            .unwrap()
            >= 1
    );
    ends_abruptly(&mut ws).await;
    let s = ex.stats();
    assert!(s["pongs_ok"].as_u64().unwrap() >= 1, "{s}");
    assert_eq!(s["pongs_bad"], 0);
}

#[tokio::test]
async fn emit_raw_stamps_the_send_time() {
    let ex = Exchange::start(&[]);
    let mut ws = connect(&ex, &ex.ws_api).await;
    let key = listen_key(&call(&mut ws, req(json!(1), "userDataStream.start", "stamp")).await);
    let mut stream = connect(&ex, &format!("{}/ws/{key}", ex.stream)).await;
    let now_ns = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
    };
    let before = now_ns();
    ex.control(json!({"cmd": "emit", "api_key": "stamp", "count": 2,
        "raw": r#"{"e":"X","E":{E},"send_ns":{send_ns}}"#}));
    let (a, b) = (next_json(&mut stream).await, next_json(&mut stream).await);
    let after = now_ns();
    let (sa, sb) = (
        a["send_ns"].as_u64().unwrap(),
        b["send_ns"].as_u64().unwrap(),
    );
    assert!(before <= sa && sa <= sb && sb <= after, "{a} {b}");
    assert!(a["E"].as_u64().unwrap() < b["E"].as_u64().unwrap());
}
