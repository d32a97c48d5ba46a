/* main.c -- the ratelimitd command line: load and check the config, open the
 * store, start the HTTP front, then wait for signals (SIGHUP reloads, SIGTERM
 * and SIGINT drain and stop). Knows nothing of HTTP details or bucket math. */
#include "config.h"
#include "http.h"
#include "log.h"
#include "store.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RL_DRAIN_MS 5000

struct rl_cli {
    const char *config;
    const char *listen;
    const char *redis;
    bool check_only;
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
    if (cli->check_only && cli->config == NULL)
        return RL_EINVAL;
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
        if (rc != RL_OK)
            return rc;
    } else if ((cfg = rl_config_default()) == NULL) {
        return rl_error_set(err, RL_ENOMEM, 500, "", "out of memory");
    }
    rc = RL_OK;
    if (cli->listen != NULL)
        rc = rl_config_set_listen(cfg, cli->listen, err);
    if (rc == RL_OK && cli->redis != NULL)
        rc = rl_config_set_redis_url(cfg, cli->redis, err);
    if (rc != RL_OK) {
        rl_config_free(cfg);
        return rc;
    }
    *out = cfg;
    return RL_OK;
}

/* SIGHUP: build a whole new config; keep the running one if it is invalid.
 * Listen address and Redis settings need a restart (the old ones stay). */
static void rl_main_reload(const struct rl_cli *cli, struct rl_http *http)
{
    struct rl_config *cfg;
    struct rl_error err;

    if (cli->config == NULL) {
        rl_log_warn("reload: no --config file, nothing to reload");
        return;
    }
    if (rl_main_load(cli, &cfg, &err) != RL_OK) {
        rl_log_error("reload failed, keeping the running config: %s", err.message);
        return;
    }
    rl_http_set_config(http, cfg);
    rl_log_info("reloaded %s: %zu policies", cli->config, cfg->npolicies);
    rl_config_unref(cfg);
}

static struct rl_store *rl_main_store(const struct rl_config *cfg, struct rl_error *err)
{
    if (!cfg->redis_enabled) {
        rl_log_info("no Redis configured: buckets live in this process's memory (embedded "
                    "store; one instance only, state is lost on restart)");
        return rl_store_memory_open(cfg->redis_prefix);
    }
    if (cfg->redis_unix != NULL)
        rl_log_info("store: redis unix:%s db %d, timeout %d ms, failure_mode %s",
                    cfg->redis_unix, cfg->redis_db, cfg->redis_timeout_ms,
                    cfg->failure_mode == RL_FAIL_OPEN ? "open" : "closed");
    else
        rl_log_info("store: redis %s:%u db %d, timeout %d ms, failure_mode %s", cfg->redis_host,
                    cfg->redis_port, cfg->redis_db, cfg->redis_timeout_ms,
                    cfg->failure_mode == RL_FAIL_OPEN ? "open" : "closed");
    return rl_store_redis_open(cfg, err);
}

int main(int argc, char **argv)
{
    struct rl_cli cli;
    struct rl_config *cfg;
    struct rl_error err;
    struct rl_store *store;
    struct rl_http *http;
    sigset_t set;
    int sig, left;

    if (rl_main_args(argc, argv, &cli) != RL_OK)
        return 2;
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
    http = rl_http_start(cfg, store, &err);
    if (http == NULL) {
        rl_log_error("%s", err.message);
        store->ops->close(store);
        rl_config_unref(cfg);
        return 1;
    }
    rl_log_info("ratelimitd %s listening on %s:%u (%zu policies, config %s)", RL_VERSION,
                cfg->listen_host, rl_http_port(http), cfg->npolicies,
                cli.config ? cli.config : "embedded default");

    for (;;) {
        if (sigwait(&set, &sig) != 0)
            continue;
        if (sig == SIGHUP) {
            rl_main_reload(&cli, http);
            continue;
        }
        break;
    }
    rl_log_info("signal %d: draining (up to %d ms)", sig, RL_DRAIN_MS);
    left = rl_http_drain(http, RL_DRAIN_MS);
    store->ops->close(store); /* finishes any job still pending */
    rl_http_stop(http);
    rl_config_unref(cfg);
    rl_log_info("stopped (%d requests were still in flight)", left);
    return 0;
}
