//! What a stream connection receives, told apart: events (wrapped as
//! `{"stream":"<listenKey>","data":{...}}` on the SUBSCRIBE form, bare on
//! the query form), answers to SUBSCRIBE/UNSUBSCRIBE (`{"result":null,
//! "id":N}`, or `{"code":N,"msg":"...","id":N}`), and `serverShutdown`
//! (`{"event":{"e":"serverShutdown",...}}`). Protocol messages are never
//! delivered as events.

use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::Value;
use std::borrow::Cow;
use std::fmt;

#[derive(Debug, PartialEq)]
pub enum Incoming<'a> {
    /// A wrapped event: its stream name and the inner event's text, byte
    /// for byte as it appeared inside the wrapper.
    Event { stream: Cow<'a, str>, data: &'a str },
    /// An answer to one of our requests.
    Answer {
        id: u64,
        error: Option<(i64, String)>,
    },
    /// The server will close this connection soon.
    ServerShutdown,
    /// JSON that is none of the above: for the query form, a bare event.
    Other,
    /// Not a JSON object.
    NotJson,
}

/// Tells a text frame apart.
pub fn parse(text: &str) -> Incoming<'_> {
    #[derive(Default)]
    struct Fields<'a> {
        stream: Option<Cow<'a, str>>,
        data: bool,
        id: Option<Value>,
        has_result: bool,
        code: Option<Value>,
        msg: Option<String>,
        shutdown: bool,
    }
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Fields<'de>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields<'de>, A::Error> {
            let mut f = Fields::default();
            while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                match key.as_ref() {
                    "stream" => f.stream = Some(map.next_value()?),
                    // Skipped without recursion; its text is found below.
                    "data" => {
                        f.data = true;
                        map.next_value::<IgnoredAny>()?;
                    }
                    "id" => f.id = Some(map.next_value()?),
                    "result" => {
                        f.has_result = true;
                        map.next_value::<IgnoredAny>()?;
                    }
                    "code" => f.code = Some(map.next_value()?),
                    "msg" => f.msg = map.next_value::<Value>()?.as_str().map(str::to_owned),
                    "event" => {
                        let v: Value = map.next_value()?;
                        f.shutdown = v.get("e").and_then(Value::as_str) == Some("serverShutdown");
                    }
                    _ => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
            Ok(f)
        }
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let f = match (&mut de).deserialize_map(V) {
        Ok(f) if de.end().is_ok() => f,
        _ => return Incoming::NotJson,
    };
    if let (Some(stream), true) = (&f.stream, f.data) {
        if let Some(data) = member(text, "data") {
            return Incoming::Event {
                stream: stream.clone(),
                data,
            };
        }
    }
    if f.shutdown {
        return Incoming::ServerShutdown;
    }
    let id = f.id.as_ref().and_then(Value::as_u64);
    match (id, f.has_result, f.code) {
        (Some(id), true, None) => Incoming::Answer { id, error: None },
        (Some(id), _, Some(code)) => Incoming::Answer {
            id,
            error: Some((code.as_i64().unwrap_or(0), f.msg.unwrap_or_default())),
        },
        _ => Incoming::Other,
    }
}

/// The text of the top-level member `name` of `text`, a JSON object
/// already known to be valid (so that only boundaries need finding: no
/// recursion, whatever the nesting). `None` if absent or if its key is
/// written with escapes.
fn member<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    let b = text.as_bytes();
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i += 1;
    loop {
        i = skip_ws(b, i);
        if b.get(i) != Some(&b'"') {
            return None; // `}`: no such member
        }
        let key_end = skip_value(b, i)?;
        let key = &text[i + 1..key_end - 1];
        i = skip_ws(b, key_end);
        if b.get(i) != Some(&b':') {
            return None;
        }
        let start = skip_ws(b, i + 1);
        let end = skip_value(b, start)?;
        if key == name {
            return Some(&text[start..end]);
        }
        i = skip_ws(b, end);
        match b.get(i) {
            Some(b',') => i += 1,
            _ => return None,
        }
    }
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// The end (exclusive) of the valid JSON value starting at `i`.
fn skip_value(b: &[u8], mut i: usize) -> Option<usize> {
    let mut depth = 0usize;
    loop {
        match *b.get(i)? {
            b'"' => {
                i += 1;
                loop {
                    match *b.get(i)? {
                        b'\\' => i += 2,
                        b'"' => break,
                        _ => i += 1,
                    }
                }
                i += 1;
            }
            b'{' | b'[' => {
                depth += 1;
                i += 1;
            }
            b'}' | b']' => {
                depth = depth.checked_sub(1)?;
                i += 1;
            }
            _ if depth > 0 => i += 1,
            _ => {
                // A number, true, false or null.
                while i < b.len()
                    && !matches!(b[i], b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
                {
                    i += 1;
                }
                return Some(i);
            }
        }
        if depth == 0 {
            return Some(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrapped_event_keeps_its_inner_bytes() {
        let inner = r#"{"e":"ORDER_TRADE_UPDATE", "E":1,"o":{"s":"BTCUSDT","x":"\u00e9"}}"#;
        let text = format!(r#"{{"stream":"abc","data":{inner}}}"#);
        assert_eq!(
            parse(&text),
            Incoming::Event {
                stream: "abc".into(),
                data: inner
            }
        );
        // Field order does not matter.
        let text = format!(r#"{{"data":{inner},"stream":"abc"}}"#);
        assert!(matches!(parse(&text), Incoming::Event { data, .. } if data == inner));
    }

    #[test]
    fn the_inner_text_is_found_whatever_the_spacing_nesting_and_escapes() {
        let inner = r#"{ "e" : "X", "a" : [1, {"b":"}]\"{"}, -2.5e3, true, null], "s":"\\"}"#;
        for text in [
            format!(r#"{{"stream":"k","data":{inner}}}"#),
            format!(r#" {{ "data" :  {inner} , "stream" : "k" }} "#),
            format!(r#"{{"x":[{{"data":1}}],"stream":"k","data":{inner},"y":"data"}}"#),
        ] {
            assert_eq!(
                parse(&text),
                Incoming::Event {
                    stream: "k".into(),
                    data: inner
                },
                "{text}"
            );
        }
        for scalar in ["5", "\"s\"", "null", "[]"] {
            let text = format!(r#"{{"stream":"k","data":{scalar}}}"#);
            assert_eq!(
                parse(&text),
                Incoming::Event {
                    stream: "k".into(),
                    data: scalar
                }
            );
        }
        let deep = format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(
            member(&format!(r#"{{"data":{deep}}}"#), "data"),
            Some(deep.as_str())
        );
    }

    #[test]
    fn answers_and_errors() {
        assert_eq!(
            parse(r#"{"result":null,"id":7}"#),
            Incoming::Answer { id: 7, error: None }
        );
        assert_eq!(
            parse(r#"{"code":2,"msg":"Invalid request","id":8}"#),
            Incoming::Answer {
                id: 8,
                error: Some((2, "Invalid request".into()))
            }
        );
        assert_eq!(parse(r#"{"result":null}"#), Incoming::Other);
    }

    #[test]
    fn server_shutdown_bare_events_and_garbage() {
        assert_eq!(
            parse(r#"{"event":{"e":"serverShutdown","E":1}}"#),
            Incoming::ServerShutdown
        );
        assert_eq!(parse(r#"{"e":"ACCOUNT_UPDATE","E":1}"#), Incoming::Other);
        assert_eq!(parse("nope"), Incoming::NotJson);
        assert_eq!(parse(r#"{"stream":"a","data":{}} x"#), Incoming::NotJson);
        assert_eq!(parse("[1]"), Incoming::NotJson);
    }
}
