//! A descriptor a host event loop (poll, epoll, kqueue, select, IOCP via
//! a socket) can wait on: readable while it is raised, not after it is
//! lowered. The queue raises it while events are queued.
//!
//! A connected pair of local sockets, from std only: a Unix-domain pair
//! on Unix, a loopback TCP pair on Windows (where poll and select take
//! sockets only). One byte is in flight while raised, none while lowered;
//! both ends are non-blocking, so raising and lowering never wait.

use std::io::{ErrorKind, Read, Write};

#[cfg(unix)]
type End = std::os::unix::net::UnixStream;
#[cfg(windows)]
type End = std::net::TcpStream;

/// The descriptor as the C API hands it out: a file descriptor on Unix,
/// a SOCKET on Windows.
pub type RawFd = i64;

pub struct Signal {
    reader: End,
    writer: End,
    /// Bytes written and not yet read back: at most one. On Windows a
    /// loopback byte may still be travelling when it is lowered; it is
    /// read back by the next `set`, so a wake-up it causes is spurious
    /// once at most.
    in_flight: u32,
}

impl Signal {
    pub fn new() -> std::io::Result<Signal> {
        let (reader, writer) = pair()?;
        reader.set_nonblocking(true)?;
        writer.set_nonblocking(true)?;
        Ok(Signal {
            reader,
            writer,
            in_flight: 0,
        })
    }

    /// The end to wait on for readability.
    pub fn fd(&self) -> RawFd {
        #[cfg(unix)]
        {
            use std::os::unix::io::AsRawFd;
            self.reader.as_raw_fd() as RawFd
        }
        #[cfg(windows)]
        {
            use std::os::windows::io::AsRawSocket;
            self.reader.as_raw_socket() as RawFd
        }
    }

    /// Raised (readable) or lowered as `up` says.
    pub fn set(&mut self, up: bool) {
        if up {
            // One byte in an empty socket buffer: cannot block. On any
            // other failure it stays lowered and the next change retries.
            if self.in_flight == 0 && matches!((&self.writer).write(&[1]), Ok(1)) {
                self.in_flight = 1;
            }
            return;
        }
        let mut buf = [0u8; 8];
        while self.in_flight > 0 {
            match (&self.reader).read(&mut buf) {
                Ok(0) => break,
                Ok(n) => self.in_flight = self.in_flight.saturating_sub(n as u32),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
    }
}

#[cfg(unix)]
fn pair() -> std::io::Result<(End, End)> {
    End::pair()
}

#[cfg(windows)]
fn pair() -> std::io::Result<(End, End)> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    let writer = End::connect(listener.local_addr()?)?;
    let (reader, _) = listener.accept()?;
    // The accepted end must be the one we connected: nothing else knows
    // the port, but check rather than assume.
    if reader.peer_addr()? != writer.local_addr()? {
        return Err(std::io::Error::other(
            "a stranger connected to the signal socket",
        ));
    }
    writer.set_nodelay(true)?;
    Ok((reader, writer))
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    fn readable(s: &Signal) -> bool {
        use std::os::unix::io::AsRawFd;
        let mut p = libc::pollfd {
            fd: s.reader.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd; a timeout of 0 does not wait.
        let n = unsafe { libc::poll(&mut p, 1, 0) };
        n == 1 && p.revents & libc::POLLIN != 0
    }

    #[test]
    fn readable_exactly_while_raised() {
        let mut s = Signal::new().unwrap();
        assert!(!readable(&s));
        s.set(true);
        s.set(true);
        assert!(readable(&s));
        s.set(false);
        assert!(!readable(&s));
        s.set(true);
        assert!(readable(&s));
    }
}
