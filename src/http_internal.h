/* http_internal.h -- what the HTTP front's two files share: http.c (routing,
 * the access handler, /v1/check and /v1/auth) and http_ops.c (the operator
 * endpoints: /v1/limits, /metrics, /v1/admin/reset and reload). Not a public interface. */
#ifndef RL_HTTP_INTERNAL_H
#define RL_HTTP_INTERNAL_H

#include "denycache.h"
#include "http.h"
#include "metrics.h"
#include "render.h"

#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>

enum rl_route {
    RL_R_NONE,
    RL_R_CHECK,
    RL_R_AUTH,
    RL_R_HEALTHZ,
    RL_R_READYZ,
    RL_R_LIMITS,
    RL_R_METRICS,
    RL_R_RESET,
    RL_R_RELOAD
};

/* Who comes second resumes: the handler after MHD_suspend_connection, or the
 * store's done() callback. */
enum rl_phase { RL_PH_IDLE, RL_PH_SUBMITTED, RL_PH_SUSPENDED, RL_PH_DONE };

struct rl_http {
    struct MHD_Daemon *daemon;
    struct rl_store *store;
    pthread_mutex_t cfg_lock; /* guards cfg and taking a reference on it */
    struct rl_config *cfg;
    uint16_t port;
    atomic_int inflight;
    atomic_bool draining;
    atomic_uint_fast64_t seq; /* request-id generator */
    uint64_t seed;
    struct rl_http_opts opts;         /* tokens, metrics, reload */
    struct rl_denycache *deny_cache;  /* NULL: off (or the embedded store) */
    atomic_uint_fast64_t cache_epoch; /* store->epoch the deny cache was filled in */
    atomic_int conns;                 /* open client connections */
    unsigned conn_limit;              /* cfg->connection_limit at start */
};

struct rl_conn {
    struct rl_http *h;
    struct MHD_Connection *mc;
    struct rl_config *cfg; /* a reference, released in completed */
    enum rl_route route;
    char *body; /* POST body, at most RL_BODY_MAX bytes */
    size_t body_len;
    bool too_big;
    atomic_int phase;
    struct rl_request req;
    struct rl_bucket_ref refs[RL_MAX_POLICIES];
    size_t nrefs;
    struct rl_job job;
    int64_t t_start_us;  /* monotonic, for the latency histogram */
    bool from_cache;     /* the decision came from the deny cache, not the store */
    uint64_t epoch;      /* store->epoch when the decision was asked for */
    enum rl_scope scope; /* /v1/limits and reset: the (scope, id) asked for */
    char id[RL_ID_MAX + 1];
    size_t id_len;
};

/* Queue a reply; drop our reference. MHD_NO only on allocation failure. */
enum MHD_Result rl_http_send(struct rl_conn *c, const struct rl_reply *r);
/* The error in the request's envelope (or the config's); `allow` adds Allow
 * (405), retry_after_s > 0 adds Retry-After. */
enum MHD_Result rl_http_send_error(struct rl_conn *c, const struct rl_error *err, const char *allow,
                                   int retry_after_s);
/* A JSON body with a status (no envelope). */
enum MHD_Result rl_http_send_json(struct rl_conn *c, int status, const char *json);
/* A query argument or header, binary-safe; v NULL when absent. */
struct rl_raw rl_http_value(struct MHD_Connection *mc, enum MHD_ValueKind kind, const char *name);

/* Submit c->job (op, refs, n set) to the store. Answers now (via finish) when
 * the store is synchronous; otherwise suspends and returns MHD_YES. */
enum MHD_Result rl_http_submit(struct rl_conn *c);
/* Answer a request whose job has its result (called by rl_http_submit or
 * after resume), by route. */
enum MHD_Result rl_http_finish(struct rl_conn *c);

/* Drop the deny-cache entries of c->refs[0..c->nrefs) (after an admin reset). */
void rl_http_forget_denied(struct rl_conn *c);

/* http_ops.c: the operator endpoints, called from the access handler. */
enum MHD_Result rl_http_ops_serve(struct rl_conn *c, const char *method);
enum MHD_Result rl_http_ops_finish(struct rl_conn *c);

#endif
