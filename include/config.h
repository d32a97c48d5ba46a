/* config.h -- the policy file (JSON, SPEC section 1) turned into struct rl_config.
 * Every rejection names the file, the JSON path of the bad field and why.
 * Knows nothing of Redis or HTTP. A loaded config is immutable; reload builds a
 * new one and swaps it (rl_config_ref / rl_config_unref keep the old one alive
 * while requests still hold it). */
#ifndef RL_CONFIG_H
#define RL_CONFIG_H

#include "rl.h"

/* One token bucket's shape: capacity `burst`, refilled at limit/window_ms.
 * 1 token = `window_ms` ticks of 1/limit ms each (see bucket.h), so all math
 * stays in integers: burst * window_ms must stay below 2^52 (checked on load). */
struct rl_limit {
    int64_t limit;     /* tokens per window, >= 1 */
    int64_t burst;     /* bucket capacity, >= 1; default = limit */
    int64_t window_ms; /* >= 1 */
    char window[24];   /* the window as written in the file ("60s", "1m") */
};

struct rl_override {
    char *id; /* raw id (not escaped), compared bytewise */
    size_t id_len;
    struct rl_limit lim;
};

struct rl_policy {
    char name[RL_NAME_MAX]; /* [A-Za-z0-9_.-]+, unique */
    enum rl_scope scope;
    struct rl_limit lim;
    int envelope; /* enum rl_envelope, or -1: use the global one */
    bool shadow;
    char *match_method;            /* upper case; NULL = any method */
    char *match_prefix;            /* NULL = any path */
    struct rl_override *overrides; /* sorted by (id_len, id) for rl_policy_limit */
    size_t noverrides;
    int metric_slot; /* rl_metrics slot of the name: set by the HTTP front when it
                      * installs the config, before any request sees it; -1 before */
};

struct rl_config {
    char *file; /* NULL for the embedded default */

    char listen_host[64]; /* numeric IPv4 or IPv6 address */
    uint16_t listen_port;

    /* Redis; redis_enabled false = embedded in-process store. */
    bool redis_enabled;
    char redis_host[256];
    uint16_t redis_port;
    char *redis_unix; /* unix socket path, or NULL */
    int redis_db;
    char *redis_user;      /* ACL user, or NULL */
    char *redis_password;  /* or NULL */
    int redis_timeout_ms;  /* per-decision deadline, default 50 */
    char redis_prefix[64]; /* default "rl:" */

    enum rl_failure_mode failure_mode; /* default open */
    enum rl_envelope envelope;         /* default problem */
    enum rl_headers_mode headers;      /* default both */
    /* Identity headers by scope; the ip scope reads X-Real-IP, then the last
     * X-Forwarded-For entry, and its entry here is unused. */
    char id_header[RL_SCOPE_COUNT][64];

    struct rl_policy *policies;
    size_t npolicies; /* <= RL_MAX_POLICIES */

    int64_t idempotency_ttl_ms;  /* "idempotency_ttl", default 1h */
    int threads;                 /* HTTP threads, default 2 */
    unsigned connection_limit;   /* default 10000 */
    unsigned idle_timeout_s;     /* client connection idle timeout, default 30 */
    int log_decisions;           /* 0 off (default), 1 denials only, 2 all */
    unsigned deny_cache_entries; /* local over-limit cache slots (Redis store
                                  * only), 0 = off; default 8192; read at start */

    int refs; /* owned by rl_config_ref/unref */
};

/* Parse a config from JSON text. `file` is used in messages only (may be NULL).
 * On RL_OK *out is a new config owned by the caller (rl_config_free).
 * On error err->message reads "FILE: PATH: why" and err->path holds PATH. */
int rl_config_parse(const char *json, size_t len, const char *file, struct rl_config **out,
                    struct rl_error *err);

/* Read and parse a file. Same contract as rl_config_parse. */
int rl_config_load(const char *file, struct rl_config **out, struct rl_error *err);

/* The embedded default: 127.0.0.1:8080, in-process store, the policies listed
 * in README "Embedded default". Never fails except on ENOMEM (returns NULL). */
struct rl_config *rl_config_default(void);
/* The JSON text rl_config_default parses (NUL-terminated). */
extern const char rl_config_default_json[];

/* CLI overrides. "redis://[user:pass@]host[:port][/db]", "unix:///path[?db=N]",
 * or "none" (embedded store). Listen: "host:port", "[v6]:port" or ":port". */
int rl_config_set_redis_url(struct rl_config *c, const char *url, struct rl_error *err);
int rl_config_set_listen(struct rl_config *c, const char *addr, struct rl_error *err);

void rl_config_free(struct rl_config *c); /* NULL is a no-op */

/* Reference counting for hot reload (atomic). A new config starts with refs = 1,
 * held by whoever installed it. unref frees at zero. */
struct rl_config *rl_config_ref(struct rl_config *c);
void rl_config_unref(struct rl_config *c);

/* "250ms", "1s", "60s", "1m", "1h", "1d" (a positive integer and a unit) ->
 * milliseconds. RL_OK or RL_EINVAL. */
int rl_window_parse(const char *s, int64_t *ms);

/* The policy with this name, or NULL. */
const struct rl_policy *rl_config_policy(const struct rl_config *c, const char *name, size_t len);

/* The limit for one id under a policy: its override when one exists, otherwise
 * the policy's own. Never NULL. */
const struct rl_limit *rl_policy_limit(const struct rl_policy *p, const char *id, size_t len);

#endif
