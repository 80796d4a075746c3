//! A server's "retry after" time, turned into a wait the library will take.
//!
//! Binance sends `error.data.retryAfter` (ms since the Unix epoch) with a 429
//! or 418. The server's word is honoured, but only up to [`MAX_RETRY_WAIT`]:
//! a hostile or broken server must not be able to park a stream.

use std::time::Duration;

/// The longest the library waits on a server's retry-after time, on every
/// path (keepalives and reconnects alike).
///
/// Why five minutes: a listenKey dies 60 minutes after its last successful
/// keepalive, and the keepalive interval may be set as high as 55 minutes
/// (`binance_config_set_keepalive_interval_ms`). A keepalive postponed by
/// more than the 5 minutes left would let the key die; at 5 minutes a
/// refused keepalive is retried while the key still lives, for every
/// allowed interval. For reconnects, one attempt every 5 minutes during a
/// long IP ban is too few to extend the ban, and the stream is back within
/// 5 minutes of the ban lifting, whatever time the server claimed.
pub const MAX_RETRY_WAIT: Duration = Duration::from_secs(5 * 60);

/// How long to wait before retrying when the server said "not before
/// `retry_after_ms`" (ms since the Unix epoch), it being `now_ms`: `None`
/// when the time is not in the future (0 is "the server did not say"),
/// otherwise the wait, at most [`MAX_RETRY_WAIT`].
pub fn retry_wait(retry_after_ms: i64, now_ms: i64) -> Option<Duration> {
    let ahead = retry_after_ms.checked_sub(now_ms).filter(|d| *d > 0)?;
    Some(Duration::from_millis(ahead as u64).min(MAX_RETRY_WAIT))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_time_in_the_past_or_none_means_no_wait() {
        assert_eq!(retry_wait(0, 1_700_000_000_000), None);
        assert_eq!(retry_wait(1_699_999_999_999, 1_700_000_000_000), None);
        assert_eq!(retry_wait(1_700_000_000_000, 1_700_000_000_000), None);
        assert_eq!(retry_wait(i64::MIN, i64::MAX), None);
    }

    #[test]
    fn a_near_time_is_honoured() {
        let now = 1_700_000_000_000;
        assert_eq!(
            retry_wait(now + 2_500, now),
            Some(Duration::from_millis(2_500))
        );
    }

    #[test]
    fn a_hostile_time_is_capped_so_the_key_outlives_the_wait() {
        let now = 1_700_000_000_000;
        // A year ahead, or the largest value the wire can carry.
        for far in [now + 365 * 24 * 3_600_000, i64::MAX] {
            assert_eq!(retry_wait(far, now), Some(MAX_RETRY_WAIT));
        }
        // The longest keepalive interval plus the cap stays within the
        // key's 60-minute life.
        let longest_interval = Duration::from_millis(3_300_000);
        assert!(longest_interval + MAX_RETRY_WAIT <= Duration::from_secs(3600));
    }
}
