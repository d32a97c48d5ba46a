/* test_daemon.h -- the real ratelimitd binary for one test: writes the given
 * config JSON to a temp dir, starts the binary on a free loopback port, waits
 * for /healthz, and stops it (SIGTERM, then SIGKILL after 5 s). Its stderr
 * goes to a log file printed by rl_test_daemon_dump_log. */
#ifndef RL_TEST_DAEMON_H
#define RL_TEST_DAEMON_H

#include <stdint.h>
#include <sys/types.h>

struct rl_test_daemon {
    pid_t pid;
    uint16_t port;
    char dir[256];
    char config_path[300];
    char log_path[300];
};

/* config_json is a full config; its "listen" is replaced by a free port.
 * redis_url NULL: the embedded store; otherwise passed as --redis.
 * extra_env: NULL or "NAME=value" strings, NULL-terminated, added to the env.
 * Returns 0, or negative (log printed). */
int rl_test_daemon_start(struct rl_test_daemon *d, const char *config_json, const char *redis_url,
                         char *const *extra_env);
/* Send a signal (e.g. SIGHUP) to the daemon. */
int rl_test_daemon_signal(struct rl_test_daemon *d, int sig);
/* Rewrite the config file in place (for reload tests). */
int rl_test_daemon_write_config(struct rl_test_daemon *d, const char *config_json);
/* SIGTERM and wait; returns the exit status: 0 for a clean exit (or when
 * nothing runs), the status, or -1 when killed by a signal; the log is printed
 * when it is not 0 (a sanitizer report makes the daemon exit non-zero). */
int rl_test_daemon_stop(struct rl_test_daemon *d);
void rl_test_daemon_dump_log(const struct rl_test_daemon *d);
/* For a suite's teardown: abort when a stop status is not 0. (Criterion does
 * not count an assertion in .fini as a failure, but a crash there fails the
 * run.) */
void rl_test_daemon_require_clean(int status);

/* The path of the binary under test and the source tree (set by CMake). */
const char *rl_test_binary(void);
const char *rl_test_source_dir(void);

#endif
