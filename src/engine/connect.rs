//! Opening a WebSocket: TCP (through an HTTP CONNECT proxy when configured),
//! TLS with certificate and host name verification, then the upgrade.

use super::error::{Error, Result, Status};
use super::secret::Secret;
use super::url::{host_port, Endpoint, Proxy};
use data_encoding::BASE64;
use std::future::Future;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use zeroize::Zeroizing;

/// The largest message accepted from a server. A listenKey answer is under
/// 1 KiB and the largest user data event a few KiB.
pub const MAX_MESSAGE: usize = 4 << 20;

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Everything needed to open a connection.
#[derive(Clone)]
pub struct Dialer {
    pub tls: Option<tokio_native_tls::TlsConnector>,
    pub proxy: Option<Proxy>,
    pub connect_timeout: Duration,
    /// tungstenite's read buffer: small for the WebSocket API (answers are
    /// under 1 KiB, and the buffer is cleared before every read), larger for
    /// streams, which read bursts of events.
    pub read_buffer: usize,
}

/// Read buffer for WebSocket API connections.
pub const API_READ_BUFFER: usize = 4 << 10;
/// Read buffer for stream connections.
pub const STREAM_READ_BUFFER: usize = 16 << 10;

impl Dialer {
    /// Connects to `endpoint` within the connect timeout.
    pub async fn connect(&self, endpoint: &Endpoint) -> Result<Ws> {
        self.within_timeout(endpoint, self.connect_unbounded(endpoint))
            .await
    }

    /// Connects with no time limit of its own: the caller bounds it.
    pub async fn connect_unbounded(&self, endpoint: &Endpoint) -> Result<Ws> {
        let transport = self.transport_unbounded(endpoint).await?;
        let request = endpoint.url().into_client_request().map_err(|e| {
            Error::invalid(format!(
                "endpoint {} is not a valid request: {e}",
                endpoint.url()
            ))
        })?;
        let config = WebSocketConfig::default()
            .max_message_size(Some(MAX_MESSAGE))
            .max_frame_size(Some(MAX_MESSAGE))
            .read_buffer_size(self.read_buffer);
        let (ws, _response) =
            tokio_tungstenite::client_async_with_config(request, transport, Some(config))
                .await
                .map_err(|e| handshake_error(endpoint, e))?;
        Ok(ws)
    }

    /// Opens the byte stream to `endpoint` without the WebSocket upgrade:
    /// TCP (through the proxy's CONNECT tunnel when there is one), then TLS
    /// with certificate and host name verification for a `wss://` (or any
    /// TLS) endpoint, using the cached connector. Within the connect
    /// timeout. For speaking another protocol (HTTP/1.1 REST) over the same
    /// path the WebSocket connections take.
    pub async fn connect_transport(
        &self,
        endpoint: &Endpoint,
    ) -> Result<MaybeTlsStream<TcpStream>> {
        self.within_timeout(endpoint, self.transport_unbounded(endpoint))
            .await
    }

    async fn within_timeout<T>(
        &self,
        endpoint: &Endpoint,
        work: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let t = self.connect_timeout;
        tokio::time::timeout(t, work).await.unwrap_or_else(|_| {
            Err(Error::timeout(format!(
                "connecting to {} did not complete within {} ms",
                endpoint.url(),
                t.as_millis()
            )))
        })
    }

    async fn transport_unbounded(&self, endpoint: &Endpoint) -> Result<MaybeTlsStream<TcpStream>> {
        let tcp = match &self.proxy {
            Some(proxy) => tunnel(proxy, endpoint).await?,
            None => tcp_connect(&endpoint.host, endpoint.port).await?,
        };
        let _ = tcp.set_nodelay(true);
        if !endpoint.tls {
            return Ok(MaybeTlsStream::Plain(tcp));
        }
        let tls = self
            .tls
            .as_ref()
            .ok_or_else(|| Error::internal("no TLS connector for a wss:// endpoint"))?;
        let stream = tls.connect(&endpoint.host, tcp).await.map_err(|e| {
            Error::new(
                Status::TlsFailed,
                format!(
                    "TLS handshake with {} failed: {}",
                    endpoint.authority(),
                    super::tls::describe_error(&e)
                ),
            )
        })?;
        Ok(MaybeTlsStream::NativeTls(stream))
    }
}

fn handshake_error(endpoint: &Endpoint, e: tokio_tungstenite::tungstenite::Error) -> Error {
    use tokio_tungstenite::tungstenite::Error as WsError;
    match e {
        WsError::Http(resp) => Error::new(
            Status::ConnectFailed,
            format!(
                "WebSocket upgrade to {} refused: HTTP {}",
                endpoint.url(),
                resp.status()
            ),
        ),
        other => Error::new(
            Status::ConnectFailed,
            format!("WebSocket upgrade to {} failed: {other}", endpoint.url()),
        ),
    }
}

pub(crate) async fn tcp_connect(host: &str, port: u16) -> Result<TcpStream> {
    TcpStream::connect((host, port)).await.map_err(|e| {
        Error::new(
            Status::ConnectFailed,
            format!("connecting to {} failed: {e}", host_port(host, port)),
        )
    })
}

/// Opens a tunnel to `target` through an HTTP CONNECT proxy.
pub(crate) async fn tunnel(proxy: &Proxy, target: &Endpoint) -> Result<TcpStream> {
    let mut tcp = tcp_connect(&proxy.host, proxy.port)
        .await
        .map_err(|e| e.context("proxy"))?;
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
        let shown = super::text::truncate(&shown, 120);
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
