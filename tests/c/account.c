/*
 * account.c: the signing keys and REST settings on the config, and
 * binance_client_account_snapshot through each status it can return:
 * BINANCE_OK (HMAC and Ed25519 keys; the server verifies the signatures),
 * BINANCE_INVALID_ARGUMENT (no signing key, bad arguments),
 * BINANCE_RATE_LIMITED (429 with Retry-After), BINANCE_API_ERROR (-1022
 * and -1021 with their HTTP status), BINANCE_CONNECT_FAILED. Neither key
 * ever shows in a message (the harness checks every one).
 *
 * The runner's REST server (BINANCE_REST_URL) answers by the recvWindow a
 * request carries: 5000 is Binance's normal answer, 4291 a 429 with
 * Retry-After: 3, 1021 a -1021 every time, anything else a -1022 when the
 * signature does not verify. The local exchange's own REST API
 * (BINANCE_EXCHANGE_REST_URL, https with its CA) knows the API key with the
 * secret key, and BINANCE_ED25519_API_KEY with the private key.
 */
#include "harness.h"

static binance_config *rest_config(uint32_t recv_window_ms)
{
    binance_config *cfg = test_config();
    binance_error *err = NULL;
    CHECK_OK(binance_config_set_rest_endpoint(cfg, test_env("BINANCE_REST_URL"), &err), err);
    CHECK_OK(binance_config_set_secret_key(cfg, test_secret_key(), &err), err);
    CHECK_OK(binance_config_set_recv_window_ms(cfg, recv_window_ms, &err), err);
    return cfg;
}

static void test_setters(void)
{
    binance_config *cfg = binance_config_new();
    binance_error *err = NULL;
    char *pem = NULL;

    CHECK_FAIL(binance_config_set_secret_key(NULL, "s", &err), BINANCE_INVALID_ARGUMENT, err, "cfg");
    CHECK_FAIL(binance_config_set_secret_key(cfg, NULL, &err), BINANCE_INVALID_ARGUMENT, err, "secret");
    CHECK_FAIL(binance_config_set_secret_key(cfg, "", &err), BINANCE_INVALID_ARGUMENT, err, "secret");
    CHECK_FAIL(binance_config_set_secret_key(cfg, "TESTSECRETzyxw has a space", &err), BINANCE_INVALID_ARGUMENT,
               err, "secret");
    CHECK_OK(binance_config_set_secret_key(cfg, test_secret_key(), &err), err);

    CHECK_FAIL(binance_config_set_private_key_pem(cfg, NULL, &err), BINANCE_INVALID_ARGUMENT, err, "pem");
    CHECK_FAIL(binance_config_set_private_key_pem(cfg, "not a pem", &err), BINANCE_INVALID_ARGUMENT, err, "pem");
    CHECK_FAIL(binance_config_set_private_key_pem(
                   cfg, "-----BEGIN RSA PRIVATE KEY-----\nTESTSECRETzyxw\n-----END RSA PRIVATE KEY-----\n", &err),
               BINANCE_INVALID_ARGUMENT, err, "pem");
    pem = read_file(test_env("BINANCE_PRIVATE_KEY_FILE"));
    CHECK(pem != NULL);
    if (pem != NULL)
        CHECK_OK(binance_config_set_private_key_pem(cfg, pem, &err), err);
    free(pem);

    CHECK_FAIL(binance_config_set_rest_endpoint(cfg, NULL, &err), BINANCE_INVALID_ARGUMENT, err, "url");
    CHECK_FAIL(binance_config_set_rest_endpoint(cfg, "http://fapi.binance.com", &err), BINANCE_INVALID_ARGUMENT,
               err, "loopback");
    CHECK_FAIL(binance_config_set_rest_endpoint(cfg, "wss://fapi.binance.com", &err), BINANCE_INVALID_ARGUMENT, err,
               "https://");
    CHECK_OK(binance_config_set_rest_endpoint(cfg, BINANCE_REST_URL_TESTNET, &err), err);
    CHECK_OK(binance_config_set_rest_endpoint(cfg, BINANCE_REST_URL_PRODUCTION, &err), err);

    CHECK_FAIL(binance_config_set_recv_window_ms(cfg, 0, &err), BINANCE_INVALID_ARGUMENT, err, "ms");
    CHECK_FAIL(binance_config_set_recv_window_ms(cfg, 60001, &err), BINANCE_INVALID_ARGUMENT, err, "60000");
    CHECK_OK(binance_config_set_recv_window_ms(cfg, 60000, &err), err);
    CHECK(binance_config_set_recv_window_ms(NULL, 1, NULL) == BINANCE_INVALID_ARGUMENT);

    CHECK_FAIL(binance_config_set_source_address(cfg, "localhost", &err), BINANCE_INVALID_ARGUMENT, err, "address");
    CHECK_FAIL(binance_config_set_source_address(cfg, "127.0.0.1:80", &err), BINANCE_INVALID_ARGUMENT, err,
               "address");
    CHECK_FAIL(binance_config_set_source_address(NULL, "127.0.0.1", &err), BINANCE_INVALID_ARGUMENT, err, "cfg");
    CHECK_OK(binance_config_set_source_address(cfg, "127.0.0.2", &err), err);
    CHECK_OK(binance_config_set_source_address(cfg, "::1", &err), err);
    CHECK_OK(binance_config_set_source_address(cfg, NULL, &err), err);
    CHECK_FAIL(binance_config_set_snapshot_budget_percent(cfg, 0, &err), BINANCE_INVALID_ARGUMENT, err, "percent");
    CHECK_FAIL(binance_config_set_snapshot_budget_percent(cfg, 101, &err), BINANCE_INVALID_ARGUMENT, err, "percent");
    CHECK_OK(binance_config_set_snapshot_budget_percent(cfg, 100, &err), err);
    binance_config_free(cfg);
}

static void test_arguments_and_no_key(void)
{
    binance_client *client = test_client(); /* no signing key */
    binance_error *err = NULL;
    char *json = DUMMY(char);

    CHECK_FAIL(binance_client_account_snapshot(client, &json, &err), BINANCE_INVALID_ARGUMENT, err,
               "binance_config_set_secret_key or binance_config_set_private_key_pem");
    CHECK(json == NULL);
    json = DUMMY(char);
    CHECK_FAIL(binance_client_account_snapshot(NULL, &json, &err), BINANCE_INVALID_ARGUMENT, err, "client");
    CHECK(json == NULL);
    CHECK_FAIL(binance_client_account_snapshot(client, NULL, &err), BINANCE_INVALID_ARGUMENT, err, "out_json");
    CHECK(binance_client_account_snapshot(client, NULL, NULL) == BINANCE_INVALID_ARGUMENT);
    binance_client_free(client);
}

static void check_snapshot(binance_client *client)
{
    binance_error *err = NULL;
    char *json = DUMMY(char);
    CHECK_OK(binance_client_account_snapshot(client, &json, &err), err);
    CHECK(json != NULL && json != DUMMY(char));
    if (json == NULL || json == DUMMY(char))
        return;
    CHECK(strstr(json, "\"e\":\"binance.account_snapshot\"") != NULL);
    CHECK(json_number(json, "server_time_ms") > 0);
    CHECK(json_number(json, "E") >= json_number(json, "server_time_ms"));
    CHECK(strstr(json, "\"balances\":[") != NULL);
    CHECK(strstr(json, "\"positions\":[") != NULL);
    CHECK(json_number(json, "orderId") == 7);
    CHECK(json_number(json, "algoId") == 9);
    CHECK(!leaks_api_key(json) && !leaks_secret_key(json));
    binance_string_free(json);
}

static void test_snapshot_hmac_and_ed25519(void)
{
    binance_config *cfg = rest_config(5000);
    binance_error *err = NULL;
    binance_client *client = test_client_from(cfg);
    char *pem = NULL;

    check_snapshot(client);
    check_snapshot(client); /* again, on the kept-alive connection */
    binance_client_free(client);

    cfg = rest_config(5000);
    pem = read_file(test_env("BINANCE_PRIVATE_KEY_FILE"));
    CHECK(pem != NULL);
    if (pem != NULL)
        CHECK_OK(binance_config_set_private_key_pem(cfg, pem, &err), err);
    free(pem);
    client = test_client_from(cfg);
    check_snapshot(client);
    binance_client_free(client);
}

static void test_errors(void)
{
    binance_error *err = NULL;
    char *json = DUMMY(char);
    binance_client *client = test_client_from(rest_config(4291));
    binance_config *cfg = NULL;
    char url[64];
    int64_t t0 = now_ms();

    CHECK_STATUS(binance_client_account_snapshot(client, &json, &err), BINANCE_RATE_LIMITED, err);
    CHECK(json == NULL);
    CHECK(binance_error_http_status(err) == 429);
    CHECK(binance_error_api_code(err) == -1003);
    CHECK(binance_error_retry_after_ms(err) >= t0 + 3000);
    binance_error_free(err);
    err = NULL;
    /* Until then nothing is sent: the same answer at once. */
    CHECK_STATUS(binance_client_account_snapshot(client, &json, &err), BINANCE_RATE_LIMITED, err);
    CHECK(binance_error_http_status(err) == 0);
    binance_error_free(err);
    err = NULL;
    /* The process's budget for this server says so. */
    CHECK_OK(binance_client_request_budget_json(client, &json, &err), err);
    CHECK(strstr(json, "\"rate_limited\":1") != NULL);
    CHECK(strstr(json, "\"paused_until_ms\":0") == NULL);
    binance_string_free(json);
    json = NULL;
    CHECK_FAIL(binance_client_request_budget_json(client, NULL, &err), BINANCE_INVALID_ARGUMENT, err, "out_json");
    /* Every client of this server waits too: wait for the pause to end. */
    for (int waited = 0;; waited += 50) {
        long long paused;
        CHECK_OK(binance_client_request_budget_json(client, &json, &err), err);
        paused = json_number(json, "paused_until_ms");
        binance_string_free(json);
        json = NULL;
        if (paused == 0 || waited > 10000) {
            CHECK(paused == 0);
            break;
        }
        sleep_ms(50);
    }
    binance_client_free(client);

    client = test_client_from(rest_config(1021));
    CHECK_STATUS(binance_client_account_snapshot(client, &json, &err), BINANCE_API_ERROR, err);
    CHECK(binance_error_api_code(err) == -1021);
    CHECK(binance_error_http_status(err) == 400);
    CHECK_MESSAGE(err, "recvWindow");
    binance_error_free(err);
    err = NULL;
    binance_client_free(client);

    /* A secret the server does not know: the signature does not verify. */
    cfg = rest_config(5000);
    CHECK_OK(binance_config_set_secret_key(cfg, "TESTSECRETzyxw-but-wrong", &err), err);
    client = test_client_from(cfg);
    CHECK_STATUS(binance_client_account_snapshot(client, &json, &err), BINANCE_API_ERROR, err);
    CHECK(binance_error_api_code(err) == -1022);
    CHECK(binance_error_http_status(err) == 400);
    binance_error_free(err);
    err = NULL;
    binance_client_free(client);

    cfg = rest_config(5000);
    snprintf(url, sizeof url, "http://127.0.0.1:%d", closed_port());
    CHECK_OK(binance_config_set_rest_endpoint(cfg, url, &err), err);
    client = test_client_from(cfg);
    CHECK_STATUS(binance_client_account_snapshot(client, &json, &err), BINANCE_CONNECT_FAILED, err);
    CHECK(json == NULL);
    binance_error_free(err);
    binance_client_free(client);
}

/* The order the exchange placed, found in a snapshot from its REST API. */
static void check_exchange_snapshot(binance_config *cfg, const char *api_key)
{
    binance_error *err = NULL;
    binance_client *client = NULL;
    char cmd[512], reply[4096];
    char *json = NULL;
    long long order_id;

    CHECK_OK(binance_config_set_rest_endpoint(cfg, test_env("BINANCE_EXCHANGE_REST_URL"), &err), err);
    client = test_client_from(cfg);
    snprintf(cmd, sizeof cmd,
             "{\"cmd\":\"order_place\",\"api_key\":\"%s\",\"symbol\":\"BTCUSDT\",\"side\":\"BUY\","
             "\"quantity\":\"0.01\",\"price\":\"50000\"}",
             api_key);
    CHECK(control_reply(cmd, reply, sizeof reply) == 0);
    order_id = json_number(reply, "order_id");
    CHECK(order_id > 0);
    CHECK_OK(binance_client_account_snapshot(client, &json, &err), err);
    if (json != NULL) {
        CHECK(json_number(json, "orderId") == order_id);
        CHECK(strstr(json, "\"open_algo_orders\":[]") != NULL);
    }
    binance_string_free(json);
    binance_client_free(client);
}

static void test_against_the_exchange(void)
{
    binance_error *err = NULL;
    binance_config *cfg = test_config();
    char *pem = NULL;

    CHECK_OK(binance_config_set_secret_key(cfg, test_secret_key(), &err), err);
    check_exchange_snapshot(cfg, test_api_key());

    cfg = test_config();
    CHECK_OK(binance_config_set_api_key(cfg, test_env("BINANCE_ED25519_API_KEY"), &err), err);
    pem = read_file(test_env("BINANCE_PRIVATE_KEY_FILE"));
    CHECK(pem != NULL);
    if (pem != NULL)
        CHECK_OK(binance_config_set_private_key_pem(cfg, pem, &err), err);
    free(pem);
    check_exchange_snapshot(cfg, test_env("BINANCE_ED25519_API_KEY"));
}

int main(void)
{
    test_setters();
    test_arguments_and_no_key();
    test_snapshot_hmac_and_ed25519();
    test_errors();
    test_against_the_exchange();
    return harness_finish("account");
}
