//! The engine: safe Rust, no FFI. The C face in the crate root only
//! translates to and from it.
//!
//! One folder per concern: `net/` (transport), `api/` (the WebSocket API
//! session), `rest/` (signed REST), `stream/` (the user data stream); the
//! files beside them are the small core every part shares. Everything is
//! crate-private but the facade at the end of this file.
//!
//! The facade is for the project's own tools (`cli/`, the benches, the
//! tests), not a stable API: programs use the C functions, whose ABI is
//! kept (CHANGELOG.md); the facade changes with the tools that use it.

pub(crate) mod api;
pub(crate) mod backoff;
pub(crate) mod client;
pub(crate) mod config;
pub(crate) mod error;
pub(crate) mod event;
pub(crate) mod gate;
pub(crate) mod net;
pub(crate) mod queue;
pub(crate) mod rest;
pub(crate) mod retry;
pub(crate) mod secret;
pub(crate) mod signal;
pub(crate) mod stream;
pub(crate) mod text;

// The facade. What the project's own tools (cli/, the benches, the tests)
// use of the engine, and nothing else: every module above is crate-private.
// It is not a stable API (the C functions are the library's API): it
// changes with the tools that use it.
pub use client::Client;
pub use config::{
    Config, Product, COINM_TESTNET_REST, COINM_TESTNET_STREAM, COINM_TESTNET_WS_API, TESTNET_REST,
    TESTNET_STREAM, TESTNET_WS_API,
};
pub use error::{Error, Result, Status};
pub use event::{
    Event, ACCOUNT_SNAPSHOT, ACCOUNT_SNAPSHOT_FAILED, LISTEN_KEY_RENEWED, STREAM_DISCONNECTED,
    STREAM_GAP, STREAM_SUBSCRIBED,
};
pub use rest::budget::View as BudgetView;
pub use rest::snapshot_weight;
pub use rest::SNAPSHOT_WEIGHT;
pub use stream::{Callback, Health, UserStream};

/// What only the tests reach into: parsers they fuzz, connection counters.
/// Built with the `test-support` feature, which the crate's own
/// dev-dependency on itself turns on; never part of a shipped build.
#[cfg(feature = "test-support")]
#[doc(hidden)]
pub mod testing {
    pub use super::client::dialer;
    pub use super::event::UNPARSED;
    pub use super::secret::Secret;
    pub use super::text::MAX_NESTING;

    /// The WebSocket API's answer parser.
    pub mod answer {
        pub use crate::engine::api::answer::{parse, Incoming};
    }
}

#[cfg(test)]
mod tests {
    /// The header's endpoint defines (written by build.rs, which cannot use
    /// the crate) say what the engine's constants say.
    #[test]
    fn the_header_endpoint_urls_are_the_engine_constants() {
        use super::config::*;
        let header = include_str!("../../include/binance_uds.h");
        for (name, url) in [
            ("BINANCE_WS_API_URL_PRODUCTION", PRODUCTION_WS_API),
            ("BINANCE_WS_API_URL_TESTNET", TESTNET_WS_API),
            ("BINANCE_STREAM_URL_PRODUCTION", PRODUCTION_STREAM),
            ("BINANCE_STREAM_URL_TESTNET", TESTNET_STREAM),
            ("BINANCE_REST_URL_PRODUCTION", PRODUCTION_REST),
            ("BINANCE_REST_URL_TESTNET", TESTNET_REST),
            (
                "BINANCE_COINM_WS_API_URL_PRODUCTION",
                COINM_PRODUCTION_WS_API,
            ),
            ("BINANCE_COINM_WS_API_URL_TESTNET", COINM_TESTNET_WS_API),
            (
                "BINANCE_COINM_STREAM_URL_PRODUCTION",
                COINM_PRODUCTION_STREAM,
            ),
            ("BINANCE_COINM_STREAM_URL_TESTNET", COINM_TESTNET_STREAM),
            ("BINANCE_COINM_REST_URL_PRODUCTION", COINM_PRODUCTION_REST),
            ("BINANCE_COINM_REST_URL_TESTNET", COINM_TESTNET_REST),
            ("BINANCE_PM_STREAM_URL_PRODUCTION", PM_PRODUCTION_STREAM),
            ("BINANCE_PM_REST_URL_PRODUCTION", PM_PRODUCTION_REST),
        ] {
            let define = format!("#define {name} \"{url}\"\n");
            assert!(header.contains(&define), "the header lacks {define}");
        }
        let defines = header
            .lines()
            .filter(|l| l.starts_with("#define ") && l.contains("_URL_"))
            .count();
        assert_eq!(defines, 14, "a URL define this test does not know");
    }
}
