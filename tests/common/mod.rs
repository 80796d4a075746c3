//! What the integration tests share, as `mod common;`: the support crate
//! (tests/support: the local exchange, `wait_for`, servers, certificates,
//! the RNG), re-exported whole, and the helpers that need the library
//! itself (a config for an exchange, reading a stream).
#![allow(dead_code)]

pub use binance_uds_test_support::*;

pub mod heal;
pub mod products;
pub mod stream;

/// A config for this exchange (WebSocket API and stream endpoints, its CA)
/// with `api_key`, both timeouts at `timeout_ms`, and a reconnect backoff
/// from 50 ms to `backoff_max_ms` so that tests do not wait on it.
pub fn config(
    ex: &Exchange,
    api_key: &str,
    timeout_ms: u32,
    backoff_max_ms: u32,
) -> binance_uds::engine::Config {
    let mut c = binance_uds::engine::Config::default();
    c.set_api_key(api_key).unwrap();
    c.set_endpoint(&ex.ws_api).unwrap();
    c.set_stream_endpoint(&ex.stream).unwrap();
    if let Some(pem) = &ex.ca_pem {
        c.add_root_certificate_pem(pem).unwrap();
    }
    c.set_timeouts_ms(timeout_ms, timeout_ms).unwrap();
    c.set_reconnect_backoff_ms(50, backoff_max_ms).unwrap();
    c
}
