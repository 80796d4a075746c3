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
    close_frame(ws).await.0
}

/// Waits for the close frame (skipping pings): its code and reason.
async fn close_frame(ws: &mut Ws) -> (u16, String) {
    loop {
        match timeout(WAIT, ws.next()).await.expect("close in time") {
            Some(Ok(Message::Close(Some(f)))) => return (f.code.into(), f.reason.to_string()),
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
    // Per IP: two handshakes (5 each) and this request (1).
    assert_eq!(
        (
            rl["rateLimitType"].as_str(),
            rl["limit"].as_u64(),
            rl["count"].as_u64()
        ),
        (Some("REQUEST_WEIGHT"), Some(2400), Some(11))
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
    // Weight per IP: 2 handshakes (5 each) and 11 requests so far.
    assert_eq!(r["rateLimits"][0]["count"], 21, "{r}");

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

    let mut stream = connect(&ex, &format!("{}/ws?listenKey={key}", ex.stream)).await;
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
    // Long enough for the stream to connect before the key lapses, even
    // on a loaded machine (300 ms was not); the bounds derive from it.
    let lifetime = Duration::from_millis(1000);
    let ex = Exchange::start(&["--key-lifetime-ms", "1000"]);
    let mut ws = connect(&ex, &ex.ws_api).await;
    let t0 = Instant::now();
    let key = listen_key(&call(&mut ws, req(json!(1), "userDataStream.start", "lapse")).await);
    let mut stream = connect(&ex, &format!("{}/ws?listenKey={key}", ex.stream)).await;
    let ev = next_json(&mut stream).await;
    let waited = t0.elapsed();
    assert!(
        waited >= lifetime - Duration::from_millis(20) && waited < 2 * lifetime,
        "lapsed after {waited:?}, lifetime {lifetime:?}"
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
    let mut stream = connect(&ex, &format!("{}/ws?listenKey={key}", ex.stream)).await;
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
    let mut stream = connect(&ex, &format!("{}/ws?listenKey={key}", ex.stream)).await;
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

/// The next text message, as the exact text.
async fn next_text(ws: &mut Ws) -> String {
    loop {
        match timeout(WAIT, ws.next()).await.expect("no message in time") {
            Some(Ok(Message::Text(t))) => return t.to_string(),
            Some(Ok(_)) => {}
            other => panic!("connection ended: {other:?}"),
        }
    }
}

/// `scheme://host:port` of the exchange.
fn base(ex: &Exchange) -> String {
    ex.ws_api.trim_end_matches("/ws-fapi/v1").to_string()
}

/// Starts a listenKey for `api_key` on a fresh API connection.
async fn start_key(ex: &Exchange, api_key: &str) -> String {
    let mut ws = connect(ex, &ex.ws_api).await;
    listen_key(&call(&mut ws, req(json!(1), "userDataStream.start", api_key)).await)
}

fn emit_raw(ex: &Exchange, api_key: &str, raw: &str) -> Value {
    ex.control(json!({"cmd": "emit", "api_key": api_key, "raw": raw}))
}

fn stream_conns(ex: &Exchange) -> Value {
    ex.control(json!({"cmd": "stream_connections"}))
}

#[tokio::test]
async fn subscribe_form_wraps_and_routes_by_key() {
    let ex = Exchange::start(&[]);
    let (k1, k2) = (start_key(&ex, "sub1").await, start_key(&ex, "sub2").await);
    let mut a = connect(&ex, &format!("{}/stream?streams=", ex.stream)).await;
    let mut b = connect(&ex, &format!("{}/stream", ex.stream)).await;
    let ack = call(
        &mut a,
        json!({"method": "SUBSCRIBE", "params": [k1, k2], "id": 1}),
    )
    .await;
    assert_eq!(ack, json!({"result": null, "id": 1}));
    let ack = call(
        &mut b,
        json!({"method": "SUBSCRIBE", "params": [k2, "notakey"], "id": 7}),
    )
    .await;
    assert_eq!(ack, json!({"result": null, "id": 7}));
    let list = call(&mut a, json!({"method": "LIST_SUBSCRIPTIONS", "id": 2})).await;
    assert_eq!(list, json!({"result": [k1, k2], "id": 2}));

    // The event is inside the wrapper byte for byte; each key to its subscribers.
    let ev = r#"{"e":"ORDER_TRADE_UPDATE","E":{E},"o":{"s":"BTCUSDT","q":"0.0010"}}"#;
    let r = emit_raw(&ex, "sub1", ev);
    let e1 = r["first_E"].as_u64().unwrap();
    assert_eq!(r["delivered"], 1);
    assert_eq!(
        next_text(&mut a).await,
        format!(
            r#"{{"stream":"{k1}","data":{}}}"#,
            ev.replace("{E}", &e1.to_string())
        )
    );
    assert_eq!(emit_raw(&ex, "sub2", ev)["delivered"], 2);
    for ws in [&mut a, &mut b] {
        let w = next_json(ws).await;
        assert_eq!(
            (&w["stream"], &w["data"]["e"]),
            (&json!(k2), &json!("ORDER_TRADE_UPDATE"))
        );
    }

    // UNSUBSCRIBE: nothing more for that key on this connection.
    let ack = call(
        &mut a,
        json!({"method": "UNSUBSCRIBE", "params": [k1], "id": 3}),
    )
    .await;
    assert_eq!(ack, json!({"result": null, "id": 3}));
    assert_eq!(emit_raw(&ex, "sub1", ev)["delivered"], 0);
    quiet_for(&mut a, Duration::from_millis(100)).await;

    // SET_PROPERTY combined=false: bare events.
    let r = call(
        &mut b,
        json!({"method": "SET_PROPERTY", "params": ["combined", false], "id": 4}),
    )
    .await;
    assert_eq!(r, json!({"result": null, "id": 4}));
    let r = call(
        &mut b,
        json!({"method": "GET_PROPERTY", "params": ["combined"], "id": 5}),
    )
    .await;
    assert_eq!(r, json!({"result": false, "id": 5}));
    emit_raw(&ex, "sub2", ev);
    assert_eq!(next_json(&mut b).await["e"], "ORDER_TRADE_UPDATE");
    assert_eq!(next_json(&mut a).await["stream"], json!(k2));

    let c = stream_conns(&ex);
    let conns = c["connections"].as_array().unwrap();
    assert_eq!(conns.len(), 2, "{c}");
    assert_eq!(
        (&conns[0]["path"], &conns[0]["form"], &conns[0]["keys"]),
        (&json!("/private/stream"), &json!("subscribe"), &json!([k2]))
    );
    assert_eq!(conns[1]["keys"], json!([k2, "notakey"]));
    assert_eq!(c["path_form_connects"], 0);
}

#[tokio::test]
async fn stream_request_errors() {
    let ex = Exchange::start_plain(&[]);
    let mut ws = connect(&ex, &format!("{}/stream", ex.stream)).await;
    let cases = [
        ("{nope", json!(3), None),
        (
            r#"{"method":"SUBSCRIBE","params":["k"],"id":"abc"}"#,
            json!(2),
            None,
        ),
        (
            r#"{"method":"SUBSCRIBE","params":["k"],"id":-1}"#,
            json!(2),
            None,
        ),
        (r#"{"method":"SUBSCRIBE","params":["k"]}"#, json!(2), None),
        (r#"{"params":["k"],"id":9}"#, json!(2), Some(9)),
        (r#"{"method":"PING","id":10}"#, json!(2), Some(10)),
        (
            r#"{"method":"SUBSCRIBE","params":"k","id":11}"#,
            json!(2),
            Some(11),
        ),
        (
            r#"{"method":"SUBSCRIBE","params":[5],"id":12}"#,
            json!(2),
            Some(12),
        ),
        (
            r#"{"method":"GET_PROPERTY","params":["nope"],"id":13}"#,
            json!(0),
            Some(13),
        ),
        (
            r#"{"method":"SET_PROPERTY","params":["combined",1],"id":14}"#,
            json!(1),
            Some(14),
        ),
    ];
    for (text, code, id) in cases {
        send(&mut ws, text).await;
        let r = next_json(&mut ws).await;
        assert_eq!(r["code"], code, "{text}: {r}");
        assert!(r["msg"].as_str().is_some(), "{r}");
        assert_eq!(r.get("id").and_then(Value::as_u64), id, "{text}: {r}");
    }
    // --stream-string-ids accepts what the official SDKs send.
    let ex = Exchange::start_plain(&["--stream-string-ids"]);
    let mut ws = connect(&ex, &format!("{}/stream", ex.stream)).await;
    let id = "2b0a6c7e-6f35-4f8e-9d40-0d4bbbd30c61";
    let r = call(
        &mut ws,
        json!({"method": "SUBSCRIBE", "params": ["k"], "id": id}),
    )
    .await;
    assert_eq!(r, json!({"result": null, "id": id}));
}

#[tokio::test]
async fn query_forms_filter_events() {
    let ex = Exchange::start(&[]);
    let (k1, k2) = (start_key(&ex, "q1").await, start_key(&ex, "q2").await);
    let mut ws_form = connect(
        &ex,
        &format!(
            "{}/ws?listenKey={k1}&events=ACCOUNT_UPDATE/TRADE_LITE",
            ex.stream
        ),
    )
    .await;
    let mut multi = connect(
        &ex,
        &format!(
            "{}/stream?listenKey={k1}&events=ORDER_TRADE_UPDATE&listenKey={k2}",
            ex.stream
        ),
    )
    .await;
    for typ in ["ORDER_TRADE_UPDATE", "ACCOUNT_UPDATE"] {
        ex.control(json!({"cmd": "emit", "api_key": "q1", "type": typ}));
    }
    ex.control(json!({"cmd": "emit", "api_key": "q2", "type": "MARGIN_CALL"}));
    let ev = next_json(&mut ws_form).await;
    assert_eq!(
        (&ev["e"], ev.get("stream")),
        (&json!("ACCOUNT_UPDATE"), None)
    );
    let ev = next_json(&mut multi).await;
    assert_eq!(
        (&ev["stream"], &ev["data"]["e"]),
        (&json!(k1), &json!("ORDER_TRADE_UPDATE"))
    );
    let ev = next_json(&mut multi).await;
    assert_eq!(
        (&ev["stream"], &ev["data"]["e"]),
        (&json!(k2), &json!("MARGIN_CALL"))
    );

    // A raw text with placeholders is filtered by its "e" too.
    let raw = r#"{"e":"TRADE_LITE","E":{E},"send_ns":{send_ns}}"#;
    assert_eq!(emit_raw(&ex, "q1", raw)["delivered"], 1);
    assert_eq!(next_json(&mut ws_form).await["e"], "TRADE_LITE");

    // listenKeyExpired passes every filter.
    ex.control(json!({"cmd": "expire", "api_key": "q1"}));
    assert_eq!(next_json(&mut ws_form).await["e"], "listenKeyExpired");
    let ev = next_json(&mut multi).await;
    assert_eq!(
        (&ev["stream"], &ev["data"]["e"]),
        (&json!(k1), &json!("listenKeyExpired"))
    );

    let c = stream_conns(&ex);
    assert_eq!(c["connections"][0]["form"], "query");
    assert_eq!(c["connections"][0]["path"], "/private/ws");
    assert_eq!(
        c["connections"][1]["events"],
        json!([["ORDER_TRADE_UPDATE"], null])
    );

    // stop closes a query-form connection left with no valid key.
    let mut api = connect(&ex, &ex.ws_api).await;
    call(&mut api, req(json!(1), "userDataStream.stop", "q2")).await;
    assert_eq!(close_code(&mut multi).await, 1000);
}

#[tokio::test]
async fn path_legacy_and_dead_keys_are_silent() {
    let ex = Exchange::start(&[]);
    let key = start_key(&ex, "silent").await;
    let mut path = connect(&ex, &format!("{}/ws/{key}", ex.stream)).await;
    let mut legacy = connect(&ex, &format!("{}/ws/{key}", base(&ex))).await;
    let mut subscribed = connect(&ex, &format!("{}/stream", ex.stream)).await;
    let r = call(
        &mut subscribed,
        json!({"method": "SUBSCRIBE", "params": [key], "id": 1}),
    )
    .await;
    assert_eq!(r["id"], 1);
    let r = ex.control(json!({"cmd": "emit", "api_key": "silent"}));
    assert_eq!(r["delivered"], 1, "only the SUBSCRIBE connection");
    next_json(&mut subscribed).await;
    quiet_for(&mut path, Duration::from_millis(100)).await;
    quiet_for(&mut legacy, Duration::from_millis(10)).await;

    // A dead (stopped) key: SUBSCRIBE is still acknowledged, nothing comes.
    let mut api = connect(&ex, &ex.ws_api).await;
    call(&mut api, req(json!(1), "userDataStream.stop", "silent")).await;
    let mut late = connect(&ex, &format!("{}/stream", ex.stream)).await;
    let r = call(
        &mut late,
        json!({"method": "SUBSCRIBE", "params": [key], "id": 2}),
    )
    .await;
    assert_eq!(r, json!({"result": null, "id": 2}));
    assert_eq!(
        ex.control(json!({"cmd": "emit", "api_key": "silent"}))["delivered"],
        0
    );
    quiet_for(&mut late, Duration::from_millis(100)).await;
    // The SUBSCRIBE-form connection stays open after stop.
    quiet_for(&mut subscribed, Duration::from_millis(10)).await;

    let c = stream_conns(&ex);
    let forms: Vec<&str> = c["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["form"].as_str().unwrap())
        .collect();
    assert_eq!(forms, ["path", "legacy", "subscribe", "subscribe"]);
    assert_eq!(
        (&c["path_form_connects"], &c["legacy_connects"]),
        (&json!(1), &json!(1))
    );
}

#[tokio::test]
async fn market_routes_accept_and_subscribe() {
    let ex = Exchange::start(&[]);
    let b = base(&ex);
    for path in [
        "/public/stream?streams=",
        "/market/stream?streams=btcusdt@aggTrade",
        "/public/ws",
        "/market/ws/btcusdt@markPrice",
    ] {
        let mut ws = connect(&ex, &format!("{b}{path}")).await;
        let r = call(
            &mut ws,
            json!({"method": "SUBSCRIBE", "params": ["ethusdt@bookTicker"], "id": 1}),
        )
        .await;
        assert_eq!(r, json!({"result": null, "id": 1}), "{path}");
        let r = call(&mut ws, json!({"method": "LIST_SUBSCRIPTIONS", "id": 2})).await;
        assert!(r["result"]
            .as_array()
            .unwrap()
            .contains(&json!("ethusdt@bookTicker")));
    }
    let c = stream_conns(&ex);
    assert!(c["connections"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["form"] == "market"));
}

#[tokio::test]
async fn stream_limits_disconnect() {
    let ex = Exchange::start_plain(&[
        "--stream-max-msgs-per-sec",
        "3",
        "--stream-max-streams",
        "2",
    ]);
    let mut ws = connect(&ex, &format!("{}/stream", ex.stream)).await;
    for i in 0..4 {
        send(
            &mut ws,
            &json!({"method": "LIST_SUBSCRIPTIONS", "id": i}).to_string(),
        )
        .await;
    }
    for i in 0..3 {
        assert_eq!(next_json(&mut ws).await["id"], i);
    }
    assert_eq!(
        close_frame(&mut ws).await,
        (1008, "Too many messages".into())
    );

    // Paced under the limit: fine; then one stream too many.
    let mut ws = connect(&ex, &format!("{}/stream", ex.stream)).await;
    for i in 0..4 {
        call(&mut ws, json!({"method": "LIST_SUBSCRIPTIONS", "id": i})).await;
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let r = call(
        &mut ws,
        json!({"method": "SUBSCRIBE", "params": ["a", "b"], "id": 9}),
    )
    .await;
    assert_eq!(r["id"], 9);
    send(
        &mut ws,
        &json!({"method": "SUBSCRIBE", "params": ["c"], "id": 10}).to_string(),
    )
    .await;
    assert_eq!(
        close_frame(&mut ws).await,
        (1008, "Too many streams".into())
    );

    let mut ws = connect(
        &ex,
        &format!("{}/stream?listenKey=a&listenKey=b&listenKey=c", ex.stream),
    )
    .await;
    assert_eq!(
        close_frame(&mut ws).await,
        (1008, "Too many streams".into())
    );
    assert_eq!(ex.stats()["stream_limit_closes"], 3);
}

/// `retryAfter - serverTime` of a refused WebSocket API answer, checking
/// its status and code.
fn retry_wait(r: &Value, status: i64) -> u64 {
    assert_eq!(error_code(r), (status, -1003), "{r}");
    let data = &r["error"]["data"];
    data["retryAfter"].as_u64().unwrap() - data["serverTime"].as_u64().unwrap()
}

#[tokio::test]
async fn weight_per_ip_in_fixed_windows() {
    // One-second windows, so the test sees one end.
    let ex = Exchange::start_plain(&["--api-weight-per-min", "14", "--weight-window-ms", "1000"]);
    let (mut a, mut b) = (
        connect(&ex, &ex.ws_api).await,
        connect(&ex, &ex.ws_api).await,
    );
    // Both connections draw on the IP's weight until a request is refused
    // (10 for the handshakes, then 1 a request: within one window that is
    // the 5th; a window may end meanwhile, so it is found, not assumed).
    let mut i = 0u64;
    let refused = loop {
        let ws = if i % 2 == 0 { &mut a } else { &mut b };
        let r = call(ws, req(json!(i), "userDataStream.ping", "w")).await;
        i += 1;
        if r["status"] != 400 {
            break r;
        }
        assert!(i < 100, "never refused: {r}");
    };
    let wait = retry_wait(&refused, 429);
    assert!(wait <= 1000, "{refused}");
    assert_eq!(refused["rateLimits"][0]["count"], 14, "{refused}");
    // The retry time is the end of the window: a multiple of its length.
    let retry_at = refused["error"]["data"]["retryAfter"].as_u64().unwrap();
    assert_eq!(retry_at % 1000, 0, "{refused}");
    assert_eq!(ex.stats()["ips"]["127.0.0.1"]["refused_429"], 1);
    // At that time a new window starts from nothing.
    tokio::time::sleep(Duration::from_millis(retry_at.saturating_sub(now_ms()) + 1)).await;
    let r = call(&mut a, req(json!(99), "userDataStream.ping", "w")).await;
    assert_eq!(r["rateLimits"][0]["count"], 1, "{r}");
    assert_eq!(ex.stats()["ips"]["127.0.0.1"]["bans"], 0);
}

#[tokio::test]
async fn an_ip_that_keeps_sending_after_a_429_is_banned() {
    // An hour's window: the 429s below all fall in one. Bans of 1 s and
    // then (at most) 1.5 s instead of 2 minutes and 3 days.
    let ex = Exchange::start_plain(&[
        "--api-weight-per-min",
        "7",
        "--weight-window-ms",
        "3600000",
        "--ban-after",
        "3",
        "--ban-first-ms",
        "1000",
        "--ban-max-ms",
        "1500",
    ]);
    let mut ws = connect(&ex, &ex.ws_api).await; // 5
    for id in 0..2 {
        let r = call(&mut ws, req(json!(id), "userDataStream.ping", "b")).await;
        assert_eq!(r["rateLimits"][0]["count"], 6 + id, "{r}");
    }
    // Past the limit, then two more before the time given: 429 each time,
    // with the same time.
    let first = call(&mut ws, req(json!(2), "userDataStream.ping", "b")).await;
    retry_wait(&first, 429);
    for id in 3..5 {
        let r = call(&mut ws, req(json!(id), "userDataStream.ping", "b")).await;
        retry_wait(&r, 429);
        assert_eq!(
            r["error"]["data"]["retryAfter"],
            first["error"]["data"]["retryAfter"]
        );
    }
    // The third is one too many: banned, 418 with the ban's end.
    let ban = call(&mut ws, req(json!(5), "userDataStream.ping", "b")).await;
    let wait = retry_wait(&ban, 418);
    assert!(wait > 0 && wait <= 1000, "{ban}");
    let msg = ban["error"]["msg"].as_str().unwrap();
    assert!(msg.contains("IP(127.0.0.1) banned until"), "{msg}");
    // Everything from the IP is refused meanwhile: REST (418, the same
    // body), new WebSocket API and stream connections (HTTP 418).
    let (s, v, _) = http(&ex, "GET", "/fapi/v1/time", None).await;
    assert_eq!((s, &v["code"]), (418, &json!(-1003)), "{v}");
    for url in [ex.ws_api.clone(), format!("{}/stream", ex.stream)] {
        match try_connect(&ex, &url).await {
            Err(tungstenite::Error::Http(resp)) => {
                assert_eq!(resp.status(), 418, "{url}");
                assert!(resp.headers().contains_key("retry-after"), "{url}");
            }
            other => panic!("{url}: expected 418, got {:?}", other.map(|_| ())),
        }
    }
    let ip = ex.stats()["ips"]["127.0.0.1"].clone();
    assert_eq!(ip["weight_used"], 7, "{ip}");
    assert_eq!(
        (&ip["refused_429"], &ip["refused_418"]),
        (&json!(3), &json!(4)),
        "{ip}"
    );
    assert_eq!(ip["bans"], 1, "{ip}");
    assert!(ip["banned_for_ms"].as_u64().unwrap() > 0, "{ip}");

    // Once the ban is over the window is still spent: a 429 again, and a
    // repeat offender's second ban is longer than the first (2 s, cut to
    // the 1.5 s cap).
    let end = ban["error"]["data"]["retryAfter"].as_u64().unwrap();
    tokio::time::sleep(Duration::from_millis(end.saturating_sub(now_ms()) + 1)).await;
    let mut r = call(&mut ws, req(json!(6), "userDataStream.ping", "b")).await;
    let mut id = 7;
    while r["status"] == 429 {
        r = call(&mut ws, req(json!(id), "userDataStream.ping", "b")).await;
        id += 1;
    }
    let wait = retry_wait(&r, 418);
    assert!(wait > 1000 && wait <= 1500, "{r}");
    assert_eq!(ex.stats()["ips"]["127.0.0.1"]["bans"], 2);

    // `unban` lifts it; with the limit off, served again.
    ex.control(json!({"cmd": "unban"}));
    ex.control(json!({"cmd": "set", "api_weight_per_min": 0}));
    let r = call(&mut ws, req(json!(99), "userDataStream.ping", "b")).await;
    assert_eq!(error_code(&r), (400, -1125), "served: no key yet, {r}");
    let ip = ex.stats()["ips"]["127.0.0.1"].clone();
    assert_eq!(
        (&ip["bans"], &ip["banned_for_ms"]),
        (&json!(0), &json!(0)),
        "{ip}"
    );
}

#[tokio::test]
async fn server_shutdown_then_close() {
    let ex = Exchange::start(&[]);
    let key = start_key(&ex, "sd").await;
    let mut api = connect(&ex, &ex.ws_api).await;
    let mut st = connect(&ex, &format!("{}/stream", ex.stream)).await;
    call(
        &mut st,
        json!({"method": "SUBSCRIBE", "params": [key], "id": 1}),
    )
    .await;
    let t0 = Instant::now();
    let r = ex.control(json!({"cmd": "server_shutdown", "target": "all", "close_after_ms": 300}));
    assert_eq!(r["connections"], 2);
    for ws in [&mut api, &mut st] {
        let ev = next_json(ws).await;
        assert_eq!(ev["event"]["e"], "serverShutdown", "{ev}");
        assert!(ev["event"]["E"].as_u64().is_some());
    }
    // Still served during the grace period.
    ex.control(json!({"cmd": "emit", "api_key": "sd"}));
    assert_eq!(next_json(&mut st).await["stream"], json!(key));
    let r = call(&mut api, req(json!(2), "userDataStream.ping", "sd")).await;
    assert_eq!(r["status"], 200);
    assert_eq!(close_code(&mut st).await, 1001);
    assert_eq!(close_code(&mut api).await, 1001);
    assert!(
        t0.elapsed() >= Duration::from_millis(280),
        "{:?}",
        t0.elapsed()
    );
}

#[tokio::test]
async fn one_connection_by_id_and_the_connection_rate() {
    let ex = Exchange::start_plain(&["--stream-connects-per-5min", "3"]);
    let key = start_key(&ex, "byid").await;
    let url = format!("{}/stream?streams={key}", ex.stream);
    let (mut a, mut b) = (connect(&ex, &url).await, connect(&ex, &url).await);
    let conns = stream_conns(&ex)["connections"].clone();
    assert_eq!(conns[0]["keys"], json!([key]));
    let id = conns[1]["id"].as_u64().unwrap();
    assert_eq!(
        ex.control(json!({"cmd": "drop", "id": id}))["connections"],
        1
    );
    ends_abruptly(&mut b).await;
    assert_eq!(
        ex.control(json!({"cmd": "emit", "api_key": "byid"}))["delivered"],
        1
    );
    next_json(&mut a).await;
    let r = ex.control_raw(json!({"cmd": "close", "id": 999}));
    assert_eq!(r["ok"], false);

    let _c = connect(&ex, &url).await;
    match try_connect(&ex, &url).await {
        Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 429),
        other => panic!("expected 429, got {:?}", other.map(|_| ())),
    }
}

const SECRET: &str = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j";

fn hmac_hex(payload: &str) -> String {
    // The RustCrypto crates, not the library's signing code (nor OpenSSL,
    // which the tests have only on Linux).
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(payload.as_bytes());
    let mac = mac.finalize().into_bytes();
    mac.iter().map(|b| format!("{b:02x}")).collect()
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// `--self-signed` (for TLS stacks that refuse the CA-signed certificate,
/// such as Wine's): the file it writes holds the server's own certificate,
/// which is what the handshake presents, and trusting it alone lets a client
/// in, by the name localhost and then through the WebSocket API.
#[tokio::test]
async fn self_signed_mode_serves_the_certificate_it_writes() {
    let ex = Exchange::start(&["--self-signed"]);
    let pem = std::fs::read(ex.ca_file.as_ref().expect("a certificate file")).unwrap();
    let cert = native_tls::Certificate::from_pem(&pem).expect("one certificate");
    let cx = native_tls::TlsConnector::builder()
        .add_root_certificate(cert.clone())
        .build()
        .unwrap();
    let tcp = TcpStream::connect(ex.addr()).await.unwrap();
    let tls = tokio_native_tls::TlsConnector::from(cx)
        .connect("localhost", tcp)
        .await
        .expect("TLS handshake trusting the written certificate alone");
    let served = tls
        .get_ref()
        .peer_certificate()
        .unwrap()
        .expect("a certificate");
    assert_eq!(served.to_der().unwrap(), cert.to_der().unwrap());
    let url = ex.ws_api.replace("127.0.0.1", "localhost");
    let io: Box<dyn Io> = Box::new(tls);
    let mut ws = tokio_tungstenite::client_async(url, io).await.unwrap().0;
    let key = listen_key(&call(&mut ws, req(json!(1), "userDataStream.start", "selfK")).await);
    assert!(!key.is_empty());
}

/// One HTTP/1.1 request to the REST port: (status, JSON body, weight header).
async fn http(
    ex: &Exchange,
    method: &str,
    target: &str,
    api_key: Option<&str>,
) -> (u16, Value, u64) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = ex.rest.split_once("://").unwrap().1.to_string();
    let tcp = TcpStream::connect(&addr).await.unwrap();
    let mut io: Box<dyn Io> = match &ex.ca_file {
        None => Box::new(tcp),
        Some(path) => {
            let ca = native_tls::Certificate::from_pem(&std::fs::read(path).unwrap()).unwrap();
            let cx = native_tls::TlsConnector::builder()
                .add_root_certificate(ca)
                .build()
                .unwrap();
            let tls = tokio_native_tls::TlsConnector::from(cx);
            Box::new(tls.connect("127.0.0.1", tcp).await.unwrap())
        }
    };
    let key = api_key
        .map(|k| format!("X-MBX-APIKEY: {k}\r\n"))
        .unwrap_or_default();
    let req =
        format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\n{key}Connection: close\r\n\r\n");
    io.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    timeout(WAIT, io.read_to_end(&mut raw))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    // X-MBX-USED-WEIGHT-<n><unit>: the unit names the exchange's window.
    let weight = head
        .lines()
        .find_map(|l| l.strip_prefix("X-MBX-USED-WEIGHT-")?.split_once(": "))
        .map_or(0, |(_, w)| w.parse().unwrap());
    (status, serde_json::from_str(body).unwrap(), weight)
}

/// A signed GET with the HMAC secret: `query` without timestamp and signature.
async fn signed_get(ex: &Exchange, path: &str, query: &str, api_key: &str) -> (u16, Value) {
    let q = format!(
        "{query}{}timestamp={}",
        if query.is_empty() { "" } else { "&" },
        now_ms()
    );
    let target = format!("{path}?{q}&signature={}", hmac_hex(&q));
    let (s, v, _) = http(ex, "GET", &target, Some(api_key)).await;
    (s, v)
}

#[tokio::test]
async fn account_commands_keep_snapshot_and_events_equal() {
    let ex = Exchange::start(&["--account", &format!("acctK:{SECRET}")]);
    let key = start_key(&ex, "acctK").await;
    let mut st = connect(&ex, &format!("{}/ws?listenKey={key}", ex.stream)).await;

    let r = ex.control(json!({"cmd": "deposit", "api_key": "acctK", "amount": "1000"}));
    let ev = next_json(&mut st).await;
    assert_eq!(
        (ev["e"].as_str(), ev["E"].as_u64()),
        (Some("ACCOUNT_UPDATE"), r["E"][0].as_u64())
    );
    assert_eq!(ev["a"]["m"], "DEPOSIT");
    assert_eq!(ev["a"]["B"][0]["wb"], "1000.00000000");

    let r = ex.control(
        json!({"cmd": "order_place", "api_key": "acctK", "symbol": "BTCUSDT",
        "side": "BUY", "quantity": "0.2", "price": "100", "client_order_id": "mine"}),
    );
    let oid = r["order_id"].as_u64().unwrap();
    let ev = next_json(&mut st).await;
    assert_eq!(
        (&ev["o"]["x"], &ev["o"]["X"], &ev["o"]["i"], &ev["o"]["c"]),
        (&json!("NEW"), &json!("NEW"), &json!(oid), &json!("mine"))
    );
    let (status, open) = signed_get(&ex, "/fapi/v1/openOrders", "symbol=BTCUSDT", "acctK").await;
    assert_eq!(status, 200, "{open}");
    assert_eq!(
        (&open[0]["orderId"], &open[0]["status"], &open[0]["origQty"]),
        (&json!(oid), &json!("NEW"), &json!("0.2"))
    );

    ex.control(json!({"cmd": "order_amend", "api_key": "acctK", "order_id": oid, "price": "101"}));
    assert_eq!(next_json(&mut st).await["o"]["x"], "AMENDMENT");
    ex.control(
        json!({"cmd": "order_fill", "api_key": "acctK", "order_id": oid, "quantity": "0.05"}),
    );
    let (lite, upd, acc) = (
        next_json(&mut st).await,
        next_json(&mut st).await,
        next_json(&mut st).await,
    );
    assert_eq!(
        (lite["e"].as_str(), lite["l"].as_str(), lite["L"].as_str()),
        (Some("TRADE_LITE"), Some("0.05"), Some("101"))
    );
    assert_eq!(
        (
            upd["o"]["x"].as_str(),
            upd["o"]["X"].as_str(),
            upd["o"]["z"].as_str()
        ),
        (Some("TRADE"), Some("PARTIALLY_FILLED"), Some("0.05"))
    );
    assert_eq!(acc["a"]["m"], "ORDER");
    let snap = ex.control(json!({"cmd": "snapshot", "api_key": "acctK"}));
    // The events and the snapshot agree: order, position and wallet.
    assert_eq!(snap["open_orders"][0]["executedQty"], upd["o"]["z"]);
    assert_eq!(snap["positions"][0]["positionAmt"], acc["a"]["P"][0]["pa"]);
    assert_eq!(snap["positions"][0]["entryPrice"], acc["a"]["P"][0]["ep"]);
    assert_eq!(snap["balance"][0]["balance"], acc["a"]["B"][0]["wb"]);
    // 1000 - 0.05 * 101 * 0.0002 (maker fee).
    assert_eq!(acc["a"]["B"][0]["wb"], "999.99899000");
    let (_, risk) = signed_get(&ex, "/fapi/v3/positionRisk", "", "acctK").await;
    assert_eq!(risk, snap["positions"]);
    let (_, account) = signed_get(&ex, "/fapi/v3/account", "", "acctK").await;
    assert_eq!(account, snap["account"]);

    ex.control(json!({"cmd": "order_fill", "api_key": "acctK", "order_id": oid}));
    let (_, upd) = (next_json(&mut st).await, next_json(&mut st).await);
    assert_eq!(
        (upd["o"]["X"].as_str(), upd["o"]["z"].as_str()),
        (Some("FILLED"), Some("0.2"))
    );
    next_json(&mut st).await;
    let r = ex.control(json!({"cmd": "order_place", "api_key": "acctK", "side": "SELL", "quantity": "0.1", "price": "120"}));
    next_json(&mut st).await;
    ex.control(json!({"cmd": "order_cancel", "api_key": "acctK", "order_id": r["order_id"]}));
    assert_eq!(next_json(&mut st).await["o"]["X"], "CANCELED");
    let r = ex.control(json!({"cmd": "algo_place", "api_key": "acctK", "side": "SELL", "quantity": "0.2", "trigger_price": "90"}));
    let ev = next_json(&mut st).await;
    assert_eq!(
        (&ev["e"], &ev["o"]["X"], &ev["o"]["aid"]),
        (&json!("ALGO_UPDATE"), &json!("NEW"), &r["algo_id"])
    );
    let (_, algos) = signed_get(&ex, "/fapi/v1/openAlgoOrders", "", "acctK").await;
    assert_eq!(
        (&algos[0]["algoId"], &algos[0]["triggerPrice"]),
        (&r["algo_id"], &json!("90"))
    );
    ex.control(json!({"cmd": "algo_cancel", "api_key": "acctK", "algo_id": r["algo_id"]}));
    assert_eq!(next_json(&mut st).await["o"]["X"], "CANCELED");
    // A triggered algo order leaves the algo list and places its order.
    let r = ex.control(
        json!({"cmd": "algo_place", "api_key": "acctK", "side": "SELL",
        "type": "STOP_MARKET", "quantity": "0.2", "trigger_price": "95"}),
    );
    next_json(&mut st).await;
    let t = ex.control(json!({"cmd": "algo_trigger", "api_key": "acctK", "algo_id": r["algo_id"]}));
    let (algo, order) = (next_json(&mut st).await, next_json(&mut st).await);
    assert_eq!(
        (&algo["o"]["X"], &algo["o"]["ai"]),
        (&json!("TRIGGERED"), &json!(t["order_id"].to_string()))
    );
    assert_eq!(
        (&order["o"]["x"], &order["o"]["o"], &order["o"]["i"]),
        (&json!("NEW"), &json!("MARKET"), &t["order_id"])
    );
    ex.control(json!({"cmd": "order_fill", "api_key": "acctK", "order_id": t["order_id"], "price": "95", "maker": false}));
    for _ in 0..3 {
        next_json(&mut st).await;
    }
    let snap = ex.control(json!({"cmd": "snapshot", "api_key": "acctK"}));
    assert_eq!(snap["positions"].as_array().unwrap().len(), 0, "{snap}");
    ex.control(json!({"cmd": "order_place", "api_key": "acctK", "side": "BUY", "quantity": "0.2", "price": "90"}));
    let id = next_json(&mut st).await["o"]["i"].clone();
    ex.control(json!({"cmd": "order_fill", "api_key": "acctK", "order_id": id}));
    for _ in 0..3 {
        next_json(&mut st).await;
    }
    let snap = ex.control(json!({"cmd": "snapshot", "api_key": "acctK"}));
    assert_eq!(
        (
            snap["open_orders"].as_array().unwrap().len(),
            snap["open_algo_orders"].as_array().unwrap().len()
        ),
        (0, 0)
    );
    assert_eq!(snap["positions"][0]["positionAmt"], "0.2");
    let r = ex.control_raw(json!({"cmd": "order_fill", "api_key": "acctK", "order_id": oid}));
    assert_eq!(r["ok"], false, "a filled order is no longer open");
}

#[tokio::test]
async fn signatures_timestamps_and_rest_weight() {
    let ex = Exchange::start_plain(&[
        "--account",
        &format!("sigK:{SECRET}"),
        "--api-weight-per-min",
        "86",
        // An hour's window: the weight counted below is never split by a
        // window's end.
        "--weight-window-ms",
        "3600000",
    ]);
    let (s, v, w) = http(&ex, "GET", "/fapi/v1/time", None).await;
    assert!(
        s == 200 && v["serverTime"].as_u64().unwrap() > 0 && w == 1,
        "{s} {v} {w}"
    );
    assert_eq!(
        signed_get(&ex, "/fapi/v3/balance", "recvWindow=5000", "sigK")
            .await
            .0,
        200
    );

    let q = format!("timestamp={}", now_ms());
    let bad = format!(
        "/fapi/v3/balance?{q}&signature={}",
        hmac_hex(&format!("{q}0"))
    );
    let (s, v, _) = http(&ex, "GET", &bad, Some("sigK")).await;
    assert_eq!((s, &v["code"]), (400, &json!(-1022)), "{v}");
    let q = format!("recvWindow=1000&timestamp={}", now_ms() - 5000);
    let stale = format!("/fapi/v3/balance?{q}&signature={}", hmac_hex(&q));
    let (s, v, _) = http(&ex, "GET", &stale, Some("sigK")).await;
    assert_eq!((s, &v["code"]), (400, &json!(-1021)), "{v}");
    let (s, v, _) = http(&ex, "GET", "/fapi/v3/balance?timestamp=1", None).await;
    assert_eq!((s, &v["code"]), (401, &json!(-2014)));
    let (s, v) = signed_get(&ex, "/fapi/v3/balance", "", "nobody").await;
    assert_eq!((s, &v["code"]), (401, &json!(-2015)));
    let (s, v, _) = http(&ex, "GET", "/fapi/v3/balance?timestamp=1", Some("sigK")).await;
    assert_eq!((s, &v["code"]), (400, &json!(-1102)), "no signature");

    // The same signed methods on the WebSocket API (params sorted by name).
    let mut ws = connect(&ex, &ex.ws_api).await;
    let ts = now_ms();
    let payload = format!("apiKey=sigK&timestamp={ts}");
    let r = call(
        &mut ws,
        json!({"id": 1, "method": "v2/account.balance",
        "params": {"timestamp": ts, "apiKey": "sigK", "signature": hmac_hex(&payload)}}),
    )
    .await;
    assert_eq!(r["status"], 200, "{r}");
    assert!(r["result"].is_array());
    let r = call(
        &mut ws,
        json!({"id": 2, "method": "account.status",
        "params": {"timestamp": ts, "apiKey": "sigK", "signature": hmac_hex("x")}}),
    )
    .await;
    assert_eq!(error_code(&r), (400, -1022));

    // Weight is shared by REST and the WebSocket API of one IP: 1 + 6x5
    // (refused requests too) + 5 (handshake) + 2x5 = 46 so far; openOrders
    // without a symbol costs 40, which reaches the limit of 86.
    assert_eq!(ex.stats()["weight_used"]["127.0.0.1"], 46);
    let (s, v) = signed_get(&ex, "/fapi/v1/openOrders", "", "sigK").await;
    assert_eq!(s, 200, "{v}");
    let (s, v, _) = http(&ex, "GET", "/fapi/v1/time", None).await;
    assert_eq!((s, &v["code"]), (429, &json!(-1003)), "{v}");
}

#[tokio::test]
async fn rest_faults_clock_offset_and_listen_key() {
    let ex = Exchange::start_plain(&["--account", &format!("rf:{SECRET}")]);
    // Faults name a REST endpoint ("METHOD /path") or "REST"; unnamed ones stay on the WebSocket API.
    ex.control(
        json!({"cmd": "fail", "status": 418, "code": -1003, "msg": "banned",
        "retry_after_ms": 2500, "method": "GET /fapi/v3/balance"}),
    );
    ex.control(json!({"cmd": "fail", "code": -1000}));
    let (s, v) = signed_get(&ex, "/fapi/v3/balance", "", "rf").await;
    assert_eq!((s, &v["code"]), (418, &json!(-1003)), "{v}");
    assert_eq!(signed_get(&ex, "/fapi/v3/balance", "", "rf").await.0, 200);
    ex.control(json!({"cmd": "reset"}));
    ex.control(json!({"cmd": "delay", "ms": 300, "method": "REST"}));
    let t0 = Instant::now();
    assert_eq!(http(&ex, "GET", "/fapi/v1/time", None).await.0, 200);
    assert!(t0.elapsed() >= Duration::from_millis(290));

    // A server clock 10 s ahead: a client timestamp is stale until it syncs.
    ex.control(json!({"cmd": "set", "clock_offset_ms": 10000}));
    let (_, t, _) = http(&ex, "GET", "/fapi/v1/time", None).await;
    let ahead = t["serverTime"].as_u64().unwrap() as i64 - now_ms() as i64;
    assert!((9000..11000).contains(&ahead), "{ahead}");
    let (s, v) = signed_get(&ex, "/fapi/v1/openOrders", "", "rf").await;
    assert_eq!((s, &v["code"]), (400, &json!(-1021)), "{v}");
    ex.control(json!({"cmd": "set", "clock_offset_ms": 0}));

    // listenKey over REST: the same key as userDataStream.start.
    let (s, v, _) = http(&ex, "POST", "/fapi/v1/listenKey", Some("rf")).await;
    assert_eq!(s, 200);
    let key = v["listenKey"].as_str().unwrap().to_string();
    assert_eq!(start_key(&ex, "rf").await, key);
    assert_eq!(
        http(&ex, "PUT", "/fapi/v1/listenKey", Some("rf")).await.1["listenKey"],
        json!(key)
    );
    assert_eq!(
        http(&ex, "DELETE", "/fapi/v1/listenKey", Some("rf"))
            .await
            .1,
        json!({})
    );
    let (s, v, _) = http(&ex, "PUT", "/fapi/v1/listenKey", Some("rf")).await;
    assert_eq!((s, &v["code"]), (400, &json!(-1125)));
    assert_eq!(http(&ex, "GET", "/nope", None).await.0, 404);
}

/// The next binary frame's bytes (skipping control frames).
async fn next_binary(ws: &mut Ws) -> Vec<u8> {
    loop {
        match timeout(WAIT, ws.next()).await.expect("no message in time") {
            Some(Ok(Message::Binary(b))) => return b.to_vec(),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            other => panic!("expected a binary frame, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn binary_frames_on_both_connections() {
    let ex = Exchange::start_plain(&[]);
    let key = start_key(&ex, "bin").await;
    let mut st = connect(&ex, &format!("{}/stream?streams={key}", ex.stream)).await;
    let r = ex.control(json!({"cmd": "emit", "api_key": "bin", "binary": true,
        "raw": r#"{"e":"X","E":{E}}"#}));
    let got = String::from_utf8(next_binary(&mut st).await).unwrap();
    assert_eq!(
        got,
        format!(
            r#"{{"stream":"{key}","data":{{"e":"X","E":{}}}}}"#,
            r["first_E"]
        )
    );
    ex.control(json!({"cmd": "emit", "api_key": "bin", "hex": "7b22ff"}));
    assert_eq!(next_binary(&mut st).await, vec![0x7b, 0x22, 0xff]);

    let mut ws = connect(&ex, &ex.ws_api).await;
    ex.control(json!({"cmd": "binary"}));
    send(
        &mut ws,
        &req(json!(1), "userDataStream.ping", "bin").to_string(),
    )
    .await;
    let a: Value = serde_json::from_slice(&next_binary(&mut ws).await).unwrap();
    assert_eq!(
        (&a["id"], &a["result"]["listenKey"]),
        (&json!(1), &json!(key))
    );
    ex.control(json!({"cmd": "binary", "hex": "c328"}));
    send(
        &mut ws,
        &req(json!(2), "userDataStream.ping", "bin").to_string(),
    )
    .await;
    assert_eq!(next_binary(&mut ws).await, vec![0xc3, 0x28]);
    assert_eq!(
        call(&mut ws, req(json!(3), "userDataStream.ping", "bin")).await["id"],
        3
    );
    assert_eq!(
        ex.control_raw(json!({"cmd": "binary", "hex": "zz"}))["ok"],
        false
    );
}

#[tokio::test]
async fn faults_on_stream_requests() {
    let ex = Exchange::start_plain(&[]);
    let key = start_key(&ex, "sf").await;
    let mut ws = connect(&ex, &format!("{}/stream", ex.stream)).await;
    let sub = |id: u64| json!({"method": "SUBSCRIBE", "params": [key], "id": id});
    // Faults name the stream method; an unnamed one stays on the WebSocket API.
    ex.control(json!({"cmd": "fail", "code": -1, "msg": "nope"}));
    ex.control(
        json!({"cmd": "fail", "code": 2, "msg": "Invalid request: refused", "method": "SUBSCRIBE"}),
    );
    let r = call(&mut ws, sub(1)).await;
    assert_eq!(
        r,
        json!({"code": 2, "msg": "Invalid request: refused", "id": 1})
    );
    let listed = call(&mut ws, json!({"method": "LIST_SUBSCRIPTIONS", "id": 2})).await;
    assert_eq!(
        listed["result"],
        json!([]),
        "a failed SUBSCRIBE has no effect"
    );

    ex.control(json!({"cmd": "no_answer", "method": "SUBSCRIBE"}));
    send(&mut ws, &sub(3).to_string()).await;
    quiet_for(&mut ws, Duration::from_millis(300)).await;
    ex.control(json!({"cmd": "delay", "ms": 300, "method": "SUBSCRIBE"}));
    let t0 = Instant::now();
    assert_eq!(
        call(&mut ws, sub(4)).await,
        json!({"result": null, "id": 4})
    );
    assert!(t0.elapsed() >= Duration::from_millis(290));
    assert_eq!(
        ex.control(json!({"cmd": "emit", "api_key": "sf"}))["delivered"],
        1
    );
    next_json(&mut ws).await;
}
