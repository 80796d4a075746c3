/*
 * poll_stream.c: a user data stream driven by a poll() loop, the way a
 * program with its own event loop (epoll, kqueue, libuv, asyncio) uses the
 * library: no thread of yours blocks in the library. The stream hands out
 * a descriptor that is readable exactly while events are queued; the loop
 * waits on it beside its own descriptors and takes every queued event with
 * binance_user_stream_try_next until it says BINANCE_TIMEOUT (none left).
 * The stream owns the descriptor: the program never reads or closes it.
 *
 * Environment:
 *   BINANCE_API_KEY     your API key (required; never printed)
 *   BINANCE_WS_API_URL  the WebSocket API endpoint (default: production)
 *   BINANCE_STREAM_URL  the user data stream base (default: production)
 *   BINANCE_CA_FILE     a PEM file of extra CA certificates (optional)
 *   BINANCE_MAX_EVENTS  stop after this many events (optional; default: run
 *                       until interrupted)
 *
 * Build (POSIX; on Windows the descriptor is a SOCKET for WSAPoll/select):
 *   cc -std=c99 -Iinclude examples/c/poll_stream.c -Ltarget/release -lbinance_uds -o poll_stream
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
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

/* Takes every queued event. 1 to go on, 0 when the stream ended or failed. */
static int take_events(binance_user_stream *stream, long max_events, long *seen)
{
    binance_event *ev = NULL;
    binance_error *err = NULL;
    binance_status status;

    while (max_events <= 0 || *seen < max_events) {
        status = binance_user_stream_try_next(stream, &ev, &err);
        if (status == BINANCE_TIMEOUT) {
            /* Nothing left: back to the loop. */
            binance_error_free(err);
            return 1;
        }
        if (status != BINANCE_OK) {
            print_error("binance_user_stream_try_next", status, err);
            binance_error_free(err);
            return 0;
        }
        print_event(ev);
        binance_event_free(ev);
        (*seen)++;
    }
    return 1;
}

int main(void)
{
    int exit_status = EXIT_FAILURE;
    binance_config *cfg = NULL;
    binance_client *client = NULL;
    binance_user_stream *stream = NULL;
    binance_error *err = NULL;
    char *pem = NULL;
    binance_status status;
    int64_t fd = -1;
    long max_events = 0, seen = 0;
    const char *api_key = getenv("BINANCE_API_KEY");
    const char *url = getenv("BINANCE_WS_API_URL");
    const char *stream_url = getenv("BINANCE_STREAM_URL");
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
    if ((status = binance_user_stream_fd(stream, &fd, &err)) != BINANCE_OK) {
        print_error("binance_user_stream_fd", status, err);
        goto cleanup;
    }
    printf("stream open; polling its descriptor (Ctrl-C to stop)\n");
    fflush(stdout);

    while (!interrupted && (max_events <= 0 || seen < max_events)) {
        /* A real loop adds its own descriptors (sockets, timers) here. */
        struct pollfd fds[1];
        int n;

        fds[0].fd = (int)fd;
        fds[0].events = POLLIN;
        fds[0].revents = 0;
        /* The timeout is only for Ctrl-C: no event waits for it. */
        n = poll(fds, 1, 500);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            perror("poll");
            goto cleanup;
        }
        if (n > 0 && (fds[0].revents & POLLIN) != 0 && !take_events(stream, max_events, &seen))
            goto cleanup;
    }
    exit_status = EXIT_SUCCESS;

cleanup:
    /* Closes the descriptor too: take it out of your loop before this. */
    binance_user_stream_close(stream);
    binance_client_free(client);
    binance_config_free(cfg);
    binance_error_free(err);
    free(pem);
    return exit_status;
}
