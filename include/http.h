/* http.h -- the HTTP front: libmicrohttpd (poll event loops, a small thread pool, no
 * thread per connection), the routes of SPEC section 2, parameters and bodies
 * into struct rl_request, and suspend/resume around asynchronous decisions.
 * Knows nothing of bucket math or Redis: it talks to a struct rl_store. */
#ifndef RL_HTTP_H
#define RL_HTTP_H

#include "config.h"
#include "store.h"

#include "metrics.h"

struct rl_http;

/* What the operator endpoints need from the outside. */
struct rl_http_opts {
    const char *admin_token; /* NULL: the admin endpoints answer 403 */
    const char *read_token;  /* NULL: /v1/limits and /metrics need no token */
    struct rl_metrics *metrics;
    /* POST /v1/admin/reload: load the config file again and install it
     * (rl_http_set_config). RL_OK, or an error with the bad field's path. */
    int (*reload)(void *ud, struct rl_error *err);
    void *reload_ud;
};

/* Start serving cfg->listen_host:listen_port with `store`. Takes a reference
 * on cfg (the caller keeps its own). The store, the metrics and the token
 * strings must outlive the server. NULL on failure, with err filled. */
struct rl_http *rl_http_start(struct rl_config *cfg, struct rl_store *store,
                              const struct rl_http_opts *opts, struct rl_error *err);

/* The port actually bound (useful with port 0). */
uint16_t rl_http_port(const struct rl_http *h);

/* Install a new config for the next requests (hot reload). Requests in
 * flight finish on the config they started with. Takes a reference. */
void rl_http_set_config(struct rl_http *h, struct rl_config *cfg);

/* Stop accepting connections and wait up to timeout_ms for the requests in
 * flight to be answered. Returns how many were still in flight. */
int rl_http_drain(struct rl_http *h, int timeout_ms);

/* Stop the server and free it. Every suspended request must have been
 * resumed first (close the store before, it finishes every pending job). */
void rl_http_stop(struct rl_http *h);

#endif
