//! HTTPS_PROXY and NO_PROXY are honoured when no proxy is configured. The
//! environment is process-wide, so this file holds a single test.

mod common;

use binance_uds::engine::UserStream;
use binance_uds::engine::{Client, Config};
use common::proxy::Proxy;
use common::Exchange;

#[test]
fn https_proxy_and_no_proxy_from_the_environment() {
    let ex = Exchange::start(&[]);
    let proxy = Proxy::start(None);
    let config = || {
        let mut c = Config::default();
        c.set_api_key("TESTKEYproxyenv0123456789").unwrap();
        c.set_endpoint(&ex.ws_api).unwrap();
        c.set_stream_endpoint(&ex.stream).unwrap();
        c.add_root_certificate_pem(ex.ca_pem.as_ref().unwrap())
            .unwrap();
        c
    };
    std::env::set_var("HTTPS_PROXY", proxy.url());
    std::env::remove_var("NO_PROXY");
    std::env::remove_var("no_proxy");
    let client = Client::new(&config()).unwrap();
    let stream = UserStream::open(&client, None).unwrap();
    assert_eq!(
        proxy.tunnels(),
        vec![ex.addr(), ex.addr()],
        "both connections through HTTPS_PROXY"
    );
    stream.close();
    drop(client);

    std::env::set_var("NO_PROXY", "localhost,127.0.0.1");
    let client = Client::new(&config()).unwrap();
    client.listen_key_start().unwrap();
    assert_eq!(
        proxy.tunnels().len(),
        2,
        "NO_PROXY names the host: no tunnel"
    );

    // An explicit proxy wins over the environment.
    std::env::remove_var("NO_PROXY");
    std::env::set_var("HTTPS_PROXY", "http://127.0.0.1:1");
    let mut c = config();
    c.set_proxy(&proxy.url()).unwrap();
    Client::new(&c).unwrap().listen_key_start().unwrap();
    assert_eq!(proxy.tunnels().len(), 3);
    std::env::remove_var("HTTPS_PROXY");
}
