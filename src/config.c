/* config.c -- the policy file (JSON, SPEC section 1) turned into struct rl_config:
 * json-c parsing, validation that names file, JSON path and reason, the embedded
 * default, the --listen/--redis overrides, reference counting and lookups.
 * Knows nothing of Redis or HTTP: a Redis URL is only split into its parts.
 * Invariant: a parsed config is complete and valid; nothing half-built escapes. */
#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define RL_CONFIG_FILE_MAX         (1024 * 1024)
#define RL_CONFIG_LIMIT_MAX        1000000000
#define RL_CONFIG_WINDOW_MAX_MS    (365LL * 86400 * 1000)
#define RL_CONFIG_TICKS_MAX        ((int64_t)1 << 52)
#define RL_CONFIG_PREFIX_MAX       32
#define RL_CONFIG_HEADER_MAX       63
#define RL_CONFIG_METHOD_MAX       32
#define RL_CONFIG_MATCH_PREFIX_MAX 1000
#define RL_CONFIG_PATH             128 /* sizeof(err->path) */
#define RL_CONFIG_UNIX_PATH_MAX    107 /* sun_path holds 108 bytes with the NUL */

/* The embedded default (README "Embedded default"): parsed like any file. */
const char rl_config_default_json[] =
    "{\n"
    "  \"policies\": [\n"
    "    { \"name\": \"per-key\",    \"scope\": \"key\",    \"limit\": 100,  \"window\": \"60s\" "
    "},\n"
    "    { \"name\": \"per-caller\", \"scope\": \"caller\", \"limit\": 60,   \"window\": \"1m\" "
    "},\n"
    "    { \"name\": \"per-org\",    \"scope\": \"org\",    \"limit\": 1000, \"window\": \"1m\",\n"
    "      \"burst\": 200 },\n"
    "    { \"name\": \"per-ip\",     \"scope\": \"ip\",     \"limit\": 300,  \"window\": \"1m\" }\n"
    "  ]\n"
    "}\n";

/* One parse: where its messages go. */
struct rl_config_ctx {
    const char *file; /* the file name, or "<config>" */
    struct rl_error *err;
};

/* A Redis URL split into parts; the strings are owned until applied. */
struct rl_config_redis {
    char host[256];
    uint16_t port;
    int db;
    char *unix_path;
    char *user;
    char *password;
};

static const char *const rl_config_failure_names[] = {"open", "closed", NULL};
static const char *const rl_config_headers_names[] = {"legacy", "ietf", "both", NULL};
static const char *const rl_config_log_names[] = {"off", "denied", "all", NULL};
static const char *const rl_config_scope_names[] = {"caller", "key", "org", "ip", NULL};
static const char *const rl_config_env_names[] = {"problem", "error", "typed", "simple",
                                                  "flat",    "ws",    NULL};

/*----------------------------------------------------------------------------
 * Messages and paths
 *--------------------------------------------------------------------------*/

/* err->message = "FILE: PATH: why" (or "FILE: why" when the path is empty). */
__attribute__((format(printf, 3, 4))) static void
rl_config_failf(struct rl_config_ctx *x, const char *path, const char *fmt, ...)
{
    char why[224];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    if (path[0] == '\0')
        rl_error_set(x->err, RL_EINVAL, 400, "", "%s: %s", x->file, why);
    else
        rl_error_set(x->err, RL_EINVAL, 400, path, "%s: %s: %s", x->file, path, why);
}

/* Fill the error and give RL_EINVAL, visibly to the compiler (a variadic function
 * is never inlined, so its return value would hide that callers stop here). */
#define rl_config_fail(x, path, ...) (rl_config_failf((x), (path), __VA_ARGS__), RL_EINVAL)

static int rl_config_nomem(struct rl_config_ctx *x)
{
    rl_error_set(x->err, RL_ENOMEM, 500, "", "%s: out of memory", x->file);
    return RL_ENOMEM;
}

/* Copy user text into out[n] (n >= 4) for a message: printable ASCII only (others
 * become '?'), cut with "..." when it does not fit. */
static const char *rl_config_quote(char *out, size_t n, const char *s, size_t len)
{
    bool cut = len > n - 1;
    size_t keep = cut ? n - 4 : len;

    for (size_t i = 0; i < keep; i++)
        out[i] = ((unsigned char)s[i] >= 0x20 && (unsigned char)s[i] < 0x7f) ? s[i] : '?';
    memcpy(out + keep, cut ? "..." : "", cut ? 4 : 1);
    return out;
}

/* "base.key" (or "key" at the top) into buf[RL_CONFIG_PATH]. A path longer than
 * err->path is cut; its beginning still locates the field. */
static const char *rl_config_at(char *buf, const char *base, const char *key)
{
    if (snprintf(buf, RL_CONFIG_PATH, "%s%s%s", base, base[0] != '\0' ? "." : "", key) < 0)
        buf[0] = '\0';
    return buf;
}

/* "base[i]" into buf[RL_CONFIG_PATH]. */
static const char *rl_config_index(char *buf, const char *base, size_t i)
{
    if (snprintf(buf, RL_CONFIG_PATH, "%s[%zu]", base, i) < 0) buf[0] = '\0';
    return buf;
}

/* A syntax error at byte offset off: line and column count from 1 (in bytes). */
static int rl_config_syntax(struct rl_config_ctx *x, const char *json, size_t off, const char *why)
{
    size_t line = 1, col = 1;

    for (size_t i = 0; i < off; i++) {
        col++;
        if (json[i] == '\n') {
            line++;
            col = 1;
        }
    }
    rl_error_set(x->err, RL_EINVAL, 400, "", "%s: invalid JSON at line %zu, column %zu: %s",
                 x->file, line, col, why);
    return RL_EINVAL;
}

/*----------------------------------------------------------------------------
 * Typed values. A NULL value is a JSON null: wrong type for all of these.
 *--------------------------------------------------------------------------*/

/* Fetch obj[key]: true if present (*v is NULL for a JSON null). */
static bool rl_config_get(struct json_object *obj, const char *key, struct json_object **v)
{
    return json_object_object_get_ex(obj, key, v) != 0;
}

/* The same, for a required field. */
static int rl_config_need(struct rl_config_ctx *x, struct json_object *obj, const char *base,
                          const char *key, struct json_object **v)
{
    char path[RL_CONFIG_PATH];

    if (!rl_config_get(obj, key, v))
        return rl_config_fail(x, rl_config_at(path, base, key), "required field is missing");
    return RL_OK;
}

/* Every key of obj must be one of names (NULL-terminated). */
static int rl_config_known(struct rl_config_ctx *x, struct json_object *obj, const char *base,
                           const char *const *names)
{
    char path[RL_CONFIG_PATH], q[64];

    json_object_object_foreach(obj, key, val)
    {
        size_t i = 0;

        (void)val;
        while (names[i] != NULL && strcmp(names[i], key) != 0)
            i++;
        if (names[i] == NULL)
            return rl_config_fail(
                x, rl_config_at(path, base, rl_config_quote(q, sizeof(q), key, strlen(key))),
                "unknown field");
    }
    return RL_OK;
}

static int rl_config_object(struct rl_config_ctx *x, struct json_object *v, const char *path)
{
    if (!json_object_is_type(v, json_type_object))
        return rl_config_fail(x, path, "expected an object");
    return RL_OK;
}

/* A string without NUL bytes; *s is borrowed from v. */
static int rl_config_str(struct rl_config_ctx *x, struct json_object *v, const char *path,
                         const char **s, size_t *len)
{
    if (!json_object_is_type(v, json_type_string))
        return rl_config_fail(x, path, "expected a string");
    *s = json_object_get_string(v);
    *len = (size_t)json_object_get_string_len(v);
    if (memchr(*s, '\0', *len) != NULL)
        return rl_config_fail(x, path, "must not contain a NUL byte");
    return RL_OK;
}

static int rl_config_int(struct rl_config_ctx *x, struct json_object *v, const char *path,
                         int64_t min, int64_t max, int64_t *out)
{
    int64_t n;

    /* json-c clamps integers outside int64 to INT64_MIN / INT64_MAX. */
    if (!json_object_is_type(v, json_type_int) || (n = json_object_get_int64(v)) < min || n > max)
        return rl_config_fail(x, path, "expected an integer from %lld to %lld", (long long)min,
                              (long long)max);
    *out = n;
    return RL_OK;
}

static int rl_config_bool(struct rl_config_ctx *x, struct json_object *v, const char *path,
                          bool *out)
{
    if (!json_object_is_type(v, json_type_boolean))
        return rl_config_fail(x, path, "expected true or false");
    *out = json_object_get_boolean(v) != 0;
    return RL_OK;
}

/* One of names (NULL-terminated): *out is its index. */
static int rl_config_enum(struct rl_config_ctx *x, struct json_object *v, const char *path,
                          const char *const *names, int *out)
{
    char list[96] = "";
    const char *s;
    size_t len;

    if (json_object_is_type(v, json_type_string)) {
        s = json_object_get_string(v);
        len = (size_t)json_object_get_string_len(v);
        for (int i = 0; names[i] != NULL; i++) {
            if (strlen(names[i]) == len && memcmp(names[i], s, len) == 0) {
                *out = i;
                return RL_OK;
            }
        }
    }
    for (int i = 0; names[i] != NULL; i++) {
        strcat(list, i == 0 ? "\"" : ", \"");
        strcat(list, names[i]);
        strcat(list, "\"");
    }
    return rl_config_fail(x, path, "expected one of %s", list);
}

/* A duration string ("60s") into *ms, and its text into text[24] when not NULL. */
static int rl_config_window(struct rl_config_ctx *x, struct json_object *v, const char *path,
                            int64_t *ms, char *text)
{
    char q[32];
    const char *s;
    size_t len;
    int64_t n;
    int rc;

    if ((rc = rl_config_str(x, v, path, &s, &len)) != RL_OK) return rc;
    if (rl_window_parse(s, &n) != RL_OK)
        return rl_config_fail(x, path,
                              "invalid duration \"%s\": expected a positive integer and a unit "
                              "(ms, s, m, h, d), at most 365d",
                              rl_config_quote(q, sizeof(q), s, len));
    *ms = n;
    if (text != NULL) memcpy(text, s, len + 1); /* rl_window_parse accepts at most 14 bytes */
    return RL_OK;
}

/*----------------------------------------------------------------------------
 * Durations, listen addresses, Redis URLs
 *--------------------------------------------------------------------------*/

/* Stricter than the header says: no leading zero (so the text always fits
 * rl_limit.window) and at most 365d. */
int rl_window_parse(const char *s, int64_t *ms)
{
    static const struct {
        const char *unit;
        int64_t ms;
    } units[] = {{"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000}};
    int64_t n = 0;
    size_t i = 0;

    if (s == NULL || s[0] < '1' || s[0] > '9') /* no sign, no leading zero, not empty */
        return RL_EINVAL;
    for (; s[i] >= '0' && s[i] <= '9'; i++) {
        n = n * 10 + (s[i] - '0');
        if (n > RL_CONFIG_WINDOW_MAX_MS) /* stops long before int64 overflows */
            return RL_EINVAL;
    }
    for (size_t u = 0; u < sizeof(units) / sizeof(units[0]); u++) {
        if (strcmp(s + i, units[u].unit) == 0) {
            if (n > RL_CONFIG_WINDOW_MAX_MS / units[u].ms) return RL_EINVAL;
            *ms = n * units[u].ms;
            return RL_OK;
        }
    }
    return RL_EINVAL;
}

/* Decimal digits only, no sign, into [min, max]. */
static bool rl_config_number(const char *s, size_t len, int64_t min, int64_t max, int64_t *out)
{
    int64_t n = 0;

    if (len == 0 || len > 10) return false;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') return false;
        n = n * 10 + (s[i] - '0');
    }
    if (n < min || n > max) return false;
    *out = n;
    return true;
}

/* "host:port", "[v6]:port" or ":port" (0.0.0.0). NULL, or why not. */
static const char *rl_config_parse_listen(const char *s, size_t len, char *host, uint16_t *port)
{
    const char *colon = memrchr(s, ':', len);
    char h[64];
    unsigned char a[16];
    size_t hlen;
    int64_t p;

    if (memchr(s, '\0', len) != NULL || colon == NULL)
        return "expected host:port, [IPv6]:port or :port";
    hlen = (size_t)(colon - s);
    if (s[0] == '[') {
        if (hlen < 3 || s[hlen - 1] != ']' || hlen - 2 >= sizeof(h)) return "expected [IPv6]:port";
        memcpy(h, s + 1, hlen - 2);
        h[hlen - 2] = '\0';
        if (inet_pton(AF_INET6, h, a) != 1) return "expected a numeric IPv6 address inside [ ]";
    } else if (hlen == 0) {
        strcpy(h, "0.0.0.0");
    } else {
        if (hlen >= sizeof(h)) return "expected a numeric IPv4 address or [IPv6] (no host names)";
        memcpy(h, s, hlen);
        h[hlen] = '\0';
        if (inet_pton(AF_INET6, h, a) == 1) return "an IPv6 address needs brackets: [IPv6]:port";
        if (inet_pton(AF_INET, h, a) != 1)
            return "expected a numeric IPv4 address or [IPv6] (no host names)";
    }
    if (!rl_config_number(colon + 1, len - hlen - 1, 1, 65535, &p))
        return "expected a port from 1 to 65535";
    strcpy(host, h);
    *port = (uint16_t)p;
    return NULL;
}

/* Percent-decode s[0..len) into a new string (NULL on ENOMEM); *bad when malformed. */
static char *rl_config_unescape(const char *s, size_t len, bool *bad)
{
    char *out = malloc(len + 1), hex[3] = {0};
    size_t o = 0;

    if (out == NULL) return NULL;
    for (size_t i = 0; i < len; i++) {
        if (s[i] != '%') {
            out[o++] = s[i];
            continue;
        }
        if (i + 2 >= len || !isxdigit((unsigned char)s[i + 1]) ||
            !isxdigit((unsigned char)s[i + 2])) {
            *bad = true;
            break;
        }
        memcpy(hex, s + i + 1, 2);
        out[o] = (char)strtol(hex, NULL, 16);
        if (out[o++] == '\0') *bad = true;
        i += 2;
    }
    out[o] = '\0';
    return out;
}

static void rl_config_redis_clear(struct rl_config_redis *r)
{
    free(r->unix_path);
    free(r->user);
    free(r->password);
    r->unix_path = r->user = r->password = NULL;
}

/* "user:password" or ":password" (percent-encoded), the part before '@'. */
static int rl_config_redis_auth(const char *s, size_t len, struct rl_config_redis *r,
                                const char **why)
{
    const char *colon = memchr(s, ':', len);
    bool bad = false;

    if (colon == NULL || colon + 1 == s + len) {
        *why = "expected user:password@ or :password@ before the host";
        return RL_EINVAL;
    }
    if (colon > s && (r->user = rl_config_unescape(s, (size_t)(colon - s), &bad)) == NULL)
        return RL_ENOMEM;
    r->password = rl_config_unescape(colon + 1, (size_t)(s + len - colon - 1), &bad);
    if (r->password == NULL) return RL_ENOMEM;
    if (bad) {
        *why = "bad %-escape in the user or password";
        return RL_EINVAL;
    }
    return RL_OK;
}

/* "host", "host:port", "[v6]" or "[v6]:port"; the port defaults to 6379. */
static int rl_config_redis_host(const char *s, size_t len, struct rl_config_redis *r,
                                const char **why)
{
    const char *end = s + len, *colon, *rb;
    unsigned char a[16];
    size_t hlen;
    int64_t port = 6379;

    *why = "expected a host name or address (letters, digits, '-', '.', '_', or [IPv6])";
    if (len > 0 && s[0] == '[') {
        rb = memchr(s, ']', len);
        if (rb == NULL || rb == s + 1 || (size_t)(rb - s - 1) >= sizeof(r->host)) return RL_EINVAL;
        hlen = (size_t)(rb - s - 1);
        memcpy(r->host, s + 1, hlen);
        r->host[hlen] = '\0';
        if (inet_pton(AF_INET6, r->host, a) != 1 || (rb + 1 < end && rb[1] != ':'))
            return RL_EINVAL;
        colon = rb + 1 < end ? rb + 1 : NULL;
    } else {
        colon = memchr(s, ':', len);
        hlen = colon != NULL ? (size_t)(colon - s) : len;
        if (hlen == 0 || hlen >= sizeof(r->host)) return RL_EINVAL;
        for (size_t i = 0; i < hlen; i++)
            if (!isalnum((unsigned char)s[i]) && s[i] != '-' && s[i] != '.' && s[i] != '_')
                return RL_EINVAL;
        memcpy(r->host, s, hlen);
        r->host[hlen] = '\0';
    }
    if (colon != NULL && !rl_config_number(colon + 1, (size_t)(end - colon - 1), 1, 65535, &port)) {
        *why = "expected a port from 1 to 65535";
        return RL_EINVAL;
    }
    r->port = (uint16_t)port;
    return RL_OK;
}

/* After "redis://": [user:password@]host[:port][/db]. */
static int rl_config_redis_tcp(const char *s, size_t len, struct rl_config_redis *r,
                               const char **why)
{
    const char *end = s + len, *slash = memchr(s, '/', len), *at, *host;
    size_t alen = slash != NULL ? (size_t)(slash - s) : len;
    int64_t db = 0;
    int rc;

    if (memchr(s, '?', len) != NULL || memchr(s, '#', len) != NULL) {
        *why = "query parameters are not supported in redis:// URLs";
        return RL_EINVAL;
    }
    at = memrchr(s, '@', alen);
    if (at != NULL && (rc = rl_config_redis_auth(s, (size_t)(at - s), r, why)) != RL_OK) return rc;
    host = at != NULL ? at + 1 : s;
    if ((rc = rl_config_redis_host(host, (size_t)(s + alen - host), r, why)) != RL_OK) return rc;
    if (slash != NULL && slash + 1 < end &&
        !rl_config_number(slash + 1, (size_t)(end - slash - 1), 0, INT_MAX, &db)) {
        *why = "expected a database number after '/'";
        return RL_EINVAL;
    }
    r->db = (int)db;
    return RL_OK;
}

/* After "unix://": /absolute/path[?db=N]. */
static int rl_config_redis_unix(const char *s, size_t len, struct rl_config_redis *r,
                                const char **why)
{
    const char *q = memchr(s, '?', len);
    size_t plen = q != NULL ? (size_t)(q - s) : len;
    int64_t db = 0;

    if (plen < 2 || s[0] != '/' || plen > RL_CONFIG_UNIX_PATH_MAX) {
        *why = "expected unix:///absolute/path (at most 107 bytes)";
        return RL_EINVAL;
    }
    if (q != NULL && (len - plen < 5 || memcmp(q, "?db=", 4) != 0 ||
                      !rl_config_number(q + 4, len - plen - 4, 0, INT_MAX, &db))) {
        *why = "expected ?db=N after the socket path";
        return RL_EINVAL;
    }
    if ((r->unix_path = strndup(s, plen)) == NULL) return RL_ENOMEM;
    r->db = (int)db;
    return RL_OK;
}

/* Split a Redis URL. RL_OK, RL_ENOMEM, or RL_EINVAL with *why. Never echoes the
 * URL into a message: it may hold a password. */
static int rl_config_redis_url(const char *url, size_t len, struct rl_config_redis *r,
                               const char **why)
{
    static const char forms[] =
        "expected redis://[user:password@]host[:port][/db] or unix:///path[?db=N]";
    int rc;

    memset(r, 0, sizeof(*r));
    if (len >= 9 && strncasecmp(url, "rediss://", 9) == 0) {
        *why = "TLS (rediss://) is not supported: use redis:// on a trusted network, "
               "or a TLS tunnel";
        return RL_EINVAL;
    }
    *why = forms;
    if (memchr(url, '\0', len) != NULL)
        rc = RL_EINVAL;
    else if (len >= 8 && strncasecmp(url, "redis://", 8) == 0)
        rc = rl_config_redis_tcp(url + 8, len - 8, r, why);
    else if (len >= 7 && strncasecmp(url, "unix://", 7) == 0)
        rc = rl_config_redis_unix(url + 7, len - 7, r, why);
    else
        rc = RL_EINVAL;
    if (rc != RL_OK) rl_config_redis_clear(r);
    return rc;
}

/* Move the parts into c (which owns them from now on). */
static void rl_config_redis_apply(struct rl_config *c, struct rl_config_redis *r)
{
    free(c->redis_unix);
    free(c->redis_user);
    free(c->redis_password);
    memcpy(c->redis_host, r->host, sizeof(c->redis_host));
    c->redis_port = r->port;
    c->redis_db = r->db;
    c->redis_unix = r->unix_path;
    c->redis_user = r->user;
    c->redis_password = r->password;
    c->redis_enabled = true;
    r->unix_path = r->user = r->password = NULL;
}

/*----------------------------------------------------------------------------
 * Sections of the file
 *--------------------------------------------------------------------------*/

static int rl_config_listen(struct rl_config_ctx *x, struct json_object *v, struct rl_config *c)
{
    const char *s, *why;
    size_t len;
    int rc;

    if ((rc = rl_config_str(x, v, "listen", &s, &len)) != RL_OK) return rc;
    if ((why = rl_config_parse_listen(s, len, c->listen_host, &c->listen_port)) != NULL)
        return rl_config_fail(x, "listen", "%s", why);
    return RL_OK;
}

static int rl_config_prefix(struct rl_config_ctx *x, struct json_object *v, struct rl_config *c)
{
    const char *s;
    size_t len;
    int rc;

    if ((rc = rl_config_str(x, v, "redis.prefix", &s, &len)) != RL_OK) return rc;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f) len = 0;
    if (len < 1 || len > RL_CONFIG_PREFIX_MAX)
        return rl_config_fail(x, "redis.prefix",
                              "expected 1 to 32 printable ASCII characters without spaces");
    memcpy(c->redis_prefix, s, len + 1);
    return RL_OK;
}

/* "redis": null (embedded store), a URL string, or {"url", "timeout_ms", "prefix"}. */
static int rl_config_redis(struct rl_config_ctx *x, struct json_object *v, struct rl_config *c)
{
    static const char *const keys[] = {"url", "timeout_ms", "prefix", NULL};
    struct rl_config_redis r;
    struct json_object *url = v, *f;
    const char *s, *why, *upath = "redis";
    size_t len;
    int64_t n = 0;
    int rc;

    if (v == NULL) return RL_OK;
    if (json_object_is_type(v, json_type_object)) {
        if ((rc = rl_config_known(x, v, "redis", keys)) != RL_OK ||
            (rc = rl_config_need(x, v, "redis", "url", &url)) != RL_OK)
            return rc;
        upath = "redis.url";
        if (rl_config_get(v, "timeout_ms", &f)) {
            if ((rc = rl_config_int(x, f, "redis.timeout_ms", 1, 60000, &n)) != RL_OK) return rc;
            c->redis_timeout_ms = (int)n;
        }
        if (rl_config_get(v, "prefix", &f) && (rc = rl_config_prefix(x, f, c)) != RL_OK) return rc;
    } else if (!json_object_is_type(v, json_type_string)) {
        return rl_config_fail(x, "redis", "expected a URL string, an object or null");
    }
    if ((rc = rl_config_str(x, url, upath, &s, &len)) != RL_OK) return rc;
    rc = rl_config_redis_url(s, len, &r, &why);
    if (rc == RL_ENOMEM) return rl_config_nomem(x);
    if (rc != RL_OK) return rl_config_fail(x, upath, "%s", why);
    rl_config_redis_apply(c, &r);
    return RL_OK;
}

/* RFC 7230 token: 1+ of ALPHA, DIGIT, "!#$%&'*+-.^_`|~". */
static bool rl_config_token(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (!isalnum((unsigned char)s[i]) && (s[i] == '\0' || !strchr("!#$%&'*+-.^_`|~", s[i])))
            return false;
    return len > 0;
}

static int rl_config_identity(struct rl_config_ctx *x, struct json_object *v, struct rl_config *c)
{
    /* Indexed by scope: caller, key, org. */
    static const char *const keys[] = {"caller", "key", "org", NULL};
    struct json_object *f;
    const char *s;
    char path[RL_CONFIG_PATH];
    size_t len;
    int rc;

    if ((rc = rl_config_object(x, v, "identity")) != RL_OK ||
        (rc = rl_config_known(x, v, "identity", keys)) != RL_OK)
        return rc;
    for (int sc = RL_SCOPE_CALLER; sc <= RL_SCOPE_ORG; sc++) {
        if (!rl_config_get(v, keys[sc], &f)) continue;
        rl_config_at(path, "identity", keys[sc]);
        if ((rc = rl_config_str(x, f, path, &s, &len)) != RL_OK) return rc;
        if (len > RL_CONFIG_HEADER_MAX || !rl_config_token(s, len))
            return rl_config_fail(x, path,
                                  "expected a header name: 1 to 63 letters, digits or "
                                  "!#$%%&'*+-.^_`|~");
        memcpy(c->id_header[sc], s, len + 1);
    }
    return RL_OK;
}

/* Read "limit", "window" and "burst" (those present) from v over lim, then check
 * burst * window_ms < 2^52. Shared by policies and overrides. Choice: a "limit"
 * without a "burst" also sets burst to that limit, so an override that only raises
 * the limit gets a bucket of its own size, not the policy's (smaller) burst.
 * The product error names "burst" if written, else "limit", else "window". */
static int rl_config_limits(struct rl_config_ctx *x, struct json_object *v, const char *base,
                            struct rl_limit *lim)
{
    struct json_object *f;
    const char *blame = NULL;
    char path[RL_CONFIG_PATH];
    int64_t n = 0;
    int rc;

    if (rl_config_get(v, "limit", &f)) {
        rc = rl_config_int(x, f, rl_config_at(path, base, "limit"), 1, RL_CONFIG_LIMIT_MAX, &n);
        if (rc != RL_OK) return rc;
        lim->limit = lim->burst = n;
        blame = "limit";
    }
    if (rl_config_get(v, "window", &f)) {
        rc = rl_config_window(x, f, rl_config_at(path, base, "window"), &lim->window_ms,
                              lim->window);
        if (rc != RL_OK) return rc;
        blame = blame != NULL ? blame : "window";
    }
    if (rl_config_get(v, "burst", &f)) {
        rc = rl_config_int(x, f, rl_config_at(path, base, "burst"), 1, RL_CONFIG_LIMIT_MAX, &n);
        if (rc != RL_OK) return rc;
        lim->burst = n;
        blame = "burst";
    }
    if (lim->burst > (RL_CONFIG_TICKS_MAX - 1) / lim->window_ms)
        return rl_config_fail(x, rl_config_at(path, base, blame != NULL ? blame : "window"),
                              "burst * window is too large: %lld * %lld ms must stay below 2^52",
                              (long long)lim->burst, (long long)lim->window_ms);
    return RL_OK;
}

static int rl_config_match(struct rl_config_ctx *x, struct json_object *v, const char *base,
                           struct rl_policy *p)
{
    static const char *const keys[] = {"method", "path_prefix", NULL};
    struct json_object *f;
    const char *s;
    char path[RL_CONFIG_PATH];
    size_t len;
    int rc;

    if ((rc = rl_config_object(x, v, base)) != RL_OK ||
        (rc = rl_config_known(x, v, base, keys)) != RL_OK)
        return rc;
    if (rl_config_get(v, "method", &f)) {
        if ((rc = rl_config_str(x, f, rl_config_at(path, base, "method"), &s, &len)) != RL_OK)
            return rc;
        if (len > RL_CONFIG_METHOD_MAX || !rl_config_token(s, len))
            return rl_config_fail(x, path, "expected an HTTP method: 1 to 32 token characters");
        if ((p->match_method = strndup(s, len)) == NULL) return rl_config_nomem(x);
        for (size_t i = 0; i < len; i++)
            p->match_method[i] = (char)toupper((unsigned char)p->match_method[i]);
    }
    if (rl_config_get(v, "path_prefix", &f)) {
        if ((rc = rl_config_str(x, f, rl_config_at(path, base, "path_prefix"), &s, &len)) != RL_OK)
            return rc;
        for (size_t i = 0; i < len; i++)
            if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) len = 0;
        if (len < 1 || len > RL_CONFIG_MATCH_PREFIX_MAX || s[0] != '/')
            return rl_config_fail(x, path,
                                  "expected a path starting with '/', at most 1000 "
                                  "bytes, no control bytes");
        if ((p->match_prefix = strndup(s, len)) == NULL) return rl_config_nomem(x);
    }
    return RL_OK;
}

static bool rl_config_name_ok(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '_' && s[i] != '.' && s[i] != '-')
            return false;
    return len > 0 && len < RL_NAME_MAX;
}

/* name (unique among policies[0..i)), scope, envelope, shadow. */
static int rl_config_policy_names(struct rl_config_ctx *x, struct json_object *v, const char *base,
                                  struct rl_config *c, size_t i)
{
    struct rl_policy *p = &c->policies[i];
    struct json_object *f;
    const char *s;
    char path[RL_CONFIG_PATH];
    size_t len;
    int rc, e;

    if ((rc = rl_config_need(x, v, base, "name", &f)) != RL_OK ||
        (rc = rl_config_str(x, f, rl_config_at(path, base, "name"), &s, &len)) != RL_OK)
        return rc;
    if (!rl_config_name_ok(s, len))
        return rl_config_fail(x, path,
                              "expected a policy name: 1 to 63 letters, digits, '_', "
                              "'.' or '-'");
    for (size_t j = 0; j < i; j++)
        if (strcmp(c->policies[j].name, s) == 0)
            return rl_config_fail(x, path, "duplicate policy name \"%s\" (also policies[%zu])", s,
                                  j);
    memcpy(p->name, s, len + 1);
    if ((rc = rl_config_need(x, v, base, "scope", &f)) != RL_OK ||
        (rc = rl_config_enum(x, f, rl_config_at(path, base, "scope"), rl_config_scope_names, &e)) !=
            RL_OK)
        return rc;
    p->scope = (enum rl_scope)e;
    if (rl_config_get(v, "envelope", &f)) {
        rc = rl_config_enum(x, f, rl_config_at(path, base, "envelope"), rl_config_env_names, &e);
        if (rc != RL_OK) return rc;
        p->envelope = e;
    }
    if (rl_config_get(v, "shadow", &f))
        return rl_config_bool(x, f, rl_config_at(path, base, "shadow"), &p->shadow);
    return RL_OK;
}

static int rl_config_policy_one(struct rl_config_ctx *x, struct json_object *v, struct rl_config *c,
                                size_t i)
{
    static const char *const keys[] = {"name",     "scope",  "limit", "window", "burst",
                                       "envelope", "shadow", "match", NULL};
    struct rl_policy *p = &c->policies[i];
    struct json_object *f;
    char base[RL_CONFIG_PATH], path[RL_CONFIG_PATH];
    int rc;

    p->envelope = -1;
    p->metric_slot = -1;
    rl_config_index(base, "policies", i);
    if ((rc = rl_config_object(x, v, base)) != RL_OK ||
        (rc = rl_config_known(x, v, base, keys)) != RL_OK ||
        (rc = rl_config_policy_names(x, v, base, c, i)) != RL_OK ||
        (rc = rl_config_need(x, v, base, "limit", &f)) != RL_OK ||
        (rc = rl_config_need(x, v, base, "window", &f)) != RL_OK ||
        (rc = rl_config_limits(x, v, base, &p->lim)) != RL_OK)
        return rc;
    if (rl_config_get(v, "match", &f))
        return rl_config_match(x, f, rl_config_at(path, base, "match"), p);
    return RL_OK;
}

static int rl_config_policies(struct rl_config_ctx *x, struct json_object *v, struct rl_config *c)
{
    size_t n;
    int rc;

    if (!json_object_is_type(v, json_type_array))
        return rl_config_fail(x, "policies", "expected an array");
    n = json_object_array_length(v);
    if (n > RL_MAX_POLICIES)
        return rl_config_fail(x, "policies", "too many policies: %zu (at most %d)", n,
                              RL_MAX_POLICIES);
    if (n == 0) return RL_OK;
    if ((c->policies = calloc(n, sizeof(*c->policies))) == NULL) return rl_config_nomem(x);
    for (size_t i = 0; i < n; i++) {
        c->npolicies = i + 1; /* so rl_config_free sees what this one allocates */
        if ((rc = rl_config_policy_one(x, json_object_array_get_idx(v, i), c, i)) != RL_OK)
            return rc;
    }
    return RL_OK;
}

/*----------------------------------------------------------------------------
 * Overrides: parsed into one array, sorted, checked for duplicates, then moved
 * into their policies (each policy's slice stays sorted by (id_len, id)).
 *--------------------------------------------------------------------------*/

struct rl_config_ov {
    size_t policy; /* index in c->policies */
    size_t index;  /* index in "overrides", for messages */
    struct rl_override ov;
};

static int rl_config_ov_cmp(const void *a, const void *b)
{
    const struct rl_config_ov *l = a, *r = b;
    int d;

    if (l->policy != r->policy) return l->policy < r->policy ? -1 : 1;
    if (l->ov.id_len != r->ov.id_len) return l->ov.id_len < r->ov.id_len ? -1 : 1;
    if ((d = memcmp(l->ov.id, r->ov.id, l->ov.id_len)) != 0) return d;
    return l->index < r->index ? -1 : l->index > r->index;
}

static bool rl_config_id_ok(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) return false;
    return len > 0 && len <= RL_ID_MAX;
}

/* overrides[i] into *o; the id is copied last, so an error leaves nothing to free. */
static int rl_config_override(struct rl_config_ctx *x, struct json_object *v,
                              const struct rl_config *c, size_t i, struct rl_config_ov *o)
{
    static const char *const keys[] = {"policy", "id", "limit", "burst", "window", NULL};
    const struct rl_policy *p;
    struct json_object *f;
    const char *s;
    char base[RL_CONFIG_PATH], path[RL_CONFIG_PATH], q[72];
    size_t len;
    int rc;

    rl_config_index(base, "overrides", i);
    if ((rc = rl_config_object(x, v, base)) != RL_OK ||
        (rc = rl_config_known(x, v, base, keys)) != RL_OK ||
        (rc = rl_config_need(x, v, base, "policy", &f)) != RL_OK ||
        (rc = rl_config_str(x, f, rl_config_at(path, base, "policy"), &s, &len)) != RL_OK)
        return rc;
    if ((p = rl_config_policy(c, s, len)) == NULL)
        return rl_config_fail(x, path, "no policy named \"%s\"",
                              rl_config_quote(q, sizeof(q), s, len));
    if ((rc = rl_config_need(x, v, base, "id", &f)) != RL_OK ||
        (rc = rl_config_str(x, f, rl_config_at(path, base, "id"), &s, &len)) != RL_OK)
        return rc;
    if (!rl_config_id_ok(s, len))
        return rl_config_fail(x, path, "expected an id: 1 to 128 bytes, no control bytes");
    if (!rl_config_get(v, "limit", &f) && !rl_config_get(v, "burst", &f) &&
        !rl_config_get(v, "window", &f))
        return rl_config_fail(x, base, "expected at least one of \"limit\", \"burst\", \"window\"");
    o->ov.lim = p->lim;
    if ((rc = rl_config_limits(x, v, base, &o->ov.lim)) != RL_OK) return rc;
    if ((o->ov.id = malloc(len + 1)) == NULL) return rl_config_nomem(x);
    memcpy(o->ov.id, s, len + 1);
    o->ov.id_len = len;
    o->policy = (size_t)(p - c->policies);
    o->index = i;
    return RL_OK;
}

/* t is sorted: equal (policy, id) pairs are adjacent, earliest first. Names the
 * duplicate that comes first in the file. */
static int rl_config_ov_dups(struct rl_config_ctx *x, const struct rl_config *c,
                             const struct rl_config_ov *t, size_t n)
{
    size_t dup = n;
    char path[RL_CONFIG_PATH];

    for (size_t i = 1; i < n; i++)
        if (t[i - 1].policy == t[i].policy && t[i - 1].ov.id_len == t[i].ov.id_len &&
            memcmp(t[i - 1].ov.id, t[i].ov.id, t[i].ov.id_len) == 0 &&
            (dup == n || t[i].index < t[dup].index))
            dup = i;
    if (dup == n) return RL_OK;
    rl_config_index(path, "overrides", t[dup].index);
    return rl_config_fail(x, strcat(path, ".id"),
                          "duplicate override for policy \"%s\" and this id (also overrides[%zu])",
                          c->policies[t[dup].policy].name, t[dup - 1].index);
}

/* Move the sorted overrides into their policies; t[i].ov.id is NULL once moved. */
static int rl_config_ov_install(struct rl_config_ctx *x, struct rl_config *c,
                                struct rl_config_ov *t, size_t n)
{
    struct rl_policy *p;
    size_t j;

    for (size_t i = 0; i < n; i = j) {
        for (j = i; j < n && t[j].policy == t[i].policy; j++)
            ;
        p = &c->policies[t[i].policy];
        if ((p->overrides = malloc((j - i) * sizeof(*p->overrides))) == NULL)
            return rl_config_nomem(x);
    }
    for (size_t i = 0; i < n; i++) {
        p = &c->policies[t[i].policy];
        p->overrides[p->noverrides++] = t[i].ov;
        t[i].ov.id = NULL;
    }
    return RL_OK;
}

static int rl_config_overrides(struct rl_config_ctx *x, struct json_object *v, struct rl_config *c)
{
    struct rl_config_ov *t;
    size_t n;
    int rc = RL_OK;

    if (!json_object_is_type(v, json_type_array))
        return rl_config_fail(x, "overrides", "expected an array");
    if ((n = json_object_array_length(v)) == 0) return RL_OK;
    if ((t = calloc(n, sizeof(*t))) == NULL) return rl_config_nomem(x);
    for (size_t i = 0; i < n && rc == RL_OK; i++)
        rc = rl_config_override(x, json_object_array_get_idx(v, i), c, i, &t[i]);
    if (rc == RL_OK) {
        qsort(t, n, sizeof(*t), rl_config_ov_cmp);
        rc = rl_config_ov_dups(x, c, t, n);
    }
    if (rc == RL_OK) rc = rl_config_ov_install(x, c, t, n);
    for (size_t i = 0; i < n; i++)
        free(t[i].ov.id);
    free(t);
    return rc;
}

/*----------------------------------------------------------------------------
 * The top level
 *--------------------------------------------------------------------------*/

static int rl_config_modes(struct rl_config_ctx *x, struct json_object *root, struct rl_config *c)
{
    struct json_object *f;
    int rc, e;

    if (rl_config_get(root, "failure_mode", &f)) {
        if ((rc = rl_config_enum(x, f, "failure_mode", rl_config_failure_names, &e)) != RL_OK)
            return rc;
        c->failure_mode = (enum rl_failure_mode)e;
    }
    if (rl_config_get(root, "envelope", &f)) {
        if ((rc = rl_config_enum(x, f, "envelope", rl_config_env_names, &e)) != RL_OK) return rc;
        c->envelope = (enum rl_envelope)e;
    }
    if (rl_config_get(root, "headers", &f)) {
        if ((rc = rl_config_enum(x, f, "headers", rl_config_headers_names, &e)) != RL_OK) return rc;
        c->headers = (enum rl_headers_mode)e;
    }
    if (rl_config_get(root, "log_decisions", &f)) {
        if ((rc = rl_config_enum(x, f, "log_decisions", rl_config_log_names, &e)) != RL_OK)
            return rc;
        c->log_decisions = e;
    }
    return RL_OK;
}

/* idempotency_ttl, threads, connection_limit, idle_timeout, deny_cache_entries. */
static int rl_config_server(struct rl_config_ctx *x, struct json_object *root, struct rl_config *c)
{
    struct json_object *f;
    int64_t n;
    int rc;

    if (rl_config_get(root, "idempotency_ttl", &f) &&
        (rc = rl_config_window(x, f, "idempotency_ttl", &c->idempotency_ttl_ms, NULL)) != RL_OK)
        return rc;
    if (rl_config_get(root, "threads", &f)) {
        if ((rc = rl_config_int(x, f, "threads", 1, 64, &n)) != RL_OK) return rc;
        c->threads = (int)n;
    }
    if (rl_config_get(root, "connection_limit", &f)) {
        if ((rc = rl_config_int(x, f, "connection_limit", 16, 1000000, &n)) != RL_OK) return rc;
        c->connection_limit = (unsigned)n;
    }
    if (rl_config_get(root, "idle_timeout", &f)) {
        if ((rc = rl_config_window(x, f, "idle_timeout", &n, NULL)) != RL_OK) return rc;
        if (n % 1000 != 0)
            return rl_config_fail(x, "idle_timeout", "expected whole seconds, such as \"30s\"");
        c->idle_timeout_s = (unsigned)(n / 1000);
    }
    if (rl_config_get(root, "deny_cache_entries", &f)) {
        if ((rc = rl_config_int(x, f, "deny_cache_entries", 0, 1 << 22, &n)) != RL_OK) return rc;
        c->deny_cache_entries = (unsigned)n;
    }
    return RL_OK;
}

static int rl_config_root(struct rl_config_ctx *x, struct json_object *root, struct rl_config *c)
{
    static const char *const keys[] = {"listen",
                                       "redis",
                                       "failure_mode",
                                       "envelope",
                                       "headers",
                                       "identity",
                                       "policies",
                                       "overrides",
                                       "threads",
                                       "idempotency_ttl",
                                       "idle_timeout",
                                       "connection_limit",
                                       "log_decisions",
                                       "deny_cache_entries",
                                       NULL};
    struct json_object *f;
    int rc;

    if ((rc = rl_config_known(x, root, "", keys)) != RL_OK) return rc;
    if (rl_config_get(root, "listen", &f) && (rc = rl_config_listen(x, f, c)) != RL_OK) return rc;
    if (rl_config_get(root, "redis", &f) && (rc = rl_config_redis(x, f, c)) != RL_OK) return rc;
    if ((rc = rl_config_modes(x, root, c)) != RL_OK) return rc;
    if (rl_config_get(root, "identity", &f) && (rc = rl_config_identity(x, f, c)) != RL_OK)
        return rc;
    if (rl_config_get(root, "policies", &f) && (rc = rl_config_policies(x, f, c)) != RL_OK)
        return rc;
    if (rl_config_get(root, "overrides", &f) && (rc = rl_config_overrides(x, f, c)) != RL_OK)
        return rc;
    return rl_config_server(x, root, c);
}

static void rl_config_defaults(struct rl_config *c)
{
    strcpy(c->listen_host, "127.0.0.1");
    c->listen_port = 8080;
    strcpy(c->redis_host, "127.0.0.1");
    c->redis_port = 6379;
    c->redis_timeout_ms = 50;
    strcpy(c->redis_prefix, "rl:");
    c->failure_mode = RL_FAIL_OPEN;
    c->envelope = RL_ENV_PROBLEM;
    c->headers = RL_HDR_BOTH;
    strcpy(c->id_header[RL_SCOPE_CALLER], "X-Caller-Id");
    strcpy(c->id_header[RL_SCOPE_KEY], "X-Api-Key");
    strcpy(c->id_header[RL_SCOPE_ORG], "X-Org-Id");
    strcpy(c->id_header[RL_SCOPE_IP], "X-Real-IP");
    c->idempotency_ttl_ms = 3600 * 1000;
    c->threads = 2;
    c->connection_limit = 10000;
    c->idle_timeout_s = 30;
    c->log_decisions = 0;
    c->deny_cache_entries = 8192;
    c->refs = 1;
}

/* JSON text -> *root (a JSON object). Strict JSON, valid UTF-8, nothing after it. */
static int rl_config_tokenize(struct rl_config_ctx *x, const char *json, size_t len,
                              struct json_object **root)
{
    struct json_tokener *tok;
    struct json_object *o;
    enum json_tokener_error jerr;
    const char *nul;
    size_t end;

    if (len > RL_CONFIG_FILE_MAX) return rl_config_fail(x, "", "larger than 1 MiB");
    if ((nul = memchr(json, '\0', len)) != NULL)
        return rl_config_syntax(x, json, (size_t)(nul - json), "NUL byte");
    if ((tok = json_tokener_new()) == NULL) return rl_config_nomem(x);
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    o = json_tokener_parse_ex(tok, json, (int)len);
    jerr = json_tokener_get_error(tok);
    end = json_tokener_get_parse_end(tok);
    if (o == NULL && jerr == json_tokener_continue) {
        /* A bare number needs its end seen; anything else has run out. */
        o = json_tokener_parse_ex(tok, "", 1);
        jerr = json_tokener_get_error(tok);
        end = len;
    }
    json_tokener_free(tok);
    if (o == NULL && jerr != json_tokener_success)
        return rl_config_syntax(x, json, end, json_tokener_error_desc(jerr));
    for (; end < len; end++) /* STRICT already refuses these; kept should flags change */
        if (!strchr(" \t\r\n", json[end])) {
            json_object_put(o);
            return rl_config_syntax(x, json, end, "unexpected character after the JSON value");
        }
    if (!json_object_is_type(o, json_type_object)) {
        json_object_put(o);
        return rl_config_fail(x, "", "expected a JSON object at the top level");
    }
    *root = o;
    return RL_OK;
}

/*----------------------------------------------------------------------------
 * Entry points
 *--------------------------------------------------------------------------*/

int rl_config_parse(const char *json, size_t len, const char *file, struct rl_config **out,
                    struct rl_error *err)
{
    struct rl_config_ctx x = {file != NULL ? file : "<config>", err};
    struct json_object *root = NULL;
    struct rl_config *c;
    int rc;

    if (json == NULL) return rl_config_fail(&x, "", "no JSON text");
    if ((rc = rl_config_tokenize(&x, json, len, &root)) != RL_OK) return rc;
    if ((c = calloc(1, sizeof(*c))) == NULL || (file != NULL && (c->file = strdup(file)) == NULL)) {
        free(c);
        json_object_put(root);
        return rl_config_nomem(&x);
    }
    rl_config_defaults(c);
    rc = rl_config_root(&x, root, c);
    json_object_put(root);
    if (rc != RL_OK) {
        rl_config_free(c);
        return rc;
    }
    *out = c;
    return RL_OK;
}

/* Read at most RL_CONFIG_FILE_MAX bytes of file into *buf (malloc'd). */
static int rl_config_read(struct rl_config_ctx *x, const char *file, char **buf, size_t *len)
{
    size_t n = 0;
    ssize_t got = 1;
    char *b;
    int fd;

    if ((fd = open(file, O_RDONLY | O_CLOEXEC)) < 0)
        return rl_config_fail(x, "", "cannot open: %s", strerror(errno));
    if ((b = malloc(RL_CONFIG_FILE_MAX + 1)) == NULL) {
        close(fd);
        return rl_config_nomem(x);
    }
    while (n <= RL_CONFIG_FILE_MAX && got != 0) {
        got = read(fd, b + n, RL_CONFIG_FILE_MAX + 1 - n);
        if (got < 0 && errno != EINTR) {
            rl_config_failf(x, "", "cannot read: %s", strerror(errno));
            close(fd);
            free(b);
            return RL_EINVAL;
        }
        n += got > 0 ? (size_t)got : 0;
    }
    close(fd);
    if (n > RL_CONFIG_FILE_MAX) {
        free(b);
        return rl_config_fail(x, "", "larger than 1 MiB");
    }
    *buf = b;
    *len = n;
    return RL_OK;
}

int rl_config_load(const char *file, struct rl_config **out, struct rl_error *err)
{
    struct rl_config_ctx x = {file != NULL ? file : "<config>", err};
    char *buf = NULL;
    size_t len = 0;
    int rc;

    if (file == NULL) return rl_config_fail(&x, "", "no file name");
    if ((rc = rl_config_read(&x, file, &buf, &len)) != RL_OK) return rc;
    rc = rl_config_parse(buf, len, file, out, err);
    free(buf);
    return rc;
}

struct rl_config *rl_config_default(void)
{
    struct rl_config *c;

    if (rl_config_parse(rl_config_default_json, strlen(rl_config_default_json), NULL, &c, NULL) !=
        RL_OK)
        return NULL;
    return c;
}

int rl_config_set_redis_url(struct rl_config *c, const char *url, struct rl_error *err)
{
    struct rl_config_redis r;
    const char *why;
    int rc;

    if (url != NULL && strcmp(url, "none") == 0) {
        free(c->redis_unix);
        free(c->redis_user);
        free(c->redis_password);
        c->redis_unix = c->redis_user = c->redis_password = NULL;
        c->redis_enabled = false;
        return RL_OK;
    }
    if (url == NULL) return rl_error_set(err, RL_EINVAL, 400, "redis", "--redis: no URL");
    rc = rl_config_redis_url(url, strlen(url), &r, &why);
    if (rc == RL_ENOMEM) return rl_error_set(err, RL_ENOMEM, 500, "", "--redis: out of memory");
    if (rc != RL_OK) return rl_error_set(err, RL_EINVAL, 400, "redis", "--redis: %s", why);
    rl_config_redis_apply(c, &r);
    return RL_OK;
}

int rl_config_set_listen(struct rl_config *c, const char *addr, struct rl_error *err)
{
    const char *why = "no address";

    if (addr == NULL ||
        (why = rl_config_parse_listen(addr, strlen(addr), c->listen_host, &c->listen_port)) != NULL)
        return rl_error_set(err, RL_EINVAL, 400, "listen", "--listen: %s", why);
    return RL_OK;
}

void rl_config_free(struct rl_config *c)
{
    if (c == NULL) return;
    for (size_t i = 0; i < c->npolicies; i++) {
        struct rl_policy *p = &c->policies[i];

        free(p->match_method);
        free(p->match_prefix);
        for (size_t j = 0; j < p->noverrides; j++)
            free(p->overrides[j].id);
        free(p->overrides);
    }
    free(c->policies);
    free(c->redis_unix);
    free(c->redis_user);
    free(c->redis_password);
    free(c->file);
    free(c);
}

struct rl_config *rl_config_ref(struct rl_config *c)
{
    if (c != NULL) __atomic_add_fetch(&c->refs, 1, __ATOMIC_RELAXED);
    return c;
}

void rl_config_unref(struct rl_config *c)
{
    if (c != NULL && __atomic_sub_fetch(&c->refs, 1, __ATOMIC_ACQ_REL) == 0) rl_config_free(c);
}

const struct rl_policy *rl_config_policy(const struct rl_config *c, const char *name, size_t len)
{
    for (size_t i = 0; i < c->npolicies; i++)
        if (strlen(c->policies[i].name) == len && memcmp(c->policies[i].name, name, len) == 0)
            return &c->policies[i];
    return NULL;
}

const struct rl_limit *rl_policy_limit(const struct rl_policy *p, const char *id, size_t len)
{
    size_t lo = 0, hi = p->noverrides;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const struct rl_override *o = &p->overrides[mid];
        int d = o->id_len != len ? (o->id_len < len ? -1 : 1) : memcmp(o->id, id, len);

        if (d == 0) return &o->lim;
        if (d < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return &p->lim;
}
