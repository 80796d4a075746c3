//! The three products the library speaks (`binance_config_set_product`),
//! as a list the core tests run over: each with its endpoints on the local
//! exchange and the names its faults are injected by.

use super::Exchange;
use binance_uds::engine::Config;

/// One product as the tests drive it.
#[derive(Clone, Copy, Debug)]
pub struct Product {
    /// As the local exchange's control commands name it.
    pub name: &'static str,
    /// `BINANCE_PRODUCT_*`.
    pub code: i32,
    /// The request that keeps the listenKey alive, as a fault names it.
    pub keepalive: &'static str,
    /// The request that obtains it.
    pub start: &'static str,
}

pub const USDM: Product = Product {
    name: "usdm",
    code: 0,
    keepalive: "userDataStream.ping",
    start: "userDataStream.start",
};
pub const COINM: Product = Product {
    name: "coinm",
    code: 1,
    keepalive: "userDataStream.ping",
    start: "userDataStream.start",
};
pub const PM: Product = Product {
    name: "pm",
    code: 2,
    keepalive: "PUT /papi/v1/listenKey",
    start: "POST /papi/v1/listenKey",
};

/// Every product, for the tests that must hold for each.
pub const ALL: [Product; 3] = [USDM, COINM, PM];

/// A config of `product` for this exchange (its CA, `api_key`, short
/// timeouts and backoff, as `common::config`), pointed at the product's
/// WebSocket API, stream and REST endpoints there.
pub fn config(ex: &Exchange, product: Product, api_key: &str) -> Config {
    let mut c = super::config(ex, api_key, 5000, 500);
    c.set_product(product.code).unwrap();
    c.set_rest_endpoint(&ex.rest).unwrap();
    match product.code {
        1 => {
            c.set_endpoint(&ex.coinm_ws_api).unwrap();
            c.set_stream_endpoint(&ex.coinm_stream).unwrap();
        }
        2 => c.set_stream_endpoint(&ex.pm_stream).unwrap(),
        _ => {}
    }
    c
}

/// Runs `test` for every product, naming the product in any failure.
pub fn for_each(test: impl Fn(Product)) {
    for p in ALL {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| test(p)));
        if let Err(e) = r {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!("product {}: {msg}", p.name);
        }
    }
}
