/* denycache.h -- the local over-limit cache: buckets the store said are empty,
 * kept until their next token returns, so a caller far over its limit is
 * answered without a Redis round trip (deny-heavy load costs no Redis work).
 * Fixed size, allocated once; direct-mapped (a newer entry replaces an older
 * one in its slot); thread-safe (striped locks). Knows nothing of HTTP.
 * Invariant: an entry never outlives the moment the store said a token
 * returns. Deadlines are kept on the local monotonic clock, counted from an
 * instant no later than the one the store read its own clock at (the request's
 * submission), so delay and clock skew can only end an entry early. */
#ifndef RL_DENYCACHE_H
#define RL_DENYCACHE_H

#include "rl.h"

/* Keys longer than this are not cached (they go to the store every time). */
#define RL_DENYCACHE_KEY_MAX 192

struct rl_denycache;

/* What a hit knows: when (monotonic ms) the next token returns and when the
 * bucket is full again (monotonic ms, and the store's Unix ms). */
struct rl_denycache_hit {
    int64_t token_mono_ms;
    int64_t full_mono_ms;
    int64_t full_unix_ms;
};

/* A cache of `entries` slots (rounded up to a power of two); NULL when
 * entries is 0 (off) or on ENOMEM. */
struct rl_denycache *rl_denycache_new(size_t entries);
void rl_denycache_free(struct rl_denycache *dc); /* NULL is a no-op */

/* Remember that bucket `key` has no whole token until hit->token_mono_ms.
 * Ignored when that moment is not in the future or the key is too long. */
void rl_denycache_put(struct rl_denycache *dc, const char *key, size_t len,
                      const struct rl_denycache_hit *hit);

/* true, with *hit filled, when `key` is known empty at monotonic now_ms.
 * An expired entry is dropped. */
bool rl_denycache_get(struct rl_denycache *dc, const char *key, size_t len, int64_t now_ms,
                      struct rl_denycache_hit *hit);

/* Drop `key` (an admin reset, or the store found tokens in it). */
void rl_denycache_forget(struct rl_denycache *dc, const char *key, size_t len);

/* Drop everything (a reload may have raised limits). */
void rl_denycache_clear(struct rl_denycache *dc);

#endif
