/* main.c -- the ratelimitd command line: load and check the config, open the
 * store, start the HTTP front, then wait for signals (SIGHUP reloads, SIGTERM
 * and SIGINT drain and stop). Knows nothing of HTTP details or bucket math. */
#include "config.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "store.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RL_DRAIN_MS        5000
#define RL_DRAIN_FINISH_MS 1000 /* after the store stopped: answers already decided */

struct rl_cli {
    const char *config;
    const char *listen;
    const char *redis;
    bool check_only;
};

/* What a reload needs; reloads from SIGHUP and from the admin API take turns. */
struct rl_main {
    struct rl_cli cli;
    struct rl_http *http;
    struct rl_metrics *metrics;
    pthread_mutex_t reload_lock;
};

static void rl_main_usage(FILE *f)
{
    fprintf(f, "usage: ratelimitd [--config FILE] [--listen ADDR:PORT] [--redis URL|none]\n"
               "       ratelimitd --check-config FILE\n"
               "       ratelimitd --version\n"
               "Without --config, runs the embedded default (in-process store).\n");
}

static int rl_main_args(int argc, char **argv, struct rl_cli *cli)
{
    memset(cli, 0, sizeof(*cli));
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char **dst = NULL;

        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            rl_main_usage(stdout);
            exit(0);
        } else if (strcmp(a, "--version") == 0) {
            printf("ratelimitd %s\n", RL_VERSION);
            exit(0);
        } else if (strcmp(a, "--config") == 0 || strcmp(a, "-c") == 0) {
            dst = &cli->config;
        } else if (strcmp(a, "--check-config") == 0) {
            dst = &cli->config;
            cli->check_only = true;
        } else if (strcmp(a, "--listen") == 0) {
            dst = &cli->listen;
        } else if (strcmp(a, "--redis") == 0) {
            dst = &cli->redis;
        } else {
            fprintf(stderr, "ratelimitd: unknown argument \"%s\"\n", a);
            rl_main_usage(stderr);
            return RL_EINVAL;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "ratelimitd: %s needs a value\n", a);
            return RL_EINVAL;
        }
        *dst = argv[++i];
    }
    if (cli->check_only && cli->config == NULL) return RL_EINVAL;
    return RL_OK;
}

/* Load the config named on the command line (or the embedded default) and
 * apply the --listen / --redis overrides. */
static int rl_main_load(const struct rl_cli *cli, struct rl_config **out, struct rl_error *err)
{
    struct rl_config *cfg = NULL;
    int rc;

    if (cli->config != NULL) {
        rc = rl_config_load(cli->config, &cfg, err);
        if (rc != RL_OK) return rc;
    } else if ((cfg = rl_config_default()) == NULL) {
        return rl_error_set(err, RL_ENOMEM, 500, "", "out of memory");
    }
    rc = RL_OK;
    if (cli->listen != NULL) rc = rl_config_set_listen(cfg, cli->listen, err);
    if (rc == RL_OK && cli->redis != NULL) rc = rl_config_set_redis_url(cfg, cli->redis, err);
    if (rc != RL_OK) {
        rl_config_free(cfg);
        return rc;
    }
    *out = cfg;
    return RL_OK;
}

/* Build a whole new config and install it; keep the running one if the new
 * one is invalid. Listen address and Redis settings need a restart (the
 * running ones stay). Called from SIGHUP and from POST /v1/admin/reload. */
static int rl_main_reload(void *ud, struct rl_error *err)
{
    struct rl_main *m = ud;
    struct rl_config *cfg;
    int rc;

    if (m->cli.config == NULL)
        return rl_error_set(err, RL_EINVAL, 400, "", "nothing to reload: started without --config");
    pthread_mutex_lock(&m->reload_lock);
    rc = rl_main_load(&m->cli, &cfg, err);
    if (rc == RL_OK) {
        rl_http_set_config(m->http, cfg);
        rl_log_info("reloaded %s: %zu policies", m->cli.config, cfg->npolicies);
        rl_config_unref(cfg);
    } else {
        rl_log_error("reload failed, keeping the running config: %s", err->message);
    }
    rl_metrics_reload(m->metrics, rc == RL_OK, rl_now_ms() / 1000);
    pthread_mutex_unlock(&m->reload_lock);
    return rc;
}

/* A token from NAME, or from the file named by NAME_FILE (trailing white
 * space removed). NULL when neither is set or the value is empty. */
static char *rl_main_token(const char *name)
{
    char fname[64], buf[512];
    const char *v = getenv(name), *path;
    FILE *f;
    size_t n;

    if (v != NULL && *v != '\0') return strdup(v);
    snprintf(fname, sizeof(fname), "%s_FILE", name);
    if ((path = getenv(fname)) == NULL || *path == '\0') return NULL;
    if ((f = fopen(path, "r")) == NULL) {
        rl_log_error("%s: cannot read %s", fname, path);
        return NULL;
    }
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
        n--;
    buf[n] = '\0';
    return n > 0 ? strdup(buf) : NULL;
}

static struct rl_store *rl_main_store(const struct rl_config *cfg, struct rl_error *err)
{
    if (!cfg->redis_enabled) {
        rl_log_info("no Redis configured: buckets live in this process's memory (embedded "
                    "store; one instance only, state is lost on restart)");
        return rl_store_memory_open(cfg->redis_prefix);
    }
    if (cfg->redis_unix != NULL)
        rl_log_info("store: redis unix:%s db %d, timeout %d ms, failure_mode %s", cfg->redis_unix,
                    cfg->redis_db, cfg->redis_timeout_ms,
                    cfg->failure_mode == RL_FAIL_OPEN ? "open" : "closed");
    else
        rl_log_info("store: redis %s:%u db %d, timeout %d ms, failure_mode %s", cfg->redis_host,
                    cfg->redis_port, cfg->redis_db, cfg->redis_timeout_ms,
                    cfg->failure_mode == RL_FAIL_OPEN ? "open" : "closed");
    return rl_store_redis_open(cfg, err);
}

int main(int argc, char **argv)
{
    static struct rl_main m;
    struct rl_cli cli;
    struct rl_http_opts opts;
    struct rl_config *cfg;
    struct rl_error err;
    struct rl_store *store;
    struct rl_http *http;
    sigset_t set;
    int sig, left;

    if (rl_main_args(argc, argv, &cli) != RL_OK) return 2;
    if (rl_main_load(&cli, &cfg, &err) != RL_OK) {
        fprintf(stderr, "ratelimitd: %s\n", err.message);
        return 1;
    }
    if (cli.check_only) {
        printf("%s: OK (%zu policies)\n", cli.config, cfg->npolicies);
        rl_config_free(cfg);
        return 0;
    }

    /* Signals are taken by sigwait() below; every thread inherits the mask. */
    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&set);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);

    store = rl_main_store(cfg, &err);
    if (store == NULL) {
        rl_log_error("cannot open the store: %s", err.message);
        rl_config_unref(cfg);
        return 1;
    }
    memset(&opts, 0, sizeof(opts));
    opts.admin_token = rl_main_token("RATELIMITD_ADMIN_TOKEN");
    opts.read_token = rl_main_token("RATELIMITD_READ_TOKEN");
    opts.metrics = m.metrics = rl_metrics_new();
    opts.reload = cli.config ? rl_main_reload : NULL;
    opts.reload_ud = &m;
    m.cli = cli;
    pthread_mutex_init(&m.reload_lock, NULL);
    if (m.metrics == NULL) {
        rl_log_error("out of memory");
        return 1;
    }
    rl_metrics_reload(m.metrics, true, rl_now_ms() / 1000);
    http = rl_http_start(cfg, store, &opts, &err);
    if (http == NULL) {
        rl_log_error("%s", err.message);
        store->ops->close(store);
        rl_config_unref(cfg);
        return 1;
    }
    m.http = http;
    if (opts.admin_token == NULL)
        rl_log_info("no RATELIMITD_ADMIN_TOKEN: admin endpoints answer 403");
    rl_log_info("ratelimitd %s listening on %s:%u (%zu policies, config %s)", RL_VERSION,
                cfg->listen_host, rl_http_port(http), cfg->npolicies,
                cli.config ? cli.config : "embedded default");

    for (;;) {
        if (sigwait(&set, &sig) != 0) continue;
        if (sig == SIGHUP) {
            rl_main_reload(&m, &err);
            continue;
        }
        break;
    }
    rl_log_info("signal %d: draining (up to %d ms)", sig, RL_DRAIN_MS);
    left = rl_http_drain(http, RL_DRAIN_MS);
    /* Finish what still waits on the store (answered by failure_mode) and
     * refuse new work, but keep the store alive: the HTTP threads may still
     * call it until rl_http_stop. Then give the resumed requests a moment to
     * be answered before the connections close. */
    store->ops->stop(store);
    if (left > 0) left = rl_http_drain(http, RL_DRAIN_FINISH_MS);
    rl_http_stop(http);
    store->ops->close(store);
    rl_config_unref(cfg);
    rl_metrics_free(m.metrics);
    free((char *)opts.admin_token);
    free((char *)opts.read_token);
    pthread_mutex_destroy(&m.reload_lock);
    rl_log_info("stopped (%d requests were still in flight)", left);
    return 0;
}
