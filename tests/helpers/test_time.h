/* test_time.h -- the monotonic clock and a sleep for tests (milliseconds). */
#ifndef RL_TEST_TIME_H
#define RL_TEST_TIME_H

#include <stdint.h>
#include <time.h>

static inline int64_t rl_test_mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Sleeps the whole time, even when a signal interrupts it. */
static inline void rl_test_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) != 0)
        ;
}

#endif
