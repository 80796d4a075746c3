//! Endpoint and proxy URLs: parsed once, checked for what the library allows.

use super::error::{Error, Result};
use super::secret::Secret;
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
            host_port(&self.host, 0).trim_end_matches(":0").to_owned()
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
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
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

/// An HTTP CONNECT proxy: `http://[user:pass@]host:port`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proxy {
    pub host: String,
    pub port: u16,
    /// `user:pass`, percent-decoded, sent as Basic credentials.
    pub credentials: Option<Secret>,
}

impl Proxy {
    pub fn parse(url: &str, what: &str) -> Result<Proxy> {
        if url.len() > MAX_URL_LEN {
            return Err(Error::invalid(format!(
                "{what}: URL longer than {MAX_URL_LEN} bytes"
            )));
        }
        // Never echo the URL itself: it may carry credentials.
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| Error::invalid(format!("{what}: proxy URL must start with http://")))?;
        let rest = rest.trim_end_matches('/');
        if rest.contains('/') || rest.contains('?') || rest.contains('#') {
            return Err(Error::invalid(format!(
                "{what}: proxy URL must be http://[user:pass@]host:port with no path"
            )));
        }
        if rest.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(Error::invalid(format!(
                "{what}: proxy URL contains white space or control characters"
            )));
        }
        let (userinfo, hostport) = match rest.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, rest),
        };
        let credentials = match userinfo {
            Some(u) => {
                let decoded = percent_decode(u).ok_or_else(|| {
                    Error::invalid(format!(
                        "{what}: proxy credentials are badly percent-encoded"
                    ))
                })?;
                if !decoded.contains(':') {
                    return Err(Error::invalid(format!(
                        "{what}: proxy credentials must be user:password"
                    )));
                }
                Some(Secret::new(&decoded))
            }
            None => None,
        };
        let (host, port) = split_host_port(hostport)
            .ok_or_else(|| Error::invalid(format!("{what}: proxy URL needs host:port")))?;
        Ok(Proxy {
            host,
            port,
            credentials,
        })
    }
}

fn split_host_port(s: &str) -> Option<(String, u16)> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, p) = rest.split_once("]:")?;
        (h, p)
    } else {
        s.rsplit_once(':')?
    };
    let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
    if host.is_empty() || host.contains(':') && !s.starts_with('[') {
        return None;
    }
    Some((host.to_owned(), port))
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Whether `host` matches a NO_PROXY list (comma-separated host names,
/// domain suffixes with or without a leading dot, IP literals, or `*`).
pub fn no_proxy_matches(no_proxy: &str, host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    no_proxy
        .split(',')
        .map(|e| e.trim().to_ascii_lowercase())
        .filter(|e| !e.is_empty())
        .any(|entry| {
            if entry == "*" {
                return true;
            }
            let entry = entry.split(':').next().unwrap_or("").to_owned();
            let bare = entry.trim_start_matches('.');
            host == bare || host.ends_with(&format!(".{bare}"))
        })
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

    #[test]
    fn proxy_urls() {
        let p = Proxy::parse("http://proxy.local:3128", "proxy").unwrap();
        assert_eq!((p.host.as_str(), p.port), ("proxy.local", 3128));
        assert!(p.credentials.is_none());
        let p = Proxy::parse("http://us%40r:p%3Ass@127.0.0.1:8080/", "proxy").unwrap();
        assert_eq!(p.credentials.unwrap().expose(), "us@r:p:ss");
        let p = Proxy::parse("http://[::1]:8080", "proxy").unwrap();
        assert_eq!(p.host, "::1");
        for bad in [
            "https://p:1",
            "http://p",
            "http://p:0",
            "http://u:s@p:1/x",
            "socks5://p:1",
        ] {
            let e = Proxy::parse(bad, "proxy").unwrap_err();
            assert!(!e.message.contains("u:s"), "{}", e.message);
        }
    }

    #[test]
    fn no_proxy() {
        assert!(no_proxy_matches(
            "localhost,.binance.com",
            "fstream.binance.com"
        ));
        assert!(no_proxy_matches("binance.com", "binance.com"));
        assert!(!no_proxy_matches("binance.com", "notbinance.com"));
        assert!(no_proxy_matches("*", "anything"));
        assert!(no_proxy_matches(" 127.0.0.1 ", "127.0.0.1"));
        assert!(!no_proxy_matches("", "host"));
    }
}
