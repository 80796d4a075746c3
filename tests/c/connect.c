/*
 * connect.c: what can go wrong before a request is sent.
 * BINANCE_CONNECT_FAILED (nothing listening; upgrade refused with 503),
 * BINANCE_TIMEOUT (a port that accepts TCP but never speaks, with and
 * without TLS), BINANCE_TLS_FAILED (the exchange's CA not trusted), both
 * names in the exchange's certificate (localhost, 127.0.0.1), and freeing a
 * client while another thread is still connecting.
 */
#include "harness.h"

#include <pthread.h>

/* The exchange's URL with its host replaced by `host`. */
static void exchange_url_with_host(const char *host, char *out, size_t size)
{
    const char *url = test_env("BINANCE_WS_API_URL"); /* wss://127.0.0.1:PORT/ws-fapi/v1 */
    const char *after_scheme = strstr(url, "://");
    const char *port = after_scheme ? strchr(after_scheme + 3, ':') : NULL;
    if (port == NULL) {
        fprintf(stderr, "BINANCE_WS_API_URL has no port: %s\n", url);
        exit(2);
    }
    snprintf(out, size, "wss://%s%s", host, port);
}

/* One start on a fresh client for `url`: checks the status, and that the
 * failure carries no server data. */
static void check_start(const char *url, int with_ca, uint32_t connect_ms, binance_status expected,
                        const char *needle)
{
    binance_client *client = test_client_from(test_config_for(url, with_ca, connect_ms, 5000));
    binance_error *err = NULL;
    char *key = DUMMY(char);

    printf("start on %s (%s CA) -> %s\n", url, with_ca ? "with" : "without", binance_status_str(expected));
    CHECK_STATUS(binance_listen_key_start(client, &key, &err), expected, err);
    if (expected == BINANCE_OK) {
        CHECK(is_listen_key(key));
    } else {
        CHECK(key == NULL);
        CHECK(binance_error_api_code(err) == 0);
        CHECK(binance_error_http_status(err) == 0);
        CHECK_MESSAGE(err, needle);
    }
    binance_error_free(err);
    binance_string_free(key);
    binance_client_free(client);
}

static void test_connect_failed(void)
{
    char url[128];
    int port = closed_port();

    snprintf(url, sizeof url, "wss://127.0.0.1:%d/ws-fapi/v1", port);
    check_start(url, 1, 10000, BINANCE_CONNECT_FAILED, "127.0.0.1");
    snprintf(url, sizeof url, "ws://127.0.0.1:%d/ws-fapi/v1", port);
    check_start(url, 0, 10000, BINANCE_CONNECT_FAILED, "127.0.0.1");
}

/* The exchange refuses the upgrade (HTTP 503); once it accepts again, the
 * same client connects. */
static void test_upgrade_refused(void)
{
    binance_client *client = test_client();
    binance_error *err = NULL;
    char *key = DUMMY(char);

    CHECK(control("{\"cmd\":\"refuse\",\"target\":\"api\",\"enabled\":true}") == 0);
    CHECK_FAIL(binance_listen_key_start(client, &key, &err), BINANCE_CONNECT_FAILED, err, "503");
    CHECK(key == NULL);
    CHECK(exchange_stat("refused_total") >= 1);
    CHECK(control("{\"cmd\":\"refuse\",\"target\":\"api\",\"enabled\":false}") == 0);
    CHECK_OK(binance_listen_key_start(client, &key, &err), err);
    CHECK(is_listen_key(key));
    binance_string_free(key);
    binance_client_free(client);
}

/* TCP connects (the listen backlog) but nothing answers the TLS hello or
 * the upgrade request: the connect timeout ends the wait. */
static void test_connect_timeout(void)
{
    char url[128];
    int port;
    int fd = silent_listener(&port);

    snprintf(url, sizeof url, "wss://127.0.0.1:%d/ws-fapi/v1", port);
    check_start(url, 1, 300, BINANCE_TIMEOUT, NULL);
    snprintf(url, sizeof url, "ws://127.0.0.1:%d/ws-fapi/v1", port);
    check_start(url, 0, 300, BINANCE_TIMEOUT, NULL);
    close(fd);
}

static void test_tls(void)
{
    char url[256];

    /* Without the exchange's CA its certificate is not trusted. */
    check_start(test_env("BINANCE_WS_API_URL"), 0, 10000, BINANCE_TLS_FAILED, NULL);
    exchange_url_with_host("localhost", url, sizeof url);
    check_start(url, 0, 10000, BINANCE_TLS_FAILED, NULL);

    /* With it, both names the certificate carries verify. */
    exchange_url_with_host("127.0.0.1", url, sizeof url);
    check_start(url, 1, 10000, BINANCE_OK, NULL);
    exchange_url_with_host("localhost", url, sizeof url);
    check_start(url, 1, 10000, BINANCE_OK, NULL);
}

struct call {
    binance_client *client;
    binance_status status;
    binance_error *err;
};

static void *start_thread(void *arg)
{
    struct call *c = (struct call *)arg;
    char *key = NULL;
    c->status = binance_listen_key_start(c->client, &key, &c->err);
    binance_string_free(key);
    return NULL;
}

/* binance_client_free while another thread is still connecting (to a port
 * that accepts and never answers, with a long connect timeout): that call
 * fails at once with BINANCE_CONNECTION_CLOSED instead of waiting out the
 * timeout. The free comes only once the listener has accepted the call's
 * connection, so the other thread is known to be inside the call (starting
 * a call once the free has begun is undefined behaviour). */
static void test_free_while_connecting(void)
{
    char url[128];
    int port;
    int fd = silent_listener(&port), accepted;
    binance_client *client;
    struct call c;
    pthread_t thread;

    snprintf(url, sizeof url, "wss://127.0.0.1:%d/ws-fapi/v1", port);
    client = test_client_from(test_config_for(url, 1, 60000, 10000));
    c.client = client;
    c.status = BINANCE_OK;
    c.err = NULL;
    if (pthread_create(&thread, NULL, start_thread, &c) != 0) {
        fprintf(stderr, "pthread_create failed\n");
        exit(2);
    }
    accepted = accept_within(fd, 60000);
    CHECK(accepted >= 0);
    binance_client_free(client);
    pthread_join(thread, NULL);
    /* Had the free not cut it short, the call would have waited out its
       60 s connect timeout and failed with BINANCE_TIMEOUT. */
    check_status_(__FILE__, __LINE__, "start while the client is freed", c.status, BINANCE_CONNECTION_CLOSED,
                  c.err);
    binance_error_free(c.err);
    if (accepted >= 0)
        close(accepted);
    close(fd);
}

int main(void)
{
    test_connect_failed();
    test_upgrade_refused();
    test_connect_timeout();
    test_tls();
    test_free_while_connecting();
    return harness_finish("connect");
}
