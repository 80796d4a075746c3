//! A connection as the pool and the streams hold it: the commands its task
//! takes, the places it has for streams, and a stream's membership.

use super::task::Task;
use super::{ConnSettings, ConnStats};
use crate::engine::error::{Error, Result, Status};
use crate::engine::net::lead::Cell;
use crate::engine::stream::sink::Sink;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

pub(super) enum Cmd {
    /// Route `key` to `sink`, subscribing it unless already subscribed.
    Subscribe {
        sink: Arc<Sink>,
        key: String,
        done: oneshot::Sender<Result<()>>,
    },
    /// The stream's key changed: route `new` to it instead of `old`.
    Swap {
        sink: Arc<Sink>,
        old: String,
        new: String,
        done: oneshot::Sender<Result<()>>,
    },
    /// The stream left (closed, or moved to another connection).
    Leave { sink: u64, key: String },
}

/// The places a connection has given out.
#[derive(Default)]
pub(super) struct Places {
    /// Members reserved or subscribed: a member is counted from the moment
    /// the pool hands the connection out.
    pub members: usize,
    /// The connection takes no more members.
    pub dead: bool,
}

/// A connection as the pool and the streams hold it.
pub struct ConnHandle {
    pub stats: Arc<ConnStats>,
    /// The connection's task, which a stream's reader waiting for an
    /// event may poll itself (`lead`).
    reader: std::sync::OnceLock<Arc<Cell>>,
    tx: mpsc::UnboundedSender<Cmd>,
    places: Mutex<Places>,
}

impl ConnHandle {
    /// Starts a connection task on the current runtime; it dials at once.
    /// `query_key` is the key of a query-form connection.
    pub fn spawn(settings: Arc<ConnSettings>, query_key: Option<String>) -> Arc<ConnHandle> {
        let (handle, rx) = ConnHandle::new();
        let task = Task::new(settings, handle.clone(), rx, query_key);
        let (cell, _driver) = Cell::spawn(&tokio::runtime::Handle::current(), task.run());
        let _ = handle.reader.set(cell);
        handle
    }

    pub(super) fn new() -> (Arc<ConnHandle>, mpsc::UnboundedReceiver<Cmd>) {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let (tx, rx) = mpsc::unbounded_channel();
        let stats = Arc::new(ConnStats {
            id: NEXT.fetch_add(1, Ordering::Relaxed),
            streams: AtomicUsize::new(0),
            last_ping_ms: AtomicI64::new(0),
        });
        let handle = Arc::new(ConnHandle {
            stats,
            reader: std::sync::OnceLock::new(),
            tx,
            places: Mutex::new(Places::default()),
        });
        (handle, rx)
    }

    /// The connection's task, for a waiting reader to lead.
    pub fn reader(&self) -> Option<&Arc<Cell>> {
        self.reader.get()
    }

    pub(super) fn places(&self) -> MutexGuard<'_, Places> {
        self.places.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reserves a place for one more stream if the connection has room.
    pub fn reserve(&self, max: usize) -> bool {
        let mut p = self.places();
        if p.dead || p.members >= max || self.tx.is_closed() {
            return false;
        }
        p.members += 1;
        true
    }

    pub fn is_dead(&self) -> bool {
        self.places().dead || self.tx.is_closed()
    }

    async fn ask(&self, make: impl FnOnce(oneshot::Sender<Result<()>>) -> Cmd) -> Result<()> {
        self.tell(make)?.await
    }

    /// Sends a command; the answer comes through what it returns.
    fn tell(&self, make: impl FnOnce(oneshot::Sender<Result<()>>) -> Cmd) -> Result<Answer> {
        let (done, answer) = oneshot::channel();
        self.tx
            .send(make(done))
            .map_err(|_| Error::new(Status::ConnectionClosed, "the stream connection closed"))?;
        Ok(Box::pin(async move {
            answer.await.unwrap_or_else(|_| {
                Err(Error::new(
                    Status::ConnectionClosed,
                    "the stream connection closed",
                ))
            })
        }))
    }
}

/// The connection's answer to a command, still to come.
pub type Answer = std::pin::Pin<Box<dyn std::future::Future<Output = Result<()>> + Send>>;

/// A stream's place on a connection: it leaves when this is dropped.
pub struct Membership {
    pub conn: Arc<ConnHandle>,
    sink: u64,
    key: String,
    pub since: Instant,
}

impl Membership {
    /// Takes the place `conn.reserve` made and subscribes `key` for `sink`;
    /// waits for the server's acknowledgement.
    pub async fn join(conn: Arc<ConnHandle>, sink: &Arc<Sink>, key: &str) -> Result<Membership> {
        let (member, answer) = Membership::join_later(conn, sink, key)?;
        answer.await?;
        Ok(member)
    }

    /// `join` without waiting: the server's acknowledgement (or its
    /// refusal) comes through the `Answer`.
    pub fn join_later(
        conn: Arc<ConnHandle>,
        sink: &Arc<Sink>,
        key: &str,
    ) -> Result<(Membership, Answer)> {
        let member = Membership {
            conn,
            sink: sink.id,
            key: key.to_owned(),
            since: Instant::now(),
        };
        let sink = sink.clone();
        let key = key.to_owned();
        let answer = member
            .conn
            .tell(|done| Cmd::Subscribe { sink, key, done })?;
        Ok((member, answer))
    }

    /// Routes the stream's new key on the same connection: subscribes it,
    /// then unsubscribes the old one.
    pub async fn swap(&mut self, sink: &Arc<Sink>, new: &str) -> Result<()> {
        let (sink2, new2) = (sink.clone(), new.to_owned());
        // The connection routes the stream by the new key from now on,
        // whatever the answer: a later leave or swap must name it.
        let old = std::mem::replace(&mut self.key, new.to_owned());
        self.conn
            .ask(|done| Cmd::Swap {
                sink: sink2,
                old,
                new: new2,
                done,
            })
            .await
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.conn.places().members -= 1;
        let _ = self.conn.tx.send(Cmd::Leave {
            sink: self.sink,
            key: std::mem::take(&mut self.key),
        });
    }
}
