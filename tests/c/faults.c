/*
 * faults.c: what the server can do wrong once connected, and that the
 * client recovers: BINANCE_TIMEOUT (no answer; half a frame),
 * BINANCE_CONNECTION_CLOSED (drop, close frame, reset while a request
 * waits; freeing the client while a request is in flight),
 * BINANCE_PROTOCOL_ERROR (not JSON, failing every pending request; no
 * listenKey; over 4 MiB), a revoked session (BINANCE_API_ERROR -2015), and
 * noise that must change nothing (duplicates, stray messages, pings). After
 * each, the next call on the same client succeeds.
 */
#include "harness.h"

#include <pthread.h>

/* A call on another thread: the result it got. */
struct call {
    binance_client *client;
    binance_status status;
    binance_error *err;
};

static void *keepalive_thread(void *arg)
{
    struct call *c = (struct call *)arg;
    c->status = binance_listen_key_keepalive(c->client, NULL, &c->err);
    return NULL;
}

/* Starts a keepalive on another thread and waits until the exchange holds
 * it (its answer delayed). */
static int start_waiting_keepalive(pthread_t *thread, struct call *c)
{
    long long seen = exchange_stat("userDataStream.ping");
    CHECK(control("{\"cmd\":\"delay\",\"ms\":30000,\"count\":1}") == 0);
    if (pthread_create(thread, NULL, keepalive_thread, c) != 0) {
        fprintf(stderr, "pthread_create failed\n");
        exit(2);
    }
    return wait_for_request("userDataStream.ping", seen);
}

static void test_timeout_then_recovers(void)
{
    binance_client *client = test_client_from(test_config_for(test_env("BINANCE_WS_API_URL"), 1, 10000, 1000));
    binance_error *err = NULL;
    char *key = NULL, *after = DUMMY(char);

    CHECK_OK(binance_listen_key_start(client, &key, &err), err);
    CHECK(control("{\"cmd\":\"no_answer\",\"count\":1}") == 0);
    CHECK_STATUS(binance_listen_key_keepalive(client, &after, &err), BINANCE_TIMEOUT, err);
    CHECK(after == NULL);
    CHECK(binance_error_api_code(err) == 0);
    CHECK(binance_error_http_status(err) == 0);
    binance_error_free(err);
    err = NULL;

    CHECK_OK(binance_listen_key_keepalive(client, &after, &err), err);
    CHECK_STR_EQ(after, key);
    binance_string_free(after);
    binance_string_free(key);
    binance_client_free(client);
}

/* `command` ends the connection while a keepalive waits for its delayed
 * answer; the keepalive fails at once, and the next call reconnects. */
static void check_closed_while_waiting(const char *command)
{
    binance_client *client = test_client();
    binance_error *err = NULL;
    char *key = NULL, *after = NULL;
    struct call c;
    pthread_t thread;
    long long connections;

    printf("closing with %s\n", command);
    CHECK_OK(binance_listen_key_start(client, &key, &err), err);
    connections = exchange_stat("api_connections_total");

    c.client = client;
    c.status = BINANCE_OK;
    c.err = NULL;
    if (start_waiting_keepalive(&thread, &c) == 0)
        CHECK(control(command) == 0);
    pthread_join(thread, NULL);
    printf("  -> %s: %s\n", binance_status_str(c.status), binance_error_message(c.err));
    check_status_(__FILE__, __LINE__, command, c.status, BINANCE_CONNECTION_CLOSED, c.err);
    binance_error_free(c.err);
    CHECK(control("{\"cmd\":\"reset\"}") == 0);

    /* Transparent reconnect: same client, same account, same key. */
    CHECK_OK(binance_listen_key_keepalive(client, &after, &err), err);
    CHECK_STR_EQ(after, key);
    CHECK(exchange_stat("api_connections_total") == connections + 1);

    binance_string_free(after);
    binance_string_free(key);
    binance_client_free(client);
}

static void test_connection_closed(void)
{
    check_closed_while_waiting("{\"cmd\":\"drop\",\"target\":\"api\"}");
    check_closed_while_waiting("{\"cmd\":\"close\",\"target\":\"api\"}");
    check_closed_while_waiting("{\"cmd\":\"close\",\"target\":\"all\",\"code\":1000,\"reason\":\"bye\"}");
}

/* The server resets the TCP connection on receiving the request. */
static void test_reset_mid_request(void)
{
    binance_client *client = test_client();
    binance_error *err = NULL;
    char *key = NULL, *after = NULL;

    CHECK_OK(binance_listen_key_start(client, &key, &err), err);
    CHECK(control("{\"cmd\":\"reset_mid_request\",\"count\":1}") == 0);
    CHECK_FAIL(binance_listen_key_keepalive(client, &after, &err), BINANCE_CONNECTION_CLOSED, err, NULL);
    CHECK(after == NULL);
    CHECK_OK(binance_listen_key_keepalive(client, &after, &err), err);
    CHECK_STR_EQ(after, key);
    binance_string_free(after);
    binance_string_free(key);
    binance_client_free(client);
}

/* binance_client_free while another thread's request waits: that request
 * returns BINANCE_CONNECTION_CLOSED and free returns after it. */
static void test_free_while_in_flight(void)
{
    binance_client *client = test_client();
    binance_error *err = NULL;
    char *key = NULL;
    struct call c;
    pthread_t thread;

    CHECK_OK(binance_listen_key_start(client, &key, &err), err);
    c.client = client;
    c.status = BINANCE_OK;
    c.err = NULL;
    start_waiting_keepalive(&thread, &c);
    binance_client_free(client);
    pthread_join(thread, NULL);
    check_status_(__FILE__, __LINE__, "keepalive during binance_client_free", c.status, BINANCE_CONNECTION_CLOSED,
                  c.err);
    binance_error_free(c.err);
    CHECK(control("{\"cmd\":\"reset\"}") == 0);
    binance_string_free(key);
}

/* A fault from `command` gives BINANCE_PROTOCOL_ERROR (or, where the
 * contract allows, `alternative`); the connection is replaced and the next
 * call succeeds. */
static void check_protocol_fault(const char *command, binance_status alternative, const char *needle)
{
    binance_client *client = test_client();
    binance_error *err = NULL;
    char *key = NULL, *after = DUMMY(char);
    long long connections;
    binance_status st;

    printf("protocol fault %.60s\n", command);
    CHECK_OK(binance_listen_key_start(client, &key, &err), err);
    connections = exchange_stat("api_connections_total");
    CHECK(control(command) == 0);
    st = binance_listen_key_keepalive(client, &after, &err);
    printf("  -> %s: %s\n", binance_status_str(st), binance_error_message(err));
    check_status_(__FILE__, __LINE__, command, st, st == alternative ? alternative : BINANCE_PROTOCOL_ERROR, err);
    CHECK(after == NULL);
    CHECK_MESSAGE(err, needle);
    binance_error_free(err);
    err = NULL;

    CHECK_OK(binance_listen_key_keepalive(client, &after, &err), err);
    CHECK_STR_EQ(after, key);
    CHECK(exchange_stat("api_connections_total") == connections + 1);
    binance_string_free(after);
    binance_string_free(key);
    binance_client_free(client);
}

static void test_protocol_errors(void)
{
    check_protocol_fault("{\"cmd\":\"raw\",\"text\":\"this is not JSON\",\"count\":1}", BINANCE_PROTOCOL_ERROR, NULL);
    check_protocol_fault("{\"cmd\":\"raw\",\"text\":\"{\\\"id\\\":{id},\\\"status\\\":200,\\\"result\\\":{}}\","
                         "\"count\":1,\"method\":\"userDataStream.ping\"}",
                         BINANCE_PROTOCOL_ERROR, "listenKey");
    check_protocol_fault("{\"cmd\":\"raw\",\"text\":\"{\\\"id\\\":{id},\\\"status\\\":200,"
                         "\\\"result\\\":{\\\"listenKey\\\":\\\"../../x\\\"}}\",\"count\":1}",
                         BINANCE_PROTOCOL_ERROR, "listenKey");
    check_protocol_fault("{\"cmd\":\"oversize\",\"bytes\":5242880,\"count\":1}", BINANCE_CONNECTION_CLOSED, NULL);
}

/* A message that is not JSON fails every request pending on the connection,
 * not only the one it may have been meant for. */
static void test_not_json_fails_every_pending(void)
{
    binance_client *client = test_client();
    binance_error *err = NULL;
    char *key = NULL;
    struct call c;
    pthread_t thread;

    CHECK_OK(binance_listen_key_start(client, &key, &err), err);
    c.client = client;
    c.status = BINANCE_OK;
    c.err = NULL;
    if (start_waiting_keepalive(&thread, &c) == 0)
        CHECK(control("{\"cmd\":\"raw\",\"text\":\"<html>502 Bad Gateway</html>\",\"count\":1}") == 0);
    CHECK_FAIL(binance_listen_key_keepalive(client, NULL, &err), BINANCE_PROTOCOL_ERROR, err, NULL);
    pthread_join(thread, NULL);
    check_status_(__FILE__, __LINE__, "the other pending keepalive", c.status, BINANCE_PROTOCOL_ERROR, c.err);
    binance_error_free(c.err);
    CHECK(control("{\"cmd\":\"reset\"}") == 0);
    CHECK_OK(binance_listen_key_keepalive(client, NULL, &err), err);
    binance_string_free(key);
    binance_client_free(client);
}

/* Duplicated answers, answers to ids nobody sent and unsolicited messages
 * are skipped: every call gets its own answer on the same connection. */
static void test_noise_is_ignored(void)
{
    binance_client *client = test_client();
    binance_error *err = NULL;
    char *key = NULL, *after = NULL;
    long long connections;
    int i;

    CHECK_OK(binance_listen_key_start(client, &key, &err), err);
    connections = exchange_stat("api_connections_total");
    CHECK(control("{\"cmd\":\"duplicate\",\"count\":3}") == 0);
    CHECK(control("{\"cmd\":\"spam\",\"count\":5}") == 0);
    for (i = 0; i < 6; i++) {
        CHECK_OK(binance_listen_key_keepalive(client, &after, &err), err);
        CHECK_STR_EQ(after, key);
        binance_string_free(after);
        after = NULL;
    }
    CHECK(control("{\"cmd\":\"reset\"}") == 0);
    CHECK(exchange_stat("api_connections_total") == connections);
    binance_string_free(key);
    binance_client_free(client);
}

/* Server pings are answered with pongs echoing their payload, on an idle
 * connection and on one the server pings before anything else. */
static void test_pings_answered(void)
{
    binance_client *client = test_client();
    binance_client *second = NULL;
    binance_error *err = NULL;
    char *key = NULL;
    int64_t deadline;

    CHECK_OK(binance_listen_key_start(client, &key, &err), err);
    CHECK(control("{\"cmd\":\"ping_flood\",\"count\":20}") == 0);
    /* No request in between: the client answers on its own. */
    deadline = now_ms() + 30000;
    while (exchange_stat("pongs_ok") < 20 && now_ms() < deadline)
        sleep_ms(10);
    CHECK(exchange_stat("pongs_ok") >= 20);
    CHECK(exchange_stat("pongs_bad") == 0);

    CHECK(control("{\"cmd\":\"ping_first\",\"enabled\":true}") == 0);
    second = test_client();
    binance_string_free(key);
    key = NULL;
    CHECK_OK(binance_listen_key_start(second, &key, &err), err);
    CHECK(is_listen_key(key));
    CHECK(control("{\"cmd\":\"reset\"}") == 0);
    CHECK(exchange_stat("pongs_bad") == 0);

    binance_string_free(key);
    binance_client_free(second);
    binance_client_free(client);
}

/* Half a frame, then silence with the socket open: the request times out
 * and the next one gets a new connection. */
static void test_cut_frame(void)
{
    binance_client *client = test_client_from(test_config_for(test_env("BINANCE_WS_API_URL"), 1, 10000, 1000));
    binance_error *err = NULL;
    char *key = NULL, *after = NULL;

    CHECK_OK(binance_listen_key_start(client, &key, &err), err);
    CHECK(control("{\"cmd\":\"cut\",\"count\":1}") == 0);
    CHECK_FAIL(binance_listen_key_keepalive(client, &after, &err), BINANCE_TIMEOUT, err, NULL);
    CHECK_OK(binance_listen_key_keepalive(client, &after, &err), err);
    CHECK_STR_EQ(after, key);
    binance_string_free(after);
    binance_string_free(key);
    binance_client_free(client);
}

/* The server revokes the session (an id-less 401 -2015, then close): the
 * request waiting on it fails with that API error. */
static void test_revoked_session(void)
{
    binance_client *client = test_client();
    binance_error *err = NULL;
    char *key = NULL;
    struct call c;
    pthread_t thread;
    char command[256];

    CHECK_OK(binance_listen_key_start(client, &key, &err), err);
    c.client = client;
    c.status = BINANCE_OK;
    c.err = NULL;
    snprintf(command, sizeof command, "{\"cmd\":\"revoke\",\"api_key\":\"%s\"}", test_api_key());
    if (start_waiting_keepalive(&thread, &c) == 0)
        CHECK(control(command) == 0);
    pthread_join(thread, NULL);
    printf("revoked -> %s: %s\n", binance_status_str(c.status), binance_error_message(c.err));
    check_status_(__FILE__, __LINE__, "keepalive during revoke", c.status, BINANCE_API_ERROR, c.err);
    CHECK(binance_error_api_code(c.err) == -2015);
    CHECK(binance_error_http_status(c.err) == 401);
    binance_error_free(c.err);
    CHECK(control("{\"cmd\":\"reset\"}") == 0);
    binance_string_free(key);
    binance_client_free(client);
}

int main(void)
{
    test_timeout_then_recovers();
    test_connection_closed();
    test_reset_mid_request();
    test_free_while_in_flight();
    test_protocol_errors();
    test_not_json_fails_every_pending();
    test_noise_is_ignored();
    test_pings_answered();
    test_cut_frame();
    test_revoked_session();
    return harness_finish("faults");
}
