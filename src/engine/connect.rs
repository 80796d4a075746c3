//! Opening a WebSocket: TCP (through an HTTP CONNECT proxy when configured),
//! TLS with certificate and host name verification, then the upgrade.

use super::error::{Error, Result, Status};
use super::secret::Secret;
use super::url::{host_port, Endpoint, Proxy};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::WebSocketStream;

/// The largest message accepted from a server. A listenKey answer is under
/// 1 KiB and the largest user data event a few KiB.
pub const MAX_MESSAGE: usize = 4 << 20;

pub type Ws = WebSocketStream<Transport>;

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
        let t = self.connect_timeout;
        match tokio::time::timeout(t, self.connect_unbounded(endpoint)).await {
            Ok(r) => r,
            Err(_) => Err(Error::timeout(format!(
                "connecting to {} did not complete within {} ms",
                endpoint.url(),
                t.as_millis()
            ))),
        }
    }

    /// Connects with no time limit of its own: the caller bounds it.
    pub async fn connect_unbounded(&self, endpoint: &Endpoint) -> Result<Ws> {
        let tcp = match &self.proxy {
            Some(proxy) => tunnel(proxy, endpoint).await?,
            None => tcp_connect(&endpoint.host, endpoint.port).await?,
        };
        let _ = tcp.set_nodelay(true);
        let transport = if endpoint.tls {
            let tls = self
                .tls
                .as_ref()
                .ok_or_else(|| Error::internal("no TLS connector for a wss:// endpoint"))?;
            let stream = tls.connect(&endpoint.host, tcp).await.map_err(|e| {
                Error::new(
                    Status::TlsFailed,
                    format!("TLS handshake with {} failed: {e}", endpoint.authority()),
                )
            })?;
            Transport::Tls(Box::new(stream))
        } else {
            Transport::Plain(tcp)
        };
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
    let mut request = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
    if let Some(creds) = &proxy.credentials {
        request.push_str("Proxy-Authorization: Basic ");
        request.push_str(&base64(creds.expose().as_bytes()));
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    let written = tcp.write_all(request.as_bytes()).await;
    super::secret::wipe(request.into_bytes());
    written.map_err(|e| {
        Error::new(
            Status::ConnectFailed,
            format!("proxy: sending CONNECT failed: {e}"),
        )
    })?;

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
    let status_line = String::from_utf8_lossy(&head);
    let status_line = status_line.lines().next().unwrap_or("");
    let code = status_line.split_whitespace().nth(1).unwrap_or("");
    if !code.starts_with('2') {
        let shown: String = status_line.chars().filter(|c| !c.is_control()).collect();
        let shown: String = redact_credentials(&shown, proxy)
            .chars()
            .take(120)
            .collect();
        return Err(Error::new(
            Status::ConnectFailed,
            format!("proxy refused CONNECT to {authority}: {shown}"),
        ));
    }
    Ok(tcp)
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
    Secret::new(&base64(creds.expose().as_bytes())).redact(&out)
}

fn base64(input: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A TCP stream, with or without TLS on top.
pub enum Transport {
    Plain(TcpStream),
    Tls(Box<tokio_native_tls::TlsStream<TcpStream>>),
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_flush(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64(b"user:pass"), "dXNlcjpwYXNz");
    }
}
