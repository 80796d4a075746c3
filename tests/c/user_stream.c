/*
 * user_stream.c: the user data stream API from C, against the local
 * exchange: every stream and event function through its statuses, NULL and
 * bad inputs included, library events, the callback form, overflow,
 * close waking a blocked reader, and a poll() loop on the stream's
 * descriptor.
 */
#include "harness.h"

#include <poll.h>
#include <pthread.h>

static const char *stream_url(void)
{
    return test_env("BINANCE_STREAM_URL");
}

static binance_config *stream_config(void)
{
    binance_error *err = NULL;
    binance_config *cfg = test_config();
    CHECK_OK(binance_config_set_stream_endpoint(cfg, stream_url(), &err), err);
    CHECK_OK(binance_config_set_reconnect_backoff_ms(cfg, 50, 500, &err), err);
    return cfg;
}

static void emit(const char *type, int count)
{
    char line[512];
    snprintf(line, sizeof line, "{\"cmd\":\"emit\",\"api_key\":\"%s\",\"type\":\"%s\",\"count\":%d}",
             test_api_key(), type, count);
    CHECK(control(line) == 0);
}

/* The next event within 10 s (NULL, with a failed check, if none). */
static binance_event *next_event(binance_user_stream *s)
{
    binance_event *ev = DUMMY(binance_event);
    binance_error *err = NULL;
    CHECK_STATUS(binance_user_stream_next(s, 10000, &ev, &err), BINANCE_OK, err);
    binance_error_free(err);
    if (ev == DUMMY(binance_event))
        return NULL;
    return ev;
}

/* Reads until an event of `type` (freed), within 15 s; 1 if found. */
static int wait_for(binance_user_stream *s, const char *type, char **out_reason)
{
    int64_t deadline = now_ms() + 15000;
    while (now_ms() < deadline) {
        binance_event *ev = NULL;
        binance_error *err = NULL;
        binance_status st = binance_user_stream_next(s, 200, &ev, &err);
        binance_error_free(err);
        if (st == BINANCE_OK) {
            int hit = strcmp(binance_event_type(ev), type) == 0;
            if (hit && out_reason != NULL)
                CHECK_OK(binance_event_get(ev, "/reason", out_reason, &err), err);
            binance_event_free(ev);
            if (hit)
                return 1;
        }
    }
    fprintf(stderr, "no %s event within 15 s\n", type);
    harness_failures++;
    return 0;
}

static void config_setters(void)
{
    binance_error *err = NULL;
    binance_config *cfg = binance_config_new();

    CHECK_OK(binance_config_set_stream_endpoint(cfg, stream_url(), &err), err);
    CHECK_OK(binance_config_set_stream_endpoint(cfg, BINANCE_STREAM_URL_TESTNET, &err), err);
    CHECK_FAIL(binance_config_set_stream_endpoint(cfg, "https://fstream.binance.com/private", &err),
               BINANCE_INVALID_ARGUMENT, err, "url");
    CHECK_FAIL(binance_config_set_stream_endpoint(cfg, "ws://fstream.binance.com/private", &err),
               BINANCE_INVALID_ARGUMENT, err, "loopback");
    CHECK_FAIL(binance_config_set_stream_endpoint(cfg, NULL, &err), BINANCE_INVALID_ARGUMENT, err, "url");
    CHECK_FAIL(binance_config_set_stream_endpoint(NULL, stream_url(), &err), BINANCE_INVALID_ARGUMENT, err,
               "cfg");
    CHECK_FAIL(binance_config_set_stream_endpoint(cfg, "wss://\xff\xfe/x", &err), BINANCE_INVALID_ARGUMENT,
               err, "UTF-8");

    CHECK_OK(binance_config_set_keepalive_interval_ms(cfg, 1800000, &err), err);
    CHECK_FAIL(binance_config_set_keepalive_interval_ms(cfg, 0, &err), BINANCE_INVALID_ARGUMENT, err, "ms");
    CHECK_FAIL(binance_config_set_keepalive_interval_ms(cfg, 3600000, &err), BINANCE_INVALID_ARGUMENT, err,
               "60 minutes");

    CHECK_OK(binance_config_set_proxy(cfg, "http://user:pass@127.0.0.1:3128", &err), err);
    CHECK_FAIL(binance_config_set_proxy(cfg, "socks5://127.0.0.1:1080", &err), BINANCE_INVALID_ARGUMENT, err,
               "http://");
    CHECK_FAIL(binance_config_set_proxy(cfg, "http://user:SECRETPASS@host", &err), BINANCE_INVALID_ARGUMENT,
               err, "host:port");
    CHECK_FAIL(binance_config_set_proxy(cfg, NULL, &err), BINANCE_INVALID_ARGUMENT, err, "url");

    CHECK_OK(binance_config_set_event_queue_capacity(cfg, 100, &err), err);
    CHECK_FAIL(binance_config_set_event_queue_capacity(cfg, 0, &err), BINANCE_INVALID_ARGUMENT, err,
               "capacity");
    CHECK_OK(binance_config_set_silence_timeout_ms(cfg, 300000, &err), err);
    CHECK_FAIL(binance_config_set_silence_timeout_ms(cfg, 0, &err), BINANCE_INVALID_ARGUMENT, err, "ms");
    CHECK_OK(binance_config_set_stream_rotation_ms(cfg, 82800000, &err), err);
    CHECK_FAIL(binance_config_set_stream_rotation_ms(cfg, 86400000, &err), BINANCE_INVALID_ARGUMENT, err,
               "24 h");
    CHECK_OK(binance_config_set_reconnect_backoff_ms(cfg, 250, 30000, &err), err);
    CHECK_FAIL(binance_config_set_reconnect_backoff_ms(cfg, 0, 100, &err), BINANCE_INVALID_ARGUMENT, err,
               "initial_ms");
    CHECK_FAIL(binance_config_set_reconnect_backoff_ms(cfg, 500, 100, &err), BINANCE_INVALID_ARGUMENT, err,
               "max_ms");
    CHECK_OK(binance_config_set_stream_form(cfg, BINANCE_STREAM_FORM_QUERY, &err), err);
    CHECK_OK(binance_config_set_stream_form(cfg, BINANCE_STREAM_FORM_SUBSCRIBE, &err), err);
    CHECK_FAIL(binance_config_set_stream_form(cfg, 2, &err), BINANCE_INVALID_ARGUMENT, err, "form");
    CHECK_FAIL(binance_config_set_stream_form(cfg, -1, &err), BINANCE_INVALID_ARGUMENT, err,
               "BINANCE_STREAM_FORM_QUERY");
    CHECK_FAIL(binance_config_set_stream_form(NULL, 0, &err), BINANCE_INVALID_ARGUMENT, err, "cfg");
    CHECK_OK(binance_config_set_connection_sharing(cfg, 0, &err), err);
    CHECK_OK(binance_config_set_connection_sharing(cfg, 1, &err), err);
    CHECK_FAIL(binance_config_set_connection_sharing(cfg, 2, &err), BINANCE_INVALID_ARGUMENT, err, "enabled");
    CHECK_OK(binance_config_set_stream_subscriptions_per_connection(cfg, 1024, &err), err);
    CHECK_OK(binance_config_set_stream_subscriptions_per_connection(cfg, 1, &err), err);
    CHECK_FAIL(binance_config_set_stream_subscriptions_per_connection(cfg, 0, &err), BINANCE_INVALID_ARGUMENT,
               err, "n");
    CHECK_FAIL(binance_config_set_stream_subscriptions_per_connection(cfg, 1025, &err),
               BINANCE_INVALID_ARGUMENT, err, "1024");
    /* out_err may be NULL */
    CHECK(binance_config_set_event_queue_capacity(cfg, 0, NULL) == BINANCE_INVALID_ARGUMENT);
    binance_config_free(cfg);
}

static void open_failures(void)
{
    binance_error *err = NULL;
    binance_user_stream *s = DUMMY(binance_user_stream);
    binance_client *client = test_client();
    binance_config *cfg;
    binance_client *refused;

    CHECK_FAIL(binance_user_stream_open(NULL, &s, &err), BINANCE_INVALID_ARGUMENT, err, "client");
    CHECK(s == NULL);
    CHECK_FAIL(binance_user_stream_open(client, NULL, &err), BINANCE_INVALID_ARGUMENT, err, "out_stream");
    s = DUMMY(binance_user_stream);
    CHECK_FAIL(binance_user_stream_open_callback(client, NULL, NULL, &s, &err), BINANCE_INVALID_ARGUMENT, err,
               "callback");
    CHECK(s == NULL);
    binance_client_free(client);

    /* A stream endpoint nobody listens on: the key is obtained, the
     * connection refused. */
    cfg = test_config();
    CHECK_OK(binance_config_set_stream_endpoint(cfg, "wss://127.0.0.1:1/private", &err), err);
    refused = test_client_from(cfg);
    s = DUMMY(binance_user_stream);
    CHECK_FAIL(binance_user_stream_open(refused, &s, &err), BINANCE_CONNECT_FAILED, err, "127.0.0.1:1");
    CHECK(s == NULL);
    binance_client_free(refused);
}

static void events_and_getters(void)
{
    binance_error *err = NULL;
    binance_client *client = test_client_from(stream_config());
    binance_user_stream *s = NULL;
    binance_event *ev = DUMMY(binance_event);
    binance_stream_health h;
    binance_stream_health small;
    char *value = DUMMY(char);
    int i;
    int64_t last_time = 0;

    memset(&h, 0, sizeof h);
    h.size = sizeof h;
    CHECK_OK(binance_user_stream_open(client, &s, &err), err);
    if (s == NULL) {
        binance_client_free(client);
        return;
    }
    CHECK_FAIL(binance_user_stream_next(s, 50, &ev, &err), BINANCE_TIMEOUT, err, "50 ms");
    CHECK(ev == NULL);
    CHECK_FAIL(binance_user_stream_next(NULL, 0, &ev, &err), BINANCE_INVALID_ARGUMENT, err, "stream");
    CHECK_FAIL(binance_user_stream_next(s, 0, NULL, &err), BINANCE_INVALID_ARGUMENT, err, "out_event");

    emit("ORDER_TRADE_UPDATE", 3);
    for (i = 0; i < 3; i++) {
        ev = next_event(s);
        if (ev == NULL)
            break;
        CHECK_STR_EQ(binance_event_type(ev), "ORDER_TRADE_UPDATE");
        CHECK(binance_event_is_library(ev) == 0);
        CHECK(binance_event_time_ms(ev) > last_time);
        last_time = binance_event_time_ms(ev);
        CHECK(strncmp(binance_event_json(ev), "{\"e\":\"ORDER_TRADE_UPDATE\"", 24) == 0);
        CHECK_OK(binance_event_get(ev, "/o/s", &value, &err), err);
        CHECK_STR_EQ(value, "BTCUSDT");
        binance_string_free(value);
        CHECK_OK(binance_event_get(ev, "/o/i", &value, &err), err); /* a number, as text */
        CHECK(value != NULL && strtoll(value, NULL, 10) > 0);
        binance_string_free(value);
        CHECK_OK(binance_event_get(ev, "", &value, &err), err); /* the whole event */
        CHECK_STR_EQ(value, binance_event_json(ev));
        binance_string_free(value);
        value = DUMMY(char);
        CHECK_FAIL(binance_event_get(ev, "/o/nope", &value, &err), BINANCE_INVALID_ARGUMENT, err,
                   "json_pointer");
        CHECK(value == NULL);
        CHECK_FAIL(binance_event_get(ev, "o/X", &value, &err), BINANCE_INVALID_ARGUMENT, err, "RFC 6901");
        CHECK_FAIL(binance_event_get(ev, NULL, &value, &err), BINANCE_INVALID_ARGUMENT, err, "json_pointer");
        CHECK_FAIL(binance_event_get(ev, "\xff", &value, &err), BINANCE_INVALID_ARGUMENT, err, "UTF-8");
        CHECK_FAIL(binance_event_get(NULL, "/e", &value, &err), BINANCE_INVALID_ARGUMENT, err, "ev");
        CHECK_FAIL(binance_event_get(ev, "/e", NULL, &err), BINANCE_INVALID_ARGUMENT, err, "out_value");
        binance_event_free(ev);
    }
    /* Getters on NULL are neutral. */
    CHECK_STR_EQ(binance_event_type(NULL), "");
    CHECK_STR_EQ(binance_event_json(NULL), "");
    CHECK(binance_event_time_ms(NULL) == 0);
    CHECK(binance_event_is_library(NULL) == 0);
    binance_event_free(NULL);

    CHECK_OK(binance_user_stream_health(s, &h, &err), err);
    CHECK(h.connected == 1);
    CHECK(h.events_delivered == 3);
    CHECK(h.events_dropped == 0);
    CHECK(h.last_event_ms > 0);
    CHECK(h.key_age_ms >= 0);
    CHECK(h.last_keepalive_status == -1);
    CHECK_FAIL(binance_user_stream_health(NULL, &h, &err), BINANCE_INVALID_ARGUMENT, err, "stream");
    CHECK_FAIL(binance_user_stream_health(s, NULL, &err), BINANCE_INVALID_ARGUMENT, err, "out_health");
    /* The library fills what fits in the caller's size and no more: an
       older caller's shorter struct is never written past. */
    memset(&small, 0x5a, sizeof small);
    small.size = 0;
    CHECK_FAIL(binance_user_stream_health(s, &small, &err), BINANCE_INVALID_ARGUMENT, err, "size");
    small.size = (uint32_t)offsetof(binance_stream_health, reconnects);
    CHECK_OK(binance_user_stream_health(s, &small, &err), err);
    CHECK(small.connected == 1 && small.last_keepalive_status == -1);
    CHECK(small.size == (uint32_t)offsetof(binance_stream_health, reconnects));
    CHECK(small.events_delivered == 0x5a5a5a5a5a5a5a5aULL);

    /* A drop: the library reconnects and says events may have been lost. */
    CHECK(control("{\"cmd\":\"drop\",\"target\":\"stream\"}") == 0);
    value = NULL;
    if (wait_for(s, "binance.stream_gap", &value))
        CHECK_STR_EQ(value, "disconnected");
    binance_string_free(value);
    emit("TRADE_LITE", 1);
    CHECK(wait_for(s, "TRADE_LITE", NULL));

    /* An expired key: listenKeyExpired is delivered, then the renewal. */
    {
        char line[256];
        snprintf(line, sizeof line, "{\"cmd\":\"expire\",\"api_key\":\"%s\"}", test_api_key());
        CHECK(control(line) == 0);
    }
    CHECK(wait_for(s, "listenKeyExpired", NULL));
    CHECK(wait_for(s, "binance.listen_key_renewed", NULL));
    CHECK_OK(binance_user_stream_health(s, &h, &err), err);
    if (h.key_renewals != 1)
        fprintf(stderr, "key_renewals %llu gaps %llu reconnects %llu\n", (unsigned long long)h.key_renewals,
                (unsigned long long)h.gaps, (unsigned long long)h.reconnects);
    CHECK(h.key_renewals == 1);
    /* Renewed on the same connection (SUBSCRIBE form): only the drop
       reconnected. */
    CHECK(h.reconnects == 1);
    CHECK(h.subscribed == 1);
    CHECK(h.connection_id != 0);
    CHECK(h.connection_streams == 1);

    binance_user_stream_close(s);
    binance_user_stream_close(NULL);
    binance_client_free(client);
}

static void overflow(void)
{
    binance_error *err = NULL;
    binance_config *cfg = stream_config();
    binance_client *client;
    binance_user_stream *s = NULL;
    binance_stream_health h;
    char *dropped = NULL;
    int i, tries;

    memset(&h, 0, sizeof h);
    h.size = sizeof h;
    CHECK_OK(binance_config_set_event_queue_capacity(cfg, 5, &err), err);
    client = test_client_from(cfg);
    CHECK_OK(binance_user_stream_open(client, &s, &err), err);
    if (s == NULL) {
        binance_client_free(client);
        return;
    }
    emit("ORDER_TRADE_UPDATE", 20);
    for (tries = 0; tries < 500; tries++) {
        CHECK_OK(binance_user_stream_health(s, &h, &err), err);
        if (h.events_dropped >= 15)
            break;
        sleep_ms(10);
    }
    CHECK(h.events_dropped == 15);
    CHECK(h.events_queued == 5);
    for (i = 0; i < 5; i++) {
        binance_event *ev = next_event(s);
        CHECK(ev != NULL && strcmp(binance_event_type(ev), "ORDER_TRADE_UPDATE") == 0);
        binance_event_free(ev);
    }
    {
        binance_event *gap = next_event(s);
        CHECK(gap != NULL && strcmp(binance_event_type(gap), "binance.stream_gap") == 0);
        CHECK(binance_event_is_library(gap) == 1);
        if (gap != NULL) {
            CHECK_OK(binance_event_get(gap, "/dropped", &dropped, &err), err);
            CHECK_STR_EQ(dropped, "15");
        }
        binance_event_free(gap);
    }
    binance_string_free(dropped);
    binance_user_stream_close(s);
    binance_client_free(client);
}

struct counter {
    pthread_mutex_t lock;
    int events;
    int64_t last_time;
    int in_order;
};

static void on_event(const binance_event *ev, void *user_data)
{
    struct counter *c = (struct counter *)user_data;
    pthread_mutex_lock(&c->lock);
    if (strcmp(binance_event_type(ev), "ORDER_TRADE_UPDATE") == 0) {
        if (binance_event_time_ms(ev) <= c->last_time)
            c->in_order = 0;
        c->last_time = binance_event_time_ms(ev);
        c->events++;
    }
    pthread_mutex_unlock(&c->lock);
}

static void callback_form(void)
{
    binance_error *err = NULL;
    binance_client *client = test_client_from(stream_config());
    binance_user_stream *s = NULL;
    binance_event *ev = NULL;
    struct counter c;
    int tries, seen = 0;

    pthread_mutex_init(&c.lock, NULL);
    c.events = 0;
    c.last_time = 0;
    c.in_order = 1;
    CHECK_OK(binance_user_stream_open_callback(client, on_event, &c, &s, &err), err);
    if (s != NULL) {
        int64_t fd = 7;
        CHECK_FAIL(binance_user_stream_next(s, 0, &ev, &err), BINANCE_INVALID_ARGUMENT, err, "callback");
        CHECK_FAIL(binance_user_stream_try_next(s, &ev, &err), BINANCE_INVALID_ARGUMENT, err, "callback");
        CHECK_FAIL(binance_user_stream_fd(s, &fd, &err), BINANCE_INVALID_ARGUMENT, err, "callback");
        CHECK(fd == -1);
        emit("ORDER_TRADE_UPDATE", 10);
        for (tries = 0; tries < 500 && seen < 10; tries++) {
            pthread_mutex_lock(&c.lock);
            seen = c.events;
            pthread_mutex_unlock(&c.lock);
            sleep_ms(10);
        }
        CHECK(seen == 10);
        CHECK(c.in_order);
    }
    binance_user_stream_close(s);
    pthread_mutex_destroy(&c.lock);
    binance_client_free(client);
}

/* A reader thread: announces its thread id, then blocks in next (30 s)
 * until the stream is shut down or closed. */
struct reader {
    binance_user_stream *stream;
    pthread_t thread;
    pthread_mutex_t lock;
    long tid; /* 0 until the thread announced itself */
};

static void *blocked_next(void *arg)
{
    struct reader *r = (struct reader *)arg;
    binance_event *ev = DUMMY(binance_event);
    binance_error *err = NULL;
    binance_status st;
    pthread_mutex_lock(&r->lock);
    r->tid = blocked_self_id();
    pthread_mutex_unlock(&r->lock);
    st = binance_user_stream_next(r->stream, 30000, &ev, &err);
    CHECK(st == BINANCE_STREAM_CLOSED);
    CHECK(ev == NULL);
    CHECK(binance_error_status(err) == BINANCE_STREAM_CLOSED);
    binance_error_free(err);
    return NULL;
}

/* Starts a reader and returns once it is blocked inside next (the kernel
 * sees it asleep in the call: see blocked.h): 0 then, -1 if it never got
 * there. Only then may another thread close the stream under it. */
static int start_blocked_reader(struct reader *r, binance_user_stream *s)
{
    int64_t deadline = now_ms() + 60000;
    long tid = 0;
    r->stream = s;
    r->tid = 0;
    pthread_mutex_init(&r->lock, NULL);
    if (pthread_create(&r->thread, NULL, blocked_next, r) != 0) {
        fprintf(stderr, "pthread_create failed\n");
        exit(2);
    }
    while (tid == 0 && now_ms() < deadline) {
        pthread_mutex_lock(&r->lock);
        tid = r->tid;
        pthread_mutex_unlock(&r->lock);
        if (tid == 0)
            sleep_ms(1);
    }
    return wait_blocked(tid, 60000);
}

static void end_reader(struct reader *r)
{
    pthread_join(r->thread, NULL);
    pthread_mutex_destroy(&r->lock);
}

/* close while a reader is blocked in next (which the contract allows) wakes
 * it with BINANCE_STREAM_CLOSED. The reader is first seen blocked: closing
 * a stream that another thread has yet to call is undefined behaviour. */
static void close_wakes_a_blocked_reader(void)
{
    binance_error *err = NULL;
    binance_client *client = test_client_from(stream_config());
    binance_user_stream *s = NULL;
    struct reader r;

    CHECK_OK(binance_user_stream_open(client, &s, &err), err);
    if (s != NULL) {
        int blocked = start_blocked_reader(&r, s);
        CHECK(blocked == 0);
        if (blocked == 0) {
            binance_user_stream_close(s);
            /* The reader woke with BINANCE_STREAM_CLOSED (checked in the
               thread) instead of waiting out its 30 s. */
            end_reader(&r);
        } else {
            /* Not known to be inside next: the documented way out. */
            binance_user_stream_shutdown(s);
            end_reader(&r);
            binance_user_stream_close(s);
        }
    }
    /* The key is the account's: closing the stream did not stop it. */
    CHECK_OK(binance_listen_key_keepalive(client, NULL, &err), err);
    binance_client_free(client);
}

/* The documented way to stop reader threads: shutdown wakes them all,
   they are joined, then close frees the stream. */
static void shutdown_then_join_then_close(void)
{
    binance_error *err = NULL;
    binance_client *client = test_client_from(stream_config());
    binance_user_stream *s = NULL;
    binance_event *ev = DUMMY(binance_event);
    struct reader r[3];
    int i;

    CHECK_OK(binance_user_stream_open(client, &s, &err), err);
    if (s != NULL) {
        /* Each reader is blocked in next before the shutdown, so each is
           woken by it rather than refused on the way in. */
        for (i = 0; i < 3; i++)
            CHECK(start_blocked_reader(&r[i], s) == 0);
        binance_user_stream_shutdown(s);
        for (i = 0; i < 3; i++)
            end_reader(&r[i]);
        binance_user_stream_shutdown(s); /* twice is fine */
        CHECK_FAIL(binance_user_stream_next(s, 1000, &ev, &err), BINANCE_STREAM_CLOSED, err, "closed");
        CHECK(ev == NULL);
        binance_user_stream_close(s);
    }
    binance_user_stream_shutdown(NULL);
    binance_client_free(client);
}

/* An open that does not wait for its subscription returns a stream that
 * says when it is live, before any event; bad values are refused. */
static void open_without_waiting(void)
{
    binance_error *err = NULL;
    binance_config *cfg = stream_config();
    binance_client *client;
    binance_user_stream *s = NULL;

    CHECK_FAIL(binance_config_set_open_waits_for_subscription(cfg, 2, &err), BINANCE_INVALID_ARGUMENT, err,
               "wait");
    CHECK_FAIL(binance_config_set_open_waits_for_subscription(NULL, 0, &err), BINANCE_INVALID_ARGUMENT, err,
               "cfg");
    CHECK_OK(binance_config_set_open_waits_for_subscription(cfg, 0, &err), err);
    client = test_client_from(cfg);
    CHECK_OK(binance_user_stream_open(client, &s, &err), err);
    if (s != NULL) {
        binance_event *ev = next_event(s);
        CHECK(ev != NULL && strcmp(binance_event_type(ev), "binance.stream_subscribed") == 0);
        CHECK(ev != NULL && binance_event_is_library(ev) == 1);
        binance_event_free(ev);
        emit("ORDER_TRADE_UPDATE", 1);
        ev = next_event(s);
        CHECK(ev != NULL && strcmp(binance_event_type(ev), "ORDER_TRADE_UPDATE") == 0);
        binance_event_free(ev);
    }
    binance_user_stream_close(s);
    binance_client_free(client);
}

/* 1 if `fd` is readable within `ms`. */
static int readable(int64_t fd, int ms)
{
    struct pollfd p;
    p.fd = (int)fd;
    p.events = POLLIN;
    p.revents = 0;
    return poll(&p, 1, ms) == 1 && (p.revents & POLLIN) != 0;
}

/* Takes every queued event with try_next into `out` (at most `max`);
 * returns how many. Ends on BINANCE_TIMEOUT, checking that it left NULL. */
static int take_all(binance_user_stream *s, binance_event **out, int max)
{
    int n = 0;
    for (;;) {
        binance_event *ev = DUMMY(binance_event);
        binance_error *err = NULL;
        binance_status st = binance_user_stream_try_next(s, &ev, &err);
        if (st == BINANCE_TIMEOUT) {
            CHECK(ev == NULL);
            binance_error_free(err);
            return n;
        }
        CHECK_STATUS(st, BINANCE_OK, err);
        binance_error_free(err);
        if (st != BINANCE_OK || n == max) {
            if (st == BINANCE_OK)
                binance_event_free(ev);
            CHECK(n < max);
            return n;
        }
        out[n++] = ev;
    }
}

/* A poll() loop: the descriptor is readable while events are queued and
 * not once try_next took them; every event arrives, in order; a gap from
 * overflow arrives the same way; shutting down makes it readable with
 * try_next saying BINANCE_STREAM_CLOSED. */
static void poll_loop(void)
{
    enum { TOTAL = 100, MAX = 128 };
    binance_error *err = NULL;
    binance_config *cfg = stream_config();
    binance_client *client;
    binance_user_stream *s = NULL;
    binance_event *got[MAX];
    binance_event *ev = NULL;
    binance_stream_health h;
    int64_t fd = -1, again = -1, last = 0;
    char *dropped = NULL;
    int n = 0, i, in_order = 1, tries;

    CHECK_OK(binance_config_set_event_queue_capacity(cfg, TOTAL + 10, &err), err);
    client = test_client_from(cfg);
    CHECK_OK(binance_user_stream_open(client, &s, &err), err);
    if (s == NULL) {
        binance_client_free(client);
        return;
    }
    CHECK_FAIL(binance_user_stream_fd(NULL, &fd, &err), BINANCE_INVALID_ARGUMENT, err, "stream");
    CHECK_FAIL(binance_user_stream_fd(s, NULL, &err), BINANCE_INVALID_ARGUMENT, err, "out_fd");
    CHECK_FAIL(binance_user_stream_try_next(NULL, &ev, &err), BINANCE_INVALID_ARGUMENT, err, "stream");
    CHECK_FAIL(binance_user_stream_try_next(s, NULL, &err), BINANCE_INVALID_ARGUMENT, err, "out_event");
    CHECK_OK(binance_user_stream_fd(s, &fd, &err), err);
    CHECK_OK(binance_user_stream_fd(s, &again, &err), err);
    CHECK(fd >= 0 && again == fd);
    n = take_all(s, got, TOTAL);
    for (i = 0; i < n; i++)
        binance_event_free(got[i]);
    CHECK(!readable(fd, 0));

    emit("ORDER_TRADE_UPDATE", TOTAL);
    n = 0;
    while (n < TOTAL && readable(fd, 10000))
        n += take_all(s, got + n, TOTAL - n);
    CHECK(n == TOTAL);
    for (i = 0; i < n; i++) {
        if (strcmp(binance_event_type(got[i]), "ORDER_TRADE_UPDATE") != 0 ||
            binance_event_time_ms(got[i]) <= last)
            in_order = 0;
        last = binance_event_time_ms(got[i]);
        binance_event_free(got[i]);
    }
    CHECK(in_order);
    CHECK(!readable(fd, 0));

    /* Overflow (capacity TOTAL + 10): the gap comes through it too. */
    memset(&h, 0, sizeof h);
    h.size = sizeof h;
    emit("ORDER_TRADE_UPDATE", TOTAL + 30);
    for (tries = 0; tries < 500; tries++) {
        CHECK_OK(binance_user_stream_health(s, &h, &err), err);
        if (h.events_dropped >= 20)
            break;
        sleep_ms(10);
    }
    CHECK(h.events_dropped == 20);
    CHECK(readable(fd, 0));
    n = take_all(s, got, MAX);
    CHECK(n == TOTAL + 11);
    if (n == TOTAL + 11) {
        CHECK_STR_EQ(binance_event_type(got[n - 1]), "binance.stream_gap");
        CHECK_OK(binance_event_get(got[n - 1], "/dropped", &dropped, &err), err);
        CHECK_STR_EQ(dropped, "20");
    }
    for (i = 0; i < n; i++)
        binance_event_free(got[i]);
    CHECK(!readable(fd, 0));

    binance_user_stream_shutdown(s);
    CHECK(readable(fd, 0));
    CHECK_FAIL(binance_user_stream_try_next(s, &ev, &err), BINANCE_STREAM_CLOSED, err, "closed");
    CHECK(readable(fd, 0));
    binance_string_free(dropped);
    binance_user_stream_close(s);
    binance_client_free(client);
}

int main(void)
{
    config_setters();
    open_failures();
    events_and_getters();
    overflow();
    callback_form();
    close_wakes_a_blocked_reader();
    shutdown_then_join_then_close();
    poll_loop();
    open_without_waiting();
    return harness_finish("user_stream");
}
