//! Running a request to completion on the calling thread.
//!
//! A blocking call waits for an answer that the connection's reader task,
//! on a runtime thread, hands over. Parking the caller costs a wake-up (a
//! futex and a context switch, tens of microseconds on a busy virtual
//! machine) on every answer, which on loopback or a colocated gateway is a
//! large part of the round trip. So the caller first spins, yielding the
//! CPU between checks, for a budget derived from recent round trips, and
//! parks only if the answer is slower than that. On a distant server (round
//! trips of milliseconds) the budget is zero: nothing is spun.

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;
use std::time::{Duration, Instant};
use tokio::runtime::Handle;

/// Round trips longer than this are not worth spinning for.
const SPIN_CEILING: Duration = Duration::from_micros(400);
/// At most this many callers of one session spin at once (the machine's
/// cores): with more, spinning ones would take the CPU from the reader they
/// wait for.
fn max_spinners() -> u32 {
    static N: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *N.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get().min(64) as u32))
}

/// Recent round trips of one session, and who is spinning.
#[derive(Default)]
pub struct SpinPolicy {
    /// Exponential moving average of round trips, in ns (0: none yet).
    rtt_ns: AtomicU64,
    spinners: AtomicU32,
}

impl SpinPolicy {
    /// How long a caller may spin now (zero: park at once).
    fn budget(&self) -> Duration {
        let rtt = Duration::from_nanos(self.rtt_ns.load(Ordering::Relaxed));
        if rtt.is_zero() || rtt > SPIN_CEILING {
            return Duration::ZERO;
        }
        rtt * 2
    }

    fn record(&self, rtt: Duration) {
        let sample = rtt.as_nanos().min(u64::MAX as u128) as u64;
        let old = self.rtt_ns.load(Ordering::Relaxed);
        let new = if old == 0 {
            sample
        } else {
            old - old / 8 + sample / 8
        };
        self.rtt_ns.store(new, Ordering::Relaxed);
    }
}

struct Flag {
    woken: AtomicBool,
    thread: Thread,
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.thread.unpark();
    }
}

/// Polls `fut` on this thread (inside the runtime's context) until it is
/// ready, spinning within the policy's budget before parking.
pub fn block_on<F: Future>(handle: &Handle, policy: &SpinPolicy, fut: F) -> F::Output {
    let _context = handle.enter();
    let flag = Arc::new(Flag {
        woken: AtomicBool::new(false),
        thread: std::thread::current(),
    });
    let waker = Waker::from(flag.clone());
    let mut cx = Context::from_waker(&waker);
    let mut fut = pin!(fut);
    let started = Instant::now();
    let budget = policy.budget();
    let counted = (!budget.is_zero()).then(|| Spinner::enter(policy));
    let spinning = counted.as_ref().is_some_and(|s| s.allowed);
    let out = loop {
        flag.woken.store(false, Ordering::Release);
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            break out;
        }
        while !flag.woken.load(Ordering::Acquire) {
            if spinning && started.elapsed() < budget {
                std::thread::yield_now();
            } else {
                // unpark() before park() makes park() return at once: no
                // wake-up is lost between the check and the park.
                std::thread::park();
            }
        }
    };
    drop(counted);
    policy.record(started.elapsed());
    out
}

/// One caller counted among a session's spinners until it is dropped (also
/// if the future panics).
struct Spinner<'a> {
    policy: &'a SpinPolicy,
    allowed: bool,
}

impl<'a> Spinner<'a> {
    fn enter(policy: &'a SpinPolicy) -> Spinner<'a> {
        let before = policy.spinners.fetch_add(1, Ordering::Relaxed);
        Spinner {
            policy,
            allowed: before < max_spinners(),
        }
    }
}

impl Drop for Spinner<'_> {
    fn drop(&mut self) {
        self.policy.spinners.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_follows_recent_round_trips() {
        let p = SpinPolicy::default();
        assert_eq!(p.budget(), Duration::ZERO, "nothing measured: no spin");
        p.record(Duration::from_micros(50));
        assert_eq!(p.budget(), Duration::from_micros(100));
        for _ in 0..100 {
            p.record(Duration::from_millis(20));
        }
        assert_eq!(p.budget(), Duration::ZERO, "distant server: no spin");
    }

    #[test]
    fn runs_futures_that_wait_on_the_runtime() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_time()
            .build()
            .unwrap();
        let p = SpinPolicy::default();
        for _ in 0..3 {
            let (tx, rx) = tokio::sync::oneshot::channel();
            rt.spawn(async move {
                tokio::time::sleep(Duration::from_millis(5)).await;
                tx.send(7).unwrap();
            });
            let v = block_on(rt.handle(), &p, async { rx.await.unwrap() });
            assert_eq!(v, 7);
        }
        let t0 = Instant::now();
        block_on(rt.handle(), &p, async {
            tokio::time::sleep(Duration::from_millis(20)).await
        });
        assert!(t0.elapsed() >= Duration::from_millis(20));
    }
}
