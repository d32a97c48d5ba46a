/* request.c -- one check request: the raw inputs the HTTP front found, checked
 * and copied into struct rl_request. Every 400 of the check endpoints comes
 * from here and names its field. Pure: no I/O, no allocation.
 * Invariant: even on error, out->request_id and out->envelope are set, so the
 * error can be rendered in the caller's envelope with its request id. */
#include "request.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

static const char *const rl_request_param_name[RL_SCOPE_COUNT] = {"caller", "key", "org", "ip"};

/* True when the byte is a control byte (0x00-0x1f, 0x7f). */
static bool rl_request_ctl(unsigned char c)
{
    return c < 0x20 || c == 0x7f;
}

static bool rl_request_has_ctl(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (rl_request_ctl((unsigned char)s[i])) return true;
    return false;
}

/* An identity or key value: at most RL_ID_MAX bytes, no control byte. `what`
 * names the field in the error (the parameter or the header). An empty value
 * reads as absent: nginx sends an empty header for an unset variable. */
static int rl_request_id_value(struct rl_raw v, const char *what, char *dst, size_t *len,
                               struct rl_error *err)
{
    if (v.len > RL_ID_MAX)
        return rl_error_set(err, RL_EINVAL, 400, what, "%s is longer than %d bytes", what,
                            RL_ID_MAX);
    if (rl_request_has_ctl(v.v, v.len))
        return rl_error_set(err, RL_EINVAL, 400, what, "%s holds a control character", what);
    memcpy(dst, v.v, v.len);
    dst[v.len] = '\0';
    *len = v.len;
    return RL_OK;
}

static bool rl_request_present(struct rl_raw v)
{
    return v.v != NULL && v.len > 0;
}

/* The last entry of an X-Forwarded-For list, spaces trimmed: the address the
 * trusted proxy (nginx) appended. */
static struct rl_raw rl_request_last_forwarded(struct rl_raw xff)
{
    struct rl_raw r = {NULL, 0};
    size_t end, start;

    if (!rl_request_present(xff)) return r;
    end = xff.len;
    start = end;
    while (start > 0 && xff.v[start - 1] != ',')
        start--;
    while (start < end && (xff.v[start] == ' ' || xff.v[start] == '\t'))
        start++;
    while (end > start && (xff.v[end - 1] == ' ' || xff.v[end - 1] == '\t'))
        end--;
    r.v = xff.v + start;
    r.len = end - start;
    return r;
}

static int rl_request_ids(struct rl_request *out, const struct rl_request_input *in,
                          const struct rl_config *cfg, struct rl_error *err)
{
    for (int s = 0; s < RL_SCOPE_COUNT; s++) {
        struct rl_raw v = in->param_id[s];
        const char *what = rl_request_param_name[s];
        size_t len = 0;
        int rc;

        if (!rl_request_present(v)) {
            v = in->header_id[s];
            what = s == RL_SCOPE_IP ? "X-Real-IP" : cfg->id_header[s];
        }
        if (!rl_request_present(v) && s == RL_SCOPE_IP) {
            v = rl_request_last_forwarded(in->forwarded_for);
            what = "X-Forwarded-For";
        }
        if (!rl_request_present(v)) continue;
        if ((rc = rl_request_id_value(v, what, out->id[s], &len, err)) != RL_OK) return rc;
        out->id_len[s] = (uint8_t)len;
        out->has_id[s] = true;
    }
    return RL_OK;
}

/* The API request's method: method=, else X-Original-Method, else this HTTP
 * request's own (nginx's auth subrequest keeps the client's method). An
 * HTTP token of at most 15 bytes, stored upper case. */
static int rl_request_method(struct rl_request *out, const struct rl_request_input *in,
                             struct rl_error *err)
{
    struct rl_raw v = in->param_method;
    const char *what = "method";

    if (!rl_request_present(v)) {
        v = in->orig_method;
        what = "X-Original-Method";
    }
    if (!rl_request_present(v)) {
        v = in->http_method;
        what = NULL;
    }
    if (!rl_request_present(v)) return RL_OK; /* "": no match on method fits */
    if (v.len >= sizeof(out->method))
        return rl_error_set(err, RL_EINVAL, 400, what ? what : "method",
                            "%s is not an HTTP method (too long)", what ? what : "method");
    for (size_t i = 0; i < v.len; i++) {
        unsigned char c = (unsigned char)v.v[i];

        /* c == 0 first: strchr would find the terminator */
        if (c == '\0' || (!isalnum(c) && strchr("!#$%&'*+-.^_`|~", c) == NULL))
            return rl_error_set(err, RL_EINVAL, 400, what ? what : "method",
                                "%s is not an HTTP method", what ? what : "method");
        out->method[i] = (char)toupper(c);
    }
    out->method[v.len] = '\0';
    return RL_OK;
}

/* The API request's path: path=, else X-Original-URI; the query string and
 * fragment are cut. A path longer than RL_PATH_MAX - 1 bytes is cut there:
 * only its prefix takes part in matching. Control bytes are refused. */
static int rl_request_path(struct rl_request *out, const struct rl_request_input *in,
                           struct rl_error *err)
{
    struct rl_raw v = in->param_path;
    const char *what = "path";
    size_t len;

    if (!rl_request_present(v)) {
        v = in->orig_uri;
        what = "X-Original-URI";
    }
    if (!rl_request_present(v)) return RL_OK;
    for (len = 0; len < v.len && v.v[len] != '?' && v.v[len] != '#'; len++)
        ;
    if (rl_request_has_ctl(v.v, len))
        return rl_error_set(err, RL_EINVAL, 400, what, "%s holds a control character", what);
    if (len >= sizeof(out->path)) len = sizeof(out->path) - 1;
    memcpy(out->path, v.v, len);
    out->path[len] = '\0';
    return RL_OK;
}

static int64_t rl_request_max_burst(const struct rl_config *cfg)
{
    int64_t max = 1;

    for (size_t i = 0; i < cfg->npolicies; i++) {
        const struct rl_policy *p = &cfg->policies[i];

        if (p->lim.burst > max) max = p->lim.burst;
        for (size_t k = 0; k < p->noverrides; k++)
            if (p->overrides[k].lim.burst > max) max = p->overrides[k].lim.burst;
    }
    return max;
}

/* cost=: decimal digits only, 1 .. the largest capacity of the config (the
 * applicable buckets are checked later, rl_decide_check_cost). */
static int rl_request_cost(struct rl_request *out, const struct rl_request_input *in,
                           const struct rl_config *cfg, struct rl_error *err)
{
    int64_t v = 0, max = rl_request_max_burst(cfg);
    struct rl_raw c = in->cost;

    out->cost = 1;
    if (c.v == NULL) return RL_OK;
    if (c.len == 0 || c.len > 18) goto bad;
    for (size_t i = 0; i < c.len; i++) {
        if (c.v[i] < '0' || c.v[i] > '9') goto bad;
        v = v * 10 + (c.v[i] - '0');
    }
    if (v < 1 || v > max) goto bad;
    out->cost = v;
    return RL_OK;
bad:
    return rl_error_set(err, RL_EINVAL, 400, "cost", "cost must be an integer from 1 to %lld",
                        (long long)max);
}

/* policy=a,b: names of the policies the check is restricted to. */
static int rl_request_policies(struct rl_request *out, const struct rl_request_input *in,
                               const struct rl_config *cfg, struct rl_error *err)
{
    struct rl_raw v = in->policy;
    size_t at = 0;

    out->policy_mask = UINT32_MAX;
    out->has_policy_filter = false;
    if (v.v == NULL) return RL_OK;
    out->policy_mask = 0;
    out->has_policy_filter = true;
    while (at <= v.len) {
        size_t end = at;
        const struct rl_policy *p;

        while (end < v.len && v.v[end] != ',')
            end++;
        if (end == at)
            return rl_error_set(err, RL_EINVAL, 400, "policy",
                                "policy must be a comma-separated list of policy names");
        p = rl_config_policy(cfg, v.v + at, end - at);
        if (p == NULL) {
            char name[RL_NAME_MAX];
            size_t n = end - at < sizeof(name) - 1 ? end - at : sizeof(name) - 1;

            memcpy(name, v.v + at, n);
            name[n] = '\0';
            for (size_t i = 0; i < n; i++)
                if (rl_request_ctl((unsigned char)name[i]) || name[i] == '"') name[i] = '?';
            return rl_error_set(err, RL_ENOTFOUND, 404, "policy", "no policy named \"%s\"", name);
        }
        out->policy_mask |= UINT32_C(1) << (p - cfg->policies);
        at = end + 1;
    }
    return RL_OK;
}

/* X-Request-ID: kept when it is 1..RL_ID_MAX printable ASCII bytes
 * (0x21-0x7e), else replaced by "req_" + 16 hex digits. */
static void rl_request_rid(struct rl_request *out, const struct rl_request_input *in, uint64_t seed)
{
    struct rl_raw v = in->request_id;
    bool ok = v.v != NULL && v.len > 0 && v.len <= RL_ID_MAX;

    for (size_t i = 0; ok && i < v.len; i++)
        ok = (unsigned char)v.v[i] >= 0x21 && (unsigned char)v.v[i] <= 0x7e;
    if (ok) {
        memcpy(out->request_id, v.v, v.len);
        out->request_id[v.len] = '\0';
        return;
    }
    /* splitmix64: distinct seeds give well-spread ids */
    seed += 0x9e3779b97f4a7c15ULL;
    seed = (seed ^ (seed >> 30)) * 0xbf58476d1ce4e5b9ULL;
    seed = (seed ^ (seed >> 27)) * 0x94d049bb133111ebULL;
    seed ^= seed >> 31;
    snprintf(out->request_id, sizeof(out->request_id), "req_%016llx", (unsigned long long)seed);
}

int rl_request_build(struct rl_request *out, const struct rl_request_input *in,
                     const struct rl_config *cfg, uint64_t gen_seed, struct rl_error *err)
{
    size_t len;
    int rc, e;

    memset(out, 0, sizeof(*out));
    out->envelope = -1;
    out->cost = 1;
    out->policy_mask = UINT32_MAX;
    rl_request_rid(out, in, gen_seed);
    if (in->envelope.v != NULL) {
        e = rl_envelope_from_name(in->envelope.v, in->envelope.len);
        if (e < 0)
            return rl_error_set(err, RL_EINVAL, 400, "envelope",
                                "envelope must be one of problem, error, typed, simple, flat, "
                                "ws");
        out->envelope = e;
    }
    if ((rc = rl_request_ids(out, in, cfg, err)) != RL_OK ||
        (rc = rl_request_method(out, in, err)) != RL_OK ||
        (rc = rl_request_path(out, in, err)) != RL_OK ||
        (rc = rl_request_cost(out, in, cfg, err)) != RL_OK ||
        (rc = rl_request_policies(out, in, cfg, err)) != RL_OK)
        return rc;
    if (in->idem_key.v != NULL) {
        if (in->idem_key.len == 0)
            return rl_error_set(err, RL_EINVAL, 400, "Idempotency-Key", "Idempotency-Key is empty");
        rc = rl_request_id_value(in->idem_key, "Idempotency-Key", out->idem_key, &len, err);
        if (rc != RL_OK) return rc;
    }
    return RL_OK;
}

enum rl_envelope rl_request_envelope(const struct rl_request *r, const struct rl_policy *pol,
                                     const struct rl_config *cfg)
{
    int e = r != NULL && r->envelope >= 0       ? r->envelope
            : pol != NULL && pol->envelope >= 0 ? pol->envelope
                                                : (int)cfg->envelope;

    return e >= 0 && e < RL_ENV_COUNT ? (enum rl_envelope)e : RL_ENV_PROBLEM;
}

/* The identities, each with its presence and length (so "ab"+"c" and
 * "a"+"bc" differ). */
static uint64_t rl_request_hash_ids(uint64_t h, const struct rl_request *r)
{
    for (int s = 0; s < RL_SCOPE_COUNT; s++) {
        unsigned char has = r->has_id[s], len = r->id_len[s];

        h = rl_fnv1a(h, &has, 1);
        h = rl_fnv1a(h, &len, 1);
        h = rl_fnv1a(h, r->id[s], r->id_len[s]);
    }
    return h;
}

uint64_t rl_request_idem_scope(const struct rl_request *r)
{
    return rl_request_hash_ids(RL_FNV_INIT, r);
}

uint64_t rl_request_fingerprint(const struct rl_request *r)
{
    uint64_t h = RL_FNV_INIT;
    unsigned char sep = 0xff; /* never inside a field: keeps "ab"+"c" from "a"+"bc" */

    h = rl_fnv1a(h, r->method, strlen(r->method));
    h = rl_fnv1a(h, &sep, 1);
    h = rl_fnv1a(h, r->path, strlen(r->path));
    h = rl_fnv1a(h, &sep, 1);
    h = rl_request_hash_ids(h, r);
    h = rl_fnv1a(h, &r->cost, sizeof(r->cost));
    h = rl_fnv1a(h, &r->policy_mask, sizeof(r->policy_mask));
    return h;
}
