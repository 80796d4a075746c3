//! Request weight per IP and the IP ban, as Binance's "LIMITS" page describes
//! them (docs/local-exchange.md, "Request weight and the IP ban"): weight is
//! counted in fixed windows of the server's clock (one minute: a request at
//! 00:01:23 counts toward 00:01), REST and the WebSocket API together; past
//! the limit a request gets 429 and the time the window ends; an IP that
//! keeps sending before that time is banned (418 for every request until
//! the ban ends), each ban of the same IP twice as long as the one before.
//!
//! Pure bookkeeping: the caller passes the server's time, so the rules are
//! tested without waiting.

use serde_json::{json, Value};

/// The limits' settings (flags and `set`).
#[derive(Clone, Copy, Debug)]
pub struct Rules {
    /// Request weight per IP per window; 0: no limit (and so no ban).
    pub weight_per_window: u64,
    /// The window's length; windows start at multiples of it (server ms).
    pub window_ms: u64,
    /// Requests an IP may send between a 429 and the time it gave before it
    /// is banned; 0: never banned.
    pub ban_after: u64,
    /// The first ban's length; each later ban of the same IP doubles it.
    pub ban_first_ms: u64,
    /// No ban is longer.
    pub ban_max_ms: u64,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            weight_per_window: 2400,
            window_ms: 60_000,
            ban_after: 10,
            // "from 2 minutes to 3 days".
            ban_first_ms: 120_000,
            ban_max_ms: 3 * 86_400_000,
        }
    }
}

/// Why a request is not served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// 429: over the window's weight (or still inside the wait a 429 gave).
    TooMany { used: u64, retry_at_ms: u64 },
    /// 418: the IP is banned until then.
    Banned { used: u64, until_ms: u64 },
}

impl Refused {
    pub fn status(self) -> u16 {
        match self {
            Refused::TooMany { .. } => 429,
            Refused::Banned { .. } => 418,
        }
    }
    /// The weight used in the window, as `rateLimits` reports it.
    pub fn used(self) -> u64 {
        match self {
            Refused::TooMany { used, .. } | Refused::Banned { used, .. } => used,
        }
    }
    /// When the IP may send again (server ms).
    pub fn retry_at_ms(self) -> u64 {
        match self {
            Refused::TooMany { retry_at_ms, .. } => retry_at_ms,
            Refused::Banned { until_ms, .. } => until_ms,
        }
    }
    /// Binance's -1003 message for it.
    pub fn msg(self, ip: std::net::IpAddr, limit: u64) -> String {
        match self {
            Refused::TooMany { .. } => format!(
                "Too many requests; current limit of IP({ip}) is {limit} requests per minute. \
Please use the websocket for live updates to avoid polling the API."
            ),
            Refused::Banned { until_ms, .. } => format!(
                "Way too many requests; IP({ip}) banned until {until_ms}. \
Please use the websocket for live updates to avoid bans."
            ),
        }
    }
}

/// One IP's account.
#[derive(Default, Debug)]
pub struct Ip {
    /// The window `used` counts in (server ms / window_ms).
    window: u64,
    used: u64,
    /// After a 429: the time it gave; requests before it are not backing off.
    wait_until_ms: u64,
    /// Requests since that 429 and before its time.
    ignored: u64,
    banned_until_ms: u64,
    bans: u32,
    refused_429: u64,
    refused_418: u64,
}

impl Ip {
    /// Whether the IP is banned at `now_ms`; a request refused for it counts.
    pub fn check_ban(&mut self, now_ms: u64) -> Result<(), Refused> {
        if now_ms < self.banned_until_ms {
            self.refused_418 += 1;
            return Err(Refused::Banned {
                used: self.used,
                until_ms: self.banned_until_ms,
            });
        }
        Ok(())
    }

    /// Charges a request of `weight` at `now_ms`: `Ok(weight used in the
    /// window, this one included)`, or why it is refused (then nothing is
    /// charged).
    pub fn charge(&mut self, r: &Rules, now_ms: u64, weight: u64) -> Result<u64, Refused> {
        let window = now_ms / r.window_ms.max(1);
        if window != self.window {
            (self.window, self.used) = (window, 0);
        }
        self.check_ban(now_ms)?;
        if now_ms < self.wait_until_ms {
            // Not backing off after a 429.
            self.ignored += 1;
            if r.ban_after > 0 && self.ignored >= r.ban_after {
                self.bans += 1;
                let doubled = r.ban_first_ms.saturating_mul(1 << (self.bans - 1).min(40));
                self.banned_until_ms = now_ms + doubled.min(r.ban_max_ms).max(1);
                (self.wait_until_ms, self.ignored) = (0, 0);
                return self.check_ban(now_ms).map(|_| self.used);
            }
            self.refused_429 += 1;
            return Err(Refused::TooMany {
                used: self.used,
                retry_at_ms: self.wait_until_ms,
            });
        }
        if r.weight_per_window > 0 && self.used + weight > r.weight_per_window {
            self.refused_429 += 1;
            (self.wait_until_ms, self.ignored) = ((window + 1) * r.window_ms.max(1), 0);
            return Err(Refused::TooMany {
                used: self.used,
                retry_at_ms: self.wait_until_ms,
            });
        }
        self.used += weight;
        Ok(self.used)
    }

    /// `unban`: the ban, the wait a 429 gave and the history of bans
    /// forgotten (the counters stay).
    pub fn pardon(&mut self) {
        (self.banned_until_ms, self.bans) = (0, 0);
        (self.wait_until_ms, self.ignored) = (0, 0);
    }

    /// The weight used in the window of `now_ms`.
    pub fn used(&self, r: &Rules, now_ms: u64) -> u64 {
        if now_ms / r.window_ms.max(1) == self.window {
            self.used
        } else {
            0
        }
    }

    /// `stats`' view of the IP at `now_ms`.
    pub fn to_json(&self, r: &Rules, now_ms: u64) -> Value {
        json!({
            "weight_used": self.used(r, now_ms),
            "refused_429": self.refused_429,
            "refused_418": self.refused_418,
            "bans": self.bans,
            "banned_for_ms": self.banned_until_ms.saturating_sub(now_ms),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: Rules = Rules {
        weight_per_window: 10,
        window_ms: 60_000,
        ban_after: 3,
        ban_first_ms: 120_000,
        ban_max_ms: 600_000,
    };
    /// 00:01:00 on the server's clock, a window's start.
    const MINUTE: u64 = 60_000;

    #[test]
    fn weight_counts_in_fixed_windows() {
        let mut ip = Ip::default();
        // 00:01:59: the window of 00:01 has room for 10.
        assert_eq!(ip.charge(&RULES, MINUTE + 59_000, 6), Ok(6));
        assert_eq!(ip.charge(&RULES, MINUTE + 59_999, 4), Ok(10));
        assert_eq!(ip.used(&RULES, MINUTE + 59_999), 10);
        // 00:02:00 is a new window, one second later: all 10 again (a
        // rolling minute would have refused it).
        assert_eq!(ip.used(&RULES, 2 * MINUTE), 0);
        assert_eq!(ip.charge(&RULES, 2 * MINUTE, 10), Ok(10));
    }

    #[test]
    fn past_the_limit_429_until_the_window_ends() {
        let mut ip = Ip::default();
        assert_eq!(ip.charge(&RULES, MINUTE + 1_000, 8), Ok(8));
        let r = ip.charge(&RULES, MINUTE + 2_000, 5).unwrap_err();
        assert_eq!(
            r,
            Refused::TooMany {
                used: 8,
                retry_at_ms: 2 * MINUTE
            }
        );
        assert_eq!(r.status(), 429);
        // A refused request costs nothing; a lighter one that would fit is
        // refused all the same: the IP was told to wait.
        assert_eq!(ip.used(&RULES, MINUTE + 2_000), 8);
        assert_eq!(
            ip.charge(&RULES, MINUTE + 3_000, 1).unwrap_err().status(),
            429
        );
        // At the time given, served again.
        assert_eq!(ip.charge(&RULES, 2 * MINUTE, 1), Ok(1));
        assert_eq!(ip.refused_429, 2);
        assert_eq!(ip.refused_418, 0);
    }

    #[test]
    fn an_ip_that_keeps_sending_is_banned_and_the_ban_grows() {
        let mut ip = Ip::default();
        let t = MINUTE + 1_000;
        assert_eq!(ip.charge(&RULES, t, 10), Ok(10));
        assert_eq!(ip.charge(&RULES, t, 1).unwrap_err().status(), 429);
        // Two more before the time given: 429; the third (ban_after) is banned.
        for _ in 0..2 {
            assert_eq!(ip.charge(&RULES, t + 10, 1).unwrap_err().status(), 429);
        }
        let ban = ip.charge(&RULES, t + 20, 1).unwrap_err();
        assert_eq!(
            ban,
            Refused::Banned {
                used: 10,
                until_ms: t + 20 + 120_000
            }
        );
        // Every request until then gets 418 with that time, in later
        // windows too, and does not lengthen the ban.
        let later = ip.charge(&RULES, 2 * MINUTE + 30_000, 1).unwrap_err();
        assert_eq!(later.status(), 418);
        assert_eq!(later.used(), 0, "a new window, nothing charged in it");
        assert_eq!(later.retry_at_ms(), t + 20 + 120_000);
        assert_eq!(ip.to_json(&RULES, t + 20)["banned_for_ms"], 120_000);
        // Over: served again.
        let free = t + 20 + 120_000;
        assert_eq!(ip.charge(&RULES, free, 1), Ok(1));

        // A repeat offender: 4 minutes, then 8, then the cap (10).
        let mut now = free;
        for want in [240_000, 480_000, 600_000, 600_000] {
            now = (now / MINUTE + 1) * MINUTE; // a fresh window
            assert_eq!(ip.charge(&RULES, now, 10), Ok(10));
            let mut r = ip.charge(&RULES, now, 1).unwrap_err();
            while r.status() == 429 {
                r = ip.charge(&RULES, now, 1).unwrap_err();
            }
            assert_eq!(r.retry_at_ms(), now + want);
            now += want;
        }
        let stats = ip.to_json(&RULES, now);
        assert_eq!(stats["bans"], 5);
        assert_eq!(stats["banned_for_ms"], 0);
        // Per ban: 1 over the limit + 2 ignored = 3 429s, and its first 418.
        assert_eq!(
            (stats["refused_429"].clone(), stats["refused_418"].clone()),
            (json!(15), json!(6))
        );
    }

    #[test]
    fn backing_off_is_never_banned_and_zero_turns_bans_off() {
        let mut ip = Ip::default();
        for w in 1..50 {
            assert_eq!(ip.charge(&RULES, w * MINUTE, 10), Ok(10));
            let r = ip.charge(&RULES, w * MINUTE + 1, 1).unwrap_err();
            assert_eq!(r.retry_at_ms(), (w + 1) * MINUTE);
        }
        assert_eq!(ip.bans, 0);
        let off = Rules {
            ban_after: 0,
            ..RULES
        };
        let mut ip = Ip::default();
        ip.charge(&off, MINUTE, 10).unwrap();
        for i in 0..100 {
            assert_eq!(ip.charge(&off, MINUTE + i, 1).unwrap_err().status(), 429);
        }
        let unlimited = Rules {
            weight_per_window: 0,
            ..RULES
        };
        assert_eq!(ip.charge(&unlimited, 5 * MINUTE, 1_000_000), Ok(1_000_000));
    }
}
