/* test_daemon.c -- the real ratelimitd binary for one test: config in a fresh
 * temp dir, a free loopback port, wait for /healthz; stop with SIGTERM (then
 * SIGKILL after 5 s). stderr goes to DIR/ratelimitd.log. */
#include "test_daemon.h"

#include "test_http.h"
#include "test_redis.h"
#include "test_time.h"

#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

const char *rl_test_binary(void) { return RL_TEST_BINARY; }
const char *rl_test_source_dir(void) { return RL_TEST_SOURCE_DIR; }

int rl_test_daemon_write_config(struct rl_test_daemon *d, const char *config_json)
{
    char tmp[320];
    FILE *f;

    snprintf(tmp, sizeof(tmp), "%s.tmp", d->config_path);
    if ((f = fopen(tmp, "w")) == NULL)
        return -1;
    fputs(config_json, f);
    if (fclose(f) != 0)
        return -1;
    return rename(tmp, d->config_path); /* atomic: a reload never reads half a file */
}

static pid_t rl_test_daemon_spawn(struct rl_test_daemon *d, const char *redis_url,
                                  char *const *extra_env)
{
    char listen[32], *argv[8], *envp[64];
    int argc = 0, envc = 0;
    pid_t pid;

    snprintf(listen, sizeof(listen), "127.0.0.1:%u", d->port);
    argv[argc++] = (char *)rl_test_binary();
    argv[argc++] = "--config";
    argv[argc++] = d->config_path;
    argv[argc++] = "--listen";
    argv[argc++] = listen;
    if (redis_url != NULL) {
        argv[argc++] = "--redis";
        argv[argc++] = (char *)redis_url;
    }
    argv[argc] = NULL;
    for (char **e = environ; *e && envc < 48; e++)
        envp[envc++] = *e;
    for (char *const *e = extra_env; e && *e && envc < 62; e++)
        envp[envc++] = *e;
    envp[envc] = NULL;

    pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive a crashed test */
        int fd = open(d->log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, STDERR_FILENO);
            dup2(fd, STDOUT_FILENO);
            close(fd);
        }
        execve(argv[0], argv, envp);
        _exit(127);
    }
    return pid;
}

/* True once the daemon's log holds its "listening on 127.0.0.1:PORT " line. */
static bool rl_test_daemon_logged_listen(const struct rl_test_daemon *d)
{
    char line[1024], want[64];
    bool found = false;
    FILE *f = fopen(d->log_path, "r");

    if (f == NULL)
        return false;
    snprintf(want, sizeof(want), "listening on 127.0.0.1:%u ", d->port);
    while (!found && fgets(line, sizeof(line), f))
        found = strstr(line, want) != NULL;
    fclose(f);
    return found;
}

int rl_test_daemon_start(struct rl_test_daemon *d, const char *config_json, const char *redis_url,
                         char *const *extra_env)
{
    struct rl_test_response res;

    memset(d, 0, sizeof(*d));
    snprintf(d->dir, sizeof(d->dir), "/tmp/rl-daemon-XXXXXX");
    if (mkdtemp(d->dir) == NULL)
        return -1;
    snprintf(d->config_path, sizeof(d->config_path), "%s/config.json", d->dir);
    snprintf(d->log_path, sizeof(d->log_path), "%s/ratelimitd.log", d->dir);
    if (rl_test_daemon_write_config(d, config_json) != 0)
        return -1;
    for (int attempt = 0; attempt < 5; attempt++) {
        d->port = rl_test_free_port();
        d->pid = rl_test_daemon_spawn(d, redis_url, extra_env);
        if (d->pid < 0)
            return -1;
        for (int i = 0; i < 200; i++) { /* up to 10 s (valgrind is slow) */
            int st;
            if (waitpid(d->pid, &st, WNOHANG) == d->pid) {
                d->pid = 0;
                break; /* exited: port taken, or a bad config */
            }
            /* the answer must come from our process, not from another test's
             * daemon that holds the port we were given: ours says so in its log */
            if (rl_test_daemon_logged_listen(d) &&
                rl_test_http(d->port, "GET", "/healthz", NULL, NULL, 0, &res) == 0) {
                int status = res.status;

                rl_test_response_free(&res);
                if (status == 200)
                    return 0;
            }
            rl_test_sleep_ms(50);
        }
        if (d->pid > 0) {
            kill(d->pid, SIGKILL);
            waitpid(d->pid, NULL, 0);
            d->pid = 0;
        }
    }
    rl_test_daemon_dump_log(d);
    return -1;
}

int rl_test_daemon_signal(struct rl_test_daemon *d, int sig)
{
    return d->pid > 0 ? kill(d->pid, sig) : -1;
}

int rl_test_daemon_stop(struct rl_test_daemon *d)
{
    int st = 0; /* never started, or stopped already: nothing to report */

    if (d->pid > 0) {
        kill(d->pid, SIGTERM);
        for (int i = 0; i < 100; i++) {
            if (waitpid(d->pid, &st, WNOHANG) == d->pid)
                break;
            rl_test_sleep_ms(50);
            if (i == 99) {
                kill(d->pid, SIGKILL);
                waitpid(d->pid, &st, 0);
            }
        }
        d->pid = 0;
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
            rl_test_daemon_dump_log(d); /* a sanitizer report, or an unclean exit */
    }
    if (d->dir[0]) {
        char cmd[300];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", d->dir);
        if (system(cmd) != 0) {
            /* best effort */
        }
        d->dir[0] = '\0';
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

void rl_test_daemon_dump_log(const struct rl_test_daemon *d)
{
    char line[1024];
    FILE *f = fopen(d->log_path, "r");

    if (f == NULL)
        return;
    fprintf(stderr, "---- ratelimitd log (%s) ----\n", d->log_path);
    while (fgets(line, sizeof(line), f))
        fputs(line, stderr);
    fclose(f);
}

void rl_test_daemon_require_clean(int status)
{
    if (status == 0)
        return;
    fprintf(stderr, "ratelimitd did not exit cleanly (status %d): see its log above\n", status);
    abort();
}
