//! Shortening text kept in messages.

use std::borrow::Cow;

/// `text` unchanged if it has at most `max_chars` characters, otherwise its
/// first `max_chars` characters followed by '…'.
pub fn truncate(text: &str, max_chars: usize) -> Cow<'_, str> {
    match text.char_indices().nth(max_chars) {
        None => Cow::Borrowed(text),
        Some((cut, _)) => Cow::Owned(format!("{}…", &text[..cut])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_at_a_character_and_says_so() {
        assert_eq!(truncate("short", 5), "short");
        assert_eq!(truncate("longer", 4), "long…");
        assert_eq!(truncate("ééé", 2), "éé…");
        assert_eq!(truncate("", 0), "");
        assert_eq!(truncate("x", 0), "…");
    }
}
