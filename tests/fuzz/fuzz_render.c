/* fuzz_render.c -- libFuzzer harness for render.c: rl_render_decision, then
 * rl_render_error in every envelope, and rl_json_string with a short buffer.
 * Feeds (struct rl_fuzz_in, fuzz.h): flags (config, headers mode, allowed,
 * replayed, auth, degraded), envelopes, a store status, up to 32 refs taken
 * from one of two parsed configs (policies, overrides, shadow) with outcomes
 * whose numbers include INT64_MIN/MAX, now_ms, the governing index (given, or
 * rl_decide_governing's), the deny status; a request_id of any bytes, a path
 * of any bytes (repeated up to 1023 bytes) as the problem "instance"; an error
 * status of 400..504 with any message/path bytes and any retry_after_s.
 * Checks, on every reply: at most RL_REPLY_HEADERS_MAX headers inside hbuf,
 * no header value with a control byte, RateLimit and RateLimit-Policy with
 * as many members; a body (<= RL_REPLY_BODY, never empty
 * unless 204) that json-c parses strictly (valid UTF-8, whole input); a
 * Retry-After of >= 1 whole seconds equal to the body's retry_after_secs; a
 * denial has its deny_status and Retry-After; a valid request id is echoed in
 * X-Request-ID; rl_reply_add_header refuses exactly the values with a control
 * byte. */
#include "fuzz.h"
#include "decide.h"

#include <json-c/json.h>

static struct rl_config *rl_fuzz_cfg[2];

/* Match rules, overrides, shadow, per-policy envelopes, a 365d window. */
static const char rl_fuzz_cfg_a[] =
    "{\"policies\":["
    "{\"name\":\"per-key\",\"scope\":\"key\",\"limit\":100,\"window\":\"60s\"},"
    "{\"name\":\"per-org\",\"scope\":\"org\",\"limit\":1000,\"window\":\"1m\",\"burst\":200,"
    "\"envelope\":\"error\"},"
    "{\"name\":\"calls-post\",\"scope\":\"caller\",\"limit\":5,\"window\":\"1s\",\"match\":"
    "{\"method\":\"POST\",\"path_prefix\":\"/v1/calls\"},\"shadow\":true,\"envelope\":\"ws\"},"
    "{\"name\":\"year\",\"scope\":\"ip\",\"limit\":1000000000,\"window\":\"365d\","
    "\"burst\":142}],"
    "\"overrides\":[{\"policy\":\"per-org\",\"id\":\"acme\",\"limit\":10000},"
    "{\"policy\":\"per-key\",\"id\":\"k\",\"window\":\"250ms\"}]}";

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    rl_fuzz_cfg[0] = rl_fuzz_config(rl_fuzz_cfg_a);
    rl_fuzz_cfg[1] = rl_fuzz_config_max();
    return 0;
}

/* obj[key] at any depth of a parsed body, or NULL. */
static struct json_object *rl_fuzz_find(struct json_object *o, const char *key)
{
    struct json_object *v = NULL;

    if (!json_object_is_type(o, json_type_object)) return NULL;
    if (json_object_object_get_ex(o, key, &v)) return v;
    json_object_object_foreach(o, k, child)
    {
        (void)k;
        if ((v = rl_fuzz_find(child, key)) != NULL) return v;
    }
    return NULL;
}

/* The value of header `name`, or NULL. */
static const char *rl_fuzz_header(const struct rl_reply *r, const char *name)
{
    for (size_t i = 0; i < r->nheaders; i++)
        if (strcmp(r->headers[i].name, name) == 0) return r->headers[i].value;
    return NULL;
}

/* Occurrences of sub in s (NULL: none). */
static size_t rl_fuzz_count(const char *s, const char *sub)
{
    size_t n = 0;

    while (s != NULL && (s = strstr(s, sub)) != NULL)
        n++, s++;
    return n;
}

/* What every reply must be; returns Retry-After in seconds, or 0 without one. */
static long long rl_fuzz_check_reply(const struct rl_reply *r)
{
    const char *ra;
    struct json_tokener *tok;
    struct json_object *body, *v;
    long long retry = 0;

    RL_FUZZ_CHECK(r->nheaders <= RL_REPLY_HEADERS_MAX && r->hlen <= RL_REPLY_HBUF);
    for (size_t i = 0; i < r->nheaders; i++) {
        const char *val = r->headers[i].value;

        RL_FUZZ_CHECK(r->headers[i].name != NULL && val >= r->hbuf && val < r->hbuf + r->hlen);
        RL_FUZZ_CHECK(memchr(val, '\0', (size_t)(r->hbuf + r->hlen - val)) != NULL);
        RL_FUZZ_CHECK(!rl_fuzz_outside(val, strlen(val), 0x20, 0xff) && !strchr(val, 0x7f));
    }
    if ((ra = rl_fuzz_header(r, "RateLimit-Policy")) != NULL) /* one member each */
        RL_FUZZ_CHECK(rl_fuzz_count(ra, ";q=") ==
                      rl_fuzz_count(rl_fuzz_header(r, "RateLimit"), ";r="));
    if ((ra = rl_fuzz_header(r, "Retry-After")) != NULL) {
        RL_FUZZ_CHECK(ra[0] >= '1' && ra[0] <= '9' && strspn(ra, "0123456789") == strlen(ra));
        retry = strtoll(ra, NULL, 10);
    }
    RL_FUZZ_CHECK(r->body_len <= RL_REPLY_BODY);
    RL_FUZZ_CHECK(r->body_len > 0 || r->status == 204);
    if (r->body_len == 0) return retry;
    RL_FUZZ_CHECK(r->content_type != NULL && (tok = json_tokener_new()) != NULL);
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    body = json_tokener_parse_ex(tok, r->body, (int)r->body_len);
    RL_FUZZ_CHECK(body != NULL && json_object_is_type(body, json_type_object));
    RL_FUZZ_CHECK(json_tokener_get_parse_end(tok) == r->body_len);
    json_tokener_free(tok);
    if (retry > 0) { /* the header and the body agree */
        v = rl_fuzz_find(body, "retry_after_secs");
        RL_FUZZ_CHECK(json_object_is_type(v, json_type_int) && json_object_get_int64(v) == retry);
    }
    if (json_object_object_get_ex(body, "status", &v)) /* problem: the real status */
        RL_FUZZ_CHECK(json_object_get_int(v) == r->status);
    json_object_put(body);
    return retry;
}

/* A valid request id (what request.c guarantees) is echoed; none is invented. */
static void rl_fuzz_check_rid(const struct rl_reply *r, const char *rid)
{
    const char *h = rl_fuzz_header(r, "X-Request-ID");
    size_t len = rid != NULL ? strlen(rid) : 0;

    if (len >= 1 && len <= RL_ID_MAX && !rl_fuzz_outside(rid, len, 0x21, 0x7e))
        RL_FUZZ_CHECK(h != NULL && strcmp(h, rid) == 0);
    RL_FUZZ_CHECK(h == NULL || rid != NULL);
}

/* refs[0..n) and their outcomes from the input. */
static size_t rl_fuzz_refs(struct rl_fuzz_in *in, const struct rl_config *c,
                           struct rl_bucket_ref *refs, struct rl_decision *d)
{
    static const char *const ids[] = {"acme", "k", "10.0.0.1", "x"};
    size_t n = rl_fuzz_u8(in) % (RL_MAX_POLICIES + 1);

    for (size_t i = 0; i < n; i++) {
        size_t pi = rl_fuzz_u8(in) % c->npolicies;
        const char *id = ids[rl_fuzz_u8(in) % 4];
        const struct rl_policy *p = &c->policies[pi];

        refs[i] = (struct rl_bucket_ref){p,  (int)pi,    *rl_policy_limit(p, id, strlen(id)),
                                         id, strlen(id), p->shadow};
        d->out[i].allowed = rl_fuzz_u8(in) & 1;
        d->out[i].remaining = rl_fuzz_i64(in);
        d->out[i].reset_ms = rl_fuzz_i64(in);
        d->out[i].retry_ms = rl_fuzz_i64(in);
    }
    d->n = n;
    return n;
}

/* The problem "instance": a string of any bytes, repeated up to 1023 bytes. */
static const char *rl_fuzz_instance(struct rl_fuzz_in *in, char *buf)
{
    char part[256];
    size_t len = rl_fuzz_str(in, part, sizeof(part)), reps = rl_fuzz_u8(in), w = 0;

    if (reps == 0) return NULL;
    for (size_t k = 0; k < reps % 16 && len > 0 && w + len < RL_PATH_MAX; k++, w += len)
        memcpy(buf + w, part, len);
    buf[w] = '\0';
    return buf;
}

static void rl_fuzz_decision(struct rl_fuzz_in *in, struct rl_request *req, char *path)
{
    static const int stores[] = {RL_OK, RL_OK, RL_OK, RL_ETIMEDOUT, RL_EUNAVAIL, RL_ECONFLICT};
    static const int deny[] = {429, 429, 403, 503};
    uint8_t fl = rl_fuzz_u8(in), g;
    struct rl_config *c = rl_fuzz_cfg[fl & 1];
    struct rl_bucket_ref refs[RL_MAX_POLICIES];
    struct rl_decision d = {.allowed = fl >> 3 & 1, .replayed = fl >> 4 & 1};
    struct rl_render_decision rd = {.cfg = c, .req = req, .refs = refs, .d = &d};
    static struct rl_reply out;
    long long retry;
    bool denied;

    c->headers = (enum rl_headers_mode)((fl >> 1 & 3) % 3);
    c->envelope = (enum rl_envelope)(rl_fuzz_u8(in) % RL_ENV_COUNT);
    rd.auth = fl >> 5 & 1;
    rd.degraded = (enum rl_degraded)((fl >> 6) % 3);
    d.status = stores[rl_fuzz_u8(in) % 6];
    rl_fuzz_refs(in, c, refs, &d);
    d.now_ms = rl_fuzz_i64(in);
    g = rl_fuzz_u8(in);
    rd.governing = g & 0x80 ? rl_decide_governing(refs, &d) : (int)(g % (d.n + 1)) - 1;
    rd.deny_status = deny[rl_fuzz_u8(in) % 4];
    req->envelope = rl_fuzz_u8(in) % (RL_ENV_COUNT + 1) - 1;
    rl_fuzz_str(in, req->request_id, sizeof(req->request_id));
    rd.instance = rl_fuzz_instance(in, path);

    memset(&out, 0xaa, sizeof(out)); /* nothing stale can pass a check */
    rl_render_decision(&rd, &out);
    retry = rl_fuzz_check_reply(&out);
    rl_fuzz_check_rid(&out, req->request_id);
    denied = d.status == RL_OK && !d.allowed && rd.degraded == RL_DEG_NONE && rd.governing >= 0 &&
             (size_t)rd.governing < d.n;
    RL_FUZZ_CHECK(!denied || (out.status == rd.deny_status && retry >= 1));
}

static void rl_fuzz_error(struct rl_fuzz_in *in, const struct rl_request *req, const char *path)
{
    static const int status[] = {400, 401, 403, 404, 405, 409, 413, 500, 503, 504};
    struct rl_error err;
    static struct rl_reply out;
    uint8_t fl = rl_fuzz_u8(in);
    int retry = (int)rl_fuzz_i64(in);
    const char *rid = fl & 1 ? req->request_id : NULL;

    memset(&err, 0, sizeof(err));
    err.code = RL_EINVAL;
    err.http_status = status[rl_fuzz_u8(in) % 10];
    rl_fuzz_str(in, err.message, sizeof(err.message));
    rl_fuzz_str(in, err.path, sizeof(err.path));
    for (int env = 0; env <= RL_ENV_COUNT; env++) { /* RL_ENV_COUNT: out of range */
        memset(&out, 0xaa, sizeof(out));
        rl_render_error(&err, (enum rl_envelope)env, rid, fl & 2 ? path : NULL, retry, &out);
        RL_FUZZ_CHECK(out.status == err.http_status);
        RL_FUZZ_CHECK(rl_fuzz_check_reply(&out) == (retry > 0 ? retry : 0));
        rl_fuzz_check_rid(&out, rid);
    }
}

/* rl_json_string into a short buffer: NUL-terminated, a prefix of the whole. */
static void rl_fuzz_json_cut(struct rl_fuzz_in *in, const char *s)
{
    char whole[6 * RL_ID_MAX + 8], cut[256];
    size_t cap = rl_fuzz_u8(in), need = rl_json_string(whole, sizeof(whole), s, strlen(s));

    RL_FUZZ_CHECK(need < sizeof(whole) && strlen(whole) == need);
    RL_FUZZ_CHECK(rl_json_string(cut, cap, s, strlen(s)) == need);
    RL_FUZZ_CHECK(cap == 0 || (strlen(cut) < cap && strncmp(cut, whole, strlen(cut)) == 0));
}

/* rl_reply_add_header refuses exactly the values with a control byte. */
static void rl_fuzz_add_header(const char *v)
{
    static struct rl_reply out;
    int rc;

    memset(&out, 0, sizeof(out));
    rc = rl_reply_add_header(&out, "X-Request-ID", "%s", v);
    RL_FUZZ_CHECK(
        rc == (rl_fuzz_outside(v, strlen(v), 0x20, 0xff) || strchr(v, 0x7f) ? RL_EINVAL : RL_OK));
    RL_FUZZ_CHECK(out.nheaders == (rc == RL_OK) && (rc != RL_OK || strcmp(out.hbuf, v) == 0));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct rl_fuzz_in in = {data, size};
    static struct rl_request req;
    static char path[RL_PATH_MAX];

    memset(&req, 0, sizeof(req));
    path[0] = '\0';
    rl_fuzz_decision(&in, &req, path);
    rl_fuzz_error(&in, &req, path);
    rl_fuzz_json_cut(&in, req.request_id);
    rl_fuzz_add_header(req.request_id);
    return 0;
}
