/* store.h -- where buckets live, behind one interface with two implementations:
 * store_memory.c (embedded, in-process, one instance) and store_redis.c (shared
 * by a fleet). Both give the same semantics, and the same integration tests run
 * against both:
 *  - a check is all or nothing over its enforced buckets: allowed only if every
 *    one has `cost` tokens, then all are charged in one atomic step; a denied
 *    check charges nothing;
 *  - a shadow bucket never denies: it is charged when the check is allowed and
 *    it has the tokens, and reports denied (it would have denied) otherwise;
 *  - an idempotency key replays the stored decision of the same request
 *    (fingerprint) without charging, and a different request gets RL_ECONFLICT;
 *    keys live per idem_scope (the request's identities), so two callers
 *    using the same key never see each other's decisions;
 *  - time is the store's own (Redis TIME; the local clock for memory). */
#ifndef RL_STORE_H
#define RL_STORE_H

#include "policy.h"

#include <stdatomic.h>

enum rl_op {
    RL_OP_CHECK, /* charge `cost` if every enforced bucket has it */
    RL_OP_PEEK,  /* read only: the state of each bucket, nothing charged */
    RL_OP_RESET  /* drop the buckets (they read as full afterwards) */
};

struct rl_bucket_outcome {
    bool allowed;      /* this bucket had the tokens */
    int64_t remaining; /* whole tokens left (after the charge, if charged) */
    int64_t reset_ms;  /* Unix ms when full again */
    int64_t retry_ms;  /* denied: ms until the cost fits; else 0 */
};

struct rl_decision {
    int status;     /* RL_OK, RL_ETIMEDOUT, RL_EUNAVAIL, RL_ECONFLICT, RL_EINTERNAL */
    bool allowed;   /* every enforced bucket allowed (meaningful when status RL_OK) */
    bool replayed;  /* answered from the idempotency record; nothing charged */
    int64_t now_ms; /* the store's clock at the decision */
    size_t n;
    struct rl_bucket_outcome out[RL_MAX_POLICIES]; /* parallel to job->refs */
};

struct rl_job;
typedef void (*rl_job_done_fn)(struct rl_job *job);

/* One decision handed to a store. The submitter owns the job and keeps it
 * alive until it has its result; the store never frees it. */
struct rl_job {
    enum rl_op op;
    const struct rl_bucket_ref *refs;
    size_t n;
    int64_t cost;
    const char *idem_key; /* NULL: no idempotency */
    size_t idem_len;
    uint64_t idem_scope; /* who the key belongs to (rl_request_idem_scope): a key
                          * is only ever compared with the same caller's keys */
    uint64_t fingerprint;
    int64_t idem_ttl_ms;

    struct rl_decision result;

    /* Asynchronous stores: called once, from the store's own thread, when
     * `result` is final; the store does not touch the job afterwards. */
    rl_job_done_fn done;
    void *udata;

    /* store-private */
    int64_t deadline_ms; /* monotonic */
    struct rl_job *next;
};

struct rl_store;

struct rl_store_ops {
    const char *name; /* "memory", "redis" */
    /* RL_OK: job->result is final now (done() is not called).
     * RL_AGAIN: done() will be called later, from another thread, exactly once. */
    int (*submit)(struct rl_store *s, struct rl_job *job);
    /* true when decisions can be made (Redis connected and script loaded). */
    bool (*ready)(struct rl_store *s);
    /* Finish every pending job (status RL_EUNAVAIL, done() called) and stop
     * threads; from then on submit answers RL_EUNAVAIL at once. The store
     * stays valid, so threads still holding it (an HTTP front being shut
     * down) may call it safely. Calling it twice is fine. */
    void (*stop)(struct rl_store *s);
    /* stop (if not done yet), then free. NULL is a no-op. */
    void (*close)(struct rl_store *s);
};

struct rl_store {
    const struct rl_store_ops *ops;
    char prefix[64]; /* key prefix, "rl:" */
    /* Bumped whenever the store may have lost state behind our back (Redis
     * reconnected: it may have restarted empty; its scripts were flushed).
     * What was learned from the store before (the deny cache) is stale. */
    atomic_uint_fast64_t epoch;
};

/* Embedded in-process store. */
struct rl_store *rl_store_memory_open(const char *prefix);

/* Redis store: connects in the background (the first decisions wait up to
 * their deadline for the connection), reconnects by itself. */
struct rl_store *rl_store_redis_open(const struct rl_config *cfg, struct rl_error *err);

static inline int rl_store_submit(struct rl_store *s, struct rl_job *j)
{
    return s->ops->submit(s, j);
}

#endif
