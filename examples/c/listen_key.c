/*
 * listen_key.c: obtain a Binance USD-M Futures listenKey, keep it alive,
 * and close it, through the WebSocket API.
 *
 * Environment:
 *   BINANCE_API_KEY     your API key (required; never printed)
 *   BINANCE_WS_API_URL  the WebSocket API endpoint (default: production)
 *   BINANCE_CA_FILE     a PEM file of extra CA certificates to trust
 *                       (optional; e.g. the local exchange's)
 *
 * Build:
 *   cc -std=c99 -Iinclude examples/c/listen_key.c -Ltarget/release -lbinance_uds -o listen_key
 *
 * Note: stop closes the account's user data stream for every connection
 * and process that uses this API key.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "binance_uds.h"

/* "…" in UTF-8: the listenKey is a credential for the account's events, so
 * only its first characters are shown. */
#define ELLIPSIS "\xe2\x80\xa6"

static void print_error(const char *what, binance_status status, const binance_error *err)
{
    fprintf(stderr, "%s failed: %s (API code %" PRId64 ", HTTP status %" PRId32 "): %s\n", what,
            binance_status_str(status), binance_error_api_code(err), binance_error_http_status(err),
            binance_error_message(err));
}

/* The whole file as a NUL-terminated string (free with free()), or NULL. */
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

int main(void)
{
    int exit_status = EXIT_FAILURE;
    binance_config *cfg = NULL;
    binance_client *client = NULL;
    binance_error *err = NULL;
    char *pem = NULL;
    char *listen_key = NULL;
    char *kept_alive = NULL;
    binance_status status;
    const char *api_key = getenv("BINANCE_API_KEY");
    const char *url = getenv("BINANCE_WS_API_URL");
    const char *ca_file = getenv("BINANCE_CA_FILE");

    if (api_key == NULL || *api_key == '\0') {
        fprintf(stderr, "BINANCE_API_KEY is not set: export your Binance API key in it\n");
        goto cleanup;
    }
    if (url == NULL || *url == '\0')
        url = BINANCE_WS_API_URL_PRODUCTION;

    printf("binance-uds %s, endpoint %s\n", binance_version(), url);

    cfg = binance_config_new();
    if (cfg == NULL) {
        fprintf(stderr, "binance_config_new failed: out of memory\n");
        goto cleanup;
    }
    status = binance_config_set_api_key(cfg, api_key, &err);
    if (status != BINANCE_OK) {
        print_error("binance_config_set_api_key", status, err);
        goto cleanup;
    }
    status = binance_config_set_endpoint(cfg, url, &err);
    if (status != BINANCE_OK) {
        print_error("binance_config_set_endpoint", status, err);
        goto cleanup;
    }
    if (ca_file != NULL && *ca_file != '\0') {
        pem = read_file(ca_file);
        if (pem == NULL) {
            perror(ca_file);
            goto cleanup;
        }
        status = binance_config_add_root_certificate_pem(cfg, pem, &err);
        if (status != BINANCE_OK) {
            print_error("binance_config_add_root_certificate_pem", status, err);
            goto cleanup;
        }
    }

    status = binance_client_new(cfg, &client, &err);
    if (status != BINANCE_OK) {
        print_error("binance_client_new", status, err);
        goto cleanup;
    }

    status = binance_listen_key_start(client, &listen_key, &err);
    if (status != BINANCE_OK) {
        print_error("binance_listen_key_start", status, err);
        goto cleanup;
    }
    printf("start: listenKey %.4s" ELLIPSIS "\n", listen_key);

    status = binance_listen_key_keepalive(client, &kept_alive, &err);
    if (status != BINANCE_OK) {
        print_error("binance_listen_key_keepalive", status, err);
        goto cleanup;
    }
    /* The server answers with the key it extended: if it is not the one we
     * hold, the new one is the one to use. */
    printf("keepalive: listenKey %.4s" ELLIPSIS " extended by 60 minutes%s\n", kept_alive,
           strcmp(kept_alive, listen_key) == 0 ? "" : " (a new key: use this one)");

    status = binance_listen_key_stop(client, &err);
    if (status != BINANCE_OK) {
        print_error("binance_listen_key_stop", status, err);
        goto cleanup;
    }
    printf("stop: listenKey closed\n");
    exit_status = EXIT_SUCCESS;

cleanup:
    binance_string_free(kept_alive);
    binance_string_free(listen_key);
    binance_client_free(client);
    binance_config_free(cfg);
    binance_error_free(err);
    free(pem);
    return exit_status;
}
