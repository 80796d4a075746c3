//! Exponential backoff with jitter and a cap, honouring a server's
//! retry-after time (bounded: a hostile value must not stall us for long).

use super::event::now_ms;
use std::time::Duration;
use tokio::time::Instant;

/// The longest a server's retry-after is obeyed when reconnecting.
const MAX_SERVER_WAIT: Duration = Duration::from_secs(3600);

pub struct Backoff {
    attempt: u32,
    initial: Duration,
    max: Duration,
    not_before: Option<Instant>,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff {
            attempt: 0,
            initial,
            max,
            not_before: None,
        }
    }

    /// The next attempt follows at once (after a connection that lived).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// The wait before the next attempt: none for the first after a reset,
    /// then initial * 2^n capped at max, each drawn between half and all of
    /// it so that many clients do not reconnect in step.
    pub fn delay(&mut self) -> Option<Duration> {
        let mut wait = Duration::ZERO;
        if self.attempt > 0 {
            let exp = self.attempt.saturating_sub(1).min(20);
            let base = self.initial.saturating_mul(1 << exp).min(self.max);
            wait = jitter(base / 2, base);
        }
        if let Some(t) = self.not_before.take() {
            wait = wait.max(t.saturating_duration_since(Instant::now()));
        }
        (!wait.is_zero()).then_some(wait)
    }

    /// An attempt failed; `retry_after_ms` is the server's word (ms since
    /// the epoch; 0 when none).
    pub fn failed(&mut self, retry_after_ms: i64) {
        self.attempt = self.attempt.saturating_add(1);
        let now = now_ms();
        if retry_after_ms > now {
            let wait = Duration::from_millis((retry_after_ms - now) as u64).min(MAX_SERVER_WAIT);
            self.not_before = Some(Instant::now() + wait);
        }
    }
}

/// A duration drawn uniformly from `[low, high]`: jitter needs spread, not
/// secrecy.
pub fn jitter(low: Duration, high: Duration) -> Duration {
    if high <= low {
        return low;
    }
    let span = (high - low).as_micros() as u64;
    low + Duration::from_micros(rand::random_range(0..=span))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_with_jitter_up_to_the_cap() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(1000));
        assert_eq!(b.delay(), None, "first attempt after a reset is immediate");
        let mut last_base = 0;
        for n in 1..=8u32 {
            b.failed(0);
            let d = b.delay().unwrap().as_millis() as u64;
            let base = (100u64 << (n - 1)).min(1000);
            assert!(
                d >= base / 2 && d <= base,
                "attempt {n}: {d} ms not in [{}, {base}]",
                base / 2
            );
            last_base = base;
        }
        assert_eq!(last_base, 1000);
        b.reset();
        assert_eq!(b.delay(), None);
    }

    #[test]
    fn honours_retry_after_within_a_bound() {
        let mut b = Backoff::new(Duration::from_millis(10), Duration::from_millis(20));
        b.failed(now_ms() + 2000);
        let d = b.delay().unwrap();
        assert!(d > Duration::from_millis(1500), "{d:?}");
        b.failed(now_ms() + 365 * 24 * 3600 * 1000);
        assert!(b.delay().unwrap() <= MAX_SERVER_WAIT);
    }

    #[test]
    fn jitter_stays_in_range() {
        let (lo, hi) = (Duration::from_millis(5), Duration::from_millis(9));
        for _ in 0..1000 {
            let d = jitter(lo, hi);
            assert!(d >= lo && d <= hi, "{d:?}");
        }
        assert_eq!(jitter(hi, lo), hi);
    }
}
