/* fuzz.h -- what the libFuzzer harnesses share: an invariant check that aborts
 * (libFuzzer then reports the input as a crash), a reader that takes bytes,
 * integers and strings from the fuzz input without ever reading past it, and
 * a config parser for the harnesses' fixed configs.
 * Header-only (static inline): each harness is one translation unit. */
#ifndef RL_FUZZ_H
#define RL_FUZZ_H

#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* An invariant: on failure, say which and abort (a crash for libFuzzer). */
#define RL_FUZZ_CHECK(cond)                                                                        \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond);           \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* The rest of the fuzz input. Every take returns 0 / nothing once it is used up. */
struct rl_fuzz_in {
    const uint8_t *p;
    size_t n;
};

static inline uint8_t rl_fuzz_u8(struct rl_fuzz_in *in)
{
    if (in->n == 0) return 0;
    in->n--;
    return *in->p++;
}

/* An int64: a tag byte below 0xc0 picks one of the values where rounding and
 * overflow happen; otherwise the next 8 bytes, raw. */
static inline int64_t rl_fuzz_i64(struct rl_fuzz_in *in)
{
    /* rounding edges of ms -> s, int64 limits, a Unix time in ms, 1 m, 1 d */
    /* clang-format off */
    static const int64_t edge[] = {
        0, 1, -1, 999, 1000, 1001, -999, -1000, -1001, 1999,
        INT64_MAX, INT64_MIN, INT64_MAX - 999, INT64_MIN + 1,
        1763851234000, 1763851222000, 60000, 86400000};
    /* clang-format on */
    uint8_t tag = rl_fuzz_u8(in);
    uint64_t v = 0;

    if (tag < 0xc0) return edge[tag % (sizeof(edge) / sizeof(edge[0]))];
    for (int i = 0; i < 8; i++)
        v = v << 8 | rl_fuzz_u8(in);
    return (int64_t)v;
}

/* A string: a length byte (cut to max - 1), then that many bytes of any value,
 * NUL-terminated into dst[max]. Returns the length taken (embedded NULs make
 * strlen(dst) shorter). */
static inline size_t rl_fuzz_str(struct rl_fuzz_in *in, char *dst, size_t max)
{
    size_t len = rl_fuzz_u8(in);

    if (len > max - 1) len = max - 1;
    if (len > in->n) len = in->n;
    memcpy(dst, in->p, len);
    dst[len] = '\0';
    in->p += len;
    in->n -= len;
    return len;
}

/* A fixed config of the harness: it must parse, or the harness is wrong. */
static inline struct rl_config *rl_fuzz_config(const char *json)
{
    struct rl_config *c = NULL;
    struct rl_error err;

    if (rl_config_parse(json, strlen(json), "fuzz", &c, &err) != RL_OK) {
        fprintf(stderr, "fixed config does not parse: %s\n", err.message);
        abort();
    }
    return c;
}

/* The largest config: 32 policies (bit 31 of a policy mask) of 63-byte names,
 * every scope, every third one shadow, a 32-byte key prefix. */
static inline struct rl_config *rl_fuzz_config_max(void)
{
    static const char *const scopes[] = {"caller", "key", "org", "ip"};
    char json[16384];
    size_t w = (size_t)snprintf(json, sizeof(json),
                                "{\"redis\":{\"url\":\"redis://h\",\"prefix\":\"%s\"},"
                                "\"policies\":[",
                                "0123456789abcdefghijklmnopqrstuv");

    for (int i = 0; i < RL_MAX_POLICIES; i++)
        w += (size_t)snprintf(json + w, sizeof(json) - w,
                              "%s{\"name\":\"p%02d-%.59s\",\"scope\":\"%s\",\"limit\":%d,"
                              "\"window\":\"%ds\",\"shadow\":%s}",
                              i ? "," : "", i,
                              "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_.-0123456",
                              scopes[i % 4], i + 1, i + 1, i % 3 == 0 ? "true" : "false");
    snprintf(json + w, sizeof(json) - w, "]}");
    return rl_fuzz_config(json);
}

/* True when s[0..len) holds a byte outside lo..hi. */
static inline bool rl_fuzz_outside(const char *s, size_t len, unsigned lo, unsigned hi)
{
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < lo || (unsigned char)s[i] > hi) return true;
    return false;
}

/* An rl_error after a failure: a code, a NUL-terminated non-empty message and
 * a NUL-terminated path inside their arrays (the caller filled err with 0xaa
 * first, so a missing NUL shows). */
static inline void rl_fuzz_check_error(const struct rl_error *err, int rc)
{
    RL_FUZZ_CHECK(rc < 0 && err->code == rc);
    RL_FUZZ_CHECK(memchr(err->message, '\0', sizeof(err->message)) != NULL);
    RL_FUZZ_CHECK(err->message[0] != '\0');
    RL_FUZZ_CHECK(memchr(err->path, '\0', sizeof(err->path)) != NULL);
    RL_FUZZ_CHECK(err->http_status >= 400 && err->http_status <= 599);
}

#endif
