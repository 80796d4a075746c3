//! The connection on an in-memory WebSocket (`from_raw_socket` over
//! `tokio::io::duplex`) with tokio's paused clock: timings are exact and
//! nothing touches the network.

use super::handle::{Cmd, ConnHandle};
use super::pacer::{Pacer, BURST_QUIET, REQUEST_SPACING};
use super::rotate::Dedup;
use super::task::Task;
use super::{ConnSettings, Link, Membership};
use crate::engine::config::StreamForm;
use crate::engine::event::Event;
use crate::engine::net::connect::{Dialer, Transport, Ws};
use crate::engine::net::url::Endpoint;
use crate::engine::queue::Popped;
use crate::engine::stream::shared::Shared;
use crate::engine::stream::sink::{Signal, Sink};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::DuplexStream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

const TIMEOUT: Duration = Duration::from_secs(5);
const SILENCE: Duration = Duration::from_secs(10);

fn settings() -> Arc<ConnSettings> {
    Arc::new(ConnSettings {
        // Never dialled: the tests hand the task its link.
        base: Endpoint::parse("ws://127.0.0.1:9/private", "test").unwrap(),
        dialer: Dialer {
            tls: None,
            proxy: None,
            connect_timeout: TIMEOUT,
            read_buffer: 4096,
            source: None,
        },
        form: StreamForm::Subscribe,
        request_timeout: TIMEOUT,
        silence: SILENCE,
        rotate_after: Duration::from_secs(86400),
        max_streams: 100,
        sharing: false,
        identity: 0,
    })
}

/// The two ends of an in-memory WebSocket: ours and the server's.
async fn pipe() -> (Ws, WebSocketStream<DuplexStream>) {
    let (ours, theirs) = tokio::io::duplex(1 << 16);
    let ours = WebSocketStream::from_raw_socket(Box::new(ours) as Transport, Role::Client, None);
    let theirs = WebSocketStream::from_raw_socket(theirs, Role::Server, None);
    (ours.await, theirs.await)
}

/// A connection task serving an in-memory link; returns its handle and
/// the server's end.
async fn serving() -> (Arc<ConnHandle>, WebSocketStream<DuplexStream>) {
    let (ours, theirs) = pipe().await;
    let (handle, rx) = ConnHandle::new();
    let task = Task::new(settings(), handle.clone(), rx, None);
    tokio::spawn(task.run_on(Link::new(ours)));
    (handle, theirs)
}

/// A stream: its shared state, its sink and the signals its runner gets.
fn stream() -> (Arc<Shared>, Arc<Sink>, mpsc::UnboundedReceiver<Signal>) {
    let shared = Arc::new(Shared::new(100));
    let (sink, signals) = Sink::new(shared.clone());
    (shared, sink, signals)
}

/// The server's next text frame, as JSON.
async fn read_json(server: &mut WebSocketStream<DuplexStream>) -> Value {
    loop {
        match server.next().await {
            Some(Ok(Message::Text(t))) => return serde_json::from_str(t.as_str()).unwrap(),
            Some(Ok(_)) => continue,
            other => panic!("the connection ended: {other:?}"),
        }
    }
}

/// Reads one SUBSCRIBE, acknowledges it, and returns its keys.
async fn ack_subscribe(server: &mut WebSocketStream<DuplexStream>) -> Vec<String> {
    let req = read_json(server).await;
    assert_eq!(req["method"], "SUBSCRIBE", "{req}");
    let answer = serde_json::json!({ "result": null, "id": req["id"] });
    server
        .send(Message::text(answer.to_string()))
        .await
        .unwrap();
    req["params"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_owned())
        .collect()
}

/// Joins `key` on the connection while the server acknowledges it.
async fn join(
    handle: &Arc<ConnHandle>,
    server: &mut WebSocketStream<DuplexStream>,
    sink: &Arc<Sink>,
    key: &str,
) -> Membership {
    assert!(handle.reserve(100));
    let joining = Membership::join(handle.clone(), sink, key);
    let (member, keys) = tokio::join!(joining, ack_subscribe(server));
    assert_eq!(keys, [key]);
    member.unwrap()
}

/// The events queued for a stream once the connection task has run.
async fn queued(shared: &Shared) -> Vec<Event> {
    // Lets the task read whatever the server sent (the clock is paused:
    // this advances it only when every task is idle).
    tokio::time::sleep(Duration::from_millis(1)).await;
    let mut out = Vec::new();
    while let Popped::Event(ev) = shared.queue.pop(Duration::ZERO) {
        out.push(ev);
    }
    out
}

fn event(stream: &str, kind: &str, time: i64) -> Message {
    Message::text(format!(
        r#"{{"stream":"{stream}","data":{{"e":"{kind}","E":{time}}}}}"#
    ))
}

/// In either name form Binance may use: `<listenKey>`, `<listenKey>@<EVENT>`.
#[tokio::test(start_paused = true)]
async fn events_are_routed_to_the_stream_of_their_key_only() {
    let (handle, mut server) = serving().await;
    let (a, sink_a, _sa) = stream();
    let (b, sink_b, _sb) = stream();
    let _ma = join(&handle, &mut server, &sink_a, "keyA").await;
    let _mb = join(&handle, &mut server, &sink_b, "keyB").await;
    assert!(a.health().subscribed && b.health().subscribed);
    assert_eq!(a.health().connection_streams, 2);
    let kinds = |evs: Vec<Event>| evs.iter().map(|e| e.kind().to_owned()).collect::<Vec<_>>();
    for (name_a, name_b) in [
        ("keyA", "keyB"),
        ("keyA@ORDER_TRADE_UPDATE", "keyB@ACCOUNT_UPDATE"),
    ] {
        server
            .send(event(name_a, "ORDER_TRADE_UPDATE", 1))
            .await
            .unwrap();
        server
            .send(event(name_b, "ACCOUNT_UPDATE", 2))
            .await
            .unwrap();
        assert_eq!(kinds(queued(&a).await), ["ORDER_TRADE_UPDATE"], "{name_a}");
        assert_eq!(kinds(queued(&b).await), ["ACCOUNT_UPDATE"], "{name_b}");
    }
}

#[tokio::test(start_paused = true)]
async fn an_event_no_route_matches_is_reported_to_every_stream_on_the_connection() {
    let (handle, mut server) = serving().await;
    let (a, sink_a, mut sa) = stream();
    let (_b, sink_b, mut sb) = stream();
    let (_c, sink_c, _sc) = stream();
    let _ma = join(&handle, &mut server, &sink_a, "keyA").await;
    let _mb = join(&handle, &mut server, &sink_b, "keyB").await;
    // A key whose stream left: its late events are nobody's.
    drop(join(&handle, &mut server, &sink_c, "keyC").await);
    server.send(event("keyC", "X", 1)).await.unwrap();
    server.send(event("stranger@X", "X", 5)).await.unwrap();
    server.send(event("stranger2", "X", 7)).await.unwrap();
    for signals in [&mut sa, &mut sb] {
        match signals.recv().await {
            Some(Signal::Unrouted {
                count,
                stream,
                at_ms,
            }) => {
                assert_eq!((count, at_ms), (2, 5));
                // The name is shown masked, never whole.
                assert_eq!(stream, "stra…");
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(queued(&a).await.is_empty());
    assert!(sa.try_recv().is_err(), "reported once");
}

#[tokio::test(start_paused = true)]
async fn subscriptions_past_the_burst_are_spaced() {
    let (handle, mut server) = serving().await;
    let mut sent_at = Vec::new();
    let mut members = Vec::new();
    for n in 0..4 {
        let (_, sink, _) = stream();
        assert!(handle.reserve(100));
        let key = format!("key{n}");
        let joining = Membership::join(handle.clone(), &sink, &key);
        let (member, _) = tokio::join!(joining, async {
            let keys = ack_subscribe(&mut server).await;
            sent_at.push(Instant::now());
            keys
        });
        members.push(member.unwrap());
    }
    // The first at once, the second once no key came for the burst's quiet
    // time, then one per spacing.
    assert_eq!(sent_at[1] - sent_at[0], BURST_QUIET);
    assert_eq!(sent_at[2] - sent_at[1], REQUEST_SPACING);
    assert_eq!(sent_at[3] - sent_at[2], REQUEST_SPACING);
}

#[test]
fn the_pacer_keeps_under_eight_requests_a_second() {
    let t0 = Instant::now();
    let mut p = Pacer::new(TIMEOUT);
    let mut sent = Vec::new();
    let mut now = t0;
    for n in 0..10 {
        p.subscribe(format!("k{n}"), None);
        now = p.next_request_at(now).unwrap();
        assert!(p.next_request(now).unwrap().contains(&format!("\"k{n}\"")));
        sent.push(now);
    }
    for w in sent.windows(9) {
        assert!(w[8] - w[0] >= Duration::from_secs(1), "{:?}", w);
    }
    // Keys queued while waiting go in one message.
    p.subscribe("x".into(), None);
    p.subscribe("y".into(), None);
    let at = p.next_request_at(now).unwrap();
    let text = p.next_request(at).unwrap();
    assert!(text.contains(r#"["x","y"]"#), "{text}");
    assert_eq!(p.next_request(at), None);
}

/// A loop of opens: the burst's second request waits while keys keep
/// coming, and goes with all of them once they stop, or a spacing after the
/// first at the latest.
#[tokio::test(start_paused = true)]
async fn the_bursts_second_request_waits_for_the_keys_to_stop_coming() {
    let step = Duration::from_millis(1);
    for keys_for in [Duration::from_millis(20), REQUEST_SPACING * 2] {
        let mut p = Pacer::new(TIMEOUT);
        p.subscribe("first".into(), None);
        let t0 = Instant::now();
        assert_eq!(p.next_request_at(t0), Some(t0));
        assert!(p.next_request(t0).unwrap().contains("first"));
        let mut queued = Vec::new();
        let at = loop {
            let now = Instant::now();
            let at = p.next_request_at(now).unwrap_or(now + BURST_QUIET);
            if at <= now {
                break at;
            }
            if now - t0 < keys_for {
                let key = format!("k{}", queued.len());
                p.subscribe(key.clone(), None);
                queued.push(key);
            }
            tokio::time::advance(step).await;
        };
        let last_key = t0 + step * (queued.len() as u32 - 1);
        assert_eq!(at, (last_key + BURST_QUIET).min(t0 + REQUEST_SPACING));
        let text = p.next_request(at).unwrap();
        let sent: serde_json::Value = serde_json::from_str(&text).unwrap();
        let sent: Vec<&str> = sent["params"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k.as_str().unwrap())
            .collect();
        assert_eq!(sent, queued[..sent.len()]);
        if keys_for < REQUEST_SPACING {
            assert_eq!(
                sent.len(),
                queued.len(),
                "every key of the loop in one request"
            );
        }
    }
}

/// Many accounts opened at once: a connection's whole default share of
/// keys, queued while the pacer waits for its next slot, goes out in that
/// slot's one message; a key more waits for the slot after.
#[test]
fn a_connections_share_of_keys_goes_in_one_message() {
    use crate::engine::config::DEFAULT_STREAMS_PER_CONNECTION as SHARE;
    let mut now = Instant::now();
    let mut p = Pacer::new(TIMEOUT);
    for k in ["a", "b"] {
        p.subscribe(k.into(), None);
        now = p.next_request_at(now).unwrap();
        assert!(p.next_request(now).is_some());
    }
    for n in 0..=SHARE {
        p.subscribe(format!("k{n}"), None);
    }
    let at = p.next_request_at(now).unwrap();
    assert_eq!(at, now + REQUEST_SPACING);
    let text = p.next_request(at).unwrap();
    let sent: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(sent["params"].as_array().unwrap().len(), SHARE, "{text}");
    assert_eq!(p.next_request_at(at), Some(at + REQUEST_SPACING));
    assert!(p
        .next_request(at)
        .unwrap()
        .contains(&format!("\"k{SHARE}\"")));
}

#[tokio::test(start_paused = true)]
async fn a_silent_server_loses_the_connection_after_the_silence_timeout() {
    let (handle, mut server) = serving().await;
    let (shared, sink, mut signals) = stream();
    let _m = join(&handle, &mut server, &sink, "key").await;
    let t0 = Instant::now();
    match signals.recv().await {
        Some(Signal::Lost { reason, .. }) => assert_eq!(reason, "silent"),
        other => panic!("{other:?}"),
    }
    assert!(Instant::now() - t0 >= SILENCE);
    let h = shared.health();
    assert!(!h.connected && !h.subscribed, "{h:?}");
}

#[test]
fn dedup_recognises_what_it_saw_until_its_window_closes() {
    let t0 = Instant::now();
    let mut d = Dedup::default();
    // Closed: everything is new, nothing remembered.
    assert!(d.first_time("k", "a", t0));
    assert!(!d.seen("k", "a"));
    d.open_until(t0 + Duration::from_secs(10));
    assert!(d.first_time("k", "a", t0));
    assert!(d.seen("k", "a"));
    assert!(!d.first_time("k", "a", t0));
    // The same text on another stream is another event.
    assert!(d.first_time("k2", "a", t0));
    // Past the window it forgets.
    assert!(d.first_time("k", "a", t0 + Duration::from_secs(10)));
    assert!(!d.seen("k", "a"));
}

#[tokio::test(start_paused = true)]
async fn a_rotation_switches_links_without_loss_or_repeat() {
    let (old, mut old_server) = pipe().await;
    let (new, mut new_server) = pipe().await;
    let (handle, rx) = ConnHandle::new();
    let mut task = Task::new(settings(), handle.clone(), rx, None);
    let (shared, sink, _signals) = stream();
    let (done, _answer) = tokio::sync::oneshot::channel();
    task.on_command(Cmd::Subscribe {
        sink,
        key: "key".into(),
        done,
    });
    task.dedup
        .open_until(Instant::now() + Duration::from_secs(60));
    // The old link delivers 1 and 2; the new one, subscribed later,
    // carries 2 and 3.
    old_server.send(event("key", "E", 1)).await.unwrap();
    old_server.send(event("key", "E", 2)).await.unwrap();
    new_server.send(event("key", "E", 2)).await.unwrap();
    new_server.send(event("key", "E", 3)).await.unwrap();
    let before = shared.health().reconnects;
    let mut link = task
        .switch(Link::new(old), Link::new(new), Vec::new())
        .await
        .ok()
        .expect("switched");
    // The serve loop goes on with what the new link still has (if the
    // switch did not already hold it).
    if let Ok(msg) = tokio::time::timeout(Duration::from_secs(1), link.ws.next()).await {
        assert!(task.on_frames(&mut link, msg).is_ok());
    }
    let times: Vec<i64> = queued(&shared).await.iter().map(Event::time_ms).collect();
    assert_eq!(times, [1, 2, 3]);
    assert_eq!(shared.health().reconnects, before + 1);
    // The old link was closed.
    assert!(matches!(
        old_server.next().await,
        Some(Ok(Message::Close(_))) | None
    ));
}

/// A rotation's new link subscribes every key with the serve loop's pacer:
/// `MAX_PARAMS` keys a message, paced, events before the answers held, every
/// answer waited for.
#[tokio::test(start_paused = true)]
async fn a_rotation_subscribes_the_new_link_paced_and_holds_early_events() {
    use super::pacer::MAX_PARAMS;
    use super::rotate::subscribe_all;
    let (mut ours, mut theirs) = pipe().await;
    let mut pacer = Pacer::new(TIMEOUT);
    let keys: Vec<String> = (0..MAX_PARAMS * 2 + 1).map(|n| format!("k{n}")).collect();
    for k in &keys {
        pacer.subscribe(k.clone(), None);
    }
    let server = async move {
        let mut seen = Vec::new();
        let mut at = Vec::new();
        for n in 0..3 {
            let req = read_json(&mut theirs).await;
            at.push(Instant::now());
            let params = req["params"].as_array().unwrap();
            seen.extend(params.iter().map(|k| k.as_str().unwrap().to_owned()));
            if n == 0 {
                // An event before the answer.
                theirs.send(event("k0", "E", 9)).await.unwrap();
            }
            let answer = serde_json::json!({ "result": null, "id": req["id"] });
            theirs
                .send(Message::text(answer.to_string()))
                .await
                .unwrap();
        }
        (seen, at, theirs)
    };
    let mut held = Vec::new();
    let (r, (seen, at, _theirs)) =
        tokio::join!(subscribe_all(&mut ours, &mut pacer, &mut held), server);
    r.unwrap();
    assert_eq!(seen, keys);
    assert_eq!(at[1] - at[0], BURST_QUIET);
    assert_eq!(at[2] - at[1], REQUEST_SPACING);
    assert_eq!(held.len(), 1);
    assert!(held[0].contains(r#""stream":"k0""#), "{held:?}");
}

/// A refused SUBSCRIBE fails the rotation (the old link is kept).
#[tokio::test(start_paused = true)]
async fn a_rotation_whose_subscribe_is_refused_fails() {
    use super::rotate::subscribe_all;
    let (mut ours, mut theirs) = pipe().await;
    let mut pacer = Pacer::new(TIMEOUT);
    pacer.subscribe("k".into(), None);
    let server = async move {
        let req = read_json(&mut theirs).await;
        let answer = serde_json::json!({ "code": 2, "msg": "Invalid request", "id": req["id"] });
        theirs
            .send(Message::text(answer.to_string()))
            .await
            .unwrap();
        theirs
    };
    let mut held = Vec::new();
    let (r, _theirs) = tokio::join!(subscribe_all(&mut ours, &mut pacer, &mut held), server);
    let e = r.unwrap_err();
    assert!(e.message.contains("Invalid request"), "{}", e.message);
}

/// A stream opened without waiting for its subscription says
/// `binance.stream_subscribed` before any of its events: also when an
/// event comes right behind the answer, before the stream's runner has
/// seen the answer, and when the server sends an event before its answer.
#[tokio::test(start_paused = true)]
async fn a_no_wait_stream_says_it_is_subscribed_before_any_of_its_events() {
    let kinds = |evs: Vec<Event>| evs.iter().map(|e| e.kind().to_owned()).collect::<Vec<_>>();
    for event_first in [false, true] {
        let (handle, mut server) = serving().await;
        let (a, sink, _signals) = stream();
        assert!(handle.reserve(100));
        sink.set_joining(1);
        let (_member, _answer) = Membership::join_later(handle.clone(), &sink, "keyA").unwrap();
        let req = read_json(&mut server).await;
        assert_eq!(req["method"], "SUBSCRIBE", "{req}");
        let answer =
            Message::text(serde_json::json!({ "result": null, "id": req["id"] }).to_string());
        let ev = event("keyA", "ORDER_TRADE_UPDATE", 5);
        let frames = if event_first {
            [ev, answer]
        } else {
            [answer, ev]
        };
        for f in frames {
            server.send(f).await.unwrap();
        }
        assert_eq!(
            kinds(queued(&a).await),
            ["binance.stream_subscribed", "ORDER_TRADE_UPDATE"],
            "event first: {event_first}"
        );
    }
}
