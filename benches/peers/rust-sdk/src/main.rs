//! Benchmark peer: the official Rust SDK (`binance-sdk`, USDⓈ-M futures
//! WebSocket API) against the local exchange, as an application would use
//! it. Run by `benches/uds.rs` as a child process, alternating with the
//! library; prints one `RESULT {json}` line.
//!
//!   peer-rust-sdk cold WS_API CA_FILE API_KEY      first listenKey, in µs
//!   peer-rust-sdk warm WS_API CA_FILE API_KEY N    N keepalives, each in µs
//!   peer-rust-sdk events WS_API STREAM CA_FILE API_KEY N WARMUP
//!       prints `READY` once its user stream is subscribed, then the latency
//!       of N events after WARMUP unmeasured ones: the wall clock as the
//!       SDK's callback gets the event minus the exchange's send time, which
//!       the benchmark's events carry as their client order id `o.c` (ns)
//!
//! The SDK is pointed at loopback with its documented `ws_url`, and trusts
//! the exchange's CA through `agent` (a native-tls connector with the CA
//! added to the system roots, as the library builds). Its user stream is
//! subscribed as its docs show: `DerivativesTradingUsdsFuturesWsStreams`,
//! `user_data(listen_key, None)`, `on_message`.

use binance_sdk::config::{
    AgentConnector, ConfigurationWebsocketApi, ConfigurationWebsocketStreams,
};
use binance_sdk::derivatives_trading_usds_futures::websocket_api::{
    KeepaliveUserDataStreamParams, StartUserDataStreamParams, WebsocketApi,
};
use binance_sdk::derivatives_trading_usds_futures::websocket_streams::UserDataStreamEventsResponse;
use binance_sdk::derivatives_trading_usds_futures::{
    DerivativesTradingUsdsFuturesWsApi, DerivativesTradingUsdsFuturesWsStreams,
};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn connector(ca_file: &str) -> AgentConnector {
    let pem = std::fs::read(ca_file).expect("read the CA file");
    let ca = native_tls::Certificate::from_pem(&pem).expect("CA PEM");
    let tls = native_tls::TlsConnector::builder()
        .add_root_certificate(ca)
        .build()
        .expect("TLS connector");
    AgentConnector(tokio_tungstenite::Connector::NativeTls(tls))
}

async fn connect(ws_api: &str, ca_file: &str, api_key: &str) -> WebsocketApi {
    let config = ConfigurationWebsocketApi::builder()
        .api_key(api_key)
        // The SDK wants a secret; user-stream calls are not signed.
        .api_secret("unused")
        .ws_url(ws_api)
        .agent(connector(ca_file))
        .build()
        .expect("SDK config");
    DerivativesTradingUsdsFuturesWsApi::from_config(config)
        .connect()
        .await
        .expect("SDK connect")
}

async fn start(api: &WebsocketApi) -> String {
    let answer = api
        .start_user_data_stream(StartUserDataStreamParams::default())
        .await
        .expect("userDataStream.start");
    answer
        .data()
        .expect("start answer")
        .listen_key
        .expect("a listenKey")
}

async fn keepalive(api: &WebsocketApi) -> String {
    let answer = api
        .keepalive_user_data_stream(KeepaliveUserDataStreamParams::default())
        .await
        .expect("userDataStream.ping");
    answer
        .data()
        .expect("keepalive answer")
        .listen_key
        .expect("a listenKey")
}

/// The latency (µs) of one event from its send time in `o.c`.
fn latency_us(event: &UserDataStreamEventsResponse, now_ns: u128) -> Result<f64, String> {
    let UserDataStreamEventsResponse::OrderTradeUpdate(update) = event else {
        return Err("an event other than ORDER_TRADE_UPDATE".into());
    };
    let sent: u128 = update
        .o
        .as_ref()
        .and_then(|o| o.c.as_deref())
        .and_then(|c| c.parse().ok())
        .ok_or("ORDER_TRADE_UPDATE without the send time in o.c")?;
    Ok(now_ns.saturating_sub(sent) as f64 / 1000.0)
}

/// `events`: subscribes, says READY, returns N latencies after WARMUP.
fn events(rt: &tokio::runtime::Runtime, a: &dyn Fn(usize) -> String) -> serde_json::Value {
    let (ws_api, stream, ca_file, api_key) = (a(1), a(2), a(3), a(4));
    let n: usize = a(5).parse().expect("N");
    let warmup: usize = a(6).parse().expect("WARMUP");
    let (tx, rx) = std::sync::mpsc::channel();
    // Kept alive until the events are in.
    let _kept = rt.block_on(async {
        let api = connect(&ws_api, &ca_file, &api_key).await;
        let key = start(&api).await;
        // The SDK's streams base: it adds /private/stream (and /market, /public).
        let base = &stream[..stream.rfind("/private").unwrap_or(stream.len())];
        let config = ConfigurationWebsocketStreams::builder()
            .ws_url(base)
            .agent(connector(&ca_file))
            .build()
            .expect("SDK streams config");
        let streams = DerivativesTradingUsdsFuturesWsStreams::from_config(config)
            .connect()
            .await
            .expect("SDK streams connect");
        let user = streams.user_data(key, None).await.expect("user_data");
        user.on_message(move |event| {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            let _ = tx.send(latency_us(&event, now));
        });
        (api, streams, user)
    });
    println!("READY");
    let mut lat = Vec::with_capacity(n + warmup);
    while lat.len() < n + warmup {
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(Ok(us)) => lat.push(us),
            Ok(Err(e)) => panic!("{e}"),
            Err(_) => panic!("{} events in 60 s", lat.len()),
        }
    }
    serde_json::json!({ "samples": lat.split_off(warmup) })
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let a = |i: usize| args.get(i).map(String::as_str).unwrap_or("");
    let (ws_api, ca_file, api_key) = (a(1), a(2), a(3));
    // Timed from before the runtime, as the library's cold row is timed
    // from its first call.
    let t0 = Instant::now();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    if a(0) == "events" {
        let owned = |i: usize| a(i).to_string();
        println!("RESULT {}", events(&rt, &owned));
        std::process::exit(0);
    }
    let result = rt.block_on(async {
        match a(0) {
            "cold" => {
                let api = connect(ws_api, ca_file, api_key).await;
                let key = start(&api).await;
                assert_eq!(key.len(), 64);
                let us = t0.elapsed().as_secs_f64() * 1e6;
                let _ = api.disconnect().await;
                serde_json::json!({ "us": us })
            }
            "warm" => {
                let n: usize = a(4).parse().expect("N");
                let api = connect(ws_api, ca_file, api_key).await;
                start(&api).await;
                for _ in 0..n.min(300) {
                    keepalive(&api).await;
                }
                let mut samples = Vec::with_capacity(n);
                for _ in 0..n {
                    let t = Instant::now();
                    let key = keepalive(&api).await;
                    samples.push(t.elapsed().as_secs_f64() * 1e6);
                    assert_eq!(key.len(), 64);
                }
                let _ = api.disconnect().await;
                serde_json::json!({ "samples": samples })
            }
            other => panic!("unknown mode {other:?} (cold | warm | events)"),
        }
    });
    println!("RESULT {result}");
    // The SDK keeps background tasks; do not wait for them.
    std::process::exit(0);
}
