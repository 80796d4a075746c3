/*
 * user_stream.c: print a Binance futures account's user data events
 * as they come. The library keeps the listenKey alive, renews it, and
 * reconnects; binance.stream_gap tells you when events may have been lost,
 * so you know to resynchronise orders and positions over REST.
 *
 * Environment:
 *   BINANCE_API_KEY     your API key (required; never printed)
 *   BINANCE_PRODUCT     "usdm" (USD-M Futures, the default), "coinm"
 *                       (COIN-M Futures) or "pm" (Portfolio Margin)
 *   BINANCE_WS_API_URL  the WebSocket API endpoint (default: production)
 *   BINANCE_STREAM_URL  the user data stream base (default: production,
 *                       wss://fstream.binance.com/private)
 *   BINANCE_STREAM_FORM "query" to subscribe with <base>/ws?listenKey=<key>
 *                       instead of SUBSCRIBE on <base>/stream (the default,
 *                       what Binance's own SDKs do)
 *   BINANCE_REST_URL    the REST base (Portfolio Margin's listenKey goes
 *                       over REST; default: the product's)
 *   BINANCE_CA_FILE     a PEM file of extra CA certificates (optional)
 *   BINANCE_MAX_EVENTS  stop after this many events (optional; default: run
 *                       until interrupted)
 *
 * Build:
 *   cc -std=c99 -Iinclude examples/c/user_stream.c -Ltarget/release -lbinance_uds -o user_stream
 */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "binance_uds.h"

static volatile sig_atomic_t interrupted = 0;

static void on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
}

static void print_error(const char *what, binance_status status, const binance_error *err)
{
    fprintf(stderr, "%s failed: %s (API code %" PRId64 ", HTTP status %" PRId32 "): %s\n", what,
            binance_status_str(status), binance_error_api_code(err), binance_error_http_status(err),
            binance_error_message(err));
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *text = NULL;
    long size;

    if (f == NULL)
        return NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (size = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
        text = malloc((size_t)size + 1);
        if (text != NULL && fread(text, 1, (size_t)size, f) != (size_t)size) {
            free(text);
            text = NULL;
        }
        if (text != NULL)
            text[size] = '\0';
    }
    fclose(f);
    return text;
}

/* Prints one event: its type and time, and a few fields of the common ones. */
static void print_event(const binance_event *ev)
{
    const char *type = binance_event_type(ev);
    char *a = NULL;
    char *b = NULL;

    printf("%" PRId64 " %s", binance_event_time_ms(ev), type);
    if (strcmp(type, "ORDER_TRADE_UPDATE") == 0) {
        if (binance_event_get(ev, "/o/s", &a, NULL) == BINANCE_OK &&
            binance_event_get(ev, "/o/X", &b, NULL) == BINANCE_OK)
            printf(" %s %s", a, b);
    } else if (strcmp(type, "binance.stream_gap") == 0) {
        /* Events may have been lost: a real system resyncs over REST here. */
        if (binance_event_get(ev, "/reason", &a, NULL) == BINANCE_OK)
            printf(" reason=%s (resynchronise orders and positions)", a);
    } else {
        printf(" %s", binance_event_json(ev));
    }
    printf("\n");
    fflush(stdout);
    binance_string_free(a);
    binance_string_free(b);
}

int main(void)
{
    int exit_status = EXIT_FAILURE;
    binance_config *cfg = NULL;
    binance_client *client = NULL;
    binance_user_stream *stream = NULL;
    binance_event *ev = NULL;
    binance_error *err = NULL;
    char *pem = NULL;
    binance_status status;
    long max_events = 0, seen = 0;
    const char *api_key = getenv("BINANCE_API_KEY");
    const char *url = getenv("BINANCE_WS_API_URL");
    const char *stream_url = getenv("BINANCE_STREAM_URL");
    const char *form = getenv("BINANCE_STREAM_FORM");
    const char *product = getenv("BINANCE_PRODUCT");
    const char *rest_url = getenv("BINANCE_REST_URL");
    const char *ca_file = getenv("BINANCE_CA_FILE");
    const char *max = getenv("BINANCE_MAX_EVENTS");

    if (api_key == NULL || *api_key == '\0') {
        fprintf(stderr, "BINANCE_API_KEY is not set: export your Binance API key in it\n");
        goto cleanup;
    }
    if (max != NULL)
        max_events = strtol(max, NULL, 10);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);

    cfg = binance_config_new();
    if (cfg == NULL) {
        fprintf(stderr, "binance_config_new failed: out of memory\n");
        goto cleanup;
    }
    if ((status = binance_config_set_api_key(cfg, api_key, &err)) != BINANCE_OK) {
        print_error("binance_config_set_api_key", status, err);
        goto cleanup;
    }
    if (product != NULL && *product != '\0') {
        binance_product p = strcmp(product, "coinm") == 0 ? BINANCE_PRODUCT_COINM
                            : strcmp(product, "pm") == 0  ? BINANCE_PRODUCT_PORTFOLIO_MARGIN
                            : strcmp(product, "usdm") == 0 ? BINANCE_PRODUCT_USDM
                                                           : -1;
        if ((status = binance_config_set_product(cfg, p, &err)) != BINANCE_OK) {
            print_error("binance_config_set_product (BINANCE_PRODUCT)", status, err);
            goto cleanup;
        }
    }
    if (rest_url != NULL && *rest_url != '\0' &&
        (status = binance_config_set_rest_endpoint(cfg, rest_url, &err)) != BINANCE_OK) {
        print_error("binance_config_set_rest_endpoint", status, err);
        goto cleanup;
    }
    if (url != NULL && *url != '\0' &&
        (status = binance_config_set_endpoint(cfg, url, &err)) != BINANCE_OK) {
        print_error("binance_config_set_endpoint", status, err);
        goto cleanup;
    }
    if (stream_url != NULL && *stream_url != '\0' &&
        (status = binance_config_set_stream_endpoint(cfg, stream_url, &err)) != BINANCE_OK) {
        print_error("binance_config_set_stream_endpoint", status, err);
        goto cleanup;
    }
    if (form != NULL && strcmp(form, "query") == 0 &&
        (status = binance_config_set_stream_form(cfg, BINANCE_STREAM_FORM_QUERY, &err)) != BINANCE_OK) {
        print_error("binance_config_set_stream_form", status, err);
        goto cleanup;
    }
    if (ca_file != NULL && *ca_file != '\0') {
        pem = read_file(ca_file);
        if (pem == NULL) {
            perror(ca_file);
            goto cleanup;
        }
        if ((status = binance_config_add_root_certificate_pem(cfg, pem, &err)) != BINANCE_OK) {
            print_error("binance_config_add_root_certificate_pem", status, err);
            goto cleanup;
        }
    }
    if ((status = binance_client_new(cfg, &client, &err)) != BINANCE_OK) {
        print_error("binance_client_new", status, err);
        goto cleanup;
    }
    if ((status = binance_user_stream_open(client, &stream, &err)) != BINANCE_OK) {
        print_error("binance_user_stream_open", status, err);
        goto cleanup;
    }
    printf("stream open; waiting for events (Ctrl-C to stop)\n");
    fflush(stdout);

    while (!interrupted && (max_events <= 0 || seen < max_events)) {
        /* A short timeout keeps Ctrl-C responsive; timeouts are normal. */
        status = binance_user_stream_next(stream, 500, &ev, &err);
        if (status == BINANCE_TIMEOUT) {
            binance_error_free(err);
            err = NULL;
            continue;
        }
        if (status != BINANCE_OK) {
            print_error("binance_user_stream_next", status, err);
            goto cleanup;
        }
        print_event(ev);
        binance_event_free(ev);
        ev = NULL;
        seen++;
    }
    exit_status = EXIT_SUCCESS;

cleanup:
    binance_event_free(ev);
    /* Closing the stream leaves the listenKey to other users of the account. */
    binance_user_stream_close(stream);
    binance_client_free(client);
    binance_config_free(cfg);
    binance_error_free(err);
    free(pem);
    return exit_status;
}
