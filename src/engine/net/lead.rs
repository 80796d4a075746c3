//! Leader and followers on a connection: the thread that waits for an
//! answer or an event reads the connection itself.
//!
//! A connection's task (the WebSocket API session's reader, a stream
//! connection's task) is not spawned as a plain runtime task but kept in a
//! [`Cell`], which two kinds of thread poll, one at a time:
//!
//! - the **driver**, a runtime task, whenever nobody waits: it is woken by
//!   the runtime's epoll like any task, and hands what it reads to the
//!   waiting threads (a second wake-up, of the caller);
//! - a **leader**: a caller of a blocking function that is waiting for
//!   something this connection will bring. Instead of parking until the
//!   driver hands its answer over, it sleeps in `poll(2)` on the
//!   connection's own socket (or, within the session's spin budget, polls
//!   it without sleeping), and when the socket is readable polls the task
//!   on its own thread: the bytes are read, routed and delivered by the
//!   thread that wanted them, so the runtime worker's wake-up is off the
//!   path, as in a hand-written client that reads its socket where it
//!   waits. Other callers waiting meanwhile are followers: the leader
//!   delivers their answers and events as the driver would.
//!
//! Every poll of the task, by either, registers one waker ([`Route`]):
//! it wakes the leader if there is one and the driver otherwise, so that a
//! timer, a command or a closing signal reaches whoever runs the task. A
//! leader that leaves polls the task once more after stepping down, so
//! nothing woken while it led is lost. Only one thread polls at a time
//! (the `task` lock, never held while sleeping); a thread that finds it
//! taken sets `repoll` and the holder polls again before letting go.
//!
//! While a leader polls, the connection's reads go straight to the socket
//! (`recv` with `MSG_DONTWAIT`, see [`Direct`]): the runtime's readiness
//! cache only learns that the socket is readable when the worker's epoll
//! wakes up, which is the wake-up being taken off the path.
//!
//! Leading needs `poll(2)` and a self-pipe per leading thread: Unix only.
//! Elsewhere the driver does all the reading, as before.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

#[cfg(unix)]
use std::os::fd::AsRawFd;

/// A socket's descriptor (`-1`: none), on every platform.
pub type RawFd = i32;

type Task = Pin<Box<dyn Future<Output = ()> + Send>>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A connection's task, polled by its driver or by a waiting caller.
pub struct Cell {
    task: Mutex<Option<Task>>,
    /// Set by a thread that wanted to poll while another did: the one
    /// polling polls again before it lets go.
    repoll: AtomicBool,
    /// The socket a leader sleeps on (-1: none now). The task sets it when
    /// it opens a connection and clears it before the socket closes.
    fd: std::sync::atomic::AtomicI32,
    route: Arc<Route>,
    /// Blocking callers waiting on this connection while another leads
    /// (`follow`): a leader steps down when there are any.
    followers: std::sync::atomic::AtomicUsize,
}

/// The waker every poll of the task registers: the leader's, if a thread
/// leads, else the driver's.
struct Route {
    leader: Mutex<Option<Arc<Wakeup>>>,
    driver: Mutex<Option<Waker>>,
}

impl Wake for Route {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let leader = lock(&self.leader).clone();
        match leader {
            Some(l) => l.notify(),
            None => {
                if let Some(d) = lock(&self.driver).as_ref() {
                    d.wake_by_ref();
                }
            }
        }
    }
}

impl Cell {
    /// Keeps `task` in a new cell and spawns its driver on `rt`. The task
    /// ends when it returns or when the driver is aborted (which drops it).
    pub fn spawn<F>(rt: &Handle, task: F) -> (Arc<Cell>, JoinHandle<()>)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let cell = Arc::new(Cell {
            task: Mutex::new(Some(Box::pin(task))),
            repoll: AtomicBool::new(false),
            fd: std::sync::atomic::AtomicI32::new(-1),
            followers: std::sync::atomic::AtomicUsize::new(0),
            route: Arc::new(Route {
                leader: Mutex::new(None),
                driver: Mutex::new(None),
            }),
        });
        let driver = rt.spawn(Driver(cell.clone()));
        (cell, driver)
    }

    /// The socket a leader may sleep on (set by the task when it has one;
    /// `None` clears it, before the socket is closed).
    pub fn set_socket(&self, fd: Option<RawFd>) {
        self.fd.store(fd.unwrap_or(-1), SeqCst);
    }

    /// Makes `fd` the socket a leader sleeps on until the returned mark
    /// is dropped (which must happen before the socket closes).
    pub fn mark_socket(self: &Arc<Self>, fd: Option<RawFd>) -> Option<SocketMark> {
        let fd = fd?;
        self.fd.store(fd, SeqCst);
        Some(SocketMark {
            cell: Arc::downgrade(self),
            fd,
        })
    }

    /// Polls the task on this thread, unless another thread is polling it
    /// (which then polls again). True once the task has ended.
    fn poll_task(&self) -> bool {
        self.repoll.store(true, SeqCst);
        fence(SeqCst);
        loop {
            let mut task = match self.task.try_lock() {
                Ok(t) => t,
                Err(TryLockError::Poisoned(p)) => p.into_inner(),
                Err(TryLockError::WouldBlock) => return false,
            };
            let waker = Waker::from(self.route.clone());
            let mut cx = Context::from_waker(&waker);
            let mut ended = task.is_none();
            while !ended && self.repoll.swap(false, SeqCst) {
                let Some(t) = task.as_mut() else { break };
                // A panic in the task ends it here, as the runtime would end
                // a task that panicked; it never reaches the caller.
                let polled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    t.as_mut().poll(&mut cx)
                }));
                if !matches!(polled, Ok(Poll::Pending)) {
                    self.fd.store(-1, SeqCst);
                    *task = None;
                    ended = true;
                }
            }
            drop(task);
            if ended {
                self.ended();
                return true;
            }
            fence(SeqCst);
            if !self.repoll.load(SeqCst) {
                return false;
            }
        }
    }

    /// Polls the task on this thread, outside the runtime: reads go
    /// straight to the socket, at most `READS_PER_STEP` of them.
    fn poll_here(&self) -> bool {
        LEADING.with(|l| l.set(true));
        READS_LEFT.with(|r| r.set(READS_PER_STEP));
        let ended = self.poll_task();
        LEADING.with(|l| l.set(false));
        ended
    }

    /// The task is gone: the driver finishes and a sleeping leader wakes.
    fn ended(&self) {
        if let Some(d) = lock(&self.route.driver).as_ref() {
            d.wake_by_ref();
        }
        if let Some(l) = lock(&self.route.leader).as_ref() {
            l.notify();
        }
    }

    /// Makes this thread the connection's leader, if none is and leading is
    /// possible here; the lead ends when the returned value is dropped.
    pub fn lead(self: &Arc<Self>) -> Option<Lead> {
        // No self-pipe (none is made off Unix): no lead.
        let me = Wakeup::current();
        me.pipe()?;
        {
            let mut leader = lock(&self.route.leader);
            if leader.is_some() {
                return None;
            }
            *leader = Some(me.clone());
        }
        Some(Lead {
            cell: self.clone(),
            me,
            restless: std::cell::Cell::new(0),
        })
    }
}

/// A socket leaders sleep on, while it lives (see [`Cell::mark_socket`]).
pub struct SocketMark {
    cell: std::sync::Weak<Cell>,
    fd: RawFd,
}

impl Drop for SocketMark {
    fn drop(&mut self) {
        if let Some(cell) = self.cell.upgrade() {
            let _ = cell.fd.compare_exchange(self.fd, -1, SeqCst, SeqCst);
        }
    }
}

/// A blocking caller waiting on a connection that another thread leads,
/// counted until dropped.
pub struct Follow(Arc<Cell>);

impl Cell {
    /// Counts this thread among the connection's followers until the
    /// returned value is dropped.
    pub fn follow(self: &Arc<Self>) -> Follow {
        self.followers.fetch_add(1, SeqCst);
        Follow(self.clone())
    }
}

impl Drop for Follow {
    fn drop(&mut self) {
        self.0.followers.fetch_sub(1, SeqCst);
    }
}

/// The runtime task that polls the cell's task whenever no leader does.
struct Driver(Arc<Cell>);

impl Future for Driver {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        {
            let mut d = lock(&self.0.route.driver);
            if !d.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *d = Some(cx.waker().clone());
            }
        }
        if self.0.poll_task() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // Aborted (or done): the task, and with it its socket, goes now,
        // wherever it was in its work.
        self.0.fd.store(-1, SeqCst);
        let task = lock(&self.0.task).take();
        drop(task);
        *lock(&self.0.route.driver) = None;
        if let Some(l) = lock(&self.0.route.leader).as_ref() {
            l.notify();
        }
    }
}

/// A thread leading a connection. Dropping it steps down.
pub struct Lead {
    cell: Arc<Cell>,
    me: Arc<Wakeup>,
    /// Sleeps in a row that the socket ended at once: a socket that stays
    /// readable (or hung up) while the task does not read it would make
    /// the leader spin, so past `RESTLESS` it sleeps on its pipe alone.
    restless: std::cell::Cell<u32>,
}

/// See `Lead::restless`.
const RESTLESS: u32 = 256;

/// Socket reads one poll of the task by a leader makes at most. The
/// runtime ends a task's poll after a budget of operations; a leader's
/// poll runs outside it, and a task that loops while its socket has data
/// (a burst) would keep the leader reading the whole burst into the queues
/// before it takes a single event, and overflow them. Past these reads the
/// socket reports "not now" and wakes whoever runs the task next.
const READS_PER_STEP: u32 = 4;

impl Lead {
    /// Whether this lead is of `cell`.
    pub fn of(&self, cell: &Arc<Cell>) -> bool {
        Arc::ptr_eq(&self.cell, cell)
    }

    /// Whether other blocking callers wait on the connection too. Then the
    /// driver serves them better: it takes every answer a read brings and
    /// hands each over, where a leader would read for them between its own
    /// polls, and callers taking turns at leading contend for the CPU.
    pub fn followed(&self) -> bool {
        self.cell.followers.load(SeqCst) > 0
    }

    /// Polls the connection's task here, reading straight from its socket
    /// whatever it holds. True once the task has ended.
    pub fn step(&self) -> bool {
        self.cell.poll_here()
    }

    /// Sleeps until the connection's socket is readable, this thread is
    /// woken ([`Wakeup::notify`]) or `until` passes.
    /// True if it was the socket alone that woke it.
    pub fn sleep(&self, until: Option<Instant>) -> bool {
        let restless = self.restless.get();
        let fd = match restless < RESTLESS {
            true => self.cell.fd.load(SeqCst),
            false => -1,
        };
        let by_socket = self.me.sleep(fd, until);
        self.restless.set(if by_socket {
            restless.saturating_add(1)
        } else {
            0
        });
        by_socket
    }
}

impl Drop for Lead {
    fn drop(&mut self) {
        *lock(&self.cell.route.leader) = None;
        // Anything that woke the leader after its last poll is seen now;
        // from here on wakes go to the driver.
        self.cell.poll_here();
    }
}

thread_local! {
    /// Set while this thread polls a task as its leader: reads go straight
    /// to the socket.
    static LEADING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// Reads a leader may still make in its current step (see
    /// `READS_PER_STEP`).
    static READS_LEFT: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
    static WAKEUP: Arc<Wakeup> = Arc::new(Wakeup {
        woken: AtomicBool::new(false),
        sleeping: AtomicBool::new(false),
        woken_at: AtomicU64::new(0),
        thread: std::thread::current(),
        pipe: std::sync::OnceLock::new(),
    });
}

impl Wake for Wakeup {
    fn wake(self: Arc<Self>) {
        self.notify();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.notify();
    }
}

/// How a blocked thread is woken: parked (unpark) or asleep in `poll(2)`
/// as a leader (a byte on its self-pipe). One per thread.
pub struct Wakeup {
    woken: AtomicBool,
    sleeping: AtomicBool,
    /// When it was last woken (`now_ns` of `block`), for the spin policy.
    pub woken_at: AtomicU64,
    thread: Thread,
    /// The self-pipe (read end, write end), made the first time the thread
    /// leads; `None` if it could not be made (then it does not lead).
    pipe: std::sync::OnceLock<Option<Pipe>>,
}

impl Wakeup {
    /// This thread's.
    pub fn current() -> Arc<Wakeup> {
        WAKEUP.with(Arc::clone)
    }

    /// Whether it was woken since the last [`Wakeup::reset`].
    pub fn woken(&self) -> bool {
        self.woken.load(SeqCst)
    }

    pub fn reset(&self) {
        self.woken.store(false, SeqCst);
    }

    pub fn notify(&self) {
        self.woken_at
            .store(crate::engine::net::block::now_ns(), SeqCst);
        self.woken.store(true, SeqCst);
        if self.sleeping.load(SeqCst) {
            if let Some(Some(p)) = self.pipe.get() {
                p.poke();
            }
        } else {
            self.thread.unpark();
        }
    }

    fn pipe(&self) -> Option<&Pipe> {
        self.pipe.get_or_init(|| Pipe::new().ok()).as_ref()
    }

    /// Sleeps until `fd` (if any) is ready, this thread is woken, or
    /// `until` passes. True if it was the socket alone that ended it.
    fn sleep(&self, fd: RawFd, until: Option<Instant>) -> bool {
        let Some(pipe) = self.pipe() else {
            match until {
                Some(u) => std::thread::park_timeout(u.saturating_duration_since(Instant::now())),
                None => std::thread::park(),
            }
            return false;
        };
        self.sleeping.store(true, SeqCst);
        let by_socket = !self.woken.load(SeqCst) && pipe.wait(fd, until);
        self.sleeping.store(false, SeqCst);
        by_socket && !self.woken.load(SeqCst)
    }
}

#[cfg(unix)]
struct Pipe {
    read: std::os::fd::OwnedFd,
    write: std::os::fd::OwnedFd,
}

#[cfg(unix)]
impl Pipe {
    fn new() -> io::Result<Pipe> {
        use std::os::fd::FromRawFd;
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors pipe(2) writes.
        if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: both are new descriptors owned by nobody else.
        let (read, write) = unsafe {
            (
                std::os::fd::OwnedFd::from_raw_fd(fds[0]),
                std::os::fd::OwnedFd::from_raw_fd(fds[1]),
            )
        };
        for fd in [&read, &write] {
            let fd = fd.as_raw_fd();
            // SAFETY: fcntl on descriptors this function owns.
            unsafe {
                libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
                let fl = libc::fcntl(fd, libc::F_GETFL);
                libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK);
            }
        }
        Ok(Pipe { read, write })
    }

    fn poke(&self) {
        // SAFETY: a one-byte write from a valid buffer to an owned
        // descriptor; a full pipe (EAGAIN) already wakes the sleeper.
        unsafe { libc::write(self.write.as_raw_fd(), [1u8].as_ptr().cast(), 1) };
    }

    /// Waits; true if `fd` was ready.
    fn wait(&self, fd: RawFd, until: Option<Instant>) -> bool {
        let timeout = match until {
            None => -1,
            Some(u) => {
                let left = u.saturating_duration_since(Instant::now());
                // Rounded up: a wait never ends before `until`.
                left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32
            }
        };
        let mut fds = [
            libc::pollfd {
                fd: self.read.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        let n = if fd >= 0 { 2 } else { 1 };
        // SAFETY: `fds` holds `n` initialised pollfd structures.
        unsafe { libc::poll(fds.as_mut_ptr(), n, timeout) };
        if fds[0].revents != 0 {
            let mut buf = [0u8; 64];
            // SAFETY: reads into a local buffer of its size; non-blocking.
            while unsafe { libc::read(self.read.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) }
                > 0
            {}
        }
        n == 2 && fds[1].revents != 0
    }
}

#[cfg(not(unix))]
struct Pipe;

#[cfg(not(unix))]
impl Pipe {
    fn new() -> io::Result<Pipe> {
        Err(io::ErrorKind::Unsupported.into())
    }
    fn poke(&self) {}
    fn wait(&self, _fd: RawFd, _until: Option<Instant>) -> bool {
        false
    }
}

/// A TCP connection whose reads, while a leader polls its task, go
/// straight to the socket instead of waiting for the runtime to have seen
/// it readable.
pub struct Direct(pub TcpStream);

impl Direct {
    /// The socket, for a leader to sleep on.
    pub fn socket(&self) -> Option<RawFd> {
        #[cfg(unix)]
        return Some(self.0.as_raw_fd());
        #[cfg(not(unix))]
        None
    }
}

impl AsyncRead for Direct {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        #[cfg(unix)]
        if LEADING.with(|l| l.get()) && buf.remaining() > 0 {
            if READS_LEFT.with(|r| r.replace(r.get().saturating_sub(1))) == 0 {
                // This step has read its share: the rest on the next one.
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            // SAFETY: recv writes at most `dst.len()` bytes into the
            // unfilled part, which are then marked initialised and filled.
            unsafe {
                let dst = buf.unfilled_mut();
                let n = libc::recv(
                    self.0.as_raw_fd(),
                    dst.as_mut_ptr().cast(),
                    dst.len(),
                    libc::MSG_DONTWAIT,
                );
                if n >= 0 {
                    buf.assume_init(n as usize);
                    buf.advance(n as usize);
                    return Poll::Ready(Ok(()));
                }
            }
            let e = io::Error::last_os_error();
            if !matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
            ) {
                return Poll::Ready(Err(e));
            }
        }
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Direct {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
}

thread_local! {
    /// The connection the future being waited for on this thread waits on
    /// (`offer`), taken by the blocking wait after each poll.
    static OFFER: std::cell::RefCell<Option<Arc<Cell>>> = const { std::cell::RefCell::new(None) };
    /// Set while a blocking wait polls its future on this thread.
    static BLOCKING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Called by a future about to wait for something `cell`'s connection will
/// bring: if a blocking wait runs it on this thread, that thread may lead.
/// Anywhere else (async callers, runtime threads) it does nothing.
pub fn offer(cell: &Arc<Cell>) {
    if BLOCKING.with(|b| b.get()) {
        OFFER.with(|o| *o.borrow_mut() = Some(cell.clone()));
    }
}

/// What the future offered during its last poll (see [`offer`]).
pub(crate) fn take_offer() -> Option<Arc<Cell>> {
    OFFER.with(|o| o.borrow_mut().take())
}

/// Marks this thread as running a blocking wait until the guard drops.
pub(crate) fn blocking() -> impl Drop {
    struct Guard(bool);
    impl Drop for Guard {
        fn drop(&mut self) {
            BLOCKING.with(|b| b.set(self.0));
            OFFER.with(|o| o.borrow_mut().take());
        }
    }
    Guard(BLOCKING.with(|b| b.replace(true)))
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::thread::ThreadId;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A task reading a TCP socket through `Direct` a `chunk` at a time,
    /// recording which thread read each byte and counting reads.
    struct Reads {
        by: Mutex<Vec<(u8, ThreadId)>>,
        count: AtomicUsize,
    }

    fn setup(
        chunk: usize,
    ) -> (
        tokio::runtime::Runtime,
        Arc<Cell>,
        Arc<Reads>,
        tokio::net::TcpStream,
    ) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let (ours, theirs) = rt.block_on(async {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let a = tokio::net::TcpStream::connect(l.local_addr().unwrap());
            let (a, b) = tokio::join!(a, l.accept());
            (a.unwrap(), b.unwrap().0)
        });
        let reads = Arc::new(Reads {
            by: Mutex::new(Vec::new()),
            count: AtomicUsize::new(0),
        });
        let mut io = Direct(ours);
        let fd = io.socket();
        let r = reads.clone();
        let _guard = rt.enter();
        let (cell, _driver) = Cell::spawn(rt.handle(), async move {
            let mut buf = vec![0u8; chunk];
            loop {
                let n = io.read(&mut buf).await.unwrap();
                if n == 0 {
                    return;
                }
                r.count.fetch_add(1, SeqCst);
                let me = std::thread::current().id();
                lock(&r.by).extend(buf[..n].iter().map(|b| (*b, me)));
            }
        });
        cell.set_socket(fd);
        (rt, cell, reads, theirs)
    }

    fn send(rt: &tokio::runtime::Runtime, to: &mut tokio::net::TcpStream, bytes: &[u8]) {
        rt.block_on(to.write_all(bytes)).unwrap();
    }

    /// Leads until `n` bytes were read, stepping and sleeping as a waiting
    /// caller does.
    fn lead_until(lead: &Lead, reads: &Reads, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while lock(&reads.by).len() < n {
            assert!(Instant::now() < deadline, "the leader read nothing");
            Wakeup::current().reset();
            lead.step();
            if lock(&reads.by).len() < n {
                lead.sleep(Some(deadline));
            }
        }
    }

    #[test]
    fn a_waiting_leader_reads_on_its_own_thread_and_the_driver_reads_when_nobody_leads() {
        let (rt, cell, reads, mut theirs) = setup(64);
        let me = std::thread::current().id();
        send(&rt, &mut theirs, b"a");
        // The worker may take it before the lead starts; wait until it
        // has, so that what follows is read only with a leader.
        let deadline = Instant::now() + Duration::from_secs(10);
        while lock(&reads.by).is_empty() {
            assert!(Instant::now() < deadline, "the driver read nothing");
            std::thread::sleep(Duration::from_millis(1));
        }
        let _context = rt.enter();
        let lead = cell.lead().expect("nobody else leads");
        assert!(cell.lead().is_none(), "one leader at a time");
        send(&rt, &mut theirs, b"b");
        lead_until(&lead, &reads, 2);
        assert_eq!(
            lock(&reads.by)[1],
            (b'b', me),
            "read by the thread that waited for it"
        );
        drop(lead);
        // Stepped down: the driver reads again, on the runtime's worker.
        send(&rt, &mut theirs, b"c");
        let deadline = Instant::now() + Duration::from_secs(10);
        while lock(&reads.by).len() < 3 {
            assert!(
                Instant::now() < deadline,
                "nobody read after the lead ended"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        let (byte, by) = lock(&reads.by)[2];
        assert_eq!(byte, b'c');
        assert_ne!(by, me, "read by the driver, not the thread that left");
    }

    #[test]
    fn a_leaders_poll_reads_a_bounded_share_of_a_burst() {
        // A burst already waiting in the socket, read a byte per read: one
        // poll by a leader takes READS_PER_STEP of it, not all of it.
        let (rt, cell, reads, mut theirs) = setup(1);
        let _context = rt.enter();
        let lead = cell.lead().expect("nobody else leads");
        send(&rt, &mut theirs, &[7u8; 100]);
        lead_until(&lead, &reads, 1);
        assert!(
            reads.count.load(SeqCst) <= READS_PER_STEP as usize,
            "{} reads in one step",
            reads.count.load(SeqCst)
        );
        // The rest on the following steps.
        lead_until(&lead, &reads, 100);
        assert!(lock(&reads.by).iter().all(|(b, _)| *b == 7));
    }

    #[test]
    fn a_task_that_ends_under_a_leader_ends_its_lead_and_its_driver() {
        let (rt, cell, _reads, theirs) = setup(64);
        let _context = rt.enter();
        let lead = cell.lead().expect("nobody else leads");
        drop(theirs); // end of stream: the task returns
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            Wakeup::current().reset();
            if lead.step() {
                break;
            }
            assert!(Instant::now() < deadline, "the task never ended");
            lead.sleep(Some(deadline));
        }
        assert_eq!(cell.fd.load(SeqCst), -1, "no socket to sleep on any more");
        drop(lead);
        assert!(lock(&cell.task).is_none());
    }
}
