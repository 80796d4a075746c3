//! Stream routes (`/private`, `/public`, `/market`, legacy) and the stream
//! control protocol (`SUBSCRIBE`, `UNSUBSCRIBE`, `LIST_SUBSCRIPTIONS`,
//! `SET_PROPERTY`, `GET_PROPERTY`), as Binance's stream servers speak it
//! (docs: /work/shared/binance-protocol.md §3 and §5).

use serde_json::{json, Value};

use std::time::Duration;

use crate::state::{FaultKind, Form, Scope, Shared, StreamConn, Sub};

/// What a stream route's URL asks for, before the upgrade is accepted.
pub fn route(path: &str, query: &str) -> Option<StreamConn> {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (form, combined, path_stream) = match segs.as_slice() {
        ["private", "stream"] => (Form::Subscribe, true, None),
        // COIN-M's stream host (dstream, served here under /coinm) and
        // Portfolio Margin's /pm: `/stream` + SUBSCRIBE as the official
        // SDKs use them, and `?listenKey=` on `/ws`.
        ["coinm" | "pm", "stream"] => (Form::Subscribe, true, None),
        ["coinm" | "pm", "ws"] => (Form::Subscribe, false, None),
        ["private", "ws"] => (Form::Subscribe, false, None),
        ["private", "ws", k] if !k.is_empty() => (Form::Path, false, Some(*k)),
        ["public" | "market", "stream"] => (Form::Market, true, None),
        ["public" | "market", "ws"] => (Form::Market, false, None),
        ["public" | "market", "ws", s] if !s.is_empty() => (Form::Market, false, Some(*s)),
        ["stream"] => (Form::Legacy, true, None),
        ["ws"] => (Form::Legacy, false, None),
        ["ws", k] if !k.is_empty() => (Form::Legacy, false, Some(*k)),
        _ => return None,
    };
    let mut c = StreamConn {
        form,
        combined,
        subs: Vec::new(),
    };
    if let Some(s) = path_stream {
        c.add(s, None);
    }
    for (k, v) in query_pairs(query) {
        match k.as_str() {
            // `streams=a/b/c` (the SDKs add an empty one).
            "streams" => v.split('/').filter(|s| !s.is_empty()).for_each(|s| {
                c.add(s, None);
            }),
            "listenKey" if !v.is_empty() => {
                if c.form == Form::Subscribe {
                    c.form = Form::Query;
                }
                c.add(&v, None);
            }
            // `events=A/B` filters the listenKey just before it.
            "events" => {
                if let Some(last) = c.subs.last_mut() {
                    last.events = Some(v.split('/').map(String::from).collect());
                }
            }
            _ => {}
        }
    }
    Some(c)
}

/// `a=b&c=d`, percent-decoded (`+` left alone: listenKeys and event names
/// never carry one).
pub fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (b[i], b.get(i + 1).copied(), b.get(i + 2).copied()) {
            (b'%', Some(h), Some(l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The outcome of one incoming control message.
pub enum Answer {
    Send(String),
    /// Send this after a delay (a `delay` fault).
    Later(String, Duration),
    /// Send nothing (a `no_answer` fault).
    Nothing,
    /// Close the TCP connection (a `reset_mid_request` fault).
    Reset,
    /// Close the connection (a limit was broken): code and reason.
    Close(u16, &'static str),
}

fn error(code: i64, msg: &str, id: Option<&Value>) -> Answer {
    let mut v = json!({"code": code, "msg": msg});
    if let Some(id) = id {
        v["id"] = id.clone();
    }
    Answer::Send(v.to_string())
}

/// Where serde_json stopped, in Binance's words ("at line L column C").
fn position(e: &serde_json::Error) -> String {
    format!("at line {} column {}", e.line(), e.column())
}

/// Handles one text frame of a stream connection `conn`.
pub fn handle(shared: &Shared, conn: u64, text: &str) -> Answer {
    let v: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            let what = if e.is_eof() {
                "EOF while parsing a value"
            } else {
                "expected value"
            };
            return error(3, &format!("Invalid JSON: {what} {}", position(&e)), None);
        }
    };
    let Some(obj) = v.as_object() else {
        return error(
            2,
            "Invalid request: invalid type: expected struct Request",
            None,
        );
    };
    let mut st = shared.lock();
    let strict = st.limits.strict_stream_ids;
    let id = match obj.get("id") {
        Some(n @ Value::Number(_)) if n.is_u64() => n.clone(),
        // All official SDKs send string ids (UUIDs, hex): accepted unless strict.
        Some(s @ Value::String(x)) if !strict && !x.is_empty() && x.len() <= 36 => s.clone(),
        Some(Value::Null) | None if !strict => Value::Null,
        _ => {
            return error(
                2,
                "Invalid request: request ID must be an unsigned integer",
                None,
            )
        }
    };
    let Some(method) = obj.get("method") else {
        return error(2, "Invalid request: missing field `method`", Some(&id));
    };
    let known = [
        "SUBSCRIBE",
        "UNSUBSCRIBE",
        "LIST_SUBSCRIPTIONS",
        "SET_PROPERTY",
        "GET_PROPERTY",
    ];
    let Some(method) = method.as_str().filter(|m| known.contains(m)) else {
        let msg = format!(
            "Invalid request: unknown variant {method}, expected one of `SUBSCRIBE`, \
`UNSUBSCRIBE`, `LIST_SUBSCRIPTIONS`, `SET_PROPERTY`, `GET_PROPERTY`"
        );
        return error(2, &msg, Some(&id));
    };
    // Faults naming this method: the request has no effect with `fail`,
    // `raw` or `no_answer`; `delay` holds its answer back.
    let mut delay = Duration::ZERO;
    for f in st.take_faults(Some(method), Scope::Stream) {
        match f {
            FaultKind::Reset => return Answer::Reset,
            FaultKind::NoAnswer => return Answer::Nothing,
            FaultKind::Fail { code, msg, .. } => return error(code, &msg, Some(&id)),
            FaultKind::Raw(t) => return Answer::Send(t.replace("{id}", &id.to_string())),
            FaultKind::Delay(ms) => delay = Duration::from_millis(ms),
            _ => {}
        }
    }
    let answer = handle_valid(&mut st, conn, method, obj.get("params"), &id);
    match answer {
        Answer::Send(t) if !delay.is_zero() => Answer::Later(t, delay),
        other => other,
    }
}

/// A well-formed request with a known method and a valid id.
fn handle_valid(
    st: &mut crate::state::State,
    conn: u64,
    method: &str,
    params: Option<&Value>,
    id: &Value,
) -> Answer {
    let id = id.clone();
    let params = match params {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a.clone(),
        Some(_) => {
            return error(
                2,
                "Invalid request: invalid type: expected a sequence",
                Some(&id),
            )
        }
    };
    let max_streams = st.limits.stream_max_streams;
    let Some(c) = st.conns.get_mut(&conn).and_then(|c| c.stream.as_mut()) else {
        return Answer::Close(1000, "");
    };
    let names = || -> Result<Vec<String>, Answer> {
        params
            .iter()
            .map(|p| {
                p.as_str().map(String::from).ok_or_else(|| {
                    error(
                        2,
                        "Invalid request: invalid type: expected a string",
                        Some(&id),
                    )
                })
            })
            .collect()
    };
    let ok = |result: Value| Answer::Send(json!({"result": result, "id": id}).to_string());
    match method {
        "SUBSCRIBE" => {
            let names = match names() {
                Ok(n) => n,
                Err(a) => return a,
            };
            for n in &names {
                c.add(n, None);
            }
            if max_streams > 0 && c.subs.len() as u64 > max_streams {
                return Answer::Close(1008, "Too many streams");
            }
            vlog!("connection {conn}: SUBSCRIBE {}", names.len());
            ok(Value::Null)
        }
        "UNSUBSCRIBE" => {
            let names = match names() {
                Ok(n) => n,
                Err(a) => return a,
            };
            c.subs.retain(|s| !names.contains(&s.name));
            ok(Value::Null)
        }
        "LIST_SUBSCRIPTIONS" => ok(json!(c
            .subs
            .iter()
            .map(|s| s.name.clone())
            .collect::<Vec<_>>())),
        "SET_PROPERTY" => match (params.first().and_then(Value::as_str), params.get(1)) {
            (Some("combined"), Some(Value::Bool(b))) => {
                c.combined = *b;
                ok(Value::Null)
            }
            (Some("combined"), _) => error(1, "Invalid value type: expected Boolean", Some(&id)),
            (Some(_), _) => error(0, "Unknown property", Some(&id)),
            (None, _) => error(
                2,
                "Invalid request: property name must be a string",
                Some(&id),
            ),
        },
        _ => match params.first().and_then(Value::as_str) {
            Some("combined") => ok(Value::Bool(c.combined)),
            Some(_) => error(0, "Unknown property", Some(&id)),
            None => error(
                2,
                "Invalid request: property name must be a string",
                Some(&id),
            ),
        },
    }
}

impl StreamConn {
    /// Adds a subscription unless it is already there (Binance ignores a
    /// repeated SUBSCRIBE of the same stream).
    pub fn add(&mut self, name: &str, events: Option<Vec<String>>) {
        if !self.subs.iter().any(|s| s.name == name) {
            self.subs.push(Sub {
                name: name.to_string(),
                events,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_and_query_forms() {
        let r = route("/private/stream", "streams=").unwrap();
        assert!(r.form == Form::Subscribe && r.combined && r.subs.is_empty());
        let r = route("/private/stream", "listenKey=a&events=X/Y&listenKey=b").unwrap();
        assert!(r.form == Form::Query && r.combined);
        assert_eq!(
            r.subs[0].events.as_deref(),
            Some(&["X".into(), "Y".into()][..])
        );
        assert!(r.subs[1].name == "b" && r.subs[1].events.is_none());
        let r = route("/private/ws", "listenKey=k%31").unwrap();
        assert!(r.form == Form::Query && !r.combined && r.subs[0].name == "k1");
        assert!(route("/private/ws/k", "").unwrap().form == Form::Path);
        assert!(route("/ws/k", "").unwrap().form == Form::Legacy);
        assert!(route("/market/stream", "streams=a@b").unwrap().form == Form::Market);
        assert!(route("/private/nope", "").is_none());
        assert!(route("/private/ws/", "").is_none());
    }
}
