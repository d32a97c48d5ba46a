/* test_redis.c -- a real redis-server per test, started the way Redis's own
 * suite does it: a fresh temp dir, a free loopback port (another one when it
 * was taken meanwhile), no persistence, ready when PING answers. Blocking
 * hiredis only; knows nothing of ratelimitd. */
#include "test_redis.h"

#include <hiredis/hiredis.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define RL_TEST_REDIS_TRIES   5
#define RL_TEST_REDIS_WAIT_MS 5000

uint16_t rl_test_free_port(void)
{
    struct sockaddr_in a;
    socklen_t len = sizeof(a);
    uint16_t port = 0;
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    if (fd < 0)
        return 0;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

static int64_t rl_test_redis_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Is `prog` an executable file in a directory of $PATH? */
static bool rl_test_redis_on_path(const char *prog)
{
    const char *path = getenv("PATH");
    char buf[1024];

    while (path != NULL && *path != '\0') {
        const char *end = strchr(path, ':');
        size_t len = end ? (size_t)(end - path) : strlen(path);

        snprintf(buf, sizeof(buf), "%.*s/%s", (int)len, path, prog);
        if (access(buf, X_OK) == 0)
            return true;
        path = end ? end + 1 : NULL;
    }
    return false;
}

/* Redis 7 refuses DEBUG unless told otherwise; older servers do not know
 * the option and would refuse to start with it. */
static bool rl_test_redis_needs_debug_opt(void)
{
    FILE *p = popen("redis-server --version", "r");
    char line[256] = "";
    const char *v;

    if (p == NULL)
        return false;
    if (fgets(line, sizeof(line), p) == NULL)
        line[0] = '\0';
    pclose(p);
    v = strstr(line, "v=");
    return v != NULL && atoi(v + 2) >= 7;
}

/* In the child: exec redis-server (only async-signal-safe calls here). */
static void rl_test_redis_exec(const struct rl_test_redis *r, bool debug_opt)
{
    char port[16], log[300];
    const char *argv[20];
    int n = 0;

    snprintf(port, sizeof(port), "%u", r->port);
    snprintf(log, sizeof(log), "%s/redis.log", r->dir);
    argv[n++] = "redis-server";
    argv[n++] = "--port";
    argv[n++] = port;
    argv[n++] = "--bind";
    argv[n++] = "127.0.0.1";
    argv[n++] = "--save";
    argv[n++] = "";
    argv[n++] = "--appendonly";
    argv[n++] = "no";
    argv[n++] = "--dir";
    argv[n++] = r->dir;
    argv[n++] = "--logfile";
    argv[n++] = log;
    argv[n++] = "--daemonize";
    argv[n++] = "no";
    if (debug_opt) {
        argv[n++] = "--enable-debug-command";
        argv[n++] = "yes";
    }
    argv[n] = NULL;
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive a crashed test */
    execvp("redis-server", (char *const *)argv);
    _exit(127);
}

/* Wait for PING on r->port; false when the server exited or never answered. */
static bool rl_test_redis_wait(struct rl_test_redis *r)
{
    int64_t end = rl_test_redis_ms() + RL_TEST_REDIS_WAIT_MS;
    struct timeval tv = {0, 200000};
    struct timespec nap = {0, 20000000};
    int status;

    while (rl_test_redis_ms() < end) {
        redisContext *c;
        redisReply *reply;
        bool ok = false;

        if (waitpid(r->pid, &status, WNOHANG) == r->pid) {
            r->pid = 0; /* exited: the port was taken, most likely */
            return false;
        }
        c = redisConnectWithTimeout("127.0.0.1", r->port, tv);
        if (c != NULL && !c->err) {
            /* the server on the port must be ours, not another test's that
             * held the port we were given: compare its process id */
            char want[32];

            snprintf(want, sizeof(want), "process_id:%ld\r\n", (long)r->pid);
            reply = redisCommand(c, "INFO server");
            ok = reply != NULL && reply->type == REDIS_REPLY_STRING &&
                 strstr(reply->str, want) != NULL;
            if (reply != NULL)
                freeReplyObject(reply);
        }
        if (c != NULL)
            redisFree(c);
        if (ok)
            return true;
        nanosleep(&nap, NULL);
    }
    rl_test_redis_kill(r);
    return false;
}

static int rl_test_redis_spawn(struct rl_test_redis *r)
{
    bool debug_opt = rl_test_redis_needs_debug_opt();
    pid_t pid = fork();

    if (pid < 0)
        return -1;
    if (pid == 0)
        rl_test_redis_exec(r, debug_opt);
    r->pid = pid;
    snprintf(r->url, sizeof(r->url), "redis://127.0.0.1:%u/0", r->port);
    return rl_test_redis_wait(r) ? 0 : -1;
}

int rl_test_redis_start(struct rl_test_redis *r)
{
    memset(r, 0, sizeof(*r));
    if (!rl_test_redis_on_path("redis-server")) {
        fprintf(stderr, "redis-server not found: apt-get install redis-server\n");
        return -1;
    }
    snprintf(r->dir, sizeof(r->dir), "/tmp/rl-redis-XXXXXX");
    if (mkdtemp(r->dir) == NULL) {
        fprintf(stderr, "mkdtemp: %s\n", strerror(errno));
        r->dir[0] = '\0';
        return -1;
    }
    for (int i = 0; i < RL_TEST_REDIS_TRIES; i++) {
        r->port = rl_test_free_port();
        if (r->port != 0 && rl_test_redis_spawn(r) == 0)
            return 0;
    }
    fprintf(stderr, "redis-server did not start (log below)\n");
    rl_test_redis_dump_log(r);
    return -1;
}

int rl_test_redis_restart(struct rl_test_redis *r)
{
    rl_test_redis_kill(r);
    if (rl_test_redis_spawn(r) == 0)
        return 0;
    fprintf(stderr, "redis-server did not restart on port %u\n", r->port);
    rl_test_redis_dump_log(r);
    return -1;
}

void rl_test_redis_kill(struct rl_test_redis *r)
{
    if (r->pid <= 0)
        return;
    kill(r->pid, SIGKILL);
    while (waitpid(r->pid, NULL, 0) < 0 && errno == EINTR)
        ;
    r->pid = 0;
}

void rl_test_redis_stop(struct rl_test_redis *r)
{
    DIR *d;
    struct dirent *e;
    char path[600];

    rl_test_redis_kill(r);
    if (r->dir[0] == '\0')
        return;
    d = opendir(r->dir);
    while (d != NULL && (e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", r->dir, e->d_name);
        unlink(path);
    }
    if (d != NULL)
        closedir(d);
    rmdir(r->dir);
    r->dir[0] = '\0';
}

/* Render a reply as redis-cli would, roughly; arrays one element per line. */
static void rl_test_redis_render(const redisReply *reply, char *buf, size_t cap)
{
    size_t used = 0;

    switch (reply->type) {
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
    case REDIS_REPLY_ERROR:
        snprintf(buf, cap, "%.*s", (int)reply->len, reply->str);
        break;
    case REDIS_REPLY_INTEGER:
        snprintf(buf, cap, "%lld", reply->integer);
        break;
    case REDIS_REPLY_NIL:
        snprintf(buf, cap, "(nil)");
        break;
    case REDIS_REPLY_ARRAY:
        buf[0] = '\0';
        for (size_t i = 0; i < reply->elements && used + 1 < cap; i++) {
            if (i > 0)
                buf[used++] = '\n';
            rl_test_redis_render(reply->element[i], buf + used, cap - used);
            used += strlen(buf + used);
        }
        buf[used] = '\0';
        break;
    default:
        snprintf(buf, cap, "(unknown reply type %d)", reply->type);
    }
}

int rl_test_redis_cmd(struct rl_test_redis *r, char *buf, size_t cap, const char *fmt, ...)
{
    struct timeval tv = {5, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", r->port, tv);
    redisReply *reply;
    va_list ap;

    if (cap > 0)
        buf[0] = '\0';
    if (c == NULL || c->err) {
        if (c != NULL)
            redisFree(c);
        return -1;
    }
    redisSetTimeout(c, tv);
    va_start(ap, fmt);
    reply = redisvCommand(c, fmt, ap);
    va_end(ap);
    if (reply == NULL) {
        redisFree(c);
        return -1;
    }
    rl_test_redis_render(reply, buf, cap);
    freeReplyObject(reply);
    redisFree(c);
    return 0;
}

void rl_test_redis_dump_log(const struct rl_test_redis *r)
{
    char path[300], line[1024];
    FILE *f;

    snprintf(path, sizeof(path), "%s/redis.log", r->dir);
    f = fopen(path, "r");
    if (f == NULL)
        return;
    fprintf(stderr, "---- %s ----\n", path);
    while (fgets(line, sizeof(line), f) != NULL)
        fputs(line, stderr);
    fclose(f);
}
