//! Running a request to completion on the calling thread.
//!
//! A blocking call waits for an answer that the connection's reader task,
//! on a runtime thread, hands over. Parking the caller costs a wake-up (a
//! futex and a context switch, tens of microseconds on a busy virtual
//! machine) on every answer, which on loopback or a colocated gateway is a
//! large part of the round trip. So the caller first spins, yielding the
//! CPU between checks, for a budget derived from recent round trips, and
//! parks only if the answer is slower than that.
//!
//! Whether spinning pays is measured, not assumed. Each call records how
//! late its caller noticed the answer: after a park, the wake-up (from the
//! waker's call to the caller running again); while spinning, the delay of
//! the spinner's next check (long when the yield let other work run, as on
//! a loaded machine). A caller spins only if spinners notice sooner than
//! woken callers, and only while the expected wait is within a few
//! wake-ups (`SPIN_WORTH`); one call in `EXPLORE` waits the other way, so
//! both figures stay current. On a slower machine the round trip and the
//! wake-up grow together, so the decision is the same; on a distant server
//! (round trips of milliseconds against wake-ups of microseconds) nothing
//! is spun.
//!
//! When the future waits on a connection it offered (`lead::offer`: the
//! WebSocket API session does), the caller does not wait for the hand-over
//! at all: it leads that connection (`lead`), reading it on its own thread.
//! Its spin then polls the socket rather than a flag, and its sleep is in
//! `poll(2)` on the socket rather than a park, so the answer reaches it
//! without the runtime worker's wake-up.

use super::lead;
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};
use tokio::runtime::Handle;

/// A caller spins for a round trip only if it is at most this many measured
/// wake-ups long: spinning then costs at most this many times the CPU it
/// saves in latency.
const SPIN_WORTH: u64 = 8;
/// Until a wake-up has been measured, it is assumed to cost this much.
const DEFAULT_WAKE: Duration = Duration::from_micros(30);
/// One call in this many waits the way not preferred, to measure it.
const EXPLORE: u32 = 128;
/// At most this many callers of one session spin at once (the machine's
/// cores): with more, spinning ones would take the CPU from the reader they
/// wait for.
fn max_spinners() -> u32 {
    static N: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *N.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get().min(64) as u32))
}

/// Recent round trips and wake-up costs of one session, and who is
/// spinning.
#[derive(Default)]
pub struct SpinPolicy {
    /// Exponential moving average of round trips, in ns (0: none yet).
    rtt_ns: AtomicU64,
    /// Exponential moving average of wake-ups after a park, in ns (0: none
    /// measured yet).
    wake_ns: AtomicU64,
    /// Exponential moving average of how late a spinner noticed its
    /// answer, in ns (0: none measured yet).
    notice_ns: AtomicU64,
    calls: AtomicU32,
    spinners: AtomicU32,
}

/// An exponential moving average (weight 1/8) in `avg`.
fn average(avg: &AtomicU64, sample: Duration) {
    let sample = sample.as_nanos().min(u64::MAX as u128) as u64;
    let old = avg.load(Ordering::Relaxed);
    let new = if old == 0 {
        sample.max(1)
    } else {
        old - old / 8 + sample / 8
    };
    avg.store(new, Ordering::Relaxed);
}

impl SpinPolicy {
    /// How long a caller may spin now (zero: park at once).
    fn budget(&self) -> Duration {
        let rtt = Duration::from_nanos(self.rtt_ns.load(Ordering::Relaxed));
        let wake = match self.wake_ns.load(Ordering::Relaxed) {
            0 => DEFAULT_WAKE,
            ns => Duration::from_nanos(ns),
        };
        if rtt.is_zero() || rtt.as_nanos() > wake.as_nanos() * u128::from(SPIN_WORTH) {
            return Duration::ZERO;
        }
        let notice = self.notice_ns.load(Ordering::Relaxed);
        let prefer_spin = notice == 0 || u128::from(notice) < wake.as_nanos();
        let explore = self.calls.fetch_add(1, Ordering::Relaxed) % EXPLORE == EXPLORE - 1;
        if prefer_spin != explore {
            rtt * 2
        } else {
            Duration::ZERO
        }
    }

    fn record(&self, rtt: Duration) {
        average(&self.rtt_ns, rtt);
    }

    fn record_wake(&self, wake: Duration) {
        average(&self.wake_ns, wake);
    }

    fn record_notice(&self, late: Duration) {
        average(&self.notice_ns, late);
    }
}

/// Nanoseconds since the first call, for timestamps kept in atomics.
pub(crate) fn now_ns() -> u64 {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    epoch.elapsed().as_nanos().min(u64::MAX as u128) as u64
}

/// Polls `fut` on this thread (inside the runtime's context) until it is
/// ready. While it waits for a connection that it offered
/// ([`lead::offer`]), this thread leads that connection (reads it itself,
/// `lead`); otherwise it waits for the hand-over. Either way it spins
/// within the policy's budget before it sleeps.
pub fn block_on<F: Future>(handle: &Handle, policy: &SpinPolicy, fut: F) -> F::Output {
    let _context = handle.enter();
    let _blocking = lead::blocking();
    let me = lead::Wakeup::current();
    let waker = Waker::from(me.clone());
    let mut cx = Context::from_waker(&waker);
    let mut fut = pin!(fut);
    let started = Instant::now();
    let budget = policy.budget();
    let counted = (!budget.is_zero()).then(|| Spinner::enter(policy));
    let spinning = counted.as_ref().is_some_and(|s| s.allowed);
    let mut leading: Option<lead::Lead> = None;
    let mut following: Option<lead::Follow> = None;
    let out = loop {
        me.reset();
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            break out;
        }
        match lead::take_offer() {
            Some(cell) if leading.as_ref().is_some_and(|l| l.of(&cell)) => {}
            Some(cell) => {
                drop(leading.take()); // steps down before leading another
                leading = cell.lead();
                if leading.is_none() && following.is_none() {
                    following = Some(cell.follow());
                }
            }
            None => drop(leading.take()),
        }
        let (mut parked, mut spun, mut led) = (false, false, false);
        while !me.woken() {
            let spin = spinning && started.elapsed() < budget;
            match &leading {
                Some(l) => {
                    led = true;
                    // Read what the socket holds; this may be the answer.
                    if l.step() || l.followed() {
                        // The connection's task ended, or others wait on
                        // it too: the driver reads from here on.
                        leading = None;
                        continue;
                    }
                    if me.woken() {
                        break;
                    }
                    if spin {
                        std::thread::yield_now();
                        spun = true;
                    } else {
                        l.sleep(None);
                        parked = true;
                    }
                }
                None if spin => {
                    std::thread::yield_now();
                    spun = true;
                }
                None => {
                    // unpark() before park() makes park() return at once:
                    // no wake-up is lost between the check and the park.
                    std::thread::park();
                    parked = true;
                }
            }
        }
        // A leader notices its answer as it reads it: only the hand-over's
        // wake-ups are measured.
        if (parked || spun) && !led {
            let at = me.woken_at.load(Ordering::Relaxed);
            let late = Duration::from_nanos(now_ns().saturating_sub(at));
            if parked {
                policy.record_wake(late);
            } else {
                policy.record_notice(late);
            }
        }
    };
    drop(leading);
    drop(following);
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
        // One call in EXPLORE parks, to measure the wake-up.
        let parks = (0..EXPLORE).filter(|_| p.budget().is_zero()).count();
        assert_eq!(parks, 1);
        for _ in 0..100 {
            p.record(Duration::from_millis(20));
        }
        assert_eq!(p.budget(), Duration::ZERO, "distant server: no spin");
    }

    #[test]
    fn budget_scales_with_the_measured_wake_up() {
        // A round trip of 600 µs is worth spinning for only where a wake-up
        // costs more than 600 / SPIN_WORTH µs: the same decision on a machine
        // three times slower in both.
        let fast = SpinPolicy::default();
        fast.record_wake(Duration::from_micros(20));
        fast.record(Duration::from_micros(600));
        assert_eq!(fast.budget(), Duration::ZERO);
        let slow = SpinPolicy::default();
        slow.record_wake(Duration::from_micros(80));
        slow.record(Duration::from_micros(600));
        assert_eq!(slow.budget(), Duration::from_micros(1200));
    }

    #[test]
    fn parks_where_spinners_notice_later_than_woken_callers() {
        // A loaded machine: the yield lets other work run for longer than a
        // wake-up takes, so spinning is no faster and costs CPU.
        let p = SpinPolicy::default();
        p.record(Duration::from_micros(50));
        p.record_wake(Duration::from_micros(20));
        p.record_notice(Duration::from_micros(200));
        let spins = (0..EXPLORE).filter(|_| !p.budget().is_zero()).count();
        assert_eq!(spins, 1, "only the one exploring call spins");
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
