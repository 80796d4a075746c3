//! The WebSocket API session against the local exchange: id matching,
//! reconnection, timeouts, every error mapping, oversize messages.

mod common;

use binance_uds::engine::{Client, Config, Error, Status};
use common::{wait_for, Exchange};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

const KEY: &str = "TESTKEYsessionABCDEF0123456789";

fn config(ex: &Exchange) -> Config {
    let mut c = Config::default();
    c.set_api_key(KEY).unwrap();
    c.set_endpoint(&ex.ws_api).unwrap();
    if let Some(pem) = &ex.ca_pem {
        c.add_root_certificate_pem(pem).unwrap();
    }
    c.set_timeouts_ms(5000, 5000).unwrap();
    c
}

fn client(ex: &Exchange) -> Client {
    Client::new(&config(ex)).unwrap()
}

fn assert_secret_free(e: &Error) {
    assert!(!e.message.contains(KEY), "API key leaked into {e:?}");
}

#[test]
fn start_keepalive_stop_round_trip() {
    let ex = Exchange::start(&[]);
    let c = client(&ex);
    let key = c.listen_key_start().unwrap();
    assert_eq!(key.len(), 64);
    assert!(key.bytes().all(|b| b.is_ascii_alphanumeric()));
    assert_eq!(
        c.listen_key_start().unwrap(),
        key,
        "an active key is returned again"
    );
    assert_eq!(c.listen_key_keepalive().unwrap(), key);
    c.listen_key_stop().unwrap();
    let e = c.listen_key_keepalive().unwrap_err();
    assert_eq!(
        (e.status, e.api_code, e.http_status),
        (Status::ApiError, -1125, 400)
    );
    assert_secret_free(&e);
    let rl = c.rate_limits();
    assert!(rl.contains("REQUEST_WEIGHT"), "{rl}");
    assert_eq!(ex.stats()["api_connections_total"], 1);
}

#[test]
fn eight_threads_share_one_connection_and_get_their_own_answers() {
    let ex = Exchange::start(&[]);
    ex.control(json!({"cmd": "shuffle", "max_delay_us": 2000}));
    let c = Arc::new(client(&ex));
    let key = c.listen_key_start().unwrap();
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let c = c.clone();
            let key = key.clone();
            std::thread::spawn(move || {
                for _ in 0..100 {
                    assert_eq!(c.listen_key_keepalive().unwrap(), key);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let stats = ex.stats();
    assert_eq!(stats["api_connections_total"], 1, "{stats}");
    assert_eq!(stats["requests"]["userDataStream.ping"], 800, "{stats}");
    assert_eq!(c.session().connections_opened(), 1);
}

#[test]
fn unrelated_and_duplicate_messages_are_skipped() {
    let ex = Exchange::start(&[]);
    let c = client(&ex);
    ex.control(json!({"cmd": "spam", "count": 20}));
    ex.control(json!({"cmd": "duplicate", "count": 3}));
    let key = c.listen_key_start().unwrap();
    for _ in 0..5 {
        assert_eq!(c.listen_key_keepalive().unwrap(), key);
    }
    assert_eq!(ex.stats()["api_connections_total"], 1);
}

#[test]
fn reconnects_transparently_after_drop_and_close_frame() {
    let ex = Exchange::start(&[]);
    let c = client(&ex);
    let key = c.listen_key_start().unwrap();
    ex.control(json!({"cmd": "drop", "target": "api"}));
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(c.listen_key_keepalive().unwrap(), key);
    ex.control(json!({"cmd": "close", "target": "api", "code": 1001, "reason": "restart"}));
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(c.listen_key_keepalive().unwrap(), key);
    assert_eq!(ex.stats()["api_connections_total"], 3);
}

#[test]
fn a_request_in_flight_fails_at_once_when_the_connection_dies() {
    let ex = Exchange::start(&[]);
    let mut cfg = config(&ex);
    cfg.set_timeouts_ms(5000, 30_000).unwrap();
    let c = Arc::new(Client::new(&cfg).unwrap());
    c.listen_key_start().unwrap();
    ex.control(json!({"cmd": "delay", "ms": 20_000, "count": 1}));
    let pings = ex.requests("userDataStream.ping");
    let c2 = c.clone();
    let t0 = Instant::now();
    let waiter = std::thread::spawn(move || c2.listen_key_keepalive());
    // Acts once the keepalive is in flight: the exchange has received it.
    ex.wait_requests("userDataStream.ping", pings, Duration::from_secs(10));
    ex.control(json!({"cmd": "drop", "target": "api"}));
    let e = waiter.join().unwrap().unwrap_err();
    assert_eq!(e.status, Status::ConnectionClosed, "{e:?}");
    assert!(
        t0.elapsed() < Duration::from_secs(15),
        "waited for the timeout instead"
    );
    c.listen_key_keepalive().unwrap();
}

#[test]
fn request_timeout_is_honoured_and_a_late_answer_goes_to_nobody() {
    let ex = Exchange::start(&[]);
    let mut cfg = config(&ex);
    cfg.set_timeouts_ms(5000, 300).unwrap();
    let c = client_from(&cfg);
    let key = c.listen_key_start().unwrap();
    ex.control(json!({"cmd": "delay", "ms": 800, "count": 1}));
    let t0 = Instant::now();
    let e = c.listen_key_keepalive().unwrap_err();
    assert_eq!(e.status, Status::Timeout);
    assert!(t0.elapsed() >= Duration::from_millis(300));
    assert!(t0.elapsed() < Duration::from_secs(5));
    // The late answer arrives while the next request waits: it must not be
    // taken for the next request's answer.
    ex.control(json!({"cmd": "fail", "status": 400, "code": -1125, "msg": "This listenKey does not exist.", "count": 1}));
    std::thread::sleep(Duration::from_millis(600));
    let e = c.listen_key_keepalive().unwrap_err();
    assert_eq!(e.api_code, -1125, "got someone else's answer: {e:?}");
    assert_eq!(c.listen_key_keepalive().unwrap(), key);
}

fn client_from(cfg: &Config) -> Client {
    Client::new(cfg).unwrap()
}

#[test]
fn connect_timeout_on_a_server_that_never_speaks() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut cfg = Config::default();
    cfg.set_api_key(KEY).unwrap();
    cfg.set_endpoint(&format!("wss://127.0.0.1:{port}/ws-fapi/v1"))
        .unwrap();
    cfg.set_timeouts_ms(300, 300).unwrap();
    let c = client_from(&cfg);
    let t0 = Instant::now();
    let e = c.listen_key_start().unwrap_err();
    assert_eq!(e.status, Status::Timeout, "{e:?}");
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert_secret_free(&e);
    drop(listener);
}

#[test]
fn connection_refused_is_connect_failed() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut cfg = Config::default();
    cfg.set_api_key(KEY).unwrap();
    cfg.set_endpoint(&format!("ws://127.0.0.1:{port}/ws-fapi/v1"))
        .unwrap();
    let e = client_from(&cfg).listen_key_start().unwrap_err();
    assert_eq!(e.status, Status::ConnectFailed, "{e:?}");
    assert!(e.message.contains(&port.to_string()), "{}", e.message);
}

#[test]
fn tls_is_verified() {
    let ex = Exchange::start(&[]);
    let mut cfg = Config::default();
    cfg.set_api_key(KEY).unwrap();
    cfg.set_endpoint(&ex.ws_api).unwrap();
    let e = client_from(&cfg).listen_key_start().unwrap_err();
    assert_eq!(e.status, Status::TlsFailed, "{e:?}");
    // The certificate names localhost too.
    let mut cfg = config(&ex);
    cfg.set_endpoint(&ex.ws_api.replace("127.0.0.1", "localhost"))
        .unwrap();
    client_from(&cfg).listen_key_start().unwrap();
}

#[test]
fn plain_exchange_on_loopback() {
    let ex = Exchange::start_plain(&[]);
    assert!(ex.ws_api.starts_with("ws://"));
    client(&ex).listen_key_start().unwrap();
}

#[test]
fn api_errors_and_rate_limits_map_to_statuses() {
    let ex = Exchange::start(&[]);
    let c = client(&ex);
    ex.control(json!({"cmd": "fail", "status": 401, "code": -2015, "msg": "Invalid API-key, IP, or permissions for action."}));
    let e = c.listen_key_start().unwrap_err();
    assert_eq!(
        (e.status, e.api_code, e.http_status),
        (Status::ApiError, -2015, 401)
    );
    assert!(e.message.contains("Invalid API-key"), "{}", e.message);
    c.listen_key_start().unwrap();
    assert_eq!(
        ex.stats()["api_connections_total"],
        1,
        "API errors keep the connection"
    );
    ex.control(json!({"cmd": "fail", "status": 429, "code": -1003, "msg": "Too many requests."}));
    let e = c.listen_key_start().unwrap_err();
    assert_eq!(
        (e.status, e.api_code, e.http_status),
        (Status::RateLimited, -1003, 429)
    );
    // No retry time: nothing is sent until the weight window ends.
    let e = c.listen_key_start().unwrap_err();
    assert_eq!((e.status, e.http_status), (Status::RateLimited, 0), "{e:?}");
    assert!(e.retry_after_ms > common::http::now_ms(), "{e:?}");
    // A ban, on another server (a budget of its own).
    let ex = Exchange::start(&[]);
    let c = client(&ex);
    ex.control(json!({"cmd": "fail", "status": 418, "code": -1003, "msg": "IP banned", "retry_after_ms": 60_000}));
    let e = c.listen_key_start().unwrap_err();
    assert_eq!((e.status, e.http_status), (Status::RateLimited, 418));
    assert!(e.retry_after_ms > 1_600_000_000_000, "{e:?}");
    let again = c.listen_key_start().unwrap_err();
    assert_eq!(
        (again.http_status, again.retry_after_ms),
        (0, e.retry_after_ms),
        "nothing sent before the ban's end: {again:?}"
    );
}

#[test]
fn malformed_answers_are_protocol_errors_and_replace_the_connection() {
    let ex = Exchange::start(&[]);
    let c = client(&ex);
    c.listen_key_start().unwrap();
    let cases = [
        json!({"cmd": "raw", "text": "<html>502 Bad Gateway</html>"}),
        json!({"cmd": "raw", "text": "{\"id\":{id},\"status\":200,\"result\":{}}"}),
        json!({"cmd": "raw", "text": "{\"id\":{id},\"result\":{\"listenKey\":\"abc\"}}"}),
        json!({"cmd": "raw", "text": "{\"id\":{id},\"status\":200,\"result\":{\"listenKey\":\"../../etc\"}}"}),
    ];
    for (i, case) in cases.iter().enumerate() {
        ex.control(case.clone());
        let e = c.listen_key_start().unwrap_err();
        assert_eq!(e.status, Status::ProtocolError, "case {i}: {e:?}");
        assert_secret_free(&e);
        c.listen_key_start().unwrap();
    }
    assert_eq!(ex.stats()["api_connections_total"], 1 + cases.len() as u64);
}

#[test]
fn oversize_message_is_refused_and_the_connection_replaced() {
    let ex = Exchange::start(&[]);
    let c = client(&ex);
    c.listen_key_start().unwrap();
    ex.control(json!({"cmd": "oversize", "bytes": 5 << 20}));
    let e = c.listen_key_start().unwrap_err();
    assert!(
        matches!(e.status, Status::ProtocolError | Status::ConnectionClosed),
        "{e:?}"
    );
    c.listen_key_start().unwrap();
    // Just under the limit is fine.
    ex.control(json!({"cmd": "oversize", "bytes": (4 << 20) - 4096}));
    c.listen_key_start().unwrap();
}

#[test]
fn revoked_session_fails_pending_requests_with_the_api_error() {
    let ex = Exchange::start(&[]);
    let mut cfg = config(&ex);
    cfg.set_timeouts_ms(5000, 20_000).unwrap();
    let c = Arc::new(client_from(&cfg));
    c.listen_key_start().unwrap();
    ex.control(json!({"cmd": "no_answer", "count": 1}));
    let pings = ex.requests("userDataStream.ping");
    let c2 = c.clone();
    let t0 = Instant::now();
    let waiter = std::thread::spawn(move || c2.listen_key_keepalive());
    // Acts once the keepalive is in flight: the exchange has received it.
    ex.wait_requests("userDataStream.ping", pings, Duration::from_secs(10));
    ex.control(json!({"cmd": "revoke"}));
    let e = waiter.join().unwrap().unwrap_err();
    assert_eq!(
        (e.status, e.api_code, e.http_status),
        (Status::ApiError, -2015, 401),
        "{e:?}"
    );
    assert!(t0.elapsed() < Duration::from_secs(10));
    c.listen_key_start().unwrap();
}

#[test]
fn server_pings_are_answered_with_their_payload() {
    let ex = Exchange::start(&["--ping-interval-ms", "100"]);
    ex.control(json!({"cmd": "ping_first", "enabled": true}));
    let c = client(&ex);
    c.listen_key_start().unwrap();
    wait_for("two pongs", Duration::from_secs(10), || {
        ex.stat("pongs_ok") >= 2
    });
    c.listen_key_keepalive().unwrap();
    let s = ex.stats();
    assert!(s["pongs_ok"].as_u64().unwrap() >= 2, "{s}");
    assert_eq!(s["pongs_bad"], 0, "{s}");
}

#[test]
fn freeing_the_client_fails_requests_in_flight_at_once() {
    let ex = Exchange::start(&[]);
    let mut cfg = config(&ex);
    cfg.set_timeouts_ms(5000, 30_000).unwrap();
    let c = Arc::new(client_from(&cfg));
    c.listen_key_start().unwrap();
    ex.control(json!({"cmd": "no_answer", "count": 1}));
    let pings = ex.requests("userDataStream.ping");
    let c2 = c.clone();
    let t0 = Instant::now();
    let waiter = std::thread::spawn(move || c2.listen_key_keepalive());
    // Acts once the keepalive is in flight: the exchange has received it.
    ex.wait_requests("userDataStream.ping", pings, Duration::from_secs(10));
    c.close();
    let e = waiter.join().unwrap().unwrap_err();
    assert_eq!(e.status, Status::ConnectionClosed, "{e:?}");
    assert!(t0.elapsed() < Duration::from_secs(10));
    wait_for(
        "the exchange to see the socket closed",
        Duration::from_secs(10),
        || ex.stat("api_connections_open") == 0,
    );
}

#[test]
fn an_old_connection_is_replaced_before_the_server_closes_it() {
    let ex = Exchange::start(&[]);
    let mut cfg = config(&ex);
    // Binance closes at 24 h and the library replaces at 23 h; scaled down.
    cfg.api_rotate_after = Duration::from_millis(300);
    let c = client_from(&cfg);
    let key = c.listen_key_start().unwrap();
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(c.listen_key_keepalive().unwrap(), key);
    assert_eq!(c.session().connections_opened(), 2);
    // The replaced connection is closed, not left to the server.
    wait_for(
        "the old connection to close",
        Duration::from_secs(10),
        || ex.stat("api_connections_open") == 1,
    );
    let s = ex.stats();
    assert_eq!(s["api_connections_total"], 2, "{s}");
    assert_eq!(
        s["api_connections_open"], 1,
        "the old one closed once idle: {s}"
    );
}

/// `Dialer::connect_transport` opens the path the WebSocket connections
/// take (TCP, TLS with the cached connector) without the upgrade, for
/// speaking another protocol over it: here the upgrade is done by hand over
/// it, and the API answers.
#[test]
fn connect_transport_opens_the_same_path_without_the_upgrade() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::MaybeTlsStream;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for ex in [Exchange::start(&[]), Exchange::start_plain(&[])] {
        let cfg = config(&ex);
        let dialer = binance_uds::engine::testing::dialer(&cfg, &cfg.endpoint).unwrap();
        rt.block_on(async {
            let transport = dialer.connect_transport(&cfg.endpoint).await.unwrap();
            let tls = matches!(transport, MaybeTlsStream::NativeTls(_));
            assert_eq!(tls, cfg.endpoint.tls, "{}", cfg.endpoint.url());
            let (mut ws, _) = tokio_tungstenite::client_async(cfg.endpoint.url(), transport)
                .await
                .unwrap();
            let request = format!(
                r#"{{"id":1,"method":"userDataStream.start","params":{{"apiKey":"{KEY}"}}}}"#
            );
            ws.send(Message::text(request)).await.unwrap();
            let answer = ws.next().await.unwrap().unwrap();
            assert!(
                answer.to_text().unwrap().contains("listenKey"),
                "{answer:?}"
            );
        });
    }
}
