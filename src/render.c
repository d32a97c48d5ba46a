/* render.c -- a decision or an error turned into status, headers and body bytes:
 * the X-RateLimit-* and IETF RateLimit headers, Retry-After, and the six JSON
 * envelopes. Pure: no I/O, no allocation, writes only into the caller's
 * struct rl_reply. Knows nothing of HTTP libraries, stores or config parsing.
 * Invariant: every string in a body goes through rl_json_string, and no header
 * value ever holds a control byte (rl_reply_add_header refuses it). */
#include "render.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/*----------------------------------------------------------------------------
 * The exact output (SPEC section 3).
 *
 * Headers of a decision, only when governing >= 0 and degraded == RL_DEG_NONE;
 * g = refs[governing], o = d->out[governing]:
 *  - legacy (headers legacy|both): X-RateLimit-Limit = g.lim.limit,
 *    X-RateLimit-Remaining = o.remaining, X-RateLimit-Reset = ceil(o.reset_ms/1000)
 *    (Unix s);
 *  - ietf (ietf|both), draft-ietf-httpapi-ratelimit-headers-10, one member per
 *    enforced bucket (refs[i].shadow false) in refs order, joined by ", ":
 *    RateLimit-Policy: "name";q=LIMIT;w=ceil(window_ms/1000)
 *    RateLimit: "name";r=REMAINING;t=max(0, ceil((reset_ms - d->now_ms)/1000)).
 *    Members past RL_IETF_BUDGET bytes are dropped from both lists together
 *    (only reachable with ~17+ enforced policies of long names), so the
 *    headers after them (Retry-After, X-Request-ID) always fit in hbuf.
 * Denied (d->allowed false, d->status RL_OK): status in->deny_status,
 * Retry-After = max(1, ceil(o.retry_ms/1000)) = N, body = the envelope.
 * Allowed: 200 + {"allowed":true,"policy":P,"limit":L,"remaining":R,"reset":S,
 * "request_id":ID} (policy null, no limit/remaining/reset when governing < 0
 * or degraded), then "degraded":true, "replayed":true, "shadow_denied":[names of
 * shadow buckets not allowed] when they apply; auth: 204, no body, no type.
 * Degraded: X-RateLimit-Degraded: redis-unavailable | redis-timeout.
 * Always X-Request-ID last.
 *
 * Denial envelopes (N, LIMIT = g.lim.limit, WINDOW = g.lim.window as written,
 * SCOPE = rl_scope_name(g.policy->scope), R = o.remaining, RESET_S, violated
 * = names of enforced refs not allowed, in refs order); "seconds" is "second"
 * when N == 1:
 *  problem (application/problem+json): {"type":"https://iana.org/assignments/
 *    http-problem-types#quota-exceeded","status":S,"title":TEXT(S),"detail":"Rate
 *    limit of LIMIT per WINDOW exceeded for SCOPE; retry in N seconds.",
 *    "instance":I (omitted when NULL),"violated-policies":[...],
 *    "retry_after_secs":N,"limit":LIMIT,"remaining":R,"reset":RESET_S,
 *    "request_id":ID}
 *  error: {"error":{"code":"rate_limit_exceeded","message":"API rate limit
 *    exceeded. Please wait N seconds before retrying.","details":{"limit":LIMIT,
 *    "window":WINDOW,"retry_after":N,"retry_after_secs":N,"request_id":ID}}}
 *  typed: {"error":{"type":"rate_limit_error","code":"rate_limit_exceeded",
 *    "message":"Rate limit exceeded for SCOPE. Please retry in N seconds.",
 *    "param":null,"request_id":ID,"retry_after_secs":N}}
 *  simple: {"error":{"message":"rate limit exceeded: try again in N seconds",
 *    "type":"rate_limit_error","retry_after_secs":N}}
 *  flat: {"error":"rate_limited","error_description":"Rate limit of LIMIT per
 *    WINDOW exceeded; retry in N seconds.","retry_after_secs":N}
 *  ws: {"type":"error","error":{"code":"RATE_LIMITED","message":"Rate limit
 *    exceeded; retry in N seconds.","details":{"retry_after_secs":N,
 *    "limit":LIMIT,"reset":RESET_S}}}
 *
 * Errors (T = rl_error_type(S), M = message, F = path, [F] = only when F is
 * not empty, [N] = only when retry_after_s > 0, [ID] = only when request_id is
 * not NULL; Retry-After and X-Request-ID headers under the same conditions):
 *  problem: {"type":"urn:ratelimitd:problem:T","status":S,"title":TEXT(S),
 *    "detail":M,"instance":I [non-NULL],"field":F [F],"retry_after_secs":N [N],
 *    "request_id":ID [ID]}
 *  error: {"error":{"code":T,"message":M,"details":{"field":F [F],
 *    "retry_after_secs":N [N],"request_id":ID [ID]}}}
 *  typed: {"error":{"type":T,"code":T,"message":M,"param":F|null,
 *    "request_id":ID|null,"retry_after_secs":N [N]}}
 *  simple: {"error":{"message":M,"type":T,"field":F [F],"retry_after_secs":N [N]}}
 *  flat: {"error":T,"error_description":M,"field":F [F],"retry_after_secs":N [N]}
 *  ws: {"type":"error","error":{"code":UPPER(T),"message":M,"details":{
 *    "field":F [F],"retry_after_secs":N [N],"request_id":ID [ID]}}}
 *
 * Too big for RL_REPLY_BODY: only the problem envelope has members of
 * unbounded size (instance: up to 6 bytes per path byte once escaped;
 * violated-policies: up to 32 names). When the full body does not fit, it is
 * rendered again without "instance" and without "violated-policies" (denial)
 * or without "instance" (error); every other member is kept, and that
 * minimal body always fits.
 *--------------------------------------------------------------------------*/

#define RL_IETF_BUDGET ((RL_REPLY_HBUF - 512) / 2) /* bytes per IETF list */

static const char *const rl_ct_json = "application/json";
static const char *const rl_ct_problem = "application/problem+json";

/*----------------------------------------------------------------------------
 * JSON strings
 *--------------------------------------------------------------------------*/

/* Length of the valid UTF-8 sequence at s[0..len) (2..4), or 0 when it is
 * invalid; then *skip is the length of its maximal valid prefix (>= 1), which
 * becomes one U+FFFD (the Unicode "maximal subpart" practice). */
static size_t rl_utf8_seq(const unsigned char *s, size_t len, size_t *skip)
{
    unsigned char c = s[0], lo = 0x80, hi = 0xbf;
    size_t need, i;

    if (c >= 0xc2 && c <= 0xdf)
        need = 2;
    else if (c >= 0xe0 && c <= 0xef)
        need = 3;
    else if (c >= 0xf0 && c <= 0xf4)
        need = 4;
    else {
        *skip = 1;
        return 0;
    }
    if (c == 0xe0)
        lo = 0xa0; /* overlong */
    else if (c == 0xed)
        hi = 0x9f; /* surrogates */
    else if (c == 0xf0)
        lo = 0x90; /* overlong */
    else if (c == 0xf4)
        hi = 0x8f; /* above U+10FFFF */
    for (i = 1; i < need && i < len; i++) {
        if (s[i] < lo || s[i] > hi) break;
        lo = 0x80;
        hi = 0xbf;
    }
    *skip = i;
    return i == need ? need : 0;
}

/* Append one unit (a byte, an escape or a UTF-8 sequence) to the literal.
 * Only whole units are written, so a cut never splits an escape; once one
 * does not fit, nothing more is written (the output stays a prefix). */
struct rl_jout {
    char *buf;
    size_t cap, w, need;
    bool full;
};

static void rl_json_put(struct rl_jout *j, const char *src, size_t n)
{
    if (!j->full && j->w + n < j->cap) {
        memcpy(j->buf + j->w, src, n);
        j->w += n;
    } else {
        j->full = true;
    }
    j->need += n;
}

size_t rl_json_string(char *buf, size_t cap, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    struct rl_jout j = {.buf = buf, .cap = cap, .full = cap == 0};
    size_t i = 0, n, adv;

    rl_json_put(&j, "\"", 1);
    while (s != NULL && i < len) {
        unsigned char c = p[i];
        char esc[6] = {'\\', (char)c, 0, 0, 0, 0};

        if (c == '"' || c == '\\') {
            rl_json_put(&j, esc, 2);
            i++;
        } else if (c < 0x20 || c == 0x7f) {
            memcpy(esc, "\\u00", 4);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            rl_json_put(&j, esc, 6);
            i++;
        } else if (c < 0x80) {
            rl_json_put(&j, s + i, 1);
            i++;
        } else if ((n = rl_utf8_seq(p + i, len - i, &adv)) > 0) {
            rl_json_put(&j, s + i, n);
            i += n;
        } else {
            rl_json_put(&j, "\\ufffd", 6);
            i += adv;
        }
    }
    rl_json_put(&j, "\"", 1);
    if (cap > 0) buf[j.w] = '\0';
    return j.need;
}

/*----------------------------------------------------------------------------
 * The reply
 *--------------------------------------------------------------------------*/

static void rl_reply_reset(struct rl_reply *r)
{
    r->status = 500;
    r->content_type = NULL;
    r->nheaders = 0;
    r->hlen = 0;
    r->body_len = 0;
}

/* A value with a control byte (CR, LF, NUL, TAB, DEL, ...) is refused:
 * RL_EINVAL, nothing added. */
int rl_reply_add_header(struct rl_reply *r, const char *name, const char *fmt, ...)
{
    size_t room = RL_REPLY_HBUF - r->hlen;
    char *v = r->hbuf + r->hlen;
    va_list ap;
    int n;

    if (r->nheaders >= RL_REPLY_HEADERS_MAX || room == 0) return RL_ETOOBIG;
    va_start(ap, fmt);
    n = vsnprintf(v, room, fmt, ap);
    va_end(ap);
    if (n < 0) return RL_EINVAL;
    if ((size_t)n >= room) return RL_ETOOBIG;
    for (int i = 0; i < n; i++)
        if ((unsigned char)v[i] < 0x20 || v[i] == 0x7f) return RL_EINVAL;
    r->headers[r->nheaders].name = name;
    r->headers[r->nheaders].value = v;
    r->nheaders++;
    r->hlen += (size_t)n + 1;
    return RL_OK;
}

/* A body larger than RL_REPLY_BODY is not cut: the reply becomes a 500 with a
 * short flat error body instead. */
void rl_reply_set_body(struct rl_reply *r, int status, const char *body, size_t len)
{
    static const char big[] =
        "{\"error\":\"internal_error\",\"error_description\":\"response body too large\"}";

    r->content_type = rl_ct_json;
    if (len > RL_REPLY_BODY) {
        status = 500;
        body = big;
        len = sizeof(big) - 1;
    }
    r->status = status;
    memcpy(r->body, body, len);
    r->body_len = len;
}

/*----------------------------------------------------------------------------
 * Body writer: appends into the reply's body, remembers an overflow
 *--------------------------------------------------------------------------*/

struct rl_w {
    char *buf;
    size_t cap; /* holds cap - 1 bytes and a NUL */
    size_t len;
    bool over;
};

static void rl_w_fmt(struct rl_w *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void rl_w_fmt(struct rl_w *w, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (w->over) return;
    va_start(ap, fmt);
    n = vsnprintf(w->buf + w->len, w->cap - w->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= w->cap - w->len)
        w->over = true;
    else
        w->len += (size_t)n;
}

/* A JSON string literal; NULL writes null. */
static void rl_w_str(struct rl_w *w, const char *s, size_t len)
{
    size_t n;

    if (s == NULL) {
        rl_w_fmt(w, "null");
        return;
    }
    if (w->over) return;
    n = rl_json_string(w->buf + w->len, w->cap - w->len, s, len);
    if (n >= w->cap - w->len)
        w->over = true;
    else
        w->len += n;
}

static void rl_w_cstr(struct rl_w *w, const char *s)
{
    rl_w_str(w, s, s != NULL ? strlen(s) : 0);
}

/* ,"key": -- or "key": for the first member (*first then cleared). */
static void rl_w_key(struct rl_w *w, bool *first, const char *key)
{
    rl_w_fmt(w, "%s\"%s\":", *first ? "" : ",", key);
    *first = false;
}

static void rl_w_begin(struct rl_w *w, struct rl_reply *out)
{
    w->buf = out->body;
    w->cap = RL_REPLY_BODY;
    w->len = 0;
    w->over = false;
}

/*----------------------------------------------------------------------------
 * Small rules
 *--------------------------------------------------------------------------*/

/* ceil(ms / 1000) for any sign. */
static int64_t rl_ceil_s(int64_t ms)
{
    return ms >= 0 ? ms / 1000 + (ms % 1000 != 0) : ms / 1000;
}

/* a - b, saturated to the int64 range. reset_ms and now_ms come from the store
 * (a Redis reply) unchecked, so their difference must not overflow: INT64_MAX -
 * INT64_MIN was undefined behaviour (found by tests/fuzz/fuzz_render). */
static int64_t rl_sub_sat(int64_t a, int64_t b)
{
    int64_t r;

    if (__builtin_sub_overflow(a, b, &r)) return b < 0 ? INT64_MAX : INT64_MIN;
    return r;
}

static const char *rl_seconds(int64_t n)
{
    return n == 1 ? "second" : "seconds";
}

/* The same rule as rl_request_envelope (request.h), kept here so render.c
 * links without request.c: envelope= first, then the policy's, then the
 * config's; anything out of range reads as problem. */
static enum rl_envelope rl_render_envelope(const struct rl_request *r, const struct rl_policy *pol,
                                           const struct rl_config *cfg)
{
    int e = r != NULL && r->envelope >= 0       ? r->envelope
            : pol != NULL && pol->envelope >= 0 ? pol->envelope
                                                : (int)cfg->envelope;

    return e >= 0 && e < RL_ENV_COUNT ? (enum rl_envelope)e : RL_ENV_PROBLEM;
}

static const char *rl_request_id(const struct rl_request *req, size_t *len)
{
    *len = strnlen(req->request_id, sizeof(req->request_id));
    return req->request_id;
}

/* The window as written ("60s"), or in ms when the file text is missing. */
static const char *rl_window_text(const struct rl_limit *lim, char *buf, size_t cap)
{
    if (lim->window[0] != '\0' && strnlen(lim->window, sizeof(lim->window)) < sizeof(lim->window))
        return lim->window;
    snprintf(buf, cap, "%lldms", (long long)lim->window_ms);
    return buf;
}

/*----------------------------------------------------------------------------
 * Decision headers
 *--------------------------------------------------------------------------*/

/* A structured-field string: the name in quotes, " and \ escaped. */
static int rl_sf_string(char *buf, size_t cap, const char *s)
{
    size_t w = 0;

    if (cap < 3) return -1;
    buf[w++] = '"';
    for (; *s != '\0'; s++) {
        if ((*s == '"' || *s == '\\') && w + 1 < cap) buf[w++] = '\\';
        if (w + 2 >= cap) return -1;
        buf[w++] = *s;
    }
    buf[w++] = '"';
    buf[w] = '\0';
    return (int)w;
}

/* Both IETF lists, one member per enforced bucket; see RL_IETF_BUDGET. */
static void rl_render_ietf(const struct rl_render_decision *in, struct rl_reply *out)
{
    char pol[RL_IETF_BUDGET], rate[RL_IETF_BUDGET], name[2 * RL_NAME_MAX + 3];
    size_t plen = 0, rlen = 0;
    const struct rl_decision *d = in->d;

    for (size_t i = 0; i < d->n; i++) {
        const struct rl_bucket_ref *ref = &in->refs[i];
        const struct rl_bucket_outcome *o = &d->out[i];
        int64_t t = rl_ceil_s(rl_sub_sat(o->reset_ms, d->now_ms));
        const char *sep = plen > 0 ? ", " : "";
        int a, b;

        if (ref->shadow || rl_sf_string(name, sizeof(name), ref->policy->name) < 0) continue;
        a = snprintf(pol + plen, sizeof(pol) - plen, "%s%s;q=%lld;w=%lld", sep, name,
                     (long long)ref->lim.limit, (long long)rl_ceil_s(ref->lim.window_ms));
        b = snprintf(rate + rlen, sizeof(rate) - rlen, "%s%s;r=%lld;t=%lld", sep, name,
                     (long long)o->remaining, (long long)(t > 0 ? t : 0));
        if (a < 0 || b < 0 || (size_t)a >= sizeof(pol) - plen || (size_t)b >= sizeof(rate) - rlen) {
            pol[plen] = rate[rlen] = '\0';
            break;
        }
        plen += (size_t)a;
        rlen += (size_t)b;
    }
    if (plen == 0) return;
    rl_reply_add_header(out, "RateLimit-Policy", "%s", pol);
    rl_reply_add_header(out, "RateLimit", "%s", rate);
}

static void rl_render_rate_headers(const struct rl_render_decision *in, int gov,
                                   struct rl_reply *out)
{
    const struct rl_bucket_ref *g = &in->refs[gov];
    const struct rl_bucket_outcome *o = &in->d->out[gov];
    enum rl_headers_mode mode = in->cfg->headers;

    if (mode == RL_HDR_LEGACY || mode == RL_HDR_BOTH) {
        rl_reply_add_header(out, "X-RateLimit-Limit", "%lld", (long long)g->lim.limit);
        rl_reply_add_header(out, "X-RateLimit-Remaining", "%lld", (long long)o->remaining);
        rl_reply_add_header(out, "X-RateLimit-Reset", "%lld", (long long)rl_ceil_s(o->reset_ms));
    }
    if (mode == RL_HDR_IETF || mode == RL_HDR_BOTH) rl_render_ietf(in, out);
}

/*----------------------------------------------------------------------------
 * Allowed body
 *--------------------------------------------------------------------------*/

static void rl_render_allowed(const struct rl_render_decision *in, int gov, struct rl_reply *out)
{
    const struct rl_decision *d = in->d;
    struct rl_w w;
    size_t idlen, nshadow = 0;
    const char *id = rl_request_id(in->req, &idlen);

    rl_w_begin(&w, out);
    rl_w_fmt(&w, "{\"allowed\":true,\"policy\":");
    if (gov >= 0) {
        const struct rl_bucket_outcome *o = &d->out[gov];
        rl_w_cstr(&w, in->refs[gov].policy->name);
        rl_w_fmt(&w, ",\"limit\":%lld,\"remaining\":%lld,\"reset\":%lld",
                 (long long)in->refs[gov].lim.limit, (long long)o->remaining,
                 (long long)rl_ceil_s(o->reset_ms));
    } else {
        rl_w_fmt(&w, "null");
    }
    rl_w_fmt(&w, ",\"request_id\":");
    rl_w_str(&w, id, idlen);
    if (in->degraded != RL_DEG_NONE) rl_w_fmt(&w, ",\"degraded\":true");
    if (d->replayed) rl_w_fmt(&w, ",\"replayed\":true");
    for (size_t i = 0; in->degraded == RL_DEG_NONE && i < d->n; i++) {
        if (!in->refs[i].shadow || d->out[i].allowed) continue;
        rl_w_fmt(&w, "%s", nshadow++ == 0 ? ",\"shadow_denied\":[" : ",");
        rl_w_cstr(&w, in->refs[i].policy->name);
    }
    rl_w_fmt(&w, "%s}", nshadow > 0 ? "]" : "");
    /* at most 32 names of 63 safe bytes and a 128-byte id: always fits */
    out->status = 200;
    out->content_type = rl_ct_json;
    out->body_len = w.over ? 0 : w.len;
}

/*----------------------------------------------------------------------------
 * Denial envelopes
 *--------------------------------------------------------------------------*/

struct rl_deny {
    const struct rl_render_decision *in;
    const struct rl_bucket_ref *g;
    const struct rl_bucket_outcome *o;
    int status;
    long long n, limit, reset_s;
    const char *window, *scope, *id;
    size_t idlen;
    char wbuf[32];
};

static void rl_deny_problem(const struct rl_deny *x, bool minimal, struct rl_w *w)
{
    const struct rl_render_decision *in = x->in;
    char msg[256];
    size_t nv = 0;

    snprintf(msg, sizeof(msg), "Rate limit of %lld per %s exceeded for %s; retry in %lld %s.",
             x->limit, x->window, x->scope, x->n, rl_seconds(x->n));
    rl_w_fmt(w,
             "{\"type\":\"https://iana.org/assignments/http-problem-types#quota-exceeded\","
             "\"status\":%d,\"title\":",
             x->status);
    rl_w_cstr(w, rl_status_text(x->status));
    rl_w_fmt(w, ",\"detail\":");
    rl_w_cstr(w, msg);
    if (!minimal && in->instance != NULL) {
        rl_w_fmt(w, ",\"instance\":");
        rl_w_cstr(w, in->instance);
    }
    if (!minimal) {
        rl_w_fmt(w, ",\"violated-policies\":[");
        for (size_t i = 0; i < in->d->n; i++) {
            if (in->refs[i].shadow || in->d->out[i].allowed) continue;
            rl_w_fmt(w, "%s", nv++ > 0 ? "," : "");
            rl_w_cstr(w, in->refs[i].policy->name);
        }
        rl_w_fmt(w, "]");
    }
    rl_w_fmt(w,
             ",\"retry_after_secs\":%lld,\"limit\":%lld,\"remaining\":%lld,\"reset\":%lld,"
             "\"request_id\":",
             x->n, x->limit, (long long)x->o->remaining, x->reset_s);
    rl_w_str(w, x->id, x->idlen);
    rl_w_fmt(w, "}");
}

static void rl_deny_error(const struct rl_deny *x, struct rl_w *w)
{
    char msg[256];

    snprintf(msg, sizeof(msg), "API rate limit exceeded. Please wait %lld %s before retrying.",
             x->n, rl_seconds(x->n));
    rl_w_fmt(w, "{\"error\":{\"code\":\"rate_limit_exceeded\",\"message\":");
    rl_w_cstr(w, msg);
    rl_w_fmt(w, ",\"details\":{\"limit\":%lld,\"window\":", x->limit);
    rl_w_cstr(w, x->window);
    rl_w_fmt(w, ",\"retry_after\":%lld,\"retry_after_secs\":%lld,\"request_id\":", x->n, x->n);
    rl_w_str(w, x->id, x->idlen);
    rl_w_fmt(w, "}}}");
}

/* typed, simple, flat and ws: small and of bounded size. */
static void rl_deny_other(const struct rl_deny *x, enum rl_envelope env, struct rl_w *w)
{
    char msg[256];

    if (env == RL_ENV_TYPED) {
        snprintf(msg, sizeof(msg), "Rate limit exceeded for %s. Please retry in %lld %s.", x->scope,
                 x->n, rl_seconds(x->n));
        rl_w_fmt(w, "{\"error\":{\"type\":\"rate_limit_error\",\"code\":\"rate_limit_exceeded\","
                    "\"message\":");
        rl_w_cstr(w, msg);
        rl_w_fmt(w, ",\"param\":null,\"request_id\":");
        rl_w_str(w, x->id, x->idlen);
        rl_w_fmt(w, ",\"retry_after_secs\":%lld}}", x->n);
    } else if (env == RL_ENV_SIMPLE) {
        snprintf(msg, sizeof(msg), "rate limit exceeded: try again in %lld %s", x->n,
                 rl_seconds(x->n));
        rl_w_fmt(w, "{\"error\":{\"message\":");
        rl_w_cstr(w, msg);
        rl_w_fmt(w, ",\"type\":\"rate_limit_error\",\"retry_after_secs\":%lld}}", x->n);
    } else if (env == RL_ENV_FLAT) {
        snprintf(msg, sizeof(msg), "Rate limit of %lld per %s exceeded; retry in %lld %s.",
                 x->limit, x->window, x->n, rl_seconds(x->n));
        rl_w_fmt(w, "{\"error\":\"rate_limited\",\"error_description\":");
        rl_w_cstr(w, msg);
        rl_w_fmt(w, ",\"retry_after_secs\":%lld}", x->n);
    } else {
        snprintf(msg, sizeof(msg), "Rate limit exceeded; retry in %lld %s.", x->n,
                 rl_seconds(x->n));
        rl_w_fmt(w, "{\"type\":\"error\",\"error\":{\"code\":\"RATE_LIMITED\",\"message\":");
        rl_w_cstr(w, msg);
        rl_w_fmt(w, ",\"details\":{\"retry_after_secs\":%lld,\"limit\":%lld,\"reset\":%lld}}}",
                 x->n, x->limit, x->reset_s);
    }
}

static void rl_render_denied(const struct rl_render_decision *in, int gov, struct rl_reply *out)
{
    struct rl_deny x = {.in = in, .g = &in->refs[gov], .o = &in->d->out[gov]};
    enum rl_envelope env = rl_render_envelope(in->req, x.g->policy, in->cfg);
    int64_t n = rl_ceil_s(x.o->retry_ms);
    struct rl_w w;

    x.status = in->deny_status;
    x.n = n >= 1 ? n : 1;
    x.limit = x.g->lim.limit;
    x.reset_s = rl_ceil_s(x.o->reset_ms);
    x.window = rl_window_text(&x.g->lim, x.wbuf, sizeof(x.wbuf));
    x.scope = rl_scope_name(x.g->policy->scope);
    x.id = rl_request_id(in->req, &x.idlen);
    rl_reply_add_header(out, "Retry-After", "%lld", x.n);
    for (int minimal = 0; minimal < 2; minimal++) {
        rl_w_begin(&w, out);
        if (env == RL_ENV_PROBLEM)
            rl_deny_problem(&x, minimal, &w);
        else if (env == RL_ENV_ERROR)
            rl_deny_error(&x, &w);
        else
            rl_deny_other(&x, env, &w);
        if (!w.over) break;
    }
    out->status = x.status;
    out->content_type = env == RL_ENV_PROBLEM ? rl_ct_problem : rl_ct_json;
    out->body_len = w.over ? 0 : w.len;
}

/*----------------------------------------------------------------------------
 * A decision
 *--------------------------------------------------------------------------*/

/* A decision that is neither allowed, denied nor degraded (a store error the
 * caller should have turned into an error): rendered as a 500, never guessed. */
static void rl_render_bad_decision(const struct rl_render_decision *in, struct rl_reply *out)
{
    struct rl_error err;
    size_t idlen;
    const char *id = rl_request_id(in->req, &idlen);

    rl_error_set(&err, RL_EINTERNAL, 500, "", "the decision could not be rendered");
    rl_render_error(&err, rl_render_envelope(in->req, NULL, in->cfg), id, in->instance, 0, out);
}

void rl_render_decision(const struct rl_render_decision *in, struct rl_reply *out)
{
    const struct rl_decision *d = in->d;
    bool degraded = in->degraded != RL_DEG_NONE;
    int gov = in->governing >= 0 && (size_t)in->governing < d->n && !degraded ? in->governing : -1;
    size_t idlen;

    rl_reply_reset(out);
    if (!degraded && (d->status != RL_OK || (!d->allowed && gov < 0))) {
        rl_render_bad_decision(in, out);
        return;
    }
    if (gov >= 0) rl_render_rate_headers(in, gov, out);
    if (!degraded && !d->allowed) {
        rl_render_denied(in, gov, out);
    } else if (in->auth) {
        out->status = 204;
    } else {
        rl_render_allowed(in, gov, out);
    }
    if (degraded)
        rl_reply_add_header(out, "X-RateLimit-Degraded", "%s",
                            in->degraded == RL_DEG_TIMEOUT ? "redis-timeout" : "redis-unavailable");
    rl_reply_add_header(out, "X-Request-ID", "%s", rl_request_id(in->req, &idlen));
}

/*----------------------------------------------------------------------------
 * The service's own errors
 *--------------------------------------------------------------------------*/

struct rl_errx {
    int status, retry;
    const char *type, *msg, *field, *id, *instance;
    size_t msglen, fieldlen;
};

/* The optional tail members: "field" [F], "retry_after_secs" [N], then
 * "request_id" [ID] when with_id. */
static void rl_err_tail(const struct rl_errx *x, bool first, bool with_id, struct rl_w *w)
{
    if (x->fieldlen > 0) {
        rl_w_key(w, &first, "field");
        rl_w_str(w, x->field, x->fieldlen);
    }
    if (x->retry > 0) {
        rl_w_key(w, &first, "retry_after_secs");
        rl_w_fmt(w, "%d", x->retry);
    }
    if (with_id && x->id != NULL) {
        rl_w_key(w, &first, "request_id");
        rl_w_cstr(w, x->id);
    }
}

static void rl_err_problem(const struct rl_errx *x, bool minimal, struct rl_w *w)
{
    rl_w_fmt(w, "{\"type\":\"urn:ratelimitd:problem:%s\",\"status\":%d,\"title\":", x->type,
             x->status);
    rl_w_cstr(w, rl_status_text(x->status));
    rl_w_fmt(w, ",\"detail\":");
    rl_w_str(w, x->msg, x->msglen);
    if (!minimal && x->instance != NULL) {
        rl_w_fmt(w, ",\"instance\":");
        rl_w_cstr(w, x->instance);
    }
    rl_err_tail(x, false, true, w);
    rl_w_fmt(w, "}");
}

static void rl_err_other(const struct rl_errx *x, enum rl_envelope env, struct rl_w *w)
{
    char upper[64];
    size_t i;

    if (env == RL_ENV_ERROR || env == RL_ENV_WS) {
        for (i = 0; x->type[i] != '\0' && i + 1 < sizeof(upper); i++)
            upper[i] = x->type[i] >= 'a' && x->type[i] <= 'z' ? x->type[i] - 'a' + 'A' : x->type[i];
        upper[i] = '\0';
        rl_w_fmt(w, "%s\"error\":{\"code\":\"%s\",\"message\":",
                 env == RL_ENV_WS ? "{\"type\":\"error\"," : "{",
                 env == RL_ENV_WS ? upper : x->type);
        rl_w_str(w, x->msg, x->msglen);
        rl_w_fmt(w, ",\"details\":{");
        rl_err_tail(x, true, true, w);
        rl_w_fmt(w, "}}}");
    } else if (env == RL_ENV_TYPED) {
        rl_w_fmt(w, "{\"error\":{\"type\":\"%s\",\"code\":\"%s\",\"message\":", x->type, x->type);
        rl_w_str(w, x->msg, x->msglen);
        rl_w_fmt(w, ",\"param\":");
        rl_w_str(w, x->fieldlen > 0 ? x->field : NULL, x->fieldlen);
        rl_w_fmt(w, ",\"request_id\":");
        rl_w_cstr(w, x->id);
        if (x->retry > 0) rl_w_fmt(w, ",\"retry_after_secs\":%d", x->retry);
        rl_w_fmt(w, "}}");
    } else if (env == RL_ENV_SIMPLE) {
        rl_w_fmt(w, "{\"error\":{\"message\":");
        rl_w_str(w, x->msg, x->msglen);
        rl_w_fmt(w, ",\"type\":\"%s\"", x->type);
        rl_err_tail(x, false, false, w);
        rl_w_fmt(w, "}}");
    } else {
        rl_w_fmt(w, "{\"error\":\"%s\",\"error_description\":", x->type);
        rl_w_str(w, x->msg, x->msglen);
        rl_err_tail(x, false, false, w);
        rl_w_fmt(w, "}");
    }
}

void rl_render_error(const struct rl_error *err, enum rl_envelope env, const char *request_id,
                     const char *instance, int retry_after_s, struct rl_reply *out)
{
    struct rl_errx x = {.retry = retry_after_s, .id = request_id, .instance = instance};
    struct rl_w w;

    rl_reply_reset(out);
    if ((int)env < 0 || env >= RL_ENV_COUNT) env = RL_ENV_PROBLEM;
    x.status =
        err != NULL && err->http_status >= 100 && err->http_status <= 599 ? err->http_status : 500;
    x.type = rl_error_type(x.status);
    x.msg = err != NULL ? err->message : "internal error";
    x.msglen = err != NULL ? strnlen(err->message, sizeof(err->message)) : strlen(x.msg);
    x.field = err != NULL ? err->path : "";
    x.fieldlen = err != NULL ? strnlen(err->path, sizeof(err->path)) : 0;
    for (int minimal = 0; minimal < 2; minimal++) {
        rl_w_begin(&w, out);
        if (env == RL_ENV_PROBLEM)
            rl_err_problem(&x, minimal, &w);
        else
            rl_err_other(&x, env, &w);
        if (!w.over) break;
    }
    out->status = x.status;
    out->content_type = env == RL_ENV_PROBLEM ? rl_ct_problem : rl_ct_json;
    out->body_len = w.over ? 0 : w.len;
    if (retry_after_s > 0) rl_reply_add_header(out, "Retry-After", "%d", retry_after_s);
    if (request_id != NULL) rl_reply_add_header(out, "X-Request-ID", "%s", request_id);
}
