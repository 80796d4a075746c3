//! User data events: the raw JSON exactly as received, with its type and
//! time read once, and library events made by the stream itself.
//!
//! The one concession to C in the engine, deliberate: the text is stored
//! with a trailing NUL, so that the C face lends it out without a copy
//! ([`Event::c_json`]).

use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use std::ffi::CStr;
use std::fmt;
use std::sync::OnceLock;

/// Library event: events may have been lost (see its `reason`).
pub const STREAM_GAP: &str = "binance.stream_gap";
/// Library event: the listenKey changed.
pub const LISTEN_KEY_RENEWED: &str = "binance.listen_key_renewed";
/// Library event: the subscription of a stream opened without waiting for
/// it (`Config::open_waits`) was acknowledged: events flow from now on.
pub const STREAM_SUBSCRIBED: &str = "binance.stream_subscribed";
/// Library event: the stream connection was lost; reconnecting.
pub const STREAM_DISCONNECTED: &str = "binance.stream_disconnected";
/// Library event: the account's state over REST (balances, positions, open
/// orders and algo orders), see `rest::Rest::fetch_snapshot`.
pub const ACCOUNT_SNAPSHOT: &str = "binance.account_snapshot";
/// Library event: an account snapshot the stream fetched for itself failed;
/// it is retried with backoff.
pub const ACCOUNT_SNAPSHOT_FAILED: &str = "binance.account_snapshot_failed";
/// Type given to a message that is not a JSON object.
pub const UNPARSED: &str = "binance.unparsed";

/// One event.
pub struct Event {
    kind: Box<str>,
    /// Made by the library (`Event::library`), not read from the server.
    /// Stored, never derived from the type: a server may send any "e".
    library: bool,
    time_ms: i64,
    /// The text as received, followed by a NUL so that C can borrow it
    /// without a copy.
    json: Box<str>,
    parsed: OnceLock<Option<Value>>,
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("type", &self.kind)
            .field("time_ms", &self.time_ms)
            .finish()
    }
}

impl Event {
    /// An event from the stream. Never fails: text that is not a JSON
    /// object is kept with type `binance.unparsed`; an object without a
    /// string "e" gets an empty type.
    pub fn from_wire(text: &str) -> Event {
        let (kind, time_ms) = match head(text) {
            Some(h) => (h.0.unwrap_or_default(), h.1),
            None => (UNPARSED.to_owned(), 0),
        };
        Event {
            kind: kind.into_boxed_str(),
            library: false,
            time_ms,
            json: with_nul(text),
            parsed: OnceLock::new(),
        }
    }

    /// A server message that could not be read as an event (not a JSON
    /// object, or a binary frame that is not UTF-8, given here lossily):
    /// type `binance.unparsed`, kept as received.
    pub fn unparsed(text: &str) -> Event {
        Event {
            kind: UNPARSED.into(),
            library: false,
            time_ms: 0,
            json: with_nul(text),
            parsed: OnceLock::new(),
        }
    }

    /// A library event of type `kind` with the given fields (plus "e", "E").
    pub fn library(kind: &str, time_ms: i64, fields: Value) -> Event {
        let mut obj = serde_json::Map::new();
        obj.insert("e".into(), Value::from(kind));
        obj.insert("E".into(), Value::from(time_ms));
        if let Value::Object(f) = fields {
            obj.extend(f);
        }
        Event {
            kind: kind.into(),
            library: true,
            time_ms,
            json: with_nul(&Value::Object(obj).to_string()),
            parsed: OnceLock::new(),
        }
    }

    pub fn kind(&self) -> &str {
        &self.kind
    }

    pub fn time_ms(&self) -> i64 {
        self.time_ms
    }

    pub fn json(&self) -> &str {
        &self.json[..self.json.len() - 1]
    }

    /// The JSON as a C string, borrowed from the event without a copy;
    /// `None` for the rare text with a NUL of its own (the C face then
    /// applies its NUL policy to a copy).
    pub fn c_json(&self) -> Option<&CStr> {
        CStr::from_bytes_with_nul(self.json.as_bytes()).ok()
    }

    /// Whether the library made this event (a gap, a renewal, ...). A
    /// server event is never one, whatever its "e" says.
    pub fn is_library(&self) -> bool {
        self.library
    }

    /// The value at an RFC 6901 JSON pointer: strings unquoted, other
    /// scalars as JSON text, objects and arrays as JSON; "" is the whole
    /// event. An error says whether the pointer is malformed or the event
    /// (or a text that is not JSON) has no value there.
    pub fn lookup(&self, pointer: &str) -> Result<String, PointerError> {
        if pointer.is_empty() {
            return Ok(self.json().to_owned());
        }
        if !pointer.starts_with('/') {
            return Err(PointerError::Malformed);
        }
        let no_value = || PointerError::NoValue(super::text::truncate(pointer, 200).into_owned());
        // Too deep a document is refused before serde_json recurses into it
        // (MAX_NESTING): this runs on the caller's thread, whatever its stack.
        let doc = self
            .parsed
            .get_or_init(|| {
                let text = self.json();
                (!super::text::nests_too_deep(text))
                    .then(|| serde_json::from_str(text).ok())
                    .flatten()
            })
            .as_ref()
            .ok_or_else(no_value)?;
        match doc.pointer(pointer).ok_or_else(no_value)? {
            Value::String(s) => Ok(s.clone()),
            other => Ok(other.to_string()),
        }
    }

    /// [`Event::lookup`] for callers that only care whether there is a
    /// value.
    pub fn get(&self, pointer: &str) -> Option<String> {
        self.lookup(pointer).ok()
    }
}

/// Why [`Event::lookup`] found no value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PointerError {
    /// Neither empty nor starting with '/'.
    Malformed,
    /// Well formed, but the event has no value there (the pointer, shortened).
    NoValue(String),
}

impl fmt::Display for PointerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PointerError::Malformed => {
                f.write_str("must be empty or start with '/' (RFC 6901), e.g. \"/o/X\"")
            }
            PointerError::NoValue(p) => write!(f, "the event has no value at {p:?}"),
        }
    }
}

impl std::error::Error for PointerError {}

fn with_nul(text: &str) -> Box<str> {
    let mut s = String::with_capacity(text.len() + 1);
    s.push_str(text);
    s.push('\0');
    s.into_boxed_str()
}

/// Reads "e" and "E" (a number or a numeric string) of a JSON object without
/// building the whole document. `None` if the text is not a JSON object.
fn head(text: &str) -> Option<(Option<String>, i64)> {
    struct Head(Option<String>, i64);
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Head;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Head, A::Error> {
            let mut h = Head(None, 0);
            while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                match key.as_ref() {
                    "e" => {
                        h.0 = match map.next_value::<Scalar>()?.0 {
                            Value::String(s) => Some(s),
                            _ => None,
                        }
                    }
                    "E" => h.1 = time_of(&map.next_value::<Scalar>()?.0),
                    _ => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
            Ok(h)
        }
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let h = (&mut de).deserialize_map(V).ok()?;
    de.end().ok()?;
    Some((h.0, h.1))
}

/// A value kept only if it is a string or a number (null otherwise): an
/// array or object is skipped without recursion (serde_json ignores a value
/// in a loop), so a deeply nested "e" or "E" costs no stack.
struct Scalar(Value);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Scalar, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_str<E>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar(Value::String(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Scalar, E> {
                Ok(Scalar(Value::String(v)))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar(v.into()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar(v.into()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar(v.into()))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Scalar, E> {
                Ok(Scalar(Value::Null))
            }
            fn visit_unit<E>(self) -> Result<Scalar, E> {
                Ok(Scalar(Value::Null))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Scalar, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Scalar(Value::Null))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Scalar, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Scalar(Value::Null))
            }
        }
        d.deserialize_any(V)
    }
}

fn time_of(v: &Value) -> i64 {
    match v {
        Value::Number(n) => n.as_i64().unwrap_or(0),
        Value::String(s) => s.trim().parse().unwrap_or(0),
        _ => 0,
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_events_keep_type_time_and_text() {
        let text = r#"{"e":"ORDER_TRADE_UPDATE","E":1568879465651,"T":1568879465650,"o":{"s":"BTCUSDT","X":"NEW","i":8886774,"m":false}}"#;
        let ev = Event::from_wire(text);
        assert_eq!(ev.kind(), "ORDER_TRADE_UPDATE");
        assert_eq!(ev.time_ms(), 1568879465651);
        assert_eq!(ev.json(), text);
        assert_eq!(ev.get("/o/X").as_deref(), Some("NEW"));
        assert_eq!(ev.get("/o/i").as_deref(), Some("8886774"));
        assert_eq!(ev.get("/o/m").as_deref(), Some("false"));
        assert_eq!(ev.get("/o/missing"), None);
        assert!(ev.get("/o").unwrap().starts_with('{'));
    }

    #[test]
    fn time_as_string_or_number() {
        let ev =
            Event::from_wire(r#"{"e":"listenKeyExpired","E":"1736996475556","listenKey":"k"}"#);
        assert_eq!(
            (ev.kind(), ev.time_ms()),
            ("listenKeyExpired", 1736996475556)
        );
        let ev = Event::from_wire(r#"{"E":"x","e":"X"}"#);
        assert_eq!((ev.kind(), ev.time_ms()), ("X", 0));
    }

    #[test]
    fn nothing_is_dropped_for_failing_to_parse() {
        for text in ["not json", "[1,2]", "{\"e\":", "{} trailing"] {
            let ev = Event::from_wire(text);
            assert_eq!(ev.kind(), UNPARSED, "{text}");
            assert_eq!(ev.json(), text);
            assert_eq!(ev.time_ms(), 0);
        }
        let ev = Event::from_wire(r#"{"E":5,"data":1}"#);
        assert_eq!((ev.kind(), ev.time_ms()), ("", 5));
        let ev = Event::from_wire(r#"{"e":7}"#);
        assert_eq!(ev.kind(), "");
    }

    #[test]
    fn c_json_borrows_the_text_unless_it_holds_a_nul() {
        let ev = Event::from_wire(r#"{"e":"X"}"#);
        let c = ev.c_json().unwrap();
        assert_eq!(c.to_str().unwrap(), ev.json());
        assert_eq!(c.as_ptr(), ev.json().as_ptr().cast(), "no copy");
        let ev = Event::from_wire("bad\0text");
        assert_eq!(ev.json(), "bad\0text");
        assert!(ev.c_json().is_none());
    }

    #[test]
    fn lookup_says_why_there_is_no_value() {
        let ev = Event::from_wire(r#"{"e":"X","o":{"X":"NEW"}}"#);
        assert_eq!(ev.lookup("/o/X").as_deref(), Ok("NEW"));
        assert_eq!(ev.lookup("o/X"), Err(PointerError::Malformed));
        assert_eq!(ev.lookup("/o/Y"), Err(PointerError::NoValue("/o/Y".into())));
        let long = format!("/{}", "a".repeat(500));
        match ev.lookup(&long) {
            Err(PointerError::NoValue(shown)) => assert_eq!(shown.chars().count(), 201),
            other => panic!("{other:?}"),
        }
        let text = Event::from_wire("not json");
        assert!(matches!(text.lookup("/e"), Err(PointerError::NoValue(_))));
        assert_eq!(text.lookup("").as_deref(), Ok("not json"));
    }

    #[test]
    fn pointer_escapes() {
        let ev = Event::from_wire(r#"{"e":"X","a/b":{"c~d":[10,"s"]}}"#);
        assert_eq!(ev.get("/a~1b/c~0d/1").as_deref(), Some("s"));
        assert_eq!(ev.get("/a~1b/c~0d/0").as_deref(), Some("10"));
        assert_eq!(ev.get("").unwrap(), ev.json());
    }

    #[test]
    fn a_server_event_named_like_a_library_event_is_still_a_server_event() {
        let ev = Event::from_wire(r#"{"e":"binance.stream_gap","E":1}"#);
        assert_eq!(ev.kind(), "binance.stream_gap");
        assert!(
            !ev.is_library(),
            "origin is stored, not derived from the name"
        );
        assert!(!Event::from_wire("not json").is_library());
    }

    #[test]
    fn library_events_are_json() {
        let ev = Event::library(
            STREAM_GAP,
            42,
            serde_json::json!({"reason":"disconnected","from_ms":1,"to_ms":2}),
        );
        assert!(ev.is_library());
        assert_eq!(ev.get("/reason").as_deref(), Some("disconnected"));
        assert_eq!(ev.get("/e").as_deref(), Some(STREAM_GAP));
        assert_eq!(ev.time_ms(), 42);
    }
}
