//! One task per WebSocket connection, API or stream: it owns the socket, reads
//! requests and pongs, sends what other tasks queue for it (events, delayed
//! answers, close frames), pings on a timer and closes at the end of its life.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, Notify};
use tokio::time::{interval_at, sleep, Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::api::{self, Action, ApiConn};
use crate::state::{now_ms, now_ns, Conn, Kind, Out, Reply, Shared};
use crate::stream::{self, Answer};
use crate::Route;

pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}
pub type Ws = WebSocketStream<Box<dyn Io>>;

/// After a close frame (ours or the peer's), how long to wait for the end.
const CLOSE_GRACE: Duration = Duration::from_secs(3);
/// Unanswered ping payloads remembered per connection.
const MAX_PENDING_PINGS: usize = 64;
const REVOKED: &str = r#"{"id":null,"status":401,"error":{"code":-2015,"msg":"Invalid API-key, IP, or permissions for action."}}"#;

/// Removes the connection from the registry however its task ends.
struct Registered(Arc<Shared>, u64);

impl Drop for Registered {
    fn drop(&mut self) {
        self.0.lock().unregister(self.1);
    }
}

struct Link {
    shared: Arc<Shared>,
    ws: Ws,
    reg: Registration,
    /// Payloads of pings sent and not yet answered, oldest first.
    pending: VecDeque<String>,
    seq: u64,
    closing: bool,
    /// Stream connections: arrival times of counted incoming messages (last second).
    arrivals: VecDeque<Instant>,
    /// The close frame sent when the end timer fires (end of life, serverShutdown).
    end_frame: (u16, &'static str),
}

/// A connection registered during the upgrade, before the 101 answer goes
/// out: events emitted once a client sees its upgrade succeed reach it.
pub struct Registration {
    /// Unregisters the connection when the task ends.
    _registered: Registered,
    id: u64,
    kind: Kind,
    rate_limits: bool,
    /// The WebSocket API's product ("usdm", "coinm").
    product: &'static str,
    ip: IpAddr,
    tx: mpsc::UnboundedSender<Out>,
    rx: mpsc::UnboundedReceiver<Out>,
    kill: Arc<Notify>,
}

pub fn register(shared: &Arc<Shared>, route: Route, path: &str, ip: IpAddr) -> Registration {
    let (tx, rx) = mpsc::unbounded_channel();
    let kill = Arc::new(Notify::new());
    let (kind, stream, rate_limits, product) = match route {
        Route::Api {
            rate_limits,
            product,
        } => (Kind::Api, None, rate_limits, product),
        Route::Stream(s) => (Kind::Stream, Some(s), false, "usdm"),
    };
    let conn = Conn {
        kind,
        tx: tx.clone(),
        kill: kill.clone(),
        path: path.to_string(),
        ip,
        opened_ms: now_ms(),
        stream,
        api_keys: Default::default(),
    };
    let id = shared.lock().register(conn);
    let _registered = Registered(shared.clone(), id);
    Registration {
        _registered,
        id,
        kind,
        rate_limits,
        product,
        ip,
        tx,
        rx,
        kill,
    }
}

pub async fn run(shared: Arc<Shared>, ws: Ws, reg: Registration) {
    let (id, kind) = (reg.id, reg.kind);
    let (timings, ping_first, too_many_streams) = {
        let st = shared.lock();
        let max = st.limits.stream_max_streams;
        let subs = st.conns.get(&id).and_then(|c| c.stream.as_ref());
        let over = subs.is_some_and(|s| max > 0 && s.subs.len() as u64 > max);
        (st.timings, st.sw.ping_first, over)
    };
    vlog!(
        "connection {id} opened ({})",
        if kind == Kind::Api { "api" } else { "stream" }
    );
    let life = match kind {
        Kind::Api => timings.api_lifetime_ms,
        Kind::Stream => timings.stream_lifetime_ms,
    };
    let end = sleep(Duration::from_millis(life));
    tokio::pin!(end);
    let every = Duration::from_millis(timings.ping_interval_ms.max(1));
    let mut pings = interval_at(Instant::now() + every, every);
    pings.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut api = ApiConn::new(id, reg.rate_limits, reg.ip, reg.product);
    let (pending, seq, closing) = (VecDeque::new(), 0, false);
    let mut link = Link {
        shared,
        ws,
        reg,
        pending,
        seq,
        closing,
        arrivals: VecDeque::new(),
        end_frame: (1000, ""),
    };
    if kind == Kind::Api && ping_first && !link.ping().await {
        return;
    }
    if too_many_streams {
        link.violation(1008, "Too many streams").await;
        end.as_mut().reset(Instant::now() + CLOSE_GRACE);
    }

    loop {
        let closing = link.closing;
        let keep = tokio::select! {
            _ = link.reg.kill.notified() => false,
            msg = link.ws.next() => match msg {
                Some(Ok(Message::Text(t))) if kind == Kind::Api => link.request(&mut api, t.as_str()).await,
                Some(Ok(Message::Binary(b))) if kind == Kind::Api => {
                    link.request(&mut api, &String::from_utf8_lossy(&b)).await
                }
                Some(Ok(Message::Text(t))) => link.control(t.as_str()).await,
                Some(Ok(Message::Binary(b))) => link.control(&String::from_utf8_lossy(&b)).await,
                Some(Ok(Message::Pong(p))) => {
                    // Only unsolicited pongs count towards a stream's message limit.
                    let solicited = link.pong(&p);
                    if !solicited && kind == Kind::Stream {
                        link.arrive().await;
                    }
                    true
                }
                Some(Ok(Message::Ping(_))) if kind == Kind::Stream => {
                    link.arrive().await;
                    true
                }
                // tungstenite answers the close; keep reading until the stream ends.
                Some(Ok(Message::Close(_))) => {
                    link.closing = true;
                    true
                }
                Some(Ok(_)) => true,
                Some(Err(_)) | None => false,
            },
            Some(out) = link.reg.rx.recv() => match out {
                Out::Shutdown(after) => {
                    let event = format!(r#"{{"event":{{"e":"serverShutdown","E":{}}}}}"#, now_ms());
                    if !closing {
                        link.end_frame = (1001, "server shutdown");
                        end.as_mut().reset(Instant::now() + after);
                    }
                    closing || link.send(Message::text(event)).await
                }
                out => link.out(out).await,
            },
            _ = pings.tick(), if !closing => {
                let silent = kind == Kind::Stream && link.shared.lock().sw.silent;
                silent || link.ping().await
            }
            () = &mut end => {
                // End of life: close frame 1000, then give the peer a moment to answer.
                let (code, reason) = link.end_frame;
                !closing && link.close(code, reason.to_string()).await
            }
        };
        if !keep {
            break;
        }
        if link.closing && !closing {
            end.as_mut().reset(Instant::now() + CLOSE_GRACE);
        }
    }
    vlog!("connection {id} ended");
}

/// The placeholder an emitted `raw` text may carry for the send time.
const SEND_NS: &str = "{send_ns}";

/// Replaces `{send_ns}` in an event's text with the wall clock
/// (CLOCK_REALTIME) in ns, taken as the frame is handed to the WebSocket
/// writer: consumers measure delivery latency from it.
fn stamp(text: String) -> String {
    if text.contains(SEND_NS) {
        text.replace(SEND_NS, &now_ns().to_string())
    } else {
        text
    }
}

impl Link {
    /// Sends one message; false when the connection is gone or dropped by command.
    async fn send(&mut self, msg: Message) -> bool {
        tokio::select! {
            r = self.ws.send(msg) => r.is_ok(),
            _ = self.reg.kill.notified() => false,
        }
    }

    async fn request(&mut self, api: &mut ApiConn, text: &str) -> bool {
        if self.closing {
            return true;
        }
        match api::handle(&self.shared, api, text) {
            Action::Nothing => true,
            Action::Reset => false,
            Action::Send(reply, delay) if delay.is_zero() => self.reply(reply).await,
            Action::Send(reply, delay) => {
                // Delayed answers come back through the queue; later ones are not held up.
                let tx = self.reg.tx.clone();
                tokio::spawn(async move {
                    sleep(delay).await;
                    let _ = tx.send(Out::Reply(reply));
                });
                true
            }
        }
    }

    /// Counts an incoming message against the stream limit; one past it
    /// starts the close (the connection is then `closing`).
    async fn arrive(&mut self) {
        let max = self.shared.lock().limits.stream_max_msgs_per_sec;
        let now = Instant::now();
        while self
            .arrivals
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
        {
            self.arrivals.pop_front();
        }
        self.arrivals.push_back(now);
        if max > 0 && self.arrivals.len() as u64 > max && !self.closing {
            self.violation(1008, "Too many messages").await;
        }
    }

    /// A broken limit: a close frame, then the usual grace for the peer's answer.
    async fn violation(&mut self, code: u16, reason: &str) {
        vlog!("connection {}: closed, {reason}", self.reg.id);
        self.shared.lock().stats.stream_limit_closes += 1;
        let _ = self.close(code, reason.to_string()).await;
    }

    /// A stream control message (SUBSCRIBE and the like).
    async fn control(&mut self, text: &str) -> bool {
        if self.closing {
            return true;
        }
        self.arrive().await;
        if self.closing {
            return true;
        }
        match stream::handle(&self.shared, self.reg.id, text) {
            Answer::Send(t) => {
                let sent = self.send(Message::text(t)).await;
                self.shared.lock().stats.answers_sent += sent as u64;
                sent
            }
            Answer::Nothing => true,
            Answer::Reset => false,
            Answer::Later(text, delay) => {
                let tx = self.reg.tx.clone();
                tokio::spawn(async move {
                    sleep(delay).await;
                    let reply = Reply {
                        text,
                        spam: Vec::new(),
                        duplicate: false,
                        cut: false,
                        binary: false,
                        bytes: None,
                    };
                    let _ = tx.send(Out::Reply(reply));
                });
                true
            }
            Answer::Close(code, reason) => {
                self.violation(code, reason).await;
                true
            }
        }
    }

    async fn reply(&mut self, r: Reply) -> bool {
        if self.closing {
            return true;
        }
        for s in r.spam {
            if !self.send(Message::text(s)).await {
                return false;
            }
        }
        if r.cut {
            let _ = self.cut(&r.text).await;
            self.linger().await;
            return false;
        }
        for _ in 0..if r.duplicate { 2 } else { 1 } {
            let msg = match (&r.bytes, r.binary) {
                (Some(b), _) => Message::Binary(b.clone().into()),
                (None, true) => Message::Binary(r.text.clone().into_bytes().into()),
                (None, false) => Message::text(r.text.clone()),
            };
            if !self.send(msg).await {
                return false;
            }
            self.shared.lock().stats.answers_sent += 1;
        }
        true
    }

    async fn out(&mut self, out: Out) -> bool {
        match out {
            Out::Event(t, false) => self.closing || self.send(Message::text(stamp(t))).await,
            Out::Event(t, true) => {
                self.closing
                    || self
                        .send(Message::Binary(stamp(t).into_bytes().into()))
                        .await
            }
            Out::Bytes(b) => self.closing || self.send(Message::Binary(b.into())).await,
            Out::Reply(r) => self.reply(r).await,
            Out::Pings(n) => {
                for _ in 0..n {
                    if !self.ping().await {
                        return false;
                    }
                }
                true
            }
            Out::Close(code, reason) => self.close(code, reason).await,
            Out::Shutdown(_) => true, // handled by the task loop (it owns the end timer)
            Out::Revoke => {
                self.closing
                    || (self.send(Message::text(REVOKED)).await
                        && self.close(1000, String::new()).await)
            }
        }
    }

    async fn close(&mut self, code: u16, reason: String) -> bool {
        if self.closing {
            return true;
        }
        self.closing = true;
        self.send(Message::Close(Some(CloseFrame {
            code: CloseCode::from(code),
            reason: reason.into(),
        })))
        .await
    }

    /// A ping frame whose payload (ms time and a sequence number) the pong must echo.
    async fn ping(&mut self) -> bool {
        self.seq += 1;
        let payload = format!("{}.{}", now_ms(), self.seq);
        if self.pending.len() == MAX_PENDING_PINGS {
            self.pending.pop_front();
        }
        self.pending.push_back(payload.clone());
        self.shared.lock().stats.pings_sent += 1;
        self.send(Message::Ping(payload.into_bytes().into())).await
    }

    /// A pong is good when it echoes an outstanding ping (a peer may answer
    /// only the latest of several); the earlier ones are then settled too.
    /// Returns whether the pong answered one of our pings.
    fn pong(&mut self, payload: &[u8]) -> bool {
        let hit = self.pending.iter().position(|p| p.as_bytes() == payload);
        if let Some(i) = hit {
            self.pending.drain(..=i);
        }
        let mut st = self.shared.lock();
        match hit {
            Some(_) => st.stats.pongs_ok += 1,
            None => st.stats.pongs_bad += 1,
        }
        hit.is_some()
    }

    /// Writes the first half of the answer's frame (unmasked text frame:
    /// 0x81, length, payload) straight onto the TLS/TCP stream.
    async fn cut(&mut self, text: &str) -> std::io::Result<()> {
        let _ = self.ws.flush().await;
        let len = text.len();
        let mut frame = vec![0x81u8];
        match len {
            0..=125 => frame.push(len as u8),
            126..=65535 => {
                frame.push(126);
                frame.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                frame.push(127);
                frame.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        frame.extend_from_slice(text.as_bytes());
        let io = self.ws.get_mut();
        io.write_all(&frame[..frame.len() / 2]).await?;
        io.flush().await
    }

    /// After a cut: say nothing more (not even pongs) and keep the socket
    /// open until the peer leaves or a `drop` command comes.
    async fn linger(&mut self) {
        let mut buf = [0u8; 4096];
        loop {
            tokio::select! {
                r = self.ws.get_mut().read(&mut buf) => if matches!(r, Ok(0) | Err(_)) { return },
                _ = self.reg.kill.notified() => return,
            }
        }
    }
}
