//! Opening a WebSocket: TCP (through an HTTP CONNECT proxy when configured),
//! TLS with certificate and host name verification, then the upgrade.

use super::lead::{Direct, RawFd};
use super::proxy::{self, Proxy};
use super::url::{host_port, Endpoint};
use crate::engine::error::{Error, Result, Status};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The largest message accepted from a server. A listenKey answer is under
/// 1 KiB and the largest user data event a few KiB.
pub const MAX_MESSAGE: usize = 4 << 20;

/// A WebSocket over any transport: TCP, TLS over TCP, or (in the stream
/// connection's unit tests) an in-memory pipe.
pub type Ws = WebSocketStream<Transport>;

/// A connection's byte stream, boxed so that one WebSocket type serves
/// every transport (one indirect call per read or write).
pub type Transport = Box<dyn Io>;

/// What a transport is.
pub trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static> Io for T {}

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
    /// The local address connections leave from (None: the system's
    /// choice).
    pub source: Option<IpAddr>,
}

/// Read buffer for WebSocket API connections.
pub const API_READ_BUFFER: usize = 4 << 10;
/// Read buffer for stream connections.
pub const STREAM_READ_BUFFER: usize = 16 << 10;

impl Dialer {
    /// Connects to `endpoint` within the connect timeout. Also returns the
    /// connection's socket, for a reader leading it to sleep on (`lead`;
    /// `None` where leading is not possible).
    pub async fn connect_socket(&self, endpoint: &Endpoint) -> Result<(Ws, Option<RawFd>)> {
        self.within_timeout(endpoint, self.connect_unbounded_socket(endpoint))
            .await
    }

    /// [`Dialer::connect_socket`] with no time limit of its own: the
    /// caller bounds it.
    pub async fn connect_unbounded_socket(
        &self,
        endpoint: &Endpoint,
    ) -> Result<(Ws, Option<RawFd>)> {
        let transport = self.transport_unbounded(endpoint).await?;
        let socket = match &transport {
            MaybeTlsStream::Plain(t) => t.socket(),
            MaybeTlsStream::NativeTls(t) => t.get_ref().get_ref().get_ref().socket(),
            _ => None,
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
        let (ws, _response) = tokio_tungstenite::client_async_with_config(
            request,
            Box::new(transport) as Transport,
            Some(config),
        )
        .await
        .map_err(|e| handshake_error(endpoint, e))?;
        Ok((ws, socket))
    }

    /// Opens the byte stream to `endpoint` without the WebSocket upgrade:
    /// TCP (through the proxy's CONNECT tunnel when there is one), then TLS
    /// with certificate and host name verification for a `wss://` (or any
    /// TLS) endpoint, using the cached connector. Within the connect
    /// timeout. For speaking another protocol (HTTP/1.1 REST) over the same
    /// path the WebSocket connections take.
    pub async fn connect_transport(&self, endpoint: &Endpoint) -> Result<MaybeTlsStream<Direct>> {
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

    async fn transport_unbounded(&self, endpoint: &Endpoint) -> Result<MaybeTlsStream<Direct>> {
        let tcp = match &self.proxy {
            Some(p) => {
                let tcp = tcp_connect(&p.host, p.port, self.source)
                    .await
                    .map_err(|e| e.context("proxy"))?;
                proxy::tunnel(tcp, p, endpoint).await?
            }
            None => tcp_connect(&endpoint.host, endpoint.port, self.source).await?,
        };
        let _ = tcp.set_nodelay(true);
        let tcp = Direct(tcp);
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

/// TCP to `host:port`, from `source` when set (then only to the host's
/// addresses of the same family).
pub(crate) async fn tcp_connect(
    host: &str,
    port: u16,
    source: Option<IpAddr>,
) -> Result<TcpStream> {
    let failed = |e: std::io::Error| {
        Error::new(
            Status::ConnectFailed,
            format!("connecting to {} failed: {e}", host_port(host, port)),
        )
    };
    let Some(source) = source else {
        return TcpStream::connect((host, port)).await.map_err(failed);
    };
    let mut last = None;
    for addr in tokio::net::lookup_host((host, port))
        .await
        .map_err(failed)?
    {
        if addr.is_ipv4() != source.is_ipv4() {
            continue;
        }
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .map_err(failed)?;
        if let Err(e) = socket.bind(SocketAddr::new(source, 0)) {
            return Err(Error::new(
                Status::ConnectFailed,
                format!("binding to the source address {source} failed: {e}"),
            ));
        }
        match socket.connect(addr).await {
            Ok(tcp) => return Ok(tcp),
            Err(e) => last = Some(e),
        }
    }
    Err(last.map(failed).unwrap_or_else(|| {
        Error::new(
            Status::ConnectFailed,
            format!(
                "connecting to {}: no address of the source address {source}'s family (IPv{})",
                host_port(host, port),
                if source.is_ipv4() { 4 } else { 6 }
            ),
        )
    }))
}
