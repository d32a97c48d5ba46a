/* test_ops.c -- operations against the real binary and a real Redis:
 * /metrics (values after a known sequence, and promtool's verdict), /v1/limits
 * (reads never charge), the admin API (401/403/200; reset empties Redis), hot
 * reload (SIGHUP and the admin call; a broken file keeps the old config), and
 * SIGTERM under load (nobody in flight gets a reset connection). */
#include "test_daemon.h"
#include "test_http.h"
#include "test_json.h"
#include "test_redis.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static struct rl_test_redis redis;
static struct rl_test_daemon d;

static char *const TOKENS[] = {"RATELIMITD_ADMIN_TOKEN=admin-secret",
                               "RATELIMITD_READ_TOKEN=read-secret", NULL};

static const char *const CFG =
    "{\"policies\":["
    "{\"name\":\"per-key\",\"scope\":\"key\",\"limit\":3,\"window\":\"1h\"},"
    "{\"name\":\"per-org\",\"scope\":\"org\",\"limit\":10,\"window\":\"1m\",\"burst\":5},"
    "{\"name\":\"dry\",\"scope\":\"key\",\"limit\":1,\"window\":\"1h\",\"shadow\":true}"
    "]}";

static void setup(void) { cr_assert_eq(rl_test_redis_start(&redis), 0); }

static void teardown(void)
{
    int st_d = rl_test_daemon_stop(&d);
    rl_test_redis_stop(&redis);
    rl_test_daemon_require_clean(st_d);
}

TestSuite(ops, .init = setup, .fini = teardown, .timeout = 90);

static void up(const char *cfg, char *const *env)
{
    cr_assert_eq(rl_test_daemon_start(&d, cfg, redis.url, env), 0, "ratelimitd did not start");
}

static int req(const char *method, const char *path, const char *headers, const char *body,
               struct rl_test_response *res)
{
    cr_assert_eq(rl_test_http(d.port, method, path, headers, body, body ? strlen(body) : 0, res),
                 0, "%s %s: no answer", method, path);
    return res->status;
}

static int status_of(const char *method, const char *path, const char *headers, const char *body)
{
    struct rl_test_response res;
    int st = req(method, path, headers, body, &res);
    rl_test_response_free(&res);
    return st;
}

/* The value of one sample line "NAME{LABELS} VALUE" in a metrics text. */
static long long metric(const char *text, const char *series)
{
    const char *p = text;
    size_t n = strlen(series);

    while ((p = strstr(p, series)) != NULL) {
        if ((p == text || p[-1] == '\n') && p[n] == ' ')
            return strtoll(p + n + 1, NULL, 10);
        p += n;
    }
    return -1;
}

Test(ops, metrics_count_a_known_sequence)
{
    struct rl_test_response res;
    const char *auth = "Authorization: Bearer read-secret\r\n";

    up(CFG, TOKENS);
    /* per-key: 3 allowed, 2 denied. dry (shadow, 1 per hour): 1 allowed, then
     * it would deny the others (its bucket is empty whether or not per-key
     * denied them too: a dry run counts what the policy alone would do) --
     * except the 5th check, which the deny cache answers without reading
     * any bucket: dry is not evaluated there (README "Deny cache") */
    for (int i = 0; i < 5; i++)
        status_of("GET", "/v1/check?key=m", NULL, NULL);
    status_of("GET", "/v1/check?key=m&cost=x", NULL, NULL); /* an error */
    cr_assert_eq(status_of("GET", "/metrics", NULL, NULL), 401, "the read token is required");
    cr_assert_eq(req("GET", "/metrics", auth, NULL, &res), 200);
    cr_assert_str_eq(rl_test_header(&res, "Content-Type"), "text/plain; version=0.0.4; charset=utf-8");
    const char *t = res.body;
    cr_assert_eq(metric(t, "ratelimitd_decisions_total{policy=\"per-key\",outcome=\"allowed\"}"), 3);
    cr_assert_eq(metric(t, "ratelimitd_decisions_total{policy=\"per-key\",outcome=\"denied\"}"), 2);
    cr_assert_eq(metric(t, "ratelimitd_decisions_total{policy=\"dry\",outcome=\"allowed\"}"), 1);
    cr_assert_eq(metric(t, "ratelimitd_decisions_total{policy=\"dry\",outcome=\"shadow_denied\"}"), 3);
    cr_assert_eq(metric(t, "ratelimitd_deny_cache_hits_total"), 1);
    cr_assert_eq(metric(t, "ratelimitd_decisions_total{policy=\"per-org\",outcome=\"allowed\"}"), 0);
    cr_assert_eq(metric(t, "ratelimitd_checks_total{endpoint=\"check\",result=\"allowed\"}"), 3);
    cr_assert_eq(metric(t, "ratelimitd_checks_total{endpoint=\"check\",result=\"denied\"}"), 2);
    cr_assert_eq(metric(t, "ratelimitd_checks_total{endpoint=\"check\",result=\"error\"}"), 1);
    cr_assert_eq(metric(t, "ratelimitd_check_duration_seconds_count{endpoint=\"check\"}"), 6);
    cr_assert_eq(metric(t, "ratelimitd_check_duration_seconds_bucket{endpoint=\"check\",le=\"+Inf\"}"), 6);
    cr_assert_eq(metric(t, "ratelimitd_redis_up"), 1);
    cr_assert_eq(metric(t, "ratelimitd_build_info{version=\"" "0.1.0" "\"}"), 1);
    cr_assert(strstr(t, "m\"") == NULL, "no caller id in any label");

    /* promtool's verdict on the exposition format */
    char path[300];
    snprintf(path, sizeof(path), "%s/metrics.txt", d.dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fwrite(res.body, 1, res.body_len, f);
    fclose(f);
    rl_test_response_free(&res);
    cr_assert_eq(access("/usr/bin/promtool", X_OK), 0, "promtool not found: apt-get install prometheus");
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "promtool check metrics < %s", path);
    cr_assert_eq(system(cmd), 0, "promtool check metrics failed");

    /* Redis killed: errors counted, the gauge drops */
    rl_test_redis_kill(&redis);
    status_of("GET", "/v1/check?key=m2", NULL, NULL);
    req("GET", "/metrics", auth, NULL, &res);
    cr_assert_eq(metric(res.body, "ratelimitd_redis_up"), 0);
    cr_assert_eq(metric(res.body, "ratelimitd_store_errors_total{kind=\"unavailable\"}"), 1);
    cr_assert_eq(metric(res.body, "ratelimitd_decisions_total{policy=\"per-key\",outcome=\"degraded\"}"), 1);
    rl_test_response_free(&res);
}

Test(ops, limits_read_without_charging)
{
    struct rl_test_response res;
    struct json_object *b;
    const char *auth = "Authorization: Bearer read-secret\r\n";

    up(CFG, TOKENS);
    cr_assert_eq(status_of("GET", "/v1/limits?scope=key&id=L", NULL, NULL), 401);
    for (int round = 0; round < 2; round++) { /* reading twice changes nothing */
        cr_assert_eq(req("GET", "/v1/limits?scope=key&id=L", auth, NULL, &res), 200);
        b = json_tokener_parse(res.body);
        cr_assert_str_eq(rl_tj_str(b, "scope"), "key");
        cr_assert_str_eq(rl_tj_str(b, "id"), "L");
        cr_assert_str_eq(rl_tj_str(b, "policies.0.name"), "per-key");
        cr_assert_eq(rl_tj_int(b, "policies.0.limit"), 3);
        cr_assert_eq(rl_tj_int(b, "policies.0.remaining"), 3, "a missing bucket reads as full");
        cr_assert_str_eq(rl_tj_str(b, "policies.0.window"), "1h");
        cr_assert_str_eq(rl_tj_str(b, "policies.1.name"), "dry");
        cr_assert_null(rl_tj_get(b, "policies.2"));
        json_object_put(b);
        rl_test_response_free(&res);
    }
    cr_assert_eq(status_of("GET", "/v1/check?key=L", NULL, NULL), 200);
    cr_assert_eq(status_of("GET", "/v1/check?key=L", NULL, NULL), 200);
    req("GET", "/v1/limits?scope=key&id=L", auth, NULL, &res);
    b = json_tokener_parse(res.body);
    cr_assert_eq(rl_tj_int(b, "policies.0.remaining"), 1);
    long long reset = rl_tj_int(b, "policies.0.reset");
    cr_assert(reset > (long long)time(NULL) && reset <= (long long)time(NULL) + 2400 + 2);
    json_object_put(b);
    rl_test_response_free(&res);
    cr_assert_eq(status_of("GET", "/v1/check?key=L", NULL, NULL), 200, "still one token: reads charged nothing");
    cr_assert_eq(status_of("GET", "/v1/check?key=L", NULL, NULL), 429);
    cr_assert_eq(status_of("GET", "/v1/limits?scope=nope&id=L", auth, NULL), 400);
    cr_assert_eq(status_of("GET", "/v1/limits?scope=key", auth, NULL), 400);
}

Test(ops, admin_tokens_and_reset)
{
    struct rl_test_response res;
    char buf[128];

    up(CFG, TOKENS);
    for (int i = 0; i < 3; i++)
        status_of("GET", "/v1/check?key=R", NULL, NULL);
    cr_assert_eq(status_of("GET", "/v1/check?key=R", NULL, NULL), 429);
    cr_assert_eq(rl_test_redis_cmd(&redis, buf, sizeof(buf), "EXISTS rl:per-key:key:R"), 0);
    cr_assert_str_eq(buf, "1");

    cr_assert_eq(req("POST", "/v1/admin/reset?scope=key&id=R", NULL, NULL, &res), 401);
    cr_assert_not_null(rl_test_header(&res, "WWW-Authenticate"));
    struct json_object *b = json_tokener_parse(res.body);
    cr_assert_str_eq(rl_tj_str(b, "type"), "urn:ratelimitd:problem:authentication_error");
    json_object_put(b);
    rl_test_response_free(&res);
    cr_assert_eq(status_of("POST", "/v1/admin/reset?scope=key&id=R", "Authorization: Bearer wrong\r\n", NULL), 401);
    cr_assert_eq(req("POST", "/v1/admin/reset?scope=key&id=R", "Authorization: Bearer read-secret\r\n", NULL, &res), 403);
    b = json_tokener_parse(res.body);
    cr_assert_str_eq(rl_tj_str(b, "type"), "urn:ratelimitd:problem:authorization_error");
    json_object_put(b);
    rl_test_response_free(&res);
    cr_assert_eq(status_of("GET", "/v1/check?key=R", NULL, NULL), 429, "nothing was reset yet");

    cr_assert_eq(req("POST", "/v1/admin/reset", "Authorization: Bearer admin-secret\r\n",
                     "{\"scope\":\"key\",\"id\":\"R\"}", &res), 200);
    b = json_tokener_parse(res.body);
    cr_assert_eq(rl_tj_bool(b, "reset"), 1);
    cr_assert_str_eq(rl_tj_str(b, "policies.0"), "per-key");
    json_object_put(b);
    rl_test_response_free(&res);
    cr_assert_eq(rl_test_redis_cmd(&redis, buf, sizeof(buf), "EXISTS rl:per-key:key:R"), 0);
    cr_assert_str_eq(buf, "0", "the bucket is gone from Redis");
    cr_assert_eq(status_of("GET", "/v1/check?key=R", NULL, NULL), 200);
}

Test(ops, admin_disabled_without_token)
{
    up(CFG, NULL);
    cr_assert_eq(status_of("POST", "/v1/admin/reset?scope=key&id=x", "Authorization: Bearer x\r\n", NULL), 403);
    cr_assert_eq(status_of("POST", "/v1/admin/reload", NULL, NULL), 403);
    cr_assert_eq(status_of("GET", "/metrics", NULL, NULL), 200, "no read token: reads are open");
    cr_assert_eq(status_of("GET", "/v1/admin/reload", NULL, NULL), 405);
}

static const char *const CFG_LIMIT5 =
    "{\"policies\":[{\"name\":\"per-key\",\"scope\":\"key\",\"limit\":5,\"window\":\"1h\"}]}";

Test(ops, reload_on_sighup_keeps_bucket_state)
{
    struct rl_test_response res;

    up(CFG, TOKENS);
    cr_assert_eq(status_of("GET", "/v1/check?key=H", NULL, NULL), 200); /* 2 of 3 left */
    cr_assert_eq(rl_test_daemon_write_config(&d, CFG_LIMIT5), 0);
    cr_assert_eq(rl_test_daemon_signal(&d, SIGHUP), 0);
    for (int i = 0; i < 100; i++) { /* wait for the new limit to show */
        req("GET", "/v1/limits?scope=key&id=H", "Authorization: Bearer read-secret\r\n", NULL, &res);
        bool done = strstr(res.body, "\"limit\":5") != NULL;
        rl_test_response_free(&res);
        if (done)
            break;
        usleep(20000);
    }
    req("GET", "/v1/check?key=H", NULL, NULL, &res);
    cr_assert_eq(res.status, 200);
    cr_assert_str_eq(rl_test_header(&res, "X-RateLimit-Limit"), "5");
    /* the bucket kept its charge: 5 - 1 (before) - 1 (now) = 3 */
    cr_assert_str_eq(rl_test_header(&res, "X-RateLimit-Remaining"), "3");
    rl_test_response_free(&res);

    /* a broken file keeps the running config */
    cr_assert_eq(rl_test_daemon_write_config(&d, "{\"policies\":[{\"name\":\"x\"}]}"), 0);
    cr_assert_eq(rl_test_daemon_signal(&d, SIGHUP), 0);
    usleep(300000);
    req("GET", "/v1/check?key=H", NULL, NULL, &res);
    cr_assert_str_eq(rl_test_header(&res, "X-RateLimit-Limit"), "5");
    rl_test_response_free(&res);
    req("GET", "/metrics", "Authorization: Bearer read-secret\r\n", NULL, &res);
    cr_assert_eq(metric(res.body, "ratelimitd_config_reloads_total{result=\"success\"}"), 2,
                 "the start and one reload");
    cr_assert_eq(metric(res.body, "ratelimitd_config_reloads_total{result=\"failure\"}"), 1);
    cr_assert_eq(metric(res.body, "ratelimitd_config_last_reload_success"), 0);
    rl_test_response_free(&res);
}

Test(ops, reload_via_admin_api)
{
    struct rl_test_response res;
    const char *admin = "Authorization: Bearer admin-secret\r\n";

    up(CFG, TOKENS);
    cr_assert_eq(rl_test_daemon_write_config(&d, "{\"policies\":[{\"name\":\"per-key\","
                                                 "\"scope\":\"key\",\"limit\":5,\"window\":\"9x\"}]}"),
                 0);
    cr_assert_eq(req("POST", "/v1/admin/reload", admin, NULL, &res), 400);
    struct json_object *b = json_tokener_parse(res.body);
    cr_assert_str_eq(rl_tj_str(b, "field"), "policies[0].window");
    json_object_put(b);
    rl_test_response_free(&res);
    cr_assert_eq(status_of("POST", "/v1/admin/reload", "Authorization: Bearer read-secret\r\n", NULL), 403);
    cr_assert_eq(rl_test_daemon_write_config(&d, CFG_LIMIT5), 0);
    cr_assert_eq(req("POST", "/v1/admin/reload", admin, NULL, &res), 200);
    b = json_tokener_parse(res.body);
    cr_assert_eq(rl_tj_bool(b, "reloaded"), 1);
    cr_assert_eq(rl_tj_int(b, "policies"), 1);
    json_object_put(b);
    rl_test_response_free(&res);
    req("GET", "/v1/check?key=A", NULL, NULL, &res);
    cr_assert_str_eq(rl_test_header(&res, "X-RateLimit-Limit"), "5");
    rl_test_response_free(&res);
}

/* SIGTERM while clients are busy: every request sent gets a full answer. */
struct loader {
    uint16_t port;
    volatile int *stop;
    int answered, failed;
};

static void *load_run(void *arg)
{
    struct loader *l = arg;

    while (!*l->stop) {
        struct rl_test_response res;
        int rc = rl_test_http(l->port, "GET", "/v1/check?key=T", NULL, NULL, 0, &res);
        if (rc == 0 && (res.status == 200 || res.status == 429))
            l->answered++;
        else if (rc == 0 || errno != ECONNREFUSED)
            l->failed++; /* a reset or a cut answer; refused = after the close */
        rl_test_response_free(&res);
        if (rc != 0)
            break;
    }
    return NULL;
}

Test(ops, sigterm_drains_in_flight)
{
    pthread_t th[4];
    struct loader l[4];
    volatile int stop = 0;
    int answered = 0, failed = 0;

    up(CFG, TOKENS);
    for (int i = 0; i < 4; i++) {
        l[i] = (struct loader){d.port, &stop, 0, 0};
        pthread_create(&th[i], NULL, load_run, &l[i]);
    }
    usleep(300000);
    pid_t pid = d.pid;
    stop = 1; /* no new request after the signal; those under way must finish */
    kill(pid, SIGTERM);
    int st;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    d.pid = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        answered += l[i].answered;
        failed += l[i].failed;
    }
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "exit 0 after draining");
    cr_assert_gt(answered, 10);
    cr_assert_eq(failed, 0, "%d requests got a reset or cut connection", failed);
}
