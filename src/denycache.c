/* denycache.c -- the local over-limit cache (see denycache.h): a direct-mapped
 * table of fixed-size slots, one of RL_DC_STRIPES mutexes per slot group.
 * Knows nothing of HTTP or Redis. Invariant: a slot whose token_mono_ms has
 * passed is never reported. */
#include "denycache.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define RL_DC_STRIPES 64 /* power of two */

struct rl_dc_slot {
    uint64_t hash;
    uint16_t len; /* 0: empty */
    struct rl_denycache_hit hit;
    char key[RL_DENYCACHE_KEY_MAX];
};

struct rl_denycache {
    size_t mask; /* slots - 1 */
    pthread_mutex_t locks[RL_DC_STRIPES];
    struct rl_dc_slot *slots;
};

struct rl_denycache *rl_denycache_new(size_t entries)
{
    struct rl_denycache *dc;
    size_t n = 1;

    if (entries == 0) return NULL;
    while (n < entries)
        n <<= 1;
    if ((dc = calloc(1, sizeof(*dc))) == NULL) return NULL;
    if ((dc->slots = calloc(n, sizeof(*dc->slots))) == NULL) {
        free(dc);
        return NULL;
    }
    dc->mask = n - 1;
    for (int i = 0; i < RL_DC_STRIPES; i++)
        pthread_mutex_init(&dc->locks[i], NULL);
    return dc;
}

void rl_denycache_free(struct rl_denycache *dc)
{
    if (dc == NULL) return;
    for (int i = 0; i < RL_DC_STRIPES; i++)
        pthread_mutex_destroy(&dc->locks[i]);
    free(dc->slots);
    free(dc);
}

/* The slot of a key, with its stripe locked; NULL (nothing locked) when the
 * key cannot be cached. */
static struct rl_dc_slot *rl_dc_lock(struct rl_denycache *dc, const char *key, size_t len,
                                     uint64_t *h)
{
    size_t i;

    if (dc == NULL || len == 0 || len > RL_DENYCACHE_KEY_MAX) return NULL;
    *h = rl_fnv1a(RL_FNV_INIT, key, len); /* picks the slot; keys are compared */
    i = (size_t)*h & dc->mask;
    pthread_mutex_lock(&dc->locks[i & (RL_DC_STRIPES - 1)]);
    return &dc->slots[i];
}

static void rl_dc_unlock(struct rl_denycache *dc, struct rl_dc_slot *s)
{
    size_t i = (size_t)(s - dc->slots);

    pthread_mutex_unlock(&dc->locks[i & (RL_DC_STRIPES - 1)]);
}

static bool rl_dc_same(const struct rl_dc_slot *s, uint64_t h, const char *key, size_t len)
{
    return s->len == len && s->hash == h && memcmp(s->key, key, len) == 0;
}

void rl_denycache_put(struct rl_denycache *dc, const char *key, size_t len,
                      const struct rl_denycache_hit *hit)
{
    uint64_t h;
    struct rl_dc_slot *s;

    if (hit->token_mono_ms <= rl_mono_ms() || (s = rl_dc_lock(dc, key, len, &h)) == NULL) return;
    s->hash = h;
    s->len = (uint16_t)len;
    s->hit = *hit;
    memcpy(s->key, key, len);
    rl_dc_unlock(dc, s);
}

bool rl_denycache_get(struct rl_denycache *dc, const char *key, size_t len, int64_t now_ms,
                      struct rl_denycache_hit *hit)
{
    uint64_t h;
    struct rl_dc_slot *s = rl_dc_lock(dc, key, len, &h);
    bool found = false;

    if (s == NULL) return false;
    if (rl_dc_same(s, h, key, len)) {
        if (now_ms < s->hit.token_mono_ms) {
            *hit = s->hit;
            found = true;
        } else {
            s->len = 0; /* a token is back: the store decides again */
        }
    }
    rl_dc_unlock(dc, s);
    return found;
}

void rl_denycache_forget(struct rl_denycache *dc, const char *key, size_t len)
{
    uint64_t h;
    struct rl_dc_slot *s = rl_dc_lock(dc, key, len, &h);

    if (s == NULL) return;
    if (rl_dc_same(s, h, key, len)) s->len = 0;
    rl_dc_unlock(dc, s);
}

void rl_denycache_clear(struct rl_denycache *dc)
{
    if (dc == NULL) return;
    for (size_t i = 0; i <= dc->mask; i++) {
        pthread_mutex_lock(&dc->locks[i & (RL_DC_STRIPES - 1)]);
        dc->slots[i].len = 0;
        pthread_mutex_unlock(&dc->locks[i & (RL_DC_STRIPES - 1)]);
    }
}
