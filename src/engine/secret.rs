//! Secrets (the API key, proxy credentials): never printed, wiped when dropped.

use std::fmt;

/// Bytes that must not leak: `Debug` prints a placeholder and `Drop` zeroes
/// the memory before it is released.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: &str) -> Secret {
        Secret(value.to_owned())
    }

    pub fn expose(&self) -> &str {
        &self.0
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

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        wipe(std::mem::take(&mut self.0).into_bytes());
    }
}

/// Zeroes a buffer in a way the optimiser cannot elide, then frees it.
pub fn wipe(mut bytes: Vec<u8>) {
    let len = bytes.capacity();
    let ptr = bytes.as_mut_ptr();
    for i in 0..len {
        // SAFETY: `i < capacity`, the allocation is owned by `bytes` and alive.
        unsafe { std::ptr::write_volatile(ptr.add(i), 0) };
    }
    std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
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
}
