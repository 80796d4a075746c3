/*
 * blocked.h: waits until another thread of this process is asleep inside a
 * blocking call, before a test acts on it (wakes it, or closes what it
 * waits on). A fixed sleep cannot know that: under valgrind or on a loaded
 * machine the thread may not have reached the call yet, and then a test of
 * "close wakes a blocked reader" passes without a wake-up, or calls into a
 * freed stream (undefined behaviour by the header's own contract).
 *
 * How: the thread announces its kernel thread id (blocked_self_id) just
 * before the call; the waiter (wait_blocked) reads the system call that
 * thread sleeps in from Linux's /proc/self/task/<tid>/syscall until it has
 * been futex (what a condition variable waits with) or poll (what a
 * reader leading its connection sleeps in) without a break for
 * BLOCKED_STABLE_MS. The locks taken on the way into the call are
 * uncontended and held for microseconds, so a thread seen in futex that
 * long is waiting in the call itself. Linux only, like these tests.
 *
 * Shared by the C tests (harness.h) and the C++ test (hpp_test.cpp), so in
 * the common subset of C99 and C++17; every function is static inline.
 */
#ifndef BINANCE_TEST_BLOCKED_H
#define BINANCE_TEST_BLOCKED_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* How long a thread must stay asleep in futex to count as blocked. */
#define BLOCKED_STABLE_MS 100

/* The calling thread's kernel id (what /proc/self/task lists); -1 if this
 * system has no /proc/thread-self (Linux before 3.17, not Linux). */
static inline long blocked_self_id(void)
{
    char link[128];
    const char *slash;
    ssize_t n = readlink("/proc/thread-self", link, sizeof link - 1);
    if (n <= 0)
        return -1;
    link[n] = '\0'; /* "<pid>/task/<tid>" */
    slash = strrchr(link, '/');
    return slash != NULL ? strtol(slash + 1, NULL, 10) : -1;
}

/* The number of the system call thread `tid` sleeps in; -1 while it runs
 * (or sleeps outside a system call); -2 if it cannot be read. */
static inline long blocked_syscall_of(long tid)
{
    char path[64], word[32];
    long nr = -2;
    FILE *f;
    snprintf(path, sizeof path, "/proc/self/task/%ld/syscall", tid);
    f = fopen(path, "r");
    if (f == NULL)
        return -2;
    if (fscanf(f, "%31s", word) == 1)
        nr = strcmp(word, "running") == 0 ? -1 : strtol(word, NULL, 10);
    fclose(f);
    return nr;
}

static inline int blocked_is_futex(long nr)
{
#ifdef SYS_futex
    if (nr == SYS_futex)
        return 1;
#endif
#ifdef SYS_futex_time64
    if (nr == SYS_futex_time64)
        return 1;
#endif
#ifdef SYS_futex_wait
    if (nr == SYS_futex_wait)
        return 1;
#endif
    /* A reader leading its stream's connection sleeps in poll(2) on the
     * socket instead (src/engine/net/lead.rs). */
#ifdef SYS_poll
    if (nr == SYS_poll)
        return 1;
#endif
#ifdef SYS_ppoll
    if (nr == SYS_ppoll)
        return 1;
#endif
#ifdef SYS_ppoll_time64
    if (nr == SYS_ppoll_time64)
        return 1;
#endif
    return 0;
}

static inline long long blocked_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits until thread `tid` (from blocked_self_id) has slept in futex for
 * BLOCKED_STABLE_MS in a row: 0 then; -1 (printing why) if that did not
 * happen within `limit_ms`, or /proc cannot tell. */
static inline int wait_blocked(long tid, long limit_ms)
{
    long long deadline = blocked_now_ms() + limit_ms, since = -1;
    struct timespec pause;
    long nr = -2;
    if (tid < 0) {
        fprintf(stderr, "blocked.h: no thread id (is /proc/thread-self missing?)\n");
        return -1;
    }
    while (blocked_now_ms() < deadline) {
        nr = blocked_syscall_of(tid);
        if (nr == -2) {
            fprintf(stderr, "blocked.h: cannot read /proc/self/task/%ld/syscall\n", tid);
            return -1;
        }
        if (!blocked_is_futex(nr))
            since = -1;
        else if (since < 0)
            since = blocked_now_ms();
        else if (blocked_now_ms() - since >= BLOCKED_STABLE_MS)
            return 0;
        pause.tv_sec = 0;
        pause.tv_nsec = 5 * 1000000L;
        while (nanosleep(&pause, &pause) != 0 && errno == EINTR) {
        }
    }
    fprintf(stderr, "blocked.h: thread %ld was not blocked in futex within %ld ms (last system call %ld)\n",
            tid, limit_ms, nr);
    return -1;
}

#endif /* BINANCE_TEST_BLOCKED_H */
