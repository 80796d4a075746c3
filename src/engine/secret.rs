//! Secrets (the API key, proxy credentials): never printed, wiped when
//! dropped.
//!
//! Wiping is `zeroize`'s: a `Secret` and every temporary that holds a
//! secret (`Zeroizing<…>`: request frames, the CONNECT request, decoded
//! credentials) is zeroed, over its whole allocation, before it is freed.
//! Temporaries are built with their final capacity so that no reallocation
//! leaves an unwiped copy behind. What the library cannot reach is not
//! wiped: tungstenite's frame write buffer (which holds each request,
//! masked), OpenSSL's TLS buffers, the kernel's socket buffers, and the
//! caller's own strings.

use std::fmt;
use zeroize::Zeroizing;

/// Bytes that must not leak: `Debug` prints a placeholder and `Drop` zeroes
/// the memory before it is released.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// A copy of `value`; the caller's buffer is its own to wipe.
    pub fn new(value: &str) -> Secret {
        Secret(Zeroizing::new(value.to_owned()))
    }

    /// Takes `value` without copying it, so no unwiped copy remains.
    pub fn from_string(value: String) -> Secret {
        Secret(Zeroizing::new(value))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Removes every occurrence of the secret from `text`, so a server that
    /// echoes it cannot make it appear in an error message or event.
    pub fn redact(&self, text: &str) -> String {
        if self.0.is_empty() || !text.contains(self.0.as_str()) {
            return text.to_owned();
        }
        text.replace(self.0.as_str(), "<redacted>")
    }
}

/// What can remove secrets from server text kept in an error: one secret,
/// or every API key sent on a shared connection.
pub trait Redact {
    fn redact(&self, text: &str) -> String;
}

impl Redact for Secret {
    fn redact(&self, text: &str) -> String {
        Secret::redact(self, text)
    }
}

impl Redact for [Secret] {
    fn redact(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for s in self {
            out = s.redact(&out);
        }
        out
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let s = Secret::new("K3yK3yK3y");
        assert!(!format!("{s:?}").contains("K3y"));
    }

    #[test]
    fn redact_removes_every_occurrence() {
        let s = Secret::new("abc123");
        assert_eq!(s.redact("x abc123 y abc123"), "x <redacted> y <redacted>");
        assert_eq!(Secret::new("").redact("text"), "text");
    }

    #[test]
    fn taking_a_string_keeps_its_buffer() {
        let value = String::from("K3yK3yK3y");
        let at = value.as_ptr();
        let s = Secret::from_string(value);
        assert_eq!(s.expose().as_ptr(), at, "moved, not copied");
    }
}
