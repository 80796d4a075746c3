/*
 * main.c: a program built against an installed binance-uds (by CMake in
 * this directory, and with pkg-config by tests/packaging.sh).
 *
 * It prints the library's version and the header's, and fails when they
 * differ. With BINANCE_WS_API_URL and BINANCE_API_KEY set (and
 * BINANCE_CA_FILE for a private CA) it also starts and stops a listenKey
 * there, which exercises TLS through the linked system libraries.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "binance_uds.h"

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

/* Starts and stops a listenKey at url; 0 on success. */
static int listen_key_round_trip(const char *url, const char *api_key, const char *ca_file)
{
    int result = 1;
    binance_config *cfg = NULL;
    binance_client *client = NULL;
    binance_error *err = NULL;
    char *pem = NULL;
    char *listen_key = NULL;
    const char *step = "binance_config_new";

    cfg = binance_config_new();
    if (cfg == NULL)
        goto cleanup;
    step = "binance_config_set_api_key";
    if (binance_config_set_api_key(cfg, api_key, &err) != BINANCE_OK)
        goto cleanup;
    step = "binance_config_set_endpoint";
    if (binance_config_set_endpoint(cfg, url, &err) != BINANCE_OK)
        goto cleanup;
    if (ca_file != NULL && *ca_file != '\0') {
        step = "reading BINANCE_CA_FILE";
        pem = read_file(ca_file);
        if (pem == NULL)
            goto cleanup;
        step = "binance_config_add_root_certificate_pem";
        if (binance_config_add_root_certificate_pem(cfg, pem, &err) != BINANCE_OK)
            goto cleanup;
    }
    step = "binance_client_new";
    if (binance_client_new(cfg, &client, &err) != BINANCE_OK)
        goto cleanup;
    step = "binance_listen_key_start";
    if (binance_listen_key_start(client, &listen_key, &err) != BINANCE_OK)
        goto cleanup;
    step = "binance_listen_key_stop";
    if (binance_listen_key_stop(client, &err) != BINANCE_OK)
        goto cleanup;
    printf("listenKey started and stopped\n");
    result = 0;

cleanup:
    if (result != 0)
        fprintf(stderr, "%s failed: %s: %s\n", step,
                binance_status_str(binance_error_status(err)), binance_error_message(err));
    binance_string_free(listen_key);
    binance_client_free(client);
    binance_config_free(cfg);
    binance_error_free(err);
    free(pem);
    return result;
}

int main(void)
{
    char header_version[64];
    const char *library_version = binance_version();
    const char *url = getenv("BINANCE_WS_API_URL");
    const char *api_key = getenv("BINANCE_API_KEY");

    snprintf(header_version, sizeof header_version, "%d.%d.%d", BINANCE_VERSION_MAJOR,
             BINANCE_VERSION_MINOR, BINANCE_VERSION_PATCH);
    printf("binance_version() %s\n", library_version);
    printf("BINANCE_VERSION_MAJOR.MINOR.PATCH %s\n", header_version);
    printf("BINANCE_VERSION_STRING %s\n", BINANCE_VERSION_STRING);
    if (strcmp(library_version, header_version) != 0 ||
        strcmp(library_version, BINANCE_VERSION_STRING) != 0) {
        fprintf(stderr, "the library's version is not the header's\n");
        return EXIT_FAILURE;
    }

    if (url != NULL && *url != '\0' && api_key != NULL && *api_key != '\0' &&
        listen_key_round_trip(url, api_key, getenv("BINANCE_CA_FILE")) != 0)
        return EXIT_FAILURE;
    return EXIT_SUCCESS;
}
