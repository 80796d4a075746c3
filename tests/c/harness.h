/*
 * harness.h: what the C tests share. CHECK macros that print file:line and
 * count failures, the environment the runner (tests/c_api.rs) gives each
 * program, and a client for the local exchange's control port.
 *
 * Environment: BINANCE_WS_API_URL, BINANCE_CA_FILE, BINANCE_TEST_CONTROL
 * ("127.0.0.1:PORT"), BINANCE_API_KEY, optionally BINANCE_SECRET_KEY (the
 * HMAC secret; a default otherwise), BINANCE_REST_URL and
 * BINANCE_PRIVATE_KEY_FILE for the programs that sign requests, and
 * optionally BINANCE_TEST_SCALE (a factor for iteration counts, below 1
 * under valgrind).
 *
 * Written in the common subset of C99 and C++17: one program is also
 * compiled as C++. Every helper is `static inline` so that a program that
 * does not use one gets no unused-function warning.
 */
#ifndef BINANCE_TEST_HARNESS_H
#define BINANCE_TEST_HARNESS_H

#if !defined(__cplusplus) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L /* sockets, nanosleep, pthreads under -std=c99 */
#endif

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "binance_uds.h"
#include "blocked.h"

/* The API key the runner gives every program: recognisable, so that a test
 * can assert it never shows up in an error message. */
#define TEST_API_KEY_DEFAULT "TESTKEYabcdef0123456789"
/* The same for the HMAC secret key. */
#define TEST_SECRET_KEY_DEFAULT "TESTSECRETzyxw9876543210"

static int harness_failures = 0;

/* A non-NULL pointer that is not a valid object: out parameters are pre-set
 * to it to check the library overwrites them (with NULL on failure). */
static char harness_dummy_byte;
#define DUMMY(type) ((type *)(void *)&harness_dummy_byte)

static inline const char *test_api_key(void)
{
    const char *k = getenv("BINANCE_API_KEY");
    return (k != NULL && *k != '\0') ? k : TEST_API_KEY_DEFAULT;
}

static inline const char *test_secret_key(void)
{
    const char *k = getenv("BINANCE_SECRET_KEY");
    return (k != NULL && *k != '\0') ? k : TEST_SECRET_KEY_DEFAULT;
}

static inline const char *test_env(const char *name)
{
    const char *v = getenv(name);
    if (v == NULL || *v == '\0') {
        fprintf(stderr, "harness: environment variable %s is not set (run through `cargo test --test c_api`)\n", name);
        exit(2);
    }
    return v;
}

/* BINANCE_TEST_SCALE times n, at least 1. */
static inline int test_scaled(int n)
{
    const char *s = getenv("BINANCE_TEST_SCALE");
    double f = (s != NULL && *s != '\0') ? strtod(s, NULL) : 1.0;
    int v = (int)(n * f);
    return v < 1 ? 1 : v;
}

static inline int64_t now_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static inline void sleep_ms(long ms)
{
    struct timespec ts;
    ts.tv_sec = ms / 1000;
    ts.tv_nsec = (ms % 1000) * 1000000L;
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* ---- checks ---------------------------------------------------------- */

static inline void check_(const char *file, int line, const char *expr, int ok)
{
    if (!ok) {
        fprintf(stderr, "%s:%d: CHECK failed: %s\n", file, line, expr);
        harness_failures++;
    }
}

#define CHECK(cond) check_(__FILE__, __LINE__, #cond, (cond) ? 1 : 0)

static inline void check_str_eq_(const char *file, int line, const char *expr, const char *a, const char *b)
{
    if (a == NULL || b == NULL || strcmp(a, b) != 0) {
        fprintf(stderr, "%s:%d: CHECK failed: %s (\"%s\" vs \"%s\")\n", file, line, expr,
                a ? a : "(null)", b ? b : "(null)");
        harness_failures++;
    }
}

#define CHECK_STR_EQ(a, b) check_str_eq_(__FILE__, __LINE__, #a " == " #b, (a), (b))

/* Whether `haystack` contains `key`, or its first 8 characters. */
static inline int leaks_key(const char *haystack, const char *key)
{
    char prefix[9];
    if (strstr(haystack, key) != NULL)
        return 1;
    if (strlen(key) >= 8) {
        memcpy(prefix, key, 8);
        prefix[8] = '\0';
        return strstr(haystack, prefix) != NULL;
    }
    return 0;
}

/* Whether `haystack` contains the API key, or its first 8 characters. */
static inline int leaks_api_key(const char *haystack)
{
    return leaks_key(haystack, test_api_key());
}

/* Whether `haystack` contains the secret key, or its first 8 characters. */
static inline int leaks_secret_key(const char *haystack)
{
    return leaks_key(haystack, test_secret_key());
}

/* Checks a call's status and its error object against each other: an error
 * on failure (same status, a message that is not empty and contains neither
 * the API key nor the secret key), none on success. Returns 1 when all of
 * that holds. */
static inline int check_status_(const char *file, int line, const char *expr, binance_status st,
                                binance_status expected, const binance_error *err)
{
    int ok = 1;
    if (st != expected) {
        fprintf(stderr, "%s:%d: %s\n    expected %s, got %s: %s (api code %lld, http status %d)\n", file,
                line, expr, binance_status_str(expected), binance_status_str(st), binance_error_message(err),
                (long long)binance_error_api_code(err), (int)binance_error_http_status(err));
        ok = 0;
    } else if (st == BINANCE_OK && err != NULL) {
        fprintf(stderr, "%s:%d: %s\n    succeeded but left *out_err non-NULL\n", file, line, expr);
        ok = 0;
    } else if (st != BINANCE_OK) {
        if (err == NULL) {
            fprintf(stderr, "%s:%d: %s\n    failed with %s but set no error object\n", file, line, expr,
                    binance_status_str(st));
            ok = 0;
        } else {
            const char *msg = binance_error_message(err);
            if (binance_error_status(err) != st) {
                fprintf(stderr, "%s:%d: %s\n    returned %s but the error says %s\n", file, line, expr,
                        binance_status_str(st), binance_status_str(binance_error_status(err)));
                ok = 0;
            }
            if (msg == NULL || *msg == '\0') {
                fprintf(stderr, "%s:%d: %s\n    error message is empty\n", file, line, expr);
                ok = 0;
            } else if (leaks_api_key(msg)) {
                fprintf(stderr, "%s:%d: %s\n    error message contains the API key\n", file, line, expr);
                ok = 0;
            } else if (leaks_secret_key(msg)) {
                fprintf(stderr, "%s:%d: %s\n    error message contains the secret key\n", file, line, expr);
                ok = 0;
            }
        }
    }
    if (!ok)
        harness_failures++;
    return ok;
}

/* CHECK_STATUS(call, expected, err): runs `call` (which writes to &err) and
 * checks it. `err` is left for the test to inspect and free. */
#define CHECK_STATUS(call, expected, err)                                                                    \
    do {                                                                                                     \
        binance_status check_st_ = (call);                                                                   \
        check_status_(__FILE__, __LINE__, #call, check_st_, (expected), (err));                              \
    } while (0)

/* CHECK_OK(call, err): the call succeeds; an unexpected error is freed. */
#define CHECK_OK(call, err)                                                                                  \
    do {                                                                                                     \
        CHECK_STATUS(call, BINANCE_OK, err);                                                                 \
        binance_error_free(err);                                                                             \
        (err) = NULL;                                                                                        \
    } while (0)

/* CHECK_FAIL(call, expected, err, needle): the call fails with `expected`
 * and a message containing `needle` (unless NULL); then `err` is freed. */
#define CHECK_FAIL(call, expected, err, needle)                                                              \
    do {                                                                                                     \
        CHECK_STATUS(call, expected, err);                                                                   \
        CHECK_MESSAGE(err, needle);                                                                          \
        binance_error_free(err);                                                                             \
        (err) = NULL;                                                                                        \
    } while (0)

static inline void check_message_(const char *file, int line, const binance_error *err, const char *needle)
{
    const char *msg = binance_error_message(err);
    if (needle != NULL && err != NULL && strstr(msg, needle) == NULL) {
        fprintf(stderr, "%s:%d: error message does not mention \"%s\": %s\n", file, line, needle, msg);
        harness_failures++;
    }
}

#define CHECK_MESSAGE(err, needle) check_message_(__FILE__, __LINE__, (err), (needle))

/* Prints the tally; the program's exit status. */
static inline int harness_finish(const char *program)
{
    if (harness_failures != 0) {
        fprintf(stderr, "%s: %d check(s) failed\n", program, harness_failures);
        return 1;
    }
    printf("%s: all checks passed\n", program);
    return 0;
}

/* ---- files and configs -------------------------------------------- */

/* The whole file as a NUL-terminated string (free with free()), or NULL. */
static inline char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t len = 0, cap = 0, n;
    if (f == NULL)
        return NULL;
    for (;;) {
        if (cap - len < 4096) {
            char *grown;
            cap = cap * 2 + 4096;
            grown = (char *)realloc(buf, cap + 1);
            if (grown == NULL) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = grown;
        }
        n = fread(buf + len, 1, cap - len, f);
        len += n;
        if (n == 0)
            break;
    }
    fclose(f);
    buf[len] = '\0';
    return buf;
}

/* A config for `url` with the test API key, the exchange's CA if `with_ca`,
 * and the given timeouts. Exits on failure: nothing can be tested then. */
static inline binance_config *test_config_for(const char *url, int with_ca, uint32_t connect_ms,
                                              uint32_t request_ms)
{
    binance_error *err = NULL;
    binance_config *cfg = binance_config_new();
    int ok = cfg != NULL;
    if (ok)
        ok = binance_config_set_api_key(cfg, test_api_key(), &err) == BINANCE_OK;
    if (ok)
        ok = binance_config_set_endpoint(cfg, url, &err) == BINANCE_OK;
    if (ok)
        ok = binance_config_set_timeouts_ms(cfg, connect_ms, request_ms, &err) == BINANCE_OK;
    if (ok && with_ca) {
        char *pem = read_file(test_env("BINANCE_CA_FILE"));
        ok = pem != NULL && binance_config_add_root_certificate_pem(cfg, pem, &err) == BINANCE_OK;
        free(pem);
    }
    if (!ok) {
        fprintf(stderr, "harness: building the test config failed: %s\n",
                err ? binance_error_message(err) : "(reading BINANCE_CA_FILE?)");
        binance_error_free(err);
        binance_config_free(cfg);
        exit(2);
    }
    return cfg;
}

/* The usual config: the exchange from the environment, trusted. */
static inline binance_config *test_config(void)
{
    return test_config_for(test_env("BINANCE_WS_API_URL"), 1, 10000, 10000);
}

/* A client for `cfg` (which is freed). Exits on failure. */
static inline binance_client *test_client_from(binance_config *cfg)
{
    binance_client *client = NULL;
    binance_error *err = NULL;
    if (binance_client_new(cfg, &client, &err) != BINANCE_OK) {
        fprintf(stderr, "harness: binance_client_new failed: %s\n", binance_error_message(err));
        binance_error_free(err);
        binance_config_free(cfg);
        exit(2);
    }
    binance_config_free(cfg);
    return client;
}

static inline binance_client *test_client(void)
{
    return test_client_from(test_config());
}

/* ---- sockets and the control port -------------------------------------- */

/* A loopback address; port 0 picks a free one. */
static inline struct sockaddr_in loopback_addr(int port)
{
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return a;
}

/* A TCP socket on 127.0.0.1 that listens but is never accepted from nor
 * written to: connections complete (the kernel's backlog) and then hear
 * nothing. Returns the fd (close it when done); its port in *port. */
static inline int silent_listener(int *port)
{
    struct sockaddr_in a = loopback_addr(0);
    socklen_t len = sizeof a;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 16) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        perror("harness: silent listener");
        exit(2);
    }
    *port = ntohs(a.sin_port);
    return fd;
}

/* Accepts one connection on a listening socket (e.g. a silent listener's):
 * the accepted socket once a client has connected, -1 (printing why) if
 * none did within limit_ms. A test uses it to know that another thread is
 * inside a call that connects, before acting on that call. */
static inline int accept_within(int fd, int limit_ms)
{
    struct pollfd p;
    int n;
    p.fd = fd;
    p.events = POLLIN;
    p.revents = 0;
    do {
        n = poll(&p, 1, limit_ms);
    } while (n < 0 && errno == EINTR);
    if (n <= 0) {
        fprintf(stderr, "harness: no connection to accept within %d ms\n", limit_ms);
        return -1;
    }
    return accept(fd, NULL, NULL);
}

/* A port on 127.0.0.1 where nothing listens (bound, then closed). */
static inline int closed_port(void)
{
    int port;
    int fd = silent_listener(&port);
    close(fd);
    return port;
}

/* Sends one JSON line to the control port and reads the one-line reply into
 * reply (NUL-terminated, newline removed). Returns 0 if the reply says
 * "ok":true, -1 otherwise (printing why). */
static inline int control_reply(const char *json_line, char *reply, size_t reply_size)
{
    const char *addr = test_env("BINANCE_TEST_CONTROL");
    const char *colon = strrchr(addr, ':');
    struct sockaddr_in a;
    struct timeval tv;
    size_t len = 0, sent = 0, line_len = strlen(json_line);
    const char *ok;
    int fd;

    if (reply_size > 0)
        reply[0] = '\0';
    if (colon == NULL) {
        fprintf(stderr, "harness: BINANCE_TEST_CONTROL is not HOST:PORT: %s\n", addr);
        return -1;
    }
    a = loopback_addr(atoi(colon + 1));
    fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        perror("harness: connecting to the control port");
        if (fd >= 0)
            close(fd);
        return -1;
    }
    /* Bounded, so a broken exchange fails the test instead of hanging it. */
    tv.tv_sec = 60;
    tv.tv_usec = 0;
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    while (sent < line_len + 1) {
        const char *p = sent < line_len ? json_line + sent : "\n";
        size_t n = sent < line_len ? line_len - sent : 1;
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0) {
            perror("harness: writing to the control port");
            close(fd);
            return -1;
        }
        sent += (size_t)w;
    }
    while (len + 1 < reply_size) {
        ssize_t r = recv(fd, reply + len, reply_size - 1 - len, 0);
        if (r <= 0)
            break;
        len += (size_t)r;
        reply[len] = '\0';
        if (memchr(reply, '\n', len) != NULL)
            break;
    }
    close(fd);
    reply[len] = '\0';
    if (len > 0 && reply[len - 1] == '\n')
        reply[len - 1] = '\0';
    /* "ok" : true, with any white space. */
    ok = strstr(reply, "\"ok\"");
    if (ok != NULL) {
        ok += 4;
        while (*ok == ' ' || *ok == ':')
            ok++;
        if (strncmp(ok, "true", 4) == 0)
            return 0;
    }
    fprintf(stderr, "harness: control %s -> %s\n", json_line, len ? reply : "(no reply)");
    return -1;
}

/* Sends one JSON line to the control port; 0 if the reply has "ok":true. */
static inline int control(const char *json_line)
{
    char reply[4096];
    return control_reply(json_line, reply, sizeof reply);
}

/* The number after "key": in a JSON text (first occurrence), or -1. */
static inline long long json_number(const char *json, const char *key)
{
    char quoted[256];
    const char *p;
    snprintf(quoted, sizeof quoted, "\"%s\"", key);
    p = strstr(json, quoted);
    if (p == NULL)
        return -1;
    p += strlen(quoted);
    while (*p == ' ' || *p == ':')
        p++;
    if (!isdigit((unsigned char)*p) && *p != '-')
        return -1;
    return strtoll(p, NULL, 10);
}

/* A counter from the exchange's stats (e.g. "api_connections_total", or a
 * method name for its request count); -1 if absent or unreachable. */
static inline long long exchange_stat(const char *key)
{
    char reply[16384];
    if (control_reply("{\"cmd\":\"stats\"}", reply, sizeof reply) != 0)
        return -1;
    return json_number(reply, key);
}

/* Waits until the exchange has received more than `seen` requests of
 * `method`; 0 once it has, -1 after 60 s. */
static inline int wait_for_request(const char *method, long long seen)
{
    int64_t deadline = now_ms() + 60000;
    while (now_ms() < deadline) {
        long long n = exchange_stat(method);
        if (n > seen)
            return 0;
        sleep_ms(5);
    }
    fprintf(stderr, "harness: the exchange never received %s\n", method);
    return -1;
}

/* Whether s is a plausible listenKey: 1 to 256 letters and digits. */
static inline int is_listen_key(const char *s)
{
    size_t n = 0;
    if (s == NULL || s == DUMMY(char))
        return 0;
    for (; s[n] != '\0'; n++)
        if (!isalnum((unsigned char)s[n]))
            return 0;
    return n >= 1 && n <= 256;
}

#endif /* BINANCE_TEST_HARNESS_H */
