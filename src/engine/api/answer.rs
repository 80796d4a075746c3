//! Reading what the WebSocket API server sends: answers matched to requests
//! by id, errors turned into statuses.

use crate::engine::error::{Error, RateLimit, Status};
use crate::engine::secret::Redact;
use serde_json::Value;

/// A successful answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub status: i64,
    pub result: Value,
}

/// One message from the server, classified.
#[derive(Debug)]
pub enum Incoming {
    /// The answer to the request with this id.
    Answer {
        id: u64,
        outcome: Result<Answer, Error>,
        /// The answer's `rateLimits`, as JSON text, when present.
        rate_limits: Option<String>,
    },
    /// An error for no particular request (`"id": null`): Binance revokes
    /// the whole session this way (401, -2015).
    SessionError(Error),
    /// `{"event":{"e":"serverShutdown",...}}`: the server will close this
    /// connection soon; new requests should go to a new one.
    ServerShutdown,
    /// Not addressed to any request of ours; skipped.
    Unrelated,
}

/// Classifies one text message. `Err` means the text is not JSON at all: the
/// connection can no longer be trusted. `secret` is removed from any server
/// text kept in an error.
pub fn parse<R: Redact + ?Sized>(text: &str, secret: &R) -> Result<Incoming, Error> {
    // Refused before serde_json recurses into it (see MAX_NESTING).
    if crate::engine::text::nests_too_deep(text) {
        return Err(Error::protocol(format!(
            "server sent a message nested deeper than {} levels: {}",
            crate::engine::text::MAX_NESTING,
            excerpt(text, secret)
        )));
    }
    let value: Value = serde_json::from_str(text).map_err(|e| {
        Error::protocol(format!(
            "server sent a message that is not JSON ({e}): {}",
            excerpt(text, secret)
        ))
    })?;
    let Value::Object(mut obj) = value else {
        return Ok(Incoming::Unrelated);
    };
    let id = match obj.get("id") {
        Some(Value::Number(n)) => match n.as_u64() {
            Some(id) => Some(id),
            None => return Ok(Incoming::Unrelated),
        },
        Some(Value::Null) | None => None,
        Some(_) => return Ok(Incoming::Unrelated),
    };
    let rate_limits = obj.get("rateLimits").map(|v| v.to_string());
    let Some(id) = id else {
        if obj
            .get("event")
            .and_then(|e| e.get("e"))
            .and_then(Value::as_str)
            == Some("serverShutdown")
        {
            return Ok(Incoming::ServerShutdown);
        }
        // An id-less message is ours only when it is an error: revocation.
        if obj.get("error").is_some_and(Value::is_object) {
            let status = obj.get("status").and_then(Value::as_i64).unwrap_or(0);
            return Ok(Incoming::SessionError(
                api_error(status, obj.get("error"), secret).context("the server ended the session"),
            ));
        }
        return Ok(Incoming::Unrelated);
    };
    let outcome = match obj.get("status").and_then(Value::as_i64) {
        None => Err(Error::protocol(format!(
            "answer to request {id} has no integer \"status\""
        ))),
        Some(status) => match obj.get("error") {
            Some(err) => Err(api_error(status, Some(err), secret)),
            None => match RateLimit::from_status(status) {
                Some(limit) => Err(rate_limited(limit, status, None, 0, 0)),
                None if (200..300).contains(&status) => match obj.remove("result") {
                    Some(result) => Ok(Answer { status, result }),
                    None => Err(Error::protocol(format!(
                        "answer to request {id} has status {status} but no \"result\""
                    ))),
                },
                None => Err(Error::protocol(format!(
                    "answer to request {id} has status {status} but no \"error\" object"
                ))),
            },
        },
    };
    Ok(Incoming::Answer {
        id,
        outcome,
        rate_limits,
    })
}

/// Maps an error object (`{"code":-1125,"msg":"..."}`) to an error.
fn api_error<R: Redact + ?Sized>(status: i64, err: Option<&Value>, secret: &R) -> Error {
    let Some(obj) = err.and_then(Value::as_object) else {
        return Error::protocol(format!(
            "answer with status {status} has a malformed \"error\""
        ));
    };
    let (Some(code), Some(msg)) = (
        obj.get("code").and_then(Value::as_i64),
        obj.get("msg").and_then(Value::as_str),
    ) else {
        return Error::protocol(format!(
            "answer with status {status} has an \"error\" without an integer \"code\" and a string \"msg\""
        ));
    };
    let msg = clean(msg, secret);
    let http_status = i32::try_from(status).unwrap_or(0);
    if let Some(limit) = RateLimit::from_status(status) {
        let retry_after = obj
            .get("data")
            .and_then(|d| d.get("retryAfter"))
            .and_then(Value::as_i64)
            .unwrap_or(0);
        return rate_limited(limit, status, Some(&msg), code, retry_after);
    }
    Error {
        status: Status::ApiError,
        message: format!("Binance error {code} (status {status}): {msg}"),
        api_code: code,
        http_status,
        retry_after_ms: 0,
    }
}

fn rate_limited(
    limit: RateLimit,
    status: i64,
    msg: Option<&str>,
    code: i64,
    retry_after: i64,
) -> Error {
    let mut message = format!("{} (status {status}", limit.what());
    if code != 0 {
        message.push_str(&format!(", Binance error {code}"));
    }
    message.push(')');
    if let Some(msg) = msg {
        message.push_str(": ");
        message.push_str(msg);
    }
    if retry_after > 0 {
        message.push_str(&format!("; retry after {retry_after} (ms since the epoch)"));
    }
    Error {
        status: Status::RateLimited,
        message,
        api_code: code,
        http_status: i32::try_from(status).unwrap_or(0),
        retry_after_ms: retry_after,
    }
}

/// Server text made safe to keep: control characters dropped, secret
/// removed, length bounded. Control characters go first: removing them
/// must not join the pieces of a secret they split.
pub fn clean<R: Redact + ?Sized>(text: &str, secret: &R) -> String {
    let text: String = text.chars().filter(|c| !c.is_control()).collect();
    let text = secret.redact(&text);
    crate::engine::text::truncate(&text, 512).into_owned()
}

/// The start of a message, cleaned. Cleaned before it is cut, so that no
/// piece of a secret straddling the cut remains.
fn excerpt<R: Redact + ?Sized>(text: &str, secret: &R) -> String {
    let clean = clean(text, secret);
    format!("{:?}", crate::engine::text::truncate(&clean, 64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::secret::Secret;

    fn s() -> Secret {
        Secret::new("SECRETKEY")
    }

    fn answer(text: &str) -> (u64, Result<Answer, Error>) {
        match parse(text, &s()).unwrap() {
            Incoming::Answer { id, outcome, .. } => (id, outcome),
            other => panic!("not an answer: {other:?}"),
        }
    }

    #[test]
    fn success_with_result() {
        let (id, r) = answer(
            r#"{"id":7,"status":200,"result":{"listenKey":"abc"},"rateLimits":[{"rateLimitType":"REQUEST_WEIGHT","interval":"MINUTE","intervalNum":1,"limit":2400,"count":2}]}"#,
        );
        assert_eq!(id, 7);
        assert_eq!(r.unwrap().result["listenKey"], "abc");
        match parse(
            r#"{"id":7,"status":200,"result":{},"rateLimits":[1]}"#,
            &s(),
        )
        .unwrap()
        {
            Incoming::Answer { rate_limits, .. } => assert_eq!(rate_limits.as_deref(), Some("[1]")),
            _ => panic!(),
        }
    }

    #[test]
    fn api_error_keeps_code_status_and_message() {
        let (_, r) = answer(
            r#"{"id":1,"status":400,"error":{"code":-1125,"msg":"This listenKey does not exist."}}"#,
        );
        let e = r.unwrap_err();
        assert_eq!(e.status, Status::ApiError);
        assert_eq!(e.api_code, -1125);
        assert_eq!(e.http_status, 400);
        assert!(e.message.contains("This listenKey does not exist."));
    }

    #[test]
    fn rate_limits_and_bans() {
        let (_, r) = answer(
            r#"{"id":1,"status":418,"error":{"code":-1003,"msg":"Way too much request weight used; IP banned until 1659146400000.","data":{"serverTime":1659142907531,"retryAfter":1659146400000}}}"#,
        );
        let e = r.unwrap_err();
        assert_eq!(e.status, Status::RateLimited);
        assert_eq!(
            (e.api_code, e.http_status, e.retry_after_ms),
            (-1003, 418, 1659146400000)
        );
        let (_, r) =
            answer(r#"{"id":1,"status":429,"error":{"code":-1003,"msg":"Too many requests"}}"#);
        let e = r.unwrap_err();
        assert_eq!((e.status, e.retry_after_ms), (Status::RateLimited, 0));
        let (_, r) = answer(r#"{"id":1,"status":429}"#);
        assert_eq!(r.unwrap_err().status, Status::RateLimited);
    }

    #[test]
    fn missing_fields_are_protocol_errors() {
        for text in [
            r#"{"id":1}"#,
            r#"{"id":1,"status":"200","result":{}}"#,
            r#"{"id":1,"status":200}"#,
            r#"{"id":1,"status":400}"#,
            r#"{"id":1,"status":400,"error":{"msg":"x"}}"#,
            r#"{"id":1,"status":400,"error":"bad"}"#,
        ] {
            let (_, r) = answer(text);
            assert_eq!(r.unwrap_err().status, Status::ProtocolError, "{text}");
        }
    }

    #[test]
    fn not_json_is_an_error_and_unrelated_is_skipped() {
        let e = parse("<html>502 Bad Gateway</html>", &s()).unwrap_err();
        assert_eq!(e.status, Status::ProtocolError);
        assert!(e.message.contains("not JSON"), "{}", e.message);
        for text in [
            "[1,2]",
            "42",
            r#"{"e":"ORDER_TRADE_UPDATE","E":1}"#,
            r#"{"id":"other-client","status":200,"result":{}}"#,
            r#"{"id":-5,"status":200,"result":{}}"#,
            r#"{"id":null,"status":200,"result":{}}"#,
        ] {
            assert!(
                matches!(parse(text, &s()).unwrap(), Incoming::Unrelated),
                "{text}"
            );
        }
    }

    #[test]
    fn revocation_is_a_session_error() {
        let r = parse(
            r#"{"id":null,"status":401,"error":{"code":-2015,"msg":"Invalid API-key, IP, or permissions for action."}}"#,
            &s(),
        )
        .unwrap();
        let Incoming::SessionError(e) = r else {
            panic!()
        };
        assert_eq!(
            (e.status, e.api_code, e.http_status),
            (Status::ApiError, -2015, 401)
        );
    }

    #[test]
    fn secret_and_control_characters_never_kept() {
        let (_, r) = answer(
            r#"{"id":1,"status":400,"error":{"code":-2014,"msg":"bad key SECRETKEY\u0007"}}"#,
        );
        let e = r.unwrap_err();
        assert!(!e.message.contains("SECRETKEY"));
        assert!(!e.message.contains('\u{7}'));
        let e = parse("SECRETKEY not json", &s()).unwrap_err();
        assert!(!e.message.contains("SECRETKEY"));
        let long = format!(
            r#"{{"id":1,"status":400,"error":{{"code":-1,"msg":"{}"}}}}"#,
            "x".repeat(5000)
        );
        let (_, r) = answer(&long);
        assert!(r.unwrap_err().message.len() < 700);
    }
}
