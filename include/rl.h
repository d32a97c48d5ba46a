/* rl.h -- what every module shares: return codes, the error record, the small
 * enums (scope, envelope, header mode, failure mode) and their names.
 * No I/O here; the helpers in common.c only format and look up names.
 * Invariant: output parameters are written only when a function returns RL_OK. */
#ifndef RL_H
#define RL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RL_VERSION "0.1.0"

/* Return codes: RL_OK, a negative RL_E*, or RL_AGAIN (answer comes later). */
#define RL_OK        0
#define RL_AGAIN     1
#define RL_EINVAL    -1 /* bad input: 400 */
#define RL_ENOMEM    -2
#define RL_ETIMEDOUT -3 /* store slower than timeout_ms */
#define RL_EUNAVAIL  -4 /* store unreachable, or queue full */
#define RL_ENOTFOUND -5
#define RL_ECONFLICT -6 /* idempotency key reused for another request */
#define RL_ETOOBIG   -7
#define RL_EINTERNAL -8

#define RL_ID_MAX       128 /* bytes in one identity, idempotency key or request id */
#define RL_NAME_MAX     64  /* bytes in a policy name, with its NUL */
#define RL_MAX_POLICIES 32  /* policies in one config (so: buckets in one decision) */
#define RL_PATH_MAX     1024
#define RL_BODY_MAX     8192 /* request body limit: larger is 413 */

enum rl_scope { RL_SCOPE_CALLER, RL_SCOPE_KEY, RL_SCOPE_ORG, RL_SCOPE_IP, RL_SCOPE_COUNT };

enum rl_envelope {
    RL_ENV_PROBLEM,
    RL_ENV_ERROR,
    RL_ENV_TYPED,
    RL_ENV_SIMPLE,
    RL_ENV_FLAT,
    RL_ENV_WS,
    RL_ENV_COUNT
};

enum rl_headers_mode { RL_HDR_LEGACY, RL_HDR_IETF, RL_HDR_BOTH };

enum rl_failure_mode { RL_FAIL_OPEN, RL_FAIL_CLOSED };

/* One error, filled where it is found and rendered once, by render.c.
 * http_status picks the envelope's type name (rl_error_type); path names the
 * offending field ("policies[2].window", "cost", "X-Api-Key") or is empty. */
struct rl_error {
    int code;        /* RL_E* */
    int http_status; /* 400, 401, 403, 404, 405, 409, 413, 500, 503, 504 */
    char path[128];
    char message[256];
};

/* Fill err (if not NULL) and return code. message is printf-style. */
int rl_error_set(struct rl_error *err, int code, int http_status, const char *path, const char *fmt,
                 ...) __attribute__((format(printf, 5, 6)));

/* "validation_error", "authentication_error", ... for an HTTP status. */
const char *rl_error_type(int http_status);
/* "Bad Request", "Too Many Requests", ... for an HTTP status. */
const char *rl_status_text(int http_status);

/* Names <-> enums. The *_from_name functions return -1 for an unknown name. */
const char *rl_scope_name(enum rl_scope s);
int rl_scope_from_name(const char *s, size_t len);
const char *rl_envelope_name(enum rl_envelope e);
int rl_envelope_from_name(const char *s, size_t len);

/* 64-bit FNV-1a of len bytes, continuing from h (start with RL_FNV_INIT):
 * picks hash slots and fingerprints requests; not a defence against chosen
 * collisions, so every user compares the full key as well. */
#define RL_FNV_INIT UINT64_C(0xcbf29ce484222325)
uint64_t rl_fnv1a(uint64_t h, const void *p, size_t len);

/* Wall-clock milliseconds (CLOCK_REALTIME) and a monotonic millisecond clock. */
int64_t rl_now_ms(void);
int64_t rl_mono_ms(void);
int64_t rl_mono_us(void);

#endif
