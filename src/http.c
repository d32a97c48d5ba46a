/* http.c -- the HTTP front on libmicrohttpd: routes, parameters and bodies
 * into struct rl_request, suspend/resume around asynchronous decisions.
 * Knows nothing of bucket math or Redis (it talks to a struct rl_store).
 * Invariant: per-request state (struct rl_conn) is made on the first call of
 * the access handler and freed only in the completed callback; a suspended
 * request is resumed exactly once, by whichever of the handler and the store's
 * done() comes second (rl_http_phase). */
#include "http_internal.h"

#include "decide.h"
#include "log.h"
#include "render.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/*----------------------------------------------------------------------------
 * Responses
 *--------------------------------------------------------------------------*/

/* nginx's auth_request passes only 2xx (allow) and 401/403 (deny); any other
 * status becomes its bare 500, and the subrequest's body is dropped. So every
 * non-2xx answer of /v1/auth goes out as 403 carrying what nginx needs to
 * rebuild the exact answer /v1/check gives: the real status, content type
 * and body in X-RateLimit-Status / -Content-Type / -Body, next to the usual
 * headers (deploy/nginx/ratelimitd-server.conf turns them back). JSON bodies
 * hold no CR or LF, so the body is a valid header value. Returns 403. */
static unsigned int rl_http_auth_denial(struct MHD_Response *resp, const struct rl_reply *r)
{
    char status[8], *body = malloc(r->body_len + 1);

    snprintf(status, sizeof(status), "%d", r->status);
    MHD_add_response_header(resp, "X-RateLimit-Status", status);
    if (r->content_type != NULL)
        MHD_add_response_header(resp, "X-RateLimit-Content-Type", r->content_type);
    if (body != NULL) {
        memcpy(body, r->body, r->body_len);
        body[r->body_len] = '\0';
        MHD_add_response_header(resp, "X-RateLimit-Body", body);
        free(body);
    }
    return 403;
}

enum MHD_Result rl_http_send(struct rl_conn *c, const struct rl_reply *r)
{
    struct MHD_Response *resp;
    enum MHD_Result ret;

    unsigned int status = (unsigned int)r->status;

    resp = MHD_create_response_from_buffer(r->body_len, (void *)r->body, MHD_RESPMEM_MUST_COPY);
    if (resp == NULL) return MHD_NO;
    for (size_t i = 0; i < r->nheaders; i++)
        MHD_add_response_header(resp, r->headers[i].name, r->headers[i].value);
    if (r->content_type != NULL)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, r->content_type);
    if (c->route == RL_R_AUTH && status >= 400) status = rl_http_auth_denial(resp, r);
    if (atomic_load(&c->h->draining))
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    ret = MHD_queue_response(c->mc, status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static void rl_http_request_min(struct rl_conn *c);

enum MHD_Result rl_http_send_error(struct rl_conn *c, const struct rl_error *err, const char *allow,
                                   int retry_after_s)
{
    struct rl_reply *r = malloc(sizeof(*r));
    enum rl_envelope env;
    enum MHD_Result ret;

    if (r == NULL) return MHD_NO;
    if (c->req.request_id[0] == '\0') rl_http_request_min(c);
    env = c->req.envelope >= 0 ? (enum rl_envelope)c->req.envelope : c->cfg->envelope;
    rl_render_error(err, env, c->req.request_id[0] ? c->req.request_id : NULL,
                    c->req.path[0] ? c->req.path : NULL, retry_after_s, r);
    if (allow != NULL) rl_reply_add_header(r, "Allow", "%s", allow);
    ret = rl_http_send(c, r);
    free(r);
    return ret;
}

enum MHD_Result rl_http_send_json(struct rl_conn *c, int status, const char *json)
{
    struct rl_reply *r = malloc(sizeof(*r));
    enum MHD_Result ret;

    if (r == NULL) return MHD_NO;
    memset(r, 0, offsetof(struct rl_reply, hbuf));
    r->hlen = 0;
    rl_reply_set_body(r, status, json, strlen(json));
    ret = rl_http_send(c, r);
    free(r);
    return ret;
}

/*----------------------------------------------------------------------------
 * Parameters: query string, headers, JSON body -> struct rl_request_input
 *--------------------------------------------------------------------------*/

struct rl_raw rl_http_value(struct MHD_Connection *mc, enum MHD_ValueKind kind, const char *name)
{
    struct rl_raw v = {NULL, 0};

    if (MHD_lookup_connection_value_n(mc, kind, name, strlen(name), &v.v, &v.len) != MHD_YES)
        v.v = NULL;
    return v;
}

static const char *const rl_http_param_scope[RL_SCOPE_COUNT] = {"caller", "key", "org", "ip"};

static void rl_http_input_query(struct rl_conn *c, struct rl_request_input *in)
{
    struct MHD_Connection *mc = c->mc;
    const enum MHD_ValueKind q = MHD_GET_ARGUMENT_KIND, h = MHD_HEADER_KIND;

    for (int s = 0; s < RL_SCOPE_COUNT; s++) {
        in->param_id[s] = rl_http_value(mc, q, rl_http_param_scope[s]);
        in->header_id[s] = rl_http_value(mc, h, c->cfg->id_header[s]);
    }
    in->header_id[RL_SCOPE_IP] = rl_http_value(mc, h, "X-Real-IP");
    in->forwarded_for = rl_http_value(mc, h, "X-Forwarded-For");
    in->param_method = rl_http_value(mc, q, "method");
    in->param_path = rl_http_value(mc, q, "path");
    in->orig_method = rl_http_value(mc, h, "X-Original-Method");
    in->orig_uri = rl_http_value(mc, h, "X-Original-URI");
    in->cost = rl_http_value(mc, q, "cost");
    in->policy = rl_http_value(mc, q, "policy");
    in->envelope = rl_http_value(mc, q, "envelope");
    in->idem_key = rl_http_value(mc, h, "Idempotency-Key");
    in->request_id = rl_http_value(mc, h, "X-Request-ID");
}

/* Fields of a POST /v1/check body; each replaces the query parameter. cost
 * may be a JSON integer, which is printed into numbuf. */
static int rl_http_input_body(struct rl_conn *c, struct json_object *root,
                              struct rl_request_input *in, char *numbuf, size_t numcap,
                              struct rl_error *err)
{
    struct json_object_iterator it, end;

    if (!json_object_is_type(root, json_type_object))
        return rl_error_set(err, RL_EINVAL, 400, "body", "the body must be a JSON object");
    it = json_object_iter_begin(root);
    end = json_object_iter_end(root);
    for (; !json_object_iter_equal(&it, &end); json_object_iter_next(&it)) {
        const char *k = json_object_iter_peek_name(&it);
        struct json_object *v = json_object_iter_peek_value(&it);
        struct rl_raw *dst = NULL;
        int s;

        if ((s = rl_scope_from_name(k, strlen(k))) >= 0)
            dst = &in->param_id[s];
        else if (strcmp(k, "method") == 0)
            dst = &in->param_method;
        else if (strcmp(k, "path") == 0)
            dst = &in->param_path;
        else if (strcmp(k, "policy") == 0)
            dst = &in->policy;
        else if (strcmp(k, "envelope") == 0)
            dst = &in->envelope;
        else if (strcmp(k, "cost") == 0)
            dst = &in->cost;
        else
            return rl_error_set(err, RL_EINVAL, 400, k, "unknown field \"%.64s\" in the body", k);
        if (dst == &in->cost && json_object_is_type(v, json_type_int)) {
            snprintf(numbuf, numcap, "%lld", (long long)json_object_get_int64(v));
            dst->v = numbuf;
            dst->len = strlen(numbuf);
        } else if (json_object_is_type(v, json_type_string)) {
            dst->v = json_object_get_string(v);
            dst->len = (size_t)json_object_get_string_len(v);
        } else if (!json_object_is_type(v, json_type_null)) {
            return rl_error_set(err, RL_EINVAL, 400, k, "%s must be a string", k);
        }
    }
    (void)c;
    return RL_OK;
}

/* Only the request id (echoed or generated) and envelope= of c->req, for an
 * error found before (or while) the whole request is built. */
static void rl_http_request_min(struct rl_conn *c)
{
    struct rl_error ignore;
    struct rl_request_input min;

    memset(&min, 0, sizeof(min));
    min.request_id = rl_http_value(c->mc, MHD_HEADER_KIND, "X-Request-ID");
    min.envelope = rl_http_value(c->mc, MHD_GET_ARGUMENT_KIND, "envelope");
    rl_request_build(&c->req, &min, c->cfg, c->h->seed ^ atomic_fetch_add(&c->h->seq, 1), &ignore);
}

/* Build c->req from the query string, headers and (POST) body. */
static int rl_http_build_request(struct rl_conn *c, const char *method, struct rl_error *err)
{
    struct rl_http *h = c->h;
    struct rl_request_input in;
    struct json_object *root = NULL;
    char numbuf[32];
    int rc = RL_OK;
    uint64_t seed = h->seed ^ atomic_fetch_add(&h->seq, 1);

    memset(&in, 0, sizeof(in));
    rl_http_input_query(c, &in);
    in.http_method.v = method;
    in.http_method.len = strlen(method);
    if (c->body_len > 0) {
        struct json_tokener *tok = json_tokener_new();

        if (tok == NULL) return rl_error_set(err, RL_ENOMEM, 500, "", "out of memory");
        root = json_tokener_parse_ex(tok, c->body, (int)c->body_len);
        if (root != NULL) { /* only white space may follow the JSON value */
            for (size_t i = json_tokener_get_parse_end(tok); i < c->body_len; i++)
                if (strchr(" \t\r\n", c->body[i]) == NULL) {
                    json_object_put(root);
                    root = NULL;
                    break;
                }
        }
        if (root == NULL) {
            enum json_tokener_error je = json_tokener_get_error(tok);
            rc = rl_error_set(err, RL_EINVAL, 400, "body", "the body is not valid JSON: %s",
                              je == json_tokener_success    ? "data after the JSON value"
                              : je == json_tokener_continue ? "unexpected end of input"
                                                            : json_tokener_error_desc(je));
        }
        json_tokener_free(tok);
        if (rc == RL_OK) rc = rl_http_input_body(c, root, &in, numbuf, sizeof(numbuf), err);
    }
    if (rc == RL_OK) {
        rc = rl_request_build(&c->req, &in, c->cfg, seed, err);
    } else {
        rl_http_request_min(c); /* the error still gets a request id and envelope */
    }
    json_object_put(root);
    return rc;
}

/*----------------------------------------------------------------------------
 * The decision
 *--------------------------------------------------------------------------*/

static void rl_http_job_done(struct rl_job *job)
{
    struct rl_conn *c = job->udata;

    if (atomic_exchange(&c->phase, RL_PH_DONE) == RL_PH_SUSPENDED) MHD_resume_connection(c->mc);
}

/* Count one answered check: per-bucket outcomes, the result, the latency. */
static void rl_http_count(struct rl_conn *c, enum rl_result res, enum rl_degraded degraded)
{
    struct rl_metrics *m = c->h->opts.metrics;
    const struct rl_decision *d = &c->job.result;

    if (m == NULL) return;
    for (size_t i = 0; i < c->nrefs && res != RL_RES_ERROR; i++) {
        const struct rl_bucket_ref *ref = &c->refs[i];
        enum rl_outcome o = RL_OUT_ALLOWED;

        if (degraded != RL_DEG_NONE)
            o = RL_OUT_DEGRADED;
        else if (i < d->n && !d->out[i].allowed)
            o = ref->shadow ? RL_OUT_SHADOW_DENIED : RL_OUT_DENIED;
        else if (!d->allowed)
            continue; /* had the tokens, but another bucket denied: not counted */
        rl_metrics_decision(m, ref->policy->metric_slot, o);
    }
    rl_metrics_check(m, c->route == RL_R_AUTH ? RL_EP_AUTH : RL_EP_CHECK, res,
                     rl_mono_us() - c->t_start_us);
}

/* One JSON line per decision when the config asks for it ("log_decisions":
 * "denied" or "all"): request id, reported policy, outcome, remaining, latency.
 * Never the caller's id (it may be a secret API key). */
static void rl_http_log_decision(struct rl_conn *c, enum rl_result res, int governing)
{
    static const char *const names[RL_RES_COUNT] = {"allowed", "denied", "degraded", "error"};
    const struct rl_decision *d = &c->job.result;
    char rid[2 * RL_ID_MAX + 8];

    if (c->cfg->log_decisions == 0 || (c->cfg->log_decisions == 1 && res == RL_RES_ALLOWED)) return;
    char fields[512];

    /* a request id may hold '"' or '\\' (any 0x21-0x7e byte): escape it */
    rl_json_string(rid, sizeof(rid), c->req.request_id, strlen(c->req.request_id));
    snprintf(fields, sizeof(fields),
             "\"request_id\":%s,\"policy\":%s%s%s,\"outcome\":\"%s\",\"remaining\":%lld,"
             "\"latency_us\":%lld",
             rid, governing >= 0 ? "\"" : "",
             governing >= 0 ? c->refs[governing].policy->name : "null", governing >= 0 ? "\"" : "",
             names[res], governing >= 0 ? (long long)d->out[governing].remaining : -1LL,
             (long long)(rl_mono_us() - c->t_start_us));
    rl_log_fields(RL_LOG_INFO, "decision", fields);
}

/*----------------------------------------------------------------------------
 * The local over-limit cache (denycache.h)
 *--------------------------------------------------------------------------*/

/* Only a plain cost-1 check may be answered from the cache: the cache knows
 * when one token returns, not more; an idempotent check must be recorded. */
static bool rl_http_cacheable(const struct rl_conn *c)
{
    return c->h->deny_cache != NULL && c->req.cost == 1 && c->req.idem_key[0] == '\0';
}

/* The store key of c->refs[i] into key (RL_KEY_MAX bytes); its length. */
static size_t rl_http_bucket_key(const struct rl_conn *c, size_t i, char *key)
{
    return rl_policy_key(key, RL_KEY_MAX, c->h->store->prefix, &c->refs[i]);
}

/* Remember every enforced bucket the store found empty for this cost-1
 * check. Times count from the request's arrival, which is earlier than the
 * moment Redis read its clock: an entry can only end early, never late. */
static void rl_http_remember_denied(struct rl_conn *c)
{
    const struct rl_decision *d = &c->job.result;
    int64_t t0 = c->t_start_us / 1000;
    char key[RL_KEY_MAX];

    if (!rl_http_cacheable(c) || c->from_cache || d->replayed || d->allowed ||
        c->epoch != atomic_load(&c->h->store->epoch))
        return; /* the store may have lost its state since: do not keep it */
    for (size_t i = 0; i < d->n; i++) {
        const struct rl_bucket_outcome *o = &d->out[i];
        struct rl_denycache_hit hit;
        size_t len;

        if (c->refs[i].shadow || o->allowed) continue;
        hit.token_mono_ms = t0 + o->retry_ms;
        hit.full_mono_ms = t0 + (o->reset_ms - d->now_ms);
        hit.full_unix_ms = o->reset_ms;
        len = rl_http_bucket_key(c, i, key);
        rl_denycache_put(c->h->deny_cache, key, len, &hit);
    }
}

/* When an enforced bucket of the check is known empty, make the decision
 * here: denied, reporting only the known-empty buckets (the others were not
 * read), remaining 0, Retry-After until the token returns. true if so. */
static bool rl_http_deny_cached(struct rl_conn *c)
{
    struct rl_decision *d = &c->job.result;
    int64_t now = rl_mono_ms();
    char key[RL_KEY_MAX];
    size_t k = 0;

    if (!rl_http_cacheable(c)) return false;
    c->epoch = atomic_load(&c->h->store->epoch);
    if (atomic_exchange(&c->h->cache_epoch, c->epoch) != c->epoch)
        rl_denycache_clear(c->h->deny_cache); /* Redis came back, maybe empty */
    for (size_t i = 0; i < c->nrefs; i++) {
        struct rl_denycache_hit hit;
        size_t len;

        if (c->refs[i].shadow) continue;
        len = rl_http_bucket_key(c, i, key);
        if (!rl_denycache_get(c->h->deny_cache, key, len, now, &hit)) continue;
        if (k == 0) d->now_ms = hit.full_unix_ms - (hit.full_mono_ms - now); /* the store's now */
        c->refs[k] = c->refs[i];
        d->out[k].allowed = false;
        d->out[k].remaining = 0;
        d->out[k].reset_ms = d->now_ms + (hit.full_mono_ms - now);
        d->out[k].retry_ms = hit.token_mono_ms - now;
        k++;
    }
    if (k == 0) return false;
    c->nrefs = d->n = k;
    d->status = RL_OK;
    d->allowed = false;
    c->from_cache = true;
    if (c->h->opts.metrics != NULL) rl_metrics_deny_cache_hit(c->h->opts.metrics);
    return true;
}

void rl_http_forget_denied(struct rl_conn *c)
{
    char key[RL_KEY_MAX];

    for (size_t i = 0; c->h->deny_cache != NULL && i < c->nrefs; i++)
        rl_denycache_forget(c->h->deny_cache, key, rl_http_bucket_key(c, i, key));
}

/* Render the decision in c->job.result and queue it. */
static enum MHD_Result rl_http_answer(struct rl_conn *c)
{
    struct rl_render_decision in;
    struct rl_reply *r;
    struct rl_error err;
    enum MHD_Result ret;
    enum rl_degraded degraded;
    enum rl_result res;
    int st = c->job.result.status;

    if (st != RL_OK && c->h->opts.metrics != NULL)
        rl_metrics_store_error(c->h->opts.metrics, st == RL_ETIMEDOUT  ? RL_SERR_TIMEOUT
                                                   : st == RL_EUNAVAIL ? RL_SERR_UNAVAILABLE
                                                                       : RL_SERR_INTERNAL);
    if (rl_decide_failure(st, c->cfg->failure_mode, &degraded, &err) != RL_OK) {
        rl_http_count(c, RL_RES_ERROR, RL_DEG_NONE);
        return rl_http_send_error(c, &err, NULL, err.http_status == 503 ? 1 : 0);
    }
    if (degraded != RL_DEG_NONE) {
        /* no word from the store: allowed, every bucket unknown */
        c->job.result.allowed = true;
        c->job.result.n = 0;
    }
    res = degraded ? RL_RES_DEGRADED : c->job.result.allowed ? RL_RES_ALLOWED : RL_RES_DENIED;
    if (res == RL_RES_DENIED) rl_http_remember_denied(c);
    rl_http_count(c, res, degraded);
    memset(&in, 0, sizeof(in));
    in.cfg = c->cfg;
    in.req = &c->req;
    in.refs = c->refs;
    in.d = &c->job.result;
    in.governing = degraded ? -1 : rl_decide_governing(c->refs, &c->job.result);
    rl_http_log_decision(c, res, in.governing);
    in.degraded = degraded;
    in.auth = c->route == RL_R_AUTH;
    in.deny_status = 429; /* /v1/auth: turned into 403 by rl_http_send */
    in.instance = c->req.path;
    r = malloc(sizeof(*r));
    if (r == NULL) return MHD_NO;
    rl_render_decision(&in, r);
    ret = rl_http_send(c, r);
    free(r);
    return ret;
}

enum MHD_Result rl_http_finish(struct rl_conn *c)
{
    if (c->route == RL_R_CHECK || c->route == RL_R_AUTH) return rl_http_answer(c);
    return rl_http_ops_finish(c);
}

enum MHD_Result rl_http_submit(struct rl_conn *c)
{
    struct rl_job *job = &c->job;

    job->done = rl_http_job_done;
    job->udata = c;
    atomic_store(&c->phase, RL_PH_SUBMITTED);
    if (rl_store_submit(c->h->store, job) == RL_OK) {
        atomic_store(&c->phase, RL_PH_DONE);
        return rl_http_finish(c);
    }
    MHD_suspend_connection(c->mc);
    /* SUBMITTED -> SUSPENDED, unless done() came first and made it DONE:
     * then we resume at once, and the phase stays DONE for the next call */
    int expected = RL_PH_SUBMITTED;
    if (!atomic_compare_exchange_strong(&c->phase, &expected, RL_PH_SUSPENDED))
        MHD_resume_connection(c->mc);
    return MHD_YES;
}

static enum MHD_Result rl_http_check(struct rl_conn *c, const char *method)
{
    struct rl_error err;
    struct rl_job *job = &c->job;
    int rc;

    rc = rl_http_build_request(c, method, &err);
    if (rc == RL_OK) {
        rl_policy_match(c->cfg, &c->req, c->refs, RL_MAX_POLICIES, &c->nrefs);
        rc = rl_decide_check_cost(c->refs, c->nrefs, c->req.cost, &err);
    }
    if (rc != RL_OK) {
        c->nrefs = 0;
        rl_http_count(c, RL_RES_ERROR, RL_DEG_NONE);
        return rl_http_send_error(c, &err, NULL, 0);
    }

    memset(job, 0, sizeof(*job));
    job->op = RL_OP_CHECK;
    job->refs = c->refs;
    job->n = c->nrefs;
    job->cost = c->req.cost;
    if (c->nrefs == 0) { /* nothing applies: allowed, no store round trip */
        job->result.status = RL_OK;
        job->result.allowed = true;
        return rl_http_answer(c);
    }
    if (rl_http_deny_cached(c)) return rl_http_answer(c);
    if (c->req.idem_key[0]) {
        job->idem_key = c->req.idem_key;
        job->idem_len = strlen(c->req.idem_key);
        job->fingerprint = rl_request_fingerprint(&c->req);
        job->idem_scope = rl_request_idem_scope(&c->req);
        job->idem_ttl_ms = c->cfg->idempotency_ttl_ms;
    }
    return rl_http_submit(c);
}

/*----------------------------------------------------------------------------
 * Routing and the access handler
 *--------------------------------------------------------------------------*/

static enum rl_route rl_http_route(const char *url)
{
    if (strcmp(url, "/v1/check") == 0) return RL_R_CHECK;
    if (strcmp(url, "/v1/auth") == 0) return RL_R_AUTH;
    if (strcmp(url, "/healthz") == 0) return RL_R_HEALTHZ;
    if (strcmp(url, "/readyz") == 0) return RL_R_READYZ;
    if (strcmp(url, "/v1/limits") == 0) return RL_R_LIMITS;
    if (strcmp(url, "/metrics") == 0) return RL_R_METRICS;
    if (strcmp(url, "/v1/admin/reset") == 0) return RL_R_RESET;
    if (strcmp(url, "/v1/admin/reload") == 0) return RL_R_RELOAD;
    return RL_R_NONE;
}

/* The Allow header of a route, or NULL when `method` is allowed. */
static const char *rl_http_allow(enum rl_route route, const char *method)
{
    bool get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;

    switch (route) {
    case RL_R_CHECK:
        return get || strcmp(method, "POST") == 0 ? NULL : "GET, HEAD, POST";
    case RL_R_AUTH:
        return NULL; /* nginx's subrequest keeps the client's method */
    case RL_R_HEALTHZ:
    case RL_R_READYZ:
    case RL_R_LIMITS:
    case RL_R_METRICS:
        return get ? NULL : "GET, HEAD";
    case RL_R_RESET:
    case RL_R_RELOAD:
        return strcmp(method, "POST") == 0 ? NULL : "POST";
    default:
        return NULL;
    }
}

static enum MHD_Result rl_http_serve(struct rl_conn *c, const char *url, const char *method)
{
    struct rl_error err;
    const char *allow;

    if (c->route == RL_R_NONE) {
        rl_error_set(&err, RL_ENOTFOUND, 404, "", "no such endpoint: %.200s", url);
        return rl_http_send_error(c, &err, NULL, 0);
    }
    if ((allow = rl_http_allow(c->route, method)) != NULL) {
        rl_error_set(&err, RL_EINVAL, 405, "", "method %.16s is not allowed here", method);
        return rl_http_send_error(c, &err, allow, 0);
    }
    if (c->too_big) {
        rl_error_set(&err, RL_ETOOBIG, 413, "body", "the body is larger than %d bytes",
                     RL_BODY_MAX);
        return rl_http_send_error(c, &err, NULL, 0);
    }
    switch (c->route) {
    case RL_R_HEALTHZ:
        return rl_http_send_json(c, 200, "{\"status\":\"ok\"}");
    case RL_R_READYZ:
        if (c->h->store->ops->ready(c->h->store))
            return rl_http_send_json(c, 200, "{\"status\":\"ready\"}");
        rl_error_set(&err, RL_EUNAVAIL, 503, "", "the rate-limit store is not reachable");
        return rl_http_send_error(c, &err, NULL, 1);
    case RL_R_CHECK:
    case RL_R_AUTH:
        return rl_http_check(c, method);
    default:
        return rl_http_ops_serve(c, method);
    }
}

/* A Content-Length above RL_BODY_MAX (or not a number we could hold). */
static bool rl_http_declared_too_big(struct MHD_Connection *mc)
{
    struct rl_raw v = rl_http_value(mc, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    uint64_t n = 0;

    if (v.v == NULL) return false;
    for (size_t i = 0; i < v.len; i++) {
        if (v.v[i] < '0' || v.v[i] > '9' || i >= 9)
            return i >= 9; /* libmicrohttpd refuses the rest itself */
        n = n * 10 + (uint64_t)(v.v[i] - '0');
    }
    return n > RL_BODY_MAX;
}

static enum MHD_Result rl_http_handler(void *cls, struct MHD_Connection *mc, const char *url,
                                       const char *method, const char *version,
                                       const char *upload_data, size_t *upload_data_size,
                                       void **req_cls)
{
    struct rl_http *h = cls;
    struct rl_conn *c = *req_cls;

    (void)version;
    if (c == NULL) {
        c = calloc(1, sizeof(*c));
        if (c == NULL) return MHD_NO;
        c->h = h;
        c->mc = mc;
        c->route = rl_http_route(url);
        c->t_start_us = rl_mono_us();
        c->req.envelope = -1;
        pthread_mutex_lock(&h->cfg_lock);
        c->cfg = rl_config_ref(h->cfg);
        pthread_mutex_unlock(&h->cfg_lock);
        atomic_fetch_add(&h->inflight, 1);
        *req_cls = c;
        if (rl_http_declared_too_big(mc)) {
            /* answer 413 now, not after the whole body: libmicrohttpd takes
             * a response on the first call and drops the body unread */
            c->too_big = true;
            return rl_http_serve(c, url, method);
        }
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        if (!c->too_big && c->body_len + *upload_data_size <= RL_BODY_MAX) {
            if (c->body == NULL && (c->body = malloc(RL_BODY_MAX + 1)) == NULL) return MHD_NO;
            memcpy(c->body + c->body_len, upload_data, *upload_data_size);
            c->body_len += *upload_data_size;
            c->body[c->body_len] = '\0';
        } else {
            c->too_big = true; /* keep reading, answer 413 at the end */
        }
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (atomic_load(&c->phase) == RL_PH_DONE) return rl_http_finish(c); /* resumed */
    return rl_http_serve(c, url, method);
}

static void rl_http_completed(void *cls, struct MHD_Connection *mc, void **req_cls,
                              enum MHD_RequestTerminationCode toe)
{
    struct rl_http *h = cls;
    struct rl_conn *c = *req_cls;

    (void)mc;
    (void)toe;
    if (c == NULL) return;
    rl_config_unref(c->cfg);
    free(c->body);
    free(c);
    *req_cls = NULL;
    atomic_fetch_sub(&h->inflight, 1);
}

static void rl_http_log(void *cls, const char *fmt, va_list ap)
{
    char msg[512];

    (void)cls;
    vsnprintf(msg, sizeof(msg), fmt, ap);
    msg[strcspn(msg, "\n")] = '\0';
    rl_log_warn("libmicrohttpd: %s", msg);
}

/*----------------------------------------------------------------------------
 * Start and stop
 *--------------------------------------------------------------------------*/

/* libmicrohttpd's own connection limit stops accepting, so a connection past
 * it waits in the kernel's queue until a slot frees (a caller such as nginx
 * times out instead of failing over at once). So its limit is set a little
 * higher, and this accept policy closes a new connection at once while
 * connection_limit are open. */
#define RL_HTTP_LIMIT_SLACK 64

/* Per-connection memory (request line, headers, response head). The nginx
 * snippet sends only the few headers ratelimitd reads; a sidecar caller
 * sends a small request. libmicrohttpd clears this pool for every request,
 * so it is a per-request cost too (callgrind: 32 KiB was half of all
 * instructions). Requests whose head does not fit get 431. */
#define RL_HTTP_CONN_MEMORY 16384

static enum MHD_Result rl_http_accept(void *cls, const struct sockaddr *addr, socklen_t len)
{
    struct rl_http *h = cls;

    (void)addr;
    (void)len;
    return atomic_load(&h->conns) < (int)h->conn_limit ? MHD_YES : MHD_NO;
}

static void rl_http_notify_conn(void *cls, struct MHD_Connection *mc, void **socket_context,
                                enum MHD_ConnectionNotificationCode toe)
{
    struct rl_http *h = cls;

    (void)mc;
    (void)socket_context;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED)
        atomic_fetch_add(&h->conns, 1);
    else
        atomic_fetch_sub(&h->conns, 1);
}

static int rl_http_sockaddr(const struct rl_config *cfg, struct sockaddr_storage *ss, bool *v6)
{
    struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;

    memset(ss, 0, sizeof(*ss));
    if (inet_pton(AF_INET, cfg->listen_host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons(cfg->listen_port);
        *v6 = false;
        return RL_OK;
    }
    if (inet_pton(AF_INET6, cfg->listen_host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons(cfg->listen_port);
        *v6 = true;
        return RL_OK;
    }
    return RL_EINVAL;
}

/* Give each policy of a config about to be installed its metrics slot. */
static void rl_http_slots(struct rl_http *h, struct rl_config *cfg)
{
    for (size_t i = 0; i < cfg->npolicies; i++)
        cfg->policies[i].metric_slot =
            h->opts.metrics ? rl_metrics_policy_slot(h->opts.metrics, cfg->policies[i].name) : -1;
}

struct rl_http *rl_http_start(struct rl_config *cfg, struct rl_store *store,
                              const struct rl_http_opts *opts, struct rl_error *err)
{
    struct rl_http *h = calloc(1, sizeof(*h));
    struct sockaddr_storage ss;
    const union MHD_DaemonInfo *info;
    /* poll(), not epoll: libmicrohttpd 0.9.75 in epoll mode often misses the
     * EOF of a client that sends part of a request and closes, and keeps the
     * connection (fd, memory pool, a connection_limit slot) until
     * idle_timeout: a stateless way to fill the connection table
     * (tests/integration/test_hostile.c, half_closed_partial_requests_...). */
    unsigned int flags =
        MHD_USE_POLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG | MHD_USE_TURBO;
    bool v6;

    if (h == NULL) {
        rl_error_set(err, RL_ENOMEM, 500, "", "out of memory");
        return NULL;
    }
    if (rl_http_sockaddr(cfg, &ss, &v6) != RL_OK) {
        rl_error_set(err, RL_EINVAL, 400, "listen", "listen: \"%s\" is not an IP address",
                     cfg->listen_host);
        free(h);
        return NULL;
    }
    if (v6) flags |= MHD_USE_IPv6;
    pthread_mutex_init(&h->cfg_lock, NULL);
    if (opts != NULL) h->opts = *opts;
    rl_http_slots(h, cfg);
    h->cfg = rl_config_ref(cfg);
    h->store = store;
    if (strcmp(store->ops->name, "redis") == 0) /* the embedded store is local already */
        h->deny_cache = rl_denycache_new(cfg->deny_cache_entries);
    h->seed = (uint64_t)rl_now_ms() * 0x9e3779b97f4a7c15ULL ^ (uint64_t)getpid() << 32;
    h->conn_limit = cfg->connection_limit;
    h->daemon = MHD_start_daemon(
        flags, 0, rl_http_accept, h, rl_http_handler, h, MHD_OPTION_EXTERNAL_LOGGER, rl_http_log,
        NULL, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss, MHD_OPTION_THREAD_POOL_SIZE,
        (unsigned int)cfg->threads, MHD_OPTION_CONNECTION_LIMIT,
        cfg->connection_limit + RL_HTTP_LIMIT_SLACK, MHD_OPTION_CONNECTION_TIMEOUT,
        cfg->idle_timeout_s, MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)RL_HTTP_CONN_MEMORY,
        MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned int)1024, MHD_OPTION_NOTIFY_COMPLETED,
        rl_http_completed, h, MHD_OPTION_NOTIFY_CONNECTION, rl_http_notify_conn, h, MHD_OPTION_END);
    if (h->daemon == NULL) {
        rl_error_set(err, RL_EUNAVAIL, 500, "listen", "cannot listen on %s:%u: %s",
                     cfg->listen_host, cfg->listen_port, strerror(errno));
        rl_config_unref(h->cfg);
        rl_denycache_free(h->deny_cache);
        pthread_mutex_destroy(&h->cfg_lock);
        free(h);
        return NULL;
    }
    info = MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_BIND_PORT);
    h->port = info ? info->port : cfg->listen_port;
    return h;
}

uint16_t rl_http_port(const struct rl_http *h)
{
    return h->port;
}

void rl_http_set_config(struct rl_http *h, struct rl_config *cfg)
{
    struct rl_config *old;

    rl_http_slots(h, cfg);
    pthread_mutex_lock(&h->cfg_lock);
    old = h->cfg;
    h->cfg = rl_config_ref(cfg);
    pthread_mutex_unlock(&h->cfg_lock);
    rl_config_unref(old);
    rl_denycache_clear(h->deny_cache); /* limits may have been raised */
}

int rl_http_drain(struct rl_http *h, int timeout_ms)
{
    int64_t end = rl_mono_ms() + timeout_ms;

    MHD_socket lfd;

    atomic_store(&h->draining, true);
    lfd = MHD_quiesce_daemon(h->daemon);
    if (lfd != MHD_INVALID_SOCKET) {
        /* Connections the kernel accepted but we did not yet: serve them too
         * (their answers say Connection: close), then stop listening. */
        fcntl(lfd, F_SETFL, fcntl(lfd, F_GETFL) | O_NONBLOCK);
        for (;;) {
            struct sockaddr_storage ss;
            socklen_t sl = sizeof(ss);
            int fd = accept4(lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (fd < 0) break;
            if (MHD_add_connection(h->daemon, fd, (struct sockaddr *)&ss, sl) != MHD_YES) close(fd);
        }
        close(lfd);
        usleep(50000); /* let just-added connections send their requests */
    }
    while (atomic_load(&h->inflight) > 0 && rl_mono_ms() < end)
        usleep(10000);
    return atomic_load(&h->inflight);
}

void rl_http_stop(struct rl_http *h)
{
    if (h == NULL) return;
    MHD_stop_daemon(h->daemon);
    rl_denycache_free(h->deny_cache);
    rl_config_unref(h->cfg);
    pthread_mutex_destroy(&h->cfg_lock);
    free(h);
}
