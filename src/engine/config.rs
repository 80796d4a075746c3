//! The configuration a client is built from: checked when set, copied when
//! the client is created.

use super::error::{Error, Result};
use super::net::proxy::{self, Proxy};
use super::net::tls;
use super::net::url::Endpoint;
use super::rest::sign::SigningKey;
use super::secret::Secret;
use std::sync::Arc;
use std::time::Duration;

pub const PRODUCTION_WS_API: &str = "wss://ws-fapi.binance.com/ws-fapi/v1";
pub const TESTNET_WS_API: &str = "wss://testnet.binancefuture.com/ws-fapi/v1";
pub const PRODUCTION_STREAM: &str = "wss://fstream.binance.com/private";
pub const TESTNET_STREAM: &str = "wss://fstream.binancefuture.com/private";
/// REST base URLs (USDⓈ-M Futures general info: production, and the testnet
/// host the 2025 page gives, `demo-fapi`).
pub const PRODUCTION_REST: &str = "https://fapi.binance.com";
pub const TESTNET_REST: &str = "https://demo-fapi.binance.com";
/// COIN-M Futures (Binance's COIN-M WebSocket API and user data stream
/// pages; the stream base is the host: the official SDKs connect to
/// `<host>/stream` and SUBSCRIBE, there is no `/private` route).
pub const COINM_PRODUCTION_WS_API: &str = "wss://ws-dapi.binance.com/ws-dapi/v1";
pub const COINM_TESTNET_WS_API: &str = "wss://testnet.binancefuture.com/ws-dapi/v1";
pub const COINM_PRODUCTION_STREAM: &str = "wss://dstream.binance.com";
pub const COINM_TESTNET_STREAM: &str = "wss://dstream.binancefuture.com";
pub const COINM_PRODUCTION_REST: &str = "https://dapi.binance.com";
pub const COINM_TESTNET_REST: &str = "https://testnet.binancefuture.com";
/// Portfolio Margin: no WebSocket API (the listenKey is kept over REST,
/// `/papi/v1/listenKey`); the stream is `<base>/stream` on `/pm` as the
/// official SDKs use it. Binance publishes no PM testnet.
pub const PM_PRODUCTION_STREAM: &str = "wss://fstream.binance.com/pm";
pub const PM_PRODUCTION_REST: &str = "https://papi.binance.com";

/// Which Binance futures product a client speaks to. Everything that
/// differs between them is chosen from this: default endpoints, how the
/// listenKey is obtained and kept alive, the resync recipe, the budget.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Product {
    #[default]
    UsdM,
    CoinM,
    PortfolioMargin,
}

impl Product {
    pub fn from_code(code: i32) -> Result<Product> {
        Ok(match code {
            0 => Product::UsdM,
            1 => Product::CoinM,
            2 => Product::PortfolioMargin,
            _ => {
                return Err(Error::invalid(format!(
                    "product: {code} is not a product (BINANCE_PRODUCT_USDM, BINANCE_PRODUCT_COINM or BINANCE_PRODUCT_PORTFOLIO_MARGIN)"
                )))
            }
        })
    }

    /// The production defaults: WebSocket API, stream base, REST base.
    /// Portfolio Margin has no WebSocket API: its listenKey goes over REST
    /// and its API endpoint is never connected to (the USDⓈ-M one stands
    /// in so that the field stays valid).
    pub fn production(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Product::UsdM => (PRODUCTION_WS_API, PRODUCTION_STREAM, PRODUCTION_REST),
            Product::CoinM => (
                COINM_PRODUCTION_WS_API,
                COINM_PRODUCTION_STREAM,
                COINM_PRODUCTION_REST,
            ),
            Product::PortfolioMargin => {
                (PRODUCTION_WS_API, PM_PRODUCTION_STREAM, PM_PRODUCTION_REST)
            }
        }
    }

    /// The listenKey is kept over REST (`/papi/v1/listenKey`), not the
    /// WebSocket API.
    pub fn rest_listen_key(self) -> bool {
        self == Product::PortfolioMargin
    }

    /// The name used in JSON and by the bindings.
    pub fn name(self) -> &'static str {
        match self {
            Product::UsdM => "usdm",
            Product::CoinM => "coinm",
            Product::PortfolioMargin => "pm",
        }
    }
}

/// Binance's default and largest `recvWindow`, in ms.
pub const DEFAULT_RECV_WINDOW_MS: u32 = 5000;
pub const MAX_RECV_WINDOW_MS: u32 = 60_000;

/// The longest API key accepted (Binance's are 64 characters).
pub const MAX_API_KEY_LEN: usize = 256;
/// Streams on one stream connection unless the config says otherwise.
pub const DEFAULT_STREAMS_PER_CONNECTION: usize = 200;
/// Root certificates a config may add.
const MAX_EXTRA_ROOTS: usize = 256;
/// The longest timeout accepted, in ms (one hour).
pub const MAX_TIMEOUT_MS: u32 = 3_600_000;
/// The largest event queue accepted.
pub const MAX_QUEUE_CAPACITY: u32 = 1_000_000;
/// Stream connections must be rotated before Binance's 24 h limit.
pub const MAX_ROTATION_MS: u32 = 23 * 3600 * 1000 + 59 * 60 * 1000;

/// The most streams Binance allows on one connection.
pub const MAX_STREAMS_PER_CONNECTION: u32 = 1024;

/// How a stream connection subscribes its listenKey.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StreamForm {
    /// `<base>/stream`, then `SUBSCRIBE` with the key; events wrapped as
    /// `{"stream":"<key>","data":{...}}` (what Binance's own SDKs do).
    Subscribe,
    /// `<base>/ws?listenKey=<key>`; events bare; one key per connection.
    Query,
}

#[derive(Clone, Debug)]
pub struct Config {
    pub api_key: Option<Secret>,
    pub endpoint: Endpoint,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    /// Extra trusted roots, one PEM certificate each.
    pub extra_roots: Arc<[String]>,
    pub stream_endpoint: Endpoint,
    pub keepalive_interval: Duration,
    /// The proxy set explicitly; `None` falls back to HTTPS_PROXY.
    pub proxy: Option<Proxy>,
    /// Events the user stream queue holds before it drops the oldest.
    pub queue_capacity: usize,
    /// A stream silent (no frame at all) this long is replaced.
    pub silence_timeout: Duration,
    /// Stream connections are rotated this long after they open, before the
    /// server's 24 h limit.
    pub rotate_after: Duration,
    /// WebSocket API connections are replaced after this, before the
    /// server's 24 h limit.
    pub api_rotate_after: Duration,
    /// Reconnection backoff: first delay and cap.
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    pub stream_form: StreamForm,
    /// Streams of clients configured alike share stream connections.
    pub connection_sharing: bool,
    /// Subscriptions one shared stream connection carries at most.
    pub stream_subscriptions_per_connection: usize,
    /// The key signed REST requests use (the account snapshot); at most one.
    pub signing_key: Option<SigningKey>,
    /// The REST base URL.
    pub rest_endpoint: Endpoint,
    /// `recvWindow` sent with signed requests.
    pub recv_window_ms: u32,
    /// Streams fetch the account snapshot when they open and after every
    /// gap, and deliver it in order (`binance.account_snapshot`).
    pub account_resync: bool,
    /// A stream's open returns once its subscription is acknowledged
    /// (default), or as soon as it is sent (`binance.stream_subscribed`
    /// says when it is live).
    pub open_waits: bool,
    /// The local address every connection leaves from (None: the
    /// system's choice); each address has its own request budget.
    pub source_address: Option<std::net::IpAddr>,
    /// The share of the request budget resync snapshots may draw, percent.
    pub snapshot_budget_percent: u32,
    pub product: Product,
    /// Which of the WebSocket API, stream and REST endpoints were set
    /// explicitly (a product change leaves those alone).
    pub endpoints_set: [bool; 3],
}

impl Default for Config {
    fn default() -> Config {
        Config {
            api_key: None,
            endpoint: Endpoint::parse(PRODUCTION_WS_API, "endpoint").expect("valid default"),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(10),
            extra_roots: Arc::from(Vec::new()),
            stream_endpoint: Endpoint::parse(PRODUCTION_STREAM, "url").expect("valid default"),
            keepalive_interval: Duration::from_secs(30 * 60),
            proxy: None,
            queue_capacity: 4096,
            silence_timeout: Duration::from_secs(5 * 60),
            rotate_after: Duration::from_secs(23 * 3600),
            api_rotate_after: Duration::from_secs(23 * 3600),
            backoff_initial: Duration::from_millis(250),
            backoff_max: Duration::from_secs(30),
            stream_form: StreamForm::Subscribe,
            connection_sharing: true,
            // Well under Binance's 1024: a lost connection is a gap for
            // every stream on it, and 1000 accounts still fit on 5.
            stream_subscriptions_per_connection: DEFAULT_STREAMS_PER_CONNECTION,
            signing_key: None,
            rest_endpoint: Endpoint::parse_http(PRODUCTION_REST, "url").expect("valid default"),
            recv_window_ms: DEFAULT_RECV_WINDOW_MS,
            account_resync: false,
            open_waits: true,
            source_address: None,
            snapshot_budget_percent: super::rest::budget::DEFAULT_SNAPSHOT_PERCENT,
            product: Product::UsdM,
            endpoints_set: [false; 3],
        }
    }
}

impl Config {
    pub fn set_api_key(&mut self, key: &str) -> Result<()> {
        if key.is_empty() {
            return Err(Error::invalid("api_key: must not be empty"));
        }
        if key.len() > MAX_API_KEY_LEN {
            return Err(Error::invalid(format!(
                "api_key: longer than {MAX_API_KEY_LEN} bytes"
            )));
        }
        if !key.bytes().all(|b| b.is_ascii_graphic()) {
            // Say what is wrong without showing the key.
            return Err(Error::invalid(
                "api_key: must be printable ASCII without spaces",
            ));
        }
        self.api_key = Some(Secret::new(key));
        Ok(())
    }

    /// Sets the HMAC-SHA256 secret key signed requests use (replacing an
    /// Ed25519 key set before).
    pub fn set_secret_key(&mut self, secret: &str) -> Result<()> {
        self.signing_key = Some(SigningKey::hmac(secret, "secret")?);
        Ok(())
    }

    /// Sets the Ed25519 private key (PKCS#8 PEM) signed requests use
    /// (replacing an HMAC secret set before).
    pub fn set_private_key_pem(&mut self, pem: &str) -> Result<()> {
        self.signing_key = Some(SigningKey::ed25519_pem(pem, "pem")?);
        Ok(())
    }

    pub fn set_rest_endpoint(&mut self, url: &str) -> Result<()> {
        self.rest_endpoint = Endpoint::parse_http(url, "url")?;
        self.endpoints_set[2] = true;
        Ok(())
    }

    /// Chooses the product; the endpoints not set explicitly become the
    /// product's production defaults.
    pub fn set_product(&mut self, code: i32) -> Result<()> {
        let product = Product::from_code(code)?;
        let (api, stream, rest) = product.production();
        if !self.endpoints_set[0] {
            self.endpoint = Endpoint::parse(api, "endpoint").expect("valid default");
        }
        if !self.endpoints_set[1] {
            self.stream_endpoint = Endpoint::parse(stream, "url").expect("valid default");
        }
        if !self.endpoints_set[2] {
            self.rest_endpoint = Endpoint::parse_http(rest, "url").expect("valid default");
        }
        self.product = product;
        Ok(())
    }

    pub fn set_open_waits_for_subscription(&mut self, wait: i32) -> Result<()> {
        self.open_waits = flag("wait", wait)?;
        Ok(())
    }

    pub fn set_account_resync(&mut self, enabled: i32) -> Result<()> {
        self.account_resync = flag("enabled", enabled)?;
        Ok(())
    }

    /// Binds every connection to `address` (an IPv4 or IPv6 literal), or
    /// clears the binding (None).
    pub fn set_source_address(&mut self, address: Option<&str>) -> Result<()> {
        self.source_address = match address {
            None => None,
            Some(a) => Some(a.trim().parse().map_err(|_| {
                Error::invalid(format!(
                    "address: {:?} is not an IPv4 or IPv6 address",
                    super::text::truncate(a, 64)
                ))
            })?),
        };
        Ok(())
    }

    pub fn set_snapshot_budget_percent(&mut self, percent: u32) -> Result<()> {
        if !(1..=100).contains(&percent) {
            return Err(Error::invalid(format!(
                "percent: {percent} is out of range (1 to 100)"
            )));
        }
        self.snapshot_budget_percent = percent;
        Ok(())
    }

    /// The request budget this config's clients draw on: one per source
    /// address and server (the sites of the WebSocket API and REST
    /// endpoints: `binance.com` for all of Binance's hosts). USDⓈ-M and
    /// COIN-M share one (Binance counts fapi and dapi together since
    /// 2026-06-30); Portfolio Margin, whose API is REST only and counted
    /// apart (its own General Info page), has its own, named `<site> pm`.
    pub fn budget(&self) -> std::sync::Arc<super::rest::budget::Budget> {
        use super::rest::budget::{site_of, Budget, BudgetKey};
        let rest = site_of(&self.rest_endpoint);
        let site = if self.product == Product::PortfolioMargin {
            format!("{rest} pm")
        } else {
            let api = site_of(&self.endpoint);
            if api == rest {
                api
            } else {
                format!("{api} {rest}")
            }
        };
        Budget::of(BudgetKey {
            source: self.source_address,
            site,
        })
    }

    pub fn set_recv_window_ms(&mut self, ms: u32) -> Result<()> {
        if !(1..=MAX_RECV_WINDOW_MS).contains(&ms) {
            return Err(Error::invalid(format!(
                "ms: recvWindow {ms} is out of range (1 to {MAX_RECV_WINDOW_MS}, Binance's limit)"
            )));
        }
        self.recv_window_ms = ms;
        Ok(())
    }

    pub fn set_endpoint(&mut self, url: &str) -> Result<()> {
        self.endpoint = Endpoint::parse(url, "url")?;
        self.endpoints_set[0] = true;
        Ok(())
    }

    pub fn set_stream_endpoint(&mut self, url: &str) -> Result<()> {
        self.stream_endpoint = Endpoint::parse(url, "url")?;
        self.endpoints_set[1] = true;
        Ok(())
    }

    pub fn set_timeouts_ms(&mut self, connect_ms: u32, request_ms: u32) -> Result<()> {
        for (name, v) in [("connect_ms", connect_ms), ("request_ms", request_ms)] {
            if v == 0 || v > MAX_TIMEOUT_MS {
                return Err(Error::invalid(format!(
                    "{name}: timeout {v} is out of range (1 to {MAX_TIMEOUT_MS})"
                )));
            }
        }
        self.connect_timeout = Duration::from_millis(connect_ms.into());
        self.request_timeout = Duration::from_millis(request_ms.into());
        Ok(())
    }

    pub fn add_root_certificate_pem(&mut self, pem: &str) -> Result<()> {
        let certs = tls::parse_pem_bundle_cached(pem, "pem")?;
        if self.extra_roots.is_empty() && certs.len() <= MAX_EXTRA_ROOTS {
            // The cached set itself: no copy per config.
            self.extra_roots = certs;
            return Ok(());
        }
        let mut all: Vec<String> = self.extra_roots.to_vec();
        for c in certs.iter().cloned() {
            if !all.contains(&c) {
                all.push(c);
            }
        }
        if all.len() > MAX_EXTRA_ROOTS {
            return Err(Error::invalid("pem: more than 256 extra root certificates"));
        }
        self.extra_roots = Arc::from(all);
        Ok(())
    }

    pub fn set_keepalive_interval_ms(&mut self, ms: u32) -> Result<()> {
        // A key lives 60 minutes; a keepalive must come well before that.
        if !(100..=55 * 60 * 1000).contains(&ms) {
            return Err(Error::invalid(format!(
                "ms: keepalive interval {ms} is out of range (100 to 3300000; the key lives 60 minutes)"
            )));
        }
        self.keepalive_interval = Duration::from_millis(ms.into());
        Ok(())
    }

    pub fn set_event_queue_capacity(&mut self, capacity: u32) -> Result<()> {
        if !(1..=MAX_QUEUE_CAPACITY).contains(&capacity) {
            return Err(Error::invalid(format!(
                "capacity: event queue capacity {capacity} is out of range (1 to {MAX_QUEUE_CAPACITY})"
            )));
        }
        self.queue_capacity = capacity as usize;
        Ok(())
    }

    pub fn set_silence_timeout_ms(&mut self, ms: u32) -> Result<()> {
        if !(100..=MAX_TIMEOUT_MS).contains(&ms) {
            return Err(Error::invalid(format!(
                "ms: silence timeout {ms} is out of range (100 to {MAX_TIMEOUT_MS})"
            )));
        }
        self.silence_timeout = Duration::from_millis(ms.into());
        Ok(())
    }

    pub fn set_stream_rotation_ms(&mut self, ms: u32) -> Result<()> {
        // Binance closes stream connections at 24 h; rotate before that.
        if !(500..=MAX_ROTATION_MS).contains(&ms) {
            return Err(Error::invalid(format!(
                "ms: stream rotation {ms} is out of range (500 to {MAX_ROTATION_MS}, under the server's 24 h limit)"
            )));
        }
        self.rotate_after = Duration::from_millis(ms.into());
        Ok(())
    }

    pub fn set_reconnect_backoff_ms(&mut self, initial_ms: u32, max_ms: u32) -> Result<()> {
        if !(1..=MAX_TIMEOUT_MS).contains(&initial_ms) {
            return Err(Error::invalid(format!(
                "initial_ms: reconnect backoff {initial_ms} is out of range (1 to {MAX_TIMEOUT_MS})"
            )));
        }
        if !(initial_ms..=MAX_TIMEOUT_MS).contains(&max_ms) {
            return Err(Error::invalid(format!(
                "max_ms: reconnect backoff cap {max_ms} is out of range (initial_ms to {MAX_TIMEOUT_MS})"
            )));
        }
        self.backoff_initial = Duration::from_millis(initial_ms.into());
        self.backoff_max = Duration::from_millis(max_ms.into());
        Ok(())
    }

    /// What decides whether two clients' connections to `endpoint` are
    /// interchangeable, as a hash: the endpoint, the proxy that reaches it
    /// (credentials included), the extra roots and the timeouts, and
    /// whatever `more` the caller adds. Clients with equal identities
    /// share connections.
    pub fn connection_identity(
        &self,
        endpoint: &Endpoint,
        proxy: Option<&Proxy>,
        more: impl std::hash::Hash,
    ) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        endpoint.hash(&mut h);
        proxy
            .map(|p| (&p.host, p.port, p.credentials.as_ref().map(|c| c.expose())))
            .hash(&mut h);
        self.extra_roots.hash(&mut h);
        (self.connect_timeout, self.request_timeout).hash(&mut h);
        self.source_address.hash(&mut h);
        // One product's accounts share connections only with its own.
        self.product.hash(&mut h);
        more.hash(&mut h);
        h.finish()
    }

    pub fn set_stream_form(&mut self, form: i32) -> Result<()> {
        self.stream_form = match form {
            0 => StreamForm::Subscribe,
            1 => StreamForm::Query,
            _ => {
                return Err(Error::invalid(format!(
                    "form: {form} is not a stream form (BINANCE_STREAM_FORM_SUBSCRIBE or BINANCE_STREAM_FORM_QUERY)"
                )))
            }
        };
        Ok(())
    }

    pub fn set_connection_sharing(&mut self, enabled: i32) -> Result<()> {
        self.connection_sharing = flag("enabled", enabled)?;
        Ok(())
    }

    pub fn set_stream_subscriptions_per_connection(&mut self, n: u32) -> Result<()> {
        if !(1..=MAX_STREAMS_PER_CONNECTION).contains(&n) {
            return Err(Error::invalid(format!(
                "n: {n} subscriptions per connection is out of range (1 to {MAX_STREAMS_PER_CONNECTION}, Binance's limit)"
            )));
        }
        self.stream_subscriptions_per_connection = n as usize;
        Ok(())
    }

    pub fn set_proxy(&mut self, url: &str) -> Result<()> {
        self.proxy = Some(Proxy::parse(url, "url")?);
        Ok(())
    }

    /// The proxy to use for `endpoint`: the explicit one, else the
    /// environment's ([`proxy::from_env`]).
    pub fn proxy_for(&self, endpoint: &Endpoint) -> Result<Option<Proxy>> {
        match &self.proxy {
            Some(p) => Ok(Some(p.clone())),
            None => proxy::from_env(endpoint),
        }
    }
}

/// A C boolean argument named `name`: 0 or 1, nothing else.
fn flag(name: &str, v: i32) -> Result<bool> {
    match v {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(Error::invalid(format!("{name}: {v} is not 0 or 1"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_production() {
        let c = Config::default();
        assert_eq!(c.endpoint.url(), PRODUCTION_WS_API);
        assert_eq!(c.stream_endpoint.url(), PRODUCTION_STREAM);
        assert_eq!(c.connect_timeout, Duration::from_secs(10));
        assert_eq!(c.request_timeout, Duration::from_secs(10));
        assert_eq!(c.keepalive_interval, Duration::from_secs(1800));
        assert!(c.api_key.is_none());
    }

    #[test]
    fn api_key_checks_never_echo_the_key() {
        let mut c = Config::default();
        assert!(c.set_api_key("").is_err());
        let e = c.set_api_key("has space SECRET").unwrap_err();
        assert!(!e.message.contains("SECRET"));
        assert!(c.set_api_key(&"k".repeat(300)).is_err());
        c.set_api_key("vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A")
            .unwrap();
        assert!(!format!("{c:?}").contains("vmPUZE6"));
    }

    #[test]
    fn signing_keys_and_rest_settings() {
        let mut c = Config::default();
        assert_eq!(c.rest_endpoint.http_url(), format!("{PRODUCTION_REST}/"));
        assert_eq!(c.recv_window_ms, 5000);
        assert!(c.signing_key.is_none());
        c.set_secret_key("S3cr3tS3cr3t").unwrap();
        assert!(matches!(c.signing_key, Some(SigningKey::Hmac(_))));
        assert!(!format!("{c:?}").contains("S3cr3t"));
        let e = c.set_private_key_pem("S3cr3t").unwrap_err();
        assert!(e.message.starts_with("pem:") && !e.message.contains("S3cr3t"));
        assert!(
            matches!(c.signing_key, Some(SigningKey::Hmac(_))),
            "kept on error"
        );
        assert!(c.set_recv_window_ms(0).is_err());
        assert!(c
            .set_recv_window_ms(60_001)
            .unwrap_err()
            .message
            .starts_with("ms:"));
        c.set_recv_window_ms(60_000).unwrap();
        c.set_rest_endpoint(TESTNET_REST).unwrap();
        assert!(c.set_rest_endpoint("http://demo-fapi.binance.com").is_err());
    }

    #[test]
    fn a_product_brings_its_endpoints_but_keeps_those_set() {
        let mut c = Config::default();
        assert_eq!(c.product, Product::UsdM);
        c.set_product(1).unwrap();
        assert_eq!(c.endpoint.url(), COINM_PRODUCTION_WS_API);
        assert_eq!(
            c.stream_endpoint.join("stream").url(),
            "wss://dstream.binance.com/stream"
        );
        assert_eq!(
            c.rest_endpoint.http_url(),
            format!("{COINM_PRODUCTION_REST}/")
        );
        c.set_stream_endpoint("ws://127.0.0.1:9/x").unwrap();
        c.set_product(2).unwrap();
        assert_eq!(c.stream_endpoint.url(), "ws://127.0.0.1:9/x");
        assert_eq!(c.rest_endpoint.http_url(), format!("{PM_PRODUCTION_REST}/"));
        let e = c.set_product(3).unwrap_err();
        assert!(e.message.starts_with("product: 3"));
        assert_eq!(c.product, Product::PortfolioMargin, "kept on error");
    }

    #[test]
    fn coinm_shares_the_usdm_budget_and_pm_has_its_own() {
        let usdm = Config::default();
        let mut coinm = Config::default();
        coinm.set_product(1).unwrap();
        let mut pm = Config::default();
        pm.set_product(2).unwrap();
        assert!(std::sync::Arc::ptr_eq(&usdm.budget(), &coinm.budget()));
        assert!(!std::sync::Arc::ptr_eq(&usdm.budget(), &pm.budget()));
    }

    #[test]
    fn timeouts_in_range() {
        let mut c = Config::default();
        assert!(c
            .set_timeouts_ms(0, 10)
            .unwrap_err()
            .message
            .contains("connect_ms"));
        assert!(c
            .set_timeouts_ms(10, 0)
            .unwrap_err()
            .message
            .contains("request_ms"));
        assert!(c.set_timeouts_ms(10, MAX_TIMEOUT_MS + 1).is_err());
        c.set_timeouts_ms(250, 500).unwrap();
        assert_eq!(c.request_timeout, Duration::from_millis(500));
    }
}
