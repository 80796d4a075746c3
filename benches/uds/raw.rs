//! The raw floor: the same stack the library is built on (tokio,
//! tokio-tungstenite, native-tls, serde_json), used by hand with nothing
//! else: no session, no id routing, no timeouts, no error mapping. What the
//! library costs is measured against this.

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_native_tls::{TlsConnector, TlsStream};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

pub type Ws = WebSocketStream<TlsStream<TcpStream>>;

/// A connector trusting the system roots plus `ca_pem`, TLS 1.2 or later
/// (what the library builds, once per process).
pub fn connector(ca_pem: &str) -> TlsConnector {
    let ca = native_tls::Certificate::from_pem(ca_pem.as_bytes()).expect("CA PEM");
    let mut b = native_tls::TlsConnector::builder();
    b.min_protocol_version(Some(native_tls::Protocol::Tlsv12));
    b.add_root_certificate(ca);
    TlsConnector::from(b.build().expect("TLS connector"))
}

/// `wss://HOST:PORT/...` -> ("HOST", "HOST:PORT").
fn host_and_addr(url: &str) -> (&str, &str) {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let addr = rest.split('/').next().unwrap_or(rest);
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    (host, addr)
}

/// TCP, TLS, WebSocket upgrade. The read buffer is the library's (16 KiB)
/// so memory comparisons are like for like.
pub async fn connect(cx: &TlsConnector, url: &str) -> Ws {
    let (host, addr) = host_and_addr(url);
    let tcp = TcpStream::connect(addr).await.expect("TCP connect");
    tcp.set_nodelay(true).expect("nodelay");
    let tls = cx.connect(host, tcp).await.expect("TLS handshake");
    let config = WebSocketConfig::default().read_buffer_size(16 << 10);
    tokio_tungstenite::client_async_with_config(url, tls, Some(config))
        .await
        .expect("WebSocket upgrade")
        .0
}

/// A user data stream by hand, the way Binance's own SDKs open it:
/// `<stream base>/stream`, SUBSCRIBE with the key, wait for the answer.
/// Events then arrive wrapped as `{"stream":key,"data":{...}}`.
pub async fn subscribe(cx: &TlsConnector, stream_base: &str, key: &str) -> Ws {
    let mut ws = connect(cx, &format!("{stream_base}/stream")).await;
    subscribe_keys(&mut ws, 1, &[key]).await;
    ws
}

/// One SUBSCRIBE of `keys` (several streams in one message, as Binance
/// allows up to 1024 streams a connection) with request `id`; returns once
/// its answer arrived. Panics on an error answer, naming it.
pub async fn subscribe_keys(ws: &mut Ws, id: u64, keys: &[impl AsRef<str>]) {
    let params: Vec<&str> = keys.iter().map(AsRef::as_ref).collect();
    let req = serde_json::json!({"method": "SUBSCRIBE", "params": params, "id": id});
    ws.send(Message::text(req.to_string()))
        .await
        .expect("send SUBSCRIBE");
    loop {
        let text = next_text(ws).await;
        let v: Value = serde_json::from_str(&text).expect("answer is JSON");
        if v["id"].as_u64() == Some(id) {
            assert!(v.get("error").is_none(), "SUBSCRIBE refused: {text}");
            return;
        }
    }
}

/// A request as Binance documents it.
pub fn request(id: u64, method: &str, api_key: &str) -> String {
    format!(r#"{{"id":{id},"method":"{method}","params":{{"apiKey":"{api_key}"}}}}"#)
}

/// The listenKey of an answer, parsed with serde_json.
pub fn listen_key(text: &str) -> String {
    let v: Value = serde_json::from_str(text).expect("answer is JSON");
    v["result"]["listenKey"]
        .as_str()
        .expect("answer has a listenKey")
        .to_owned()
}

/// The next text message (control frames are handled by tungstenite).
pub async fn next_text(ws: &mut Ws) -> Utf8Bytes {
    loop {
        match ws.next().await.expect("connection open").expect("read") {
            Message::Text(t) => return t,
            Message::Close(_) => panic!("server closed the connection"),
            _ => {}
        }
    }
}

/// One request and its answer on an open connection: send, read, parse.
pub async fn call(ws: &mut Ws, id: u64, method: &str, api_key: &str) -> String {
    ws.send(Message::text(request(id, method, api_key)))
        .await
        .expect("send");
    listen_key(&next_text(ws).await)
}

/// Row 1, the floor: a fresh process's first listenKey by hand. Runtime and
/// connector, then TCP + TLS + upgrade, request and parsed answer, close.
/// Returns the key and each step's time in µs.
pub fn cold_first_key(ws_api: &str, ca_pem: &str, api_key: &str) -> (String, [f64; 4]) {
    let t0 = std::time::Instant::now();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let cx = connector(ca_pem);
    let t1 = std::time::Instant::now();
    let mut ws = rt.block_on(connect(&cx, ws_api));
    let t2 = std::time::Instant::now();
    let key = rt.block_on(call(&mut ws, 1, "userDataStream.start", api_key));
    let t3 = std::time::Instant::now();
    let _ = rt.block_on(ws.close(None));
    drop(ws);
    drop(rt);
    let t4 = std::time::Instant::now();
    let us = |a: std::time::Instant, b: std::time::Instant| (b - a).as_secs_f64() * 1e6;
    (key, [us(t0, t1), us(t1, t2), us(t2, t3), us(t3, t4)])
}

/// `fut`, polled without ever sleeping: between polls the task yields to
/// the runtime, whose current-thread scheduler then checks the sockets
/// with a zero-timeout epoll instead of sleeping in it. On a machine where
/// a thread's wake-up costs tens of microseconds this is the fastest way
/// to wait for an answer that is microseconds away, for one CPU's worth of
/// spinning.
pub async fn busy<F: std::future::Future>(fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    loop {
        tokio::select! {
            biased;
            out = &mut fut => return out,
            _ = tokio::task::yield_now() => {}
        }
    }
}
