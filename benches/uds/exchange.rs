//! The local exchange for the benchmark: the support crate's (tests/support),
//! with Binance's per-IP limits off, and its fields as this bench uses them.

pub use binance_uds_test_support::{finish_control, send_control};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::PathBuf;

pub struct Exchange {
    pub ws_api: String,
    pub stream: String,
    pub control: SocketAddr,
    pub ca_file: PathBuf,
    pub ca_pem: String,
    /// Killed (and its temp dir removed) on drop.
    _running: binance_uds_test_support::Exchange,
}

impl Exchange {
    /// Starts `local-exchange` (TLS, its own CA) and waits for its ready lines.
    pub fn start() -> Exchange {
        // Benchmarks open hundreds of connections and run keepalives back
        // to back: far above Binance's per-IP limits, on purpose.
        // String stream ids: the official SDKs send them (the peers' event
        // rows); the library's integer ids are accepted either way.
        let ex = binance_uds_test_support::Exchange::start(&[
            "--stream-string-ids",
            "--api-weight-per-min",
            "0",
            "--stream-connects-per-5min",
            "0",
        ]);
        Exchange {
            ws_api: ex.ws_api.clone(),
            stream: ex.stream.clone(),
            control: ex.control,
            ca_file: ex.ca_file().to_path_buf(),
            ca_pem: ex.ca_pem().to_owned(),
            _running: ex,
        }
    }
}

/// Sends one control command and returns the answer; panics on `ok:false`.
pub fn control(addr: SocketAddr, cmd: &Value) -> Value {
    let pending = send_control(addr, cmd);
    finish_control(pending, cmd)
}
