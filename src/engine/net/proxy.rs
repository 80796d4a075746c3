//! HTTP CONNECT proxies, the whole story in one place (as reqwest's
//! `proxy.rs`): the proxy URL and its credentials, the environment
//! (HTTPS_PROXY, ALL_PROXY, NO_PROXY), the CONNECT tunnel, and keeping the
//! credentials out of every error message.

use super::url::{Endpoint, MAX_URL_LEN};
use crate::engine::error::{Error, Result, Status};
use crate::engine::secret::Secret;
use data_encoding::BASE64;
use std::net::IpAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::http::Uri;
use zeroize::Zeroizing;

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

/// The proxy the environment names for `endpoint`: HTTPS_PROXY (or
/// https_proxy, ALL_PROXY, all_proxy) unless NO_PROXY (or no_proxy) names
/// its host.
pub fn from_env(endpoint: &Endpoint) -> Result<Option<Proxy>> {
    // Wiped when dropped: a proxy URL may carry credentials.
    let env = |names: &[&str]| {
        names.iter().find_map(|n| {
            let v = Zeroizing::new(std::env::var(n).ok()?);
            (!v.trim().is_empty()).then_some(v)
        })
    };
    let Some(url) = env(&["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"]) else {
        return Ok(None);
    };
    if let Some(no) = env(&["NO_PROXY", "no_proxy"]) {
        if no_proxy_matches(&no, &endpoint.host) {
            return Ok(None);
        }
    }
    Proxy::parse(url.trim(), "HTTPS_PROXY").map(Some)
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

/// Turns `tcp`, a connection to `proxy`, into a tunnel to `target` with
/// HTTP CONNECT.
pub(crate) async fn tunnel(
    mut tcp: TcpStream,
    proxy: &Proxy,
    target: &Endpoint,
) -> Result<TcpStream> {
    let authority = target.authority();
    let request = connect_request(&authority, proxy.credentials.as_ref());
    tcp.write_all(request.as_bytes()).await.map_err(|e| {
        Error::new(
            Status::ConnectFailed,
            format!("proxy: sending CONNECT failed: {e}"),
        )
    })?;
    drop(request);

    // Read the proxy's answer up to the blank line, byte by byte so nothing of
    // the tunnelled stream is consumed. It is short and read once.
    let mut head = Vec::with_capacity(256);
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 8192 {
            return Err(Error::new(
                Status::ConnectFailed,
                "proxy: answer to CONNECT longer than 8 KiB",
            ));
        }
        let byte = tcp.read_u8().await.map_err(|e| {
            Error::new(
                Status::ConnectFailed,
                format!("proxy: connection ended before answering CONNECT: {e}"),
            )
        })?;
        head.push(byte);
    }
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut answer = httparse::Response::new(&mut headers);
    let code = match answer.parse(&head) {
        Ok(httparse::Status::Complete(_)) => answer.code.unwrap_or(0),
        Ok(httparse::Status::Partial) => 0,
        Err(e) => {
            return Err(Error::new(
                Status::ConnectFailed,
                format!("proxy: the answer to CONNECT is not HTTP/1.x ({e})"),
            ))
        }
    };
    if !(200..300).contains(&code) {
        let status_line = String::from_utf8_lossy(&head);
        let status_line = status_line.lines().next().unwrap_or("");
        let shown: String = status_line.chars().filter(|c| !c.is_control()).collect();
        let shown = redact_credentials(&shown, proxy);
        let shown = crate::engine::text::truncate(&shown, 120);
        return Err(Error::new(
            Status::ConnectFailed,
            format!("proxy refused CONNECT to {authority}: {shown}"),
        ));
    }
    Ok(tcp)
}

/// The CONNECT request, built at its final size in a buffer wiped on drop:
/// it carries the credentials in Base64.
fn connect_request(authority: &str, credentials: Option<&Secret>) -> Zeroizing<String> {
    const AUTH: &str = "Proxy-Authorization: Basic ";
    let encoded_len = credentials.map_or(0, |c| BASE64.encode_len(c.len()));
    let capacity = 64 + 2 * authority.len() + AUTH.len() + encoded_len;
    let mut request = Zeroizing::new(String::with_capacity(capacity));
    for part in [
        "CONNECT ",
        authority,
        " HTTP/1.1\r\nHost: ",
        authority,
        "\r\n",
    ] {
        request.push_str(part);
    }
    if let Some(creds) = credentials {
        request.push_str(AUTH);
        BASE64.encode_append(creds.expose().as_bytes(), &mut request);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    debug_assert_eq!(request.capacity(), capacity, "no reallocation left a copy");
    request
}

/// The proxy's words without its credentials: a hostile proxy may echo
/// them, whole, as the password alone, or Base64-encoded as they were sent.
fn redact_credentials(text: &str, proxy: &Proxy) -> String {
    let Some(creds) = &proxy.credentials else {
        return text.to_owned();
    };
    let mut out = creds.redact(text);
    if let Some((_, password)) = creds.expose().split_once(':') {
        out = Secret::new(password).redact(&out);
    }
    Secret::from_string(BASE64.encode(creds.expose().as_bytes())).redact(&out)
}

#[cfg(test)]
mod tests {
    use super::*;
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

    #[test]
    fn connect_request_carries_basic_credentials() {
        let creds = Secret::new("user:pass");
        let r = connect_request("h:443", Some(&creds));
        assert_eq!(
            r.as_str(),
            "CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\nProxy-Authorization: Basic dXNlcjpwYXNz\r\n\r\n"
        );
        let r = connect_request("[::1]:9", None);
        assert_eq!(
            r.as_str(),
            "CONNECT [::1]:9 HTTP/1.1\r\nHost: [::1]:9\r\n\r\n"
        );
    }

    #[test]
    fn echoed_credentials_are_redacted_in_every_form() {
        let proxy = Proxy::parse("http://user:s3cr3t@p:1", "proxy").unwrap();
        let text = "407 user:s3cr3t s3cr3t dXNlcjpzM2NyM3Q=";
        let out = redact_credentials(text, &proxy);
        assert!(
            !out.contains("s3cr3t") && !out.contains("dXNlcjpzM2NyM3Q"),
            "{out}"
        );
    }
}
