/* test_redis.h -- a real redis-server for one test, the way Redis's own suite
 * starts one: fresh temp dir, free loopback port, --save "" --appendonly no,
 * wait for PING; stop kills it and removes the dir. When redis-server is
 * missing the start fails with a message saying so (never a silent skip). */
#ifndef RL_TEST_REDIS_H
#define RL_TEST_REDIS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct rl_test_redis {
    pid_t pid;
    uint16_t port;
    char dir[256];  /* temp dir: redis.log lives here */
    char url[64];   /* "redis://127.0.0.1:PORT/0" */
};

/* Start on a free port; RL_OK (0) or a negative value (message on stderr). */
int rl_test_redis_start(struct rl_test_redis *r);
/* Start again on the same port and dir (after rl_test_redis_kill). */
int rl_test_redis_restart(struct rl_test_redis *r);
/* SIGKILL the server and wait for it; the dir stays (for a restart). */
void rl_test_redis_kill(struct rl_test_redis *r);
/* Kill (if running) and remove the dir. Safe to call twice. */
void rl_test_redis_stop(struct rl_test_redis *r);
/* Run one command (redis-cli style words) and return the reply as text in
 * buf ("PONG", "(nil)", "42", or "ERR ..."); RL_OK or negative on I/O error. */
int rl_test_redis_cmd(struct rl_test_redis *r, char *buf, size_t cap, const char *fmt, ...);
/* Print the server's log to stderr (call on failure). */
void rl_test_redis_dump_log(const struct rl_test_redis *r);

/* A free TCP port on 127.0.0.1 (bind to 0, read it back, close). */
uint16_t rl_test_free_port(void);

#endif
