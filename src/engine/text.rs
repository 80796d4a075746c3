//! Shortening text kept in messages; how deep a JSON text nests.

use std::borrow::Cow;

/// The deepest nesting of arrays and objects the library parses into a
/// tree (serde_json's `Value`, which recurses once per level). Binance's
/// messages nest 4 levels at most. serde_json's own limit (128) is not
/// enough on its own: 127 levels of its recursion take ~230 KiB of stack in
/// an x86_64 debug build and more on arm64, past a 256 KiB thread stack.
/// 32 levels stay well inside one on every target and profile.
pub const MAX_NESTING: usize = 32;

/// Whether `json` nests arrays and objects deeper than [`MAX_NESTING`]
/// (brackets inside strings do not count). Counted in one pass without
/// recursion, whatever the text; text that is not JSON may pass, for the
/// parser to refuse.
pub fn nests_too_deep(json: &str) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for b in json.bytes() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

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

    #[test]
    fn nesting_is_counted_outside_strings() {
        let nested = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(!nests_too_deep(&nested(MAX_NESTING)));
        assert!(nests_too_deep(&nested(MAX_NESTING + 1)));
        assert!(nests_too_deep(&nested(1_000_000)));
        // Objects count too, and siblings do not add up.
        let objects = format!(
            "{}1{}",
            r#"{"a":"#.repeat(MAX_NESTING + 1),
            "}".repeat(MAX_NESTING + 1)
        );
        assert!(nests_too_deep(&objects));
        let siblings = format!("[{}]", vec![nested(MAX_NESTING - 1); 100].join(","));
        assert!(!nests_too_deep(&siblings));
        // Brackets in strings, escaped quotes included, are text.
        let in_string = format!(r#"{{"a":"{}\"{}"}}"#, "[".repeat(100), "{".repeat(100));
        assert!(!nests_too_deep(&in_string));
        assert!(!nests_too_deep(""));
    }
}
