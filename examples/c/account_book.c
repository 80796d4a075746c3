/*
 * account_book.c: keep a Binance USD-M Futures account's open orders and
 * positions in memory, from the user data stream, and print them after
 * every change (issue 11).
 *
 * The stream is opened with binance_config_set_account_resync: its first
 * event is binance.account_snapshot (the account's state over signed REST),
 * and after every binance.stream_gap (events may have been lost) another
 * snapshot follows. The book is replaced by each snapshot and updated by
 * ORDER_TRADE_UPDATE and ACCOUNT_UPDATE by README.md's merge rule
 * ("Resynchronising after a gap"): an update older than what the book
 * holds for that order or position (o.T, resp. T, before its updateTime)
 * is skipped; every other is applied, its fields being absolute values.
 * A FILLED, CANCELED, EXPIRED or EXPIRED_IN_MATCH order leaves the book, as
 * does a position whose amount becomes 0.
 *
 * Fields are read with binance_event_get and JSON pointers ("/o/X",
 * "/open_orders/0/orderId"): no JSON library needed.
 *
 * Environment:
 *   BINANCE_API_KEY          your API key (required; never printed)
 *   BINANCE_SECRET_KEY       its HMAC-SHA256 secret key (never printed), or
 *   BINANCE_PRIVATE_KEY_FILE a file with its Ed25519 private key (PKCS#8 PEM)
 *   BINANCE_WS_API_URL       the WebSocket API endpoint (default: production)
 *   BINANCE_STREAM_URL       the user data stream base (default: production)
 *   BINANCE_REST_URL         the REST base URL (default: production,
 *                            https://fapi.binance.com)
 *   BINANCE_STREAM_FORM      "query" for <base>/ws?listenKey=<key>
 *   BINANCE_CA_FILE          a PEM file of extra CA certificates (optional)
 *   BINANCE_MAX_EVENTS       stop after this many events (optional; default:
 *                            run until interrupted)
 *
 * Build:
 *   cc -std=c99 -Iinclude examples/c/account_book.c -Ltarget/release -lbinance_uds -o account_book
 */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "binance_uds.h"

#define MAX_ORDERS 256
#define MAX_POSITIONS 64
#define FIELD 40 /* room for a symbol, a status, a decimal */

struct order {
    char order_id[FIELD];
    char symbol[FIELD];
    char side[FIELD];
    char status[FIELD];
    char price[FIELD];
    char orig_qty[FIELD];
    char executed_qty[FIELD];
    int64_t update_time;
};

struct position {
    char symbol[FIELD];
    char position_side[FIELD];
    char amount[FIELD];
    char entry_price[FIELD];
    int64_t update_time;
};

struct book {
    struct order orders[MAX_ORDERS];
    size_t n_orders;
    struct position positions[MAX_POSITIONS];
    size_t n_positions;
};

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

/* Overwrites a secret before it is freed (volatile: not optimised away). */
static void wipe_and_free(char *s)
{
    if (s != NULL) {
        volatile char *p = s;
        while (*p != '\0')
            *p++ = '\0';
        free(s);
    }
}

/* Copies the value at `pointer` into buf (cut to fit); 0 when the event has
   no such value. */
static int get(const binance_event *ev, const char *pointer, char *buf, size_t size)
{
    char *value = NULL;

    if (binance_event_get(ev, pointer, &value, NULL) != BINANCE_OK)
        return 0;
    snprintf(buf, size, "%s", value);
    binance_string_free(value);
    return 1;
}

/* The value at "<prefix><field>", e.g. "/open_orders/3" + "/orderId". */
static int get_at(const binance_event *ev, const char *prefix, const char *field, char *buf, size_t size)
{
    char pointer[128];

    snprintf(pointer, sizeof pointer, "%s%s", prefix, field);
    return get(ev, pointer, buf, size);
}

static int64_t get_ms(const binance_event *ev, const char *prefix, const char *field)
{
    char buf[FIELD];

    return get_at(ev, prefix, field, buf, sizeof buf) ? (int64_t)strtoll(buf, NULL, 10) : 0;
}

static int is_final(const char *status)
{
    return strcmp(status, "FILLED") == 0 || strcmp(status, "CANCELED") == 0 ||
           strcmp(status, "EXPIRED") == 0 || strcmp(status, "EXPIRED_IN_MATCH") == 0;
}

static struct order *find_order(struct book *b, const char *order_id)
{
    size_t i;

    for (i = 0; i < b->n_orders; i++)
        if (strcmp(b->orders[i].order_id, order_id) == 0)
            return &b->orders[i];
    return NULL;
}

static struct position *find_position(struct book *b, const char *symbol, const char *side)
{
    size_t i;

    for (i = 0; i < b->n_positions; i++)
        if (strcmp(b->positions[i].symbol, symbol) == 0 && strcmp(b->positions[i].position_side, side) == 0)
            return &b->positions[i];
    return NULL;
}

static void remove_order(struct book *b, struct order *o)
{
    *o = b->orders[--b->n_orders];
}

static void remove_position(struct book *b, struct position *p)
{
    *p = b->positions[--b->n_positions];
}

/* A new order slot, or NULL (and a warning) when the book is full. */
static struct order *add_order(struct book *b, const char *order_id)
{
    if (b->n_orders == MAX_ORDERS) {
        fprintf(stderr, "the book is full (%d orders): order %s not kept\n", MAX_ORDERS, order_id);
        return NULL;
    }
    memset(&b->orders[b->n_orders], 0, sizeof b->orders[0]);
    return &b->orders[b->n_orders++];
}

static struct position *add_position(struct book *b, const char *symbol)
{
    if (b->n_positions == MAX_POSITIONS) {
        fprintf(stderr, "the book is full (%d positions): %s not kept\n", MAX_POSITIONS, symbol);
        return NULL;
    }
    memset(&b->positions[b->n_positions], 0, sizeof b->positions[0]);
    return &b->positions[b->n_positions++];
}

/* binance.account_snapshot: the book becomes the snapshot's open orders and
   (non-zero) positions. Arrays are read by index until the index is past
   the end (binance_event_get then fails). */
static void replace_from_snapshot(struct book *b, const binance_event *ev)
{
    char prefix[64];
    char id[FIELD];
    unsigned i;

    b->n_orders = 0;
    b->n_positions = 0;
    for (i = 0;; i++) {
        struct order *o;

        snprintf(prefix, sizeof prefix, "/open_orders/%u", i);
        if (!get_at(ev, prefix, "/orderId", id, sizeof id))
            break;
        if ((o = add_order(b, id)) == NULL)
            continue;
        snprintf(o->order_id, sizeof o->order_id, "%s", id);
        get_at(ev, prefix, "/symbol", o->symbol, sizeof o->symbol);
        get_at(ev, prefix, "/side", o->side, sizeof o->side);
        get_at(ev, prefix, "/status", o->status, sizeof o->status);
        get_at(ev, prefix, "/price", o->price, sizeof o->price);
        get_at(ev, prefix, "/origQty", o->orig_qty, sizeof o->orig_qty);
        get_at(ev, prefix, "/executedQty", o->executed_qty, sizeof o->executed_qty);
        o->update_time = get_ms(ev, prefix, "/updateTime");
    }
    for (i = 0;; i++) {
        char symbol[FIELD], amount[FIELD];
        struct position *p;

        snprintf(prefix, sizeof prefix, "/positions/%u", i);
        if (!get_at(ev, prefix, "/symbol", symbol, sizeof symbol))
            break;
        if (!get_at(ev, prefix, "/positionAmt", amount, sizeof amount) || strtod(amount, NULL) == 0.0)
            continue; /* no position */
        if ((p = add_position(b, symbol)) == NULL)
            continue;
        snprintf(p->symbol, sizeof p->symbol, "%s", symbol);
        snprintf(p->amount, sizeof p->amount, "%s", amount);
        get_at(ev, prefix, "/positionSide", p->position_side, sizeof p->position_side);
        get_at(ev, prefix, "/entryPrice", p->entry_price, sizeof p->entry_price);
        p->update_time = get_ms(ev, prefix, "/updateTime");
    }
}

/* ORDER_TRADE_UPDATE: returns 1 if the book changed. */
static int apply_order_update(struct book *b, const binance_event *ev)
{
    char id[FIELD], status[FIELD];
    int64_t t = get_ms(ev, "/o", "/T");
    struct order *o;

    if (!get(ev, "/o/i", id, sizeof id) || !get(ev, "/o/X", status, sizeof status))
        return 0;
    o = find_order(b, id);
    if (o != NULL && o->update_time > t)
        return 0; /* the book is newer: already reflected */
    if (is_final(status)) {
        if (o == NULL)
            return 0;
        remove_order(b, o);
        return 1;
    }
    if (o == NULL && (o = add_order(b, id)) == NULL)
        return 0;
    snprintf(o->order_id, sizeof o->order_id, "%s", id);
    snprintf(o->status, sizeof o->status, "%s", status);
    get(ev, "/o/s", o->symbol, sizeof o->symbol);
    get(ev, "/o/S", o->side, sizeof o->side);
    get(ev, "/o/p", o->price, sizeof o->price);
    get(ev, "/o/q", o->orig_qty, sizeof o->orig_qty);
    get(ev, "/o/z", o->executed_qty, sizeof o->executed_qty);
    o->update_time = t;
    return 1;
}

/* ACCOUNT_UPDATE: each position in a.P; returns 1 if the book changed. */
static int apply_account_update(struct book *b, const binance_event *ev)
{
    int64_t t = get_ms(ev, "", "/T");
    char prefix[64];
    int changed = 0;
    unsigned i;

    for (i = 0;; i++) {
        char symbol[FIELD], side[FIELD], amount[FIELD];
        struct position *p;

        snprintf(prefix, sizeof prefix, "/a/P/%u", i);
        if (!get_at(ev, prefix, "/s", symbol, sizeof symbol))
            break;
        if (!get_at(ev, prefix, "/ps", side, sizeof side) || !get_at(ev, prefix, "/pa", amount, sizeof amount))
            continue;
        p = find_position(b, symbol, side);
        if (p != NULL && p->update_time > t)
            continue; /* the book is newer */
        if (strtod(amount, NULL) == 0.0) {
            if (p != NULL) {
                remove_position(b, p);
                changed = 1;
            }
            continue;
        }
        if (p == NULL && (p = add_position(b, symbol)) == NULL)
            continue;
        snprintf(p->symbol, sizeof p->symbol, "%s", symbol);
        snprintf(p->position_side, sizeof p->position_side, "%s", side);
        snprintf(p->amount, sizeof p->amount, "%s", amount);
        get_at(ev, prefix, "/ep", p->entry_price, sizeof p->entry_price);
        p->update_time = t;
        changed = 1;
    }
    return changed;
}

static void print_book(const struct book *b, const char *after)
{
    size_t i;

    printf("book after %s: %lu open orders, %lu positions\n", after, (unsigned long)b->n_orders,
           (unsigned long)b->n_positions);
    for (i = 0; i < b->n_orders; i++) {
        const struct order *o = &b->orders[i];
        printf("  order %s %s %s %s price=%s origQty=%s executedQty=%s updateTime=%" PRId64 "\n", o->order_id,
               o->symbol, o->side, o->status, o->price, o->orig_qty, o->executed_qty, o->update_time);
    }
    for (i = 0; i < b->n_positions; i++) {
        const struct position *p = &b->positions[i];
        printf("  position %s %s positionAmt=%s entryPrice=%s updateTime=%" PRId64 "\n", p->symbol,
               p->position_side, p->amount, p->entry_price, p->update_time);
    }
    printf("end of book\n");
    fflush(stdout);
}

/* Applies one event to the book and says what happened. */
static void handle_event(struct book *b, const binance_event *ev)
{
    const char *type = binance_event_type(ev);
    char a[256], c[256];
    int changed = 0;

    if (binance_event_is_library(ev) && strcmp(type, "binance.account_snapshot") == 0) {
        replace_from_snapshot(b, ev);
        changed = 1;
    } else if (binance_event_is_library(ev) && strcmp(type, "binance.stream_gap") == 0) {
        if (!get(ev, "/reason", a, sizeof a))
            strcpy(a, "?");
        printf("gap: reason=%s: events may have been lost; the account snapshot follows\n", a);
    } else if (binance_event_is_library(ev) && strcmp(type, "binance.account_snapshot_failed") == 0) {
        if (!get(ev, "/status", a, sizeof a))
            strcpy(a, "?");
        if (!get(ev, "/message", c, sizeof c))
            c[0] = '\0';
        printf("snapshot failed: %s (code %" PRId64 "): %s; retried in %" PRId64 " ms\n", a, get_ms(ev, "", "/code"),
               c, get_ms(ev, "", "/retry_in_ms"));
    } else if (!binance_event_is_library(ev) && strcmp(type, "ORDER_TRADE_UPDATE") == 0) {
        if (!(changed = apply_order_update(b, ev)))
            printf("event %s E=%" PRId64 ": the book is unchanged\n", type, binance_event_time_ms(ev));
    } else if (!binance_event_is_library(ev) && strcmp(type, "ACCOUNT_UPDATE") == 0) {
        if (!(changed = apply_account_update(b, ev)))
            printf("event %s E=%" PRId64 ": no position changed\n", type, binance_event_time_ms(ev));
    } else {
        printf("event %s E=%" PRId64 "\n", type, binance_event_time_ms(ev));
    }
    if (changed)
        print_book(b, type);
    fflush(stdout);
}

int main(void)
{
    int exit_status = EXIT_FAILURE;
    binance_config *cfg = NULL;
    binance_client *client = NULL;
    binance_user_stream *stream = NULL;
    binance_event *ev = NULL;
    binance_error *err = NULL;
    char *ca_pem = NULL;
    char *key_pem = NULL;
    struct book *book = NULL;
    binance_status status;
    long max_events = 0, seen = 0;
    const char *api_key = getenv("BINANCE_API_KEY");
    const char *secret = getenv("BINANCE_SECRET_KEY");
    const char *key_file = getenv("BINANCE_PRIVATE_KEY_FILE");
    const char *url = getenv("BINANCE_WS_API_URL");
    const char *stream_url = getenv("BINANCE_STREAM_URL");
    const char *rest_url = getenv("BINANCE_REST_URL");
    const char *form = getenv("BINANCE_STREAM_FORM");
    const char *ca_file = getenv("BINANCE_CA_FILE");
    const char *max = getenv("BINANCE_MAX_EVENTS");

    if (api_key == NULL || *api_key == '\0') {
        fprintf(stderr, "BINANCE_API_KEY is not set: export your Binance API key in it\n");
        goto cleanup;
    }
    if ((secret == NULL || *secret == '\0') && (key_file == NULL || *key_file == '\0')) {
        fprintf(stderr, "neither BINANCE_SECRET_KEY nor BINANCE_PRIVATE_KEY_FILE is set: the account "
                        "snapshot is signed with one of them\n");
        goto cleanup;
    }
    if (max != NULL)
        max_events = strtol(max, NULL, 10);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);

    book = calloc(1, sizeof *book);
    cfg = binance_config_new();
    if (book == NULL || cfg == NULL) {
        fprintf(stderr, "out of memory\n");
        goto cleanup;
    }
    if ((status = binance_config_set_api_key(cfg, api_key, &err)) != BINANCE_OK) {
        print_error("binance_config_set_api_key", status, err);
        goto cleanup;
    }
    if (secret != NULL && *secret != '\0') {
        if ((status = binance_config_set_secret_key(cfg, secret, &err)) != BINANCE_OK) {
            print_error("binance_config_set_secret_key", status, err);
            goto cleanup;
        }
    } else {
        key_pem = read_file(key_file);
        if (key_pem == NULL) {
            perror(key_file);
            goto cleanup;
        }
        if ((status = binance_config_set_private_key_pem(cfg, key_pem, &err)) != BINANCE_OK) {
            print_error("binance_config_set_private_key_pem", status, err);
            goto cleanup;
        }
    }
    if (url != NULL && *url != '\0' && (status = binance_config_set_endpoint(cfg, url, &err)) != BINANCE_OK) {
        print_error("binance_config_set_endpoint", status, err);
        goto cleanup;
    }
    if (stream_url != NULL && *stream_url != '\0' &&
        (status = binance_config_set_stream_endpoint(cfg, stream_url, &err)) != BINANCE_OK) {
        print_error("binance_config_set_stream_endpoint", status, err);
        goto cleanup;
    }
    if (rest_url != NULL && *rest_url != '\0' &&
        (status = binance_config_set_rest_endpoint(cfg, rest_url, &err)) != BINANCE_OK) {
        print_error("binance_config_set_rest_endpoint", status, err);
        goto cleanup;
    }
    if (form != NULL && strcmp(form, "query") == 0 &&
        (status = binance_config_set_stream_form(cfg, BINANCE_STREAM_FORM_QUERY, &err)) != BINANCE_OK) {
        print_error("binance_config_set_stream_form", status, err);
        goto cleanup;
    }
    if (ca_file != NULL && *ca_file != '\0') {
        ca_pem = read_file(ca_file);
        if (ca_pem == NULL) {
            perror(ca_file);
            goto cleanup;
        }
        if ((status = binance_config_add_root_certificate_pem(cfg, ca_pem, &err)) != BINANCE_OK) {
            print_error("binance_config_add_root_certificate_pem", status, err);
            goto cleanup;
        }
    }
    /* The snapshot first, and again after every gap, in the stream's order. */
    if ((status = binance_config_set_account_resync(cfg, 1, &err)) != BINANCE_OK) {
        print_error("binance_config_set_account_resync", status, err);
        goto cleanup;
    }
    if ((status = binance_client_new(cfg, &client, &err)) != BINANCE_OK) {
        print_error("binance_client_new", status, err);
        goto cleanup;
    }
    if ((status = binance_user_stream_open(client, &stream, &err)) != BINANCE_OK) {
        print_error("binance_user_stream_open", status, err);
        goto cleanup;
    }
    printf("stream open; the account snapshot comes first (Ctrl-C to stop)\n");
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
        handle_event(book, ev);
        binance_event_free(ev);
        ev = NULL;
        seen++;
    }
    exit_status = EXIT_SUCCESS;

cleanup:
    binance_event_free(ev);
    binance_user_stream_close(stream);
    binance_client_free(client);
    binance_config_free(cfg); /* wipes the keys it copied */
    binance_error_free(err);
    wipe_and_free(key_pem);
    free(ca_pem);
    free(book);
    return exit_status;
}
