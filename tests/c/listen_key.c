/*
 * listen_key.c: start, keepalive and stop against the local exchange, and
 * the statuses its answers can carry: BINANCE_OK, BINANCE_API_ERROR (with
 * the API code and HTTP status), BINANCE_RATE_LIMITED (with retry-after);
 * the rate limits JSON; the API key never in a message.
 */
#include "harness.h"

static void test_start_keepalive_stop(void)
{
    binance_client *client = test_client();
    binance_error *err = NULL;
    char *key = DUMMY(char);
    char *again = NULL;
    char *renewed = NULL;
    char *json = NULL;

    /* No request yet: no rate limits known. */
    CHECK_OK(binance_client_rate_limits_json(client, &json, &err), err);
    CHECK_STR_EQ(json, "[]");
    binance_string_free(json);
    json = NULL;

    err = DUMMY(binance_error);
    CHECK_OK(binance_listen_key_start(client, &key, &err), err);
    CHECK(is_listen_key(key));

    /* The account's active key comes back on every start and keepalive. */
    CHECK_OK(binance_listen_key_start(client, &again, NULL), err);
    CHECK_STR_EQ(again, key);
    CHECK_OK(binance_listen_key_keepalive(client, &renewed, &err), err);
    CHECK_STR_EQ(renewed, key);
    CHECK_OK(binance_listen_key_keepalive(client, NULL, &err), err);
    CHECK(binance_listen_key_keepalive(client, NULL, NULL) == BINANCE_OK);

    CHECK_OK(binance_client_rate_limits_json(client, &json, &err), err);
    CHECK(json != NULL && json[0] == '[' && json[strlen(json) - 1] == ']');
    CHECK(json != NULL && strstr(json, "REQUEST_WEIGHT") != NULL);
    binance_string_free(json);
    json = NULL;

    CHECK_OK(binance_listen_key_stop(client, &err), err);

    /* No key any more: -1125, as Binance answers. */
    binance_string_free(renewed);
    renewed = DUMMY(char);
    CHECK_STATUS(binance_listen_key_keepalive(client, &renewed, &err), BINANCE_API_ERROR, err);
    CHECK(renewed == NULL);
    CHECK(binance_error_api_code(err) == -1125);
    CHECK(binance_error_http_status(err) == 400);
    CHECK(binance_error_retry_after_ms(err) == 0);
    binance_error_free(err);
    err = NULL;
    CHECK_STATUS(binance_listen_key_stop(client, &err), BINANCE_API_ERROR, err);
    CHECK(binance_error_api_code(err) == -1125);
    binance_error_free(err);
    err = NULL;
    CHECK(binance_listen_key_keepalive(client, NULL, NULL) == BINANCE_API_ERROR);

    /* Start again: a valid key, kept alive as before. */
    binance_string_free(again);
    again = NULL;
    CHECK_OK(binance_listen_key_start(client, &again, &err), err);
    CHECK(is_listen_key(again));
    CHECK_OK(binance_listen_key_keepalive(client, &renewed, &err), err);
    CHECK_STR_EQ(renewed, again);

    binance_string_free(renewed);
    binance_string_free(again);
    binance_string_free(key);
    binance_client_free(client);
}

/* One API key is one account: another key gets its own listenKey. */
static void test_accounts_are_separate(void)
{
    binance_config *cfg = test_config();
    binance_client *mine = test_client();
    binance_client *other = NULL;
    binance_error *err = NULL;
    char *a = NULL, *b = NULL;

    CHECK_OK(binance_config_set_api_key(cfg, "OTHERACCOUNT0123456789", &err), err);
    other = test_client_from(cfg);
    CHECK_OK(binance_listen_key_start(mine, &a, &err), err);
    CHECK_OK(binance_listen_key_start(other, &b, &err), err);
    CHECK(a != NULL && b != NULL && strcmp(a, b) != 0);
    binance_string_free(a);
    binance_string_free(b);
    binance_client_free(other);
    binance_client_free(mine);
}

static void test_api_errors(void)
{
    binance_client *client = test_client();
    binance_error *err = NULL;
    char *key = NULL;

    CHECK_OK(binance_listen_key_start(client, &key, &err), err);

    /* Any error object from the server: code, status and msg reach the caller. */
    CHECK(control("{\"cmd\":\"fail\",\"status\":400,\"code\":-1234,\"msg\":\"injected failure\",\"count\":1}") == 0);
    binance_string_free(key);
    key = DUMMY(char);
    CHECK_STATUS(binance_listen_key_keepalive(client, &key, &err), BINANCE_API_ERROR, err);
    CHECK(key == NULL);
    CHECK(binance_error_api_code(err) == -1234);
    CHECK(binance_error_http_status(err) == 400);
    CHECK(binance_error_retry_after_ms(err) == 0);
    CHECK_MESSAGE(err, "injected failure");
    binance_error_free(err);
    err = NULL;

    CHECK(control("{\"cmd\":\"fail\",\"status\":401,\"code\":-2015,"
                  "\"msg\":\"Invalid API-key, IP, or permissions for action.\",\"count\":1}") == 0);
    CHECK_STATUS(binance_listen_key_start(client, &key, &err), BINANCE_API_ERROR, err);
    CHECK(key == NULL);
    CHECK(binance_error_api_code(err) == -2015);
    CHECK(binance_error_http_status(err) == 401);
    binance_error_free(err);
    err = NULL;

    CHECK(control("{\"cmd\":\"fail\",\"status\":400,\"code\":-1125,\"msg\":\"This listenKey does not exist.\","
                  "\"count\":1,\"method\":\"userDataStream.stop\"}") == 0);
    CHECK_STATUS(binance_listen_key_stop(client, &err), BINANCE_API_ERROR, err);
    CHECK(binance_error_api_code(err) == -1125);
    binance_error_free(err);
    err = NULL;

    /* A fault applies once: the same client goes on working. */
    CHECK_OK(binance_listen_key_keepalive(client, &key, &err), err);
    CHECK(is_listen_key(key));
    binance_string_free(key);
    binance_client_free(client);
}

/* The budget's paused_until_ms (0 when not paused), for the client's
 * source address and server. */
static long long paused_until(binance_client *client)
{
    binance_error *err = NULL;
    char *json = NULL;
    long long paused;
    CHECK_OK(binance_client_request_budget_json(client, &json, &err), err);
    paused = json == NULL ? -1 : json_number(json, "paused_until_ms");
    binance_string_free(json);
    return paused;
}

/* A 429 or 418 stops every client of the process sending to that server
 * until its time: later calls are BINANCE_RATE_LIMITED without being sent
 * (HTTP status 0). Runs last: the 418's minute would stop the others. */
static void test_rate_limited(void)
{
    binance_client *client = test_client();
    binance_client *other = test_client();
    binance_error *err = NULL;
    char *key = NULL;
    int64_t before = now_ms();
    int64_t until;

    CHECK(control("{\"cmd\":\"fail\",\"status\":429,\"code\":-1003,\"msg\":\"Too many requests.\","
                  "\"retry_after_ms\":1000,\"count\":1}") == 0);
    key = DUMMY(char);
    CHECK_STATUS(binance_listen_key_start(client, &key, &err), BINANCE_RATE_LIMITED, err);
    CHECK(key == NULL);
    CHECK(binance_error_http_status(err) == 429);
    CHECK(binance_error_api_code(err) == -1003);
    /* A time, in ms since the epoch, in the future of the request. */
    until = binance_error_retry_after_ms(err);
    CHECK(until >= before);
    binance_error_free(err);
    err = NULL;
    /* Another client of the same server: refused unsent, same time. */
    CHECK_STATUS(binance_listen_key_start(other, &key, &err), BINANCE_RATE_LIMITED, err);
    CHECK(binance_error_http_status(err) == 0);
    CHECK(binance_error_retry_after_ms(err) == until);
    binance_error_free(err);
    err = NULL;
    CHECK(paused_until(other) == until);
    /* Wait for the time to pass; then requests go again. */
    while (paused_until(other) != 0 && now_ms() < until + 10000)
        sleep_ms(50);
    CHECK_OK(binance_listen_key_start(other, &key, &err), err);
    binance_string_free(key);
    key = NULL;

    CHECK(control("{\"cmd\":\"fail\",\"status\":418,\"code\":-1003,\"msg\":\"Way too many requests; IP banned.\","
                  "\"retry_after_ms\":60000,\"count\":1}") == 0);
    CHECK_STATUS(binance_listen_key_keepalive(client, NULL, &err), BINANCE_RATE_LIMITED, err);
    CHECK(binance_error_http_status(err) == 418);
    CHECK(binance_error_retry_after_ms(err) >= before + 30000);
    until = binance_error_retry_after_ms(err);
    binance_error_free(err);
    err = NULL;
    CHECK(binance_listen_key_start(client, NULL, NULL) == BINANCE_INVALID_ARGUMENT);
    CHECK(binance_listen_key_keepalive(other, NULL, NULL) == BINANCE_RATE_LIMITED);
    CHECK_STATUS(binance_listen_key_stop(other, &err), BINANCE_RATE_LIMITED, err);
    CHECK(binance_error_http_status(err) == 0);
    CHECK(binance_error_retry_after_ms(err) == until);
    binance_error_free(err);
    binance_client_free(other);
    binance_client_free(client);
}

/* The exchange refuses a malformed key with 401 -2014; the message must not
 * echo the key back, whatever the server's text. */
static void test_rejected_key_not_echoed(void)
{
    binance_config *cfg = test_config();
    binance_client *client = NULL;
    binance_error *err = NULL;
    char *key = NULL;
    const char *bad_key = "BADKEY-not_alnum.0123456789";

    CHECK_OK(binance_config_set_api_key(cfg, bad_key, &err), err);
    client = test_client_from(cfg);
    CHECK_STATUS(binance_listen_key_start(client, &key, &err), BINANCE_API_ERROR, err);
    CHECK(binance_error_api_code(err) == -2014);
    CHECK(binance_error_http_status(err) == 401);
    CHECK(strstr(binance_error_message(err), bad_key) == NULL);
    CHECK(strstr(binance_error_message(err), "BADKEY") == NULL);
    binance_error_free(err);
    binance_client_free(client);
}

int main(void)
{
    test_start_keepalive_stop();
    test_accounts_are_separate();
    test_api_errors();
    test_rejected_key_not_echoed();
    test_rate_limited();
    return harness_finish("listen_key");
}
