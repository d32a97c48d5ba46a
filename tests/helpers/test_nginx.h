/* test_nginx.h -- a real nginx (Debian package) for one test, in its own temp
 * prefix with a config the test writes; started in the foreground (daemon off),
 * ready when its port answers; stopped by PID. */
#ifndef RL_TEST_NGINX_H
#define RL_TEST_NGINX_H

#include <stdint.h>
#include <sys/types.h>

struct rl_test_nginx {
    pid_t pid;
    char dir[256]; /* prefix: nginx.conf, logs, temp dirs */
};

/* Make the temp prefix; the test then writes DIR/nginx.conf. */
int rl_test_nginx_prepare(struct rl_test_nginx *n);
/* Start with DIR/nginx.conf and wait until `port` accepts (5 s). */
int rl_test_nginx_start(struct rl_test_nginx *n, uint16_t port);
void rl_test_nginx_stop(struct rl_test_nginx *n);
void rl_test_nginx_dump_log(const struct rl_test_nginx *n);
/* Lines in a file of the prefix (e.g. "upstream.log") holding `needle`
 * (NULL: all lines); -1 when the file cannot be read. */
int rl_test_nginx_count_lines(const struct rl_test_nginx *n, const char *file, const char *needle);

#endif
