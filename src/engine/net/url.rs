//! Endpoint URLs: parsed once, checked for what the library allows.

use crate::engine::error::{Error, Result};
use std::net::IpAddr;
use tokio_tungstenite::tungstenite::http::Uri;

/// The longest URL accepted; real endpoints are a fraction of this.
pub const MAX_URL_LEN: usize = 2048;

/// A WebSocket endpoint: `wss://host[:port]/path[?query]` (or `ws://` on
/// loopback).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Endpoint {
    pub tls: bool,
    /// Host name or IP literal, without IPv6 brackets.
    pub host: String,
    pub port: u16,
    /// Path and query, at least "/".
    pub path: String,
}

impl Endpoint {
    /// Parses and checks a WebSocket URL; `what` names the argument in errors.
    pub fn parse(url: &str, what: &str) -> Result<Endpoint> {
        Self::parse_with(url, what, &WEBSOCKET)
    }

    /// Parses and checks a REST base URL, `https://host[:port][/path]` (or
    /// `http://` on loopback), with no query: requests append their own
    /// path and query to it.
    pub fn parse_http(url: &str, what: &str) -> Result<Endpoint> {
        let e = Self::parse_with(url, what, &HTTP)?;
        if e.path.contains('?') || e.path.contains('#') {
            return Err(Error::invalid(format!(
                "{what}: a REST base URL takes no query or fragment"
            )));
        }
        Ok(e)
    }

    /// The URL of an endpoint from [`Endpoint::parse_http`].
    pub fn http_url(&self) -> String {
        let url = self.url();
        let rest = url.split_once("://").map_or("", |(_, r)| r);
        let scheme = if self.tls { HTTP.secure } else { HTTP.plain };
        format!("{scheme}://{rest}")
    }

    fn parse_with(url: &str, what: &str, schemes: &Schemes) -> Result<Endpoint> {
        let Schemes {
            secure,
            plain,
            kind,
        } = schemes;
        if url.len() > MAX_URL_LEN {
            return Err(Error::invalid(format!(
                "{what}: URL longer than {MAX_URL_LEN} bytes"
            )));
        }
        if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(Error::invalid(format!(
                "{what}: URL contains white space or control characters"
            )));
        }
        let uri: Uri = url
            .parse()
            .map_err(|e| Error::invalid(format!("{what}: not a valid URL ({e})")))?;
        let tls = match uri.scheme_str() {
            Some(s) if s == *secure => true,
            Some(s) if s == *plain => false,
            Some(other) => {
                return Err(Error::invalid(format!(
                    "{what}: scheme must be {secure}:// (or {plain}:// to loopback), not {other}://"
                )))
            }
            None => {
                return Err(Error::invalid(format!(
                    "{what}: URL must start with {secure}://"
                )))
            }
        };
        let authority = uri
            .authority()
            .ok_or_else(|| Error::invalid(format!("{what}: URL has no host")))?;
        if authority.as_str().contains('@') {
            return Err(Error::invalid(format!(
                "{what}: credentials in a {kind} URL are not supported"
            )));
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        if host.is_empty() {
            return Err(Error::invalid(format!("{what}: URL has no host")));
        }
        let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
        if port == 0 {
            return Err(Error::invalid(format!("{what}: port 0 is not valid")));
        }
        if !tls && !is_loopback(&host) {
            return Err(Error::invalid(format!(
                "{what}: plain {plain}:// is only allowed to a loopback host (localhost, 127.0.0.0/8, ::1); use {secure}://"
            )));
        }
        let path = uri
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "/".to_owned());
        Ok(Endpoint {
            tls,
            host,
            port,
            path,
        })
    }

    /// The same endpoint with `suffix` appended to its path (before any query).
    pub fn join(&self, suffix: &str) -> Endpoint {
        let (path, query) = match self.path.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (self.path.as_str(), None),
        };
        let mut joined = format!("{}/{}", path.trim_end_matches('/'), suffix);
        if let Some(q) = query {
            joined.push('?');
            joined.push_str(q);
        }
        Endpoint {
            path: joined,
            ..self.clone()
        }
    }

    /// `host:port`, with brackets around an IPv6 literal.
    pub fn authority(&self) -> String {
        host_port(&self.host, self.port)
    }

    pub fn url(&self) -> String {
        let default_port = if self.tls { 443 } else { 80 };
        let authority = if self.port == default_port {
            host_for_url(&self.host)
        } else {
            self.authority()
        };
        format!(
            "{}://{}{}",
            if self.tls { "wss" } else { "ws" },
            authority,
            self.path
        )
    }
}

/// The two schemes of one kind of URL, for parsing and printing.
struct Schemes {
    secure: &'static str,
    plain: &'static str,
    kind: &'static str,
}

const WEBSOCKET: Schemes = Schemes {
    secure: "wss",
    plain: "ws",
    kind: "WebSocket",
};
const HTTP: Schemes = Schemes {
    secure: "https",
    plain: "http",
    kind: "REST",
};

pub fn host_port(host: &str, port: u16) -> String {
    format!("{}:{port}", host_for_url(host))
}

/// The host as a URL writes it: an IPv6 literal in brackets.
pub(crate) fn host_for_url(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

/// `localhost`, 127.0.0.0/8 and ::1.
pub fn is_loopback(host: &str) -> bool {
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    host.parse::<IpAddr>()
        .map(|ip| ip.is_loopback())
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn parses_production_and_testnet() {
        let e = Endpoint::parse("wss://ws-fapi.binance.com/ws-fapi/v1", "url").unwrap();
        assert!(e.tls);
        assert_eq!(e.host, "ws-fapi.binance.com");
        assert_eq!(e.port, 443);
        assert_eq!(e.path, "/ws-fapi/v1");
        let e = Endpoint::parse(
            "wss://testnet.binancefuture.com:8443/ws-fapi/v1?returnRateLimits=false",
            "url",
        )
        .unwrap();
        assert_eq!(e.port, 8443);
        assert_eq!(e.path, "/ws-fapi/v1?returnRateLimits=false");
        assert_eq!(
            e.url(),
            "wss://testnet.binancefuture.com:8443/ws-fapi/v1?returnRateLimits=false"
        );
    }

    #[test]
    fn plain_ws_only_to_loopback() {
        assert!(Endpoint::parse("ws://127.0.0.1:9000/x", "url").is_ok());
        assert!(Endpoint::parse("ws://localhost:9000/x", "url").is_ok());
        assert!(Endpoint::parse("ws://[::1]:9000/x", "url").is_ok());
        let e = Endpoint::parse("ws://example.com/x", "url").unwrap_err();
        assert!(e.message.contains("loopback"), "{}", e.message);
        assert!(Endpoint::parse("ws://10.0.0.1/x", "url").is_err());
    }

    #[test]
    fn refuses_what_is_not_a_websocket_url() {
        for bad in [
            "",
            "https://x.com/",
            "ws-fapi.binance.com/ws",
            "wss://",
            "wss://a b/",
            "wss://user:pw@host/",
        ] {
            let e = Endpoint::parse(bad, "url").unwrap_err();
            assert!(e.message.starts_with("url:"), "{bad}: {}", e.message);
        }
        assert!(Endpoint::parse(&format!("wss://h/{}", "a".repeat(3000)), "url").is_err());
    }

    #[test]
    fn rest_base_urls() {
        let e = Endpoint::parse_http("https://fapi.binance.com", "url").unwrap();
        assert_eq!((e.tls, e.port, e.path.as_str()), (true, 443, "/"));
        assert_eq!(e.http_url(), "https://fapi.binance.com/");
        let e = Endpoint::parse_http("http://127.0.0.1:8080/gw", "url").unwrap();
        assert_eq!(e.http_url(), "http://127.0.0.1:8080/gw");
        for bad in [
            "wss://fapi.binance.com",
            "http://fapi.binance.com",
            "https://u:p@fapi.binance.com",
            "https://fapi.binance.com/?a=1",
        ] {
            let e = Endpoint::parse_http(bad, "url").unwrap_err();
            assert!(e.message.starts_with("url:"), "{bad}: {}", e.message);
        }
        // And the WebSocket setters still refuse https://.
        assert!(Endpoint::parse("https://fapi.binance.com", "url").is_err());
    }

    #[test]
    fn join_keeps_query() {
        let e = Endpoint::parse("wss://h/private", "u").unwrap();
        assert_eq!(e.join("stream").path, "/private/stream");
        let e = Endpoint::parse("wss://h/private/?a=1", "u").unwrap();
        assert_eq!(e.join("stream").path, "/private/stream?a=1");
    }
}
