/*
 * threads.c: one client used from 8 threads at once while the exchange
 * shuffles the order of its answers. Every call succeeds with the account's
 * key, and all of them share one connection, opened by whichever thread
 * came first.
 */
#include "harness.h"

#include <pthread.h>

#define THREADS 8

struct worker {
    binance_client *client;
    pthread_barrier_t *go;
    int iterations;
    char *key;    /* from the first call, a start */
    int failures; /* counted here: the harness counter is not thread-safe */
};

static void report(struct worker *w, const char *what, binance_status st, binance_error *err)
{
    fprintf(stderr, "thread: %s: %s: %s\n", what, binance_status_str(st), binance_error_message(err));
    w->failures++;
}

static void *work(void *arg)
{
    struct worker *w = (struct worker *)arg;
    binance_error *err = NULL;
    binance_status st;
    int i;

    pthread_barrier_wait(w->go);
    /* All threads start on a client that has not connected yet. */
    st = binance_listen_key_start(w->client, &w->key, &err);
    if (st != BINANCE_OK || !is_listen_key(w->key)) {
        report(w, "start", st, err);
        binance_error_free(err);
        return NULL;
    }
    for (i = 0; i < w->iterations; i++) {
        char *key = NULL;
        st = binance_listen_key_keepalive(w->client, &key, &err);
        if (st != BINANCE_OK) {
            report(w, "keepalive", st, err);
            binance_error_free(err);
            err = NULL;
        } else if (key == NULL || strcmp(key, w->key) != 0) {
            fprintf(stderr, "thread: keepalive %d returned another key\n", i);
            w->failures++;
        }
        binance_string_free(key);
    }
    return NULL;
}

int main(void)
{
    binance_client *client = test_client();
    struct worker workers[THREADS];
    pthread_t threads[THREADS];
    pthread_barrier_t go;
    int iterations = test_scaled(100);
    int i, started = 0;
    char reply[16384];

    CHECK(control("{\"cmd\":\"shuffle\",\"max_delay_us\":2000}") == 0);
    pthread_barrier_init(&go, NULL, THREADS);
    for (i = 0; i < THREADS; i++) {
        workers[i].client = client;
        workers[i].go = &go;
        workers[i].iterations = iterations;
        workers[i].key = NULL;
        workers[i].failures = 0;
        if (pthread_create(&threads[i], NULL, work, &workers[i]) != 0) {
            fprintf(stderr, "pthread_create failed\n");
            return 2;
        }
        started++;
    }
    for (i = 0; i < started; i++)
        pthread_join(threads[i], NULL);
    pthread_barrier_destroy(&go);

    for (i = 0; i < THREADS; i++) {
        harness_failures += workers[i].failures;
        CHECK_STR_EQ(workers[i].key, workers[0].key);
    }
    for (i = 0; i < THREADS; i++)
        binance_string_free(workers[i].key);

    CHECK(control_reply("{\"cmd\":\"stats\"}", reply, sizeof reply) == 0);
    printf("stats: %s\n", reply);
    CHECK(json_number(reply, "api_connections_total") == 1);
    CHECK(json_number(reply, "userDataStream.start") == THREADS);
    CHECK(json_number(reply, "userDataStream.ping") == (long long)THREADS * iterations);
    CHECK(control("{\"cmd\":\"shuffle\",\"max_delay_us\":0}") == 0);

    binance_client_free(client);
    printf("%d threads x %d keepalives\n", THREADS, iterations);
    return harness_finish("threads");
}
