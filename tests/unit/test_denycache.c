/* test_denycache.c -- the local over-limit cache as a data structure: an
 * entry answers until its token returns and not one millisecond later; keys
 * are compared whole; forget, clear, slot replacement, the off switch. */
#include "denycache.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

static struct rl_denycache_hit hit_at(int64_t token, int64_t full)
{
    struct rl_denycache_hit h = {token, full, 1763851234000LL};
    return h;
}

Test(denycache, zero_entries_is_off)
{
    cr_assert_null(rl_denycache_new(0));
    rl_denycache_free(NULL); /* a no-op */
}

Test(denycache, answers_until_the_token_returns_not_after)
{
    struct rl_denycache *dc = rl_denycache_new(16);
    int64_t now = rl_mono_ms();
    struct rl_denycache_hit h = hit_at(now + 5000, now + 9000), got;

    rl_denycache_put(dc, "rl:p:key:a", 10, &h);
    cr_assert(rl_denycache_get(dc, "rl:p:key:a", 10, now, &got));
    cr_assert_eq(got.token_mono_ms, now + 5000);
    cr_assert_eq(got.full_mono_ms, now + 9000);
    cr_assert_eq(got.full_unix_ms, 1763851234000LL);
    cr_assert(rl_denycache_get(dc, "rl:p:key:a", 10, now + 4999, &got), "1 ms before");
    cr_assert_not(rl_denycache_get(dc, "rl:p:key:a", 10, now + 5000, &got), "at the moment");
    /* the expired entry was dropped: an earlier clock does not revive it */
    cr_assert_not(rl_denycache_get(dc, "rl:p:key:a", 10, now, &got));
    rl_denycache_free(dc);
}

Test(denycache, past_deadlines_are_not_stored)
{
    struct rl_denycache *dc = rl_denycache_new(16);
    int64_t now = rl_mono_ms();
    struct rl_denycache_hit h = hit_at(now - 1, now + 100), got;

    rl_denycache_put(dc, "k", 1, &h);
    cr_assert_not(rl_denycache_get(dc, "k", 1, now - 10, &got));
    rl_denycache_free(dc);
}

Test(denycache, keys_compare_whole)
{
    struct rl_denycache *dc = rl_denycache_new(1024);
    int64_t now = rl_mono_ms();
    struct rl_denycache_hit h = hit_at(now + 60000, now + 60000), got;

    rl_denycache_put(dc, "rl:p:key:ab", 11, &h);
    cr_assert_not(rl_denycache_get(dc, "rl:p:key:a", 10, now, &got));
    cr_assert_not(rl_denycache_get(dc, "rl:p:key:abc", 12, now, &got));
    cr_assert_not(rl_denycache_get(dc, "rl:p:key:aB", 11, now, &got));
    cr_assert(rl_denycache_get(dc, "rl:p:key:ab", 11, now, &got));
    rl_denycache_free(dc);
}

Test(denycache, too_long_keys_are_never_cached)
{
    struct rl_denycache *dc = rl_denycache_new(16);
    int64_t now = rl_mono_ms();
    struct rl_denycache_hit h = hit_at(now + 60000, now + 60000), got;
    char key[RL_DENYCACHE_KEY_MAX + 1];

    memset(key, 'x', sizeof(key));
    rl_denycache_put(dc, key, sizeof(key), &h);
    cr_assert_not(rl_denycache_get(dc, key, sizeof(key), now, &got));
    rl_denycache_put(dc, key, RL_DENYCACHE_KEY_MAX, &h);
    cr_assert(rl_denycache_get(dc, key, RL_DENYCACHE_KEY_MAX, now, &got));
    rl_denycache_free(dc);
}

Test(denycache, forget_and_clear)
{
    struct rl_denycache *dc = rl_denycache_new(64);
    int64_t now = rl_mono_ms();
    struct rl_denycache_hit h = hit_at(now + 60000, now + 60000), got;
    char key[32];

    for (int i = 0; i < 20; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        rl_denycache_put(dc, key, strlen(key), &h);
    }
    rl_denycache_forget(dc, "k3", 2);
    cr_assert_not(rl_denycache_get(dc, "k3", 2, now, &got));
    rl_denycache_forget(dc, "k33", 3); /* not there: nothing else goes */
    int present = 0;
    for (int i = 0; i < 20; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        present += rl_denycache_get(dc, key, strlen(key), now, &got);
    }
    /* 64 slots, 20 keys: some may share a slot (the newer wins), never more */
    cr_assert(present >= 10 && present <= 19, "%d present", present);
    rl_denycache_clear(dc);
    for (int i = 0; i < 20; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        cr_assert_not(rl_denycache_get(dc, key, strlen(key), now, &got));
    }
    rl_denycache_free(dc);
}

/* Two keys in one slot: the newer replaces the older (bounded memory), and
 * the older is simply not known any more (the store decides it again). */
Test(denycache, a_slot_holds_the_newest)
{
    struct rl_denycache *dc = rl_denycache_new(1);
    int64_t now = rl_mono_ms();
    struct rl_denycache_hit h = hit_at(now + 60000, now + 60000), got;

    rl_denycache_put(dc, "a", 1, &h);
    rl_denycache_put(dc, "b", 1, &h);
    cr_assert_not(rl_denycache_get(dc, "a", 1, now, &got));
    cr_assert(rl_denycache_get(dc, "b", 1, now, &got));
    rl_denycache_free(dc);
}
