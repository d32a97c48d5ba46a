/* test_nginx.c -- a real nginx for one test: temp prefix, foreground master,
 * wait for the port, stop by PID (SIGQUIT then SIGKILL). */
#include "test_nginx.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void rl_tn_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int rl_tn_port_open(uint16_t port)
{
    struct sockaddr_in a = {0};
    int fd = socket(AF_INET, SOCK_STREAM, 0), ok;

    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ok = connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
    close(fd);
    return ok;
}

int rl_test_nginx_prepare(struct rl_test_nginx *n)
{
    char p[300];

    memset(n, 0, sizeof(*n));
    snprintf(n->dir, sizeof(n->dir), "/tmp/rl-nginx-XXXXXX");
    if (mkdtemp(n->dir) == NULL)
        return -1;
    chmod(n->dir, 0755); /* workers may run as another user */
    snprintf(p, sizeof(p), "%s/tmp", n->dir);
    mkdir(p, 0777);
    snprintf(p, sizeof(p), "%s/logs", n->dir);
    mkdir(p, 0777);
    return 0;
}

int rl_test_nginx_start(struct rl_test_nginx *n, uint16_t port)
{
    char conf[300];

    if (access("/usr/sbin/nginx", X_OK) != 0) {
        fprintf(stderr, "nginx not found: apt-get install nginx\n");
        return -1;
    }
    snprintf(conf, sizeof(conf), "%s/nginx.conf", n->dir);
    n->pid = fork();
    if (n->pid == 0) {
        char logp[320];
        int fd;

        prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive a crashed test */
        snprintf(logp, sizeof(logp), "%s/stderr.log", n->dir);
        fd = open(logp, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, STDERR_FILENO);
            dup2(fd, STDOUT_FILENO);
            close(fd);
        }
        execl("/usr/sbin/nginx", "nginx", "-p", n->dir, "-c", conf, "-e", "stderr", "-g",
              "daemon off;", (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 100; i++) {
        int st;
        if (waitpid(n->pid, &st, WNOHANG) == n->pid) {
            n->pid = 0;
            rl_test_nginx_dump_log(n);
            return -1;
        }
        if (rl_tn_port_open(port))
            return 0;
        rl_tn_sleep_ms(50);
    }
    rl_test_nginx_dump_log(n);
    return -1;
}

void rl_test_nginx_stop(struct rl_test_nginx *n)
{
    if (n->pid > 0) {
        kill(n->pid, SIGQUIT);
        for (int i = 0; i < 60; i++) {
            if (waitpid(n->pid, NULL, WNOHANG) == n->pid) {
                n->pid = 0;
                break;
            }
            rl_tn_sleep_ms(50);
        }
        if (n->pid > 0) {
            kill(n->pid, SIGKILL);
            waitpid(n->pid, NULL, 0);
            n->pid = 0;
        }
    }
    if (n->dir[0]) {
        char cmd[300];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", n->dir);
        if (system(cmd) != 0) {
            /* best effort */
        }
        n->dir[0] = '\0';
    }
}

void rl_test_nginx_dump_log(const struct rl_test_nginx *n)
{
    char p[300], line[1024];
    FILE *f;

    snprintf(p, sizeof(p), "%s/stderr.log", n->dir);
    if ((f = fopen(p, "r")) == NULL)
        return;
    fprintf(stderr, "---- nginx log (%s) ----\n", p);
    while (fgets(line, sizeof(line), f))
        fputs(line, stderr);
    fclose(f);
}

int rl_test_nginx_count_lines(const struct rl_test_nginx *n, const char *file, const char *needle)
{
    char p[400], line[4096];
    FILE *f;
    int count = 0;

    snprintf(p, sizeof(p), "%s/%s", n->dir, file);
    if ((f = fopen(p, "r")) == NULL)
        return -1;
    while (fgets(line, sizeof(line), f))
        if (needle == NULL || strstr(line, needle) != NULL)
            count++;
    fclose(f);
    return count;
}
