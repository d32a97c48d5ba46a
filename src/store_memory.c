/* store_memory.c -- the embedded store: buckets and idempotency records in a
 * chained hash table in process memory, one mutex around each whole decision
 * so a check is all or nothing. Time is the local clock (rl_now_ms).
 * Knows nothing of Redis or HTTP; the math is bucket.c's.
 * Invariant: a denied check writes nothing; a full bucket has no entry. */
#include "bucket.h"
#include "log.h"
#include "store.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RL_MEM_INIT_SLOTS 1024 /* power of two */
#define RL_MEM_SWEEP      8    /* slots examined per submit */
#define RL_MEM_IDEM_MAX   (3 * RL_ID_MAX + 64 + 8 + 17)

enum rl_mem_kind { RL_MEM_BUCKET, RL_MEM_IDEM };

struct rl_mem_entry {
    struct rl_mem_entry *next;
    uint64_t hash;
    enum rl_mem_kind kind;
    int64_t expire_ms;            /* Unix ms: a bucket is full again / a record is stale */
    struct rl_bucket_state st;    /* RL_MEM_BUCKET */
    uint64_t fingerprint;         /* RL_MEM_IDEM */
    struct rl_decision *decision; /* RL_MEM_IDEM, owned */
    size_t klen;
    char key[];
};

struct rl_store_memory {
    struct rl_store base; /* first: a struct rl_store * is one of these */
    pthread_mutex_t lock;
    struct rl_mem_entry **slots;
    size_t nslots; /* power of two */
    size_t count;
    size_t sweep_at; /* next slot the incremental sweep examines */
    bool stopped;    /* rl_mem_stop: every decision is RL_EUNAVAIL */
};

static int rl_mem_submit(struct rl_store *s, struct rl_job *job);
static bool rl_mem_ready(struct rl_store *s);
static void rl_mem_stop(struct rl_store *s);
/* Nothing runs in the background: only refuse what comes next. */
static void rl_mem_stop(struct rl_store *s)
{
    struct rl_store_memory *m = (struct rl_store_memory *)s;

    pthread_mutex_lock(&m->lock);
    m->stopped = true;
    pthread_mutex_unlock(&m->lock);
}

static void rl_mem_close(struct rl_store *s);

static const struct rl_store_ops rl_mem_ops = {"memory", rl_mem_submit, rl_mem_ready, rl_mem_stop,
                                               rl_mem_close};

/*-----------------------------------------------------------------------------
 * The table
 *---------------------------------------------------------------------------*/

static uint64_t rl_mem_hash(const char *key, size_t len)
{
    return rl_fnv1a(RL_FNV_INIT, key, len);
}

static struct rl_mem_entry *rl_mem_find(struct rl_store_memory *m, const char *key, size_t len,
                                        uint64_t h)
{
    struct rl_mem_entry *e = m->slots[h & (m->nslots - 1)];

    for (; e != NULL; e = e->next)
        if (e->hash == h && e->klen == len && memcmp(e->key, key, len) == 0) return e;
    return NULL;
}

static void rl_mem_entry_free(struct rl_mem_entry *e)
{
    free(e->decision);
    free(e);
}

/* Unlink and free the entry for key, if any. */
static void rl_mem_delete(struct rl_store_memory *m, const char *key, size_t len, uint64_t h)
{
    struct rl_mem_entry **pp = &m->slots[h & (m->nslots - 1)];

    for (; *pp != NULL; pp = &(*pp)->next) {
        struct rl_mem_entry *e = *pp;

        if (e->hash == h && e->klen == len && memcmp(e->key, key, len) == 0) {
            *pp = e->next;
            rl_mem_entry_free(e);
            m->count--;
            return;
        }
    }
}

/* Double the table when it is 3/4 full. Failing to grow is not an error:
 * the chains just get longer. */
static void rl_mem_grow(struct rl_store_memory *m)
{
    size_t n = m->nslots * 2;
    struct rl_mem_entry **slots;

    if (m->count < m->nslots / 4 * 3) return;
    slots = calloc(n, sizeof(*slots));
    if (slots == NULL) return;
    for (size_t i = 0; i < m->nslots; i++) {
        struct rl_mem_entry *e = m->slots[i], *next;

        for (; e != NULL; e = next) {
            next = e->next;
            e->next = slots[e->hash & (n - 1)];
            slots[e->hash & (n - 1)] = e;
        }
    }
    free(m->slots);
    m->slots = slots;
    m->nslots = n;
    m->sweep_at = 0;
}

/* The entry for key, created (zeroed, of `kind`) when missing; NULL on ENOMEM. */
static struct rl_mem_entry *rl_mem_upsert(struct rl_store_memory *m, const char *key, size_t len,
                                          enum rl_mem_kind kind)
{
    uint64_t h = rl_mem_hash(key, len);
    struct rl_mem_entry *e = rl_mem_find(m, key, len, h);
    size_t i;

    if (e != NULL) return e;
    rl_mem_grow(m);
    e = calloc(1, sizeof(*e) + len + 1);
    if (e == NULL) return NULL;
    e->hash = h;
    e->kind = kind;
    e->klen = len;
    memcpy(e->key, key, len);
    i = h & (m->nslots - 1);
    e->next = m->slots[i];
    m->slots[i] = e;
    m->count++;
    return e;
}

/* Incremental expiry, nginx limit_req style: each decision examines at most
 * RL_MEM_SWEEP slots round-robin and frees the entries whose bucket is full
 * again (or whose idempotency record is stale). The work per decision stays
 * bounded and needs no timer thread; an idle key is found within
 * nslots / RL_MEM_SWEEP decisions. Nothing depends on an entry being gone in
 * time: a stale bucket reads as full anyway, and lookups check record expiry. */
static void rl_mem_sweep(struct rl_store_memory *m, int64_t now)
{
    for (int k = 0; k < RL_MEM_SWEEP; k++) {
        struct rl_mem_entry **pp = &m->slots[m->sweep_at];

        while (*pp != NULL) {
            struct rl_mem_entry *e = *pp;

            if (e->expire_ms <= now) {
                *pp = e->next;
                rl_mem_entry_free(e);
                m->count--;
            } else {
                pp = &e->next;
            }
        }
        m->sweep_at = (m->sweep_at + 1) & (m->nslots - 1);
    }
}

/*-----------------------------------------------------------------------------
 * Decisions
 *---------------------------------------------------------------------------*/

/* The state of a bucket key (zero, i.e. full, when there is none). */
static struct rl_bucket_state rl_mem_state(struct rl_store_memory *m, const char *key, size_t len)
{
    struct rl_bucket_state zero = {0, 0, 0, 0};
    struct rl_mem_entry *e = rl_mem_find(m, key, len, rl_mem_hash(key, len));

    return e != NULL && e->kind == RL_MEM_BUCKET ? e->st : zero;
}

static void rl_mem_outcome(struct rl_bucket_outcome *o, const struct rl_bucket_result *r)
{
    o->allowed = r->allowed;
    o->remaining = r->remaining;
    o->reset_ms = r->reset_ms;
    o->retry_ms = r->retry_ms;
}

/* Write the new state of every bucket that had the tokens, or of none when
 * memory runs out: the entries are made first (a new entry reads as full),
 * then written. A bucket full after the charge loses its entry. */
static int rl_mem_charge(struct rl_store_memory *m, const struct rl_job *job,
                         char (*keys)[RL_KEY_MAX], const size_t *klen,
                         const struct rl_bucket_state *next, const struct rl_bucket_result *res,
                         int64_t now)
{
    struct rl_mem_entry *e[RL_MAX_POLICIES];
    int64_t ttl[RL_MAX_POLICIES];

    for (size_t i = 0; i < job->n; i++) {
        e[i] = NULL;
        ttl[i] = res[i].allowed ? rl_bucket_ttl_ms(&job->refs[i].lim, &next[i], now) : 0;
        if (ttl[i] > 0 && (e[i] = rl_mem_upsert(m, keys[i], klen[i], RL_MEM_BUCKET)) == NULL)
            return RL_ENOMEM;
    }
    for (size_t i = 0; i < job->n; i++) {
        if (!res[i].allowed) continue;
        if (ttl[i] == 0) {
            rl_mem_delete(m, keys[i], klen[i], rl_mem_hash(keys[i], klen[i]));
            continue;
        }
        e[i]->kind = RL_MEM_BUCKET;
        e[i]->st = next[i];
        e[i]->expire_ms = now + ttl[i];
    }
    return RL_OK;
}

/* A check or a peek: evaluate every bucket at one `now`, then apply all the
 * charges or none. A bucket that had the tokens but is not charged (another
 * bucket denied) reports its uncharged state. keys[i] is job->refs[i]'s key. */
static int rl_mem_eval(struct rl_store_memory *m, struct rl_job *job, char (*keys)[RL_KEY_MAX],
                       const size_t *klen, int64_t now)
{
    struct rl_decision *d = &job->result;
    struct rl_bucket_state cur[RL_MAX_POLICIES], next[RL_MAX_POLICIES];
    struct rl_bucket_result res[RL_MAX_POLICIES];
    int64_t cost = job->op == RL_OP_CHECK ? job->cost : 0;
    int rc = RL_OK;

    d->allowed = true;
    for (size_t i = 0; i < job->n; i++) {
        cur[i] = rl_mem_state(m, keys[i], klen[i]);
        rl_bucket_eval(&job->refs[i].lim, &cur[i], now, cost, &next[i], &res[i]);
        if (!job->refs[i].shadow && !res[i].allowed) d->allowed = false;
    }
    if (cost > 0 && d->allowed) rc = rl_mem_charge(m, job, keys, klen, next, res, now);
    for (size_t i = 0; i < job->n; i++) {
        if (cost > 0 && res[i].allowed && !d->allowed) {
            struct rl_bucket_state same;

            rl_bucket_eval(&job->refs[i].lim, &cur[i], now, 0, &same, &res[i]);
        }
        rl_mem_outcome(&d->out[i], &res[i]);
    }
    return rc;
}

/* Reset: drop every key; each bucket reads as full. */
static void rl_mem_reset(struct rl_store_memory *m, struct rl_job *job, char (*keys)[RL_KEY_MAX],
                         const size_t *klen, int64_t now)
{
    struct rl_decision *d = &job->result;

    d->allowed = true;
    for (size_t i = 0; i < job->n; i++) {
        rl_mem_delete(m, keys[i], klen[i], rl_mem_hash(keys[i], klen[i]));
        d->out[i].allowed = true;
        d->out[i].remaining = job->refs[i].lim.burst;
        d->out[i].reset_ms = now;
        d->out[i].retry_ms = 0;
    }
}

/* Replay or refuse from the idempotency record of job, if there is a live one.
 * Returns true when the decision is answered (replayed or RL_ECONFLICT).
 * A record of another bucket count (the config changed) is a conflict too. */
static bool rl_mem_idem_lookup(struct rl_store_memory *m, const struct rl_job *job, const char *key,
                               size_t len, int64_t now, struct rl_decision *d)
{
    struct rl_mem_entry *e = rl_mem_find(m, key, len, rl_mem_hash(key, len));

    if (e == NULL || e->kind != RL_MEM_IDEM || e->expire_ms <= now) return false;
    if (e->fingerprint != job->fingerprint || e->decision->n != job->n) {
        d->status = RL_ECONFLICT;
        d->allowed = false;
        return true;
    }
    *d = *e->decision;
    d->replayed = true;
    d->now_ms = now;
    return true;
}

static int rl_mem_idem_store(struct rl_store_memory *m, const struct rl_job *job, const char *key,
                             size_t len, int64_t now)
{
    struct rl_mem_entry *e = rl_mem_upsert(m, key, len, RL_MEM_IDEM);

    if (e == NULL) return RL_ENOMEM;
    if (e->decision == NULL) {
        e->decision = malloc(sizeof(*e->decision));
        if (e->decision == NULL) {
            rl_mem_delete(m, key, len, e->hash);
            return RL_ENOMEM;
        }
    }
    e->kind = RL_MEM_IDEM;
    *e->decision = job->result;
    e->fingerprint = job->fingerprint;
    e->expire_ms = now + job->idem_ttl_ms;
    return RL_OK;
}

/* Always synchronous: the result is final when this returns RL_OK. */
static int rl_mem_submit(struct rl_store *s, struct rl_job *job)
{
    struct rl_store_memory *m = (struct rl_store_memory *)s;
    struct rl_decision *d = &job->result;
    char keys[RL_MAX_POLICIES][RL_KEY_MAX];
    size_t klen[RL_MAX_POLICIES];
    char ikey[RL_MEM_IDEM_MAX];
    size_t ilen = 0;
    bool idem = job->op == RL_OP_CHECK && job->idem_key != NULL && job->idem_ttl_ms > 0;
    int64_t now;
    int rc = RL_OK;

    memset(d, 0, sizeof(*d));
    if (job->n > RL_MAX_POLICIES || (job->idem_key != NULL && job->idem_len > RL_ID_MAX)) {
        d->status = RL_EINTERNAL; /* request parsing guarantees both */
        return RL_OK;
    }
    d->n = job->n;
    for (size_t i = 0; i < d->n; i++)
        klen[i] = rl_policy_key(keys[i], RL_KEY_MAX, s->prefix, &job->refs[i]);
    if (idem) {
        ilen = (size_t)snprintf(ikey, sizeof(ikey), "%sidem:%016llx:", s->prefix,
                                (unsigned long long)job->idem_scope);
        ilen += rl_escape_id(ikey + ilen, sizeof(ikey) - ilen, job->idem_key, job->idem_len);
    }

    pthread_mutex_lock(&m->lock);
    if (m->stopped) {
        pthread_mutex_unlock(&m->lock);
        memset(d, 0, sizeof(*d));
        d->status = RL_EUNAVAIL;
        return RL_OK;
    }
    now = rl_now_ms();
    d->now_ms = now;
    rl_mem_sweep(m, now);
    if (idem && rl_mem_idem_lookup(m, job, ikey, ilen, now, d)) {
        pthread_mutex_unlock(&m->lock);
        return RL_OK;
    }
    if (job->op == RL_OP_RESET)
        rl_mem_reset(m, job, keys, klen, now);
    else
        rc = rl_mem_eval(m, job, keys, klen, now);
    if (rc != RL_OK)
        d->status = RL_EINTERNAL; /* and nothing was charged */
    else if (idem && rl_mem_idem_store(m, job, ikey, ilen, now) != RL_OK)
        rc = RL_ENOMEM; /* the decision stands, unrecorded */
    pthread_mutex_unlock(&m->lock);

    if (rc != RL_OK) rl_log_error("memory store: out of memory");
    return RL_OK;
}

static bool rl_mem_ready(struct rl_store *s)
{
    (void)s; /* always ready */
    return true;
}

static void rl_mem_close(struct rl_store *s)
{
    struct rl_store_memory *m = (struct rl_store_memory *)s;

    if (m == NULL) return;
    for (size_t i = 0; i < m->nslots; i++) {
        struct rl_mem_entry *e = m->slots[i], *next;

        for (; e != NULL; e = next) {
            next = e->next;
            rl_mem_entry_free(e);
        }
    }
    free(m->slots);
    pthread_mutex_destroy(&m->lock);
    free(m);
}

struct rl_store *rl_store_memory_open(const char *prefix)
{
    struct rl_store_memory *m = calloc(1, sizeof(*m));

    if (m == NULL) return NULL;
    m->slots = calloc(RL_MEM_INIT_SLOTS, sizeof(*m->slots));
    if (m->slots == NULL || pthread_mutex_init(&m->lock, NULL) != 0) {
        free(m->slots);
        free(m);
        return NULL;
    }
    m->nslots = RL_MEM_INIT_SLOTS;
    m->base.ops = &rl_mem_ops;
    snprintf(m->base.prefix, sizeof(m->base.prefix), "%s", prefix ? prefix : "rl:");
    return &m->base;
}
