/*
 * binance-uds for C++17: a header-only layer over binance_uds.h.
 *
 * Every library handle is an owning, move-only object that frees itself;
 * every failed call throws binance::error (the library's binance_error,
 * copied and freed). A moved-from object is empty: its calls throw
 * BINANCE_INVALID_ARGUMENT, never crash.
 *
 *   binance::config cfg;
 *   cfg.api_key(key).endpoint(BINANCE_WS_API_URL_TESTNET)
 *      .stream_endpoint(BINANCE_STREAM_URL_TESTNET);
 *   binance::client client(cfg);
 *   binance::user_stream stream(client);
 *   for (const binance::event& ev : stream.events())
 *       std::cout << ev.type() << ' ' << ev.json() << '\n';
 *
 * Threads: a client may be used from several threads at once, as in C. A
 * user_stream's next(), events() and health() may be called from several
 * threads, and close() from any thread wakes them at once
 * (binance_user_stream_shutdown), waits for them to leave the library, and
 * makes them report the stream closed. config and event follow the C rules
 * (config: one thread at a time; event: immutable).
 *
 * Link with -lbinance_uds (see README.md).
 */

#ifndef BINANCE_UDS_HPP
#define BINANCE_UDS_HPP

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <limits>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

#include "binance_uds.h"

namespace binance {

/* The library version, e.g. "0.1.0". */
inline std::string_view version() noexcept
{
    return binance_version();
}

/* The name of a status, e.g. "BINANCE_TIMEOUT". */
inline std::string_view status_str(binance_status status) noexcept
{
    return binance_status_str(status);
}

/*
 * A failed call. what() is "<C function>: <STATUS_NAME>: <message>";
 * message() is the library's message alone. Never contains the API key.
 * Copying never throws (as exceptions must).
 */
class error : public std::runtime_error {
public:
    /* From a failed C call's status and error object (read, not freed; NULL
       gives empty details). */
    error(const char *function, binance_status status, const binance_error *err)
        : error(function, status, binance_error_message(err), binance_error_api_code(err),
                binance_error_http_status(err), binance_error_retry_after_ms(err))
    {
    }

    /* A failure found by this layer before calling the library. */
    error(const char *function, binance_status status, std::string_view message)
        : error(function, status, message, 0, 0, 0)
    {
    }

    binance_status status() const noexcept { return status_; }
    std::string_view status_name() const noexcept { return binance_status_str(status_); }
    /* Binance's "code" (e.g. -1125); 0 when none. */
    std::int64_t api_code() const noexcept { return api_code_; }
    /* The answer's "status" (e.g. 400); 0 when there was no answer. */
    std::int32_t http_status() const noexcept { return http_status_; }
    /* For BINANCE_RATE_LIMITED: when to retry, ms since the Unix epoch; 0
       when the server did not say. */
    std::int64_t retry_after_ms() const noexcept { return retry_after_ms_; }
    /* The library's message, naming what went wrong. */
    std::string_view message() const noexcept { return std::string_view(what()).substr(message_offset_); }

private:
    error(const char *function, binance_status status, std::string_view message, std::int64_t api_code,
          std::int32_t http_status, std::int64_t retry_after_ms)
        : std::runtime_error(std::string(function) + ": " + binance_status_str(status) + ": " + std::string(message)),
          status_(status),
          api_code_(api_code),
          http_status_(http_status),
          retry_after_ms_(retry_after_ms),
          // The message is what() minus the prefix: no second string to copy.
          message_offset_(std::strlen(what()) - std::min(message.size(), std::strlen(what())))
    {
    }

    binance_status status_;
    std::int64_t api_code_;
    std::int32_t http_status_;
    std::int64_t retry_after_ms_;
    std::size_t message_offset_;
};

/* A stream's health: the C struct (see binance_uds.h for each field). */
using stream_health = binance_stream_health;

namespace detail {

struct config_free {
    void operator()(binance_config *p) const noexcept { binance_config_free(p); }
};
struct client_free {
    void operator()(binance_client *p) const noexcept { binance_client_free(p); }
};
struct error_free {
    void operator()(binance_error *p) const noexcept { binance_error_free(p); }
};
struct event_free {
    void operator()(binance_event *p) const noexcept { binance_event_free(p); }
};
struct string_free {
    void operator()(char *p) const noexcept { binance_string_free(p); }
};
using error_ptr = std::unique_ptr<binance_error, error_free>;
using string_ptr = std::unique_ptr<char, string_free>;

/* Runs `call(&err)`, a C call named `function`; on failure throws
   binance::error. The error object is freed either way. */
template <typename Call>
inline void check(const char *function, Call &&call)
{
    binance_error *raw = nullptr;
    const binance_status status = std::forward<Call>(call)(&raw);
    const error_ptr err(raw);
    if (status != BINANCE_OK)
        throw error(function, status, err.get());
}

/* Takes ownership of a library string and copies it out (freed even if
   the copy throws). */
inline std::string take_string(char *s)
{
    const string_ptr owned(s);
    return owned ? std::string(owned.get()) : std::string();
}

/* A std::string as a C string argument: an embedded NUL would silently cut
   it, so it is refused like the library refuses bad arguments. */
inline const char *c_str(const std::string &s, const char *function, const char *name)
{
    if (s.find('\0') != std::string::npos)
        throw error(function, BINANCE_INVALID_ARGUMENT, std::string(name) + ": contains a NUL byte");
    return s.c_str();
}

/* A duration as the library's uint32_t milliseconds; values that do not
   fit are refused here (the library checks the documented ranges). */
inline std::uint32_t to_ms(std::chrono::milliseconds d, const char *function, const char *name)
{
    if (d.count() < 0 || d.count() > static_cast<std::chrono::milliseconds::rep>(UINT32_MAX))
        throw error(function, BINANCE_INVALID_ARGUMENT,
                    std::string(name) + ": " + std::to_string(d.count()) + " ms is out of range");
    return static_cast<std::uint32_t>(d.count());
}

class stream_state;

}  // namespace detail

/*
 * A client configuration (binance_config): a builder. Each setter checks
 * its argument at once and throws binance::error (BINANCE_INVALID_ARGUMENT,
 * the argument named in the message).
 *
 *   binance::config cfg;
 *   cfg.api_key(key).endpoint(url).timeouts(std::chrono::seconds(5), std::chrono::seconds(5));
 */
class config {
public:
    /* The defaults of binance_config_new (production endpoints). */
    config() : ptr_(binance_config_new())
    {
        if (!ptr_)
            throw std::bad_alloc();
    }

    config &api_key(const std::string &key)
    {
        static const char fn[] = "binance_config_set_api_key";
        return set(fn, binance_config_set_api_key, detail::c_str(key, fn, "api_key"));
    }

    /* The WebSocket API URL, e.g. BINANCE_WS_API_URL_TESTNET. */
    config &endpoint(const std::string &url)
    {
        static const char fn[] = "binance_config_set_endpoint";
        return set(fn, binance_config_set_endpoint, detail::c_str(url, fn, "url"));
    }

    /* The user data stream base URL, e.g. BINANCE_STREAM_URL_TESTNET. */
    config &stream_endpoint(const std::string &url)
    {
        static const char fn[] = "binance_config_set_stream_endpoint";
        return set(fn, binance_config_set_stream_endpoint, detail::c_str(url, fn, "url"));
    }

    config &timeouts(std::chrono::milliseconds connect, std::chrono::milliseconds request)
    {
        static const char fn[] = "binance_config_set_timeouts_ms";
        return set(fn, binance_config_set_timeouts_ms, detail::to_ms(connect, fn, "connect_ms"),
                   detail::to_ms(request, fn, "request_ms"));
    }

    /* Trusts the PEM certificate(s) in addition to the system's roots (at
       most 256 per config, each call's text at most 1 MiB). */
    config &add_root_certificate_pem(const std::string &pem)
    {
        static const char fn[] = "binance_config_add_root_certificate_pem";
        return set(fn, binance_config_add_root_certificate_pem, detail::c_str(pem, fn, "pem"));
    }

    config &keepalive_interval(std::chrono::milliseconds interval)
    {
        static const char fn[] = "binance_config_set_keepalive_interval_ms";
        return set(fn, binance_config_set_keepalive_interval_ms, detail::to_ms(interval, fn, "ms"));
    }

    /* An HTTP CONNECT proxy for every connection: http://[user:pass@]host:port. */
    config &proxy(const std::string &url)
    {
        static const char fn[] = "binance_config_set_proxy";
        return set(fn, binance_config_set_proxy, detail::c_str(url, fn, "url"));
    }

    config &event_queue_capacity(std::uint32_t capacity)
    {
        return set("binance_config_set_event_queue_capacity", binance_config_set_event_queue_capacity, capacity);
    }

    config &silence_timeout(std::chrono::milliseconds timeout)
    {
        static const char fn[] = "binance_config_set_silence_timeout_ms";
        return set(fn, binance_config_set_silence_timeout_ms, detail::to_ms(timeout, fn, "ms"));
    }

    config &stream_rotation(std::chrono::milliseconds after)
    {
        static const char fn[] = "binance_config_set_stream_rotation_ms";
        return set(fn, binance_config_set_stream_rotation_ms, detail::to_ms(after, fn, "ms"));
    }

    config &reconnect_backoff(std::chrono::milliseconds initial, std::chrono::milliseconds max)
    {
        static const char fn[] = "binance_config_set_reconnect_backoff_ms";
        return set(fn, binance_config_set_reconnect_backoff_ms, detail::to_ms(initial, fn, "initial_ms"),
                   detail::to_ms(max, fn, "max_ms"));
    }

    /* Which product: BINANCE_PRODUCT_USDM (default), BINANCE_PRODUCT_COINM
       or BINANCE_PRODUCT_PORTFOLIO_MARGIN (see binance_uds.h); endpoints
       not set explicitly become the product's production ones. */
    config &product(binance_product p)
    {
        return set("binance_config_set_product", binance_config_set_product, p);
    }

    /* How user streams subscribe: BINANCE_STREAM_FORM_SUBSCRIBE (default)
       or BINANCE_STREAM_FORM_QUERY (see binance_uds.h). */
    config &stream_form(binance_stream_form form)
    {
        return set("binance_config_set_stream_form", binance_config_set_stream_form, form);
    }

    /* Whether streams of clients configured alike share connections
       (default true). */
    config &connection_sharing(bool enabled)
    {
        return set("binance_config_set_connection_sharing", binance_config_set_connection_sharing,
                   static_cast<std::int32_t>(enabled ? 1 : 0));
    }

    /* The most streams one shared connection carries: 1 to 1024 (default 200). */
    config &stream_subscriptions_per_connection(std::uint32_t n)
    {
        return set("binance_config_set_stream_subscriptions_per_connection",
                   binance_config_set_stream_subscriptions_per_connection, n);
    }

    /* The HMAC-SHA256 secret key that signs REST requests (the account
       snapshot). Treated like the API key: never in an error message.
       Replaces a private key. */
    config &secret_key(const std::string &secret)
    {
        static const char fn[] = "binance_config_set_secret_key";
        return set(fn, binance_config_set_secret_key, detail::c_str(secret, fn, "secret"));
    }

    /* The Ed25519 private key (PKCS#8 PEM, "BEGIN PRIVATE KEY") that signs
       REST requests. Treated like the API key. Replaces a secret key. */
    config &private_key_pem(const std::string &pem)
    {
        static const char fn[] = "binance_config_set_private_key_pem";
        return set(fn, binance_config_set_private_key_pem, detail::c_str(pem, fn, "pem"));
    }

    /* The REST base URL, e.g. BINANCE_REST_URL_TESTNET. */
    config &rest_endpoint(const std::string &url)
    {
        static const char fn[] = "binance_config_set_rest_endpoint";
        return set(fn, binance_config_set_rest_endpoint, detail::c_str(url, fn, "url"));
    }

    /* recvWindow of signed requests: 1 ms to 60 s (default 5 s). */
    config &recv_window(std::chrono::milliseconds window)
    {
        static const char fn[] = "binance_config_set_recv_window_ms";
        return set(fn, binance_config_set_recv_window_ms, detail::to_ms(window, fn, "ms"));
    }

    /* Whether user streams deliver the account snapshot
       (binance.account_snapshot) when they open and after every gap
       (default false). Needs a signing key: see binance_uds.h. */
    config &account_resync(bool enabled)
    {
        return set("binance_config_set_account_resync", binance_config_set_account_resync,
                   static_cast<std::int32_t>(enabled ? 1 : 0));
    }

    /* Whether opening a user stream waits for its subscription's
       acknowledgement (default true). false: the open returns once the
       subscription is sent, and the stream delivers
       binance.stream_subscribed when it is live, so that opening many
       accounts from one thread is not paced by the answers. */
    config &open_waits_for_subscription(bool wait)
    {
        return set("binance_config_set_open_waits_for_subscription",
                   binance_config_set_open_waits_for_subscription, static_cast<std::int32_t>(wait ? 1 : 0));
    }

    /* The share of the request budget account resync snapshots may draw,
       1 to 100 percent (default 50). See binance_uds.h. */
    config &snapshot_budget_percent(std::uint32_t percent)
    {
        return set("binance_config_set_snapshot_budget_percent",
                   binance_config_set_snapshot_budget_percent, percent);
    }

    /* Binds every connection to the local address `address` (an IPv4 or
       IPv6 literal the host has); each address has its own request budget. */
    config &source_address(const std::string &address)
    {
        static const char fn[] = "binance_config_set_source_address";
        return set(fn, binance_config_set_source_address, detail::c_str(address, fn, "address"));
    }

    /* Clears the source address: the system chooses (the default). */
    config &clear_source_address()
    {
        return set("binance_config_set_source_address", binance_config_set_source_address,
                   static_cast<const char *>(nullptr));
    }

    /* The C handle (still owned by this object); NULL when moved from. */
    const binance_config *handle() const noexcept { return ptr_.get(); }
    explicit operator bool() const noexcept { return ptr_ != nullptr; }

private:
    /* Calls the setter `c_fn` (named `fn` in errors) with the already
       converted `args`; throws binance::error on failure. */
    template <typename Setter, typename... Args>
    config &set(const char *fn, Setter c_fn, Args... args)
    {
        detail::check(fn, [&](binance_error **e) { return c_fn(ptr_.get(), args..., e); });
        return *this;
    }

    std::unique_ptr<binance_config, detail::config_free> ptr_;
};

/*
 * A client (binance_client): one WebSocket API connection for one API key,
 * opened on first use. Safe to use from several threads at once. A
 * user_stream opened from it keeps the C client alive until the stream is
 * closed, so the two may be destroyed in any order.
 */
class client {
public:
    /* Copies what it needs from `cfg`; does not connect. */
    explicit client(const config &cfg) : ptr_()
    {
        binance_client *raw = nullptr;
        detail::check("binance_client_new",
                      [&](binance_error **e) { return binance_client_new(cfg.handle(), &raw, e); });
        ptr_.reset(raw, detail::client_free{});  // frees `raw` itself if this throws
    }

    client(client &&) noexcept = default;
    client &operator=(client &&) noexcept = default;
    client(const client &) = delete;
    client &operator=(const client &) = delete;
    ~client() = default;

    /* userDataStream.start: the account's listenKey. Blocks up to the
       connect plus the request timeout. */
    std::string listen_key_start()
    {
        char *key = nullptr;
        detail::check("binance_listen_key_start",
                      [&](binance_error **e) { return binance_listen_key_start(ptr_.get(), &key, e); });
        return detail::take_string(key);
    }

    /* userDataStream.ping: extends the key; returns the key the server
       extended (use it if it differs from yours). Throws BINANCE_API_ERROR
       with api_code() -1125 when the account has no valid key. */
    std::string listen_key_keepalive()
    {
        char *key = nullptr;
        detail::check("binance_listen_key_keepalive",
                      [&](binance_error **e) { return binance_listen_key_keepalive(ptr_.get(), &key, e); });
        return detail::take_string(key);
    }

    /* userDataStream.stop: invalidates the account's key (for every
       connection and process using this API key). */
    void listen_key_stop()
    {
        detail::check("binance_listen_key_stop",
                      [&](binance_error **e) { return binance_listen_key_stop(ptr_.get(), e); });
    }

    /* The account's balances, positions, open orders and open algo orders
       as one JSON document (see binance_client_account_snapshot), fetched
       over signed REST. Needs a signing key on the config. Blocks until
       complete (up to the connect timeout plus 7 request timeouts). */
    std::string account_snapshot()
    {
        char *json = nullptr;
        detail::check("binance_client_account_snapshot",
                      [&](binance_error **e) { return binance_client_account_snapshot(ptr_.get(), &json, e); });
        return detail::take_string(json);
    }

    /* The latest rateLimits array as JSON text; "[]" before any. */
    std::string rate_limits_json() const
    {
        char *json = nullptr;
        detail::check("binance_client_rate_limits_json",
                      [&](binance_error **e) { return binance_client_rate_limits_json(ptr_.get(), &json, e); });
        return detail::take_string(json);
    }

    /* The request budget this client draws on (shared by every client of
       the process on the same source address and server) as JSON text:
       used, limit, window_ms, snapshots_waiting, paused_until_ms, ...
       (see binance_client_request_budget_json). Does not block. */
    std::string request_budget_json() const
    {
        char *json = nullptr;
        detail::check("binance_client_request_budget_json",
                      [&](binance_error **e) { return binance_client_request_budget_json(ptr_.get(), &json, e); });
        return detail::take_string(json);
    }

    /* The C handle (still owned by this object); NULL when moved from. */
    binance_client *handle() const noexcept { return ptr_.get(); }
    explicit operator bool() const noexcept { return ptr_ != nullptr; }

private:
    friend class user_stream;
    std::shared_ptr<binance_client> ptr_;
};

/*
 * One event (binance_event): a user data event as Binance sent it, or a
 * library event (binance.stream_gap, ...): is_library() tells which.
 * Immutable.
 */
class event {
public:
    event() noexcept : ptr_() {}
    /* Takes ownership of an event from binance_user_stream_next. */
    explicit event(binance_event *owned) noexcept : ptr_(owned) {}

    /* Its "e", e.g. "ORDER_TRADE_UPDATE" or "binance.stream_gap". Valid
       while this event lives. */
    std::string_view type() const noexcept { return binance_event_type(ptr_.get()); }
    /* Its "E", ms since the Unix epoch; 0 when absent. */
    std::int64_t time_ms() const noexcept { return binance_event_time_ms(ptr_.get()); }
    /* The JSON exactly as received. Valid while this event lives. */
    std::string_view json() const noexcept { return binance_event_json(ptr_.get()); }
    /* Whether the library made it (binance.stream_gap, ...), as the library
       recorded it: a server event is never one, whatever its type says. */
    bool is_library() const noexcept { return binance_event_is_library(ptr_.get()) != 0; }

    /* The value at an RFC 6901 JSON pointer, e.g. "/o/X": strings unquoted,
       other values as JSON text. Throws binance::error
       (BINANCE_INVALID_ARGUMENT) when there is no such value. */
    std::string get(const std::string &json_pointer) const
    {
        static const char fn[] = "binance_event_get";
        char *value = nullptr;
        detail::check(fn, [&](binance_error **e) {
            return binance_event_get(ptr_.get(), detail::c_str(json_pointer, fn, "json_pointer"), &value, e);
        });
        return detail::take_string(value);
    }

    /* The C handle (still owned by this object); NULL when empty. */
    const binance_event *handle() const noexcept { return ptr_.get(); }
    /* Gives up ownership: free the result with binance_event_free. */
    binance_event *release() noexcept { return ptr_.release(); }
    explicit operator bool() const noexcept { return ptr_ != nullptr; }

private:
    std::unique_ptr<binance_event, detail::event_free> ptr_;
};

namespace detail {

/*
 * An open stream and the readers inside it. close() marks the stream
 * closed, wakes every reader at once with binance_user_stream_shutdown,
 * waits for the readers to leave the library (counted under a mutex), and
 * only then frees the C stream with binance_user_stream_close, whose
 * contract forbids any call that begins after it.
 */
class stream_state {
public:
    stream_state(std::shared_ptr<binance_client> client, binance_user_stream *raw) noexcept
        : client_(std::move(client)), raw_(raw), mutex_(), left_cv_()
    {
    }
    stream_state(const stream_state &) = delete;
    stream_state &operator=(const stream_state &) = delete;
    ~stream_state() { close(); }

    /* Waits up to `timeout` for one event: BINANCE_OK with `out` set,
       BINANCE_TIMEOUT, or BINANCE_STREAM_CLOSED; throws on other errors. */
    binance_status next(std::chrono::milliseconds timeout, event &out)
    {
        binance_user_stream *const raw = enter();
        if (raw == nullptr)
            return BINANCE_STREAM_CLOSED;
        const reader_exit exit{this};
        // One C call per UINT32_MAX ms (49 days): "forever" is a loop.
        constexpr std::chrono::milliseconds longest{UINT32_MAX};
        auto left = std::max(timeout, std::chrono::milliseconds(0));
        for (;;) {
            const auto wait = std::min(left, longest);
            binance_event *ev = nullptr;
            binance_error *err_raw = nullptr;
            const binance_status status =
                binance_user_stream_next(raw, static_cast<std::uint32_t>(wait.count()), &ev, &err_raw);
            const error_ptr err(err_raw);
            out = event(ev);
            if (status == BINANCE_OK || status == BINANCE_STREAM_CLOSED)
                return status;
            if (status != BINANCE_TIMEOUT)
                throw error("binance_user_stream_next", status, err.get());
            if (wait >= left)
                return BINANCE_TIMEOUT;
            left -= wait;
        }
    }

    /* One event if one is queued: BINANCE_OK with `out` set,
       BINANCE_TIMEOUT, or BINANCE_STREAM_CLOSED; throws on other errors. */
    binance_status try_next(event &out)
    {
        binance_user_stream *const raw = enter();
        if (raw == nullptr)
            return BINANCE_STREAM_CLOSED;
        const reader_exit exit{this};
        binance_event *ev = nullptr;
        binance_error *err_raw = nullptr;
        const binance_status status = binance_user_stream_try_next(raw, &ev, &err_raw);
        const error_ptr err(err_raw);
        out = event(ev);
        if (status != BINANCE_OK && status != BINANCE_TIMEOUT && status != BINANCE_STREAM_CLOSED)
            throw error("binance_user_stream_try_next", status, err.get());
        return status;
    }

    std::int64_t fd() const
    {
        const std::lock_guard<std::mutex> lock(mutex_);
        if (closing_)
            throw error("binance_user_stream_fd", BINANCE_STREAM_CLOSED, "the stream is closed");
        std::int64_t fd = -1;
        check("binance_user_stream_fd", [&](binance_error **e) { return binance_user_stream_fd(raw_, &fd, e); });
        return fd;
    }

    stream_health health() const
    {
        const std::lock_guard<std::mutex> lock(mutex_);
        if (closing_)
            throw error("binance_user_stream_health", BINANCE_STREAM_CLOSED, "the stream is closed");
        stream_health h{};
        h.size = sizeof h;
        check("binance_user_stream_health",
              [&](binance_error **e) { return binance_user_stream_health(raw_, &h, e); });
        return h;
    }

    bool is_open() const noexcept
    {
        const std::lock_guard<std::mutex> lock(mutex_);
        return !closing_;
    }

    void close() noexcept
    {
        std::unique_lock<std::mutex> lock(mutex_);
        closing_ = true;
        // Wakes the readers now; it does not block, and a second call (a
        // second closer) is harmless. NULL once closed.
        binance_user_stream_shutdown(raw_);
        left_cv_.wait(lock, [this] { return readers_ == 0; });
        // Under the lock: a second closer waits here, then finds nothing.
        binance_user_stream_close(raw_);
        raw_ = nullptr;
        client_.reset();
    }

private:
    /* Counts a reader in and returns the C stream; NULL once closing. */
    binance_user_stream *enter()
    {
        const std::lock_guard<std::mutex> lock(mutex_);
        if (closing_)
            return nullptr;
        ++readers_;
        return raw_;
    }

    /* Leaves the reader count however next() returns. Notified under the
       lock: once a closer sees no reader, none touches this object again. */
    struct reader_exit {
        stream_state *state;
        ~reader_exit()
        {
            const std::lock_guard<std::mutex> lock(state->mutex_);
            --state->readers_;
            state->left_cv_.notify_all();
        }
    };

    std::shared_ptr<binance_client> client_;  // the C client outlives the C stream
    binance_user_stream *raw_;
    mutable std::mutex mutex_;
    std::condition_variable left_cv_;
    int readers_ = 0;
    bool closing_ = false;
};

}  // namespace detail

class event_range;

/*
 * An open user data stream (binance_user_stream): the account's events in
 * order, with the listenKey kept alive and the connection replaced for you.
 * Closed (not stopped: the listenKey stays) by close() or the destructor.
 */
class user_stream {
public:
    /* Opens the account's stream: obtains the listenKey and connects.
       Blocks up to the connect plus the request timeout. */
    explicit user_stream(client &c) : state_()
    {
        binance_user_stream *raw = nullptr;
        detail::check("binance_user_stream_open",
                      [&](binance_error **e) { return binance_user_stream_open(c.ptr_.get(), &raw, e); });
        try {
            state_ = std::make_unique<detail::stream_state>(c.ptr_, raw);
        } catch (...) {
            binance_user_stream_close(raw);
            throw;
        }
    }

    user_stream(user_stream &&) noexcept = default;
    /* Closes the stream this one held, then takes `other`'s. */
    user_stream &operator=(user_stream &&) noexcept = default;
    user_stream(const user_stream &) = delete;
    user_stream &operator=(const user_stream &) = delete;
    ~user_stream() = default;

    /* The next event, or std::nullopt when none arrived within `timeout`
       (0 polls). Throws binance::error with BINANCE_STREAM_CLOSED once the
       stream is closed. */
    std::optional<event> next(std::chrono::milliseconds timeout)
    {
        event ev;
        switch (state("binance_user_stream_next").next(timeout, ev)) {
        case BINANCE_OK:
            return std::optional<event>(std::move(ev));
        case BINANCE_TIMEOUT:
            return std::nullopt;
        default:
            throw error("binance_user_stream_next", BINANCE_STREAM_CLOSED, "the stream is closed");
        }
    }

    /* The next event if one is queued, or std::nullopt; never waits.
       Throws binance::error with BINANCE_STREAM_CLOSED once the stream is
       closed. For a host event loop: on fd() readable, call until nullopt. */
    std::optional<event> try_next()
    {
        event ev;
        switch (state("binance_user_stream_try_next").try_next(ev)) {
        case BINANCE_OK:
            return std::optional<event>(std::move(ev));
        case BINANCE_TIMEOUT:
            return std::nullopt;
        default:
            throw error("binance_user_stream_try_next", BINANCE_STREAM_CLOSED, "the stream is closed");
        }
    }

    /* A descriptor readable exactly while events are queued, and for good
       once the stream is shut down (binance_user_stream_fd: a file
       descriptor on Unix, a SOCKET on Windows). The stream owns it: do not
       read or close it; it is closed with the stream, so take it out of
       your loop before close(). */
    std::int64_t fd() const { return state("binance_user_stream_fd").fd(); }

    /* The events as an input range, for a range-based for loop. It ends
       when the stream is closed (e.g. by close() on another thread) or, if
       `idle` is given, when no event arrives within `idle`; by default it
       waits for events forever. Other errors throw. */
    event_range events(std::chrono::milliseconds idle = std::chrono::milliseconds::max());

    /* A snapshot of the stream's health. Does not block. */
    stream_health health() const { return state("binance_user_stream_health").health(); }

    /* Closes the stream (its connection and timers are gone when this
       returns; events still queued are discarded). Any thread may call it;
       threads waiting in next() or events() wake at once and see the stream
       closed, and this waits for them to leave the library. The listenKey
       is not stopped: see client::listen_key_stop. */
    void close() noexcept
    {
        if (state_)
            state_->close();
    }

    /* False once closed, or when moved from. */
    bool is_open() const noexcept { return state_ && state_->is_open(); }
    explicit operator bool() const noexcept { return is_open(); }

private:
    friend class event_range;

    detail::stream_state &state(const char *function) const
    {
        if (!state_)
            throw error(function, BINANCE_INVALID_ARGUMENT, "stream: empty (moved-from) user_stream");
        return *state_;
    }

    std::unique_ptr<detail::stream_state> state_;
};

/*
 * The events of a stream as an input range: begin() waits for the first
 * event, ++ for the next; the range ends when the stream is closed or, with
 * an idle timeout, when none comes in time. Iterate it once. The stream
 * must outlive it.
 */
class event_range {
public:
    class iterator {
    public:
        using iterator_category = std::input_iterator_tag;
        using value_type = event;
        using difference_type = std::ptrdiff_t;
        using pointer = const event *;
        using reference = const event &;

        iterator() noexcept = default;
        reference operator*() const noexcept { return range_->current_; }
        pointer operator->() const noexcept { return &range_->current_; }
        iterator &operator++()
        {
            range_->advance();
            return *this;
        }
        void operator++(int) { ++*this; }
        /* Only "at the end or not" is compared, as for input iterators. */
        friend bool operator==(const iterator &a, const iterator &b) noexcept { return a.at_end() == b.at_end(); }
        friend bool operator!=(const iterator &a, const iterator &b) noexcept { return !(a == b); }

    private:
        friend class event_range;
        explicit iterator(event_range *range) noexcept : range_(range) {}
        bool at_end() const noexcept { return range_ == nullptr || !range_->current_; }
        event_range *range_ = nullptr;
    };

    event_range(event_range &&) noexcept = default;
    event_range &operator=(event_range &&) noexcept = default;
    event_range(const event_range &) = delete;
    event_range &operator=(const event_range &) = delete;
    ~event_range() = default;

    /* Waits for the first event. */
    iterator begin()
    {
        advance();
        return iterator(this);
    }
    iterator end() noexcept { return iterator(); }

private:
    friend class user_stream;
    event_range(user_stream &stream, std::chrono::milliseconds idle) noexcept
        : stream_(&stream), idle_(idle), current_()
    {
    }

    void advance()
    {
        current_ = event();
        event ev;
        if (stream_->state("binance_user_stream_next").next(idle_, ev) == BINANCE_OK)
            current_ = std::move(ev);
    }

    user_stream *stream_;
    std::chrono::milliseconds idle_;
    event current_;  // empty at the end
};

inline event_range user_stream::events(std::chrono::milliseconds idle)
{
    return event_range(*this, idle);
}

}  // namespace binance

#endif /* BINANCE_UDS_HPP */
