//! Waiting for the condition a test names, never a fixed sleep: a sleep is
//! too short on a loaded machine or under valgrind, and wasted time
//! everywhere else.

use std::time::{Duration, Instant};

/// Polls `cond` every 10 ms until it holds; panics naming `what` after
/// `limit` (a bound for a hung test, not a timing assertion).
pub fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// How long a thread must stay asleep in futex to count as blocked (the
/// same rule as tests/c/blocked.h).
const BLOCKED_STABLE: Duration = Duration::from_millis(100);

/// The calling thread's kernel id, as /proc/self/task lists it (Linux).
pub fn thread_id() -> u64 {
    let link = std::fs::read_link("/proc/thread-self").expect("/proc/thread-self (Linux)");
    link.file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("thread id in {}", link.display()))
}

/// The system call thread `tid` of this process sleeps in (None while it
/// runs or sleeps outside one).
/// The futex system call's number: what a blocked waiter sleeps in. Only
/// Linux shows a thread's system call (/proc), so elsewhere `wait_blocked`
/// cannot tell and fails saying so (the tests that use it run on Linux).
#[cfg(target_os = "linux")]
const SYS_FUTEX: i64 = libc::SYS_futex;
#[cfg(not(target_os = "linux"))]
const SYS_FUTEX: i64 = -1;

/// Where a thread that waits sleeps: futex (a condition variable, a
/// parked thread) or poll(2) (a reader leading its stream's connection
/// sleeps on the socket: src/engine/net/lead.rs).
fn asleep_waiting(nr: i64) -> bool {
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    if nr == libc::SYS_poll {
        return true;
    }
    #[cfg(target_os = "linux")]
    if nr == libc::SYS_ppoll {
        return true;
    }
    nr == SYS_FUTEX
}

fn syscall_of(tid: u64) -> Option<i64> {
    let path = format!("/proc/self/task/{tid}/syscall");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.split_whitespace().next()?.parse().ok()
}

/// Waits until thread `tid` (its `thread_id`, taken just before a blocking
/// call) is blocked: asleep in futex, what a condition variable waits with,
/// for 100 ms without a break. The locks taken on the way into the call
/// are uncontended and held for microseconds, so a thread seen there that
/// long is waiting inside the call: a test that then wakes it tests the
/// wake-up, not a refusal on the way in. (Or asleep in poll(2): a reader
/// leading its connection.) Panics naming `what` after `limit`.
pub fn wait_blocked(what: &str, tid: u64, limit: Duration) {
    let mut since: Option<Instant> = None;
    wait_for(what, limit, || {
        if syscall_of(tid).is_some_and(asleep_waiting) {
            since.get_or_insert_with(Instant::now).elapsed() >= BLOCKED_STABLE
        } else {
            since = None;
            false
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{mpsc, Condvar, Mutex};

    #[test]
    fn a_thread_waiting_on_a_condvar_is_blocked_and_a_sleeping_one_is_not() {
        let pair = std::sync::Arc::new((Mutex::new(false), Condvar::new()));
        let (tx, rx) = mpsc::channel();
        let p = pair.clone();
        let waiter = std::thread::spawn(move || {
            tx.send(thread_id()).unwrap();
            let (lock, cv) = &*p;
            let _done = cv.wait_while(lock.lock().unwrap(), |done| !*done).unwrap();
        });
        wait_blocked("the waiter", rx.recv().unwrap(), Duration::from_secs(10));
        *pair.0.lock().unwrap() = true;
        pair.1.notify_all();
        waiter.join().unwrap();

        let (tx, rx) = mpsc::channel();
        let sleeper = std::thread::spawn(move || {
            tx.send(thread_id()).unwrap();
            std::thread::sleep(Duration::from_secs(2));
        });
        let tid = rx.recv().unwrap();
        let r = std::panic::catch_unwind(|| {
            wait_blocked("the sleeper", tid, Duration::from_millis(500))
        });
        assert!(r.is_err(), "a thread in nanosleep counted as blocked");
        sleeper.join().unwrap();
    }
}
