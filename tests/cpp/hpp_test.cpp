// hpp_test.cpp: the C++ layer (include/binance_uds.hpp) against the local
// exchange. Run by tests/cpp_api.rs; exits 0 when every check passed.
//
// Environment: BINANCE_WS_API_URL, BINANCE_STREAM_URL, BINANCE_CA_FILE,
// BINANCE_TEST_CONTROL ("127.0.0.1:PORT"), BINANCE_API_KEY; for the signed
// parts BINANCE_REST_URL (the exchange's REST API), BINANCE_SECRET_KEY (the
// API key's HMAC secret), BINANCE_PRIVATE_KEY_FILE (an Ed25519 PEM) and
// BINANCE_ED25519_API_KEY (the API key registered with it).

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "binance_uds.hpp"
#include "blocked.h"

using namespace std::chrono_literals;

namespace {

int failures = 0;

#define CHECK(cond)                                                                            \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            std::cerr << __FILE__ << ':' << __LINE__ << ": CHECK failed: " << #cond << '\n';   \
            ++failures;                                                                        \
        }                                                                                      \
    } while (0)

#define CHECK_EQ(a, b)                                                                         \
    do {                                                                                       \
        const auto &check_a_ = (a);                                                            \
        const auto &check_b_ = (b);                                                            \
        if (!(check_a_ == check_b_)) {                                                         \
            std::cerr << __FILE__ << ':' << __LINE__ << ": CHECK_EQ failed: " << #a << " == " \
                      << #b << " (" << check_a_ << " vs " << check_b_ << ")\n";                \
            ++failures;                                                                        \
        }                                                                                      \
    } while (0)

std::string env(const char *name)
{
    const char *v = std::getenv(name);
    if (v == nullptr || *v == '\0') {
        std::cerr << "environment variable " << name << " is not set (run through `cargo test --test cpp_api`)\n";
        std::exit(2);
    }
    return v;
}

std::string read_file(const std::string &path)
{
    std::ifstream f(path, std::ios::binary);
    std::ostringstream s;
    s << f.rdbuf();
    return s.str();
}

bool contains(std::string_view haystack, std::string_view needle)
{
    return haystack.find(needle) != std::string_view::npos;
}

// One command to the exchange's control port; returns its answer line.
std::string control(const std::string &command)
{
    const std::string addr = env("BINANCE_TEST_CONTROL");
    const auto colon = addr.rfind(':');
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(static_cast<uint16_t>(std::stoi(addr.substr(colon + 1))));
    if (inet_pton(AF_INET, addr.substr(0, colon).c_str(), &sa.sin_addr) != 1) {
        std::cerr << "bad BINANCE_TEST_CONTROL " << addr << '\n';
        std::exit(2);
    }
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    std::string answer;
    if (fd >= 0 && connect(fd, reinterpret_cast<const sockaddr *>(&sa), sizeof sa) == 0) {
        const std::string line = command + "\n";
        if (write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size())) {
            char c = 0;
            while (read(fd, &c, 1) == 1 && c != '\n')
                answer += c;
        }
    }
    if (fd >= 0)
        close(fd);
    if (!contains(answer, "\"ok\":true")) {
        std::cerr << "control " << command << " failed: " << answer << '\n';
        ++failures;
    }
    return answer;
}

// A config for the local exchange.
binance::config exchange_config()
{
    binance::config cfg;
    cfg.api_key(env("BINANCE_API_KEY"))
        .endpoint(env("BINANCE_WS_API_URL"))
        .stream_endpoint(env("BINANCE_STREAM_URL"))
        .add_root_certificate_pem(read_file(env("BINANCE_CA_FILE")))
        .timeouts(5s, 5s)
        .reconnect_backoff(50ms, 500ms);
    return cfg;
}

// Runs `f`, which must throw binance::error with `status` and a message
// containing `needle`; returns the error for more checks.
std::optional<binance::error> expect_error(const char *what, binance_status status, std::string_view needle,
                                           const std::function<void()> &f)
{
    try {
        f();
    } catch (const binance::error &e) {
        if (e.status() != status || !contains(e.message(), needle)) {
            std::cerr << what << ": expected " << binance::status_str(status) << " naming \"" << needle
                      << "\", got: " << e.what() << '\n';
            ++failures;
        }
        if (contains(e.what(), env("BINANCE_API_KEY"))) {
            std::cerr << what << ": the API key is in the error: " << e.what() << '\n';
            ++failures;
        }
        if (contains(e.what(), env("BINANCE_SECRET_KEY"))) {
            std::cerr << what << ": the secret key is in the error: " << e.what() << '\n';
            ++failures;
        }
        return e;
    }
    std::cerr << what << ": no exception, expected " << binance::status_str(status) << '\n';
    ++failures;
    return std::nullopt;
}

void versions_and_status_names()
{
    CHECK_EQ(binance::version(), std::string_view(BINANCE_VERSION_STRING));
    CHECK_EQ(binance::status_str(BINANCE_TIMEOUT), std::string_view("BINANCE_TIMEOUT"));
    CHECK_EQ(binance::status_str(BINANCE_STREAM_CLOSED), std::string_view("BINANCE_STREAM_CLOSED"));
    CHECK_EQ(binance::status_str(12345), std::string_view("BINANCE_UNKNOWN_STATUS"));
}

void config_errors_name_the_argument()
{
    binance::config cfg;
    expect_error("empty api_key", BINANCE_INVALID_ARGUMENT, "api_key", [&] { cfg.api_key(""); });
    expect_error("api_key with NUL", BINANCE_INVALID_ARGUMENT, "api_key",
                 [&] { cfg.api_key(std::string("ab\0cd", 5)); });
    expect_error("http endpoint", BINANCE_INVALID_ARGUMENT, "url", [&] { cfg.endpoint("http://example.com/ws"); });
    expect_error("garbage stream endpoint", BINANCE_INVALID_ARGUMENT, "url",
                 [&] { cfg.stream_endpoint("not a url"); });
    expect_error("zero connect timeout", BINANCE_INVALID_ARGUMENT, "connect_ms", [&] { cfg.timeouts(0ms, 1s); });
    expect_error("negative request timeout", BINANCE_INVALID_ARGUMENT, "request_ms",
                 [&] { cfg.timeouts(1s, -1ms); });
    expect_error("huge timeout", BINANCE_INVALID_ARGUMENT, "connect_ms", [&] { cfg.timeouts(std::chrono::hours(2000000), 1s); });
    expect_error("bad pem", BINANCE_INVALID_ARGUMENT, "pem", [&] { cfg.add_root_certificate_pem("not a certificate"); });
    expect_error("short keepalive", BINANCE_INVALID_ARGUMENT, "ms", [&] { cfg.keepalive_interval(1ms); });
    expect_error("socks proxy", BINANCE_INVALID_ARGUMENT, "url", [&] { cfg.proxy("socks5://127.0.0.1:1080"); });
    expect_error("zero queue", BINANCE_INVALID_ARGUMENT, "capacity", [&] { cfg.event_queue_capacity(0); });
    expect_error("short silence", BINANCE_INVALID_ARGUMENT, "ms", [&] { cfg.silence_timeout(1ms); });
    expect_error("short rotation", BINANCE_INVALID_ARGUMENT, "ms", [&] { cfg.stream_rotation(1ms); });
    expect_error("backoff max below initial", BINANCE_INVALID_ARGUMENT, "max_ms",
                 [&] { cfg.reconnect_backoff(100ms, 10ms); });
    expect_error("unknown stream form", BINANCE_INVALID_ARGUMENT, "form", [&] { cfg.stream_form(7); });
    expect_error("unknown product", BINANCE_INVALID_ARGUMENT, "product", [&] { cfg.product(3); });
    expect_error("zero subscriptions per connection", BINANCE_INVALID_ARGUMENT, "n",
                 [&] { cfg.stream_subscriptions_per_connection(0); });
    expect_error("too many subscriptions per connection", BINANCE_INVALID_ARGUMENT, "n",
                 [&] { cfg.stream_subscriptions_per_connection(1025); });
    expect_error("empty secret", BINANCE_INVALID_ARGUMENT, "secret", [&] { cfg.secret_key(""); });
    expect_error("secret with NUL", BINANCE_INVALID_ARGUMENT, "secret",
                 [&] { cfg.secret_key(std::string("se\0cret", 7)); });
    expect_error("bad private key", BINANCE_INVALID_ARGUMENT, "pem", [&] { cfg.private_key_pem("not a key"); });
    // An RSA-looking block is refused without its contents in the message.
    const auto not_ed25519 =
        expect_error("certificate as private key", BINANCE_INVALID_ARGUMENT, "pem",
                     [&] { cfg.private_key_pem(read_file(env("BINANCE_CA_FILE"))); });
    if (not_ed25519)
        CHECK(!contains(not_ed25519->what(), "MII"));
    expect_error("ftp rest endpoint", BINANCE_INVALID_ARGUMENT, "url", [&] { cfg.rest_endpoint("ftp://x"); });
    expect_error("plain http rest endpoint off loopback", BINANCE_INVALID_ARGUMENT, "url",
                 [&] { cfg.rest_endpoint("http://example.com"); });
    expect_error("zero recv window", BINANCE_INVALID_ARGUMENT, "ms", [&] { cfg.recv_window(0ms); });
    expect_error("recv window over 60 s", BINANCE_INVALID_ARGUMENT, "ms", [&] { cfg.recv_window(60001ms); });

    // what() says which call failed and how.
    const auto e = expect_error("what()", BINANCE_INVALID_ARGUMENT, "url", [&] { cfg.endpoint("ftp://x"); });
    if (e) {
        CHECK(contains(e->what(), "binance_config_set_endpoint"));
        CHECK(contains(e->what(), "BINANCE_INVALID_ARGUMENT"));
        CHECK_EQ(e->status_name(), std::string_view("BINANCE_INVALID_ARGUMENT"));
        CHECK_EQ(e->api_code(), 0);
        CHECK_EQ(e->http_status(), 0);
    }

    // The valid values of each setter are taken, and chain.
    cfg.api_key("GOODKEY123")
        .endpoint(BINANCE_WS_API_URL_TESTNET)
        .stream_endpoint(BINANCE_STREAM_URL_TESTNET)
        .timeouts(2s, 3s)
        .keepalive_interval(std::chrono::minutes(20))
        .proxy("http://127.0.0.1:3128")
        .event_queue_capacity(16)
        .silence_timeout(1min)
        .stream_rotation(std::chrono::hours(1))
        .reconnect_backoff(100ms, 5s)
        .stream_form(BINANCE_STREAM_FORM_QUERY)
        .stream_form(BINANCE_STREAM_FORM_SUBSCRIBE)
        .product(BINANCE_PRODUCT_PORTFOLIO_MARGIN)
        .product(BINANCE_PRODUCT_COINM)
        .product(BINANCE_PRODUCT_USDM)
        .connection_sharing(false)
        .connection_sharing(true)
        .stream_subscriptions_per_connection(1024)
        .secret_key("GOODSECRET456")
        .private_key_pem(read_file(env("BINANCE_PRIVATE_KEY_FILE")))
        .rest_endpoint(BINANCE_REST_URL_TESTNET)
        .recv_window(60s)
        .account_resync(true)
        .account_resync(false)
        .open_waits_for_subscription(false)
        .open_waits_for_subscription(true)
        .snapshot_budget_percent(25)
        .source_address("127.0.0.1")
        .clear_source_address();
    expect_error("source address not an address", BINANCE_INVALID_ARGUMENT, "address",
                 [&] { cfg.source_address("localhost"); });
    expect_error("snapshot share 0", BINANCE_INVALID_ARGUMENT, "percent", [&] { cfg.snapshot_budget_percent(0); });

    // A client needs an API key.
    const binance::config no_key;
    expect_error("client without key", BINANCE_INVALID_ARGUMENT, "API key", [&] { binance::client c(no_key); });
}

void listen_key_start_keepalive_stop()
{
    binance::client client(exchange_config());
    CHECK_EQ(client.rate_limits_json(), std::string("[]"));
    const std::string key = client.listen_key_start();
    CHECK_EQ(key.size(), 64u);
    CHECK_EQ(client.listen_key_keepalive(), key);
    CHECK(contains(client.rate_limits_json(), "REQUEST_WEIGHT"));
    CHECK(contains(client.request_budget_json(), "\"limit\":2400"));
    client.listen_key_stop();

    // After stop there is no key to keep alive.
    const auto gone = expect_error("keepalive after stop", BINANCE_API_ERROR, "",
                                   [&] { client.listen_key_keepalive(); });
    if (gone) {
        CHECK_EQ(gone->api_code(), -1125);
        CHECK_EQ(gone->http_status(), 400);
    }
}

void api_errors_carry_code_and_status()
{
    binance::client client(exchange_config());
    control(R"({"cmd":"fail","status":400,"code":-1125,"msg":"x"})");
    const auto e = expect_error("injected -1125", BINANCE_API_ERROR, "x", [&] { client.listen_key_start(); });
    if (e) {
        CHECK_EQ(e->api_code(), -1125);
        CHECK_EQ(e->http_status(), 400);
        CHECK(contains(e->what(), "binance_listen_key_start"));
    }

    control(R"({"cmd":"fail","status":429,"code":-1003,"msg":"Too many requests","retry_after_ms":1000})");
    const auto start = std::chrono::duration_cast<std::chrono::milliseconds>(
                           std::chrono::system_clock::now().time_since_epoch())
                           .count();
    const auto limited = expect_error("429", BINANCE_RATE_LIMITED, "", [&] { client.listen_key_start(); });
    if (limited) {
        CHECK_EQ(limited->http_status(), 429);
        CHECK_EQ(limited->api_code(), -1003);
        CHECK(limited->retry_after_ms() >= start + 500);
    }

    // Until that time nothing is sent, by any client of this server.
    binance::client other(exchange_config());
    const auto unsent = expect_error("before the retry time", BINANCE_RATE_LIMITED, "",
                                     [&] { other.listen_key_start(); });
    if (unsent && limited) {
        CHECK_EQ(unsent->http_status(), 0);
        CHECK_EQ(unsent->retry_after_ms(), limited->retry_after_ms());
    }
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (!contains(other.request_budget_json(), "\"paused_until_ms\":0,") &&
           std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(50ms);

    // Then, the fault used up, the next call works.
    CHECK_EQ(client.listen_key_start().size(), 64u);
}

void user_stream_events_through_the_range()
{
    binance::client client(exchange_config());
    binance::user_stream stream(client);
    CHECK(stream.is_open());
    CHECK(!stream.next(0ms).has_value());

    const std::string key = env("BINANCE_API_KEY");
    control(R"({"cmd":"emit","api_key":")" + key + R"(","type":"ORDER_TRADE_UPDATE","count":3})");
    control(R"({"cmd":"emit","api_key":")" + key + R"(","type":"ACCOUNT_UPDATE","count":1})");

    std::vector<std::string> types;
    std::int64_t last_time = 0;
    for (const binance::event &ev : stream.events(10s)) {
        types.emplace_back(ev.type());
        CHECK(ev.time_ms() > last_time);
        last_time = ev.time_ms();
        CHECK(contains(ev.json(), std::string("\"e\":\"") + std::string(ev.type()) + "\""));
        CHECK(!ev.is_library());
        if (ev.type() == "ORDER_TRADE_UPDATE") {
            CHECK_EQ(ev.get("/o/s"), std::string("BTCUSDT"));
            CHECK_EQ(ev.get("/o/X"), std::string("NEW"));
            CHECK_EQ(ev.get("/e"), std::string("ORDER_TRADE_UPDATE"));
            expect_error("missing field", BINANCE_INVALID_ARGUMENT, "", [&] { ev.get("/no/such/field"); });
            expect_error("malformed pointer", BINANCE_INVALID_ARGUMENT, "json_pointer", [&] { ev.get("o/X"); });
        }
        if (types.size() == 4)
            break;
    }
    const std::vector<std::string> want{"ORDER_TRADE_UPDATE", "ORDER_TRADE_UPDATE", "ORDER_TRADE_UPDATE",
                                        "ACCOUNT_UPDATE"};
    CHECK(types == want);

    const binance::stream_health h = stream.health();
    CHECK_EQ(h.connected, 1);
    CHECK_EQ(h.events_delivered, 4u);
    CHECK_EQ(h.events_dropped, 0u);

    // With an idle timeout the range ends when nothing more comes.
    int more = 0;
    for (const binance::event &ev : stream.events(200ms)) {
        (void)ev;
        ++more;
    }
    CHECK_EQ(more, 0);

    // next() gives the same events.
    control(R"({"cmd":"emit","api_key":")" + key + R"(","type":"TRADE_LITE","count":1})");
    const std::optional<binance::event> one = stream.next(10s);
    CHECK(one.has_value());
    if (one)
        CHECK_EQ(one->type(), std::string_view("TRADE_LITE"));

    // Closing the stream inside the loop ends it; the event in hand stays valid.
    control(R"({"cmd":"emit","api_key":")" + key + R"(","type":"GRID_UPDATE","count":2})");
    int in_loop = 0;
    for (const binance::event &ev : stream.events(10s)) {
        ++in_loop;
        stream.close();
        CHECK_EQ(ev.type(), std::string_view("GRID_UPDATE"));
    }
    CHECK_EQ(in_loop, 1);
    CHECK(!stream.is_open());
    expect_error("next after close", BINANCE_STREAM_CLOSED, "", [&] { stream.next(0ms); });
    expect_error("health after close", BINANCE_STREAM_CLOSED, "", [&] { stream.health(); });
    int after_close = 0;
    for (const binance::event &ev : stream.events()) {
        (void)ev;
        ++after_close;
    }
    CHECK_EQ(after_close, 0);
    stream.close();  // twice is fine
}

// Waits until the thread that stored its id in `tid` is blocked inside the
// library (see tests/c/blocked.h): only then does closing the stream test a
// wake-up rather than a refusal on the way in.
bool wait_until_blocked(const std::atomic<long> &tid)
{
    const auto deadline = std::chrono::steady_clock::now() + 60s;
    while (tid.load() == 0 && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(1ms);
    return wait_blocked(tid.load(), 60000) == 0;
}

void close_from_another_thread_ends_the_range()
{
    binance::client client(exchange_config());
    binance::user_stream stream(client);
    std::atomic<bool> ended{false};
    std::atomic<long> tid{0};
    std::thread reader([&] {
        tid = blocked_self_id();
        for (const binance::event &ev : stream.events()) {
            (void)ev;
        }
        ended = true;
    });
    CHECK(wait_until_blocked(tid));
    // Blocked, with no event to end it: the range has not ended.
    CHECK(!ended);
    stream.close();
    // The range ends because close() woke the reader (a range that did not
    // end would keep this join waiting).
    reader.join();
    CHECK(ended);
}

void library_events_are_told_apart_by_origin_not_name()
{
    binance::client client(exchange_config());
    binance::user_stream stream(client);
    const std::string key = env("BINANCE_API_KEY");
    // A server event named like a library event is still a server event.
    control(R"({"cmd":"emit","api_key":")" + key + R"(","raw":"{\"e\":\"binance.stream_gap\",\"E\":{E}}"})");
    const std::optional<binance::event> spoof = stream.next(10s);
    CHECK(spoof.has_value());
    if (spoof) {
        CHECK_EQ(spoof->type(), std::string_view("binance.stream_gap"));
        CHECK(!spoof->is_library());
    }
    // A lost connection makes real library events.
    control(R"({"cmd":"drop","target":"stream"})");
    const std::optional<binance::event> lost = stream.next(10s);
    CHECK(lost.has_value());
    if (lost) {
        CHECK_EQ(lost->type().substr(0, 8), std::string_view("binance."));
        CHECK(lost->is_library());
    }
}

void close_wakes_many_readers_at_once()
{
    binance::client client(exchange_config());
    binance::user_stream stream(client);
    std::atomic<int> closed_seen{0};
    std::atomic<long> tids[4] = {{0}, {0}, {0}, {0}};
    std::vector<std::thread> readers;
    for (int i = 0; i < 4; ++i)
        readers.emplace_back([&, i] {
            tids[i] = blocked_self_id();
            try {
                while (stream.next(1h)) {
                }
            } catch (const binance::error &e) {
                if (e.status() == BINANCE_STREAM_CLOSED)
                    ++closed_seen;
            }
        });
    for (const std::atomic<long> &tid : tids)
        CHECK(wait_until_blocked(tid));
    stream.close();
    for (std::thread &t : readers)
        t.join();
    // Each reader was blocked in one hour-long call and was woken by close().
    CHECK_EQ(closed_seen.load(), 4);
    CHECK(!stream.is_open());
}

void moves_leave_empty_handles()
{
    static_assert(!std::is_copy_constructible_v<binance::config>);
    static_assert(!std::is_copy_constructible_v<binance::client>);
    static_assert(!std::is_copy_constructible_v<binance::user_stream>);
    static_assert(!std::is_copy_constructible_v<binance::event>);
    static_assert(std::is_nothrow_move_constructible_v<binance::config>);
    static_assert(std::is_nothrow_move_constructible_v<binance::client>);
    static_assert(std::is_nothrow_move_constructible_v<binance::user_stream>);
    static_assert(std::is_nothrow_move_constructible_v<binance::event>);
    static_assert(std::is_nothrow_move_assignable_v<binance::user_stream>);
    static_assert(std::is_nothrow_copy_constructible_v<binance::error>);

    binance::config cfg = exchange_config();
    binance::config cfg2(std::move(cfg));
    CHECK(!cfg);
    CHECK(cfg2);
    expect_error("moved-from config", BINANCE_INVALID_ARGUMENT, "cfg", [&] { cfg.api_key("KEY"); });

    binance::client c1(cfg2);
    binance::client c2(std::move(c1));
    CHECK(!c1);
    CHECK(c2);
    expect_error("moved-from client", BINANCE_INVALID_ARGUMENT, "client", [&] { c1.listen_key_start(); });
    expect_error("stream from moved-from client", BINANCE_INVALID_ARGUMENT, "client",
                 [&] { binance::user_stream s(c1); });
    c1 = std::move(c2);
    CHECK(c1);
    CHECK(!c2);
    CHECK_EQ(c1.listen_key_start().size(), 64u);

    // A stream keeps its client alive: the client may go first.
    std::optional<binance::user_stream> kept;
    {
        binance::client scoped(cfg2);
        kept.emplace(scoped);
    }
    binance::user_stream s1(std::move(*kept));
    CHECK(!kept->is_open());
    expect_error("moved-from stream", BINANCE_INVALID_ARGUMENT, "stream", [&] { kept->next(0ms); });
    kept.reset();
    control(R"({"cmd":"emit","api_key":")" + env("BINANCE_API_KEY") + R"(","type":"MARGIN_CALL","count":1})");
    std::optional<binance::event> ev = s1.next(10s);
    CHECK(ev.has_value());
    if (ev) {
        binance::event moved(std::move(*ev));
        CHECK(!*ev);
        CHECK(moved);
        CHECK_EQ(ev->type(), std::string_view(""));
        CHECK_EQ(moved.type(), std::string_view("MARGIN_CALL"));
        expect_error("moved-from event", BINANCE_INVALID_ARGUMENT, "ev", [&] { ev->get("/e"); });
    }

    // Move-assigning over an open stream closes it.
    binance::user_stream s2(c1);
    s2 = std::move(s1);
    CHECK(s2.is_open());
    CHECK(!s1.is_open());
    s2.close();
}


// A config for the local exchange with the HMAC secret and its REST API.
binance::config signed_config()
{
    binance::config cfg = exchange_config();
    cfg.secret_key(env("BINANCE_SECRET_KEY")).rest_endpoint(env("BINANCE_REST_URL")).recv_window(10s);
    return cfg;
}

// The value of `"name":` in `json` as far as the next ',' or '}' (enough for
// the ids and counts these tests compare).
std::string json_field(const std::string &json, const std::string &name)
{
    const std::string needle = "\"" + name + "\":";
    const auto at = json.find(needle);
    if (at == std::string::npos)
        return "";
    const auto from = at + needle.size();
    return json.substr(from, json.find_first_of(",}", from) - from);
}

void account_snapshot_hmac_and_ed25519()
{
    const std::string key = env("BINANCE_API_KEY");
    // Without a signing key the snapshot is refused before anything is sent.
    binance::client unsigned_client(exchange_config());
    expect_error("snapshot without a signing key", BINANCE_INVALID_ARGUMENT, "key",
                 [&] { unsigned_client.account_snapshot(); });

    control(R"({"cmd":"deposit","api_key":")" + key + R"(","asset":"USDT","amount":"1000"})");
    const std::string placed = control(R"({"cmd":"order_place","api_key":")" + key +
                                       R"(","symbol":"BTCUSDT","side":"BUY","quantity":"0.010","price":"60000"})");
    const std::string order_id = json_field(placed, "order_id");
    CHECK(!order_id.empty());

    binance::client client(signed_config());
    const std::string doc = client.account_snapshot();
    CHECK(contains(doc, R"("e":"binance.account_snapshot")"));
    CHECK(contains(doc, "\"orderId\":" + order_id));
    CHECK(contains(doc, R"("asset":"USDT")"));
    CHECK(contains(doc, R"("open_algo_orders":[])"));
    CHECK(!contains(doc, env("BINANCE_SECRET_KEY")));

    // A wrong secret: Binance's -1022, with the code and status kept.
    binance::config wrong = exchange_config();
    wrong.secret_key("WRONGSECRET0000").rest_endpoint(env("BINANCE_REST_URL"));
    binance::client wrong_client(wrong);
    const auto bad = expect_error("wrong secret", BINANCE_API_ERROR, "", [&] { wrong_client.account_snapshot(); });
    if (bad) {
        CHECK_EQ(bad->api_code(), -1022);
        CHECK(!contains(bad->what(), "WRONGSECRET0000"));
    }

    // The Ed25519 key of another API key signs its own (empty) account.
    binance::config ed = exchange_config();
    ed.api_key(env("BINANCE_ED25519_API_KEY"))
        .private_key_pem(read_file(env("BINANCE_PRIVATE_KEY_FILE")))
        .rest_endpoint(env("BINANCE_REST_URL"));
    binance::client ed_client(ed);
    const std::string ed_doc = ed_client.account_snapshot();
    CHECK(contains(ed_doc, R"("open_orders":[])"));
    CHECK(!contains(ed_doc, "BEGIN PRIVATE KEY"));
}

void account_resync_delivers_snapshots_in_order()
{
    const std::string key = env("BINANCE_API_KEY");
    binance::config no_signer = exchange_config();
    no_signer.account_resync(true);
    binance::client no_signer_client(no_signer);
    expect_error("resync without a signing key", BINANCE_INVALID_ARGUMENT, "key",
                 [&] { binance::user_stream s(no_signer_client); });

    binance::config cfg = signed_config();
    cfg.account_resync(true);
    binance::client client(cfg);
    binance::user_stream stream(client);
    // The first event is the snapshot (with the order that
    // account_snapshot_hmac_and_ed25519, run before, left open).
    const std::optional<binance::event> first = stream.next(10s);
    CHECK(first.has_value());
    if (first) {
        CHECK_EQ(first->type(), std::string_view("binance.account_snapshot"));
        CHECK(first->is_library());
        CHECK(first->get("/server_time_ms") != "0");
        CHECK_EQ(first->get("/open_orders/0/symbol"), std::string("BTCUSDT"));
    }
    // A lost connection: the gap, then a new snapshot with the order placed
    // during the outage.
    control(R"({"cmd":"drop","target":"stream"})");
    const std::string placed = control(R"({"cmd":"order_place","api_key":")" + key +
                                       R"(","symbol":"ETHUSDT","side":"SELL","quantity":"0.5","price":"3000"})");
    const std::string order_id = json_field(placed, "order_id");
    std::vector<std::string> library_types;
    bool saw_order_in_snapshot = false;
    for (const binance::event &ev : stream.events(10s)) {
        if (!ev.is_library())
            continue;
        library_types.emplace_back(ev.type());
        if (ev.type() == "binance.account_snapshot") {
            saw_order_in_snapshot = contains(ev.json(), "\"orderId\":" + order_id);
            break;
        }
    }
    // binance.stream_disconnected, binance.stream_gap, then the snapshot.
    CHECK(std::find(library_types.begin(), library_types.end(), "binance.stream_gap") != library_types.end());
    CHECK(!library_types.empty() && library_types.back() == "binance.account_snapshot");
    CHECK(saw_order_in_snapshot);
    CHECK(stream.health().gaps >= 1u);
}

void stream_form_sharing_and_health()
{
    // Two accounts' streams from clients configured alike share a connection.
    binance::config a_cfg = exchange_config();
    a_cfg.api_key("SHAREKEYA0123456789").stream_subscriptions_per_connection(8);
    binance::config b_cfg = exchange_config();
    b_cfg.api_key("SHAREKEYB0123456789").stream_subscriptions_per_connection(8);
    binance::client a_client(a_cfg);
    binance::client b_client(b_cfg);
    binance::user_stream a(a_client);
    binance::user_stream b(b_client);
    const binance::stream_health ha = a.health();
    const binance::stream_health hb = b.health();
    CHECK_EQ(ha.size, static_cast<std::uint32_t>(sizeof(binance::stream_health)));
    CHECK_EQ(ha.subscribed, 1);
    CHECK(ha.connection_id != 0u);
    CHECK_EQ(ha.connection_id, hb.connection_id);
    CHECK_EQ(ha.connection_streams, 2u);
    CHECK_EQ(ha.last_keepalive_status, -1);
    CHECK(ha.key_age_ms >= 0);

    // Without sharing, a stream has a connection of its own.
    binance::config own_cfg = exchange_config();
    own_cfg.api_key("SHAREKEYC0123456789").stream_subscriptions_per_connection(8).connection_sharing(false);
    binance::client own_client(own_cfg);
    binance::user_stream own(own_client);
    const binance::stream_health ho = own.health();
    CHECK(ho.connection_id != 0u && ho.connection_id != ha.connection_id);
    CHECK_EQ(ho.connection_streams, 1u);

    // The query form: the key in the URL, one connection per stream.
    binance::config q_cfg = exchange_config();
    q_cfg.api_key("QUERYKEY0123456789").stream_form(BINANCE_STREAM_FORM_QUERY);
    binance::client q_client(q_cfg);
    binance::user_stream q(q_client);
    CHECK(contains(control(R"({"cmd":"stream_connections"})"), R"("form":"query")"));
    control(R"({"cmd":"emit","api_key":"QUERYKEY0123456789","type":"ORDER_TRADE_UPDATE","count":1})");
    const std::optional<binance::event> ev = q.next(10s);
    CHECK(ev.has_value() && ev->type() == "ORDER_TRADE_UPDATE");
    const binance::stream_health hq = q.health();
    CHECK_EQ(hq.subscribed, 1);
    CHECK_EQ(hq.connection_streams, 1u);
    CHECK(hq.last_event_ms > 0);
}
}  // namespace

// Opened without waiting for its subscription, the stream's first event
// through the descriptor says it is live; then the account's events.
void a_poll_loop_takes_events_with_try_next()
{
    binance::config cfg = exchange_config();
    cfg.open_waits_for_subscription(false);
    binance::client client(cfg);
    binance::user_stream stream(client);
    const std::int64_t fd = stream.fd();
    CHECK(fd >= 0);
    CHECK_EQ(stream.fd(), fd);
    const auto readable = [fd](int ms) {
        pollfd p{static_cast<int>(fd), POLLIN, 0};
        return ::poll(&p, 1, ms) == 1 && (p.revents & POLLIN) != 0;
    };
    CHECK(readable(10000));
    const std::optional<binance::event> live = stream.try_next();
    CHECK(live.has_value() && live->type() == "binance.stream_subscribed" && live->is_library());
    CHECK(!readable(0));
    const std::string key = env("BINANCE_API_KEY");
    control(R"({"cmd":"emit","api_key":")" + key + R"(","type":"ORDER_TRADE_UPDATE","count":20})");
    int got = 0;
    std::int64_t last_time = 0;
    while (got < 20 && readable(10000)) {
        while (const std::optional<binance::event> ev = stream.try_next()) {
            CHECK_EQ(ev->type(), std::string_view("ORDER_TRADE_UPDATE"));
            CHECK(ev->time_ms() > last_time);
            last_time = ev->time_ms();
            ++got;
        }
    }
    CHECK_EQ(got, 20);
    CHECK(!readable(0));
    stream.close();
    expect_error("try_next after close", BINANCE_STREAM_CLOSED, "", [&] { stream.try_next(); });
    expect_error("fd after close", BINANCE_STREAM_CLOSED, "", [&] { stream.fd(); });
}

int main()
{
    const std::pair<const char *, void (*)()> tests[] = {
        {"versions_and_status_names", versions_and_status_names},
        {"config_errors_name_the_argument", config_errors_name_the_argument},
        {"listen_key_start_keepalive_stop", listen_key_start_keepalive_stop},
        {"api_errors_carry_code_and_status", api_errors_carry_code_and_status},
        {"user_stream_events_through_the_range", user_stream_events_through_the_range},
        {"close_from_another_thread_ends_the_range", close_from_another_thread_ends_the_range},
        {"library_events_are_told_apart_by_origin_not_name", library_events_are_told_apart_by_origin_not_name},
        {"close_wakes_many_readers_at_once", close_wakes_many_readers_at_once},
        {"moves_leave_empty_handles", moves_leave_empty_handles},
        {"account_snapshot_hmac_and_ed25519", account_snapshot_hmac_and_ed25519},
        {"account_resync_delivers_snapshots_in_order", account_resync_delivers_snapshots_in_order},
        {"stream_form_sharing_and_health", stream_form_sharing_and_health},
        {"a_poll_loop_takes_events_with_try_next", a_poll_loop_takes_events_with_try_next},
    };
    for (const auto &[name, test] : tests) {
        const int before = failures;
        try {
            test();
        } catch (const std::exception &e) {
            std::cerr << name << ": unexpected exception: " << e.what() << '\n';
            ++failures;
        }
        std::cout << (failures == before ? "ok   " : "FAIL ") << name << std::endl;
    }
    if (failures != 0) {
        std::cerr << failures << " check(s) failed\n";
        return EXIT_FAILURE;
    }
    std::cout << "all passed\n";
    return EXIT_SUCCESS;
}
