/* test_nginx.c -- end to end behind a real nginx: the shipped snippets in
 * deploy/nginx/ put ratelimitd (real binary, real Redis) in front of an
 * upstream (a second nginx server). Allowed requests reach the upstream with
 * the limit headers; denied ones get the same 429 /v1/check gives, byte for
 * byte, and never reach the upstream; with ratelimitd down, nginx follows the
 * failure mode. */
#include "test_daemon.h"
#include "test_http.h"
#include "test_json.h"
#include "test_nginx.h"
#include "test_redis.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

static struct rl_test_redis redis;
static struct rl_test_daemon rl;
static struct rl_test_nginx ngx;
static uint16_t port_open, port_closed, port_up;

static const char *const POLICIES =
    "{\"policies\":["
    "{\"name\":\"per-key\",\"scope\":\"key\",\"limit\":2,\"window\":\"1h\"},"
    "{\"name\":\"per-org\",\"scope\":\"org\",\"limit\":2,\"window\":\"1h\",\"envelope\":\"error\"},"
    "{\"name\":\"per-caller\",\"scope\":\"caller\",\"limit\":2,\"window\":\"1h\",\"envelope\":\"ws\"}"
    "]}";

static void write_nginx_conf(void)
{
    char path[320];
    const char *src = rl_test_source_dir();
    FILE *f;

    snprintf(path, sizeof(path), "%s/nginx.conf", ngx.dir);
    f = fopen(path, "w");
    cr_assert_not_null(f);
    fprintf(f,
            "worker_processes 1;\n"
            "pid %s/nginx.pid;\n"
            "error_log %s/logs/error.log warn;\n"
            "events { worker_connections 256; }\n"
            "http {\n"
            "  client_body_temp_path %s/tmp/body; proxy_temp_path %s/tmp/proxy;\n"
            "  fastcgi_temp_path %s/tmp/fcgi; uwsgi_temp_path %s/tmp/uwsgi;\n"
            "  scgi_temp_path %s/tmp/scgi;\n"
            "  upstream ratelimitd { server 127.0.0.1:%u; keepalive 8; }\n"
            "  upstream api { server 127.0.0.1:%u; }\n"
            "  server {\n"
            "    listen 127.0.0.1:%u;\n"
            "    access_log %s/upstream.log;\n"
            "    location / { default_type application/json; return 200 '{\"upstream\":\"ok\"}'; }\n"
            "  }\n",
            ngx.dir, ngx.dir, ngx.dir, ngx.dir, ngx.dir, ngx.dir, ngx.dir, rl.port, port_up,
            port_up, ngx.dir);
    for (int i = 0; i < 2; i++)
        fprintf(f,
                "  server {\n"
                "    listen 127.0.0.1:%u;\n"
                "    access_log %s/front.log;\n"
                "    include %s/deploy/nginx/ratelimitd-server.conf;\n"
                "    %s\n"
                "    location /api/ {\n"
                "      include %s/deploy/nginx/ratelimitd-protect.conf;\n"
                "      proxy_pass http://api;\n"
                "    }\n"
                "  }\n",
                i ? port_closed : port_open, ngx.dir, src,
                i ? "set $ratelimitd_failure_mode closed;" : "", src);
    fprintf(f, "}\n");
    fclose(f);
}

static void setup(void)
{
    cr_assert_eq(rl_test_redis_start(&redis), 0, "redis-server did not start");
    cr_assert_eq(rl_test_daemon_start(&rl, POLICIES, redis.url, NULL), 0);
    cr_assert_eq(rl_test_nginx_prepare(&ngx), 0);
    port_open = rl_test_free_port();
    port_closed = rl_test_free_port();
    port_up = rl_test_free_port();
    write_nginx_conf();
    cr_assert_eq(rl_test_nginx_start(&ngx, port_open), 0, "nginx did not start");
}

static void teardown(void)
{
    rl_test_nginx_stop(&ngx);
    int st_rl = rl_test_daemon_stop(&rl);
    rl_test_redis_stop(&redis);
    rl_test_daemon_require_clean(st_rl);
}

TestSuite(nginx, .init = setup, .fini = teardown, .timeout = 60);

static const char *const COMPARED[] = {"Content-Type",     "X-RateLimit-Limit",
                                       "X-RateLimit-Remaining", "X-RateLimit-Reset",
                                       "RateLimit-Policy", "RateLimit",
                                       "Retry-After",      "X-Request-ID"};
#define NCOMPARED (sizeof(COMPARED) / sizeof(COMPARED[0]))

/* Whether two answers agree on status, every compared header and the body. */
static bool same_answer(const struct rl_test_response *a, const struct rl_test_response *b)
{
    if (a->status != b->status || a->body_len != b->body_len ||
        memcmp(a->body, b->body, a->body_len) != 0)
        return false;
    for (size_t i = 0; i < NCOMPARED; i++) {
        const char *x = rl_test_header(a, COMPARED[i]), *y = rl_test_header(b, COMPARED[i]);
        if ((x == NULL) != (y == NULL) || (x && strcmp(x, y) != 0))
            return false;
    }
    return true;
}

/* Exhaust the bucket of `idhdr` through nginx, then compare the denial with
 * /v1/check's answer for the same state (same id, URI and request id). */
static void denial_matches_check(const char *idhdr, const char *check_param)
{
    struct rl_test_response via, direct;
    char hdr[256], path[256];

    for (int i = 0; i < 2; i++) {
        snprintf(hdr, sizeof(hdr), "%s\r\n", idhdr);
        cr_assert_eq(rl_test_http(port_open, "GET", "/api/allowed", hdr, NULL, 0, &via), 0);
        cr_assert_eq(via.status, 200);
        cr_assert_str_eq(via.body, "{\"upstream\":\"ok\"}");
        cr_assert_eq(strtol(rl_test_header(&via, "X-RateLimit-Remaining"), NULL, 10), 1 - i);
        cr_assert_str_eq(rl_test_header(&via, "X-RateLimit-Limit"), "2");
        cr_assert_not_null(rl_test_header(&via, "X-RateLimit-Reset"));
        cr_assert_not_null(rl_test_header(&via, "RateLimit"));
        cr_assert_not_null(rl_test_header(&via, "RateLimit-Policy"));
        rl_test_response_free(&via);
    }
    /* the state no longer changes (denials charge nothing); only the clock
     * moves, so a second boundary may split one pair: try a few times */
    for (int attempt = 0; attempt < 3; attempt++) {
        snprintf(hdr, sizeof(hdr), "%s\r\nX-Request-ID: req-cmp-%d\r\n", idhdr, attempt);
        cr_assert_eq(rl_test_http(port_open, "GET", "/api/denied?x=1", hdr, NULL, 0, &via), 0);
        snprintf(hdr, sizeof(hdr), "X-Request-ID: req-cmp-%d\r\nX-Original-URI: /api/denied?x=1\r\n",
                 attempt);
        snprintf(path, sizeof(path), "/v1/check?%s", check_param);
        cr_assert_eq(rl_test_http(rl.port, "GET", path, hdr, NULL, 0, &direct), 0);
        cr_assert_eq(via.status, 429, "through nginx: %d %s", via.status, via.body);
        cr_assert_eq(direct.status, 429);
        bool same = same_answer(&via, &direct);
        if (!same && attempt == 2) {
            for (size_t i = 0; i < NCOMPARED; i++)
                cr_log_error("%s: nginx \"%s\" check \"%s\"", COMPARED[i],
                             rl_test_header(&via, COMPARED[i]),
                             rl_test_header(&direct, COMPARED[i]));
            cr_assert_fail("bodies:\n%s\n%s", via.body, direct.body);
        }
        /* no header from /v1/auth's transport leaks to the client */
        cr_assert_null(rl_test_header(&via, "X-RateLimit-Body"));
        cr_assert_null(rl_test_header(&via, "X-RateLimit-Status"));
        cr_assert_eq(rl_test_header_count(&via, "Content-Type"), 1);
        rl_test_response_free(&via);
        rl_test_response_free(&direct);
        if (same)
            break;
    }
}

Test(nginx, denial_is_the_check_429_problem)
{
    denial_matches_check("X-Api-Key: k1", "key=k1");
}

Test(nginx, denial_is_the_check_429_error_envelope)
{
    denial_matches_check("X-Org-Id: o1", "org=o1");
}

Test(nginx, denial_is_the_check_429_ws_envelope)
{
    denial_matches_check("X-Caller-Id: c1", "caller=c1");
}

Test(nginx, upstream_never_sees_denied_requests)
{
    struct rl_test_response res;
    int allowed = 0, denied = 0;

    for (int i = 0; i < 6; i++) {
        char path[64];
        snprintf(path, sizeof(path), "/api/req-%d", i);
        cr_assert_eq(rl_test_http(port_open, "GET", path, "X-Api-Key: u1\r\n", NULL, 0, &res), 0);
        if (res.status == 200)
            allowed++;
        else if (res.status == 429)
            denied++;
        rl_test_response_free(&res);
    }
    cr_assert_eq(allowed, 2);
    cr_assert_eq(denied, 4);
    /* no policy applies without an id: allowed, no limit headers */
    cr_assert_eq(rl_test_http(port_open, "GET", "/api/anon", NULL, NULL, 0, &res), 0);
    cr_assert_eq(res.status, 200);
    cr_assert_null(rl_test_header(&res, "X-RateLimit-Limit"));
    rl_test_response_free(&res);
    /* nginx writes access logs unbuffered by default */
    cr_assert_eq(rl_test_nginx_count_lines(&ngx, "upstream.log", "/api/req-0"), 1);
    cr_assert_eq(rl_test_nginx_count_lines(&ngx, "upstream.log", "/api/req-1"), 1);
    for (int i = 2; i < 6; i++) {
        char needle[32];
        snprintf(needle, sizeof(needle), "/api/req-%d ", i);
        cr_assert_eq(rl_test_nginx_count_lines(&ngx, "upstream.log", needle), 0,
                     "denied %s reached the upstream", needle);
    }
    cr_assert_eq(rl_test_nginx_count_lines(&ngx, "upstream.log", NULL), 3);
}

/* The subrequest carries only what ratelimitd reads: a client with big
 * cookies (7 KB, under nginx's own 8 KB line limit) and an Authorization
 * header is limited as usual, by its X-Api-Key. */
Test(nginx, big_client_headers_stay_out_of_the_subrequest)
{
    struct rl_test_response res;
    static char hdr[8192];
    int n;

    n = snprintf(hdr, sizeof(hdr), "X-Api-Key: cookie-monster\r\nAuthorization: Bearer s3cret\r\n"
                                   "Cookie: session=");
    memset(hdr + n, 'c', 7000);
    strcpy(hdr + n + 7000, "\r\n");
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(rl_test_http(port_open, "GET", "/api/cookies", hdr, NULL, 0, &res), 0);
        cr_assert_eq(res.status, i < 2 ? 200 : 429, "request %d: %d %s", i, res.status, res.body);
        cr_assert_eq(strtol(rl_test_header(&res, "X-RateLimit-Remaining"), NULL, 10), i < 2 ? 1 - i : 0);
        rl_test_response_free(&res);
    }
}

Test(nginx, ratelimitd_down_follows_failure_mode)
{
    struct rl_test_response res;

    rl_test_daemon_stop(&rl);
    /* open: the request goes through to the upstream */
    cr_assert_eq(rl_test_http(port_open, "GET", "/api/while-down", "X-Api-Key: d\r\n", NULL, 0, &res), 0);
    cr_assert_eq(res.status, 200, "open: %d %s", res.status, res.body);
    cr_assert_str_eq(res.body, "{\"upstream\":\"ok\"}");
    rl_test_response_free(&res);
    /* closed: 503 in the problem envelope, not nginx's bare 500 */
    cr_assert_eq(rl_test_http(port_closed, "GET", "/api/while-down", "X-Api-Key: d\r\n", NULL, 0, &res), 0);
    cr_assert_eq(res.status, 503, "closed: %d %s", res.status, res.body);
    cr_assert_str_eq(rl_test_header(&res, "Content-Type"), "application/problem+json");
    cr_assert_str_eq(rl_test_header(&res, "Retry-After"), "1");
    struct json_object *b = json_tokener_parse(res.body);
    cr_assert_not_null(b);
    cr_assert_str_eq(rl_tj_str(b, "type"), "urn:ratelimitd:problem:service_unavailable");
    cr_assert_eq(rl_tj_int(b, "retry_after_secs"), 1);
    json_object_put(b);
    rl_test_response_free(&res);
    cr_assert_eq(rl_test_nginx_count_lines(&ngx, "upstream.log", "/api/while-down"), 1,
                 "only the open server passed it on");
}
