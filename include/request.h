/* request.h -- one check request, built once from the raw HTTP inputs and
 * validated there: every 400 of the check endpoints is found here and names
 * its field. Pure: no I/O, no allocation (the HTTP front gathers the raw
 * strings, this module only reads them). */
#ifndef RL_REQUEST_H
#define RL_REQUEST_H

#include "config.h"

/* A raw input value: v == NULL means absent. Not NUL-terminated; may hold
 * any byte (embedded NULs included), which is why it carries a length. */
struct rl_raw {
    const char *v;
    size_t len;
};

/* Everything the HTTP front found, before validation. Explicit parameters
 * (query string of GET, or the JSON body of POST) win over headers. */
struct rl_request_input {
    struct rl_raw param_id[RL_SCOPE_COUNT];  /* caller=, key=, org=, ip= */
    struct rl_raw header_id[RL_SCOPE_COUNT]; /* the configured headers; [IP] = X-Real-IP */
    struct rl_raw forwarded_for;             /* X-Forwarded-For (ip: its last entry) */
    struct rl_raw param_method, param_path;  /* method=, path= */
    struct rl_raw orig_method, orig_uri;     /* X-Original-Method, X-Original-URI */
    struct rl_raw http_method;               /* the method of this HTTP request */
    struct rl_raw cost, policy, envelope;    /* cost=, policy=a,b, envelope= */
    struct rl_raw idem_key;                  /* Idempotency-Key */
    struct rl_raw request_id;                /* X-Request-ID */
};

struct rl_request {
    char method[16];        /* of the API request being admitted, upper case */
    char path[RL_PATH_MAX]; /* its path, query string removed */
    char id[RL_SCOPE_COUNT][RL_ID_MAX + 1];
    uint8_t id_len[RL_SCOPE_COUNT];
    bool has_id[RL_SCOPE_COUNT];
    int64_t cost;         /* default 1 */
    uint32_t policy_mask; /* bit i: policies[i] allowed; all ones when no policy= */
    bool has_policy_filter;
    int envelope;                   /* from envelope=, or -1 */
    char idem_key[RL_ID_MAX + 1];   /* "" when absent */
    char request_id[RL_ID_MAX + 1]; /* echoed or generated, always set */
};

/* Validate `in` against `cfg` and fill *out. Errors (err filled, code returned):
 *  - an id, Idempotency-Key over RL_ID_MAX bytes or holding a control byte
 *    (0x00-0x1f, 0x7f): RL_EINVAL, 400, path = the parameter or header name;
 *  - cost not an integer in 1..the largest burst of cfg: RL_EINVAL, 400 "cost";
 *  - envelope= not one of the six: RL_EINVAL, 400 "envelope";
 *  - policy= naming an unknown policy: RL_ENOTFOUND, 404 "policy".
 * An X-Request-ID that is absent, too long or not printable ASCII is replaced
 * by a generated one ("req_" + 16 hex digits, from `gen_seed`). Even on error,
 * out->request_id and out->envelope are set, so the error can be rendered. */
int rl_request_build(struct rl_request *out, const struct rl_request_input *in,
                     const struct rl_config *cfg, uint64_t gen_seed, struct rl_error *err);

/* The envelope to use for a decision: envelope= if given, else the governing
 * policy's (pol may be NULL), else the config's. */
enum rl_envelope rl_request_envelope(const struct rl_request *r, const struct rl_policy *pol,
                                     const struct rl_config *cfg);

/* 64-bit FNV-1a over everything that defines "the same request" for
 * idempotency: method, path, ids, cost and the policy filter. */
uint64_t rl_request_fingerprint(const struct rl_request *r);

/* 64-bit FNV-1a over the request's identities only: the namespace of its
 * Idempotency-Key, so one caller's key never meets another caller's. */
uint64_t rl_request_idem_scope(const struct rl_request *r);

#endif
