/*
 * api_args.c: every function of the C API with good and bad arguments, no
 * network needed: NULL, invalid UTF-8, out-of-range values, bad URLs and
 * PEM; out pointers set to NULL on failure; out_err may be NULL; every
 * _free accepts NULL; getters on NULL. Also compiled as C++ (the header
 * must work from C++ as is).
 */
#include "harness.h"

static const char INVALID_UTF8[] = "\xff\xfe";

static void test_version_and_status_names(void)
{
    static const char *const names[] = {
        "BINANCE_OK",
        "BINANCE_INVALID_ARGUMENT",
        "BINANCE_CONNECT_FAILED",
        "BINANCE_TLS_FAILED",
        "BINANCE_TIMEOUT",
        "BINANCE_CONNECTION_CLOSED",
        "BINANCE_PROTOCOL_ERROR",
        "BINANCE_API_ERROR",
        "BINANCE_RATE_LIMITED",
        "BINANCE_INTERNAL_ERROR",
        "BINANCE_STREAM_CLOSED",
    };
    const binance_status values[] = {
        BINANCE_OK,
        BINANCE_INVALID_ARGUMENT,
        BINANCE_CONNECT_FAILED,
        BINANCE_TLS_FAILED,
        BINANCE_TIMEOUT,
        BINANCE_CONNECTION_CLOSED,
        BINANCE_PROTOCOL_ERROR,
        BINANCE_API_ERROR,
        BINANCE_RATE_LIMITED,
        BINANCE_INTERNAL_ERROR,
        BINANCE_STREAM_CLOSED,
    };
    char expected_version[32];
    int i;

    CHECK(binance_version() != NULL);
    CHECK_STR_EQ(binance_version(), BINANCE_VERSION_STRING);
    snprintf(expected_version, sizeof expected_version, "%d.%d.%d", BINANCE_VERSION_MAJOR,
             BINANCE_VERSION_MINOR, BINANCE_VERSION_PATCH);
    CHECK_STR_EQ(binance_version(), expected_version);
    /* The one-number form, from the library's own version string. */
    {
        unsigned major = 0, minor = 0, patch = 0;
        CHECK(sscanf(binance_version(), "%u.%u.%u", &major, &minor, &patch) == 3);
        CHECK(BINANCE_VERSION_NUM == (long)((major << 16) | (minor << 8) | patch));
    }
#if !BINANCE_AT_LEAST_VERSION(BINANCE_VERSION_MAJOR, BINANCE_VERSION_MINOR, BINANCE_VERSION_PATCH)
#error "BINANCE_AT_LEAST_VERSION is false for the header's own version"
#endif
#if !BINANCE_AT_LEAST_VERSION(0, 0, 0) || BINANCE_AT_LEAST_VERSION(BINANCE_VERSION_MAJOR, BINANCE_VERSION_MINOR, BINANCE_VERSION_PATCH + 1) || \
    BINANCE_AT_LEAST_VERSION(BINANCE_VERSION_MAJOR, BINANCE_VERSION_MINOR + 1, 0) || BINANCE_AT_LEAST_VERSION(BINANCE_VERSION_MAJOR + 1, 0, 0)
#error "BINANCE_AT_LEAST_VERSION is true for a later version, or false for 0.0.0"
#endif

    /* The values are ABI: pinned here as users' code sees them. */
    for (i = 0; i < 11; i++) {
        CHECK(values[i] == i);
        CHECK_STR_EQ(binance_status_str(i), names[i]);
    }
    CHECK(sizeof(binance_status) == 4);
    CHECK_STR_EQ(binance_status_str(11), "BINANCE_UNKNOWN_STATUS");
    CHECK_STR_EQ(binance_status_str(-1), "BINANCE_UNKNOWN_STATUS");
    CHECK_STR_EQ(binance_status_str(INT32_MAX), "BINANCE_UNKNOWN_STATUS");
    CHECK_STR_EQ(binance_status_str(INT32_MIN), "BINANCE_UNKNOWN_STATUS");
}

static void test_error_getters_on_null(void)
{
    CHECK(binance_error_status(NULL) == BINANCE_INVALID_ARGUMENT);
    CHECK(binance_error_api_code(NULL) == 0);
    CHECK(binance_error_http_status(NULL) == 0);
    CHECK(binance_error_retry_after_ms(NULL) == 0);
    CHECK(binance_error_message(NULL) != NULL);
    CHECK_STR_EQ(binance_error_message(NULL), "");
}

static void test_free_null(void)
{
    binance_config_free(NULL);
    binance_client_free(NULL);
    binance_string_free(NULL);
    binance_error_free(NULL);
}

/* An INVALID_ARGUMENT error carries no server data. */
static void check_no_server_data(const binance_error *err)
{
    CHECK(binance_error_api_code(err) == 0);
    CHECK(binance_error_http_status(err) == 0);
    CHECK(binance_error_retry_after_ms(err) == 0);
}

static void test_config_null_cfg(void)
{
    binance_error *err = NULL;

    CHECK_FAIL(binance_config_set_api_key(NULL, "k", &err), BINANCE_INVALID_ARGUMENT, err, "cfg");
    CHECK_FAIL(binance_config_set_endpoint(NULL, BINANCE_WS_API_URL_TESTNET, &err), BINANCE_INVALID_ARGUMENT,
               err, "cfg");
    CHECK_FAIL(binance_config_set_timeouts_ms(NULL, 1000, 1000, &err), BINANCE_INVALID_ARGUMENT, err, "cfg");
    CHECK_FAIL(binance_config_add_root_certificate_pem(NULL, "x", &err), BINANCE_INVALID_ARGUMENT, err, "cfg");
    CHECK_FAIL(binance_config_set_stream_endpoint(NULL, BINANCE_STREAM_URL_TESTNET, &err),
               BINANCE_INVALID_ARGUMENT, err, "cfg");
    CHECK_FAIL(binance_config_set_keepalive_interval_ms(NULL, 60000, &err), BINANCE_INVALID_ARGUMENT, err, "cfg");
    CHECK_FAIL(binance_config_set_proxy(NULL, "http://127.0.0.1:3128", &err), BINANCE_INVALID_ARGUMENT, err,
               "cfg");

    /* out_err may be NULL: the status alone still tells. */
    CHECK(binance_config_set_api_key(NULL, "k", NULL) == BINANCE_INVALID_ARGUMENT);
    CHECK(binance_config_set_timeouts_ms(NULL, 1, 1, NULL) == BINANCE_INVALID_ARGUMENT);
}

static void test_config_api_key(binance_config *cfg)
{
    binance_error *err = NULL;
    char long_key[258];

    CHECK_OK(binance_config_set_api_key(cfg, test_api_key(), &err), err);
    /* On success *out_err is set to NULL, whatever it held. */
    err = DUMMY(binance_error);
    CHECK_OK(binance_config_set_api_key(cfg, "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A", &err),
             err);
    CHECK(binance_config_set_api_key(cfg, test_api_key(), NULL) == BINANCE_OK);

    CHECK_STATUS(binance_config_set_api_key(cfg, NULL, &err), BINANCE_INVALID_ARGUMENT, err);
    CHECK_MESSAGE(err, "api_key");
    check_no_server_data(err);
    binance_error_free(err);
    err = NULL;
    CHECK_FAIL(binance_config_set_api_key(cfg, INVALID_UTF8, &err), BINANCE_INVALID_ARGUMENT, err, "api_key");
    CHECK_FAIL(binance_config_set_api_key(cfg, "", &err), BINANCE_INVALID_ARGUMENT, err, "api_key");
    CHECK_FAIL(binance_config_set_api_key(cfg, "TESTKEY with space", &err), BINANCE_INVALID_ARGUMENT, err,
               "api_key");
    memset(long_key, 'k', sizeof long_key - 1);
    long_key[sizeof long_key - 1] = '\0';
    CHECK_FAIL(binance_config_set_api_key(cfg, long_key, &err), BINANCE_INVALID_ARGUMENT, err, "api_key");
    long_key[256] = '\0';
    CHECK_OK(binance_config_set_api_key(cfg, long_key, &err), err);
    /* err pre-set to garbage is overwritten on failure too. */
    err = DUMMY(binance_error);
    CHECK_FAIL(binance_config_set_api_key(cfg, "", &err), BINANCE_INVALID_ARGUMENT, err, "api_key");
    CHECK(binance_config_set_api_key(cfg, "", NULL) == BINANCE_INVALID_ARGUMENT);

    /* Leave the test key in place. */
    CHECK_OK(binance_config_set_api_key(cfg, test_api_key(), &err), err);
}

static void test_config_urls(binance_config *cfg)
{
    binance_error *err = NULL;
    static const char *const good[] = {
        BINANCE_WS_API_URL_PRODUCTION,
        BINANCE_WS_API_URL_TESTNET,
        "wss://example.com:8443/ws-fapi/v1?returnRateLimits=false",
        "wss://127.0.0.1:1/ws-fapi/v1",
        "ws://127.0.0.1:9000/ws-fapi/v1",
        "ws://localhost:9000/ws-fapi/v1",
        "ws://[::1]:9000/ws-fapi/v1",
    };
    static const char *const bad[] = {
        "",
        "garbage",
        "not a url at all",
        "ws-fapi.binance.com/ws-fapi/v1",
        "http://127.0.0.1:9000/ws-fapi/v1",
        "https://ws-fapi.binance.com/ws-fapi/v1",
        "wss://",
        "wss://host:0/x",
        "wss://user:pw@example.com/x",
        "ws://example.com/ws-fapi/v1",
        "ws://10.0.0.1:9000/ws-fapi/v1",
    };
    size_t i;

    for (i = 0; i < sizeof good / sizeof good[0]; i++) {
        CHECK_OK(binance_config_set_endpoint(cfg, good[i], &err), err);
        CHECK_OK(binance_config_set_stream_endpoint(cfg, good[i], &err), err);
    }
    CHECK_OK(binance_config_set_stream_endpoint(cfg, BINANCE_STREAM_URL_PRODUCTION, &err), err);
    CHECK_OK(binance_config_set_stream_endpoint(cfg, BINANCE_STREAM_URL_TESTNET, &err), err);

    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_STATUS(binance_config_set_endpoint(cfg, bad[i], &err), BINANCE_INVALID_ARGUMENT, err);
        CHECK_MESSAGE(err, "url");
        check_no_server_data(err);
        binance_error_free(err);
        err = NULL;
        CHECK_FAIL(binance_config_set_stream_endpoint(cfg, bad[i], &err), BINANCE_INVALID_ARGUMENT, err, "url");
    }
    CHECK_FAIL(binance_config_set_endpoint(cfg, "ws://example.com/ws-fapi/v1", &err), BINANCE_INVALID_ARGUMENT,
               err, "loopback");
    CHECK_FAIL(binance_config_set_endpoint(cfg, NULL, &err), BINANCE_INVALID_ARGUMENT, err, "url");
    CHECK_FAIL(binance_config_set_endpoint(cfg, INVALID_UTF8, &err), BINANCE_INVALID_ARGUMENT, err, "url");
    CHECK_FAIL(binance_config_set_stream_endpoint(cfg, NULL, &err), BINANCE_INVALID_ARGUMENT, err, "url");
    CHECK_FAIL(binance_config_set_stream_endpoint(cfg, INVALID_UTF8, &err), BINANCE_INVALID_ARGUMENT, err, "url");
    CHECK(binance_config_set_endpoint(cfg, "garbage", NULL) == BINANCE_INVALID_ARGUMENT);

    /* Proxies: the credentials never show up in a message. */
    CHECK_OK(binance_config_set_proxy(cfg, "http://127.0.0.1:3128", &err), err);
    CHECK_OK(binance_config_set_proxy(cfg, "http://user:s3cretPW@proxy.example:8080", &err), err);
    CHECK_OK(binance_config_set_proxy(cfg, "http://[::1]:8080", &err), err);
    CHECK_FAIL(binance_config_set_proxy(cfg, NULL, &err), BINANCE_INVALID_ARGUMENT, err, "url");
    CHECK_FAIL(binance_config_set_proxy(cfg, INVALID_UTF8, &err), BINANCE_INVALID_ARGUMENT, err, "url");
    CHECK_FAIL(binance_config_set_proxy(cfg, "", &err), BINANCE_INVALID_ARGUMENT, err, "url");
    CHECK_FAIL(binance_config_set_proxy(cfg, "socks5://127.0.0.1:1080", &err), BINANCE_INVALID_ARGUMENT, err,
               "url");
    CHECK_FAIL(binance_config_set_proxy(cfg, "http://127.0.0.1", &err), BINANCE_INVALID_ARGUMENT, err, "url");
    CHECK_FAIL(binance_config_set_proxy(cfg, "http://127.0.0.1:0", &err), BINANCE_INVALID_ARGUMENT, err, "url");
    {
        const char *with_secret[] = {
            "http://user:s3cretPW@proxy.example",
            "http://user:s3cretPW@proxy.example:8080/path",
            "https://user:s3cretPW@proxy.example:8080",
            "http://user:s3cretPW %@proxy.example:8080",
        };
        for (i = 0; i < sizeof with_secret / sizeof with_secret[0]; i++) {
            CHECK_STATUS(binance_config_set_proxy(cfg, with_secret[i], &err), BINANCE_INVALID_ARGUMENT, err);
            CHECK(strstr(binance_error_message(err), "s3cretPW") == NULL);
            binance_error_free(err);
            err = NULL;
        }
    }

    /* Leave a loopback endpoint and no proxy-breaking state: this config is
     * used for a client below, which never connects. */
    CHECK_OK(binance_config_set_endpoint(cfg, "wss://127.0.0.1:1/ws-fapi/v1", &err), err);
}

static void test_config_numbers(binance_config *cfg)
{
    binance_error *err = NULL;

    CHECK_OK(binance_config_set_timeouts_ms(cfg, 1, 1, &err), err);
    CHECK_OK(binance_config_set_timeouts_ms(cfg, 3600000, 3600000, &err), err);
    CHECK_OK(binance_config_set_timeouts_ms(cfg, 10000, 10000, &err), err);
    CHECK_STATUS(binance_config_set_timeouts_ms(cfg, 0, 1000, &err), BINANCE_INVALID_ARGUMENT, err);
    CHECK_MESSAGE(err, "connect_ms");
    check_no_server_data(err);
    binance_error_free(err);
    err = NULL;
    CHECK_FAIL(binance_config_set_timeouts_ms(cfg, 1000, 0, &err), BINANCE_INVALID_ARGUMENT, err, "request_ms");
    CHECK_FAIL(binance_config_set_timeouts_ms(cfg, 3600001, 1000, &err), BINANCE_INVALID_ARGUMENT, err,
               "connect_ms");
    CHECK_FAIL(binance_config_set_timeouts_ms(cfg, 1000, 3600001, &err), BINANCE_INVALID_ARGUMENT, err,
               "request_ms");
    CHECK_FAIL(binance_config_set_timeouts_ms(cfg, 0, 0, &err), BINANCE_INVALID_ARGUMENT, err, "_ms");
    CHECK_FAIL(binance_config_set_timeouts_ms(cfg, UINT32_MAX, 1000, &err), BINANCE_INVALID_ARGUMENT, err,
               "connect_ms");

    CHECK_OK(binance_config_set_keepalive_interval_ms(cfg, 100, &err), err);
    CHECK_OK(binance_config_set_keepalive_interval_ms(cfg, 3300000, &err), err);
    CHECK_OK(binance_config_set_keepalive_interval_ms(cfg, 30 * 60 * 1000, &err), err);
    CHECK_FAIL(binance_config_set_keepalive_interval_ms(cfg, 0, &err), BINANCE_INVALID_ARGUMENT, err, "ms");
    CHECK_FAIL(binance_config_set_keepalive_interval_ms(cfg, 99, &err), BINANCE_INVALID_ARGUMENT, err, "ms");
    CHECK_FAIL(binance_config_set_keepalive_interval_ms(cfg, 3300001, &err), BINANCE_INVALID_ARGUMENT, err, "ms");
    CHECK_FAIL(binance_config_set_keepalive_interval_ms(cfg, UINT32_MAX, &err), BINANCE_INVALID_ARGUMENT, err,
               "ms");
    CHECK_OK(binance_config_set_product(cfg, BINANCE_PRODUCT_PORTFOLIO_MARGIN, &err), err);
    CHECK_OK(binance_config_set_product(cfg, BINANCE_PRODUCT_COINM, &err), err);
    CHECK_OK(binance_config_set_product(cfg, BINANCE_PRODUCT_USDM, &err), err);
    CHECK_FAIL(binance_config_set_product(cfg, 3, &err), BINANCE_INVALID_ARGUMENT, err, "product");
    CHECK_FAIL(binance_config_set_product(cfg, -1, &err), BINANCE_INVALID_ARGUMENT, err, "product");
    CHECK_FAIL(binance_config_set_product(NULL, BINANCE_PRODUCT_USDM, &err), BINANCE_INVALID_ARGUMENT, err, "cfg");
}

static void test_config_pem(binance_config *cfg)
{
    binance_error *err = NULL;
    const char *ca_file = getenv("BINANCE_CA_FILE");
    char *pem = ca_file != NULL ? read_file(ca_file) : NULL;

    CHECK_FAIL(binance_config_add_root_certificate_pem(cfg, NULL, &err), BINANCE_INVALID_ARGUMENT, err, "pem");
    CHECK_FAIL(binance_config_add_root_certificate_pem(cfg, INVALID_UTF8, &err), BINANCE_INVALID_ARGUMENT, err,
               "pem");
    CHECK_FAIL(binance_config_add_root_certificate_pem(cfg, "", &err), BINANCE_INVALID_ARGUMENT, err, "pem");
    CHECK_FAIL(binance_config_add_root_certificate_pem(cfg, "hello", &err), BINANCE_INVALID_ARGUMENT, err, "pem");
    CHECK_FAIL(binance_config_add_root_certificate_pem(
                   cfg, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", &err),
               BINANCE_INVALID_ARGUMENT, err, "pem");
    CHECK_FAIL(binance_config_add_root_certificate_pem(cfg, "-----BEGIN CERTIFICATE-----\nMIIB", &err),
               BINANCE_INVALID_ARGUMENT, err, "pem");

    CHECK(pem != NULL);
    if (pem != NULL) {
        CHECK_OK(binance_config_add_root_certificate_pem(cfg, pem, &err), err);
        /* Adding the same one twice is harmless. */
        CHECK_OK(binance_config_add_root_certificate_pem(cfg, pem, &err), err);
        free(pem);
    }
}

static void test_client_new(binance_config *cfg)
{
    binance_error *err = NULL;
    binance_client *client = DUMMY(binance_client);
    binance_config *no_key = binance_config_new();
    char *json = DUMMY(char);
    char *key = DUMMY(char);

    CHECK(no_key != NULL);

    /* Each failure sets *out_client to NULL. */
    CHECK_FAIL(binance_client_new(NULL, &client, &err), BINANCE_INVALID_ARGUMENT, err, "cfg");
    CHECK(client == NULL);
    CHECK_FAIL(binance_client_new(cfg, NULL, &err), BINANCE_INVALID_ARGUMENT, err, "out_client");
    client = DUMMY(binance_client);
    CHECK_FAIL(binance_client_new(no_key, &client, &err), BINANCE_INVALID_ARGUMENT, err, "API key");
    CHECK(client == NULL);
    client = DUMMY(binance_client);
    CHECK(binance_client_new(no_key, &client, NULL) == BINANCE_INVALID_ARGUMENT);
    CHECK(client == NULL);
    binance_config_free(no_key);

    /* A client does not connect until its first request. */
    err = DUMMY(binance_error);
    CHECK_OK(binance_client_new(cfg, &client, &err), err);
    CHECK(client != NULL && client != DUMMY(binance_client));
    CHECK_OK(binance_client_rate_limits_json(client, &json, &err), err);
    CHECK_STR_EQ(json, "[]");
    binance_string_free(json);
    json = DUMMY(char);
    CHECK_FAIL(binance_client_rate_limits_json(NULL, &json, &err), BINANCE_INVALID_ARGUMENT, err, "client");
    CHECK(json == NULL);
    CHECK_FAIL(binance_client_rate_limits_json(client, NULL, &err), BINANCE_INVALID_ARGUMENT, err, "out_json");

    /* NULL handles and out pointers on the request functions. */
    CHECK_FAIL(binance_listen_key_start(NULL, &key, &err), BINANCE_INVALID_ARGUMENT, err, "client");
    CHECK(key == NULL);
    CHECK_FAIL(binance_listen_key_start(client, NULL, &err), BINANCE_INVALID_ARGUMENT, err, "out_listen_key");
    key = DUMMY(char);
    CHECK_FAIL(binance_listen_key_keepalive(NULL, &key, &err), BINANCE_INVALID_ARGUMENT, err, "client");
    CHECK(key == NULL);
    CHECK_FAIL(binance_listen_key_keepalive(NULL, NULL, &err), BINANCE_INVALID_ARGUMENT, err, "client");
    CHECK_FAIL(binance_listen_key_stop(NULL, &err), BINANCE_INVALID_ARGUMENT, err, "client");
    CHECK(binance_listen_key_start(NULL, NULL, NULL) == BINANCE_INVALID_ARGUMENT);
    CHECK(binance_listen_key_keepalive(NULL, NULL, NULL) == BINANCE_INVALID_ARGUMENT);
    CHECK(binance_listen_key_stop(NULL, NULL) == BINANCE_INVALID_ARGUMENT);

    binance_client_free(client);
}

int main(void)
{
    binance_config *cfg;

    test_version_and_status_names();
    test_error_getters_on_null();
    test_free_null();
    test_config_null_cfg();

    cfg = binance_config_new();
    CHECK(cfg != NULL);
    if (cfg != NULL) {
        test_config_api_key(cfg);
        test_config_urls(cfg);
        test_config_numbers(cfg);
        test_config_pem(cfg);
        test_client_new(cfg);
        binance_config_free(cfg);
    }
    /* A config freed without ever being set. */
    binance_config_free(binance_config_new());

    return harness_finish("api_args");
}
