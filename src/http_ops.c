/* http_ops.c -- the operator endpoints of the HTTP front: GET /v1/limits (read
 * buckets without charging), GET /metrics, POST /v1/admin/reset and
 * POST /v1/admin/reload, behind Bearer tokens from the environment.
 * Knows nothing of bucket math: reads and resets go through the store. */
#include "http_internal.h"

#include "log.h"

#include <json-c/json.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/*----------------------------------------------------------------------------
 * Tokens
 *--------------------------------------------------------------------------*/

/* Compare in time independent of where the strings differ. */
static bool rl_ops_token_eq(const char *given, size_t len, const char *want)
{
    size_t wl = strlen(want);
    unsigned char diff = (unsigned char)(len != wl);

    for (size_t i = 0; i < len && i < wl; i++)
        diff |= (unsigned char)(given[i] ^ want[i]);
    return diff == 0 && wl > 0;
}

/* RL_OK when the request may go on. `write`: an admin action. */
static int rl_ops_authorize(struct rl_conn *c, bool write, struct rl_error *err)
{
    const struct rl_http_opts *o = &c->h->opts;
    struct rl_raw auth = rl_http_value(c->mc, MHD_HEADER_KIND, "Authorization");
    const char *tok;
    size_t len;

    if (write && o->admin_token == NULL)
        return rl_error_set(err, RL_EINVAL, 403, "",
                            "admin endpoints are disabled: set RATELIMITD_ADMIN_TOKEN");
    if (!write && o->read_token == NULL) return RL_OK;
    if (auth.v == NULL || auth.len < 8 || strncasecmp(auth.v, "Bearer ", 7) != 0)
        return rl_error_set(err, RL_EINVAL, 401, "Authorization",
                            "a Bearer token is required (Authorization: Bearer <token>)");
    tok = auth.v + 7;
    len = auth.len - 7;
    if (o->admin_token != NULL && rl_ops_token_eq(tok, len, o->admin_token)) return RL_OK;
    if (o->read_token != NULL && rl_ops_token_eq(tok, len, o->read_token))
        return write ? rl_error_set(err, RL_EINVAL, 403, "Authorization",
                                    "the read-only token cannot perform admin actions")
                     : RL_OK;
    return rl_error_set(err, RL_EINVAL, 401, "Authorization", "invalid token");
}

/*----------------------------------------------------------------------------
 * (scope, id) of /v1/limits and /v1/admin/reset
 *--------------------------------------------------------------------------*/

static int rl_ops_raw_ok(struct rl_raw v, const char *name, size_t max, struct rl_error *err)
{
    if (v.v == NULL || v.len == 0)
        return rl_error_set(err, RL_EINVAL, 400, name, "%s is required", name);
    if (v.len > max)
        return rl_error_set(err, RL_EINVAL, 400, name, "%s is longer than %zu bytes", name, max);
    for (size_t i = 0; i < v.len; i++)
        if ((unsigned char)v.v[i] < 0x20 || v.v[i] == 0x7f)
            return rl_error_set(err, RL_EINVAL, 400, name, "%s holds a control byte", name);
    return RL_OK;
}

/* scope= and id= from the query string, or {"scope","id"} in a POST body. */
static int rl_ops_scope_id(struct rl_conn *c, struct rl_error *err)
{
    struct rl_raw scope = rl_http_value(c->mc, MHD_GET_ARGUMENT_KIND, "scope");
    struct rl_raw id = rl_http_value(c->mc, MHD_GET_ARGUMENT_KIND, "id");
    struct json_object *root = NULL, *v;
    int s, rc;

    if (c->body_len > 0) {
        root = json_tokener_parse(c->body); /* body is NUL-terminated by the handler */
        if (root == NULL || !json_object_is_type(root, json_type_object)) {
            json_object_put(root);
            return rl_error_set(err, RL_EINVAL, 400, "body",
                                "the body must be a JSON object {\"scope\":...,\"id\":...}");
        }
        if (json_object_object_get_ex(root, "scope", &v) &&
            json_object_is_type(v, json_type_string)) {
            scope.v = json_object_get_string(v);
            scope.len = (size_t)json_object_get_string_len(v);
        }
        if (json_object_object_get_ex(root, "id", &v) && json_object_is_type(v, json_type_string)) {
            id.v = json_object_get_string(v);
            id.len = (size_t)json_object_get_string_len(v);
        }
    }
    rc = rl_ops_raw_ok(scope, "scope", 16, err);
    if (rc == RL_OK && (s = rl_scope_from_name(scope.v, scope.len)) < 0)
        rc =
            rl_error_set(err, RL_EINVAL, 400, "scope", "unknown scope; use caller, key, org or ip");
    if (rc == RL_OK) rc = rl_ops_raw_ok(id, "id", RL_ID_MAX, err);
    if (rc == RL_OK) {
        c->scope = (enum rl_scope)s;
        memcpy(c->id, id.v, id.len);
        c->id[id.len] = '\0';
        c->id_len = id.len;
    }
    json_object_put(root);
    return rc;
}

/*----------------------------------------------------------------------------
 * Endpoints
 *--------------------------------------------------------------------------*/

static enum MHD_Result rl_ops_metrics(struct rl_conn *c)
{
    struct rl_store *st = c->h->store;
    int up = strcmp(st->ops->name, "redis") == 0 ? st->ops->ready(st) : -1;
    size_t cap = 16384, n;
    char *buf = NULL;
    struct MHD_Response *resp;
    enum MHD_Result ret;

    for (;;) {
        char *nb = realloc(buf, cap);
        if (nb == NULL) {
            free(buf);
            return MHD_NO;
        }
        buf = nb;
        n = rl_metrics_render(c->h->opts.metrics, up, buf, cap);
        if (n < cap) break;
        cap = n + 1;
    }
    resp = MHD_create_response_from_buffer(n, buf, MHD_RESPMEM_MUST_FREE);
    if (resp == NULL) {
        free(buf);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8");
    ret = MHD_queue_response(c->mc, 200, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result rl_ops_reload(struct rl_conn *c)
{
    const struct rl_http_opts *o = &c->h->opts;
    struct rl_error err;
    char body[128];

    if (o->reload == NULL) {
        rl_error_set(&err, RL_EINVAL, 400, "", "nothing to reload: started without --config");
        return rl_http_send_error(c, &err, NULL, 0);
    }
    if (o->reload(o->reload_ud, &err) != RL_OK) return rl_http_send_error(c, &err, NULL, 0);
    pthread_mutex_lock(&c->h->cfg_lock);
    snprintf(body, sizeof(body), "{\"reloaded\":true,\"policies\":%zu}", c->h->cfg->npolicies);
    pthread_mutex_unlock(&c->h->cfg_lock);
    return rl_http_send_json(c, 200, body);
}

enum MHD_Result rl_http_ops_serve(struct rl_conn *c, const char *method)
{
    struct rl_error err;
    bool write = c->route == RL_R_RESET || c->route == RL_R_RELOAD;
    size_t n = 0;

    (void)method;
    if (rl_ops_authorize(c, write, &err) != RL_OK) {
        if (err.http_status == 401) {
            struct rl_reply *r = malloc(sizeof(*r));
            enum MHD_Result ret;
            if (r == NULL) return MHD_NO;
            rl_render_error(&err, c->cfg->envelope, NULL, NULL, 0, r);
            rl_reply_add_header(r, "WWW-Authenticate", "Bearer realm=\"ratelimitd\"");
            ret = rl_http_send(c, r);
            free(r);
            return ret;
        }
        return rl_http_send_error(c, &err, NULL, 0);
    }
    if (c->route == RL_R_METRICS) return rl_ops_metrics(c);
    if (c->route == RL_R_RELOAD) return rl_ops_reload(c);
    if (rl_ops_scope_id(c, &err) != RL_OK) return rl_http_send_error(c, &err, NULL, 0);
    rl_policy_for_id(c->cfg, c->scope, c->id, c->id_len, c->refs, RL_MAX_POLICIES, &n);
    c->nrefs = n;
    memset(&c->job, 0, sizeof(c->job));
    c->job.op = c->route == RL_R_RESET ? RL_OP_RESET : RL_OP_PEEK;
    c->job.refs = c->refs;
    c->job.n = n;
    if (n == 0) {
        c->job.result.status = RL_OK;
        return rl_http_ops_finish(c);
    }
    return rl_http_submit(c);
}

/* Append to a JSON text being built in a fixed buffer. */
static void rl_ops_put(char *buf, size_t cap, size_t *len, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void rl_ops_put(char *buf, size_t cap, size_t *len, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (*len >= cap) return;
    va_start(ap, fmt);
    n = vsnprintf(buf + *len, cap - *len, fmt, ap);
    va_end(ap);
    if (n > 0) *len += (size_t)n;
}

enum MHD_Result rl_http_ops_finish(struct rl_conn *c)
{
    const struct rl_decision *d = &c->job.result;
    struct rl_error err;
    size_t cap = 8192, len = 0;
    char *buf, id[3 * RL_ID_MAX * 2 + 8];
    enum MHD_Result ret;

    if (d->status != RL_OK) {
        if (d->status == RL_ETIMEDOUT)
            rl_error_set(&err, RL_ETIMEDOUT, 504, "",
                         "the rate-limit store did not answer in time");
        else
            rl_error_set(&err, RL_EUNAVAIL, 503, "", "the rate-limit store is unavailable");
        return rl_http_send_error(c, &err, NULL, err.http_status == 503 ? 1 : 0);
    }
    if ((buf = malloc(cap)) == NULL) return MHD_NO;
    rl_json_string(id, sizeof(id), c->id, c->id_len);
    if (c->route == RL_R_RESET) {
        rl_http_forget_denied(c);
        rl_ops_put(buf, cap, &len, "{\"reset\":true,\"scope\":\"%s\",\"id\":%s,\"policies\":[",
                   rl_scope_name(c->scope), id);
        for (size_t i = 0; i < c->nrefs; i++)
            rl_ops_put(buf, cap, &len, "%s\"%s\"", i ? "," : "", c->refs[i].policy->name);
        rl_ops_put(buf, cap, &len, "]}");
        rl_log_info("admin reset: scope %s, %zu buckets", rl_scope_name(c->scope), c->nrefs);
    } else {
        rl_ops_put(buf, cap, &len, "{\"scope\":\"%s\",\"id\":%s,\"policies\":[",
                   rl_scope_name(c->scope), id);
        for (size_t i = 0; i < c->nrefs && i < d->n; i++) {
            const struct rl_bucket_ref *r = &c->refs[i];
            const struct rl_bucket_outcome *o = &d->out[i];
            rl_ops_put(buf, cap, &len,
                       "%s{\"name\":\"%s\",\"limit\":%lld,\"burst\":%lld,\"window\":\"%s\","
                       "\"window_ms\":%lld,\"remaining\":%lld,\"reset\":%lld,\"shadow\":%s}",
                       i ? "," : "", r->policy->name, (long long)r->lim.limit,
                       (long long)r->lim.burst, r->lim.window, (long long)r->lim.window_ms,
                       (long long)o->remaining, (long long)((o->reset_ms + 999) / 1000),
                       r->shadow ? "true" : "false");
        }
        rl_ops_put(buf, cap, &len, "]}");
    }
    ret = rl_http_send_json(c, 200, buf);
    free(buf);
    return ret;
}
