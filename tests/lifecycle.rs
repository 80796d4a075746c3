//! Nothing outlives its handle: after the last stream is closed and the last
//! client freed, the library's threads and sockets are gone. Threads and file
//! descriptors are process-wide, so this file holds a single test.

mod common;

use binance_uds::engine::UserStream;
use binance_uds::engine::{Client, Config};
use common::{wait_for, Exchange};
use std::time::{Duration, Instant};

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

fn fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[test]
fn close_and_free_leave_no_thread_or_socket() {
    let ex = Exchange::start(&[]);
    let mut cfg = Config::default();
    cfg.set_api_key("TESTKEYlifecycle0123456789").unwrap();
    cfg.set_endpoint(&ex.ws_api).unwrap();
    cfg.set_stream_endpoint(&ex.stream).unwrap();
    cfg.add_root_certificate_pem(ex.ca_pem.as_ref().unwrap())
        .unwrap();
    // Warm the process-wide TLS connector cache: it is kept on purpose.
    let threads_cold = threads();
    Client::new(&cfg).unwrap().listen_key_start().unwrap();
    // The shared I/O threads stop with the last client: the baseline is
    // taken once the kernel has reaped them.
    wait_for(
        "the warm-up client's threads to end",
        Duration::from_secs(5),
        || threads() <= threads_cold,
    );
    let (threads_before, fds_before) = (threads(), fds());

    for round in 0..4 {
        // Alternately shared (five streams on one connection) and not.
        let sharing = round % 2 == 0;
        cfg.set_connection_sharing(i32::from(sharing)).unwrap();
        let clients: Vec<Client> = (0..5).map(|_| Client::new(&cfg).unwrap()).collect();
        let streams: Vec<UserStream> = clients
            .iter()
            .map(|c| UserStream::open(c, None).unwrap())
            .collect();
        assert!(
            threads() <= threads_before + 2,
            "one shared runtime of two threads, not one per client"
        );
        assert_eq!(
            ex.stats()["stream_connections_open"],
            if sharing { 1 } else { 5 },
            "sharing {sharing}"
        );
        for s in &streams {
            s.close();
        }
        drop(streams);
        drop(clients);
        // The runtime's threads are joined by the last free; give the
        // kernel a moment to reap them from /proc.
        let deadline = Instant::now() + Duration::from_secs(5);
        while (threads() > threads_before || fds() > fds_before) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(
            threads(),
            threads_before,
            "a library thread outlived its handles"
        );
        assert_eq!(fds(), fds_before, "a socket outlived its handles");
    }
    // The exchange sees the closes a moment after the library made them.
    wait_for(
        "the exchange to see every connection closed",
        Duration::from_secs(10),
        || ex.stat("stream_connections_open") == 0 && ex.stat("api_connections_open") == 0,
    );
    let s = ex.stats();
    assert_eq!(
        (
            s["stream_connections_open"].as_u64(),
            s["api_connections_open"].as_u64()
        ),
        (Some(0), Some(0)),
        "{s}"
    );
}
