/* render.h -- a decision or an error turned into status, headers and body
 * bytes: the X-RateLimit-* and IETF RateLimit headers, Retry-After, and the six
 * JSON envelopes (problem, error, typed, simple, flat, ws).
 * Pure: no I/O, no allocation; every string is JSON-escaped here, and header
 * values never hold a control byte. Knows nothing of HTTP libraries. */
#ifndef RL_RENDER_H
#define RL_RENDER_H

#include "store.h"

#define RL_REPLY_HEADERS_MAX 12
#define RL_REPLY_HBUF        4096
#define RL_REPLY_BODY        8192

struct rl_reply_header {
    const char *name;  /* static string */
    const char *value; /* points into rl_reply.hbuf */
};

struct rl_reply {
    int status;
    const char *content_type; /* static string */
    size_t nheaders;
    struct rl_reply_header headers[RL_REPLY_HEADERS_MAX];
    char hbuf[RL_REPLY_HBUF];
    size_t hlen;
    char body[RL_REPLY_BODY]; /* not NUL-terminated necessarily; body_len bytes */
    size_t body_len;
};

/* Why a decision was allowed without the store's word (failure_mode open). */
enum rl_degraded { RL_DEG_NONE, RL_DEG_UNAVAILABLE, RL_DEG_TIMEOUT };

/* What to render for one check. */
struct rl_render_decision {
    const struct rl_config *cfg;
    const struct rl_request *req;
    const struct rl_bucket_ref *refs; /* the buckets of the decision */
    const struct rl_decision *d;      /* d->out[i] parallel to refs[i] */
    int governing;                    /* index into refs of the reported policy, -1 none */
    enum rl_degraded degraded;
    bool auth;            /* /v1/auth: allowed is 204 without a body */
    int deny_status;      /* status for a denial: 429 (check) or the auth one */
    const char *instance; /* problem "instance": the API path */
};

/* Render a decision:
 *  - headers (when governing >= 0 and not degraded): X-RateLimit-Limit,
 *    -Remaining, -Reset (Unix s, ceil) per cfg->headers "legacy"/"both";
 *    RateLimit-Policy: "name";q=LIMIT;w=WINDOW_S and RateLimit: "name";r=R;t=T
 *    (one member per enforced bucket, T = s until full, ceil) per "ietf"/"both";
 *  - denied: deny_status, Retry-After (ceil s, >= 1), the envelope body;
 *  - allowed: 200 + {"allowed":true,...} (204 and no body when auth);
 *  - degraded: X-RateLimit-Degraded: redis-unavailable | redis-timeout;
 *  - always X-Request-ID.
 * The envelope is rl_request_envelope(req, governing policy, cfg). */
void rl_render_decision(const struct rl_render_decision *in, struct rl_reply *out);

/* Render the service's own error in envelope `env`: err->http_status, the type
 * name of rl_error_type(), err->message, err->path as the field (400), and
 * Retry-After when retry_after_s > 0 (503). request_id may be NULL. */
void rl_render_error(const struct rl_error *err, enum rl_envelope env, const char *request_id,
                     const char *instance, int retry_after_s, struct rl_reply *out);

/* Append a header (value copied into hbuf). Returns RL_OK; RL_EINVAL when the
 * value holds a control byte (CR, LF, ...); RL_ETOOBIG when hbuf or the header
 * table is full. The header is dropped on error. */
int rl_reply_add_header(struct rl_reply *r, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Set the body to a JSON text (copied), with content type application/json. */
void rl_reply_set_body(struct rl_reply *r, int status, const char *body, size_t len);

/* Write s (len bytes) as a JSON string literal, quotes included, into buf.
 * Returns the bytes the whole literal needs; writes at most cap-1 bytes and a
 * NUL. Invalid UTF-8 becomes U+FFFD; control bytes become \u00XX. */
size_t rl_json_string(char *buf, size_t cap, const char *s, size_t len);

#endif
