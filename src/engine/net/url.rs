//! Endpoint and proxy URLs: parsed once, checked for what the library allows.

use crate::engine::error::{Error, Result};
use crate::engine::secret::Secret;
use std::net::IpAddr;
use tokio_tungstenite::tungstenite::http::Uri;
use zeroize::Zeroizing;

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
fn host_for_url(host: &str) -> String {
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
        if rest.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(Error::invalid(format!(
                "{what}: proxy URL contains white space or control characters"
            )));
        }
        // The userinfo is split off by hand, so that the credentials never
        // reach `Uri` (whose copy could not be wiped); the rest is `Uri`'s.
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (userinfo, tail) = match rest[..authority_end].rsplit_once('@') {
            Some((u, _)) => (Some(u), &rest[u.len() + 1..]),
            None => (None, rest),
        };
        let credentials = userinfo.map(|u| credentials(u, what)).transpose()?;
        let no_path = || {
            Error::invalid(format!(
                "{what}: proxy URL must be http://[user:pass@]host:port with no path"
            ))
        };
        let uri: Uri = format!("http://{tail}").parse().map_err(|_| no_path())?;
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() || tail.contains('#') {
            return Err(no_path());
        }
        let needs_port = || Error::invalid(format!("{what}: proxy URL needs host:port"));
        let authority = uri.authority().ok_or_else(needs_port)?;
        let host = authority.host();
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let port = authority
            .port_u16()
            .filter(|p| *p != 0)
            .ok_or_else(needs_port)?;
        if host.is_empty() {
            return Err(needs_port());
        }
        Ok(Proxy {
            host: host.to_owned(),
            port,
            credentials,
        })
    }
}

/// `user:pass`, percent-decoded, taken by the secret without a copy.
fn credentials(userinfo: &str, what: &str) -> Result<Secret> {
    let decoded = percent_decode(userinfo).ok_or_else(|| {
        Error::invalid(format!(
            "{what}: proxy credentials are badly percent-encoded"
        ))
    })?;
    if !decoded.contains(':') {
        return Err(Error::invalid(format!(
            "{what}: proxy credentials must be user:password"
        )));
    }
    Ok(Secret::from_string(decoded))
}

/// RFC 3986 percent-decoding into UTF-8: `None` for a `%` not followed by
/// two hex digits, or bytes that are not UTF-8. The buffer is sized once
/// (decoding only shrinks) and wiped if it is not returned.
fn percent_decode(s: &str) -> Option<String> {
    fn hex(b: u8) -> Option<u8> {
        char::from(b).to_digit(16).map(|d| d as u8)
    }
    let bytes = s.as_bytes();
    let mut out = Zeroizing::new(Vec::with_capacity(bytes.len()));
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hi = hex(*bytes.get(i + 1)?)?;
            let lo = hex(*bytes.get(i + 2)?)?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(std::mem::take(&mut *out))
        .map_err(|e| drop(Zeroizing::new(e.into_bytes())))
        .ok()
}

/// Whether `host` (a name or an IP literal, with or without IPv6 brackets)
/// matches a NO_PROXY list: comma-separated entries, each one of
/// - `*`: every host;
/// - a host name, matching itself and its subdomains, with or without a
///   leading dot (`binance.com` and `.binance.com` both match
///   `fstream.binance.com`, neither matches `notbinance.com`);
/// - an IPv4 or IPv6 literal (`127.0.0.1`, `::1`, `[::1]`);
/// - a CIDR block (`10.0.0.0/8`, `fd00::/8`, `[fd00::]/8`).
///
/// A `:port` after a name or a bracketed address is ignored (the entry
/// matches every port). Names compare case-insensitively; addresses by
/// value (`::ffff:10.1.2.3` is 10.1.2.3). An entry that is none of these
/// never matches.
pub fn no_proxy_matches(no_proxy: &str, host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let host_ip = host.parse::<IpAddr>().ok().map(|ip| ip.to_canonical());
    no_proxy
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .any(|entry| match NoProxy::parse(entry) {
            Some(NoProxy::Any) => true,
            Some(NoProxy::Net(net, len)) => host_ip.is_some_and(|ip| in_net(ip, net, len)),
            Some(NoProxy::Name(name)) => host_ip.is_none() && in_domain(host, name),
            None => false,
        })
}

enum NoProxy<'a> {
    Any,
    /// An address and its prefix length (the full length for a literal).
    Net(IpAddr, u8),
    /// A host name without a leading dot.
    Name(&'a str),
}

impl<'a> NoProxy<'a> {
    fn parse(entry: &'a str) -> Option<NoProxy<'a>> {
        if entry == "*" {
            return Some(NoProxy::Any);
        }
        // `[v6]`, `[v6]:port`, `[v6]/len`; else `addr/len`, or a literal or
        // name with an optional `:port`.
        let (addr, tail) = match entry.strip_prefix('[') {
            Some(r) => r.split_once(']')?,
            None => match entry.split_once('/') {
                Some((a, _)) => (a, &entry[a.len()..]),
                None => (entry, ""),
            },
        };
        if let Some(len) = tail.strip_prefix('/') {
            let ip = addr.parse::<IpAddr>().ok()?.to_canonical();
            let len: u8 = len.parse().ok()?;
            let len = match ip {
                // A v4-mapped block's length counts the 96 mapped bits.
                IpAddr::V4(_) if addr.contains(':') => len.checked_sub(96)?,
                _ => len,
            };
            return (len <= full_len(ip)).then_some(NoProxy::Net(ip, len));
        }
        if let Ok(ip) = addr.parse::<IpAddr>() {
            let ip = ip.to_canonical();
            return (tail.is_empty() || is_port(tail)).then_some(NoProxy::Net(ip, full_len(ip)));
        }
        if !tail.is_empty() {
            return None;
        }
        let name = match addr.rsplit_once(':') {
            Some((n, p)) if is_digits(p) => n,
            Some(_) => return None,
            None => addr,
        };
        if let Ok(ip) = name.parse::<IpAddr>() {
            let ip = ip.to_canonical();
            return Some(NoProxy::Net(ip, full_len(ip)));
        }
        let name = name.trim_start_matches('.');
        (!name.is_empty()).then_some(NoProxy::Name(name))
    }
}

fn is_port(tail: &str) -> bool {
    tail.strip_prefix(':').is_some_and(is_digits)
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// `host` is `name` or a subdomain of it, ignoring ASCII case.
fn in_domain(host: &str, name: &str) -> bool {
    let (h, n) = (host.as_bytes(), name.as_bytes());
    let Some(cut) = h.len().checked_sub(n.len()) else {
        return false;
    };
    h[cut..].eq_ignore_ascii_case(n) && (cut == 0 || h[cut - 1] == b'.')
}

fn full_len(ip: IpAddr) -> u8 {
    if ip.is_ipv4() {
        32
    } else {
        128
    }
}

fn in_net(ip: IpAddr, net: IpAddr, len: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            u32::from(a) & mask == u32::from(b) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            u128::from(a) & mask == u128::from(b) & mask
        }
        _ => false,
    }
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
        let e = Endpoint::parse("ws://[::1]/x", "url").unwrap();
        assert_eq!(
            (e.url(), e.authority()),
            ("ws://[::1]/x".into(), "[::1]:80".into())
        );
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
    fn percent_decoding_needs_two_hex_digits() {
        assert_eq!(percent_decode("a%41b").as_deref(), Some("aAb"));
        assert_eq!(percent_decode("%e2%82%ac").as_deref(), Some("€"));
        // `from_str_radix` alone takes a sign: "%+1" was byte 0x01.
        for bad in ["a%+1b", "%-1", "%1", "%", "%zz", "%4", "%c3"] {
            assert_eq!(percent_decode(bad), None, "{bad}");
        }
        let e = Proxy::parse("http://u:%+1@p:1", "proxy").unwrap_err();
        assert!(e.message.contains("percent-encoded"), "{}", e.message);
    }

    #[test]
    fn proxy_url_forms() {
        let p = Proxy::parse("http://user:pw@[fd00::1]:3128/", "proxy").unwrap();
        assert_eq!((p.host.as_str(), p.port), ("fd00::1", 3128));
        assert_eq!(p.credentials.unwrap().expose(), "user:pw");
        // The last '@' of the authority ends the userinfo.
        let p = Proxy::parse("http://a@b:c@host:1", "proxy").unwrap();
        assert_eq!(p.credentials.unwrap().expose(), "a@b:c");
        assert_eq!(p.host, "host");
        for bad in [
            "http://host:1?x=1",
            "http://host:1#frag",
            "http://host:port",
            "http://:1",
            "http://u:p@",
            "http://user@host:1",
            "http://host:99999",
        ] {
            let e = Proxy::parse(bad, "proxy").unwrap_err();
            assert!(e.message.starts_with("proxy:"), "{bad}: {}", e.message);
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
        assert!(no_proxy_matches("Binance.COM:443", "fstream.binance.com"));
        assert!(!no_proxy_matches(".", "host"));
    }

    #[test]
    fn no_proxy_ipv6_literals_match() {
        for entry in ["::1", "[::1]", "[::1]:9000", "0:0:0:0:0:0:0:1"] {
            assert!(no_proxy_matches(entry, "::1"), "{entry}");
            assert!(no_proxy_matches(entry, "[::1]"), "{entry}");
            assert!(!no_proxy_matches(entry, "::2"), "{entry}");
        }
        assert!(no_proxy_matches("localhost,fe80::1%", "localhost"));
        assert!(!no_proxy_matches("::1", "127.0.0.1"));
    }

    #[test]
    fn no_proxy_cidr_blocks_match() {
        let list = "10.0.0.0/8, 192.168.1.0/24, fd00::/8, [2001:db8::]/32";
        for host in [
            "10.1.2.3",
            "192.168.1.200",
            "fd12::1",
            "2001:db8:ffff::1",
            "::ffff:10.9.9.9",
        ] {
            assert!(no_proxy_matches(list, host), "{host}");
        }
        for host in [
            "11.0.0.1",
            "192.168.2.1",
            "fe00::1",
            "2001:db9::1",
            "ten.example",
        ] {
            assert!(!no_proxy_matches(list, host), "{host}");
        }
        assert!(no_proxy_matches("0.0.0.0/0", "203.0.113.9"));
        assert!(no_proxy_matches("::/0", "2001:db8::1"));
        assert!(no_proxy_matches("::ffff:10.0.0.0/104", "10.200.0.1"));
        // Malformed blocks never match (and never panic).
        for bad in [
            "10.0.0.0/33",
            "fd00::/129",
            "10.0.0.0/x",
            "/8",
            "[::1",
            "host:port",
        ] {
            assert!(!no_proxy_matches(bad, "10.0.0.1"), "{bad}");
        }
    }

    #[test]
    fn no_proxy_names_do_not_match_addresses() {
        assert!(!no_proxy_matches(".0.0.1", "127.0.0.1"));
        assert!(!no_proxy_matches("example.com", "192.0.2.1"));
    }
}
