//! Fuzzing of the two parsers that read what a server sends: the WebSocket
//! API answer parser (`answer::parse`) and the event parser
//! (`Event::from_wire`, `kind`, `time_ms`, `get`), against oracles that are
//! differential with `serde_json` and check id fidelity and secrecy.
//!
//! Two engines drive the same oracles and seeds (the documented messages):
//! - A mutation fuzzer (byte flips, truncations, duplications,
//!   JSON-significant insertions, huge numbers, deep nesting, random bytes
//!   through lossy UTF-8, splices and the API key), reproducible from its
//!   seed. In `cargo test` it is a deterministic smoke run: a fixed seed and
//!   a fixed number of inputs, about 2 s in a debug build.
//!   `BINANCE_UDS_FUZZ_SECS=N` makes it a timed run seeded from the clock,
//!   `BINANCE_UDS_FUZZ_SEED` replays a run.
//! - Coverage-guided targets (`coverage_guided_*`) for bolero: `cargo
//!   bolero test` in `fuzz/` (a crate that builds this file alone) drives
//!   them with libFuzzer on stable Rust (the commands are in
//!   docs/reliability.md); plain `cargo test` replays their corpus, if one
//!   was kept under `tests/__fuzz__/`.
//!
//! A failure prints the seed, the iteration and a minimised input (bolero:
//! the input file): add that input to the regression tests at the end of
//! this file.

use binance_uds::engine::testing::answer::{self, Incoming};
use binance_uds::engine::testing::{Secret, MAX_NESTING, UNPARSED};
use binance_uds::engine::Event;
use binance_uds::engine::Status;
use serde_json::Value;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

// The support crate's RNG, by path: the fuzz crate (fuzz/) builds this
// file without the support crate.
#[path = "support/src/rng.rs"]
mod rng;
use rng::Rng;

/// The API key the parsers are given; the fuzzer plants it in inputs.
const SECRET: &str = "SECRETKEY0123456789abcdefSECRET";
/// Inputs never grow past this.
const MAX_LEN: usize = 256 << 10;

/// Answers as Binance documents them (and as the local exchange sends them).
const ANSWER_SEEDS: &[&str] = &[
    r#"{"id":1,"status":200,"result":{"listenKey":"xs0mRXdAKlIPDRFrlPcw0qI41Eh3ixNntmymGyhrhgqo7L6FuLaWArTD7RLP"},"rateLimits":[{"rateLimitType":"REQUEST_WEIGHT","interval":"MINUTE","intervalNum":1,"limit":2400,"count":2}]}"#,
    r#"{"id":2,"status":200,"result":{"listenKey":"3HBntNTepshgEdjIwSUIBgB9keLyOCg5qv3n6bYAtktG8ejcaW5HXz9Vx1JgIieg"},"rateLimits":[{"rateLimitType":"REQUEST_WEIGHT","interval":"MINUTE","intervalNum":1,"limit":2400,"count":2}]}"#,
    r#"{"id":3,"status":200,"result":{},"rateLimits":[{"rateLimitType":"REQUEST_WEIGHT","interval":"MINUTE","intervalNum":1,"limit":2400,"count":2}]}"#,
    r#"{"id":4,"status":400,"error":{"code":-1102,"msg":"Mandatory parameter 'quantity' was not sent, was empty/null, or malformed."},"rateLimits":[{"rateLimitType":"REQUEST_WEIGHT","interval":"MINUTE","intervalNum":1,"limit":2400,"count":1},{"rateLimitType":"ORDERS","interval":"SECOND","intervalNum":10,"limit":300,"count":1},{"rateLimitType":"ORDERS","interval":"MINUTE","intervalNum":1,"limit":1200,"count":1}]}"#,
    r#"{"id":null,"status":401,"error":{"code":-2015,"msg":"Invalid API-key, IP, or permissions for action."}}"#,
    r#"{"id":5,"status":400,"error":{"code":-1125,"msg":"This listenKey does not exist."}}"#,
    r#"{"id":6,"status":418,"error":{"code":-1003,"msg":"Way too much request weight used; IP banned until 1659146400000.","data":{"serverTime":1659142907531,"retryAfter":1659146400000}}}"#,
    r#"{"id":7,"status":429,"error":{"code":-1003,"msg":"Too many requests; current limit is 2400 requests per minute."}}"#,
    r#"{"id":8,"status":401,"error":{"code":-2014,"msg":"API-key format invalid: SECRETKEY0123456789abcdefSECRET"}}"#,
    r#"{"id":9,"status":400,"error":{"code":-1000,"msg":"echo SECRETKEY0123456789abcdef\u0053ECRET and SECRETKEY0123456789abcdefSECRET"}}"#,
    r#"{"id":"5761b939-27b1-4948-ab87-4a372a3f6b72","status":200,"result":{}}"#,
    r#"{"id":"spam-0123456789abcdef","status":200,"result":{}}"#,
    r#"{"id":null,"status":400,"error":{"code":-1013,"msg":"Invalid message."}}"#,
    r#"{"e":"spam","E":1736996475556}"#,
    r#"{"id":18446744073709551615,"status":200,"result":[1,2,3]}"#,
    "<html><body>502 Bad Gateway SECRETKEY0123456789abcdefSECRET</body></html>",
    "SECRETKEY0123456789abcdefSECRET",
    "[]",
    "null",
];

/// Events as Binance documents them (the local exchange's templates).
const EVENT_SEEDS: &[&str] = &[
    r#"{"e":"ACCOUNT_UPDATE","E":1564745798939,"T":1564745798938,"a":{"m":"ORDER","B":[{"a":"USDT","wb":"122624.12345678","cw":"100.12345678","bc":"50.12345678"},{"a":"BUSD","wb":"1.00000000","cw":"0.00000000","bc":"-49.12345678"}],"P":[{"s":"BTCUSDT","pa":"0","ep":"0.00000","bep":"0","cr":"200","up":"0","mt":"isolated","iw":"0.00000000","ps":"BOTH"},{"s":"BTCUSDT","pa":"20","ep":"6563.66500","bep":"0","cr":"0","up":"2850.21200","mt":"isolated","iw":"13200.70726908","ps":"LONG"}]}}"#,
    r#"{"e":"ORDER_TRADE_UPDATE","E":1568879465651,"T":1568879465650,"o":{"s":"BTCUSDT","c":"TEST","S":"SELL","o":"TRAILING_STOP_MARKET","f":"GTC","q":"0.001","p":"0","ap":"0","sp":"7103.04","x":"NEW","X":"NEW","i":8886774,"l":"0","z":"0","L":"0","N":"USDT","n":"0","T":1568879465650,"t":0,"b":"0","a":"9.91","m":false,"R":false,"wt":"CONTRACT_PRICE","ot":"TRAILING_STOP_MARKET","ps":"LONG","cp":false,"AP":"7476.89","cr":"5.0","pP":false,"si":0,"ss":0,"rp":"0","V":"EXPIRE_TAKER","pm":"OPPONENT","gtd":0,"er":"0"}}"#,
    r#"{"e":"TRADE_LITE","E":1721895408092,"T":1721895408214,"s":"BTCUSDT","q":"0.001","p":"0","m":false,"c":"z8hcUoOsqEdKMeKPSABslD","S":"BUY","L":"64089.20","l":"0.040","t":109100866,"i":8886774}"#,
    r#"{"e":"MARGIN_CALL","E":1587727187525,"cw":"3.16812045","p":[{"s":"ETHUSDT","ps":"LONG","pa":"1.327","mt":"CROSSED","iw":"0","mp":"187.17127","up":"-1.166074","mm":"1.614445"}]}"#,
    r#"{"e":"ACCOUNT_CONFIG_UPDATE","E":1611646737479,"T":1611646737476,"ac":{"s":"BTCUSDT","l":25}}"#,
    r#"{"e":"STRATEGY_UPDATE","T":1669262908216,"E":1669262908218,"su":{"si":176054594,"st":"GRID","ss":"NEW","s":"BTCUSDT","ut":1669262908216,"c":8007}}"#,
    r#"{"e":"GRID_UPDATE","T":1669262908216,"E":1669262908218,"gu":{"si":176057039,"st":"GRID","ss":"WORKING","s":"BTCUSDT","r":"-0.00300716","up":"16720","uq":"-0.001","uf":"-0.00300716","mp":"0.0","ut":1669262908197}}"#,
    r#"{"e":"ALGO_UPDATE","T":1750515742297,"E":1750515742303,"o":{"caid":"Q5xaq5EGKgXXa0fD7fs0Ip","aid":2148719,"at":"CONDITIONAL","o":"TAKE_PROFIT","s":"BNBUSDT","S":"SELL","ps":"BOTH","f":"GTC","q":"0.01","X":"CANCELED","ai":"","ap":"0.00000","aq":"0.00000","act":"0","tp":"750","p":"750","V":"EXPIRE_MAKER","wt":"CONTRACT_PRICE","pm":"NONE","cp":false,"pP":false,"R":false,"tt":0,"gtd":0,"rm":"Reduce Only reject"}}"#,
    r#"{"e":"CONDITIONAL_ORDER_TRIGGER_REJECT","E":1685517224945,"T":1685517224955,"or":{"s":"ETHUSDT","i":155618472834,"r":"Due to the order could cause immediate execution, it has been rejected."}}"#,
    r#"{"e":"listenKeyExpired","E":"1736996475556","listenKey":"WsCMN0a4KHUPTQuX6IUnqEZfB1inxmv1qR4kbf1LuEjur5VdbzqvyxqG9TSjVVxv"}"#,
    r#"{"e":"SOMETHING_NEW_2027","E":1800000000000,"a/b":{"c~d":[10,"s",null,true,1.5e3]}}"#,
    r#"{"E":" 42 ","data":{"e":"nested"}}"#,
    "not json at all",
];

/// Bytes and tokens that mean something to a JSON parser.
const TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    "\"",
    ":",
    ",",
    "\\",
    "\\\"",
    "\\u",
    "\\u0000",
    "\\ud800",
    "\\udc00",
    "\\uD83D\\uDE00",
    "0",
    "1",
    "9",
    "-",
    "+",
    ".",
    "e",
    "E",
    "null",
    "true",
    "false",
    "\"e\":",
    "\"E\":",
    "\"id\":",
    "\"status\":",
    "\"result\":",
    "\"error\":",
    "\"code\":",
    "\"msg\":",
    "\"rateLimits\":",
    "\"data\":",
    "\"retryAfter\":",
    " ",
    "\n",
    "\t",
    "\r",
    "\u{7}",
    "\u{0}",
    "\u{feff}",
    "\u{2028}",
    "\u{fffd}",
    "é",
    "𝄞",
];

/// Numbers at and past every limit.
const NUMBERS: &[&str] = &[
    "0",
    "-0",
    "18446744073709551615",
    "18446744073709551616",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "-9223372036854775809",
    "1e308",
    "1e309",
    "-1e999999999",
    "1.7976931348623157e308",
    "4.9e-324",
    "1e-99999",
    "0.0000000000000000000000000000001",
    "123456789012345678901234567890123456789012345678901234567890",
    "1.0",
    "1E2",
    "01",
    "-",
    "1e",
    "1.e5",
];

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    let v = v.trim();
    match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => v.parse().ok(),
    }
}

/// How much a run does.
#[derive(Clone, Copy, Debug)]
enum Budget {
    /// The smoke run of `cargo test`: this many inputs.
    Inputs(u64),
    /// `BINANCE_UDS_FUZZ_SECS`: as many inputs as fit in this time.
    Time(Duration),
}

impl Budget {
    fn from_env(smoke_inputs: u64) -> Budget {
        match env_u64("BINANCE_UDS_FUZZ_SECS") {
            Some(secs) => Budget::Time(Duration::from_secs(secs)),
            None => Budget::Inputs(smoke_inputs),
        }
    }

    fn allows(self, started: Instant, inputs: u64) -> bool {
        match self {
            Budget::Inputs(n) => inputs < n,
            Budget::Time(t) => started.elapsed() < t,
        }
    }
}

/// The run's seed: `BINANCE_UDS_FUZZ_SEED`; else fixed for the smoke run
/// (the same inputs every time), the clock for a timed run.
fn seed(salt: u64, budget: Budget) -> u64 {
    env_u64("BINANCE_UDS_FUZZ_SEED").unwrap_or_else(|| match budget {
        Budget::Inputs(_) => 0x5eed_f00d ^ salt.rotate_left(17),
        Budget::Time(_) => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            (now.as_nanos() as u64) ^ salt.rotate_left(17)
        }
    })
}

/// One to four mutations of `input`, sometimes spliced with `other`.
fn mutate(rng: &mut Rng, input: &str, other: &str) -> String {
    let mut b = input.as_bytes().to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(b.len() + 1);
        match rng.below(12) {
            0 => {
                if !b.is_empty() {
                    let i = rng.below(b.len());
                    b[i] = match rng.below(3) {
                        0 => b[i] ^ (1 << rng.below(8)),
                        1 => rng.next() as u8,
                        _ => *rng.pick(b"{}[]\":,\\0123456789-+.eE \x00\x07\x7f\xc3\xff"),
                    };
                }
            }
            1 => b.truncate(at),
            2 => {
                // Duplicate a slice somewhere else.
                let start = rng.below(b.len() + 1);
                let end = (start + rng.below(64)).min(b.len());
                let copy = b[start..end].to_vec();
                b.splice(at..at, copy);
            }
            3 => {
                let t = rng.pick(TOKENS).as_bytes().to_vec();
                b.splice(at..at, t);
            }
            4 => {
                // A number at a limit, in place of a run of digits or inserted.
                let n = if rng.chance(4) {
                    let digits: String = (0..1 + rng.below(400))
                        .map(|_| (b'0' + rng.below(10) as u8) as char)
                        .collect();
                    format!("{digits}e{}", rng.below(100_000))
                } else {
                    (*rng.pick(NUMBERS)).to_owned()
                };
                let start = b[at..]
                    .iter()
                    .position(u8::is_ascii_digit)
                    .map_or(at, |p| at + p);
                let end = b[start..]
                    .iter()
                    .position(|c| !c.is_ascii_digit())
                    .map_or(b.len(), |p| start + p);
                b.splice(start..end, n.into_bytes());
            }
            5 => {
                // Deep nesting around the whole input or a value inside it.
                let depth = match rng.below(4) {
                    0 => rng.below(140),
                    1 => 120 + rng.below(20),
                    _ => rng.below(10_001),
                };
                let (open, close) = match rng.below(3) {
                    0 => ("[".to_owned(), "]"),
                    1 => ("{\"a\":".to_owned(), "}"),
                    _ => ("[{\"e\":".to_owned(), "}]"),
                };
                let opens = open.repeat(depth).into_bytes();
                let closes = if rng.chance(4) {
                    Vec::new() // unbalanced
                } else {
                    close.repeat(depth).into_bytes()
                };
                if rng.chance(2) {
                    let mut wrapped = opens;
                    wrapped.extend_from_slice(&b);
                    wrapped.extend_from_slice(&closes);
                    b = wrapped;
                } else {
                    let mut nested = opens;
                    nested.extend_from_slice(b"1");
                    nested.extend_from_slice(&closes);
                    b.splice(at..at, nested);
                }
            }
            6 => {
                b = (0..rng.below(512)).map(|_| rng.next() as u8).collect();
            }
            7 => {
                let o = other.as_bytes();
                let from = rng.below(o.len() + 1);
                b.truncate(at);
                b.extend_from_slice(&o[from..]);
            }
            8 => {
                // The API key, whole, JSON-escaped in part, or broken by a
                // character that may be filtered out later.
                let s = match rng.below(4) {
                    0 => SECRET.to_owned(),
                    1 => SECRET.replacen('K', "\\u004b", 1),
                    2 => {
                        let cut = 1 + rng.below(SECRET.len() - 1);
                        let mid = *rng.pick(&["\u{7}", "\n", "\u{0}", "\u{7f}", "\\n", "\u{9c}"]);
                        format!("{}{mid}{}", &SECRET[..cut], &SECRET[cut..])
                    }
                    _ => format!("\"{SECRET}\""),
                };
                b.splice(at..at, s.into_bytes());
            }
            9 => {
                // A different id: the parser must report exactly this one.
                if let Some(p) = find(&b, b"\"id\":") {
                    let start = p + 5;
                    let end = b[start..]
                        .iter()
                        .position(|c| matches!(c, b',' | b'}'))
                        .map_or(b.len(), |e| start + e);
                    let id = match rng.below(5) {
                        0 => rng.next().to_string(),
                        1 => format!("-{}", rng.below(1000)),
                        2 => format!("{}.0", rng.below(1000)),
                        3 => "\"7\"".to_owned(),
                        _ => rng.below(100).to_string(),
                    };
                    b.splice(start..end, id.into_bytes());
                }
            }
            10 => {
                let end = (at + rng.below(32)).min(b.len());
                b.drain(at..end);
            }
            _ => {
                let t = rng.pick(TOKENS).as_bytes().to_vec();
                let end = (at + t.len()).min(b.len());
                b.splice(at..end, t);
            }
        }
        if b.len() > MAX_LEN {
            b.truncate(MAX_LEN);
        }
    }
    String::from_utf8_lossy(&b).into_owned()
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Runs `check` and turns a panic into an error naming it.
fn guarded(check: impl FnOnce() -> Result<(), String>) -> Result<(), String> {
    match catch_unwind(AssertUnwindSafe(check)) {
        Ok(r) => r,
        Err(p) => Err(format!(
            "panicked: {}",
            p.downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| p.downcast_ref::<&str>().copied())
                .unwrap_or("(no message)")
        )),
    }
}

fn no_secret(what: &str, text: &str) -> Result<(), String> {
    if text.contains(SECRET) {
        return Err(format!("the API key leaked into {what}: {text}"));
    }
    Ok(())
}

/// Every invariant of the answer parser on one input.
fn check_answer(text: &str) -> Result<(), String> {
    let secret = Secret::new(SECRET);
    guarded(|| {
        let r = answer::parse(text, &secret);
        // Errors never show the key, in their message or their Debug. (A
        // successful answer's result and rateLimits are the server's data,
        // handed over as they came.)
        if let Err(e)
        | Ok(Incoming::SessionError(e))
        | Ok(Incoming::Answer {
            outcome: Err(e), ..
        }) = &r
        {
            no_secret("the Debug of an error", &format!("{e:?}"))?;
        }
        // The library refuses nesting past MAX_NESTING before parsing it.
        let reference = serde_json::from_str::<Value>(text)
            .map_err(|e| e.to_string())
            .and_then(|v| match nesting(&v) {
                n if n > MAX_NESTING => Err(format!("nested {n} levels")),
                _ => Ok(v),
            });
        match (r, reference) {
            (Err(e), Err(_)) => {
                if e.status != Status::ProtocolError {
                    return Err(format!("text that is not JSON gave {e:?}"));
                }
                no_secret("a protocol error", &e.message)
            }
            (Err(e), Ok(_)) => Err(format!("valid JSON refused: {e:?}")),
            (Ok(i), Err(e)) => Err(format!("accepted text that is not JSON ({e}): {i:?}")),
            (Ok(incoming), Ok(v)) => check_incoming(incoming, &v),
        }
    })
}

fn check_incoming(incoming: Incoming, v: &Value) -> Result<(), String> {
    let text_id = v.get("id").and_then(Value::as_u64);
    match incoming {
        Incoming::Answer {
            id,
            outcome,
            rate_limits,
        } => {
            if text_id != Some(id) {
                return Err(format!(
                    "answer id {id} is not the text's id {:?}",
                    v.get("id")
                ));
            }
            if rate_limits != v.get("rateLimits").map(Value::to_string) {
                return Err(format!("rateLimits {rate_limits:?} differ from the text's"));
            }
            let status = v.get("status").and_then(Value::as_i64);
            match outcome {
                Ok(a) => {
                    let ok = status == Some(a.status)
                        && (200..300).contains(&a.status)
                        && v.get("error").is_none()
                        && v.get("result") == Some(&a.result);
                    if !ok {
                        return Err(format!("success {a:?} does not match the text"));
                    }
                }
                Err(e) => {
                    no_secret("an answer's error", &e.message)?;
                    let expected = match (status, v.get("error")) {
                        (None, _) => Status::ProtocolError,
                        (Some(429 | 418), Some(err))
                            if err.get("msg").is_some_and(Value::is_string)
                                && err.get("code").is_some_and(Value::is_i64) =>
                        {
                            Status::RateLimited
                        }
                        (Some(429 | 418), None) => Status::RateLimited,
                        (Some(_), Some(err))
                            if err.get("msg").is_some_and(Value::is_string)
                                && err.get("code").is_some_and(Value::is_i64) =>
                        {
                            Status::ApiError
                        }
                        _ => Status::ProtocolError,
                    };
                    if e.status != expected {
                        return Err(format!("error {e:?} should have status {expected:?}"));
                    }
                }
            }
        }
        Incoming::SessionError(e) => {
            no_secret("a session error", &e.message)?;
            if v.get("id").is_some_and(|id| !id.is_null()) {
                return Err(format!("session error for a message with an id: {e:?}"));
            }
            if !v.get("error").is_some_and(Value::is_object) {
                return Err(format!("session error without an error object: {e:?}"));
            }
        }
        Incoming::ServerShutdown => {
            let named = v.pointer("/event/e").and_then(Value::as_str) == Some("serverShutdown");
            if !named || v.get("id").is_some_and(|id| !id.is_null()) {
                return Err(format!("serverShutdown read from {v}"));
            }
        }
        Incoming::Unrelated => {
            if text_id.is_some() && v.is_object() {
                return Err("a message with a u64 id was skipped as unrelated".into());
            }
        }
    }
    Ok(())
}

/// The event time the parser must read: "E" as a number or numeric string.
fn expected_time(v: Option<&Value>) -> i64 {
    match v {
        Some(Value::Number(n)) => n.as_i64().unwrap_or(0),
        Some(Value::String(s)) => s.trim().parse().unwrap_or(0),
        _ => 0,
    }
}

/// JSON pointers into `v` (a few levels deep), for `get` to agree on.
fn pointers(v: &Value, prefix: String, out: &mut Vec<String>, rng: &mut Rng) {
    if out.len() > 24 {
        return;
    }
    let children: Vec<(String, &Value)> = match v {
        Value::Object(o) => o
            .iter()
            .map(|(k, v)| (k.replace('~', "~0").replace('/', "~1"), v))
            .collect(),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .map(|(i, v)| (i.to_string(), v))
            .collect(),
        _ => return,
    };
    for (k, child) in children {
        if rng.chance(2) {
            let p = format!("{prefix}/{k}");
            out.push(p.clone());
            pointers(child, p, out, rng);
        }
    }
}

fn random_pointer(rng: &mut Rng) -> String {
    let parts = [
        "/",
        "//",
        "/e",
        "/E",
        "/o",
        "/o/X",
        "/a/B/0/wb",
        "/0",
        "/-",
        "/01",
        "/~",
        "/~0",
        "/~1",
        "/~2",
        "~",
        "e",
        "/99999999999999999999999",
        "/-1",
        "/\u{0}",
        "/é",
        "/a~1b",
        "/ ",
    ];
    (0..1 + rng.below(4)).map(|_| *rng.pick(&parts)).collect()
}

/// Every invariant of the event parser on one input.
fn check_event(text: &str, rng: &mut Rng) -> Result<(), String> {
    guarded(|| {
        let ev = Event::from_wire(text);
        if ev.json() != text {
            return Err("json() is not the text as received".into());
        }
        let (kind, time) = (ev.kind().to_owned(), ev.time_ms());
        match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(o)) => {
                let e = o.get("e").and_then(Value::as_str).unwrap_or("");
                if kind != e || time != expected_time(o.get("E")) {
                    return Err(format!(
                        "read ({kind:?}, {time}) from an object with e {e:?}, E {:?}",
                        o.get("E")
                    ));
                }
            }
            Ok(_) => {
                if kind != UNPARSED || time != 0 {
                    return Err(format!(
                        "a JSON value that is not an object read as ({kind:?}, {time})"
                    ));
                }
            }
            // Text serde_json refuses as a document may still give its type
            // and time: the fields beside "e" and "E" are skipped without
            // being decoded (no nesting limit, no number range, no check of
            // \u escapes). Then no pointer but "" finds anything.
            Err(_) => {}
        }
        if ev.get("").as_deref() != Some(text) {
            return Err("get(\"\") is not the whole text".into());
        }
        // A document nested past MAX_NESTING is not parsed: no value in it.
        let doc = serde_json::from_str::<Value>(text)
            .ok()
            .filter(|d| nesting(d) <= MAX_NESTING);
        let mut ps = Vec::new();
        if let Some(doc) = &doc {
            pointers(doc, String::new(), &mut ps, rng);
        }
        for _ in 0..4 {
            ps.push(random_pointer(rng));
        }
        for p in ps {
            let got = ev.get(&p);
            let want = doc.as_ref().and_then(|d| d.pointer(&p)).map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            });
            if got != want {
                return Err(format!("get({p:?}) = {got:?}, expected {want:?}"));
            }
        }
        Ok(())
    })
}

/// How deep a value nests arrays and objects (`[]` is 1, a scalar 0).
fn nesting(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(nesting).max().unwrap_or(0),
        Value::Object(o) => 1 + o.values().map(nesting).max().unwrap_or(0),
        _ => 0,
    }
}

/// Shrinks a failing input: removes ever smaller runs of characters while
/// `check` still fails.
fn minimise(input: &str, check: &dyn Fn(&str) -> Result<(), String>) -> String {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let mut chars: Vec<char> = input.chars().collect();
    let mut chunk = chars.len().max(1);
    while chunk > 0 {
        let mut i = 0;
        while i < chars.len() {
            let mut shorter = chars.clone();
            shorter.drain(i..(i + chunk).min(chars.len()));
            let s: String = shorter.iter().collect();
            if check(&s).is_err() {
                chars = shorter;
            } else {
                i += chunk;
            }
        }
        chunk /= 2;
    }
    std::panic::set_hook(hook);
    chars.into_iter().collect()
}

fn shown(text: &str) -> String {
    let mut s: String = text.chars().take(2000).collect();
    if s.len() < text.len() {
        s.push_str(&format!("… ({} bytes)", text.len()));
    }
    format!("{s:?}")
}

/// Mutates the seeds within the budget, checking every input; keeps inputs
/// that are valid JSON as further seeds.
fn run(
    name: &str,
    salt: u64,
    smoke_inputs: u64,
    seeds: &[&str],
    check: &dyn Fn(&str, &mut Rng) -> Result<(), String>,
) {
    let budget = Budget::from_env(smoke_inputs);
    let seed = seed(salt, budget);
    println!("{name}: seed {seed:#x} (BINANCE_UDS_FUZZ_SEED={seed:#x} replays), {budget:?}");
    let mut rng = Rng::new(seed);
    let mut pool: Vec<String> = seeds.iter().map(|s| s.to_string()).collect();
    for s in seeds {
        if let Err(e) = check(s, &mut rng) {
            panic!("{name}: seed input {} fails: {e}", shown(s));
        }
    }
    let t0 = Instant::now();
    let (mut iterations, mut json) = (0u64, 0u64);
    while budget.allows(t0, iterations) {
        for _ in 0..64 {
            let base = rng.pick(&pool).clone();
            let other = rng.pick(&pool).clone();
            let input = mutate(&mut rng, &base, &other);
            iterations += 1;
            if let Err(e) = check(&input, &mut rng) {
                let small = minimise(&input, &|s| check(s, &mut Rng::new(seed)));
                panic!(
                    "{name}: seed {seed:#x}, iteration {iterations}: {e}\ninput: {}\nminimised: {}",
                    shown(&input),
                    shown(&small)
                );
            }
            if input.len() < 16 << 10 && serde_json::from_str::<Value>(&input).is_ok() {
                json += 1;
                if pool.len() < 512 {
                    pool.push(input);
                } else {
                    let i = rng.below(pool.len() - seeds.len()) + seeds.len();
                    pool[i] = input;
                }
            }
        }
    }
    println!(
        "{name}: {iterations} inputs in {:?}, {json} of them valid JSON, no failure",
        t0.elapsed()
    );
}

// Smoke-run sizes: about 2 s each in a debug build (events are cheaper).

#[test]
fn fuzz_the_answer_parser() {
    run("answers", 1, 12288, ANSWER_SEEDS, &|s, _| check_answer(s));
}

#[test]
fn fuzz_the_event_parser() {
    run("events", 2, 16384, EVENT_SEEDS, &|s, rng| {
        check_event(s, rng)
    });
}

/// A coverage-guided fuzzer's bytes as a parser input, built on a seed so
/// that the engine starts from documented messages rather than from
/// nothing: byte 0 picks the seed (its top bit: use the rest of the bytes
/// alone instead), bytes 1-2 where to splice, byte 3 how many characters
/// to cut there, and the rest (lossy UTF-8) what to insert. A token of
/// `TOKENS` is spliced in too when byte 3's top bit is set.
fn splice_on_seed(seeds: &[&str], bytes: &[u8]) -> String {
    let Some((&pick, rest)) = bytes.split_first() else {
        return seeds[0].to_owned();
    };
    if pick & 0x80 != 0 {
        return String::from_utf8_lossy(rest).into_owned();
    }
    let seed = seeds[usize::from(pick) % seeds.len()];
    let [a, b, c, tail @ ..] = rest else {
        return seed.to_owned();
    };
    let chars: Vec<char> = seed.chars().collect();
    let at = usize::from(u16::from_le_bytes([*a, *b])) % (chars.len() + 1);
    let end = (at + usize::from(c & 0x0f)).min(chars.len());
    let mut out: String = chars[..at].iter().collect();
    if c & 0x80 != 0 {
        out.push_str(TOKENS[usize::from(*a) % TOKENS.len()]);
    }
    out.push_str(&String::from_utf8_lossy(tail));
    out.extend(&chars[end..]);
    out
}

/// `cargo bolero test coverage_guided_answers --sanitizer NONE` fuzzes the
/// answer parser with libFuzzer; plain `cargo test` replays the corpus (if
/// any).
#[test]
fn coverage_guided_answers() {
    bolero::check!()
        .with_iterations(0)
        .for_each(|bytes: &[u8]| {
            let input = splice_on_seed(ANSWER_SEEDS, bytes);
            if let Err(e) = check_answer(&input) {
                panic!("answers: {e}\ninput: {}", shown(&input));
            }
        });
}

/// As `coverage_guided_answers`, for the event parser.
#[test]
fn coverage_guided_events() {
    bolero::check!()
        .with_iterations(0)
        .for_each(|bytes: &[u8]| {
            let input = splice_on_seed(EVENT_SEEDS, bytes);
            let mut rng = Rng::new(bytes.len() as u64);
            if let Err(e) = check_event(&input, &mut rng) {
                panic!("events: {e}\ninput: {}", shown(&input));
            }
        });
}

#[test]
fn the_coverage_targets_start_from_the_seeds() {
    assert_eq!(splice_on_seed(ANSWER_SEEDS, b""), ANSWER_SEEDS[0]);
    assert_eq!(splice_on_seed(EVENT_SEEDS, &[1]), EVENT_SEEDS[1]);
    assert_eq!(splice_on_seed(EVENT_SEEDS, &[0x80, b'x', b'y']), "xy");
    let spliced = splice_on_seed(ANSWER_SEEDS, &[0, 1, 0, 2, b'Z']);
    assert_eq!(spliced, format!("{{Z{}", &ANSWER_SEEDS[0][3..]));
    // Whatever the bytes, the result is an input the oracles accept as such.
    let mut rng = Rng::new(7);
    for _ in 0..2000 {
        let bytes: Vec<u8> = (0..rng.below(40)).map(|_| rng.next() as u8).collect();
        check_answer(&splice_on_seed(ANSWER_SEEDS, &bytes)).unwrap();
        check_event(&splice_on_seed(EVENT_SEEDS, &bytes), &mut rng).unwrap();
    }
}

// Regression tests: inputs the fuzzer found or that pin a limit.

/// Runs `f` on a thread with a small stack: deep input must be refused by
/// a depth limit, not by a stack overflow (which would abort the process).
fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(256 << 10)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap()
}

#[test]
fn deep_nesting_is_refused_by_the_depth_limit_not_the_stack() {
    const DEPTHS: [usize; 10] = [
        MAX_NESTING - 1,
        MAX_NESTING,
        MAX_NESTING + 1,
        100,
        127,
        128,
        129,
        1000,
        10_000,
        1_000_000,
    ];
    // The library's parsers, on a small stack: nothing past MAX_NESTING is
    // parsed into a tree.
    on_small_stack(|| {
        let secret = Secret::new(SECRET);
        for depth in DEPTHS {
            let nested = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
            let within = depth <= MAX_NESTING;
            match answer::parse(&nested, &secret) {
                Ok(Incoming::Unrelated) if within => {}
                Err(e) if !within => {
                    assert_eq!(e.status, Status::ProtocolError);
                    let says = format!("nested deeper than {MAX_NESTING} levels");
                    assert!(e.message.contains(&says), "{}", e.message);
                }
                other => panic!("depth {depth}: {other:?}"),
            }
            let answer = format!(r#"{{"id":7,"status":200,"result":{nested}}}"#);
            let r = answer::parse(&answer, &secret);
            assert_eq!(r.is_ok(), depth < MAX_NESTING, "depth {depth}: {r:?}");
            // An event: its type and time are read past the limit (the rest
            // is skipped without recursion); get() refuses the document.
            let event = format!(r#"{{"e":"X","E":5,"a":{nested}}}"#);
            let ev = Event::from_wire(&event);
            assert_eq!(
                (ev.kind(), ev.time_ms(), ev.json()),
                ("X", 5, event.as_str())
            );
            assert_eq!(ev.get("/e").is_some(), depth < MAX_NESTING, "depth {depth}");
            // A nested "e" is not a string: no type, whatever the depth,
            // and the time beside it is still read.
            let deep_type = format!(r#"{{"E":5,"e":{nested}}}"#);
            let ev = Event::from_wire(&deep_type);
            assert_eq!((ev.kind(), ev.time_ms()), ("", 5), "depth {depth}");
        }
    });
    // The fuzzer's invariants on the same inputs (their serde_json oracle
    // recurses 127 levels: a normal stack).
    for depth in DEPTHS {
        let nested = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        check_answer(&format!(r#"{{"id":7,"status":200,"result":{nested}}}"#)).unwrap();
        let deep_objects = format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth));
        check_event(&deep_objects, &mut Rng::new(1)).unwrap();
    }
}

#[test]
fn huge_numbers_are_read_or_refused_cleanly() {
    let secret = Secret::new(SECRET);
    for (text, id) in [
        (
            r#"{"id":18446744073709551615,"status":200,"result":{}}"#,
            Some(u64::MAX),
        ),
        (
            r#"{"id":18446744073709551616,"status":200,"result":{}}"#,
            None,
        ),
        (r#"{"id":1e3,"status":200,"result":{}}"#, None),
        (r#"{"id":-1,"status":200,"result":{}}"#, None),
    ] {
        let got = match answer::parse(text, &secret).unwrap() {
            Incoming::Answer { id, .. } => Some(id),
            _ => None,
        };
        assert_eq!(got, id, "{text}");
    }
    let e = answer::parse(r#"{"id":1,"status":1e999,"result":{}}"#, &secret).unwrap_err();
    assert_eq!(e.status, Status::ProtocolError);
    for (text, time) in [
        (r#"{"e":"X","E":9223372036854775807}"#, i64::MAX),
        (r#"{"e":"X","E":9223372036854775808}"#, 0),
        (r#"{"e":"X","E":"99999999999999999999999"}"#, 0),
        (r#"{"e":"X","E":-5}"#, -5),
        (r#"{"e":"X","E":1.5}"#, 0),
    ] {
        assert_eq!(Event::from_wire(text).time_ms(), time, "{text}");
        check_event(text, &mut Rng::new(1)).unwrap();
    }
    // A number past f64's range is not JSON serde_json accepts: kept whole
    // as an unparsed message.
    let ev = Event::from_wire(r#"{"e":"X","E":1e999}"#);
    assert_eq!((ev.kind(), ev.time_ms()), (UNPARSED, 0));
}

#[test]
fn a_key_broken_by_control_characters_is_still_redacted() {
    // The server text is cleaned of control characters; the key must not
    // reappear when they are removed.
    let secret = Secret::new(SECRET);
    for mid in ["\u{7}", "\n", "\u{0}", "\u{7f}", "\u{9c}"] {
        let broken = format!("{}{mid}{}", &SECRET[..9], &SECRET[9..]);
        let not_json = format!("x {broken} y");
        check_answer(&not_json).unwrap();
        let e = answer::parse(&not_json, &secret).unwrap_err();
        assert!(!e.message.contains(SECRET), "{}", e.message);
        let escaped: String = serde_json::to_string(&broken).unwrap();
        let api = format!(r#"{{"id":1,"status":400,"error":{{"code":-1,"msg":{escaped}}}}}"#);
        check_answer(&api).unwrap();
        let revoked =
            format!(r#"{{"id":null,"status":401,"error":{{"code":-2015,"msg":{escaped}}}}}"#);
        check_answer(&revoked).unwrap();
    }
    // Past the excerpt's length, no part of the key shows either.
    let long = format!("{}{SECRET}", "x".repeat(50));
    let e = answer::parse(&long, &secret).unwrap_err();
    assert!(!e.message.contains(&SECRET[..10]), "{}", e.message);
}

#[test]
fn random_pointers_never_panic_and_agree_with_serde_json() {
    let mut rng = Rng::new(seed(3, Budget::from_env(0)));
    for text in EVENT_SEEDS {
        for _ in 0..200 {
            check_event(text, &mut rng).unwrap();
        }
    }
}
